# test_vmstate.py — save a running VM through the control socket and restore it with --restore.
"""The ring-3 ticker (`test=ticker`) shows that a restored guest continues exactly where it was saved; a disk
writer (`test=blk-fill`) saved in the middle of its work finishes after the restore with every byte right (raw
and qcow2); corrupt, truncated or incompatible saved states are refused with exit status 2 and a message naming
the file and the reason."""

import base64
import json
import os
import struct
import shutil
import subprocess
import threading
import time

import pytest

from conftest import GUEST, VMM
from test_guest_blk import DISK_BYTES, first_mismatch
from test_vmm_control import Vmm, sockdir  # noqa: F401  (fixture)

EXIT_CONFIG, EXIT_SAVED = 2, 9


class Restored(Vmm):
    """berth-vmm --restore DIR with a control socket (same helpers as Vmm)."""

    def __init__(self, sockdir, state, extra=(), vm_timeout=120):
        self.sock = os.path.join(sockdir, "ctl2.sock")
        self.cmd = [VMM, "--restore", state, "--control", self.sock, "--timeout", str(vm_timeout), *extra]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.lines, self.err, self.lock = [], [], threading.Lock()
        self.readers = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True),
                        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True)]
        for t in self.readers:
            t.start()


def save(vm, state, stop=True):
    c = vm.client()
    r = c.call("save", {"dir": state, "stop": stop})
    c.close()
    assert r["ok"], r
    return r["result"]


def test_save_and_restore_continue_the_guest(sockdir, tmp_path):
    state = str(tmp_path / "state")
    vm = Vmm(sockdir, "test=ticker tick_ms=50")
    vm.wait_for("berth-tick 10")
    res = save(vm, state)
    assert res["stopped"] and res["dir"] == state
    assert vm.wait() == EXIT_SAVED, vm.report()
    last = vm.ticks()[-1]
    assert sorted(os.listdir(state)) == ["config.json", "memory", "state.json"]
    # RAM is written sparse: far less than the guest's 256 MiB on disk.
    assert os.stat(os.path.join(state, "memory")).st_blocks * 512 < (64 << 20)

    r = Restored(sockdir, state)
    r.wait_for(f"berth-tick {last + 5}")
    ticks = r.ticks()
    assert ticks[0] == last + 1, f"the restored guest starts at {ticks[0]}, saved after {last}"
    assert ticks == list(range(last + 1, ticks[-1] + 1)), ticks
    c = r.client()
    assert c.call("query-status")["result"]["state"] == "running"
    c.call("quit")
    r.wait()


def test_save_without_stopping_then_restore_a_copy(sockdir, tmp_path):
    state = str(tmp_path / "state")
    vm = Vmm(sockdir, "test=ticker tick_ms=50")
    vm.wait_for("berth-tick 5")
    res = save(vm, state, stop=False)
    assert not res["stopped"]
    at_save = vm.ticks()[-1]
    vm.wait_for(f"berth-tick {at_save + 10}")  # the original runs on
    c = vm.client()
    c.call("quit")
    vm.wait()
    r = Restored(sockdir, state)
    r.wait_for(f"berth-tick {at_save + 3}")
    assert r.ticks()[0] in (at_save, at_save + 1), (at_save, r.ticks()[:3])
    r.client().call("quit")
    r.wait()


