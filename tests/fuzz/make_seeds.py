#!/usr/bin/env python3
"""Generate the seed corpora for berth's fuzz targets (tests/fuzz/corpus/<target>/).

Run from anywhere: python3 tests/fuzz/make_seeds.py. The outputs are committed; rerun only when the
input format of a target changes. fuzz_boot_image inputs are: mode byte, RAM-size byte, kernel file.
fuzz_virtqueue inputs are a small header (queue size, features, ring addresses, guest writes) and a
guest RAM image; fuzz_pci_config inputs are 8-byte config-space operations. fuzz_proto inputs are a
control byte (chunk size, descriptors) and a control-socket byte stream of framed JSON. fuzz_api inputs are a mode byte and a path,
an If-Match header or JSON specs and patches. fuzz_qcow2
inputs are a qcow2 image (made by qemu-img/qemu-io, or by berth's own qcow2_create through
build/bin/berth-img create) followed by 16 8-byte operations; its seeds need qemu-img, qemu-io and a
build.
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

MODE_AUTO, MODE_LINUX, MODE_PVH = 0, 1, 2


def bzimage(setup_sects=1, protocol=0x020F, payload=0x400, init_size=0x100000, pref=0x1000000):
    """A minimal bzImage: boot sector + setup header, then a protected-mode payload."""
    setup_len = (setup_sects + 1) * 512
    k = bytearray(setup_len + payload)
    k[0x1F1] = setup_sects
    struct.pack_into("<H", k, 0x1FE, 0xAA55)
    k[0x200] = 0xEB  # jmp over the header
    k[0x201] = 0x66  # header ends at 0x268
    k[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", k, 0x206, protocol)
    k[0x211] = 0x01  # LOADED_HIGH
    struct.pack_into("<I", k, 0x22C, 0x7FFFFFFF)  # initrd_addr_max
    struct.pack_into("<I", k, 0x230, 0x200000)  # kernel_alignment
    k[0x234] = 1  # relocatable_kernel
    k[0x236] = 0x03  # XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G
    struct.pack_into("<I", k, 0x238, 2047)  # cmdline_size
    struct.pack_into("<Q", k, 0x258, pref)
    struct.pack_into("<I", k, 0x260, init_size)
    for i in range(setup_len, len(k)):
        k[i] = 0x90
    return bytes(k)


def xen_note(entry):
    return struct.pack("<III", 4, 4, 18) + b"Xen\0" + struct.pack("<I", entry)


def pvh_elf(is64=True, entry=0x100000, text=0x100, paddr=0x100000):
    """A minimal PVH ELF: one PT_NOTE with the Xen PHYS32 entry note and one PT_LOAD."""
    note = xen_note(entry)
    if is64:
        ehsize, phsize = 64, 56
    else:
        ehsize, phsize = 52, 32
    note_off = ehsize + 2 * phsize
    text_off = (note_off + len(note) + 15) & ~15
    size = text_off + text
    f = bytearray(size)
    f[0:4] = b"\x7fELF"
    f[4] = 2 if is64 else 1
    f[5] = 1  # little-endian
    f[6] = 1  # EV_CURRENT
    machine = 62 if is64 else 3
    if is64:
        struct.pack_into("<HHIQQQIHHHHHH", f, 16, 2, machine, 1, entry, ehsize, 0, 0, ehsize,
                         phsize, 2, 0, 0, 0)
        struct.pack_into("<IIQQQQQQ", f, ehsize, 4, 4, note_off, 0, 0, len(note), 0, 4)
        struct.pack_into("<IIQQQQQQ", f, ehsize + phsize, 1, 5, text_off, paddr, paddr, text,
                         text, 16)
    else:
        struct.pack_into("<HHIIIIIHHHHHH", f, 16, 2, machine, 1, entry, ehsize, 0, 0, ehsize,
                         phsize, 2, 0, 0, 0)
        struct.pack_into("<IIIIIIII", f, ehsize, 4, note_off, 0, 0, len(note), 0, 4, 4)
        struct.pack_into("<IIIIIIII", f, ehsize + phsize, 1, text_off, paddr, paddr, text, text,
                         5, 16)
    f[note_off:note_off + len(note)] = note
    for i in range(text_off, size):
        f[i] = 0xF4  # hlt
    return bytes(f)


# --- fuzz_virtqueue: see the input layout at the top of tests/fuzz/fuzz_virtqueue.c. ---

VQ_NEXT, VQ_WRITE, VQ_INDIRECT = 1, 2, 4
VQ_HI = 0x80000000  # ring address flag: region 1 (4 GiB)


class Ram:
    """Region 0 of the fuzz target's guest RAM (60 KiB at 0); region 1 (4 KiB) follows it."""

    def __init__(self, size=0x4000):
        self.b = bytearray(size)

    def desc(self, table, i, addr, length, flags=0, nxt=0):
        struct.pack_into("<QIHH", self.b, table + 16 * i, addr, length, flags, nxt)

    def u16(self, off, v):
        struct.pack_into("<H", self.b, off, v)


