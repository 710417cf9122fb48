"""Shared fixtures for berth's system tests: where the binaries are, and how to run berth-vmm."""
import os
import shutil
import subprocess
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BERTH_BUILD", os.path.join(ROOT, "build"))
VMM = os.path.join(BUILD, "bin", "berth-vmm")
GUEST = os.path.join(BUILD, "guest", "berth-test-guest.elf")
IMG = os.path.join(BUILD, "bin", "berth-img")
BLK_IO = os.path.join(BUILD, "tests", "tools", "blk-io")


def kvm_usable():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError:
        return False


needs_kvm = pytest.mark.skipif(not kvm_usable(), reason="/dev/kvm is not available on this host")


class VmmResult:
    def __init__(self, rc, out, err):
        self.rc, self.out, self.err = rc, out, err

    def results(self):
        """{test: (PASS|FAIL, rest of line)} from 'berth-test <name> <PASS|FAIL> ...' lines."""
        res = {}
        for line in self.out.splitlines():
            if "berth-test " not in line:
                continue
            parts = line[line.index("berth-test "):].strip().split(" ", 3)
            if len(parts) >= 3 and parts[0] == "berth-test":
                res[parts[1]] = (parts[2], parts[3] if len(parts) > 3 else "")
        return res

    def __repr__(self):
        return f"rc={self.rc}\n--- stdout ---\n{self.out[-4000:]}\n--- stderr ---\n{self.err[-4000:]}"


def run_vmm(args, timeout=120, guest=True, vm_timeout=None, **kw):
    cmd = [VMM]
    if guest:
        cmd += ["--kernel", GUEST]
    cmd += list(args)
    if vm_timeout is not None:
        cmd += ["--timeout", str(vm_timeout)]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       errors="replace", timeout=timeout, **kw)
    return VmmResult(p.returncode, p.stdout, p.stderr)


@pytest.fixture(scope="session")
def vmm():
    if not os.access(VMM, os.X_OK):
        pytest.fail(f"{VMM} is missing: build first (meson setup build && ninja -C build)")
    return VMM


@pytest.fixture(scope="session")
def guest():
    if not os.path.exists(GUEST):
        pytest.fail(f"{GUEST} is missing: build first")
    return GUEST


QEMU_BIN = shutil.which("qemu-system-x86_64")


@pytest.fixture
def qemu(guest):
    """QEMU for cross-checks; skipped (with the reason) where it is not installed."""
    if not QEMU_BIN:
        pytest.skip("qemu-system-x86_64 is not installed (Debian: qemu-system-x86)")
    return QEMU_BIN


@pytest.fixture
def berth(vmm, guest):
    """berth-vmm with the test guest; a missing build fails, a host without /dev/kvm skips."""
    if not kvm_usable():
        pytest.skip("/dev/kvm is not available on this host")
    return vmm


@pytest.fixture(scope="session")
def berth_img():
    if not os.access(IMG, os.X_OK):
        pytest.fail(f"{IMG} is missing: build first (meson setup build && ninja -C build)")
    return IMG


@pytest.fixture(scope="session")
def qemu_img():
    """qemu-img (and qemu-io) as the oracle for disk images; skipped where qemu-utils is missing."""
    if not shutil.which("qemu-img") or not shutil.which("qemu-io"):
        pytest.skip("qemu-img/qemu-io are not installed (Debian: qemu-utils)")
    return shutil.which("qemu-img")
