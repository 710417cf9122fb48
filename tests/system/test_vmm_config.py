"""berth-vmm refuses bad flags, config files and boot files with a clear message and status 2."""
import json
import os
import pytest
from conftest import needs_kvm, run_vmm, GUEST

BZIMAGE = sorted([os.path.join("/boot", f) for f in os.listdir("/boot") if f.startswith("vmlinuz-")]
                 ) if os.path.isdir("/boot") else []


def expect_error(r, *words):
    assert r.rc == 2, r
    assert "berth-vmm: error:" in r.err, r
    for w in words:
        assert w in r.err, f"{w!r} not in error\n{r}"
    assert r.out == "" or "berth-guest" not in r.out, "nothing may start"


@pytest.mark.parametrize("args,words", [
    (["--memory", "32M"], ["--memory", "between 64M and 64G"]),
    (["--memory", "65G"], ["--memory", "between 64M and 64G"]),
    (["--memory", "lots"], ["--memory", "not a size"]),
    (["--cpus", "0"], ["--cpus", "1 to 1024"]),
    (["--cpus", "two"], ["--cpus"]),
    (["--cpu-template", "skylake"], ["--cpu-template", "unknown CPU template", "baseline"]),
    (["--serial", "tcp:1234"], ["--serial", "must be"]),
    (["--on-reboot", "panic"], ["--on-reboot"]),
    (["--boot", "uefi"], ["--boot"]),
    (["--frobnicate"], ["unknown option", "--frobnicate"]),
    (["--cmdline"], ["needs a value"]),
    (["stray"], ["unexpected argument 'stray'"]),
    (["--cmdline", "x" * 70000], ["command line", "limit"]),
])
def test_bad_flags(vmm, guest, args, words):
    expect_error(run_vmm(["--check"] + args), *words)


def test_kernel_is_required(vmm):
    expect_error(run_vmm(["--memory", "512M"], guest=False), "--kernel", "required")


def test_missing_kernel_file(vmm):
    expect_error(run_vmm(["--kernel", "/nonexistent/vmlinuz"], guest=False),
                 "kernel '/nonexistent/vmlinuz'", "No such file")


def test_kernel_is_a_directory(vmm, tmp_path):
    expect_error(run_vmm(["--kernel", str(tmp_path)], guest=False), str(tmp_path), "Is a directory")


def test_garbage_kernel(vmm, tmp_path):
    k = tmp_path / "garbage"
    k.write_bytes(os.urandom(64 * 1024).replace(b"\x7fELF", b"xxxx"))
    expect_error(run_vmm(["--kernel", str(k)], guest=False), str(k), "neither a bzImage")


def test_truncated_pvh_elf(vmm, guest, tmp_path):
    k = tmp_path / "short.elf"
    k.write_bytes(open(guest, "rb").read()[:200])
    expect_error(run_vmm(["--kernel", str(k)], guest=False), str(k), "truncated")


def test_elf_without_pvh_note(vmm, tmp_path):
    k = tmp_path / "true.elf"
    k.write_bytes(open("/bin/true", "rb").read())
    expect_error(run_vmm(["--kernel", str(k), "--boot", "pvh"], guest=False), str(k))


@pytest.mark.skipif(not BZIMAGE, reason="no /boot/vmlinuz-* on this host")
def test_truncated_bzimage(vmm, tmp_path):
    k = tmp_path / "short-bzImage"
    k.write_bytes(open(BZIMAGE[-1], "rb").read()[:8192])
    expect_error(run_vmm(["--kernel", str(k)], guest=False), str(k), "truncated")


@pytest.mark.skipif(not BZIMAGE, reason="no /boot/vmlinuz-* on this host")
def test_bzimage_command_line_too_long(vmm):
    expect_error(run_vmm(["--kernel", BZIMAGE[-1], "--cmdline", "y" * 4000], guest=False),
                 "command line", "accepts at most")


