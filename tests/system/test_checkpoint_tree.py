# test_checkpoint_tree.py — the VMM's checkpoint tree (--checkpoint-dir) driven over the control socket.
"""A disk writer (`test=blk-fill`, paced) runs for the whole test. Checkpoints are taken at known points of its
work; applying one reverts the running VM (its counter of flushed chunks starts again from the checkpoint's value,
its disk holds exactly the checkpoint's prefix); deleting any checkpoint — a leaf, one in the middle, the root, one
with two children, one whose only child is the running VM — merges its disk layer into its neighbour while the VM
runs, and every checkpoint left still reads exactly as when it was taken. qemu-img judges every image. At the end
the VM runs on its own disk file again and finishes its work byte-exact."""

import json
import os
import subprocess
import time

import pytest

from conftest import VMM, GUEST, needs_kvm
from test_guest_blk import DISK_BYTES
from test_vmm_control import Vmm, sockdir  # noqa: F401  (fixture)
from test_vmstate import FILL_STRIDE

CHUNK = 4096
NCHUNKS = DISK_BYTES // CHUNK
EVERY = 64
COUNT = 6144  # chunks the writer writes in all (of NCHUNKS)


def prefix_of(raw, pattern):
    """How many chunks of blk-fill's order (chunk=4 KiB) hold the pattern; every later chunk must be zero."""
    from test_guest_blk import _chunk, _chunk_base, CHUNK as PCHUNK
    base = _chunk_base(pattern)
    data = open(raw, "rb").read()
    order = [(j * FILL_STRIDE) % NCHUNKS for j in range(NCHUNKS)]
    cache = {}

    def want(c):
        big = c * CHUNK // PCHUNK * PCHUNK
        if big not in cache:
            cache[big] = _chunk(base, big)
        off = c * CHUNK - big
        return cache[big][off:off + CHUNK]

    k = 0
    while k < NCHUNKS and data[order[k] * CHUNK:(order[k] + 1) * CHUNK] == want(order[k]):
        k += 1
    zero = bytes(CHUNK)
    for c in order[k:]:
        assert data[c * CHUNK:(c + 1) * CHUNK] == zero, f"chunk {c} is written but not part of the prefix {k}"
    return k


