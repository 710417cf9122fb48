# test_guest_virtio_qemu.py — the test guest's PCI, MSI-X and virtio-pci (modern) drivers on QEMU q35, and on berth.
"""The test guest enumerates PCI through 0xCF8/0xCFC and ECAM, sets up MSI-X and drives virtio-rng through the
modern virtio-pci transport (virtio 1.2, split virtqueues, indirect descriptors, EVENT_IDX), its data path running
in ring 3. QEMU TCG (q35, `-device virtio-rng-pci,disable-legacy=on`) is the reference: every test must pass
there, which proves the guest drivers follow the specs. The berth variants run the same tests on berth-vmm and are
skipped until berth-vmm grows `--rng`."""

import os
import re
import shutil
import subprocess

import pytest


REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ELF = os.environ.get("BERTH_GUEST_ELF", os.path.join(REPO, "build", "guest", "berth-test-guest.elf"))
VMM = os.path.join(REPO, "build", "bin", "berth-vmm")
QEMU = shutil.which("qemu-system-x86_64")
TIMEOUT = 180

RESULT = re.compile(r"^berth-test (\S+) (PASS|FAIL)\b ?(.*)$")
KV = re.compile(r'(\w+)=("[^"]*"|\S+)')
PCI_INFO = re.compile(r"^berth-info pci (\S+) vendor=(\w+) device=(\w+) class=(\w+) hdr=\d+ bars=(\S+)$")

RNG = ["-device", "virtio-rng-pci,disable-legacy=on"]
VIRTIO_TESTS = ["msix", "rng", "virtio-reset", "virtio-features"]


def qemu_cmd(append, extra=()):
    return [QEMU, "-M", "q35", "-accel", "tcg", "-m", "512M", "-smp", "2", "-display", "none", "-nodefaults",
            "-serial", "stdio", "-no-reboot", "-kernel", ELF, "-append", append, *extra]


def berth_cmd(append):
    return [VMM, "--kernel", ELF, "--rng", "--cmdline", append, "--timeout", "60"]


class Run:
    def __init__(self, cmd, returncode, output):
        self.cmd = cmd
        self.returncode = returncode
        self.output = output
        # The console may prefix the first line with firmware output: keep what follows "berth-".
        self.lines = []
        for raw in output.replace("\r", "").split("\n"):
            i = raw.find("berth-")
            if i >= 0:
                self.lines.append(raw[i:])

    def report(self):
        return f"cmd: {' '.join(self.cmd)}\nrc={self.returncode}\n{self.output[-6000:]}"

    def result(self, name):
        got = [m for m in (RESULT.match(line) for line in self.lines) if m and m.group(1) == name]
        assert len(got) == 1, f"expected one result line for {name}\n{self.report()}"
        return got[0].group(2), dict(KV.findall(got[0].group(3)))

    def passed(self, name):
        status, kv = self.result(name)
        assert status == "PASS", f"{name} failed: {kv}\n{self.report()}"
        return kv

    def pci_functions(self):
        """{'BB:DD.F': (vendor, device, class, bars)} from the `pci` test's info lines."""
        found = {}
        for line in self.lines:
            m = PCI_INFO.match(line)
            if m:
                found[m.group(1)] = (m.group(2), m.group(3), m.group(4), m.group(5))
        return found


