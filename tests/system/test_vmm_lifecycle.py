"""How a berth-vmm run ends: reboot, crash, emulation failure, timeout, signals; serial backends."""
import os
import pty
import select
import termios
import re
import signal
import socket
import subprocess
import time
import pytest
from conftest import needs_kvm, run_vmm, VMM, GUEST

pytestmark = needs_kvm


@pytest.mark.parametrize("how", ["reboot-acpi", "reboot-kbd"])
def test_reboot_exits_with_status_3(vmm, guest, how):
    r = run_vmm(["--cmdline", f"test={how}"], vm_timeout=30)
    assert r.rc == 3, r
    assert "guest rebooted" in r.err


def test_reboot_restart_boots_again(vmm, guest):
    r = run_vmm(["--cmdline", "test=reboot-acpi", "--on-reboot", "restart"], vm_timeout=6)
    assert r.rc == 6, r  # stopped by --timeout after rebooting in a loop
    assert r.out.count("berth-guest: start") >= 2, r
    assert "restarting the VM" in r.err


def test_triple_fault_reported(vmm, guest):
    r = run_vmm(["--cmdline", "test=triple-fault"], vm_timeout=30)
    assert r.rc == 4, r
    assert "triple fault (KVM_EXIT_SHUTDOWN)" in r.err
    assert re.search(r"rip=0x[0-9a-f]{16}", r.err)
    assert re.search(r"cr0=0x[0-9a-f]+ cr2=", r.err)
    assert "instruction bytes" in r.err


def test_emulation_failure_or_success_is_reported(vmm, guest):
    r = run_vmm(["--cmdline", "test=ring0-popcnt,poweroff"], vm_timeout=30)
    if r.rc == 5:  # hosts whose KVM emulates guest ring 0 (no VT-x/AMD-V)
        assert "suberror 1 (emulation failure)" in r.err, r
        m = re.search(r"instruction bytes \(exit data, (\d+)\): ([0-9a-f ]+)", r.err)
        assert m, r
        assert "0f b8" in m.group(2)  # popcnt
    else:  # hardware-assisted hosts run the instruction
        assert r.rc == 0, r


def test_timeout_stops_a_hung_guest(vmm, guest):
    t = time.monotonic()
    r = run_vmm(["--cmdline", "test=halt"], vm_timeout=2)
    assert r.rc == 6, r
    assert time.monotonic() - t < 15
    assert "--timeout expired" in r.err


def test_sigterm_stops_the_vm(vmm, guest):
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--cmdline", "test=halt"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    out = ""
    while "berth-guest: start" not in out and time.monotonic() < deadline:
        out += os.read(p.stdout.fileno(), 4096).decode()
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 7, err
    assert "received Terminated" in err


def test_serial_to_file_and_second_port(vmm, guest, tmp_path):
    f = tmp_path / "com1.log"
    r = run_vmm(["--serial", f"file:{f}", "--serial2", "pty", "--cmdline", "test=boot,poweroff"],
                vm_timeout=30)
    assert r.rc == 0, r
    assert "berth-test boot PASS" in f.read_text()
    assert r.out == ""
    assert re.search(r"serial1: info: serial console on /dev/pts/\d+", r.err), r


def test_serial_unix_socket(vmm, guest, tmp_path):
    path = str(tmp_path / "console.sock")
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--serial", f"unix:{path}", "--cmdline", "test=halt",
                          "--timeout", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.02)
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.settimeout(20)
        data = b""
        while b"berth-guest: start" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        s.close()
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)
    assert p.returncode == 7
    assert not os.path.exists(path), "the socket is removed on exit"


def test_pty_backend_carries_output(vmm, guest):
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--serial", "pty", "--cmdline", "test=halt",
                          "--timeout", "30"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stderr.readline()
        m = re.search(r"serial console on (/dev/pts/\d+)", line)
        assert m, line
        fd = os.open(m.group(1), os.O_RDONLY | os.O_NOCTTY)
        data = b""
        deadline = time.monotonic() + 20
        while b"berth-guest: start" not in data and time.monotonic() < deadline:
            data += os.read(fd, 4096)
        os.close(fd)
        assert b"berth-guest: start" in data
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=20)


def _read_until(fd, needle, timeout=20):
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data


def test_terminal_console_is_raw_and_ctrl_a_x_quits(vmm, guest):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--cmdline", "test=echo,halt", "--timeout", "30"],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE, text=True)
    try:
        assert b"echo ready" in _read_until(master, b"echo ready")
        # Raw mode: the bytes reach the guest unchanged, Ctrl-A Ctrl-A sends one Ctrl-A.
        os.write(master, b"ab\x01\x01c\n")
        out = _read_until(master, b"berth-test echo")
        out += _read_until(master, b"\n", 5)
        # the guest prints control characters as '?': 5 bytes arrived, one of them Ctrl-A
        assert b'berth-test echo PASS got="ab?c"' in out, out
        assert b"bytes=5" in out, out
        os.write(master, b"\x01x")
        _, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 7, err
    assert "Ctrl-A x" in err
    assert termios.tcgetattr(slave)[3] == before[3], "terminal modes are restored on exit"
    os.close(slave)
    os.close(master)
