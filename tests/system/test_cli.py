"""berth, the CLI, against a real berthd: every verb with tables and --json (the JSON compared with
the API's own answer), every error path with its exit code, help, and the bash completion."""
import http.server
import json
import os
import pty
import re
import socket
import subprocess
import threading

import pytest

from berthdutil import Berthd, raw_request
from conftest import BUILD, ROOT

BERTH = os.path.abspath(os.path.join(BUILD, "bin", "berth"))
COMPLETION = os.path.join(ROOT, "packaging", "bash-completion", "berth")
MAN = os.path.join(ROOT, "docs", "man", "berth.1")
CLI_MD = os.path.join(ROOT, "docs", "cli.md")
V = "/api/v1"
KERNEL = "/var/lib/berth/kernels/vmlinuz"

SPEC_OPTS = ["--vcpus", "--memory", "--cpu-template", "--kernel", "--initrd", "--cmdline", "--disk",
             "--console-port", "--nic", "--rng", "--auto-start", "--auto-stop", "--notes", "--from-json"]
GLOBAL_OPTS = ["--json", "--socket", "--host", "--token", "--cacert", "--help"]
VERBS = {
    ("host", "show"): [],
    ("vm", "create"): SPEC_OPTS,
    ("vm", "list"): [],
    ("vm", "show"): [],
    ("vm", "set"): SPEC_OPTS + ["--name", "--force", "--no-initrd", "--no-disks",
                                "--no-console-ports", "--no-nics", "--no-rng"],
    ("vm", "delete"): ["--yes", "--delete-disks"],
    ("vm", "start"): ["--no-wait"],
    ("vm", "stop"): ["--timeout", "--turn-off", "--no-wait"],
    ("vm", "turn-off"): ["--no-wait"],
    ("vm", "restart"): ["--no-wait"],
    ("vm", "pause"): ["--no-wait"],
    ("vm", "resume"): ["--no-wait"],
    ("vm", "save"): ["--no-wait"],
    ("vm", "console"): [],
    ("switch", "create"): ["--kind", "--host-nic", "--address"],
    ("switch", "list"): [],
    ("switch", "show"): [],
    ("switch", "delete"): ["--yes"],
    ("disk", "create"): ["--size", "--format", "--backing"],
    ("disk", "list"): [],
    ("disk", "show"): [],
    ("disk", "resize"): ["--size"],
    ("disk", "delete"): ["--yes"],
    ("disk", "attach"): ["--readonly", "--serial", "--cache"],
    ("disk", "detach"): [],
    ("token", "create"): ["--role", "--expires-days"],
    ("token", "list"): [],
    ("token", "delete"): [],
    ("checkpoint", "create"): ["--disk-only"],
    ("checkpoint", "list"): [],
    ("checkpoint", "show"): [],
    ("checkpoint", "apply"): [],
    ("checkpoint", "delete"): [],
}


class Run:
    def __init__(self, p):
        self.rc, self.out, self.err = p.returncode, p.stdout, p.stderr

    @property
    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return f"rc={self.rc}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


def run(*args, env=None, input=None, sock=None, **kw):
    e = dict(os.environ)
    for k in ("BERTH_SOCKET", "BERTH_HOST", "BERTH_TOKEN"):
        e.pop(k, None)
    e.update(env or {})
    cmd = [BERTH] + (["--socket", sock] if sock else []) + [str(a) for a in args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60, env=e,
                       stdin=None if input is not None else subprocess.DEVNULL, **kw)
    return Run(p)


@pytest.fixture
def berthd(tmp_path):
    if not os.access(BERTH, os.X_OK):
        pytest.fail(f"{BERTH} is missing: build first (./scripts/build)")
    d = Berthd(tmp_path).start()
    d.berth = lambda *a, **kw: run(*a, sock=d.sock, **kw)
    yield d
    rc = d.stop()
    assert rc == 0, f"berthd exited with {rc}:\n{d.log_text()}"


def one_error_line(r, code):
    """The error contract: the exit code, nothing on stdout, one line on stderr."""
    assert r.rc == code, r
    assert r.out == "", r
    lines = r.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("berth: error: "), r
    return lines[0]


def kv(out):
    """'Key:   value' lines of a show as a dict (keys repeated for continuation lines kept first)."""
    res = {}
    for line in out.splitlines():
        m = re.match(r"^([A-Za-z][A-Za-z0-9 ]*):\s+(.*)$", line)
        if m:
            res.setdefault(m.group(1), m.group(2))
    return res


