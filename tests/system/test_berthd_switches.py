"""berthd's virtual switches against a real daemon run inside a network namespace the test makes
(`ip netns exec`), so bridges, TAPs and veths never touch the host's network: the switches API
(checked against the OpenAPI document), the bridges, addresses, uplinks and VLANs it makes, NICs
with MACs from the pool, and real VMs (the test guest's `test=net`, as in test_guest_net.py)
exchanging frames over private, internal, external and VLAN-separated switches; a restart of
berthd recreates a bridge deleted behind its back and puts the running VMs' TAPs back on it."""
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from berthdutil import BERTHD, Berthd
from conftest import GUEST as _GUEST, VMM, kvm_usable
from test_guest_net import (COUNT, HOST_SENDS, KV, PORT, RESULT, Netns, check_payload,
                            guest_payload_len, icmp_ping, make_payload)

V = "/api/v1"
SCRATCH = "/work/scratch/sw"
GUEST = os.path.abspath(_GUEST)
NET = "10.77.0"

needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")


@pytest.fixture(autouse=True)
def _need_env():
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, bridges, TAPs)")
    if not os.path.exists("/dev/net/tun") or not shutil.which("ip"):
        pytest.skip("needs /dev/net/tun and iproute2")
    for f in (BERTHD, VMM, GUEST):
        if not os.path.exists(f):
            pytest.fail(f"{f} is missing: build first (./scripts/build)")


class NsBerthd(Berthd):
    """A berthd in the test's network namespace, with a short run directory."""

    def __init__(self, tmp_path, ns, run_dir):
        super().__init__(tmp_path)
        self.ns, self.run_dir, self.extra = ns, run_dir, []

    def cmd(self):
        return (["ip", "netns", "exec", self.ns.name] + super().cmd() + ["--run-dir", self.run_dir]
                + self.extra)

    def start(self):
        mark = len(self.log_text())
        super().start()
        deadline = time.monotonic() + 20
        while f"ready (pid {self.proc.pid})" not in self.log_text()[mark:]:
            assert self.proc.poll() is None, f"berthd exited:\n{self.log_text()}"
            assert time.monotonic() < deadline, self.log_text()
            time.sleep(0.02)
        return self


@pytest.fixture
def ns():
    n = Netns()
    n.sh("ip", "link", "set", "lo", "up")
    yield n
    n.delete()


@pytest.fixture
def env(tmp_path, ns):
    os.makedirs(SCRATCH, exist_ok=True)
    run_dir = tempfile.mkdtemp(prefix="r", dir=SCRATCH)
    os.chmod(run_dir, 0o755)
    d = NsBerthd(tmp_path, ns, run_dir).start()
    yield d
    pids = []
    if d.proc.poll() is None:
        for vm in d.get(V + "/vms").json["vms"]:
            if vm["state"] in ("running", "paused"):
                d.post(f"{V}/vms/{vm['uuid']}/turn-off?wait=true", None)
            if vm["vmm_pid"]:
                pids.append(vm["vmm_pid"])
        assert d.stop() == 0, d.log_text()
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(run_dir, ignore_errors=True)


def link(ns, name):
    """`ip -d -j link show NAME` in the namespace, or None."""
    r = ns.sh("ip", "-d", "-j", "link", "show", name, check=False)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def addrs(ns, name):
    r = ns.sh("ip", "-j", "-4", "addr", "show", "dev", name)
    return [f"{a['local']}/{a['prefixlen']}" for i in json.loads(r.stdout) for a in i["addr_info"]]


def port_vlans(ns, port):
    """{vid: flags} of a bridge port."""
    out = json.loads(ns.sh("bridge", "-j", "vlan", "show", "dev", port).stdout)
    return {v["vlan"]: v.get("flags", []) for p in out if p["ifname"] == port for v in p["vlans"]}


def kernel_filters_vlans(ns):
    """Whether the kernel has bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)."""
    r = ns.sh("ip", "link", "add", "vftest", "type", "bridge", "vlan_filtering", "1", check=False)
    ns.sh("ip", "link", "del", "vftest", check=False)
    return r.returncode == 0


def mkswitch(d, body, status=201):
    r = d.post(V + "/switches", body)
    assert r.status == status, r
    return r.json


