"""berth-img create and info against qemu-img as the oracle; the command line (help, version,
errors that name the argument, exit statuses). The check subcommand: test_berth_img_check.py."""
import json
import os
import pytest

from imgutil import img, run, qemu_io, qemu_info, berth_info, Qcow2


def expect_error(r, *words):
    assert r.returncode == 1, r
    assert r.stderr.startswith("berth-img: error: "), r.stderr
    for w in words:
        assert w in r.stderr, f"{w!r} not in {r.stderr!r}"
    assert r.stdout == "", r.stdout


# ---- the command line ----

def test_help_and_version(berth_img):
    r = img("--help")
    assert r.returncode == 0
    for w in ("create", "info", "check", "Exit status", "leaked"):
        assert w in r.stdout
    r = img("--version")
    assert r.returncode == 0 and r.stdout.startswith("berth-img ")
    for cmd in ("create", "info", "check"):
        for how in ([cmd, "--help"], ["help", cmd], [cmd, "-h"]):
            r = img(*how)
            assert r.returncode == 0 and r.stdout.startswith(f"Usage: berth-img {cmd}"), how
    assert img().returncode == 1


@pytest.mark.parametrize("args,words", [
    (["frobnicate"], ["unknown command 'frobnicate'"]),
    (["--frobnicate"], ["unknown option '--frobnicate'"]),
    (["help", "frobnicate"], ["unknown command 'frobnicate'"]),
    (["info"], ["info: PATH is missing"]),
    (["check"], ["check: PATH is missing"]),
    (["create"], ["create: PATH is missing"]),
    (["info", "--frobnicate", "x"], ["info: unknown option '--frobnicate'"]),
    (["check", "-z", "x"], ["check: unknown option '-z'"]),
    (["info", "-f"], ["info: option '-f' needs a value"]),
    (["info", "--json=yes", "x"], ["option takes no value", "--json"]),
    (["info", "-f", "vmdk", "x"], ["-f 'vmdk': unknown format"]),
    (["check", "--output", "xml", "x"], ["--output 'xml'", "human", "json"]),
    (["info", "a", "b"], ["unexpected argument 'b'"]),
    (["info", "/nonexistent/disk.img"], ["'/nonexistent/disk.img'", "No such file"]),
    (["check", "/nonexistent/disk.img"], ["'/nonexistent/disk.img'", "No such file"]),
])
def test_bad_arguments(berth_img, args, words):
    expect_error(img(*args), *words)


# ---- create ----

@pytest.mark.parametrize("cs", [512, 4096, 65536, 2 << 20])
@pytest.mark.parametrize("size", ["1M", "100M", "3G", "1000", "0"])
def test_create_qcow2_passes_qemu_check(berth_img, qemu_img, tmp_path, cs, size):
    p = tmp_path / "d.qcow2"
    r = img("create", "-f", "qcow2", "-o", f"cluster_size={cs}", p, size)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"Created '{p}': qcow2")
    q = run("qemu-img", "check", p)
    assert q.returncode == 0 and "No errors were found" in q.stdout, q.stdout + q.stderr
    info = qemu_info(p)
    want = {"1M": 1 << 20, "100M": 100 << 20, "3G": 3 << 30, "1000": 1024, "0": 0}[size]
    assert (info["format"], info["virtual-size"], info["cluster-size"]) == ("qcow2", want, cs)
    assert info["format-specific"]["data"]["compat"] == "1.1"
    assert img("check", p).returncode == 0


def test_create_large_images(berth_img, qemu_img, tmp_path):
    for cs, size in [(512, "128G"), (65536, "16T"), (2 << 20, "64T")]:
        p = tmp_path / f"big-{cs}.qcow2"
        assert img("create", "-q", "-f", "qcow2", "-o", f"cluster_size={cs}", p, size).returncode == 0
        assert run("qemu-img", "check", "-q", p).returncode == 0
        assert qemu_info(p)["virtual-size"] == berth_info(p)["virtual-size"]
    expect_error(img("create", "-f", "qcow2", "-o", "cluster_size=512", tmp_path / "x", "129G"),
                 "SIZE 129 GiB is too large for cluster_size 512", "at most 128 GiB")
    assert not (tmp_path / "x").exists()


