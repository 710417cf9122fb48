/* tests_intx.c — `virtio-intx`: virtio-rng completions as level-triggered INTx via the I/O APIC. */
#include "guest.h"
#include "virtio.h"
#include "x86.h"

#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN 0x3d
#define PCI_CMD_INTX_DISABLE 0x400
#define PCI_STATUS_INTX 0x08
#define GSI_FIRST 16 /* PCI INTx GSIs we consider: 16 .. 16 + VEC_INTX_COUNT - 1 */
#define IRQ_WAIT_US 1000000
#define QUIET_US 20000
#define USED_WAIT_US 1000000
#define ISR_QUEUE 1 /* ISR bit 0: a used buffer; bit 1: configuration change */

/* The handler masks the pin (leaving the device's line asserted) or acknowledges the device by
 * reading its ISR, as a driver does; both then EOI, which for a level-triggered vector also
 * reaches the I/O APIC. */
#define H_MASK 0
#define H_ACK 1

static struct {
	uint64_t isr; /* the device's ISR register */
	volatile uint32_t mode;
	volatile uint32_t count[VEC_INTX_COUNT];
	volatile uint32_t total;
	volatile uint32_t last_isr, isr_empty;
} st;

static uint8_t buf[64] __attribute__((aligned(64)));
static uint64_t token;

void intx_irq(unsigned int index)
{
	st.count[index]++;
	st.total++;
	if (st.mode == H_ACK) {
		uint32_t v = *(volatile uint8_t *)st.isr;

		st.last_isr = v;
		if (!(v & ISR_QUEUE))
			st.isr_empty++;
	} else {
		ioapic_mask(GSI_FIRST + index);
	}
	lapic_eoi();
}

/* One 16-byte rng request, polled to completion from ring 0 (interrupts stay off meanwhile). */
static int request(struct virtq *vq)
{
	struct vq_buf b = {(uint64_t)buf, 16, 1};
	uint64_t end, tok;
	uint32_t len;
	int r;

	if (vq_add(vq, &b, 1, 0, ++token) < 0)
		return -1;
	vq_kick(vq);
	end = tsc_after_us(USED_WAIT_US);
	while (!(r = vq_get(vq, &len, &tok))) {
		if (rdtsc() > end)
			return -1;
		cpu_relax();
	}
	return r > 0 && tok == token && len > 0 && len <= 16 ? 0 : -1;
}

/* No interrupt at all for QUIET_US. */
static int quiet(void)
{
	return wait_count(&st.total, st.total + 1, QUIET_US) < 0;
}

/* After an acknowledgement: wait until QUIET_US pass without an interrupt. A line still high
 * would be re-delivered after every EOI; one more delivery that finds the ISR empty is tolerated
 * (a driver answers it with "not mine") and counted — this host's in-kernel I/O APIC produces
 * exactly that, under berth and under QEMU with kernel-irqchip=on alike. 0 if it settled. */
static int settle(void)
{
	for (uint32_t extra = 0; extra < 2; extra++)
		if (quiet())
			return 0;
	return -1;
}

static int rng_up(struct virtio_dev *v)
{
	if (virtio_negotiate(v, VIRTIO_F_VERSION_1, VIRTIO_F_VERSION_1) < 0)
		return -1;
	virtio_set_config_vector(v, VIRTIO_NO_VECTOR, NULL);
	if (virtio_setup_queue(v, 0, 16, VIRTIO_NO_VECTOR) < 0)
		return -1;
	vq_irq_enable(v->vq[0], 1);
	return virtio_driver_ok(v);
}

/* Without firmware tables to read (_PRT is AML), find the GSI by watching: every candidate pin
 * level-triggered and open, the handler masking whatever fires; pins that fire without our
 * request belong to someone else. Leaves our line asserted and every candidate masked. */
