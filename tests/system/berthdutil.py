"""Run a real berthd in a test directory and talk to it over its unix socket; every response is
checked against the OpenAPI document the daemon serves."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

import jsonschema

from conftest import BUILD, ROOT

BERTHD = os.path.join(BUILD, "bin", "berthd")
OPENAPI_FILE = os.path.join(ROOT, "src", "daemon", "openapi.json")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket (the path may be relative to the cwd)."""

    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def to_json_schema(node, doc):
    """An OpenAPI 3.0 schema object as JSON Schema: $refs resolved against doc, nullable turned
    into a null type (and a null enum member)."""
    if isinstance(node, list):
        return [to_json_schema(n, doc) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return to_json_schema(target, doc)
    out = {}
    for k, v in node.items():
        if k in ("nullable", "example", "discriminator", "xml", "externalDocs", "deprecated"):
            continue
        if k in ("properties",):
            out[k] = {name: to_json_schema(s, doc) for name, s in v.items()}
        else:
            out[k] = to_json_schema(v, doc)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    return out


class OpenApi:
    def __init__(self, doc):
        self.doc = doc
        self.routes = []
        for template, item in doc["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")
            self.routes.append((rx, template, item))

    def operation(self, method, path):
        path = path.split("?", 1)[0]
        for rx, template, item in self.routes:
            if rx.match(path):
                op = item.get(method.lower())
                return template, op
        return None, None

    def response(self, method, path, status):
        template, op = self.operation(method, path)
        if template is None:  # refused before routing, or no such resource: an error body
            assert status in (401, 403, 404), f"{path} is not in the OpenAPI document, yet HTTP {status}"
            return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        if op is None:
            assert status == 405, f"{method} {path}: not in the document, yet HTTP {status}"
            return {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        resp = op["responses"].get(str(status))
        assert resp is not None, f"{method} {template}: HTTP {status} is not documented"
        if "$ref" in resp:
            resp = to_json_schema(resp, self.doc)
        return resp

    def validate_response(self, method, path, status, headers, body):
        resp = self.response(method, path, status)
        content = resp.get("content")
        if not content:
            assert body == b"", f"{method} {path} {status}: a body where none is documented"
            return
        ctype = headers.get("Content-Type", "").split(";")[0].strip()
        if "application/json" not in content:  # a text body (/metrics): its type is documented
            assert ctype in content, f"{method} {path} {status}: Content-Type {ctype} not documented"
            return
        assert ctype == "application/json", headers
        schema = to_json_schema(content["application/json"]["schema"], self.doc)
        data = json.loads(body)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=str)
        assert not errors, (f"{method} {path} {status}: the body does not match the OpenAPI "
                            f"schema: {[e.message + ' at ' + str(list(e.path)) for e in errors]}\n{data}")
        for name in resp.get("headers", {}):
            assert name in headers, f"{method} {path} {status}: header {name} missing"

    def validate_request(self, method, path, content_type, body):
        """A request berthd accepted must match the documented request body."""
        _, op = self.operation(method, path)
        schema = op["requestBody"]["content"][content_type.split(";")[0]]["schema"]
        errors = list(jsonschema.Draft7Validator(to_json_schema(schema, self.doc)).iter_errors(body))
        assert not errors, f"berthd accepted a body the document forbids: {errors[0].message}"


def load_openapi():
    with open(OPENAPI_FILE) as f:
        return OpenApi(json.load(f))


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def error(self):
        return self.json["error"]

    def __repr__(self):
        return f"HTTP {self.status} {dict(self.headers)} {self.body[:2000]!r}"


def raw_request(sock_path, method, path, body=None, headers=None, timeout=30):
    conn = UnixHTTPConnection(sock_path, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, r.headers, r.read())
    finally:
        conn.close()


class Berthd:
    """One berthd with its own state directory and socket."""

    def __init__(self, tmp_path, group=None, state_dir=None):
        self.dir = tmp_path
        self.state = str(state_dir or tmp_path / "state")
        self.rundir = tmp_path / "run"
        self.rundir.mkdir(exist_ok=True)
        os.chmod(self.rundir, 0o755)
        self.sock = str(self.rundir / "berthd.sock")
        self.group = group
        self.proc = None
        self.log = tmp_path / "berthd.log"
        self.api = load_openapi()

    def cmd(self):
        c = [BERTHD, "--foreground", "--state-dir", self.state, "--socket", self.sock]
        if self.group:
            c += ["--group", self.group]
        return c

    def start(self, expect_ready=True):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd(), stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=self.logf)
        if not expect_ready:
            return self
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"berthd exited with {self.proc.returncode}:\n{self.log_text()}")
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(self.sock)
                s.close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"berthd did not listen on {self.sock}:\n{self.log_text()}")

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=timeout)
        self.logf.close()
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=20)
        self.logf.close()

    def request(self, method, path, body=None, headers=None, content_type="application/json",
                validate=True):
        """body: a dict/list (sent as JSON), bytes/str (sent as is) or None."""
        hdrs = dict(headers or {})
        data = body
        if body is not None and not isinstance(body, (bytes, str)):
            data = json.dumps(body)
        if data is not None and content_type and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = content_type
        r = raw_request(self.sock, method, path, data, hdrs)
        if validate:
            self.api.validate_response(method, path, r.status, r.headers, r.body)
            if 200 <= r.status < 300 and isinstance(body, dict):
                self.api.validate_request(method, path, hdrs["Content-Type"], body)
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def patch(self, path, body, **kw):
        return self.request("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)
