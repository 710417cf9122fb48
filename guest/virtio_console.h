/* virtio_console.h — virtio-console MULTIPORT (virtio 1.2, 5.3): control protocol, ring-3 job. */
#ifndef GUEST_VIRTIO_CONSOLE_H
#define GUEST_VIRTIO_CONSOLE_H

#include <stdint.h>

#include "virtio.h"

#define VIRTIO_CONSOLE_F_SIZE (1ULL << 0)
#define VIRTIO_CONSOLE_F_MULTIPORT (1ULL << 1)

/* queues: port 0 receiveq 0 / transmitq 1, control 2 / 3, port p >= 1: 2p + 2 / 2p + 3 */
#define CON_CTRL_RX 2
#define CON_CTRL_TX 3
#define con_port_rxq(p) ((p) == 0 ? 0u : 2u * (p) + 2)
#define con_port_txq(p) ((p) == 0 ? 1u : 2u * (p) + 3)

/* struct virtio_console_control events */
#define CON_DEVICE_READY 0
#define CON_DEVICE_ADD 1
#define CON_DEVICE_REMOVE 2
#define CON_PORT_READY 3
#define CON_CONSOLE_PORT 4
#define CON_RESIZE 5
#define CON_PORT_OPEN 6
#define CON_PORT_NAME 7

#define CON_MAX_PORTS 32 /* port ids we track (queue indices up to VIRTIO_MAX_QUEUES) */
#define CON_NAME_MAX 63
#define CON_LINE_MAX 200
#define CON_CBUFS 32 /* control receive buffers */
#define CON_CBUF 256 /* each: 8-byte header + name */
#define CON_PBUFS 16 /* port receive buffers */
#define CON_PBUF 256
#define CON_TXBUF 512 /* one outgoing message (control or data) */

#define CON_MODE_DISCOVER 1 /* learn the ports and their names, open nothing */
#define CON_MODE_TALK 2	    /* open port `port`, say hello, echo one line */

#define CON_FAIL_RING 1
#define CON_FAIL_POST 2
#define CON_FAIL_TIMEOUT 3
#define CON_FAIL_PROTO 4

struct con_job {
	struct virtq *crx, *ctx, *prx, *ptx; /* prx/ptx: the talking port's queues (TALK) */
	uint8_t *cbufs;			     /* CON_CBUFS * CON_CBUF */
	uint8_t *pbufs;			     /* CON_PBUFS * CON_PBUF */
	uint8_t *txbuf;			     /* CON_TXBUF */
	uint32_t mode, port, max_ports;
	uint64_t tsc_khz, deadline, quiet_ms;
	const char *hello;
	/* what the device told us, by port id */
	uint8_t added[CON_MAX_PORTS], named[CON_MAX_PORTS], host_open[CON_MAX_PORTS];
	uint8_t console[CON_MAX_PORTS];
	char names[CON_MAX_PORTS][CON_NAME_MAX + 1];
	/* results */
	char line[CON_LINE_MAX + 1];
	uint32_t line_len, line_done;
	uint32_t ctrl_msgs, ctrl_sent, rx_bytes, tx_bytes, unknown_events, host_open_seen;
	uint32_t fail, stage;
	uint64_t fail_info;
};
uint64_t u_con_job(uint64_t job);

/* virtio_console.c (ring 0) */
struct con_dev {
	struct virtio_dev v;
	uint32_t max_ports; /* max_nr_ports from the config */
};
int con_find(struct con_dev *c);
int con_start(struct con_dev *c, int with_port, uint32_t port);

#endif
