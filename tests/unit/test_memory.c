/* Unit tests for vmm/memory: anonymous guest RAM and the bounds/overflow checks of gpa_to_hva.
 */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/memory.h"

struct fixture {
	struct guest_mem m;
};

static int setup_5g(void **state)
{
	static struct fixture f;
	struct mem_layout l;
	assert_int_equal(layout_compute(5 * GiB, &l), 0);
	int r = guest_mem_init(&f.m, &l);
	if (r)
		fail_msg("guest_mem_init(5G): %s", strerror(-r));
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	guest_mem_destroy(&f->m);
	return 0;
}

static void test_regions(void **state)
{
	struct guest_mem *m = &((struct fixture *)*state)->m;
	assert_int_equal(m->fd, -1);
	assert_non_null(m->base);
	assert_int_equal(m->nregions, 2);
	assert_int_equal(m->regions[0].gpa, 0);
	assert_int_equal(m->regions[0].size, LOWMEM_LIMIT);
	assert_int_equal(m->regions[0].file_offset, 0);
	assert_ptr_equal(m->regions[0].host, m->base);
	assert_int_equal(m->regions[1].gpa, HIGHMEM_BASE);
	assert_int_equal(m->regions[1].size, 2 * GiB);
	assert_int_equal(m->regions[1].file_offset, LOWMEM_LIMIT);
	assert_ptr_equal(m->regions[1].host, m->base + LOWMEM_LIMIT);
	assert_int_equal(m->layout.ram_bytes, 5 * GiB);
}

static void test_gpa_bounds(void **state)
{
	struct guest_mem *m = &((struct fixture *)*state)->m;
	uint8_t *b = m->base;
	const uint64_t high_end = HIGHMEM_BASE + 2 * GiB;

	assert_ptr_equal(gpa_to_hva(m, 0, 1), b);
	assert_ptr_equal(gpa_to_hva(m, 0, 0), b); /* len 0 counts as 1 */
	assert_ptr_equal(gpa_to_hva(m, 0, LOWMEM_LIMIT), b);
	assert_null(gpa_to_hva(m, 0, LOWMEM_LIMIT + 1));
	/* Last byte of low RAM, and ranges crossing LOWMEM_LIMIT. */
	assert_ptr_equal(gpa_to_hva(m, LOWMEM_LIMIT - 1, 1), b + LOWMEM_LIMIT - 1);
	assert_ptr_equal(gpa_to_hva(m, LOWMEM_LIMIT - 8, 8), b + LOWMEM_LIMIT - 8);
	assert_null(gpa_to_hva(m, LOWMEM_LIMIT - 1, 2));
	assert_null(gpa_to_hva(m, LOWMEM_LIMIT - 8, 9));
	/* Inside the hole. */
	assert_null(gpa_to_hva(m, LOWMEM_LIMIT, 1));
	assert_null(gpa_to_hva(m, LOWMEM_LIMIT, 0));
	assert_null(gpa_to_hva(m, PCI_ECAM_BASE, 4));
	assert_null(gpa_to_hva(m, IOAPIC_BASE, 4));
	assert_null(gpa_to_hva(m, HIGHMEM_BASE - 1, 1));
	/* A range from the hole into high RAM, and one spanning low to high. */
	assert_null(gpa_to_hva(m, HIGHMEM_BASE - 1, 2));
	assert_null(gpa_to_hva(m, 0, HIGHMEM_BASE + 1));
	/* High RAM: first byte, last byte, whole region, past the end. */
	assert_ptr_equal(gpa_to_hva(m, HIGHMEM_BASE, 1), b + LOWMEM_LIMIT);
	assert_ptr_equal(gpa_to_hva(m, high_end - 1, 1), b + 5 * GiB - 1);
	assert_ptr_equal(gpa_to_hva(m, HIGHMEM_BASE, 2 * GiB), b + LOWMEM_LIMIT);
	assert_null(gpa_to_hva(m, HIGHMEM_BASE, 2 * GiB + 1));
	assert_null(gpa_to_hva(m, high_end - 1, 2));
	assert_null(gpa_to_hva(m, high_end, 1));
	assert_null(gpa_to_hva(m, 8 * GiB, 1));
	assert_ptr_equal(gpa_to_hva(m, 5 * GiB, 1), b + 4 * GiB);
	/* Overflow. */
	assert_null(gpa_to_hva(m, UINT64_MAX, 1));
	assert_null(gpa_to_hva(m, UINT64_MAX, 0));
	assert_null(gpa_to_hva(m, UINT64_MAX - 10, 100));
	assert_null(gpa_to_hva(m, 1, UINT64_MAX));
	assert_null(gpa_to_hva(m, HIGHMEM_BASE, UINT64_MAX));
	assert_null(gpa_to_hva(m, HIGHMEM_BASE + 16, UINT64_MAX - HIGHMEM_BASE));
	assert_null(gpa_to_hva(m, 0x1000, UINT64_MAX - 0xfff)); /* gpa + len == 0 */
}

