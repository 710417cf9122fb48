"""Helpers for the berth-img tests: run berth-img, qemu-img, qemu-io and blk-io; read and patch
qcow2 metadata with struct to inject corruptions."""
import json
import os
import struct
import subprocess

from conftest import IMG, BLK_IO


def run(*args, timeout=120):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          errors="replace", timeout=timeout)


def img(*args):
    return run(IMG, *args)


def blk_io(*args):
    r = run(BLK_IO, *args, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def qemu_io(path, *cmds, fmt="qcow2", readonly=False):
    args = ["qemu-io", "-f", fmt] + (["-r"] if readonly else [])
    for c in cmds:
        args += ["-c", c]
    r = run(*args, path)
    assert r.returncode == 0 and "fail" not in r.stdout.lower(), r.stdout + r.stderr
    return r


def qemu_info(path, chain=False):
    r = run("qemu-img", "info", "--output=json", *(["--backing-chain"] if chain else []), path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def berth_info(path, *extra):
    r = img("info", "--json", *extra, path)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def qemu_check(path):
    r = run("qemu-img", "check", "--output=json", path)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {})


def berth_check(path):
    r = img("check", "--json", path)
    return r.returncode, (json.loads(r.stdout) if r.stdout.strip() else {}), r.stderr


COUNTS = ["corruptions", "leaks", "check-errors", "allocated-clusters", "fragmented-clusters",
          "compressed-clusters", "total-clusters", "image-end-offset"]


def assert_checks_agree(path):
    """berth-img check and qemu-img check: same exit status and the same counts."""
    qrc, q = qemu_check(path)
    brc, b, err = berth_check(path)
    assert brc == qrc, f"berth-img {brc}, qemu-img {qrc}\n{err}\n{q}\n{b}"
    for k in COUNTS:
        if k == "image-end-offset" and k not in q:
            continue
        assert b.get(k, 0) == q.get(k, 0), f"{k}: berth-img {b.get(k)}, qemu-img {q.get(k)}\n{err}"
    return brc, b, err


class Qcow2:
    """Just enough of a qcow2 image to find and patch its tables (16-bit refcounts)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            h = f.read(104)
        (magic, self.version, _, _, self.cluster_bits, self.size, _, self.l1_size,
         self.l1_offset, self.rt_offset, self.rt_clusters, _, _) = struct.unpack(">IIQIIQIIQQIIQ",
                                                                                 h[:72])
        assert magic == 0x514649FB
        self.refcount_order = struct.unpack(">I", h[96:100])[0] if self.version >= 3 else 4
        assert self.refcount_order == 4, "the helpers handle 16-bit refcounts only"
        self.cs = 1 << self.cluster_bits

    def read(self, off, n):
        with open(self.path, "rb") as f:
            f.seek(off)
            return f.read(n)

    def write(self, off, data):
        with open(self.path, "r+b") as f:
            f.seek(off)
            f.write(data)

    def u64(self, off):
        return struct.unpack(">Q", self.read(off, 8))[0]

    def put64(self, off, v):
        self.write(off, struct.pack(">Q", v))

    def l1_entry_off(self, guest):
        return self.l1_offset + 8 * (guest // (self.cs * (self.cs // 8)))

    def l2_entry_off(self, guest):
        """File offset of the L2 entry that maps guest offset `guest` (its L2 table must exist)."""
        l2 = self.u64(self.l1_entry_off(guest)) & 0x00FFFFFFFFFFFE00
        assert l2, f"no L2 table for guest offset {guest:#x}"
        return l2 + 8 * ((guest // self.cs) % (self.cs // 8))

    def host(self, guest):
        return self.u64(self.l2_entry_off(guest)) & 0x00FFFFFFFFFFFE00

    def refcount_off(self, cluster):
        per = self.cs // 2
        rb = self.u64(self.rt_offset + 8 * (cluster // per)) & ~0x1FF
        assert rb, f"no refcount block for cluster {cluster}"
        return rb + 2 * (cluster % per)

    def refcount(self, cluster):
        return struct.unpack(">H", self.read(self.refcount_off(cluster), 2))[0]

    def set_refcount(self, cluster, v):
        self.write(self.refcount_off(cluster), struct.pack(">H", v))

    def file_clusters(self):
        return (os.path.getsize(self.path) + self.cs - 1) // self.cs