def mkvm(d, name, nics, cmdline="test=ticker"):
    body = {"name": name, "memory_mib": 128, "auto_start": "nothing", "nics": nics,
            "boot": {"kernel": GUEST, "cmdline": cmdline}}
    r = d.post(V + "/vms", body)
    assert r.status == 201, r
    return r.json


def start(d, name):
    r = d.post(f"{V}/vms/{name}/start?wait=true", None)
    assert r.status == 200 and r.json["state"] == "succeeded", f"{r}\n{d.log_text()[-3000:]}"
    return d.get(f"{V}/vms/{name}").json


class Console:
    """The VM's serial console. The guests end with `halt` rather than `poweroff`, so the VMM
    stays until the test has read the result (then the VM is turned off); the result is read from
    the console's replay of the guest's output (the VMM replays the last 64 KiB to each new
    client), reconnecting until the guest has halted."""

    def __init__(self, d, vm):
        self.path = os.path.join(d.run_dir, vm["uuid"] + ".console")
        self.text = ""

    def _read_once(self):
        s = socket.socket(socket.AF_UNIX)
        s.connect(self.path)
        s.settimeout(0.3)
        buf = b""
        try:
            while True:
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        return buf.decode(errors="replace")

    def read_until_closed(self, timeout=120):
        """Until the guest has halted (its last line), at most timeout s."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self._read_once()
            if text:
                self.text = text
            if "berth-test halt PASS" in self.text:
                break
            time.sleep(0.3)
        return self

    def result(self, name="net"):
        got = []
        for raw in self.text.replace("\r", "").split("\n"):
            i = raw.find("berth-test ")
            m = RESULT.match(raw[i:]) if i >= 0 else None
            if m and m.group(1) == name:
                got.append(m)
        assert len(got) == 1, f"expected one result line for {name}:\n{self.text[-4000:]}"
        return got[0].group(2), dict(KV.findall(got[0].group(3)))

    def info_mac(self):
        m = re.search(r"berth-info net mac=(\S+)", self.text)
        assert m, self.text[-3000:]
        return m.group(1)


def net_cmdline(ip, peer, extra):
    return f"test=net,halt ip={ip} peer={peer} count={COUNT} {extra}"


def run_pair(d, nics_a, nics_b, others=()):
    """VMs a (.2) and b (.3) send each other COUNT datagrams and echo the other's; others are
    (name, nics, ip, peer) of VMs that try, for 8 s, to reach peer. Returns the consoles, in
    that order."""
    extra = f"expect={COUNT} expect_echo={COUNT} secs=60"
    specs = [("a", nics_a, net_cmdline(f"{NET}.2", f"{NET}.3", extra)),
             ("b", nics_b, net_cmdline(f"{NET}.3", f"{NET}.2", extra))]
    specs += [(n, nics, net_cmdline(ip, peer, "expect=1 secs=8")) for n, nics, ip, peer in others]
    vms = [mkvm(d, n, nics, cmd) for n, nics, cmd in specs]
    for v in vms:
        start(d, v["name"])
    cons = [Console(d, v).read_until_closed() for v in vms]
    for v, c in zip(vms, cons):
        assert c.info_mac() == v["nics"][0]["mac"], "the guest sees the MAC berthd assigned"
    for c in cons[:2]:
        status, kv = c.result()
        assert status == "PASS", f"{kv}\n{c.text[-3000:]}\n{d.log_text()[-2000:]}"
        assert int(kv["tx"]) == COUNT and int(kv["rx"]) == COUNT and int(kv["echo"]) == COUNT, kv
    for v in vms:
        assert d.post(f"{V}/vms/{v['name']}/turn-off?wait=true", None).json["state"] == "succeeded"
    return cons


def host_peer(peer_ns, guest_ip, host_ip, console):
    """Inside peer_ns, bound to host_ip: receive the guest's datagrams, ping it, send datagrams
    and check the echoes, then the guest's own verdict."""
    seqs = set()
    with peer_ns.inside():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host_ip, PORT))
        s.settimeout(1.0)
        try:
            end = time.monotonic() + 60
            while len(seqs) < COUNT and time.monotonic() < end:
                try:
                    data, (src, sport) = s.recvfrom(65536)
                except socket.timeout:
                    continue
                assert (src, sport) == (guest_ip, PORT), f"datagram from {src}:{sport}"
                seq, why = check_payload(data, guest_ip)
                assert why is None, f"guest datagram damaged: {why}"
                assert len(data) == guest_payload_len(seq)
                seqs.add(seq)
            assert seqs == set(range(COUNT)), f"guest datagrams received: {sorted(seqs)}"
            for i in range(3):
                assert icmp_ping(guest_ip, i + 1), f"no ping reply {i + 1}"
            for k in range(HOST_SENDS):
                msg = make_payload(host_ip, 1000 + k, 1472 if k == HOST_SENDS - 1 else 32 + 150 * k)
                for _ in range(3):
                    s.sendto(msg, (guest_ip, PORT))
                    try:
                        echo, src = s.recvfrom(65536)
                    except socket.timeout:
                        continue
                    assert src == (guest_ip, PORT) and echo == msg, f"bad echo of datagram {k}"
                    break
                else:
                    pytest.fail(f"no echo for host datagram {k}")
        finally:
            s.close()
    console.read_until_closed()
    status, kv = console.result()
    assert status == "PASS", f"{kv}\n{console.text[-3000:]}"
    assert int(kv["icmp"]) >= 3 and int(kv["rx"]) >= HOST_SENDS, kv