def table(out):
    """A table as a list of dicts, checking that every column starts at the header's offset."""
    lines = out.rstrip("\n").splitlines()
    head = lines[0]
    cols = [(m.group(0), m.start()) for m in re.finditer(r"\S+", head)]
    rows = []
    for line in lines[1:]:
        row = {}
        for i, (name, start) in enumerate(cols):
            end = cols[i + 1][1] if i + 1 < len(cols) else len(line)
            assert start == 0 or line[start - 1] == " ", f"column {name} misaligned: {line!r}"
            cell = line[start:end]
            assert cell.strip() and not cell.startswith(" "), f"column {name} misaligned: {line!r}"
            row[name] = cell.strip()
        rows.append(row)
    return [c for c, _ in cols], rows


def test_vm_definition_lifecycle_with_tables(berthd, tmp_path):
    b = berthd.berth
    r = b("vm", "create", "web1", "--kernel", KERNEL, "--vcpus", "2", "--memory", "2G",
          "--cpu-template", "baseline", "--initrd", "/boot/initrd.img", "--cmdline", "console=ttyS0 quiet",
          "--disk", "/srv/web1.qcow2,format=qcow2,cache=writeback,serial=WEB1",
          "--disk", "/srv/data.img,readonly", "--console-port", "org.qemu.guest_agent.0",
          "--console-port", "log", "--rng", "--auto-start", "always", "--auto-stop", "shut-down",
          "--notes", "the web server")
    assert r.rc == 0 and r.err == "", r
    shown = kv(r.out)
    vm = berthd.get(V + "/vms/web1").json
    assert shown["Name"] == "web1" and shown["UUID"] == vm["uuid"] and shown["State"] == "off"
    assert shown["vCPUs"] == "2" and shown["Memory"] == "2G" and shown["CPU template"] == "baseline"
    assert shown["Kernel"] == KERNEL and shown["Initrd"] == "/boot/initrd.img"
    assert shown["Cmdline"] == "console=ttyS0 quiet" and shown["Notes"] == "the web server"
    assert shown["Disk 0"] == "/srv/web1.qcow2 (format=qcow2 cache=writeback serial=WEB1)"
    assert shown["Disk 1"] == "/srv/data.img (format=auto cache=none readonly)"
    assert "org.qemu.guest_agent.0" in r.out and "\n                log\n" in r.out
    assert shown["RNG"] == "yes" and shown["Auto start"] == "always"
    assert vm["memory_mib"] == 2048 and vm["vcpus"] == 2 and vm["cpu_template"] == "baseline"
    assert vm["boot"] == {"kernel": KERNEL, "initrd": "/boot/initrd.img", "cmdline": "console=ttyS0 quiet"}
    assert vm["disks"] == [
        {"path": "/srv/web1.qcow2", "format": "qcow2", "readonly": False, "cache": "writeback",
         "serial": "WEB1"},
        {"path": "/srv/data.img", "format": "auto", "readonly": True, "cache": "none", "serial": None}]
    assert vm["console_ports"] == [{"name": "org.qemu.guest_agent.0"}, {"name": "log"}]
    assert vm["rng"] is True and vm["auto_start"] == "always" and vm["auto_stop"] == "shut-down"

    # relative paths become absolute against the working directory (berthd is local)
    r = b("vm", "create", "db-1", "--kernel", "kernels/vmlinuz", "--memory", "768", "--disk", "d.img",
          cwd=tmp_path)
    assert r.rc == 0, r
    db = berthd.get(V + "/vms/db-1").json
    assert db["boot"]["kernel"] == str(tmp_path / "kernels/vmlinuz")
    assert db["disks"][0]["path"] == str(tmp_path / "d.img") and db["memory_mib"] == 768

    r = b("vm", "list")
    assert r.rc == 0, r
    cols, rows = table(r.out)
    assert cols == ["NAME", "STATE", "VCPUS", "MEMORY", "UUID"]
    assert rows == [
        {"NAME": "db-1", "STATE": "off", "VCPUS": "1", "MEMORY": "768M", "UUID": db["uuid"]},
        {"NAME": "web1", "STATE": "off", "VCPUS": "2", "MEMORY": "2G", "UUID": vm["uuid"]}]

    r = b("vm", "show", vm["uuid"])  # by UUID
    assert r.rc == 0 and kv(r.out)["Name"] == "web1", r

    r = b("vm", "set", "web1", "--vcpus", "4", "--memory", "1G", "--no-rng", "--no-initrd",
          "--disk", "/srv/only.raw,format=raw", "--notes", "")
    assert r.rc == 0, r
    now = berthd.get(V + "/vms/web1").json
    assert now["vcpus"] == 4 and now["memory_mib"] == 1024 and now["rng"] is False
    assert now["boot"]["initrd"] is None and now["boot"]["cmdline"] == "console=ttyS0 quiet"
    assert [d["path"] for d in now["disks"]] == ["/srv/only.raw"] and now["notes"] == ""
    assert now["console_ports"] == vm["console_ports"] and now["generation"] == 2
    assert kv(r.out)["vCPUs"] == "4" and kv(r.out)["Generation"] == "2"

    r = b("vm", "set", "web1", "--no-disks", "--no-console-ports", "--rng")
    assert r.rc == 0, r
    now = berthd.get(V + "/vms/web1").json
    assert now["disks"] == [] and now["console_ports"] == [] and now["rng"] is True

    r = b("vm", "set", "web1", "--name", "web2")  # rename
    assert r.rc == 0 and kv(r.out)["Name"] == "web2", r
    assert berthd.get(V + "/vms/web2").json["uuid"] == vm["uuid"]
    assert berthd.get(V + "/vms/web1").status == 404

    r = b("vm", "delete", "web2", "--yes")
    assert r.rc == 0 and r.out == "deleted VM web2\n", r
    r = b("vm", "delete", db["uuid"], "--yes")
    assert r.rc == 0, r
    assert berthd.get(V + "/vms").json == {"vms": []}
    r = b("vm", "list")
    assert r.rc == 0 and r.out == "NAME  STATE  VCPUS  MEMORY  UUID\n", r


