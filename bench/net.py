#!/usr/bin/python3
"""virtio-net benchmark: the test guest's UDP workloads over a TAP on a bridge, berth-vmm vs QEMU.

Everything happens in a network namespace this script creates and deletes: a bridge br0 with
10.77.0.1/24 (the host side), the VM's TAP on it (berth makes its own with --net bridge=br0; for QEMU
the script adds one), and the guest at 10.77.0.2 with a fixed MAC (a permanent neighbour entry on the
host, so no ARP is in the way). Same guest ELF, same parameters on both VMMs; QEMU 7.2 with
`virtio-net-pci`, `vhost=off`.

  net-tx   guest -> host UDP blast; "host" is what reached the host's UDP layer (kernel counters,
           sampled by this script inside the guest's steady-state blast), "guest" what the device
           completed on the transmit queue.
  net-rx   host -> guest: a sendmmsg() blaster (ctypes) in a child process; the guest counts.
  net-rr   request/response: the guest sends a datagram and polls for the answer, `count` times;
           udp = a Python echo process on the host, icmp = the host kernel answers echo requests.

Also measured: the host's own limit without a VM (the same blaster between the bridge and a veth
peer namespace; the same echo with a Python client in that namespace), and the VMM's CPU time outside
its vCPU threads per packet (per round trip for net-rr) while the guest's workload ran.
Usage: bench/net.py [--secs 5] [--repeat N] [--only tx-1400,rr-udp,...] [--no-limit] [--no-qemu]
"""
import argparse
import ctypes
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

from procstat import thread_cpu

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMM = os.path.join(ROOT, "build", "bin", "berth-vmm")
GUEST = os.path.join(ROOT, "build", "guest", "berth-test-guest.elf")
HOST_IP, GUEST_IP, PEER_IP = "10.77.0.1", "10.77.0.2", "10.77.0.3"
GUEST_MAC = "52:54:00:be:27:01"
PORT = 7778
WARMUP_MS = 500
CLONE_NEWNET = 0x40000000

WORKLOADS = [  # name, guest bench, extra guest parameters, payload bytes
    ("tx-1400", "net-tx", "", 1400),
    ("tx-64", "net-tx", "", 64),
    ("rx-1400", "net-rx", "", 1400),
    ("rx-64", "net-rx", "", 64),
    ("rr-udp", "net-rr", "count=20000", 32),
    ("rr-icmp", "net-rr", "count=20000 icmp=1", 32),
]

_libc = ctypes.CDLL(None, use_errno=True)


