#!/usr/bin/python3
"""Checkpoint-tree benchmark: deleting a checkpoint whose only child is the running VM merges the VM's own disk
layer into the disk below it while the VM runs. berth's `checkpoint-delete` against QEMU's live active commit
(QMP `block-commit` of the active layer, then `block-job-complete`), same guest, same data: the guest writes
--mib MiB into the overlay first. Also: how long applying a checkpoint pauses the guest.

Usage: bench/checkpoint.py [--mib 256] [--runs 3] [--dir /var/tmp]
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
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VMM = os.path.join(ROOT, "build", "bin", "berth-vmm")
GUEST = os.path.join(ROOT, "build", "guest", "berth-test-guest.elf")
DISK_MIB = 1024


class Proc:
    """A VM process whose console lines are collected by a thread (a full pipe would stall the VM)."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT)
        self.lines = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in iter(self.p.stdout.readline, b""):
            self.lines.append(raw.decode(errors="replace"))

    def wait_for(self, text, timeout=300):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in l for l in self.lines):
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.01)
        raise RuntimeError(f"'{text}' not seen:\n" + "".join(self.lines[-20:]))

    def stop(self):
        self.p.kill()
        self.p.wait()


def connect(path, timeout=10):
    end = time.monotonic() + timeout
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(path)
            return s
        except OSError:
            s.close()
            if time.monotonic() > end:
                raise
            time.sleep(0.01)


class Ctl:
    """berth-vmm's control socket (framed JSON)."""

    def __init__(self, path):
        self.s, self.buf, self.n = connect(path), b"", 0

    def _frame(self):
        while True:
            if len(self.buf) >= 4:
                n = struct.unpack(">I", self.buf[:4])[0]
                if len(self.buf) >= 4 + n:
                    m, self.buf = json.loads(self.buf[4:4 + n]), self.buf[4 + n:]
                    return m
            d = self.s.recv(65536)
            if not d:
                raise RuntimeError("control socket closed")
            self.buf += d

    def call(self, cmd, args=None):
        self.n += 1
        m = json.dumps({"id": self.n, "cmd": cmd, "args": args or {}}).encode()
        self.s.sendall(struct.pack(">I", len(m)) + m)
        while True:
            r = self._frame()
            if r.get("id") == self.n:
                if not r["ok"]:
                    raise RuntimeError(r)
                return r["result"]


class Qmp:
    def __init__(self, path):
        self.f = connect(path).makefile("rw")
        self.events = []
        json.loads(self.f.readline())
        self.call("qmp_capabilities")

    def call(self, cmd, **args):
        self.f.write(json.dumps({"execute": cmd, "arguments": args}) + "\n")
        self.f.flush()
        while True:
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)
            elif "return" in m:
                return m["return"]
            elif "error" in m:
                raise RuntimeError(m)

    def event(self, name):
        while True:
            for e in self.events:
                if e["event"] == name:
                    self.events.remove(e)
                    return e
            m = json.loads(self.f.readline())
            if "event" in m:
                self.events.append(m)


def fill_cmdline(mib):
    return f"test=blk-fill,ticker pattern=3 chunk=65536 count={mib * 16} flush_every=256"


def base_disk(d):
    disk = os.path.join(d, "base.raw")
    with open(disk, "wb") as f:
        f.truncate(DISK_MIB << 20)
    return disk


def berth_run(d, mib):
    disk, ck, ctl = base_disk(d), os.path.join(d, "ck"), os.path.join(d, "ctl.sock")
    vm = Proc([VMM, "--kernel", GUEST, "--memory", "256M", "--cmdline", fill_cmdline(mib), "--control", ctl,
               "--checkpoint-dir", ck, "--disk", f"{disk},format=raw,cache=none"])
    try:
        c = Ctl(ctl)
        c.call("checkpoint-create", {"name": "A", "disk_only": True})  # the guest writes into the overlay
        vm.wait_for("blk-fill PASS")
        t0 = time.monotonic()
        res = c.call("checkpoint-delete", {"checkpoint": "A"})
        merge = time.monotonic() - t0
        c.call("checkpoint-create", {"name": "B"})
        applied = c.call("checkpoint-apply", {"checkpoint": "B"})
        return merge, res["paused_us"] / 1000, applied["paused_us"] / 1000
    finally:
        vm.stop()


def qemu_run(d, mib):
    disk, top, qmp = base_disk(d), os.path.join(d, "top.qcow2"), os.path.join(d, "qmp.sock")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", disk, "-F", "raw", top], check=True)
    vm = Proc(["qemu-system-x86_64", "-M", "q35", "-accel", "kvm", "-cpu", "qemu64", "-m", "256M", "-nodefaults",
               "-nographic", "-no-reboot", "-serial", "stdio", "-kernel", GUEST, "-append", fill_cmdline(mib),
               "-qmp", f"unix:{qmp},server=on,wait=off", "-object", "iothread,id=io0",
               "-drive", f"if=none,id=d0,file={top},format=qcow2,cache=none,aio=io_uring",
               "-device", "virtio-blk-pci,disable-legacy=on,drive=d0,iothread=io0"])
    try:
        q = Qmp(qmp)
        vm.wait_for("blk-fill PASS")
        t0 = time.monotonic()
        q.call("block-commit", device="d0", **{"job-id": "commit"})
        q.event("BLOCK_JOB_READY")
        q.call("block-job-complete", device="commit")
        q.event("BLOCK_JOB_COMPLETED")
        return time.monotonic() - t0
    finally:
        vm.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    d = os.path.join(a.dir, "berth-bench-ckpt")
    rows = []
    for _ in range(a.runs):
        for who in ("berth", "qemu"):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            os.sync()
            rows.append((who, berth_run(d, a.mib) if who == "berth" else qemu_run(d, a.mib)))
    shutil.rmtree(d, ignore_errors=True)
    b = [r for w, r in rows if w == "berth"]
    q = [r for w, r in rows if w == "qemu"]
    bm = statistics.median(x[0] for x in b)
    qm = statistics.median(q)
    print(f"merge the running VM's {a.mib} MiB layer into its base (live):")
    print(f"  berth checkpoint-delete {bm * 1000:8.0f} ms ({a.mib / bm:6.0f} MiB/s), guest paused "
          f"{statistics.median(x[1] for x in b):.1f} ms")
    print(f"  QEMU block-commit       {qm * 1000:8.0f} ms ({a.mib / qm:6.0f} MiB/s)")
    print(f"  QEMU / berth            {qm / bm:8.2f}x")
    print(f"apply a checkpoint (256 MiB guest): guest paused {statistics.median(x[2] for x in b):.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
