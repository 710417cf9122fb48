/* Unit tests for PCI BARs: placement, sizing, moves, memory enable, bad addresses, conflicts. */
#include "pci_fixture.h"

static void test_placement(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	static const struct {
		unsigned dev, bar;
		uint64_t size;
		bool is64, prefetch;
	} bars[] = {
	    {1, 0, 16 * KiB, false, false}, {1, 2, 64 * KiB, true, false},
	    {1, 4, 1 * MiB, true, true},    {2, 0, 2 * MiB, false, false},
	    {2, 1, 4 * KiB, false, false},
	};
	uint64_t lo[ARRAY_SIZE(bars)], hi[ARRAY_SIZE(bars)];
	for (size_t i = 0; i < ARRAY_SIZE(bars); i++) {
		unsigned devfn = DEVFN(bars[i].dev);
		uint64_t size = bars[i].size;
		uint32_t raw = rd(f, 0, devfn, PCI_BAR0 + 4 * bars[i].bar, 4);
		assert_int_equal(raw & 0xf, (bars[i].is64 ? 4 : 0) | (bars[i].prefetch ? 8 : 0));
		uint64_t a = bar_addr(f, devfn, bars[i].bar, bars[i].is64);
		if (a % size)
			fail_msg("BAR %zu at 0x%llx not aligned to its size", i,
				 (unsigned long long)a);
		if (bars[i].is64 && bars[i].prefetch) {
			assert_true(a >= MMIO64_BASE && a + size <= MMIO64_BASE + MMIO64_SIZE);
		} else {
			assert_true(a >= PCI_MMIO32_BASE && a + size <= MMIO32_END);
			if (bars[i].is64)
				assert_int_equal(rd(f, 0, devfn, PCI_BAR0 + 4 * bars[i].bar + 4, 4),
						 0);
		}
		struct bar_dev *bd = &f->bd[bars[i].dev][bars[i].bar];
		assert_true(decodes_at(f, bd, a, size));
		assert_int_equal(f->dev[bars[i].dev].bar[bars[i].bar].mapped_at, a);
		lo[i] = a;
		hi[i] = a + size;
	}
	/* No two BARs overlap. */
	for (size_t i = 0; i < ARRAY_SIZE(bars); i++)
		for (size_t j = i + 1; j < ARRAY_SIZE(bars); j++)
			assert_true(hi[i] <= lo[j] || hi[j] <= lo[i]);
	/* The upper halves of 64-bit BARs are not BARs of their own. */
	assert_int_equal(f->dev[1].bar[3].size, 0);
	assert_int_equal(f->dev[1].bar[5].size, 0);
}

/* Size one BAR the way an OS does (all-ones, read, restore) and check the answer. */
static void size_bar(struct fixture *f, bool via_ecam, unsigned dev, unsigned bar, uint64_t size,
		     bool is64, bool prefetch)
{
	unsigned devfn = DEVFN(dev), off = PCI_BAR0 + 4 * bar;
	struct bar_dev *bd = &f->bd[dev][bar];
	uint32_t flags = (is64 ? 4 : 0) | (prefetch ? 8 : 0);
	uint32_t orig_lo = rd(f, 0, devfn, off, 4);
	uint32_t orig_hi = is64 ? rd(f, 0, devfn, off + 4, 4) : 0;
	uint64_t a = (orig_lo & ~0xfULL) | (uint64_t)orig_hi << 32;
	assert_true(decodes_at(f, bd, a, size));

	wr(f, via_ecam, devfn, off, 4, 0xffffffff);
	if (is64)
		wr(f, via_ecam, devfn, off + 4, 4, 0xffffffff);
	uint64_t mask = ~(size - 1);
	assert_int_equal(rd(f, 0, devfn, off, 4), ((uint32_t)mask & ~0xfu) | flags);
	if (is64)
		assert_int_equal(rd(f, 0, devfn, off + 4, 4), (uint32_t)(mask >> 32));
	/* The sizing pattern is not an address: nothing decodes there, nor at the old place. */
	assert_unmapped(f, bd);
	assert_int_equal(f->dev[dev].bar[bar].mapped_at, 0);
	/* Flag bits are read-only. */
	wr(f, via_ecam, devfn, off, 1, 0);
	assert_int_equal(rd(f, 0, devfn, off, 1) & 0xf, flags);

	wr(f, via_ecam, devfn, off, 4, orig_lo);
	if (is64)
		wr(f, via_ecam, devfn, off + 4, 4, orig_hi);
	assert_int_equal(rd(f, 0, devfn, off, 4), orig_lo);
	if (is64)
		assert_int_equal(rd(f, 0, devfn, off + 4, 4), orig_hi);
	assert_true(decodes_at(f, bd, a, size));
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	for (unsigned via = 0; via < 2; via++) {
		size_bar(f, via, 1, 0, 16 * KiB, false, false);
		size_bar(f, via, 1, 2, 64 * KiB, true, false);
		size_bar(f, via, 1, 4, 1 * MiB, true, true);
		size_bar(f, via, 2, 0, 2 * MiB, false, false);
		size_bar(f, via, 2, 1, 4 * KiB, false, false);
	}
	/* Sizing with memory decoding off (what Linux does): no moves at all until it is back on.
	 */
	uint32_t orig = rd(f, 0, DEVFN(2), PCI_BAR0, 4);
	wr(f, false, DEVFN(2), PCI_COMMAND, 2, 0);
	f->nmoves = 0;
	wr(f, false, DEVFN(2), PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_BAR0, 4), 0xffe00000);
	wr(f, false, DEVFN(2), PCI_BAR0, 4, orig);
	assert_int_equal(f->nmoves, 0);
	wr(f, false, DEVFN(2), PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(f->nmoves, 2);
	assert_true(decodes_at(f, &f->bd[2][0], orig, 2 * MiB));

	/* Unused BARs read 0 and stay 0. */
	wr(f, true, DEVFN(2), PCI_BAR0 + 8, 4, 0xffffffff);
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_BAR0 + 8, 4), 0);
	wr(f, true, DEVFN(1), PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_BAR0 + 4, 4), 0);
}