class Tree:
    def __init__(self, sockdir, tmp_path, fmt, pattern):
        self.tmp, self.pattern = tmp_path, pattern
        self.disk = str(tmp_path / f"base.{fmt}")
        if fmt == "raw":
            with open(self.disk, "wb") as f:
                f.truncate(DISK_BYTES)
        else:  # 1 MiB clusters: merges of 64 KiB overlay clusters into it copy part of a cluster
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=1M", self.disk,
                            str(DISK_BYTES)], check=True)
        self.ckdir = str(tmp_path / "ck")
        self.vm = Vmm(sockdir, f"test=blk-fill,ticker pattern={pattern} chunk={CHUNK} flush_every={EVERY} "
                      f"count={COUNT} pace_ms=2", extra=("--disk", f"{self.disk},format={fmt}", "--checkpoint-dir", self.ckdir),
                      vm_timeout=300)
        self.c = self.vm.client()
        self.content = {}  # checkpoint name -> prefix length of its disk
        self.mark = 0      # index of the writer's first line since the last apply

    def call(self, cmd, **args):
        r = self.c.call(cmd, args)
        assert r["ok"], (cmd, args, r, self.vm.report())
        return r["result"]

    def flushed(self):
        return [int(l.split("flushed=")[1]) for l in self.vm.out() if "blk-fill flushed=" in l]

    def wait_flushed(self, n, since=None, timeout=120):
        """Wait until the writer reports n flushed chunks (in its lines since the last apply)."""
        since = self.mark if since is None else since
        deadline = time.monotonic() + timeout
        while not any(f >= n for f in self.flushed()[since:]):
            if time.monotonic() > deadline or self.vm.proc.poll() is not None:
                pytest.fail(f"flushed={n} not seen\n{self.vm.report()}")
            time.sleep(0.02)

    def listing(self):
        return {c["name"]: c for c in self.call("checkpoint-list")["checkpoints"]}

    def read(self, image, name):
        raw = str(self.tmp / f"read-{name}.raw")
        subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", image, raw], check=True)
        k = prefix_of(raw, self.pattern)
        os.unlink(raw)
        return k

    def create(self, name, at):
        self.wait_flushed(at)
        res = self.call("checkpoint-create", name=name)
        assert res["name"] == name
        top = self.listing()[name]["disks"][0]
        self.content[name] = self.read(top, name)
        # The checkpoint holds at least what was flushed when it was asked for.
        assert self.content[name] >= at, (name, self.content[name], at)
        return res

    def verify(self):
        """Every checkpoint reads as when it was taken; every image passes qemu-img check; no stray layer."""
        listing = self.listing()
        assert set(listing) == set(self.content), (listing.keys(), self.content.keys())
        for name, c in listing.items():
            assert self.read(c["disks"][0], name) == self.content[name], name
        layers = os.listdir(os.path.join(self.ckdir, "layers"))
        tree = json.load(open(os.path.join(self.ckdir, "tree.json")))
        active = tree["nodes"]["now"]["layers"][0][0]
        for f in layers:
            path = os.path.join(self.ckdir, "layers", f)
            if path == active:
                continue  # being written: a check would race with the VM (it is checked after the run)
            chk = subprocess.run(["qemu-img", "check", "-U", path], capture_output=True, text=True)
            assert chk.returncode == 0, (f, chk.stdout, chk.stderr)
        return listing, layers

    def apply(self, name):
        seen = len(self.flushed())
        res = self.call("checkpoint-apply", checkpoint=name)
        assert res["name"] == name
        self.mark = seen
        return res

    def delete(self, name):
        res = self.call("checkpoint-delete", checkpoint=name)
        del self.content[name]
        return res


