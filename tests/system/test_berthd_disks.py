"""berthd's managed disks against a real daemon in a temporary state directory: images created by
berthd's own qcow2/raw code in its pool (qemu-img info/check are the oracle for format, size and
backing file), backing files confined to the pool, grow-only resize (the qcow2 L1 table moved or
grown in place), attach/detach (VM off only, If-Match, generation, audit events), the test guest
writing and verifying a managed qcow2 overlay and seeing the new capacity after a resize, the
refusals (running VM, shrink, in use, backing, checkpoints, bad names and sizes with the field
named), DELETE /vms/{id}?delete_disks=true, and the `berth disk` verbs end to end. Every response
is checked against the OpenAPI document (berthdutil.Berthd.request)."""
import json
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import time

import pytest

from test_berthd_lifecycle import GUEST, V, act, create, daemon, run_dir, vm  # noqa: F401
from test_berthd_switches import Console
from test_cli import BERTH, Run, one_error_line
from test_guest_blk import first_mismatch

MiB = 1 << 20
pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-img"), reason="needs qemu-img")


def qinfo(path):
    p = subprocess.run(["qemu-img", "info", "--output=json", "-U", path], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout)


def qcheck(path):
    p = subprocess.run(["qemu-img", "check", path], capture_output=True, text=True)
    assert p.returncode == 0 and "No errors were found" in p.stdout, p
    return p.stdout


def qio(path, *cmds):
    """qemu-io commands on an image (read -P checks the pattern); fails on any error."""
    args = ["qemu-io", "-f", "qcow2"]
    for c in cmds:
        args += ["-c", c]
    p = subprocess.run(args + [path], capture_output=True, text=True)
    assert p.returncode == 0 and "fail" not in p.stdout.lower() and p.stderr == "", p
    return p.stdout


def mk(d, name, size=None, **kw):
    body = {"name": name, **kw}
    if size is not None:
        body["size"] = size
    r = d.post(V + "/disks", body)
    assert r.status == 201, r
    assert r.headers["ETag"] == '"1"' and r.headers["Location"] == f"{V}/disks/{r.json['uuid']}"
    return r.json


def err(r, status, code, field=None):
    assert r.status == status, r
    e = r.error
    assert e["code"] == code, r
    assert e.get("field") == field, r
    return e["message"]


def events(d, kind):
    """The audit events of a kind, oldest first, as {"vm", "detail"}."""
    db = sqlite3.connect(os.path.join(d.state, "berth.db"))
    try:
        return [{"vm": vm, "detail": json.loads(detail)} for vm, detail in
                db.execute("SELECT vm, detail FROM events WHERE kind = ? ORDER BY id", (kind,))]
    finally:
        db.close()


def berth(d, *args, timeout=60):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    return Run(subprocess.run([BERTH, "--socket", d.sock] + [str(a) for a in args],
                              capture_output=True, text=True, timeout=timeout, env=e,
                              stdin=subprocess.DEVNULL))


def guest_blk(d, name):
    """Boot the VM with the test guest's blk workload (write, read back, verify the whole disk),
    read its result from the console, turn it off; returns the result's key=values."""
    v = vm(d, name)
    act(d, name, "start")
    c = Console(d, v).read_until_closed(timeout=180)
    act(d, name, "turn-off")
    status, kv = c.result("blk")
    assert status == "PASS", c.text[-3000:]
    return kv