def host_args(guest_ip, host_ip):
    return net_cmdline(guest_ip, host_ip, f"expect={HOST_SENDS} secs=60")


# ---- the API, bridges, addresses, uplinks ---------------------------------------------------------------------

def test_switches_create_list_show_delete(env, ns):
    d = env
    ns.sh("ip", "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
    mode = "filtering" if kernel_filters_vlans(ns) else "bridge-per-vlan"
    priv = mkswitch(d, {"name": "lab", "kind": "private"})
    intl = mkswitch(d, {"name": "hostnet", "kind": "internal", "address": f"{NET}.1/24"})
    ext = mkswitch(d, {"name": "uplink", "kind": "external", "host_nic": "up0"})
    assert priv["host_nic"] is None and priv["address"] is None and priv["bridge_present"]
    assert intl["address"] == f"{NET}.1/24" and ext["host_nic"] == "up0"
    assert [s["name"] for s in d.get(V + "/switches").json["switches"]] == ["hostnet", "lab", "uplink"]
    for sw in (priv, intl, ext):
        assert d.get(f"{V}/switches/{sw['uuid']}").json == sw
        r = d.get(f"{V}/switches/{sw['name']}")
        assert r.json == sw and r.headers["ETag"] == '"1"'
        br = link(ns, sw["bridge"])
        assert br and br["linkinfo"]["info_kind"] == "bridge" and "UP" in br["flags"], br
        assert sw["vlan_mode"] == mode, sw
        assert br["linkinfo"]["info_data"]["vlan_filtering"] == (mode == "filtering"), br
    assert addrs(ns, intl["bridge"]) == [f"{NET}.1/24"]
    assert addrs(ns, priv["bridge"]) == []
    up0 = link(ns, "up0")
    assert up0["master"] == ext["bridge"] and "UP" in up0["flags"], up0
    # what a host NIC must be
    for body, field, status in [
        ({"name": "x", "kind": "external", "host_nic": "nope0"}, "host_nic", 400),
        ({"name": "x", "kind": "external", "host_nic": "lo"}, "host_nic", 400),
        ({"name": "x", "kind": "external", "host_nic": priv["bridge"]}, "host_nic", 400),
        ({"name": "x", "kind": "external", "host_nic": "up0"}, "host_nic", 400),  # a port already
        ({"name": "lab", "kind": "private"}, "name", 409),
    ]:
        r = d.post(V + "/switches", body)
        assert r.status == status and r.error["field"] == field, r
    # delete: the bridge goes, an uplink is released
    for sw in (priv, intl, ext):
        assert d.delete(f"{V}/switches/{sw['name']}").status == 204
        assert link(ns, sw["bridge"]) is None
    assert "master" not in link(ns, "up0")
    assert d.get(V + "/switches").json == {"switches": []}
    assert d.delete(V + "/switches/lab").status == 404
    assert d.get(V + "/switches/lab").status == 404


BAD_SWITCHES = [
    ({"kind": "private"}, "invalid-argument", "name"),
    ({"name": "-x", "kind": "private"}, "invalid-argument", "name"),
    ({"name": "x"}, "invalid-argument", "kind"),
    ({"name": "x", "kind": "public"}, "invalid-argument", "kind"),
    ({"name": "x", "kind": "external"}, "invalid-argument", "host_nic"),
    ({"name": "x", "kind": "internal"}, "invalid-argument", "address"),
    ({"name": "x", "kind": "internal", "address": "10.0.0.1"}, "invalid-argument", "address"),
    ({"name": "x", "kind": "internal", "address": "10.0.0.1/33"}, "invalid-argument", "address"),
    ({"name": "x", "kind": "internal", "address": "10.0.0/24"}, "invalid-argument", "address"),
    ({"name": "x", "kind": "private", "address": "10.0.0.1/24"}, "invalid-argument", "address"),
    ({"name": "x", "kind": "private", "host_nic": "lo"}, "invalid-argument", "host_nic"),
    ({"name": "x", "kind": "private", "vlan": 3}, "unknown-field", "vlan"),
    ({"name": "x", "kind": "private", "bridge": "br0"}, "invalid-argument", "bridge"),
    ({"name": 7, "kind": "private"}, "invalid-argument", "name"),
]


def test_switch_validation_names_the_field(env):
    for body, code, field in BAD_SWITCHES:
        r = env.post(V + "/switches", body)
        assert r.status == 400 and r.error["code"] == code and r.error["field"] == field, (body, r)
    assert env.get(V + "/switches").json == {"switches": []}


def test_mac_pool_and_switch_in_use(env, ns):
    d = env
    sw = mkswitch(d, {"name": "lab", "kind": "private"})
    mkswitch(d, {"name": "lab2", "kind": "private"})
    macs = []
    for i in range(13):  # 52 NICs
        vm = mkvm(d, f"vm{i}", [{"switch": "lab"}, {"switch": "lab2", "vlan": 5},
                                {"switch": sw["uuid"]}, {"switch": "lab"}])
        assert [n["switch"] for n in vm["nics"]] == ["lab", "lab2", "lab", "lab"]
        assert [n["vlan"] for n in vm["nics"]] == [None, 5, None, None]
        macs += [n["mac"] for n in vm["nics"]]
    assert len(macs) == 52 and len(set(macs)) == 52, macs
    for m in macs:
        assert re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", m), m
        assert int(m[:2], 16) & 2 and not int(m[:2], 16) & 1, "locally administered unicast"
    # a MAC given must not be another VM's; one VM must not use one twice
    r = d.post(V + "/vms", {"name": "dup", "boot": {"kernel": GUEST},
                            "nics": [{"switch": "lab"}, {"switch": "lab", "mac": macs[7].upper()}]})
    assert r.status == 409 and r.error["code"] == "conflict" and r.error["field"] == "nics[1].mac", r
    r = d.post(V + "/vms", {"name": "dup", "boot": {"kernel": GUEST},
                            "nics": [{"switch": "lab", "mac": "02:00:00:00:00:01"},
                                     {"switch": "lab", "mac": "02:00:00:00:00:01"}]})
    assert r.status == 400 and r.error["field"] == "nics[1].mac", r
    r = d.post(V + "/vms", {"name": "dup", "boot": {"kernel": GUEST}, "nics": [{"switch": "nope"}]})
    assert r.status == 400 and r.error["field"] == "nics[0].switch", r
    # stable: a list rewritten without MACs keeps the NICs' addresses; a NIC added gets a new one
    vm0 = d.get(V + "/vms/vm0").json
    r = d.patch(V + "/vms/vm0", {"nics": [{"switch": "lab"}, {"switch": "lab2", "vlan": 5},
                                          {"switch": "lab"}, {"switch": "lab"}]})
    assert r.status == 200 and r.json["nics"] == vm0["nics"] and r.json["generation"] == 1, r
    r = d.patch(V + "/vms/vm0", {"nics": [{"switch": "lab2"}]})
    assert r.status == 200 and r.json["nics"][0]["mac"] == vm0["nics"][0]["mac"], r
    # in use: refused, naming the VMs; free once they are gone
    r = d.delete(V + "/switches/lab")
    assert r.status == 409 and r.error["code"] == "in-use" and "'vm1'" in r.error["message"], r
    assert link(ns, sw["bridge"]) is not None
    for i in range(1, 13):
        assert d.delete(f"{V}/vms/vm{i}").status == 204
    assert d.delete(V + "/switches/lab").status == 204
    assert d.delete(V + "/switches/lab2").status == 409  # vm0 is still on it
    # the pool's MACs went into the stored spec: they survive a restart
    d.stop()
    d.start()
    assert d.get(V + "/vms/vm0").json["nics"][0]["mac"] == vm0["nics"][0]["mac"]


# ---- VMs on switches ------------------------------------------------------------------------------------------

@needs_kvm
def test_two_vms_on_a_private_switch_exchange_frames(env, ns):
    sw = mkswitch(env, {"name": "lab", "kind": "private"})
    run_pair(env, [{"switch": "lab"}], [{"switch": "lab"}])
    assert addrs(ns, sw["bridge"]) == []
    # the TAPs went with their VMMs
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [
            l for l in json.loads(ns.sh("ip", "-j", "link").stdout) if l["ifname"].startswith("bt")]:
        time.sleep(0.05)
    assert not [l for l in json.loads(ns.sh("ip", "-j", "link").stdout) if l["ifname"].startswith("bt")]


@needs_kvm
def test_vlans_separate_vms_on_one_switch(env, ns):
    mkswitch(env, {"name": "lab", "kind": "private"})
    # a and b (VLAN 10) talk; c (VLAN 20) and d (VLAN 10) try to for 8 s, answering ARP all
    # along, and never hear each other
    cons = run_pair(env, [{"switch": "lab", "vlan": 10}], [{"switch": "lab", "vlan": 10}],
                    others=[("c", [{"switch": "lab", "vlan": 20}], f"{NET}.4", f"{NET}.5"),
                            ("d", [{"switch": "lab", "vlan": 10}], f"{NET}.5", f"{NET}.4")])
    for c in cons[2:]:
        status, kv = c.result()
        assert status == "FAIL" and kv["reason"].strip('"').startswith("peer-not-resolved"), kv
        assert int(kv["arp_sent"]) > 0 and kv["tx"] == "0" and kv["arp"] == "0", kv


@needs_kvm
def test_vlan_ports_are_access_ports(env, ns):
    sw = mkswitch(env, {"name": "lab", "kind": "private"})
    vm = mkvm(env, "v", [{"switch": "lab", "vlan": 42}, {"switch": "lab"}])
    start(env, "v")
    taps = {l["ifname"]: l for l in json.loads(ns.sh("ip", "-d", "-j", "link").stdout)
            if l["ifname"].startswith("bt" + vm["uuid"][:8])}
    assert sorted(taps) == ["bt%s-0" % vm["uuid"][:8], "bt%s-1" % vm["uuid"][:8]], taps
    for t in taps.values():
        assert t["linkinfo"]["info_kind"] == "tun", t
    if kernel_filters_vlans(ns):
        assert taps["bt%s-0" % vm["uuid"][:8]]["master"] == sw["bridge"]
        v0, v1 = (port_vlans(ns, "bt%s-%d" % (vm["uuid"][:8], i)) for i in (0, 1))
        assert list(v0) == [42] and {"PVID", "Egress Untagged"} <= set(v0[42]), v0
        assert list(v1) == [1] and "PVID" in v1[1], v1
    else:  # a bridge per VLAN
        assert taps["bt%s-0" % vm["uuid"][:8]]["master"] == sw["bridge"] + "v42", taps
        assert link(ns, sw["bridge"] + "v42")["linkinfo"]["info_kind"] == "bridge"
    assert taps["bt%s-1" % vm["uuid"][:8]]["master"] == sw["bridge"], taps
    # the VMM holds the TAPs; it has no CAP_NET_ADMIN need: berthd set them up
    pid = env.get(V + "/vms/v").json["vmm_pid"]
    fds = [os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")]
    assert fds.count("/dev/net/tun") >= 2, fds
    assert env.post(V + "/vms/v/turn-off?wait=true", None).json["state"] == "succeeded"
    deadline = time.monotonic() + 5
    while link(ns, "bt%s-0" % vm["uuid"][:8]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert link(ns, "bt%s-0" % vm["uuid"][:8]) is None, "the TAP goes with the VMM"
    assert env.delete(V + "/vms/v").status == 204
    assert env.delete(V + "/switches/lab").status == 204
    assert link(ns, sw["bridge"]) is None and link(ns, sw["bridge"] + "v42") is None


@needs_kvm
def test_internal_switch_lets_the_host_reach_the_vm(env, ns):
    mkswitch(env, {"name": "hostnet", "kind": "internal", "address": f"{NET}.1/24"})
    mkvm(env, "g", [{"switch": "hostnet"}], host_args(f"{NET}.2", f"{NET}.1"))
    con = Console(env, start(env, "g"))
    host_peer(ns, f"{NET}.2", f"{NET}.1", con)


def fdb_static(ns, port):
    """The static (user-added) MAC addresses of a bridge port."""
    out = json.loads(ns.sh("bridge", "-j", "fdb", "show", "dev", port).stdout)
    return {e["mac"] for e in out if "static" in e.get("state", "") and "master" in e}


@needs_kvm
def test_mac_spoofing_is_blocked_unless_allowed(env, ns):
    """A guest that sends from another MAC than its NIC's gets nothing through a locked port; with
    mac_spoofing: true the same guest reaches the host."""
    spoofed = "52:54:00:5a:5a:01"
    mkswitch(env, {"name": "hostnet", "kind": "internal", "address": f"{NET}.1/24"})
    # protected (the default): the guest's ARP requests from the spoofed MAC never reach the host
    vm = mkvm(env, "g", [{"switch": "hostnet"}],
              net_cmdline(f"{NET}.2", f"{NET}.1", f"expect=1 secs=6 spoof_mac={spoofed}"))
    assert vm["nics"][0]["mac_spoofing"] is False
    con = Console(env, start(env, "g"))
    tap = "bt%s-0" % vm["uuid"][:8]
    port = link(ns, tap)["linkinfo"]["info_slave_data"]
    assert port["locked"] is True and port["learning"] is False, port
    assert fdb_static(ns, tap) == {vm["nics"][0]["mac"]}
    con.read_until_closed()
    status, kv = con.result()
    assert con.info_mac() == spoofed
    assert status == "FAIL" and "peer-not-resolved" in con.text, f"{kv}\n{con.text[-2000:]}"
    neigh = ns.sh("ip", "neigh", "show", f"{NET}.2").stdout
    assert spoofed not in neigh, f"the spoofed MAC reached the host: {neigh}"
    assert env.post(V + "/vms/g/turn-off?wait=true", None).status == 200
    # allowed: the same guest talks to the host from the spoofed MAC
    r = env.patch(V + "/vms/g", {"nics": [{"switch": "hostnet", "mac_spoofing": True}],
                                 "boot": {"kernel": GUEST, "cmdline": host_args(f"{NET}.2", f"{NET}.1")
                                          + f" spoof_mac={spoofed}"}})
    assert r.status == 200 and r.json["nics"][0]["mac_spoofing"] is True, r
    con = Console(env, start(env, "g"))
    port = link(ns, tap)["linkinfo"]["info_slave_data"]
    assert port["locked"] is False and port["learning"] is True, port
    host_peer(ns, f"{NET}.2", f"{NET}.1", con)
    assert spoofed in ns.sh("ip", "neigh", "show", f"{NET}.2").stdout


def test_mac_spoofing_must_be_a_boolean(env):
    mkswitch(env, {"name": "lab", "kind": "private"})
    r = env.post(V + "/vms", {"name": "x", "boot": {"kernel": GUEST},
                              "nics": [{"switch": "lab", "mac_spoofing": "yes"}]})
    assert r.status == 400 and r.error["field"] == "nics[0].mac_spoofing", r


@needs_kvm
def test_external_switch_bridges_a_host_nic(env, ns):
    """The uplink is a veth whose other end is in a second namespace (the outside network)."""
    outside = Netns()
    try:
        ns.sh("ip", "link", "add", "up0", "type", "veth", "peer", "name", "out0", "netns", outside.name)
        outside.sh("ip", "addr", "add", f"{NET}.1/24", "dev", "out0")
        outside.sh("ip", "link", "set", "out0", "up")
        outside.sh("ip", "link", "set", "lo", "up")
        sw = mkswitch(env, {"name": "uplink", "kind": "external", "host_nic": "up0"})
        assert link(ns, "up0")["master"] == sw["bridge"]
        mkvm(env, "g", [{"switch": "uplink"}], host_args(f"{NET}.2", f"{NET}.1"))
        con = Console(env, start(env, "g"))
        host_peer(outside, f"{NET}.2", f"{NET}.1", con)
    finally:
        outside.delete()


@needs_kvm
def test_restart_recreates_a_deleted_bridge_and_keeps_running_vms_on_it(env, ns):
    d = env
    sw = mkswitch(d, {"name": "hostnet", "kind": "internal", "address": f"{NET}.1/24"})
    vm = mkvm(d, "g", [{"switch": "hostnet", "vlan": 7}])
    start(d, "g")
    pid = d.get(V + "/vms/g").json["vmm_pid"]
    tap = "bt%s-0" % vm["uuid"][:8]
    vbr = sw["bridge"] if kernel_filters_vlans(ns) else sw["bridge"] + "v7"
    assert link(ns, tap)["master"] == vbr
    assert d.stop() == 0
    ns.sh("ip", "link", "del", vbr)
    ns.sh("ip", "link", "del", sw["bridge"], check=False)
    assert link(ns, tap) and "master" not in link(ns, tap)
    d.start()
    br = link(ns, sw["bridge"])
    assert br and "UP" in br["flags"], br
    assert br["linkinfo"]["info_data"]["vlan_filtering"] == kernel_filters_vlans(ns), br
    assert addrs(ns, sw["bridge"]) == [f"{NET}.1/24"]
    got = d.get(V + "/vms/g").json
    assert got["state"] == "running" and got["vmm_pid"] == pid, got
    if kernel_filters_vlans(ns):
        assert link(ns, tap)["master"] == sw["bridge"], "the running VM's TAP is back on the bridge"
        assert 7 in port_vlans(ns, tap)
    else:
        assert link(ns, tap)["master"] == sw["bridge"] + "v7", "the TAP is back on its VLAN's bridge"
    assert d.get(V + "/switches/hostnet").json["bridge_present"]


@needs_kvm
def test_save_and_restore_keep_the_nics(env, ns):
    """A saved VM's configuration names its TAPs by descriptor (fd=3, fd=4): a restore gets new
    TAPs at the same numbers, on the same switches."""
    d = env
    sw = mkswitch(d, {"name": "lab", "kind": "private"})
    vm = mkvm(d, "g", [{"switch": "lab"}, {"switch": "lab", "mac": "02:00:00:00:00:07"}])
    start(d, "g")
    taps = ["bt%s-%d" % (vm["uuid"][:8], i) for i in (0, 1)]
    r = d.post(V + "/vms/g/save?wait=true", None)
    assert r.status == 200 and r.json["state"] == "succeeded", r
    deadline = time.monotonic() + 5
    while any(link(ns, t) for t in taps) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(link(ns, t) for t in taps), "saved: no VMM, no TAPs"
    got = start(d, "g")
    assert got["state"] == "running" and got["state_reason"] == "restored", got
    for t in taps:
        assert link(ns, t)["master"] == sw["bridge"], t
    log = open(os.path.join(d.state, "vms", vm["uuid"], "vmm.log")).read()
    assert log.count("MAC 02:00:00:00:00:07") == 2, log[-2000:]


SWUSER = "berthswtest"


@pytest.fixture
def vmm_user():
    if not shutil.which("useradd"):
        pytest.skip("needs useradd to create a test user")
    subprocess.run(["userdel", SWUSER], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--groups", "kvm", SWUSER], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(SWUSER)
    finally:
        subprocess.run(["userdel", SWUSER], capture_output=True)


@needs_kvm
def test_unprivileged_vmms_use_the_taps_berthd_hands_them(env, ns, vmm_user):
    d = env
    assert d.stop() == 0
    d.state = os.path.join(d.run_dir, "state")  # reachable by the VMM's user
    d.extra = ["--vmm-user", SWUSER]
    d.start()
    sw = mkswitch(d, {"name": "lab", "kind": "private"})
    v = mkvm(d, "u", [{"switch": "lab", "vlan": 3}])
    start(d, "u")
    with open(f"/proc/{d.get(V + '/vms/u').json['vmm_pid']}/status") as f:
        status = f.read()
    assert re.search(r"^Uid:\s+(\d+)", status, re.M).group(1) == str(vmm_user.pw_uid), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M), "the VMM has no capabilities"
    assert link(ns, "bt%s-0" % v["uuid"][:8])["master"] in (sw["bridge"], sw["bridge"] + "v3")
    assert d.post(V + "/vms/u/turn-off?wait=true", None).json["state"] == "succeeded"
    run_pair(d, [{"switch": "lab"}], [{"switch": "lab"}])


def test_cli_switch_verbs_and_nics(env, ns):
    """`berth switch create|list|show|delete` and `berth vm create|set --nic` against this berthd."""
    cli = os.path.join(os.path.dirname(BERTHD), "berth")

    def berth(*args):
        e = dict(os.environ, BERTH_SOCKET=env.sock)
        return subprocess.run([cli, *args], capture_output=True, text=True, env=e, stdin=subprocess.DEVNULL)

    r = berth("switch", "create", "lan", "--kind", "internal", "--address", "10.77.0.1/24")
    assert r.returncode == 0 and "Kind:           internal" in r.stdout, r
    r = berth("switch", "create", "priv", "--kind", "private", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["kind"] == "private", r
    bridge = json.loads(r.stdout)["bridge"]
    assert link(ns, bridge) is not None                       # the bridge exists in the namespace
    r = berth("switch", "list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split()[:3] == ["NAME", "KIND", "BRIDGE"], r
    assert {l.split()[0] for l in r.stdout.splitlines()[1:]} == {"lan", "priv"}
    r = berth("switch", "list", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == env.get(V + "/switches").json
    assert berth("switch", "create", "x", "--kind", "bogus").returncode == 1
    assert berth("switch", "create", "lan", "--kind", "private").returncode == 4   # the name is taken
    assert berth("switch", "create", "y").returncode == 2                          # --kind is required

    r = berth("vm", "create", "v", "--kernel", GUEST, "--nic", "switch=priv,vlan=10", "--nic", "switch=lan",
              "--json")
    assert r.returncode == 0, r
    nics = json.loads(r.stdout)["nics"]
    assert [n["switch"] for n in nics] == ["priv", "lan"] and nics[0]["vlan"] == 10 and nics[1]["vlan"] is None
    assert all(re.fullmatch(r"52:54:00(:[0-9a-f]{2}){3}", n["mac"]) for n in nics), nics
    r = berth("vm", "show", "v")
    assert f"NIC 0:          switch=priv mac={nics[0]['mac']} vlan=10" in r.stdout, r
    assert berth("vm", "create", "w", "--kernel", GUEST, "--nic", "vlan=3").returncode == 2
    r = berth("switch", "delete", "priv", "--yes")
    assert r.returncode == 4 and "v" in r.stderr, r                              # in use by v
    r = berth("vm", "set", "v", "--nic", "switch=lan,mac=52:54:00:00:00:42,mac-spoofing=on", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["nics"] == [
        {"switch": "lan", "mac": "52:54:00:00:00:42", "vlan": None, "mac_spoofing": True}], r
    assert "mac-spoofing=on" in berth("vm", "show", "v").stdout
    assert berth("vm", "set", "v", "--nic", "switch=lan,mac-spoofing=yes").returncode == 2
    r = berth("switch", "delete", "priv", "--yes")
    assert r.returncode == 0 and link(ns, bridge) is None, r
    assert berth("switch", "show", "priv").returncode == 3
    assert berth("vm", "set", "v", "--no-nics", "--json").returncode == 0
    assert berth("switch", "delete", "lan").returncode == 2                       # no terminal, no --yes
