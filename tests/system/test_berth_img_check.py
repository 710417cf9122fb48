"""berth-img check against qemu-img check: the same exit status (0 clean, 1 incomplete,
2 corruptions, 3 leaks) and the same counts, on clean images of every kind and on images whose
metadata the tests break byte by byte."""
import json
import os
import pytest

from imgutil import img, run, qemu_io, berth_check, assert_checks_agree, Qcow2

CS = 65536
COPIED = 1 << 63


def qcreate(path, size="64M", opts=None, backing=None, bfmt="qcow2"):
    args = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if opts:
        args += ["-o", opts]
    if backing:
        args += ["-b", backing, "-F", bfmt]
    r = run(*args, path, *([size] if size else []))
    assert r.returncode == 0, r.stderr


# ---- clean images ----

def make_written(p):
    qcreate(p)
    qemu_io(p, "write -P 0xaa 0 1M", "write -P 0xbb 10M 300K", "write -z 20M 1M",
            "discard 512K 128K")


def make_berth_created(p):
    assert img("create", "-q", "-f", "qcow2", "-o", "cluster_size=4K", p, "32M").returncode == 0
    qemu_io(p, "write -P 0xaa 0 1M", "write -P 1 31M 1M")


def make_v2(p):
    qcreate(p, opts="compat=0.10,cluster_size=512")
    qemu_io(p, "write -P 0xaa 0 1M", "write -P 2 5M 3K")


def make_refcount_widths(p):
    qcreate(p, opts="refcount_bits=1,cluster_size=4K")
    qemu_io(p, "write -P 0xaa 0 3M")


def make_refcount64(p):
    qcreate(p, opts="refcount_bits=64,cluster_size=1K")
    qemu_io(p, "write -P 0xaa 0 3M")


def make_compressed(p):
    raw = str(p) + ".src"
    with open(raw, "wb") as f:
        f.write(os.urandom(2 << 20) + b"compressible" * 200000)
        f.truncate(8 << 20)
    assert run("qemu-img", "convert", "-c", "-O", "qcow2", "-f", "raw", raw, p).returncode == 0


def make_snapshots(p):
    qcreate(p)
    qemu_io(p, "write -P 1 0 1M")
    assert run("qemu-img", "snapshot", "-c", "s1", p).returncode == 0
    qemu_io(p, "write -P 2 0 256K", "write -P 3 30M 64K")
    assert run("qemu-img", "snapshot", "-c", "s2", p).returncode == 0
    qemu_io(p, "write -P 4 128K 64K")


def make_bitmaps(p):
    qcreate(p)
    assert run("qemu-img", "bitmap", "--add", p, "b0").returncode == 0
    assert run("qemu-img", "bitmap", "--add", "-g", "4K", p, "b1").returncode == 0
    qemu_io(p, "write -P 1 0 8M")


def make_extended_l2(p):
    qcreate(p, opts="extended_l2=on,cluster_size=128K")
    qemu_io(p, "write -P 1 0 4K", "write -P 2 1M 300K", "write -z 3M 128K")


def make_overlay(p):
    base = str(p) + ".base"
    make_written(base)
    qcreate(p, size=None, backing=base)
    qemu_io(p, "write -P 0xcc 64K 8K", "write -z 10M 64K")


def make_lazy_dirty(p):
    """lazy_refcounts with qemu-io killed before it wrote refcounts back: marked dirty."""
    qcreate(p, opts="lazy_refcounts=on")
    r = run("qemu-io", "-c", "write -P 5 0 1M", "-c", "abort", p)
    assert r.returncode != 0


CLEAN = [make_written, make_berth_created, make_v2, make_refcount_widths, make_refcount64,
         make_compressed, make_snapshots, make_bitmaps, make_extended_l2, make_overlay]


@pytest.mark.parametrize("make", CLEAN, ids=[m.__name__[5:] for m in CLEAN])
def test_clean_images_agree(berth_img, qemu_img, tmp_path, make):
    p = tmp_path / "img.qcow2"
    make(p)
    rc, b, err = assert_checks_agree(p)
    assert rc == 0 and err == "", err
    r = img("check", p)
    assert r.stdout.startswith("No errors were found on the image.\n"), r.stdout
    assert "Image end offset: " in r.stdout


def test_dirty_image_agrees(berth_img, qemu_img, tmp_path):
    p = tmp_path / "dirty.qcow2"
    make_lazy_dirty(p)
    rc, b, err = assert_checks_agree(p)
    assert b["dirty-flag"] is True and "marked dirty" in err


# ---- broken images: each function breaks a copy of one base image ----

@pytest.fixture
def base(qemu_img, tmp_path):
    """64 MiB, 64 KiB clusters, 1 MiB written at 0 (16 data clusters) and 64 KiB at 32 MiB."""
    p = tmp_path / "img.qcow2"
    qcreate(p)
    qemu_io(p, "write -P 0xaa 0 1M", "write -P 0xbb 32M 64K")
    return Qcow2(p)


