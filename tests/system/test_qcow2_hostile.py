# test_qcow2_hostile.py — malformed and hostile qcow2 images: refused at open, or a read-only disk at run time.
"""Each image is made by qemu-img (and qemu-io writes), then edited byte by byte with struct as the qcow2 spec
(QEMU docs/interop/qcow2.txt) lays the fields out. Images berth must refuse give exit status 2 both with
--check and at start, with a message that names the image and the reason. Images that open but are hostile
inside (a data cluster on top of metadata, an L2 table or refcount block past the end of the file) run the
test guest: the I/O fails with IOERR, the disk turns read-only, the VMM logs one line and keeps running, and
the metadata berth must not touch through a data cluster is byte-identical afterwards."""

import hashlib
import os
import re
import shutil
import struct
import subprocess

import pytest

from conftest import run_vmm

QEMU_IMG = shutil.which("qemu-img")
QEMU_IO = shutil.which("qemu-io")

pytestmark = pytest.mark.skipif(not QEMU_IMG or not QEMU_IO,
                                reason="qemu-img/qemu-io are not installed (Debian: qemu-utils)")

MB = 1 << 20
CLUSTER = 64 << 10
COPIED = 1 << 63
OFFSET_MASK = 0x00FFFFFFFFFFFE00
EXIT_CONFIG = 2

# Header fields: (offset, struct format).
MAGIC, VERSION = (0, ">I"), (4, ">I")
BACKING_OFF, BACKING_LEN = (8, ">Q"), (16, ">I")
CLUSTER_BITS, SIZE, CRYPT = (20, ">I"), (24, ">Q"), (32, ">I")
L1_SIZE, L1_OFF = (36, ">I"), (40, ">Q")
RT_OFF, RT_CLUSTERS = (48, ">Q"), (56, ">I")
NB_SNAPSHOTS = (60, ">I")
INCOMPAT, COMPAT, AUTOCLEAR = (72, ">Q"), (80, ">Q"), (88, ">Q")
REFCOUNT_ORDER, HEADER_LEN = (96, ">I"), (100, ">I")


# ---- images ---------------------------------------------------------------------------------------------------


def qemu_img(*args):
    subprocess.run([QEMU_IMG] + [str(a) for a in args], check=True, capture_output=True)


