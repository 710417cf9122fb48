/* Shared fixture for the PCI unit tests: a bus with test devices, and config/BAR access helpers. */
#ifndef BERTH_TEST_PCI_FIXTURE_H
#define BERTH_TEST_PCI_FIXTURE_H

#include "unit.h"
#include <errno.h>
#include "common/util.h"
#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/pci.h"

#define MMIO64_BASE 0x1000000000ULL
#define MMIO64_SIZE (1ULL << 30)
#define MMIO32_END (PCI_MMIO32_BASE + PCI_MMIO32_SIZE)
#define DEVFN(slot) ((slot) << 3)

/* One emulated BAR: records what the MMIO bus dispatched to it. */
struct bar_dev {
	unsigned tag;
	unsigned reads, writes;
	uint64_t last_off, last_val;
	unsigned last_size;
};

struct move {
	struct pci_device *d;
	unsigned bar;
	uint64_t old, new;
};

struct fixture {
	struct bus pio, mmio;
	struct pci_bus pb;
	struct pci_device dev[PCI_MAX_SLOTS + 1];
	struct bar_dev bd[PCI_MAX_SLOTS + 1][PCI_NUM_BARS];
	struct move moves[64];
	unsigned nmoves;
};

static inline uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct bar_dev *b = opaque;
	b->reads++;
	b->last_off = off;
	b->last_size = size;
	return (uint64_t)b->tag << 32 | off;
}

static inline void bar_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct bar_dev *b = opaque;
	b->writes++;
	b->last_off = off;
	b->last_size = size;
	b->last_val = val;
}

static const struct bus_ops bar_ops = {.read = bar_read, .write = bar_write};

static inline void record_move(struct pci_device *d, unsigned bar, uint64_t old, uint64_t new)
{
	struct fixture *f = d->opaque;
	if (f->nmoves < ARRAY_SIZE(f->moves))
		f->moves[f->nmoves] = (struct move){d, bar, old, new};
	f->nmoves++;
}

static inline int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	assert_int_equal(pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE, MMIO64_SIZE), 0);
	*state = f;
	return 0;
}

static inline int teardown(void **state)
{
	struct fixture *f = *state;
	pci_bus_destroy(&f->pb);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f);
	return 0;
}

/* Prepare dev[i] (not yet added): BAR callbacks tagged 0x100*i + bar, the move hook. */
static inline struct pci_device *new_dev(struct fixture *f, unsigned i, uint16_t vendor,
					 uint16_t device)
{
	struct pci_device *d = &f->dev[i];
	pci_device_init(d, "test-dev", vendor, device, 0x020000, 1, 0x1af4, 0x0001);
	d->opaque = f;
	d->bar_moved = record_move;
	for (unsigned b = 0; b < PCI_NUM_BARS; b++)
		f->bd[i][b].tag = 0x100 * i + b;
	return d;
}

static inline void set_bar(struct fixture *f, unsigned i, unsigned bar, uint64_t size, bool is64,
			   bool prefetch)
{
	assert_int_equal(
	    pci_set_bar(&f->dev[i], bar, size, is64, prefetch, &bar_ops, &f->bd[i][bar]), 0);
}

/*
 * The standard population: dev[1] (1af4:1041) with a 16 KiB 32-bit BAR0, a 64 KiB 64-bit
 * BAR2, a 1 MiB 64-bit prefetchable BAR4 and two capabilities; dev[2] (1af4:1044) with a 2 MiB
 * BAR0 and a 4 KiB BAR1.
 */
static inline void add_std(struct fixture *f)
{
	new_dev(f, 1, 0x1af4, 0x1041);
	set_bar(f, 1, 0, 16 * KiB, false, false);
	set_bar(f, 1, 2, 64 * KiB, true, false);
	set_bar(f, 1, 4, 1 * MiB, true, true);
	assert_int_equal(pci_add_cap(&f->dev[1], PCI_CAP_ID_VNDR, 16), 0x40);
	assert_int_equal(pci_add_cap(&f->dev[1], PCI_CAP_ID_MSIX, 12), 0x50);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[1]), 0);
	new_dev(f, 2, 0x1af4, 0x1044);
	set_bar(f, 2, 0, 2 * MiB, false, false);
	set_bar(f, 2, 1, 4 * KiB, false, false);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[2]), 0);
	assert_int_equal(f->dev[1].slot, 1);
	assert_int_equal(f->dev[2].slot, 2);
	f->nmoves = 0;
}

/* --- The two access paths --- */

static inline void cf8_set(struct fixture *f, uint32_t v)
{
	uint64_t val = v;
	assert_true(bus_access(&f->pio, 0xcf8, 4, true, &val));
}

