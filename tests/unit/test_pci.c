/* Unit tests for vmm/pci through the real access paths (CF8/CFC on the PIO bus, ECAM on the MMIO
 * bus): host bridge, absent functions, write masks, BAR sizing/placement/moves, capabilities. */
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

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct bar_dev *b = opaque;
	b->reads++;
	b->last_off = off;
	b->last_size = size;
	return (uint64_t)b->tag << 32 | off;
}

static void bar_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct bar_dev *b = opaque;
	b->writes++;
	b->last_off = off;
	b->last_size = size;
	b->last_val = val;
}

static const struct bus_ops bar_ops = {.read = bar_read, .write = bar_write};

static void record_move(struct pci_device *d, unsigned bar, uint64_t old, uint64_t new)
{
	struct fixture *f = d->opaque;
	if (f->nmoves < ARRAY_SIZE(f->moves))
		f->moves[f->nmoves] = (struct move){d, bar, old, new};
	f->nmoves++;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	assert_int_equal(pci_bus_init(&f->pb, &f->pio, &f->mmio, MMIO64_BASE, MMIO64_SIZE), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	pci_bus_destroy(&f->pb);
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
	free(f);
	return 0;
}

/* Prepare dev[i] (not yet added): BAR callbacks tagged 0x100*i + bar, the move hook. */
static struct pci_device *new_dev(struct fixture *f, unsigned i, uint16_t vendor, uint16_t device)
{
	struct pci_device *d = &f->dev[i];
	pci_device_init(d, "test-dev", vendor, device, 0x020000, 1, 0x1af4, 0x0001);
	d->opaque = f;
	d->bar_moved = record_move;
	for (unsigned b = 0; b < PCI_NUM_BARS; b++)
		f->bd[i][b].tag = 0x100 * i + b;
	return d;
}

static void set_bar(struct fixture *f, unsigned i, unsigned bar, uint64_t size, bool is64,
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
static void add_std(struct fixture *f)
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

static void cf8_set(struct fixture *f, uint32_t v)
{
	uint64_t val = v;
	assert_true(bus_access(&f->pio, 0xcf8, 4, true, &val));
}

static uint32_t cf8_addr(unsigned bus, unsigned devfn, unsigned reg)
{
	return 0x80000000u | bus << 16 | devfn << 8 | (reg & 0xfc);
}

static uint32_t pio_read(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
			 unsigned size)
{
	cf8_set(f, cf8_addr(bus, devfn, reg));
	uint64_t v = 0xdeadbeefdeadbeefULL;
	assert_true(bus_access(&f->pio, 0xcfc + (reg & 3), size, false, &v));
	return (uint32_t)v;
}

static void pio_write(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg, unsigned size,
		      uint32_t val)
{
	cf8_set(f, cf8_addr(bus, devfn, reg));
	uint64_t v = val;
	assert_true(bus_access(&f->pio, 0xcfc + (reg & 3), size, true, &v));
}

static uint64_t ecam_addr(unsigned bus, unsigned devfn, unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)bus << 20) + ((uint64_t)devfn << 12) + reg;
}

static uint64_t ecam_read(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg,
			  unsigned size)
{
	uint64_t v = 0xdeadbeefdeadbeefULL;
	assert_true(bus_access(&f->mmio, ecam_addr(bus, devfn, reg), size, false, &v));
	return v;
}

static void ecam_write(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg, unsigned size,
		       uint64_t val)
{
	assert_true(bus_access(&f->mmio, ecam_addr(bus, devfn, reg), size, true, &val));
}

/*
 * Read through both paths (size 1/2/4, not crossing a dword); they must agree. CF8 only reaches
 * the first 256 bytes, so extended space is read through ECAM alone.
 */
static uint32_t rd(struct fixture *f, unsigned bus, unsigned devfn, unsigned reg, unsigned size)
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
static void wr(struct fixture *f, bool via_ecam, unsigned devfn, unsigned reg, unsigned size,
	       uint32_t val)
{
	if (via_ecam)
		ecam_write(f, 0, devfn, reg, size, val);
	else
		pio_write(f, 0, devfn, reg, size, val);
}

static uint64_t bar_addr(struct fixture *f, unsigned devfn, unsigned bar, bool is64)
{
	uint64_t a = rd(f, 0, devfn, PCI_BAR0 + 4 * bar, 4) & ~0xfULL;
	if (is64)
		a |= (uint64_t)rd(f, 0, devfn, PCI_BAR0 + 4 * bar + 4, 4) << 32;
	return a;
}

