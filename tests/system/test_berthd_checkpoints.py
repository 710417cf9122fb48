"""Checkpoints through berthd's API (Hyper-V's Checkpoint-VM, Get-VMSnapshot, Restore-VMSnapshot,
Remove-VMSnapshot) with a real daemon, real VMMs and the test guest. The guest runs a paced disk
writer (`test=blk-fill`, which prints `blk-fill flushed=N` after each flush) and a ring-3 ticker:
after an apply its counters start again from the checkpoint's values on the console, and its disk
reads exactly the checkpoint's prefix of the writer's pattern. Checkpoints of VMs that are off or
saved are made by a VMM started paused that the inventory never shows as running. Every response is
checked against the OpenAPI document."""
import json
import os
import pty
import re
import sqlite3
import subprocess
import threading
import time

import pytest

from test_berthd_lifecycle import (V, GUEST, act, console, create, daemon, run_dir, vm,  # noqa: F401
                                   wait_state)
from test_checkpoint_tree import prefix_of
from conftest import kvm_usable

pytestmark = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")

DISK_BYTES = 64 << 20
PATTERN = 11
WRITER = f"test=blk-fill,ticker pattern={PATTERN} chunk=4096 flush_every=64 count=12000 pace_ms=2"
FLUSHED = re.compile(rb"blk-fill flushed=(\d+)")
TICKS = re.compile(rb"berth-tick (\d+)")


def raw_disk(tmp_path, name="disk.raw"):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.truncate(DISK_BYTES)
    return path


def make_vm(d, tmp_path, name, cmdline=WRITER):
    disk = raw_disk(tmp_path, f"{name}.raw")
    create(d, name, cmdline, disks=[{"path": disk, "format": "raw"}])
    return disk


def flushed(d, v, secs=0.3):
    return [int(x) for x in FLUSHED.findall(console(d, v, secs))]


def wait_flushed(d, v, n, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        got = flushed(d, v)
        if got and got[-1] >= n:
            return got[-1]
        assert time.monotonic() < deadline, f"flushed={n} not seen: {got[-3:]}"


def read_prefix(image, tmp_path):
    raw = str(tmp_path / "read.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", image, raw], check=True)
    try:
        return prefix_of(raw, PATTERN)
    finally:
        os.unlink(raw)


def ck_create(d, name, cp, expect="succeeded", **kw):
    r = d.post(f"{V}/vms/{name}/checkpoints?wait=true", {"name": cp, **kw})
    assert r.status == 200, r
    op = r.json
    assert op["kind"] == "checkpoint-create" and op["finished"], op
    assert op["state"] == expect, f"{op}\n{d.log_text()[-3000:]}"
    return op


def ck_do(d, name, cp, what, expect="succeeded"):
    if what == "apply":
        r = d.post(f"{V}/vms/{name}/checkpoints/{cp}/apply?wait=true", None)
    else:
        r = d.delete(f"{V}/vms/{name}/checkpoints/{cp}?wait=true")
    assert r.status == 200, r
    op = r.json
    assert op["kind"] == f"checkpoint-{what}" and op["finished"], op
    assert op["state"] == expect, f"{op}\n{d.log_text()[-3000:]}"
    return op


def ck_list(d, name):
    r = d.get(f"{V}/vms/{name}/checkpoints")
    assert r.status == 200, r
    return r.json


def by_name(listing):
    return {c["name"]: c for c in listing["checkpoints"]}


def inventory(d, uuid):
    with sqlite3.connect(os.path.join(d.state, "berth.db")) as db:
        return sorted(db.execute("SELECT id, name, parent, disk_only FROM checkpoints WHERE vm = ?",
                                 (uuid,)).fetchall())


def events(d, kinds):
    with sqlite3.connect(os.path.join(d.state, "berth.db")) as db:
        return [(k, json.loads(x)) for k, x in
                db.execute("SELECT kind, detail FROM events ORDER BY id") if k in kinds]


def mirrors(d, uuid, listing):
    want = sorted((c["id"], c["name"], c["parent"], int(c["kind"] == "disk-only"))
                  for c in listing["checkpoints"])
    assert inventory(d, uuid) == want