def test_create_show_list_and_qemu_img_agrees(daemon):
    d = daemon()
    pool = os.path.join(d.state, "disks")
    assert stat.S_IMODE(os.stat(pool).st_mode) == 0o700
    raw = mk(d, "r1", 8 * MiB, format="raw")
    q = mk(d, "q1", 16 * MiB)
    child = mk(d, "c1", backing="q1")  # size: the backing disk's
    big = mk(d, "c2", 32 * MiB, backing=q["uuid"], format="qcow2")

    assert (raw["format"], raw["size"], raw["backing"], raw["attached_to"]) == ("raw", 8 * MiB, None, [])
    assert q["format"] == "qcow2" and child["size"] == 16 * MiB and big["size"] == 32 * MiB
    assert child["backing"] == q["uuid"] and child["backing_name"] == "q1"
    for disk in (raw, q, child, big):
        assert os.path.dirname(disk["path"]) == pool and disk["present"]
        st = os.stat(disk["path"])
        assert stat.S_IMODE(st.st_mode) == 0o600 and disk["allocated"] == st.st_blocks * 512
        info = qinfo(disk["path"])
        assert (info["format"], info["virtual-size"]) == (disk["format"], disk["size"]), info
    assert os.path.getsize(raw["path"]) == 8 * MiB and os.stat(raw["path"]).st_blocks == 0
    for disk in (q, child, big):
        qcheck(disk["path"])
    for disk in (child, big):
        info = qinfo(disk["path"])
        assert info["backing-filename"] == q["path"], info
        assert info["backing-filename-format"] == "qcow2", info

    r = d.get(V + "/disks")
    assert r.status == 200 and [x["name"] for x in r.json["disks"]] == ["c1", "c2", "q1", "r1"]
    r = d.get(f"{V}/disks/{q['uuid']}")
    assert r.status == 200 and r.json == d.get(V + "/disks/q1").json and r.headers["ETag"] == '"1"'
    err(d.get(V + "/disks/nope"), 404, "not-found")
    created = events(d, "disk-created")
    assert [e["detail"]["name"] for e in created] == ["r1", "q1", "c1", "c2"]
    assert created[2]["detail"]["backing"] == "q1" and created[0]["detail"]["format"] == "raw"


def test_bad_requests_name_the_field(daemon):
    d = daemon()
    mk(d, "base", 4 * MiB)
    mk(d, "flat", 4 * MiB, format="raw")
    cases = [
        ({"size": MiB}, "name"),
        ({"name": "-x", "size": MiB}, "name"),
        ({"name": "a/b", "size": MiB}, "name"),
        ({"name": "01234567-89ab-4def-8123-456789abcdef", "size": MiB}, "name"),
        ({"name": "x" * 64, "size": MiB}, "name"),
        ({"name": "x"}, "size"),
        ({"name": "x", "size": "10G"}, "size"),
        ({"name": "x", "size": 1000}, "size"),
        ({"name": "x", "size": 0}, "size"),
        ({"name": "x", "size": -512}, "size"),
        ({"name": "x", "size": (1 << 46) + 512}, "size"),
        ({"name": "x", "size": MiB, "format": "vmdk"}, "format"),
        ({"name": "x", "size": MiB, "format": "raw", "backing": "base"}, "backing"),
        ({"name": "x", "backing": "nope"}, "backing"),
        ({"name": "x", "backing": "/etc/shadow"}, "backing"),
        ({"name": "x", "size": MiB, "path": "/tmp/x"}, "path"),
    ]
    for body, field in cases:
        r = d.post(V + "/disks", body)
        assert r.status == 400 and r.json["error"]["field"] == field, (body, r)
    r = d.post(V + "/disks", {"name": "x", "size": MiB, "colour": "red"})
    assert err(r, 400, "unknown-field", "colour")
    msg = err(d.post(V + "/disks", {"name": "x", "backing": "/etc/shadow"}), 400,
              "invalid-argument", "backing")
    assert "confined" in msg, msg
    err(d.post(V + "/disks", {"name": "base", "size": MiB}), 409, "conflict", "name")
    assert sorted(os.listdir(os.path.join(d.state, "disks"))) == sorted(
        os.path.basename(x["path"]) for x in d.get(V + "/disks").json["disks"])
    err(d.post(V + "/disks/base/resize", {}), 400, "invalid-argument", "size")
    err(d.post(V + "/disks/base/resize", {"size": "8G"}), 400, "invalid-argument", "size")
    err(d.post(V + "/disks/base/resize", {"size": 8 * MiB, "x": 1}), 400, "unknown-field", "x")
    err(d.post(V + "/disks/nope/resize", {"size": 8 * MiB}), 404, "not-found")