/* Is the BAR's callback reached at addr (and at its last byte), with the right offsets? */
static bool decodes_at(struct fixture *f, struct bar_dev *bd, uint64_t addr, uint64_t size)
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
static void assert_unmapped(struct fixture *f, struct bar_dev *bd)
{
	pthread_rwlock_rdlock(&f->mmio.lock);
	for (unsigned i = 0; i < f->mmio.count; i++)
		if (f->mmio.ranges[i].opaque == bd)
			fail_msg("BAR %x still mapped at 0x%llx", bd->tag,
				 (unsigned long long)f->mmio.ranges[i].base);
	pthread_rwlock_unlock(&f->mmio.lock);
}

/* --- Tests --- */

static void test_host_bridge(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(rd(f, 0, 0, PCI_VENDOR_ID, 2), 0x1b36);
	assert_int_equal(rd(f, 0, 0, PCI_DEVICE_ID, 2), 0x0008);
	assert_int_equal(rd(f, 0, 0, 0, 4), 0x00081b36);
	assert_int_equal(rd(f, 0, 0, PCI_REVISION, 4) >> 8, 0x060000);
	assert_int_equal(rd(f, 0, 0, 0x0b, 1), 0x06);
	assert_int_equal(rd(f, 0, 0, 0x0a, 1), 0x00);
	assert_int_equal(rd(f, 0, 0, PCI_HEADER_TYPE, 1), 0x00); /* type 0, single function */
	/* Every byte/word/dword of the header agrees between the paths. */
	for (unsigned reg = 0; reg < 0x40; reg++) {
		rd(f, 0, 0, reg, 1);
		if (!(reg & 1))
			rd(f, 0, 0, reg, 2);
		if (!(reg & 3))
			rd(f, 0, 0, reg, 4);
	}
	/* No capabilities, no BARs. */
	assert_int_equal(rd(f, 0, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	assert_int_equal(rd(f, 0, 0, PCI_CAP_PTR, 1), 0);
	for (unsigned b = 0; b < PCI_NUM_BARS; b++)
		assert_int_equal(rd(f, 0, 0, PCI_BAR0 + 4 * b, 4), 0);
	/* ECAM 8-byte reads are two dwords. */
	assert_int_equal(ecam_read(f, 0, 0, 0, 8), 0x00081b36);
	assert_int_equal(ecam_read(f, 0, 0, PCI_REVISION, 8), 0x06000000);
	/* CF8 has 8 register bits: extended config space is ECAM only. */
	assert_int_equal(pio_read(f, 0, 0, 0x100, 4), 0x00081b36);
}

static void test_absent(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	static const uint32_t ones[] = {0, 0xff, 0xffff, 0, 0xffffffff};
	/* Empty slots, functions 1..7 of present slots, other buses. */
	for (unsigned slot = 3; slot < PCI_MAX_SLOTS; slot++)
		for (unsigned size = 1; size <= 4; size *= 2)
			assert_int_equal(rd(f, 0, DEVFN(slot), 0, size), ones[size]);
	for (unsigned slot = 0; slot < 3; slot++)
		for (unsigned fn = 1; fn < 8; fn++)
			assert_int_equal(rd(f, 0, DEVFN(slot) | fn, 0, 4), 0xffffffff);
	static const unsigned buses[] = {1, 2, 128, 255};
	for (size_t i = 0; i < ARRAY_SIZE(buses); i++) {
		assert_int_equal(rd(f, buses[i], 0, 0, 4), 0xffffffff);
		assert_int_equal(rd(f, buses[i], DEVFN(1), 2, 2), 0xffff);
		assert_int_equal(rd(f, buses[i], DEVFN(2), 0x3d, 1), 0xff);
		assert_int_equal(ecam_read(f, buses[i], 0, 0, 8), UINT64_MAX);
	}
	assert_int_equal(ecam_read(f, 0, DEVFN(9), 0x100, 8), UINT64_MAX);
	/* Writes to absent functions go nowhere (and do not reach a device by aliasing). */
	wr(f, false, DEVFN(1) | 1, PCI_COMMAND, 2, 0);
	wr(f, true, DEVFN(1) | 1, PCI_COMMAND, 2, 0);
	ecam_write(f, 1, DEVFN(1), PCI_COMMAND, 2, 0);
	pio_write(f, 1, DEVFN(1), PCI_COMMAND, 2, 0);
	assert_true(rd(f, 0, DEVFN(1), PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	assert_int_equal(f->nmoves, 0);
}

static void test_cf8(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* The latch reads back as written (dword). */
	cf8_set(f, 0x80000000);
	uint64_t v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	cf8_set(f, cf8_addr(0, DEVFN(1), 0));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000800);
	/* Enable bit clear: CFC reads all-ones at every size, writes are dropped. */
	cf8_set(f, 0x00000800);
	for (unsigned size = 1; size <= 4; size *= 2) {
		v = 0;
		assert_true(bus_access(&f->pio, 0xcfc, size, false, &v));
		assert_int_equal(v, size == 4 ? 0xffffffff : (1u << (8 * size)) - 1);
	}
	cf8_set(f, 0x00000804);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcfc, 2, true, &v));
	assert_true(rd(f, 0, DEVFN(1), PCI_COMMAND, 2) & PCI_COMMAND_MEMORY);
	/* The low two bits of the latch do not select a byte: CFC+n does. */
	cf8_set(f, cf8_addr(0, DEVFN(1), 0) | 3);
	assert_true(bus_access(&f->pio, 0xcfc, 4, false, &v));
	assert_int_equal(v, 0x10411af4);
	assert_true(bus_access(&f->pio, 0xcfd, 1, false, &v));
	assert_int_equal(v, 0x1a);
	assert_true(bus_access(&f->pio, 0xcfe, 2, false, &v));
	assert_int_equal(v, 0x1041);
	assert_true(bus_access(&f->pio, 0xcff, 1, false, &v));
	assert_int_equal(v, 0x10);

	/* 0xCF9 (reset control) and 0xCFA/0xCFB are not the PCI handler's: nothing else is on this
	 * PIO bus, so they are unclaimed, and a byte write there leaves the latch alone. */
	cf8_set(f, 0x80000000);
	unsigned long long unhandled = f->pio.unhandled;
	for (uint64_t port = 0xcf9; port <= 0xcfb; port++) {
		v = 0x06;
		assert_false(bus_access(&f->pio, port, 1, true, &v));
		assert_false(bus_access(&f->pio, port, 1, false, &v));
		assert_int_equal(v, 0xff);
	}
	assert_int_equal(f->pio.unhandled, unhandled + 6);
	struct bus_range r;
	assert_false(bus_find(&f->pio, 0xcf9, &r));
	assert_true(bus_find(&f->pio, 0xcf8, &r));
	assert_int_equal(r.len, 1);
	assert_true(bus_find(&f->pio, 0xcfc, &r));
	assert_int_equal(r.len, 4);
	assert_false(bus_find(&f->pio, 0xd00, &r));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	/* Byte and word writes to 0xCF8 itself do not change the latch either. */
	v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 1, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 2, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000000);
	/* Accesses at CFC that would run past CFF read all-ones and write nothing. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 2, 0x0406);
	cf8_set(f, cf8_addr(0, DEVFN(1), PCI_COMMAND));
	assert_true(bus_access(&f->pio, 0xcfe, 4, false, &v));
	assert_int_equal(v, 0xffffffff);
	assert_true(bus_access(&f->pio, 0xcff, 2, false, &v));
	assert_int_equal(v, 0xffff);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcfd, 4, true, &v));
	assert_true(bus_access(&f->pio, 0xcff, 2, true, &v));
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 4), 0x00100406);
}

static void test_cf8_wide(void **state)
{
	struct fixture *f = *state;
	/* The bus allows 8-byte accesses; x86 port I/O never makes them, but the latch must still
	 * answer like any other non-dword access (all-ones, no change) without undefined shifts. */
	cf8_set(f, 0x80000800);
	uint64_t v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 8, true, &v));
	assert_true(bus_access(&f->pio, 0xcf8, 4, false, &v));
	assert_int_equal(v, 0x80000800);
	v = 0;
	assert_true(bus_access(&f->pio, 0xcf8, 8, false, &v));
	assert_int_equal(v, UINT64_MAX);
}