def test_create_raw_is_sparse(berth_img, qemu_img, tmp_path):
    p = tmp_path / "d.raw"
    assert img("create", p, "1G").returncode == 0  # raw is the default without -b
    st = os.stat(p)
    assert st.st_size == 1 << 30 and st.st_blocks * 512 < (1 << 20)
    q = qemu_info(p)
    assert (q["format"], q["virtual-size"]) == ("raw", 1 << 30)
    b = berth_info(p)
    for k in ("format", "virtual-size", "actual-size", "dirty-flag"):
        assert b[k] == q[k], k
    p2 = tmp_path / "odd.raw"
    assert img("create", "-f", "raw", p2, "1000").returncode == 0
    assert os.path.getsize(p2) == 1024  # rounded up to a sector, as qemu-img does


def test_create_never_overwrites(berth_img, tmp_path):
    p = tmp_path / "keep.img"
    p.write_bytes(b"precious")
    for args in (["-f", "raw"], ["-f", "qcow2"]):
        expect_error(img("create", *args, p, "1M"), f"'{p}' already exists", "never overwrites")
    assert p.read_bytes() == b"precious"
    os.symlink("/nonexistent/target", tmp_path / "dangling")
    expect_error(img("create", tmp_path / "dangling", "1M"), "already exists")


@pytest.mark.parametrize("args,words", [
    (["X", "1X"], ["SIZE '1X': not a size"]),
    (["X", "99999999999T"], ["SIZE '99999999999T': too large"]),
    (["X"], ["SIZE is missing"]),
    (["-f", "vmdk", "X", "1M"], ["-f 'vmdk': unknown format"]),
    (["-f", "qcow2", "-o", "cluster_size=1000", "X", "1M"], ["cluster_size '1000'", "power of two"]),
    (["-f", "qcow2", "-o", "cluster_size=4M", "X", "1M"], ["cluster_size '4M'"]),
    (["-f", "qcow2", "-o", "compat=0.10", "X", "1M"], ["-o 'compat': unknown option", "cluster_size"]),
    (["-f", "qcow2", "-o", "cluster_size", "X", "1M"], ["-o 'cluster_size': expected name=value"]),
    (["-f", "raw", "-o", "cluster_size=4K", "X", "1M"], ["raw images have no options"]),
    (["-f", "raw", "-b", "base", "X"], ["-b: raw images have no backing file"]),
    (["-F", "raw", "X", "1M"], ["-F needs -b"]),
    (["-b", "missing.img", "X"], ["-b 'missing.img'", "cannot open the backing file", "No such file"]),
    (["-b", "base", "-u", "X", "1M"], ["-u needs -F"]),
    (["-b", "base", "-F", "raw", "-u", "X"], ["SIZE is missing"]),
    (["-b", "", "X", "1M"], ["-b: the backing file name is empty"]),
    (["X", "1M", "extra"], ["unexpected argument 'extra'"]),
    (["-o", "cluster_size=512", "-u", "-b", "n" * 400, "-F", "raw", "X", "1M"],
     ["backing file name is 400 bytes; at most 384 fit in the header cluster"]),
    (["-u", "-b", "n" * 1024, "-F", "raw", "X", "1M"], ["1024 bytes; at most 1023 fit"]),
])
def test_create_errors(berth_img, tmp_path, args, words):
    args = [str(tmp_path / "new.img") if a == "X" else a for a in args]
    expect_error(img("create", *args), *words)
    assert not (tmp_path / "new.img").exists()