def vq_ring(qsize, heads, used_event=0, flags=0):
    """Avail-ring contents: flags, idx, ring[qsize], used_event (idx = number of heads)."""
    ring = [0] * qsize
    for i, h in enumerate(heads):
        ring[i % qsize] = h
    return struct.pack("<HH", flags, len(heads) & 0xFFFF) + struct.pack(
        "<%dH" % qsize, *ring) + struct.pack("<H", used_event)


def vq_input(qsize, indirect, event_idx, desc, avail, used, ram, writes=(), quiet=False):
    log2 = qsize.bit_length() - 1
    feat = (1 if indirect else 0) | (2 if event_idx else 0) | (4 if quiet else 0)
    hdr = bytes([log2, feat]) + struct.pack("<III", desc, avail, used) + bytes([len(writes)])
    w = b"".join(struct.pack("<HH", off, val) for off, val in writes)
    return hdr + w + bytes(ram.b)


def vq_seeds():
    D, A, U, TBL, BUF = 0x0, 0x1000, 0x1400, 0x1C00, 0x2000
    seeds = {}

    # Readable+writable chains, out of table order, and a single writable buffer.
    r = Ram()
    r.desc(D, 0, BUF, 16, VQ_NEXT, 5)
    r.desc(D, 5, BUF + 0x100, 32, VQ_NEXT, 2)
    r.desc(D, 2, BUF + 0x200, 64, VQ_WRITE)
    r.desc(D, 3, BUF + 0x300, 512, VQ_WRITE)
    r.b[A:A + 22] = vq_ring(8, [0, 3])
    seeds["direct-rw"] = vq_input(8, False, False, D, A, U, r)

    # Indirect table (3 entries), then a direct chain; EVENT_IDX off.
    r = Ram()
    r.desc(D, 0, TBL, 48, VQ_INDIRECT)
    r.desc(TBL, 0, BUF, 8, VQ_NEXT, 1)
    r.desc(TBL, 1, BUF + 0x10, 8, VQ_NEXT, 2)
    r.desc(TBL, 2, BUF + 0x20, 100, VQ_WRITE)
    r.desc(D, 1, BUF + 0x400, 4, VQ_NEXT, 2)
    r.desc(D, 2, BUF + 0x500, 4, VQ_WRITE)
    r.b[A:A + 14] = vq_ring(4, [0, 1])
    seeds["indirect"] = vq_input(4, True, False, D, A, U, r)

    # EVENT_IDX: five requests, used_event 2, and the guest adding two more between pops.
    r = Ram()
    for i in range(16):
        r.desc(D, i, BUF + 0x100 * i, 0x40, VQ_WRITE)
    r.b[A:A + 38] = vq_ring(16, [4, 3, 2, 1, 0, 5, 6], used_event=2)
    r.u16(A + 2, 5)
    writes = [(A + 2, 6), (A + 2, 7), (A + 36, 6)]
    seeds["event-idx"] = vq_input(16, False, True, D, A, U, r, writes, quiet=True)

    # Rings in region 1 (4 GiB), buffers in both regions.
    r = Ram(0xF000 + 0x1000)
    hi = 0xF000  # offset of region 1 in the image
    HI = 0x100000000
    for i in range(32):
        struct.pack_into("<QIHH", r.b, hi + 16 * i,
                         (BUF + 0x40 * i) if i % 2 == 0 else (HI + 0xC00 + 8 * i), 8,
                         VQ_NEXT if i % 4 != 3 else 0, i + 1)
    ring = vq_ring(32, [0, 4, 8, 12])
    r.b[hi + 0x200:hi + 0x200 + len(ring)] = ring
    seeds["high-rings"] = vq_input(32, False, False, VQ_HI, VQ_HI | 0x200, VQ_HI | 0x300, r)

    # Every descriptor of a 256-entry queue in one chain (readable half, writable half).
    r = Ram()
    for i in range(256):
        r.desc(D, i, BUF + 0x20 * i, 0x20, (VQ_NEXT if i < 255 else 0) |
               (VQ_WRITE if i >= 128 else 0), i + 1)
    r.b[A:A + 518] = vq_ring(256, [0])
    seeds["full-256"] = vq_input(256, False, False, D, A, U, r)

    # Malformed: a loop, then (after the guest fixes nothing) the device stops.
    r = Ram()
    r.desc(D, 0, BUF, 8, VQ_NEXT, 1)
    r.desc(D, 1, BUF, 8, VQ_NEXT, 0)
    r.b[A:A + 22] = vq_ring(8, [0])
    seeds["loop"] = vq_input(8, False, False, D, A, U, r)

    # Malformed indirect: nested table, with INDIRECT negotiated and EVENT_IDX.
    r = Ram()
    r.desc(D, 0, TBL, 32, VQ_INDIRECT)
    r.desc(TBL, 0, BUF, 8, VQ_NEXT, 1)
    r.desc(TBL, 1, TBL + 0x100, 16, VQ_INDIRECT)
    r.b[A:A + 14] = vq_ring(4, [0])
    seeds["nested-indirect"] = vq_input(4, True, True, D, A, U, r)
    return seeds


