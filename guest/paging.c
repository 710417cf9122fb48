/* paging.c — boot identity map refined from the memmap, RAM above 4 GiB, BARs, test region */
#include "guest.h"
#include "x86.h"

#define PTE_P 0x01ULL
#define PTE_RW 0x02ULL
#define PTE_U 0x04ULL
#define PTE_PWT 0x08ULL
#define PTE_PCD 0x10ULL
#define PTE_PS 0x80ULL

#define GIB (1ULL << 30)
#define MAX_MAPPED_GIB 64

extern uint64_t boot_pdpt[512];
extern uint64_t boot_pd[4][512];

static uint64_t high_pd[MAX_MAPPED_GIB - 4][512] __attribute__((aligned(4096)));
static uint64_t test_pdpt[512] __attribute__((aligned(4096)));
static uint64_t test_pd[512] __attribute__((aligned(4096)));
static uint64_t test_pt[512] __attribute__((aligned(4096)));
static uint8_t test_ro_page[4096] __attribute__((aligned(4096))) = {0x5a};

/* Page-table pages for device MMIO mapped on demand (BARs anywhere in the physical address space,
 * ECAM above 4 GiB). */
#define MMIO_PT_PAGES 24
static uint64_t mmio_pt[MMIO_PT_PAGES][512] __attribute__((aligned(4096)));
static unsigned int mmio_pt_used;

int ram_contains(uint64_t start, uint64_t end)
{
	for (uint32_t i = 0; i < bootinfo.nmemmap; i++) {
		const struct memmap_entry *m = &bootinfo.memmap[i];

		if (m->type == 1 && m->addr < end && m->addr + m->size > start)
			return 1;
	}
	return 0;
}

#define PDE_RAM (PTE_P | PTE_RW | PTE_U | PTE_PS)	       /* write-back, user-accessible */
#define PDE_MMIO (PTE_P | PTE_RW | PTE_PWT | PTE_PCD | PTE_PS) /* uncached, supervisor only */

static uint64_t *pde_slot(uint64_t addr)
{
	uint64_t g = addr / GIB;

	return g < 4 ? &boot_pd[g][(addr >> 21) & 511] : &high_pd[g - 4][(addr >> 21) & 511];
}

/* RAM is write-back and user-accessible (ring-3 workloads touch it directly); everything else below
 * 4 GiB (MMIO, LAPIC, IOAPIC, firmware holes) is uncached and supervisor-only. One pass per
 * memory-map entry keeps this cheap at emulated ring 0. */
void paging_init(void)
{
	for (int g = 0; g < 4; g++)
		for (int i = 0; i < 512; i++)
			boot_pd[g][i] = (((uint64_t)g * 512 + i) << 21) | PDE_MMIO;

	for (uint32_t i = 0; i < bootinfo.nmemmap; i++) {
		const struct memmap_entry *m = &bootinfo.memmap[i];
		uint64_t a, end = m->addr + m->size;

		if (m->type != 1 || !m->size)
			continue;
		if (end > MAX_MAPPED_GIB * GIB)
			end = MAX_MAPPED_GIB * GIB;
		for (a = m->addr & ~((2ULL << 20) - 1); a < end; a += 2ULL << 20) {
			if (a >= 0xfec00000ULL && a < 0xff000000ULL)
				continue; /* IOAPIC/LAPIC window stays uncached */
			if (a >= 4 * GIB && !(boot_pdpt[a / GIB] & PTE_P))
				boot_pdpt[a / GIB] =
				    (uint64_t)high_pd[a / GIB - 4] | PTE_P | PTE_RW | PTE_U;
			*pde_slot(a) = a | PDE_RAM;
		}
	}

	/* TEST_VA_RO: a read-only user page; TEST_VA_UNMAPPED: not present. */
	test_pt[0] = (uint64_t)test_ro_page | PTE_P | PTE_U;
	test_pt[1] = 0;
	test_pd[0] = (uint64_t)test_pt | PTE_P | PTE_RW | PTE_U;
	test_pdpt[0] = (uint64_t)test_pd | PTE_P | PTE_RW | PTE_U;
	boot_pml4[TEST_VA_RO >> 39] = (uint64_t)test_pdpt | PTE_P | PTE_RW | PTE_U;

	write_cr3(read_cr3()); /* flush */
}

/* The next-level table an entry points to, allocating an empty one if the entry is not present.
 * NULL if the pool is exhausted or the entry maps a large page. */
static uint64_t *next_table(uint64_t *entry)
{
	uint64_t *t;

	if (*entry & PTE_P)
		return (*entry & PTE_PS) ? NULL : (uint64_t *)(*entry & 0x000ffffffffff000ULL);
	if (mmio_pt_used >= MMIO_PT_PAGES)
		return NULL;
	t = mmio_pt[mmio_pt_used++];
	*entry = (uint64_t)t | PTE_P | PTE_RW | PTE_U;
	return t;
}

/* Identity-map [addr, addr+size) as uncached device memory, in 2 MiB pages; `user` also lets ring 3
 * touch it (virtio notify, rings polled from ring 3). RAM and the IOAPIC/LAPIC window are never
 * remapped. Returns 0, or -1 (pool exhausted, address beyond 48 bits, or the range hits RAM). */
int paging_map_mmio(uint64_t addr, uint64_t size, int user)
{
	uint64_t a, end = addr + size;

	if (!size || end < addr || end > (1ULL << 47))
		return -1;
	for (a = addr & ~((2ULL << 20) - 1); a < end; a += 2ULL << 20) {
		uint64_t *pdpt, *pd, pde = a | PDE_MMIO | (user ? PTE_U : 0);

		if (ram_contains(a, a + (2ULL << 20)))
			return -1;
		if (a >= 0xfec00000ULL && a < 0xff000000ULL)
			continue;
		pdpt = next_table(&boot_pml4[a >> 39]);
		pd = pdpt ? next_table(&pdpt[(a >> 30) & 511]) : NULL;
		if (!pd)
			return -1;
		if (pd[(a >> 21) & 511] != pde) {
			pd[(a >> 21) & 511] = pde;
			__asm__ volatile("invlpg (%0)" : : "r"(a) : "memory");
		}
	}
	return 0;
}
