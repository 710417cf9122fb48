"""berthd's remote access against a real daemon: HTTPS on TCP (--listen, --tls-cert, --tls-key) with
a self-signed certificate made here, API tokens (only their SHA-256 in the inventory, 401 with
WWW-Authenticate when missing, wrong, expired or deleted), the roles viewer / operator / admin for
token holders and, by --role-group, for local users of the unix socket; the audit actor; the
event stream over TLS; the CLI with --host/--token/--cacert (token verbs, a real test-guest VM
started and stopped, its console over HTTPS). Every response is checked against the OpenAPI
document."""
import hashlib
import http.client
import json
import os
import pwd
import re
import select
import shutil
import socket
import sqlite3
import ssl
import subprocess
import time

import pytest

from berthdutil import BERTHD, Berthd, Response
from conftest import kvm_usable
from test_berthd_lifecycle import GUEST, TICK, V, run_dir, vm, vmm_pids_in  # noqa: F401 (run_dir: a fixture)
from test_cli import BERTH, Run, one_error_line

TOKEN_RE = re.compile(r"^berth_([0-9]+)_[A-Za-z0-9_-]{43}$")
needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def pki(tmp_path):
    """A self-signed certificate for 127.0.0.1, ::1 and localhost, and its key (mode 0600)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=berthd-test",
                    "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return str(cert), str(key)


class TlsBerthd(Berthd):
    """A berthd serving HTTPS on a free loopback port too; https() talks to it."""

    def __init__(self, tmp_path, pki, extra=(), listen=None, run_dir=None):
        super().__init__(tmp_path)
        self.port = free_port()
        self.listen = listen or f"127.0.0.1:{self.port}"
        self.cert, self.key = pki
        self.extra = list(extra)
        self.run_dir = run_dir

    def cmd(self):
        c = super().cmd() + ["--listen", self.listen, "--tls-cert", self.cert, "--tls-key",
                             self.key] + self.extra
        return c + (["--run-dir", self.run_dir] if self.run_dir else [])

    def start(self):
        super().start()
        deadline = time.monotonic() + 20
        while f"ready (pid {self.proc.pid})" not in self.log_text():
            assert self.proc.poll() is None, self.log_text()
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.02)
        return self

    @property
    def url(self):
        return f"https://127.0.0.1:{self.port}"

    def https(self, method, path, token=None, body=None, headers=None, validate=True):
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        ctx = ssl.create_default_context(cafile=self.cert)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=30)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            resp = Response(r.status, r.headers, r.read())
        finally:
            conn.close()
        if validate:
            self.api.validate_response(method, path, resp.status, resp.headers, resp.body)
        return resp

    def token(self, name, role, **kw):
        """A new token made by root on the unix socket: its secret."""
        r = self.post(V + "/tokens", {"name": name, "role": role, **kw})
        assert r.status == 201, r
        assert TOKEN_RE.match(r.json["token"]) and r.json["role"] == role, r
        assert r.headers["Location"] == f"{V}/tokens/{r.json['id']}"
        return r.json["token"]


@pytest.fixture
def tls_daemon(tmp_path, pki):
    started = []

    def start(**kw):
        d = TlsBerthd(tmp_path, pki, **kw).start()
        started.append(d)
        return d

    yield start
    for d in started:
        rc = d.stop()
        assert rc in (0, None), f"berthd exited with {rc}:\n{d.log_text()}"


def unauthenticated(r, invalid):
    assert r.status == 401, r
    assert r.error["code"] == "unauthenticated", r
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="berthd"'), challenge
    assert ('error="invalid_token"' in challenge) == invalid, challenge
    return r.error["message"]


def test_listen_needs_a_certificate(tmp_path, pki):
    base = [BERTHD, "--foreground", "--state-dir", str(tmp_path / "s"), "--socket",
            str(tmp_path / "b.sock")]
    p = subprocess.run(base + ["--listen", "127.0.0.1:8443"], capture_output=True, text=True)
    assert p.returncode == 2 and "never as plain HTTP" in p.stderr, p.stderr
    p = subprocess.run(base + ["--listen", "127.0.0.1:8443", "--tls-cert", pki[0]],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "needs --tls-cert and --tls-key" in p.stderr, p.stderr
    p = subprocess.run(base + ["--tls-cert", pki[0], "--tls-key", pki[1]], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "go with --listen" in p.stderr, p.stderr
    for bad in ("8443", "localhost:8443", "127.0.0.1:0", "127.0.0.1:70000", "::1:8443", "[::1]"):
        p = subprocess.run(base + ["--listen", bad, "--tls-cert", pki[0], "--tls-key", pki[1]],
                           capture_output=True, text=True)
        assert p.returncode == 2 and "must be ADDR:PORT" in p.stderr, (bad, p.stderr)
    # a key that is not a key: berthd says so and does not start
    p = subprocess.run(base + ["--listen", f"127.0.0.1:{free_port()}", "--tls-cert", pki[0],
                               "--tls-key", pki[0]], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "PEM certificate and its private key" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "b.sock")


def test_tokens_roles_and_401(tls_daemon):
    d = tls_daemon()
    # nothing without a token over TCP, not even unknown paths
    for path in (V + "/vms", V + "/host", V + "/nope", "/metrics"):
        msg = unauthenticated(d.https("GET", path), invalid=False)
        assert "no Authorization: Bearer header" in msg, msg
    for bad in ("berth_1_" + "A" * 43, "nonsense", "berth_x_y"):
        unauthenticated(d.https("GET", V + "/vms", token=bad), invalid=True)
    unauthenticated(d.https("GET", V + "/vms", headers={"Authorization": "Basic YTpi"}), invalid=True)

    viewer, operator, admin = (d.token("v1", "viewer"), d.token("o1", "operator"),
                               d.token("a1", "admin", expires_in_days=30))
    # a token's secret does not open another token's row
    vid = TOKEN_RE.match(viewer).group(1)
    forged = f"berth_{vid}_" + admin.split("_", 2)[2]
    unauthenticated(d.https("GET", V + "/vms", token=forged), invalid=True)

    # viewer: reads, nothing else
    r = d.https("GET", V + "/vms", token=viewer)
    assert r.status == 200 and r.json == {"vms": []}, r
    spec = {"name": "rv1", "memory_mib": 64, "boot": {"kernel": GUEST}}
    r = d.https("POST", V + "/vms", token=viewer, body=spec)
    assert r.status == 403 and r.error["code"] == "forbidden", r
    assert "needs the admin role (you have viewer)" in r.error["message"], r
    r = d.https("POST", V + "/vms", token=admin, body=spec)
    assert r.status == 201, r
    r = d.https("POST", V + "/vms/rv1/start", token=viewer)
    assert r.status == 403 and "needs the operator role (you have viewer)" in r.error["message"], r
    # operator: past the role check of actions, not of definitions or tokens
    r = d.https("POST", V + "/vms/rv1/pause", token=operator)
    assert r.status == 409 and r.error["code"] == "invalid-state", r  # the VM is off
    for method, path, body in (("POST", V + "/tokens", {"name": "x", "role": "viewer"}),
                               ("GET", V + "/tokens", None), ("DELETE", V + "/vms/rv1", None),
                               ("DELETE", V + "/tokens/v1", None)):
        r = d.https(method, path, token=operator, body=body)
        assert r.status == 403 and "needs the admin role (you have operator)" in r.error["message"], r

    # admin over TLS makes a token; the list never holds a secret or a hash
    r = d.https("POST", V + "/tokens", token=admin, body={"name": "remote-made", "role": "viewer"})
    assert r.status == 201 and TOKEN_RE.match(r.json["token"]), r
    made = r.json["token"]
    r = d.https("GET", V + "/tokens", token=admin)
    assert r.status == 200, r
    tokens = {t["name"]: t for t in r.json["tokens"]}
    assert sorted(tokens) == ["a1", "o1", "remote-made", "v1"], tokens
    assert all(set(t) == {"id", "name", "role", "created", "last_used", "expires", "expired"}
               for t in tokens.values()), tokens
    assert tokens["a1"]["expires"] and not tokens["a1"]["expired"] and tokens["o1"]["expires"] is None
    assert tokens["v1"]["last_used"] and tokens["remote-made"]["last_used"] is None
    for secret in (viewer, operator, admin, made):
        assert secret.split("_", 2)[2] not in r.body.decode()
    r = d.https("GET", V + "/tokens/o1", token=admin)
    assert r.status == 200 and r.json == tokens["o1"], r

    # the inventory holds SHA-256 digests, never a secret
    blob = b""
    for sfx in ("", "-wal"):
        if os.path.exists(f"{d.state}/berth.db{sfx}"):
            blob += open(f"{d.state}/berth.db{sfx}", "rb").read()
    for secret in (viewer, operator, admin, made):
        part = secret.split("_", 2)[2]
        assert part.encode() not in blob
        assert hashlib.sha256(part.encode()).hexdigest().encode() in blob

    # the audit trail names the token and the address that acted
    db = sqlite3.connect(f"{d.state}/berth.db")
    try:
        rows = [json.loads(x) for (x,) in
                db.execute("SELECT detail FROM events WHERE kind = 'token-created' ORDER BY id")]
        actor = rows[-1]["actor"]
        assert actor["token"]["name"] == "a1" and actor["role"] == "admin", actor
        assert actor["address"].startswith("127.0.0.1:") and "uid" not in actor, actor
        assert rows[0]["actor"]["uid"] == os.getuid() and "token" not in rows[0]["actor"], rows[0]
        # an expired token is refused (its expiry moved into the past here)
        db.execute("UPDATE tokens SET expires = '2020-01-01T00:00:00.000Z' WHERE name = 'o1'")
        db.commit()
    finally:
        db.close()
    msg = unauthenticated(d.https("GET", V + "/vms", token=operator), invalid=True)
    assert "expired" in msg, msg
    assert d.https("GET", V + "/tokens/o1", token=admin).json["expired"] is True

    # revoked at once
    r = d.https("DELETE", V + "/tokens/remote-made", token=admin)
    assert r.status == 204 and r.body == b"", r
    unauthenticated(d.https("GET", V + "/vms", token=made), invalid=True)
    r = d.https("DELETE", V + "/tokens/remote-made", token=admin)
    assert r.status == 404 and r.error["code"] == "not-found", r

    # on the unix socket a token is optional; given, the caller acts with its role
    r = d.post(V + "/vms", {**spec, "name": "rv2"}, headers={"Authorization": f"Bearer {viewer}"})
    assert r.status == 403 and "(you have viewer)" in r.error["message"], r
    r = d.get(V + "/vms", headers={"Authorization": f"Bearer {made}"})
    unauthenticated(r, invalid=True)
    assert d.get(V + "/vms").status == 200  # root by its credentials


def test_token_requests_are_checked(tls_daemon):
    d = tls_daemon()
    d.token("taken", "viewer")
    cases = [({"role": "viewer"}, 400, "name"), ({"name": "x"}, 400, "role"),
             ({"name": "x", "role": "root"}, 400, "role"),
             ({"name": "123", "role": "viewer"}, 400, "name"),
             ({"name": "-x", "role": "viewer"}, 400, "name"),
             ({"name": "x", "role": "viewer", "expires_in_days": 0}, 400, "expires_in_days"),
             ({"name": "x", "role": "viewer", "expires_in_days": "7"}, 400, "expires_in_days"),
             ({"name": "x", "role": "viewer", "expires_in_days": 3651}, 400, "expires_in_days"),
             ({"name": "x", "role": "viewer", "hash": "00"}, 400, "hash"),
             ({"name": "x", "role": "viewer", "colour": 1}, 400, "colour"),
             ({"name": "taken", "role": "admin"}, 409, "name")]
    for body, status, field in cases:
        r = d.post(V + "/tokens", body)
        assert r.status == status and r.error.get("field") == field, (body, r)
    r = d.get(V + "/tokens")
    assert [t["name"] for t in r.json["tokens"]] == ["taken"], r
    r = d.post(V + "/tokens", {"name": "n", "role": "viewer", "expires_in_days": None})
    assert r.status == 201 and r.json["expires"] is None, r
    assert d.get(V + "/tokens/nope").status == 404
    r = d.delete(f"{V}/tokens/{r.json['id']}")  # by id as well as by name
    assert r.status == 204, r


def test_plain_http_on_the_tls_port_fails(tls_daemon):
    d = tls_daemon()
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
    with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
        conn.request("GET", V + "/vms")
        conn.getresponse().read()
    conn.close()
    # and a client that does not trust the certificate gets no answer either
    ctx = ssl.create_default_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        c = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=10)
        c.request("GET", V + "/vms")
    assert d.proc.poll() is None


def test_ipv6_listener(tls_daemon, tmp_path):
    try:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        port = s.getsockname()[1]
        s.close()
    except OSError:
        pytest.skip("no IPv6 loopback (::1) here")
    d = tls_daemon(listen=f"[::1]:{port}")
    tok = d.token("v6", "viewer")
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("::1", port, context=ctx, timeout=10)
    conn.request("GET", V + "/host", headers={"Authorization": f"Bearer {tok}"})
    r = conn.getresponse()
    assert r.status == 200 and json.loads(r.read())["hostname"], r.status
    conn.close()


def test_event_stream_over_tls(tls_daemon):
    d = tls_daemon()
    tok = d.token("watcher", "viewer")
    ctx = ssl.create_default_context(cafile=d.cert)
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, context=ctx, timeout=15)
    conn.request("GET", V + "/events?since=0", headers={"Authorization": f"Bearer {tok}"})
    r = conn.getresponse()
    assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
    # the stream goes on: a token made now shows up on it
    d.token("later", "viewer")
    seen, deadline = b"", time.monotonic() + 15
    while b'"name":"later"' not in seen:
        assert time.monotonic() < deadline, seen
        seen += r.fp.readline()
    assert b"event: token-created" in seen
    # berthd stops promptly with the stream open, and the stream ends
    t0 = time.monotonic()
    assert d.stop() == 0, d.log_text()
    assert time.monotonic() - t0 < 10
    while r.fp.readline():
        pass
    conn.close()


def cli(d, *args, token=None, cacert=True, timeout=60, env=None, **kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BERTH_")}
    e.update(env or {})
    argv = [BERTH, "--host", d.url]
    if token:
        argv += ["--token", token]
    if cacert:
        argv += ["--cacert", d.cert]
    p = subprocess.run(argv + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env=e, **kw)
    return Run(p)


def test_cli_token_verbs_and_errors(tls_daemon):
    d = tls_daemon()
    admin = d.token("boss", "admin")
    r = cli(d, "token", "create", "ci", "--role", "viewer", "--expires-days", "7", token=admin)
    assert r.rc == 0 and TOKEN_RE.match(r.out.strip()), r
    assert "the only time its secret is shown" in r.err, r
    viewer = r.out.strip()
    r = cli(d, "token", "create", "ci2", "--role", "operator", "--json", token=admin)
    assert r.rc == 0 and TOKEN_RE.match(r.json["token"]) and r.json["role"] == "operator", r
    r = cli(d, "token", "list", token=admin)
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "CREATED", "LAST", "USED", "EXPIRES"], r.out
    assert [ln.split()[1] for ln in lines[1:]] == ["boss", "ci", "ci2"], r.out
    assert viewer.split("_", 2)[2] not in r.out
    r = cli(d, "token", "list", "--json", token=admin)
    assert [t["name"] for t in r.json["tokens"]] == ["boss", "ci", "ci2"], r
    r = cli(d, "vm", "list", token=viewer)
    assert r.rc == 0 and r.out.split() == ["NAME", "STATE", "VCPUS", "MEMORY", "UUID"], r
    # 401: its own exit status and a hint; 403: 6; an untrusted certificate: 5
    line = one_error_line(cli(d, "vm", "list"), 7)
    assert "no Authorization: Bearer header" in line and "--token TOKEN" in line, line
    line = one_error_line(cli(d, "vm", "list", token="berth_9_" + "x" * 43), 7)
    assert "invalid, unknown or deleted" in line, line
    line = one_error_line(cli(d, "token", "list", token=viewer), 6)
    assert "needs the admin role (you have viewer)" in line, line
    line = one_error_line(cli(d, "vm", "list", token=viewer, cacert=False), 5)
    assert "no trusted TLS connection" in line and "--cacert" in line, line
    r = cli(d, "vm", "list", cacert=False,
            env={"BERTH_CACERT": d.cert, "BERTH_TOKEN": viewer})
    assert r.rc == 0, r
    r = cli(d, "token", "delete", "ci", token=admin)
    assert r.rc == 0 and r.out == "deleted token ci\n", r
    one_error_line(cli(d, "vm", "list", token=viewer), 7)
    one_error_line(cli(d, "token", "delete", "ci", token=admin), 3)
    one_error_line(cli(d, "token", "create", "x", token=admin), 2)  # --role is required


def remote_console(d, token, name, stdin=subprocess.PIPE, ticks=1):
    """berth vm console over HTTPS, once it has shown ticks; a console still held by a client
    that just went away (busy, exit 4) is retried while berthd notices the close."""
    deadline = time.monotonic() + 20
    while True:
        p = subprocess.Popen([BERTH, "--host", d.url, "--token", token, "--cacert", d.cert,
                              "vm", "console", name], stdin=stdin, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        seen = b""
        while len(TICK.findall(seen)) < ticks:
            assert time.monotonic() < deadline, (seen[-400:], p.poll())
            if not select.select([p.stdout], [], [], 1)[0]:
                continue
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            seen += chunk
        if len(TICK.findall(seen)) >= ticks:
            return p
        err = p.stderr.read().decode()
        assert p.wait(timeout=10) == 4 and "in use by another client" in err, err
        end(p)
        time.sleep(0.2)


def end(p):
    if p.poll() is None:
        p.kill()
    p.wait(timeout=10)
    for f in (p.stdout, p.stderr, p.stdin):
        if f:
            f.close()


@needs_kvm
def test_cli_remote_lifecycle_and_console(tmp_path, pki, run_dir):
    d = TlsBerthd(tmp_path, pki, run_dir=run_dir).start()
    try:
        admin, operator, viewer = d.token("a", "admin"), d.token("o", "operator"), d.token("v", "viewer")
        r = cli(d, "vm", "create", "far1", "--kernel", GUEST, "--cmdline", "test=ticker",
                "--memory", "64M", "--auto-start", "nothing", token=admin)
        assert r.rc == 0, r
        line = one_error_line(cli(d, "vm", "start", "far1", token=viewer), 6)
        assert "needs the operator role" in line, line
        r = cli(d, "vm", "start", "far1", token=operator)
        assert r.rc == 0 and r.out == "VM far1: running (booted)\n", r
        r = cli(d, "vm", "list", token=viewer)
        assert r.rc == 0 and re.search(r"^far1\s+running\b", r.out, re.M), r
        # the start's state changes name who asked
        db = sqlite3.connect(f"{d.state}/berth.db")
        try:
            states = [json.loads(x) for (x,) in db.execute(
                "SELECT detail FROM events WHERE kind = 'vm-state' ORDER BY id")]
        finally:
            db.close()
        assert [s["state"] for s in states] == ["starting", "running"], states
        for s in states:
            assert s["actor"]["token"]["name"] == "o" and s["actor"]["role"] == "operator", s
        # the console over HTTPS: the guest's ticks come through TLS and the upgraded stream
        p = remote_console(d, operator, "far1", ticks=3)
        end(p)
        # stdin at its end at once: berth says so (TLS close_notify) and goes on showing output
        p = remote_console(d, operator, "far1", stdin=subprocess.DEVNULL, ticks=3)
        assert p.poll() is None
        end(p)
        # a viewer watches too
        p = remote_console(d, viewer, "far1")
        end(p)
        # berthd stops promptly with a console attached over TLS; the client sees the end
        p = remote_console(d, operator, "far1")
        t0 = time.monotonic()
        assert d.stop() == 0, d.log_text()
        assert time.monotonic() - t0 < 10
        assert p.wait(timeout=10) == 0
        end(p)
        d.start()  # the VM ran on; the new berthd reattaches it
        assert vm(d, "far1")["state"] == "running"
        r = cli(d, "vm", "stop", "far1", "--turn-off", token=operator)
        assert r.rc == 0 and "off" in r.out, r
        assert vm(d, "far1")["state"] == "off"
        one_error_line(cli(d, "vm", "delete", "far1", "--yes", token=operator), 6)
        assert cli(d, "vm", "delete", "far1", "--yes", token=admin).rc == 0
    finally:
        try:
            for v in d.get(V + "/vms").json["vms"]:
                if v["state"] in ("running", "paused"):
                    d.post(f"{V}/vms/{v['uuid']}/turn-off?wait=true", None)
        finally:
            # a test that failed half-way (berthd stopped) leaves no busy guest behind
            for pid in vmm_pids_in(run_dir):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        assert d.stop() == 0, d.log_text()


GROUPS = {"viewer": "berthtv", "operator": "berthto"}
USERS = {"viewer": "berthuv", "operator": "berthuo", "none": "berthun"}


@pytest.fixture
def role_users():
    if os.geteuid() != 0:
        pytest.skip("creating groups and users (groupadd, useradd) needs root")
    if not shutil.which("groupadd") or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("groupadd, useradd or setpriv is missing")

    def cleanup():
        for u in USERS.values():
            subprocess.run(["userdel", u], capture_output=True)
        for g in GROUPS.values():
            subprocess.run(["groupdel", g], capture_output=True)

    cleanup()
    try:
        for g in GROUPS.values():
            subprocess.run(["groupadd", g], check=True, capture_output=True)
        for role, u in USERS.items():
            extra = ["-G", GROUPS[role]] if role in GROUPS else []
            subprocess.run(["useradd", "--no-create-home", "-s", "/usr/sbin/nologin", *extra, u],
                           check=True, capture_output=True)
        yield USERS
    finally:
        cleanup()


def as_user(user, d, *args):
    pw = pwd.getpwnam(user)
    # the socket by a path relative to its directory: the test's own directories are root's
    p = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
                        BERTH, "--socket", "berthd.sock"] + list(args), capture_output=True,
                       text=True, timeout=60, env={"PATH": os.environ["PATH"]}, cwd=d.rundir,
                       stdin=subprocess.DEVNULL)
    return Run(p)


def test_role_groups_on_the_unix_socket(tls_daemon, role_users):
    d = tls_daemon(extra=["--role-group", f"viewer={GROUPS['viewer']}",
                          "--role-group", f"operator={GROUPS['operator']}"])
    assert os.stat(d.sock).st_mode & 0o777 == 0o666
    r = d.post(V + "/vms", {"name": "g1", "memory_mib": 64, "boot": {"kernel": GUEST}})
    assert r.status == 201, r
    r = as_user(USERS["viewer"], d, "vm", "list")
    assert r.rc == 0 and re.search(r"^g1\s+off\b", r.out, re.M), r
    line = one_error_line(as_user(USERS["viewer"], d, "vm", "start", "g1"), 6)
    assert "needs the operator role (you have viewer)" in line, line
    # the operator passes the role check of an action (the VM is off: pausing it is refused)
    line = one_error_line(as_user(USERS["operator"], d, "vm", "pause", "g1"), 4)
    assert "is off" in line, line
    line = one_error_line(as_user(USERS["operator"], d, "vm", "delete", "g1", "--yes"), 6)
    assert "needs the admin role (you have operator)" in line, line
    line = one_error_line(as_user(USERS["none"], d, "vm", "list"), 6)
    assert "neither root nor in one of berthd's groups" in line, line


def test_role_group_must_exist(tmp_path, pki):
    p = subprocess.run([BERTHD, "--foreground", "--state-dir", str(tmp_path / "s"), "--socket",
                        str(tmp_path / "b.sock"), "--role-group", "viewer=no-such-group-here"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 1 and "no such group" in p.stderr, p.stderr
    p = subprocess.run([BERTHD, "--role-group", "superuser=root"], capture_output=True, text=True)
    assert p.returncode == 2 and "ROLE=GROUP" in p.stderr, p.stderr