def test_initrd_does_not_fit(vmm, guest, tmp_path):
    i = tmp_path / "big.cpio"
    with open(i, "wb") as f:
        f.truncate(80 << 20)
    expect_error(run_vmm(["--memory", "64M", "--initrd", str(i)]), f"initrd '{i}'", "do not fit")


def test_missing_initrd(vmm, guest):
    expect_error(run_vmm(["--initrd", "/nonexistent.img"]), "initrd '/nonexistent.img'", "No such file")


def test_check_validates_without_starting(vmm, guest):
    r = run_vmm(["--check", "--cpus", "2", "--memory", "1G"])
    assert r.rc == 0, r
    assert "configuration OK: PVH ELF kernel, 2 vCPU(s), 1024 MiB" in r.out
    assert "berth-guest" not in r.out


def test_json_config_equivalent_to_flags(vmm, guest, tmp_path):
    cfg = {"kernel": GUEST, "cmdline": "test=boot,poweroff", "memory": "256M", "cpus": 2,
           "cpu_template": "baseline", "name": "jsonvm", "timeout": 30}
    p = tmp_path / "vm.json"
    p.write_text(json.dumps(cfg))
    r = run_vmm(["--config", str(p), "--print-config", "--check"], guest=False)
    assert r.rc == 0, r
    printed = json.loads(r.out[:r.out.rindex("}") + 1])
    flags = run_vmm(["--cmdline", "test=boot,poweroff", "--memory", "256M", "--cpus", "2",
                     "--cpu-template", "baseline", "--name", "jsonvm", "--timeout", "30",
                     "--print-config", "--check"])
    assert json.loads(flags.out[:flags.out.rindex("}") + 1]) == printed
    # the printed config is itself a valid config file
    p2 = tmp_path / "printed.json"
    p2.write_text(json.dumps(printed))
    assert run_vmm(["--config", str(p2), "--check"], guest=False).rc == 0


def test_flags_override_config_file(vmm, guest, tmp_path):
    p = tmp_path / "vm.json"
    p.write_text(json.dumps({"kernel": GUEST, "cpus": 4}))
    r = run_vmm(["--config", str(p), "--cpus", "1", "--print-config", "--check"], guest=False)
    assert r.rc == 0 and '"cpus": 1' in r.out, r


@pytest.mark.parametrize("doc,words", [
    ('{"kernel": "x", "memroy": "1G"}', ["field 'memroy'", "unknown field"]),
    ('{"kernel": "x", "cpus": "two"}', ["field 'cpus'"]),
    ('{"kernel": "x", "cpus": 5000}', ["field 'cpus'", "1 to 1024"]),
    ('{"kernel": 5}', ["field 'kernel'", "must be a string"]),
    ('{"kernel": "x",', ["invalid JSON"]),
    ('["kernel"]', ["top level must be an object"]),
    ('{"kernel": "x", "kernel": "y"}', ["duplicate"]),
])
def test_bad_json_config(vmm, tmp_path, doc, words):
    p = tmp_path / "bad.json"
    p.write_text(doc)
    expect_error(run_vmm(["--config", str(p), "--check"], guest=False), str(p), *words)


@needs_kvm
def test_too_many_cpus_for_kvm(vmm, guest):
    with open("/dev/kvm") as _:
        pass
    r = run_vmm(["--cpus", "254", "--cmdline", "test=poweroff"], vm_timeout=60, timeout=120)
    # KVM allows up to KVM_CAP_MAX_VCPUS; either it runs or it is refused cleanly.
    assert r.rc in (0, 2), r
    if r.rc == 2:
        assert "KVM on this host allows at most" in r.err


def test_help_and_version(vmm):
    r = run_vmm(["--help"], guest=False)
    assert r.rc == 0 and "--kernel FILE" in r.out and "Exit status" in r.out
    r = run_vmm(["--version"], guest=False)
    assert r.rc == 0 and r.out.startswith("berth-vmm ")


