"""berthd's Prometheus /metrics (parsed by a strict parser of the text format 0.0.4 written here)
and its server-sent event stream, against a real daemon, real VMMs and the test guest: names,
labels, types, escaping; counters that only grow; disk counters that follow the guest's writes; a
SIGSTOPped VMM that costs the scrape at most its 100 ms budget and is counted; events in order,
replay after Last-Event-ID and ?since=, the limit of 64 streams."""
import json
import math
import os
import re
import shutil
import signal
import socket
import tempfile
import time

import pytest

from berthdutil import raw_request
from test_berthd_lifecycle import V, act, create, daemon, run_dir, vm  # noqa: F401 (fixtures)

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*$")


def parse_labels(s, pos, line):
    """Labels from s[pos] == '{' to the closing '}': (dict, position after it)."""
    labels = {}
    pos += 1
    while s[pos] != "}":
        eq = s.index("=", pos)
        key = s[pos:eq]
        assert LABEL.match(key) and not key.startswith("__"), f"label name {key!r}: {line}"
        assert s[eq + 1] == '"', line
        i, val = eq + 2, []
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                assert esc in '\\"n', f"bad escape \\{esc}: {line}"
                val.append("\n" if esc == "n" else esc)
                i += 2
            else:
                assert s[i] != "\n", line
                val.append(s[i])
                i += 1
        assert key not in labels, f"label {key} twice: {line}"
        labels[key] = "".join(val)
        pos = i + 1
        if s[pos] == ",":
            pos += 1
        else:
            assert s[pos] == "}", line
    return labels, pos + 1