def host_lost_breakpoint(state):
    """The development host's nested KVM (HOST-FACTS: PVM) can stop a vCPU right after a ring-3 `int3` whose
    #BP it has not delivered yet while reporting no pending event (KVM_GET_VCPU_EVENTS): that state is lost to
    any VMM. True if the saved state shows exactly this: vCPU 0 at CPL 3, no exception injected or pending, and
    the byte before RIP (the guest's user code is identity-mapped) is 0xCC."""
    doc = json.load(open(os.path.join(state, "state.json")))
    v = doc["machine"]["vcpus"][0]
    regs, sregs, ev = (base64.b64decode(v[k]) for k in ("regs", "sregs", "events"))
    rip = struct.unpack_from("<Q", regs, 16 * 8)[0]
    cs_selector = struct.unpack_from("<H", sregs, 12)[0]
    with open(os.path.join(state, "memory"), "rb") as f:
        f.seek(rip - 1)
        before = f.read(1)
    return cs_selector & 3 == 3 and ev[0] == 0 and ev[3] == 0 and before == b"\xcc"


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_disk_writer_saved_mid_work_finishes_after_restore(sockdir, tmp_path, fmt):
    for attempt in range(3):
        disk = str(tmp_path / f"d{attempt}.{fmt}")
        if fmt == "raw":
            with open(disk, "wb") as f:
                f.truncate(DISK_BYTES)
        else:
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, str(DISK_BYTES)], check=True)
        state = str(tmp_path / f"state{attempt}")
        vm = Vmm(sockdir, "test=blk-fill,poweroff pattern=5 chunk=65536 flush_every=4",
                 extra=("--disk", f"{disk},format={fmt}"))
        vm.wait_for("blk-fill flushed=64")
        save(vm, state)
        assert vm.wait() == EXIT_SAVED, vm.report()
        assert not any("blk-fill PASS" in l for l in vm.out()), "saved too late: the workload had finished"
        if host_lost_breakpoint(state):
            continue  # the saved state is already broken by the host: save again
        break
    else:
        pytest.skip("the host's KVM lost a ring-3 #BP at all 3 save points (see host_lost_breakpoint)")
    r = Restored(sockdir, state)
    assert r.wait(120) == 0, r.report()
    assert any("berth-test blk-fill PASS" in l for l in r.out()), r.report()
    img = disk
    if fmt == "qcow2":
        chk = subprocess.run(["qemu-img", "check", disk], capture_output=True, text=True)
        assert chk.returncode == 0, chk.stdout + chk.stderr
        img = str(tmp_path / "d.raw")
        subprocess.run(["qemu-img", "convert", "-O", "raw", disk, img], check=True)
    assert first_mismatch(img, 5) is None


@pytest.fixture
def saved(sockdir, tmp_path):
    state = str(tmp_path / "state")
    vm = Vmm(sockdir, "test=ticker tick_ms=50")
    vm.wait_for("berth-tick 3")
    save(vm, state)
    assert vm.wait() == EXIT_SAVED
    return state


def restore_fails(state, *words, extra=()):
    p = subprocess.run([VMM, "--restore", state, "--timeout", "20", *extra], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == EXIT_CONFIG, (p.returncode, p.stdout, p.stderr)
    for w in words:
        assert w in p.stderr, (w, p.stderr)


def test_corrupt_state_is_refused(saved):
    path = os.path.join(saved, "state.json")
    doc = json.load(open(path))
    doc["machine"]["vcpus"][0]["mp_state"] ^= 1  # one changed value
    json.dump(doc, open(path, "w"))
    restore_fails(saved, "state.json", "checksum mismatch")


def test_truncated_state_is_refused(saved):
    path = os.path.join(saved, "state.json")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    restore_fails(saved, "state.json", "not valid JSON")


def test_truncated_memory_is_refused(saved):
    os.truncate(os.path.join(saved, "memory"), 1 << 20)
    restore_fails(saved, "memory", "does not match the saved RAM size")


def test_other_version_is_refused(saved):
    path = os.path.join(saved, "state.json")
    doc = json.load(open(path))
    doc["version"] = 99
    json.dump(doc, open(path, "w"))
    restore_fails(saved, "state version 99")


def test_other_memory_size_is_refused(saved):
    restore_fails(saved, "--memory asks for", extra=("--memory", "1G"))


def test_missing_state_dir(tmp_path):
    restore_fails(str(tmp_path / "nothing"), "no saved configuration")


def test_restore_and_config_together_are_refused(saved, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"kernel": GUEST}))
    restore_fails(saved, "drop --config", extra=("--config", str(cfg)))


def test_save_into_existing_directory_fails_and_vm_runs_on(sockdir, tmp_path):
    vm = Vmm(sockdir, "test=ticker tick_ms=50")
    vm.wait_for("berth-tick 2")
    c = vm.client()
    r = c.call("save", {"dir": str(tmp_path)})
    assert not r["ok"] and r["error"]["code"] == "save-failed" and "already exists" in r["error"]["message"], r
    assert r["error"]["field"] == "args.dir"
    n = vm.ticks()[-1]
    vm.wait_for(f"berth-tick {n + 3}")
    r = c.call("save", {"dir": 7})
    assert not r["ok"] and r["error"]["code"] == "invalid-argument", r
    c.call("quit")
    vm.wait()


# ---- checkpoints: state + disks switched to overlays; apply = restore over a new overlay ------------------------

FILL_STRIDE = 389  # guest/tests_blk.c


