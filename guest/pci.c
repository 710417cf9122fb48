/* pci.c — PCI configuration access (0xCF8/0xCFC and ECAM), bus scan, BAR sizing/placement/mapping.
 */
#include "guest.h"
#include "pci.h"
#include "x86.h"

#define CF8_ADDR 0xcf8
#define CF8_DATA 0xcfc

struct pci_dev pci_devs[PCI_MAX_DEVS];
unsigned int pci_ndevs;
int pci_have_ecam;
char pci_error[96];
static int pci_done;
static uint64_t alloc_next = PCI_ALLOC_BASE;

static uint32_t cf8_addr(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off)
{
	return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (off & 0xfc);
}

static uint64_t ecam_addr(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off)
{
	return acpi.mcfg_base + ((uint64_t)bus << 20 | dev << 15 | fn << 12 | off);
}

uint32_t pci_cf8_read32(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off)
{
	outl(CF8_ADDR, cf8_addr(bus, dev, fn, off));
	return inl(CF8_DATA);
}

uint32_t pci_ecam_read32(unsigned int bus, unsigned int dev, unsigned int fn, unsigned int off)
{
	return *(volatile uint32_t *)ecam_addr(bus, dev, fn, off & 0xffc);
}

uint32_t pci_read32(const struct pci_dev *d, unsigned int off)
{
	if (pci_have_ecam)
		return pci_ecam_read32(d->bus, d->dev, d->fn, off);
	return pci_cf8_read32(d->bus, d->dev, d->fn, off);
}

uint16_t pci_read16(const struct pci_dev *d, unsigned int off)
{
	return pci_read32(d, off & ~3u) >> (8 * (off & 2));
}

uint8_t pci_read8(const struct pci_dev *d, unsigned int off)
{
	return pci_read32(d, off & ~3u) >> (8 * (off & 3));
}

void pci_write32(const struct pci_dev *d, unsigned int off, uint32_t v)
{
	if (pci_have_ecam) {
		*(volatile uint32_t *)ecam_addr(d->bus, d->dev, d->fn, off & 0xffc) = v;
		return;
	}
	outl(CF8_ADDR, cf8_addr(d->bus, d->dev, d->fn, off));
	outl(CF8_DATA, v);
}

/* A true 16-bit access: read-modify-write of the dword could clear write-1-to-clear bits next to
 * the register (e.g. the status register beside the command register). */
void pci_write16(const struct pci_dev *d, unsigned int off, uint16_t v)
{
	if (pci_have_ecam) {
		*(volatile uint16_t *)ecam_addr(d->bus, d->dev, d->fn, off & 0xffe) = v;
		return;
	}
	outl(CF8_ADDR, cf8_addr(d->bus, d->dev, d->fn, off));
	outw(CF8_DATA + (off & 2), v);
}

unsigned int pci_find_cap(const struct pci_dev *d, uint8_t id, unsigned int after)
{
	unsigned int off, n;

	if (!(pci_read16(d, PCI_STATUS) & PCI_STATUS_CAP_LIST))
		return 0;
	off = after ? pci_read8(d, after + 1) : pci_read8(d, PCI_CAP_PTR);
	for (n = 0; n < 48 && off >= 0x40 && off < 0x100; n++) {
		off &= 0xfc;
		if (pci_read8(d, off) == id)
			return off;
		off = pci_read8(d, off + 1);
	}
	return 0;
}

struct pci_dev *pci_find(uint16_t vendor, uint16_t device, unsigned int nth)
{
	for (unsigned int i = 0; i < pci_ndevs; i++)
		if (pci_devs[i].vendor == vendor && pci_devs[i].device == device && !nth--)
			return &pci_devs[i];
	return NULL;
}

void pci_enable(const struct pci_dev *d)
{
	uint16_t cmd = pci_read16(d, PCI_COMMAND);

	pci_write16(d, PCI_COMMAND, cmd | PCI_CMD_MEM | PCI_CMD_MASTER);
}

/* Next free, size-aligned address in the window, or 0. */
static uint64_t alloc_mmio(uint64_t size)
{
	uint64_t a = (alloc_next + size - 1) & ~(size - 1);

	if (a + size > PCI_ALLOC_END || a + size < a)
		return 0;
	alloc_next = a + size;
	return a;
}

/* Size one BAR by the all-ones protocol with decoding off, restore it, and place it if it is an
 * unassigned memory BAR. Returns how many BAR registers it used (2 for a 64-bit BAR). */