class StateWatch:
    """Polls a VM's state in the inventory while something runs: every state it was seen in."""

    def __init__(self, d, name):
        self.d, self.name, self.seen, self.stop = d, name, set(), False
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop:
            self.seen.add(self.d.get(f"{V}/vms/{self.name}", validate=False).json["state"])
            time.sleep(0.01)

    def done(self):
        self.stop = True
        self.t.join(5)
        return self.seen


def test_running_vm_create_apply_delete(daemon, tmp_path):
    d = daemon()
    make_vm(d, tmp_path, "ck1")
    act(d, "ck1", "start")
    v = vm(d, "ck1")

    wait_flushed(d, v, 512)
    op = ck_create(d, "ck1", "A")
    a = op["result"]["checkpoint"]
    assert a["id"] == "c1" and a["name"] == "A" and a["kind"] == "standard" and a["parent"] is None
    at_a = flushed(d, v)[-1]
    k_a = read_prefix(a["disks"][0], tmp_path)
    assert k_a >= 512

    wait_flushed(d, v, k_a + 2500)
    b = ck_create(d, "ck1", "B")["result"]["checkpoint"]
    k_b = read_prefix(b["disks"][0], tmp_path)
    assert k_b >= k_a + 2500
    listing = ck_list(d, "ck1")
    assert [(c["id"], c["name"], c["parent"], c["current"]) for c in listing["checkpoints"]] == \
        [("c1", "A", None, False), ("c2", "B", "c1", True)]
    assert listing["current"] == "c2"
    assert d.get(f"{V}/vms/ck1/checkpoints/A").json == d.get(f"{V}/vms/ck1/checkpoints/c1").json
    mirrors(d, v["uuid"], listing)
    before = flushed(d, v)[-1]
    assert before >= k_b

    # apply A: the writer's counter starts again from A's value, the disk reads A's prefix
    op = ck_do(d, "ck1", "A", "apply")
    assert op["result"]["checkpoint"]["id"] == "c1" and op["result"]["state"] == "running"
    assert vm(d, "ck1")["state"] == "running"
    now_image = json.load(open(os.path.join(d.state, "vms", v["uuid"], "checkpoints",
                                            "tree.json")))["nodes"]["now"]["layers"][0][0]
    k_now = read_prefix(now_image, tmp_path)
    assert k_a <= k_now < k_b - 1000, (k_a, k_now, k_b)
    time.sleep(0.5)
    after = flushed(d, v)
    assert after[-1] < before - 1000 and after[-1] >= at_a - 64, (at_a, before, after[-5:])
    assert ck_list(d, "ck1")["current"] == "c1"

    # a third checkpoint under A, then delete A (the middle of the tree, two children) and B
    wait_flushed(d, v, k_now + 300)
    c = ck_create(d, "ck1", "C")["result"]["checkpoint"]
    assert c["parent"] == "c1"
    k_c = read_prefix(c["disks"][0], tmp_path)
    ck_do(d, "ck1", "A", "delete")
    listing = ck_list(d, "ck1")
    assert [(x["name"], x["parent"]) for x in listing["checkpoints"]] == [("B", None), ("C", None)]
    assert read_prefix(by_name(listing)["B"]["disks"][0], tmp_path) == k_b
    assert read_prefix(by_name(listing)["C"]["disks"][0], tmp_path) == k_c
    op = ck_do(d, "ck1", "B", "delete")
    assert op["result"]["checkpoint"] == {"id": "c2", "name": "B"}
    # C is the running VM's parent: its layer merges into the running image while the VM runs
    op = ck_do(d, "ck1", "C", "delete")
    assert op["result"]["merged_bytes"] > 0 and op["progress"] == 100, op
    listing = ck_list(d, "ck1")
    assert listing == {"checkpoints": [], "current": None}
    mirrors(d, v["uuid"], listing)
    assert vm(d, "ck1")["state"] == "running"
    wait_flushed(d, v, flushed(d, v)[-1] + 128)  # the writer goes on
    evs = events(d, {"checkpoint-created", "checkpoint-applied", "checkpoint-deleted"})
    assert [(k, e["checkpoint"]["name"]) for k, e in evs] == [
        ("checkpoint-created", "A"), ("checkpoint-created", "B"), ("checkpoint-applied", "A"),
        ("checkpoint-created", "C"), ("checkpoint-deleted", "A"), ("checkpoint-deleted", "B"),
        ("checkpoint-deleted", "C")]
    assert all(e["actor"]["uid"] == 0 and e["operation"] for _, e in evs)