def written_prefix(raw, pattern, chunk=65536):
    """How many chunks of blk-fill's scrambled order hold the pattern; every other chunk must be zero."""
    from test_guest_blk import _chunk, _chunk_base, CHUNK
    n = DISK_BYTES // chunk
    order = [(j * FILL_STRIDE) % n for j in range(n)]
    base = _chunk_base(pattern)
    data = open(raw, "rb").read()
    k = 0
    while k < n:
        c = order[k]
        want = _chunk(base, c * chunk // CHUNK * CHUNK)[(c * chunk) % CHUNK:][:chunk]
        if data[c * chunk:(c + 1) * chunk] != want:
            break
        k += 1
    for c in order[k:]:
        assert data[c * chunk:(c + 1) * chunk] == bytes(chunk), f"chunk {c} written after the checkpoint's prefix"
    return k


def test_checkpoint_then_apply_twice(sockdir, tmp_path):
    disk = str(tmp_path / "base.raw")
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    ck, ov1 = str(tmp_path / "ck"), str(tmp_path / "ov1.qcow2")
    vm = Vmm(sockdir, "test=blk-fill,poweroff pattern=5 chunk=65536 flush_every=4",
             extra=("--disk", f"{disk},format=raw"))
    vm.wait_for("blk-fill flushed=64")
    c = vm.client()
    r = c.call("checkpoint", {"dir": ck, "overlays": [ov1]})
    assert r["ok"], r
    assert r["result"]["disks"] == [{"image": ov1, "backing": disk}], r
    assert c.event("checkpoint")["data"]["disks"][0]["image"] == ov1
    assert vm.wait(120) == 0, vm.report()                      # the VM ran on, into the overlay, and finished
    assert any("blk-fill PASS" in l for l in vm.out()), vm.report()
    k = written_prefix(disk, 5)                                # the base is frozen at the checkpoint
    assert 64 <= k < DISK_BYTES // 65536, k
    final = str(tmp_path / "final.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", ov1, final], check=True)
    assert first_mismatch(final, 5) is None
    for i in (2, 3):                                           # apply the checkpoint, twice
        ov = str(tmp_path / f"ov{i}.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", disk, "-F", "raw", ov], check=True)
        rv = Restored(sockdir, ck, extra=("--disk", f"{ov},format=qcow2"))
        assert rv.wait(120) == 0, rv.report()
        out = rv.out()
        assert any("blk-fill PASS" in l for l in out), rv.report()
        flushed = [int(l.split("flushed=")[1]) for l in out if "flushed=" in l]
        assert flushed and 64 <= flushed[0] <= k + 4, (flushed[:3], k)   # it went on from the checkpoint
        subprocess.run(["qemu-img", "convert", "-O", "raw", ov, final + str(i)], check=True)
        assert first_mismatch(final + str(i), 5) is None
        assert written_prefix(disk, 5) == k                    # applying never writes the checkpoint's layer


def test_disk_only_checkpoint_and_errors(sockdir, tmp_path):
    disk = str(tmp_path / "base.raw")
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    vm = Vmm(sockdir, "test=blk-fill,poweroff pattern=6 chunk=65536 flush_every=4",
             extra=("--disk", f"{disk},format=raw"))
    vm.wait_for("blk-fill flushed=32")
    c = vm.client()
    r = c.call("checkpoint", {"overlays": []})
    assert not r["ok"] and r["error"]["code"] == "checkpoint-failed" and "1 writable disk" in r["error"]["message"]
    exists = str(tmp_path / "exists.qcow2")
    open(exists, "w").close()
    r = c.call("checkpoint", {"overlays": [exists]})
    assert not r["ok"] and "already exists" in r["error"]["message"], r
    r = c.call("checkpoint", {"overlays": "x"})
    assert not r["ok"] and r["error"]["code"] == "invalid-argument" and r["error"]["field"] == "args.overlays"
    ov = str(tmp_path / "ov.qcow2")
    r = c.call("checkpoint", {"overlays": [ov]})
    assert r["ok"] and "dir" not in r["result"], r
    assert vm.wait(120) == 0, vm.report()
    assert any("blk-fill PASS" in l for l in vm.out()), vm.report()
    chk = subprocess.run(["qemu-img", "check", ov], capture_output=True, text=True)
    assert chk.returncode == 0, chk.stdout
    final = str(tmp_path / "final.raw")
    subprocess.run(["qemu-img", "convert", "-O", "raw", ov, final], check=True)
    assert first_mismatch(final, 6) is None
    assert 32 <= written_prefix(disk, 6) < DISK_BYTES // 65536
