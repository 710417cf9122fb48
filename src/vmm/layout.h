/* The guest-physical address map of a berth VM: RAM, the 32-bit PCI hole, fixed boot structures,
 * e820. */
#ifndef BERTH_LAYOUT_H
#define BERTH_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

/* Sizes a VM may have. */
#define VM_MEM_MIN (64ULL << 20)
#define VM_MEM_MAX (64ULL << 30)

/* RAM below 4 GiB ends here; [LOWMEM_LIMIT, 4 GiB) is the PCI hole; the rest of RAM starts at 4
 * GiB. */
#define LOWMEM_LIMIT 0xC0000000ULL
#define HIGHMEM_BASE 0x100000000ULL

/* Inside the PCI hole. */
#define PCI_MMIO32_BASE 0xC0000000ULL
#define PCI_MMIO32_SIZE 0x20000000ULL
#define PCI_ECAM_BASE 0xE0000000ULL
#define PCI_ECAM_SIZE 0x10000000ULL /* buses 0..255 */
#define IOAPIC_BASE 0xFEC00000ULL
#define LAPIC_BASE 0xFEE00000ULL
#define KVM_IDENTITY_MAP_ADDR 0xFFFBC000ULL /* one page, needed by VMX */
#define KVM_TSS_ADDR 0xFFFBD000ULL	    /* three pages, needed by VMX */

/* 64-bit PCI window: above the end of RAM, 1 GiB aligned. */
#define PCI_MMIO64_SIZE (32ULL << 30)

/* Fixed structures in low memory (below 1 MiB). */
#define BOOT_GDT_ADDR 0x500ULL
#define PVH_START_INFO_ADDR 0x6000ULL /* start info, modlist, memmap: one page */
#define ZERO_PAGE_ADDR 0x7000ULL      /* Linux boot_params */
#define BOOT_PML4_ADDR 0x9000ULL
#define BOOT_PDPT_ADDR 0xA000ULL
#define BOOT_PD_ADDR 0xB000ULL /* four pages: 0..4 GiB in 2 MiB pages */
#define CMDLINE_ADDR 0x20000ULL
#define CMDLINE_MAX 0x10000ULL /* 64 KiB including the NUL */
#define EBDA_START 0x9FC00ULL
#define BIOS_AREA_START 0xE0000ULL /* ACPI tables live here; RSDP first */
#define BIOS_AREA_END 0x100000ULL
#define ACPI_BASE BIOS_AREA_START
#define KERNEL_MIN_ADDR 0x100000ULL

enum e820_type { E820_RAM = 1, E820_RESERVED = 2, E820_ACPI = 3 };

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));

struct mem_layout {
	uint64_t ram_bytes;
	uint64_t low_ram;  /* RAM at [0, low_ram) */
	uint64_t high_ram; /* RAM at [HIGHMEM_BASE, HIGHMEM_BASE + high_ram) */
};

/* Split ram_bytes around the PCI hole. -EINVAL if outside VM_MEM_MIN..VM_MEM_MAX or not 1 MiB
 * aligned. */
int layout_compute(uint64_t ram_bytes, struct mem_layout *out);

/* Fill the e820 map (sorted, non-overlapping); returns the number of entries or -ENOSPC. */
int layout_e820(const struct mem_layout *l, struct e820_entry *out, size_t max);

/* Highest address + 1 of usable RAM below 4 GiB (where boot loaders may put kernels and initrds).
 */
static inline uint64_t layout_low_end(const struct mem_layout *l)
{
	return l->low_ram;
}

static inline uint64_t layout_mmio64_base(const struct mem_layout *l)
{
	return (HIGHMEM_BASE + l->high_ram + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
}

#endif
