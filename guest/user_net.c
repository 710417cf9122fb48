/* user_net.c — ring-3 stack of the `net` test: ARP, ICMP echo, UDP send and echo on virtio-net. */
#include "guest.h"
#include "virtio_net.h"
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
#define ARP_RETRY_MS 200
#define TX_DRAIN_MS 200

static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
static const uint8_t nomac[6];

/* ---- helpers: user_bytes.h (no libc at ring 3) ---------------------------------------------- */

/* Internet checksum (RFC 1071): ones' complement sum of big-endian 16-bit words. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t len)
{
	for (; len > 1; len -= 2, p += 2)
		sum += get16(p);
	if (len)
		sum += (uint32_t)p[0] << 8;
	return sum;
}

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* Sum of the UDP pseudo header (RFC 768). */
static uint32_t pseudo_sum(const uint8_t *ip, uint32_t udp_len)
{
	uint32_t s = csum_add(0, ip + 12, 8); /* source and destination */

	return s + PROTO_UDP + udp_len;
}

static uint32_t fnv1a(const uint8_t *p, uint32_t n)
{
	uint32_t h = 0x811c9dc5u;

	while (n--)
		h = (h ^ *p++) * 0x01000193u;
	return h;
}

static uint64_t now(void)
{
	return vq_rdtsc();
}

/* ---- transmit ------------------------------------------------------------------------------- */

static int reap_tx(struct net_job *j)
{
	uint64_t tok;
	uint32_t len;
	int r;

	while ((r = vq_get(j->txq, &len, &tok)) != 0) {
		if (r < 0 || tok >= NET_TX_SLOTS) {
			j->fail_info = tok;
			return j->fail = NET_FAIL_RING;
		}
		j->tx_free[j->ntx_free++] = (uint16_t)tok;
	}
	return 0;
}

/* A transmit slot's frame area (after the zeroed virtio-net header), or NULL if all are busy. */
static uint8_t *tx_begin(struct net_job *j, uint32_t *slot)
{
	uint8_t *b;

	if (!j->ntx_free && reap_tx(j))
		return NULL;
	if (!j->ntx_free)
		return NULL;
	*slot = j->tx_free[--j->ntx_free];
	b = j->txbufs + (uint64_t)*slot * NET_TX_SLOT;
	zero(b, NET_HDR_LEN);
	return b + NET_HDR_LEN;
}

/* Post header + frame as one device-readable buffer and notify. */
static int tx_end(struct net_job *j, uint32_t slot, uint32_t frame_len)
{
	struct vq_buf b;

	if (frame_len < ETH_MIN) {
		zero(j->txbufs + (uint64_t)slot * NET_TX_SLOT + NET_HDR_LEN + frame_len,
		     ETH_MIN - frame_len);
		frame_len = ETH_MIN;
	}
	b.addr = (uint64_t)(j->txbufs + (uint64_t)slot * NET_TX_SLOT);
	b.len = NET_HDR_LEN + frame_len;
	b.write = 0;
	if (vq_add(j->txq, &b, 1, 0, slot) < 0) {
		j->fail_info = slot;
		return j->fail = NET_FAIL_POST;
	}
	vq_kick(j->txq);
	return 0;
}

static void eth_header(uint8_t *f, const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	copy(f, dst, 6);
	copy(f + 6, src, 6);
	put16(f + 12, type);
}

/* IPv4 header without options, DF set, TTL 64, checksum filled in. */
static void ip_header(struct net_job *j, uint8_t *ip, uint8_t proto, uint32_t src, uint32_t dst,
		      uint32_t payload_len)
{
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, IP_HLEN + payload_len);
	put16(ip + 4, j->ip_id++);
	put16(ip + 6, 0x4000);
	ip[8] = 64;
	ip[9] = proto;
	put16(ip + 10, 0);
	put32(ip + 12, src);
	put32(ip + 16, dst);
	put16(ip + 10, csum_fold(csum_add(0, ip, IP_HLEN)));
}

static int send_arp(struct net_job *j, uint16_t op, const uint8_t *dst_mac, const uint8_t *tha,
		    uint32_t tpa)
{
	uint32_t slot;
	uint8_t *f = tx_begin(j, &slot), *a;

	if (!f)
		return -1;
	eth_header(f, dst_mac, j->mac, ETH_P_ARP);
	a = f + ETH_HLEN;
	put16(a, 1); /* Ethernet */
	put16(a + 2, ETH_P_IP);
	a[4] = 6;
	a[5] = 4;
	put16(a + 6, op);
	copy(a + 8, j->mac, 6);
	put32(a + 14, j->ip);
	copy(a + 18, tha, 6);
	put32(a + 24, tpa);
	return tx_end(j, slot, ETH_HLEN + ARP_LEN) ? -1 : 0;
}