static void test_paths_agree(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	for (unsigned slot = 0; slot < 4; slot++) {
		for (unsigned reg = 0; reg < 0x110; reg++) {
			rd(f, 0, DEVFN(slot), reg, 1);
			if (!(reg & 1))
				rd(f, 0, DEVFN(slot), reg, 2);
			if (!(reg & 3))
				rd(f, 0, DEVFN(slot), reg, 4);
		}
	}
	/* The interrupt line is writable: through one path, seen through the other. */
	wr(f, false, DEVFN(1), PCI_INTERRUPT_LINE, 1, 0x5a);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), PCI_INTERRUPT_LINE, 1), 0x5a);
	wr(f, true, DEVFN(1), PCI_INTERRUPT_LINE, 1, 0xa5);
	assert_int_equal(pio_read(f, 0, DEVFN(1), PCI_INTERRUPT_LINE, 1), 0xa5);
	/* Firmware-style setup: INTA#, line 16 + slot % 4. */
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_INTERRUPT_LINE, 1), 18);
	/* The standard fields of a device. */
	assert_int_equal(rd(f, 0, DEVFN(1), 0, 4), 0x10411af4);
	assert_int_equal(rd(f, 0, DEVFN(2), 0, 4), 0x10441af4);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_REVISION, 4), 0x02000001);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_SUBSYS_VENDOR, 4), 0x00011af4);
	/* Extended config space is present and empty (no extended capabilities). */
	assert_int_equal(rd(f, 0, DEVFN(1), 0x100, 4), 0);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), 0xff8, 8), 0);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	for (unsigned via = 0; via < 2; via++) {
		for (unsigned slot = 0; slot < 3; slot++) {
			unsigned devfn = DEVFN(slot);
			uint32_t id = rd(f, 0, devfn, 0, 4), cls = rd(f, 0, devfn, 8, 4);
			uint32_t hdr = rd(f, 0, devfn, 0x0c, 4),
				 st = rd(f, 0, devfn, PCI_STATUS, 2);
			uint32_t cap = rd(f, 0, devfn, PCI_CAP_PTR, 4);
			uint32_t sub = rd(f, 0, devfn, PCI_SUBSYS_VENDOR, 4);
			for (unsigned size = 1; size <= 4; size *= 2) {
				for (unsigned reg = 0; reg < 4; reg += size) {
					wr(f, via, devfn, reg, size, 0xffffffff);
					wr(f, via, devfn, 8 + reg, size, 0);
					wr(f, via, devfn, 0x2c + reg, size, 0);
					wr(f, via, devfn, PCI_CAP_PTR + reg, size, 0xffffffff);
				}
			}
			wr(f, via, devfn, 0x0e, 1, 0x80);	  /* multi-function bit */
			wr(f, via, devfn, PCI_STATUS, 2, 0xffff); /* no W1C bits either */
			wr(f, via, devfn, PCI_STATUS, 2, 0);
			assert_int_equal(rd(f, 0, devfn, 0, 4), id);
			assert_int_equal(rd(f, 0, devfn, 8, 4), cls);
			assert_int_equal(rd(f, 0, devfn, 0x0c, 4), hdr);
			assert_int_equal(rd(f, 0, devfn, PCI_STATUS, 2), st);
			assert_int_equal(rd(f, 0, devfn, PCI_CAP_PTR, 4), cap);
			assert_int_equal(rd(f, 0, devfn, PCI_SUBSYS_VENDOR, 4), sub);
			assert_int_equal(rd(f, 0, devfn, PCI_INTERRUPT_PIN, 1), slot ? 1 : 0);
			wr(f, via, devfn, PCI_INTERRUPT_PIN, 1, 4);
			assert_int_equal(rd(f, 0, devfn, PCI_INTERRUPT_PIN, 1), slot ? 1 : 0);
			/* Capability bytes and the rest of config space are read-only too. */
			wr(f, via, devfn, 0x40, 4, 0xffffffff);
			wr(f, via, devfn, 0x50, 4, 0);
			wr(f, via, devfn, 0x100, 4, 0xffffffff);
			wr(f, via, devfn, 0xffc, 4, 0xffffffff);
			assert_int_equal(rd(f, 0, devfn, 0x100, 4), 0);
			assert_int_equal(rd(f, 0, devfn, 0xffc, 4), 0);
		}
	}
	assert_int_equal(rd(f, 0, DEVFN(1), 0x40, 2), 0x5000 | PCI_CAP_ID_VNDR);
	assert_int_equal(rd(f, 0, DEVFN(1), 0x50, 2), PCI_CAP_ID_MSIX);
	assert_int_equal(f->nmoves, 0);
}

