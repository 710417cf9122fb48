/* tests_boot.c — `boot` (PVH start info, memory map, command line) and `acpi` tests. */
#include "guest.h"

void test_boot(void)
{
	uint64_t ram = 0;
	uint32_t ranges = 0;

	if (!bootinfo.magic_ok) {
		kprintf("berth-test boot FAIL reason=bad-magic\n");
		return;
	}
	for (uint32_t i = 0; i < bootinfo.nmemmap; i++) {
		const struct memmap_entry *m = &bootinfo.memmap[i];

		kprintf("berth-info memmap addr=0x%lx size=0x%lx type=%u\n", m->addr, m->size,
			m->type);
		if (m->type == 1 && m->size) {
			ram += m->size;
			ranges++;
		}
	}
	if (!bootinfo.nmemmap) {
		kprintf("berth-test boot FAIL reason=no-memmap\n");
		return;
	}
	if (!ram) {
		kprintf("berth-test boot FAIL reason=no-ram\n");
		return;
	}
	kprintf("berth-test boot PASS cmdline_len=%lu ram_bytes=%lu ram_ranges=%u\n",
		(uint64_t)strlen(bootinfo.cmdline), ram, ranges);
}

void test_acpi(void)
{
	char pm1[40], rst[40];

	if (!acpi.found) {
		kprintf("berth-test acpi FAIL reason=\"%s\"\n",
			acpi.errors ? acpi.error : "no-rsdp");
		return;
	}
	if (acpi.errors) {
		kprintf("berth-test acpi FAIL reason=\"%s\"\n", acpi.error);
		return;
	}
	gas_describe(&acpi.pm1a_cnt, pm1, sizeof(pm1));
	gas_describe(&acpi.reset_reg, rst, sizeof(rst));
	kprintf("berth-test acpi PASS cpus=%u ioapic=0x%lx pm1a_cnt=%s reset=%s s5=%u mcfg=0x%lx\n",
		acpi.ncpus, acpi.ioapic_addr, pm1, rst, acpi.slp_typa, acpi.mcfg_base);
}
