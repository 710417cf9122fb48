/* tests_uart.c — `uart`, `uart-ext`, `echo`: the 16550A as Linux's 8250 driver uses it, IRQs via
 * the IOAPIC. */
#include "guest.h"
#include "x86.h"

/* Register offsets (DLAB=0 meaning; DLL/DLM share 0/1 with DLAB=1). */
#define RBR 0 /* THR on write */
#define IER 1
#define IIR 2 /* FCR on write */
#define LCR 3
#define MCR 4
#define LSR 5
#define MSR 6
#define SCR 7
#define THR RBR
#define FCR IIR
#define DLL RBR
#define DLM IER

#define LCR_8N1 0x03
#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_CTI 0x0c
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define FCR_CLEAR_TX 0x04
#define FCR_CLEAR (FCR_CLEAR_RX | FCR_CLEAR_TX)
#define FCR_64BYTE 0x20
#define FCR_TRIG14 0xc0
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define LSR_IDLE (LSR_THRE | LSR_TEMT)

#define COM1 0x3f8
#define IRQ_WAIT_US 2000000    /* an interrupt that does not come within this is missing */
#define QUIET_US 30000	       /* window in which stray interrupts are counted */
#define CHAR_TIMEOUT_US 500000 /* generous: QEMU TCG runs its timers late on a busy host */
#define ECHO_WAIT_US 20000000ULL
#define ECHO_MAX 64

struct port {
	uint16_t base;
	uint8_t irq;
};

static const struct port ports[] = {{0x3f8, 4}, {0x2f8, 3}};
#define NPORTS (sizeof(ports) / sizeof(ports[0]))

/* Deliveries of VEC_UART; the echo test also drains COM1 in the handler. */
static volatile uint32_t irq_count;
static uint32_t stray; /* deliveries after everything was acknowledged */

static struct {
	volatile int active, done;
	volatile uint32_t len, total, iir_ids; /* iir_ids: bit n = IIR id n (bits 3:1) seen */
	uint8_t line[ECHO_MAX];
} echo;

/* The first mismatch of a run: register, expected, got. */
static char mismatch[128];
static int mismatched;

static int fail(uint16_t base, const char *reg, unsigned int expect, unsigned int got)
{
	if (!mismatched)
		snprintf(mismatch, sizeof(mismatch), "port=0x%x reg=%s expected=0x%02x got=0x%02x",
			 base, reg, expect, got);
	mismatched = 1;
	return -1;
}

/* `got` is evaluated exactly once: register reads have side effects. */
#define EXPECT(reg, expect, got)                                                                   \
	do {                                                                                       \
		unsigned int e_ = (expect), g_ = (got);                                            \
		if (e_ != g_)                                                                      \
			return fail(b, reg, e_, g_);                                               \
	} while (0)

/* Received data reads as IIR id 4 or, with FIFOs and the data below the trigger level, as the
 * character timeout (id 0xc) once four character times passed; Linux treats both alike. */
#define EXPECT_RX_IIR(reg, fifo, got)                                                              \
	do {                                                                                       \
		unsigned int g_ = (got);                                                           \
		if (g_ != ((fifo) | IIR_RDI) && !((fifo) && g_ == ((fifo) | IIR_CTI)))             \
			return fail(b, reg, (fifo) | IIR_RDI, g_);                                 \
	} while (0)

static void echo_drain(void)
{
	uint8_t iir = inb(COM1 + IIR);

	echo.iir_ids |= 1u << ((iir >> 1) & 7);
	/* Empty the receiver completely: an edge-triggered IRQ only fires again once the line
	 * dropped. Bounded for a UART that never clears DR. */
	for (unsigned int i = 0; i < 8192 && (inb(COM1 + LSR) & LSR_DR); i++) {
		uint8_t c = inb(COM1 + RBR);

		echo.total++;
		if (echo.done)
			continue;
		if (c == '\n' || c == '\r')
			echo.done = 1;
		else if (echo.len < ECHO_MAX)
			echo.line[echo.len++] = c;
	}
}

void uart_irq(void)
{
	irq_count++;
	if (echo.active)
		echo_drain();
	lapic_eoi();
}

