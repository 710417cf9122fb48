"""berthd's REST API against a real daemon: VM definitions, validation naming the field, ETags,
authorisation by SO_PEERCRED, crash safety of the inventory, schema versions, the audit log.
Every response is checked against the OpenAPI document (berthdutil.Berthd.request)."""
import json
import re
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from berthdutil import (BERTHD, OPENAPI_FILE, Berthd, load_openapi, raw_request,
                        to_json_schema)

V = "/api/v1"


def spec(name="web1", **kw):
    s = {"name": name, "boot": {"kernel": "/var/lib/berth/kernels/vmlinuz"}}
    s.update(kw)
    return s


@pytest.fixture
def berthd(tmp_path):
    if not os.access(BERTHD, os.X_OK):
        pytest.fail(f"{BERTHD} is missing: build first (./scripts/build)")
    d = Berthd(tmp_path).start()
    yield d
    rc = d.stop()
    assert rc == 0, f"berthd exited with {rc}:\n{d.log_text()}"


def events(d):
    db = sqlite3.connect(os.path.join(d.state, "berth.db"))
    try:
        return [(vm, kind, json.loads(detail)) for vm, kind, detail in
                db.execute("SELECT vm, kind, detail FROM events ORDER BY id")]
    finally:
        db.close()


def test_openapi_document_is_served(berthd):
    r = berthd.get(V + "/openapi.json")
    assert r.status == 200
    with open(OPENAPI_FILE, "rb") as f:
        assert r.body == f.read()
    doc = r.json
    assert doc["openapi"].startswith("3.0")
    assert set(doc["paths"]) == {V + "/openapi.json", V + "/host", V + "/vms", V + "/vms/{id}",
                                 V + "/operations", V + "/operations/{id}", V + "/host/stop-vms",
                                 V + "/switches", V + "/switches/{id}", "/metrics",
                                 V + "/events", V + "/disks", V + "/disks/{id}",
                                 V + "/disks/{id}/resize", V + "/vms/{id}/disks",
                                 V + "/vms/{id}/disks/{disk}", V + "/tokens", V + "/tokens/{id}"} | {
        V + "/vms/{id}/" + a for a in ("start", "shutdown", "turn-off", "restart", "pause",
                                       "resume", "save", "console", "checkpoints",
                                       "checkpoints/{cp}", "checkpoints/{cp}/apply")}


