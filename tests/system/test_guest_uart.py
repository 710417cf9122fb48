# test_guest_uart.py — the 16550A UART (registers, loopback, IOAPIC IRQs) and host->guest input, on berth and QEMU.
"""The test guest's `uart` test checks COM1 (and COM2 when present) the way Linux's 8250 driver probes and drives
them: scratch, IER, divisor latch, FIFO bits in IIR, loopback MSR/data, THRE and received-data interrupts through
the IOAPIC. `echo` reads one line of host input with the received-data interrupt. `uart-ext` checks finer 16550A
behaviour (overrun, FIFO flush, character timeout, line-status interrupt) that Linux does not depend on.

QEMU TCG (q35) is the reference: every check must pass there. On berth-vmm `uart` and `echo` must pass; `uart-ext`
is reported as an expected failure while berth's UART lacks those details (see the berth-info lines)."""

import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
VMM = os.path.join(REPO, "build", "bin", "berth-vmm")
QEMU = shutil.which("qemu-system-x86_64")
TIMEOUT = 120
ECHO_LINE = b"hello berth\n"

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')


def qemu_cmd(append, serials=("stdio",)):
    cmd = [QEMU, "-M", "q35", "-accel", "tcg", "-m", "512M", "-smp", "1", "-display", "none", "-nodefaults",
           "-no-reboot", "-kernel", ELF, "-append", append]
    for s in serials:
        cmd += ["-serial", s]
    return cmd


def berth_cmd(cmdline, *extra, vm_timeout=60):
    return [VMM, "--kernel", ELF, "--cmdline", cmdline, "--timeout", str(vm_timeout), *extra]


class Stream:
    """Collects a byte stream (a pipe or a socket) in a thread; wait_for() blocks until some text shows up."""

    def __init__(self, read):
        self.buf = b""
        self.eof = False
        self.cond = threading.Condition()
        threading.Thread(target=self._pump, args=(read,), daemon=True).start()

    def _pump(self, read):
        while True:
            try:
                chunk = read()
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                else:
                    self.buf += chunk
                self.cond.notify_all()
            if not chunk:
                return

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while text not in self.buf and not self.eof and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return text in self.buf

    def wait_eof(self, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.eof and time.monotonic() < deadline:
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return self.eof

    def text(self):
        with self.cond:
            return self.buf.decode(errors="replace").replace("\r", "")


class Guest:
    """One VM run (berth-vmm or QEMU) with its console output and result lines."""

    def __init__(self, cmd, stdin=subprocess.DEVNULL):
        self.cmd = cmd
        self.p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.out = Stream(lambda: os.read(self.p.stdout.fileno(), 4096))
        self.err = Stream(lambda: os.read(self.p.stderr.fileno(), 4096))
        self.console = self.out  # where the guest's COM1 shows up

    def wait(self, timeout=TIMEOUT):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"VM did not finish within {timeout}s: {' '.join(self.cmd)}\n{self.report()}")
        self.out.wait_eof(10)
        self.err.wait_eof(10)
        return rc

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()

    def lines(self):
        found = []
        for raw in self.console.text().split("\n"):
            i = raw.find("berth-")
            if i >= 0:
                found.append(raw[i:])
        return found

    def result(self, name):
        got = [m for m in (RESULT.match(line) for line in self.lines()) if m and m.group(1) == name]
        assert len(got) == 1, f"expected one result line for {name}\n{self.report()}"
        return got[0].group(2), dict(KV.findall(got[0].group(3)))

    def passed(self, name):
        status, kv = self.result(name)
        assert status == "PASS", f"{name} failed: {kv}\n{self.report()}"
        return kv

    def report(self):
        return (f"cmd: {' '.join(self.cmd)}\nrc={self.p.returncode}\n--- console ---\n{self.console.text()[-4000:]}"
                f"\n--- stderr ---\n{self.err.text()[-3000:]}")


def run(cmd):
    g = Guest(cmd)
    rc = g.wait()
    assert rc == 0, g.report()
    assert not any("unexpected" in line for line in g.lines()), g.report()
    return g


# ---- uart: registers, loopback and interrupts ------------------------------------------------------------------

@pytest.mark.parametrize("serials,ports", [(("stdio",), 1), (("stdio", "null"), 2)], ids=["com1", "com1+com2"])
def test_uart_qemu(qemu, serials, ports):
    g = run(qemu_cmd("test=uart,poweroff", serials))
    kv = g.passed("uart")
    assert int(kv["ports"]) == ports, g.report()
    # Three steps per port, two interrupts each; QEMU may add re-assertion edges (counted as stray).
    assert int(kv["irqs"]) >= 6 * ports
    g.passed("poweroff")


