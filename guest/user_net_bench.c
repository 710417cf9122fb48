/* user_net_bench.c — ring-3 loops of the virtio-net benchmarks: UDP blast (net-tx), UDP count
 * (net-rx) and request/response (net-rr), all by polling the used rings; answers ARP meanwhile. */
#include "guest.h"
#include "bench_net.h"
#include "user_bytes.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_ARP 0x0806
#define IP_HLEN 20
#define UDP_HLEN 8
#define ICMP_HLEN 8
#define PROTO_ICMP 1
#define PROTO_UDP 17
#define ARP_LEN 28
#define ETH_MIN 60
#define HDRS (NET_HDR_LEN + ETH_HLEN + IP_HLEN) /* slot offset of the UDP/ICMP header */
#define ARP_RETRY_MS 200
#define DRAIN_MS 200
#define ICMP_ID 0x4252

static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* ---- helpers: user_bytes.h (no libc at ring 3) ---------------------------------------------- */

static uint16_t csum(const uint8_t *p, uint32_t len)
{
	uint32_t sum = 0;

	for (; len > 1; len -= 2, p += 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint64_t now(void)
{
	return vq_rdtsc();
}

static uint8_t *slot_of(const struct nb_job *j, uint32_t slot)
{
	return j->txbufs + (uint64_t)slot * NB_SLOT;
}

/* ---- transmit ------------------------------------------------------------------------------- */

/* The last transmit slot carries control frames (ARP) only; the others carry datagrams. */
static uint32_t ctl_slot(const struct nb_job *j)
{
	return j->ntx - 1;
}

/* Take back what the device has sent; datagrams completed inside the window are counted. */
static int reap_tx(struct nb_job *j)
{
	uint64_t tok, t = 0;
	uint32_t len;
	int r;

	while ((r = vq_get(j->txq, &len, &tok)) != 0) {
		if (r < 0 || tok >= j->ntx) {
			j->fail_info = tok;
			return j->fail = NB_FAIL_RING;
		}
		if (tok == ctl_slot(j)) {
			j->ctl_busy = 0;
			continue;
		}
		j->tx_free[j->ntx_free++] = (uint16_t)tok;
		if (j->mode != NB_TX || !j->built[tok])
			continue;
		j->total++;
		if (!t)
			t = now();
		if (t >= j->t_start && t < j->t_end) {
			j->pkts++;
			j->bytes += j->size;
		}
	}
	return 0;
}

static int post_tx(struct nb_job *j, uint32_t slot, uint32_t frame_len, int kick)
{
	struct vq_buf b;

	if (frame_len < ETH_MIN) {
		zero(slot_of(j, slot) + NET_HDR_LEN + frame_len, ETH_MIN - frame_len);
		frame_len = ETH_MIN;
	}
	b.addr = (uint64_t)slot_of(j, slot);
	b.len = NET_HDR_LEN + frame_len;
	b.write = 0;
	if (vq_add(j->txq, &b, 1, 0, slot) < 0) {
		j->fail_info = slot;
		return j->fail = NB_FAIL_POST;
	}
	if (kick)
		vq_kick(j->txq);
	return 0;
}

static void eth_header(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	copy(f, dst, 6);
	copy(f + 6, src, 6);
	put16(f + 12, type);
}

static void ip_header(uint8_t *ip, uint8_t proto, uint32_t src, uint32_t dst, uint32_t plen)
{
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, IP_HLEN + plen);
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, src);
	put32(ip + 16, dst);
	put16(ip + 10, csum(ip, IP_HLEN));
}

/* ARP request (op 1, broadcast) or reply (op 2) in the control slot; -1 if it is busy. */
static int send_arp(struct nb_job *j, uint16_t op, const uint8_t *dst_mac, uint32_t tpa)
{
	uint32_t slot = ctl_slot(j);
	uint8_t *f = slot_of(j, slot) + NET_HDR_LEN, *a = f + ETH_HLEN;

	if (j->ctl_busy)
		return -1;
	zero(slot_of(j, slot), NET_HDR_LEN);
	eth_header(f, dst_mac, j->mac, ETH_P_ARP);
	put16(a, 1);
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	copy(a + 8, j->mac, 6);
	put32(a + 14, j->ip);
	if (op == 1)
		zero(a + 18, 6);
	else
		copy(a + 18, dst_mac, 6);
	put32(a + 24, tpa);
	j->ctl_busy = 1;
	return post_tx(j, slot, ETH_HLEN + ARP_LEN, 1) ? -1 : 0;
}

