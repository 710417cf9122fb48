#!/usr/bin/env python3
"""Generate the seed corpora for berth's fuzz targets (tests/fuzz/corpus/<target>/).

Run from anywhere: python3 tests/fuzz/make_seeds.py. The outputs are committed; rerun only when the
input format of a target changes. fuzz_boot_image inputs are: mode byte, RAM-size byte, kernel file.
"""
import os
import struct

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


if __name__ == "__main__":
    main()
