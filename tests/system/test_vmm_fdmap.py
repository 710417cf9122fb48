"""berth-vmm --fd-map PATH=N (and the config field fd_map): disk images, qcow2 backing files, the
kernel and initrd opened through inherited descriptors instead of by name. Bad maps are
configuration errors (status 2) naming --fd-map; a read-only descriptor for a writable disk is
refused naming the disk; and a VMM run as an unprivileged user on files it may not open (root's,
mode 000) boots, writes and verifies its disks, and boots again after a guest reboot — only the
map can have opened them."""
import json
import os
import pwd
import shutil
import subprocess

import pytest

from conftest import GUEST, VMM, needs_kvm, run_vmm

MiB = 1 << 20


def expect_error(r, *words):
    assert r.rc == 2, r
    assert "berth-vmm: error:" in r.err, r
    for w in words:
        assert w in r.err, f"{w!r} not in error\n{r}"


def image(path, size=8 * MiB):
    with open(path, "wb") as f:
        f.truncate(size)
    return str(path)


@pytest.mark.parametrize("arg,words", [
    ("disk.raw", ["--fd-map", "PATH=N"]),
    ("=3", ["--fd-map", "PATH=N"]),
    ("/a/disk.raw=", ["--fd-map", "PATH=N"]),
    ("disk.raw=3", ["--fd-map", "absolute"]),
    ("/a/disk.raw=x", ["--fd-map", "not a descriptor number"]),
    ("/a/disk.raw=-1", ["--fd-map", "not a descriptor number"]),
    ("/a/disk.raw=250", ["--fd-map", "descriptor 250 is not open"]),
])
def test_bad_maps(vmm, guest, arg, words):
    expect_error(run_vmm(["--check", "--fd-map", arg]), *words)


def test_descriptor_must_be_a_file_or_block_device(vmm, guest, tmp_path):
    r, w = os.pipe()
    try:
        expect_error(run_vmm(["--check", "--fd-map", f"/a/disk.raw={r}"], pass_fds=(r,)),
                     "--fd-map", "not a regular file or block device")
        d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        expect_error(run_vmm(["--check", "--fd-map", f"/a/disk.raw={d}"], pass_fds=(d,)),
                     "--fd-map", "not a regular file or block device")
        os.close(d)
    finally:
        os.close(r)
        os.close(w)


def test_a_path_mapped_twice_is_refused(vmm, guest, tmp_path):
    p = image(tmp_path / "d.raw")
    fd = os.open(p, os.O_RDWR)
    try:
        expect_error(run_vmm(["--check", "--fd-map", f"{p}={fd}", "--fd-map",
                              f"{tmp_path}/./x/../d.raw={fd}"], pass_fds=(fd,)),
                     "--fd-map", "mapped twice")
    finally:
        os.close(fd)


def test_read_only_descriptor_for_a_writable_disk(vmm, guest, tmp_path):
    p = image(tmp_path / "d.raw")
    fd = os.open(p, os.O_RDONLY)
    try:
        r = run_vmm(["--check", "--disk", p, "--fd-map", f"{p}={fd}"], pass_fds=(fd,))
        expect_error(r, "--disk", p, "--fd-map", "read-only")
        r = run_vmm(["--check", "--disk", f"{p},readonly", "--fd-map", f"{p}={fd}"],
                    pass_fds=(fd,))
        assert r.rc == 0 and "configuration OK" in r.out, r
    finally:
        os.close(fd)


