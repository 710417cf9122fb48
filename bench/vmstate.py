#!/usr/bin/python3
"""Save/restore benchmark: time from starting `berth-vmm --restore` to the restored guest's first console line,
and how long a save keeps the guest paused, for 256 MiB and 1 GiB guests; QEMU's restore from a migration file
(`-incoming exec:cat`) on the same guest as the baseline.

The guest is the test guest's ring-3 ticker with tick_ms=1, so its first line after a restore comes within a
millisecond of the vCPU running again. Targets (issue 5): restore <= 20 ms, checkpoint pause (1 GiB) <= 50 ms.

Then the pre-copy case: a 1 GiB guest running `test=memwalk mib=0` (all its free RAM, ~1000 MiB, rewritten
sweep after sweep, so every page is touched and keeps being dirtied while the save runs). berth: `save` with
`"stop": false` (the checkpoint's memory part), the guest pause (`paused_us`) and the pre-copy figures from the
reply. QEMU: live migration of the same guest to a file (`migrate "exec:cat > FILE"`, downtime-limit 50 ms,
max-bandwidth unlimited, auto-converge on), its `downtime` from query-migrate.
Usage: bench/vmstate.py [--runs 10] [--dirty-runs 5] [--only-dirty]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMM = os.path.join(ROOT, "build", "bin", "berth-vmm")
GUEST = os.path.join(ROOT, "build", "guest", "berth-test-guest.elf")


def call(path, cmd, args=None, timeout=30):
    s = socket.socket(socket.AF_UNIX)
    end = time.monotonic() + timeout
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.01)
    m = json.dumps({"id": 1, "cmd": cmd, "args": args or {}}).encode()
    s.sendall(struct.pack(">I", len(m)) + m)
    while True:
        n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
        r = json.loads(s.recv(n, socket.MSG_WAITALL))
        if "id" in r:
            s.close()
            return r


def wait_line(p, text, timeout=30):
    """Time the first line containing text appeared; the rest of the output is drained by a thread (a guest
    that prints every millisecond must never block on a full pipe)."""
    seen = threading.Event()
    at = []

    def pump():
        for line in p.stdout:
            if not seen.is_set() and text in line:
                at.append(time.monotonic())
                seen.set()

    threading.Thread(target=pump, daemon=True).start()
    seen.wait(timeout)
    return at[0] if at else None


def berth(mem, runs, tmp):
    sock = os.path.join(tmp, "c.sock")
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--memory", mem, "--control", sock, "--cmdline",
                          "test=ticker tick_ms=1"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_line(p, "berth-tick 20")
    pauses = []
    for i in range(runs):  # a save that keeps the VM running: the checkpoint's pause
        r = call(sock, "save", {"dir": os.path.join(tmp, f"ck{i}"), "stop": False})
        pauses.append(r["result"]["paused_us"] / 1000)
        shutil.rmtree(os.path.join(tmp, f"ck{i}"))
    state = os.path.join(tmp, "state")
    call(sock, "save", {"dir": state})
    p.wait()
    restores = []
    for _ in range(runs):
        t0 = time.monotonic()
        q = subprocess.Popen([VMM, "--restore", state], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        t1 = wait_line(q, "berth-tick")
        restores.append((t1 - t0) * 1000 if t1 else float("nan"))
        q.kill()
        q.wait()
    return statistics.median(restores), statistics.median(pauses)


def qemu(mem, runs, tmp):
    if not shutil.which("qemu-system-x86_64"):
        return float("nan")
    f = os.path.join(tmp, "qemu.state")
    base = ["qemu-system-x86_64", "-M", "microvm,acpi=on,rtc=off", "-accel", "kvm", "-cpu", "qemu64", "-m", mem,
            "-nodefaults", "-display", "none", "-serial", "stdio", "-kernel", GUEST,
            "-append", "test=ticker tick_ms=1"]
    qmp = os.path.join(tmp, "qmp.sock")
    p = subprocess.Popen(base + ["-qmp", f"unix:{qmp},server=on,wait=off"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
    wait_line(p, "berth-tick 20")
    s = socket.socket(socket.AF_UNIX)
    s.connect(qmp)
    fs = s.makefile("rw")
    fs.readline()
    # Migrate the running VM (QEMU stops it at the end): the incoming side then starts running by itself.
    for c in ({"execute": "qmp_capabilities"},
              {"execute": "migrate", "arguments": {"uri": f"exec:cat > {f}"}}):
        fs.write(json.dumps(c) + "\n")
        fs.flush()
        while "return" not in json.loads(fs.readline()):
            pass
    while True:
        fs.write(json.dumps({"execute": "query-migrate"}) + "\n")
        fs.flush()
        m = json.loads(fs.readline())
        while "return" not in m:
            m = json.loads(fs.readline())
        if m["return"].get("status") in ("completed", "failed"):
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        q = subprocess.Popen(base + ["-incoming", f"exec:cat {f}"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
        t1 = wait_line(q, "berth-tick")
        times.append((t1 - t0) * 1000 if t1 else float("nan"))
        q.kill()
        q.wait()
    return statistics.median(times)


DIRTY_CMDLINE = "test=memwalk mib=0"


def berth_dirtying(runs, tmp):
    """Pauses (ms) of `save` with stop=false while memwalk dirties a fully touched 1 GiB guest, and the
    memory reports."""
    sock = os.path.join(tmp, "d.sock")
    p = subprocess.Popen([VMM, "--kernel", GUEST, "--memory", "1G", "--control", sock, "--cmdline", DIRTY_CMDLINE,
                          "--timeout", "600"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_line(p, "memwalk sweep=2", timeout=120)  # every page written at least once
    pauses, reports = [], []
    for i in range(runs):
        d = os.path.join(tmp, f"dk{i}")
        r = call(sock, "save", {"dir": d, "stop": False}, timeout=120)
        pauses.append(r["result"]["paused_us"] / 1000)
        reports.append(r["result"]["memory"])
        shutil.rmtree(d)
        time.sleep(0.5)
    call(sock, "quit")
    p.wait()
    return pauses, reports


def qmp_open(path):
    s = socket.socket(socket.AF_UNIX)
    end = time.monotonic() + 30
    while True:
        try:
            s.connect(path)
            break
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
    fs = s.makefile("rw")
    fs.readline()

    def cmd(name, args=None):
        m = {"execute": name}
        if args is not None:
            m["arguments"] = args
        fs.write(json.dumps(m) + "\n")
        fs.flush()
        while True:
            r = json.loads(fs.readline())
            if "return" in r or "error" in r:
                return r
    cmd("qmp_capabilities")
    return cmd


def qemu_dirtying(runs, tmp, limit_s=120):
    """QEMU live migration of the same memwalk guest to a file: [(downtime ms, total ms, status)]."""
    if not shutil.which("qemu-system-x86_64"):
        return []
    out = []
    for i in range(runs):
        f = os.path.join(tmp, "qemu-dirty.state")
        qmp = os.path.join(tmp, "qmpd.sock")
        p = subprocess.Popen(["qemu-system-x86_64", "-M", "microvm,acpi=on,rtc=off", "-accel", "kvm", "-cpu", "qemu64",
                              "-m", "1G", "-nodefaults", "-display", "none", "-serial", "stdio", "-kernel", GUEST,
                              "-append", DIRTY_CMDLINE, "-qmp", f"unix:{qmp},server=on,wait=off"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, stdin=subprocess.DEVNULL)
        wait_line(p, "memwalk sweep=2", timeout=120)
        cmd = qmp_open(qmp)
        # Without auto-converge this guest dirties RAM faster than QEMU sends it and the migration never
        # ends at a 50 ms limit: QEMU's answer is to throttle the vCPUs until it fits.
        cmd("migrate-set-capabilities", {"capabilities": [{"capability": "auto-converge", "state": True}]})
        cmd("migrate-set-parameters", {"downtime-limit": 50, "max-bandwidth": 1 << 40})
        cmd("migrate", {"uri": f"exec:cat > {f}"})
        t0 = time.monotonic()
        while True:
            m = cmd("query-migrate")["return"]
            if m.get("status") in ("completed", "failed") or time.monotonic() - t0 > limit_s:
                break
            time.sleep(0.05)
        out.append((m.get("downtime", float("nan")), m.get("total-time", float("nan")), m.get("status")))
        p.kill()
        p.wait()
        if os.path.exists(f):
            os.unlink(f)
    return out


def dirtying(a):
    with tempfile.TemporaryDirectory(prefix="berth-bench-", dir=a.dir) as tmp:
        pauses, reports = berth_dirtying(a.dirty_runs, tmp)
        q = qemu_dirtying(a.dirty_runs, tmp)
    bp = statistics.median(pauses)
    live = statistics.median(r["live_ms"] for r in reports)
    rounds = statistics.median(r["rounds"] for r in reports)
    pb = statistics.median(r["paused_bytes"] for r in reports) / (1 << 20)
    lb = statistics.median(r["live_bytes"] for r in reports) / (1 << 20)
    print(f"1G memwalk (dirtying)  berth save pause {bp:6.1f} ms (runs {', '.join(f'{x:.1f}' for x in pauses)}; "
          f"pre-copy {live:.0f} ms, {rounds:.0f} rounds, {lb:.0f} MiB live, {pb:.1f} MiB paused)", flush=True)
    done = [d for d, _, st in q if st == "completed"]
    if not q:
        print("   QEMU: not installed")
    elif not done:
        print(f"   QEMU migration did not complete within 120 s ({q})")
    else:
        qd = statistics.median(done)
        qt = statistics.median(t for _, t, st in q if st == "completed")
        print(f"   QEMU migrate-to-file downtime {qd:6.1f} ms (runs {', '.join(str(d) for d in done)}; total {qt:.0f} ms)"
              f"   QEMU/berth pause {qd / bp:5.1f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--dirty-runs", type=int, default=5)
    ap.add_argument("--only-dirty", action="store_true", help="only the pre-copy (memwalk) comparison")
    ap.add_argument("--dir", default=None, help="where the saved states go (default: the system's temp dir)")
    a = ap.parse_args()
    if a.only_dirty:
        dirtying(a)
        return 0
    for mem in ("256M", "1G"):  # (also warms the page cache for the memory files: restores read them)
        with tempfile.TemporaryDirectory(prefix="berth-bench-") as tmp:
            restore, pause = berth(mem, a.runs, tmp)
            q = qemu(mem, a.runs, tmp)
        print(f"{mem:5} berth restore→first guest line {restore:7.1f} ms   QEMU (-incoming) {q:7.1f} ms   "
              f"QEMU/berth {q / restore:5.1f}x   berth save pause (VM keeps running) {pause:6.1f} ms", flush=True)
    dirtying(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
