/* Unit tests for vmm/layout: the RAM split around the PCI hole and the e820 map built from it. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/layout.h"

static void check_split(uint64_t ram, uint64_t low, uint64_t high)
{
	struct mem_layout l;
	memset(&l, 0xa5, sizeof(l));
	int r = layout_compute(ram, &l);
	if (r)
		fail_msg("layout_compute(0x%llx) = %d", (unsigned long long)ram, r);
	assert_int_equal(l.ram_bytes, ram);
	assert_int_equal(l.low_ram, low);
	assert_int_equal(l.high_ram, high);
	assert_int_equal(layout_low_end(&l), low);
	assert_int_equal(l.low_ram + l.high_ram, ram);
}

static void test_compute_split(void **state)
{
	(void)state;
	check_split(64 * MiB, 64 * MiB, 0);
	check_split(512 * MiB, 512 * MiB, 0);
	check_split(3 * GiB, 3 * GiB, 0); /* exactly LOWMEM_LIMIT */
	check_split(3 * GiB + MiB, LOWMEM_LIMIT, MiB);
	check_split(4 * GiB, LOWMEM_LIMIT, 1 * GiB);
	check_split(5 * GiB, LOWMEM_LIMIT, 2 * GiB);
	check_split(64 * GiB, LOWMEM_LIMIT, 61 * GiB);
	assert_int_equal(LOWMEM_LIMIT, 3 * GiB);
}

static void test_compute_rejects(void **state)
{
	(void)state;
	static const uint64_t bad[] = {
	    0,	      63 * MiB,	      64 * MiB - 1,	     64 * MiB + 1, 64 * MiB + 4096,
	    65 * GiB, 64 * GiB + MiB, 512 * MiB + 512 * KiB, UINT64_MAX,   1ULL << 63,
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct mem_layout l = {0};
		if (layout_compute(bad[i], &l) != -EINVAL)
			fail_msg("layout_compute(0x%llx) accepted", (unsigned long long)bad[i]);
	}
}

/* Build the e820 map for ram and check the invariants every size must satisfy. */
static int check_e820(uint64_t ram, struct e820_entry *e, size_t max)
{
	struct mem_layout l;
	assert_int_equal(layout_compute(ram, &l), 0);
	int n = layout_e820(&l, e, max);
	assert_true(n > 0);

	uint64_t ram_total = 0;
	int ecam = 0;
	for (int i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		assert_true(e[i].type == E820_RAM || e[i].type == E820_RESERVED ||
			    e[i].type == E820_ACPI);
		assert_false(add_overflows_u64(e[i].addr, e[i].size));
		if (i > 0) /* sorted and non-overlapping */
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].type == E820_RAM) {
			ram_total += e[i].size;
			/* No RAM in the PCI hole, none in the VGA/BIOS area, none in the EBDA. */
			uint64_t end = e[i].addr + e[i].size;
			assert_false(e[i].addr < HIGHMEM_BASE && end > LOWMEM_LIMIT);
			assert_false(e[i].addr < BIOS_AREA_END && end > EBDA_START);
			/* RAM entries lie inside the guest's RAM. */
			if (e[i].addr >= HIGHMEM_BASE)
				assert_true(end <= HIGHMEM_BASE + l.high_ram);
			else
				assert_true(end <= l.low_ram);
		}
		if (e[i].type == E820_RESERVED && e[i].addr == PCI_ECAM_BASE &&
		    e[i].size == PCI_ECAM_SIZE)
			ecam++;
	}
	assert_int_equal(ecam, 1);
	/* Everything except [EBDA_START, 1 MiB) is reported as RAM. */
	assert_int_equal(ram_total, ram - (KERNEL_MIN_ADDR - EBDA_START));
	return n;
}

static void test_e820_exact_64m(void **state)
{
	(void)state;
	struct e820_entry e[16];
	int n = check_e820(64 * MiB, e, ARRAY_SIZE(e));
	const struct e820_entry want[] = {
	    {0, 0x9fc00, E820_RAM},
	    {0x9fc00, 0x400, E820_RESERVED},
	    {0xe0000, 0x20000, E820_RESERVED},
	    {0x100000, 64 * MiB - 0x100000, E820_RAM},
	    {0xe0000000, 0x10000000, E820_RESERVED},
	};
	assert_int_equal(n, ARRAY_SIZE(want));
	for (int i = 0; i < n; i++) {
		assert_int_equal(e[i].addr, want[i].addr);
		assert_int_equal(e[i].size, want[i].size);
		assert_int_equal(e[i].type, want[i].type);
	}
	assert_int_equal(sizeof(struct e820_entry), 20); /* the boot_params/PVH wire format */
}