static int bar_probe(struct pci_dev *d, unsigned int i, unsigned int nbars)
{
	unsigned int off = PCI_BAR0 + 4 * i;
	struct pci_bar *b = &d->bar[i];
	uint32_t lo = pci_read32(d, off), hi = 0, slo, shi = 0;
	uint64_t mask;

	pci_write32(d, off, 0xffffffff);
	slo = pci_read32(d, off);
	pci_write32(d, off, lo);
	b->io = lo & 1;
	if (b->io) {
		mask = slo & 0xfffffffcu;
		if (!mask)
			return 1;
		mask |= 0xffff0000u; /* 16-bit I/O decoders return 0 in the upper half */
		b->size = (uint32_t)(~mask + 1);
		b->addr = lo & 0xfffffffcu;
		return 1;
	}
	b->is64 = ((lo >> 1) & 3) == 2 && i + 1 < nbars;
	b->prefetch = (lo >> 3) & 1;
	if (b->is64) {
		hi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, 0xffffffff);
		shi = pci_read32(d, off + 4);
		pci_write32(d, off + 4, hi);
	}
	mask = ((uint64_t)shi << 32) | (slo & 0xfffffff0u);
	if (!b->is64)
		mask |= 0xffffffff00000000ULL;
	if (!(mask & 0xfffffff0u) && !shi)
		return b->is64 ? 2 : 1;
	b->size = ~mask + 1;
	b->addr = ((uint64_t)hi << 32) | (lo & 0xfffffff0u);
	if (!b->addr) {
		b->addr = alloc_mmio(b->size);
		b->assigned = b->addr != 0;
		pci_write32(d, off, (uint32_t)b->addr | (lo & 0xf));
		if (b->is64)
			pci_write32(d, off + 4, (uint32_t)(b->addr >> 32));
	}
	return b->is64 ? 2 : 1;
}

static void probe_function(unsigned int bus, unsigned int dev, unsigned int fn, uint32_t id)
{
	struct pci_dev *d;
	unsigned int nbars, i;
	uint16_t cmd;
	int has_mem = 0, has_io = 0;

	if (pci_ndevs >= PCI_MAX_DEVS)
		return;
	d = &pci_devs[pci_ndevs++];
	memset(d, 0, sizeof(*d));
	d->bus = bus;
	d->dev = dev;
	d->fn = fn;
	d->vendor = id & 0xffff;
	d->device = id >> 16;
	d->revision = pci_read8(d, PCI_REVISION);
	d->class = pci_read32(d, PCI_REVISION) >> 8;
	d->hdr_type = pci_read8(d, PCI_HEADER_TYPE) & 0x7f;
	nbars = d->hdr_type == 0 ? 6 : d->hdr_type == 1 ? 2 : 0;
	if (d->hdr_type == 1)
		d->secondary = pci_read8(d, PCI_SECONDARY_BUS);

	cmd = pci_read16(d, PCI_COMMAND);
	if (nbars)
		pci_write16(d, PCI_COMMAND, cmd & ~(PCI_CMD_IO | PCI_CMD_MEM));
	for (i = 0; i < nbars; i += bar_probe(d, i, nbars))
		;
	for (i = 0; i < nbars; i++) {
		struct pci_bar *b = &d->bar[i];

		if (!b->size)
			continue;
		if (b->io) {
			has_io = 1;
			continue;
		}
		has_mem = 1;
		if (!b->addr || paging_map_mmio(b->addr, b->size, 1) < 0)
			d->map_error = 1;
	}
	if (nbars)
		pci_write16(d, PCI_COMMAND,
			    cmd | (has_mem ? PCI_CMD_MEM : 0) | (has_io ? PCI_CMD_IO : 0));
}

static void scan_bus(unsigned int bus, int depth)
{
	for (unsigned int dev = 0; dev < 32; dev++) {
		unsigned int nfn = 1;

		for (unsigned int fn = 0; fn < nfn; fn++) {
			uint32_t id = pci_cf8_read32(bus, dev, fn, PCI_VENDOR);
			struct pci_dev *d;

			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
				continue;
			if (fn == 0 && (pci_cf8_read32(bus, dev, 0, 0x0c) >> 16) & 0x80)
				nfn = 8;
			probe_function(bus, dev, fn, id);
			d = &pci_devs[pci_ndevs - 1];
			if (d->hdr_type == 1 && d->secondary > bus && d->secondary < PCI_MAX_BUS &&
			    depth < 8)
				scan_bus(d->secondary, depth + 1);
		}
	}
}

/* Scan through mechanism #1 (always present on x86 PCs and on berth); ECAM is used for driver
 * access once its window is mapped. */
int pci_init(void)
{
	if (pci_done)
		return pci_error[0] ? -1 : (int)pci_ndevs;
	pci_done = 1;
	if (acpi.have_mcfg && acpi.mcfg_base) {
		if (acpi.mcfg_base + (256ULL << 20) <= 0xfec00000ULL ||
		    paging_map_mmio(acpi.mcfg_base, 256ULL << 20, 0) == 0)
			pci_have_ecam = 1;
		else
			snprintf(pci_error, sizeof(pci_error), "ecam-unmappable base=0x%lx",
				 acpi.mcfg_base);
	}
	scan_bus(0, 0);
	if (!pci_ndevs && !pci_error[0])
		snprintf(pci_error, sizeof(pci_error), "no-devices");
	return pci_error[0] ? -1 : (int)pci_ndevs;
}