static int probe_gsi(struct virtq *vq, uint32_t *gsi, const char **why)
{
	uint32_t foreign = 0, fired = 0, before[VEC_INTX_COUNT];

	for (uint32_t i = 0; i < VEC_INTX_COUNT; i++)
		ioapic_route_gsi(GSI_FIRST + i, VEC_INTX_BASE + i, lapic_id(), 1, 0);
	for (uint32_t i = 0; i < VEC_INTX_COUNT; i++)
		ioapic_unmask(GSI_FIRST + i);
	quiet();
	for (uint32_t i = 0; i < VEC_INTX_COUNT; i++) {
		if (st.count[i])
			foreign |= 1u << i;
		before[i] = st.count[i];
	}
	if (request(vq) < 0) {
		*why = "probe-request-failed";
		return -1;
	}
	wait_count(&st.total, st.total + 1, IRQ_WAIT_US);
	quiet();
	for (uint32_t i = 0; i < VEC_INTX_COUNT; i++) {
		ioapic_mask(GSI_FIRST + i);
		if (st.count[i] != before[i] && !(foreign & 1u << i))
			fired |= 1u << i;
	}
	if (!fired || (fired & (fired - 1))) {
		*why = fired ? "probe-ambiguous" : "probe-no-irq";
		return -1;
	}
	for (*gsi = GSI_FIRST; !(fired & 1); fired >>= 1) /* no bsf/tzcnt at ring 0 */
		++*gsi;
	return 0;
}

static const char *steps(struct virtio_dev *v, uint32_t gsi, uint32_t n, uint32_t *status_bit,
			 const char **reenable, const char **line_write)
{
	struct pci_dev *p = v->pci;
	volatile uint32_t *cnt = &st.count[gsi - GSI_FIRST];
	struct virtq *vq = v->vq[0];
	uint16_t cmd = pci_read16(p, PCI_COMMAND);
	uint8_t line = pci_read8(p, PCI_INTERRUPT_LINE);
	uint32_t c;

	/* The line is asserted (request done, ISR unread) and the pin masked. */
	*status_bit = !!(pci_read16(p, PCI_STATUS) & PCI_STATUS_INTX);
	if (!quiet())
		return "irq-while-masked";
	c = *cnt;
	ioapic_unmask(gsi);
	if (wait_count(cnt, c + 1, IRQ_WAIT_US) < 0)
		return "no-irq-on-unmask"; /* a level held while masked must arrive now */
	ioapic_unmask(gsi);
	if (wait_count(cnt, c + 2, IRQ_WAIT_US) < 0)
		return "line-dropped-before-isr-read";
	st.mode = H_ACK;
	ioapic_unmask(gsi);
	if (wait_count(cnt, c + 3, IRQ_WAIT_US) < 0)
		return "no-irq-after-eoi";
	if (!(st.last_isr & ISR_QUEUE))
		return "isr-bit0-clear";
	if (settle() < 0)
		return "re-raised-after-isr-read";
	if (*(volatile uint8_t *)v->isr != 0)
		return "isr-not-cleared-by-read";
	if (pci_read16(p, PCI_STATUS) & PCI_STATUS_INTX)
		*status_bit |= 2; /* still set after the acknowledgement: wrong */

	/* A request at a time: each completion raises exactly one interrupt, to a halted CPU. */
	for (uint32_t i = 0; i < n; i++) {
		c = *cnt;
		if (request(vq) < 0)
			return "request-failed";
		uint32_t empty = st.isr_empty;

		if (wait_count(cnt, c + 1, IRQ_WAIT_US) < 0)
			return "no-irq-for-request";
		if (st.isr_empty != empty)
			return "isr-bit0-clear";
		if (settle() < 0)
			return "irq-storm-after-request";
	}

	/* Command.INTx-disable: no interrupt while set; the pending one arrives once cleared. */
	pci_write16(p, PCI_COMMAND, cmd | PCI_CMD_INTX_DISABLE);
	c = *cnt;
	if (request(vq) < 0)
		return "request-failed";
	if (!quiet())
		return "irq-while-intx-disabled";
	c = *cnt;
	pci_write16(p, PCI_COMMAND, cmd & ~PCI_CMD_INTX_DISABLE);
	*reenable = wait_count(cnt, c + 1, QUIET_US * 10) == 0 ? "delivered" : "lost";
	(void)*(volatile uint8_t *)v->isr; /* acknowledge whatever is left */
	settle();

	/* The interrupt line register is the driver's scratch byte (PCI 3.0, 6.2.4): writing it
	 * must not move the interrupt. */
	pci_write32(p, PCI_INTERRUPT_LINE & ~3u,
		    (pci_read32(p, PCI_INTERRUPT_LINE & ~3u) & ~0xffu) | 0xff);
	c = *cnt;
	if (request(vq) < 0)
		return "request-failed";
	*line_write = wait_count(cnt, c + 1, QUIET_US * 10) == 0 ? "ok" : "lost";
	(void)*(volatile uint8_t *)v->isr;
	pci_write32(p, PCI_INTERRUPT_LINE & ~3u,
		    (pci_read32(p, PCI_INTERRUPT_LINE & ~3u) & ~0xffu) | line);
	settle();
	return NULL;
}