static void test_bar_sizing_large(void **state)
{
	struct fixture *f = *state;
	/* An 8 GiB prefetchable BAR in a 16 GiB window: the size shows only in the high half. */
	struct pci_bus pb;
	struct bus pio, mmio;
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	assert_int_equal(pci_bus_init(&pb, &pio, &mmio, 0x4000000000ULL, 16 * GiB), 0);
	struct pci_device *d = new_dev(f, 1, 0x1af4, 0x1045);
	assert_int_equal(pci_set_bar(d, 0, 8 * GiB, true, true, &bar_ops, &f->bd[1][0]), 0);
	assert_int_equal(pci_bus_add(&pb, d), 0);
	assert_int_equal(pci_cfg_read(&pb, 0, DEVFN(1), PCI_BAR0, 4), 0x0000000c);
	assert_int_equal(pci_cfg_read(&pb, 0, DEVFN(1), PCI_BAR0 + 4, 4), 0x40);
	struct bus_range r;
	assert_true(bus_find(&mmio, 0x4000000000ULL + 8 * GiB - 1, &r));
	assert_ptr_equal(r.opaque, &f->bd[1][0]);
	pci_cfg_write(&pb, 0, DEVFN(1), PCI_BAR0, 4, 0xffffffff);
	pci_cfg_write(&pb, 0, DEVFN(1), PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(pci_cfg_read(&pb, 0, DEVFN(1), PCI_BAR0, 4), 0x0000000c);
	assert_int_equal(pci_cfg_read(&pb, 0, DEVFN(1), PCI_BAR0 + 4, 4), 0xfffffffe);
	assert_int_equal(d->bar[0].mapped_at, 0);
	assert_false(bus_find(&mmio, 0x4000000000ULL, &r));
	pci_cfg_write(&pb, 0, DEVFN(1), PCI_BAR0 + 4, 4, 0x42);
	assert_int_equal(d->bar[0].mapped_at, 0x4200000000ULL);
	/* pci_set_bar limits. */
	struct pci_device t;
	pci_device_init(&t, "t", 1, 2, 0, 0, 0, 0);
	assert_int_equal(pci_set_bar(&t, 0, 2048, false, false, &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&t, 0, 12288, false, false, &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&t, 0, 4 * GiB, false, false, &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&t, 0, 2 * GiB, false, false, &bar_ops, NULL), 0);
	assert_int_equal(pci_set_bar(&t, 5, 4096, true, false, &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&t, 6, 4096, false, false, &bar_ops, NULL), -EINVAL);
	assert_int_equal(pci_set_bar(&t, 5, 4096, false, false, &bar_ops, NULL), 0);
	pci_bus_destroy(&pb);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static void test_bar_move(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	struct pci_device *d = &f->dev[1];
	struct bar_dev *bd0 = &f->bd[1][0], *bd4 = &f->bd[1][4];
	uint64_t old0 = bar_addr(f, DEVFN(1), 0, false);
	uint64_t old4 = bar_addr(f, DEVFN(1), 4, true);

	/* 32-bit BAR through CF8/CFC. */
	wr(f, false, DEVFN(1), PCI_BAR0, 4, 0xd0004000);
	assert_int_equal(bar_addr(f, DEVFN(1), 0, false), 0xd0004000);
	assert_false(bus_find(&f->mmio, old0, &(struct bus_range){0}));
	assert_true(decodes_at(f, bd0, 0xd0004000, 16 * KiB));
	assert_int_equal(d->bar[0].mapped_at, 0xd0004000);
	assert_int_equal(f->nmoves, 1);
	assert_ptr_equal(f->moves[0].d, d);
	assert_int_equal(f->moves[0].bar, 0);
	assert_int_equal(f->moves[0].old, old0);
	assert_int_equal(f->moves[0].new, 0xd0004000);
	/* Writing the same address again moves nothing. */
	wr(f, true, DEVFN(1), PCI_BAR0, 4, 0xd0004000);
	assert_int_equal(f->nmoves, 1);
	/* Low bits below the size are not writable: the address is rounded down. */
	wr(f, true, DEVFN(1), PCI_BAR0, 4, 0xd0009fff);
	assert_int_equal(bar_addr(f, DEVFN(1), 0, false), 0xd0008000);
	assert_true(decodes_at(f, bd0, 0xd0008000, 16 * KiB));
	assert_int_equal(f->nmoves, 2);

	/* 64-bit BAR with one 8-byte ECAM write: only the low half changes, one move. */
	f->nmoves = 0;
	uint64_t new4 = old4 + 16 * MiB;
	ecam_write(f, 0, DEVFN(1), PCI_BAR0 + 16, 8, new4 | 0xc);
	assert_int_equal(bar_addr(f, DEVFN(1), 4, true), new4);
	assert_false(bus_find(&f->mmio, old4, &(struct bus_range){0}));
	assert_true(decodes_at(f, bd4, new4, 1 * MiB));
	assert_int_equal(f->nmoves, 1);
	assert_int_equal(f->moves[0].bar, 4);
	assert_int_equal(f->moves[0].old, old4);
	assert_int_equal(f->moves[0].new, new4);
	/* Both halves with one 8-byte ECAM write. */
	f->nmoves = 0;
	ecam_write(f, 0, DEVFN(1), PCI_BAR0 + 16, 8, 0x2000300000ULL | 0xc);
	assert_int_equal(bar_addr(f, DEVFN(1), 4, true), 0x2000300000ULL);
	assert_true(decodes_at(f, bd4, 0x2000300000ULL, 1 * MiB));
	assert_false(bus_find(&f->mmio, new4, &(struct bus_range){0}));
	assert_int_equal(f->moves[f->nmoves - 1].new, 0x2000300000ULL);
	ecam_write(f, 0, DEVFN(1), PCI_BAR0 + 16, 8, new4 | 0xc);
	assert_true(decodes_at(f, bd4, new4, 1 * MiB));
	f->nmoves = 0;
	/* Above the window, high half only (CF8/CFC). */
	f->nmoves = 0;
	wr(f, false, DEVFN(1), PCI_BAR0 + 20, 4, 0x300);
	uint64_t moved = 0x30000000000ULL | (new4 & 0xffffffff);
	assert_int_equal(bar_addr(f, DEVFN(1), 4, true), moved);
	assert_true(decodes_at(f, bd4, moved, 1 * MiB));
	assert_int_equal(f->nmoves, 1);
	assert_int_equal(f->moves[0].old, new4);
	assert_int_equal(f->moves[0].new, moved);
	/* A 64-bit BAR may go below 4 GiB, and a non-prefetchable one above. */
	wr(f, false, DEVFN(1), PCI_BAR0 + 16, 4, 0xdf000000);
	wr(f, false, DEVFN(1), PCI_BAR0 + 20, 4, 0);
	assert_true(decodes_at(f, bd4, 0xdf000000, 1 * MiB));
	uint64_t low2 = bar_addr(f, DEVFN(1), 2, true);
	assert_true(low2 < 0x100000000ULL);
	wr(f, true, DEVFN(1), PCI_BAR0 + 12, 4, 0x1);
	assert_true(decodes_at(f, &f->bd[1][2], 0x100000000ULL | low2, 64 * KiB));
	/* The other device was not affected. */
	assert_true(decodes_at(f, &f->bd[2][0], bar_addr(f, DEVFN(2), 0, false), 2 * MiB));
	for (unsigned i = 0; i < f->nmoves && i < ARRAY_SIZE(f->moves); i++)
		assert_ptr_equal(f->moves[i].d, d);
}

static void test_memory_enable(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	static const unsigned bars[] = {0, 2, 4};
	static const uint64_t sizes[] = {16 * KiB, 64 * KiB, 1 * MiB};
	uint64_t at[3];
	for (unsigned i = 0; i < 3; i++)
		at[i] = f->dev[1].bar[bars[i]].mapped_at;
	for (unsigned via = 0; via < 2; via++) {
		f->nmoves = 0;
		wr(f, via, DEVFN(1), PCI_COMMAND, 2, PCI_COMMAND_MASTER);
		for (unsigned i = 0; i < 3; i++) {
			assert_unmapped(f, &f->bd[1][bars[i]]);
			assert_false(bus_find(&f->mmio, at[i], &(struct bus_range){0}));
			assert_int_equal(f->dev[1].bar[bars[i]].mapped_at, 0);
		}
		assert_int_equal(f->nmoves, 3);
		for (unsigned i = 0; i < 3; i++) {
			assert_int_equal(f->moves[i].bar, bars[i]);
			assert_int_equal(f->moves[i].old, at[i]);
			assert_int_equal(f->moves[i].new, 0);
		}
		/* The other device keeps decoding. */
		assert_int_equal(f->dev[2].bar[0].mapped_at, bar_addr(f, DEVFN(2), 0, false));
		/* Other command bits do not map anything. */
		wr(f, via, DEVFN(1), PCI_COMMAND, 2, 0x0405);
		assert_int_equal(f->nmoves, 3);
		f->nmoves = 0;
		wr(f, via, DEVFN(1), PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
		assert_int_equal(f->nmoves, 3);
		for (unsigned i = 0; i < 3; i++) {
			assert_true(decodes_at(f, &f->bd[1][bars[i]], at[i], sizes[i]));
			assert_int_equal(f->moves[i].old, 0);
			assert_int_equal(f->moves[i].new, at[i]);
		}
	}
	/* BARs written while decoding is off take effect when it is turned on. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 2, 0);
	wr(f, false, DEVFN(1), PCI_BAR0, 4, 0xd8000000);
	assert_unmapped(f, &f->bd[1][0]);
	f->nmoves = 0;
	wr(f, false, DEVFN(1), PCI_COMMAND, 1, PCI_COMMAND_MEMORY);
	assert_true(decodes_at(f, &f->bd[1][0], 0xd8000000, 16 * KiB));
	assert_int_equal(f->nmoves, 3);
	/* Turning decoding off is a byte write too. */
	wr(f, true, DEVFN(1), PCI_COMMAND, 1, 0);
	assert_unmapped(f, &f->bd[1][0]);
}

static void test_bar_bad_addresses(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	struct bar_dev *bd = &f->bd[1][0];
	const uint64_t size = 16 * KiB;
	/* Addresses that may never decode: 0, the platform area below 4 GiB, the sizing pattern. */
	static const uint32_t bad[] = {0,	   0xfec00000, 0xfebfc000 + 0x4000, 0xfee00000,
				       0xffffc000, 0xfffbc000, 0xfeffc000};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		wr(f, i & 1, DEVFN(1), PCI_BAR0, 4, bad[i]);
		assert_int_equal(bar_addr(f, DEVFN(1), 0, false), bad[i]);
		assert_unmapped(f, bd);
		assert_int_equal(f->dev[1].bar[0].mapped_at, 0);
		assert_false(bus_find(&f->mmio, bad[i], &(struct bus_range){0}));
	}
	/* Ending right below the platform area is fine. */
	wr(f, false, DEVFN(1), PCI_BAR0, 4, 0xfebfc000);
	assert_true(decodes_at(f, bd, 0xfebfc000, size));
	/* A 64-bit BAR: straddling 4 GiB from the platform area, at the top of the 46-bit space. */
	struct bar_dev *bd2 = &f->bd[1][2];
	wr(f, false, DEVFN(1), PCI_BAR0 + 8, 4, 0xffff0000);
	wr(f, false, DEVFN(1), PCI_BAR0 + 12, 4, 0);
	assert_unmapped(f, bd2);
	wr(f, false, DEVFN(1), PCI_BAR0 + 12, 4, 0x3fff);
	assert_true(decodes_at(f, bd2, 0x3fffffff0000ULL, 64 * KiB));
	wr(f, false, DEVFN(1), PCI_BAR0 + 12, 4, 0x4000);
	assert_unmapped(f, bd2);
	wr(f, false, DEVFN(1), PCI_BAR0 + 12, 4, 0xffffffff);
	assert_unmapped(f, bd2);
	wr(f, false, DEVFN(1), PCI_BAR0 + 8, 4, 0);
	wr(f, false, DEVFN(1), PCI_BAR0 + 12, 4, 1);
	assert_true(decodes_at(f, bd2, 0x100000000ULL, 64 * KiB));

	/* Over ECAM or another BAR: the MMIO bus refuses it, so it is not mapped (and the bus is
	 * unchanged: ECAM and the other BAR still work). */
	uint64_t other = bar_addr(f, DEVFN(2), 1, false);
	static const uint32_t taken[] = {PCI_ECAM_BASE, PCI_ECAM_BASE + 0x10000};
	for (size_t i = 0; i < ARRAY_SIZE(taken); i++) {
		wr(f, false, DEVFN(1), PCI_BAR0, 4, taken[i]);
		assert_unmapped(f, bd);
		assert_int_equal(f->dev[1].bar[0].mapped_at, 0);
		assert_int_equal(rd(f, 0, DEVFN(1), 0, 4), 0x10411af4);
	}
	wr(f, false, DEVFN(1), PCI_BAR0, 4, (uint32_t)(other & ~(size - 1)));
	assert_unmapped(f, bd);
	assert_true(decodes_at(f, &f->bd[2][1], other, 4 * KiB));
	/* And back to a free address. */
	wr(f, false, DEVFN(1), PCI_BAR0, 4, 0xc8000000);
	assert_true(decodes_at(f, bd, 0xc8000000, size));
}

/*
 * A BAR left unmapped because its address collided with another BAR should decode once the
 * collision is gone: the register holds a valid address and memory decoding is on (as on real
 * hardware, where both would decode and the later move resolves it).
 */
static void test_bar_conflict_resolved(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* Across devices: dev 1's BAR0 into dev 2's BAR0 range, then dev 2's BAR0 moves away. */
	uint64_t b = bar_addr(f, DEVFN(2), 0, false) + 0x100000;
	wr(f, false, DEVFN(1), PCI_BAR0, 4, (uint32_t)b);
	assert_unmapped(f, &f->bd[1][0]); /* collides for now */
	wr(f, false, DEVFN(2), PCI_BAR0, 4, 0xd0000000);
	assert_true(decodes_at(f, &f->bd[2][0], 0xd0000000, 2 * MiB));
	if (!decodes_at(f, &f->bd[1][0], b, 16 * KiB))
		fail_msg("dev 1 BAR0 at 0x%llx (now free) is still not decoded",
			 (unsigned long long)b);
}

static void test_bar_swap_within_device(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* dev 2: BAR1 into BAR0's range, then BAR0 away: BAR1 decodes (BAR0 is updated first). */
	uint64_t b0 = bar_addr(f, DEVFN(2), 0, false);
	uint64_t b1 = bar_addr(f, DEVFN(2), 1, false);
	wr(f, false, DEVFN(2), PCI_BAR0 + 4, 4, (uint32_t)b0 + 0x1000);
	assert_unmapped(f, &f->bd[2][1]);
	wr(f, false, DEVFN(2), PCI_BAR0, 4, 0xd0000000);
	assert_true(decodes_at(f, &f->bd[2][0], 0xd0000000, 2 * MiB));
	assert_true(decodes_at(f, &f->bd[2][1], b0 + 0x1000, 4 * KiB));

	/* The other order: BAR0 onto BAR1, then BAR1 away. */
	wr(f, false, DEVFN(2), PCI_BAR0 + 4, 4, (uint32_t)b1);
	wr(f, false, DEVFN(2), PCI_BAR0, 4, (uint32_t)b1);
	assert_unmapped(f, &f->bd[2][0]);
	wr(f, false, DEVFN(2), PCI_BAR0 + 4, 4, 0xd8000000);
	assert_true(decodes_at(f, &f->bd[2][1], 0xd8000000, 4 * KiB));
	if (!decodes_at(f, &f->bd[2][0], b1, 2 * MiB))
		fail_msg("dev 2 BAR0 at 0x%llx (now free) is still not decoded",
			 (unsigned long long)b1);
}

/* Walk the capability list from 0x34; fails on loops, bad pointers. Returns the count. */
int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_placement),
	    T(test_bar_sizing),
	    T(test_bar_sizing_large),
	    T(test_bar_move),
	    T(test_memory_enable),
	    T(test_bar_bad_addresses),
	    T(test_bar_conflict_resolved),
	    T(test_bar_swap_within_device),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