def test_openapi_document_is_sound(berthd):
    """Every $ref resolves, every schema is valid JSON Schema once converted, every error response
    is the Error schema, and every documented operation is routed by berthd."""
    api = load_openapi()
    doc = api.doc
    for name, schema in doc["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(to_json_schema(schema, doc))
    ops = 0
    for template, item in doc["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            ops += 1
            assert op.get("operationId") and op.get("summary"), (template, method)
            assert "403" in op["responses"] and "500" in op["responses"]
            for status, resp in op["responses"].items():
                resp = to_json_schema(resp, doc)
                if int(status) >= 400:
                    assert resp["content"]["application/json"]["schema"] == \
                        to_json_schema({"$ref": "#/components/schemas/Error"}, doc)
            path = template.replace("{id}", "no-such-vm").replace("{disk}", "0")
            if "text/event-stream" in op["responses"].get("200", {}).get("content", {}):
                path += "?since=never"  # refused at once: a stream would not end
            r = berthd.request(method.upper(), path, {} if "requestBody" in op else None)
            assert r.status not in (405, 501), (method, template, r)
            if r.status == 404:
                assert "{id}" in template, r
                want = ("no operation" if "operations" in template else
                        "no switch" if "switches" in template else
                        "no disk" if template.startswith(V + "/disks") else
                        "no token" if "tokens" in template else "no VM")
                assert want in r.error["message"], r
    assert ops == 40


def test_the_schema_check_catches_mismatches(berthd):
    """The response check is not a rubber stamp: real bodies pass, altered ones fail."""
    r = berthd.post(V + "/vms", spec())
    api = berthd.api
    hdrs = r.headers
    api.validate_response("POST", V + "/vms", 201, hdrs, r.body)
    vm = r.json
    for broken in [dict(vm, extra=1), {k: v for k, v in vm.items() if k != "uuid"},
                   dict(vm, vcpus="1"), dict(vm, state="on"), dict(vm, boot=dict(vm["boot"], initrd=5))]:
        with pytest.raises(AssertionError):
            api.validate_response("POST", V + "/vms", 201, hdrs, json.dumps(broken).encode())
    with pytest.raises(AssertionError):  # an undocumented status
        api.validate_response("GET", V + "/host", 409, hdrs, b'{"error": {"code": "conflict", "message": ""}}')
    with pytest.raises(AssertionError):  # an unknown error code
        api.validate_response("GET", V + "/vms/x", 404, hdrs, b'{"error": {"code": "nope", "message": ""}}')


def test_host(berthd):
    r = berthd.get(V + "/host")
    assert r.status == 200, r
    h = r.json
    assert h["hostname"] == os.uname().nodename
    assert h["version"] == subprocess.run([BERTHD, "--version"], capture_output=True,
                                          text=True).stdout.split()[1]
    assert h["cpus"] == os.sysconf("SC_NPROCESSORS_ONLN")
    assert h["memory_bytes"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    kvm_ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    assert h["kvm"]["available"] == kvm_ok, h
    assert (h["kvm"]["reason"] is None) == kvm_ok
    assert 0 <= h["uptime_seconds"] < 60


def test_vm_lifecycle_of_a_definition(berthd):
    r = berthd.post(V + "/vms", spec(disks=[{"path": "/srv/a.qcow2", "format": "qcow2"},
                                            {"path": "/srv/b.img", "readonly": True}],
                                     console_ports=[{"name": "org.qemu.guest_agent.0"}]))
    assert r.status == 201, r
    vm = r.json
    uuid = vm["uuid"]
    assert r.headers["Location"] == f"{V}/vms/{uuid}"
    assert r.headers["ETag"] == '"1"'
    # every default filled in, nothing started
    assert vm["vcpus"] == 1 and vm["memory_mib"] == 512 and vm["cpu_template"] == "host"
    assert vm["boot"] == {"kernel": "/var/lib/berth/kernels/vmlinuz", "initrd": None, "cmdline": ""}
    assert vm["disks"][0] == {"path": "/srv/a.qcow2", "format": "qcow2", "readonly": False,
                              "cache": "none", "serial": None}
    assert vm["disks"][1]["format"] == "auto" and vm["disks"][1]["readonly"] is True
    assert vm["rng"] is False and vm["auto_start"] == "start-if-running"
    assert vm["auto_stop"] == "save" and vm["notes"] == ""
    assert vm["state"] == "off" and vm["state_reason"] is None and vm["generation"] == 1
    assert vm["created"] == vm["modified"]

    assert berthd.post(V + "/vms", spec("db1", vcpus=2)).status == 201
    lst = berthd.get(V + "/vms").json["vms"]
    assert [v["name"] for v in lst] == ["db1", "web1"]
    assert [v["name"] for v in berthd.get(V + "/vms?name=web1").json["vms"]] == ["web1"]
    assert berthd.get(V + "/vms?name=nope").json["vms"] == []

    for ident in (uuid, "web1"):
        g = berthd.get(f"{V}/vms/{ident}")
        assert g.status == 200 and g.json == vm and g.headers["ETag"] == '"1"'

    # merge patch: members replace, nested objects merge, null goes back to the default
    p = berthd.patch(f"{V}/vms/web1", {"vcpus": 4, "boot": {"cmdline": "console=ttyS0"},
                                       "notes": "x"}, headers={"If-Match": '"1"'},
                     content_type="application/merge-patch+json")
    assert p.status == 200, p
    assert p.json["vcpus"] == 4 and p.json["boot"]["cmdline"] == "console=ttyS0"
    assert p.json["boot"]["kernel"] == vm["boot"]["kernel"]
    assert p.json["generation"] == 2 and p.headers["ETag"] == '"2"'
    assert p.json["modified"] >= p.json["created"]
    p = berthd.patch(f"{V}/vms/{uuid}", {"vcpus": None, "disks": [{"path": "/srv/c.raw"}]})
    assert p.status == 200 and p.json["vcpus"] == 1 and len(p.json["disks"]) == 1
    # a patch that changes nothing keeps the generation
    same = berthd.patch(f"{V}/vms/{uuid}", {"vcpus": 1})
    assert same.status == 200 and same.json["generation"] == 3

    # rename: the UUID stays, the old name is gone
    rn = berthd.patch(f"{V}/vms/web1", {"name": "web-renamed"}, headers={"If-Match": '"3"'})
    assert rn.status == 200 and rn.json["uuid"] == uuid and rn.json["name"] == "web-renamed"
    assert berthd.get(f"{V}/vms/web1").status == 404
    assert berthd.get(f"{V}/vms/web-renamed").json["generation"] == 4

    d = berthd.delete(f"{V}/vms/web-renamed", headers={"If-Match": '"4"'})
    assert d.status == 204 and d.body == b""
    assert berthd.get(f"{V}/vms/{uuid}").status == 404
    assert berthd.delete(f"{V}/vms/{uuid}").status == 404
    assert [v["name"] for v in berthd.get(V + "/vms").json["vms"]] == ["db1"]
    assert berthd.delete(f"{V}/vms/db1?delete_disks=false").status == 204


BAD = [
    ({"boot": {"kernel": "/k"}}, "invalid-argument", "name"),
    (spec(""), "invalid-argument", "name"),
    (spec("x" * 64), "invalid-argument", "name"),
    (spec("-web"), "invalid-argument", "name"),
    (spec(".web"), "invalid-argument", "name"),
    (spec("web 1"), "invalid-argument", "name"),
    (spec("web/1"), "invalid-argument", "name"),
    (spec("0E0F5DF4-1C1B-4B35-8C2A-6A2E53F2E4F0"), "invalid-argument", "name"),
    (spec(name=7), "invalid-argument", "name"),
    (spec(vcpus=0), "invalid-argument", "vcpus"),
    (spec(vcpus=1025), "invalid-argument", "vcpus"),
    (spec(vcpus=2.0), "invalid-argument", "vcpus"),
    (spec(vcpus="2"), "invalid-argument", "vcpus"),
    (spec(memory_mib=63), "invalid-argument", "memory_mib"),
    (spec(memory_mib=65537), "invalid-argument", "memory_mib"),
    (spec(cpu_template="skylake"), "invalid-argument", "cpu_template"),
    ({"name": "a"}, "invalid-argument", "boot"),
    (spec(boot="/k"), "invalid-argument", "boot"),
    (spec(boot={}), "invalid-argument", "boot.kernel"),
    (spec(boot={"kernel": "vmlinuz"}), "invalid-argument", "boot.kernel"),
    (spec(boot={"kernel": "/k", "initrd": "initrd.img"}), "invalid-argument", "boot.initrd"),
    (spec(boot={"kernel": "/k", "cmdline": "x" * 65536}), "invalid-argument", "boot.cmdline"),
    (spec(boot={"kernel": "/k\u0000/x"}), "invalid-argument", "boot.kernel"),
    (spec(disks={}), "invalid-argument", "disks"),
    (spec(disks=[{"path": f"/d{i}"} for i in range(9)]), "invalid-argument", "disks"),
    (spec(disks=["/d0"]), "invalid-argument", "disks[0]"),
    (spec(disks=[{"path": "/d0"}, {"path": "d1"}]), "invalid-argument", "disks[1].path"),
    (spec(disks=[{"path": "/d0"}, {}]), "invalid-argument", "disks[1].path"),
    (spec(disks=[{"path": "/d0,readonly"}]), "invalid-argument", "disks[0].path"),
    (spec(disks=[{"path": "/d0"}, {"path": "/d0"}]), "invalid-argument", "disks[1].path"),
    (spec(disks=[{"path": "/d0", "format": "vmdk"}]), "invalid-argument", "disks[0].format"),
    (spec(disks=[{"path": "/d0", "readonly": "yes"}]), "invalid-argument", "disks[0].readonly"),
    (spec(disks=[{"path": "/d0", "cache": "writethrough"}]), "invalid-argument", "disks[0].cache"),
    (spec(disks=[{"path": "/d0", "serial": "has space"}]), "invalid-argument", "disks[0].serial"),
    (spec(disks=[{"path": "/d0", "serial": "x" * 21}]), "invalid-argument", "disks[0].serial"),
    (spec(console_ports=[{"name": "a"}, {"name": "a"}]), "invalid-argument",
     "console_ports[1].name"),
    (spec(console_ports=[{"name": ""}]), "invalid-argument", "console_ports[0].name"),
    (spec(console_ports=[{}]), "invalid-argument", "console_ports[0].name"),
    (spec(console_ports=[{"name": f"p{i}"} for i in range(17)]), "invalid-argument",
     "console_ports"),
    (spec(rng=1), "invalid-argument", "rng"),
    (spec(auto_start="sometimes"), "invalid-argument", "auto_start"),
    (spec(auto_stop="hibernate"), "invalid-argument", "auto_stop"),
    (spec(notes="n" * 4097), "invalid-argument", "notes"),
    (spec(nics=[{"switch": "no-such-switch"}]), "invalid-argument", "nics[0].switch"),
    (spec(nics=[{"switch": "s", "vlan": 4095}]), "invalid-argument", "nics[0].vlan"),
    (spec(nics=[{"switch": "s", "mac": "01:00:00:00:00:01"}]), "invalid-argument", "nics[0].mac"),
    (spec(nics=[{"switch": "s", "speed": 1}]), "unknown-field", "nics[0].speed"),
    (spec(nics=[{"switch": "s"}] * 5), "invalid-argument", "nics"),
    (spec(boot={"kernel": "/k", "append": "x"}), "unknown-field", "boot.append"),
    (spec(disks=[{"path": "/d0", "bus": "scsi"}]), "unknown-field", "disks[0].bus"),
    (spec(console_ports=[{"name": "a", "socket": "/s"}]), "unknown-field",
     "console_ports[0].socket"),
    (spec(uuid="0e0f5df4-1c1b-4b35-8c2a-6a2e53f2e4f0"), "invalid-argument", "uuid"),
    (spec(state="running"), "invalid-argument", "state"),
    (spec(generation=5), "invalid-argument", "generation"),
]


@pytest.mark.parametrize("body,code,field", BAD, ids=[f"{f}-{i}" for i, (_, _, f) in enumerate(BAD)])
def test_create_validation_names_the_field(berthd, body, code, field):
    r = berthd.post(V + "/vms", body)
    assert r.status == 400, r
    assert r.error["code"] == code, r
    assert r.error["field"] == field, r
    assert field in r.error["message"] or code == "unknown-field"
    assert berthd.get(V + "/vms").json["vms"] == []


def test_limits_accepted_at_the_edges(berthd):
    r = berthd.post(V + "/vms", spec("a" * 63, vcpus=1024, memory_mib=65536, notes="n" * 4096,
                                     cpu_template="baseline", rng=True, auto_start="always",
                                     auto_stop="shut-down",
                                     disks=[{"path": f"/d{i}", "serial": "S" * 20}
                                            for i in range(8)],
                                     console_ports=[{"name": f"p{i}"} for i in range(16)],
                                     boot={"kernel": "/k", "initrd": "/i",
                                           "cmdline": "c" * 65535}))
    assert r.status == 201, r
    assert r.json["vcpus"] == 1024 and len(r.json["disks"]) == 8


def test_patch_validation_names_the_field(berthd):
    assert berthd.post(V + "/vms", spec(disks=[{"path": "/d0"}, {"path": "/d1"}])).status == 201
    cases = [({"disks": [{"path": "/d0"}, {"path": "rel"}]}, "invalid-argument", "disks[1].path"),
             ({"boot": {"kernel": None}}, "invalid-argument", "boot.kernel"),
             ({"boot": None}, "invalid-argument", "boot"),
             ({"name": None}, "invalid-argument", "name"),
             ({"memory_mib": 32}, "invalid-argument", "memory_mib"),
             ({"boot": {"initrd": "x"}}, "invalid-argument", "boot.initrd"),
             ({"vcpu": 2}, "unknown-field", "vcpu"),
             ({"state": "running"}, "invalid-argument", "state")]
    for body, code, field in cases:
        r = berthd.patch(V + "/vms/web1", body)
        assert r.status == 400 and r.error["code"] == code and r.error["field"] == field, (body, r)
    g = berthd.get(V + "/vms/web1")
    assert g.json["generation"] == 1 and len(g.json["disks"]) == 2


@pytest.mark.parametrize("body", [b"{", b"[1, 2]", b'{"name": "a", "name": "b"}', b"",
                                  b'"text"', b'{"vcpus": 99999999999999999999999}'])
def test_malformed_json(berthd, body):
    r = berthd.post(V + "/vms", body)
    assert r.status == 400, r
    assert r.error["code"] in ("invalid-json", "invalid-argument")
    if b"name" in body:
        assert "duplicate" in r.error["message"]


def test_body_too_large(berthd):
    big = json.dumps(spec(notes="n" * (1024 * 1024)))
    r = berthd.post(V + "/vms", big)
    assert r.status == 413 and r.error["code"] == "payload-too-large", r
    # exactly at the limit is read (and judged on its content)
    body = json.dumps(spec(notes=""))
    body = body[:-1] + " " * (1024 * 1024 - len(body)) + "}"
    assert len(body) == 1024 * 1024
    assert berthd.post(V + "/vms", body).status == 201
    # a declared length far past the limit is answered at once (and the connection closed)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(berthd.sock)
    s.sendall(b"POST /api/v1/vms HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: 100000000\r\n\r\n{")
    reply = b""
    while chunk := s.recv(65536):
        reply += chunk
    s.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply
    assert json.loads(body)["error"]["code"] == "payload-too-large"
    # the daemon is still fine
    assert berthd.get(V + "/vms").status == 200


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/jsonp"])
def test_wrong_content_type(berthd, ctype):
    headers = {"Content-Type": ctype} if ctype else {}
    r = berthd.request("POST", V + "/vms", json.dumps(spec()), headers=headers, content_type=None)
    assert r.status == 415 and r.error["code"] == "unsupported-media-type", r
    ok = berthd.request("POST", V + "/vms", json.dumps(spec()),
                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status == 201, ok


def test_etag_if_match_conflict(berthd):
    """Two clients edit the same VM: the second gets a conflict, not a lost update."""
    berthd.post(V + "/vms", spec())
    a = berthd.get(V + "/vms/web1").headers["ETag"]
    b = berthd.get(V + "/vms/web1").headers["ETag"]
    assert a == b == '"1"'
    assert berthd.patch(V + "/vms/web1", {"vcpus": 2}, headers={"If-Match": a}).status == 200
    r = berthd.patch(V + "/vms/web1", {"memory_mib": 1024}, headers={"If-Match": b})
    assert r.status == 412 and r.error["code"] == "precondition-failed", r
    assert r.headers["ETag"] == '"2"'
    g = berthd.get(V + "/vms/web1").json
    assert g["vcpus"] == 2 and g["memory_mib"] == 512 and g["generation"] == 2
    # rename and delete honour it too; weak tags never match; lists and * do
    assert berthd.patch(V + "/vms/web1", {"name": "x"}, headers={"If-Match": '"1"'}).status == 412
    assert berthd.delete(V + "/vms/web1", headers={"If-Match": '"1"'}).status == 412
    assert berthd.delete(V + "/vms/web1", headers={"If-Match": 'W/"2"'}).status == 412
    r = berthd.patch(V + "/vms/web1", {"notes": "n"}, headers={"If-Match": '"7", "2"'})
    assert r.status == 200 and r.headers["ETag"] == '"3"'
    for bad in ['3', '"3', '"3" "4"', '"3",,']:
        r = berthd.patch(V + "/vms/web1", {"notes": "m"}, headers={"If-Match": bad})
        assert r.status == 400 and r.error["code"] == "invalid-argument", (bad, r)
    assert berthd.delete(V + "/vms/web1", headers={"If-Match": "*"}).status == 204
    assert berthd.delete(V + "/vms/web1", headers={"If-Match": "*"}).status == 404


def test_concurrent_patches_never_lose_an_update(berthd):
    berthd.post(V + "/vms", spec())
    results = []

    def worker(i):
        g = berthd.get(V + "/vms/web1")
        r = berthd.patch(V + "/vms/web1", {"notes": f"writer {i}"},
                         headers={"If-Match": g.headers["ETag"]})
        results.append(r.status)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert set(results) <= {200, 412} and 200 in results
    assert berthd.get(V + "/vms/web1").json["generation"] == 1 + results.count(200)


def test_duplicate_name(berthd):
    assert berthd.post(V + "/vms", spec("a")).status == 201
    assert berthd.post(V + "/vms", spec("b")).status == 201
    r = berthd.post(V + "/vms", spec("a", vcpus=2))
    assert r.status == 409 and r.error["code"] == "conflict" and r.error["field"] == "name", r
    r = berthd.patch(V + "/vms/b", {"name": "a"})
    assert r.status == 409 and r.error["field"] == "name", r
    assert [v["name"] for v in berthd.get(V + "/vms").json["vms"]] == ["a", "b"]
    assert berthd.get(V + "/vms/b").json["generation"] == 1


def test_routing_errors(berthd):
    r = berthd.get(V + "/vms/nope")
    assert r.status == 404 and r.error["code"] == "not-found", r
    r = berthd.get(V + "/nothing", validate=False)
    assert r.status == 404 and r.error["code"] == "not-found", r
    r = berthd.get("/api/v2/vms", validate=False)
    assert r.status == 404, r
    r = berthd.request("PUT", V + "/vms/x", spec())
    assert r.status == 405 and r.error["code"] == "method-not-allowed", r
    assert r.headers["Allow"] == "GET, PATCH, DELETE"
    r = berthd.request("DELETE", V + "/vms")
    assert r.status == 405 and r.headers["Allow"] == "GET, POST", r
    r = berthd.get(V + "/vms?colour=red")
    assert r.status == 400 and r.error["code"] == "unknown-field" and r.error["field"] == "colour"
    r = berthd.get(V + "/vms?name=a&name=b")
    assert r.status == 400 and r.error["field"] == "name", r
    r = berthd.request("GET", V + "/host", "{}")
    assert r.status == 400 and r.error["code"] == "invalid-argument", r


def test_delete_disks_query(berthd):
    """delete_disks is true or false; true deletes only managed disks (test_berthd_disks.py), so a
    VM with a plain path disk keeps its file."""
    berthd.post(V + "/vms", spec())
    r = berthd.delete(V + "/vms/web1?delete_disks=yes")
    assert r.status == 400 and r.error["code"] == "invalid-argument", r
    assert r.error["field"] == "delete_disks"
    assert berthd.get(V + "/vms/web1").status == 200
    assert berthd.delete(V + "/vms/web1?delete_disks=true").status == 204
    assert events(berthd)[-1][2]["deleted_disks"] == []
    berthd.post(V + "/vms", spec())
    assert berthd.delete(V + "/vms/web1?delete_disks=false").status == 204


def test_audit_events_record_each_change(berthd):
    uuid = berthd.post(V + "/vms", spec()).json["uuid"]
    berthd.patch(V + "/vms/web1", {"vcpus": 2})
    berthd.patch(V + "/vms/web1", {"name": "web2"})
    berthd.patch(V + "/vms/web2", {"vcpus": 2})  # no change: no event
    berthd.post(V + "/vms", spec("web2"))         # refused: no event
    berthd.patch(V + "/vms/web2", {"vcpus": 0})   # refused: no event
    berthd.delete(V + "/vms/web2")
    ev = events(berthd)
    assert [(vm, kind) for vm, kind, _ in ev] == [
        (uuid, "vm-created"), (uuid, "vm-modified"), (uuid, "vm-renamed"), (uuid, "vm-deleted")]
    for _, _, detail in ev:
        assert detail["actor"]["uid"] == 0 and detail["actor"]["role"] == "admin"
        assert detail["actor"]["pid"] == os.getpid()
    assert ev[0][2]["spec"]["name"] == "web1" and ev[0][2]["spec"]["vcpus"] == 1
    assert ev[1][2]["patch"] == {"vcpus": 2}
    assert ev[2][2]["previous_name"] == "web1" and ev[2][2]["name"] == "web2"
    assert ev[3][2]["spec"]["vcpus"] == 2 and ev[3][2]["delete_disks"] is False


CLIENT = r"""
import http.client, json, socket, sys
class C(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("berthd.sock")
c = C("localhost", timeout=20)
c.request(sys.argv[1], sys.argv[2], body=sys.argv[3] or None,
          headers={"Content-Type": "application/json"} if sys.argv[3] else {})
r = c.getresponse()
print(json.dumps({"status": r.status, "headers": dict(r.headers), "body": r.read().decode()}))
"""


def as_user(d, method, path, body="", group="nogroup"):
    """A request from a child running as nobody (connecting by a path relative to the socket's
    directory, since the test's own directories are root's)."""
    p = subprocess.run([sys.executable, "-c", CLIENT, method, path, body], cwd=d.rundir,
                       user="nobody", group=group, extra_groups=[], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    d.api.validate_response(method, path, out["status"], out["headers"], out["body"].encode())
    return out["status"], json.loads(out["body"]) if out["body"] else None


def test_non_member_is_refused(tmp_path):
    d = Berthd(tmp_path, group="daemon").start()
    try:
        st = os.stat(d.sock)
        assert oct(st.st_mode & 0o777) == "0o660" and st.st_gid == 1  # daemon
        os.chmod(d.sock, 0o666)  # let nobody connect, so berthd itself must refuse
        for method, path, body in [("GET", V + "/vms", ""), ("GET", V + "/host", ""),
                                   ("POST", V + "/vms", json.dumps(spec())),
                                   ("DELETE", V + "/vms/web1", ""), ("GET", V + "/nowhere", "")]:
            status, body = as_user(d, method, path, body)
            assert status == 403 and body["error"]["code"] == "forbidden", (path, body)
        assert d.get(V + "/vms").json["vms"] == []
    finally:
        assert d.stop() == 0


def test_group_member_is_admin(tmp_path):
    """nobody's primary group is nogroup: a member whether the connecting process has that gid
    or not (getgrouplist)."""
    d = Berthd(tmp_path, group="nogroup").start()
    try:
        status, body = as_user(d, "POST", V + "/vms", json.dumps(spec()), group="nogroup")
        assert status == 201, body
        os.chmod(d.sock, 0o666)
        status, body = as_user(d, "GET", V + "/vms/web1", group="daemon")
        assert status == 200 and body["name"] == "web1"
        assert events(d)[0][2]["actor"]["uid"] == 65534
    finally:
        assert d.stop() == 0


def test_kill9_during_creates_keeps_the_inventory(tmp_path):
    d = Berthd(tmp_path).start()
    acked, stop = [], threading.Event()

    def creator(t):
        i = 0
        while not stop.is_set():
            try:
                r = raw_request(d.sock, "POST", V + "/vms", json.dumps(spec(f"vm-{t}-{i}")),
                                {"Content-Type": "application/json"}, timeout=10)
            except OSError:
                return
            if r.status == 201:
                acked.append(json.loads(r.body)["uuid"])
            i += 1

    ts = [threading.Thread(target=creator, args=(t,)) for t in range(4)]
    [t.start() for t in ts]
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    d.kill9()
    stop.set()
    [t.join() for t in ts]
    assert len(acked) >= 40, d.log_text()

    db = sqlite3.connect(os.path.join(d.state, "berth.db"))
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = {u for (u,) in db.execute("SELECT uuid FROM vms")}
    created = {u for (u,) in db.execute("SELECT vm FROM events WHERE kind = 'vm-created'")}
    db.close()
    assert set(acked) <= rows
    assert rows == created  # the VM and its audit event commit together or not at all

    d2 = Berthd(tmp_path).start()
    try:
        listed = {v["uuid"] for v in d2.get(V + "/vms").json["vms"]}
        assert set(acked) <= listed and listed == rows
        assert d2.post(V + "/vms", spec("after-crash")).status == 201
    finally:
        assert d2.stop() == 0


def test_future_schema_version_is_refused(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "berth.db")
    db.executescript("CREATE TABLE schema_version (version INTEGER NOT NULL);"
                     "INSERT INTO schema_version VALUES (99);")
    db.close()
    d = Berthd(tmp_path).start(expect_ready=False)
    rc = d.proc.wait(timeout=20)
    d.logf.close()
    assert rc == 1
    log = d.log_text()
    assert "schema version 99" in log and "newer berthd" in log, log
    assert not os.path.exists(d.sock)
    db = sqlite3.connect(state / "berth.db")
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(99,)]
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'vms'").fetchall() == []
    db.close()


def test_schema_and_pragmas(berthd):
    berthd.post(V + "/vms", spec())
    db = sqlite3.connect(os.path.join(berthd.state, "berth.db"))
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    # the newest migration this berthd knows (its log says which)
    known = int(re.search(r"schema version (\d+)\)", berthd.log_text()).group(1))
    assert known >= 4 and db.execute("SELECT version FROM schema_version").fetchall() == [(known,)]
    assert db.execute("SELECT count(*) FROM disks").fetchone() == (0,)
    assert db.execute("SELECT name FROM sqlite_master WHERE name = 'checkpoints'").fetchall()
    name, config, gen, state = db.execute(
        "SELECT name, config, generation, state FROM vms").fetchone()
    assert name == "web1" and gen == 1 and state == "off"
    assert "name" not in json.loads(config) and json.loads(config)["vcpus"] == 1
    db.close()


def test_graceful_stop_and_restart(tmp_path):
    d = Berthd(tmp_path).start()
    assert d.post(V + "/vms", spec()).status == 201
    assert d.stop(signal.SIGINT) == 0
    assert not os.path.exists(d.sock), "the socket is removed on stop"
    assert not os.path.exists(os.path.join(d.state, "berth.db-wal")), "the database is closed"
    assert "stopped" in d.log_text()
    d2 = Berthd(tmp_path).start()
    try:
        assert d2.get(V + "/vms/web1").json["generation"] == 1
        # a second daemon on the same state directory is refused
        p = subprocess.run([BERTHD, "--foreground", "--state-dir", d2.state, "--socket",
                            str(tmp_path / "other.sock")], capture_output=True, text=True,
                           timeout=20)
        assert p.returncode == 1 and "another berthd" in p.stderr, p.stderr
        assert d2.get(V + "/vms/web1").status == 200
    finally:
        assert d2.stop() == 0


def test_stop_finishes_requests_in_flight(tmp_path):
    """SIGTERM while a request is half sent: the socket goes away at once (no new connections),
    the request still completes, then berthd exits 0."""
    d = Berthd(tmp_path).start()
    body = json.dumps(spec()).encode()
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(d.sock)
    s.sendall(b"POST /api/v1/vms HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.5)
    d.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(d.sock) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(d.sock), "berthd still accepts connections"
    assert d.proc.poll() is None, "berthd did not wait for the request in flight"
    s.sendall(body[10:])
    reply = s.recv(65536)
    s.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply
    assert d.proc.wait(timeout=20) == 0
    d.logf.close()
    d2 = Berthd(tmp_path).start()
    try:
        assert d2.get(V + "/vms/web1").status == 200
    finally:
        assert d2.stop() == 0


def test_socket_path_checks(tmp_path):
    other = tmp_path / "not-a-socket"
    other.write_text("x")
    p = subprocess.run([BERTHD, "--foreground", "--state-dir", str(tmp_path / "s"), "--socket",
                        str(other)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "not a socket" in p.stderr, p.stderr
    assert other.read_text() == "x"
    p = subprocess.run([BERTHD, "--foreground", "--state-dir", str(tmp_path / "s"), "--socket",
                        str(tmp_path / ("x" * 120))], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "longer than 107 bytes" in p.stderr, p.stderr
    # a socket left by a berthd that was killed is replaced
    d = Berthd(tmp_path).start()
    d.kill9()
    assert os.path.exists(d.sock)
    d = Berthd(tmp_path).start()
    try:
        assert d.get(V + "/vms").status == 200
    finally:
        assert d.stop() == 0


@pytest.mark.parametrize("args,words", [
    (["--bogus"], ["unknown option", "--bogus"]),
    (["--state-dir"], ["--state-dir", "needs a value"]),
    (["--threads", "0"], ["--threads"]),
    (["stray"], ["unexpected argument 'stray'"]),
])
def test_usage_errors(args, words):
    p = subprocess.run([BERTHD] + args, capture_output=True, text=True, timeout=20)
    assert p.returncode == 2, p
    for w in words:
        assert w in p.stderr, p.stderr


def test_help_and_journal_format(tmp_path):
    p = subprocess.run([BERTHD, "--help"], capture_output=True, text=True, timeout=20)
    assert p.returncode == 0 and "--state-dir" in p.stdout
    proc = subprocess.Popen([BERTHD, "--state-dir", str(tmp_path / "s"), "--socket",
                             str(tmp_path / "j.sock")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not os.path.exists(tmp_path / "j.sock") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    lines = err.splitlines()
    assert lines and all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), err
    assert any(line.startswith("<6>") and "ready" in line for line in lines), err