# --- fuzz_pci_config: 8-byte operations, see tests/fuzz/fuzz_pci_config.c. ---

CF8_WRITE, CFC_READ, CFC_WRITE, ECAM_READ, ECAM_WRITE, BAR_ACCESS, PIO_RAW, DIRECT = range(8)
SIZE_LOG = {1: 0, 2: 1, 4: 2, 8: 3}


def pci_op(what, size=4, slot=0, reg=0, val=0, flags=0):
    return struct.pack("<BBHI", what | SIZE_LOG[size] << 3 | flags, slot, reg, val)


def cf8(slot, reg):
    return pci_op(CF8_WRITE, 4, slot, reg, 0x80000000)


def pci_seeds():
    seeds = {}
    # What Linux does at boot: probe slots, read IDs and header type, size and restore BARs with
    # decoding off, walk capabilities.
    ops = [pci_op(CF8_WRITE, 4, 0, 0, 0x80000000)]
    for slot in range(4):
        ops += [cf8(slot, 0), pci_op(CFC_READ, 4, slot), cf8(slot, 0x0C),
                pci_op(CFC_READ, 1, slot, 0x0E)]
    for bar in range(6):
        reg = 0x10 + 4 * bar
        ops += [cf8(1, 4), pci_op(CFC_WRITE, 2, 1, 4, 0), cf8(1, reg), pci_op(CFC_READ, 4, 1, reg),
                pci_op(CFC_WRITE, 4, 1, reg, 0xFFFFFFFF), pci_op(CFC_READ, 4, 1, reg),
                pci_op(CFC_WRITE, 4, 1, reg, 0xC0000000 if bar == 0 else 0)]
    ops += [cf8(1, 4), pci_op(CFC_WRITE, 2, 1, 4, 6), cf8(1, 0x34), pci_op(CFC_READ, 1, 1, 0x34),
            cf8(1, 0x40), pci_op(CFC_READ, 2, 1, 0x40), cf8(1, 0x50), pci_op(CFC_READ, 2, 1, 0x50)]
    seeds["linux-probe"] = b"".join(ops)

    # ECAM: move BARs (32-bit, 64-bit with 8-byte writes, over each other), toggle decoding, touch
    # the moved BARs through the MMIO bus.
    ops = [pci_op(ECAM_WRITE, 4, 1, 0x10, 0xD0000000),
           pci_op(BAR_ACCESS, 4, 1 << 1 | 0, 0x10),
           pci_op(ECAM_WRITE, 8, 1, 0x1020, 0x0010000C),
           pci_op(ECAM_WRITE, 4, 1, 0x24, 0x10),
           pci_op(BAR_ACCESS, 8, 4 << 1 | 0, 0x100, 0, 0x20),
           pci_op(ECAM_WRITE, 4, 2, 0x10, 0xD0000000),
           pci_op(ECAM_WRITE, 2, 1, 0x04, 0),
           pci_op(ECAM_WRITE, 4, 2, 0x10, 0xD0000000),
           pci_op(ECAM_WRITE, 2, 1, 0x04, 2),
           pci_op(ECAM_WRITE, 4, 2, 0x14, 0xFEC00000),
           pci_op(ECAM_WRITE, 4, 2, 0x18, 0xFFFFFFFF),
           pci_op(ECAM_READ, 8, 2, 0x10),
           pci_op(ECAM_WRITE, 4, 2, 0x1C, 0xE0000000),
           pci_op(ECAM_WRITE, 1, 2, 0x04, 0),
           pci_op(ECAM_WRITE, 1, 2, 0x04, 2),
           pci_op(BAR_ACCESS, 2, 0 << 1 | 1, 0x8)]
    seeds["ecam-bar-moves"] = b"".join(ops)

    # Odd accesses: other buses and functions, CF8 byte/word, 0xCF9..0xCFB, direct odd sizes and
    # offsets at the end of config space, read-only fields.
    ops = [pci_op(CF8_WRITE, 4, 0x80 | 0x20 | 1 << 2 | 1, 0x100, 0x80000000),
           pci_op(CFC_READ, 4, 1),
           pci_op(PIO_RAW, 1, 0, 1, 6, 0x20),
           pci_op(PIO_RAW, 2, 0, 0, 0, 0x20),
           pci_op(PIO_RAW, 4, 0, 7),
           pci_op(ECAM_READ, 8, 1, 0xFFC),
           pci_op(ECAM_WRITE, 8, 1, 0xFFE, 0xFFFFFFFF),
           pci_op(ECAM_WRITE, 4, 1, 0x00, 0xFFFFFFFF),
           pci_op(ECAM_WRITE, 4, 1, 0x34, 0x0),
           pci_op(ECAM_WRITE, 4, 1, 0x40, 0x0),
           pci_op(ECAM_WRITE, 2, 1, 0x06, 0xFFFF),
           pci_op(DIRECT, 2, 1, 0xFFF, 0xFFFFFFFF, 0x40 | 0x20 | 0x08),
           pci_op(DIRECT, 1, 1, 0x1000, 0, 0x38),
           pci_op(DIRECT, 1, 0x40, 0x10, 0, 0x18),
           pci_op(ECAM_READ, 4, 0x40 | 0x80 | 3, 0xFF00, 0, 0)]
    seeds["odd-accesses"] = b"".join(ops)
    return seeds


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as fh:
        fh.write(data)