/* A complete datagram to the peer in `slot`: UDP to port (checksum 0), or an ICMP echo request;
 * payload "BRTB", phase, seq, tsc (see bench_net.h). Returns the frame length. */
static uint32_t build(struct nb_job *j, uint32_t slot, uint32_t seq, uint64_t tsc)
{
	uint8_t *s = slot_of(j, slot), *ip = s + NET_HDR_LEN + ETH_HLEN, *l4 = s + HDRS, *p;
	uint32_t l4len = (j->icmp ? ICMP_HLEN : UDP_HLEN) + j->size;

	zero(s, NET_HDR_LEN);
	eth_header(s + NET_HDR_LEN, j->peer_mac, j->mac, ETH_P_IP);
	ip_header(ip, j->icmp ? PROTO_ICMP : PROTO_UDP, j->ip, j->peer_ip, l4len);
	p = l4 + (j->icmp ? ICMP_HLEN : UDP_HLEN);
	zero(p, j->size);
	copy(p, NB_MAGIC, 4);
	put32(p + 8, seq);
	put32(p + 12, (uint32_t)(tsc >> 32));
	put32(p + 16, (uint32_t)tsc);
	if (j->icmp) {
		l4[0] = 8;
		l4[1] = 0;
		put16(l4 + 2, 0);
		put16(l4 + 4, ICMP_ID);
		put16(l4 + 6, (uint16_t)seq);
		put16(l4 + 2, csum(l4, l4len));
	} else {
		put16(l4, j->port);
		put16(l4 + 2, j->port);
		put16(l4 + 4, l4len);
		put16(l4 + 6, 0);
	}
	return ETH_HLEN + IP_HLEN + l4len;
}

/* ---- receive -------------------------------------------------------------------------------- */

static void on_arp(struct nb_job *j, const uint8_t *f, uint32_t len)
{
	const uint8_t *a = f + ETH_HLEN;

	if (len < ETH_HLEN + ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP) {
		j->other++;
		return;
	}
	if (get16(a + 6) == 1 && get32(a + 24) == j->ip) {
		if (send_arp(j, 2, a + 8, get32(a + 14)) == 0)
			j->arp_replies++;
		else
			j->dropped++;
	} else if (get16(a + 6) == 2 && get32(a + 14) == j->peer_ip && !j->peer_known) {
		copy(j->peer_mac, a + 8, 6);
		j->peer_known = 1;
	} else {
		j->other++;
	}
}

/* A datagram (or echo reply) for us: count it (net-rx) or match the outstanding request. */
static void on_data(struct nb_job *j, const uint8_t *p, uint32_t plen, uint32_t seq_hint,
		    uint64_t t)
{
	if (j->mode == NB_RX) {
		if (!j->t_first) {
			j->t_first = t;
			j->t_start = t + j->warm;
			j->t_end = j->t_start + j->window;
		}
		j->total++;
		j->total_bytes += plen;
		if (t >= j->t_start && t < j->t_end) {
			j->pkts++;
			j->bytes += plen;
		}
		return;
	}
	if (j->mode != NB_RR || plen < NB_PAYLOAD_MIN || !same(p, NB_MAGIC, 4)) {
		j->other++;
		return;
	}
	if (get32(p + 8) == j->rr_seq && (seq_hint == ~0u || seq_hint == (j->rr_seq & 0xffff)) &&
	    !j->rr_got) {
		j->rr_got = 1;
		j->rr_t = t;
		j->total++;
		j->total_bytes += plen;
	} else {
		j->late++; /* the answer to a request already given up on */
	}
}

static void on_frame(struct nb_job *j, const uint8_t *f, uint32_t len, uint64_t t)
{
	const uint8_t *ip, *l4;
	uint32_t ihl, tot;

	if (len < ETH_HLEN || (!same(f, j->mac, 6) && !same(f, bcast, 6))) {
		j->other++;
		return;
	}
	if (get16(f + 12) == ETH_P_ARP) {
		on_arp(j, f, len);
		return;
	}
	ip = f + ETH_HLEN;
	ihl = (ip[0] & 15) * 4;
	if (get16(f + 12) != ETH_P_IP || len < ETH_HLEN + IP_HLEN || ihl < IP_HLEN ||
	    (tot = get16(ip + 2)) < ihl + UDP_HLEN || tot > len - ETH_HLEN ||
	    get32(ip + 16) != j->ip) {
		j->other++;
		return;
	}
	l4 = ip + ihl;
	if (ip[9] == PROTO_UDP && get16(l4 + 2) == j->port && get16(l4 + 4) >= UDP_HLEN &&
	    get16(l4 + 4) <= tot - ihl)
		on_data(j, l4 + UDP_HLEN, get16(l4 + 4) - UDP_HLEN, ~0u, t);
	else if (ip[9] == PROTO_ICMP && j->icmp && l4[0] == 0 && get16(l4 + 4) == ICMP_ID)
		on_data(j, l4 + ICMP_HLEN, tot - ihl - ICMP_HLEN, get16(l4 + 6), t);
	else
		j->other++;
}