@pytest.mark.parametrize("spec,words", [
    ("/nonexistent/disk.img", ["--disk", "'/nonexistent/disk.img'", "No such file"]),
    (",readonly", ["--disk", "path is empty"]),
    ("{img},bogus", ["--disk", "unknown option 'bogus'"]),
    ("{img},serial=" + "x" * 21, ["--disk", "serial is longer than 20"]),
    ("{img},serial=a b", ["--disk", "printable ASCII"]),
    ("{dir}", ["--disk", "not a regular file or block device"]),
])
def test_bad_disk(vmm, guest, tmp_path, spec, words):
    img = tmp_path / "d.img"
    img.write_bytes(b"\0" * 65536)
    spec = spec.format(img=img, dir=tmp_path)
    expect_error(run_vmm(["--check", "--disk", spec]), *words)


def test_json_disks_and_flag_override(vmm, guest, tmp_path):
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    for p in (a, b):
        p.write_bytes(b"\0" * 65536)
    cfg = {"kernel": GUEST, "disks": [{"path": str(a), "readonly": True, "serial": "A1"}, str(b)]}
    f = tmp_path / "vm.json"
    f.write_text(json.dumps(cfg))
    r = run_vmm(["--config", str(f), "--print-config"], guest=False)
    assert r.rc == 0, r
    disks = json.loads(r.out)["disks"]
    assert disks == [{"path": str(a), "readonly": True, "format": "auto", "cache": "writeback", "serial": "A1"},
                     {"path": str(b), "readonly": False, "format": "auto", "cache": "writeback"}]
    r = run_vmm(["--config", str(f), "--disk", f"{b},cache=none", "--print-config"], guest=False)
    assert [d["path"] for d in json.loads(r.out)["disks"]] == [str(b)]
    f.write_text(json.dumps({"kernel": GUEST, "disks": [{"path": str(a), "speed": 3}]}))
    expect_error(run_vmm(["--config", str(f), "--check"], guest=False), "disks[0]", "'speed'", "unknown field")


@pytest.mark.parametrize("spec,words", [
    ("name=x", ["--console-port", "both name= and socket= are required"]),
    ("socket=/tmp/a.sock", ["--console-port", "both name= and socket= are required"]),
    ("name=x,socket=/tmp/a.sock,speed=9600", ["--console-port", "unknown option 'speed=9600'"]),
    ("name=" + "n" * 64 + ",socket=/tmp/a.sock", ["--console-port", "1..63 characters"]),
])
def test_bad_console_port(vmm, guest, spec, words):
    expect_error(run_vmm(["--check", "--console-port", spec]), *words)


def test_console_port_names_unique(vmm, guest, tmp_path):
    expect_error(run_vmm(["--check", "--console-port", f"name=a,socket={tmp_path}/1",
                          "--console-port", f"name=a,socket={tmp_path}/2"]), "same name")


@pytest.mark.parametrize("spec,words", [
    ("bridge=nobr0", ["--net bridge=nobr0", "no such bridge"]),
    ("fd=77", ["--net fd=77", "not an open file descriptor"]),
    ("tap=x,mac=01:00:00:00:00:01", ["--net", "unicast"]),
    ("tap=x,bridge=y", ["--net", "exactly one of"]),
    ("mac=02:00:00:00:00:01", ["--net", "exactly one of"]),
    ("tap=averyveryverylongname", ["--net", "1..15 characters"]),
    ("tap=x,speed=10", ["--net", "unknown option 'speed'"]),
])
def test_bad_net(vmm, guest, spec, words):
    expect_error(run_vmm(["--check", "--net", spec]), *words)


def test_json_nets_round_trip(vmm, guest, tmp_path):
    f = tmp_path / "vm.json"
    f.write_text(json.dumps({"kernel": GUEST, "nets": ["tap=tap7,mac=02:00:00:00:00:07"]}))
    r = run_vmm(["--config", str(f), "--print-config"], guest=False)
    assert r.rc == 0, r
    assert json.loads(r.out)["nets"] == ["tap=tap7,mac=02:00:00:00:00:07"]