def test_off_vm_disk_only_checkpoint_and_apply(daemon, tmp_path):
    d = daemon()
    disk = make_vm(d, tmp_path, "ck2")
    uuid = vm(d, "ck2")["uuid"]
    w = StateWatch(d, "ck2")
    op = ck_create(d, "ck2", "empty")
    seen = w.done()
    assert seen == {"off"}, seen  # the maintenance VMM never shows as the VM running
    cp = op["result"]["checkpoint"]
    assert cp["kind"] == "disk-only" and cp["disks"] == [disk]
    assert vm(d, "ck2")["state"] == "off"
    mirrors(d, uuid, ck_list(d, "ck2"))

    # run it: it writes to the overlay on top of the checkpoint, not to its disk file
    act(d, "ck2", "start")
    v = vm(d, "ck2")
    wait_flushed(d, v, 1024)
    act(d, "ck2", "turn-off")
    assert read_prefix(disk, tmp_path) == 0
    tree = os.path.join(d.state, "vms", uuid, "checkpoints", "tree.json")
    top = json.load(open(tree))["nodes"]["now"]["layers"][0][0]
    assert top != disk and read_prefix(top, tmp_path) >= 1024

    # apply the disk-only checkpoint: the VM stays off and its disk is empty again
    w = StateWatch(d, "ck2")
    op = ck_do(d, "ck2", "empty", "apply")
    assert w.done() == {"off"}
    assert op["result"]["state"] == "off"
    v = vm(d, "ck2")
    assert v["state"] == "off" and v["state_reason"] == "checkpoint-applied"
    top2 = json.load(open(tree))["nodes"]["now"]["layers"][0][0]
    assert top2 != top and not os.path.exists(top), "the discarded layer is still there"
    assert read_prefix(top2, tmp_path) == 0
    # it starts on the new image (the VMM refuses any other) and writes from the start
    act(d, "ck2", "start")
    v = vm(d, "ck2")
    got = wait_flushed(d, v, 128)
    assert got < 1024
    act(d, "ck2", "turn-off")
    assert read_prefix(top2, tmp_path) >= 128

    # delete the checkpoint of the VM that is off: its disk file gets everything
    ck_do(d, "ck2", "empty", "delete")
    assert vm(d, "ck2")["state"] == "off"
    assert ck_list(d, "ck2")["checkpoints"] == []
    assert read_prefix(disk, tmp_path) >= 128
    assert json.load(open(tree))["nodes"]["now"]["layers"][0] == [disk]
    act(d, "ck2", "start")
    act(d, "ck2", "turn-off")

    # a VM with checkpoints is deleted only with its disks (the layers hold its latest writes);
    # then its checkpoint tree goes too, and a plain-path disk stays
    ck_create(d, "ck2", "last")
    r = d.delete(f"{V}/vms/ck2")
    assert r.status == 409 and r.error["code"] == "has-checkpoints", r
    assert r.error["field"] == "delete_disks"
    assert os.path.exists(tree) and ck_list(d, "ck2")["checkpoints"]
    r = d.delete(f"{V}/vms/ck2?delete_disks=true")
    assert r.status == 204, r
    assert os.path.exists(disk)
    assert not os.path.exists(os.path.join(d.state, "vms", uuid))
    assert inventory(d, uuid) == []