def test_json_output_is_the_api_document(berthd, tmp_path):
    b = berthd.berth
    r = b("vm", "create", "web1", "--kernel", KERNEL, "--disk", "/srv/a.img", "--json")
    assert r.rc == 0, r
    assert r.json == berthd.get(V + "/vms/web1").json
    assert r.out.count("\n{") == 0 and r.out.startswith("{")  # one document
    assert b("vm", "create", "web0", "--kernel", KERNEL).rc == 0
    for args, path in [(["vm", "list", "--json"], V + "/vms"),
                       (["--json", "vm", "show", "web1"], V + "/vms/web1"),
                       (["vm", "--json", "show", "web0"], V + "/vms/web0")]:
        r = b(*args)
        assert r.rc == 0 and r.err == "", r
        assert r.json == berthd.get(path).json, args
    r = b("vm", "set", "web1", "--vcpus", "3", "--json")
    assert r.rc == 0 and r.json == berthd.get(V + "/vms/web1").json and r.json["vcpus"] == 3, r
    r = b("host", "show", "--json")
    assert r.rc == 0, r
    api, mine = berthd.get(V + "/host").json, r.json
    assert abs(mine.pop("uptime_seconds") - api.pop("uptime_seconds")) <= 2
    assert mine == api
    r = b("host", "show")
    assert r.rc == 0 and kv(r.out)["Hostname"] == api["hostname"], r
    assert kv(r.out)["CPUs"] == str(api["cpus"]) and kv(r.out)["berthd"] == api["version"]
    r = b("vm", "delete", "web1", "--yes", "--json")  # 204: no document
    assert r.rc == 0 and r.out == "" and r.err == "", r


def test_create_and_set_from_json(berthd, tmp_path):
    spec = {"name": "fromfile", "vcpus": 3, "boot": {"kernel": KERNEL, "cmdline": "a b"},
            "disks": [{"path": "/srv/x.img", "format": "raw"}], "notes": "file"}
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(spec))
    r = berthd.berth("vm", "create", "--from-json", f, "--json")
    assert r.rc == 0, r
    vm = r.json
    assert vm["vcpus"] == 3 and vm["boot"]["cmdline"] == "a b" and vm["disks"][0]["format"] == "raw"
    # from stdin, with NAME and options overriding the document
    r = berthd.berth("vm", "create", "other", "--from-json", "-", "--vcpus", "5", "--cmdline", "c",
                     "--json", input=json.dumps(spec))
    assert r.rc == 0, r
    assert r.json["name"] == "other" and r.json["vcpus"] == 5
    assert r.json["boot"] == {"kernel": KERNEL, "initrd": None, "cmdline": "c"}
    # set: a merge patch from a file
    p = tmp_path / "patch.json"
    p.write_text(json.dumps({"notes": None, "boot": {"cmdline": None}, "rng": True}))
    r = berthd.berth("vm", "set", "fromfile", "--from-json", p, "--memory", "1024", "--json")
    assert r.rc == 0, r
    assert r.json["notes"] == "" and r.json["boot"]["cmdline"] == "" and r.json["rng"] is True
    assert r.json["memory_mib"] == 1024 and r.json["vcpus"] == 3


