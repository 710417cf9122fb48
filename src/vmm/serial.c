/* 8250/16550A UART as Linux's 8250 driver expects: FIFO, IER/IIR interrupts, loopback, scratch. */
#include "vmm/serial.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

enum {
	REG_RBR_THR = 0,
	REG_IER = 1,
	REG_IIR_FCR = 2,
	REG_LCR = 3,
	REG_MCR = 4,
	REG_LSR = 5,
	REG_MSR = 6,
	REG_SCR = 7,
};

#define LCR_DLAB 0x80
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IER_RLSI 0x04
#define IER_MSI 0x08
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

void serial_init(struct serial *s, const char *tag, struct serial_backend *be, unsigned gsi,
		 void (*set_irq)(void *opaque, unsigned gsi, int level), void *irq_opaque)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	s->be = be;
	s->gsi = gsi;
	s->set_irq = set_irq;
	s->irq_opaque = irq_opaque;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->msr = MSR_DCD | MSR_DSR | MSR_CTS;
	s->mcr = MCR_OUT2;
	if (be) {
		pthread_mutex_lock(&s->lock);
		be->dev = s;
		pthread_mutex_unlock(&s->lock);
	}
}

void serial_destroy(struct serial *s)
{
	if (s->be && s->be->dev == s)
		s->be->dev = NULL;
	pthread_mutex_destroy(&s->lock);
}

/* Highest-priority pending interrupt, as IIR reports it. */
static uint8_t pending_iir(const struct serial *s)
{
	if ((s->ier & IER_RDI) && s->rx_count)
		return IIR_RDI;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return IIR_THRI;
	return IIR_NONE;
}

static void update_irq(struct serial *s)
{
	int level = pending_iir(s) != IIR_NONE;
	if (level != s->irq_level) {
		s->irq_level = level;
		if (s->set_irq)
			s->set_irq(s->irq_opaque, s->gsi, level);
	}
}

static void push_rx(struct serial *s, uint8_t b)
{
	if (s->rx_count == SERIAL_RX_BUF) {
		s->lsr |= 0x02; /* overrun */
		return;
	}
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_BUF] = b;
	s->rx_count++;
	s->lsr |= LSR_DR;
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		push_rx(s, b);
		return;
	}
	if (s->be)
		serial_backend_output(s->be, &b, 1);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t i;
	pthread_mutex_lock(&s->lock);
	if (s->mcr & MCR_LOOP) { /* in loopback the line is disconnected from the host */
		pthread_mutex_unlock(&s->lock);
		return len;
	}
	for (i = 0; i < len && s->rx_count < SERIAL_RX_BUF; i++)
		push_rx(s, buf[i]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return i;
}

static uint8_t loop_msr(uint8_t mcr)
{
	uint8_t m = 0;
	if (mcr & MCR_RTS)
		m |= MSR_CTS;
	if (mcr & MCR_DTR)
		m |= MSR_DSR;
	if (mcr & MCR_OUT1)
		m |= MSR_RI;
	if (mcr & MCR_OUT2)
		m |= MSR_DCD;
	return m;
}

uint64_t serial_read(void *opaque, uint64_t offset, unsigned size)
{
	struct serial *s = opaque;
	uint8_t v = 0xff;
	(void)size;
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case REG_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			v = s->dll;
			break;
		}
		v = 0;
		if (s->rx_count) {
			v = s->rx[s->rx_head];
			s->rx_head = (s->rx_head + 1) % SERIAL_RX_BUF;
			s->rx_count--;
		}
		if (!s->rx_count)
			s->lsr &= (uint8_t)~LSR_DR;
		break;
	case REG_IER:
		v = (s->lcr & LCR_DLAB) ? s->dlm : s->ier;
		break;
	case REG_IIR_FCR:
		v = pending_iir(s);
		if (v == IIR_THRI)
			s->thr_ipending = false; /* reading IIR acknowledges THRE */
		if (s->fcr & FCR_ENABLE)
			v |= IIR_FIFO;
		break;
	case REG_LCR:
		v = s->lcr;
		break;
	case REG_MCR:
		v = s->mcr;
		break;
	case REG_LSR:
		v = s->lsr;
		s->lsr &= (uint8_t)~0x1e; /* error bits clear on read */
		break;
	case REG_MSR:
		v = (s->mcr & MCR_LOOP) ? loop_msr(s->mcr) : s->msr;
		break;
	case REG_SCR:
		v = s->scr;
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return v;
}

void serial_write(void *opaque, uint64_t offset, unsigned size, uint64_t val)
{
	struct serial *s = opaque;
	uint8_t v = (uint8_t)val;
	(void)size;
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case REG_RBR_THR:
		if (s->lcr & LCR_DLAB) {
			s->dll = v;
			break;
		}
		s->thr_ipending = false;
		transmit(s, v);
		/* The byte left at once: the holding register is empty again. */
		s->lsr |= LSR_THRE | LSR_TEMT;
		s->thr_ipending = true;
		break;
	case REG_IER:
		if (s->lcr & LCR_DLAB) {
			s->dlm = v;
			break;
		}
		/* Enabling THRE interrupts while the holding register is empty raises one. */
		if (!(s->ier & IER_THRI) && (v & IER_THRI) && (s->lsr & LSR_THRE))
			s->thr_ipending = true;
		s->ier = v & (IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
		break;
	case REG_IIR_FCR:
		if (v & FCR_CLEAR_RX) {
			s->rx_head = s->rx_count = 0;
			s->lsr &= (uint8_t)~LSR_DR;
		}
		s->fcr = v & 0xc9; /* enable, DMA mode, trigger level; clear bits self-reset */
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & 0x1f;
		break;
	case REG_LSR:
	case REG_MSR:
		break; /* read-only */
	case REG_SCR:
		s->scr = v;
		break;
	}
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}