static void test_command(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	/* Firmware setup left memory decoding on. */
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	/* Writable: I/O, memory, master, parity response, SERR#, INTx disable. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 2, 0xffff);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0547);
	wr(f, true, DEVFN(1), PCI_COMMAND, 2, 0);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0);
	wr(f, true, DEVFN(1), PCI_COMMAND, 1, PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0006);
	wr(f, false, DEVFN(1), PCI_COMMAND + 1, 1, PCI_COMMAND_INTX_DISABLE >> 8);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 2), 0x0406);
	/* A dword write to command/status changes the command only. */
	wr(f, false, DEVFN(1), PCI_COMMAND, 4, 0xffff0002);
	assert_int_equal(rd(f, 0, DEVFN(1), PCI_COMMAND, 4), 0x00100002);
	/* Devices are independent. */
	assert_int_equal(rd(f, 0, DEVFN(2), PCI_COMMAND, 2), PCI_COMMAND_MEMORY);
	/* The host bridge's command register has the same mask. */
	wr(f, true, 0, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(rd(f, 0, 0, PCI_COMMAND, 2), 0x0547);
}

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
static unsigned walk_caps(struct fixture *f, unsigned devfn, uint8_t *ids, unsigned *offs,
			  unsigned max)
{
	unsigned n = 0, seen[256] = {0};
	unsigned p = rd(f, 0, devfn, PCI_CAP_PTR, 1);
	while (p) {
		if (p < 0x40 || p > 0xfc || (p & 3))
			fail_msg("capability pointer 0x%x", p);
		if (seen[p]++)
			fail_msg("capability loop at 0x%x", p);
		if (n < max) {
			ids[n] = (uint8_t)rd(f, 0, devfn, p, 1);
			offs[n] = p;
		}
		n++;
		p = rd(f, 0, devfn, p + 1, 1);
	}
	return n;
}

static void test_capabilities(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	uint8_t ids[64];
	unsigned offs[64];
	assert_true(rd(f, 0, DEVFN(1), PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_equal(walk_caps(f, DEVFN(1), ids, offs, 64), 2);
	assert_int_equal(ids[0], PCI_CAP_ID_VNDR);
	assert_int_equal(ids[1], PCI_CAP_ID_MSIX);
	assert_int_equal(offs[0], 0x40);
	assert_int_equal(offs[1], 0x50);
	/* A device without capabilities. */
	assert_false(rd(f, 0, DEVFN(2), PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
	assert_int_equal(walk_caps(f, DEVFN(2), ids, offs, 64), 0);

	/* Fill config space with odd lengths until one does not fit, then with the smallest (2
	 * bytes) until nothing does; the chain stays well-formed. */
	struct pci_device *d = new_dev(f, 3, 0x1af4, 0x1042);
	static const unsigned lens[] = {3, 16, 5, 20, 2, 64, 7, 24};
	unsigned n = 0, end = 0x40;
	uint8_t want[64];
	bool small = false;
	for (;;) {
		unsigned len = small ? 2 : lens[n % ARRAY_SIZE(lens)];
		uint8_t id = (uint8_t)(0x09 + n);
		int off = pci_add_cap(d, id, len);
		if (off == -ENOSPC) {
			assert_true(ALIGN_UP(end, 4) + len > 256);
			if (small)
				break;
			small = true;
			continue;
		}
		assert_true(off >= 0x40);
		assert_int_equal(off % 4, 0);
		assert_true((unsigned)off >= end);
		assert_true((unsigned)off + len <= 256);
		end = (unsigned)off + len;
		want[n++] = id;
		assert_true(n < 64);
	}
	assert_true(end > 256 - 6);
	assert_int_equal(pci_add_cap(d, 0x77, 256), -ENOSPC);
	assert_int_equal(pci_add_cap(d, 0x77, 1), -ENOSPC);
	assert_int_equal(pci_add_cap(d, 0x77, 0), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->pb, d), 0);
	assert_int_equal(walk_caps(f, DEVFN(3), ids, offs, 64), n);
	assert_memory_equal(ids, want, n);
	/* A capability filling the standard space exactly. */
	d = new_dev(f, 4, 0x1af4, 0x1043);
	assert_int_equal(pci_add_cap(d, PCI_CAP_ID_VNDR, 256 - 0x40), 0x40);
	assert_int_equal(pci_add_cap(d, PCI_CAP_ID_VNDR, 2), -ENOSPC);
	assert_int_equal(pci_bus_add(&f->pb, d), 0);
	assert_int_equal(walk_caps(f, DEVFN(4), ids, offs, 64), 1);
	/* Writes to the capability list change nothing. */
	for (unsigned reg = 0x34; reg < 0x100; reg++)
		wr(f, reg & 1, DEVFN(3), reg, 1, 0x40);
	assert_int_equal(walk_caps(f, DEVFN(3), ids, offs, 64), n);
	assert_memory_equal(ids, want, n);
}

static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	add_std(f);
	struct pci_bus *pb = &f->pb;
	/* Direct calls with sizes and offsets the guest paths never produce: no crash, no write,
	 * reads are all-ones or the bytes that are there. */
	uint32_t v = pci_cfg_read(pb, 0, DEVFN(1), 0, 3);
	assert_true(v == 0xffffff || v == 0x411af4);
	v = pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE - 1, 4);
	assert_true(v == 0 || v == 0xffffffff);
	v = pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE - 2, 2);
	assert_int_equal(v, 0);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), PCI_CFG_SIZE, 1), 0xff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), 0xffffffff, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, DEVFN(1), 0, 0), 0);
	v = pci_cfg_read(pb, 0, DEVFN(1), 0, 8);
	assert_true(v == 0xffffffff || v == 0x10411af4);
	assert_int_equal(pci_cfg_read(pb, 0, 256, 0, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0, 0xffffffff, 0, 4), 0xffffffff);
	assert_int_equal(pci_cfg_read(pb, 0xffffffff, 0, 0, 4), 0xffffffff);

	uint8_t before[PCI_CFG_SIZE];
	memcpy(before, f->dev[1].cfg, sizeof(before));
	pci_cfg_write(pb, 0, DEVFN(1), PCI_CFG_SIZE - 1, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_CFG_SIZE, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), 0xffffffff, 4, 0xffffffff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 0, 0xff);
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 5, 0xff);
	pci_cfg_write(pb, 0, 256 + DEVFN(1), PCI_INTERRUPT_LINE, 1, 0xff);
	assert_memory_equal(f->dev[1].cfg, before, sizeof(before));
	/* Size 3 writes the three bytes it names, no more. */
	pci_cfg_write(pb, 0, DEVFN(1), PCI_INTERRUPT_LINE, 3, 0x00ffffee);
	assert_int_equal(f->dev[1].cfg[PCI_INTERRUPT_LINE], 0xee);
	assert_int_equal(f->dev[1].cfg[PCI_INTERRUPT_PIN], 1);

	/* Through ECAM: accesses crossing the end of a function's space or a dword. */
	uint64_t q = ecam_read(f, 0, DEVFN(1), 0xffc, 8);
	assert_int_equal(q >> 32, 0xffffffff);
	assert_int_equal(q & 0xffffffff, 0);
	q = ecam_read(f, 0, DEVFN(1), 0xffe, 4);
	assert_int_equal(q & 0xffff, 0);
	q = ecam_read(f, 0, DEVFN(1), 0x0e, 4);
	assert_int_equal(q & 0xff, 0); /* header type, then whatever follows */
	ecam_write(f, 0, DEVFN(1), 0xffe, 4, 0xffffffff);
	ecam_write(f, 0, DEVFN(1), 0xffc, 8, UINT64_MAX);
	ecam_write(f, 0, DEVFN(1), 0xfff, 8, UINT64_MAX);
	assert_int_equal(ecam_read(f, 0, DEVFN(1), 0, 4), 0x10411af4);
	/* An 8-byte ECAM read at 0 of the last function of the last bus (the ECAM's last page). */
	assert_int_equal(ecam_read(f, 255, 0xff, 0xff8, 8), UINT64_MAX);
	/* Just past ECAM: unclaimed. */
	uint64_t x;
	assert_false(bus_access(&f->mmio, PCI_ECAM_BASE + PCI_ECAM_SIZE, 4, false, &x));
	assert_int_equal(f->nmoves, 0);
}