def test_backing_outside_the_pool_is_refused(daemon, tmp_path):
    d = daemon()
    old = mk(d, "old", 4 * MiB)
    d.stop()
    other = tmp_path / "pool2"
    d = daemon(extra=["--disk-dir", str(other)], state_dir=d.state)
    assert stat.S_IMODE(os.stat(other).st_mode) == 0o700
    msg = err(d.post(V + "/disks", {"name": "new", "backing": "old"}), 400, "invalid-argument",
              "backing")
    assert "outside the disk pool" in msg and old["path"] in msg, msg
    new = mk(d, "new2", 4 * MiB)
    assert os.path.dirname(new["path"]) == str(other)


def test_resize(daemon):
    d = daemon()
    raw = mk(d, "r", 8 * MiB, format="raw")
    q = mk(d, "q", 8 * MiB)
    child = mk(d, "c", backing="q")
    msg = err(d.post(V + "/disks/r/resize", {"size": 4 * MiB}), 400, "invalid-argument", "size")
    assert "only grow" in msg and os.path.getsize(raw["path"]) == 8 * MiB

    r = d.post(V + "/disks/r/resize", {"size": 24 * MiB})
    assert r.status == 200 and r.json["size"] == 24 * MiB and r.headers["ETag"] == '"2"', r
    assert os.path.getsize(raw["path"]) == 24 * MiB
    assert qinfo(raw["path"])["virtual-size"] == 24 * MiB
    # the same size again: nothing changes
    r = d.post(V + "/disks/r/resize", {"size": 24 * MiB})
    assert r.status == 200 and r.json["generation"] == 2

    # grow in place (the L1 table's cluster has room) and past it (4 TiB per 64 KiB of L1
    # entries: the table moves to the end of the image)
    qio(q["path"], "write -P 0x5a 0 1M", "write -P 0xa5 7M 64k")
    r = d.post(V + "/disks/q/resize", {"size": 3 << 30})
    assert r.status == 200 and r.json["size"] == 3 << 30
    qcheck(q["path"])
    qio(q["path"], "write -P 0x33 2G 64k")
    assert qinfo(q["path"])["virtual-size"] == 3 << 30
    r = d.post(V + "/disks/q/resize", {"size": 5 << 40}, headers={"If-Match": '"2"'})
    assert r.status == 200 and r.json["size"] == 5 << 40
    qcheck(q["path"])
    assert qinfo(q["path"])["virtual-size"] == 5 << 40
    # the data survives the move of the L1 table, and the grown space reads as zeroes
    qio(q["path"], "read -P 0x5a 0 1M", "read -P 0xa5 7M 64k", "read -P 0x33 2G 64k",
        "read -P 0 4T 64k", "write -P 0x77 5119G 64k", "read -P 0x77 5119G 64k")
    qcheck(q["path"])
    err(d.post(V + "/disks/q/resize", {"size": 6 << 40}, headers={"If-Match": '"2"'}), 412,
        "precondition-failed")
    # an overlay grows on its own; qemu still reads it over its (larger) backing file
    r = d.post(V + "/disks/c/resize", {"size": 64 * MiB})
    assert r.status == 200
    qcheck(child["path"])
    info = qinfo(child["path"])
    assert info["virtual-size"] == 64 * MiB and info["backing-filename"] == q["path"]
    ev = events(d, "disk-resized")
    assert [(e["detail"]["name"], e["detail"]["previous_size"], e["detail"]["size"])
            for e in ev] == [("r", 8 * MiB, 24 * MiB), ("q", 8 * MiB, 3 << 30),
                             ("q", 3 << 30, 5 << 40), ("c", 8 * MiB, 64 * MiB)]


def test_delete_refusals(daemon):
    d = daemon()
    q = mk(d, "q", 4 * MiB)
    c = mk(d, "c", backing="q")
    msg = err(d.delete(V + "/disks/q"), 409, "in-use")
    assert "'c'" in msg and os.path.exists(q["path"])
    err(d.delete(V + "/disks/c", headers={"If-Match": '"7"'}), 412, "precondition-failed")
    r = d.delete(V + "/disks/c", headers={"If-Match": '"1"'})
    assert r.status == 204 and not os.path.exists(c["path"])
    r = d.delete(V + "/disks/q")
    assert r.status == 204 and not os.path.exists(q["path"])
    err(d.delete(V + "/disks/q"), 404, "not-found")
    assert [e["detail"]["name"] for e in events(d, "disk-deleted")] == ["c", "q"]