USAGE = [
    ([], "usage: berth"),
    (["frob"], "unknown command 'frob'"),
    (["vm"], "usage: berth vm VERB"),
    (["vm", "frob"], "unknown verb 'frob' for vm"),
    (["vm", "create"], "missing NAME"),
    (["vm", "create", "x"], "missing --kernel PATH"),
    (["vm", "create", "x", "--kernel"], "--kernel needs a value (PATH)"),
    (["vm", "create", "x", "--kernel", KERNEL, "--memory", "1.5G"], "--memory '1.5G'"),
    (["vm", "create", "x", "--kernel", KERNEL, "--memory", "1000K"], "whole MiB"),
    (["vm", "create", "x", "--kernel", KERNEL, "--vcpus", "two"], "--vcpus 'two': not a whole number"),
    (["vm", "create", "x", "--kernel", KERNEL, "--vcpus", "1", "--vcpus", "2"], "--vcpus given twice"),
    (["vm", "create", "x", "--kernel", KERNEL, "--disk", "/a,bogus=1"], "unknown option 'bogus=1'"),
    (["vm", "create", "x", "--kernel", KERNEL, "--disk", ",readonly"], "starts with the image's path"),
    (["vm", "create", "x", "--kernel", KERNEL, "--rng=yes"], "--rng takes no value"),
    (["vm", "create", "x", "--kernel", KERNEL, "--no-rng"], "unknown option '--no-rng'"),
    (["vm", "create", "x", "y", "--kernel", KERNEL], "unexpected argument 'y'"),
    (["vm", "create", "x", "--from-json", "/nonexistent/spec.json"], "--from-json /nonexistent/spec.json"),
    (["vm", "create", "x", "--kernel", KERNEL, "-v"], "unknown option '-v'"),
    (["vm", "list", "--nope"], "unknown option '--nope'"),
    (["vm", "list", "extra"], "unexpected argument 'extra'"),
    (["vm", "show"], "missing NAME|UUID"),
    (["vm", "show", ""], "'' is not a VM name or UUID"),
    (["vm", "set", "web1"], "nothing to change"),
    (["vm", "set", "web1", "--rng", "--no-rng"], "--rng and --no-rng contradict"),
    (["vm", "set", "web1", "--disk", "/a", "--no-disks"], "--disk and --no-disks contradict"),
    (["vm", "set", "web1", "--initrd", "/i", "--no-initrd"], "--initrd and --no-initrd contradict"),
    (["vm", "delete", "web1"], "pass --yes"),
    (["vm", "start"], "missing NAME|UUID"),
    (["vm", "start", "web1", "web2"], "unexpected argument 'web2'"),
    (["vm", "start", "web1", "--timeout", "5"], "unknown option '--timeout'"),
    (["vm", "stop", "web1", "--timeout", "0"], "--timeout: '0' is not a number of seconds"),
    (["vm", "stop", "web1", "--timeout", "5", "--turn-off"], "--turn-off stops at once"),
    (["vm", "console"], "missing NAME|UUID"),
    (["vm", "console", ""], "'' is not a VM name or UUID"),
    (["--host", "http://127.0.0.1:9", "vm", "list", "--socket", "/x"], "--socket and --host exclude"),
    (["--bogus", "vm", "list"], "unknown option '--bogus'"),
    (["help", "nope"], "no help for 'nope'"),
]


@pytest.mark.parametrize("args,words", USAGE, ids=[" ".join(a) or "none" for a, _ in USAGE])
def test_usage_errors_exit_2_and_send_nothing(berthd, args, words):
    assert berthd.post(V + "/vms", {"name": "web1", "boot": {"kernel": KERNEL}}).status == 201
    r = berthd.berth(*args)
    assert r.rc == 2, r
    assert r.out == "" and words in r.err, r
    vms = berthd.get(V + "/vms").json["vms"]
    assert [v["name"] for v in vms] == ["web1"] and vms[0]["generation"] == 1


def test_usage_error_with_a_bad_json_file(berthd, tmp_path):
    f = tmp_path / "bad.json"
    for text, words in [("{", "--from-json"), ("[1]", "not a JSON object"), ('{"a":1,"a":2}', "duplicate")]:
        f.write_text(text)
        r = berthd.berth("vm", "create", "--from-json", f)
        assert one_error_line(r, 2) and words in r.err, r
    assert berthd.get(V + "/vms").json["vms"] == []


