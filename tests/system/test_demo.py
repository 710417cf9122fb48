# test_demo.py — the README's first command, as a new user runs it.
"""`./scripts/demo` starts berthd, creates the demo VM through the CLI (or reuses it), starts it, shows its
console until the guest powers off, and stops berthd: every self-test line passes, the VM ends off, and no
berthd or berth-vmm is left behind."""

import os
import subprocess

from conftest import ROOT, needs_kvm


def procs(pattern):
    r = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return r.stdout.split()


@needs_kvm
def test_demo_runs_the_vm_through_berthd_and_cleans_up():
    state = os.path.join(ROOT, "build", "demo-state")
    for run in range(2):  # the second run starts the VM the first one created
        r = subprocess.run([os.path.join(ROOT, "scripts", "demo")], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        out = r.stdout
        for t in ("boot", "smp", "mem", "timer", "exceptions", "pci", "blk", "rng", "poweroff"):
            assert f"berth-test {t} PASS" in out, (t, out[-3000:])
        assert "FAIL" not in out
        lists = [l for l in out.splitlines() if l.startswith("demo ")]
        assert lists[0].split()[1] == "running" and lists[-1].split()[1] == "off", lists
        assert not procs(f"berthd --foreground --state-dir {state}")
        assert not procs(f"berth-vmm.*{state}")
