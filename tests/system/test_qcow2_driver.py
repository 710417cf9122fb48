"""berth's qcow2 driver, driven through blk-io (tests/tools): after writes, zeroing, discards and
flushes — and after a crash — qemu-img check and berth-img check agree the image is consistent,
and qemu-img reads back exactly what a plain model of the disk holds."""
import os
import random
import pytest

from conftest import run_vmm
from imgutil import img, run, blk_io, qemu_io, qemu_info, berth_info, assert_checks_agree


class Model:
    """The bytes the guest should see: a bytearray updated like the driver's disk."""

    def __init__(self, size, cs, base=None):
        self.cs = cs
        self.data = bytearray(base) if base is not None else bytearray(size)

    def apply(self, op):
        f = op.split(":")
        if f[0] == "write":
            off, n, byte = int(f[1]), int(f[2]), int(f[3], 0)
            self.data[off:off + n] = bytes([byte]) * n
        elif f[0] == "zero":
            off, n = int(f[1]), int(f[2])
            self.data[off:off + n] = bytes(n)
        elif f[0] == "discard":  # whole clusters read as zeroes afterwards; partial ones are kept
            off, n = int(f[1]), int(f[2])
            a, z = -(-off // self.cs) * self.cs, (off + n) // self.cs * self.cs
            if z > a:
                self.data[a:z] = bytes(z - a)

    def compare(self, path, tmp):
        ref = tmp / "model.raw"
        ref.write_bytes(self.data)
        r = run("qemu-img", "compare", "-f", "qcow2", "-F", "raw", path, ref)
        assert r.returncode == 0, r.stdout + r.stderr


def random_ops(rng, size, n):
    ops = []
    for _ in range(n):
        kind = rng.choice(["write", "write", "write", "zero", "discard", "flush"])
        off = rng.randrange(size // 512) * 512
        ln = min(rng.choice([512, 4096, 65536, 200704, 3 << 20]), size - off)
        if kind == "flush":
            ops.append("flush")
        elif kind == "write":
            ops.append(f"write:{off}:{ln}:{rng.randrange(1, 256)}")
        else:
            ops.append(f"{kind}:{off}:{ln}")
    return ops


def make_backing(tmp, kind, size):
    if kind == "raw":
        p = tmp / "base.raw"
        data = os.urandom(size // 2) + bytes(size - size // 2)
        p.write_bytes(data)
        return p, data
    p = tmp / "base.qcow2"
    assert img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4K", p, str(size)).returncode == 0
    qemu_io(p, f"write -P 0x5a 0 {size // 3}")
    return p, bytes([0x5a]) * (size // 3) + bytes(size - size // 3)


@pytest.mark.parametrize("cs", [512, 4096, 65536, 2 << 20])
@pytest.mark.parametrize("backing", [None, "raw", "qcow2"])
def test_random_operations(berth_img, qemu_img, tmp_path, cs, backing):
    size = 9 << 20
    rng = random.Random(f"{cs}-{backing}")
    p = tmp_path / "t.qcow2"
    if backing:
        bpath, bdata = make_backing(tmp_path, backing, size)
        assert img("create", "-q", "-b", bpath.name, "-o", f"cluster_size={cs}", p).returncode == 0
        model = Model(size, cs, bdata)
    else:
        assert img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", p,
                   str(size)).returncode == 0
        model = Model(size, cs)
    ops = random_ops(rng, size, 60)
    blk_io(p, *ops)
    for op in ops:
        model.apply(op)
    rc, b, err = assert_checks_agree(p)
    assert rc == 0, err
    model.compare(p, tmp_path)


def test_unaligned_virtual_size(berth_img, qemu_img, tmp_path):
    p = tmp_path / "odd.qcow2"
    size = 1000448  # not a multiple of the 64 KiB cluster
    assert img("create", "-q", "-f", "qcow2", p, str(size)).returncode == 0
    ops = [f"write:{size - 512}:512:0x11", f"write:{size - 70000}:69632:0x22",
           f"zero:{size - 4096}:4096", f"discard:{size - 131072}:131072", "flush"]
    blk_io(p, *ops)
    model = Model(size, 65536)
    for op in ops:
        model.apply(op)
    assert assert_checks_agree(p)[0] == 0
    model.compare(p, tmp_path)


@pytest.mark.parametrize("opts", ["compat=0.10", "compat=0.10,cluster_size=512",
                                  "refcount_bits=1,cluster_size=4K", "refcount_bits=8",
                                  "refcount_bits=64,cluster_size=1K"])
def test_qemu_made_images(berth_img, qemu_img, tmp_path, opts):
    p = tmp_path / "q.qcow2"
    assert run("qemu-img", "create", "-q", "-f", "qcow2", "-o", opts, p, "16M").returncode == 0
    qemu_io(p, "write -P 0x33 1M 1M")
    ops = random_ops(random.Random(opts), 16 << 20, 40)
    blk_io(p, *ops)
    model = Model(16 << 20, 512 if "512" in opts else 4096 if "4K" in opts
                  else 1024 if "1K" in opts else 65536)
    model.data[1 << 20:2 << 20] = bytes([0x33]) * (1 << 20)
    for op in ops:
        model.apply(op)  # version 2 has no zero flag, but without a backing file unallocated
    assert assert_checks_agree(p)[0] == 0  # clusters read as zeroes too
    model.compare(p, tmp_path)


def test_refcount_table_growth_and_cache_eviction(berth_img, qemu_img, tmp_path):
    """512-byte clusters: writes scattered over 4 GiB need 11,600 L2 tables and hundreds of
    refcount blocks (more than the refcount-block cache holds) and a larger refcount table (it
    moves)."""
    p = tmp_path / "g.qcow2"
    assert img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", p, "4G").returncode == 0
    n = 5800
    blk_io(p, f"write:0:512:0x61:705K:{n}", f"write:64K:1K:0x62:705K:{n}", "flush",
           f"read:0:512:0x61:705K:{n}", f"read:64K:1K:0x62:705K:{n}")
    rc, b, err = assert_checks_agree(p)
    assert rc == 0 and b["allocated-clusters"] == 3 * n
    qemu_io(p, "read -P 0x61 0 512", f"read -P 0x62 {705 * 1024 * (n - 1) + 65536} 1K",
            readonly=True)


@pytest.mark.parametrize("cs", [512, 65536])
def test_crash_leaves_a_consistent_image(berth_img, qemu_img, tmp_path, cs):
    """blk-io exits without flushing or writing metadata back: everything that reached the disk
    before stays consistent (at worst leaked clusters), as the driver's write ordering promises."""
    p = tmp_path / "c.qcow2"
    assert img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", p, "64M").returncode == 0
    blk_io(p, "write:0:1M:1", "flush", "write:8M:4M:2", "zero:0:64K",
           "write:32M:512:3:1M:20", "crash")
    rc, b, err = assert_checks_agree(p)
    assert rc in (0, 3), err
    qemu_io(p, "read -P 1 64K 960K", readonly=True)


@pytest.mark.parametrize("crash", [False, True])
def test_bitmaps_stay_consistent(berth_img, qemu_img, tmp_path, crash):
    """The driver keeps persistent bitmaps: after a clean close both checkers find the image
    clean and both info commands list the bitmaps as 'auto'; after a crash they are 'in-use' (not
    to be trusted) and the image is still consistent."""
    p = tmp_path / "b.qcow2"
    assert run("qemu-img", "create", "-q", "-f", "qcow2", p, "16M").returncode == 0
    assert run("qemu-img", "bitmap", "--add", p, "b0").returncode == 0
    assert run("qemu-img", "bitmap", "--add", "-g", "4K", p, "b1").returncode == 0
    blk_io(p, "write:0:64K:1", "write:5M:1M:2", *(["flush", "crash"] if crash else []))
    rc, b, err = assert_checks_agree(p)
    assert rc == 0, err
    q = qemu_info(p)["format-specific"]["data"]["bitmaps"]
    assert berth_info(p)["format-specific"]["data"]["bitmaps"] == q
    assert [m["flags"] for m in q] == [["in-use", "auto"] if crash else ["auto"]] * 2


@pytest.mark.parametrize("cs", ["4K", "64K"])
def test_guest_disk_test_on_an_overlay(berth, berth_img, qemu_img, tmp_path, cs):
    """The test guest's virtio-blk test (pattern over the whole disk, partial writes, flush,
    write-zeroes, discard) on berth-vmm leaves a qcow2 overlay identical to a raw disk that went
    through the same test, consistent for both checkers, and readable by a second boot."""
    raw, base, top = tmp_path / "d.raw", tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    assert img("create", "-q", raw, "64M").returncode == 0
    assert img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", base, "64M").returncode == 0
    assert img("create", "-q", "-b", base.name, "-o", f"cluster_size={cs}", top).returncode == 0
    for disk in (raw, top):
        r = run_vmm(["--disk", str(disk), "--cmdline", "test=blk,poweroff"], vm_timeout=60)
        assert r.rc == 0 and r.results().get("blk", ("",))[0] == "PASS", r
    r = run("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, top)
    assert r.returncode == 0, r.stdout + r.stderr
    assert assert_checks_agree(top)[0] == 0
    r = run_vmm(["--disk", f"{top},readonly", "--cmdline", "test=blk-verify,poweroff"],
                vm_timeout=60)
    assert r.rc == 0 and r.results().get("blk-verify", ("",))[0] == "PASS", r


def test_overwriting_compressed_clusters(berth_img, qemu_img, tmp_path):
    """Compressed clusters (qemu-img convert -c) that are overwritten, zeroed or discarded give
    back their references: no leaked refcounts on the shared host clusters."""
    src = tmp_path / "src.raw"
    src.write_bytes(b"compressible text " * 300000)
    os.truncate(src, 8 << 20)
    p = tmp_path / "c.qcow2"
    assert run("qemu-img", "convert", "-c", "-O", "qcow2", "-f", "raw", src, p).returncode == 0
    before = assert_checks_agree(p)[1]["compressed-clusters"]
    ops = [f"write:0:{64 << 10}:0x41", f"write:{1 << 20}:{1 << 20}:0x42", f"zero:{3 << 20}:{128 << 10}",
           f"discard:{4 << 20}:{64 << 10}"]
    blk_io(p, *ops)
    rc, b, err = assert_checks_agree(p)
    assert rc == 0, err
    assert b["compressed-clusters"] == before - 1 - 16 - 2 - 1
    model = Model(8 << 20, 65536, src.read_bytes())
    for op in ops:
        model.apply(op)
    model.compare(p, tmp_path)
