# test_guest_qemu.py — run the test guest on QEMU TCG (q35): proves the guest follows the specs berth implements.
"""Each test boots build/guest/berth-test-guest.elf with `-kernel` (PVH entry) on QEMU TCG, reads the serial
console and checks the guest's one-line results (`berth-test <name> PASS|FAIL ...`) and QEMU's exit status
(ACPI S5 power-off => QEMU exits by itself with 0). Every boot has a timeout so nothing hangs."""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
QEMU = shutil.which("qemu-system-x86_64")
TIMEOUT = 120

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


@pytest.fixture(autouse=True)
def _need_qemu_and_guest():
    if not QEMU:
        pytest.skip("qemu-system-x86_64 not installed (Debian: qemu-system-x86)")
    if not os.path.exists(ELF):
        pytest.skip(f"guest ELF not built: {ELF} (run `meson setup build && ninja -C build`)")


def qemu_cmd(append=None, mem="512M", smp=1, cpu=None, extra=()):
    cmd = [QEMU, "-M", "q35", "-accel", "tcg", "-m", mem, "-smp", str(smp), "-display", "none",
           "-serial", "stdio", "-nodefaults", "-no-reboot", "-kernel", ELF]
    if cpu:
        cmd += ["-cpu", cpu]
    if append is not None:
        cmd += ["-append", append]
    return cmd + list(extra)


class Run:
    def __init__(self, returncode, output):
        self.returncode = returncode
        self.output = output
        # The console may prefix the first line with firmware output: keep what follows "berth-".
        self.lines = []
        for raw in output.replace("\r", "").split("\n"):
            i = raw.find("berth-")
            if i >= 0:
                self.lines.append(raw[i:])
        self.results = []
        for line in self.lines:
            m = RESULT.match(line)
            if m:
                self.results.append((m.group(1), m.group(2), dict(KV.findall(m.group(3)))))

    def result(self, name):
        found = [r for r in self.results if r[0] == name]
        assert len(found) == 1, f"expected one result line for {name}, got {found}\n{self.output}"
        return found[0]

    def passed(self, name):
        _, status, kv = self.result(name)
        assert status == "PASS", f"{name} failed: {kv}\n{self.output}"
        return kv


def run_guest(cmd, timeout=TIMEOUT):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"guest did not finish within {timeout}s: {' '.join(cmd)}\n{out}")
    return Run(p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))


def assert_clean_poweroff(run):
    assert run.returncode == 0, f"qemu exit status {run.returncode}\n{run.output}"
    assert "berth-guest: poweroff failed" not in run.output
    assert not any("unexpected exception" in line for line in run.lines), run.output


def test_boot_memmap_and_cmdline():
    append = "test=boot,poweroff mem_mb=512 extra=x,y"
    run = run_guest(qemu_cmd(append, mem="512M"))
    assert_clean_poweroff(run)
    assert "berth-guest: start" in run.lines
    assert f'berth-guest: cmdline="{append}"' in run.lines
    kv = run.passed("boot")
    assert int(kv["cmdline_len"]) == len(append)
    entries = [dict(KV.findall(line)) for line in run.lines if line.startswith("berth-info memmap ")]
    assert entries, run.output
    ram = [e for e in entries if e["type"] == "1"]
    assert int(kv["ram_ranges"]) == len(ram)
    ram_bytes = sum(int(e["size"], 16) for e in ram)
    assert int(kv["ram_bytes"]) == ram_bytes
    assert 508 << 20 <= ram_bytes <= 512 << 20
    assert any(int(e["addr"], 16) == 0x100000 for e in ram), "RAM at 1 MiB missing from the memmap"
    run.passed("poweroff")


def test_acpi_tables():
    run = run_guest(qemu_cmd("test=acpi,poweroff", smp=2))
    assert_clean_poweroff(run)
    kv = run.passed("acpi")
    assert kv["cpus"] == "2"
    assert kv["ioapic"] == "0xfec00000"
    assert kv["pm1a_cnt"] == "io:0x604"
    assert kv["mcfg"] == "0xb0000000"


@pytest.mark.parametrize("cpus", [2, 4])
def test_smp(cpus):
    run = run_guest(qemu_cmd("test=smp,poweroff", smp=cpus))
    assert_clean_poweroff(run)
    assert int(run.passed("smp")["cpus"]) == cpus
    assert len([line for line in run.lines if line.startswith("berth-info smp cpu=")]) == cpus


@pytest.mark.parametrize("mem,gib_above_4g", [("512M", 0), ("5G", 3)])
def test_mem(mem, gib_above_4g):
    run = run_guest(qemu_cmd("test=mem,poweroff", mem=mem, smp=2))
    assert_clean_poweroff(run)
    kv = run.passed("mem")
    size = int(mem[:-1]) << (30 if mem.endswith("G") else 20)
    # Everything but the low 1 MiB, firmware/ACPI areas and the guest's own few MiB.
    assert size - (16 << 20) <= int(kv["bytes"]) <= size
    assert int(kv["above4g"]) == gib_above_4g << 30


