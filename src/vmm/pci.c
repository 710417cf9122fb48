/* PCI bus 0: config space through 0xCF8/0xCFC and ECAM, write masks, capabilities, BAR placement
 * and remapping. */
#include "vmm/pci.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/b64.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/layout.h"

#define PCI_CF8_PORT 0xcf8
#define PCI_CFC_PORT 0xcfc
#define PLATFORM_MMIO_START 0xfec00000ULL /* IOAPIC, LAPIC, KVM's TSS: never a BAR */

void pci_device_init(struct pci_device *d, const char *name, uint16_t vendor, uint16_t device,
		     uint32_t class, uint8_t revision, uint16_t subsys_vendor, uint16_t subsys_id)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->name, sizeof(d->name), "%s", name);
	pci_put16(d, PCI_VENDOR_ID, vendor);
	pci_put16(d, PCI_DEVICE_ID, device);
	d->cfg[PCI_REVISION] = revision;
	d->cfg[PCI_CLASS_PROG] = (uint8_t) class;
	d->cfg[PCI_CLASS_PROG + 1] = (uint8_t)(class >> 8);
	d->cfg[PCI_CLASS_PROG + 2] = (uint8_t)(class >> 16);
	d->cfg[PCI_HEADER_TYPE] = 0;
	pci_put16(d, PCI_SUBSYS_VENDOR, subsys_vendor);
	pci_put16(d, PCI_SUBSYS_ID, subsys_id);
	/* Command: I/O, memory, bus master, SERR#, INTx disable. */
	d->wmask[PCI_COMMAND] = 0x47;
	d->wmask[PCI_COMMAND + 1] = 0x05;
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	d->cap_next = 0x40;
}

int pci_set_bar(struct pci_device *d, unsigned idx, uint64_t size, bool is64, bool prefetch,
		const struct bus_ops *ops, void *opaque)
{
	if (idx >= PCI_NUM_BARS || (is64 && idx == PCI_NUM_BARS - 1) || size < 4096 ||
	    (size & (size - 1)) || (!is64 && size > (1ULL << 31)))
		return -EINVAL;
	d->bar[idx] = (struct pci_bar){size, is64, prefetch, ops, opaque, 0};
	unsigned off = PCI_BAR0 + 4 * idx;
	uint32_t flags = (is64 ? 0x4 : 0) | (prefetch ? 0x8 : 0);
	pci_put32(d, off, flags);
	uint32_t lowmask = (uint32_t) ~(size - 1) & ~0xfu;
	for (int i = 0; i < 4; i++)
		d->wmask[off + i] = (uint8_t)(lowmask >> (8 * i));
	if (is64) {
		uint32_t himask = (uint32_t)(~(size - 1) >> 32);
		for (int i = 0; i < 4; i++)
			d->wmask[off + 4 + i] = (uint8_t)(himask >> (8 * i));
	}
	return 0;
}

int pci_add_cap(struct pci_device *d, uint8_t id, unsigned len)
{
	unsigned off = (unsigned)ALIGN_UP(d->cap_next, 4);
	if (len < 2 || off + len > 256)
		return -ENOSPC;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	if (d->cap_last)
		d->cfg[d->cap_last] = (uint8_t)off;
	else
		d->cfg[PCI_CAP_PTR] = (uint8_t)off;
	d->cap_last = off + 1;
	pci_put16(d, PCI_STATUS, pci_get16(d, PCI_STATUS) | PCI_STATUS_CAP_LIST);
	d->cap_next = off + len;
	return (int)off;
}

static uint64_t bar_address(const struct pci_device *d, unsigned i)
{
	unsigned off = PCI_BAR0 + 4 * i;
	uint64_t a = pci_get32(d, off) & ~0xfULL;
	if (d->bar[i].is64)
		a |= (uint64_t)pci_get32(d, off + 4) << 32;
	return a;
}

/* Is addr a place the BAR can decode at (not 0, not a sizing pattern, not over the platform area)?
 */
static bool bar_address_ok(const struct pci_bar *b, uint64_t addr)
{
	if (!addr || addr + b->size < addr)
		return false;
	if (addr + b->size > PLATFORM_MMIO_START && addr < (1ULL << 32))
		return false;
	return addr + b->size <= (1ULL << 46);
}