@pytest.mark.parametrize("bfmt", ["raw", "qcow2"])
@pytest.mark.parametrize("cs", [512, 65536])
def test_create_with_backing(berth_img, qemu_img, tmp_path, bfmt, cs):
    base = tmp_path / f"base.{bfmt}"
    assert run("qemu-img", "create", "-f", bfmt, base, "64M").returncode == 0
    qemu_io(base, "write -P 0x5a 0 1M", "write -P 0x66 63M 1M", fmt=bfmt)
    top = tmp_path / "top.qcow2"
    # No SIZE: the backing file's; no -F: detected and recorded.
    r = img("create", "-b", base, "-o", f"cluster_size={cs}", top)
    assert r.returncode == 0, r.stderr
    assert f"backing file '{base}' ({bfmt})" in r.stdout
    assert run("qemu-img", "check", top).returncode == 0
    q = qemu_info(top)
    assert q["virtual-size"] == 64 << 20 and q["cluster-size"] == cs
    assert q["backing-filename"] == str(base) and q["backing-filename-format"] == bfmt
    qemu_io(top, "read -P 0x5a 0 1M", "read -P 0 1M 1M", "read -P 0x66 63M 1M", readonly=True)
    qemu_io(top, "write -P 0x77 512K 4K")
    qemu_io(top, "read -P 0x5a 0 512K", "read -P 0x77 512K 4K", "read -P 0x5a 516K 508K",
            readonly=True)
    assert img("check", top).returncode == 0
    # A larger or smaller size than the backing file's is allowed.
    top2 = tmp_path / "top2.qcow2"
    assert img("create", "-q", "-b", base, "-F", bfmt, top2, "100M").returncode == 0
    assert qemu_info(top2)["virtual-size"] == 100 << 20
    qemu_io(top2, "read -P 0x66 63M 1M", "read -P 0 64M 36M", readonly=True)


def test_create_relative_backing_names(berth_img, qemu_img, tmp_path):
    sub = tmp_path / "vm" / "disks"
    sub.mkdir(parents=True)
    base = tmp_path / "base.qcow2"
    assert img("create", "-q", "-f", "qcow2", base, "16M").returncode == 0
    qemu_io(base, "write -P 0x42 0 64K")
    # Stored as given, resolved against the new image's directory (not the working directory).
    mid = sub / "mid.qcow2"
    r = img("create", "-b", "../../base.qcow2", "-F", "qcow2", mid)
    assert r.returncode == 0, r.stderr
    top = sub / "top.qcow2"
    assert img("create", "-q", "-b", "mid.qcow2", top).returncode == 0
    for p, name in ((mid, "../../base.qcow2"), (top, "mid.qcow2")):
        q, b = qemu_info(p), berth_info(p)
        assert q["backing-filename"] == b["backing-filename"] == name
        assert q["backing-filename-format"] == b["backing-filename-format"] == "qcow2"
        assert os.path.realpath(q["full-backing-filename"]) == \
            os.path.realpath(b["full-backing-filename"])
    qemu_io(top, "read -P 0x42 0 64K", readonly=True)
    # From another working directory the stored names still resolve.
    r = run("qemu-img", "info", "--backing-chain", "--output=json", top)
    assert r.returncode == 0 and len(json.loads(r.stdout)) == 3
    # A relative name that does not resolve from the image's directory is refused...
    expect_error(img("create", "-b", "base.qcow2", sub / "bad.qcow2"), "-b 'base.qcow2'",
                 f"resolved to '{sub}/base.qcow2'", "No such file")
    # ...unless -u says not to open it.
    assert img("create", "-q", "-u", "-b", "base.qcow2", "-F", "qcow2", sub / "u.qcow2",
               "1M").returncode == 0
    assert qemu_info(sub / "u.qcow2")["backing-filename"] == "base.qcow2"


def test_create_backing_format_is_checked(berth_img, qemu_img, tmp_path):
    raw = tmp_path / "b.raw"
    raw.write_bytes(b"\0" * 65536)
    expect_error(img("create", "-b", raw, "-F", "qcow2", tmp_path / "t"), "cannot open the backing",
                 "not a qcow2 image")
    base = tmp_path / "b.qcow2"
    assert img("create", "-q", "-b", raw, base).returncode == 0
    raw.unlink()  # the chain below base is broken now
    expect_error(img("create", "-b", base, tmp_path / "t"), "backing file", "No such file")


def test_create_json_is_info_json(berth_img, tmp_path):
    p = tmp_path / "j.qcow2"
    r = img("create", "--json", "-f", "qcow2", "-o", "cluster_size=4K", p, "5M")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == berth_info(p)
    assert img("create", "-q", tmp_path / "q.raw", "1M").stdout == ""


# ---- info ----

QEMU_KEYS = ["format", "virtual-size", "cluster-size", "actual-size", "dirty-flag",
             "backing-filename", "full-backing-filename", "backing-filename-format", "encrypted"]
