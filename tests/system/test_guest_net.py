# test_guest_net.py — the test guest's virtio-net driver against a host peer and another VM, on berth and QEMU.
"""`test=net` brings virtio-net up and runs a tiny stack from ring 3: it answers ARP and ping for `ip=`, resolves
`peer=` and sends it `count=` UDP datagrams (port 7777 both ends) of rising size, the last one filling a
1500-byte packet, and echoes every datagram it receives on port 7777. Payload format (guest/virtio_net.h):
"BRTH", origin IPv4, sequence (u32 BE), FNV-1a 32 of bytes 16.. (u32 BE), then byte i = (i*7 + seq*13) & 0xff.

Every network thing lives in a network namespace the test makes and deletes (`ip netns add`); the only
addresses are 10.77.0.0/24 inside it. berth-vmm and QEMU run under `ip netns exec` (which also mounts the
namespace's /sys, where berth checks that a bridge exists); the Python sockets are opened after setns()."""

import contextlib
import ctypes
import fcntl
import os
import re
import shutil
import socket
import struct
import subprocess
import time
import uuid

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
VMM = os.path.join(REPO, "build", "bin", "berth-vmm")
QEMU = shutil.which("qemu-system-x86_64")
HOST_IP, GUEST_IP, GUEST2_IP = "10.77.0.1", "10.77.0.2", "10.77.0.3"
PORT = 7777
COUNT = 20
HOST_SENDS = 10

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI, IFF_VNET_HDR = 0x0002, 0x1000, 0x4000
CLONE_NEWNET = 0x40000000


# ---- the payload format, host side ------------------------------------------------------------------------------

def fnv1a(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def make_payload(origin, seq, length):
    body = bytes(((i * 7 + seq * 13) & 0xFF) for i in range(16, length))
    return b"BRTH" + socket.inet_aton(origin) + struct.pack(">II", seq, fnv1a(body)) + body


def guest_payload_len(k, count=COUNT):
    if k == count - 1 and count > 1:
        return 1472
    return 64 + (1400 - 64) * k // max(count - 2, 1)


def check_payload(data, origin):
    """(seq, None) if data is an intact payload from origin, else (None, why)."""
    if len(data) < 16 or data[:4] != b"BRTH":
        return None, f"bad header {data[:16].hex()}"
    if socket.inet_ntoa(data[4:8]) != origin:
        return None, f"origin {socket.inet_ntoa(data[4:8])}"
    seq, ck = struct.unpack(">II", data[8:16])
    if fnv1a(data[16:]) != ck:
        return None, f"checksum seq={seq}"
    if data != make_payload(origin, seq, len(data)):
        return None, f"pattern seq={seq}"
    return seq, None


# ---- environment ------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _need_env():
    if not os.path.exists(ELF):
        pytest.skip(f"guest ELF not built: {ELF}")
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, bridges, TAPs)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("/dev/net/tun is missing")
    if not shutil.which("ip"):
        pytest.skip("iproute2 `ip` is missing")


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Netns:
    """A fresh network namespace; `sh()` runs commands in it, `inside()` moves this thread into it."""

    def __init__(self):
        self.name = "berth-t-" + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", self.name], check=True)

    def sh(self, *cmd, check=True):
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=check, capture_output=True,
                              text=True)

    def popen(self, cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)

    @contextlib.contextmanager
    def inside(self):
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(there)
            yield
        finally:
            _setns(home)
            os.close(home)
            os.close(there)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns():
    ns = Netns()
    ns.sh("ip", "link", "set", "lo", "up")
    yield ns
    ns.delete()


def make_bridge(ns, addr=True):
    ns.sh("ip", "link", "add", "br0", "type", "bridge")
    if addr:
        ns.sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", "br0")
    ns.sh("ip", "link", "set", "br0", "up")


# ---- guests -----------------------------------------------------------------------------------------------------

