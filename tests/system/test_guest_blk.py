# test_guest_blk.py — the test guest's virtio-blk driver, tests and benchmark workloads on QEMU q35 and on berth.
"""The test guest drives virtio-blk (virtio 1.2, 5.2) through the modern virtio-pci transport, its data path in
ring 3: `blk` writes a pattern over the whole disk and reads it back, plus partial sizes, flush, GET_ID,
write-zeroes, discard, out-of-range and unknown requests; `blk-ro` checks a read-only disk refuses writes;
`blk-verify pattern=N` checks the disk holds the pattern. The pattern (docs/test-guest.md): the little-endian
8-byte word at byte offset o of the disk holds o ^ 0x6265727468 ^ (N << 56); `blk` writes N=1 unless given
`pattern=N`. The host side writes and checks the same pattern in the image file, so data provably crosses the
VMM in both directions. QEMU TCG (`-device virtio-blk-pci,disable-legacy=on`) is the reference; the berth
variants are skipped until berth-vmm has `--disk`."""

import hashlib
import os
import re
import shutil
import subprocess

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
VMM = os.path.join(REPO, "build", "bin", "berth-vmm")
QEMU = shutil.which("qemu-system-x86_64")
TIMEOUT = 240
DISK_BYTES = 64 << 20
SERIAL = "berth-serial-1"
KEY = 0x6265727468

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
BENCH = re.compile(r"^berth-bench (\S+) (.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


# ---- the disk pattern, host side --------------------------------------------------------------------------------

CHUNK = 1 << 20


def _chunk_base(n):
    """Bytes of one 1 MiB chunk at offset 0 with pattern n; chunk c (1 MiB-aligned) is this XOR c in every word."""
    key = KEY ^ (n << 56)
    return b"".join(((o ^ key).to_bytes(8, "little") for o in range(0, CHUNK, 8)))


def _chunk(base, c):
    rep = c.to_bytes(8, "little") * (CHUNK // 8)
    return (int.from_bytes(base, "little") ^ int.from_bytes(rep, "little")).to_bytes(CHUNK, "little")


def write_pattern(path, n, size=DISK_BYTES):
    base = _chunk_base(n)
    with open(path, "wb") as f:
        for c in range(0, size, CHUNK):
            f.write(_chunk(base, c))


def first_mismatch(path, n):
    """Byte offset of the first 8-byte word not holding pattern n, or None."""
    base = _chunk_base(n)
    with open(path, "rb") as f:
        c = 0
        while True:
            got = f.read(CHUNK)
            if not got:
                return None
            want = _chunk(base, c)[:len(got)]
            if got != want:
                for o in range(0, len(got), 8):
                    if got[o:o + 8] != want[o:o + 8]:
                        return c + o
            c += len(got)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def direct_io_ok(path):
    """cache=none needs O_DIRECT on the image's filesystem (tmpfs has none)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        os.close(fd)
        return True
    except OSError:
        return False


# ---- runners ------------------------------------------------------------------------------------------------------


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    with open(path, "wb") as f:
        f.truncate(DISK_BYTES)
    return str(path)


def qemu_cmd(append, path, readonly=False, serial=SERIAL, queues=2):
    drive = f"if=none,id=d0,file={path},format=raw"
    if direct_io_ok(path):
        drive += ",cache=none,aio=io_uring"
    if readonly:
        drive += ",readonly=on"
    dev = f"virtio-blk-pci,disable-legacy=on,drive=d0,num-queues={queues}"
    if serial:
        dev += f",serial={serial}"
    return [QEMU, "-M", "q35", "-accel", "tcg", "-m", "512M", "-smp", "2", "-display", "none", "-nodefaults",
            "-serial", "stdio", "-no-reboot", "-kernel", ELF, "-append", append, "-drive", drive, "-device", dev]


def berth_cmd(append, path, opts=f"serial={SERIAL}"):
    spec = f"{path},{opts}" if opts else path
    return [VMM, "--kernel", ELF, "--disk", spec, "--cpus", "2", "--cmdline", append, "--timeout", "120"]


class Run:
    def __init__(self, cmd, returncode, output):
        self.cmd = cmd
        self.returncode = returncode
        self.output = output
        self.lines = []
        for raw in output.replace("\r", "").split("\n"):
            i = raw.find("berth-")
            if i >= 0:
                self.lines.append(raw[i:])

    def report(self):
        return f"cmd: {' '.join(self.cmd)}\nrc={self.returncode}\n{self.output[-6000:]}"

    def result(self, name):
        got = [m for m in (RESULT.match(line) for line in self.lines) if m and m.group(1) == name]
        assert len(got) == 1, f"expected one result line for {name}\n{self.report()}"
        return got[0].group(2), dict(KV.findall(got[0].group(3)))

    def passed(self, name):
        status, kv = self.result(name)
        assert status == "PASS", f"{name} failed: {kv}\n{self.report()}"
        return kv

    def bench(self, name):
        got = [m for m in (BENCH.match(line) for line in self.lines) if m and m.group(1) == name]
        assert len(got) == 1, f"expected one berth-bench line for {name}\n{self.report()}"
        kv = dict(KV.findall(got[0].group(2)))
        assert "reason" not in kv, f"benchmark {name} failed: {kv}\n{self.report()}"
        return kv


def run(cmd, timeout=TIMEOUT):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"guest did not finish within {timeout}s: {' '.join(cmd)}\n{out}")
    r = Run(cmd, p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    assert r.returncode == 0, r.report()
    assert not any("unexpected" in line for line in r.lines), r.report()
    r.passed("poweroff")
    return r


# ---- checks shared by QEMU and berth ----------------------------------------------------------------------------

def check_blk(r, path, serial=SERIAL, queues=2):
    kv = r.passed("blk")
    assert int(kv["sectors"]) == DISK_BYTES // 512, r.report()
    assert kv["serial"] == f'"{serial}"', r.report()
    if queues:
        assert int(kv["mq"]) == queues, r.report()
    else:
        assert int(kv["mq"]) >= 1, r.report()
    bad = first_mismatch(path, 1)
    assert bad is None, f"image file does not hold pattern 1 at byte {bad}\n{r.report()}"


def check_ro(make_cmd, path):
    write_pattern(path, 4)
    before = digest(path)
    r = run(make_cmd(path))
    kv = r.passed("blk-ro")
    assert kv["write_status"] == "1", r.report()
    assert digest(path) == before, "read-only disk image changed"


def check_verify(make_cmd, path):
    write_pattern(path, 7)
    kv = run(make_cmd("test=blk-verify,poweroff pattern=7", path)).passed("blk-verify")
    assert kv["pattern"] == "7"
    # One corrupted word, far into the disk: the guest names it.
    bad_off = 0x2a6c008
    with open(path, "r+b") as f:
        f.seek(bad_off)
        f.write(b"\xde\xad\xbe\xef\x00\x00\x00\x00")
    r = run(make_cmd("test=blk-verify,poweroff pattern=7", path))
    status, kv = r.result("blk-verify")
    assert status == "FAIL" and f"off={bad_off:#x}" in kv["reason"], r.report()
    assert "got=0xefbeadde" in kv["reason"], r.report()


def check_bench(r, name, qd):
    kv = r.bench(name)
    assert int(kv["iops"]) > 0, r.report()
    assert int(kv["qd"]) == qd and int(kv["bs"]) == 4096, r.report()
    assert int(kv["lat_us_avg"]) >= 0 and int(kv["lat_ns_avg"]) > 0, r.report()
    return kv


# ---- QEMU: the reference ---------------------------------------------------------------------------------------

def test_blk_qemu(qemu, disk):
    r = run(qemu_cmd("test=blk,poweroff", disk))
    check_blk(r, disk)
    kv = r.passed("blk")
    assert kv["write_zeroes"] == "ok" and kv["discard"] == "ok", r.report()  # QEMU 7.2 offers both


def test_blk_pattern_n_qemu(qemu, disk):
    r = run(qemu_cmd("test=blk,poweroff pattern=9", disk, queues=1))
    kv = r.passed("blk")
    assert kv["pattern"] == "9" and kv["mq"] == "1", r.report()
    assert first_mismatch(disk, 9) is None, r.report()


def test_blk_ro_qemu(qemu, disk):
    check_ro(lambda p: qemu_cmd("test=blk-ro,poweroff", p, readonly=True), disk)


def test_blk_verify_qemu(qemu, disk):
    check_verify(lambda a, p: qemu_cmd(a, p), disk)


def test_blk_on_readonly_disk_fails_cleanly_qemu(qemu, disk):
    r = run(qemu_cmd("test=blk,poweroff", disk, readonly=True))
    status, kv = r.result("blk")
    assert status == "FAIL" and "read-only" in kv["reason"], r.report()


def test_blk_missing_device_fails_cleanly_qemu(qemu):
    r = run([QEMU, "-M", "q35", "-accel", "tcg", "-m", "512M", "-display", "none", "-nodefaults", "-serial", "stdio",
             "-no-reboot", "-kernel", ELF, "-append", "test=blk,poweroff"])
    status, kv = r.result("blk")
    assert status == "FAIL" and "no-device" in kv["reason"], r.report()


def test_blk_bench_smoke_qemu(qemu, disk):
    r = run(qemu_cmd("bench=blk-randread,blk-randwrite qd=32 secs=1 warmup_ms=200 test=poweroff", disk))
    check_bench(r, "blk-randread", 32)
    check_bench(r, "blk-randwrite", 32)


def test_blk_bench_qd1_seq_qemu(qemu, disk):
    r = run(qemu_cmd("bench=blk-randread,blk-seqwrite,blk-seqread qd=1 secs=1 warmup_ms=100 test=poweroff", disk))
    check_bench(r, "blk-randread", 1)
    for name in ("blk-seqwrite", "blk-seqread"):
        kv = r.bench(name)
        assert int(kv["bs"]) == 1 << 20 and int(kv["mbps"]) > 0, r.report()


# ---- berth-vmm: the same, once it has --disk -------------------------------------------------------------------

def test_blk_berth(berth, disk):
    check_blk(run(berth_cmd("test=blk,poweroff", disk)), disk, queues=None)


def test_blk_berth_cache_none(berth, disk):
    if not direct_io_ok(disk):
        pytest.skip("the test image's filesystem has no O_DIRECT")
    check_blk(run(berth_cmd("test=blk,poweroff", disk, f"cache=none,serial={SERIAL}")), disk, queues=None)


def test_blk_ro_berth(berth, disk):
    check_ro(lambda p: berth_cmd("test=blk-ro,poweroff", p, "readonly"), disk)


def test_blk_verify_berth(berth, disk):
    check_verify(lambda a, p: berth_cmd(a, p, ""), disk)


def test_blk_bench_smoke_berth(berth, disk):
    r = run(berth_cmd("bench=blk-randread,blk-randwrite qd=32 secs=1 warmup_ms=200 test=poweroff", disk))
    check_bench(r, "blk-randread", 32)
    check_bench(r, "blk-randwrite", 32)


# ---- blk-reset: reset with requests in flight, re-initialise twice, final pattern -------------------------------

def region_mismatch(path, n, first, end):
    """Byte offset of the first 8-byte word in [first, end) (1 MiB-aligned) not holding pattern n, or None."""
    base = _chunk_base(n)
    with open(path, "rb") as f:
        f.seek(first)
        for c in range(first, end, CHUNK):
            got = f.read(CHUNK)
            want = _chunk(base, c)
            if got != want:
                for o in range(0, CHUNK, 8):
                    if got[o:o + 8] != want[o:o + 8]:
                        return c + o
    return None


def check_blk_reset(r, path):
    kv = r.passed("blk-reset")
    n = int(kv["outstanding"])
    assert n == int(kv["writes"]) + int(kv["reads"]) and int(kv["writes"]) > 0, r.report()
    assert 0 <= int(kv["completed_before_reset"]) <= int(kv["completed_by_reset"]) <= n, r.report()
    assert int(kv["reset_us"]) < 1000000 and kv["cycles"] == "2", r.report()
    first, end = (int(x, 16) for x in kv["region"].split("-"))
    # The final pattern reached the image, and nothing from the reset burst landed on top of it later.
    bad = region_mismatch(path, int(kv["pattern"]), first, end)
    assert bad is None, f"image file does not hold the final pattern at byte {bad}\n{r.report()}"
    return kv


def test_blk_reset_qemu(qemu, disk):
    check_blk_reset(run(qemu_cmd("test=blk-reset,poweroff", disk)), disk)


def test_blk_reset_berth(berth, disk):
    check_blk_reset(run(berth_cmd("test=blk-reset,poweroff", disk, "")), disk)


def test_blk_reset_berth_cache_none(berth, disk):
    if not direct_io_ok(disk):
        pytest.skip("the test image's filesystem has no O_DIRECT")
    check_blk_reset(run(berth_cmd("test=blk-reset,poweroff", disk, "cache=none")), disk)