/* Start a UDP datagram from port 7777 to `dst`/`dst_mac` port `dport` with `len` payload bytes:
 * returns where the payload goes (NULL if no transmit slot is free); udp_finish() sends it. */
static uint8_t *udp_begin(struct net_job *j, const uint8_t *dst_mac, uint32_t dst, uint16_t dport,
			  uint32_t len, uint32_t *slot)
{
	uint32_t ulen = UDP_HLEN + len;
	uint8_t *f = tx_begin(j, slot), *ip, *u;

	if (!f)
		return NULL;
	eth_header(f, dst_mac, j->mac, ETH_P_IP);
	ip = f + ETH_HLEN;
	ip_header(j, ip, PROTO_UDP, j->ip, dst, ulen);
	u = ip + IP_HLEN;
	put16(u, NET_UDP_PORT);
	put16(u + 2, dport);
	put16(u + 4, ulen);
	put16(u + 6, 0);
	return u + UDP_HLEN;
}

/* Fill in the UDP checksum (0 is sent as 0xffff) and post the frame. */
static int udp_finish(struct net_job *j, uint32_t slot, uint32_t len)
{
	uint8_t *ip = j->txbufs + (uint64_t)slot * NET_TX_SLOT + NET_HDR_LEN + ETH_HLEN;
	uint8_t *u = ip + IP_HLEN;
	uint32_t ulen = UDP_HLEN + len;
	uint16_t c = csum_fold(pseudo_sum(ip, ulen) + csum_add(0, u, ulen));

	put16(u + 6, c ? c : 0xffff);
	return tx_end(j, slot, ETH_HLEN + IP_HLEN + ulen) ? -1 : 0;
}

/* Payload bytes of datagram `seq` from `origin`: see virtio_net.h. */
static void make_payload(uint8_t *p, uint32_t len, uint32_t origin, uint32_t seq)
{
	p[0] = 'B';
	p[1] = 'R';
	p[2] = 'T';
	p[3] = 'H';
	put32(p + 4, origin);
	put32(p + 8, seq);
	for (uint32_t i = 16; i < len; i++)
		p[i] = (uint8_t)(i * 7 + seq * 13);
	put32(p + 12, fnv1a(p + 16, len - 16));
}

/* 0 if the "BRTH" payload p is intact (any origin); its origin and seq. */
static int check_payload(const uint8_t *p, uint32_t len, uint32_t *origin, uint32_t *seq)
{
	if (len < 16)
		return -1;
	*origin = get32(p + 4);
	*seq = get32(p + 8);
	if (get32(p + 12) != fnv1a(p + 16, len - 16))
		return -1;
	for (uint32_t i = 16; i < len; i++)
		if (p[i] != (uint8_t)(i * 7 + *seq * 13))
			return -1;
	return 0;
}

static uint32_t payload_len(const struct net_job *j, uint32_t k)
{
	uint32_t span = j->count > 2 ? j->count - 2 : 1;

	if (k + 1 == j->count && j->count > 1)
		return NET_PAYLOAD_MTU;
	return NET_PAYLOAD_MIN + (NET_PAYLOAD_MAX - NET_PAYLOAD_MIN) * k / span;
}

static int send_next(struct net_job *j)
{
	uint32_t len = payload_len(j, j->tx), slot;
	uint8_t *p = udp_begin(j, j->peer_mac, j->peer_ip, NET_UDP_PORT, len, &slot);

	if (!p)
		return -1;
	make_payload(p, len, j->ip, j->tx);
	if (udp_finish(j, slot, len))
		return -1;
	j->tx++;
	return 0;
}

/* ---- receive -------------------------------------------------------------------------------- */

static void on_arp(struct net_job *j, const uint8_t *f, uint32_t len)
{
	const uint8_t *a = f + ETH_HLEN;
	uint32_t spa, tpa;

	if (len < ETH_HLEN + ARP_LEN || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 ||
	    a[5] != 4) {
		j->other++;
		return;
	}
	spa = get32(a + 14);
	tpa = get32(a + 24);
	if (get16(a + 6) == 1 && tpa == j->ip) {
		if (send_arp(j, 2, a + 8, a + 8, spa) == 0)
			j->arp++;
	} else if (get16(a + 6) == 2 && spa == j->peer_ip && tpa == j->ip && !j->peer_known) {
		copy(j->peer_mac, a + 8, 6);
		j->peer_known = 1;
		j->t_peer = now();
	}
}

