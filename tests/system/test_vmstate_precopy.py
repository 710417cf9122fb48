# test_vmstate_precopy.py — save and checkpoint pre-copy guest RAM while the guest runs (docs/control.md).
"""`test=memwalk` sweeps RAM without pause, each page holding (sweep, index, pattern) and checked against the
previous sweep before it is rewritten: a restored guest whose memory file missed a page written during the
pre-copy (or between its last round and the pause) reports `memwalk FAIL reason=stale-page`. A disk reader
(`blk-verify rounds=N`) saved while the VMM itself writes its buffers (virtio-blk reads, used rings) checks the
VMM-side dirty tracking: KVM's dirty log does not see those writes. A VM a client paused is saved whole,
without pre-copy."""

import time

import pytest

from test_guest_blk import write_pattern
from test_vmm_control import Vmm, sockdir  # noqa: F401  (fixture)
from test_vmstate import EXIT_SAVED, Restored, host_lost_breakpoint

MIB = 1 << 20


def sweeps(vm):
    return [int(l.split("sweep=")[1].split()[0]) for l in vm.out() if "berth-info memwalk sweep=" in l]


def check_memory_report(m, at_least, dirtying=False):
    assert m["precopy"] is True, m
    assert m["live_bytes"] >= at_least, m
    assert m["live_ms"] > 0 and m["paused_bytes"] >= 0, m
    if dirtying:  # the guest wrote RAM throughout: the first pass left dirty pages that a round rewrote
        assert m["rounds"] >= 1, m


def wait_sweeps(rv, timeout=120):
    """The restored memwalk guest's sweep numbers once it has done two whole sweeps after the first it
    reports (so every page was checked); fails on a memwalk FAIL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = rv.out()
        bad = [l for l in out if "memwalk FAIL" in l]
        assert not bad, bad
        s = sweeps(rv)
        if s and s[-1] >= s[0] + 2:
            return s
        if rv.proc.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"the restored guest did not complete two more sweeps\n{rv.report()}")


@pytest.mark.parametrize("how", ["save", "checkpoint"])
def test_memwalk_saved_mid_sweep_continues_without_stale_pages(sockdir, tmp_path, how):
    for attempt in range(3):
        state = str(tmp_path / f"state{attempt}")
        vm = Vmm(sockdir, "test=memwalk mib=160", extra=("--memory", "256M"))
        vm.wait_for("memwalk sweep=3")
        c = vm.client()
        before = sweeps(vm)[-1]
        if how == "save":
            r = c.call("save", {"dir": state}, timeout=60)
            assert r["ok"], r
            assert vm.wait() == EXIT_SAVED, vm.report()
            lo = hi = sweeps(vm)[-1]          # every line the guest printed before the pause
        else:
            r = c.call("checkpoint", {"dir": state}, timeout=60)
            assert r["ok"], r
            hi = sweeps(vm)[-1]
            vm.wait_for(f"memwalk sweep={hi + 2}")  # the VM runs on after the checkpoint
            c.call("quit")
            vm.wait()
            lo = before
        res = r["result"]
        check_memory_report(res["memory"], 160 * MIB, dirtying=True)
        assert res["paused_us"] > 0, res
        assert not any("FAIL" in l for l in vm.out()), vm.report()
        if host_lost_breakpoint(state):
            continue  # the host lost the guest's ring-3 #BP at this save point: take another
        break
    else:
        pytest.skip("the host's KVM lost a ring-3 #BP at all 3 save points (see host_lost_breakpoint)")
    rv = Restored(sockdir, state)
    try:
        s = wait_sweeps(rv)
    finally:
        if rv.proc.poll() is None:
            rv.client().call("quit")
        rv.wait()
    assert s == list(range(s[0], s[-1] + 1)), s
    assert lo + 1 <= s[0] <= hi + 1, (lo, s[0], hi)  # it went on with the sweep in progress at the save


def test_precopy_tracks_what_the_devices_write(sockdir, tmp_path):
    """virtio-blk reads land in guest buffers by the VMM's hand (io_uring), invisible to KVM's dirty log."""
    disk = str(tmp_path / "d.raw")
    write_pattern(disk, 7, size=256 * MIB)  # a whole-disk pass takes long against the gap between passes
    for attempt in range(3):
        state = str(tmp_path / f"state{attempt}")
        # `mem` leaves all RAM touched, so the pre-copy's first pass runs for a while, the reader going on.
        vm = Vmm(sockdir, "test=mem,blk-verify,poweroff pattern=7 rounds=40",
                 extra=("--memory", "256M", "--disk", f"{disk},readonly"))
        vm.wait_for("blk-verify round=3")
        c = vm.client()
        r = c.call("save", {"dir": state}, timeout=60)
        assert r["ok"], r
        assert vm.wait() == EXIT_SAVED, vm.report()
        check_memory_report(r["result"]["memory"], 200 * MIB)
        assert not any("blk-verify PASS" in l for l in vm.out()), "saved too late: the reader had finished"
        if host_lost_breakpoint(state):
            continue
        break
    else:
        pytest.skip("the host's KVM lost a ring-3 #BP at all 3 save points (see host_lost_breakpoint)")
    rv = Restored(sockdir, state)
    assert rv.wait(120) == 0, rv.report()
    out = rv.out()
    assert any("berth-test blk-verify PASS" in l for l in out), rv.report()
    assert not any("FAIL" in l for l in out), rv.report()


def test_a_paused_vm_is_saved_whole_without_precopy(sockdir, tmp_path):
    state = str(tmp_path / "state")
    vm = Vmm(sockdir, "test=ticker tick_ms=20")
    vm.wait_for("berth-tick 5")
    c = vm.client()
    assert c.call("pause")["ok"]
    time.sleep(0.2)  # lines printed before the pause may still be in the pipe
    at = vm.ticks()[-1]
    r = c.call("save", {"dir": state, "stop": False}, timeout=60)
    assert r["ok"], r
    m = r["result"]["memory"]
    assert m["precopy"] is False and m["rounds"] == 0 and m["live_bytes"] == 0, m
    assert m["paused_bytes"] > 0, m
    assert c.call("query-status")["result"]["state"] == "paused"  # the client's pause still holds
    time.sleep(0.2)
    assert vm.ticks()[-1] == at
    assert c.call("resume")["ok"]
    vm.wait_for(f"berth-tick {at + 3}")
    c.call("quit")
    vm.wait()
    rv = Restored(sockdir, state)
    rv.wait_for(f"berth-tick {at + 3}")
    assert rv.ticks()[0] in (at, at + 1), (at, rv.ticks()[:3])
    rv.client().call("quit")
    rv.wait()