def test_api_errors_map_to_exit_codes(berthd):
    b = berthd.berth
    assert b("vm", "create", "web1", "--kernel", KERNEL).rc == 0
    assert b("vm", "create", "web2", "--kernel", KERNEL).rc == 0
    # not found: 3
    for args in [("vm", "show", "nope"), ("vm", "set", "nope", "--vcpus", "2"),
                 ("vm", "set", "nope", "--vcpus", "2", "--force"), ("vm", "delete", "nope", "--yes"),
                 ("vm", "show", "00000000-0000-4000-8000-000000000000"),
                 ("vm", "show", "web1/../web2"), ("vm", "show", "web1 x?y#z")]:  # sent encoded
        line = one_error_line(b(*args), 3)
        assert "no VM" in line or "no such resource" in line, line  # never web2
    # the name is taken: 4, with the field
    line = one_error_line(b("vm", "create", "web1", "--kernel", KERNEL), 4)
    assert line == "berth: error: a VM named 'web1' already exists (field: name)", line
    line = one_error_line(b("vm", "set", "web2", "--name", "web1"), 4)
    assert line.endswith("(field: name)"), line
    # invalid values: 1, naming the field as the API does
    api = berthd.post(V + "/vms", {"name": "x", "vcpus": 0, "boot": {"kernel": KERNEL}}).error
    line = one_error_line(b("vm", "create", "x", "--kernel", KERNEL, "--vcpus", "0"), 1)
    assert line == f"berth: error: {api['message']} (field: vcpus)", line
    line = one_error_line(b("vm", "create", "x", "--kernel", KERNEL, "--disk", "/a,format=vmdk"), 1)
    assert line.endswith("(field: disks[0].format)"), line
    line = one_error_line(b("vm", "create", "x", "--kernel", KERNEL, "--memory", "32M"), 1)
    assert line.endswith("(field: memory_mib)"), line
    line = one_error_line(b("vm", "set", "web1", "--cpu-template", "fancy"), 1)
    assert line.endswith("(field: cpu_template)"), line
    line = one_error_line(b("vm", "create", "bad name", "--kernel", KERNEL), 1)
    assert line.endswith("(field: name)"), line
    assert [v["name"] for v in berthd.get(V + "/vms").json["vms"]] == ["web1", "web2"]
    assert berthd.get(V + "/vms/web1").json["generation"] == 1


class InterferingProxy:
    """A unix socket relayed to berthd's, which PATCHes the VM itself (straight to berthd) just
    before relaying the client's PATCH: another client's change lands between the CLI's GET and
    its PATCH."""

    def __init__(self, d, path, vm, patch):
        self.d, self.vm, self.patch = d, vm, patch
        self.interfered = 0
        self.lsock = socket.socket(socket.AF_UNIX)
        self.lsock.bind(path)
        self.lsock.listen(4)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            u = socket.socket(socket.AF_UNIX)
            u.connect(self.d.sock)
            threading.Thread(target=self.pump, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self.pump, args=(u, c, False), daemon=True).start()

    def pump(self, src, dst, from_client):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_client and data.startswith(b"PATCH "):
                    r = raw_request(self.d.sock, "PATCH", f"{V}/vms/{self.vm}", json.dumps(self.patch),
                                    {"Content-Type": "application/json"})
                    assert r.status == 200, r
                    self.interfered += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.lsock.close()


def test_concurrent_change_is_a_conflict_not_a_lost_update(berthd, tmp_path):
    assert berthd.berth("vm", "create", "web1", "--kernel", KERNEL).rc == 0
    proxy = InterferingProxy(berthd, str(tmp_path / "proxy.sock"), "web1", {"notes": "theirs"})
    try:
        r = run("vm", "set", "web1", "--vcpus", "8", sock=str(tmp_path / "proxy.sock"))
        assert proxy.interfered == 1
        line = one_error_line(r, 4)
        assert line == ("berth: error: VM 'web1' has changed: its ETag is now \"2\" (If-Match: \"1\"); "
                        "run the command again to apply the change to the current version, or use "
                        "--force"), line
        vm = berthd.get(V + "/vms/web1").json
        assert vm["notes"] == "theirs" and vm["vcpus"] == 1 and vm["generation"] == 2  # theirs kept
        # again, now with --force: no If-Match, so the CLI's change goes on top of theirs
        r = run("vm", "set", "web1", "--vcpus", "8", "--force", sock=str(tmp_path / "proxy.sock"))
        assert r.rc == 0 and proxy.interfered == 2, r
        vm = berthd.get(V + "/vms/web1").json
        assert vm["notes"] == "theirs" and vm["vcpus"] == 8 and vm["generation"] == 3
        # and without anyone in between, the guarded set succeeds
        r = berthd.berth("vm", "set", "web1", "--vcpus", "2")
        assert r.rc == 0 and berthd.get(V + "/vms/web1").json["vcpus"] == 2, r
    finally:
        proxy.close()