static void test_bus_full(void **state)
{
	struct fixture *f = *state;
	/* 31 devices (slots 1..31) without BARs; the 32nd does not fit. */
	for (unsigned i = 1; i < PCI_MAX_SLOTS; i++) {
		new_dev(f, i, 0x1af4, (uint16_t)(0x1000 + i));
		assert_int_equal(pci_bus_add(&f->pb, &f->dev[i]), 0);
		assert_int_equal(f->dev[i].slot, i);
	}
	new_dev(f, PCI_MAX_SLOTS, 0x1af4, 0x2000);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[PCI_MAX_SLOTS]), -ENOSPC);
	for (unsigned i = 1; i < PCI_MAX_SLOTS; i++)
		assert_int_equal(rd(f, 0, DEVFN(i), PCI_DEVICE_ID, 2), 0x1000 + i);
	assert_int_equal(rd(f, 0, 0, 0, 4), 0x00081b36);
}

static void test_window_full(void **state)
{
	struct fixture *f = *state;
	/* The 32-bit window holds 512 MiB: two 256 MiB BARs, then no more. */
	for (unsigned i = 1; i <= 2; i++) {
		new_dev(f, i, 0x1af4, 0x1041);
		set_bar(f, i, 0, 256 * MiB, false, false);
		assert_int_equal(pci_bus_add(&f->pb, &f->dev[i]), 0);
	}
	assert_int_equal(f->dev[1].bar[0].mapped_at, PCI_MMIO32_BASE);
	assert_int_equal(f->dev[2].bar[0].mapped_at, PCI_MMIO32_BASE + 256 * MiB);
	new_dev(f, 3, 0x1af4, 0x1041);
	set_bar(f, 3, 0, 4 * KiB, false, false);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[3]), -ENOSPC);
	/* Non-prefetchable 64-bit BARs use the 32-bit window too. */
	new_dev(f, 4, 0x1af4, 0x1041);
	set_bar(f, 4, 0, 4 * KiB, true, false);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[4]), -ENOSPC);
	/* The failed devices are not on the bus. */
	assert_int_equal(rd(f, 0, DEVFN(3), 0, 4), 0xffffffff);
	/* Prefetchable 64-bit BARs still fit above: 512 MiB + 256 MiB of the 1 GiB window. */
	new_dev(f, 5, 0x1af4, 0x1041);
	set_bar(f, 5, 0, 512 * MiB, true, true);
	set_bar(f, 5, 2, 256 * MiB, true, true);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[5]), 0);
	assert_int_equal(f->dev[5].bar[0].mapped_at, MMIO64_BASE);
	assert_int_equal(f->dev[5].bar[2].mapped_at, MMIO64_BASE + 512 * MiB);
	assert_int_equal(f->dev[5].slot, 3);
	/* 512 MiB more does not fit in what is left (256 MiB). */
	new_dev(f, 6, 0x1af4, 0x1041);
	set_bar(f, 6, 0, 512 * MiB, true, true);
	assert_int_equal(pci_bus_add(&f->pb, &f->dev[6]), -ENOSPC);
	/* Alignment to the size: a 128 MiB BAR after a 4 KiB one skips ahead. */
	struct bus pio, mmio;
	struct pci_bus pb;
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	assert_int_equal(pci_bus_init(&pb, &pio, &mmio, MMIO64_BASE, MMIO64_SIZE), 0);
	new_dev(f, 7, 0x1af4, 0x1041);
	set_bar(f, 7, 0, 4 * KiB, false, false);
	set_bar(f, 7, 1, 128 * MiB, false, false);
	set_bar(f, 7, 2, 8 * KiB, false, false);
	assert_int_equal(pci_bus_add(&pb, &f->dev[7]), 0);
	assert_int_equal(f->dev[7].bar[0].mapped_at, PCI_MMIO32_BASE);
	assert_int_equal(f->dev[7].bar[1].mapped_at, PCI_MMIO32_BASE + 128 * MiB);
	assert_int_equal(f->dev[7].bar[2].mapped_at, PCI_MMIO32_BASE + 256 * MiB);
	pci_bus_destroy(&pb);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_host_bridge),
	    T(test_absent),
	    T(test_cf8),
	    T(test_cf8_wide),
	    T(test_paths_agree),
	    T(test_read_only),
	    T(test_command),
	    T(test_placement),
	    T(test_bar_sizing),
	    T(test_bar_sizing_large),
	    T(test_bar_move),
	    T(test_memory_enable),
	    T(test_bar_bad_addresses),
	    T(test_bar_conflict_resolved),
	    T(test_bar_swap_within_device),
	    T(test_capabilities),
	    T(test_odd_accesses),
	    T(test_bus_full),
	    T(test_window_full),
	};
#undef T
	return cmocka_run_group_tests(tests, NULL, NULL);
}