def test_config_field_round_trips(vmm, guest, tmp_path):
    p = image(tmp_path / "d.raw")
    fd = os.open(p, os.O_RDWR)
    try:
        cfg = tmp_path / "vm.json"
        cfg.write_text(json.dumps({"kernel": GUEST, "disks": [{"path": p}],
                                   "fd_map": {f"{tmp_path}//d.raw": fd}}))
        r = run_vmm(["--config", str(cfg), "--print-config"], guest=False, pass_fds=(fd,))
        assert r.rc == 0, r
        assert json.loads(r.out)["fd_map"] == {p: fd}
        # flags replace the file's map (the disk then opens by name)
        other = str(tmp_path / "other.raw")
        r = run_vmm(["--config", str(cfg), "--fd-map", f"{other}={fd}", "--print-config"],
                    guest=False, pass_fds=(fd,))
        assert r.rc == 0 and json.loads(r.out)["fd_map"] == {other: fd}, r
        # a mapped kernel is read through the map: here the disk's descriptor, not a kernel
        r = run_vmm(["--config", str(cfg), "--fd-map", f"{GUEST}={fd}", "--check"], guest=False,
                    pass_fds=(fd,))
        expect_error(r, GUEST, "neither a bzImage")
        for bad, words in (([], ["fd_map", "must be an object"]),
                           ({"rel": fd}, ["fd_map", "absolute"]),
                           ({p: "3"}, ["fd_map", "descriptor number"])):
            cfg.write_text(json.dumps({"kernel": GUEST, "fd_map": bad}))
            expect_error(run_vmm(["--config", str(cfg), "--check"], guest=False,
                                 pass_fds=(fd,)), *words)
    finally:
        os.close(fd)


USER = "berthfdmapvmm"  # not the berthd tests' users: those tests may run at once


@pytest.fixture
def vmm_user():
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv")
    subprocess.run(["userdel", USER], capture_output=True)
    r = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        "--groups", "kvm", USER], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"useradd failed: {r.stderr.strip()}")
    try:
        yield pwd.getpwnam(USER)
    finally:
        subprocess.run(["userdel", USER], capture_output=True)


@needs_kvm
def test_unprivileged_vmm_opens_only_through_the_map(vmm, guest, vmm_user, tmp_path):
    if not shutil.which("qemu-img"):
        pytest.skip("needs qemu-img")
    d = tmp_path / "files"
    d.mkdir()
    raw = image(d / "plain.raw")
    base, top = str(d / "base.qcow2"), str(d / "top.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", base, "8M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
                    top], check=True)
    kernel = str(d / "guest.elf")
    shutil.copyfile(GUEST, kernel)
    fds = [os.open(raw, os.O_RDWR), os.open(top, os.O_RDWR), os.open(base, os.O_RDONLY),
           os.open(kernel, os.O_RDONLY)]
    try:
        # once open, the files are nobody's to open by name (root would bypass the modes; the
        # VMM's user cannot), nor may the user search their directory
        for p in (raw, top, base, kernel):
            os.chmod(p, 0)
        os.chmod(d, 0o700)
        args = ["setpriv", f"--reuid={vmm_user.pw_uid}", f"--regid={vmm_user.pw_gid}",
                "--init-groups", VMM, "--kernel", kernel,
                "--disk", f"{raw},format=raw", "--disk", top,
                "--cmdline", "test=blk,reboot-acpi", "--on-reboot", "restart", "--timeout", "15"]
        for p, fd in zip((raw, top, base, kernel), fds):
            args += ["--fd-map", f"{p}={fd}"]
        p = subprocess.run(args, pass_fds=fds, capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        out = p.stdout
        # the guest wrote the whole disk and read it back (its first disk), rebooted, and the
        # rebuilt VM read the kernel and opened the disks again through the same descriptors
        # (until --timeout stops the reboot loop)
        assert out.count("berth-guest: start") >= 2, p
        assert out.count("berth-test blk PASS") >= 2, p
        assert "restarting the VM" in p.stderr, p
        assert "Permission denied" not in p.stderr, p
        # without the map the same user cannot even start
        q = subprocess.run(args[:args.index("--fd-map")], capture_output=True, text=True,
                           timeout=60, stdin=subprocess.DEVNULL)
        assert q.returncode == 2 and "Permission denied" in q.stderr, q
    finally:
        for fd in fds:
            os.close(fd)