class Vm:
    def __init__(self, cmd, proc):
        self.cmd, self.proc, self.output = cmd, proc, ""

    def finish(self, timeout=120):
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            self.output = out.decode(errors="replace")
            pytest.fail(f"guest did not finish: {' '.join(self.cmd)}\n{self.output[-4000:]}")
        self.output = out.decode(errors="replace")
        return self

    def report(self):
        return f"cmd: {' '.join(self.cmd)}\nrc={self.proc.returncode}\n{self.output[-5000:]}"

    def result(self, name):
        got = []
        for raw in self.output.replace("\r", "").split("\n"):
            i = raw.find("berth-test ")
            m = RESULT.match(raw[i:]) if i >= 0 else None
            if m and m.group(1) == name:
                got.append(m)
        assert len(got) == 1, f"expected one result line for {name}\n{self.report()}"
        return got[0].group(2), dict(KV.findall(got[0].group(3)))

    def passed(self, name="net"):
        assert self.proc.returncode == 0, self.report()
        status, kv = self.result(name)
        assert status == "PASS", f"{name} failed: {kv}\n{self.report()}"
        self.result("poweroff")
        return kv


def net_args(ip, peer, extra=""):
    return f"test=net,poweroff ip={ip} peer={peer} count={COUNT} {extra}".strip()


def start_berth(ns, net, append, pass_fds=()):
    cmd = [VMM, "--kernel", ELF, "--net", net, "--cmdline", append, "--timeout", "90"]
    return Vm(cmd, ns.popen(cmd, pass_fds=pass_fds))


def start_qemu(ns, tap, append):
    cmd = [QEMU, "-M", "q35", "-accel", "tcg", "-m", "256M", "-smp", "1", "-display", "none", "-nodefaults",
           "-serial", "stdio", "-no-reboot", "-kernel", ELF, "-append", append,
           "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no,vhost=off",
           "-device", "virtio-net-pci,disable-legacy=on,netdev=n0"]
    return Vm(cmd, ns.popen(cmd))


# ---- the host peer ----------------------------------------------------------------------------------------------

def icmp_ping(dst, seq, timeout=3.0):
    """One ICMP echo over a raw socket (no ping binary needed); True if the reply matched."""
    ident = os.getpid() & 0xFFFF
    data = b"berth-ping" + bytes(range(38))
    hdr = struct.pack(">BBHHH", 8, 0, 0, ident, seq)
    ck = _inet_csum(hdr + data)
    pkt = struct.pack(">BBHHH", 8, 0, ck, ident, seq) + data
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.settimeout(0.5)
        s.sendto(pkt, (dst, 0))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                reply, (src, _) = s.recvfrom(4096)
            except socket.timeout:
                continue
            ihl = (reply[0] & 15) * 4
            icmp = reply[ihl:]
            if src == dst and icmp[0] == 0 and struct.unpack(">HH", icmp[4:8]) == (ident, seq):
                assert _inet_csum(icmp) == 0, "bad ICMP checksum in the echo reply"
                assert icmp[8:] == data, "echo reply data differs"
                return True
    return False


def _inet_csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f">{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def host_peer(ns, vm, guest_ip=GUEST_IP, sock=None):
    """Talk to a guest running `test=net peer=HOST_IP expect=HOST_SENDS`: receive and verify its datagrams,
    ping it, send datagrams and check the echoes; then wait for the guest's result."""
    seqs, lengths = set(), {}
    with ns.inside():
        s = sock
        try:
            s.settimeout(1.0)
            end = time.monotonic() + 60
            while len(seqs) < COUNT and time.monotonic() < end and vm.proc.poll() is None:
                try:
                    data, (src, sport) = s.recvfrom(65536)
                except socket.timeout:
                    continue
                assert (src, sport) == (guest_ip, PORT), f"datagram from {src}:{sport}"
                seq, why = check_payload(data, guest_ip)
                assert why is None, f"guest datagram damaged: {why}"
                seqs.add(seq)
                lengths[seq] = len(data)
            assert seqs == set(range(COUNT)), f"guest datagrams received: {sorted(seqs)}"
            assert [lengths[k] for k in range(COUNT)] == [guest_payload_len(k) for k in range(COUNT)]
            # ARP from the host side, then ping.
            ns.sh("ip", "neigh", "flush", "dev", "br0", check=False)
            for i in range(3):
                assert icmp_ping(guest_ip, i + 1), f"no ping reply {i + 1}"
            # Host -> guest datagrams, echoed back unchanged.
            for k in range(HOST_SENDS):
                length = 1472 if k == HOST_SENDS - 1 else 32 + 150 * k
                msg = make_payload(HOST_IP, 1000 + k, length)
                for attempt in range(3):
                    s.sendto(msg, (guest_ip, PORT))
                    try:
                        echo, src = s.recvfrom(65536)
                    except socket.timeout:
                        continue
                    assert src == (guest_ip, PORT) and echo == msg, f"bad echo of datagram {k}"
                    break
                else:
                    pytest.fail(f"no echo for host datagram {k}\n{vm.report()}")
        finally:
            s.close()
    vm.finish()
    kv = vm.passed()
    assert int(kv["tx"]) == COUNT and int(kv["rx"]) >= HOST_SENDS, vm.report()
    assert int(kv["icmp"]) >= 3 and int(kv["arp"]) >= 1, vm.report()
    return kv