QEMU_DATA_KEYS = ["compat", "compression-type", "lazy-refcounts", "refcount-bits", "corrupt",
                  "extended-l2", "bitmaps", "data-file"]


def assert_info_agrees(q, b):
    for k in QEMU_KEYS:
        assert q.get(k) == b.get(k), f"{k}: qemu-img {q.get(k)!r}, berth-img {b.get(k)!r}"
    qd = q.get("format-specific", {}).get("data", {})
    bd = b.get("format-specific", {}).get("data", {})
    for k in QEMU_DATA_KEYS:
        assert qd.get(k) == bd.get(k), f"{k}: qemu-img {qd.get(k)!r}, berth-img {bd.get(k)!r}"
    assert len(q.get("snapshots", [])) == len(b.get("snapshots", []))
    for qs, bs in zip(q.get("snapshots", []), b.get("snapshots", [])):
        for k in qs:
            assert qs[k] == bs.get(k), f"snapshot {k}: {qs[k]!r} vs {bs.get(k)!r}"


@pytest.mark.parametrize("opts", [
    "compat=0.10", "compat=1.1", "compat=0.10,cluster_size=512", "compat=1.1,cluster_size=2M",
    "compat=1.1,lazy_refcounts=on", "compat=1.1,refcount_bits=1", "compat=1.1,refcount_bits=64",
    "compat=1.1,extended_l2=on", "compat=1.1,compression_type=zstd",
])
@pytest.mark.parametrize("backing", [False, True])
def test_info_agrees_with_qemu(berth_img, qemu_img, tmp_path, opts, backing):
    args = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", opts]
    if backing:
        base = tmp_path / "base.raw"
        assert run("qemu-img", "create", "-q", "-f", "raw", base, "32M").returncode == 0
        args += ["-b", "base.raw", "-F", "raw"]
    p = tmp_path / "q.qcow2"
    r = run(*args, p, "32M")
    if r.returncode and "zstd" in r.stderr:
        pytest.skip("qemu-img without zstd")
    assert r.returncode == 0, r.stderr
    qemu_io(p, "write -P 0xaa 0 1M", "write -P 0xbb 20M 64K")
    assert_info_agrees(qemu_info(p), berth_info(p))
    h = img("info", p)
    assert h.returncode == 0 and f"image: {p}" in h.stdout and "virtual size: 32 MiB" in h.stdout


def test_info_raw_and_forced_format(berth_img, qemu_img, tmp_path):
    p = tmp_path / "r.img"
    assert run("qemu-img", "create", "-q", "-f", "raw", p, "10M").returncode == 0
    qemu_io(p, "write -P 1 0 1M", fmt="raw")
    assert_info_agrees(qemu_info(p), berth_info(p))
    q = tmp_path / "q.qcow2"
    assert img("create", "-q", "-f", "qcow2", q, "10M").returncode == 0
    b = berth_info(q, "-f", "raw")  # a qcow2 file seen as raw bytes
    assert b["format"] == "raw" and b["virtual-size"] == os.path.getsize(q)


def test_info_snapshots_bitmaps_and_compression(berth_img, qemu_img, tmp_path):
    p = tmp_path / "s.qcow2"
    assert run("qemu-img", "create", "-q", "-f", "qcow2", p, "64M").returncode == 0
    qemu_io(p, "write -P 1 0 1M")
    assert run("qemu-img", "snapshot", "-c", "first", p).returncode == 0
    qemu_io(p, "write -P 2 0 64K")
    assert run("qemu-img", "snapshot", "-c", "second", p).returncode == 0
    assert run("qemu-img", "bitmap", "--add", "-g", "128K", p, "dirty0").returncode == 0
    assert run("qemu-img", "bitmap", "--add", "--disable", p, "frozen").returncode == 0
    q, b = qemu_info(p), berth_info(p)
    assert_info_agrees(q, b)
    assert [s["name"] for s in b["snapshots"]] == ["first", "second"]
    assert [m["name"] for m in b["format-specific"]["data"]["bitmaps"]] == ["dirty0", "frozen"]
    h = img("info", p).stdout
    assert "snapshots:" in h and "second" in h and "dirty0 (granularity 131072, flags: auto)" in h
    c = tmp_path / "c.qcow2"
    assert run("qemu-img", "convert", "-c", "-O", "qcow2", p, c).returncode == 0
    assert_info_agrees(qemu_info(c), berth_info(c))


