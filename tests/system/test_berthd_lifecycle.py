"""berthd's VM lifecycle against a real daemon, real berth-vmm processes and the test guest: start,
pause, resume, save and restore, shutdown (power button and timeout), turn-off, restart, delete;
supervision (kill -9 of a VMM), reattach after kill -9 and SIGTERM of berthd, 20 VMs at once,
invalid transitions, automatic start and stop actions, VMMs as an unprivileged user. Every
response is checked against the OpenAPI document (berthdutil.Berthd.request)."""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time

import pytest

from berthdutil import BERTHD, Berthd
from conftest import GUEST as _GUEST, VMM, kvm_usable

V = "/api/v1"
SCRATCH = "/work/scratch/life"
GUEST = os.path.abspath(_GUEST)  # specs take absolute paths (BERTH_BUILD may be relative)

pytestmark = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")


class LifeBerthd(Berthd):
    """A berthd with a short run directory (unix socket paths are limited to 107 bytes)."""

    def __init__(self, tmp_path, run_dir, extra=(), state_dir=None):
        super().__init__(tmp_path, state_dir=state_dir)
        self.run_dir = run_dir
        self.extra = list(extra)

    def cmd(self):
        return super().cmd() + ["--run-dir", self.run_dir] + self.extra

    def start(self):
        """Ready when this berthd says so: after a kill -9 the old socket file may still answer
        for a moment (a VMM being spawned holds a copy of the listening socket until it closes
        its descriptors)."""
        mark = len(self.log_text())
        super().start()
        deadline = time.monotonic() + 20
        while f"ready (pid {self.proc.pid})" not in self.log_text()[mark:]:
            assert self.proc.poll() is None, f"berthd exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.02)
        return self


