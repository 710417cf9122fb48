#!/usr/bin/python3
"""virtio-blk benchmark: the test guest's I/O workloads on berth-vmm and on QEMU, plus fio on the host.

Same guest, same image file, O_DIRECT everywhere (berth cache=none; QEMU cache=none, aio=io_uring,
an iothread; fio direct=1 with io_uring). Prints IOPS/throughput, ratios, and the VMM's CPU time
per I/O outside the vCPU threads (device emulation cost).
Usage: bench/blk.py [--secs 5] [--size-mib 1024] [--image PATH] [--only randread-qd32,...] [--repeat N]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

from procstat import thread_cpu

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMM = os.path.join(ROOT, "build", "bin", "berth-vmm")
GUEST = os.path.join(ROOT, "build", "guest", "berth-test-guest.elf")

WORKLOADS = [  # name, guest bench, qd, bs, fio rw
    ("randread-qd1", "blk-randread", 1, 4096, "randread"),
    ("randread-qd32", "blk-randread", 32, 4096, "randread"),
    ("randwrite-qd1", "blk-randwrite", 1, 4096, "randwrite"),
    ("randwrite-qd32", "blk-randwrite", 32, 4096, "randwrite"),
    ("seqread-1m", "blk-seqread", 8, 1 << 20, "read"),
    ("seqwrite-1m", "blk-seqwrite", 8, 1 << 20, "write"),
]


def run_vm(cmd, timeout):
    """Run a VM; sample per-thread CPU just before it exits. Returns (stdout, {thread: cpu})."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    out, cpu = "", {}
    deadline = time.monotonic() + timeout
    os.set_blocking(p.stdout.fileno(), False)
    def sample():
        nonlocal cpu
        try:
            c = thread_cpu(p.pid)
        except OSError:
            return
        # A process that is exiting shows only some of its threads: keep the fuller sample.
        if len(c) >= len(cpu) and sum(c.values()) >= sum(cpu.values()):
            cpu = c

    while p.poll() is None and time.monotonic() < deadline:
        sample()
        try:
            out += os.read(p.stdout.fileno(), 65536).decode(errors="replace")
        except BlockingIOError:
            pass
        if "berth-bench" in out and "\n" in out[out.index("berth-bench"):]:
            sample()
            p.kill()
            break
        time.sleep(0.05)
    if p.poll() is None:
        p.kill()
    p.wait()
    os.set_blocking(p.stdout.fileno(), True)
    out += p.stdout.read().decode(errors="replace")
    return out, cpu


def parse(out):
    m = re.search(r"berth-bench \S+ (.*)", out)
    if not m:
        return None
    return {k: float(v) if re.fullmatch(r"[\d.]+", v) else v
            for k, v in (kv.split("=", 1) for kv in m.group(1).split() if "=" in kv)}


def device_cpu(cpu, vcpu_pattern):
    return sum(v for k, v in cpu.items() if not re.match(vcpu_pattern, k))


def berth(img, bench, qd, bs, secs, extra=()):
    cmd = [VMM, "--kernel", GUEST, "--memory", "512M", "--disk", f"{img},cache=none",
           "--cmdline", f"bench={bench} qd={qd} bs={bs} secs={secs}", *extra]
    out, cpu = run_vm(cmd, secs + 60)
    return parse(out), device_cpu(cpu, r"vcpu\d+:")


def qemu(img, bench, qd, bs, secs, fmt="raw"):
    cmd = ["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu", "qemu64", "-m", "512M",
           "-nodefaults", "-nographic", "-no-reboot", "-name", "bench,debug-threads=on",
           "-serial", "stdio", "-kernel", GUEST,
           "-append", f"bench={bench} qd={qd} bs={bs} secs={secs}",
           "-object", "iothread,id=io0",
           "-drive", f"if=none,id=d0,file={img},format={fmt},cache=none,aio=io_uring",
           "-device", "virtio-blk-pci,disable-legacy=on,drive=d0,iothread=io0,num-queues=1"]
    out, cpu = run_vm(cmd, secs + 60)
    return parse(out), device_cpu(cpu, r"CPU \d+/KVM:")


def fio(img, rw, qd, bs, secs):
    p = subprocess.run(["fio", "--name=host", f"--filename={img}", "--direct=1", "--ioengine=io_uring",
                        f"--rw={rw}", f"--bs={bs}", f"--iodepth={qd}", f"--runtime={secs}",
                        "--time_based", "--output-format=json"], capture_output=True, text=True)
    j = json.loads(p.stdout)["jobs"][0]
    side = j["read"] if "read" in rw else j["write"]
    return {"iops": side["iops"], "mbps": side["bw_bytes"] / 1e6}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--image", default="/var/tmp/berth-bench-blk.img")
    ap.add_argument("--only", default="")
    ap.add_argument("--repeat", type=int, default=1,
                    help="interleaved runs per workload; the median of each is reported")
    ap.add_argument("--vmm-arg", action="append", default=[],
                    help="extra berth-vmm argument (repeatable), e.g. --vmm-arg=--seccomp=off")
    ap.add_argument("--no-qemu", action="store_true", help="berth-vmm (and fio) only")
    a = ap.parse_args()
    if not os.path.exists(a.image) or os.path.getsize(a.image) != a.size_mib << 20:
        print(f"writing {a.size_mib} MiB of random data to {a.image} ...", flush=True)
        subprocess.run(["dd", "if=/dev/urandom", f"of={a.image}", "bs=1M", f"count={a.size_mib}",
                        "status=none"], check=True)
    have_qemu = shutil.which("qemu-system-x86_64") is not None and not a.no_qemu
    have_fio = shutil.which("fio") is not None
    for name, bench, qd, bs, rw in WORKLOADS:
        if a.only and name not in a.only.split(","):
            continue
        key = "iops" if bs == 4096 else "mbps"
        runs = []  # (berth value, berth CPU/IO, qemu value, qemu CPU/IO, fio value) per repeat
        for _ in range(max(1, a.repeat)):
            b, bcpu = berth(a.image, bench, qd, bs, a.secs, a.vmm_arg)
            q, qcpu = qemu(a.image, bench, qd, bs, a.secs) if have_qemu else (None, 0)
            f = fio(a.image, rw, qd, bs, a.secs) if have_fio else None
            runs.append((b[key] if b else 0,
                         bcpu / b["reqs"] * 1e6 if b and b.get("reqs") else 0,
                         q[key] if q else 0,
                         qcpu / q["reqs"] * 1e6 if q and q.get("reqs") else 0,
                         f[key] if f else 0))
        bv, bper, qv, qper, fv = (statistics.median(col) for col in zip(*runs))
        spread = ""
        if len(runs) > 1:
            spread = (f"  (berth {min(r[0] for r in runs):.0f}-{max(r[0] for r in runs):.0f}, "
                      f"qemu {min(r[2] for r in runs):.0f}-{max(r[2] for r in runs):.0f})")
        print(f"{name:15} berth {bv:9.0f} {key}  qemu {qv:9.0f}  host-fio {fv:9.0f}  "
              f"berth/qemu {bv / qv if qv else 0:5.2f}x  berth/host {bv / fv if fv else 0:5.2f}x  "
              f"device CPU/IO: berth {bper:5.1f} us, qemu {qper:5.1f} us{spread}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