def test_timer():
    run = run_guest(qemu_cmd("test=timer,poweroff"))
    assert_clean_poweroff(run)
    kv = run.passed("timer")
    assert 850 <= int(kv["hz"]) <= 1150
    assert int(kv["tsc_khz"]) > 100000
    assert int(kv["apic_khz"]) > 1000


def test_exceptions():
    run = run_guest(qemu_cmd("test=exceptions,poweroff"))
    assert_clean_poweroff(run)
    assert int(run.passed("exceptions")["count"]) >= 13


def test_poweroff_exits_qemu_with_status_0():
    run = run_guest(qemu_cmd("test=poweroff"))
    assert_clean_poweroff(run)
    assert run.results == [("poweroff", "PASS", {})]


def test_default_tests_without_test_option():
    run = run_guest(qemu_cmd("", smp=2))
    assert_clean_poweroff(run)
    assert [(r[0], r[1]) for r in run.results] == [
        ("boot", "PASS"), ("smp", "PASS"), ("mem", "PASS"), ("timer", "PASS"), ("exceptions", "PASS")]


def test_brief_command_line_nographic():
    """The exact invocation from the guest's brief (-nographic: serial multiplexed on stdio)."""
    cmd = [QEMU, "-M", "q35", "-accel", "tcg", "-m", "512M", "-smp", "2", "-nographic", "-no-reboot",
           "-kernel", ELF, "-append", "test=boot,smp,mem,timer,exceptions,poweroff"]
    run = run_guest(cmd)
    assert_clean_poweroff(run)
    for name in ("boot", "smp", "mem", "timer", "exceptions", "poweroff"):
        run.passed(name)


def test_unknown_test_fails_and_run_continues():
    run = run_guest(qemu_cmd("test=nosuch,boot"))
    assert_clean_poweroff(run)
    _, status, kv = run.result("nosuch")
    assert status == "FAIL" and kv["reason"] == "unknown-test"
    run.passed("boot")


@pytest.mark.parametrize("action", ["reboot-acpi", "reboot-kbd", "triple-fault"])
def test_reset_actions_end_the_vm(action):
    # -no-reboot turns the reset into a QEMU exit.
    run = run_guest(qemu_cmd(f"test={action}"))
    assert run.returncode == 0, run.output
    run.passed(action)
    assert "reboot failed" not in run.output and "did not reset" not in run.output


def test_halt_keeps_running():
    p = subprocess.Popen(qemu_cmd("test=halt"), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, deadline = b"", time.monotonic() + TIMEOUT
        while b"berth-test halt PASS" not in out and time.monotonic() < deadline:
            chunk = p.stdout.read1(4096)
            if not chunk:
                break
            out += chunk
        assert b"berth-test halt PASS" in out, out.decode(errors="replace")
        time.sleep(2)
        assert p.poll() is None, "guest exited instead of halting"
    finally:
        p.kill()
        p.wait()


def test_ring0_popcnt():
    # TCG executes popcnt when the CPU model has it; the point on berth is the VMM's emulation-failure report.
    run = run_guest(qemu_cmd("test=ring0-popcnt", cpu="max"))
    assert_clean_poweroff(run)
    assert run.passed("ring0-popcnt")["result"] == "8"


def qmp_command(f, command):
    """Send one QMP command on the connection's file and wait for its return (events are skipped)."""
    f.write(json.dumps({"execute": command}).encode() + b"\n")
    f.flush()
    while True:
        line = f.readline()
        assert line, f"QMP closed before answering {command}"
        msg = json.loads(line)
        if "error" in msg:
            pytest.fail(f"QMP {command}: {msg['error']}")
        if "return" in msg:
            return msg["return"]


def test_powerbutton_qmp_system_powerdown():
    """QEMU's own ACPI power button (QMP system_powerdown) for test=powerbutton: the guest's fixed-event
    handling (PM1 PWRBTN_EN/PWRBTN_STS, SCI through the I/O APIC as the MADT override says) is what the
    ACPI spec asks of an OS, so berth's power button is checked against the same guest."""
    qmp_dir = tempfile.mkdtemp(prefix="berth-qmp-")
    qmp_path = os.path.join(qmp_dir, "qmp.sock")
    cmd = qemu_cmd("test=powerbutton", extra=["-qmp", f"unix:{qmp_path},server=on,wait=off"])
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = b""
    try:
        deadline = time.monotonic() + TIMEOUT
        while not re.search(rb"berth-test powerbutton (READY|FAIL)[^\n]*\n", out):
            assert time.monotonic() < deadline, out.decode(errors="replace")
            chunk = p.stdout.read1(4096)
            assert chunk, f"QEMU exited before the guest was ready\n{out.decode(errors='replace')}"
            out += chunk
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(qmp_path)
        f = s.makefile("rwb")
        assert "QMP" in json.loads(f.readline())
        qmp_command(f, "qmp_capabilities")
        qmp_command(f, "system_powerdown")
        rest, _ = p.communicate(timeout=TIMEOUT)
        out += rest
        s.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        shutil.rmtree(qmp_dir, ignore_errors=True)
    run = Run(p.returncode, out.decode(errors="replace"))
    assert_clean_poweroff(run)
    kv = run.passed("powerbutton")
    assert int(kv["sts"], 16) & 0x100, kv
    assert int(kv["irqs"]) >= 1
