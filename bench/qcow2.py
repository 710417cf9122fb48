#!/usr/bin/python3
"""qcow2 benchmark: 4 KiB random read/write IOPS on a fully allocated qcow2 image vs the same data raw, on berth,
and berth-qcow2 vs QEMU-qcow2 (virtio-blk-pci on an iothread, aio=io_uring, cache=none), same guest workloads.

Targets (issue 5): berth qcow2 >= 0.9x berth raw, and >= 1.0x QEMU qcow2.
Usage: bench/qcow2.py [--secs 4] [--size-mib 512] [--repeat 3]
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from blk import berth, qemu

WORKLOADS = [("randread-qd1", "blk-randread", 1), ("randread-qd32", "blk-randread", 32),
             ("randwrite-qd1", "blk-randwrite", 1), ("randwrite-qd32", "blk-randwrite", 32)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--secs", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    a = ap.parse_args()
    raw = os.path.join(a.dir, "berth-bench-q.raw")
    q2 = os.path.join(a.dir, "berth-bench-q.qcow2")
    # Fresh random data every time: the write workloads leave zeroes behind, and qemu-img convert turns
    # zeroed clusters into holes that read without any I/O.
    print(f"writing {a.size_mib} MiB of random data to {raw} ...", flush=True)
    subprocess.run(["dd", "if=/dev/urandom", f"of={raw}", "bs=1M", f"count={a.size_mib}", "status=none"],
                   check=True)
    if os.path.exists(q2):
        os.unlink(q2)
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", raw, q2], check=True)  # every cluster allocated
    os.sync()  # no writeback of the new files during the runs
    # Read both files once with O_DIRECT: a virtual host disk caches recently written blocks below us, and the
    # fresh qcow2 file must not be hotter than the older raw one.
    for f in (raw, q2):
        subprocess.run(["dd", f"if={f}", "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], check=True)
    time.sleep(2)
    for name, bench, qd in WORKLOADS:
        runs = []
        for _ in range(max(1, a.repeat)):
            br, _ = berth(raw, bench, qd, 4096, a.secs)
            bq, _ = berth(q2, bench, qd, 4096, a.secs)
            qq, _ = qemu(q2, bench, qd, 4096, a.secs, fmt="qcow2")
            runs.append((br["iops"] if br else 0, bq["iops"] if bq else 0, qq["iops"] if qq else 0))
        r, b, q = (statistics.median(c) for c in zip(*runs))
        print(f"{name:15} berth-raw {r:8.0f}  berth-qcow2 {b:8.0f}  qemu-qcow2 {q:8.0f} iops  "
              f"qcow2/raw {b / r if r else 0:5.2f}x  berth/qemu {b / q if q else 0:5.2f}x", flush=True)
    os.unlink(q2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
