# test_qcow2.py — berth's qcow2 driver judged by qemu-img: interop both ways, backing chains, kill -9 safety.
"""The guest writes and reads the disk pattern (test_guest_blk.py) through berth's qcow2 driver; qemu-img (and
qemu-io) are the oracle: images berth wrote must pass `qemu-img check` and convert to exactly the pattern, images
qemu-img made must read back as the pattern in the guest, and killing berth-vmm with SIGKILL at any moment of a
write workload must leave an image without corruption (leaks allowed) that holds every write completed before
the guest's last flush."""

import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest

from test_guest_blk import (CHUNK, DISK_BYTES, ELF, VMM, _chunk, _chunk_base, digest, first_mismatch, run,
                            write_pattern)

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")
pytestmark = pytest.mark.skipif(not QEMU_IMG or not QEMU_IO, reason="qemu-img/qemu-io (qemu-utils) not installed")


def qimg(*args, check=True):
    p = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"qemu-img {' '.join(args)}: {p.returncode}\n{p.stdout}{p.stderr}"
    return p


def qcheck(path):
    """qemu-img check as JSON: (returncode, report)."""
    p = qimg("check", "--output=json", path, check=False)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip().startswith("{") else {}


def assert_clean(path, leaks_ok=False):
    rc, rep = qcheck(path)
    assert rep and rep.get("corruptions", 0) == 0 and rc in ((0, 3) if leaks_ok else (0,)), \
        f"qemu-img check {path}: {rc} {rep}"


def as_raw(path, tmp_path):
    out = str(tmp_path / (os.path.basename(path) + ".raw"))
    if os.path.exists(out):
        os.unlink(out)
    qimg("convert", "-O", "raw", path, out)
    return out


def vm(append, path, opts="format=qcow2", timeout=120):
    return [VMM, "--kernel", ELF, "--disk", f"{path},{opts}", "--cpus", "2", "--cmdline", append,
            "--timeout", str(timeout)]


CLUSTERS = [("512", "1.1"), ("65536", "1.1"), ("2M", "1.1"), ("65536", "0.10")]


@pytest.mark.parametrize("cluster,compat", CLUSTERS)
def test_berth_writes_qemu_img_reads(tmp_path, cluster, compat):
    img = str(tmp_path / "d.qcow2")
    qimg("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster},compat={compat}", img, str(DISK_BYTES))
    run(vm("test=blk,poweroff", img)).passed("blk")
    assert_clean(img)
    assert first_mismatch(as_raw(img, tmp_path), 1) is None


@pytest.mark.parametrize("cluster,compat", CLUSTERS)
def test_qemu_img_writes_berth_reads(tmp_path, cluster, compat):
    raw = str(tmp_path / "p.raw")
    write_pattern(raw, 7)
    img = str(tmp_path / "d.qcow2")
    qimg("convert", "-O", "qcow2", "-o", f"cluster_size={cluster},compat={compat}", raw, img)
    run(vm("test=blk-verify,poweroff pattern=7", img)).passed("blk-verify")
    # One word changed by QEMU inside the image: the guest must see exactly that word.
    subprocess.run([QEMU_IO, "-f", "qcow2", "-c", "write -P 0xde 0x2a6c000 512", img], check=True,
                   capture_output=True)
    status, kv = run(vm("test=blk-verify,poweroff pattern=7", img)).result("blk-verify")
    assert status == "FAIL" and "off=0x2a6c000" in kv["reason"] and "got=0xdededede" in kv["reason"], kv


def test_cache_none(tmp_path):
    img = str(tmp_path / "d.qcow2")
    qimg("create", "-q", "-f", "qcow2", img, str(DISK_BYTES))
    run(vm("test=blk,poweroff", img, "format=qcow2,cache=none")).passed("blk")
    assert_clean(img)
    assert first_mismatch(as_raw(img, tmp_path), 1) is None


def test_format_auto_detects_qcow2(tmp_path):
    raw = str(tmp_path / "p.raw")
    write_pattern(raw, 7)
    img = str(tmp_path / "d.qcow2")
    qimg("convert", "-O", "qcow2", raw, img)
    run(vm("test=blk-verify,poweroff pattern=7", img, "serial=x")).passed("blk-verify")


def test_backing_raw_then_overwrite(tmp_path):
    base = str(tmp_path / "base.raw")
    write_pattern(base, 7)
    before = digest(base)
    top = str(tmp_path / "top.qcow2")
    qimg("create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", top)
    run(vm("test=blk-verify,poweroff pattern=7", top)).passed("blk-verify")
    # The full blk test: partial writes (copy-on-write from the base), write-zeroes and discard over a base.
    run(vm("test=blk,poweroff", top)).passed("blk")
    assert digest(base) == before, "the backing file changed"
    assert_clean(top)
    assert first_mismatch(as_raw(top, tmp_path), 1) is None