def leak_refcount_raised(q):
    with open(q.path, "r+b") as f:
        f.truncate(os.path.getsize(q.path) + 3 * CS)
    n = q.file_clusters()
    q.set_refcount(n - 3, 1)
    q.set_refcount(n - 1, 7)


def leak_entry_dropped(q):
    q.put64(q.l2_entry_off(64 * 1024), 0)


def leak_l1_entry_dropped(q):
    """Metadata cut off: the L2 table and all 16 data clusters it maps are leaked."""
    q.put64(q.l1_entry_off(0), 0)


def leak_shared_cluster_counted_twice(q):
    q.set_refcount(q.host(0) // CS, 2)  # also a wrong COPIED flag: a corruption too


def corrupt_refcount_zero_data(q):
    q.set_refcount(q.host(0) // CS, 0)


def corrupt_refcount_zero_l2(q):
    q.set_refcount((q.u64(q.l1_entry_off(0)) & 0x00FFFFFFFFFFFE00) // CS, 0)


def corrupt_refcount_zero_l1(q):
    q.set_refcount(q.l1_offset // CS, 0)


def corrupt_refcount_zero_reftable(q):
    q.set_refcount(q.rt_offset // CS, 0)


def corrupt_past_eof(q):
    q.put64(q.l2_entry_off(3 * CS), COPIED | (1000 * CS))


def corrupt_l2_table_past_eof(q):
    q.put64(q.l1_entry_off(32 << 20), COPIED | (5000 * CS))


def corrupt_two_entries_one_cluster(q):
    q.put64(q.l2_entry_off(CS), COPIED | q.host(0))


def corrupt_entry_points_at_l1(q):
    q.put64(q.l2_entry_off(2 * CS), COPIED | q.l1_offset)


def corrupt_entry_points_at_refblock(q):
    q.put64(q.l2_entry_off(2 * CS), COPIED | q.refcount_off(0) & ~(CS - 1))


def corrupt_l2_table_is_the_reftable(q):
    q.put64(q.l1_entry_off(32 << 20), COPIED | q.rt_offset)


def corrupt_unaligned_data(q):
    q.put64(q.l2_entry_off(CS), COPIED | (q.host(CS) + 512))


def corrupt_unaligned_l2_table(q):
    q.put64(q.l1_entry_off(0), q.u64(q.l1_entry_off(0)) + 512)


def corrupt_copied_missing(q):
    q.put64(q.l2_entry_off(0), q.host(0))


def corrupt_copied_missing_l1(q):
    q.put64(q.l1_entry_off(0), q.u64(q.l1_entry_off(0)) & ~COPIED)


def corrupt_reserved_bits(q):
    q.put64(q.l2_entry_off(0), q.u64(q.l2_entry_off(0)) | (1 << 57))
    q.put64(q.l1_entry_off(0), q.u64(q.l1_entry_off(0)) | 2)


def corrupt_refblock_past_eof(q):
    q.put64(q.rt_offset + 8, 9999 * CS)


def corrupt_refblock_shared_with_l1(q):
    q.put64(q.rt_offset + 8, q.l1_offset)


def incomplete_refblock_unaligned(q):
    q.put64(q.rt_offset, q.u64(q.rt_offset) + 512)


def truncated_file(q):
    with open(q.path, "r+b") as f:
        f.truncate(q.host(0) + 5 * CS)


BROKEN = [  # (function, exit status both tools must give)
    (leak_refcount_raised, 3), (leak_entry_dropped, 3), (leak_l1_entry_dropped, 3),
    (leak_shared_cluster_counted_twice, 2),
    (corrupt_refcount_zero_data, 2), (corrupt_refcount_zero_l2, 2), (corrupt_refcount_zero_l1, 2),
    (corrupt_refcount_zero_reftable, 2), (corrupt_past_eof, 2), (corrupt_l2_table_past_eof, 2),
    (corrupt_two_entries_one_cluster, 2), (corrupt_entry_points_at_l1, 2),
    (corrupt_entry_points_at_refblock, 2), (corrupt_l2_table_is_the_reftable, 2),
    (corrupt_unaligned_data, 2), (corrupt_unaligned_l2_table, 2), (corrupt_copied_missing, 2),
    (corrupt_copied_missing_l1, 2), (corrupt_reserved_bits, 2), (corrupt_refblock_past_eof, 2),
    (corrupt_refblock_shared_with_l1, 2), (incomplete_refblock_unaligned, 1), (truncated_file, 2),
]


@pytest.mark.parametrize("breakit,status", BROKEN, ids=[b[0].__name__ for b in BROKEN])
def test_broken_images_agree(berth_img, base, breakit, status):
    breakit(base)
    rc, b, err = assert_checks_agree(base.path)
    assert rc == status, err
    kinds = {line.split(":")[0] for line in err.splitlines()}
    assert kinds <= {"corruption", "leak", "check error"}, err
    assert ("leak" in kinds) == (b["leaks"] > 0) and ("corruption" in kinds) == (b["corruptions"] > 0)


@pytest.mark.parametrize("breakit,words", [
    (corrupt_refcount_zero_data, ["cluster 5 (offset 0x50000): refcount 0 is lower than its 1",
                                  "the COPIED flag is set but the refcount of cluster 5 is 0"]),
    (corrupt_past_eof, ["L2 entry for guest offset 0x30000", "lies past the end of the file"]),
    (corrupt_two_entries_one_cluster, ["refcount 1 is lower than its 2 reference(s)",
                                       "cluster 6 (offset 0x60000): refcount 1 but 0 reference"]),
    (corrupt_entry_points_at_l1, ["overlap: used as L1 table and data"]),
    (corrupt_l2_table_is_the_reftable, ["overlap: used as L2 table and refcount table"]),
    (corrupt_refblock_shared_with_l1, ["refcount block 1 at 0x30000: its cluster has 2 references",
                                       "used as L1 table and refcount block"]),
    (corrupt_unaligned_data, ["data cluster offset 0x60200 is not cluster-aligned"]),
    (corrupt_reserved_bits, ["L1 entry 0 (0x8000000000040002): reserved bits",
                             "(0x8200000000050000): reserved bits are set"]),
    (incomplete_refblock_unaligned, ["corruption: refcount table entry 0 (0x0000000000020200): "
                                     "refcount block offset is not cluster-aligned",
                                     "check error: cannot read the refcount of cluster 0: refcount "
                                     "block 0 (0x0000000000020200) is not cluster-aligned"]),
])
def test_problem_messages(berth_img, base, breakit, words):
    breakit(base)
    rc, b, err = berth_check(base.path)
    for w in words:
        assert w in err, f"{w!r} not in\n{err}"


def test_human_summaries(berth_img, base):
    leak_entry_dropped(base)
    r = img("check", base.path)
    assert r.returncode == 3
    assert "\n1 leaked clusters were found on the image.\n" in r.stdout
    assert "errors were found" not in r.stdout
    corrupt_refcount_zero_l1(base)
    r = img("check", base.path)
    assert r.returncode == 2
    assert "\n1 errors were found on the image.\n" in r.stdout and "1 leaked clusters" in r.stdout
    q = img("check", "-q", base.path)
    assert q.returncode == 2 and q.stderr == ""
    incomplete_refblock_unaligned(base)
    r = img("check", base.path)
    assert r.returncode == 1 and "The check could not complete" in r.stdout


def test_snapshot_refcounts(berth_img, qemu_img, tmp_path):
    """A cluster shared with a snapshot needs refcount 2; 1 is a corruption (and COPIED is wrong)."""
    p = tmp_path / "s.qcow2"
    make_snapshots(p)
    q = Qcow2(p)
    shared = q.host(512 * 1024)  # written before s1, never since
    assert q.refcount(shared // CS) == 3
    q.set_refcount(shared // CS, 1)
    rc, b, err = assert_checks_agree(p)
    assert rc == 2 and b["corruptions"] == 2


def test_bitmaps_become_leaks_when_inconsistent(berth_img, qemu_img, tmp_path):
    """Clearing the autoclear bit (as a writer without bitmap support must) makes the bitmaps'
    clusters unreferenced: leaks, for both tools."""
    p = tmp_path / "b.qcow2"
    make_bitmaps(p)
    Qcow2(p).put64(88, 0)
    rc, b, err = assert_checks_agree(p)
    assert rc == 3 and b["leaks"] >= 3


def test_many_problems_are_capped(berth_img, qemu_img, tmp_path):
    p = tmp_path / "m.qcow2"
    qcreate(p, opts="cluster_size=512", size="16M")
    qemu_io(p, "write -P 1 0 2M")
    q = Qcow2(p)
    rb = q.refcount_off(0) & ~511
    for i in range(1, 64):  # every refcount block after the first now covers nothing
        if q.u64(q.rt_offset + 8 * i):
            q.put64(q.rt_offset + 8 * i, 0)
    rc, b, err = assert_checks_agree(p)
    assert rc == 2 and b["corruptions"] > 1000
    assert err.count("\n") == 1001 and "more problems not shown" in err
    assert rb


def test_raw_is_not_checked(berth_img, tmp_path):
    p = tmp_path / "d.raw"
    assert img("create", "-q", p, "1M").returncode == 0
    r = img("check", p)
    assert r.returncode == 0 and "check is not supported for raw images" in r.stdout
    r = img("check", "--json", p)
    assert r.returncode == 0
    assert json.loads(r.stdout) == {"filename": str(p), "format": "raw", "supported": False,
                                    "check-errors": 0, "corruptions": 0, "leaks": 0}
    q = tmp_path / "q.qcow2"
    assert img("create", "-q", "-f", "qcow2", q, "1M").returncode == 0
    assert "not supported for raw" in img("check", "-f", "raw", q).stdout


def test_check_is_read_only(berth_img, base):
    corrupt_two_entries_one_cluster(base)
    before = open(base.path, "rb").read()
    mtime = os.stat(base.path).st_mtime_ns
    assert img("check", base.path).returncode == 2
    assert open(base.path, "rb").read() == before and os.stat(base.path).st_mtime_ns == mtime
