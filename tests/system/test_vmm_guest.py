"""The test guest on berth-vmm: boot, SMP, memory, timer, exceptions and power-off."""
import re
import pytest
from conftest import needs_kvm, run_vmm

pytestmark = needs_kvm

LOWMEM_LIMIT = 0xC0000000


def expected_e820(mem):
    low = min(mem, LOWMEM_LIMIT)
    e = [(0, 0x9FC00, 1), (0x9FC00, 0x400, 2), (0xE0000, 0x20000, 2),
         (0x100000, low - 0x100000, 1), (0xE0000000, 0x10000000, 2)]
    if mem > LOWMEM_LIMIT:
        e.append((0x100000000, mem - LOWMEM_LIMIT, 1))
    return e


def check_all_pass(r, names):
    res = r.results()
    for n in names:
        assert n in res, f"no result line for {n}\n{r}"
        assert res[n][0] == "PASS", f"{n}: {res[n]}\n{r}"
    assert r.rc == 0, r
    return res


@pytest.mark.parametrize("mem", ["64M", "512M", "5G"])
def test_boot_cmdline_and_memmap_round_trip(vmm, guest, mem):
    token = "nonce=7f3a9c berth.x=\"a b\""
    r = run_vmm(["--memory", mem, "--cmdline", f"test=boot,poweroff {token}"], vm_timeout=60)
    check_all_pass(r, ["boot", "poweroff"])
    assert f'berth-guest: cmdline="test=boot,poweroff {token}"' in r.out
    got = [(int(a, 16), int(s, 16), int(t)) for a, s, t in
           re.findall(r"berth-info memmap addr=(0x[0-9a-f]+) size=(0x[0-9a-f]+) type=(\d+)", r.out)]
    size = {"64M": 64 << 20, "512M": 512 << 20, "5G": 5 << 30}[mem]
    assert got == expected_e820(size)


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_smp_all_vcpus_run_ring3_concurrently(vmm, guest, cpus):
    r = run_vmm(["--cpus", str(cpus), "--cmdline", "test=smp,poweroff"], vm_timeout=60)
    res = check_all_pass(r, ["smp"])
    assert f"cpus={cpus}" in res["smp"][1]
    assert f"cpus={cpus}" in re.search(r"berth-info acpi .*", r.out).group(0)


@pytest.mark.parametrize("mem,above4g", [("512M", False), ("5G", True)])
def test_mem_patterns_over_all_ram(vmm, guest, mem, above4g):
    r = run_vmm(["--memory", mem, "--cpus", "2", "--cmdline", "test=mem,poweroff"], vm_timeout=100,
                timeout=150)
    res = check_all_pass(r, ["mem"])
    m = re.search(r"above4g=(\d+)", res["mem"][1])
    assert (int(m.group(1)) > 0) == above4g
    assert int(re.search(r"bytes=(\d+)", res["mem"][1]).group(1)) > {"512M": 400 << 20, "5G": 4 << 30}[mem]


def test_lapic_timer_rate(vmm, guest):
    r = run_vmm(["--cmdline", "test=timer,poweroff"], vm_timeout=60)
    res = check_all_pass(r, ["timer"])
    hz = int(re.search(r"hz=(\d+)", res["timer"][1]).group(1))
    assert 850 <= hz <= 1150


def test_exceptions_delivered(vmm, guest):
    r = run_vmm(["--cmdline", "test=exceptions,poweroff"], vm_timeout=60)
    check_all_pass(r, ["exceptions"])


def test_default_test_list_and_baseline_template(vmm, guest):
    r = run_vmm(["--cpus", "2", "--cpu-template", "baseline"], vm_timeout=90)
    check_all_pass(r, ["boot", "smp", "mem", "timer", "exceptions"])


def test_poweroff_exits_zero_and_logs(vmm, guest):
    r = run_vmm(["--cmdline", "test=poweroff"], vm_timeout=30)
    assert r.rc == 0, r
    assert "berth-test poweroff PASS" in r.out
    assert "ACPI S5" in r.err


def test_more_vcpus_than_xapic_ids(vmm, guest):
    """300 vCPUs: APIC IDs from 255 on are x2APIC (MADT type 9, KVM_CAP_X2APIC_API)."""
    r = run_vmm(["--cpus", "300", "--cmdline", "test=boot,acpi,poweroff"], vm_timeout=60, timeout=120)
    if r.rc == 2 and "allows at most" in r.err:
        pytest.skip("this host's KVM allows fewer than 300 vCPUs")
    check_all_pass(r, ["boot", "acpi", "poweroff"])