static uint64_t bar_wanted(const struct pci_device *d, unsigned i)
{
	const struct pci_bar *b = &d->bar[i];
	bool mem_on = pci_get16(d, PCI_COMMAND) & PCI_COMMAND_MEMORY;
	uint64_t addr = bar_address(d, i);
	return b->size && mem_on && bar_address_ok(b, addr) ? addr : 0;
}

/*
 * Make the MMIO bus match every BAR and memory-enable bit on the bus (bus lock held): first
 * unmap what moved, then map what wants to be mapped — so a BAR that could not be mapped because
 * another range was in the way is mapped as soon as that range moves, whichever device owns it.
 */
static void sync_bars(struct pci_bus *pb)
{
	uint64_t before[PCI_MAX_SLOTS][PCI_NUM_BARS];
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_device *d = pb->slot[s];
		for (unsigned i = 0; d && i < PCI_NUM_BARS; i++) {
			struct pci_bar *b = &d->bar[i];
			before[s][i] = b->mapped_at;
			if (b->mapped_at && b->mapped_at != bar_wanted(d, i)) {
				bus_unregister(pb->mmio, b->mapped_at, b->opaque);
				b->mapped_at = 0;
			}
		}
	}
	for (unsigned s = 0; s < PCI_MAX_SLOTS; s++) {
		struct pci_device *d = pb->slot[s];
		for (unsigned i = 0; d && i < PCI_NUM_BARS; i++) {
			struct pci_bar *b = &d->bar[i];
			uint64_t want = bar_wanted(d, i);
			if (want && !b->mapped_at) {
				int r = bus_register(pb->mmio, want, b->size, b->ops, b->opaque,
						     d->name);
				if (r == 0)
					b->mapped_at = want;
				else
					log_debug(d->name, "BAR%u at 0x%llx not mapped: %s", i,
						  (unsigned long long)want, strerror(-r));
			}
			if (d->bar_moved && before[s][i] != b->mapped_at)
				d->bar_moved(d, i, before[s][i], b->mapped_at);
		}
	}
}

static struct pci_device *lookup(struct pci_bus *pb, unsigned bus, unsigned devfn)
{
	if (bus != 0 || (devfn & 7) || (devfn >> 3) >= PCI_MAX_SLOTS)
		return NULL;
	return pb->slot[devfn >> 3];
}

uint32_t pci_cfg_read(struct pci_bus *pb, unsigned bus, unsigned devfn, unsigned off, unsigned size)
{
	uint32_t ones = size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
	if (size == 0 || size > 4 || off >= PCI_CFG_SIZE)
		return ones;
	pthread_mutex_lock(&pb->lock);
	struct pci_device *d = lookup(pb, bus, devfn);
	uint32_t v = ones;
	if (d) {
		if (d->cfg_reading)
			d->cfg_reading(d, off, size);
		v = 0;
		for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++)
			v |= (uint32_t)d->cfg[off + i] << (8 * i);
	}
	pthread_mutex_unlock(&pb->lock);
	return v;
}

void pci_cfg_write(struct pci_bus *pb, unsigned bus, unsigned devfn, unsigned off, unsigned size,
		   uint32_t val)
{
	if (size == 0 || size > 4 || off >= PCI_CFG_SIZE)
		return;
	pthread_mutex_lock(&pb->lock);
	struct pci_device *d = lookup(pb, bus, devfn);
	if (d) {
		bool bars = false;
		for (unsigned i = 0; i < size && off + i < PCI_CFG_SIZE; i++) {
			unsigned o = off + i;
			uint8_t b = (uint8_t)(val >> (8 * i));
			d->cfg[o] = (uint8_t)((d->cfg[o] & ~d->wmask[o]) | (b & d->wmask[o]));
			d->cfg[o] &= (uint8_t) ~(b & d->w1c[o]);
			if (o == PCI_COMMAND || (o >= PCI_BAR0 && o < PCI_BAR0 + 4 * PCI_NUM_BARS))
				bars = true;
		}
		if (bars)
			sync_bars(pb);
		if (d->cfg_written)
			d->cfg_written(d, off, size);
	}
	pthread_mutex_unlock(&pb->lock);
}