def qemu_io(path, *cmds):
    args = [QEMU_IO, "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    subprocess.run(args + [str(path)], check=True, capture_output=True)


def make(tmp_path, name="disk.qcow2", size="16M", backing=None, opts=None, data=True):
    """A qemu-img image (64 KiB clusters, v3), with guest cluster 0 written so an L2 table exists."""
    path = tmp_path / name
    args = ["create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    if backing:
        args += ["-u", "-b", backing, "-F", "qcow2"]
    qemu_img(*args, path, size)
    if data:
        qemu_io(path, "write -P 0x5a 0 64k")
    return str(path)


def get(path, field):
    off, fmt = field
    with open(path, "rb") as f:
        f.seek(off)
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]


def put(path, field, value):
    off, fmt = field
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(struct.pack(fmt, value))


def put_u64(path, off, value):
    put(path, (off, ">Q"), value)


def put_bytes(path, off, data):
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(data)


def set_backing(path, name):
    """Point the header's backing file name at `name`, stored near the end of the header cluster."""
    raw = name.encode()
    off = (1 << get(path, CLUSTER_BITS)) - 1024
    put_bytes(path, off, raw)
    put(path, BACKING_OFF, off)
    put(path, BACKING_LEN, len(raw))


def l2_offset(path, l1_index=0):
    return get(path, (get(path, L1_OFF) + 8 * l1_index, ">Q")) & OFFSET_MASK


def read_range(path, off, n):
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(n)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- running berth --------------------------------------------------------------------------------------------


def refused(vmm, path, words, spec_opts="format=qcow2"):
    """--check and a real start both exit 2 before anything runs, naming the image and the reason."""
    for extra in (["--check"], ["--cpus", "1"]):
        r = run_vmm(extra + ["--disk", f"{path},{spec_opts}"], timeout=60, vm_timeout=30)
        assert r.rc == EXIT_CONFIG, r
        lines = [line for line in r.err.splitlines() if "error" in line]
        assert len(lines) == 1, r
        msg = lines[0]
        assert f"'{path}'" in msg, r
        for w in words:
            assert w in msg, f"{w!r} not in {msg!r}"
        assert "berth-test" not in r.out, r
    return msg


def accepted(vmm, path, spec_opts="format=qcow2"):
    r = run_vmm(["--check", "--disk", f"{path},{spec_opts}"], timeout=60)
    assert r.rc == 0, r


RESULT = re.compile(r"berth-test (\S+) (PASS|FAIL)\b ?(.*)$")


def guest_run(path, tests, timeout=180):
    r = run_vmm(["--disk", f"{path},format=qcow2", "--cpus", "2", "--cmdline", f"test={tests},poweroff"],
                timeout=timeout, vm_timeout=150)
    res = {}
    for line in r.out.replace("\r", "").splitlines():
        m = RESULT.search(line)
        if m:
            res[m.group(1)] = (m.group(2), m.group(3))
    return r, res


def metadata(path):
    """The bytes berth must not change through a data cluster: header, refcount table and L1 clusters."""
    return (read_range(path, 0, CLUSTER), read_range(path, get(path, RT_OFF), CLUSTER),
            read_range(path, get(path, L1_OFF), CLUSTER))


def check_runtime_failure(r, res, path, test, reason_words):
    """The guest saw IOERR and said so; the VMM logged one line naming the image and went on to power off."""
    assert r.rc == 0, r
    assert res.get("poweroff", ("",))[0] == "PASS", r
    status, rest = res.get(test, ("missing", ""))
    assert status == "FAIL", r
    assert "bad-status" in rest and "status=1" in rest, r
    lines = [line for line in r.err.splitlines() if path in line]
    assert len(lines) == 1, r
    assert "read-only" in lines[0], r
    for w in reason_words:
        assert w in lines[0], r


# ---- refused at open ------------------------------------------------------------------------------------------


def test_good_image_is_accepted(vmm, tmp_path):
    accepted(vmm, make(tmp_path))


def test_bad_magic(vmm, tmp_path):
    p = make(tmp_path)
    put(p, MAGIC, 0x514649FC)
    refused(vmm, p, ["not a qcow2 image", "bad magic"])


def test_bad_version(vmm, tmp_path):
    p = make(tmp_path)
    put(p, VERSION, 4)
    refused(vmm, p, ["not a qcow2 image", "version"])


@pytest.mark.parametrize("bits", [8, 22, 0, 63])
def test_cluster_bits(vmm, tmp_path, bits):
    p = make(tmp_path)
    put(p, CLUSTER_BITS, bits)
    refused(vmm, p, [f"cluster_bits {bits}", "outside 9..21"])


def test_l1_past_eof(vmm, tmp_path):
    p = make(tmp_path)
    put(p, L1_OFF, 64 * MB)
    refused(vmm, p, ["L1 table", "past the end of the file"])


def test_l1_unaligned(vmm, tmp_path):
    p = make(tmp_path)
    put(p, L1_OFF, get(p, L1_OFF) + 512)
    refused(vmm, p, ["L1 table offset", "invalid"])


def test_l1_too_small_for_size(vmm, tmp_path):
    p = make(tmp_path)
    put(p, SIZE, 4 << 30)  # 8 L2 tables' worth with 64 KiB clusters; l1_size stays 1
    refused(vmm, p, ["l1_size 1", "does not fit the virtual size"])


def test_l1_too_large(vmm, tmp_path):
    p = make(tmp_path)
    put(p, L1_SIZE, 0x02000000)  # 256 MiB of L1
    refused(vmm, p, ["l1_size 33554432", "does not fit"])


def test_reftable_overlaps_l1(vmm, tmp_path):
    p = make(tmp_path)
    put(p, RT_OFF, get(p, L1_OFF))
    refused(vmm, p, ["metadata overlaps: the L1 table and the refcount table share the cluster at offset 0x30000"])


def test_reftable_unaligned_and_empty(vmm, tmp_path):
    p = make(tmp_path)
    put(p, RT_OFF, get(p, RT_OFF) + 8)
    refused(vmm, p, ["refcount table", "invalid"])
    p = make(tmp_path, "b.qcow2")
    put(p, RT_CLUSTERS, 0)
    refused(vmm, p, ["refcount table", "invalid"])


def test_l2_table_overlaps_header(vmm, tmp_path):
    p = make(tmp_path)
    put_u64(p, get(p, L1_OFF), COPIED | get(p, RT_OFF))  # the L2 table is the refcount table
    refused(vmm, p, ["metadata overlaps: the refcount table and the L2 table of L1 entry 0"])
    put_u64(p, get(p, L1_OFF), COPIED)  # offset 0: unallocated, not the header
    accepted(vmm, p)


def test_l2_table_unaligned(vmm, tmp_path):
    p = make(tmp_path)
    put_u64(p, get(p, L1_OFF), COPIED | (l2_offset(p) + 0x800))
    refused(vmm, p, ["L1 entry 0", "not cluster-aligned"])


def test_two_l2_tables_share_a_cluster(vmm, tmp_path):
    p = make(tmp_path, size="2G")
    put_u64(p, get(p, L1_OFF) + 24, COPIED | l2_offset(p))
    refused(vmm, p, ["the L2 table of L1 entry 0 and the L2 table of L1 entry 3"])


def test_huge_l1_table_opens_quickly(vmm, tmp_path):
    """The largest L1 table berth accepts (32 MiB, 4M entries) naming L2 tables in descending order: checking
    them for overlaps must not take quadratic time (it took minutes), nor must refusing a duplicate among them."""
    p = make(tmp_path, data=False)
    n = 1 << 22
    put(p, SIZE, n << 29)
    put(p, L1_SIZE, n)
    l1 = get(p, L1_OFF)
    base = l1 + n * 8 + CLUSTER
    entries = bytearray(n * 8)
    for i in range(n):
        struct.pack_into(">Q", entries, 8 * i, COPIED | (base + (n - i) * CLUSTER))
    put_bytes(p, l1, entries)
    for spec in ("format=qcow2", "format=qcow2,readonly"):
        r = run_vmm(["--check", "--disk", f"{p},{spec}"], timeout=30)
        assert r.rc == 0, r
    put_u64(p, l1 + 8 * (n - 1), COPIED | (base + 7 * CLUSTER))
    refused(vmm, p, ["metadata overlaps", f"L1 entry {n - 7}", f"L1 entry {n - 1}"])


def test_refcount_block_unaligned(vmm, tmp_path):
    p = make(tmp_path)
    rt = get(p, RT_OFF)
    put_u64(p, rt, get(p, (rt, ">Q")) + 0x1000)
    refused(vmm, p, ["refcount table entry 0", "not cluster-aligned"])


@pytest.mark.parametrize("bit,words", [
    (9, ["unsupported incompatible feature bit 9"]),
    (63, ["unsupported incompatible feature bit 63"]),
    (4, ["incompatible feature bit 4", "extended L2"]),
    (2, ["incompatible feature bit 2", "external data file"]),
    (3, ["incompatible feature bit 3", "compression type"]),
])
def test_incompatible_features(vmm, tmp_path, bit, words):
    p = make(tmp_path)
    put(p, INCOMPAT, 1 << bit)
    refused(vmm, p, words)
    refused(vmm, p, words, "format=qcow2,readonly")  # unknown features are refused read-only too


def test_encrypted(vmm, tmp_path):
    for method in (1, 2):  # AES, LUKS
        p = make(tmp_path, f"e{method}.qcow2")
        put(p, CRYPT, method)
        refused(vmm, p, ["encrypted images are not supported"])


@pytest.mark.parametrize("length", [100, 105, 96, 0x20000])
def test_header_length_invalid(vmm, tmp_path, length):
    p = make(tmp_path)
    put(p, HEADER_LEN, length)
    refused(vmm, p, [f"header_length {length} is invalid"])


def test_refcount_order_invalid(vmm, tmp_path):
    p = make(tmp_path)
    put(p, REFCOUNT_ORDER, 7)
    refused(vmm, p, ["refcount_order 7"])


def test_virtual_size_invalid(vmm, tmp_path):
    p = make(tmp_path)
    put(p, SIZE, 1 << 63)
    refused(vmm, p, ["virtual size", "invalid"])


def test_backing_name_too_long(vmm, tmp_path):
    p = make(tmp_path)
    put_bytes(p, 0x1000, b"a" * 2000)
    put(p, BACKING_OFF, 0x1000)
    put(p, BACKING_LEN, 2000)
    refused(vmm, p, ["backing file name", "2000 bytes", "invalid"])


def test_backing_name_past_cluster(vmm, tmp_path):
    p = make(tmp_path)
    put(p, BACKING_OFF, CLUSTER - 8)
    put(p, BACKING_LEN, 16)
    refused(vmm, p, ["backing file name", "invalid"])
    put(p, BACKING_OFF, 1 << 40)
    put(p, BACKING_LEN, 4)
    refused(vmm, p, ["backing file name", "invalid"])


def test_backing_name_with_nul(vmm, tmp_path):
    p = make(tmp_path)
    put_bytes(p, 0x1000, b"ab\0cd")
    put(p, BACKING_OFF, 0x1000)
    put(p, BACKING_LEN, 5)
    refused(vmm, p, ["backing file name contains a NUL"])


def test_backing_missing(vmm, tmp_path):
    p = make(tmp_path, backing="nothere.qcow2", data=False)
    refused(vmm, p, ["backing file", "nothere.qcow2", "No such file"])


def test_backing_loop(vmm, tmp_path):
    a = make(tmp_path, "a.qcow2", backing="b.qcow2", data=False)
    b = make(tmp_path, "b.qcow2", backing="a.qcow2", data=False)
    refused(vmm, a, [f"'{b}'", "loops back into its own chain"])
    refused(vmm, a, ["loops back"], "format=qcow2,readonly")


def test_backing_self_loop(vmm, tmp_path):
    a = make(tmp_path, "a.qcow2", data=False)
    set_backing(a, "a.qcow2")
    refused(vmm, a, ["backing file", "loops back into its own chain"])
    # the same file under another name is the same loop
    os.link(a, tmp_path / "alias.qcow2")
    set_backing(a, "alias.qcow2")
    refused(vmm, a, ["alias.qcow2", "loops back"])


def test_backing_chain_depth(vmm, tmp_path):
    """64 images open; a 65th is refused (the limit also ends loops no identity check would see)."""
    prev = make(tmp_path, "img0.qcow2", data=False)
    for i in range(1, 65):
        prev = make(tmp_path, f"img{i}.qcow2", backing=f"img{i - 1}.qcow2", data=False)
    accepted(vmm, str(tmp_path / "img63.qcow2"))
    refused(vmm, prev, ["backing chain deeper than 64 images"])


def bitmaps_extension(path):
    """Offset of the bitmaps extension's data in the header cluster."""
    p = get(path, HEADER_LEN)
    while True:
        kind, length = get(path, (p, ">I")), get(path, (p + 4, ">I"))
        assert kind, "no bitmaps extension"
        if kind == 0x23852875:
            return p + 8
        p += 8 + ((length + 7) & ~7)


def test_bitmap_directory_entry_padding_past_the_end(vmm, tmp_path):
    """Two bitmap directory entries; the first ends 7 bytes before the directory does, so its padding runs
    past it. The parser must stop there, not wrap the room left and read the second entry's huge extra data
    (that read went far outside the directory buffer: SIGSEGV, even in --check)."""
    p = make(tmp_path)
    qemu_img("bitmap", "--add", p, "b0")
    ext = bitmaps_extension(p)
    doff = get(p, (ext + 16, ">Q"))
    entry = read_range(p, doff, 24)
    toff, tsize, flags, kind, gran = struct.unpack(">QIIBB", entry[:18])
    first = struct.pack(">QIIBBHI", toff, tsize, flags, kind, gran, 2, 23) + bytes(23) + b"b0"  # 49 bytes
    second = struct.pack(">QIIBBHI", toff, tsize, flags, kind, gran, 1, 0x1000000) + b"x"
    put_bytes(p, doff, first + bytes(7) + second)
    put_bytes(p, ext, struct.pack(">IIQ", 2, 0, 49))
    refused(vmm, p, ["dirty bitmaps", "directory entry name or extra data is invalid"])
    refused(vmm, p, ["dirty bitmaps"], "format=qcow2,readonly")


@pytest.mark.parametrize("field,value,words", [
    (16, 0x1008, ["the bitmaps extension is invalid"]),          # directory offset unaligned
    (16, 1 << 40, ["the directory lies past the end of the file"]),
    (8, 0x4000008, ["the bitmaps extension is invalid"]),         # directory above 64 MiB
])
def test_bitmaps_extension_invalid(vmm, tmp_path, field, value, words):
    """A refused open must write nothing back (closing the half-open image stored bitmaps from a table that
    was never read: SIGSEGV when berth started with such a disk)."""
    p = make(tmp_path)
    qemu_img("bitmap", "--add", p, "b0")
    put_u64(p, bitmaps_extension(p) + field, value)
    before = digest(p)
    refused(vmm, p, ["dirty bitmaps"] + words)
    assert digest(p) == before, "a refused image changed"


def test_bitmap_table_on_refcount_table(vmm, tmp_path):
    p = make(tmp_path)
    qemu_img("bitmap", "--add", p, "b0")
    put_u64(p, get(p, (bitmaps_extension(p) + 16, ">Q")), get(p, RT_OFF))
    refused(vmm, p, ["dirty bitmaps", "overlaps other metadata", f"offset {get(p, RT_OFF):#x}"])


def test_huge_bitmap_table_opens_quickly(vmm, tmp_path):
    """A bitmap table of 2^17 data clusters in descending order (a 2 TiB disk, 4 KiB clusters, 512-byte
    granularity; not recorded, so never read): adding them to the overlap set must not take quadratic time."""
    p = make(tmp_path, size="2T", opts="cluster_size=4096", data=False)
    qemu_img("bitmap", "--add", p, "b0")
    doff = get(p, (bitmaps_extension(p) + 16, ">Q"))
    n = 1 << 17
    table = (os.path.getsize(p) + 4095) & ~4095
    base = table + n * 8 + (1 << 30)
    put_bytes(p, table, b"".join(struct.pack(">Q", base + (n - i) * 4096) for i in range(n)))
    put_bytes(p, doff, struct.pack(">QIIBB", table, n, 0, 1, 9))  # flags 0: not recorded
    r = run_vmm(["--check", "--disk", f"{p},format=qcow2"], timeout=20)
    assert r.rc == 0, r


def test_bitmap_too_large_to_record(vmm, tmp_path):
    """A recorded (auto) bitmap with 512-byte granularity on a 5 TiB disk: 1.25 GiB of bits in memory.
    Refused writable (berth would allocate and zero it at open); read-only berth does not record it."""
    p = make(tmp_path, size="5T", data=False)
    qemu_img("bitmap", "--add", p, "b0")
    doff = get(p, (bitmaps_extension(p) + 16, ">Q"))
    n = (5 << 40) // 512 // 8 // CLUSTER
    table = (os.path.getsize(p) + CLUSTER - 1) & ~(CLUSTER - 1)
    put_bytes(p, table, bytes(n * 8))
    put_bytes(p, doff, struct.pack(">QIIBB", table, n, 2, 1, 9))  # auto, dirty-tracking, 2^9
    refused(vmm, p, ["dirty bitmaps", "recording needs more than 1 GiB"])
    accepted(vmm, p, "format=qcow2,readonly")


def test_bitmap_data_past_eof(vmm, tmp_path):
    """A recorded bitmap's data cluster lies past the end of the file: refused with a message, by --check as
    by a real start (--check said the disk was fine, and the start then failed with exit status 1)."""
    p = make(tmp_path, data=False)
    qemu_img("bitmap", "--add", p, "b0")
    qemu_io(p, "write -P 0x5a 0 64k")  # recorded in b0, stored at close
    table = get(p, (get(p, (bitmaps_extension(p) + 16, ">Q")), ">Q"))
    assert get(p, (table, ">Q")), "qemu stored no bitmap data"
    put_u64(p, table, 1 << 40)
    before = digest(p)
    refused(vmm, p, ["dirty bitmaps", "bitmap data past the end of the file"])
    assert digest(p) == before, "a refused image changed"
    accepted(vmm, p, "format=qcow2,readonly")  # read-only, berth leaves bitmaps alone
    put_u64(p, table, 0)  # back to a valid (empty) chunk: --check loads it and changes nothing
    before = digest(p)
    accepted(vmm, p)
    assert digest(p) == before, "--check changed the image"


@pytest.mark.parametrize("bit,word", [(0, "dirty"), (1, "corrupt")])
def test_dirty_or_corrupt_writable(vmm, tmp_path, bit, word):
    p = make(tmp_path)
    put(p, INCOMPAT, 1 << bit)
    refused(vmm, p, [f"marked {word}", "qemu-img check -r all", "read-only"])
    accepted(vmm, p, "format=qcow2,readonly")


def test_internal_snapshots_writable(vmm, tmp_path):
    p = make(tmp_path)
    qemu_img("snapshot", "-c", "snap1", p)
    refused(vmm, p, ["1 internal snapshot(s)", "read-only"])
    accepted(vmm, p, "format=qcow2,readonly")


def test_bad_magic_probed_as_raw(vmm, tmp_path):
    """Without format=qcow2 a damaged header is just a raw disk: no error, by design."""
    p = make(tmp_path)
    put(p, MAGIC, 0)
    accepted(vmm, p, "format=auto")


# ---- hostile inside: the disk fails cleanly at run time ---------------------------------------------------------


def l2_entry(path, guest_cluster):
    return l2_offset(path) + 8 * guest_cluster


@pytest.mark.parametrize("target", ["l1", "refcount-table", "refcount-block", "l2-itself"])
def test_data_cluster_on_metadata(berth, tmp_path, target):
    """An L2 entry maps guest cluster 3 onto a metadata cluster (COPIED, so writable in place): the guest's
    write there fails, the disk goes read-only, and the metadata is untouched."""
    p = make(tmp_path)
    meta = {"l1": get(p, L1_OFF), "refcount-table": get(p, RT_OFF),
            "refcount-block": get(p, (get(p, RT_OFF), ">Q")) & OFFSET_MASK, "l2-itself": l2_offset(p)}[target]
    put_u64(p, l2_entry(p, 3), COPIED | meta)
    before, meta_before = metadata(p), read_range(p, meta, CLUSTER)
    r, res = guest_run(p, "blk")
    check_runtime_failure(r, res, p, "blk", ["data cluster overlaps metadata", "corrupt"])
    assert metadata(p) == before, "header, refcount table or L1 table changed"
    assert read_range(p, meta, CLUSTER) == meta_before, f"the {target} cluster changed"


@pytest.mark.parametrize("target", ["l1", "refcount-table", "refcount-block", "l2-itself"])
def test_shared_data_cluster_on_metadata(berth, tmp_path, target):
    """The same, with COPIED clear: the guest's write goes to a new cluster, and dropping the reference the
    old entry held must not free the metadata cluster (its refcount went to 0 and the file system got its
    space back: the table read as zeroes)."""
    p = make(tmp_path)
    meta = {"l1": get(p, L1_OFF), "refcount-table": get(p, RT_OFF),
            "refcount-block": get(p, (get(p, RT_OFF), ">Q")) & OFFSET_MASK, "l2-itself": l2_offset(p)}[target]
    put_u64(p, l2_entry(p, 3), meta)
    before, meta_before = metadata(p), read_range(p, meta, CLUSTER)
    r, res = guest_run(p, "blk")
    check_runtime_failure(r, res, p, "blk", ["cluster to free is free or metadata"])
    assert metadata(p) == before, "header, refcount table or L1 table changed"
    assert read_range(p, meta, CLUSTER) == meta_before, f"the {target} cluster changed"


def test_compressed_cluster_on_header(berth, tmp_path):
    """A compressed L2 entry whose data would lie in the header cluster: overwriting it drops the references
    compressed data holds, which must not free the header."""
    p = make(tmp_path)
    x = 62 - (16 - 8)  # 64 KiB clusters: host offset in bits 0..53, extra sectors above
    put_u64(p, l2_entry(p, 3), 1 << 62 | 0 << x | 0x200)
    before = metadata(p)
    r, res = guest_run(p, "blk")
    check_runtime_failure(r, res, p, "blk", ["freed compressed data is free or metadata"])
    assert metadata(p) == before, "header, refcount table or L1 table changed"


def test_data_cluster_into_header(berth, tmp_path):
    """A data cluster offset inside the header cluster (not cluster-aligned): reads and writes fail."""
    p = make(tmp_path)
    put_u64(p, l2_entry(p, 0), COPIED | 0x200)
    before = digest(p)
    r, res = guest_run(p, "blk-verify,blk")
    check_runtime_failure(r, res, p, "blk-verify", ["unaligned data cluster offset"])
    assert res.get("blk", ("",))[0] == "FAIL", r
    assert digest(p) == before, "the image changed"


def test_l2_table_past_eof(berth, tmp_path):
    """L1 points at an L2 table beyond the end of the file: reads fail cleanly, then writes are refused."""
    p = make(tmp_path)
    put_u64(p, get(p, L1_OFF), COPIED | 256 * MB)
    before = digest(p)
    r, res = guest_run(p, "blk-verify,blk")
    check_runtime_failure(r, res, p, "blk-verify", ["L2 table offset invalid"])
    status, rest = res.get("blk", ("missing", ""))
    assert status == "FAIL" and "status=1" in rest, r
    assert digest(p) == before, "the image changed"


def test_refcount_block_past_eof(berth, tmp_path):
    """The refcount block lies beyond the end of the file: the image opens and reads work, the first
    allocating write fails, the disk goes read-only, and the header and tables stay as they were."""
    p = make(tmp_path)
    put_u64(p, get(p, RT_OFF), 256 * MB)
    before = metadata(p)
    r, res = guest_run(p, "blk")
    check_runtime_failure(r, res, p, "blk", ["corrupt"])
    assert metadata(p) == before, "header, refcount table or L1 table changed"


def test_refcount_underflow(berth, tmp_path):
    """Guest cluster 0 maps a shared-looking data cluster (COPIED clear) whose refcount is already 0: the
    guest's overwrite copies it, dropping the reference finds nothing to drop, and the disk goes read-only."""
    p = make(tmp_path)
    entry = get(p, (l2_entry(p, 0), ">Q"))
    put_u64(p, l2_entry(p, 0), entry & ~COPIED)
    host_cluster = (entry & OFFSET_MASK) // CLUSTER
    rb = get(p, (get(p, RT_OFF), ">Q")) & OFFSET_MASK
    assert get(p, (rb + 2 * host_cluster, ">H")) == 1  # 16-bit refcounts
    put(p, (rb + 2 * host_cluster, ">H"), 0)
    before = metadata(p)
    r, res = guest_run(p, "blk")
    check_runtime_failure(r, res, p, "blk", ["cluster to free is free or metadata"])
    assert metadata(p) == before, "header, refcount table or L1 table changed"


def test_l2_table_named_past_eof_is_never_allocated(berth, tmp_path):
    """L1 names an L2 table in the first cluster past the end of the file (512-byte clusters, far from where the
    guest starts writing). berth must not hand that cluster out for data or other metadata when the file grows:
    the guest's disk test passes, and the cluster ends up holding L2 entries, never guest data."""
    p = make(tmp_path, opts="cluster_size=512", data=False)
    qemu_io(p, "write -P 0x5a 0 512")
    eof = os.path.getsize(p)
    assert eof % 512 == 0
    put_u64(p, get(p, L1_OFF) + 8 * 400, COPIED | eof)  # guest bytes 12.5 MiB..
    r, res = guest_run(p, "blk")
    assert r.rc == 0 and res.get("blk", ("",))[0] == "PASS", r
    entries = struct.unpack(">64Q", read_range(p, eof, 512))
    assert any(entries), "the L2 table was never written"
    for e in entries:
        assert e == 0 or (e & COPIED and (e & OFFSET_MASK) % 512 == 0 and e & OFFSET_MASK < os.path.getsize(p)
                          and not e & ~(COPIED | OFFSET_MASK)), f"not an L2 entry: {e:#x}"


def test_good_image_runs(berth, tmp_path):
    """The control: the same kind of image, unedited, passes the guest's disk test and stays consistent."""
    p = make(tmp_path)
    r, res = guest_run(p, "blk")
    assert r.rc == 0 and res.get("blk", ("",))[0] == "PASS", r
    subprocess.run([QEMU_IMG, "check", p], check=True, capture_output=True)