def bound_socket(ns):
    with ns.inside():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST_IP, PORT))
    return s


def host_args():
    return net_args(GUEST_IP, HOST_IP, f"expect={HOST_SENDS} secs=60")


# ---- tests ------------------------------------------------------------------------------------------------------

def test_net_host_peer_berth(berth, netns):
    make_bridge(netns)
    sock = bound_socket(netns)
    kv = host_peer(netns, start_berth(netns, "bridge=br0", host_args()), sock=sock)
    assert kv["mrg"] == "1" and int(kv["max_bufs"]) >= 2, "MTU-sized frames should span two 1 KiB buffers"


def test_net_two_vms_berth(berth, netns):
    make_bridge(netns, addr=False)  # a private switch: the host has no address on it
    extra = f"expect={COUNT} expect_echo={COUNT} secs=60"
    a = start_berth(netns, "bridge=br0", net_args(GUEST_IP, GUEST2_IP, extra))
    b = start_berth(netns, "bridge=br0", net_args(GUEST2_IP, GUEST_IP, extra))
    for vm in (a.finish(), b.finish()):
        kv = vm.passed()
        assert int(kv["tx"]) == COUNT and int(kv["rx"]) == COUNT and int(kv["echo"]) == COUNT, vm.report()
        assert int(kv["arp"]) >= 1, vm.report()


def test_net_persistent_tap_berth(berth, netns):
    make_bridge(netns)
    netns.sh("ip", "tuntap", "add", "mode", "tap", "name", "bttap0")
    netns.sh("ip", "link", "set", "bttap0", "master", "br0")
    netns.sh("ip", "link", "set", "bttap0", "up")
    sock = bound_socket(netns)
    host_peer(netns, start_berth(netns, "tap=bttap0", host_args()), sock=sock)


def test_net_tap_fd_berth(berth, netns):
    make_bridge(netns)
    with netns.inside():
        fd = os.open("/dev/net/tun", os.O_RDWR)
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", b"btfd0", IFF_TAP | IFF_NO_PI | IFF_VNET_HDR))
    try:
        netns.sh("ip", "link", "set", "btfd0", "master", "br0")
        netns.sh("ip", "link", "set", "btfd0", "up")
        sock = bound_socket(netns)
        vm = start_berth(netns, f"fd={fd}", host_args(), pass_fds=(fd,))
        os.close(fd)
        fd = -1
        host_peer(netns, vm, sock=sock)
    finally:
        if fd >= 0:
            os.close(fd)


def test_net_host_peer_qemu(qemu, netns):
    make_bridge(netns)
    netns.sh("ip", "tuntap", "add", "mode", "tap", "name", "btqtap0")
    netns.sh("ip", "link", "set", "btqtap0", "master", "br0")
    netns.sh("ip", "link", "set", "btqtap0", "up")
    sock = bound_socket(netns)
    kv = host_peer(netns, start_qemu(netns, "btqtap0", host_args()), sock=sock)
    assert kv["mrg"] == "1" and int(kv["max_bufs"]) >= 2, kv


def test_net_missing_device_fails_cleanly_berth(berth):
    p = subprocess.run([VMM, "--kernel", ELF, "--cmdline", "test=net,poweroff", "--timeout", "60"],
                       capture_output=True, text=True, timeout=90)
    vm = Vm([VMM], None)
    vm.output = p.stdout + p.stderr
    status, kv = vm.result("net")
    assert status == "FAIL" and "no-device" in kv["reason"], vm.output