/* 1 if an interrupt beyond `seen` arrives within the timeout. */
static unsigned int got_irq(uint32_t seen, uint64_t timeout_us)
{
	return wait_count(&irq_count, seen + 1, timeout_us) == 0;
}

/* Interrupts off, receiver and pending status read away. */
static void uart_quiesce(uint16_t b)
{
	outb(b + IER, 0);
	for (int i = 0; i < 64 && (inb(b + LSR) & LSR_DR); i++)
		inb(b + RBR);
	inb(b + LSR);
	inb(b + IIR);
	inb(b + MSR);
}

/* Let the console's last character leave before the port is reprogrammed. */
static void uart_drain_tx(uint16_t b)
{
	for (int i = 0; i < 100000 && (inb(b + LSR) & LSR_IDLE) != LSR_IDLE; i++)
		;
}

static int uart_present(uint16_t b)
{
	outb(b + SCR, 0x5a);
	if (inb(b + SCR) != 0x5a)
		return 0;
	outb(b + SCR, 0xa5);
	return inb(b + SCR) == 0xa5;
}

/* Scratch, IER, LCR, divisor latch, FCR/IIR FIFO bits — what Linux's autoconfig reads. */
static int uart_regs(uint16_t b)
{
	static const uint8_t pat[] = {0x00, 0xff, 0x55, 0xaa, 0xa5, 0x5a, 0x01, 0x80};

	for (unsigned int i = 0; i < sizeof(pat); i++) {
		outb(b + SCR, pat[i]);
		EXPECT("SCR", pat[i], inb(b + SCR));
	}

	/* autoconfig: IER=0 reads 0, IER=0x0f reads 0x0f (low nibble) */
	outb(b + IER, 0);
	EXPECT("IER", 0x00, inb(b + IER) & 0x0f);
	outb(b + IER, 0x0f);
	EXPECT("IER", 0x0f, inb(b + IER) & 0x0f);
	outb(b + IER, 0);
	EXPECT("IER", 0x00, inb(b + IER));

	outb(b + LCR, 0x1b); /* 8 bits, even parity */
	EXPECT("LCR", 0x1b, inb(b + LCR));

	outb(b + LCR, LCR_DLAB | LCR_8N1);
	EXPECT("LCR", LCR_DLAB | LCR_8N1, inb(b + LCR));
	outb(b + DLL, 0x0c);
	outb(b + DLM, 0x00);
	EXPECT("DLL", 0x0c, inb(b + DLL));
	EXPECT("DLM", 0x00, inb(b + DLM));
	outb(b + DLL, 0x34);
	outb(b + DLM, 0x12);
	EXPECT("DLL", 0x34, inb(b + DLL));
	EXPECT("DLM", 0x12, inb(b + DLM));
	/* With DLAB clear, offset 1 is IER again and the latch keeps its value. */
	outb(b + LCR, LCR_8N1);
	EXPECT("IER(DLAB=0)", 0x00, inb(b + IER));
	outb(b + LCR, LCR_DLAB | LCR_8N1);
	EXPECT("DLL(kept)", 0x34, inb(b + DLL));
	EXPECT("DLM(kept)", 0x12, inb(b + DLM));
	outb(b + DLL, 0x01); /* 115200 */
	outb(b + DLM, 0x00);
	EXPECT("DLL", 0x01, inb(b + DLL));
	EXPECT("DLM", 0x00, inb(b + DLM));
	outb(b + LCR, LCR_8N1);
	EXPECT("LCR", LCR_8N1, inb(b + LCR));

	/* FIFOs: IIR bits 7:6 = 11 when enabled (autoconfig: 16550A), 00 when not; the 16750's
	 * 64-byte bit must not read back. */
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	EXPECT("IIR(FIFO-on)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	outb(b + FCR, FCR_ENABLE | FCR_64BYTE);
	EXPECT("IIR(FCR=0x21)", IIR_FIFO, inb(b + IIR) & 0xe0);
	outb(b + FCR, 0);
	EXPECT("IIR(FIFO-off)", IIR_NONE, inb(b + IIR));
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	EXPECT("IIR(FIFO-on)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	EXPECT("LSR(idle)", LSR_IDLE, inb(b + LSR));
	return 0;
}

/* MSR high nibble mirrors MCR in loopback; transmitted bytes come back in order. */
static int uart_loopback(uint16_t b)
{
	uint8_t pat[16];

	/* autoconfig: MCR=LOOP|OUT2|RTS must read MSR high nibble 0x90 */
	outb(b + MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
	EXPECT("MSR(MCR=0x1a)", 0x90, inb(b + MSR) & 0xf0);
	for (unsigned int n = 0; n < 16; n++) {
		unsigned int want = (n & MCR_RTS ? 0x10 : 0) | (n & MCR_DTR ? 0x20 : 0) |
				    (n & MCR_OUT1 ? 0x40 : 0) | (n & MCR_OUT2 ? 0x80 : 0);

		outb(b + MCR, MCR_LOOP | n);
		EXPECT("MCR", MCR_LOOP | n, inb(b + MCR));
		EXPECT("MSR(loop)", want, inb(b + MSR) & 0xf0);
	}

	/* 16 bytes into the FIFO, then read back in order. */
	outb(b + MCR, MCR_LOOP | MCR_RTS | MCR_DTR);
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	EXPECT("LSR(empty)", LSR_IDLE, inb(b + LSR));
	for (unsigned int i = 0; i < 16; i++) {
		pat[i] = (uint8_t)(0xa5 ^ (i * 0x3b));
		outb(b + THR, pat[i]);
		EXPECT("LSR.DR|THRE(written)", LSR_DR | LSR_THRE,
		       inb(b + LSR) & (LSR_DR | LSR_THRE));
	}
	for (unsigned int i = 0; i < 16; i++) {
		EXPECT("LSR.DR(pending)", LSR_DR, inb(b + LSR) & LSR_DR);
		EXPECT("RBR", pat[i], inb(b + RBR));
	}
	EXPECT("LSR(drained)", LSR_IDLE, inb(b + LSR));

	/* Without FIFOs: one byte at a time. */
	outb(b + FCR, 0);
	outb(b + THR, 0x42);
	EXPECT("LSR.DR(no-FIFO)", LSR_DR, inb(b + LSR) & LSR_DR);
	EXPECT("RBR(no-FIFO)", 0x42, inb(b + RBR));
	EXPECT("LSR(no-FIFO,drained)", LSR_IDLE, inb(b + LSR));
	outb(b + MCR, MCR_RTS | MCR_DTR);
	return 0;
}

/* THRE and received-data interrupts through the IOAPIC, as the 8250 driver's startup and
 * interrupt handler see them. The pin is routed and unmasked by the caller. */
static int uart_irq_steps(uint16_t b)
{
	uint32_t n;

	/* (a) IER.THRI with an empty THR interrupts; the IIR read that reports THRE acknowledges
	 * it. Twice, because Linux's UART_BUG_THRE probe toggles IER and expects THRE again. */
	for (int i = 0; i < 2; i++) {
		n = irq_count;
		outb(b + IER, 0);
		outb(b + IER, IER_THRI);
		EXPECT(i ? "irq(THRE-again)" : "irq(THRE)", 1, got_irq(n, IRQ_WAIT_US));
		EXPECT(i ? "IIR(THRE-again)" : "IIR(THRE)", IIR_FIFO | IIR_THRI, inb(b + IIR));
		EXPECT("IIR(THRE-acked)", IIR_FIFO | IIR_NONE, inb(b + IIR));
		EXPECT("LSR(THRE)", LSR_IDLE, inb(b + LSR));
	}
	outb(b + IER, 0);

	/* (b) loopback, IER.RDI: a transmitted byte interrupts; reading RBR clears it. Without
	 * and with FIFOs (trigger level 1). */
	for (int f = 0; f < 2; f++) {
		unsigned int fifo = f ? IIR_FIFO : 0;

		outb(b + FCR, f ? FCR_ENABLE | FCR_CLEAR : 0);
		outb(b + MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS | MCR_DTR);
		outb(b + IER, IER_RDI);
		EXPECT("IIR(rx-idle)", fifo | IIR_NONE, inb(b + IIR));
		n = irq_count;
		outb(b + THR, 0x5a + f);
		EXPECT(f ? "irq(RDI,FIFO)" : "irq(RDI)", 1, got_irq(n, IRQ_WAIT_US));
		EXPECT_RX_IIR(f ? "IIR(RDI,FIFO)" : "IIR(RDI)", fifo, inb(b + IIR));
		EXPECT("LSR.DR(RDI)", LSR_DR, inb(b + LSR) & LSR_DR);
		EXPECT("RBR(RDI)", 0x5a + f, inb(b + RBR));
		EXPECT("IIR(RDI-read)", fifo | IIR_NONE, inb(b + IIR));
		EXPECT("LSR.DR(RDI-read)", 0, inb(b + LSR) & LSR_DR);
		outb(b + IER, 0);
	}

	/* (c) both enabled: received data outranks THRE; THRE shows once RBR was read. */
	n = irq_count;
	outb(b + IER, IER_RDI | IER_THRI);
	EXPECT("irq(THRE,RDI+THRI)", 1, got_irq(n, IRQ_WAIT_US));
	EXPECT("IIR(THRE,RDI+THRI)", IIR_FIFO | IIR_THRI, inb(b + IIR));
	EXPECT("IIR(THRE-acked,RDI+THRI)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	n = irq_count;
	outb(b + THR, 0xc3);
	EXPECT("irq(RDI,RDI+THRI)", 1, got_irq(n, IRQ_WAIT_US));
	EXPECT_RX_IIR("IIR(RDI-before-THRE)", IIR_FIFO, inb(b + IIR));
	EXPECT("RBR(RDI+THRI)", 0xc3, inb(b + RBR));
	EXPECT("IIR(THRE-after-RDI)", IIR_FIFO | IIR_THRI, inb(b + IIR));
	EXPECT("IIR(all-acked)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	outb(b + IER, 0);

	/* Everything acknowledged: the line is low. Interrupts still arriving are counted, not
	 * failed: QEMU's IOAPIC takes every re-assertion of an already high ISA line as a new edge
	 * (e.g. the update after the RBR read in (c) that leaves THRE pending); Linux tolerates
	 * it. berth signals level changes only: its count must be 0 (checked by the pytest). */
	n = irq_count;
	got_irq(n, QUIET_US);
	stray += irq_count - n;
	return 0;
}

static int uart_irqs(uint16_t b, unsigned int irq, uint32_t *gsi, uint32_t *count)
{
	uint32_t n0 = irq_count;
	int r;

	uart_quiesce(b);
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	outb(b + MCR, MCR_DTR | MCR_RTS | MCR_OUT2); /* OUT2 gates the IRQ on PCs, as Linux sets */
	EXPECT("IIR(before-irqs)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	/* The line is low now: unmasking an edge-triggered pin cannot fire on stale state. */
	if (ioapic_route_isa(irq, VEC_UART, lapic_id(), gsi))
		return fail(b, "ioapic-pin(irq)", irq, 0xff);
	r = uart_irq_steps(b);
	outb(b + IER, 0);
	ioapic_mask(*gsi);
	*count = irq_count - n0;
	return r;
}

static int uart_port(uint16_t b, unsigned int irq, uint32_t *gsi, uint32_t *count)
{
	int r;

	outb(b + IER, 0);
	r = uart_regs(b);
	if (!r)
		r = uart_loopback(b);
	if (!r)
		r = uart_irqs(b, irq, gsi, count);
	return r;
}

/* Put the port back as serial_init() left COM1; nothing is printed while a port is in loopback
 * (COM1 is the console). */
static void uart_restore(uint16_t b)
{
	outb(b + IER, 0);
	outb(b + MCR, 0);
	uart_setup(b);
	uart_quiesce(b);
}

void test_uart(void)
{
	uint32_t gsi[NPORTS] = {0}, count[NPORTS] = {0}, irqs = 0;
	unsigned int nports = 0;
	int r = 0;

	mismatched = 0;
	irq_count = stray = 0;
	for (unsigned int i = 0; i < NPORTS; i++) {
		uint16_t b = ports[i].base;

		if (b != COM1 && !uart_present(b))
			continue;
		nports++;
		uart_drain_tx(b);
		r = uart_port(b, ports[i].irq, &gsi[i], &count[i]);
		uart_restore(b);
		irqs += count[i];
		if (r)
			break;
	}
	for (unsigned int j = 0; j < NPORTS; j++)
		if (count[j])
			kprintf("berth-info uart port=0x%x irq=%u gsi=%u irqs=%u\n", ports[j].base,
				ports[j].irq, gsi[j], count[j]);
	if (r)
		kprintf("berth-test uart FAIL %s\n", mismatch);
	else
		kprintf("berth-test uart PASS ports=%u irqs=%u stray=%u\n", nports, irqs, stray);
}

/* ---- uart-ext: 16550A details beyond what Linux's driver depends on (QEMU implements them). */

static int ext_overrun_nofifo(uint16_t b)
{
	outb(b + FCR, 0);
	outb(b + THR, 0x11);
	outb(b + THR, 0x22);
	/* Without FIFOs the second byte overwrites RBR and sets OE; reading LSR clears OE. */
	EXPECT("LSR(overrun)", LSR_IDLE | LSR_OE | LSR_DR, inb(b + LSR));
	EXPECT("LSR(OE-read)", LSR_IDLE | LSR_DR, inb(b + LSR));
	EXPECT("RBR(overrun)", 0x22, inb(b + RBR));
	EXPECT("LSR(overrun-drained)", LSR_IDLE, inb(b + LSR));
	return 0;
}

static int ext_overrun_fifo(uint16_t b)
{
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	for (unsigned int i = 0; i < 17; i++)
		outb(b + THR, 0x40 + i);
	/* A 16-byte FIFO: the 17th byte is lost and OE set. */
	EXPECT("LSR(FIFO-overrun)", LSR_IDLE | LSR_OE | LSR_DR, inb(b + LSR));
	for (unsigned int i = 0; i < 16; i++)
		EXPECT("RBR(FIFO-overrun)", 0x40 + i, inb(b + RBR));
	EXPECT("LSR(FIFO-overrun-drained)", LSR_IDLE, inb(b + LSR));
	return 0;
}

static int ext_fifo_flush(uint16_t b)
{
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR);
	outb(b + THR, 0x33);
	outb(b + FCR, FCR_ENABLE | FCR_CLEAR_RX);
	EXPECT("LSR(FCR-clear-rx)", LSR_IDLE, inb(b + LSR));
	outb(b + THR, 0x44);
	outb(b + FCR, 0); /* changing FCR.enable empties both FIFOs */
	EXPECT("LSR(FIFO-disabled)", LSR_IDLE, inb(b + LSR));
	return 0;
}

static int ext_rx_timeout(uint16_t b)
{
	uint64_t end;
	uint8_t iir;

	outb(b + FCR, FCR_ENABLE | FCR_CLEAR | FCR_TRIG14);
	outb(b + IER, IER_RDI);
	outb(b + THR, 0x55);
	/* Below the trigger level there is no received-data interrupt; after four character times
	 * (~350 us at 115200) the character timeout. A slow host may already be past that. */
	iir = inb(b + IIR);
	if (iir != (IIR_FIFO | IIR_CTI))
		EXPECT("IIR(below-trigger)", IIR_FIFO | IIR_NONE, iir);
	end = tsc_after_us(CHAR_TIMEOUT_US);
	while (iir != (IIR_FIFO | IIR_CTI) && rdtsc() < end)
		iir = inb(b + IIR);
	EXPECT("IIR(char-timeout)", IIR_FIFO | IIR_CTI, iir);
	EXPECT("RBR(char-timeout)", 0x55, inb(b + RBR));
	EXPECT("IIR(timeout-read)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	/* At the trigger level: received data (or, if the host paused us for four character
	 * times between the writes, the timeout again). */
	for (unsigned int i = 0; i < 14; i++)
		outb(b + THR, 0x60 + i);
	EXPECT_RX_IIR("IIR(at-trigger)", IIR_FIFO, inb(b + IIR));
	for (unsigned int i = 0; i < 14; i++)
		EXPECT("RBR(at-trigger)", 0x60 + i, inb(b + RBR));
	EXPECT("IIR(trigger-read)", IIR_FIFO | IIR_NONE, inb(b + IIR));
	return 0;
}

static int ext_line_status_irq(uint16_t b)
{
	outb(b + FCR, 0);
	outb(b + IER, IER_RLSI);
	outb(b + THR, 0x11);
	outb(b + THR, 0x22);
	EXPECT("IIR(RLSI)", IIR_RLSI, inb(b + IIR));
	inb(b + LSR);
	EXPECT("IIR(RLSI-read)", IIR_NONE, inb(b + IIR));
	inb(b + RBR);
	return 0;
}

static const struct {
	const char *name;
	int (*run)(uint16_t b);
} ext_checks[] = {
    {"overrun-nofifo", ext_overrun_nofifo},   {"overrun-fifo", ext_overrun_fifo},
    {"fifo-flush", ext_fifo_flush},	      {"rx-timeout", ext_rx_timeout},
    {"line-status-irq", ext_line_status_irq},
};
#define NEXT (sizeof(ext_checks) / sizeof(ext_checks[0]))

void test_uart_ext(void)
{
	static char msgs[NPORTS][NEXT][128];
	int bad[NPORTS][NEXT] = {{0}};
	char failed[128] = "";
	size_t flen = 0;
	int nbad = 0;

	for (unsigned int p = 0; p < NPORTS; p++) {
		uint16_t b = ports[p].base;

		if (b != COM1 && !uart_present(b))
			continue;
		uart_drain_tx(b);
		for (unsigned int c = 0; c < NEXT; c++) {
			uart_quiesce(b);
			outb(b + MCR, MCR_LOOP | MCR_RTS | MCR_DTR);
			mismatched = 0;
			if (ext_checks[c].run(b)) {
				bad[p][c] = 1;
				memcpy(msgs[p][c], mismatch, sizeof(mismatch));
			}
			outb(b + IER, 0);
		}
		uart_restore(b);
	}
	for (unsigned int c = 0; c < NEXT; c++) {
		int any = 0;

		for (unsigned int p = 0; p < NPORTS; p++) {
			if (!bad[p][c])
				continue;
			kprintf("berth-info uart-ext check=%s %s\n", ext_checks[c].name,
				msgs[p][c]);
			any = 1;
		}
		if (any && flen < sizeof(failed) - 1) {
			flen += snprintf(failed + flen, sizeof(failed) - flen, "%s%s",
					 nbad ? "," : "", ext_checks[c].name);
			nbad++;
		}
	}
	if (nbad)
		kprintf("berth-test uart-ext FAIL failed=%s\n", failed);
	else
		kprintf("berth-test uart-ext PASS checks=%u\n", (unsigned int)NEXT);
}

/* ---- echo: host input through COM1's received-data interrupt. */

void test_echo(void)
{
	char shown[ECHO_MAX + 1];
	uint32_t gsi;
	int r;

	memset(&echo, 0, sizeof(echo));
	irq_count = 0;
	uart_drain_tx(COM1);
	uart_quiesce(COM1);
	outb(COM1 + FCR, FCR_ENABLE | FCR_CLEAR | FCR_TRIG14);
	outb(COM1 + MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
	if (ioapic_route_isa(4, VEC_UART, lapic_id(), &gsi)) {
		kprintf("berth-test echo FAIL reason=no-ioapic-pin\n");
		return;
	}
	echo.active = 1;
	outb(COM1 + IER, IER_RDI);
	kprintf("berth-guest: echo ready\n");
	r = wait_until(&echo.done, ECHO_WAIT_US);
	outb(COM1 + IER, 0);
	ioapic_mask(gsi);
	echo.active = 0;
	outb(COM1 + MCR, MCR_DTR | MCR_RTS);

	for (uint32_t i = 0; i < echo.len; i++) {
		uint8_t c = echo.line[i];

		shown[i] = c < 0x20 || c > 0x7e || c == '"' ? '?' : (char)c;
	}
	shown[echo.len] = 0;
	kprintf("berth-info echo irqs=%u bytes=%u iir_ids=0x%x\n", irq_count, echo.total,
		echo.iir_ids);
	if (r)
		kprintf("berth-test echo FAIL reason=timeout got=%u\n", echo.total);
	else
		kprintf("berth-test echo PASS got=\"%s\" irqs=%u\n", shown, irq_count);
}