def parse(text):
    """Strict text exposition 0.0.4: {family: {"type", "help", "samples": {labels: value}}}."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    fams, current, seen_samples = {}, None, set()
    for line in text.splitlines():
        assert line.strip() == line and line, f"blank or padded line {line!r}"
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert NAME.match(name) and help_, line
            assert name not in fams, f"family {name} twice"
            fams[name] = {"help": help_, "type": None, "samples": {}}
            current = name
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            assert name == current and fams[name]["type"] is None and not fams[name]["samples"], line
            assert typ in ("counter", "gauge"), line
            fams[name]["type"] = typ
        else:
            assert not line.startswith("#"), line
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)", line)
            name, pos = m.group(1), m.end()
            labels = {}
            if line[pos] == "{":
                labels, pos = parse_labels(line, pos, line)
            assert line[pos] == " ", line
            value = float(line[pos + 1:])  # no timestamps
            assert not math.isnan(value), line
            assert name == current, f"{name} outside its family ({current}): {line}"
            f = fams[name]
            assert f["type"], f"{name}: sample before TYPE"
            if f["type"] == "counter":
                assert name.endswith("_total") or name.endswith("_info"), name
                assert value >= 0, line
            key = tuple(sorted(labels.items()))
            assert (name, key) not in seen_samples, f"series twice: {line}"
            seen_samples.add((name, key))
            f["samples"][key] = value
    for name, f in fams.items():
        assert f["type"], f"{name} without TYPE"
        assert name.startswith("berth_"), name
    return fams


def scrape(d):
    t0 = time.monotonic()
    r = raw_request(d.sock, "GET", "/metrics")
    dt = time.monotonic() - t0
    assert r.status == 200, r
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    return parse(r.body.decode()), dt


def value(fams, name, **labels):
    """The value of the one series of name whose labels include these (None if none)."""
    hits = [v for k, v in fams[name]["samples"].items()
            if all(dict(k).get(a) == b for a, b in labels.items())]
    assert len(hits) <= 1, (name, labels, hits)
    return hits[0] if hits else None


def test_parser_rejects_what_it_must():
    for bad in ["# HELP a_total x\n# TYPE a_total counter\na_total -1\n",      # counter < 0
                "# HELP a x\n# TYPE a gauge\na{x=\"\\q\"} 1\n",               # bad escape
                "# HELP a x\na 1\n",                                          # no TYPE
                "# HELP a x\n# TYPE a gauge\nb 1\n",                          # outside family
                "# HELP a x\n# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",   # series twice
                "# HELP a x\n# TYPE a counter\na 1\n",                        # counter not _total
                "# HELP a x\n# TYPE a gauge\na 1"]:                           # no final newline
        with pytest.raises((AssertionError, ValueError, IndexError)):
            parse(bad.replace("a", "berth_a").replace("berth_berth", "berth"))
    f = parse('# HELP berth_x h\n# TYPE berth_x gauge\nberth_x{p="a\\"b\\\\c\\nd"} 2\n')
    assert f["berth_x"]["samples"] == {(("p", 'a"b\\c\nd'),): 2.0}


def test_metrics_of_vms_and_daemon(daemon, run_dir):
    d = daemon()
    disk = os.path.join(run_dir, 'q"uo\\te.img')  # a path that needs escaping in a label
    with open(disk, "wb") as f:
        f.truncate(4 << 20)
    a = create(d, "io", cmdline="test=blk-fill,ticker", vcpus=2,
               disks=[{"path": disk, "format": "raw"}])
    b = create(d, "idle", memory_mib=128)
    f0, _ = scrape(d)
    assert value(f0, "berth_domain_info_state", domain="io", uuid=a["uuid"]) == 0
    assert value(f0, "berth_domain_info_vcpus", domain="io") == 2
    assert value(f0, "berth_domain_info_memory_bytes", domain="idle", uuid=b["uuid"]) == 128 << 20
    assert value(f0, "berth_domain_info_cpu_time_seconds_total", domain="io") is None  # no VMM
    assert value(f0, "berth_daemon_vms", state="off") == 2
    assert value(f0, "berth_daemon_up") == 1
    ((labels, one),) = f0["berth_daemon_build_info"]["samples"].items()
    assert one == 1 and dict(labels)["version"], labels

    act(d, "io", "start")
    deadline = time.monotonic() + 20
    while True:  # blk-fill writes the 4 MiB disk, then ticks
        f1, _ = scrape(d)
        wb = value(f1, "berth_domain_block_stats_write_bytes_total", domain="io",
                   target_device="vda", source_file=disk)
        if wb == 4 << 20 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wb == 4 << 20, f1["berth_domain_block_stats_write_bytes_total"]
    assert value(f1, "berth_domain_block_stats_write_requests_total", domain="io") == 64
    assert value(f1, "berth_domain_block_stats_flush_requests_total", domain="io") >= 4
    assert value(f1, "berth_domain_info_state", domain="io") == 2
    assert value(f1, "berth_daemon_vms", state="running") == 1
    assert value(f1, "berth_domain_stats_up", domain="io") == 1
    assert value(f1, "berth_domain_memory_rss_bytes", domain="io") > 1 << 20
    vcpus = {dict(k)["vcpu"] for k in f1["berth_domain_vcpu_time_seconds_total"]["samples"]}
    assert vcpus == {"0", "1"}
    assert value(f1, "berth_daemon_http_requests_total", code="201") == 2
    assert f1["berth_domain_interface_stats_receive_bytes_total"]["samples"] == {}  # no NICs

    time.sleep(1.0)
    f2, _ = scrape(d)
    for name, fam in f1.items():  # counters never go backwards
        if fam["type"] == "counter":
            for k, v in fam["samples"].items():
                assert f2[name]["samples"].get(k, -1) >= v, (name, k)
    assert (value(f2, "berth_domain_info_cpu_time_seconds_total", domain="io") >
            value(f1, "berth_domain_info_cpu_time_seconds_total", domain="io"))
    assert (value(f2, "berth_domain_vcpu_time_seconds_total", domain="io", vcpu="0") >
            value(f1, "berth_domain_vcpu_time_seconds_total", domain="io", vcpu="0"))
    assert value(f2, "berth_daemon_http_requests_total", code="200") > value(
        f1, "berth_daemon_http_requests_total", code="200")
    act(d, "io", "turn-off")
    f3, _ = scrape(d)
    assert value(f3, "berth_domain_info_state", domain="io") == 0
    assert value(f3, "berth_domain_block_stats_write_bytes_total", domain="io") is None


def test_a_stopped_vmm_does_not_stall_the_scrape(daemon):
    d = daemon()
    create(d, "frozen")
    create(d, "fine")
    act(d, "frozen", "start")
    act(d, "fine", "start")
    f0, _ = scrape(d)
    assert value(f0, "berth_daemon_scrape_errors_total") == 0
    pid = vm(d, "frozen")["vmm_pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        f1, dt = scrape(d)
        assert dt < 0.4, f"a scrape took {dt:.3f} s with a stopped VMM"
        assert value(f1, "berth_daemon_scrape_errors_total") == 1
        assert value(f1, "berth_domain_stats_up", domain="frozen") == 0
        assert value(f1, "berth_domain_stats_up", domain="fine") == 1
        assert value(f1, "berth_domain_vcpu_time_seconds_total", domain="frozen") is None
        assert value(f1, "berth_domain_vcpu_time_seconds_total", domain="fine") > 0
        # /proc still tells its CPU time and memory, and the state is what the inventory says
        assert value(f1, "berth_domain_info_cpu_time_seconds_total", domain="frozen") > 0
        assert value(f1, "berth_domain_info_state", domain="frozen") == 2
        f2, dt = scrape(d)
        assert dt < 0.4 and value(f2, "berth_daemon_scrape_errors_total") == 2
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(0.2)
    f3, _ = scrape(d)
    assert value(f3, "berth_domain_stats_up", domain="frozen") == 1
    assert value(f3, "berth_daemon_scrape_errors_total") == 2


class Stream:
    """A raw HTTP/1.1 client of GET /api/v1/events on berthd's socket, decoding chunks and events."""

    def __init__(self, sock_path, query="", headers=None):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.settimeout(10)
        self.s.connect(sock_path)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.s.sendall(f"GET {V}/events{query} HTTP/1.1\r\nHost: berthd\r\n{extra}\r\n".encode())
        self.raw = b""
        while b"\r\n\r\n" not in self.raw:
            data = self.s.recv(65536)
            assert data, "closed before the headers"
            self.raw += data
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.text = ""

    def body_json(self):
        import json
        n = int(self.headers["content-length"])
        while len(self.raw) < n:
            self.raw += self.s.recv(65536)
        return json.loads(self.raw[:n])

    def _fill(self, deadline):
        """Decode what arrived (chunked); False if nothing came before the deadline."""
        while True:
            if b"\r\n" in self.raw:
                size_line, rest = self.raw.split(b"\r\n", 1)
                size = int(size_line, 16)
                if len(rest) >= size + 2:
                    assert size > 0, "the stream ended"
                    self.text += rest[:size].decode()
                    self.raw = rest[size + 2:]
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.s.settimeout(left)
            try:
                data = self.s.recv(65536)
            except socket.timeout:
                return False
            assert data, "berthd closed the stream"
            self.raw += data

    def next(self, timeout=10):
        """The next message: a dict {id, event, data} or {"comment": text}; None on timeout."""
        import json
        deadline = time.monotonic() + timeout
        while "\n\n" not in self.text:
            if not self._fill(deadline):
                return None
        block, self.text = self.text.split("\n\n", 1)
        msg = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                msg.setdefault("comment", line[1:].strip())
                continue
            k, _, v = line.partition(": ")
            assert k in ("id", "event", "data") and k not in msg, block
            msg[k] = v
        if "data" in msg:
            msg["data"] = json.loads(msg["data"])
            assert msg["data"]["id"] == int(msg["id"]) and msg["data"]["kind"] == msg["event"]
        return msg

    def events(self, n, timeout=15):
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            m = self.next(max(0.01, deadline - time.monotonic()))
            assert m is not None, f"only {len(out)} of {n} events: {out}"
            if "id" in m:
                out.append(m)
        return out

    def close(self):
        self.s.close()


