/* 8250/16550A UART (COM1/COM2) and its host backends: stdout, file, pty, unix socket. */
#ifndef BERTH_SERIAL_H
#define BERTH_SERIAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <termios.h>

#include "vmm/config.h"

struct evloop;

/* The host side; lives across VM restarts so a pty or socket client stays connected. */
struct serial_backend {
	enum serial_kind kind;
	char tag[16];
	int in_fd;     /* input from the host: stdin, pty master, socket client; -1 if none */
	int out_fd;    /* output: stdout, file, pty master, socket client; -1 to drop */
	int listen_fd; /* unix socket server */
	char *sock_path;
	bool tty_raw; /* stdin is a terminal we put in raw mode */
	struct termios saved;
	bool escape; /* saw Ctrl-A */
	struct evloop *loop;
	void (*quit)(void *opaque); /* Ctrl-A x */
	void *quit_opaque;
	struct serial *dev; /* current device fed by input, may be NULL */
	/* Socket backends keep the latest output and replay it to a client that connects later. */
	pthread_mutex_t
	    out_lock; /* history and out_fd: vCPU threads write, the event loop accepts */
	uint8_t *history;
	size_t hist_len, hist_head;
	uint64_t total; /* bytes of output ever put in the history */
	uint64_t sent;	/* how many of them the socket client has got (it catches up from the
			 * history when its socket has room again, unless it fell further behind) */
	uint64_t lost;	/* bytes a slow client missed */
};

#define SERIAL_HISTORY 65536

/* Send guest output to the backend (and its history). Called with the device lock held. */
void serial_backend_output(struct serial_backend *be, const uint8_t *buf, size_t len);

#define SERIAL_FIFO 16	   /* the 16550A's receive FIFO */
#define SERIAL_HOSTQ 65536 /* host input waiting for room in the FIFO */

struct serial {
	pthread_mutex_t lock;
	char tag[16];
	struct serial_backend *be;
	unsigned gsi;
	void (*set_irq)(void *opaque, unsigned gsi, int level);
	void *irq_opaque;
	int irq_level;
	struct evloop *loop;
	int timer_fd; /* character timeout */

	uint8_t ier, lcr, mcr, lsr, msr_delta, scr, dll, dlm, fcr;
	bool thr_ipending;
	bool timeout_ipending;
	uint8_t fifo[SERIAL_FIFO]; /* receive FIFO (depth 1 with FIFOs disabled) */
	unsigned fifo_head, fifo_count;
	uint8_t *hostq; /* bytes from the host not yet in the FIFO (the line is flow-controlled) */
	unsigned hostq_head, hostq_count;
	uint64_t dropped; /* host bytes lost because hostq was full */
};

/* Open the backend (before the VM is created). -errno; the message goes to the log. */
int serial_backend_open(struct serial_backend *be, const struct serial_cfg *cfg, const char *tag);
/* Watch input/listen fds on the loop. */
int serial_backend_attach(struct serial_backend *be, struct evloop *loop);
void serial_backend_close(struct serial_backend *be);

int serial_init(struct serial *s, const char *tag, struct serial_backend *be, unsigned gsi,
		void (*set_irq)(void *opaque, unsigned gsi, int level), void *irq_opaque,
		struct evloop *loop);
void serial_destroy(struct serial *s);

/* Save/restore the UART registers and the receive FIFO. */
json_t *serial_save(struct serial *s);
int serial_load(struct serial *s, json_t *o, char *msg, size_t msglen);
/* Register access, offset 0..7. */
uint64_t serial_read(void *opaque, uint64_t offset, unsigned size);
void serial_write(void *opaque, uint64_t offset, unsigned size, uint64_t val);
/* Bytes from the host: queued, then fed to the FIFO as the guest reads. Returns how many were
 * taken. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

#endif