def test_attach_boot_write_verify_resize_detach(daemon, tmp_path):
    d = daemon()
    base = mk(d, "base", 16 * MiB)
    disk = mk(d, "data", backing="base")
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"")
    os.truncate(plain, 4 * MiB)
    v = create(d, "w1", cmdline="test=blk,halt", disks=[{"path": str(plain), "format": "raw"}])
    assert "disk" not in v["disks"][0]  # a plain path stays one

    r = d.post(V + "/vms/w1/disks", {"disk": "data", "serial": "data-1"},
               headers={"If-Match": '"1"'})
    assert r.status == 200 and r.headers["ETag"] == '"2"', r
    v = r.json
    assert v["generation"] == 2 and len(v["disks"]) == 2
    assert v["disks"][1] == {"disk": disk["uuid"], "path": disk["path"], "format": "qcow2",
                             "readonly": False, "cache": "none", "serial": "data-1"}
    ev = events(d, "vm-disk-attached")
    assert len(ev) == 1 and ev[0]["detail"]["disk"] == disk["uuid"] and ev[0]["detail"]["index"] == 1
    assert [u["name"] for u in d.get(V + "/disks/data").json["attached_to"]] == ["w1"]
    # the refusals while off
    err(d.post(V + "/vms/w1/disks", {"disk": "data"}, headers={"If-Match": '"1"'}), 412,
        "precondition-failed")
    err(d.post(V + "/vms/w1/disks", {"disk": "nope"}), 400, "invalid-argument", "disk")
    err(d.post(V + "/vms/w1/disks", {"disk": "base", "serial": "a b"}), 400, "invalid-argument",
        "serial")
    err(d.post(V + "/vms/w1/disks", {"disk": "base", "size": 1}), 400, "unknown-field", "size")
    err(d.post(V + "/vms/w1/disks", {}), 400, "invalid-argument", "disk")
    err(d.post(V + "/vms/w1/disks", {"disk": "data"}), 400, "invalid-argument", "disk")
    err(d.post(V + "/vms/nope/disks", {"disk": "data"}), 404, "not-found")
    # an image below another must not change: a backing disk is attached read-only or not at all,
    # and a disk a VM writes gets no overlays
    msg = err(d.post(V + "/vms/w1/disks", {"disk": "base"}), 400, "invalid-argument", "readonly")
    assert "'base' is the backing disk of 1 other disk" in msg, msg
    msg = err(d.post(V + "/disks", {"name": "over", "backing": "data"}), 409, "in-use", "backing")
    assert "'w1'" in msg, msg
    # the disk as a spec's path is the managed disk: bound to it, the same image twice is not
    r = d.patch(V + "/vms/w1", {"disks": [{"path": str(plain)}, {"path": disk["path"]},
                                         {"disk": "data"}]})
    err(r, 400, "invalid-argument", "disks[2].disk")
    err(d.delete(V + "/disks/data"), 409, "in-use")
    err(d.delete(V + "/vms/w1/disks/7"), 404, "not-found")

    # the test guest writes, reads back and verifies both disks' pattern (vda: the plain one)
    kv = guest_blk(d, "w1")
    assert int(kv["sectors"]) == 4 * MiB // 512, kv  # the first disk the guest finds
    p = subprocess.run(["qemu-img", "convert", "-O", "raw", disk["path"], str(tmp_path / "o.raw")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p
    qcheck(disk["path"])
    # the overlay got the writes; the base stays empty
    assert qinfo(base["path"])["virtual-size"] == 16 * MiB
    assert first_mismatch(str(plain), 1) is None

    # the data disk alone, then grown: the guest sees the new capacity and fills it
    r = d.delete(V + "/vms/w1/disks/0")
    assert r.status == 200 and r.json["disks"][0]["disk"] == disk["uuid"], r
    kv = guest_blk(d, "w1")
    assert int(kv["sectors"]) == 16 * MiB // 512 and kv["serial"] == '"data-1"', kv
    r = d.post(V + "/disks/data/resize", {"size": 24 * MiB})
    assert r.status == 200, r
    qcheck(disk["path"])
    assert qinfo(disk["path"])["virtual-size"] == 24 * MiB
    kv = guest_blk(d, "w1")
    assert int(kv["sectors"]) == 24 * MiB // 512, kv
    qcheck(disk["path"])
    out = tmp_path / "data.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", disk["path"], str(out)], check=True)
    assert os.path.getsize(out) == 24 * MiB and first_mismatch(str(out), 1) is None

    # while it runs: no attach, detach, resize or delete
    create(d, "spare", cmdline="test=ticker")
    r = d.patch(V + "/vms/w1", {"boot": {"cmdline": "test=ticker"}})
    assert r.status == 200, r
    act(d, "w1", "start")
    msg = err(d.post(V + "/vms/w1/disks", {"disk": "base"}), 409, "invalid-state")
    assert "no hot-plug" in msg, msg
    err(d.delete(V + "/vms/w1/disks/data"), 409, "invalid-state")
    msg = err(d.post(V + "/disks/data/resize", {"size": 32 * MiB}), 409, "invalid-state")
    assert "'w1'" in msg and "running" in msg, msg
    err(d.delete(V + "/disks/data"), 409, "in-use")
    act(d, "w1", "turn-off")

    # checkpoints record the disks: with layers above the image, no resize, attach or detach
    layers = os.path.join(d.state, "vms", v["uuid"], "checkpoints", "layers")
    os.makedirs(os.path.join(layers, "n1"))
    err(d.post(V + "/disks/data/resize", {"size": 32 * MiB}), 409, "has-checkpoints")
    err(d.post(V + "/vms/w1/disks", {"disk": "base"}), 409, "has-checkpoints")
    err(d.delete(V + "/vms/w1/disks/data"), 409, "has-checkpoints")
    err(d.delete(V + "/vms/w1"), 409, "has-checkpoints", "delete_disks")
    os.rmdir(os.path.join(layers, "n1"))

    gen = vm(d, "w1")["generation"]
    r = d.delete(V + "/vms/w1/disks/data", headers={"If-Match": f'"{gen}"'})
    assert r.status == 200 and r.json["disks"] == [] and r.json["generation"] == gen + 1, r
    err(d.delete(V + "/vms/w1/disks/data"), 404, "not-found")
    assert d.get(V + "/disks/data").json["attached_to"] == []
    assert events(d, "vm-disk-detached")[-1]["detail"]["disk"] == disk["uuid"]
    r = d.delete(V + "/disks/data")
    assert r.status == 204 and not os.path.exists(disk["path"])


