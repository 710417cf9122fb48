#!/usr/bin/python3
"""Boot benchmark: start a VM with the test guest, wait for its first serial byte and for power-off.

Runs the same guest (test=poweroff) on berth-vmm and on QEMU (q35 and microvm, both -accel kvm) in
one run and prints medians, p90 and ratios. Usage: bench/boot.py [--runs N] [--memory 256M]
"""
import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMM = os.path.join(ROOT, "build", "bin", "berth-vmm")
GUEST = os.path.join(ROOT, "build", "guest", "berth-test-guest.elf")


def one(cmd):
    """Return (seconds to first byte of guest output, seconds to exit, child CPU seconds, status)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    first = None
    out = b""
    while True:
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        if first is None and b"berth-guest" in out + chunk:
            first = time.perf_counter() - t0
        out += chunk
    rc = p.wait()
    total = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = rc == 0 and b"berth-test poweroff PASS" in out
    return first or total, total, cpu, ok


def series(name, cmd, runs):
    rows = [one(cmd) for _ in range(runs)]
    bad = sum(1 for r in rows if not r[3])
    if bad:
        print(f"{name}: {bad}/{runs} runs did not power off cleanly", file=sys.stderr)
    med = lambda i: statistics.median(r[i] for r in rows)
    p90 = lambda i: sorted(r[i] for r in rows)[max(0, int(len(rows) * 0.9) - 1)]
    return {"name": name, "first": med(0), "total": med(1), "total_p90": p90(1), "cpu": med(2), "bad": bad}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--memory", default="256M")
    ap.add_argument("--vmm-arg", action="append", default=[],
                    help="extra berth-vmm argument (repeatable), e.g. --vmm-arg=--seccomp=off")
    ap.add_argument("--no-qemu", action="store_true", help="berth-vmm only")
    a = ap.parse_args()
    mem_mib = a.memory.rstrip("M")
    cases = [("berth-vmm", [VMM, "--kernel", GUEST, "--memory", a.memory, "--cmdline", "test=poweroff", *a.vmm_arg])]
    if shutil.which("qemu-system-x86_64") and not a.no_qemu:
        q = ["qemu-system-x86_64", "-accel", "kvm", "-cpu", "qemu64", "-m", mem_mib, "-nographic",
             "-no-reboot", "-nodefaults", "-serial", "stdio", "-kernel", GUEST, "-append", "test=poweroff"]
        cases.append(("qemu q35", q[:1] + ["-M", "q35"] + q[1:]))
        cases.append(("qemu microvm", q[:1] + ["-M", "microvm,acpi=on,rtc=off"] + q[1:]))
    results = [series(n, c, a.runs) for n, c in cases]
    base = results[0]
    print(f"boot benchmark: test guest, 1 vCPU, {a.memory}, {a.runs} runs each (median; p90 of total)")
    print(f"{'':14} {'first output':>13} {'power-off':>10} {'p90':>8} {'VMM CPU':>9}  ratio (other/berth)")
    for r in results:
        ratio = r["total"] / base["total"]
        print(f"{r['name']:14} {r['first']*1000:10.1f} ms {r['total']*1000:7.1f} ms {r['total_p90']*1000:5.1f} ms"
              f" {r['cpu']*1000:6.1f} ms  {ratio:5.2f}x" + ("  (failed runs!)" if r["bad"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