def test_three_layer_chain(tmp_path):
    """base (raw) ← mid (qcow2) ← top (qcow2): each layer repairs a region the layer below has wrong; only the
    composition is the pattern. QEMU's own view of the chain must agree."""
    full = str(tmp_path / "full.raw")
    write_pattern(full, 7)
    base = str(tmp_path / "base.raw")
    shutil.copy(full, base)
    regions = {"mid": (0x100000 + 4096, 200 * 1024), "top": (0x3000000 - 8192, 3 * 65536 + 1024)}
    with open(base, "r+b") as f:
        for off, ln in regions.values():
            f.seek(off)
            f.write(b"\xaa" * ln)
    mid, top = str(tmp_path / "mid.qcow2"), str(tmp_path / "top.qcow2")
    qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "-b", "base.raw", "-F", "raw", mid)
    qimg("create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", top)
    with open(full, "rb") as f:
        for layer, img in (("mid", mid), ("top", top)):
            off, ln = regions[layer]
            f.seek(off)
            src = tmp_path / f"{layer}.src"
            src.write_bytes(f.read(ln))
            # A layer writes the right bytes for its region; the mid layer also damages the top's region.
            subprocess.run([QEMU_IO, "-c", f"write -s {src} {off} {ln}", img], check=True, capture_output=True)
    assert first_mismatch(as_raw(top, tmp_path), 7) is None, "the oracle chain is not the pattern"
    run(vm("test=blk-verify,poweroff pattern=7", top)).passed("blk-verify")
    run(vm("test=blk-fill,poweroff pattern=9 chunk=65536", top)).passed("blk-fill")
    for img in (mid, top):
        assert_clean(img)
    assert first_mismatch(as_raw(top, tmp_path), 9) is None