def test_info_backing_chain(berth_img, qemu_img, tmp_path):
    base = tmp_path / "base.raw"
    assert img("create", "-q", base, "8M").returncode == 0
    prev = "base.raw"
    for i, compat in enumerate(["1.1", "0.10", "1.1"]):
        p = tmp_path / f"l{i}.qcow2"
        assert run("qemu-img", "create", "-q", "-f", "qcow2", "-o", f"compat={compat}", "-b", prev,
                   "-F", "raw" if i == 0 else "qcow2", p).returncode == 0
        prev = p.name
    top = tmp_path / "l2.qcow2"
    q, b = qemu_info(top, chain=True), berth_info(top, "--backing-chain")
    assert [x["filename"] for x in b] == [str(top), str(tmp_path / "l1.qcow2"),
                                           str(tmp_path / "l0.qcow2"), str(base)]
    for qi, bi in zip(q, b):
        assert_info_agrees(qi, bi)
    assert isinstance(berth_info(top), dict)  # without --backing-chain: one object
    h = img("info", "--backing-chain", top).stdout
    assert h.count("image: ") == 4 and "\n\nimage: " in h
    # A missing link: info of the top still works, the chain names the file that is missing.
    base.unlink()
    assert img("info", top).returncode == 0
    expect_error(img("info", "--backing-chain", top), "backing file of", "l0.qcow2",
                 "base.raw", "No such file")


def test_info_backing_loop(berth_img, tmp_path):
    a, b = tmp_path / "a.qcow2", tmp_path / "b.qcow2"
    assert img("create", "-q", "-u", "-b", "b.qcow2", "-F", "qcow2", a, "1M").returncode == 0
    assert img("create", "-q", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M").returncode == 0
    expect_error(img("info", "--backing-chain", a), "loops back")


def test_info_dirty_and_corrupt_flags(berth_img, qemu_img, tmp_path):
    p = tmp_path / "d.qcow2"
    assert img("create", "-q", "-f", "qcow2", p, "1M").returncode == 0
    Qcow2(p).put64(72, 1)  # incompatible feature bit 0: dirty
    b = berth_info(p)
    assert b["dirty-flag"] is True and b["dirty-flag"] == qemu_info(p)["dirty-flag"]
    assert b["format-specific"]["data"]["incompatible-features"] == ["dirty"]
    Qcow2(p).put64(72, 2)  # corrupt
    b = berth_info(p)
    assert b["format-specific"]["data"]["corrupt"] is True and not b["dirty-flag"]
    assert "corrupt: yes" in img("info", p).stdout
    Qcow2(p).put64(72, 1 << 40)  # unknown: shown by number
    assert berth_info(p)["format-specific"]["data"]["incompatible-features"] == ["bit 40"]


@pytest.mark.parametrize("patch,words", [
    ((4, b"\0\0\0\1"), ["qcow2 version 1 is not supported"]),
    ((20, b"\0\0\0\x16"), ["cluster_bits 22"]),
    ((40, b"\0\0\0\0\0\0\x12\x34"), ["L1 table offset 0x1234"]),
    ((48, b"\0" * 8), ["refcount table"]),
    ((36, b"\0\0\0\0"), ["l1_size 0 is too small"]),
    ((96, b"\0\0\0\7"), ["refcount_order 7"]),
    ((100, b"\0\0\0\x64"), ["header_length 100"]),
    ((104, b"\xe2\x79\x2a\xca\xff\0\0\0"), ["0xe2792aca (backing format)", "runs past"]),
])
def test_info_refuses_invalid_headers(berth_img, tmp_path, patch, words):
    p = tmp_path / "bad.qcow2"
    assert img("create", "-q", "-f", "qcow2", p, "1M").returncode == 0
    Qcow2(p).write(*patch)
    expect_error(img("info", p), f"'{p}': qcow2:", *words)
    expect_error(img("check", p), f"'{p}': qcow2:", *words)