def test_delete_asks_on_a_terminal(berthd):
    b = berthd.berth
    assert b("vm", "create", "web1", "--kernel", KERNEL).rc == 0
    uuid = berthd.get(V + "/vms/web1").json["uuid"]
    line = one_error_line(b("vm", "delete", "web1"), 2)  # stdin is /dev/null
    assert "--yes" in line and "terminal" in line
    assert berthd.get(V + "/vms/web1").status == 200
    for answer, rc in [(b"n\n", 1), (b"\n", 1), (b"y\n", 0)]:
        master, slave = pty.openpty()
        try:
            os.write(master, answer)
            p = subprocess.run([BERTH, "--socket", berthd.sock, "vm", "delete", "web1"], stdin=slave,
                               capture_output=True, text=True, timeout=60)
        finally:
            os.close(master)
            os.close(slave)
        assert p.returncode == rc, (answer, p)
        assert f"Delete VM web1 ({uuid})? Its disk files are kept. [y/N]" in p.stderr
        assert (berthd.get(V + "/vms/web1").status == 404) == (rc == 0)


def test_unreachable_berthd_exits_5(tmp_path):
    missing = tmp_path / "nothing.sock"
    line = one_error_line(run("vm", "list", sock=str(missing)), 5)
    assert str(missing) in line and "is berthd running?" in line, line
    # the same through $BERTH_SOCKET
    line = one_error_line(run("host", "show", env={"BERTH_SOCKET": str(missing)}), 5)
    assert str(missing) in line
    # a socket nobody listens on (a berthd that died)
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()
    line = one_error_line(run("vm", "list", sock=str(stale)), 5)
    assert str(stale) in line and "refused" in line, line
    # the console opens its own connection: the same errors
    for path, words in [(missing, "No such file"), (stale, "refused")]:
        line = one_error_line(run("vm", "console", "web1", sock=str(path)), 5)
        assert str(path) in line and words in line and "is berthd running?" in line, line
    line = one_error_line(run("vm", "start", "web1", sock=str(missing)), 5)
    # a remote berthd that is not there (loopback, a closed port)
    port = free_port()
    line = one_error_line(run("--host", f"http://127.0.0.1:{port}", "vm", "list"), 5)
    assert f"127.0.0.1:{port}" in line, line


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def as_nobody(d, *args, group="nogroup"):
    """berth run as nobody, reaching the socket by a path relative to its directory (the test's
    own directories are root's)."""
    p = subprocess.run([BERTH, "--socket", "berthd.sock"] + list(args), cwd=d.rundir, user="nobody",
                       group=group, extra_groups=[], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return Run(p)


def test_permission_denied_exits_6(tmp_path):
    d = Berthd(tmp_path, group="daemon").start()
    try:
        # the socket is root:daemon 0660: nobody cannot even connect
        line = one_error_line(as_nobody(d, "vm", "list"), 6)
        assert "permission denied" in line and "berthd.sock" in line, line
        line = one_error_line(as_nobody(d, "vm", "console", "web1"), 6)
        assert "permission denied" in line and "berthd.sock" in line, line
        os.chmod(d.sock, 0o666)  # now berthd itself refuses (403)
        for args in [("vm", "console", "web1"), ("vm", "start", "web1"), ("vm", "list"), ("host", "show"), ("vm", "create", "web1", "--kernel", KERNEL),
                     ("vm", "delete", "web1", "--yes"), ("vm", "set", "web1", "--vcpus", "2")]:
            line = one_error_line(as_nobody(d, *args), 6)
            assert "berth: error: " in line and "group" in line, (args, line)
        assert d.get(V + "/vms").json["vms"] == []
    finally:
        assert d.stop() == 0
    (tmp_path / "member").mkdir()
    d = Berthd(tmp_path / "member", group="nogroup").start()
    try:  # the control: a member of the group may
        r = as_nobody(d, "vm", "create", "web1", "--kernel", KERNEL, "--json")
        assert r.rc == 0 and r.json["name"] == "web1", r
    finally:
        assert d.stop() == 0


class FakeRemote(http.server.BaseHTTPRequestHandler):
    """A stand-in for a remote berthd on loopback: records requests; 401 without the token."""
    seen = []

    def do_GET(self):
        FakeRemote.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer s3cret":
            body, status = b'{"error": {"code": "unauthorized", "message": "a valid token is needed"}}', 401
        else:
            body, status = json.dumps({"vms": [{"name": "far", "state": "off", "vcpus": 1,
                                                 "memory_mib": 64, "uuid": "u"}]}).encode(), 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_remote_host_sends_the_bearer_token():
    srv = http.server.HTTPServer(("127.0.0.1", 0), FakeRemote)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        FakeRemote.seen.clear()
        r = run("--host", url + "/", "--token", "s3cret", "vm", "list")
        assert r.rc == 0, r
        assert table(r.out)[1] == [{"NAME": "far", "STATE": "off", "VCPUS": "1", "MEMORY": "64M", "UUID": "u"}]
        assert FakeRemote.seen == [("GET", V + "/vms", "Bearer s3cret")]
        r = run("vm", "list", env={"BERTH_HOST": url, "BERTH_TOKEN": "s3cret"})
        assert r.rc == 0, r
        line = one_error_line(run("--host", url, "vm", "list"), 7)  # no token: 401
        assert line.startswith("berth: error: a valid token is needed (berthd wants a valid API "
                               "token: pass --token TOKEN or set $BERTH_TOKEN"), line
        assert FakeRemote.seen[-1] == ("GET", V + "/vms", None)
    finally:
        srv.shutdown()
        srv.server_close()


class FakeConsole(http.server.BaseHTTPRequestHandler):
    """A remote berthd's console on loopback (plain HTTP): 101, then "remote> " + what it reads."""
    protocol_version = "HTTP/1.1"
    seen = []

    def do_GET(self):
        FakeConsole.seen.append((self.path, self.headers.get("Authorization"),
                                 self.headers.get("Upgrade"), self.headers.get("Connection")))
        self.send_response(101)
        self.send_header("Upgrade", "berth-console")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.write(b"remote> ")
        self.wfile.flush()
        while True:
            data = self.rfile.read1(4096)
            if not data:
                break
            self.wfile.write(data.upper())
            self.wfile.flush()
        self.close_connection = True

    def log_message(self, *a):
        pass


def test_console_over_a_remote_http_host():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeConsole)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        FakeConsole.seen.clear()
        r = run("--host", url, "--token", "s3cret", "vm", "console", "web 1", input="hello\n")
        assert r.rc == 0 and r.out == "remote> HELLO\n" and r.err == "", r
        assert FakeConsole.seen == [(V + "/vms/web%201/console", "Bearer s3cret", "berth-console",
                                     "Upgrade")]
    finally:
        srv.shutdown()
        srv.server_close()
    line = one_error_line(run("--host", "ftp://127.0.0.1:9", "vm", "console", "web1"), 1)
    assert "only the local socket, http:// and https:// URLs" in line, line
    line = one_error_line(run("--host", "https://127.0.0.1:9", "vm", "console", "web1"), 5)
    assert "cannot reach berthd at https://127.0.0.1:9" in line, line
    # an IPv6 literal in brackets
    class V6(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6
    try:
        srv = V6(("::1", 0), FakeConsole)
    except OSError:
        return  # no IPv6 loopback here
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        r = run("--host", f"http://[::1]:{srv.server_address[1]}/", "vm", "console", "v6", input="x")
        assert r.rc == 0 and r.out == "remote> X" and r.err == "", r
    finally:
        srv.shutdown()
        srv.server_close()


def test_help_for_every_noun_and_verb():
    main = run("help")
    assert main.rc == 0 and main.err == "", main
    assert run("--help").out == main.out and run("-h").out == main.out
    for (noun, verb), opts in VERBS.items():
        assert f"  {noun} {verb}" in main.out
        for args in [(noun, verb, "--help"), (noun, verb, "-h"), ("help", noun, verb)]:
            r = run(*args)
            assert r.rc == 0 and r.err == "", (args, r)
            assert r.out.startswith(f"usage: berth {noun} {verb}"), r
            for o in opts + GLOBAL_OPTS:
                assert re.search(rf"^  {re.escape(o)}\b", r.out, re.M), (args, o)
            assert "Exit status: 0 success" in r.out
        # --help wins over missing or wrong arguments, and nothing is contacted
        r = run(noun, verb, "--help", "x", "y", sock="/nonexistent")
        assert r.rc == 0, r
    for noun in ("vm", "host", "switch", "disk", "token", "checkpoint"):
        for args in [(noun, "--help"), ("help", noun)]:
            r = run(*args)
            assert r.rc == 0 and r.out.startswith(f"usage: berth {noun} VERB"), r
            for (n, verb) in VERBS:
                assert (f"  {n} {verb}" in r.out) == (n == noun)
    v = run("--version")
    assert v.rc == 0 and re.fullmatch(r"berth \d+\.\d+\.\d+\n", v.out), v
    d = subprocess.run([os.path.join(BUILD, "bin", "berthd"), "--version"], capture_output=True, text=True)
    assert v.out.split()[1] == d.stdout.split()[1]


def test_docs_cover_every_verb_and_option():
    man = open(MAN).read()
    md = open(CLI_MD).read()
    for (noun, verb), opts in VERBS.items():
        assert re.search(rf"berth {noun} {verb}\b", md), (noun, verb)
        mverb = verb.replace("-", r"\\?-")  # roff writes turn\-off
        assert re.search(rf"\.B {noun} {mverb}\b|{noun} {mverb}", man), (noun, verb)
        for o in opts + GLOBAL_OPTS:
            assert o.replace("-", r"\-") in man, o
            assert f"`{o}" in md or f"{o} " in md, o
    for code in range(8):
        assert re.search(rf"^\.B {code}\s*$|^\.IP {code}\b", man, re.M), code
        assert re.search(rf"^\| {code} \|", md, re.M), code
    p = subprocess.run(["groff", "-man", "-ww", "-z", MAN], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def complete(words, env=None):
    """COMPREPLY of the completion function for the words typed so far (the last one is the word
    being completed)."""
    script = (f"source {COMPLETION}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(($# - 1)); _berth\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    e = dict(os.environ, PATH=os.path.join(BUILD, "bin") + ":" + os.environ["PATH"])
    e.pop("BERTH_SOCKET", None)
    e.update(env or {})
    p = subprocess.run(["bash", "-c", script, "bash"] + list(words), capture_output=True, text=True,
                       env=e, timeout=60)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.split("\n") if w]


def test_bash_completion(berthd, tmp_path):
    p = subprocess.run(["bash", "-n", COMPLETION], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert complete(["berth", ""]) == ["host", "vm", "switch", "disk", "token", "checkpoint", "help"]
    assert complete(["berth", "token", ""]) == ["create", "list", "delete"]
    assert complete(["berth", "token", "create", "ci", "--role", ""]) == ["viewer", "operator", "admin"]
    assert complete(["berth", "--ca"]) == ["--cacert"]
    assert complete(["berth", "checkpoint", ""]) == ["create", "list", "show", "apply", "delete"]
    assert complete(["berth", "checkpoint", "create", "w", "x", "--d"]) == ["--disk-only"]
    assert complete(["berth", "v"]) == ["vm"]
    assert complete(["berth", "--json", "h"]) == ["host", "help"]
    assert complete(["berth", "vm", ""]) == ["create", "list", "show", "set", "delete", "start",
                                             "stop", "turn-off", "restart", "pause", "resume",
                                             "save", "console"]
    assert complete(["berth", "vm", "s"]) == ["show", "set", "start", "stop", "save"]
    assert complete(["berth", "vm", "stop", "web1", "--tu"]) == ["--turn-off"]
    assert complete(["berth", "vm", "stop", "web1", "--ti"]) == ["--timeout"]
    assert "--no-wait" in complete(["berth", "vm", "save", "web1", "--"])
    assert complete(["berth", "help", "vm", "d"]) == ["delete"]
    assert complete(["berth", "host", ""]) == ["show"]
    assert complete(["berth", "disk", ""]) == ["create", "list", "show", "resize", "delete",
                                               "attach", "detach"]
    assert complete(["berth", "disk", "create", "d", "--format", ""]) == ["qcow2", "raw"]
    assert complete(["berth", "vm", "delete", "x", "--d"]) == ["--delete-disks"]
    assert complete(["berth", "vm", "create", "--c"]) == ["--cpu-template", "--cmdline", "--console-port",
                                                          "--cacert"]
    assert "--force" in complete(["berth", "vm", "set", "web1", "--"])
    assert "--json" in complete(["berth", "vm", "list", "--"])
    assert complete(["berth", "vm", "create", "x", "--auto-stop", ""]) == ["save", "turn-off", "shut-down"]
    (tmp_path / "vmlinuz-6.1").write_text("")
    assert complete(["berth", "vm", "create", "x", "--kernel", str(tmp_path / "vmlin")]) == \
        [str(tmp_path / "vmlinuz-6.1")]
    for name in ("web1", "web2", "db"):
        assert berthd.berth("vm", "create", name, "--kernel", KERNEL).rc == 0
    # VM names from berthd: through --socket on the line, or $BERTH_SOCKET
    assert complete(["berth", "--socket", berthd.sock, "vm", "show", ""]) == ["db", "web1", "web2"]
    assert complete(["berth", "vm", "set", "w"], env={"BERTH_SOCKET": berthd.sock}) == ["web1", "web2"]
    assert complete(["berth", "vm", "delete", "--yes", "d"], env={"BERTH_SOCKET": berthd.sock}) == ["db"]
    assert complete(["berth", "vm", "show", "web1", ""], env={"BERTH_SOCKET": berthd.sock}) == []
    for verb in ("start", "stop", "console"):
        assert complete(["berth", "vm", verb, "w"], env={"BERTH_SOCKET": berthd.sock}) == ["web1", "web2"]
    # no berthd: no names, and no noise
    assert complete(["berth", "--socket", str(tmp_path / "none.sock"), "vm", "show", ""]) == []