def test_event_stream_order_and_replay(daemon):
    d = daemon()
    s = Stream(d.sock)
    assert s.status == 200 and s.headers["content-type"] == "text/event-stream", s.headers
    assert s.next() == {"comment": "keep-alive"}  # the stream opens at once
    v = create(d, "ev")
    act(d, "ev", "start")
    evs = s.events(3)
    assert [e["event"] for e in evs] == ["vm-created", "vm-state", "vm-state"], evs
    ids = [int(e["id"]) for e in evs]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [e["data"]["detail"]["state"] for e in evs[1:]] == ["starting", "running"]
    assert evs[2]["data"]["vm"] == v["uuid"] and evs[2]["data"]["name"] == "ev"
    assert evs[2]["data"]["detail"]["previous"] == "starting"
    last = evs[-1]["id"]
    s.close()

    # while disconnected: pause, resume, turn off
    act(d, "ev", "pause")
    act(d, "ev", "resume")
    act(d, "ev", "turn-off")
    s = Stream(d.sock, headers={"Last-Event-ID": last})
    missed = s.events(4)
    assert int(missed[0]["id"]) == int(last) + 1
    assert [(e["data"]["detail"]["previous"], e["data"]["detail"]["state"]) for e in missed] == [
        ("running", "paused"), ("paused", "running"), ("running", "stopping"), ("stopping", "off")]
    assert s.next(timeout=0.5) in (None, {"comment": "keep-alive"})  # nothing more
    r = raw_request(d.sock, "PATCH", f"{V}/vms/ev", b'{"name": "ev2"}',
                    {"Content-Type": "application/json"})
    assert r.status == 200, r
    (e,) = s.events(1)
    assert e["event"] == "vm-renamed" and e["data"]["name"] == "ev2"
    s.close()

    # ?since=0 replays everything; ?since=<time> what happened from then on
    s = Stream(d.sock, "?since=0")
    allev = s.events(8)
    assert [e["event"] for e in allev][:2] == ["vm-created", "vm-state"]
    s.close()
    ts = allev[4]["data"]["ts"]
    s = Stream(d.sock, "?since=" + ts)
    assert s.events(1)[0]["id"] == allev[4]["id"]
    s.close()
    for q, h in (("?since=yesterday", {}), ("", {"Last-Event-ID": "x1"}), ("?x=1", {})):
        s = Stream(d.sock, q, h)
        assert s.status == 400 and s.body_json()["error"]["code"] in (
            "invalid-argument", "unknown-field"), (q, h)
        s.close()


