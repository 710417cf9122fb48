"""berth-vmm's seccomp filter (--seccomp): loaded on every thread of a running VMM, off only when asked,
bad values refused naming the option. That forbidden calls kill (or are trapped and named) and allowed ones
work is proven by the unit test tests/unit/test_seccomp.c, which loads the very filter the VMM builds; the
other VMM test files run with the filter on (kill is the default), so they prove the allow-list is enough.
The wider --on-reboot=restart profile is checked here by guests that reboot in a loop with disks, console
ports and each kind of NIC (created again after every reboot, under the filter)."""

import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import GUEST, VMM, run_vmm


def thread_status(pid):
    """{tid: {field: value}} from /proc/<pid>/task/*/status."""
    out = {}
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(path) as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except FileNotFoundError:
            continue
        out[int(path.split("/")[-2])] = fields
    return out


@pytest.fixture
def workdir():
    d = tempfile.mkdtemp(prefix="berth-sc-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start_ticker(workdir, extra):
    """A VMM whose guest prints a tick every 100 ms; returns once the guest runs. Its stdout and
    stderr go to files (read by path: seeking a shared descriptor would move the VMM's offset)."""
    out, err = os.path.join(workdir, "out"), os.path.join(workdir, "err")
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.Popen([VMM, "--kernel", GUEST, "--cmdline", "test=ticker", "--cpus", "2",
                              "--memory", "128M", "--timeout", "60", *extra],
                             stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    end = time.monotonic() + 30
    while time.monotonic() < end and p.poll() is None and "berth-tick" not in read(out):
        time.sleep(0.05)
    assert p.poll() is None, f"rc={p.returncode}\n{read(out)}\n{read(err)}"
    return p, err


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def stop(p):
    p.terminate()
    try:
        return p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


def test_filter_on_every_thread(berth, workdir):
    disk = os.path.join(workdir, "d.raw")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    p, err = start_ticker(workdir, ["--disk", disk, "--rng"])
    try:
        st = thread_status(p.pid)
        # main, 2 vCPUs, one I/O thread per virtio device: all created before or after the
        # filter, all filtered (TSYNC covers the threads that already ran)
        assert len(st) >= 5, st
        for tid, f in st.items():
            assert f["Seccomp"] == "2", (tid, f.get("Name"), f["Seccomp"])
            assert int(f["Seccomp_filters"]) >= 1, (tid, f.get("Name"))
            assert f["NoNewPrivs"] == "1", (tid, f.get("Name"))
        names = {f["Name"] for f in st.values()}
        assert {"vcpu0", "vcpu1"} <= names, names
    finally:
        rc = stop(p)
    e = read(err)
    assert rc == 7, e  # SIGTERM: a clean stop, not a kill by the filter
    m = re.search(r"seccomp: kill mode, (\d+) rules loaded on all threads", e)
    assert m and int(m.group(1)) > 50, e


def test_seccomp_off_loads_nothing(berth, workdir):
    p, err = start_ticker(workdir, ["--seccomp", "off"])
    try:
        st = thread_status(p.pid)
        assert len(st) >= 3, st
        for tid, f in st.items():
            assert f["Seccomp"] == "0", (tid, f.get("Name"), f["Seccomp"])
            assert f["Seccomp_filters"] == "0", (tid, f.get("Name"))
    finally:
        rc = stop(p)
    e = read(err)
    assert rc == 7, e
    assert "seccomp: off (--seccomp off)" in e, e


@pytest.mark.parametrize("mode", ["trap", "log"])
def test_trap_and_log_modes_run_the_guest(berth, mode):
    r = run_vmm(["--cmdline", "test=smp", "--cpus", "2", "--seccomp", mode], vm_timeout=60)
    assert r.rc == 0, r
    assert r.results().get("smp", ("?",))[0] == "PASS", r
    assert f"seccomp: {mode} mode" in r.err, r


def test_restart_recreates_the_vm_under_the_filter(berth, workdir):
    """--on-reboot=restart builds a new VM (vCPUs, memory, devices, console-port sockets) with the
    filter loaded: the wider profile allows exactly that."""
    disk = os.path.join(workdir, "d.raw")
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    sock = os.path.join(workdir, "p.sock")
    r = run_vmm(["--cmdline", "test=reboot-acpi", "--on-reboot", "restart", "--disk", disk, "--rng",
                 "--console-port", f"name=org.test.0,socket={sock}"], vm_timeout=8)
    assert r.rc == 6, r  # --timeout ended a guest that kept rebooting; no SIGSYS (-31)
    assert r.out.count("berth-guest: start") >= 2, r
    assert "VM re-creation allowed for --on-reboot=restart" in r.err, r


@pytest.mark.parametrize("value", ["", "KILL", "allow", "kill,trap"])
def test_bad_mode_is_a_config_error(vmm, value):
    r = run_vmm(["--seccomp", value, "--check"], guest=True)
    assert r.rc == 2, r
    assert "--seccomp" in r.err and "must be kill, trap, log or off" in r.err, r


def test_config_file_field(vmm, workdir):
    cfg = os.path.join(workdir, "vm.json")
    with open(cfg, "w") as f:
        json.dump({"kernel": GUEST, "seccomp": "sandbox"}, f)
    r = run_vmm(["--config", cfg, "--check"], guest=False)
    assert r.rc == 2, r
    assert "field 'seccomp'" in r.err, r
    with open(cfg, "w") as f:
        json.dump({"kernel": GUEST, "seccomp": "trap"}, f)
    r = run_vmm(["--config", cfg, "--print-config"], guest=False)
    assert r.rc == 0, r
    assert json.loads(r.out)["seccomp"] == "trap"
    r = run_vmm(["--config", cfg, "--seccomp", "off", "--print-config"], guest=False)
    assert json.loads(r.out)["seccomp"] == "off"  # the flag overrides the file
    r = run_vmm(["--print-config"])
    assert json.loads(r.out)["seccomp"] == "kill"  # the default


@pytest.mark.parametrize("nic", ["tap=tsc0", "bridge=brsc0"])
def test_restart_recreates_tap_and_bridge_nics(berth, nic):
    """tap=NAME and bridge=NAME NICs are created again after each guest reboot: TUNSETIFF, bringing
    the TAP up and enslaving it (an AF_INET datagram socket, SIOC* ioctls) stay allowed for that.
    Run in a network namespace of its own, where this test makes the bridge."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    script = ("mount -t sysfs sysfs /sys && ip link add brsc0 type bridge && ip link set brsc0 up"
              " && exec " + " ".join([
        VMM, "--kernel", GUEST, "--cmdline", "test=reboot-acpi", "--on-reboot", "restart",
        "--net", nic, "--timeout", "8"]))
    p = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace", timeout=120)
    assert p.returncode == 6, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    assert p.stdout.count("berth-guest: start") >= 2, p.stdout[-2000:]
    assert "cannot bring it up" not in p.stderr, p.stderr  # a refused call would show here


# Run inside a fresh network namespace: make a TAP the way berthd does (IFF_TAP | IFF_NO_PI |
# IFF_VNET_HDR) and hand its descriptor to the VMM as --net fd=N.
TAP_EXEC = """
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH", b"tscfd0", 0x0002 | 0x1000 | 0x4000))  # TUNSETIFF
os.set_inheritable(fd, True)
os.execv(sys.argv[1], sys.argv[1:] + ["--net", "fd=%d" % fd])
"""


def test_restart_recreates_fd_nics(berth):
    """berthd's NICs: an fd= TAP is adopted again (dup, TUNGETIFF, TUNSETVNETHDRSZ) after each
    reboot."""
    if not shutil.which("unshare"):
        pytest.skip("needs unshare (util-linux)")
    p = subprocess.run(["unshare", "--net", "/usr/bin/python3", "-c", TAP_EXEC, VMM, "--kernel",
                        GUEST, "--cmdline", "test=reboot-acpi", "--on-reboot", "restart",
                        "--timeout", "8"], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, errors="replace", timeout=120)
    assert p.returncode == 6, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    assert p.stdout.count("berth-guest: start") >= 2, p.stdout[-2000:]