def test_delete_vm_with_delete_disks(daemon, tmp_path):
    d = daemon()
    own = mk(d, "own", MiB)
    shared = mk(d, "shared", MiB)
    base = mk(d, "base", MiB)
    mk(d, "other-child", backing="base")
    chain_base = mk(d, "chain-base", MiB)
    chain_top = mk(d, "chain-top", backing="chain-base")
    plain = tmp_path / "plain.img"
    plain.write_bytes(b"\0" * 4096)
    create(d, "a", disks=[{"path": str(plain)}, {"disk": "own"}, {"disk": "shared"},
                          {"disk": "base", "readonly": True}, {"disk": "chain-base", "readonly": True},
                          {"disk": "chain-top"}])
    create(d, "b", disks=[{"disk": "shared"}])
    keep = mk(d, "keep", MiB)
    create(d, "c", disks=[{"disk": "keep"}])

    err(d.delete(V + "/vms/a?delete_disks=maybe"), 400, "invalid-argument", "delete_disks")
    r = d.delete(V + "/vms/c?delete_disks=false")
    assert r.status == 204 and os.path.exists(keep["path"])
    assert d.get(V + "/disks/keep").json["attached_to"] == []

    r = d.delete(V + "/vms/a?delete_disks=true")
    assert r.status == 204, r
    names = sorted(x["name"] for x in d.get(V + "/disks").json["disks"])
    assert names == ["base", "keep", "other-child", "shared"], names
    for gone in (own, chain_base, chain_top):
        assert not os.path.exists(gone["path"]), gone
    for kept in (shared, base):
        assert os.path.exists(kept["path"])
    assert plain.exists()
    detail = events(d, "vm-deleted")[-1]["detail"]
    assert detail["delete_disks"] is True
    assert sorted(x["name"] for x in detail["deleted_disks"]) == ["chain-base", "chain-top", "own"]
    assert {x["name"]: x["reason"] for x in detail["kept_disks"]} == {
        "shared": "attached to another VM", "base": "the backing disk of another disk"}
    assert "dropped" not in json.dumps(detail)