@needs_kvm
@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_tree_apply_and_delete_in_every_position(sockdir, tmp_path, fmt):
    t = Tree(sockdir, tmp_path, fmt, pattern=7)
    t.create("A", 512)
    t.create("B", 1024)
    # Apply A: the running VM goes back to A; its writer starts again right after A's point.
    t.wait_flushed(1536)
    t.apply("A")
    t.wait_flushed(t.content["A"] // EVERY * EVERY + 3 * EVERY)
    after = t.flushed()[t.mark:]
    assert after and after[0] <= t.content["A"] + EVERY, (after[:3], t.content["A"])
    assert after == list(range(after[0], after[0] + EVERY * len(after), EVERY)), after[:10]
    listing = t.listing()
    assert listing["A"]["current"] and listing["B"]["parent"] == listing["A"]["id"]
    t.create("C", t.content["A"] // EVERY * EVERY + 4 * EVERY)       # A -> {B, C}
    assert t.listing()["C"]["parent"] == listing["A"]["id"]
    t.verify()

    t.delete("B")                                                   # a leaf: its layer goes
    t.verify()
    t.create("D", t.flushed()[-1] + 2 * EVERY)                      # A -> C -> D -> now
    t.delete("C")                                                   # the middle: merges into D
    listing, _ = t.verify()
    assert listing["D"]["parent"] == listing["A"]["id"]
    t.delete("A")                                                   # the root: D merges into the disk itself
    listing, _ = t.verify()
    assert listing["D"]["parent"] is None
    t.create("E", t.flushed()[-1] + 2 * EVERY)                      # D -> E -> now
    t.call("pause")                                                 # apply to a paused VM: it stays paused,
    t.apply("D")                                                    # D -> {E, now}
    now_top = json.load(open(os.path.join(t.ckdir, "tree.json")))["nodes"]["now"]["layers"][0][0]
    assert t.read(now_top, "now") == t.content["D"]                 # and its disk is exactly D's
    assert t.call("query-status")["state"] == "paused"
    t.call("resume")
    t.delete("D")                                                   # two children: kept as a hidden layer
    listing, _ = t.verify()
    assert listing["E"]["parent"] is None and not any(c["current"] for c in listing.values())
    t.delete("E")                                                   # the last: the VM runs on its own disk
    listing, layers = t.verify()
    assert listing == {} and layers == [], layers
    assert sorted(os.listdir(t.ckdir)) == ["layers", "tree.json"]
    tree = json.load(open(os.path.join(t.ckdir, "tree.json")))
    assert tree["nodes"] == {"now": {"parent": None, "layers": [[t.disk]]}}, tree

    t.vm.wait_for("berth-test blk-fill PASS", timeout=240)
    t.call("quit")
    t.vm.wait()
    if fmt == "qcow2":
        chk = subprocess.run(["qemu-img", "check", t.disk], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout
    assert t.read(t.disk, "final") == COUNT                        # all of its work, byte-exact


@needs_kvm
def test_delete_the_running_vms_parent_with_writes_in_flight(sockdir, tmp_path):
    """The running VM's own image merges into the checkpoint's while the writer keeps writing."""
    t = Tree(sockdir, tmp_path, "raw", pattern=8)
    t.create("A", 256)
    t.wait_flushed(2048)
    # The merge runs beside the control loop: another client is answered meanwhile, and this client's
    # next request is answered after the delete, in order.
    other = t.vm.client()
    t.c.next_id += 1
    t.c.send({"id": t.c.next_id, "cmd": "checkpoint-delete", "args": {"checkpoint": "A"}})
    t.c.send({"id": t.c.next_id + 1, "cmd": "query-status"})
    assert other.call("query-status")["ok"]
    first = t.c.reply(t.c.next_id, timeout=60)
    assert first["ok"], first
    res = first["result"]
    second = t.c.reply(t.c.next_id + 1)
    t.c.next_id += 1
    assert second["ok"] and second["result"]["state"] == "running", second
    assert other.event("checkpoint-deleted")["data"]["name"] == "A"
    del t.content["A"]
    assert res["merged_bytes"] > 0
    listing, layers = t.verify()
    assert listing == {} and layers == []
    n = t.flushed()[-1]
    t.wait_flushed(n + 4 * EVERY)                                   # it writes on, into its own disk
    t.call("pause")
    k = prefix_of(t.disk, 8)                                        # the disk holds every flushed chunk
    assert k >= n + 4 * EVERY, (k, n)
    t.call("quit")
    t.vm.wait()


@needs_kvm
def test_checkpoint_tree_errors(sockdir, tmp_path):
    t = Tree(sockdir, tmp_path, "raw", pattern=9)
    c = t.c
    t.create("A", 64)
    r = c.call("checkpoint-create", {"name": "A"})
    assert not r["ok"] and r["error"]["code"] == "checkpoint-exists" and r["error"]["field"] == "args.name", r
    for cmd in ("checkpoint-apply", "checkpoint-delete"):
        r = c.call(cmd, {"checkpoint": "nope"})
        assert not r["ok"] and r["error"]["code"] == "no-such-checkpoint", r
        assert r["error"]["field"] == "args.checkpoint"
        r = c.call(cmd, {})
        assert not r["ok"] and r["error"]["code"] == "missing-argument", r
    r = c.call("checkpoint-create", {"name": "B", "disk_only": True})
    assert r["ok"], r
    assert not t.listing()["B"]["state"]
    r = c.call("checkpoint-apply", {"checkpoint": "B"})
    assert not r["ok"] and r["error"]["code"] == "checkpoint-failed" and "disks only" in r["error"]["message"], r
    r = c.call("checkpoint-create", {"name": 5})
    assert not r["ok"] and r["error"]["code"] == "invalid-argument" and r["error"]["field"] == "args.name", r
    assert c.call("query-status")["result"]["state"] == "running"
    c.call("quit")
    t.vm.wait()

    # The tree stays: a VMM started on the current image continues it; one started on another image is refused.
    tree = json.load(open(os.path.join(t.ckdir, "tree.json")))
    top = tree["nodes"]["now"]["layers"][0][0]
    vm2 = Vmm(sockdir, "test=ticker", extra=("--disk", f"{top},format=qcow2", "--checkpoint-dir", t.ckdir))
    cl = vm2.client()
    names = [x["name"] for x in cl.call("checkpoint-list")["result"]["checkpoints"]]
    assert names == ["A", "B"]
    cl.call("quit")
    vm2.wait()
    vm3 = Vmm(sockdir, "test=ticker", extra=("--disk", f"{t.disk},format=raw", "--checkpoint-dir", t.ckdir))
    assert vm3.wait() != 0
    assert "the tree's current image is" in vm3.stderr(), vm3.report()
    # A damaged tree file is refused with the reason, and left as it is.
    path = os.path.join(t.ckdir, "tree.json")
    for damage, words in ((lambda d: d["nodes"]["c1"].update(parent="c2") or
                           d["nodes"]["c2"].update(parent="c1"), "its own ancestor"),
                          (lambda d: d["nodes"]["c1"].update(parent="gone"), "missing parent"),
                          (lambda d: d["nodes"].update(x=d["nodes"]["c1"]), "bad node id"),
                          (lambda d: d.update(version=2), "version 1")):
        d = json.loads(json.dumps(tree))
        damage(d)
        text = json.dumps(d)
        open(path, "w").write(text)
        vm4 = Vmm(sockdir, "test=ticker", extra=("--disk", f"{top},format=qcow2", "--checkpoint-dir", t.ckdir))
        assert vm4.wait() != 0 and words in vm4.stderr(), (words, vm4.report())
        assert open(path).read() == text
    open(path, "w").write("{")
    vm5 = Vmm(sockdir, "test=ticker", extra=("--disk", f"{top},format=qcow2", "--checkpoint-dir", t.ckdir))
    assert vm5.wait() != 0 and "tree.json' line" in vm5.stderr(), vm5.report()


def test_checkpoint_dir_needs_control(tmp_path):
    r = subprocess.run([VMM, "--kernel", GUEST, "--checkpoint-dir", str(tmp_path / "ck"), "--check"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--checkpoint-dir" in r.stderr and "--control" in r.stderr, r.stderr


@needs_kvm
def test_no_checkpoint_dir(sockdir):
    vm = Vmm(sockdir, "test=ticker")
    c = vm.client()
    r = c.call("checkpoint-list")
    assert not r["ok"] and r["error"]["code"] == "no-checkpoint-dir", r
    c.call("quit")
    vm.wait()


@needs_kvm
def test_quit_during_a_merge_leaves_a_consistent_tree(sockdir, tmp_path):
    t = Tree(sockdir, tmp_path, "raw", pattern=10)
    t.create("A", 128)
    t.wait_flushed(1536)
    t.c.next_id += 1
    t.c.send({"id": t.c.next_id, "cmd": "checkpoint-delete", "args": {"checkpoint": "A"}})
    other = t.vm.client()
    other.send({"id": 1, "cmd": "quit"})
    assert t.vm.wait() == 8, t.vm.report()
    tree = json.load(open(os.path.join(t.ckdir, "tree.json")))
    top = tree["nodes"]["now"]["layers"][0][0]
    fmt = "raw" if top == t.disk else "qcow2"
    # Whichever step the merge reached, the tree describes the images, and they read as before.
    vm2 = Vmm(sockdir, "test=ticker", extra=("--disk", f"{top},format={fmt}", "--checkpoint-dir", t.ckdir))
    cl = vm2.client()
    names = [c["name"] for c in cl.call("checkpoint-list")["result"]["checkpoints"]]
    assert names in ([], ["A"]), names
    if names:
        assert t.read(cl.call("checkpoint-list")["result"]["checkpoints"][0]["disks"][0], "A") == t.content["A"]
    cl.call("quit")
    vm2.wait()
    for f in os.listdir(os.path.join(t.ckdir, "layers")):
        chk = subprocess.run(["qemu-img", "check", os.path.join(t.ckdir, "layers", f)], capture_output=True, text=True)
        assert chk.returncode in (0, 3), chk.stdout   # leaks are allowed after a stop mid-way


@needs_kvm
def test_apply_a_checkpoint_of_a_guest_dirtying_all_its_ram(sockdir, tmp_path):
    """checkpoint-create pre-copies RAM while the guest sweeps it; checkpoint-apply puts back exactly that RAM
    in place: the guest goes on from the checkpoint's sweep and every page it checks is right."""
    from test_vmstate_precopy import MIB, check_memory_report, sweeps, wait_sweeps
    ck = str(tmp_path / "ck")
    vm = Vmm(sockdir, "test=memwalk mib=160", extra=("--memory", "256M", "--checkpoint-dir", ck))
    vm.wait_for("memwalk sweep=3")
    c = vm.client()
    r = c.call("checkpoint-create", {"name": "A"}, timeout=60)
    assert r["ok"], r
    check_memory_report(r["result"]["memory"], 160 * MIB, dirtying=True)
    at = sweeps(vm)[-1]
    vm.wait_for(f"memwalk sweep={at + 3}")               # runs on, far past the checkpoint
    seen = len(vm.out())
    r = c.call("checkpoint-apply", {"checkpoint": "A"}, timeout=60)
    assert r["ok"], r

    class After:                                          # the guest's lines since the apply
        proc = vm.proc

        def out(self):
            return vm.out()[seen:]

        def report(self):
            return vm.report()
    s = wait_sweeps(After())
    assert s[0] <= at + 1, (s[:3], at)                    # back at the checkpoint's sweep
    c.call("quit")
    vm.wait()


@needs_kvm
def test_save_and_restore_keep_the_tree(sockdir, tmp_path):
    """A VM with checkpoints saved and restored (what berthd's save/start does) comes back on its current
    image with its tree, and can still apply a checkpoint taken before the save."""
    from test_vmstate import Restored
    t = Tree(sockdir, tmp_path, "raw", pattern=11)
    t.create("A", 256)
    t.wait_flushed(t.content["A"] // EVERY * EVERY + 2 * EVERY)
    state = str(tmp_path / "saved")
    r = t.c.call("save", {"dir": state}, timeout=60)
    assert r["ok"], r
    assert t.vm.wait() == 9, t.vm.report()
    cfg = json.load(open(os.path.join(state, "config.json")))
    tree = json.load(open(os.path.join(t.ckdir, "tree.json")))
    assert cfg["checkpoint_dir"] == t.ckdir
    assert cfg["disks"][0]["path"] == tree["nodes"]["now"]["layers"][0][0]   # the current image, not the base
    rv = Restored(sockdir, state)
    c = rv.client()
    names = [x["name"] for x in c.call("checkpoint-list")["result"]["checkpoints"]]
    assert names == ["A"]
    seen = len(rv.out())
    r = c.call("checkpoint-apply", {"checkpoint": "A"}, timeout=60)
    assert r["ok"], r
    deadline = time.monotonic() + 60
    while True:
        after = [int(l.split("flushed=")[1]) for l in rv.out()[seen:] if "blk-fill flushed=" in l]
        if len(after) >= 2:
            break
        assert time.monotonic() < deadline, rv.report()
        time.sleep(0.05)
    assert after[0] <= t.content["A"] + EVERY, (after[:3], t.content["A"])
    c.call("quit")
    rv.wait()