def main():
    t = "fuzz_boot_image"
    # byte 0: mode | cmdline-length selector << 2 | initrd size selector << 4; byte 1: RAM size.
    write(t, "bzimage-auto", bytes([MODE_AUTO, 7]) + bzimage())
    write(t, "bzimage-linux-initrd", bytes([MODE_LINUX | 1 << 2 | 1 << 4, 1]) + bzimage())
    write(t, "bzimage-2.12-setup4", bytes([MODE_AUTO, 0]) + bzimage(setup_sects=4, protocol=0x020C))
    write(t, "pvh-elf64", bytes([MODE_PVH, 0]) + pvh_elf(True))
    write(t, "pvh-elf32-auto", bytes([MODE_AUTO | 2 << 4, 3]) + pvh_elf(False, entry=0x100010))

    t = "fuzz_config_json"
    write(t, "full.json", b'{"kernel": "/boot/vmlinuz", "initrd": "/boot/initrd", '
          b'"cmdline": "console=ttyS0", "memory": "2G", "cpus": 4, "cpu_template": "baseline", '
          b'"boot": "linux", "serial": "file:/tmp/com1.log", "serial2": "unix:/tmp/com2.sock", '
          b'"on_reboot": "restart", "timeout": 30, "name": "vm-1", "log_level": "debug"}\n')
    write(t, "minimal.json", b'{"kernel": "k"}\n')
    write(t, "numbers.json", b'{"kernel": "k", "memory": 1024, "cpus": "2", "timeout": 0}\n')
    write(t, "errors.json", b'{"kernel": "k", "cpus": -1, "serial": "pty"}\n')
    write(t, "not-object.json", b'[1, "two", {"three": 3.0}]\n')

    for name, data in vq_seeds().items():
        write("fuzz_virtqueue", name, data)
    for name, data in pci_seeds().items():
        write("fuzz_pci_config", name, data)
    for name, data in virtio_pci_seeds().items():
        write("fuzz_virtio_pci", name, data)
    for name, data in proto_seeds().items():
        write("fuzz_proto", name, data)
    for name, data in api_seeds().items():
        write("fuzz_api", name, data)
    for name, data in qcow2_seeds().items():
        write("fuzz_qcow2", name, data)