def run(cmd, timeout=TIMEOUT):
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"guest did not finish within {timeout}s: {' '.join(cmd)}\n{out}")
    r = Run(cmd, p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace"))
    assert r.returncode == 0, r.report()
    assert not any("unexpected" in line for line in r.lines), r.report()
    r.passed("poweroff")
    return r


def bar_addrs(bars):
    """Memory BAR addresses from a `bars=` field like 1:mem@0xfebd5000+0x1000,4:mem64p@0x180000000+0x4000."""
    return [int(m.group(1), 16) for m in re.finditer(r"\d+:mem\w*@(0x[0-9a-f]+)\+", bars)]


def check_virtio(name, kv):
    """What must hold for each virtio test's PASS line, whatever the VMM."""
    if name == "msix":
        # ring 0 hlt, ring 3, after unmasking the entry, after clearing the function mask
        assert int(kv["irqs"]) == 4, kv
        assert int(kv["vectors"]) >= 1, kv
    elif name == "rng":
        assert int(kv["bytes"]) >= 65536, kv
        assert 450 <= int(kv["ones_permille"]) <= 550, kv
    elif name == "virtio-reset":
        assert kv["cycles"] == "2", kv
    elif name == "virtio-features":
        assert int(kv["accepted"], 16) & (1 << 32), kv
        assert kv["no_v1"] in ("refused", "accepted"), kv


# ---- QEMU: the reference ---------------------------------------------------------------------------------------

def test_pci_qemu(qemu):
    r = run(qemu_cmd("test=pci,poweroff", RNG))
    kv = r.passed("pci")
    funcs = r.pci_functions()
    assert int(kv["devices"]) == len(funcs) >= 4, r.report()  # host bridge, rng, ISA bridge, SATA, SMBus
    assert ("1af4", "1044", "00ff00") == funcs["00:01.0"][:3], r.report()
    assert funcs["00:00.0"][:2] == ("8086", "29c0"), r.report()  # q35 host bridge
    assert int(kv["caps"]) > 0, r.report()


def test_pci_qemu_two_virtio_devices(qemu, tmp_path):
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    r = run(qemu_cmd("test=pci,poweroff", RNG + [
        "-device", "virtio-blk-pci,disable-legacy=on,drive=d0",
        "-drive", f"if=none,id=d0,file={img},format=raw"]))
    kv = r.passed("pci")
    ids = sorted((v, d) for v, d, _, _ in r.pci_functions().values() if v == "1af4")
    assert ids == [("1af4", "1042"), ("1af4", "1044")], r.report()
    assert int(kv["devices"]) >= 6, r.report()


def test_pci_qemu_behind_root_port(qemu):
    """A PCIe root port (a PCI-PCI bridge) with virtio-rng on its secondary bus: the scan follows the bridge."""
    r = run(qemu_cmd("test=pci,rng,poweroff", [
        "-device", "pcie-root-port,id=rp1,chassis=1", "-device", "virtio-rng-pci,disable-legacy=on,bus=rp1"]))
    r.passed("pci")
    funcs = r.pci_functions()
    assert funcs.get("01:00.0", ())[:2] == ("1af4", "1044"), r.report()
    check_virtio("rng", r.passed("rng"))


@pytest.mark.parametrize("name", VIRTIO_TESTS)
def test_virtio_qemu(qemu, name):
    r = run(qemu_cmd(f"test={name},poweroff", RNG))
    check_virtio(name, r.passed(name))


def test_virtio_high_bars_qemu(qemu):
    """A 2 GiB ivshmem BAR does not fit below 4 GiB, so SeaBIOS moves every 64-bit BAR (virtio's notify/common
    BAR too) above 4 GiB: the guest must map them there, user-accessible, for ring 3."""
    r = run(qemu_cmd("test=pci,msix,rng,poweroff", RNG + [
        "-object", "memory-backend-ram,id=hm,size=2G", "-device", "ivshmem-plain,memdev=hm"]))
    r.passed("pci")
    rng = [f for f in r.pci_functions().values() if f[:2] == ("1af4", "1044")]
    assert len(rng) == 1, r.report()
    assert max(bar_addrs(rng[0][3])) >= 1 << 32, f"virtio BAR not above 4 GiB\n{r.report()}"
    check_virtio("msix", r.passed("msix"))
    check_virtio("rng", r.passed("rng"))


def test_virtio_reset_outstanding_qemu(qemu):
    """Rate-limit QEMU's rng so the quota is used up by the guest's first 8336-byte run: the two requests posted
    just before the reset are then still pending inside the device when the driver writes status 0."""
    r = run(qemu_cmd("test=virtio-reset,poweroff",
                     ["-device", "virtio-rng-pci,disable-legacy=on,max-bytes=8336,period=4000"]))
    kv = r.passed("virtio-reset")
    assert kv["completed_unreaped"] == "0", r.report()


def test_virtio_features_qemu_policy(qemu):
    """QEMU 7.2 lets FEATURES_OK stick without VERSION_1 (virtio 1.2, 6.2: a device MAY fail to operate). Pin
    that down so a change of the reference's behaviour is noticed."""
    r = run(qemu_cmd("test=virtio-features,poweroff", RNG))
    kv = r.passed("virtio-features")
    assert kv["no_v1"] == "accepted", r.report()


def test_virtio_missing_device_fails_cleanly_qemu(qemu):
    r = run(qemu_cmd("test=rng,poweroff"))
    status, kv = r.result("rng")
    assert status == "FAIL" and "no-device" in kv["reason"], r.report()


# ---- berth-vmm: the same tests, once it has virtio-rng --------------------------------------------------------

def test_pci_berth(berth):
    r = run(berth_cmd("test=pci,poweroff"))
    r.passed("pci")
    assert any(f[:2] == ("1af4", "1044") for f in r.pci_functions().values()), r.report()


@pytest.mark.parametrize("name", VIRTIO_TESTS)
def test_virtio_berth(berth, name):
    r = run(berth_cmd(f"test={name},poweroff"))
    kv = r.passed(name)
    check_virtio(name, kv)
    if name == "virtio-features":
        # berth's modern-only devices refuse FEATURES_OK when the driver did not accept VERSION_1.
        assert kv["no_v1"] == "refused", r.report()