void test_virtio_intx(void)
{
	struct virtio_dev v;
	struct msix m;
	uint32_t n = cmdline_u64("irqs", 8), gsi = 0, status_bit = 0;
	uint8_t line, pin;
	const char *why = NULL, *source = "line", *reenable = "untested", *line_write = "untested";

	memset(&st, 0, sizeof(st));
	if (virtio_find(&v, VIRTIO_TYPE_RNG, 0) < 0) {
		kprintf("berth-test virtio-intx FAIL reason=\"%s\"\n", v.error);
		return;
	}
	if (msix_init(&m, v.pci) == 0)
		msix_control(&m, 0, 0); /* MSI-X off: the device must fall back to INTx */
	pin = pci_read8(v.pci, PCI_INTERRUPT_PIN);
	line = pci_read8(v.pci, PCI_INTERRUPT_LINE);
	if (pin != 1) {
		kprintf("berth-test virtio-intx FAIL reason=\"interrupt-pin=%u want=1\"\n", pin);
		return;
	}
	pci_write16(v.pci, PCI_COMMAND, pci_read16(v.pci, PCI_COMMAND) & ~PCI_CMD_INTX_DISABLE);
	st.isr = v.isr;
	st.mode = H_MASK;
	if (rng_up(&v) < 0) {
		kprintf("berth-test virtio-intx FAIL reason=\"%s\"\n", v.error);
		virtio_reset(&v);
		return;
	}
	(void)*(volatile uint8_t *)v.isr; /* start with the line low */
	if (line >= GSI_FIRST && line < GSI_FIRST + VEC_INTX_COUNT &&
	    ioapic_route_gsi(line, VEC_INTX_BASE + line - GSI_FIRST, lapic_id(), 1, 0) == 0) {
		/* The line register names the GSI (berth; no firmware rewrote it). */
		gsi = line;
		if (request(v.vq[0]) < 0)
			why = "request-failed";
	} else {
		/* Firmware left a legacy PIC IRQ there (QEMU's SeaBIOS): find the GSI. */
		source = "probe";
		probe_gsi(v.vq[0], &gsi, &why);
	}
	if (!why)
		why = steps(&v, gsi, n, &status_bit, &reenable, &line_write);
	for (uint32_t i = 0; i < VEC_INTX_COUNT; i++)
		ioapic_mask(GSI_FIRST + i);
	virtio_reset(&v);
	(void)*(volatile uint8_t *)v.isr;
	if (why) {
		kprintf(
		    "berth-test virtio-intx FAIL reason=\"%s\" gsi=%u source=%s line=%u slot=%u "
		    "irqs=%u isr=0x%x\n",
		    why, gsi, source, line, v.pci->dev, st.total, st.last_isr);
		return;
	}
	kprintf("berth-test virtio-intx PASS irqs=%u gsi=%u source=%s line=%u slot=%u "
		"requests=%u spurious=%u status_bit=%s reenable=%s line_write=%s\n",
		gsi >= GSI_FIRST ? st.count[gsi - GSI_FIRST] : 0, gsi, source, line, v.pci->dev, n,
		st.isr_empty,
		status_bit == 1	  ? "ok"
		: status_bit == 0 ? "never-set"
				  : "stuck",
		reenable, line_write);
}
