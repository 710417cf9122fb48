/* libFuzzer target: sequences of config-space accesses through CF8/CFC and ECAM (and MMIO to the
 * BARs) on a PCI bus with the host bridge and two devices; checks IDs, BAR mappings, capabilities.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/bus.h"
#include "vmm/layout.h"
#include "vmm/pci.h"

/*
 * Input: a sequence of 8-byte operations
 *   byte 0  bits 0-2: what (see enum op), bits 3-4: size 1 << n (1, 2, 4, 8)
 *   byte 1  target: bits 0-1 slot (0 host bridge, 1 and 2 devices, 3 empty), bits 2-4 function
 *           when bit 5 is set, bit 6 a raw devfn from byte 7, bit 7 a bus number from byte 3
 *   bytes 2-3  register offset (LE, low 12 bits); the top 4 bits (as 0x00, 0x10, .. 0xf0) are
 *              the high dword of 8-byte ECAM writes, so 64-bit BARs can land in the high window
 *   bytes 4-7  value (LE)
 */
enum op {
	OP_CF8_WRITE, /* dword to 0xCF8 built from the target and offset, value bit 31 = enable */
	OP_CFC_READ,  /* 0xCFC + (offset & 3) */
	OP_CFC_WRITE,
	OP_ECAM_READ,
	OP_ECAM_WRITE,
	OP_BAR_ACCESS, /* read/write a BAR of the target through the MMIO bus, if it is mapped */
	OP_PIO_RAW,    /* 1/2/4 bytes at 0xCF8..0xCFF (0xCF9..0xCFB must stay unclaimed) */
	OP_DIRECT,     /* pci_cfg_read/write with an unchecked size (0..7) and offset */
};

#define MMIO64_BASE 0x1000000000ULL
#define MMIO64_SIZE (1ULL << 30)
#define NDEV 2
#define MAX_OPS 512

struct bar_dev {
	uint64_t last_off;
	unsigned calls;
};

struct fuzz_dev {
	struct pci_device d;
	struct bar_dev bd[PCI_NUM_BARS];
	uint64_t shadow[PCI_NUM_BARS]; /* mapping as reported by bar_moved */
	uint16_t vendor, device;
	uint8_t caps[4];
	unsigned ncaps;
};

static struct bus pio, mmio;
static struct pci_bus pb;
static struct fuzz_dev devs[NDEV];

static void check(int ok)
{
	if (!ok)
		abort();
}

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct bar_dev *b = opaque;
	(void)size;
	b->last_off = off;
	b->calls++;
	return off;
}

static void bar_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct bar_dev *b = opaque;
	(void)size;
	(void)val;
	b->last_off = off;
	b->calls++;
}

static const struct bus_ops bar_ops = {bar_read, bar_write};

static void bar_moved(struct pci_device *d, unsigned bar, uint64_t old, uint64_t new)
{
	struct fuzz_dev *f = d->opaque;
	check(bar < PCI_NUM_BARS && f->d.bar[bar].size);
	check(old != new);
	check(f->shadow[bar] == old); /* every change is reported, in order */
	f->shadow[bar] = new;
}

static void add_dev(struct fuzz_dev *f, uint16_t device, const uint64_t *sizes, const bool *is64,
		    const bool *pref, const uint8_t *caps, const unsigned *cap_lens, unsigned ncaps)
{
	memset(f, 0, sizeof(*f));
	pci_device_init(&f->d, "fuzz", 0x1af4, device, 0xff0000, 1, 0x1af4, device);
	f->vendor = 0x1af4;
	f->device = device;
	f->d.opaque = f;
	f->d.bar_moved = bar_moved;
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		if (sizes[i])
			check(pci_set_bar(&f->d, i, sizes[i], is64[i], pref[i], &bar_ops,
					  &f->bd[i]) == 0);
	for (unsigned i = 0; i < ncaps; i++) {
		check(pci_add_cap(&f->d, caps[i], cap_lens[i]) > 0);
		f->caps[f->ncaps++] = caps[i];
	}
	check(pci_bus_add(&pb, &f->d) == 0);
	for (unsigned i = 0; i < PCI_NUM_BARS; i++)
		f->shadow[i] = f->d.bar[i].mapped_at;
}