/* Configuration mechanism #1: the address latch at 0xCF8 (dword accesses only). */
static uint64_t cf8_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bus *pb = opaque;
	(void)off;
	return size == 4 ? pb->cf8 : size >= 8 ? ~0ULL : (1ULL << (8 * size)) - 1;
}

static void cf8_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pci_bus *pb = opaque;
	(void)off;
	if (size == 4)
		__atomic_store_n(&pb->cf8, (uint32_t)val, __ATOMIC_RELAXED);
}

static uint64_t cfc_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bus *pb = opaque;
	uint32_t a = __atomic_load_n(&pb->cf8, __ATOMIC_RELAXED);
	if (!(a & 0x80000000u) || off + size > 4)
		return size >= 8 ? ~0ULL : size == 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
	return pci_cfg_read(pb, (a >> 16) & 0xff, (a >> 8) & 0xff, (a & 0xfc) + (unsigned)off,
			    size);
}

static void cfc_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pci_bus *pb = opaque;
	uint32_t a = __atomic_load_n(&pb->cf8, __ATOMIC_RELAXED);
	if (!(a & 0x80000000u) || off + size > 4)
		return;
	pci_cfg_write(pb, (a >> 16) & 0xff, (a >> 8) & 0xff, (a & 0xfc) + (unsigned)off, size,
		      (uint32_t)val);
}

/* ECAM: offset = bus << 20 | devfn << 12 | register. */
static uint64_t ecam_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bus *pb = opaque;
	unsigned bus = (unsigned)(off >> 20), devfn = (unsigned)(off >> 12) & 0xff;
	unsigned reg = (unsigned)off & 0xfff;
	if (size == 8)
		return pci_cfg_read(pb, bus, devfn, reg, 4) |
		       (uint64_t)pci_cfg_read(pb, bus, devfn, reg + 4, 4) << 32;
	return pci_cfg_read(pb, bus, devfn, reg, size);
}

static void ecam_write(void *opaque, uint64_t off, unsigned size, uint64_t val)
{
	struct pci_bus *pb = opaque;
	unsigned bus = (unsigned)(off >> 20), devfn = (unsigned)(off >> 12) & 0xff;
	unsigned reg = (unsigned)off & 0xfff;
	if (size == 8) {
		pci_cfg_write(pb, bus, devfn, reg, 4, (uint32_t)val);
		pci_cfg_write(pb, bus, devfn, reg + 4, 4, (uint32_t)(val >> 32));
		return;
	}
	pci_cfg_write(pb, bus, devfn, reg, size, (uint32_t)val);
}

static const struct bus_ops cf8_ops = {cf8_read, cf8_write};
static const struct bus_ops cfc_ops = {cfc_read, cfc_write};
static const struct bus_ops ecam_ops = {ecam_read, ecam_write};

int pci_bus_init(struct pci_bus *pb, struct bus *pio, struct bus *mmio, uint64_t mmio64_base,
		 uint64_t mmio64_size)
{
	memset(pb, 0, sizeof(*pb));
	pthread_mutex_init(&pb->lock, NULL);
	pb->mmio = mmio;
	pb->mmio32_next = PCI_MMIO32_BASE;
	pb->mmio32_end = PCI_MMIO32_BASE + PCI_MMIO32_SIZE;
	pb->mmio64_next = mmio64_base;
	pb->mmio64_end = mmio64_base + mmio64_size;

	/* 1b36:0008 is the generic PCIe host bridge ID every OS knows. */
	pci_device_init(&pb->host_bridge, "pci-host", 0x1b36, 0x0008, 0x060000, 0, 0x1af4, 0x1100);
	pb->host_bridge.bus = pb;
	pb->slot[0] = &pb->host_bridge;

	/* 0xCF8 is one byte here so that 0xCF9 (reset control) stays a separate register. */
	int r = bus_register(pio, PCI_CF8_PORT, 1, &cf8_ops, pb, "pci-cf8");
	r = r ? r : bus_register(pio, PCI_CFC_PORT, 4, &cfc_ops, pb, "pci-cfc");
	r = r ? r : bus_register(mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, pb, "pci-ecam");
	return r;
}