def test_saved_vm_and_standard_apply_to_an_off_vm(daemon, tmp_path):
    d = daemon()
    make_vm(d, tmp_path, "ck3")
    uuid = vm(d, "ck3")["uuid"]
    act(d, "ck3", "start")
    v = vm(d, "ck3")
    wait_flushed(d, v, 512)
    s = ck_create(d, "ck3", "S")["result"]["checkpoint"]
    at_s = flushed(d, v)[-1]
    k_s = read_prefix(s["disks"][0], tmp_path)
    saved_at = wait_flushed(d, v, k_s + 2000)  # at most what it had flushed when saved
    act(d, "ck3", "save")

    # a checkpoint of a saved VM keeps its memory, and the VM stays saved on its new overlay
    w = StateWatch(d, "ck3")
    t = ck_create(d, "ck3", "T")["result"]["checkpoint"]
    assert w.done() == {"saved"}
    assert t["kind"] == "standard" and t["parent"] == "c1"
    assert vm(d, "ck3")["state"] == "saved"
    act(d, "ck3", "start")  # it resumes where it was saved
    v = vm(d, "ck3")
    got = wait_flushed(d, v, saved_at + 64)
    assert got >= saved_at
    act(d, "ck3", "turn-off")

    # applying a standard checkpoint to a VM that is off leaves it saved in that checkpoint
    w = StateWatch(d, "ck3")
    op = ck_do(d, "ck3", "S", "apply")
    assert w.done() <= {"off", "saved"}
    assert op["result"]["state"] == "saved"
    v = vm(d, "ck3")
    assert v["state"] == "saved" and v["state_reason"] == "checkpoint-applied"
    act(d, "ck3", "start")
    v = vm(d, "ck3")
    time.sleep(0.5)
    vals = flushed(d, v)
    first_after = [x for x in vals if x <= at_s + 200]
    assert first_after and vals[-1] < saved_at, (at_s, saved_at, vals[-5:])
    act(d, "ck3", "turn-off")

    # deleting a checkpoint of a saved VM keeps it saved and its state usable
    act(d, "ck3", "start")
    v = vm(d, "ck3")
    wait_flushed(d, v, at_s + 300)
    act(d, "ck3", "save")
    ck_do(d, "ck3", "S", "delete")
    assert vm(d, "ck3")["state"] == "saved"
    assert [c["name"] for c in ck_list(d, "ck3")["checkpoints"]] == ["T"]
    mirrors(d, uuid, ck_list(d, "ck3"))
    act(d, "ck3", "start")
    act(d, "ck3", "turn-off")


def test_errors(daemon, tmp_path):
    d = daemon()
    make_vm(d, tmp_path, "ck4", "test=ticker")
    r = d.get(f"{V}/vms/nope/checkpoints")
    assert r.status == 404 and r.error["code"] == "not-found", r
    for method, path in (("GET", "checkpoints/zz"), ("POST", "checkpoints/zz/apply"),
                         ("DELETE", "checkpoints/zz")):
        r = d.request(method, f"{V}/vms/ck4/{path}", None)
        assert r.status == 404 and r.error["code"] == "not-found", r
        assert r.error["field"] == "checkpoint", r
    for body, field in (({}, "name"), ({"name": ""}, "name"), ({"name": "a/b"}, "name"),
                        ({"name": "c7"}, "name"), ({"name": "x" * 65}, "name"),
                        ({"name": "ok", "disk_only": 1}, "disk_only"),
                        ({"name": "ok", "extra": 1}, "extra")):
        r = d.post(f"{V}/vms/ck4/checkpoints", body)
        assert r.status == 400 and r.error["field"] == field, (body, r)
    r = d.post(f"{V}/vms/ck4/checkpoints/zz/apply", {"x": 1})
    assert r.status == 400 and r.error["code"] == "unknown-field", r

    ck_create(d, "ck4", "one")
    r = d.post(f"{V}/vms/ck4/checkpoints", {"name": "one"})
    assert r.status == 409 and r.error["code"] == "conflict" and r.error["field"] == "name", r

    # while an operation runs on the VM, others get busy
    r = d.post(f"{V}/vms/ck4/checkpoints", {"name": "two"})
    assert r.status == 202 and r.headers["Location"].endswith(r.json["id"]), r
    r2 = d.post(f"{V}/vms/ck4/start", None)
    assert r2.status == 409 and r2.error["code"] == "busy", r2
    r3 = d.post(f"{V}/vms/ck4/checkpoints", {"name": "three"})
    assert r3.status == 409 and r3.error["code"] == "busy", r3
    op = d.get(f"{V}/operations/{r.json['id']}?wait=true").json
    assert op["state"] == "succeeded", op

    # a disk-only checkpoint does not apply to a running VM
    act(d, "ck4", "start")
    r = d.post(f"{V}/vms/ck4/checkpoints/one/apply", None)
    assert r.status == 409 and r.error["code"] == "invalid-state", r
    assert "disk-only" in r.error["message"]
    act(d, "ck4", "turn-off")

    # a damaged tree file: a clear error, and berthd goes on
    uuid = vm(d, "ck4")["uuid"]
    tree = os.path.join(d.state, "vms", uuid, "checkpoints", "tree.json")
    good = open(tree).read()
    with open(tree, "w") as f:
        f.write('{"format": "berth-checkpoints", "version": 1, "next_id": 3, "disks": [], '
                '"nodes": {"now": {"parent": "c9", "layers": []}}}')
    r = d.get(f"{V}/vms/ck4/checkpoints")
    assert r.status == 500 and "tree.json" in r.error["message"] and "parent" in r.error["message"], r
    r = d.post(f"{V}/vms/ck4/start?wait=true", None)
    assert r.json["state"] == "failed" and "tree.json" in r.json["error"]["message"], r.json
    with open(tree, "w") as f:
        f.write("{not json")
    r = d.get(f"{V}/vms/ck4/checkpoints/one")
    assert r.status == 500 and "tree.json" in r.error["message"], r
    with open(tree, "w") as f:
        f.write(good)
    assert [c["name"] for c in ck_list(d, "ck4")["checkpoints"]] == ["one", "two"]
    assert vm(d, "ck4")["state"] == "off"


