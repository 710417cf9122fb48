"""berth's lifecycle verbs and `vm console` against a real berthd, real berth-vmm processes and the
test guest: start, pause, resume, save, restore, stop (forced after --timeout), turn-off and
restart with exit codes and --json; the progress line on a terminal; the console through the
CLI (ticks, input to the guest, detach with Ctrl-] on a terminal, the terminal restored, one
client at a time, a VM that is off) and the upgraded API connection itself on a raw socket."""
import os
import pty
import re
import select
import signal
import socket
import subprocess
import termios
import time

import pytest

from test_berthd_lifecycle import GUEST, TICK, V, create, daemon, run_dir, vm, wait_state  # noqa: F401
from test_cli import BERTH, Run, one_error_line
from conftest import kvm_usable

pytestmark = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def berth(d, *args, timeout=60, **kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    p = subprocess.run([BERTH, "--socket", d.sock] + [str(a) for a in args], capture_output=True,
                       text=True, timeout=timeout, env=e, stdin=subprocess.DEVNULL, **kw)
    return Run(p)


def ok(r, out):
    assert r.rc == 0 and r.out == out and r.err == "", r


def console_proc(d, name, **kw):
    return subprocess.Popen([BERTH, "--socket", d.sock, "vm", "console", name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def read_until(fd, pred, timeout=15):
    """Bytes from fd until pred(bytes so far) holds (or EOF / timeout: then the assertion fails)."""
    buf, deadline = b"", time.monotonic() + timeout
    while not pred(buf):
        left = deadline - time.monotonic()
        assert left > 0, f"timed out; got {buf[-400:]!r}"
        if not select.select([fd], [], [], left)[0]:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # a pty whose other side has gone
            chunk = b""
        assert chunk, f"EOF; got {buf[-400:]!r}"
        buf += chunk
    return buf


def ticks_past(n):
    return lambda b: any(int(x) > n for x in TICK.findall(b))


def test_lifecycle_verbs(daemon):
    d = daemon()
    r = berth(d, "vm", "create", "cl1", "--kernel", GUEST, "--cmdline", "test=ticker", "--memory",
              "64M", "--auto-start", "nothing", "--json")
    assert r.rc == 0, r
    uuid = r.json["uuid"]

    ok(berth(d, "vm", "start", "cl1"), "VM cl1: running (booted)\n")
    pid = vm(d, "cl1")["vmm_pid"]
    line = one_error_line(berth(d, "vm", "start", "cl1"), 4)
    assert "is running: start needs it off, crashed or saved" in line, line
    assert "not-found" not in line and one_error_line(berth(d, "vm", "pause", "nope"), 3)

    r = berth(d, "vm", "pause", "cl1", "--json")
    assert r.rc == 0 and r.err == "", r
    op = r.json
    assert (op["kind"], op["state"], op["progress"], op["vm"]) == ("pause", "succeeded", 100, uuid)
    assert d.get(f"{V}/operations/{op['id']}").json == op
    assert vm(d, "cl1")["state"] == "paused"

    r = berth(d, "vm", "resume", "cl1", "--no-wait")
    assert r.rc == 0 and r.err == "" and UUID.match(r.out.strip()), r
    op = d.get(f"{V}/operations/{r.out.strip()}?wait=true").json
    assert (op["kind"], op["state"]) == ("resume", "succeeded"), op
    r = berth(d, "vm", "resume", "cl1", "--no-wait", "--json")  # running now: refused at once
    assert one_error_line(r, 4) and "is running: resume needs it paused" in r.err, r
    r = berth(d, "vm", "pause", "cl1", "--no-wait", "--json")
    assert r.rc == 0 and r.json["kind"] == "pause" and r.json["state"] in ("queued", "running",
                                                                           "succeeded"), r
    d.get(f"{V}/operations/{r.json['id']}?wait=true")
    ok(berth(d, "vm", "resume", "cl1"), "VM cl1: running (resumed)\n")

    ok(berth(d, "vm", "save", "cl1"), "VM cl1: saved (saved)\n")
    assert os.path.isdir(os.path.join(d.state, "vms", uuid, "saved"))
    ok(berth(d, "vm", "start", "cl1"), "VM cl1: running (restored)\n")

    # the ticker ignores the power button: stop turns it off after --timeout
    t0 = time.monotonic()
    ok(berth(d, "vm", "stop", "cl1", "--timeout", "1"), "VM cl1: off (shutdown-timeout)\n")
    assert time.monotonic() - t0 >= 1
    line = one_error_line(berth(d, "vm", "stop", "cl1"), 4)
    assert "is off: shutdown needs it running" in line, line

    ok(berth(d, "vm", "start", uuid), "VM cl1: running (booted)\n")
    pid = vm(d, "cl1")["vmm_pid"]
    r = berth(d, "vm", "restart", "cl1", "--json")
    assert r.rc == 0 and (r.json["kind"], r.json["state"]) == ("restart", "succeeded"), r
    v = vm(d, "cl1")
    assert v["state"] == "running" and v["vmm_pid"] != pid
    ok(berth(d, "vm", "stop", "cl1", "--turn-off"), "VM cl1: off (turned-off)\n")
    ok(berth(d, "vm", "start", "cl1"), "VM cl1: running (booted)\n")
    ok(berth(d, "vm", "turn-off", "cl1"), "VM cl1: off (turned-off)\n")
    kinds = [o["kind"] for o in d.get(V + "/operations").json["operations"]][:4]
    assert kinds == ["turn-off", "start", "turn-off", "restart"], kinds


def test_a_failed_operation_exits_1_with_its_error(daemon, tmp_path):
    d = daemon()
    create(d, "bad", boot={"kernel": str(tmp_path / "no-such-kernel")})
    line = one_error_line(berth(d, "vm", "start", "bad"), 1)
    assert line.startswith("berth: error: start of VM bad failed: ") and "no-such-kernel" in line
    r = berth(d, "vm", "start", "bad", "--json")
    assert r.rc == 1 and r.json["state"] == "failed" and "no-such-kernel" in r.err, r
    assert r.json["error"]["code"] == "action-failed"


def test_stop_usage_errors_send_nothing(daemon):
    d = daemon()
    create(d, "u1")
    for args, words in [(["--timeout", "0"], "--timeout: '0'"), (["--timeout", "x"], "--timeout: 'x'"),
                        (["--timeout", "3601"], "from 1 to 3600"),
                        (["--timeout", "5", "--turn-off"], "--turn-off stops at once")]:
        r = berth(d, "vm", "stop", "u1", *args)
        assert r.rc == 2 and words in r.err and r.out == "", r
    r = berth(d, "vm", "start")
    assert r.rc == 2 and "missing NAME|UUID" in r.err, r
    assert d.get(V + "/operations").json["operations"] == []


def test_progress_line_on_a_terminal(daemon):
    """stderr a terminal: one line rewritten in place, cleared at the end; stdout unchanged."""
    d = daemon()
    create(d, "pg")
    ok(berth(d, "vm", "start", "pg"), "VM pg: running (booted)\n")
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BERTH, "--socket", d.sock, "vm", "stop", "pg", "--timeout", "1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        out, _ = p.communicate(timeout=30)
        err = read_until(master, lambda b: b.endswith(b"\r\x1b[K") and p.poll() is not None
                         and b.count(b"\r\x1b[K") >= 3, timeout=5)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0 and out == b"VM pg: off (shutdown-timeout)\n", (p.returncode, out)
    assert b"\n" not in err, err
    frames = [f for f in err.split(b"\r\x1b[K") if f]
    assert frames and all(re.fullmatch(rb"shutdown pg: (queued|running) +\d+%", f) for f in frames), err


def test_console_through_the_cli(daemon):
    d = daemon()
    create(d, "con")
    ok(berth(d, "vm", "start", "con"), "VM con: running (booted)\n")
    p = console_proc(d, "con", stdin=subprocess.PIPE)
    try:
        out = read_until(p.stdout.fileno(), lambda b: len(TICK.findall(b)) >= 3)
        assert out.startswith(b"berth-guest: start"), out[:200]  # the backlog comes first
        got = [int(x) for x in TICK.findall(out)]
        assert got == list(range(got[0], got[0] + len(got))), got
        # one client at a time
        line = one_error_line(berth(d, "vm", "console", "con"), 4)
        assert "in use by another client" in line, line
        # the end of stdin is not the end of the console: the output goes on
        p.stdin.close()
        read_until(p.stdout.fileno(), ticks_past(max(got) + 5))
        assert p.poll() is None
    finally:
        p.kill()
        p.wait()
    # the VM stopping ends the console: exit 0
    p = console_proc(d, "con", stdin=subprocess.DEVNULL)
    try:
        read_until(p.stdout.fileno(), lambda b: TICK.search(b))
        ok(berth(d, "vm", "turn-off", "con"), "VM con: off (turned-off)\n")
        assert p.wait(timeout=15) == 0
        assert p.stderr.read() == b""
    finally:
        p.kill()
        p.wait()
    line = one_error_line(berth(d, "vm", "console", "con"), 4)
    assert line == "berth: error: VM 'con' is off: its console needs it running or paused", line
    assert one_error_line(berth(d, "vm", "console", "nope"), 3)


def test_console_input_reaches_the_guest(daemon):
    d = daemon()
    create(d, "echo1", cmdline="test=echo,poweroff")
    ok(berth(d, "vm", "start", "echo1"), "VM echo1: running (booted)\n")
    p = console_proc(d, "echo1", stdin=subprocess.PIPE)
    try:
        read_until(p.stdout.fileno(), lambda b: b"berth-guest: echo ready" in b)
        p.stdin.write(b"hello berth\n")
        p.stdin.flush()
        rest = p.stdout.read()  # until the guest powers off and the console closes
        assert p.wait(timeout=15) == 0
    finally:
        p.kill()
        p.wait()
    assert re.search(rb'berth-test echo PASS .*got="hello berth"', rest), rest
    wait_state(d, "echo1", "off")  # the guest powered off after its echo


def pty_console(d, name):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    p = subprocess.Popen([BERTH, "--socket", d.sock, "vm", "console", name], stdin=slave,
                         stdout=slave, stderr=slave, start_new_session=True)
    return p, master, slave, before


def test_console_detach_and_terminal_restored(daemon):
    d = daemon()
    create(d, "tty1")
    ok(berth(d, "vm", "start", "tty1"), "VM tty1: running (booted)\n")
    for how in ("ctrl-]", "sigterm"):
        p, master, slave, before = pty_console(d, "tty1")
        try:
            out = read_until(master, lambda b: len(TICK.findall(b)) >= 2)
            assert b"Connected to the console of VM tty1 (Ctrl-] detaches)" in out
            raw = termios.tcgetattr(slave)
            assert not raw[3] & (termios.ICANON | termios.ECHO | termios.ISIG), "not raw"
            if how == "ctrl-]":
                os.write(master, b"\x1d")
                assert p.wait(timeout=10) == 0
                words = b"Detached from VM tty1"
            else:
                p.send_signal(signal.SIGTERM)
                assert p.wait(timeout=10) == 128 + signal.SIGTERM
                words = b"Stopped by a signal"
            assert words in read_until(master, lambda b: words in b, timeout=5)
            assert termios.tcgetattr(slave) == before, how
        finally:
            p.kill()
            p.wait()
            os.close(master)
            os.close(slave)
    assert vm(d, "tty1")["state"] == "running"  # detaching does not touch the VM


def upgrade(d, path, headers=b"Upgrade: berth-console\r\nConnection: Upgrade\r\n"):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.sock)
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: localhost\r\n" + headers + b"\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, buf
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    return s, head.decode(), rest


def test_console_api_upgrade(daemon):
    d = daemon()
    v = create(d, "raw1")
    # no VMM yet: 409; unknown VM: 404; no upgrade headers: 426 (all checked against OpenAPI)
    r = d.request("GET", f"{V}/vms/raw1/console",
                  headers={"Upgrade": "berth-console", "Connection": "Upgrade"})
    assert r.status == 409 and r.error["code"] == "invalid-state", r
    r = d.request("GET", f"{V}/vms/nope/console",
                  headers={"Upgrade": "berth-console", "Connection": "Upgrade"})
    assert r.status == 404, r
    r = d.get(f"{V}/vms/raw1/console")
    assert r.status == 426 and r.error["code"] == "upgrade-required", r
    r = d.request("GET", f"{V}/vms/raw1/console", headers={"Upgrade": "websocket", "Connection": "Upgrade"})
    assert r.status == 426, r
    assert d.post(f"{V}/vms/raw1/start?wait=true", None).json["state"] == "succeeded"

    s, head, rest = upgrade(d, f"{V}/vms/{v['uuid']}/console")
    try:
        lines = head.split("\r\n")
        assert lines[0] == "HTTP/1.1 101 Switching Protocols", head
        hdrs = {k.lower(): val for k, val in (l.split(": ", 1) for l in lines[1:])}
        assert hdrs["upgrade"] == "berth-console" and hdrs["connection"].lower() == "upgrade", head
        out = rest + read_until(s.fileno(), lambda b: len(TICK.findall(rest + b)) >= 2)
        assert out.startswith(b"berth-guest: start"), out[:100]
        # a second client is turned away while this one is attached
        s2, head2, rest2 = upgrade(d, f"{V}/vms/raw1/console")
        s2.close()
        assert head2.startswith("HTTP/1.1 409") and b'"busy"' in rest2, (head2, rest2)
        # half-closing the sending side keeps the output coming
        s.shutdown(socket.SHUT_WR)
        read_until(s.fileno(), ticks_past(max(int(x) for x in TICK.findall(out)) + 3))
    finally:
        s.close()
    # the VMM's one slot is free again once the relay has noticed
    s, head, _ = upgrade(d, f"{V}/vms/raw1/console")
    s.close()
    assert head.startswith("HTTP/1.1 101"), head
    # a stopping berthd ends the stream and is not held up by it
    s, head, _ = upgrade(d, f"{V}/vms/raw1/console")
    try:
        assert head.startswith("HTTP/1.1 101"), head
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        s.settimeout(10)
        while s.recv(65536):
            pass
        assert d.proc.wait(timeout=15) == 0
        assert time.monotonic() - t0 < 5, "berthd waited for the console"
    finally:
        s.close()
    assert "console detached: berthd stops" in d.log_text()
    d.start()  # for the fixture's cleanup: reattaches and turns the VM off
    assert vm(d, "raw1")["state"] == "running"
