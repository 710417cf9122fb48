/* ioapic.c — I/O APIC: ISA IRQs (MADT overrides applied) and PCI INTx GSIs to LAPIC vectors. */
#include "guest.h"
#include "x86.h"

#define IOREGSEL 0x00
#define IOWIN 0x10
#define IOAPIC_VER 0x01
#define IOREDTBL(pin) (0x10 + 2 * (pin))

#define RTE_POLARITY_LOW (1u << 13)
#define RTE_TRIGGER_LEVEL (1u << 15)
#define RTE_MASKED (1u << 16)

static uint64_t ioapic_base(void)
{
	return acpi.ioapic_addr ? acpi.ioapic_addr : 0xfec00000ULL;
}

static uint32_t ioapic_read(uint32_t reg)
{
	mmio_write32(ioapic_base() + IOREGSEL, reg);
	return mmio_read32(ioapic_base() + IOWIN);
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
	mmio_write32(ioapic_base() + IOREGSEL, reg);
	mmio_write32(ioapic_base() + IOWIN, v);
}

/* The I/O APIC pin of a GSI, or -1 if this (first) I/O APIC does not have it. */
static int gsi_pin(uint32_t gsi)
{
	uint32_t pins = ((ioapic_read(IOAPIC_VER) >> 16) & 0xff) + 1;

	if (gsi < acpi.ioapic_gsi_base || gsi - acpi.ioapic_gsi_base >= pins)
		return -1;
	return (int)(gsi - acpi.ioapic_gsi_base);
}

/* Program the redirection entry of ISA IRQ `irq`: fixed delivery, physical destination `apic_id`,
 * unmasked. ISA interrupts are edge-triggered and active high unless a MADT Interrupt Source
 * Override says otherwise (MPS INTI flags; 00 = conforms to the bus). Returns 0 and the GSI, or -1
 * if there is no pin for it. */
int ioapic_route_isa(unsigned int irq, uint8_t vector, uint32_t apic_id, uint32_t *gsi)
{
	uint32_t g = irq, lo = vector;
	uint16_t flags = 0;
	int pin;

	if (irq < 16 && acpi.isa_irq[irq].overridden) {
		g = acpi.isa_irq[irq].gsi;
		flags = acpi.isa_irq[irq].flags;
	}
	pin = gsi_pin(g);
	if (pin < 0)
		return -1;
	if ((flags & 3) == 3)
		lo |= RTE_POLARITY_LOW;
	if (((flags >> 2) & 3) == 3)
		lo |= RTE_TRIGGER_LEVEL;
	ioapic_write(IOREDTBL(pin), lo | RTE_MASKED);
	ioapic_write(IOREDTBL(pin) + 1, apic_id << 24);
	ioapic_write(IOREDTBL(pin), lo);
	*gsi = g;
	return 0;
}

void ioapic_mask(uint32_t gsi)
{
	int pin = gsi_pin(gsi);

	if (pin >= 0)
		ioapic_write(IOREDTBL(pin), ioapic_read(IOREDTBL(pin)) | RTE_MASKED);
}

void ioapic_unmask(uint32_t gsi)
{
	int pin = gsi_pin(gsi);

	if (pin >= 0)
		ioapic_write(IOREDTBL(pin), ioapic_read(IOREDTBL(pin)) & ~RTE_MASKED);
}

uint32_t ioapic_rte(uint32_t gsi)
{
	int pin = gsi_pin(gsi);

	return pin >= 0 ? ioapic_read(IOREDTBL(pin)) : 0;
}

/* Program GSI `gsi` (a PCI INTx line, say) to `vector` on `apic_id`, fixed delivery, physical
 * destination, with the given trigger mode and polarity, left masked (ioapic_unmask() opens it).
 * Returns 0, or -1 if this I/O APIC has no pin for it. */
int ioapic_route_gsi(uint32_t gsi, uint8_t vector, uint32_t apic_id, int level, int active_low)
{
	uint32_t lo = vector | RTE_MASKED;
	int pin = gsi_pin(gsi);

	if (pin < 0)
		return -1;
	if (level)
		lo |= RTE_TRIGGER_LEVEL;
	if (active_low)
		lo |= RTE_POLARITY_LOW;
	ioapic_write(IOREDTBL(pin), ioapic_read(IOREDTBL(pin)) | RTE_MASKED);
	ioapic_write(IOREDTBL(pin) + 1, apic_id << 24);
	ioapic_write(IOREDTBL(pin), lo);
	return 0;
}
