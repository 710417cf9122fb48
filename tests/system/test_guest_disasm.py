# test_guest_disasm.py — the test guest's ring-0 code must avoid instructions our hosts' ring-0 emulator fails on.
"""Disassemble every kernel (non-ring-3) code range of build/guest/berth-test-guest.elf and fail on any
instruction from HOST-FACTS.md's ring-0 "Fails" list. Ring-3 code (.user.text) is exempt, and so is exactly
one deliberately named function, ring0_popcnt_probe (the `ring0-popcnt` action that tests the VMM's
emulation-failure report)."""

import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
EXEMPT_PREFIX = "ring0_popcnt_probe"

FORBIDDEN_EXACT = {
    "int3", "int", "int1", "icebp", "into",
    "cmpxchg16b", "rdtscp", "popcnt", "lzcnt", "tzcnt",
    "lar", "lsl", "verr", "verw", "invpcid", "monitor", "monitorx", "mwait", "mwaitx",
    "movbe", "rdpid", "xgetbv", "xsetbv", "ldmxcsr", "stmxcsr", "emms", "femms", "wait", "fwait",
    "(bad)",
}
FORBIDDEN_PREFIXES = ("crc32", "xsave", "xrstor")
ALLOWED_F = {"fxsave", "fxsave64", "fxrstor", "fxrstor64"}  # listed as working at ring 0
VECTOR_REG = re.compile(r"%(x|y|z)mm\d+|%mm\d|%st(\(\d\))?\b|%k[0-7]\b")
PREFIXES = {"rep", "repz", "repnz", "repe", "repne", "lock", "data16", "data32", "addr32", "cs", "ds", "es",
            "fs", "gs", "ss", "notrack", "bnd", "rex", "rex.w", "rex.b", "rex.r", "rex.x", "xacquire",
            "xrelease"}

INSN = re.compile(r"^\s*([0-9a-f]+):\s+(.*)$")
SYMBOL = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")


def _need_tools():
    if not os.path.exists(ELF):
        pytest.skip(f"guest ELF not built: {ELF} (run `meson setup build && ninja -C build`)")
    for tool in ("objdump", "nm", "readelf"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed (binutils)")


def _symbols():
    out = subprocess.run(["nm", ELF], check=True, capture_output=True, text=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms[parts[2]] = int(parts[0], 16)
    return syms


def _exec_sections():
    out = subprocess.run(["readelf", "-SW", ELF], check=True, capture_output=True, text=True).stdout
    secs = []
    for m in re.finditer(r"\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*X\S*)\s", out):
        secs.append((m.group(1), int(m.group(2), 16), int(m.group(3), 16)))
    return secs


def _ranges():
    """(section, start, stop, objdump machine option or None for x86-64) for all ring-0 code."""
    syms = _symbols()
    ranges = []
    for name, addr, size in _exec_sections():
        if name == ".user.text":
            continue
        if name == ".text.boot32":
            ranges.append((name, addr, addr + size, "i386"))
        elif name == ".tramp":
            t = [syms[s] for s in ("tramp_start", "tramp_32", "tramp_64", "tramp_data")]
            ranges += [(name, t[0], t[1], "i8086"), (name, t[1], t[2], "i386"), (name, t[2], t[3], None)]
        else:
            ranges.append((name, addr, addr + size, None))
    return ranges


def _disassemble(section, start, stop, machine):
    cmd = ["objdump", "-d", "--no-show-raw-insn", "-j", section, f"--start-address={start:#x}",
           f"--stop-address={stop:#x}", ELF]
    if machine:
        cmd[2:2] = ["-M", machine]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    symbol = "?"
    for line in out.splitlines():
        m = SYMBOL.match(line.strip())
        if m:
            symbol = m.group(1)
            continue
        m = INSN.match(line)
        if m and m.group(2).strip():
            yield symbol, int(m.group(1), 16), m.group(2).strip()


def _mnemonic(text):
    words = text.split()
    while words and words[0] in PREFIXES:
        words = words[1:]
    return words[0] if words else ""


def _violation(text):
    mn = _mnemonic(text)
    if mn in FORBIDDEN_EXACT or mn.startswith(FORBIDDEN_PREFIXES):
        return mn
    if mn.startswith("f") and mn not in ALLOWED_F:
        return f"x87 {mn}"
    if mn.startswith("v"):
        return f"AVX {mn}"
    if VECTOR_REG.search(text):
        return f"SSE/MMX/x87 register in {mn}"
    return None


def _scan():
    seen, bad, exempt = 0, [], []
    for section, start, stop, machine in _ranges():
        for symbol, addr, text in _disassemble(section, start, stop, machine):
            seen += 1
            why = _violation(text)
            if not why:
                continue
            entry = f"{section} {addr:#x} <{symbol}> {text}  [{why}]"
            (exempt if symbol.startswith(EXEMPT_PREFIX) else bad).append(entry)
    return seen, bad, exempt


def test_kernel_code_has_no_forbidden_ring0_instructions():
    _need_tools()
    seen, bad, exempt = _scan()
    assert seen > 500, f"only {seen} kernel instructions disassembled: is the ELF layout as expected?"
    if bad:
        print("forbidden ring-0 instructions:")
        for b in bad:
            print("  " + b)
    assert not bad, f"{len(bad)} forbidden ring-0 instruction(s), first: {bad[0]}"
    # The scanner must actually see the one deliberate exception, or it proves nothing.
    assert any("popcnt" in e for e in exempt), "ring0_popcnt_probe's popcnt was not found by the scanner"


def test_layout_separates_ring0_and_ring3_code():
    _need_tools()
    secs = {name: (addr, size) for name, addr, size in _exec_sections()}
    assert ".text" in secs and ".user.text" in secs and ".tramp" in secs and ".text.boot32" in secs
    syms = _symbols()
    ua, us = secs[".user.text"]
    for kernel_sym in ("kmain", "trap_dispatch", "user_call", "ring0_popcnt_probe"):
        assert not ua <= syms[kernel_sym] < ua + us, f"{kernel_sym} is in .user.text"
    for user_sym in ("user_entry", "u_mem_job", "u_count_loop", "u_probe_int3"):
        assert ua <= syms[user_sym] < ua + us, f"{user_sym} is not in .user.text"


def test_scanner_detects_forbidden_forms():
    for text, expect in [("int3", "int3"), ("int    $0x80", "int"), ("lock cmpxchg16b (%rdi)", "cmpxchg16b"),
                         ("rep bsf %eax,%eax", None), ("tzcnt  %eax,%eax", "tzcnt"), ("crc32b %al,%eax", "crc32b"),
                         ("movq   %xmm0,%rax", "SSE"), ("fldz", "x87"), ("vmovdqa %ymm0,%ymm1", "AVX"),
                         ("xsaveopt (%rdi)", "xsaveopt"), ("mov    %rax,%rbx", None), ("fxsave (%rdi)", None),
                         ("lsl    %ax,%eax", "lsl"), ("rdpid  %rax", "rdpid"), ("pause", None)]:
        got = _violation(text)
        if expect is None:
            assert got is None, f"{text!r} wrongly flagged: {got}"
        else:
            assert got and expect in got, f"{text!r} not flagged as {expect}: {got}"