def virtio_pci_seeds():
    """fuzz_virtio_pci: 12-byte ops (kind | log2(size) << 2, 24-bit offset, 64-bit value)."""
    def op(kind, size, off, val):
        lg = {1: 0, 2: 1, 4: 2, 8: 3}[size]
        return struct.pack("<BI", kind | lg << 2, off)[:4] + struct.pack("<Q", val)

    def bar_w(off, size, val):
        return op(1, size, off, val)

    def ram_w(off, val):
        return op(3, 8, off, val)

    def init(desc, drv, dev):
        o = bar_w(0x14, 1, 1) + bar_w(0x14, 1, 3)                      # ACKNOWLEDGE, DRIVER
        o += bar_w(0x08, 4, 1) + bar_w(0x0c, 4, 1)                     # VERSION_1 (bit 32)
        o += bar_w(0x14, 1, 0x0b) + op(0, 1, 0x14, 0)                  # FEATURES_OK, read back
        o += bar_w(0x16, 2, 0) + bar_w(0x18, 2, 16)                    # queue 0, size 16
        o += bar_w(0x20, 8, desc) + bar_w(0x28, 8, drv) + bar_w(0x30, 8, dev)
        o += bar_w(0x1c, 2, 1) + bar_w(0x14, 1, 0x0f)                  # enable, DRIVER_OK
        return o

    good = init(0x1000, 0x2000, 0x3000)
    # one 64-byte writable buffer at 0x8000, head 0 in the available ring, then the doorbell
    good += ram_w(0x1000, 0x8000) + ram_w(0x1008, 64 | 2 << 32)
    good += ram_w(0x2000, 1 << 16) + bar_w(0x3000, 2, 0) + op(0, 1, 0x1000, 0)
    bad = init(0xfff000, 0x2000, 0x3000) + bar_w(0x14, 1, 0) + init(0x1000, 0x1001, 0x3002)
    return {"driver-init": good, "bad-rings": bad}


def proto_seeds():
    """fuzz_proto: control byte (bits 0-5: chunk size - 1, bit 6: one fd per frame), then frames."""
    def fr(payload):
        if not isinstance(payload, bytes):
            payload = json.dumps(payload).encode()
        return struct.pack(">I", len(payload)) + payload

    reqs = [{"id": 1, "cmd": "query-status"}, {"id": "p", "cmd": "pause", "args": {"timeout_ms": 500}},
            {"id": [1, {"x": None}], "cmd": "resume", "args": {}}, {"cmd": "powerdown"},
            {"id": 2.5, "cmd": "quit"}, {"cmd": "save", "args": {"dir": "/d", "stop": False}},
            {"cmd": "checkpoint", "args": {"dir": "/c", "overlays": ["/o.qcow2"]}},
            {"cmd": "checkpoint-create", "args": {"name": "a", "disk_only": True, "timeout_ms": 9}},
            {"cmd": "checkpoint-list"}, {"cmd": "checkpoint-apply", "args": {"checkpoint": "a"}},
            {"cmd": "checkpoint-delete", "args": {"checkpoint": "c1"}},
            {"id": 3, "cmd": "query-stats"}]
    bad = [{"cmd": "query-stats", "args": {"disk": 0}}, {"cmd": "pause", "args": {"timeout_ms": "soon"}}, {"cmd": "pause", "args": {"timeout_ms": 0}},
           {"cmd": "resume", "args": {"x": 1}}, {"cmd": "nope"}, {"cmd": 5}, {"id": 1},
           {"cmd": "pause", "args": [1]}, {"cmd": "quit", "extra": True},
           {"cmd": "checkpoint-create", "args": {"name": ""}}, {"cmd": "checkpoint-apply"},
           {"cmd": "checkpoint-delete", "args": {"checkpoint": 7}},
           {"cmd": "checkpoint-create", "args": {"name": "x" * 65}}]
    return {
        "requests": bytes([63]) + b"".join(fr(r) for r in reqs),
        "bad-args": bytes([63]) + b"".join(fr(r) for r in bad),
        "byte-chunks-fds": bytes([0x40 | 2]) + fr(reqs[0]) + fr(reqs[1]),
        "oversize": bytes([3]) + fr(reqs[0]) + struct.pack(">I", (1 << 20) + 1) + b"{}",
        "invalid-json": bytes([63]) + fr(b'{"cmd": "pause",}') + fr(reqs[0]),
        "not-object": bytes([63]) + fr(b'[1, 2, 3]') + fr(b"") + fr(reqs[0]),
    }