@pytest.fixture
def run_dir():
    os.makedirs(SCRATCH, exist_ok=True)
    d = tempfile.mkdtemp(prefix="r", dir=SCRATCH)
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemon(tmp_path, run_dir):
    for f in (BERTHD, VMM, GUEST):
        if not os.path.exists(f):
            pytest.fail(f"{f} is missing: build first (./scripts/build)")
    started = []

    def start(extra=(), state_dir=None):
        d = LifeBerthd(tmp_path, run_dir, extra, state_dir).start()
        started.append(d)
        return d

    yield start
    # leave nothing running: turn off what is still up, then stop the daemon
    d = started[-1]
    pids = []
    if d.proc.poll() is None:
        for vm in d.get(V + "/vms").json["vms"]:
            if vm["state"] in ("running", "paused"):
                d.post(f"{V}/vms/{vm['uuid']}/turn-off?wait=true", None)
            if vm["vmm_pid"]:
                pids.append(vm["vmm_pid"])
        rc = d.stop()
        assert rc == 0, f"berthd exited with {rc}:\n{d.log_text()}"
    for pid in pids + vmm_pids_in(run_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def vmm_pids_in(run_dir):
    """berth-vmm processes whose command line names this test's run directory."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"berth-vmm") and any(run_dir.encode() in a for a in cmd):
                out.append(int(p))
    return out


def create(d, name, cmdline="test=ticker", **kw):
    body = {"name": name, "vcpus": 1, "memory_mib": 64,
            "boot": {"kernel": GUEST, "cmdline": cmdline}, "auto_start": "nothing"}
    body.update(kw)
    r = d.post(V + "/vms", body)
    assert r.status == 201, r
    return r.json


def act(d, name, action, body=None, expect="succeeded"):
    r = d.post(f"{V}/vms/{name}/{action}?wait=true", body)
    assert r.status == 200, r
    op = r.json
    assert op["kind"] == action and op["finished"], op
    if expect:
        assert op["state"] == expect, f"{action}: {op}\n{d.log_text()[-3000:]}"
    return op


def vm(d, name):
    r = d.get(f"{V}/vms/{name}")
    assert r.status == 200, r
    return r.json


def wait_state(d, name, state, timeout=15):
    deadline = time.monotonic() + timeout
    while True:
        v = vm(d, name)
        if v["state"] == state:
            return v
        assert time.monotonic() < deadline, f"{name} stays {v['state']} ({v['state_reason']}), not {state}"
        time.sleep(0.05)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


TICK = re.compile(rb"berth-tick (\d+)\r?\n")


def console(d, v, secs=0.6, until=None, deadline=0):
    """What the VM's serial console shows: the VMM's backlog first, then secs of new output — or,
    with until (a function of the bytes so far), output until it holds, for at most deadline s."""
    t0 = time.monotonic()
    while True:
        s = socket.socket(socket.AF_UNIX)
        s.connect(os.path.join(d.run_dir, v["uuid"] + ".console"))
        s.settimeout(0.1)
        buf, eof = b"", False
        try:
            while True:
                now = time.monotonic() - t0
                if until and until(buf) and now >= min(secs, deadline):
                    break
                if now >= max(secs, deadline if until else 0):
                    break
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    eof = True
                    break
                buf += chunk
        finally:
            s.close()
        # the VMM serves one console client at a time: right after the previous one left, a new
        # one may be turned away (closed at once); connect again
        if not (eof and not buf and time.monotonic() - t0 < max(secs, deadline, 2)):
            return buf
        time.sleep(0.05)


def ticks(d, v, secs=0.6, need=1):
    """The tick numbers on the console after secs, waiting (up to 15 s) for at least need."""
    out = console(d, v, secs, until=lambda b: len(TICK.findall(b)) >= need, deadline=15)
    got = [int(n) for n in TICK.findall(out)]
    assert len(got) >= need, f"{len(got)} ticks on the console, wanted {need}: {out[-300:]!r}"
    return got


def ticks_beyond(d, v, n, timeout=15):
    """Wait for a tick numbered above n (the guest runs)."""
    out = console(d, v, 0, until=lambda b: any(int(x) > n for x in TICK.findall(b)),
                  deadline=timeout)
    got = [int(x) for x in TICK.findall(out)]
    assert got and max(got) > n, f"no tick after {n}: {out[-300:]!r}"
    return got


def state_events(d, uuid):
    db = sqlite3.connect(os.path.join(d.state, "berth.db"))
    try:
        return [(json.loads(x)["state"], json.loads(x).get("reason")) for (x,) in
                db.execute("SELECT detail FROM events WHERE vm = ? AND kind = 'vm-state' "
                           "ORDER BY id", (uuid,))]
    finally:
        db.close()


def test_full_lifecycle(daemon):
    d = daemon()
    v = create(d, "life1")
    uuid = v["uuid"]
    assert v["state"] == "off" and v["vmm_pid"] is None

    op = act(d, "life1", "start")
    assert op["vm"] == uuid and op["progress"] == 100 and op["error"] is None
    v = vm(d, "life1")
    assert (v["state"], v["state_reason"]) == ("running", "booted")
    pid = v["vmm_pid"]
    assert alive(pid)
    with open(f"/proc/{pid}/stat") as f:  # its own session and process group, not berthd's child
        ppid, pgid, sid = (int(x) for x in f.read().rsplit(")", 1)[1].split()[1:4])
    assert ppid != d.proc.pid and pgid == sid and sid not in (os.getsid(0), os.getsid(d.proc.pid))
    cfg = json.load(open(os.path.join(d.state, "vms", uuid, "config.json")))
    assert cfg["memory"] == "64M" and cfg["cpus"] == 1 and cfg["control"].endswith(uuid + ".ctl")
    t1 = ticks(d, v, need=3)
    assert t1 == sorted(t1), t1

    # while it runs: the hardware may not change, the name may; it may not be deleted
    r = d.patch(f"{V}/vms/life1", {"vcpus": 2})
    assert r.status == 409 and r.error["code"] == "invalid-state" and "running" in r.error["message"]
    r = d.patch(f"{V}/vms/life1", {"name": "life1b", "notes": "renamed while running"})
    assert r.status == 200 and r.json["name"] == "life1b", r
    r = d.delete(f"{V}/vms/life1b")
    assert r.status == 409 and r.error["code"] == "invalid-state", r

    act(d, "life1b", "pause")
    v = vm(d, "life1b")
    assert (v["state"], v["state_reason"]) == ("paused", "user")
    before = max(ticks(d, v, 0.3))
    time.sleep(0.8)
    assert max(ticks(d, v, 0.3)) == before, "ticks went on while paused"
    act(d, "life1b", "resume")
    assert vm(d, "life1b")["state"] == "running"
    ticks_beyond(d, v, before)

    last = max(ticks(d, v, 0.3))
    act(d, "life1b", "save")
    v = vm(d, "life1b")
    assert (v["state"], v["state_reason"], v["vmm_pid"]) == ("saved", "saved", None)
    time.sleep(0.1)
    assert not alive(pid)
    saved = os.path.join(d.state, "vms", uuid, "saved")
    assert os.path.exists(os.path.join(saved, "state.json"))

    act(d, "life1b", "start")
    v = vm(d, "life1b")
    assert (v["state"], v["state_reason"]) == ("running", "restored")
    assert not os.path.exists(saved), "the saved state is removed after the restore"
    after = ticks(d, v, 0.3)
    assert last <= min(after) <= last + 30, (last, after)  # continues, not rebooted

    op = act(d, "life1b", "restart")
    v2 = vm(d, "life1b")
    assert v2["state"] == "running" and v2["vmm_pid"] != v["vmm_pid"]
    assert min(ticks(d, v2, 0.3)) < 20, "restart boots the guest afresh"

    act(d, "life1b", "turn-off")
    v = vm(d, "life1b")
    assert (v["state"], v["state_reason"], v["vmm_pid"]) == ("off", "turned-off", None)

    states = state_events(d, uuid)
    assert states == [("starting", "user"), ("running", "booted"), ("paused", "user"),
                      ("running", "resumed"), ("stopping", "saving"), ("saved", "saved"),
                      ("starting", "user"), ("running", "restored"), ("stopping", "turning-off"),
                      ("off", "restarting"), ("starting", "restart"), ("running", "booted"),
                      ("stopping", "turning-off"), ("off", "turned-off")], states

    r = d.patch(f"{V}/vms/life1b", {"vcpus": 2})
    assert r.status == 200 and r.json["vcpus"] == 2
    assert d.delete(f"{V}/vms/life1b").status == 204
    assert not os.path.exists(os.path.join(d.state, "vms", uuid))
    assert d.get(f"{V}/operations/{op['id']}").json["state"] == "succeeded"
    kinds = [o["kind"] for o in d.get(V + "/operations").json["operations"]]
    assert kinds[:3] == ["turn-off", "restart", "start"], kinds


def test_shutdown_with_the_power_button(daemon):
    d = daemon()
    v = create(d, "pb", cmdline="test=powerbutton button_secs=60")
    act(d, "pb", "start")
    assert b"powerbutton READY" in console(d, v, 0, until=lambda b: b"powerbutton READY" in b,
                                           deadline=20)
    t0 = time.monotonic()
    act(d, "pb", "shutdown", {"timeout_s": 30})
    assert time.monotonic() - t0 < 20
    v = vm(d, "pb")
    assert (v["state"], v["state_reason"]) == ("off", "poweroff")
    assert ("stopping", "shutting-down") in state_events(d, v["uuid"])


def test_shutdown_ignored_is_forced_after_the_timeout(daemon):
    d = daemon(["--threads", "1"])
    create(d, "deaf")
    act(d, "deaf", "start")
    t0 = time.monotonic()
    r = d.post(f"{V}/vms/deaf/shutdown", {"timeout_s": 2})
    assert r.status == 202 and r.headers["Location"] == f"{V}/operations/{r.json['id']}", r
    assert r.json["state"] in ("queued", "running")
    # one action at a time: a second one is refused while the shutdown waits for the guest
    busy = d.post(f"{V}/vms/deaf/turn-off", None)
    assert busy.status == 409 and busy.error["code"] == "busy", busy
    assert wait_state(d, "deaf", "stopping", 2)["state_reason"] == "shutting-down"
    # a request waiting for the operation holds no HTTP thread: with --threads 1 the API answers
    waited = []
    t = threading.Thread(target=lambda: waited.append(d.get(f"{V}/operations/{r.json['id']}?wait=true")))
    t.start()
    time.sleep(0.2)
    assert not waited and t.is_alive()
    t1 = time.monotonic()
    assert d.get(V + "/vms").status == 200 and time.monotonic() - t1 < 0.5
    t.join(20)
    op = waited[0].json
    assert waited[0].status == 200 and op["state"] == "succeeded", waited[0]
    assert 2 <= time.monotonic() - t0 < 15, op
    v = vm(d, "deaf")
    assert (v["state"], v["state_reason"]) == ("off", "shutdown-timeout")


def test_a_waiting_request_is_answered_when_berthd_stops(daemon):
    d = daemon()
    create(d, "slow")
    act(d, "slow", "start")
    waited = []
    t = threading.Thread(target=lambda: waited.append(
        d.post(f"{V}/vms/slow/shutdown?wait=true", {"timeout_s": 60})))
    t.start()
    wait_state(d, "slow", "stopping", 5)
    assert d.stop() == 0
    t.join(20)
    assert waited[0].status == 202 and waited[0].json["state"] == "running", waited[0]
    d = daemon()  # the VM never stopped: it is reattached (the shutdown was abandoned)
    v = vm(d, "slow")
    assert (v["state"], v["state_reason"]) == ("running", "reattached")


def test_invalid_transitions_and_bad_requests(daemon):
    d = daemon()
    create(d, "inv", cmdline="test=powerbutton button_secs=600")
    for a in ("shutdown", "turn-off", "restart", "pause", "resume", "save"):
        r = d.post(f"{V}/vms/inv/{a}", None)
        assert r.status == 409 and r.error["code"] == "invalid-state", (a, r)
        assert "'inv' is off" in r.error["message"], r
    act(d, "inv", "start")
    for a in ("start", "resume"):
        r = d.post(f"{V}/vms/inv/{a}", {})
        assert r.status == 409 and r.error["code"] == "invalid-state" and "running" in r.error["message"]
    act(d, "inv", "pause")
    for a in ("start", "pause", "shutdown"):
        r = d.post(f"{V}/vms/inv/{a}", None)
        assert r.status == 409 and "paused" in r.error["message"], (a, r)
    for body, code, field in [({"timeout_s": 0}, "invalid-argument", "timeout_s"),
                              ({"timeout_s": "5"}, "invalid-argument", "timeout_s"),
                              ({"force": True}, "unknown-field", "force")]:
        r = d.post(f"{V}/vms/inv/shutdown", body)
        assert r.status == 400 and r.error["code"] == code and r.error["field"] == field, r
    r = d.post(f"{V}/vms/inv/resume", {"timeout_s": 5})
    assert r.status == 400 and r.error["code"] == "unknown-field", r
    r = d.post(f"{V}/vms/inv/resume?wait=maybe", None)
    assert r.status == 400 and r.error["field"] == "wait", r
    r = d.post(f"{V}/vms/inv/resume", "[1]")
    assert r.status == 400, r
    r = d.post(f"{V}/vms/nope/start", None)
    assert r.status == 404 and r.error["code"] == "not-found", r
    r = d.post(f"{V}/vms/inv/reboot", None)
    assert r.status == 404, r
    r = d.get(f"{V}/operations/00000000-0000-4000-8000-000000000000")
    assert r.status == 404 and "no operation" in r.error["message"], r
    act(d, "inv", "turn-off")  # from paused
    assert vm(d, "inv")["state"] == "off"


def test_start_failure_keeps_the_state(daemon, tmp_path):
    d = daemon()
    create(d, "bad", boot={"kernel": str(tmp_path / "no-such-kernel")})
    op = act(d, "bad", "start", expect="failed")
    assert op["error"]["code"] == "action-failed" and "no-such-kernel" in op["error"]["message"], op
    v = vm(d, "bad")
    assert (v["state"], v["state_reason"], v["vmm_pid"]) == ("off", "start-failed", None)


def test_a_vm_with_devices(daemon, run_dir):
    """Disks, console ports and rng of the spec reach berth-vmm (its config.json, its sockets)."""
    d = daemon()
    disk = os.path.join(run_dir, "d0.img")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    v = create(d, "devs", cmdline="test=powerbutton button_secs=600", rng=True,
               disks=[{"path": disk, "format": "raw", "serial": "berth0", "cache": "writeback"}],
               console_ports=[{"name": "org.qemu.guest_agent.0"}])
    act(d, "devs", "start")
    cfg = json.load(open(os.path.join(d.state, "vms", v["uuid"], "config.json")))
    assert cfg["disks"] == [{"path": disk, "format": "raw", "readonly": False, "cache": "writeback",
                             "serial": "berth0"}]
    assert cfg["rng"] is True and cfg["console_ports"][0]["name"] == "org.qemu.guest_agent.0"
    port = os.path.join(d.run_dir, v["uuid"] + ".port0")
    assert cfg["console_ports"][0]["socket"] == port and os.path.exists(port)
    out = subprocess.run([VMM, "--config", os.path.join(d.state, "vms", v["uuid"], "config.json"),
                          "--print-config"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["disks"][0]["serial"] == "berth0", out
    # berthd's VMMs run under the seccomp filter (kill mode, the default), every thread of them
    pid = vm(d, "devs")["vmm_pid"]
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            assert re.search(r"^Seccomp:\s+2$", f.read(), re.M), task
    act(d, "devs", "turn-off")


def test_vmm_killed_is_crashed(daemon):
    d = daemon()
    create(d, "victim", cmdline="test=powerbutton button_secs=600")
    act(d, "victim", "start")
    pid = vm(d, "victim")["vmm_pid"]
    os.kill(pid, signal.SIGKILL)
    v = wait_state(d, "victim", "crashed")
    assert v["state_reason"] == "vmm-died" and v["vmm_pid"] is None
    assert state_events(d, v["uuid"])[-1] == ("crashed", "vmm-died")
    act(d, "victim", "start")  # a crashed VM starts again
    assert vm(d, "victim")["state"] == "running"


def test_berthd_restarts_never_stop_vms(daemon):
    d = daemon()
    keep = create(d, "keep")
    lost = create(d, "lost", cmdline="test=powerbutton button_secs=600")
    back = create(d, "back", cmdline="test=powerbutton button_secs=600",
                  auto_start="start-if-running")
    for n in ("keep", "lost", "back"):
        act(d, n, "start")
    pids = {n: vm(d, n)["vmm_pid"] for n in ("keep", "lost", "back")}

    d.kill9()
    time.sleep(0.3)
    assert all(alive(p) for p in pids.values()), "a VMM died with berthd"
    os.kill(pids["lost"], signal.SIGKILL)
    os.kill(pids["back"], signal.SIGKILL)
    time.sleep(0.2)

    d = daemon()
    v = vm(d, "keep")
    assert (v["state"], v["vmm_pid"]) == ("running", pids["keep"])
    v = vm(d, "lost")
    assert (v["state"], v["state_reason"]) == ("crashed", "vmm-lost-while-daemon-down")
    v = wait_state(d, "back", "running")  # start-if-running: it was running
    assert v["vmm_pid"] != pids["back"]
    assert ("crashed", "vmm-lost-while-daemon-down") in state_events(d, back["uuid"])
    assert state_events(d, back["uuid"])[-2:] == [("starting", "auto-start"), ("running", "booted")]

    act(d, "keep", "pause")  # still managed
    before = max(ticks(d, keep, 0.3))
    time.sleep(0.5)
    assert max(ticks(d, keep, 0.3)) == before

    assert d.stop(signal.SIGTERM) == 0  # a graceful stop leaves the VMs running too
    assert alive(pids["keep"])
    d = daemon()
    v = vm(d, "keep")
    assert (v["state"], v["vmm_pid"]) == ("paused", pids["keep"])
    act(d, "keep", "resume")
    ticks_beyond(d, keep, before)
    # the VMM is supervised again: its death is noticed
    os.kill(pids["keep"], signal.SIGKILL)
    assert wait_state(d, "keep", "crashed")["state_reason"] == "vmm-died"


def test_berthd_killed_during_starts_leaves_nothing_unmanaged(daemon):
    """kill -9 of berthd at some point of a start: the next berthd either manages the VMM (the VM
    is running) or the VM is crashed and no VMM of it is left running."""
    d = daemon()
    names = [f"race{i}" for i in range(6)]
    for n in names:
        create(d, n, cmdline="test=powerbutton button_secs=600")
    for i, n in enumerate(names):
        assert d.post(f"{V}/vms/{n}/start", None).status == 202
        time.sleep(0.004 * i)
        d.kill9()
        d = daemon()
        v = vm(d, n)
        ctl = os.path.join(d.run_dir, v["uuid"] + ".ctl")
        strays = [p for p in vmm_pids_in(d.run_dir) if p != v["vmm_pid"] and
                  ctl.encode() in open(f"/proc/{p}/cmdline", "rb").read() and alive(p)]
        assert not strays, (n, v, strays)
        assert v["state"] in ("off", "running", "crashed"), v
        if v["state"] == "off":  # killed before the operation began
            assert v["state_reason"] is None and v["vmm_pid"] is None, v
        elif v["state"] == "running":
            assert alive(v["vmm_pid"])
            act(d, n, "pause")  # managed
        else:
            assert v["state_reason"] in ("vmm-lost-while-daemon-down", "vmm-unreachable"), v
    time.sleep(0.5)  # and later: no VMM came up unmanaged
    for n in names:
        v = vm(d, n)
        ctl = os.path.join(d.run_dir, v["uuid"] + ".ctl").encode()
        procs = [p for p in vmm_pids_in(d.run_dir) if ctl in open(f"/proc/{p}/cmdline", "rb").read()
                 and alive(p)]
        assert procs == ([v["vmm_pid"]] if v["vmm_pid"] else []), (v, procs)
    print("after kill -9 during start:", {vm(d, n)["state"] for n in names})


def test_berthd_killed_during_creates_and_deletes_keeps_the_inventory_consistent(daemon):
    """kill -9 of berthd while creates and deletes are in flight: each VM is either wholly there
    (a valid spec and its vm-created event) or wholly gone (its row, and after the next start its
    files too); SQLite's own checks pass."""
    d = daemon()
    doomed = [f"old{i}" for i in range(6)]
    for n in doomed:  # run once, so that each has files in <state>/vms/<uuid>
        create(d, n, cmdline="test=powerbutton button_secs=600")
        act(d, n, "start")
        act(d, n, "turn-off")
    uuids = {n: vm(d, n)["uuid"] for n in doomed}
    assert all(os.path.isdir(os.path.join(d.state, "vms", u)) for u in uuids.values())
    fresh = [f"new{i}" for i in range(40)]

    def worker(kind, names):
        for n in names:
            try:
                if kind == "create":
                    d.post(V + "/vms", {"name": n, "boot": {"kernel": GUEST}, "auto_start": "nothing"})
                else:
                    d.delete(f"{V}/vms/{n}")
            except Exception:  # berthd died under the request: that is the point
                return

    threads = [threading.Thread(target=worker, args=("create", fresh)),
               threading.Thread(target=worker, args=("delete", doomed))]
    for t in threads:
        t.start()
    time.sleep(0.02)
    d.kill9()
    for t in threads:
        t.join()
    # and what a kill between a delete's commit and the removal of its files leaves behind
    stray = os.path.join(d.state, "vms", "0badc0de-0000-4000-8000-000000000001")
    os.makedirs(os.path.join(stray, "checkpoints", "layers"))
    for f in ("config.json", "vmm.log", "checkpoints/tree.json"):
        open(os.path.join(stray, f), "w").close()
    d = daemon()
    assert not os.path.exists(stray)
    listed = {v["name"]: v for v in d.get(V + "/vms").json["vms"]}
    with sqlite3.connect(f"file:{d.state}/berth.db?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        created = {json.loads(detail)["name"] for vm_, kind, detail in
                   db.execute("SELECT vm, kind, detail FROM events WHERE kind = 'vm-created'")}
        deleted = {json.loads(detail)["name"] for vm_, kind, detail in
                   db.execute("SELECT vm, kind, detail FROM events WHERE kind = 'vm-deleted'")}
    for n in fresh:
        assert (n in listed) == (n in created), n
        if n in listed:
            assert vm(d, n)["boot"]["kernel"] == GUEST
    for n in doomed:
        assert (n in listed) != (n in deleted), n
        # a deleted VM's files are gone, also when berthd died between the commit and the removal
        assert os.path.isdir(os.path.join(d.state, "vms", uuids[n])) == (n in listed), n
    print(f"after kill -9: {len([n for n in fresh if n in listed])}/{len(fresh)} created, "
          f"{len([n for n in doomed if n not in listed])}/{len(doomed)} deleted")


def test_twenty_vms_started_concurrently(daemon):
    d = daemon()
    names = [f"many{i:02d}" for i in range(20)]
    for n in names:
        create(d, n, cmdline="test=powerbutton button_secs=600")
    ops, errors = {}, []

    def post(n, action):
        try:
            r = d.post(f"{V}/vms/{n}/{action}", None)
            assert r.status == 202, r
            ops[n] = r.json["id"]
        except Exception as e:  # reported below
            errors.append(e)

    for action, goal in (("start", "running"), ("turn-off", "off")):
        ops.clear()
        threads = [threading.Thread(target=post, args=(n, action)) for n in names]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for n in names:
            op = d.get(f"{V}/operations/{ops[n]}?wait=true").json
            assert op["state"] == "succeeded", (n, op)
        vms = {v["name"]: v for v in d.get(V + "/vms").json["vms"]}
        assert all(vms[n]["state"] == goal for n in names), {n: vms[n]["state"] for n in names}
        if goal == "running":
            pids = {vms[n]["vmm_pid"] for n in names}
            assert len(pids) == 20 and all(alive(p) for p in pids)
        print(f"{action} of 20 VMs: {time.monotonic() - t0:.2f} s")
    assert all(not alive(p) for p in pids)


def test_auto_start_and_host_stop(daemon):
    d = daemon()
    always = create(d, "always", auto_start="always", auto_stop="save")
    create(d, "ifrun", cmdline="test=powerbutton button_secs=600", auto_start="start-if-running",
           auto_stop="turn-off")
    create(d, "idle", cmdline="test=powerbutton button_secs=600", auto_start="start-if-running")
    create(d, "never", cmdline="test=powerbutton button_secs=600", auto_start="nothing",
           auto_stop="shut-down")
    d.stop()
    d = daemon()  # at daemon start: "always" starts, the others were not running
    v = wait_state(d, "always", "running")
    assert state_events(d, always["uuid"])[0] == ("starting", "auto-start")
    assert vm(d, "idle")["state"] == "off" and vm(d, "never")["state"] == "off"
    act(d, "ifrun", "start")
    act(d, "never", "start")
    last = max(ticks(d, v, 0.3))

    # the host shuts down: each running VM gets its auto_stop
    r = d.post(V + "/host/stop-vms?wait=true", {"timeout_s": 1})
    assert r.status == 200 and r.json["kind"] == "host-stop-vms" and r.json["vm"] is None, r
    assert r.json["state"] == "succeeded", r.json
    assert vm(d, "always")["state"] == "saved"
    assert (vm(d, "ifrun")["state"], vm(d, "ifrun")["state_reason"]) == ("off", "turned-off")
    assert vm(d, "never")["state_reason"] == "poweroff"  # shut-down: the power button
    assert vm(d, "idle")["state"] == "off"
    d.stop()

    d = daemon()  # the host is back: "always" resumes its saved state, "ifrun" was running
    v = wait_state(d, "always", "running")
    assert v["state_reason"] == "restored"
    assert min(ticks(d, v, 0.5)) >= last
    assert wait_state(d, "ifrun", "running")["state_reason"] == "booted"
    assert vm(d, "never")["state"] == "off" and vm(d, "idle")["state"] == "off"


USER = "berthvmmtest"


@pytest.fixture
def vmm_user():
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create a test user")
    subprocess.run(["userdel", USER], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--groups", "kvm", USER], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", USER], capture_output=True)