def test_event_streams_are_limited(daemon):
    d = daemon()
    streams = [Stream(d.sock) for _ in range(64)]
    try:
        for s in streams:
            assert s.status == 200
        extra = Stream(d.sock)
        assert extra.status == 503, extra.headers
        assert extra.body_json()["error"]["code"] == "too-many-streams"
        extra.close()
        f, _ = scrape(d)
        assert value(f, "berth_daemon_event_streams") == 64
        # a client that goes away frees its place when the stream next writes (an event here)
        streams.pop().close()
        create(d, "wake")
        deadline = time.monotonic() + 10
        while True:
            s = Stream(d.sock)
            if s.status == 200 or time.monotonic() > deadline:
                break
            s.close()
            time.sleep(0.1)
        assert s.status == 200
        streams.append(s)
        for s in streams[:3]:  # every stream saw the event
            assert s.events(1)[0]["event"] == "vm-created"
    finally:
        for s in streams:
            s.close()


def test_keep_alive_every_15_s_frees_gone_clients(daemon):
    """The ticker's keep-alive reaches an idle stream within 15 s, and writing it finds clients
    that went away: their places among the 64 are free again without any event."""
    d = daemon()
    streams = [Stream(d.sock) for _ in range(64)]
    try:
        first = streams[0]
        assert first.next() == {"comment": "keep-alive"}
        t0 = time.monotonic()
        for s in streams[-4:]:
            s.close()
        del streams[-4:]
        assert first.next(timeout=17) == {"comment": "keep-alive"}
        assert time.monotonic() - t0 <= 16
        deadline = time.monotonic() + 3
        while True:
            s = Stream(d.sock)
            if s.status == 200 or time.monotonic() > deadline:
                break
            s.close()
            time.sleep(0.05)
        assert s.status == 200, "a gone client still holds its place after the keep-alive"
        streams.append(s)
    finally:
        for s in streams:
            s.close()


def test_nic_counters_follow_the_traffic(tmp_path):
    """A VM on an internal switch exchanges datagrams and pings with the host (in berthd's network
    namespace): its NIC's counters in /metrics count them, and never exceed what the kernel saw on
    the TAP's other side."""
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        pytest.skip("needs root, /dev/net/tun and iproute2")
    import test_berthd_switches as sw
    ns = sw.Netns()
    ns.sh("ip", "link", "set", "lo", "up")
    os.makedirs(sw.SCRATCH, exist_ok=True)
    run = tempfile.mkdtemp(prefix="r", dir=sw.SCRATCH)
    os.chmod(run, 0o755)
    d = sw.NsBerthd(tmp_path, ns, run).start()
    try:
        sw.mkswitch(d, {"name": "hostnet", "kind": "internal", "address": f"{sw.NET}.1/24"})
        v = sw.mkvm(d, "g", [{"switch": "hostnet"}], sw.host_args(f"{sw.NET}.2", f"{sw.NET}.1"))
        con = sw.Console(d, sw.start(d, "g"))
        sw.host_peer(ns, f"{sw.NET}.2", f"{sw.NET}.1", con)
        f, _ = scrape(d)
        tap = "bt%s-0" % v["uuid"][:8]
        mac = vm(d, "g")["nics"][0]["mac"]
        lab = dict(domain="g", target_device=tap, switch="hostnet", mac=mac)
        m = {k: value(f, f"berth_domain_interface_stats_{k}_total", **lab)
             for k in ("receive_bytes", "receive_packets", "transmit_bytes", "transmit_packets",
                       "receive_drops", "transmit_drops")}
        assert m["transmit_packets"] >= sw.COUNT, m          # the guest's datagrams
        assert m["receive_packets"] >= sw.HOST_SENDS + 3, m  # the host's datagrams and pings
        assert m["transmit_bytes"] > 64 * m["transmit_packets"] // 2 and m["receive_bytes"] > 0, m
        assert m["receive_drops"] == 0 and m["transmit_drops"] == 0, m
        st = json.loads(ns.sh("ip", "-s", "-j", "link", "show", tap).stdout)[0]["stats64"]
        # the kernel's view from the host side: what it sent the VMM (tx) and received from it (rx)
        assert m["receive_packets"] <= st["tx"]["packets"] and m["transmit_packets"] <= st["rx"]["packets"]
        assert m["transmit_packets"] >= st["rx"]["packets"] - 2, (m, st)  # nothing lost on the way
    finally:
        if d.proc.poll() is None:
            for x in d.get(V + "/vms").json["vms"]:
                if x["state"] in ("running", "paused"):
                    d.post(f"{V}/vms/{x['uuid']}/turn-off?wait=true", None)
            d.stop()
        ns.delete()
        shutil.rmtree(run, ignore_errors=True)
