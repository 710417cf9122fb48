/* Test tool: build berth's ACPI tables as berth-vmm would and write each one to DIR/<SIG>.dat (for
 * iasl -d). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/acpi.h"
#include "vmm/layout.h"

static int dump(const char *dir, const char *sig, const uint8_t *buf, uint64_t base, uint64_t at)
{
	const uint8_t *t = buf + (at - base);
	uint32_t len =
	    (uint32_t)t[4] | (uint32_t)t[5] << 8 | (uint32_t)t[6] << 16 | (uint32_t)t[7] << 24;
	if (!strcmp(sig, "RSDP"))
		len = 36;
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.dat", dir, sig);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(t, 1, len, f) != len) {
		perror(path);
		return 1;
	}
	fclose(f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: %s DIR CPUS MEMORY_MIB\n", argv[0]);
		return 2;
	}
	struct mem_layout l;
	if (layout_compute(strtoull(argv[3], NULL, 10) << 20, &l)) {
		fprintf(stderr, "bad memory size\n");
		return 2;
	}
	static uint8_t buf[BIOS_AREA_END - BIOS_AREA_START];
	struct acpi_layout al;
	struct acpi_params p;
	acpi_vm_params(&p, &l, (unsigned)atoi(argv[2]), true, true);
	int r = acpi_build(buf, sizeof(buf), ACPI_BASE, &p, &al);
	if (r) {
		fprintf(stderr, "acpi_build: %s\n", strerror(-r));
		return 1;
	}
	return dump(argv[1], "RSDP", buf, ACPI_BASE, al.rsdp) |
	       dump(argv[1], "XSDT", buf, ACPI_BASE, al.xsdt) |
	       dump(argv[1], "RSDT", buf, ACPI_BASE, al.rsdt) |
	       dump(argv[1], "FACP", buf, ACPI_BASE, al.fadt) |
	       dump(argv[1], "DSDT", buf, ACPI_BASE, al.dsdt) |
	       dump(argv[1], "APIC", buf, ACPI_BASE, al.madt) |
	       dump(argv[1], "MCFG", buf, ACPI_BASE, al.mcfg);
}
