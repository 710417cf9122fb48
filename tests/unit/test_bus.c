/* Unit tests for vmm/bus: range registration (overlap, wrap), lookup, dispatch with offsets,
 * unclaimed accesses. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/bus.h"

struct dev {
	uint64_t last_off, last_val;
	unsigned last_size, reads, writes;
	uint64_t id;
};

static uint64_t dev_read(void *opaque, uint64_t offset, unsigned size)
{
	struct dev *d = opaque;
	d->last_off = offset;
	d->last_size = size;
	d->reads++;
	return d->id << 32 | offset << 8 | size;
}

static void dev_write(void *opaque, uint64_t offset, unsigned size, uint64_t val)
{
	struct dev *d = opaque;
	d->last_off = offset;
	d->last_size = size;
	d->last_val = val;
	d->writes++;
}

static const struct bus_ops dev_ops = {.read = dev_read, .write = dev_write};
static const struct bus_ops no_ops = {0};

static void test_register_overlap(void **state)
{
	(void)state;
	struct bus b;
	struct dev d = {0};
	bus_init(&b, "pio");
	assert_string_equal(b.name, "pio");
	assert_int_equal(bus_register(&b, 0x100, 0x10, &dev_ops, &d, "a"), 0);
	/* Overlaps from above, from below, identical, enclosing, enclosed, last/first byte. */
	assert_int_equal(bus_register(&b, 0x108, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xf8, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x100, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x0, 0x1000, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x104, 1, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0x10f, 1, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&b, 0xff, 2, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(b.count, 1);
	/* Adjacent on both sides is fine. */
	assert_int_equal(bus_register(&b, 0x110, 0x10, &dev_ops, &d, "above"), 0);
	assert_int_equal(bus_register(&b, 0xf0, 0x10, &dev_ops, &d, "below"), 0);
	assert_int_equal(b.count, 3);
	/* Now a range spanning the gap between two others still collides. */
	assert_int_equal(bus_register(&b, 0x10f, 2, &dev_ops, &d, "x"), -EEXIST);
	assert_string_equal(b.ranges[0].name, "below");
	assert_string_equal(b.ranges[1].name, "a");
	assert_string_equal(b.ranges[2].name, "above");
	bus_destroy(&b);
	assert_int_equal(b.count, 0);
	assert_null(b.ranges);
}

static void test_register_invalid(void **state)
{
	(void)state;
	struct bus b;
	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0x1000, 0, &dev_ops, NULL, "empty"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX, 2, &dev_ops, NULL, "wrap"), -EINVAL);
	assert_int_equal(bus_register(&b, UINT64_MAX - 0xf, 0x11, &dev_ops, NULL, "wrap"), -EINVAL);
	assert_int_equal(b.count, 0);
	/* Ending exactly at the top of the address space is allowed. */
	assert_int_equal(bus_register(&b, UINT64_MAX - 0xf, 0x10, &dev_ops, NULL, "top"), 0);
	assert_true(bus_find(&b, UINT64_MAX, &(struct bus_range){0}));
	assert_false(bus_find(&b, UINT64_MAX - 0x10, &(struct bus_range){0}));
	assert_int_equal(bus_register(&b, UINT64_MAX, 1, &dev_ops, NULL, "x"), -EEXIST);
	bus_destroy(&b);

	/* The whole space but the last byte. */
	bus_init(&b, "mmio");
	assert_int_equal(bus_register(&b, 0, UINT64_MAX, &dev_ops, NULL, "all"), 0);
	assert_true(bus_find(&b, 0, &(struct bus_range){0}));
	assert_true(bus_find(&b, UINT64_MAX - 1, &(struct bus_range){0}));
	assert_false(bus_find(&b, UINT64_MAX, &(struct bus_range){0}));
	assert_int_equal(bus_register(&b, UINT64_MAX, 1, &dev_ops, NULL, "last"), 0);
	assert_int_equal(bus_register(&b, 12345, 1, &dev_ops, NULL, "x"), -EEXIST);
	bus_destroy(&b);
}