def test_cli_disk_verbs(daemon):
    d = daemon()
    r = berth(d, "disk", "create", "d1", "--size", "16M", "--json")
    assert r.rc == 0 and r.err == "" and r.json["size"] == 16 * MiB and r.json["format"] == "qcow2", r
    uuid, path = r.json["uuid"], r.json["path"]
    r = berth(d, "disk", "create", "d2", "--size", "1G", "--format", "raw")
    assert r.rc == 0 and "Format:" in r.out and "raw" in r.out and "1G" in r.out, r
    r = berth(d, "disk", "create", "d3", "--backing", "d1", "--json")
    assert r.rc == 0 and r.json["backing_name"] == "d1" and r.json["size"] == 16 * MiB, r
    assert qinfo(r.json["path"])["backing-filename"] == path

    r = berth(d, "disk", "list")
    lines = r.out.splitlines()
    assert r.rc == 0 and lines[0].split() == ["NAME", "FORMAT", "SIZE", "ALLOCATED", "BACKING",
                                              "ATTACHED", "TO", "UUID"], r
    assert [x.split()[0] for x in lines[1:]] == ["d1", "d2", "d3"]
    assert lines[3].split()[4] == "d1" and lines[1].split()[-1] == uuid
    r = berth(d, "disk", "list", "--json")
    assert r.rc == 0 and r.json == d.get(V + "/disks").json
    r = berth(d, "disk", "show", uuid)
    assert r.rc == 0 and f"UUID:" in r.out and uuid in r.out and path in r.out, r

    # usage errors send nothing (2); berthd's refusals exit 3 (not found) and 4 (conflict)
    assert "--size is required" in one_error_line(berth(d, "disk", "create", "x"), 2)
    assert "--size" in one_error_line(berth(d, "disk", "create", "x", "--size", "ten"), 2)
    assert "--size" in one_error_line(berth(d, "disk", "create", "x", "--size", "1000"), 2)
    line = one_error_line(berth(d, "disk", "create", "a:b", "--size", "1M"), 1)
    assert "name" in line, line
    one_error_line(berth(d, "disk", "create", "d1", "--size", "1M"), 4)
    one_error_line(berth(d, "disk", "show", "nope"), 3)
    line = one_error_line(berth(d, "disk", "resize", "d1", "--size", "1M"), 1)
    assert "size" in line and "only grow" in line, line
    line = one_error_line(berth(d, "disk", "delete", "d1", "--yes"), 4)
    assert "'d3'" in line, line
    assert "--yes" in one_error_line(berth(d, "disk", "delete", "d2"), 2)

    r = berth(d, "disk", "resize", "d1", "--size", "32M", "--json")
    assert r.rc == 0 and r.json["size"] == 32 * MiB and qinfo(path)["virtual-size"] == 32 * MiB

    create(d, "v1")
    r = berth(d, "disk", "attach", "v1", "d3", "--serial", "s3", "--readonly")
    assert (r.rc, r.out, r.err) == (0, "attached disk d3 to VM v1 as disks[0]\n", ""), r
    r = berth(d, "disk", "attach", "v1", "d2", "--cache", "writeback", "--json")
    assert r.rc == 0 and r.json["disks"][1]["cache"] == "writeback" and r.json["generation"] == 3
    assert r.json["disks"][0]["readonly"] is True and r.json["disks"][0]["serial"] == "s3"
    one_error_line(berth(d, "disk", "attach", "nope", "d2"), 3)
    r = berth(d, "disk", "list")
    assert "v1" in [x.split()[5] for x in r.out.splitlines()[1:] if x.startswith("d3")], r
    one_error_line(berth(d, "disk", "delete", "d3", "--yes"), 4)
    r = berth(d, "disk", "detach", "v1", "d3")
    assert (r.rc, r.out) == (0, "detached disk d3 from VM v1\n"), r
    r = berth(d, "disk", "detach", "v1", "0", "--json")
    assert r.rc == 0 and r.json["disks"] == [], r
    one_error_line(berth(d, "disk", "detach", "v1", "d3"), 3)

    berth(d, "disk", "attach", "v1", "d3")
    r = berth(d, "vm", "delete", "v1", "--delete-disks", "--yes")
    assert (r.rc, r.out) == (0, "deleted VM v1\n"), r
    assert [x["name"] for x in d.get(V + "/disks").json["disks"]] == ["d1", "d2"]
    r = berth(d, "disk", "delete", "d2", "--yes")
    assert (r.rc, r.out) == (0, "deleted disk d2\n"), r
    r = berth(d, "disk", "delete", "d1", "--yes", "--json")
    assert (r.rc, r.out) == (0, ""), r
    assert d.get(V + "/disks").json == {"disks": []}

    for verb in ("create", "list", "show", "resize", "delete", "attach", "detach"):
        r = berth(d, "disk", verb, "--help")
        assert r.rc == 0 and r.out.startswith(f"usage: berth disk {verb}"), r
    r = berth(d, "vm", "delete", "--help")
    assert "--delete-disks" in r.out