static int post_rx(struct nb_job *j, uint32_t i)
{
	struct vq_buf b = {(uint64_t)(j->rxbufs + (uint64_t)i * NB_SLOT), NB_SLOT, 1};

	if (vq_add(j->rxq, &b, 1, 0, i) < 0) {
		j->fail_info = i;
		return j->fail = NB_FAIL_POST;
	}
	return 0;
}

/* Handle every used receive buffer, handing buffers back NB_REFILL at a time (one doorbell
 * each). Frames are parsed in place; one that spans several buffers (not expected with 2 KiB
 * buffers) is skipped. */
static int poll_rx(struct nb_job *j)
{
	uint64_t tok;
	uint32_t len, reposted = 0;
	int r;

	while ((r = vq_get(j->rxq, &len, &tok)) != 0) {
		const uint8_t *b;

		if (r < 0 || tok >= j->nrx || len > NB_SLOT) {
			j->fail_info = r < 0 ? ~0ULL : tok << 32 | len;
			return j->fail = NB_FAIL_RING;
		}
		b = j->rxbufs + tok * NB_SLOT;
		if (j->rx_left) {
			j->rx_left--;
		} else {
			uint32_t nb = j->mrg ? ((const struct virtio_net_hdr *)b)->num_buffers : 1;

			if (nb > j->max_bufs)
				j->max_bufs = nb;
			if (nb > 1 || len < NET_HDR_LEN) {
				j->rx_left = nb > 1 ? nb - 1 : 0;
				j->dropped++;
			} else {
				on_frame(j, b + NET_HDR_LEN, len - NET_HDR_LEN, now());
			}
		}
		if (post_rx(j, (uint32_t)tok))
			return j->fail;
		if (++reposted == NB_REFILL) {
			vq_kick(j->rxq);
			reposted = 0;
		}
		if (j->fail)
			return j->fail;
	}
	if (reposted)
		vq_kick(j->rxq);
	else
		j->polls_empty++;
	return 0;
}

static int poll_all(struct nb_job *j)
{
	return poll_rx(j) || reap_tx(j) ? (int)j->fail : 0;
}

/* ---- the three workloads -------------------------------------------------------------------- */

static int resolve_peer(struct nb_job *j)
{
	uint64_t next = 0, t;

	while (!j->peer_known) {
		if ((t = now()) >= j->deadline)
			return j->fail = NB_FAIL_PEER;
		if (poll_all(j))
			return j->fail;
		if (t >= next && send_arp(j, 1, bcast, j->peer_ip) == 0) {
			j->arp_sent++;
			next = t + ARP_RETRY_MS * j->tsc_khz;
		}
		if (j->fail)
			return j->fail;
	}
	return 0;
}

/* Keep the transmit queue full of datagrams for warm + window; count completions. */
static int blast(struct nb_job *j)
{
	uint32_t seq = 0, flen = 0;
	uint64_t t;

	j->t_start = now() + j->warm;
	j->t_end = j->t_start + j->window;
	while ((t = now()) < j->t_end) {
		uint32_t n = 0;
		uint8_t phase = t >= j->t_start;

		if (poll_all(j))
			return j->fail;
		while (j->ntx_free && n < j->batch) {
			uint32_t slot = j->tx_free[--j->ntx_free];
			uint8_t *p = slot_of(j, slot) + HDRS + UDP_HLEN;

			if (!j->built[slot]) {
				flen = build(j, slot, seq, 0);
				j->built[slot] = 1;
			} else {
				flen = ETH_HLEN + IP_HLEN + UDP_HLEN + j->size;
			}
			p[4] = phase;
			put32(p + 8, seq++);
			if (post_tx(j, slot, flen, 0))
				return j->fail;
			n++;
		}
		if (n)
			vq_kick(j->txq);
	}
	return 0;
}