@pytest.mark.parametrize("com2,ports", [(False, 1), (True, 2)], ids=["com1", "com1+com2"])
def test_uart_berth(berth, tmp_path, com2, ports):
    extra = ["--serial2", f"file:{tmp_path / 'com2.txt'}"] if com2 else []
    g = run(berth_cmd("test=uart,poweroff", *extra))
    kv = g.passed("uart")
    assert int(kv["ports"]) == ports, g.report()
    # berth raises the ISA line only on level changes: exactly one edge per step, nothing stray.
    assert int(kv["irqs"]) == 6 * ports, g.report()
    assert kv["stray"] == "0", g.report()
    g.passed("poweroff")
    if com2:
        assert (tmp_path / "com2.txt").read_bytes() == b"", "loopback bytes leaked to the COM2 backend"


def test_uart_ext_qemu(qemu):
    """The reference passes every extended check: proves the checks themselves."""
    g = run(qemu_cmd("test=uart-ext,poweroff", ("stdio", "null")))
    assert int(g.passed("uart-ext")["checks"]) == 5


def test_uart_ext_berth(berth, tmp_path):
    g = run(berth_cmd("test=uart-ext,uart,poweroff", "--serial2", f"file:{tmp_path / 'com2.txt'}"))
    g.passed("uart")  # the ext checks leave both ports usable
    # overrun with and without FIFOs, FIFO flush, trigger level + character timeout, line-status irq
    assert int(g.passed("uart-ext")["checks"]) == 5


# ---- echo: host -> guest input through the received-data interrupt ---------------------------------------------

def _send_after_ready(g, send):
    ready = g.console.wait_for(b"berth-guest: echo ready", 60)
    if not ready:
        g.kill()
        pytest.fail(f"guest never printed 'echo ready'\n{g.report()}")
    send(ECHO_LINE)


def _check_echo(g, rc, want="hello berth"):
    assert rc == 0, g.report()
    kv = g.passed("echo")
    assert kv["got"] == f'"{want}"', g.report()
    assert int(kv["irqs"]) >= 1, g.report()
    g.passed("poweroff")


def _echo_stdin(cmd):
    g = Guest(cmd, stdin=subprocess.PIPE)
    try:
        def send(data):
            g.p.stdin.write(data)
            g.p.stdin.flush()
        _send_after_ready(g, send)
        rc = g.wait()
    finally:
        g.kill()
        g.p.stdin.close()
    return g, rc


def test_echo_berth_stdin(berth):
    g, rc = _echo_stdin(berth_cmd("test=echo,poweroff"))
    _check_echo(g, rc)


def test_echo_qemu_stdin(qemu):
    g, rc = _echo_stdin(qemu_cmd("test=echo,poweroff"))
    _check_echo(g, rc)


def test_echo_berth_unix_socket(berth):
    d = tempfile.mkdtemp(prefix="berth-uart-")
    path = os.path.join(d, "com1.sock")
    g = Guest(berth_cmd("test=echo,poweroff", "--serial", f"unix:{path}"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                s.connect(path)
                break
            except OSError:
                if time.monotonic() > deadline or g.p.poll() is not None:
                    pytest.fail(f"cannot connect to {path}\n{g.report()}")
                time.sleep(0.05)
        g.console = Stream(lambda: s.recv(4096))  # berth replays what the guest printed before we came
        _send_after_ready(g, s.sendall)
        rc = g.wait()
        g.console.wait_eof(10)
        _check_echo(g, rc)
        assert "echo ready" not in g.out.text(), "COM1 output leaked to stdout with --serial unix:"
    finally:
        g.kill()
        s.close()
        shutil.rmtree(d, ignore_errors=True)


def test_echo_berth_truncates_long_line(berth):
    line = bytes(range(0x41, 0x41 + 26)) * 4  # 104 printable bytes
    g = Guest(berth_cmd("test=echo,poweroff"), stdin=subprocess.PIPE)
    try:
        _send_after_ready(g, lambda _: (g.p.stdin.write(line + b"\n"), g.p.stdin.flush()))
        rc = g.wait()
    finally:
        g.kill()
        g.p.stdin.close()
    _check_echo(g, rc, want=line[:64].decode())