DISK_USER = "berthdisktest"  # not test_berthd_lifecycle's user: those tests may run at once


@pytest.fixture
def disk_user():
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("needs root and useradd to create a test user")
    subprocess.run(["userdel", DISK_USER], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--groups", "kvm", DISK_USER], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(DISK_USER)
    finally:
        subprocess.run(["userdel", DISK_USER], capture_output=True)


def test_unprivileged_vmm_uses_its_managed_disks(daemon, disk_user, run_dir):
    # the VMM's user must reach the pool: not under pytest's private (0700) tmp_path
    d = daemon(["--vmm-user", DISK_USER], state_dir=os.path.join(run_dir, "state"))
    pool = os.path.join(d.state, "disks")
    assert stat.S_IMODE(os.stat(pool).st_mode) == 0o711 and os.stat(pool).st_uid == 0
    base = mk(d, "ubase", 8 * MiB, format="raw")
    top = mk(d, "utop", backing="ubase")
    for disk in (base, top):
        st = os.stat(disk["path"])
        assert (st.st_uid, st.st_gid) == (disk_user.pw_uid, disk_user.pw_gid), disk
        assert stat.S_IMODE(st.st_mode) == 0o600
    assert qinfo(top["path"])["backing-filename-format"] == "raw"
    create(d, "u1", cmdline="test=blk,halt", disks=[{"disk": "utop", "serial": "u"}])
    kv = guest_blk(d, "u1")
    assert int(kv["sectors"]) == 8 * MiB // 512 and kv["serial"] == '"u"', kv
    qcheck(top["path"])
    assert os.stat(base["path"]).st_blocks == 0  # the writes went to the overlay
    r = d.post(V + "/disks/utop/resize", {"size": 16 * MiB})
    assert r.status == 200 and os.stat(top["path"]).st_uid == disk_user.pw_uid
    assert d.delete(V + "/vms/u1?delete_disks=true").status == 204
    # the VM's own disk goes; its backing disk was not the VM's: it stays, unshared or not
    assert not os.path.exists(top["path"]) and os.path.exists(base["path"])
    assert d.delete(V + "/disks/ubase").status == 204 and not os.path.exists(base["path"])