static void test_e820_exact_5g(void **state)
{
	(void)state;
	struct e820_entry e[16];
	int n = check_e820(5 * GiB, e, ARRAY_SIZE(e));
	assert_int_equal(n, 6);
	assert_int_equal(e[3].addr, 0x100000);
	assert_int_equal(e[3].size, LOWMEM_LIMIT - 0x100000);
	assert_int_equal(e[3].type, E820_RAM);
	assert_int_equal(e[5].addr, HIGHMEM_BASE);
	assert_int_equal(e[5].size, 2 * GiB);
	assert_int_equal(e[5].type, E820_RAM);
}

static void test_e820_sizes(void **state)
{
	(void)state;
	static const uint64_t sizes[] = {64 * MiB, 512 * MiB, 3 * GiB, 3 * GiB + MiB,
					 4 * GiB,  5 * GiB,   64 * GiB};
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		struct e820_entry e[16];
		int n = check_e820(sizes[i], e, ARRAY_SIZE(e));
		/* High RAM exists exactly when the size exceeds LOWMEM_LIMIT. */
		int has_high = e[n - 1].addr == HIGHMEM_BASE;
		assert_int_equal(has_high, sizes[i] > LOWMEM_LIMIT);
		assert_int_equal(n, has_high ? 6 : 5);
	}
}

static void test_e820_enospc(void **state)
{
	(void)state;
	struct mem_layout l;
	struct e820_entry e[8];
	assert_int_equal(layout_compute(4 * GiB, &l), 0);
	for (size_t max = 0; max < 6; max++) {
		memset(e, 0xcc, sizeof(e));
		assert_int_equal(layout_e820(&l, e, max), -ENOSPC);
		/* Nothing written past max. */
		for (size_t i = max; i < ARRAY_SIZE(e); i++)
			assert_int_equal(e[i].type, 0xcccccccc);
	}
	assert_int_equal(layout_e820(&l, e, 6), 6);
	assert_int_equal(layout_compute(1 * GiB, &l), 0);
	assert_int_equal(layout_e820(&l, e, 4), -ENOSPC);
	assert_int_equal(layout_e820(&l, e, 5), 5);
}

static void test_fixed_addresses_are_consistent(void **state)
{
	(void)state;
	/* Boot structures sit in the first e820 RAM entry and do not overlap each other. */
	const struct {
		uint64_t addr, len;
	} fixed[] = {
	    {BOOT_GDT_ADDR, 32},	 {PVH_START_INFO_ADDR, 4096}, {ZERO_PAGE_ADDR, 4096},
	    {BOOT_PML4_ADDR, 4096},	 {BOOT_PDPT_ADDR, 4096},      {BOOT_PD_ADDR, 4 * 4096},
	    {CMDLINE_ADDR, CMDLINE_MAX},
	};
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
		assert_true(fixed[i].addr + fixed[i].len <= EBDA_START);
		for (size_t j = i + 1; j < ARRAY_SIZE(fixed); j++)
			assert_true(fixed[i].addr + fixed[i].len <= fixed[j].addr ||
				    fixed[j].addr + fixed[j].len <= fixed[i].addr);
	}
	/* ECAM, the 32-bit MMIO window and the APICs are inside the hole. */
	assert_true(PCI_MMIO32_BASE >= LOWMEM_LIMIT);
	assert_true(PCI_MMIO32_BASE + PCI_MMIO32_SIZE <= PCI_ECAM_BASE);
	assert_true(PCI_ECAM_BASE + PCI_ECAM_SIZE <= IOAPIC_BASE);
	assert_true(IOAPIC_BASE < LAPIC_BASE && LAPIC_BASE < HIGHMEM_BASE);
	assert_true(KVM_TSS_ADDR + 3 * 4096 <= HIGHMEM_BASE);
	assert_true(KVM_IDENTITY_MAP_ADDR + 4096 <= KVM_TSS_ADDR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_compute_split),
	    cmocka_unit_test(test_compute_rejects),
	    cmocka_unit_test(test_e820_exact_64m),
	    cmocka_unit_test(test_e820_exact_5g),
	    cmocka_unit_test(test_e820_sizes),
	    cmocka_unit_test(test_e820_enospc),
	    cmocka_unit_test(test_fixed_addresses_are_consistent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