static void setup(void)
{
	bus_init(&pio, "pio");
	bus_init(&mmio, "mmio");
	check(pci_bus_init(&pb, &pio, &mmio, MMIO64_BASE, MMIO64_SIZE) == 0);
	/* dev 1: 16 KiB 32-bit, 64 KiB 64-bit, 1 MiB 64-bit prefetchable; vendor + MSI-X caps. */
	static const uint64_t s1[PCI_NUM_BARS] = {16 << 10, 0, 64 << 10, 0, 1 << 20, 0};
	static const bool w1[PCI_NUM_BARS] = {false, false, true, false, true, false};
	static const bool p1[PCI_NUM_BARS] = {false, false, false, false, true, false};
	static const uint8_t c1[] = {PCI_CAP_ID_VNDR, PCI_CAP_ID_MSIX, PCI_CAP_ID_VNDR};
	static const unsigned l1[] = {16, 12, 20};
	add_dev(&devs[0], 0x1041, s1, w1, p1, c1, l1, 3);
	/* dev 2: 4 KiB 32-bit, 16 KiB 64-bit prefetchable, 2 MiB 32-bit; one vendor cap. */
	static const uint64_t s2[PCI_NUM_BARS] = {4 << 10, 16 << 10, 0, 2 << 20, 0, 0};
	static const bool w2[PCI_NUM_BARS] = {false, true, false, false, false, false};
	static const bool p2[PCI_NUM_BARS] = {false, true, false, false, false, false};
	static const uint8_t c2[] = {PCI_CAP_ID_VNDR};
	static const unsigned l2[] = {24};
	add_dev(&devs[1], 0x1044, s2, w2, p2, c2, l2, 1);
}

static void teardown(void)
{
	pci_bus_destroy(&pb);
	bus_destroy(&pio);
	bus_destroy(&mmio);
}

static uint64_t bar_reg(const struct pci_device *d, unsigned i)
{
	uint64_t a = pci_get32(d, PCI_BAR0 + 4 * i) & ~0xfULL;
	if (d->bar[i].is64)
		a |= (uint64_t)pci_get32(d, PCI_BAR0 + 4 * i + 4) << 32;
	return a;
}

/* How many ranges on the MMIO bus belong to this opaque. */
static unsigned ranges_of(const void *opaque)
{
	unsigned n = 0;
	pthread_rwlock_rdlock(&mmio.lock);
	for (unsigned i = 0; i < mmio.count; i++)
		n += mmio.ranges[i].opaque == opaque;
	pthread_rwlock_unlock(&mmio.lock);
	return n;
}

static void check_invariants(void)
{
	/* IDs never change, through any path. */
	check(pci_cfg_read(&pb, 0, 0, 0, 4) == 0x00081b36);
	check((pci_cfg_read(&pb, 0, 0, 8, 4) >> 8) == 0x060000);
	for (unsigned k = 0; k < NDEV; k++) {
		struct fuzz_dev *f = &devs[k];
		unsigned devfn = f->d.slot << 3;
		check(f->d.slot == k + 1);
		check(pci_cfg_read(&pb, 0, devfn, 0, 4) == ((uint32_t)f->device << 16 | f->vendor));
		uint64_t v;
		check(bus_access(&mmio, PCI_ECAM_BASE + ((uint64_t)devfn << 12), 4, false, &v));
		check(v == ((uint32_t)f->device << 16 | f->vendor));
		check(pci_cfg_read(&pb, 0, devfn, PCI_HEADER_TYPE, 1) == 0);

		/* BARs: mapped exactly where the register says, with decoding on, once. */
		bool mem_on = pci_get16(&f->d, PCI_COMMAND) & PCI_COMMAND_MEMORY;
		for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
			const struct pci_bar *b = &f->d.bar[i];
			if (!b->size) {
				check(ranges_of(&f->bd[i]) == 0);
				continue;
			}
			check(f->shadow[i] == b->mapped_at);
			check(ranges_of(&f->bd[i]) == (b->mapped_at ? 1 : 0));
			if (!b->mapped_at)
				continue;
			check(mem_on);
			check(b->mapped_at == bar_reg(&f->d, i));
			check(b->mapped_at % b->size == 0);
			check(b->mapped_at + b->size > b->mapped_at);
			check(b->mapped_at >= (1ULL << 32) ||
			      b->mapped_at + b->size <= IOAPIC_BASE);
			check(b->mapped_at + b->size <= (1ULL << 46));
			struct bus_range r;
			check(bus_find(&mmio, b->mapped_at, &r));
			check(r.opaque == &f->bd[i] && r.base == b->mapped_at && r.len == b->size);
			check(bus_find(&mmio, b->mapped_at + b->size - 1, &r));
			check(r.opaque == &f->bd[i]);
		}

		/* Capabilities: the same chain as built, terminated, in the standard space. */
		check(pci_cfg_read(&pb, 0, devfn, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST);
		unsigned p = pci_cfg_read(&pb, 0, devfn, PCI_CAP_PTR, 1), n = 0;
		while (p) {
			check(n < f->ncaps);
			check(p >= 0x40 && p <= 0xfc && !(p & 3));
			check(pci_cfg_read(&pb, 0, devfn, p, 1) == f->caps[n]);
			n++;
			p = pci_cfg_read(&pb, 0, devfn, p + 1, 1);
		}
		check(n == f->ncaps);
	}
	/* No two ranges on the MMIO bus overlap, and ECAM is still there. */
	pthread_rwlock_rdlock(&mmio.lock);
	for (unsigned i = 0; i + 1 < mmio.count; i++)
		check(mmio.ranges[i].base + mmio.ranges[i].len <= mmio.ranges[i + 1].base);
	pthread_rwlock_unlock(&mmio.lock);
	struct bus_range r;
	check(bus_find(&mmio, PCI_ECAM_BASE, &r) && r.opaque == &pb && r.len == PCI_ECAM_SIZE);
	check(bus_find(&pio, 0xcf8, &r) && r.len == 1);
	check(bus_find(&pio, 0xcfc, &r) && r.len == 4);
}