void pci_bus_destroy(struct pci_bus *pb)
{
	pthread_mutex_destroy(&pb->lock);
}

static int place_in(uint64_t *next, uint64_t end, uint64_t size, uint64_t *addr)
{
	uint64_t a = ALIGN_UP(*next, size);
	if (a < *next || a + size > end || a + size < a)
		return -ENOSPC;
	*addr = a;
	*next = a + size;
	return 0;
}

/* 64-bit prefetchable BARs go high when there is room there; everything else below 4 GiB. */
static int place_bar(struct pci_bus *pb, struct pci_bar *b, uint64_t *addr)
{
	if (b->is64 && b->prefetch &&
	    place_in(&pb->mmio64_next, pb->mmio64_end, b->size, addr) == 0)
		return 0;
	return place_in(&pb->mmio32_next, pb->mmio32_end, b->size, addr);
}

int pci_bus_add(struct pci_bus *pb, struct pci_device *d)
{
	unsigned s;
	for (s = 1; s < PCI_MAX_SLOTS && pb->slot[s]; s++)
		;
	if (s == PCI_MAX_SLOTS)
		return -ENOSPC;
	d->bus = pb;
	d->slot = s;
	/* Firmware-style setup: BARs assigned, memory decoding on, INTA# on GSI 16..19. */
	for (unsigned i = 0; i < PCI_NUM_BARS; i++) {
		struct pci_bar *b = &d->bar[i];
		uint64_t a;
		if (!b->size)
			continue;
		if (place_bar(pb, b, &a)) {
			log_err(d->name, "no room for BAR%u (%llu KiB) in the PCI windows", i,
				(unsigned long long)(b->size >> 10));
			return -ENOSPC;
		}
		unsigned off = PCI_BAR0 + 4 * i;
		pci_put32(d, off, (uint32_t)a | (pci_get32(d, off) & 0xf));
		if (b->is64)
			pci_put32(d, off + 4, (uint32_t)(a >> 32));
	}
	d->cfg[PCI_INTERRUPT_PIN] = 1;
	d->cfg[PCI_INTERRUPT_LINE] = (uint8_t)(PCI_INTX_GSI_BASE + s % 4);
	pci_put16(d, PCI_COMMAND, pci_get16(d, PCI_COMMAND) | PCI_COMMAND_MEMORY);
	pthread_mutex_lock(&pb->lock);
	pb->slot[s] = d;
	sync_bars(pb);
	pthread_mutex_unlock(&pb->lock);
	return 0;
}

/* ---- save/restore ---- */

json_t *pci_device_save(struct pci_device *d)
{
	pthread_mutex_lock(&d->bus->lock);
	char *b = b64_encode(d->cfg, PCI_CFG_SIZE);
	pthread_mutex_unlock(&d->bus->lock);
	json_t *o = b ? json_pack("{s:s}", "config", b) : NULL;
	free(b);
	return o;
}

int pci_device_load(struct pci_device *d, json_t *o, char *msg, size_t msglen)
{
	size_t len = 0;
	const char *s = json_string_value(json_object_get(o, "config"));
	uint8_t *cfg = s ? b64_decode(s, &len) : NULL;
	if (!cfg || len != PCI_CFG_SIZE) {
		snprintf(msg, msglen, "%s: field 'config': missing or not %u bytes of base64",
			 d->name, PCI_CFG_SIZE);
		free(cfg);
		return -EINVAL;
	}
	/* Read-only bytes describe the device itself: they must match what this VMM built. */
	for (unsigned i = 0; i < PCI_CFG_SIZE; i++) {
		uint8_t ro = (uint8_t) ~(d->wmask[i] | d->w1c[i]);
		if (i == PCI_STATUS)
			ro &= (uint8_t)~PCI_STATUS_INTX; /* the device's own line state */
		if ((cfg[i] & ro) != (d->cfg[i] & ro)) {
			snprintf(msg, msglen,
				 "%s: saved config space differs at 0x%x (a different device)",
				 d->name, i);
			free(cfg);
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&d->bus->lock);
	memcpy(d->cfg, cfg, PCI_CFG_SIZE);
	sync_bars(d->bus);
	pthread_mutex_unlock(&d->bus->lock);
	free(cfg);
	return 0;
}