def test_vmms_run_as_an_unprivileged_user(daemon, vmm_user, run_dir):
    # the VMM's user must reach its directory: not under pytest's private (0700) tmp_path
    d = daemon(["--vmm-user", USER], state_dir=os.path.join(run_dir, "state"))
    v = create(d, "unpriv")
    act(d, "unpriv", "start")
    v = vm(d, "unpriv")
    with open(f"/proc/{v['vmm_pid']}/status") as f:
        status = f.read()
    uids = re.search(r"^Uid:\s+(.*)$", status, re.M).group(1).split()
    gids = re.search(r"^Gid:\s+(.*)$", status, re.M).group(1).split()
    assert set(uids) == {str(vmm_user.pw_uid)} and set(gids) == {str(vmm_user.pw_gid)}, status
    assert re.search(r"^Seccomp:\s+2$", status, re.M), status  # the filter loads unprivileged too
    assert os.stat(os.path.join(d.state, "vms", v["uuid"])).st_uid == vmm_user.pw_uid
    assert os.stat(d.state).st_mode & 0o777 == 0o711
    assert os.stat(os.path.join(d.state, "berth.db")).st_mode & 0o777 == 0o600
    ctl = os.path.join(d.run_dir, v["uuid"] + ".ctl")
    assert os.stat(ctl).st_uid == vmm_user.pw_uid and os.stat(ctl).st_mode & 0o777 == 0o600
    ticks(d, v, 0)
    act(d, "unpriv", "pause")
    act(d, "unpriv", "save")  # the VMM writes the saved state into its own directory
    act(d, "unpriv", "start")
    assert vm(d, "unpriv")["state_reason"] == "restored"
    act(d, "unpriv", "turn-off")
    assert "VMMs run as root" not in d.log_text()
