/* virtio_net.h — virtio-net (virtio 1.2, 5.1): device bring-up and the `net` test's ring-3 job. */
#ifndef GUEST_VIRTIO_NET_H
#define GUEST_VIRTIO_NET_H

#include <stdint.h>

#include "virtio.h"

/* feature bits */
#define VIRTIO_NET_F_CSUM (1ULL << 0)
#define VIRTIO_NET_F_GUEST_CSUM (1ULL << 1)
#define VIRTIO_NET_F_MAC (1ULL << 5)
#define VIRTIO_NET_F_MRG_RXBUF (1ULL << 15)
#define VIRTIO_NET_F_STATUS (1ULL << 16)
#define VIRTIO_NET_S_LINK_UP 1

#define NET_RXQ 0
#define NET_TXQ 1

/* struct virtio_net_hdr_v1: with VERSION_1 the header always has num_buffers (12 bytes). */
struct virtio_net_hdr {
	uint8_t flags, gso_type;
	uint16_t hdr_len, gso_size, csum_start, csum_offset, num_buffers;
};
#define NET_HDR_LEN 12
_Static_assert(sizeof(struct virtio_net_hdr) == NET_HDR_LEN, "virtio_net_hdr_v1");

#define NET_RX_BUFS 128	     /* receive buffers posted at most */
#define NET_RXBUF_MRG 1024   /* with MRG_RXBUF: small, so MTU-sized frames span two buffers */
#define NET_RXBUF_PLAIN 2048 /* without: one buffer holds header + 1514-byte frame */
#define NET_TX_SLOTS 64
#define NET_TX_SLOT 2048
#define NET_FRAME_MAX 9216 /* reassembled frame (header included); larger ones are dropped */
#define NET_MAX_COUNT 256  /* datagrams sent at most */

/* The `net` protocol (also in tests/system/test_guest_net.py): UDP port 7777 both ends; payload
 * = "BRTH", origin IPv4 address (4 bytes), sequence (u32 BE), FNV-1a 32 of bytes 16.. (u32 BE),
 * then byte i (i >= 16) = (i * 7 + seq * 13) & 0xff. Datagram k of `count` carries 64..1400
 * bytes rising with k; the last one 1472 (a 1500-byte IP packet). */
#define NET_UDP_PORT 7777
#define NET_PAYLOAD_MIN 64
#define NET_PAYLOAD_MAX 1400
#define NET_PAYLOAD_MTU 1472

#define NET_FAIL_RING 1
#define NET_FAIL_POST 2
#define NET_FAIL_TXFULL 3

/* One run of the protocol, polled from ring 3. */
struct net_job {
	struct virtq *rxq, *txq;
	uint8_t *rxbufs; /* nrx * rxbuf_len */
	uint32_t nrx, rxbuf_len, mrg;
	uint8_t *txbufs; /* NET_TX_SLOTS * NET_TX_SLOT */
	uint8_t *frame;	 /* NET_FRAME_MAX: a received frame, reassembled */
	uint8_t mac[6], peer_mac[6];
	uint32_t ip, peer_ip; /* host byte order */
	uint32_t count, expect, expect_echo;
	uint64_t tsc_khz, deadline;
	/* receive reassembly state */
	uint32_t flen, left, toolong;
	/* transmit slots */
	uint16_t tx_free[NET_TX_SLOTS];
	uint32_t ntx_free;
	uint16_t ip_id;
	uint8_t echoed[NET_MAX_COUNT];
	/* results */
	uint32_t peer_known, tx, rx, echo, arp, icmp, arp_sent;
	uint32_t frames, other, bad, bad_csum, dropped, max_bufs, merged, rx_other_port;
	uint32_t fail;
	uint64_t fail_info, t_peer, t_end;
};
uint64_t u_net_job(uint64_t job);

/* virtio_net.c (ring 0) */
struct net_dev {
	struct virtio_dev v;
	uint8_t mac[6];
	uint16_t status; /* config status (LINK_UP), if VIRTIO_NET_F_STATUS */
	int have_status;
};
int net_open(struct net_dev *n);

#endif