static void test_dispatch(void **state)
{
	(void)state;
	struct bus b;
	struct dev uart = {.id = 1}, pm = {.id = 2};
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x3f8, 8, &dev_ops, &uart, "uart"), 0);
	assert_int_equal(bus_register(&b, 0x600, 6, &dev_ops, &pm, "pm"), 0);

	uint64_t v = 0;
	assert_true(bus_access(&b, 0x3fd, 1, false, &v));
	assert_int_equal(v, 1ULL << 32 | 5 << 8 | 1);
	assert_int_equal(uart.reads, 1);
	assert_int_equal(uart.last_off, 5);

	v = 0xabcd;
	assert_true(bus_access(&b, 0x604, 2, true, &v));
	assert_int_equal(pm.writes, 1);
	assert_int_equal(pm.last_off, 4);
	assert_int_equal(pm.last_size, 2);
	assert_int_equal(pm.last_val, 0xabcd);
	assert_int_equal(uart.writes, 0);

	assert_true(bus_access(&b, 0x600, 4, false, &v));
	assert_int_equal(v, 2ULL << 32 | 0 << 8 | 4);
	assert_true(bus_access(&b, 0x3ff, 1, false, &v));
	assert_int_equal(uart.last_off, 7);
	assert_int_equal(b.unhandled, 0);

	/* A device without handlers: reads give 0, writes are dropped, both count as claimed. */
	assert_int_equal(bus_register(&b, 0x80, 1, &no_ops, NULL, "post"), 0);
	v = 0x55;
	assert_true(bus_access(&b, 0x80, 1, true, &v));
	v = 0x55;
	assert_true(bus_access(&b, 0x80, 1, false, &v));
	assert_int_equal(v, 0);
	assert_int_equal(b.unhandled, 0);
	bus_destroy(&b);
}

static void test_unclaimed(void **state)
{
	(void)state;
	struct bus b;
	struct dev d = {0};
	bus_init(&b, "pio");
	assert_int_equal(bus_register(&b, 0x3f8, 8, &dev_ops, &d, "uart"), 0);
	static const struct {
		unsigned size;
		uint64_t val;
	} want[] = {{1, 0xff}, {2, 0xffff}, {4, 0xffffffff}, {8, UINT64_MAX}};
	for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
		uint64_t v = 0x1234;
		assert_false(bus_access(&b, 0x3f7, want[i].size, false, &v));
		assert_int_equal(v, want[i].val);
		assert_int_equal(b.unhandled, i + 1);
	}
	/* Just past the end; writes are dropped and counted too. */
	uint64_t v = 0x77;
	assert_false(bus_access(&b, 0x400, 1, false, &v));
	assert_int_equal(v, 0xff);
	v = 0x77;
	assert_false(bus_access(&b, 0x400, 1, true, &v));
	assert_int_equal(v, 0x77);
	assert_int_equal(b.unhandled, 6);
	assert_int_equal(d.reads + d.writes, 0);
	bus_destroy(&b);

	/* An empty bus claims nothing. */
	bus_init(&b, "mmio");
	assert_false(bus_find(&b, 0, &(struct bus_range){0}));
	assert_false(bus_access(&b, 0xfee00000, 4, false, &v));
	assert_int_equal(v, 0xffffffff);
	assert_int_equal(b.unhandled, 1);
	bus_destroy(&b);
}

static void test_many_ranges(void **state)
{
	(void)state;
	/* 100 ranges registered out of order (forces growth); lookups hit the right one. */
	enum { N = 100 };
	struct bus b;
	static struct dev devs[N];
	bus_init(&b, "mmio");
	for (unsigned k = 0; k < N; k++) {
		unsigned i = (k * 37) % N; /* a permutation of 0..99 */
		devs[i].id = i;
		uint64_t base = 0x10000 + (uint64_t)i * 0x1000;
		assert_int_equal(bus_register(&b, base, 0x100 + i, &dev_ops, &devs[i], "d"), 0);
	}
	assert_int_equal(b.count, N);
	assert_true(b.cap >= N);
	for (unsigned i = 1; i < N; i++)
		assert_true(b.ranges[i - 1].base + b.ranges[i - 1].len <= b.ranges[i].base);
	for (unsigned i = 0; i < N; i++) {
		uint64_t base = 0x10000 + (uint64_t)i * 0x1000;
		struct bus_range r;
		assert_true(bus_find(&b, base, &r));
		assert_ptr_equal(r.opaque, &devs[i]);
		assert_true(bus_find(&b, base + 0x100 + i - 1, &r));
		assert_ptr_equal(r.opaque, &devs[i]);
		assert_false(bus_find(&b, base + 0x100 + i, &(struct bus_range){0}));
		assert_false(bus_find(&b, base - 1, &(struct bus_range){0}));
		uint64_t v;
		assert_true(bus_access(&b, base + 3, 4, false, &v));
		assert_int_equal(v, (uint64_t)i << 32 | 3 << 8 | 4);
	}
	/* Overlap with a range in the middle of the sorted array. */
	assert_int_equal(bus_register(&b, 0x10000 + 50 * 0x1000 + 0x10, 1, &dev_ops, NULL, "x"),
			 -EEXIST);
	assert_int_equal(bus_register(&b, 0x10000 + 50 * 0x1000 - 1, 2, &dev_ops, NULL, "x"),
			 -EEXIST);
	assert_int_equal(bus_register(&b, 0x10000 + 50 * 0x1000 - 1, 1, &dev_ops, NULL, "gap"), 0);
	bus_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_register_overlap), cmocka_unit_test(test_register_invalid),
	    cmocka_unit_test(test_dispatch),	     cmocka_unit_test(test_unclaimed),
	    cmocka_unit_test(test_many_ranges),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
