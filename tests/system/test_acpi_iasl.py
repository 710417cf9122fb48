"""berth's ACPI tables checked by ACPICA's disassembler (iasl -d): the same code Linux uses to parse them."""
import os
import re
import shutil
import subprocess
import pytest
from conftest import BUILD

DUMP = os.path.join(BUILD, "tests", "tools", "acpi-dump")
pytestmark = pytest.mark.skipif(not shutil.which("iasl"), reason="iasl (acpica-tools) is not installed")


def disassemble(tmp_path, cpus, mem_mib):
    subprocess.run([DUMP, str(tmp_path), str(cpus), str(mem_mib)], check=True)
    out = {}
    for sig in ["DSDT", "FACP", "APIC", "MCFG", "XSDT", "RSDT"]:
        p = subprocess.run(["iasl", "-d", f"{sig}.dat"], cwd=tmp_path, capture_output=True, text=True)
        log = p.stdout + p.stderr
        assert p.returncode == 0, log
        assert not re.search(r"\b(Error|Warning)\b", log), log
        out[sig] = (tmp_path / f"{sig}.dsl").read_text()
    return out


@pytest.mark.parametrize("cpus,mem", [(1, 512), (4, 5120), (254, 65536), (300, 1024)])
def test_tables_disassemble_cleanly(tmp_path, cpus, mem):
    t = disassemble(tmp_path, cpus, mem)
    for sig, text in t.items():
        assert re.search(r"Checksum\s+0x|Checksum : ", text) and "ncorrect checksum" not in text, text[:600]
    dsdt = t["DSDT"]
    assert 'Name (_S5, Package (0x04)' in dsdt
    assert 'EisaId ("PNP0A08")' in dsdt and 'EisaId ("PNP0A03")' in dsdt
    assert 'EisaId ("PNP0501")' in dsdt and 'EisaId ("PNP0C02")' in dsdt
    assert len(re.findall(r"0x00[0-9A-F]{2}FFFF,", dsdt)) == 31  # _PRT: one entry per slot
    assert "WordBusNumber" in dsdt and "QWordMemory" in dsdt and "DWordMemory" in dsdt
    assert len(re.findall(r"Subtable Type : 00 \[Processor Local APIC\]", t["APIC"])) == min(cpus, 255)
    assert len(re.findall(r"Subtable Type : 09 \[Processor Local x2APIC\]", t["APIC"])) == max(0, cpus - 255)
    assert "Subtable Type : 01 [I/O APIC]" in t["APIC"]
    assert re.search(r"Base Address : 00000000E0000000", t["MCFG"])
    assert re.search(r"PM1A Control Block Address : 00000604", t["FACP"])
    assert re.search(r"Value to cause reset : 06", t["FACP"])
