/* 8250/16550A UART: 16-byte receive FIFO with trigger levels and character timeout, overrun,
 * loopback, all four interrupt sources. */
#include "vmm/serial.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/b64.h"
#include "common/evloop.h"
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
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_TIMEOUT 0x0c
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_ERRORS 0x1e /* OE, PE, FE, BI */
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
#define MSR_LINES_CONNECTED (MSR_DCD | MSR_DSR | MSR_CTS)

static const unsigned trigger_levels[4] = {1, 4, 8, 14};

static unsigned fifo_depth(const struct serial *s)
{
	return (s->fcr & FCR_ENABLE) ? SERIAL_FIFO : 1;
}

static unsigned trigger_level(const struct serial *s)
{
	return (s->fcr & FCR_ENABLE) ? trigger_levels[s->fcr >> 6] : 1;
}

/* The modem-status lines (MSR bits 7:4): from MCR in loopback, otherwise a connected peer. */
static uint8_t modem_lines(uint8_t mcr)
{
	if (!(mcr & MCR_LOOP))
		return MSR_LINES_CONNECTED;
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

/* Highest-priority pending interrupt, as IIR reports it. */
static uint8_t pending_iir(const struct serial *s)
{
	if ((s->ier & IER_RLSI) && (s->lsr & LSR_ERRORS))
		return IIR_RLSI;
	if ((s->ier & IER_RDI) && s->fifo_count >= trigger_level(s))
		return IIR_RDI;
	if ((s->ier & IER_RDI) && s->timeout_ipending && s->fifo_count)
		return IIR_TIMEOUT;
	if ((s->ier & IER_THRI) && s->thr_ipending)
		return IIR_THRI;
	if ((s->ier & IER_MSI) && s->msr_delta)
		return IIR_MSI;
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

/* Four character times at the programmed line settings, in nanoseconds. */
static uint64_t char_timeout_ns(const struct serial *s)
{
	unsigned divisor = (unsigned)s->dlm << 8 | s->dll;
	unsigned bits =
	    1 + 5 + (s->lcr & 3) + ((s->lcr & 0x08) ? 1 : 0) + ((s->lcr & 0x04) ? 2 : 1);
	if (!divisor)
		divisor = 1;
	return 4ULL * bits * divisor * 1000000000ULL / 115200;
}

/* Restart the character-timeout timer after FIFO activity (or stop it when it cannot fire). */
static void rearm_timeout(struct serial *s)
{
	s->timeout_ipending = false;
	if (s->timer_fd < 0)
		return;
	struct itimerspec its = {0};
	if ((s->fcr & FCR_ENABLE) && s->fifo_count && s->fifo_count < trigger_level(s)) {
		uint64_t ns = char_timeout_ns(s);
		its.it_value.tv_sec = (time_t)(ns / 1000000000ULL);
		its.it_value.tv_nsec = (long)(ns % 1000000000ULL);
	}
	timerfd_settime(s->timer_fd, 0, &its, NULL);
}

static void on_timeout(void *opaque, int fd, uint32_t events)
{
	struct serial *s = opaque;
	uint64_t n;
	(void)events;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	pthread_mutex_lock(&s->lock);
	if (s->fifo_count) {
		s->timeout_ipending = true;
		update_irq(s);
	}
	pthread_mutex_unlock(&s->lock);
}

/* A character arrives on the wire (host input or loopback). */
static void rx_char(struct serial *s, uint8_t b)
{
	if (s->fifo_count >= fifo_depth(s)) {
		s->lsr |= LSR_OE;
		if (!(s->fcr & FCR_ENABLE)) /* the holding register is overwritten */
			s->fifo[s->fifo_head] = b;
		return; /* with FIFOs the character in the shift register is lost */
	}
	s->fifo[(s->fifo_head + s->fifo_count) % SERIAL_FIFO] = b;
	s->fifo_count++;
	s->lsr |= LSR_DR;
}

/* Move queued host input into the FIFO while it has room (the host side never overruns). */
static void fill_from_host(struct serial *s)
{
	bool moved = false;
	while (s->hostq_count && s->fifo_count < fifo_depth(s) && !(s->mcr & MCR_LOOP)) {
		rx_char(s, s->hostq[s->hostq_head]);
		s->hostq_head = (s->hostq_head + 1) % SERIAL_HOSTQ;
		s->hostq_count--;
		moved = true;
	}
	if (moved)
		rearm_timeout(s);
}

static void clear_rx(struct serial *s)
{
	s->fifo_head = s->fifo_count = 0;
	s->lsr &= (uint8_t)~LSR_DR;
	s->timeout_ipending = false;
}

int serial_init(struct serial *s, const char *tag, struct serial_backend *be, unsigned gsi,
		void (*set_irq)(void *opaque, unsigned gsi, int level), void *irq_opaque,
		struct evloop *loop)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	snprintf(s->tag, sizeof(s->tag), "%s", tag);
	s->be = be;
	s->gsi = gsi;
	s->set_irq = set_irq;
	s->irq_opaque = irq_opaque;
	s->lsr = LSR_THRE | LSR_TEMT;
	s->mcr = MCR_OUT2;
	s->dll = 1;    /* 115200 baud */
	s->lcr = 0x03; /* 8N1 */
	s->timer_fd = -1;
	s->hostq = malloc(SERIAL_HOSTQ);
	if (!s->hostq)
		return -ENOMEM;
	if (loop) {
		s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (s->timer_fd < 0)
			return -errno;
		int r = evloop_add(loop, s->timer_fd, EPOLLIN, on_timeout, s);
		if (r)
			return r;
		s->loop = loop;
	}
	if (be) {
		pthread_mutex_lock(&s->lock);
		be->dev = s;
		pthread_mutex_unlock(&s->lock);
	}
	return 0;
}

void serial_destroy(struct serial *s)
{
	if (s->be && s->be->dev == s)
		s->be->dev = NULL;
	if (s->timer_fd >= 0) {
		if (s->loop)
			evloop_del(s->loop, s->timer_fd);
		close(s->timer_fd);
	}
	if (s->dropped)
		log_warn(s->tag, "%llu input bytes were dropped: the guest did not read them",
			 (unsigned long long)s->dropped);
	free(s->hostq);
	s->hostq = NULL;
	pthread_mutex_destroy(&s->lock);
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t i;
	pthread_mutex_lock(&s->lock);
	if (s->mcr & MCR_LOOP) { /* in loopback the line is disconnected from the host */
		pthread_mutex_unlock(&s->lock);
		return len;
	}
	for (i = 0; i < len && s->hostq_count < SERIAL_HOSTQ; i++) {
		s->hostq[(s->hostq_head + s->hostq_count) % SERIAL_HOSTQ] = buf[i];
		s->hostq_count++;
	}
	s->dropped += len - i;
	fill_from_host(s);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return i;
}

static void transmit(struct serial *s, uint8_t b)
{
	if (s->mcr & MCR_LOOP) {
		rx_char(s, b);
		rearm_timeout(s);
		return;
	}
	if (s->be)
		serial_backend_output(s->be, &b, 1);
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
		if (s->fifo_count) {
			v = s->fifo[s->fifo_head];
			s->fifo_head = (s->fifo_head + 1) % SERIAL_FIFO;
			s->fifo_count--;
		}
		if (!s->fifo_count)
			s->lsr &= (uint8_t)~LSR_DR;
		rearm_timeout(s);
		fill_from_host(s);
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
		s->lsr &= (uint8_t)~LSR_ERRORS; /* error bits clear on read */
		break;
	case REG_MSR:
		v = modem_lines(s->mcr) | s->msr_delta;
		s->msr_delta = 0;
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
		/* Switching the FIFOs on or off, or the clear bit, empties the receiver. */
		if ((v ^ s->fcr) & FCR_ENABLE || (v & FCR_CLEAR_RX))
			clear_rx(s);
		s->fcr = v & 0xc9; /* enable, DMA mode, trigger level; clear bits self-reset */
		fill_from_host(s);
		rearm_timeout(s);
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR: {
		uint8_t before = modem_lines(s->mcr);
		s->mcr = v & 0x1f;
		uint8_t after = modem_lines(s->mcr), changed = before ^ after;
		if (changed & MSR_CTS)
			s->msr_delta |= 0x01;
		if (changed & MSR_DSR)
			s->msr_delta |= 0x02;
		if ((before & MSR_RI) && !(after & MSR_RI)) /* trailing edge of RI */
			s->msr_delta |= 0x04;
		if (changed & MSR_DCD)
			s->msr_delta |= 0x08;
		fill_from_host(s); /* leaving loopback reconnects the host */
		break;
	}
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

/* ---- save/restore ---- */

json_t *serial_save(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	uint8_t fifo[SERIAL_FIFO];
	for (unsigned i = 0; i < s->fifo_count; i++)
		fifo[i] = s->fifo[(s->fifo_head + i) % SERIAL_FIFO];
	char *f = b64_encode(fifo, s->fifo_count);
	json_t *o =
	    f ? json_pack("{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:b,s:b,s:s}", "ier", s->ier, "lcr",
			  s->lcr, "mcr", s->mcr, "lsr", s->lsr, "msr_delta", s->msr_delta, "scr",
			  s->scr, "dll", s->dll, "dlm", s->dlm, "fcr", s->fcr, "thr_ipending",
			  s->thr_ipending, "timeout_ipending", s->timeout_ipending, "rx_fifo", f)
	      : NULL;
	pthread_mutex_unlock(&s->lock);
	free(f);
	return o;
}

int serial_load(struct serial *s, json_t *o, char *msg, size_t msglen)
{
	static const char *const regs[] = {"ier", "lcr", "mcr", "lsr", "msr_delta",
					   "scr", "dll", "dlm", "fcr"};
	uint8_t v[9];
	for (unsigned i = 0; i < 9; i++) {
		json_t *j = json_object_get(o, regs[i]);
		if (!json_is_integer(j) || json_integer_value(j) < 0 ||
		    json_integer_value(j) > 255) {
			snprintf(msg, msglen, "%s: field '%s': missing or not a byte", s->tag,
				 regs[i]);
			return -EINVAL;
		}
		v[i] = (uint8_t)json_integer_value(j);
	}
	size_t n = 0;
	const char *f = json_string_value(json_object_get(o, "rx_fifo"));
	uint8_t *fifo = f ? b64_decode(f, &n) : NULL;
	if (!fifo || n > SERIAL_FIFO) {
		snprintf(msg, msglen, "%s: field 'rx_fifo': missing or longer than the FIFO",
			 s->tag);
		free(fifo);
		return -EINVAL;
	}
	pthread_mutex_lock(&s->lock);
	s->ier = v[0], s->lcr = v[1], s->mcr = v[2], s->lsr = v[3], s->msr_delta = v[4];
	s->scr = v[5], s->dll = v[6], s->dlm = v[7], s->fcr = v[8];
	s->thr_ipending = json_is_true(json_object_get(o, "thr_ipending"));
	s->timeout_ipending = json_is_true(json_object_get(o, "timeout_ipending"));
	memcpy(s->fifo, fifo, n);
	s->fifo_head = 0;
	s->fifo_count = (unsigned)n;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	free(fifo);
	return 0;
}
