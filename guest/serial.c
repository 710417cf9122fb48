/* serial.c — COM1 16550 at 0x3f8, 115200 8N1, polled output under a spinlock; kprintf(). */
#include "guest.h"
#include "x86.h"

#define COM1 0x3f8
#define LSR_THRE 0x20

static volatile uint32_t serial_lock;

/* The console's register setup; the uart test also uses it to put a port back after its checks. */
void uart_setup(uint16_t base)
{
	outb(base + 1, 0x00); /* IER: no interrupts */
	outb(base + 3, 0x80); /* LCR: DLAB */
	outb(base + 0, 0x01); /* divisor 1 = 115200 baud */
	outb(base + 1, 0x00);
	outb(base + 3, 0x03); /* 8N1 */
	outb(base + 2, 0xc7); /* FIFO on, cleared, 14-byte threshold */
	outb(base + 4, 0x03); /* DTR, RTS; OUT2 off: no IRQ */
}

void serial_init(void)
{
	uart_setup(COM1);
}

static void serial_putc(char c)
{
	unsigned int spins = 0;

	/* Bounded wait: a missing UART must not hang the guest. */
	while (!(inb(COM1 + 5) & LSR_THRE) && ++spins < 100000)
		;
	outb(COM1, c);
}

static void lock(void)
{
	while (__atomic_exchange_n(&serial_lock, 1, __ATOMIC_ACQUIRE))
		while (serial_lock)
			cpu_relax();
}

static void unlock(void)
{
	__atomic_store_n(&serial_lock, 0, __ATOMIC_RELEASE);
}

/* The fatal-exception path may interrupt a holder of the lock on the same CPU. */
void serial_force_unlock(void)
{
	unlock();
}

void serial_write(const char *s, size_t n)
{
	lock();
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n')
			serial_putc('\r');
		serial_putc(s[i]);
	}
	unlock();
}

void kprintf(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = sizeof(buf) - 1;
	serial_write(buf, n);
}