static void test_copy_helpers(void **state)
{
	struct guest_mem *m = &((struct fixture *)*state)->m;
	static const char msg[] = "berth guest memory";

	/* Write in high RAM, see it in the one mapping at the low-RAM-sized offset. */
	assert_int_equal(guest_write(m, HIGHMEM_BASE + 12345, msg, sizeof(msg)), 0);
	char back[sizeof(msg)];
	memcpy(back, m->base + LOWMEM_LIMIT + 12345, sizeof(back));
	assert_memory_equal(back, msg, sizeof(msg));
	memset(back, 0, sizeof(back));
	assert_int_equal(guest_read(m, HIGHMEM_BASE + 12345, back, sizeof(back)), 0);
	assert_memory_equal(back, msg, sizeof(msg));

	/* And the other way: a store through the mapping is what the accessors read. */
	memcpy(m->base + 0x7000, "XY", 2);
	assert_int_equal(guest_read(m, 0x7000, back, 2), 0);
	assert_memory_equal(back, "XY", 2);

	/* Zeroing. */
	assert_int_equal(guest_zero(m, HIGHMEM_BASE + 12345, 5), 0);
	assert_int_equal(guest_read(m, HIGHMEM_BASE + 12345, back, sizeof(back)), 0);
	assert_memory_equal(back, "\0\0\0\0\0 guest", 11);

	/* Right up to the end of low RAM, then one byte too far: nothing is written. */
	assert_int_equal(guest_write(m, LOWMEM_LIMIT - 4, "abcd", 4), 0);
	assert_int_equal(guest_write(m, LOWMEM_LIMIT - 3, "wxyz", 4), -EFAULT);
	assert_int_equal(guest_read(m, LOWMEM_LIMIT - 4, back, 4), 0);
	assert_memory_equal(back, "abcd", 4);
	assert_int_equal(guest_zero(m, LOWMEM_LIMIT - 3, 4), -EFAULT);
	assert_int_equal(guest_read(m, LOWMEM_LIMIT - 4, back, 4), 0);
	assert_memory_equal(back, "abcd", 4);

	/* Outside RAM: -EFAULT, destination untouched. */
	memset(back, 0x5a, sizeof(back));
	assert_int_equal(guest_read(m, PCI_ECAM_BASE, back, 4), -EFAULT);
	assert_int_equal(back[0], 0x5a);
	assert_int_equal(guest_read(m, HIGHMEM_BASE + 2 * GiB, back, 1), -EFAULT);
	assert_int_equal(guest_write(m, LOWMEM_LIMIT, "x", 1), -EFAULT);
	assert_int_equal(guest_write(m, UINT64_MAX - 1, "xyz", 3), -EFAULT);
	assert_int_equal(guest_zero(m, HIGHMEM_BASE - 4096, 4096), -EFAULT);
	assert_int_equal(guest_zero(m, UINT64_MAX, 0), -EFAULT);
	/* Zero-length copies inside RAM succeed. */
	assert_int_equal(guest_write(m, 0, "", 0), 0);
	assert_int_equal(guest_read(m, HIGHMEM_BASE, back, 0), 0);
}

static void test_small_vm(void **state)
{
	(void)state;
	struct mem_layout l;
	struct guest_mem m;
	assert_int_equal(layout_compute(64 * MiB, &l), 0);
	assert_int_equal(guest_mem_init(&m, &l), 0);
	assert_int_equal(m.nregions, 1);
	assert_non_null(gpa_to_hva(&m, 64 * MiB - 1, 1));
	assert_null(gpa_to_hva(&m, 64 * MiB - 1, 2));
	assert_null(gpa_to_hva(&m, 64 * MiB, 1));
	assert_null(gpa_to_hva(&m, HIGHMEM_BASE, 1));
	assert_null(gpa_to_hva(&m, HIGHMEM_BASE, 0));
	/* RAM starts zeroed. */
	uint8_t page[4096], zero[4096] = {0};
	assert_int_equal(guest_read(&m, 0x100000, page, sizeof(page)), 0);
	assert_memory_equal(page, zero, sizeof(page));
	guest_mem_destroy(&m);
	assert_null(m.base);
	assert_int_equal(m.fd, -1);
	guest_mem_destroy(&m); /* idempotent */

	/* Exactly LOWMEM_LIMIT: one region, no high part. */
	assert_int_equal(layout_compute(3 * GiB, &l), 0);
	assert_int_equal(guest_mem_init(&m, &l), 0);
	assert_int_equal(m.nregions, 1);
	assert_non_null(gpa_to_hva(&m, LOWMEM_LIMIT - 1, 1));
	assert_null(gpa_to_hva(&m, HIGHMEM_BASE, 1));
	guest_mem_destroy(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_regions, setup_5g, teardown),
	    cmocka_unit_test_setup_teardown(test_gpa_bounds, setup_5g, teardown),
	    cmocka_unit_test_setup_teardown(test_copy_helpers, setup_5g, teardown),
	    cmocka_unit_test(test_small_vm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
