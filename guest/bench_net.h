/* bench_net.h — virtio-net benchmarks (`bench=net-tx|net-rx|net-rr`): the ring-3 job interface. */
#ifndef GUEST_BENCH_NET_H
#define GUEST_BENCH_NET_H

#include <stdint.h>

#include "virtio_net.h"

#define NB_SLOT 2048	  /* one transmit or receive buffer: header + a 1514-byte frame fit */
#define NB_MAX_SLOTS 256  /* buffers per queue at most (VQ_MAX_SIZE) */
#define NB_PAYLOAD_MAX 1472
#define NB_RR_MAX 200000  /* round trips recorded at most */
#define NB_REFILL 64	  /* receive buffers handed back per doorbell at most */

#define NB_TX 1
#define NB_RX 2
#define NB_RR 3

#define NB_FAIL_RING 1	   /* bad used entry */
#define NB_FAIL_POST 2	   /* could not post a buffer */
#define NB_FAIL_PEER 3	   /* peer did not answer ARP */
#define NB_FAIL_NOTRAFFIC 4 /* net-rx: nothing arrived before the deadline */
#define NB_FAIL_LOST 5	   /* net-rr: too many requests without an answer */

/* Payload of every benchmark datagram: "BRTB", phase (0 warm-up, 1 measured, 2 after), 3 zero
 * bytes, sequence (u32 BE), guest TSC at send (u64, net-rr only), then zeroes. UDP checksum 0. */
#define NB_MAGIC "BRTB"
#define NB_PAYLOAD_MIN 24

struct nb_job {
	uint32_t mode;
	struct virtq *rxq, *txq;
	uint8_t *rxbufs, *txbufs; /* nrx / ntx slots of NB_SLOT bytes */
	uint32_t nrx, ntx, mrg;
	uint8_t mac[6], peer_mac[6];
	uint32_t ip, peer_ip; /* host byte order */
	uint16_t port, icmp;  /* destination / listening port; net-rr: ICMP echo instead of UDP */
	uint32_t size;	      /* UDP (or ICMP data) payload bytes */
	uint32_t batch;	      /* net-tx: frames posted per doorbell at most */
	uint32_t count, warm_count; /* net-rr: measured and warm-up round trips */
	uint64_t tsc_khz;
	uint64_t warm, window;	   /* TSC ticks */
	uint64_t deadline;	   /* absolute TSC: give up */
	uint64_t rr_timeout;	   /* TSC ticks before a request counts as lost */
	uint32_t *rtt;		   /* net-rr: count samples (ns) */
	/* transmit slot bookkeeping */
	uint16_t tx_free[NB_MAX_SLOTS];
	uint32_t ntx_free;
	uint8_t built[NB_MAX_SLOTS]; /* net-tx: slot holds the prebuilt datagram (0: rebuild) */
	uint32_t ctl_busy;	      /* the control slot (ARP replies) is with the device */
	uint32_t rx_left;	      /* buffers still to skip of a multi-buffer frame */
	uint32_t rr_seq, rr_got;      /* net-rr: outstanding sequence, its answer arrived */
	uint64_t rr_t;		      /* ... and when (TSC) */
	/* results */
	uint32_t peer_known, arp_sent, arp_replies;
	uint64_t total, total_bytes; /* whole job: frames sent (tx) / datagrams counted (rx, rr) */
	uint64_t pkts, bytes;	     /* measurement window */
	uint64_t t_first, t_start, t_end; /* first datagram (rx), window start and end (TSC) */
	uint64_t kicks, kicks_suppressed, polls_empty;
	uint64_t other, dropped, max_bufs, lost, late;
	uint64_t rtt_min, rtt_max, rtt_sum, rtt_p50, rtt_p90, rtt_p99; /* ns */
	uint32_t fail;
	uint64_t fail_info;
};
uint64_t u_net_bench(uint64_t job);

#endif
