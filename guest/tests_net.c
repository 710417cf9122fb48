/* tests_net.c — `net`: virtio-net up, then ARP, ping and UDP with a peer, polled from ring 3. */
#include "guest.h"
#include "virtio_net.h"
#include "x86.h"

#define DEFAULT_IP 0x0a4d0002u	 /* 10.77.0.2 */
#define DEFAULT_PEER 0x0a4d0001u /* 10.77.0.1 */

static struct net_dev dev;
static struct net_job job;

/* "a.b.c.d" with an optional "/prefix" (ignored: the peer is always on-link). */
static int parse_ip(const char *key, uint32_t def, uint32_t *out)
{
	size_t len;
	const char *v = cmdline_value(key, &len), *end, *stop;
	uint32_t ip = 0;

	if (!v) {
		*out = def;
		return 0;
	}
	stop = v + len;
	for (int i = 0; i < 4; i++) {
		uint64_t x = parse_u64(v, &end);

		if (end == v || end > stop || x > 255)
			return -1;
		ip = ip << 8 | (uint32_t)x;
		v = end;
		if (i < 3) {
			if (v >= stop || *v != '.')
				return -1;
			v++;
		}
	}
	if (v != stop && *v != '/')
		return -1;
	*out = ip;
	return 0;
}

static void fmt_ip(char *buf, size_t n, uint32_t ip)
{
	snprintf(buf, n, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

static void fmt_mac(char *buf, size_t n, const uint8_t *m)
{
	snprintf(buf, n, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
}

static const char *fail_name(uint32_t code)
{
	switch (code) {
	case NET_FAIL_RING:
		return "bad-used-entry";
	case NET_FAIL_POST:
		return "cannot-post";
	default:
		return "unknown";
	}
}

/* `spoof_mac=` "aa:bb:cc:dd:ee:ff": send as (and answer to) this MAC instead of the NIC's own, to
 * test a switch port's MAC spoofing protection. 0 if absent, 1 if given, -1 if malformed. */
static int parse_spoof_mac(uint8_t out[6])
{
	size_t len;
	const char *v = cmdline_value("spoof_mac", &len);

	if (!v)
		return 0;
	if (len != 17)
		return -1;
	for (int i = 0; i < 6; i++) {
		int x = 0;
		for (int k = 0; k < 2; k++) {
			char c = v[3 * i + k];
			int d = c >= '0' && c <= '9'   ? c - '0'
				: c >= 'a' && c <= 'f' ? c - 'a' + 10
				: c >= 'A' && c <= 'F' ? c - 'A' + 10
						       : -1;
			if (d < 0)
				return -1;
			x = x << 4 | d;
		}
		if (i < 5 && v[3 * i + 2] != ':')
			return -1;
		out[i] = (uint8_t)x;
	}
	return 1;
}

/* Why the run did not meet its goals, or NULL. */
static const char *shortfall(const struct net_job *j)
{
	if (j->bad || j->bad_csum)
		return "bad-frames";
	if (j->count && !j->peer_known)
		return "peer-not-resolved";
	if (j->tx < j->count)
		return "not-all-sent";
	if (j->rx < j->expect)
		return "too-few-received";
	if (j->echo < j->expect_echo)
		return "too-few-echoes";
	return NULL;
}

void test_net(void)
{
	uint32_t secs = cmdline_u64("secs", 10), nrx;
	char mac[20], peer_mac[20], ip[16], peer[16];
	const char *why;
	uint64_t r;

	dma_reset();
	memset(&job, 0, sizeof(job));
	if (parse_ip("ip", DEFAULT_IP, &job.ip) < 0 ||
	    parse_ip("peer", DEFAULT_PEER, &job.peer_ip) < 0) {
		kprintf("berth-test net FAIL reason=bad-ip-or-peer\n");
		return;
	}
	job.count = cmdline_u64("count", 20);
	job.expect = cmdline_u64("expect", 0);
	job.expect_echo = cmdline_u64("expect_echo", 0);
	if (job.count > NET_MAX_COUNT || !secs) {
		kprintf("berth-test net FAIL reason=\"bad-parameters count=%u secs=%u\"\n",
			job.count, secs);
		return;
	}
	if (net_open(&dev) < 0) {
		kprintf("berth-test net FAIL reason=\"%s\"\n", dev.v.error);
		return;
	}
	memcpy(job.mac, dev.mac, 6);
	if (parse_spoof_mac(job.mac) < 0) {
		kprintf("berth-test net FAIL reason=bad-spoof-mac\n");
		virtio_reset(&dev.v);
		return;
	}
	fmt_mac(mac, sizeof(mac), job.mac);
	fmt_ip(ip, sizeof(ip), job.ip);
	fmt_ip(peer, sizeof(peer), job.peer_ip);
	kprintf("berth-info net mac=%s link=%s ip=%s peer=%s features=0x%lx\n", mac,
		!dev.have_status		      ? "unknown"
		: (dev.status & VIRTIO_NET_S_LINK_UP) ? "up"
						      : "down",
		ip, peer, dev.v.features);
	if (dev.have_status && !(dev.status & VIRTIO_NET_S_LINK_UP)) {
		kprintf("berth-test net FAIL reason=link-down status=0x%x\n", dev.status);
		virtio_reset(&dev.v);
		return;
	}
	job.mrg = !!(dev.v.features & VIRTIO_NET_F_MRG_RXBUF);
	job.rxbuf_len = job.mrg ? NET_RXBUF_MRG : NET_RXBUF_PLAIN;
	nrx = dev.v.vq[NET_RXQ]->size < NET_RX_BUFS ? dev.v.vq[NET_RXQ]->size : NET_RX_BUFS;
	job.nrx = nrx;
	job.rxq = dev.v.vq[NET_RXQ];
	job.txq = dev.v.vq[NET_TXQ];
	job.rxbufs = dma_alloc((uint64_t)nrx * job.rxbuf_len);
	job.txbufs = dma_alloc((uint64_t)NET_TX_SLOTS * NET_TX_SLOT);
	job.frame = dma_alloc(NET_FRAME_MAX);
	if (!job.rxbufs || !job.txbufs || !job.frame) {
		kprintf("berth-test net FAIL reason=no-dma-memory\n");
		virtio_reset(&dev.v);
		return;
	}
	job.tsc_khz = tsc_khz;
	job.deadline = tsc_after_us((uint64_t)secs * 1000000);
	r = user_run(u_net_job, (uint64_t)&job);
	fmt_mac(peer_mac, sizeof(peer_mac), job.peer_mac);
	why = r ? fail_name(job.fail) : shortfall(&job);
	if (why)
		kprintf("berth-test net FAIL reason=\"%s info=0x%lx status=0x%02x\" tx=%u rx=%u "
			"echo=%u arp=%u icmp=%u arp_sent=%u frames=%u bad=%u bad_csum=%u "
			"dropped=%u other=%u other_port=%u\n",
			why, job.fail_info, virtio_status(&dev.v), job.tx, job.rx, job.echo,
			job.arp, job.icmp, job.arp_sent, job.frames, job.bad, job.bad_csum,
			job.dropped, job.other, job.rx_other_port);
	else
		kprintf("berth-test net PASS tx=%u rx=%u echo=%u arp=%u icmp=%u mac=%s "
			"peer_mac=%s arp_sent=%u frames=%u other=%u dropped=%u max_bufs=%u "
			"merged=%u rxbuf=%u mrg=%u ms=%lu\n",
			job.tx, job.rx, job.echo, job.arp, job.icmp, mac,
			job.peer_known ? peer_mac : "none", job.arp_sent, job.frames, job.other,
			job.dropped, job.max_bufs, job.merged, job.rxbuf_len, job.mrg,
			(job.t_end - (job.deadline - (uint64_t)secs * 1000 * tsc_khz)) / tsc_khz);
	virtio_reset(&dev.v);
}