def api_seeds():
    """fuzz_api: a mode byte (0 path, 1 If-Match, 2 spec, 3 spec then merge patch), then text."""
    full = {"name": "web-1", "vcpus": 4, "memory_mib": 2048, "cpu_template": "baseline",
            "boot": {"kernel": "/k", "initrd": "/i", "cmdline": "console=ttyS0"},
            "disks": [{"path": "/d0.qcow2", "format": "qcow2", "readonly": False, "cache": "writeback",
                       "serial": "S1"}, {"path": "/d1"}],
            "console_ports": [{"name": "org.qemu.guest_agent.0"}], "rng": True, "auto_start": "always",
            "auto_stop": "shut-down", "notes": "n"}
    errors = {"name": ".x", "vcpus": 0, "boot": {"kernel": "rel"}, "disks": [{"path": "/a,b"}],
              "uuid": "x", "extra": 1}
    j = lambda o: json.dumps(o).encode()
    return {
        "paths": bytes([0]) + b"/api/v1/vms/web-1",
        "if-match": bytes([1]) + b'W/"1", "2" , "0003", *',
        "spec-full": bytes([2]) + j(full),
        "spec-errors": bytes([2]) + j(errors),
        "patch": bytes([3]) + j(full) + j({"vcpus": None, "boot": {"initrd": None}, "disks": []}),
        "patch-rename": bytes([3]) + b"{}" + j({"name": "other", "notes": "a\u0000b"}),
    }


# --- fuzz_qcow2: an image, then 16 operations (see the top of tests/fuzz/fuzz_qcow2.c). Inputs
# named regress-* in its corpus are crashes found by fuzzing, kept as they were found. ---

Q_READ, Q_WRITE, Q_FLUSH, Q_DISCARD, Q_ZERO, Q_ZERO_UNMAP = 0, 2, 4, 5, 6, 7
Q_NOPS = 16


def q_op(kind, sectors=8, where=0.0, seed=0, keep=False, split=1):
    """One operation: `where` is a fraction of the virtual size; sectors is rounded to what the
    length byte can say ((1 + x) << 3s)."""
    for s in range(4):
        x = (sectors >> (3 * s)) - 1
        if 0 <= x < 64 and (x + 1) << (3 * s) == sectors:
            break
    else:
        s, x = 3, 63
    sel = min(int(where * (1 << 32)), (1 << 32) - 1)
    return struct.pack("<BBIH", kind | (8 if keep else 0) | (split - 1) << 4, x | s << 6, sel,
                       seed)


def q_ops(ops):
    ops = list(ops)[:Q_NOPS]
    ops += [q_op(Q_FLUSH)] * (Q_NOPS - len(ops))
    return b"".join(ops)


# A few operation mixes; each image seed gets one.
Q_MIXES = [
    # read all over, overwrite in place, allocate, read back, flush
    [q_op(Q_READ, 16, 0.0), q_op(Q_READ, 64, 0.1, keep=True, split=3),
     q_op(Q_READ, 8, 0.5, keep=True), q_op(Q_WRITE, 8, 0.0, 1), q_op(Q_WRITE, 24, 0.3, 2, split=2),
     q_op(Q_READ, 24, 0.3), q_op(Q_FLUSH), q_op(Q_WRITE, 1, 0.999, 3), q_op(Q_READ, 64, 0.9)],
    # zeroing and discard over written data, then reads through the holes
    [q_op(Q_WRITE, 64, 0.0, 4), q_op(Q_ZERO, 16, 0.0), q_op(Q_ZERO_UNMAP, 3, 0.01),
     q_op(Q_DISCARD, 64, 0.0), q_op(Q_READ, 64, 0.0, split=4), q_op(Q_DISCARD, 512, 0.5),
     q_op(Q_WRITE, 512, 0.25, 5), q_op(Q_FLUSH), q_op(Q_READ, 512, 0.25)],
    # many reads in flight, then large writes
    [q_op(Q_READ, 8, i / 8.0, keep=True, split=1 + i % 4) for i in range(8)] +
    [q_op(Q_WRITE, 512, 0.6, 6, keep=True), q_op(Q_WRITE, 64, 0.7, 7, keep=True),
     q_op(Q_READ, 512, 0.6), q_op(Q_ZERO, 4096, 0.0), q_op(Q_FLUSH)],
    # partial-cluster writes (copy-on-write from below), then zeroing across them
    [q_op(Q_WRITE, 3, 0.001, 8), q_op(Q_WRITE, 9, 0.2003, 9, split=3), q_op(Q_READ, 16, 0.2),
     q_op(Q_ZERO, 5, 0.4001), q_op(Q_WRITE, 1, 0.6001, 10), q_op(Q_DISCARD, 40, 0.6),
     q_op(Q_READ, 64, 0.6, keep=True), q_op(Q_READ, 64, 0.0, keep=True), q_op(Q_FLUSH)],
    # enough allocation to grow the refcount table, with reads between
    [q_op(Q_WRITE, 512, i / 16.0, 11 + i, keep=i % 3 == 0) for i in range(15)] + [q_op(Q_FLUSH)],
    # allocate at the start, then write and read where L1 entry 40 points (2 MiB image)
    [q_op(Q_WRITE, 64, 0.0, 30), q_op(Q_WRITE, 64, 0.05, 31), q_op(Q_FLUSH),
     q_op(Q_WRITE, 8, 0.626, 32), q_op(Q_READ, 64, 0.0), q_op(Q_READ, 8, 0.626)],
]
Q_MIX_COW, Q_MIX_GROW = 3, 4