static inline uint32_t cf8_addr(unsigned bus, unsigned devfn, unsigned reg)
{
	return 0x80000000u | bus << 16 | devfn << 8 | (reg & 0xfc);
}

static inline uint32_t pio_read(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
				unsigned size)
{
	cf8_set(f, cf8_addr(bus, devfn, reg));
	uint64_t v = 0xdeadbeefdeadbeefULL;
	assert_true(bus_access(&f->pio, 0xcfc + (reg & 3), size, false, &v));
	return (uint32_t)v;
}

static inline void pio_write(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
			     unsigned size, uint32_t val)
{
	cf8_set(f, cf8_addr(bus, devfn, reg));
	uint64_t v = val;
	assert_true(bus_access(&f->pio, 0xcfc + (reg & 3), size, true, &v));
}

static inline uint64_t ecam_addr(unsigned bus, unsigned devfn, unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)bus << 20) + ((uint64_t)devfn << 12) + reg;
}

static inline uint64_t ecam_read(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
				 unsigned size)
{
	uint64_t v = 0xdeadbeefdeadbeefULL;
	assert_true(bus_access(&f->mmio, ecam_addr(bus, devfn, reg), size, false, &v));
	return v;
}

static inline void ecam_write(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
			      unsigned size, uint64_t val)
{
	assert_true(bus_access(&f->mmio, ecam_addr(bus, devfn, reg), size, true, &val));
}

/*
 * Read through both paths (size 1/2/4, not crossing a dword); they must agree. CF8 only reaches
 * the first 256 bytes, so extended space is read through ECAM alone.
 */
static inline uint32_t rd(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
			  unsigned size)
{
	uint64_t b = ecam_read(f, bus, devfn, reg, size);
	if (reg >= 0x100)
		return (uint32_t)b;
	uint32_t a = pio_read(f, bus, devfn, reg, size);
	if (a != b)
		fail_msg("%02x:%02x.%u reg 0x%x size %u: CF8/CFC 0x%x, ECAM 0x%llx", bus,
			 devfn >> 3, devfn & 7, reg, size, a, (unsigned long long)b);
	return a;
}

/* Write through one path: via_ecam selects it. */
static inline void wr(struct fixture *f, bool via_ecam, unsigned devfn, unsigned reg, unsigned size,
		      uint32_t val)
{
	if (via_ecam)
		ecam_write(f, 0, devfn, reg, size, val);
	else
		pio_write(f, 0, devfn, reg, size, val);
}

static inline uint64_t bar_addr(struct fixture *f, unsigned devfn, unsigned bar, bool is64)
{
	uint64_t a = rd(f, 0, devfn, PCI_BAR0 + 4 * bar, 4) & ~0xfULL;
	if (is64)
		a |= (uint64_t)rd(f, 0, devfn, PCI_BAR0 + 4 * bar + 4, 4) << 32;
	return a;
}

/* Is the BAR's callback reached at addr (and at its last byte), with the right offsets? */
static inline bool decodes_at(struct fixture *f, struct bar_dev *bd, uint64_t addr, uint64_t size)
{
	struct bus_range r;
	if (!bus_find(&f->mmio, addr, &r) || r.opaque != bd)
		return false;
	if (r.base != addr || r.len != size)
		fail_msg("BAR range 0x%llx+0x%llx, expected 0x%llx+0x%llx",
			 (unsigned long long)r.base, (unsigned long long)r.len,
			 (unsigned long long)addr, (unsigned long long)size);
	uint64_t v;
	unsigned reads = bd->reads;
	assert_true(bus_access(&f->mmio, addr + size - 4, 4, false, &v));
	assert_int_equal(bd->reads, reads + 1);
	assert_int_equal(v, (uint64_t)bd->tag << 32 | (size - 4));
	v = 0x1234;
	assert_true(bus_access(&f->mmio, addr + 8, 2, true, &v));
	assert_int_equal(bd->last_off, 8);
	assert_int_equal(bd->last_val, 0x1234);
	return true;
}

/* Nothing of this BAR is on the MMIO bus anywhere. */
static inline void assert_unmapped(struct fixture *f, struct bar_dev *bd)
{
	pthread_rwlock_rdlock(&f->mmio.lock);
	for (unsigned i = 0; i < f->mmio.count; i++)
		if (f->mmio.ranges[i].opaque == bd)
			fail_msg("BAR %x still mapped at 0x%llx", bd->tag,
				 (unsigned long long)f->mmio.ranges[i].base);
	pthread_rwlock_unlock(&f->mmio.lock);
}

/* --- Tests --- */

#endif