def test_format_qcow2_on_raw_file_is_refused(tmp_path):
    raw = tmp_path / "p.raw"
    raw.write_bytes(b"\0" * 65536)
    p = subprocess.run([VMM, "--check", "--kernel", ELF, "--disk", f"{raw},format=qcow2"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and str(raw) in p.stderr and "not a qcow2 image" in p.stderr, p.stderr


def test_bad_format_value(tmp_path):
    raw = tmp_path / "p.raw"
    raw.write_bytes(b"\0" * 65536)
    p = subprocess.run([VMM, "--check", "--kernel", ELF, "--disk", f"{raw},format=vmdk"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "format 'vmdk' is not auto, raw or qcow2" in p.stderr, p.stderr


# ---- kill -9 at many points of a write workload ---------------------------------------------------------------

FILL_STRIDE = 389  # guest/tests_blk.c


def fill_order(nchunks):
    return [(j * FILL_STRIDE) % nchunks for j in range(nchunks)]


def run_until_killed(cmd, delay):
    """Start the VM, kill it with SIGKILL `delay` s after the workload starts; returns the guest's output."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, started = [], threading.Event()

    def reader():
        for line in p.stdout:
            lines.append(line)
            if "blk-fill start" in line:
                started.set()

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    if started.wait(60):
        time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    p.wait()
    t.join(10)
    return "".join(lines)


def new_image(img, backing):
    if os.path.exists(img):
        os.unlink(img)
    if backing:
        qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=32768", "-b", "base.raw", "-F", "raw", img)
    else:
        qimg("create", "-q", "-f", "qcow2", "-o", "cluster_size=32768", img, str(DISK_BYTES))


@pytest.mark.parametrize("backing", [False, True], ids=["plain", "backing"])
def test_kill9_leaves_consistent_image(tmp_path, backing):
    chunk = 65536
    nchunks = DISK_BYTES // chunk
    img = str(tmp_path / "d.qcow2")
    if backing:
        write_pattern(str(tmp_path / "base.raw"), 7)
    new_image(img, backing)
    rnd = random.Random(1234)
    order = fill_order(nchunks)
    partial = 0
    for i in range(10):
        n = 10 + i
        out = run_until_killed(vm(f"test=blk-fill,poweroff pattern={n} chunk={chunk} flush_every=8", img),
                               rnd.uniform(0.02, 0.8))
        # whole lines only: the kill may cut the last one short ("flushed=1" of "flushed=128")
        flushed = [int(m.group(1)) for l in out.splitlines(keepends=True) if l.endswith("\n")
                   for m in [re.search(r"blk-fill flushed=(\d+)\r?\n$", l)] if m]
        done = flushed[-1] if flushed else 0
        partial += 0 < done < nchunks
        rc, rep = qcheck(img)
        assert rep and rep.get("corruptions", 0) == 0 and rep.get("check-errors", 0) == 0 and rc in (0, 3), \
            f"kill #{i}: qemu-img check {rc} {rep}"
        raw = as_raw(img, tmp_path)
        base_n = _chunk_base(n)
        with open(raw, "rb") as f:
            for c in order[:done]:
                f.seek(c * chunk)
                got = f.read(chunk)
                want = _chunk(base_n, (c * chunk) // CHUNK * CHUNK)
                o = (c * chunk) % CHUNK
                assert got == want[o:o + chunk], f"kill #{i}: chunk {c} flushed before the kill is not there"
        if done == nchunks:  # it finished before the kill: start again from an empty image, so it allocates
            new_image(img, backing)
    assert partial >= 5, f"only {partial} of 10 kills landed inside the workload"
    # The image still works after all those crashes.
    run(vm("test=blk-fill,poweroff pattern=3 chunk=65536", img)).passed("blk-fill")
    assert_clean(img, leaks_ok=True)
    assert first_mismatch(as_raw(img, tmp_path), 3) is None


# ---- persistent dirty bitmaps ------------------------------------------------------------------------------------

def qemu_bitmaps(img):
    """QEMU's own view of the image's persistent bitmaps (QMP on a machine-less QEMU): name -> info + sha256."""
    p = subprocess.Popen(["qemu-system-x86_64", "-M", "none", "-nodefaults", "-display", "none", "-qmp", "stdio",
                          "-blockdev", f"driver=qcow2,node-name=d0,file.driver=file,file.filename={img}"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def cmd(c, **args):
        p.stdin.write(json.dumps({"execute": c, "arguments": args}) + "\n")
        p.stdin.flush()
        while True:
            m = json.loads(p.stdout.readline())
            if "return" in m or "error" in m:
                return m

    try:
        p.stdout.readline()  # greeting
        cmd("qmp_capabilities")
        out = {}
        for n in cmd("query-named-block-nodes")["return"]:
            if n.get("node-name") == "d0":
                for b in n.get("dirty-bitmaps", []):
                    h = cmd("x-debug-block-dirty-bitmap-sha256", node="d0", name=b["name"])
                    out[b["name"]] = dict(b, sha256=h.get("return", {}).get("sha256"))
        cmd("quit")
    finally:
        p.wait(30)
    return out


def bitmap_sha(granules, nbits):
    bits = bytearray((nbits + 63) // 64 * 8)
    for g in granules:
        bits[g // 8] |= 1 << (g % 8)
    return hashlib.sha256(bytes(bits)).hexdigest()


@pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="qemu-system-x86 not installed")
def test_dirty_bitmap_records_guest_writes(tmp_path):
    img = str(tmp_path / "d.qcow2")
    qimg("create", "-q", "-f", "qcow2", img, str(DISK_BYTES))
    qimg("bitmap", "--add", img, "b0")                              # auto: records writes
    qimg("bitmap", "--add", "--granularity", "4096", img, "fine")   # a second, finer one
    qimg("bitmap", "--add", "--disable", img, "frozen")             # must not change
    subprocess.run([QEMU_IO, "-c", "write -P 1 0x40000 4k", img], check=True, capture_output=True)  # QEMU's write
    run(vm("test=blk-fill,poweroff count=5 chunk=65536", img)).passed("blk-fill")
    assert_clean(img)
    written = sorted((j * FILL_STRIDE) % 1024 for j in range(5))  # 64 KiB chunks the guest wrote
    bm = qemu_bitmaps(img)
    assert set(bm) == {"b0", "fine", "frozen"}, bm
    g64 = set(written) | {0x40000 >> 16}
    assert bm["b0"]["count"] == len(g64) << 16, bm["b0"]
    assert bm["b0"]["sha256"] == bitmap_sha(g64, DISK_BYTES >> 16), bm["b0"]
    g4k = {c * 16 + i for c in written for i in range(16)} | {0x40000 >> 12}
    assert bm["fine"]["count"] == len(g4k) << 12 and bm["fine"]["sha256"] == bitmap_sha(g4k, DISK_BYTES >> 12)
    assert bm["frozen"]["count"] == 0 and not bm["frozen"]["recording"]
    # A discard is a change too.
    subprocess.run([QEMU_IO, "-c", "discard 0x800000 64k", img], check=True, capture_output=True)
    assert qemu_bitmaps(img)["b0"]["count"] == (len(g64) + 1) << 16


@pytest.mark.skipif(not shutil.which("qemu-system-x86_64"), reason="qemu-system-x86 not installed")
def test_dirty_bitmap_after_kill9_is_inconsistent(tmp_path):
    """A bitmap berth was recording when it died cannot be trusted: it must read as in use / inconsistent."""
    img = str(tmp_path / "d.qcow2")
    qimg("create", "-q", "-f", "qcow2", img, str(DISK_BYTES))
    qimg("bitmap", "--add", img, "b0")
    run_until_killed(vm("test=blk-fill,poweroff chunk=65536 flush_every=8", img), 0.2)
    rc, rep = qcheck(img)
    assert rep.get("corruptions", 0) == 0 and rc in (0, 3), rep
    info = json.loads(qimg("info", "--output=json", img).stdout)
    flags = info["format-specific"]["data"]["bitmaps"][0]["flags"]
    assert "in-use" in flags, info
    assert qemu_bitmaps(img)["b0"].get("inconsistent") is True
