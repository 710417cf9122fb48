"""berthd hands each VMM its disk images (and their qcow2 backing chains), kernel and initrd as
inherited descriptors (berth-vmm --fd-map): a VMM running as an unprivileged user (--vmm-user) uses
root-owned 0600 files it could not open by name — a raw image, a qcow2 overlay over a qcow2 base
outside any pool (the overlay names its base relatively), the kernel — writes and verifies them
with the test guest (qemu-img/qemu-io read the result back as root), and checkpoints of such a VM
(an overlay in the VM's own directory over the root-owned image, merged back into it on delete)
work while it runs, as do a restart and a save and restore."""
import os
import shutil
import stat
import subprocess

import pytest

from test_berthd_lifecycle import GUEST, V, act, create, daemon, run_dir, vm  # noqa: F401
from test_berthd_disks import guest_blk, qcheck, qinfo, disk_user  # noqa: F401
from test_berthd_checkpoints import (PATTERN, WRITER, ck_create, ck_do, ck_list, flushed,
                                     wait_flushed)
from test_checkpoint_tree import prefix_of
from test_guest_blk import first_mismatch
from conftest import kvm_usable

pytestmark = [pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host"),
              pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")]

MiB = 1 << 20


def root_only(path):
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.stat(path).st_uid == 0


@pytest.fixture
def files(run_dir):
    """A root-owned directory the VMM user may traverse (not list), outside berthd's pool, with a
    root-only copy of the test guest's kernel."""
    d = os.path.join(run_dir, "files")
    os.mkdir(d)
    os.chmod(d, 0o711)
    kernel = os.path.join(d, "guest.elf")
    shutil.copyfile(GUEST, kernel)
    root_only(kernel)
    return d, kernel


def vmm_cannot_read(user, path):
    """The VMM's user gets EACCES opening path by name (so only the handed descriptor works)."""
    r = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                        "--clear-groups", "head", "-c1", path], capture_output=True, text=True)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r


def test_unprivileged_vmm_uses_root_only_raw_and_qcow2_chain(daemon, disk_user, run_dir, files):
    fdir, kernel = files
    d = daemon(["--vmm-user", disk_user.pw_name], state_dir=os.path.join(run_dir, "state"))
    raw = os.path.join(fdir, "plain.raw")
    with open(raw, "wb") as f:
        f.truncate(8 * MiB)
    root_only(raw)
    base, top = os.path.join(fdir, "base.qcow2"), os.path.join(fdir, "top.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "8M"], check=True)
    # the overlay names its base relatively: resolved against its own directory
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                    top], check=True)
    for p in (base, top):
        root_only(p)
        vmm_cannot_read(disk_user, p)
    vmm_cannot_read(disk_user, raw)
    vmm_cannot_read(disk_user, kernel)

    boot = {"kernel": kernel, "cmdline": "test=blk,halt"}
    create(d, "fr", boot=boot, disks=[{"path": raw, "format": "raw"}])
    create(d, "fq", boot=boot, disks=[{"path": top}])
    kv = guest_blk(d, "fr")
    assert int(kv["sectors"]) == 8 * MiB // 512, kv
    assert first_mismatch(raw, 1) is None  # the guest's pattern, read by root
    kv = guest_blk(d, "fq")
    assert int(kv["sectors"]) == 8 * MiB // 512, kv
    qcheck(top)
    assert qinfo(top)["backing-filename"] == "base.qcow2"
    out = os.path.join(run_dir, "top.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", top, out], check=True)
    assert first_mismatch(out, 1) is None
    # the writes went to the overlay: the base still reads as zeroes
    r = subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0 0 8M", base],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "read 8388608/8388608" in r.stdout, r
    for p in (raw, top, base, kernel):  # berthd changed nothing about the files
        assert os.stat(p).st_uid == 0 and stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_checkpoints_of_a_vm_on_a_root_only_disk(daemon, disk_user, run_dir, files):
    fdir, kernel = files
    d = daemon(["--vmm-user", disk_user.pw_name], state_dir=os.path.join(run_dir, "state"))
    raw = os.path.join(fdir, "ck.raw")
    with open(raw, "wb") as f:
        f.truncate(64 * MiB)
    root_only(raw)
    create(d, "fc", boot={"kernel": kernel, "cmdline": WRITER}, disks=[{"path": raw, "format": "raw"}])
    act(d, "fc", "start")
    v = vm(d, "fc")
    wait_flushed(d, v, 256)
    a = ck_create(d, "fc", "A")["result"]["checkpoint"]
    # the layer the VM writes now is in its own (the VMM user's) directory, over the root-only
    # image, which the VMM reopened read-only through its descriptor
    assert a["disks"][0] == raw
    now = flushed(d, v)[-1]
    wait_flushed(d, v, now + 256)
    op = ck_do(d, "fc", "A", "delete")  # merged into the image through its descriptor
    assert op["result"]["checkpoint"]["name"] == "A", op
    assert ck_list(d, "fc") == {"checkpoints": [], "current": None}
    assert vm(d, "fc")["state"] == "running"
    wait_flushed(d, v, flushed(d, v)[-1] + 128)  # the writer goes on
    act(d, "fc", "turn-off")
    k = prefix_of(raw, PATTERN)
    assert k >= now + 256, (k, now)
    assert os.stat(raw).st_uid == 0 and stat.S_IMODE(os.stat(raw).st_mode) == 0o600
    # it starts again on the same image; saved and restored, it gets the same map
    act(d, "fc", "start")
    v = vm(d, "fc")
    wait_flushed(d, v, 16)
    act(d, "fc", "pause")
    act(d, "fc", "save")
    act(d, "fc", "start")
    assert vm(d, "fc")["state_reason"] == "restored"
    wait_flushed(d, v, flushed(d, v)[-1] + 64)
    act(d, "fc", "turn-off")
    assert os.stat(raw).st_uid == 0 and stat.S_IMODE(os.stat(raw).st_mode) == 0o600


def test_start_fails_naming_the_disk(daemon, run_dir, files):
    fdir, kernel = files
    d = daemon(state_dir=os.path.join(run_dir, "state"))
    missing = os.path.join(fdir, "gone.qcow2")
    top = os.path.join(fdir, "orphan.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-u", "-b", missing, "-F", "qcow2",
                    top, "8M"], check=True)
    with open(os.path.join(fdir, "plain.raw"), "wb") as f:
        f.truncate(MiB)
    create(d, "fm", boot={"kernel": kernel, "cmdline": "test=ticker"},
           disks=[{"path": os.path.join(fdir, "plain.raw"), "readonly": True, "format": "raw"},
                  {"path": top}])
    op = act(d, "fm", "start", expect="failed")
    msg = op["error"]["message"]
    assert "disks[1]" in msg and missing in msg and "No such file" in msg, op
    assert vm(d, "fm")["state"] == "off"
    # a FIFO as a disk does not hold the start up (an open of it would block)
    fifo = os.path.join(fdir, "fifo")
    os.mkfifo(fifo)
    create(d, "ff", boot={"kernel": kernel, "cmdline": "test=ticker"},
           disks=[{"path": fifo, "format": "raw"}])
    op = act(d, "ff", "start", expect="failed")
    msg = op["error"]["message"]
    assert "disks[0]" in msg and fifo in msg and "not a regular file or block device" in msg, op
