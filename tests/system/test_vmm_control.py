# test_vmm_control.py — berth-vmm's control socket (--control): status, pause/resume, power button, quit, bad input.
"""Each test runs the real berth-vmm with the test guest and talks to its control socket the way berthd will:
4-byte big-endian length + one JSON object per frame (docs/control.md). `test=ticker` prints `berth-tick N`
every 100 ms from ring 3, so a paused guest is visible as silence on the serial console; `test=powerbutton`
waits for the ACPI power button and powers off through S5."""

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import GUEST, VMM, run_vmm

TICK = "berth-tick "


@pytest.fixture
def sockdir():
    """A short directory for sockets (sun_path holds 108 bytes; pytest's tmp_path can be long)."""
    d = tempfile.mkdtemp(prefix="berth-ctl-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


class Client:
    """One control connection: framed JSON requests, replies matched by id, events kept aside."""

    def __init__(self, path, timeout=20):
        self.events = []
        self.next_id = 0
        self.buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        end = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(path)
                return
            except OSError:
                if time.monotonic() > end:
                    raise
                time.sleep(0.02)

    def close(self):
        self.sock.close()

    def send_raw(self, data, fds=()):
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def send(self, obj, fds=()):
        payload = json.dumps(obj).encode()
        self.send_raw(struct.pack(">I", len(payload)) + payload, fds)

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete frame from berth-vmm")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def recv(self, timeout=20):
        """The next message, or None when the VMM closed the connection."""
        deadline = time.monotonic() + timeout
        hdr = self._read(4, deadline)
        if hdr is None:
            return None
        payload = self._read(struct.unpack(">I", hdr)[0], deadline)
        assert payload is not None, "connection closed in the middle of a frame"
        msg = json.loads(payload)
        assert isinstance(msg, dict)
        return msg

    def call(self, cmd, args=None, timeout=20, **extra):
        self.next_id += 1
        req = {"id": self.next_id, "cmd": cmd, **extra}
        if args is not None:
            req["args"] = args
        self.send(req)
        return self.reply(self.next_id, timeout)

    def reply(self, want_id, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            assert msg is not None, "connection closed before the reply"
            if "event" in msg:
                self.events.append(msg)
                continue
            assert msg["id"] == want_id, msg
            return msg

    def event(self, name, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["event"] == name:
                    return self.events.pop(i)
            msg = self.recv(max(0.1, deadline - time.monotonic()))
            assert msg is not None, f"connection closed before event {name}"
            assert "event" in msg, msg
            self.events.append(msg)

    def closed(self, timeout=10):
        """True once the VMM has closed this connection (any frames before that are discarded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.recv(max(0.1, deadline - time.monotonic())) is None:
                    return True
            except TimeoutError:
                return False
        return False


class Vmm:
    """berth-vmm with a control socket, running in the background; console lines are timestamped."""

    def __init__(self, sockdir, cmdline, extra=(), vm_timeout=120):
        self.sock = os.path.join(sockdir, "ctl.sock")
        self.cmd = [VMM, "--kernel", GUEST, "--control", self.sock, "--cmdline", cmdline,
                    "--timeout", str(vm_timeout), *extra]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines = []
        self.err = []
        self.lock = threading.Lock()
        self.readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self.readers:
            t.start()

    def _pump(self, f, into):
        for raw in iter(f.readline, b""):
            with self.lock:
                into.append((time.monotonic(), raw.decode(errors="replace").rstrip("\r\n")))

    def client(self):
        return Client(self.sock)

    def out(self):
        with self.lock:
            return [line for _, line in self.lines]

    def ticks(self):
        return [int(line[len(TICK):]) for line in self.out() if line.startswith(TICK)]

    def wait_for(self, text, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.out()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(f"'{text}' not seen\n{self.report()}")

    def wait_stderr(self, text, timeout=10):
        """True once text appears on stderr (read by a thread: allow it a moment)."""
        deadline = time.monotonic() + timeout
        while text not in self.stderr():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def wait(self, timeout=60):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"berth-vmm did not exit\n{self.report()}")
        for t in self.readers:
            t.join(5)
        return rc

    def stderr(self):
        with self.lock:
            return "\n".join(line for _, line in self.err)

    def report(self):
        return (f"cmd: {' '.join(self.cmd)}\nrc={self.proc.poll()}\n--- stdout ---\n"
                + "\n".join(self.out()[-60:]) + f"\n--- stderr ---\n{self.stderr()[-4000:]}")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def vmm_factory(berth, sockdir):
    started = []

    def start(cmdline, extra=(), vm_timeout=120):
        v = Vmm(sockdir, cmdline, extra, vm_timeout)
        started.append(v)
        return v

    yield start
    for v in started:
        v.kill()


def assert_error(reply, code, field=None):
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == code, reply
    assert reply["error"]["message"], reply
    if field is not None:
        assert reply["error"].get("field") == field, reply


def test_query_status_socket_and_quit(vmm_factory):
    v = vmm_factory("test=ticker", ["--name", "ctl-1", "--cpus", "2", "--memory", "256M"])
    c = v.client()
    st = stat.S_IMODE(os.stat(v.sock).st_mode)
    assert st == 0o600, oct(st)
    r = c.call("query-status")
    assert r["ok"] is True, r
    res = r["result"]
    assert res["state"] == "running"
    assert res["name"] == "ctl-1"
    assert res["pid"] == v.proc.pid
    assert res["vcpus"] == 2
    assert res["memory_bytes"] == 256 << 20
    assert isinstance(res["uptime_ms"], int) and 0 <= res["uptime_ms"] < 120000
    assert res["protocol"] == 1
    time.sleep(0.2)
    assert c.call("query-status")["result"]["uptime_ms"] >= res["uptime_ms"] + 150

    c.send({"id": "bye", "cmd": "quit"})
    assert c.reply("bye") == {"id": "bye", "ok": True, "result": {}}
    ev = c.event("shutdown")
    assert ev["data"] == {"reason": "quit", "exit_status": 8}, ev
    assert c.closed()
    assert v.wait() == 8, v.report()
    assert "quit command on the control socket" in v.stderr()
    assert not os.path.exists(v.sock), "the socket file outlived the VMM"


def test_query_stats_counts_disk_io_and_vcpu_time(vmm_factory, sockdir):
    """query-stats: per-disk counters kept by virtio-blk grow with the guest's writes (blk-fill
    writes the whole 4 MiB disk in 64 KiB chunks, flushing every 16), vCPU CPU time grows, and
    the counters never go backwards."""
    disk = os.path.join(sockdir, "stats.img")
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    v = vmm_factory("test=blk-fill,ticker", ["--cpus", "2", "--disk", f"{disk},format=raw"])
    c = v.client()
    v.wait_for("berth-tick 3")
    r = c.call("query-stats")
    assert r["ok"] is True, r
    s = r["result"]
    assert set(s) == {"cpu_time_ns", "vcpus", "rss_bytes", "disks", "nics"}, s
    assert s["nics"] == []
    assert [x["id"] for x in s["vcpus"]] == [0, 1], s
    assert s["vcpus"][0]["cpu_time_ns"] > 0 and s["cpu_time_ns"] >= s["vcpus"][0]["cpu_time_ns"]
    assert s["rss_bytes"] > 1 << 20
    (d,) = s["disks"]
    assert d["path"] == disk and d["device"].startswith("virtio-blk"), d
    assert d["write_bytes"] == 4 << 20 and d["write_requests"] == 64, d
    assert d["flush_requests"] >= 4 and d["errors"] == 0, d
    time.sleep(0.3)
    s2 = c.call("query-stats")["result"]
    for k in ("read_bytes", "read_requests", "write_bytes", "write_requests", "flush_requests"):
        assert s2["disks"][0][k] >= d[k], (k, d, s2)
    assert s2["vcpus"][0]["cpu_time_ns"] > s["vcpus"][0]["cpu_time_ns"]
    assert s2["cpu_time_ns"] > s["cpu_time_ns"]
    assert_error(c.call("query-stats", {"x": 1}), "unknown-field", "args.x")


def test_pause_stops_the_guest_and_resume_continues(vmm_factory):
    # 2 vCPUs: the AP never started (waits for INIT/SIPI inside KVM_RUN) must be parked too.
    v = vmm_factory("test=ticker", ["--cpus", "2"])
    v.wait_for(TICK + "3")
    c = v.client()
    r = c.call("pause")
    assert r["ok"] is True and r["result"] == {"state": "paused"}, r
    assert c.event("paused")["data"] == {}
    time.sleep(0.3)  # lines already in the pipe reach the reader
    before = v.ticks()
    time.sleep(1.5)  # 15 ticks if the guest still ran
    assert v.ticks() == before, f"guest output continued while paused\n{v.report()}"
    assert c.call("query-status")["result"]["state"] == "paused"

    r = c.call("pause")  # idempotent: no second event
    assert r["ok"] is True and r["result"]["state"] == "paused", r
    r = c.call("resume")
    assert r["ok"] is True and r["result"] == {"state": "running"}, r
    assert c.event("resumed")["data"] == {}
    assert not c.events, c.events  # the second pause announced nothing
    v.wait_for(f"{TICK}{before[-1] + 3}", timeout=10)
    after = v.ticks()
    assert after[:len(before) + 1] == before + [before[-1] + 1], "ticks skipped or repeated across the pause"
    assert c.call("resume")["result"]["state"] == "running"  # resuming a running VM is fine
    assert c.call("query-status")["result"]["state"] == "running"
    c.call("quit")
    assert v.wait() == 8, v.report()


def test_stop_while_paused_by_signal(vmm_factory):
    v = vmm_factory("test=ticker")
    v.wait_for(TICK + "1")
    c = v.client()
    assert c.call("pause")["ok"]
    v.proc.send_signal(signal.SIGTERM)
    ev = c.event("shutdown")
    assert ev["data"] == {"reason": "signal", "exit_status": 7}, ev
    assert v.wait() == 7, v.report()
    assert not os.path.exists(v.sock)


def test_stop_while_paused_by_timeout(vmm_factory):
    v = vmm_factory("test=ticker", vm_timeout=3)
    v.wait_for(TICK + "1")
    c = v.client()
    assert c.call("pause")["ok"]
    t = time.monotonic()
    assert c.event("shutdown", timeout=15)["data"]["reason"] == "timeout"
    assert v.wait() == 6, v.report()
    assert time.monotonic() - t < 10


def test_quit_while_paused(vmm_factory):
    v = vmm_factory("test=ticker")
    v.wait_for(TICK + "1")
    c = v.client()
    assert c.call("pause")["ok"]
    assert c.call("quit")["ok"]
    assert v.wait() == 8, v.report()


def test_powerdown_shuts_the_guest_down(vmm_factory):
    v = vmm_factory("test=powerbutton")
    v.wait_for("berth-test powerbutton READY")
    c = v.client()
    r = c.call("powerdown")
    assert r["ok"] is True and r["result"] == {"guest_enabled": True}, r
    assert c.event("powerdown-requested")["data"] == {"guest_enabled": True}
    assert c.event("shutdown")["data"] == {"reason": "poweroff", "exit_status": 0}
    assert v.wait() == 0, v.report()
    out = v.out()
    assert any(line.startswith("berth-test powerbutton PASS") for line in out), v.report()
    assert "guest entered ACPI S5" in v.stderr()


def test_powerdown_before_the_guest_listens_is_latched(vmm_factory):
    v = vmm_factory("test=ticker")
    v.wait_for(TICK + "1")
    c = v.client()
    r = c.call("powerdown")
    assert r["ok"] is True and r["result"] == {"guest_enabled": False}, r
    time.sleep(0.3)
    assert c.call("query-status")["result"]["state"] == "running"  # a guest without ACPI ignores it
    c.call("quit")
    assert v.wait() == 8


def test_malformed_input_closes_only_that_connection(vmm_factory):
    v = vmm_factory("test=ticker")
    c = v.client()
    assert c.call("query-status")["ok"]

    # Request-level errors: an error reply naming the field, and the connection stays usable.
    bad = v.client()
    assert_error(bad.call("reboot-now"), "unknown-command", "cmd")
    assert_error(bad.call("pause", {"timeout_ms": "soon"}), "invalid-argument", "args.timeout_ms")
    assert_error(bad.call("pause", {"timeout_ms": 0}), "invalid-argument", "args.timeout_ms")
    assert_error(bad.call("pause", {"wait": True}), "unknown-field", "args.wait")
    assert_error(bad.call("pause", [1]), "invalid-request", "args")
    assert_error(bad.call("query-status", extra_field=1), "unknown-field", "extra_field")
    bad.send({"id": 77})
    assert_error(bad.reply(77), "invalid-request", "cmd")
    bad.send({"id": 78, "cmd": 5})
    assert_error(bad.reply(78), "invalid-request", "cmd")
    r, w = os.pipe()
    try:
        bad.send({"id": 79, "cmd": "query-status"}, fds=[r, w])
        assert_error(bad.reply(79), "unexpected-fds")
    finally:
        os.close(r)
        os.close(w)
    assert bad.call("query-status")["ok"]
    assert not bad.events

    # Frame-level errors: the connection is closed (after a bad-frame reply when the frame was read whole).
    for payload in (b'{"id": 1, "cmd": ', b"[1, 2]", b"\xff\xfe", b"", b'{"a": 1, "a": 2}'):
        x = v.client()
        x.send_raw(struct.pack(">I", len(payload)) + payload)
        msg = x.recv()
        if msg is not None:
            assert_error(msg, "bad-frame")
            assert msg["id"] is None
        assert x.closed(), payload
        x.close()
    big = v.client()
    big.send_raw(struct.pack(">I", 0x7FFFFFFF) + b"{")
    assert big.closed()
    big.close()
    half = v.client()
    half.send_raw(struct.pack(">I", 100) + b'{"id": 1')  # truncated, then the client goes away
    half.close()

    # The VMM still serves the first client and new ones.
    assert c.call("query-status")["result"]["state"] == "running"
    d = v.client()
    assert d.call("query-status")["ok"]
    assert v.proc.poll() is None
    assert v.wait_stderr("payload is not valid JSON; closing the connection"), v.report()
    assert v.wait_stderr("frame longer than the 1 MiB limit; closing the connection"), v.report()
    d.call("quit")
    assert v.wait() == 8


def test_two_clients_see_each_others_events(vmm_factory):
    v = vmm_factory("test=ticker")
    a, b = v.client(), v.client()
    assert a.call("query-status")["ok"] and b.call("query-status")["ok"]
    assert a.call("pause")["ok"]
    assert b.event("paused")
    assert a.event("paused")
    assert b.call("query-status")["result"]["state"] == "paused"
    assert b.call("resume")["result"]["state"] == "running"
    assert a.event("resumed") and b.event("resumed")
    # Requests interleaved on both connections are answered on the right one.
    a.send({"id": "a1", "cmd": "query-status"})
    b.send({"id": "b1", "cmd": "query-status"})
    a.send({"id": "a2", "cmd": "query-status"})
    assert b.reply("b1")["ok"] and a.reply("a1")["ok"] and a.reply("a2")["ok"]
    b.call("quit")
    assert a.event("shutdown")["data"]["reason"] == "quit"
    assert b.event("shutdown")["data"]["reason"] == "quit"
    assert v.wait() == 8


def test_client_limit(vmm_factory):
    v = vmm_factory("test=ticker")
    clients = [v.client() for _ in range(8)]
    for c in clients:
        assert c.call("query-status")["ok"]
    extra = v.client()
    msg = extra.recv()
    assert_error(msg, "too-many-clients")
    assert extra.closed()
    clients.pop().close()
    deadline = time.monotonic() + 10
    while True:  # the VMM may see the new connection before the closed one
        again = v.client()
        again.send({"id": 1, "cmd": "query-status"})
        msg = again.recv()
        if msg and msg.get("ok"):
            break
        assert_error(msg, "too-many-clients")
        assert time.monotonic() < deadline
        again.close()
        time.sleep(0.05)
    clients[0].call("quit")
    assert v.wait() == 8


def test_reset_event_on_restart(vmm_factory):
    v = vmm_factory("test=reboot-acpi", ["--on-reboot", "restart"])
    c = v.client()
    assert c.event("reset", timeout=30)["data"] == {"reason": "reboot"}
    assert c.call("query-status")["result"]["state"] == "running"  # the rebuilt VM
    c.call("quit")
    assert v.wait() == 8


def test_stale_socket_replaced_and_other_files_kept(berth, sockdir):
    path = os.path.join(sockdir, "ctl.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # a stale socket file: nobody listens
    v = Vmm(sockdir, "test=ticker")
    try:
        c = v.client()
        assert c.call("query-status")["ok"]
        # A second VMM on the same live socket is refused and leaves it alone.
        r = run_vmm(["--control", path, "--cmdline", "test=poweroff"], vm_timeout=20)
        assert r.rc == 2, r
        assert "another process is serving this socket" in r.err, r
        assert c.call("query-status")["ok"]
        c.call("quit")
        assert v.wait() == 8
    finally:
        v.kill()
    regular = os.path.join(sockdir, "file")
    with open(regular, "w") as f:
        f.write("keep me")
    r = run_vmm(["--control", regular, "--cmdline", "test=poweroff"], vm_timeout=20)
    assert r.rc == 2, r
    assert "is not a socket" in r.err, r
    with open(regular) as f:
        assert f.read() == "keep me"


def test_control_in_config_and_flags(vmm, guest, tmp_path):
    r = run_vmm(["--control", "/run/berth/vm1.ctl", "--print-config"], guest=True)
    assert r.rc == 0, r
    cfg = json.loads(r.out)
    assert cfg["control"] == "/run/berth/vm1.ctl"
    f = tmp_path / "vm.json"
    f.write_text(r.out)
    r2 = run_vmm(["--config", str(f), "--print-config"], guest=False)
    assert r2.rc == 0 and json.loads(r2.out) == cfg, r2
    assert "control" not in json.loads(run_vmm(["--print-config"]).out)
    r = run_vmm(["--control", "/tmp/" + "x" * 120])
    assert r.rc == 2 and "--control" in r.err and "108 bytes" in r.err, r
    r = run_vmm(["--control", ""])
    assert r.rc == 2 and "--control" in r.err, r
    f.write_text(json.dumps({"kernel": GUEST, "control": 5}))
    r = run_vmm(["--config", str(f)], guest=False)
    assert r.rc == 2 and "field 'control'" in r.err, r
    h = run_vmm(["--help"], guest=False)
    assert "--control PATH" in h.out and "8 stopped by the control socket's quit" in h.out


def test_start_paused_runs_nothing_until_resume(vmm_factory):
    """--start-paused: the control socket answers with state paused and the ticker prints
    nothing (not even its first tick) until resume; then the guest boots as usual."""
    v = vmm_factory("test=ticker", ["--cpus", "2", "--start-paused"])
    c = v.client()
    r = c.call("query-status")
    assert r["ok"] is True and r["result"]["state"] == "paused", r
    time.sleep(1.5)  # 15 ticks if a vCPU ran
    assert v.ticks() == [], f"the guest ran before resume\n{v.report()}"
    assert "--start-paused" in v.stderr()
    r = c.call("resume")
    assert r["ok"] is True and r["result"] == {"state": "running"}, r
    assert c.event("resumed")["data"] == {}
    v.wait_for(TICK + "3", timeout=30)
    assert v.ticks()[0] in (0, 1), v.ticks()[:3]  # from the very first tick
    c.call("quit")
    assert v.wait() == 8, v.report()


def test_start_paused_needs_control(berth):
    p = subprocess.run([VMM, "--kernel", GUEST, "--start-paused"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2, p
    assert "--start-paused (field 'start_paused'): needs --control" in p.stderr, p.stderr


def test_start_paused_with_restore(vmm_factory, sockdir):
    """A saved VM restored with --start-paused stays where it was saved until resume, and a
    state saved by such a VM does not start paused again."""
    v = vmm_factory("test=ticker", [])
    v.wait_for(TICK + "3")
    c = v.client()
    state = os.path.join(sockdir, "saved")
    r = c.call("save", {"dir": state})
    assert r["ok"] is True, r
    assert v.wait() == 9, v.report()
    last = v.ticks()[-1]
    with open(os.path.join(state, "config.json")) as f:
        assert "start_paused" not in json.load(f)
    cmd = [VMM, "--restore", state, "--control", os.path.join(sockdir, "ctl.sock"),
           "--timeout", "120", "--start-paused"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        c = Client(os.path.join(sockdir, "ctl.sock"))
        assert c.call("query-status")["result"]["state"] == "paused"
        time.sleep(1.0)
        r = c.call("save", {"dir": os.path.join(sockdir, "saved2")})  # paused: saved whole
        assert r["ok"] is True, r
        assert p.wait(30) == 9
        out = p.stdout.read().decode(errors="replace")
        assert TICK not in out, f"the restored guest ran while paused: {out[-300:]}"
        with open(os.path.join(sockdir, "saved2", "config.json")) as f:
            assert "start_paused" not in json.load(f)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # the state saved while paused-at-start continues right after the first save's last tick
    p = subprocess.run([VMM, "--restore", os.path.join(sockdir, "saved2"), "--timeout", "3"],
                       capture_output=True, text=True, timeout=60)
    ticks = [int(x[len(TICK):]) for x in p.stdout.splitlines() if x.startswith(TICK)]
    assert ticks and ticks[0] == last + 1, (last, ticks[:3])
