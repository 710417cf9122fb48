# test_guest_console.py — the test guest's virtio-console (MULTIPORT) driver: named ports, bytes both ways.
"""`test=console port=NAME` learns the ports and their names over the control queue, restarts the device with
that port's queues, opens it (PORT_OPEN), waits for the host side to be open, writes `berth-console hello\\n`,
reads one line and answers `echo:<line>\\n`. The host side is a unix socket per port: berth-vmm serves
`--console-port name=N,socket=PATH`; QEMU is the reference (`virtio-serial-pci` + `virtserialport`, its chardev
socket the server)."""

import os
import re
import shutil
import socket
import subprocess
import time

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
VMM = os.path.join(REPO, "build", "bin", "berth-vmm")
QEMU = shutil.which("qemu-system-x86_64")
AGENT = "org.qemu.guest_agent.0"
OTHER = "berth.test.1"

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def connect(path, proc, timeout=30):
    """Connect to a unix socket once its server has created it."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"VM exited before {path} appeared:\n{proc.stdout.read().decode(errors='replace')}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            time.sleep(0.02)
    pytest.fail(f"{path} never accepted a connection")


def read_line(s, timeout=60):
    s.settimeout(timeout)
    buf = b""
    while b"\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf


def finish(proc, cmd, timeout=120):
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"guest did not finish: {' '.join(cmd)}\n{out.decode(errors='replace')[-4000:]}")
    out = out.decode(errors="replace")
    report = f"cmd: {' '.join(cmd)}\nrc={proc.returncode}\n{out[-5000:]}"
    results = {}
    for raw in out.replace("\r", "").split("\n"):
        i = raw.find("berth-test ")
        m = RESULT.match(raw[i:]) if i >= 0 else None
        if m:
            results[m.group(1)] = (m.group(2), dict(KV.findall(m.group(3))))
    assert proc.returncode == 0, report
    assert results.get("poweroff", ("",))[0] == "PASS", report
    return results, report


def talk(cmd, agent_path, other_path=None):
    """Run the VM, play the host side on the agent port; returns the console result and the other port's bytes."""
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        s = connect(agent_path, proc)
        other = connect(other_path, proc) if other_path else None
        hello = read_line(s)
        assert hello == b"berth-console hello\n", f"got {hello!r}"
        s.sendall(b"ping 123\n")
        echo = read_line(s)
        assert echo == b"echo:ping 123\n", f"got {echo!r}"
        stray = b""
        if other:
            other.setblocking(False)
            try:
                stray = other.recv(4096)
            except BlockingIOError:
                pass
        results, report = finish(proc, cmd)
        if other:
            other.settimeout(1)
            try:
                stray += other.recv(4096)
            except (socket.timeout, OSError):
                pass
            other.close()
        s.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    status, kv = results.get("console", ("missing", {}))
    assert status == "PASS", f"console: {kv}\n{report}"
    assert kv["got"] == '"ping 123"', report
    return kv, stray


def test_console_berth(berth, tmp_path):
    agent, other = str(tmp_path / "qga.sock"), str(tmp_path / "other.sock")
    cmd = [VMM, "--kernel", ELF, "--cmdline", "test=console,poweroff", "--timeout", "90",
           "--console-port", f"name={AGENT},socket={agent}", "--console-port", f"name={OTHER},socket={other}"]
    kv, stray = talk(cmd, agent, other)
    assert kv["ports"] == f"{AGENT},{OTHER}" and kv["id"] == "1", kv
    assert stray == b"", f"the other port's socket got {stray!r}"


def test_console_second_port_berth(berth, tmp_path):
    """Port 2 (queues 6/7) by name, the agent port left alone."""
    agent, other = str(tmp_path / "qga.sock"), str(tmp_path / "other.sock")
    cmd = [VMM, "--kernel", ELF, "--cmdline", f"test=console,poweroff port={OTHER}", "--timeout", "90",
           "--console-port", f"name={AGENT},socket={agent}", "--console-port", f"name={OTHER},socket={other}"]
    kv, stray = talk(cmd, other, agent)
    assert kv["ports"] == f"{AGENT},{OTHER}" and kv["id"] == "2", kv
    assert stray == b"", f"the agent port's socket got {stray!r}"


def test_console_missing_port_fails_cleanly_berth(berth, tmp_path):
    sock = str(tmp_path / "x.sock")
    cmd = [VMM, "--kernel", ELF, "--cmdline", "test=console,poweroff port=no.such.port", "--timeout", "90",
           "--console-port", f"name={AGENT},socket={sock}"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    results, report = finish(proc, cmd)
    status, kv = results["console"]
    assert status == "FAIL" and "no-port-named no.such.port" in kv["reason"], report
    assert kv["ports"] == AGENT, report


def test_console_qemu(qemu, tmp_path):
    agent, other = str(tmp_path / "qga.sock"), str(tmp_path / "other.sock")
    cmd = [QEMU, "-M", "q35", "-accel", "tcg", "-m", "256M", "-smp", "1", "-display", "none", "-nodefaults",
           "-serial", "stdio", "-no-reboot", "-kernel", ELF, "-append", "test=console,poweroff",
           "-device", "virtio-serial-pci,disable-legacy=on",
           "-chardev", f"socket,id=c0,path={agent},server=on,wait=off",
           "-device", f"virtserialport,chardev=c0,name={AGENT}",
           "-chardev", f"socket,id=c1,path={other},server=on,wait=off",
           "-device", f"virtserialport,chardev=c1,name={OTHER}"]
    kv, stray = talk(cmd, agent, other)
    assert set(kv["ports"].split(",")) == {AGENT, OTHER}, kv
    assert stray == b"", f"the other port's socket got {stray!r}"