static uint32_t ld32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void run_op(const uint8_t *o)
{
	unsigned what = o[0] & 7, size = 1u << (o[0] >> 3 & 3);
	unsigned t = o[1], reg = (unsigned)(o[2] | o[3] << 8) & 0xfff;
	unsigned bus = t & 0x80 ? o[3] : 0;
	unsigned devfn = t & 0x40 ? o[7] : (t & 3) << 3 | (t & 0x20 ? t >> 2 & 7 : 0);
	uint32_t val = ld32(o + 4);
	uint64_t v = val, v2;
	uint64_t ecam = PCI_ECAM_BASE + ((uint64_t)bus << 20) + ((uint64_t)devfn << 12) + reg;
	unsigned psize = size > 4 ? 4 : size;

	switch (what) {
	case OP_CF8_WRITE:
		v = (val & 0x80000000u) | bus << 16 | devfn << 8 | (reg & 0xff);
		check(bus_access(&pio, 0xcf8, 4, true, &v));
		check(bus_access(&pio, 0xcf8, 4, false, &v2) && v2 == v);
		break;
	case OP_CFC_READ:
		check(bus_access(&pio, 0xcfc + (reg & 3), psize, false, &v));
		check(psize == 4 || v >> (8 * psize) == 0);
		/* The same register read through ECAM agrees (reads have no side effects here). */
		if (pb.cf8 & 0x80000000u && (reg & 3) + psize <= 4) {
			uint32_t a = pb.cf8;
			uint64_t e = PCI_ECAM_BASE + ((uint64_t)(a >> 16 & 0xff) << 20) +
				     ((uint64_t)(a >> 8 & 0xff) << 12) + (a & 0xfc) + (reg & 3);
			check(bus_access(&mmio, e, psize, false, &v2) && v2 == v);
		}
		break;
	case OP_CFC_WRITE:
		check(bus_access(&pio, 0xcfc + (reg & 3), psize, true, &v));
		break;
	case OP_ECAM_READ:
		check(bus_access(&mmio, ecam, size, false, &v));
		check(size == 8 || v >> (8 * size) == 0);
		break;
	case OP_ECAM_WRITE:
		v = (uint64_t)(o[3] & 0xf0) << 32 | val;
		check(bus_access(&mmio, ecam, size, true, &v));
		break;
	case OP_BAR_ACCESS: {
		struct fuzz_dev *f = &devs[t & 1];
		struct pci_bar *b = &f->d.bar[(t >> 1 & 7) % PCI_NUM_BARS];
		unsigned i = (unsigned)(b - f->d.bar);
		if (!b->mapped_at)
			break;
		uint64_t off = (reg | (uint64_t)o[7] << 12) & (b->size - 1) & ~7ULL;
		unsigned calls = f->bd[i].calls;
		check(bus_access(&mmio, b->mapped_at + off, size, o[0] & 0x20, &v));
		check(f->bd[i].calls == calls + 1 && f->bd[i].last_off == off);
		break;
	}
	case OP_PIO_RAW: {
		uint64_t port = 0xcf8 + (reg & 7);
		/* x86 port I/O is at most 4 bytes wide: KVM never exits with 8. */
		bool claimed = bus_access(&pio, port, psize, o[0] & 0x20, &v);
		check(claimed == (port == 0xcf8 || port >= 0xcfc));
		break;
	}
	case OP_DIRECT: {
		unsigned dsize = o[0] >> 3 & 7, doff = (unsigned)(o[2] | o[3] << 8);
		if (o[0] & 0x40)
			pci_cfg_write(&pb, bus, devfn, doff, dsize, val);
		else
			(void)pci_cfg_read(&pb, bus, devfn, doff, dsize);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	if (!quiet) {
		log_set_level(LOG_ERROR);
		quiet = true;
	}
	setup();
	check_invariants();
	for (size_t k = 0; k + 8 <= size && k < 8 * MAX_OPS; k += 8) {
		run_op(data + k);
		check_invariants();
	}
	teardown();
	return 0;
}