def qemu_img(*args):
    subprocess.run(["qemu-img"] + list(args), check=True, stdout=subprocess.DEVNULL)


def qemu_io(path, *cmds, fmt="qcow2"):
    cmd = ["qemu-io", "-f", fmt]
    for c in cmds:
        cmd += ["-c", c]
    subprocess.run(cmd + [path], check=True, stdout=subprocess.DEVNULL)


def qcow2_seeds():
    build = os.environ.get("BERTH_BUILD", os.path.join(HERE, "..", "..", "build"))
    create = os.path.join(build, "bin", "berth-img")
    if not shutil.which("qemu-img") or not shutil.which("qemu-io") or not os.access(create,
                                                                                     os.X_OK):
        print("make_seeds: fuzz_qcow2 seeds need qemu-img, qemu-io and " + create,
              file=sys.stderr)
        sys.exit(1)
    tmp = tempfile.mkdtemp()
    imgs, mix = {}, {}

    def new(name, size="1M", cluster=512, opts="", backing=None, bfmt=None):
        p = os.path.join(tmp, name)
        o = f"cluster_size={cluster}" + ("," + opts if opts else "")
        args = ["create", "-q", "-f", "qcow2", "-o", o]
        if backing:
            args += ["-u", "-b", backing, "-F", bfmt]
        qemu_img(*args, p, size)
        imgs[name] = p
        return p

    def berth(name, size, bits, backing=None, bfmt=None):
        p = os.path.join(tmp, name)
        args = [create, "create", "-q", "-f", "qcow2", "-o", f"cluster_size={1 << bits}"]
        if backing:
            args += ["-u", "-b", backing, "-F", bfmt]
        subprocess.run(args + [p, str(size)], check=True)
        imgs[name] = p
        return p

    data = ["write -P 0x11 0 4k", "write -z 8k 2k", "write -P 0x22 100k 1k",
            "write -P 0x33 1020k 4k"]
    new("q512-empty")
    qemu_io(new("q512-data"), *data, "discard 1k 512")
    qemu_io(new("q4k-data", "4M", 4096), "write -P 0x44 0 8k", "write -P 0x55 1M 4k",
            "write -z 2M 64k")
    qemu_io(new("q512-v2", opts="compat=0.10"), *data)
    for bits in (1, 8, 64):
        qemu_io(new(f"q512-rc{bits}", opts=f"refcount_bits={bits}"), *data)
    qemu_io(new("q512-compressed"), "write -c -P 0x66 0 4k", "write -P 0x77 64k 1k")
    qemu_io(new("q512-lazy", opts="lazy_refcounts=on"), *data)
    p = new("q512-snapshot")
    qemu_io(p, "write -P 0x12 0 2k")
    qemu_img("snapshot", "-c", "s1", p)
    qemu_io(p, "write -P 0x13 0 1k")
    p = new("q512-bitmap")
    qemu_img("bitmap", "--add", p, "b0")
    qemu_io(p, "write -P 0x14 0 2k")
    for name, back, bfmt in (("q512-on-base", "base.qcow2", "qcow2"),
                             ("q512-on-raw", "base.raw", "raw"),
                             ("q512-on-mid", "mid.qcow2", "qcow2"),
                             ("q512-loop", "loop.qcow2", "qcow2"),
                             ("q512-self", "img", "qcow2"),
                             ("q512-on-missing", "/nonexistent/backing", "qcow2")):
        new(name, backing=back, bfmt=bfmt)
    # Backing files like the ones the target puts next to the image (only for qemu-io here).
    with open(os.path.join(tmp, "base.raw"), "wb") as f:
        f.truncate(1 << 20)
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-u", "-b", "base.raw", "-F",
             "raw", os.path.join(tmp, "base.qcow2"), "1M")
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "-u", "-b", "base.qcow2",
             "-F", "qcow2", os.path.join(tmp, "mid.qcow2"), "1M")
    qemu_io(imgs["q512-on-base"], "write -P 0x15 1k 1k", "write -z 16k 8k")
    qemu_io(berth("berth-512", 1 << 20, 9), *data)
    berth("berth-512-on-base", 1 << 20, 9, "base.qcow2", "qcow2")
    qemu_io(berth("berth-4k", 4 << 20, 12), "write -P 0x16 0 12k", "write -P 0x17 3M 4k")
    qemu_io(berth("berth-2k", 8 << 20, 11), "write -P 0x18 6M 6k")

    for name, back in (("q4k-on-base", "base.qcow2"), ("q4k-on-raw", "base.raw"),
                       ("q4k-on-mid", "mid.qcow2")):
        p = new(name, "1M", 4096, backing=back, bfmt="raw" if back.endswith("raw") else "qcow2")
        qemu_io(p, "write -P 0x19 8k 4k", "write -z 12k 4k")
        mix[name] = Q_MIX_COW
    # A top image larger than its backing file (reads and copy-on-write past the backing's end),
    # and a version 2 image over a backing file (no zero flag: zeroing writes zeroes).
    qemu_io(new("q4k-4m-on-base", "4M", 4096, backing="base.qcow2", bfmt="qcow2"),
            "write -P 0x1b 1020k 8k")
    mix["q4k-4m-on-base"] = Q_MIX_COW
    new("q512-v2-on-base", opts="compat=0.10", backing="base.qcow2", bfmt="qcow2")
    qemu_io(imgs["q512-v2-on-base"], "write -P 0x1c 0 4k")
    mix["q512-v2-on-base"] = 1
    # Dirty bitmaps: two recorded ones with small granularity, a disabled one (not recorded).
    p = new("q512-bitmaps-3")
    qemu_img("bitmap", "--add", "-g", "512", p, "fine")
    qemu_img("bitmap", "--add", "-g", "4096", p, "coarse")
    qemu_img("bitmap", "--add", p, "off")
    qemu_io(p, "write -P 0x1d 0 3k", "write -P 0x1e 500k 1k")
    qemu_img("bitmap", "--disable", p, "off")
    mix["q512-bitmaps-3"] = 1
    for bits in (2, 4, 32):
        qemu_io(new(f"q512-rc{bits}", opts=f"refcount_bits={bits}"), *data)
    new("q512-rc64-grow", "8M", opts="refcount_bits=64")
    mix["q512-rc64-grow"] = Q_MIX_GROW
    mix["berth-4k"] = Q_MIX_COW

    # Regression: L1 names an L2 table in the first cluster past the end of the file; writes
    # elsewhere must never allocate that cluster.
    p = new("q512-l1-past-eof", "2M")
    qemu_io(p, "write -P 0x1a 0 512")
    l1_off = struct.unpack(">Q", open(p, "rb").read()[40:48])[0]
    with open(p, "r+b") as f:
        f.seek(l1_off + 8 * 40)
        f.write(struct.pack(">Q", 1 << 63 | os.path.getsize(p)))
    mix[p.rsplit("/", 1)[1]] = 5

    seeds = {}
    for name, p in sorted(imgs.items()):
        with open(p, "rb") as f:
            img = f.read()
        # one of the first three mixes unless chosen above, stable per name
        seeds[name] = img + q_ops(Q_MIXES[mix.get(name, zlib.crc32(name.encode()) % 3)])
    # Header bits berth refuses writable: dirty, corrupt, extended L2, unknown.
    base = open(imgs["q512-data"], "rb").read()
    for name, bit in (("q512-dirty", 0), ("q512-corrupt", 1), ("q512-extl2-bit", 4),
                      ("q512-unknown-bit", 40)):
        b = bytearray(base)
        struct.pack_into(">Q", b, 72, struct.unpack_from(">Q", b, 72)[0] | 1 << bit)
        seeds[name] = bytes(b) + q_ops(Q_MIXES[0])
    # Hostile mappings: guest cluster 5 on the L1 table (in place), compressed data in the header.
    l1_off = struct.unpack_from(">Q", base, 40)[0]
    l2_off = struct.unpack_from(">Q", base, l1_off)[0] & 0x00FFFFFFFFFFFE00
    at5 = [q_op(Q_WRITE, 1, 5 * 512 / (1 << 20), 40), q_op(Q_READ, 8, 0.0),
           q_op(Q_ZERO, 1, 5 * 512 / (1 << 20))]
    for name, entry in (("q512-hostile-on-l1", 1 << 63 | l1_off),
                        ("q512-hostile-compressed-header", 1 << 62 | 0x10)):
        b = bytearray(base)
        struct.pack_into(">Q", b, l2_off + 8 * 5, entry)
        seeds[name] = bytes(b) + q_ops(at5)
    shutil.rmtree(tmp)
    return seeds


if __name__ == "__main__":
    main()
