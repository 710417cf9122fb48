/* tests_power.c — `powerbutton`: the ACPI fixed power button (PM1 status/enable, SCI through the
 * I/O APIC); `ticker`: a ring-3 counter line every tick_ms (default 100), forever. */
#include "guest.h"
#include "x86.h"

#define FADT_FLAG_PWR_BUTTON (1u << 4) /* set: no fixed-hardware power button */
#define PM1_PWRBTN (1u << 8)	       /* PWRBTN_STS in PM1 status, PWRBTN_EN in PM1 enable */
#define QUIET_US 20000

static uint16_t sts_port, en_port;

static struct {
	volatile int pressed;
	volatile uint32_t irqs;	   /* SCI deliveries */
	volatile uint32_t empty;   /* deliveries that found PWRBTN_STS clear */
	volatile uint32_t sts_seen; /* PM1 status as the first press found it */
} pb;

/* The SCI handler an ACPI OS has: read PM1 status, handle and clear (write 1) the enabled fixed
 * events, then EOI. Clearing PWRBTN_STS lowers the level-triggered SCI before the EOI. */
void sci_irq(void)
{
	uint16_t sts = inw(sts_port);

	pb.irqs++;
	if (sts & PM1_PWRBTN) {
		if (!pb.pressed)
			pb.sts_seen = sts;
		outw(sts_port, PM1_PWRBTN);
		pb.pressed = 1;
	} else {
		pb.empty++;
	}
	lapic_eoi();
}

/* No SCI for QUIET_US, tolerating one late delivery that finds the status clear (see
 * tests_intx.c's settle(): this host's in-kernel I/O APIC may deliver once more). */
static int settle(void)
{
	for (uint32_t extra = 0; extra < 2; extra++)
		if (wait_count(&pb.irqs, pb.irqs + 1, QUIET_US) < 0)
			return 0;
	return -1;
}

void test_powerbutton(void)
{
	uint64_t secs = cmdline_u64("button_secs", 120);
	uint32_t gsi, rte;
	uint16_t left;

	memset((void *)&pb, 0, sizeof(pb));
	if (!acpi.have_fadt || !acpi.pm1a_evt.address || acpi.pm1_evt_len < 4) {
		kprintf("berth-test powerbutton FAIL reason=no-pm1a-evt\n");
		return;
	}
	if (acpi.pm1a_evt.space != 1) {
		kprintf("berth-test powerbutton FAIL reason=pm1a-evt-not-io\n");
		return;
	}
	if (acpi.fadt_flags & FADT_FLAG_PWR_BUTTON) {
		kprintf("berth-test powerbutton FAIL reason=no-fixed-power-button\n");
		return;
	}
	sts_port = (uint16_t)acpi.pm1a_evt.address;
	en_port = (uint16_t)(sts_port + acpi.pm1_evt_len / 2);
	outw(sts_port, PM1_PWRBTN); /* a press from before we listened does not count */
	outw(en_port, inw(en_port) | PM1_PWRBTN);
	if (!(inw(en_port) & PM1_PWRBTN)) {
		kprintf("berth-test powerbutton FAIL reason=pwrbtn-en-reads-0\n");
		return;
	}
	if (ioapic_route_isa(acpi.sci_irq, VEC_SCI, lapic_id(), &gsi)) {
		kprintf("berth-test powerbutton FAIL reason=no-ioapic-pin sci=%u\n", acpi.sci_irq);
		return;
	}
	rte = ioapic_rte(gsi);
	kprintf("berth-test powerbutton READY sci=%u gsi=%u trigger=%s polarity=%s pm1_evt=0x%x\n",
		acpi.sci_irq, gsi, rte & (1u << 15) ? "level" : "edge",
		rte & (1u << 13) ? "low" : "high", sts_port);
	if (wait_until(&pb.pressed, secs * 1000000) < 0) {
		ioapic_mask(gsi);
		kprintf("berth-test powerbutton FAIL reason=timeout irqs=%u\n", pb.irqs);
		return;
	}
	if (settle() < 0) {
		ioapic_mask(gsi);
		kprintf("berth-test powerbutton FAIL reason=sci-stays-asserted irqs=%u\n", pb.irqs);
		return;
	}
	ioapic_mask(gsi);
	left = inw(sts_port) & PM1_PWRBTN;
	if (left) {
		kprintf("berth-test powerbutton FAIL reason=pwrbtn-sts-not-cleared\n");
		return;
	}
	kprintf("berth-test powerbutton PASS sts=0x%x irqs=%u empty=%u\n", pb.sts_seen, pb.irqs,
		pb.empty);
	/* What an OS does when its power button is pressed: shut down. */
	acpi_poweroff();
}

static struct tick_job tick;

void test_ticker(void)
{
	uint64_t ms = cmdline_u64("tick_ms", 100);

	tick.period_tsc = (ms ? ms : 1) * tsc_khz;
	kprintf("berth-test ticker READY tick_ms=%lu\n", ms);
	user_run(u_ticker, (uint64_t)&tick);
	kprintf("berth-test ticker FAIL reason=returned\n");
	acpi_poweroff();
}