/* Count datagrams from the first one on, for warm + window. */
static int count_rx(struct nb_job *j)
{
	uint64_t t;

	while ((t = now()) < j->deadline) {
		if (poll_all(j))
			return j->fail;
		if (j->t_first && t >= j->t_end)
			return 0;
	}
	return j->fail = j->t_first ? 0 : NB_FAIL_NOTRAFFIC;
}

static void sort_u32(uint32_t *a, uint32_t n)
{
	/* heapsort: no recursion, no extra memory */
	for (uint32_t i = n / 2; i-- > 0;) {
		for (uint32_t r = i, c; (c = 2 * r + 1) < n; r = c) {
			if (c + 1 < n && a[c + 1] > a[c])
				c++;
			if (a[r] >= a[c])
				break;
			uint32_t x = a[r];
			a[r] = a[c];
			a[c] = x;
		}
	}
	for (uint32_t end = n; end-- > 1;) {
		uint32_t x = a[0];

		a[0] = a[end];
		a[end] = x;
		for (uint32_t r = 0, c; (c = 2 * r + 1) < end; r = c) {
			if (c + 1 < end && a[c + 1] > a[c])
				c++;
			if (a[r] >= a[c])
				break;
			x = a[r];
			a[r] = a[c];
			a[c] = x;
		}
	}
}

/* One request at a time: send, poll until its answer arrives (or rr_timeout), record the time. */
static int ping_pong(struct nb_job *j)
{
	uint32_t n = 0;

	j->t_start = now();
	for (uint32_t i = 0; i < j->warm_count + j->count; i++) {
		uint64_t t0, t;
		uint32_t slot, flen;

		while (!j->ntx_free)
			if (poll_all(j))
				return j->fail;
			else if (now() >= j->deadline)
				return j->fail = NB_FAIL_POST;
		slot = j->tx_free[--j->ntx_free];
		j->rr_seq = i;
		j->rr_got = 0;
		t0 = now();
		flen = build(j, slot, i, t0);
		if (post_tx(j, slot, flen, 1))
			return j->fail;
		while (!j->rr_got && (t = now()) - t0 < j->rr_timeout && t < j->deadline)
			if (poll_all(j))
				return j->fail;
		if (!j->rr_got) {
			if (++j->lost > 100 + j->count / 10 || now() >= j->deadline)
				return j->fail = NB_FAIL_LOST;
			continue;
		}
		if (i < j->warm_count)
			continue;
		j->rtt[n++] = (uint32_t)((j->rr_t - t0) * 1000000 / j->tsc_khz);
	}
	j->t_end = now();
	j->pkts = n;
	if (!n)
		return j->fail = NB_FAIL_LOST;
	sort_u32(j->rtt, n);
	j->rtt_min = j->rtt[0];
	j->rtt_max = j->rtt[n - 1];
	for (uint32_t i = 0; i < n; i++)
		j->rtt_sum += j->rtt[i];
	j->rtt_p50 = j->rtt[n / 2];
	j->rtt_p90 = j->rtt[(uint64_t)n * 90 / 100];
	j->rtt_p99 = j->rtt[(uint64_t)n * 99 / 100];
	return 0;
}

uint64_t u_net_bench(uint64_t arg)
{
	struct nb_job *j = (struct nb_job *)arg;
	uint64_t end;
	int r = 0;

	j->ntx_free = 0;
	for (uint32_t i = 0; i + 1 < j->ntx; i++) {
		j->tx_free[j->ntx_free++] = (uint16_t)(j->ntx - 2 - i);
		j->built[i] = 0;
	}
	for (uint32_t i = 0; i < j->nrx; i++)
		if (post_rx(j, i))
			return j->fail;
	vq_kick(j->rxq);
	if (j->mode == NB_RX) {
		/* Gratuitous ARP, so the bridge learns our port and does not flood what it sends us. */
		if (send_arp(j, 1, bcast, j->ip) == 0)
			j->arp_sent++;
		r = j->fail ? (int)j->fail : count_rx(j);
	} else if (!(r = resolve_peer(j))) {
		r = j->mode == NB_TX ? blast(j) : ping_pong(j);
	}
	/* Let the device finish what is queued before the caller resets it; keep answering ARP. */
	end = now() + DRAIN_MS * j->tsc_khz;
	while (!r && j->ntx_free + 1 < j->ntx && now() < end)
		if (poll_all(j))
			return j->fail;
	j->kicks = j->txq->kicks + j->rxq->kicks;
	j->kicks_suppressed = j->txq->kicks_suppressed + j->rxq->kicks_suppressed;
	return r ? (uint64_t)r : 0;
}