static void on_icmp(struct net_job *j, const uint8_t *f, const uint8_t *ip, uint32_t ihl,
		    uint32_t tot)
{
	const uint8_t *ic = ip + ihl;
	uint32_t ilen = tot - ihl, slot;
	uint8_t *o, *oip, *oic;

	if (ilen < ICMP_HLEN || csum_fold(csum_add(0, ic, ilen)) != 0) {
		j->bad_csum++;
		return;
	}
	if (ic[0] != 8 || ic[1] != 0 || ilen > NET_TX_SLOT - NET_HDR_LEN - ETH_HLEN - IP_HLEN) {
		j->other++;
		return;
	}
	o = tx_begin(j, &slot);
	if (!o) {
		j->dropped++;
		return;
	}
	eth_header(o, f + 6, j->mac, ETH_P_IP);
	oip = o + ETH_HLEN;
	ip_header(j, oip, PROTO_ICMP, j->ip, get32(ip + 12), ilen);
	oic = oip + IP_HLEN;
	copy(oic, ic, ilen);
	oic[0] = 0; /* echo reply: same identifier, sequence and data */
	put16(oic + 2, 0);
	put16(oic + 2, csum_fold(csum_add(0, oic, ilen)));
	if (tx_end(j, slot, ETH_HLEN + IP_HLEN + ilen) == 0)
		j->icmp++;
}

static void on_udp(struct net_job *j, const uint8_t *f, const uint8_t *ip, uint32_t ihl,
		   uint32_t tot)
{
	const uint8_t *u = ip + ihl, *p;
	uint32_t ulen, plen, origin = 0, seq = 0, slot;
	uint8_t *o;

	if (tot - ihl < UDP_HLEN) {
		j->bad++;
		return;
	}
	ulen = get16(u + 4);
	if (ulen < UDP_HLEN || ulen > tot - ihl) {
		j->bad++;
		return;
	}
	if (get16(u + 6) && csum_fold(pseudo_sum(ip, ulen) + csum_add(0, u, ulen)) != 0) {
		j->bad_csum++;
		return;
	}
	if (get16(u + 2) != NET_UDP_PORT) {
		j->rx_other_port++;
		return;
	}
	p = u + UDP_HLEN;
	plen = ulen - UDP_HLEN;
	if (plen >= 4 && p[0] == 'B' && p[1] == 'R' && p[2] == 'T' && p[3] == 'H' &&
	    check_payload(p, plen, &origin, &seq) < 0) {
		j->bad++; /* in our format but damaged: not echoed */
		return;
	}
	if (origin == j->ip) { /* set only for an intact "BRTH" payload */
		/* Our own datagram, echoed back by the peer. */
		if (seq < j->count && seq < NET_MAX_COUNT && plen == payload_len(j, seq) &&
		    !j->echoed[seq]) {
			j->echoed[seq] = 1;
			j->echo++;
		} else {
			j->bad++;
		}
		return;
	}
	j->rx++;
	o = udp_begin(j, f + 6, get32(ip + 12), get16(u), plen, &slot);
	if (!o) {
		j->dropped++;
		return;
	}
	copy(o, p, plen);
	udp_finish(j, slot, plen);
}

static void on_frame(struct net_job *j, const uint8_t *f, uint32_t len)
{
	const uint8_t *ip;
	uint32_t ihl, tot;

	j->frames++;
	if (len < ETH_HLEN) {
		j->bad++;
		return;
	}
	if (!same(f, j->mac, 6) && !same(f, bcast, 6)) {
		j->other++; /* flooded unicast for someone else, multicast */
		return;
	}
	if (get16(f + 12) == ETH_P_ARP) {
		on_arp(j, f, len);
		return;
	}
	if (get16(f + 12) != ETH_P_IP || len < ETH_HLEN + IP_HLEN) {
		j->other++;
		return;
	}
	ip = f + ETH_HLEN;
	ihl = (ip[0] & 15) * 4;
	tot = get16(ip + 2);
	if ((ip[0] >> 4) != 4 || ihl < IP_HLEN || tot < ihl || tot > len - ETH_HLEN) {
		j->bad++;
		return;
	}
	if (csum_fold(csum_add(0, ip, ihl)) != 0) {
		j->bad_csum++;
		return;
	}
	if (get32(ip + 16) != j->ip || (get16(ip + 6) & 0x3fff)) {
		j->other++; /* not ours, or a fragment */
		return;
	}
	if (ip[9] == PROTO_ICMP)
		on_icmp(j, f, ip, ihl, tot);
	else if (ip[9] == PROTO_UDP)
		on_udp(j, f, ip, ihl, tot);
	else
		j->other++;
}

