/* msix.c — MSI-X capability: table/PBA location, entry routing to LAPIC vectors, masks, counts. */
#include "guest.h"
#include "pci.h"
#include "x86.h"

#define MSIX_CTRL 2  /* message control, 16-bit */
#define MSIX_TABLE 4 /* BIR (bits 2:0) | offset */
#define MSIX_PBA 8   /* BIR | offset */
#define ENTRY_SIZE 16
#define ENTRY_ADDR_LO 0
#define ENTRY_ADDR_HI 4
#define ENTRY_DATA 8
#define ENTRY_CTRL 12
#define ENTRY_MASKED 1u

volatile uint32_t msix_irqs[VEC_MSIX_COUNT];

/* Deliveries per slot; the handler only counts and EOIs (the drivers poll their used rings). */
void msix_irq(unsigned int slot)
{
	if (slot < VEC_MSIX_COUNT)
		msix_irqs[slot]++;
	lapic_eoi();
}

/* Find the capability and where the table and PBA live. The BARs were mapped by pci_init().
 * Returns 0, or -1 if the device has no (usable) MSI-X. */
int msix_init(struct msix *m, const struct pci_dev *d)
{
	uint32_t t, p;
	const struct pci_bar *tb, *pb;

	memset(m, 0, sizeof(*m));
	m->pci = d;
	m->cap = pci_find_cap(d, PCI_CAP_MSIX, 0);
	if (!m->cap)
		return -1;
	m->nvec = (pci_read16(d, m->cap + MSIX_CTRL) & 0x7ff) + 1;
	t = pci_read32(d, m->cap + MSIX_TABLE);
	p = pci_read32(d, m->cap + MSIX_PBA);
	if ((t & 7) > 5 || (p & 7) > 5)
		return -1;
	tb = &d->bar[t & 7];
	pb = &d->bar[p & 7];
	if (tb->io || pb->io || !tb->addr || !pb->addr)
		return -1;
	if ((t & ~7u) + m->nvec * ENTRY_SIZE > tb->size ||
	    (p & ~7u) + ((m->nvec + 63) / 64) * 8 > pb->size)
		return -1;
	m->table = tb->addr + (t & ~7u);
	m->pba = pb->addr + (p & ~7u);
	return 0;
}

/* Enable bit and function mask in message control; the other bits are read-only. */
void msix_control(const struct msix *m, int enable, int fmask)
{
	uint16_t c = pci_read16(m->pci, m->cap + MSIX_CTRL) & ~(MSIX_CTRL_ENABLE | MSIX_CTRL_FMASK);

	if (enable)
		c |= MSIX_CTRL_ENABLE;
	if (fmask)
		c |= MSIX_CTRL_FMASK;
	pci_write16(m->pci, m->cap + MSIX_CTRL, c);
}

/* Point entry at IDT vector VEC_MSIX_BASE + slot on `apic_id` (physical destination, fixed,
 * edge). The entry is left masked; msix_mask() opens it. */
void msix_route(const struct msix *m, unsigned int entry, unsigned int slot, uint32_t apic_id)
{
	uint64_t e = m->table + entry * ENTRY_SIZE;

	mmio_write32(e + ENTRY_CTRL, mmio_read32(e + ENTRY_CTRL) | ENTRY_MASKED);
	mmio_write32(e + ENTRY_ADDR_LO, 0xfee00000u | (apic_id & 0xff) << 12);
	mmio_write32(e + ENTRY_ADDR_HI, 0);
	mmio_write32(e + ENTRY_DATA, VEC_MSIX_BASE + slot);
}

void msix_mask(const struct msix *m, unsigned int entry, int masked)
{
	uint64_t c = m->table + entry * ENTRY_SIZE + ENTRY_CTRL;
	uint32_t v = mmio_read32(c);

	mmio_write32(c, masked ? v | ENTRY_MASKED : v & ~ENTRY_MASKED);
}

int msix_pending(const struct msix *m, unsigned int entry)
{
	return (mmio_read32(m->pba + (entry / 32) * 4) >> (entry % 32)) & 1;
}