def setns(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


class Netns:
    def __init__(self, tag):
        self.name = f"berth-b{tag}-" + uuid.uuid4().hex[:6]
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.ip("link", "set", "lo", "up")

    def ip(self, *args):
        subprocess.run(["ip", "-n", self.name, *args], check=True, capture_output=True)

    def enter(self):
        """Move the calling thread (a fresh child process) into the namespace for good."""
        setns(f"/run/netns/{self.name}")

    def inside(self, fn, *a):
        home = os.open("/proc/self/ns/net", os.O_RDONLY)
        try:
            self.enter()
            return fn(*a)
        finally:
            if _libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(home)

    def delete(self):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def udp_arrived():
    """Datagrams that reached the UDP layer of the calling thread's namespace (read or dropped)."""
    with open("/proc/thread-self/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    kv = dict(zip(rows[0][1:], map(int, rows[1][1:])))
    return kv["InDatagrams"] + kv["InErrors"]


# ---- host-side helpers run in child processes ------------------------------------------------------------------

class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.POINTER(_Iovec)),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


def fork_child(ns, body):
    """Run body() in a child process inside `ns`; returns (pid, read end of a pipe it reports on)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            ns.enter()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            body(w)
        except BaseException as e:  # noqa: BLE001 - report and leave
            os.write(w, f"error {e!r}\n".encode())
            code = 1
        os._exit(code)
    os.close(w)
    return pid, r


def blaster(dst, size, batch=64):
    """Send `size`-byte datagrams to dst:PORT with sendmmsg until SIGTERM; report the count then."""
    def body(w):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.connect((dst, PORT))
        payload = ctypes.create_string_buffer(b"BRTB\x01" + bytes(size - 5), size)
        iov = _Iovec(ctypes.cast(payload, ctypes.c_void_p), size)
        msgs = (_Mmsghdr * batch)()
        for m in msgs:
            m.hdr.iov = ctypes.pointer(iov)
            m.hdr.iovlen = 1
        sendmmsg = _libc.sendmmsg
        fd = s.fileno()
        sent = [0]
        t0 = time.monotonic()

        def stop(*_):
            os.write(w, f"sent {sent[0]} {time.monotonic() - t0:.6f}\n".encode())
            os._exit(0)
        signal.signal(signal.SIGTERM, stop)
        while True:
            n = sendmmsg(fd, msgs, batch, 0)
            if n > 0:
                sent[0] += n
    return body


def echo(bind_ip):
    """Answer every datagram on bind_ip:PORT with the same bytes."""
    def body(w):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((bind_ip, PORT))
        os.write(w, b"ready\n")
        buf = bytearray(65536)
        while True:
            n, src = s.recvfrom_into(buf)
            s.sendto(memoryview(buf)[:n], src)
    return body


def stop_child(pid, rfd, timeout=5.0):
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    out = b""
    while select.select([rfd], [], [], 0)[0]:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        out += chunk
    os.close(rfd)
    return out.decode(errors="replace")


def read_line(rfd, timeout):
    out = b""
    end = time.monotonic() + timeout
    while not out.endswith(b"\n") and time.monotonic() < end:
        if select.select([rfd], [], [], 0.1)[0]:
            c = os.read(rfd, 1)
            if not c:
                break
            out += c
    return out.decode(errors="replace").strip()


# ---- VM runs -------------------------------------------------------------------------------------------------------

def parse(line):
    return {k: float(v) if re.fullmatch(r"[\d.]+", v) else v
            for k, v in (kv.split("=", 1) for kv in line.split()[2:] if "=" in kv)}


def run_vm(ns, cmd, bench, on_ready, timeout):
    """Run a VM in `ns`. on_ready(t) is called when the guest's workload starts and returns a
    list of (seconds after ready, action) to run while it goes on. Returns (result dict or None,
    {thread: cpu seconds used between ready and result}, output)."""
    p = subprocess.Popen(["ip", "netns", "exec", ns.name, *cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.set_blocking(p.stdout.fileno(), False)
    out, cpu0, cpu1, result, t_ready, todo = "", None, None, None, None, []
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None and time.monotonic() < deadline:
            select.select([p.stdout], [], [], 0.01)
            try:
                out += os.read(p.stdout.fileno(), 65536).decode(errors="replace")
            except BlockingIOError:
                pass
            now = time.monotonic()
            if t_ready is None and f"berth-info {bench} ready" in out:
                t_ready = now
                cpu0 = thread_cpu(p.pid, with_sys=True)
                todo = sorted(on_ready(now) or [], key=lambda x: x[0])
            while todo and t_ready is not None and now - t_ready >= todo[0][0]:
                todo.pop(0)[1]()
            m = re.search(rf"^.*berth-bench {bench} .*\n", out, re.M)
            if m:
                cpu1 = thread_cpu(p.pid, with_sys=True)
                result = parse(m.group(0).strip()[m.group(0).index("berth-bench"):])
                if "FAIL" in m.group(0):
                    result = None
                break
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        os.set_blocking(p.stdout.fileno(), True)
        out += p.stdout.read().decode(errors="replace")
    used = {}
    if cpu0 and cpu1:
        used = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    return result, used, out


def device_cpu(used, vcpu_pattern, system=False):
    """CPU seconds of the threads that are not vCPUs (only their system time if `system`)."""
    return sum(v for k, v in used.items()
               if k.startswith("sys/") == system and not re.match(vcpu_pattern, k.removeprefix("sys/")))


class Bed:
    """The namespace with br0 (the host side) and a peer namespace on a veth (for the host limit)."""

    def __init__(self):
        self.ns = Netns("n")
        ns = self.ns
        ns.ip("link", "add", "br0", "type", "bridge")
        ns.ip("addr", "add", f"{HOST_IP}/24", "dev", "br0")
        ns.ip("link", "set", "br0", "up")
        ns.ip("neigh", "replace", GUEST_IP, "lladdr", GUEST_MAC, "dev", "br0", "nud", "permanent")
        ns.ip("tuntap", "add", "mode", "tap", "name", "bnq0")  # QEMU's
        ns.ip("link", "set", "bnq0", "master", "br0")
        ns.ip("link", "set", "bnq0", "up")
        self.peer = Netns("p")
        ns.ip("link", "add", "bveth0", "type", "veth", "peer", "name", "bveth1", "netns", self.peer.name)
        ns.ip("link", "set", "bveth0", "master", "br0")
        ns.ip("link", "set", "bveth0", "up")
        self.peer.ip("addr", "add", f"{PEER_IP}/24", "dev", "bveth1")
        self.peer.ip("link", "set", "bveth1", "up")

    def udp_socket(self, ip=HOST_IP, rcvbuf=4 << 20):
        def mk():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.bind((ip, PORT))
            return s
        return self.ns.inside(mk) if ip == HOST_IP else self.peer.inside(mk)

    def delete(self):
        self.ns.delete()
        self.peer.delete()


def vm_cmd(kind, append, secs):
    if kind == "berth":
        return [VMM, "--kernel", GUEST, "--memory", "512M", "--net", f"bridge=br0,mac={GUEST_MAC}",
                "--cmdline", append, "--timeout", str(secs + 200)], r"vcpu\d+:"
    return ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu", "qemu64", "-m", "512M",
            "-nodefaults", "-nographic", "-no-reboot", "-name", "bench,debug-threads=on",
            "-serial", "stdio", "-kernel", GUEST, "-append", append,
            "-netdev", "tap,id=n0,ifname=bnq0,script=no,downscript=no,vhost=off",
            "-device", f"virtio-net-pci,disable-legacy=on,netdev=n0,mac={GUEST_MAC}"], r"CPU \d+/KVM:"


def one(bed, kind, name, bench, extra, size, secs):
    """One workload on one VMM: a dict with guest, host, cpu_per_pkt (µs) or None."""
    append = f"bench={bench} secs={secs} warmup_ms={WARMUP_MS} size={size} port={PORT} " \
             f"ip={GUEST_IP} peer={HOST_IP} {extra}".strip()
    cmd, vcpu = vm_cmd(kind, append, secs)
    st = {"sock": None, "child": None, "c": []}

    def ready_tx(t):
        # The guest blasts for warm-up + secs after resolving us; sample inside that.
        span = max(secs - 0.6, 0.5)
        def sample():
            st["c"].append((time.monotonic(), bed.ns.inside(udp_arrived)))
        return [(WARMUP_MS / 1000 + 0.3, sample), (WARMUP_MS / 1000 + 0.3 + span, sample)]

    def ready_rx(t):
        st["child"] = fork_child(bed.ns, blaster(GUEST_IP, size))
        return []

    def ready_rr(t):
        return []

    if bench == "net-tx":
        st["sock"] = bed.udp_socket()
        on_ready = ready_tx
    elif bench == "net-rx":
        on_ready = ready_rx
    else:
        if "icmp=1" not in extra:
            st["child"] = fork_child(bed.ns, echo(HOST_IP))
            read_line(st["child"][1], 5)
        on_ready = ready_rr
    try:
        res, used, out = run_vm(bed.ns, cmd, bench, on_ready, secs + 240)
    finally:
        sent = stop_child(*st["child"]) if st["child"] else ""
        if st["sock"]:
            st["sock"].close()
    if not res:
        tail = "\n".join(out.strip().splitlines()[-5:])
        print(f"  {kind} {name}: no result\n    " + tail.replace("\n", "\n    "), file=sys.stderr)
        return None
    r = {"res": res, "dev_cpu": device_cpu(used, vcpu), "dev_sys": device_cpu(used, vcpu, True)}
    if bench == "net-tx" and len(st["c"]) == 2:
        (t1, c1), (t2, c2) = st["c"]
        r["host_pps"] = (c2 - c1) / (t2 - t1)
    m = re.search(r"sent (\d+) ([\d.]+)", sent)
    if m:
        r["sent_pps"] = int(m.group(1)) / float(m.group(2))
    total = res.get("total", 0)
    r["cpu_per_pkt_us"] = r["dev_cpu"] / total * 1e6 if total else 0.0
    r["sys_share"] = r["dev_sys"] / r["dev_cpu"] if r["dev_cpu"] else 0.0
    return r


# ---- the host's own limit ------------------------------------------------------------------------------------------

def limit_blast(bed, src, dst_ns, dst_ip, size, secs):
    """The same sendmmsg blaster from namespace src to dst_ip (bound, undrained socket in dst_ns):
    datagrams per second reaching the receiver's UDP layer, and the sender's own rate."""
    sock = bed.udp_socket(dst_ip)
    child = fork_child(src, blaster(dst_ip, size))
    try:
        time.sleep(0.5)
        t1, c1 = time.monotonic(), dst_ns.inside(udp_arrived)
        time.sleep(secs)
        t2, c2 = time.monotonic(), dst_ns.inside(udp_arrived)
    finally:
        sent = stop_child(*child)
        sock.close()
    m = re.search(r"sent (\d+) ([\d.]+)", sent)
    return (c2 - c1) / (t2 - t1), (int(m.group(1)) / float(m.group(2)) if m else 0.0)


def limit_rr(bed, count=20000):
    """A Python UDP client in the peer namespace against the same echo process: RTT µs stats."""
    child = fork_child(bed.ns, echo(HOST_IP))
    read_line(child[1], 5)

    def client():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect((HOST_IP, PORT))
        s.settimeout(1.0)
        msg = b"BRTB" + bytes(28)
        rtt = []
        for i in range(count + 100):
            t0 = time.perf_counter_ns()
            s.send(msg)
            s.recv(2048)
            if i >= 100:
                rtt.append((time.perf_counter_ns() - t0) / 1000)
        s.close()
        rtt.sort()
        return sum(rtt) / len(rtt), rtt[len(rtt) // 2], rtt[len(rtt) * 99 // 100]
    try:
        return bed.peer.inside(client)
    finally:
        stop_child(*child)


# ---- main ----------------------------------------------------------------------------------------------------------

def fmt(v, unit=""):
    if v is None:
        return "-"
    return f"{v:,.0f}{unit}" if v >= 100 else f"{v:.1f}{unit}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-limit", action="store_true", help="skip the host-limit measurements")
    ap.add_argument("--no-qemu", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs per VMM and workload; the median is kept")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, bridges, TAPs)")
    kinds = ["berth"] + ([] if a.no_qemu or not shutil.which("qemu-system-x86_64") else ["qemu"])
    bed = Bed()
    rows = []
    try:
        for name, bench, extra, size in WORKLOADS:
            if a.only and name not in a.only.split(","):
                continue
            got, spread = {}, {}
            for k in kinds:
                runs = [one(bed, k, name, bench, extra, size, a.secs) for _ in range(a.repeat)]
                ok = sorted((r for r in runs if r and key_figure(bench, r)), key=lambda r: key_figure(bench, r))
                for r in runs:
                    if r and not key_figure(bench, r):
                        print(f"  {k} {name}: run without a figure: {r['res']}", file=sys.stderr)
                got[k] = ok[(len(ok) - 1) // 2] if ok else None  # the median run (lower middle)
                spread[k] = [key_figure(bench, r) for r in ok]
                if a.repeat > 1:
                    print(f"{name:8} {k}: " + ", ".join(fmt(v) for v in spread[k]), flush=True)
            lim = None
            if not a.no_limit:
                if bench == "net-tx":
                    lim = limit_blast(bed, bed.peer, bed.ns, HOST_IP, size, min(a.secs, 3))[0]
                elif bench == "net-rx":
                    lim = limit_blast(bed, bed.ns, bed.peer, PEER_IP, size, min(a.secs, 3))[0]
                elif name == "rr-udp":
                    lim = limit_rr(bed)
            rows.append((name, bench, size, got, lim, spread))
            report_row(rows[-1], kinds)
    finally:
        bed.delete()
    print()
    print_table(rows, kinds)
    return 0


def key_figure(bench, r):
    """(value, unit) compared across VMMs: pps reaching the receiver, or the p50 round trip."""
    if r is None:
        return None
    if bench == "net-tx":
        return r.get("host_pps")
    if bench == "net-rx":
        return r["res"].get("pps")
    return r["res"].get("p50_us")


def report_row(row, kinds):
    name, bench, size, got, lim, _ = row
    parts = []
    for k in kinds:
        r = got.get(k)
        if not r:
            parts.append(f"{k}: failed")
            continue
        res = r["res"]
        if bench == "net-rr":
            parts.append(f"{k}: avg {res['avg_us']} p50 {res['p50_us']} p99 {res['p99_us']} us "
                         f"lost {int(res['lost'])}, VMM CPU {r['cpu_per_pkt_us']:.1f} us/rt "
                         f"({r['sys_share']:.0%} system)")
        else:
            extra = f"host got {fmt(r.get('host_pps'))} pps, " if bench == "net-tx" else \
                f"host sent {fmt(r.get('sent_pps'))} pps, "
            parts.append(f"{k}: guest {fmt(res['pps'])} pps {fmt(res['mbps'])} Mbit/s, {extra}"
                         f"VMM CPU {r['cpu_per_pkt_us']:.2f} us/pkt ({r['sys_share']:.0%} system), "
                         f"kicks {int(res['kicks'])}")
    print(f"{name:8} " + " | ".join(parts), flush=True)


def print_table(rows, kinds):
    q = "qemu" in kinds
    print("| workload | berth | QEMU | berth / QEMU | host limit | VMM CPU per packet, berth / QEMU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, bench, size, got, lim, spread in rows:
        cells, figs = [], []
        for k in ("berth", "qemu"):
            r = got.get(k) if k in kinds else None
            v = key_figure(bench, r)
            figs.append(v)
            if not v:
                cells.append("-")
                continue
            rng = spread.get(k) or []
            if bench == "net-rr":
                c = f"p50 {v:.1f} µs, p99 {r['res']['p99_us']:.1f} µs"
                if len(rng) > 1:
                    c += f" (p50 {min(rng):.1f}–{max(rng):.1f})"
            else:
                c = f"{v:,.0f} pps, {v * size * 8 / 1e6:,.0f} Mbit/s"
                if len(rng) > 1:
                    c += f" ({min(rng) / 1000:,.0f}k–{max(rng) / 1000:,.0f}k)"
            cells.append(c)
        b, qq = figs
        if bench == "net-rr":
            ratio = qq / b if b and qq else None  # lower is better: QEMU p50 / berth p50
            lims = f"p50 {lim[1]:.1f} µs (Python client, veth)" if lim else "-"
            per = "µs per round trip"
        else:
            ratio = b / qq if b and qq else None
            lims = f"{lim:,.0f} pps" if lim else "-"
            per = "µs"
        cpu = [f"{got[k]['cpu_per_pkt_us']:.2f}" if k in kinds and got.get(k) else "-" for k in ("berth", "qemu")]
        print(f"| {name} | {cells[0]} | {cells[1]} | {f'{ratio:.2f}×' if ratio else '-'} | {lims} | "
              f"{cpu[0]} / {cpu[1]} {per} |")
    print("tx: datagrams/s reaching the host's UDP layer; rx: datagrams/s the guest counted; Mbit/s of UDP "
          "payload. rr: the ratio is QEMU p50 / berth p50 (> 1: berth answers faster).")


if __name__ == "__main__":
    sys.exit(main())
