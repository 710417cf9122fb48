/* Guest-physical map: splits RAM around the PCI hole and describes it as an e820 table. */
#include "vmm/layout.h"

#include <errno.h>

int layout_compute(uint64_t ram_bytes, struct mem_layout *out)
{
	if (ram_bytes < VM_MEM_MIN || ram_bytes > VM_MEM_MAX || ram_bytes % (1ULL << 20))
		return -EINVAL;
	out->ram_bytes = ram_bytes;
	out->low_ram = ram_bytes < LOWMEM_LIMIT ? ram_bytes : LOWMEM_LIMIT;
	out->high_ram = ram_bytes - out->low_ram;
	return 0;
}

int layout_e820(const struct mem_layout *l, struct e820_entry *out, size_t max)
{
	const struct e820_entry all[] = {
	    {0, EBDA_START, E820_RAM},
	    {EBDA_START, 0xA0000 - EBDA_START, E820_RESERVED},
	    {BIOS_AREA_START, BIOS_AREA_END - BIOS_AREA_START, E820_RESERVED},
	    {KERNEL_MIN_ADDR, l->low_ram - KERNEL_MIN_ADDR, E820_RAM},
	    {PCI_ECAM_BASE, PCI_ECAM_SIZE, E820_RESERVED},
	    {HIGHMEM_BASE, l->high_ram, E820_RAM},
	};
	size_t n = 0;
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		if (!all[i].size)
			continue;
		if (n == max)
			return -ENOSPC;
		out[n++] = all[i];
	}
	return (int)n;
}