static int post_rx(struct net_job *j, uint32_t i)
{
	struct vq_buf b = {(uint64_t)(j->rxbufs + (uint64_t)i * j->rxbuf_len), j->rxbuf_len, 1};

	if (vq_add(j->rxq, &b, 1, 0, i) < 0) {
		j->fail_info = i;
		return j->fail = NET_FAIL_POST;
	}
	return 0;
}

/* Consume used receive buffers: a frame is num_buffers buffers in a row (MRG_RXBUF), the first
 * starting with the virtio-net header. Each buffer goes straight back to the device. */
static int poll_rx(struct net_job *j)
{
	uint64_t tok;
	uint32_t len;
	int r, reposted = 0;

	while ((r = vq_get(j->rxq, &len, &tok)) != 0) {
		const uint8_t *b;

		if (r < 0 || tok >= j->nrx || len > j->rxbuf_len) {
			j->fail_info = r < 0 ? ~0ULL : tok << 32 | len;
			return j->fail = NET_FAIL_RING;
		}
		b = j->rxbufs + tok * j->rxbuf_len;
		if (!j->left) {
			const struct virtio_net_hdr *h = (const struct virtio_net_hdr *)b;
			uint32_t nb = j->mrg ? h->num_buffers : 1;

			if (len < NET_HDR_LEN || nb == 0) {
				j->bad++;
				nb = 1;
			}
			if (nb > j->max_bufs)
				j->max_bufs = nb;
			if (nb > 1)
				j->merged++;
			j->left = nb;
			j->flen = 0;
			j->toolong = 0;
		}
		if (j->flen + len <= NET_FRAME_MAX) {
			copy(j->frame + j->flen, b, len);
			j->flen += len;
		} else {
			j->toolong = 1;
		}
		if (post_rx(j, (uint32_t)tok))
			return j->fail;
		reposted = 1;
		if (--j->left == 0) {
			if (j->toolong || j->flen < NET_HDR_LEN)
				j->dropped++;
			else
				on_frame(j, j->frame + NET_HDR_LEN, j->flen - NET_HDR_LEN);
		}
		if (j->fail)
			return j->fail;
	}
	if (reposted)
		vq_kick(j->rxq);
	return 0;
}

/* ---- the job -------------------------------------------------------------------------------- */

static int finished(const struct net_job *j)
{
	if (!j->expect && !j->expect_echo)
		return 0; /* run for the whole time (a host may be pinging us) */
	return j->tx >= j->count && j->rx >= j->expect && j->echo >= j->expect_echo;
}

/* Post the receive buffers, resolve the peer, send `count` datagrams, answer ARP and ping, echo
 * datagrams, until `deadline` or everything expected has arrived. Returns 0 or NET_FAIL_*. */
uint64_t u_net_job(uint64_t arg)
{
	struct net_job *j = (struct net_job *)arg;
	uint64_t next_arp = 0, t;

	for (uint32_t i = 0; i < NET_TX_SLOTS; i++)
		j->tx_free[i] = (uint16_t)(NET_TX_SLOTS - 1 - i);
	j->ntx_free = NET_TX_SLOTS;
	for (uint32_t i = 0; i < j->nrx; i++)
		if (post_rx(j, i))
			return j->fail;
	vq_kick(j->rxq);
	while ((t = now()) < j->deadline && !finished(j)) {
		if (poll_rx(j) || reap_tx(j))
			return j->fail;
		if (!j->peer_known && j->count && t >= next_arp) {
			if (send_arp(j, 1, bcast, nomac, j->peer_ip) == 0)
				j->arp_sent++;
			if (j->fail)
				return j->fail;
			next_arp = t + ARP_RETRY_MS * j->tsc_khz;
		}
		if (j->peer_known && j->tx < j->count && j->ntx_free > NET_TX_SLOTS / 2)
			if (send_next(j) < 0 && j->fail)
				return j->fail;
	}
	j->t_end = now();
	/* Let the device take what we queued (the last echoes) before the caller resets it. */
	t = j->t_end + TX_DRAIN_MS * j->tsc_khz;
	while (j->ntx_free < NET_TX_SLOTS && now() < t)
		if (reap_tx(j))
			return j->fail;
	return 0;
}