def test_inventory_reconciled_at_daemon_start(daemon, tmp_path):
    d = daemon()
    make_vm(d, tmp_path, "ck5", "test=ticker")
    uuid = vm(d, "ck5")["uuid"]
    ck_create(d, "ck5", "p")
    ck_create(d, "ck5", "q")
    assert d.stop() == 0
    with sqlite3.connect(os.path.join(d.state, "berth.db")) as db:
        db.execute("DELETE FROM checkpoints")
    d2 = daemon(state_dir=d.state)
    assert [r[1] for r in inventory(d2, uuid)] == ["p", "q"]
    mirrors(d2, uuid, ck_list(d2, "ck5"))


def test_cli_verbs(daemon, tmp_path):
    from test_cli import BERTH
    from test_cli_lifecycle import berth, read_until

    d = daemon()
    make_vm(d, tmp_path, "cv")
    r = berth(d, "checkpoint", "create", "cv", "base:0", "--json")
    assert r.rc == 0 and r.err == "", r
    op = r.json
    assert op["kind"] == "checkpoint-create" and op["state"] == "succeeded", op
    assert op["result"]["checkpoint"]["kind"] == "disk-only"
    r = berth(d, "checkpoint", "create", "cv", "base:0")
    assert r.rc == 4 and "conflict" not in r.out and "base:0" in r.err, r
    ok = berth(d, "vm", "start", "cv")
    assert ok.rc == 0, ok
    wait_flushed(d, vm(d, "cv"), 256)
    r = berth(d, "checkpoint", "create", "cv", "run1")
    assert r.rc == 0 and r.out == "checkpoint run1 of cv: done (checkpoint c2 'run1')\n", r
    r = berth(d, "checkpoint", "list", "cv")
    lines = r.out.splitlines()
    assert r.rc == 0 and lines[0].split() == ["ID", "NAME", "KIND", "PARENT", "CREATED", "CURRENT"], r
    assert lines[1].split()[:4] == ["c1", "base:0", "disk-only", "-"], r
    assert lines[2].split()[:4] == ["c2", "run1", "standard", "c1"] and lines[2].endswith("*"), r
    r = berth(d, "checkpoint", "list", "cv", "--json")
    assert r.rc == 0 and r.json == ck_list(d, "cv"), r
    r = berth(d, "checkpoint", "show", "cv", "base:0")
    assert r.rc == 0 and "Kind" in r.out and "disk-only" in r.out and "c1" in r.out, r
    r = berth(d, "checkpoint", "show", "cv", "c2", "--json")
    assert r.rc == 0 and r.json["name"] == "run1", r
    r = berth(d, "checkpoint", "show", "cv", "nope")
    assert r.rc == 3 and r.out == "" and "nope" in r.err, r
    r = berth(d, "checkpoint", "apply", "cv", "base:0")
    assert r.rc == 4 and "disk-only" in r.err, r
    r = berth(d, "checkpoint", "apply", "cv", "run1", "--json")
    assert r.rc == 0 and r.json["result"]["state"] == "running", r
    # delete with the progress line on a terminal
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([BERTH, "--socket", d.sock,
                              "checkpoint", "delete", "cv", "run1"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        slave = -1
        out, _ = p.communicate(timeout=60)
        err = read_until(master, lambda b: p.poll() is not None and b.endswith(b"\r\x1b[K"), timeout=5)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0, (out, err)
    assert re.fullmatch(rb"delete run1 of cv: done \(checkpoint c2 'run1', \d+ bytes merged\)\n", out), out
    frames = [f for f in err.split(b"\r\x1b[K") if f]
    assert all(re.fullmatch(rb"delete run1 of cv: (queued|running) +\d+%", f) for f in frames), err
    r = berth(d, "checkpoint", "delete", "cv", "base:0", "--json")
    assert r.rc == 0 and r.json["state"] == "succeeded", r
    r = berth(d, "checkpoint", "list", "cv")
    assert r.rc == 0 and r.out.splitlines()[1:] == [], r
    r = berth(d, "checkpoint", "create", "cv")
    assert r.rc == 2, r
    r = berth(d, "checkpoint", "create", "--help")
    assert r.rc == 0 and "--disk-only" in r.out, r
    r = berth(d, "checkpoint", "delete", "nope", "x")
    assert r.rc == 3, r
    berth(d, "vm", "turn-off", "cv")


def test_disk_only_checkpoint_of_a_running_vm_applied_to_it_saved(daemon, tmp_path):
    """A disk-only checkpoint taken while the VM runs, applied once it is saved: the saved state is
    dropped and the VM is off on the checkpoint's disks, booting afresh at the next start."""
    d = daemon()
    make_vm(d, tmp_path, "ck6")
    uuid = vm(d, "ck6")["uuid"]
    act(d, "ck6", "start")
    v = vm(d, "ck6")
    wait_flushed(d, v, 256)
    cp = ck_create(d, "ck6", "disks", disk_only=True)["result"]["checkpoint"]
    assert cp["kind"] == "disk-only"
    k = read_prefix(cp["disks"][0], tmp_path)
    wait_flushed(d, v, k + 1000)
    act(d, "ck6", "save")
    saved = os.path.join(d.state, "vms", uuid, "saved")
    assert os.path.isdir(saved)
    w = StateWatch(d, "ck6")
    op = ck_do(d, "ck6", "disks", "apply")
    assert w.done() <= {"saved", "off"}
    assert op["result"]["state"] == "off"
    v = vm(d, "ck6")
    assert v["state"] == "off" and v["state_reason"] == "checkpoint-applied"
    assert not os.path.exists(saved)
    tree = json.load(open(os.path.join(d.state, "vms", uuid, "checkpoints", "tree.json")))
    assert read_prefix(tree["nodes"]["now"]["layers"][0][0], tmp_path) == k
    act(d, "ck6", "start")  # boots: the writer starts again from its first chunk
    got = wait_flushed(d, vm(d, "ck6"), 64)
    assert got < k + 1000
    act(d, "ck6", "turn-off")


def test_delete_progress_follows_the_merge(daemon, tmp_path):
    """The operation of a delete that merges 64 MiB reports the VMM's checkpoint-progress events
    (every 16 MiB) as its progress while it runs."""
    d = daemon()
    make_vm(d, tmp_path, "ck7", "test=blk-fill pattern=5 chunk=65536 flush_every=16")
    ck_create(d, "ck7", "x")
    act(d, "ck7", "start")
    wait_state(d, "ck7", "off", timeout=120)  # the writer filled the disk and powered off
    r = d.delete(f"{V}/vms/ck7/checkpoints/x")
    assert r.status == 202, r
    seen = []
    while True:
        op = d.get(f"{V}/operations/{r.json['id']}").json
        seen.append(op["progress"])
        if op["finished"]:
            break
        time.sleep(0.005)
    assert op["state"] == "succeeded", op
    assert op["result"]["merged_bytes"] >= 48 << 20, op
    assert seen == sorted(seen) and seen[-1] == 100, seen
    assert any(20 < p < 80 for p in seen), str(seen)  # between the VMM's start and its end: the merge
