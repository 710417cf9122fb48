/* bench_net.c — `bench=net-tx|net-rx|net-rr`: virtio-net throughput and latency workloads. Ring 0
 * brings the device up and prints the result; ring 3 (user_net_bench.c) moves the frames. */
#include "guest.h"
#include "bench_net.h"
#include "x86.h"

#define DEFAULT_IP 0x0a4d0002u	 /* 10.77.0.2 */
#define DEFAULT_PEER 0x0a4d0001u /* 10.77.0.1 */
#define DEFAULT_PORT 7778

static struct net_dev ndev;
static struct nb_job nj;

static const struct {
	const char *name;
	uint32_t mode;
} modes[] = {{"net-tx", NB_TX}, {"net-rx", NB_RX}, {"net-rr", NB_RR}};

static int ip_param(const char *key, uint32_t def, uint32_t *out)
{
	size_t len;
	const char *v = cmdline_value(key, &len), *end, *stop;
	uint32_t ip = 0;

	*out = def;
	if (!v)
		return 0;
	stop = v + len;
	for (int i = 0; i < 4; i++) {
		uint64_t x = parse_u64(v, &end);

		if (end == v || end > stop || x > 255)
			return -1;
		ip = ip << 8 | (uint32_t)x;
		v = end;
		if (i < 3 && (v >= stop || *v++ != '.'))
			return -1;
	}
	if (v != stop && *v != '/')
		return -1;
	*out = ip;
	return 0;
}

static const char *nb_fail_name(uint32_t code)
{
	switch (code) {
	case NB_FAIL_RING:
		return "bad-used-entry";
	case NB_FAIL_POST:
		return "cannot-post";
	case NB_FAIL_PEER:
		return "peer-not-resolved";
	case NB_FAIL_NOTRAFFIC:
		return "nothing-received";
	case NB_FAIL_LOST:
		return "no-answers";
	default:
		return "unknown";
	}
}

/* "12.3" from a count of nanoseconds: microseconds with one decimal. */
static void fmt_us(char *buf, size_t n, uint64_t ns)
{
	snprintf(buf, n, "%lu.%lu", ns / 1000, ns % 1000 / 100);
}

/* `bench=net-tx|net-rx|net-rr` with ip= peer= port= (7778) size= (1400 tx/rx, 32 rr) secs= (5)
 * warmup_ms= (500) batch= (32, tx) count= (10000, rr) warm_count= (100, rr) icmp=1 (rr: ICMP
 * echo to the peer's kernel instead of UDP). Prints one berth-bench line; -1: not ours. */
int net_bench(const char *name, size_t len)
{
	uint32_t mode = 0, nq;
	uint64_t secs, warm, r, ms;
	char nm[16], a[16], b[16], c[16], d[16], e[16];

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		if (strlen(modes[i].name) == len && !strncmp(modes[i].name, name, len)) {
			mode = modes[i].mode;
			memcpy(nm, name, len);
			nm[len] = 0;
		}
	if (!mode)
		return -1;
	dma_reset();
	memset(&nj, 0, sizeof(nj));
	nj.mode = mode;
	secs = cmdline_u64("secs", 5);
	warm = cmdline_u64("warmup_ms", 500);
	nj.port = (uint16_t)cmdline_u64("port", DEFAULT_PORT);
	nj.size = cmdline_u64("size", mode == NB_RR ? 32 : 1400);
	nj.batch = cmdline_u64("batch", 32);
	nj.count = cmdline_u64("count", 10000);
	nj.warm_count = cmdline_u64("warm_count", 100);
	nj.icmp = mode == NB_RR && cmdline_u64("icmp", 0);
	if (ip_param("ip", DEFAULT_IP, &nj.ip) < 0 || ip_param("peer", DEFAULT_PEER, &nj.peer_ip) < 0 ||
	    !secs || nj.size < NB_PAYLOAD_MIN || nj.size > NB_PAYLOAD_MAX || !nj.batch ||
	    !nj.count || nj.count > NB_RR_MAX || !nj.port) {
		kprintf("berth-bench %s FAIL reason=bad-parameters\n", nm);
		return 0;
	}
	if (net_open(&ndev) < 0) {
		kprintf("berth-bench %s FAIL reason=\"%s\"\n", nm, ndev.v.error);
		return 0;
	}
	nq = ndev.v.vq[NET_TXQ]->size;
	nj.ntx = nq < NB_MAX_SLOTS ? nq : NB_MAX_SLOTS;
	nq = ndev.v.vq[NET_RXQ]->size;
	nj.nrx = nq < NB_MAX_SLOTS ? nq : NB_MAX_SLOTS;
	nj.mrg = !!(ndev.v.features & VIRTIO_NET_F_MRG_RXBUF);
	nj.rxq = ndev.v.vq[NET_RXQ];
	nj.txq = ndev.v.vq[NET_TXQ];
	nj.rxbufs = dma_alloc((uint64_t)nj.nrx * NB_SLOT);
	nj.txbufs = dma_alloc((uint64_t)nj.ntx * NB_SLOT);
	nj.rtt = mode == NB_RR ? dma_alloc((uint64_t)nj.count * sizeof(uint32_t)) : NULL;
	if (!nj.rxbufs || !nj.txbufs || (mode == NB_RR && !nj.rtt) || nj.ntx < 4) {
		kprintf("berth-bench %s FAIL reason=no-dma-memory\n", nm);
		virtio_reset(&ndev.v);
		return 0;
	}
	memcpy(nj.mac, ndev.mac, 6);
	nj.tsc_khz = tsc_khz;
	nj.warm = warm * tsc_khz;
	nj.window = secs * 1000 * tsc_khz;
	nj.rr_timeout = cmdline_u64("timeout_ms", 100) * tsc_khz;
	/* net-rx waits up to two minutes for the host to start sending. */
	nj.deadline = tsc_after_us((warm + secs * 1000 + (mode == NB_RR ? 600000 : 120000)) * 1000);
	/* The harness starts its side when it sees this line. */
	kprintf("berth-info %s ready mac=%02x:%02x:%02x:%02x:%02x:%02x txq=%u rxq=%u mrg=%u\n", nm,
		nj.mac[0], nj.mac[1], nj.mac[2], nj.mac[3], nj.mac[4], nj.mac[5], nj.ntx, nj.nrx,
		nj.mrg);
	r = user_run(u_net_bench, (uint64_t)&nj);
	if (r) {
		kprintf("berth-bench %s FAIL reason=\"%s info=0x%lx status=0x%02x\" total=%lu "
			"arp_sent=%u peer_known=%u lost=%lu other=%lu\n",
			nm, nb_fail_name(nj.fail), nj.fail_info, virtio_status(&ndev.v), nj.total,
			nj.arp_sent, nj.peer_known, nj.lost, nj.other);
		virtio_reset(&ndev.v);
		return 0;
	}
	ms = (nj.t_end - nj.t_start) / tsc_khz;
	if (mode == NB_RR) {
		fmt_us(a, sizeof(a), nj.rtt_sum / nj.pkts);
		fmt_us(b, sizeof(b), nj.rtt_p50);
		fmt_us(c, sizeof(c), nj.rtt_p99);
		fmt_us(d, sizeof(d), nj.rtt_min);
		fmt_us(e, sizeof(e), nj.rtt_max);
		kprintf("berth-bench %s avg_us=%s p50_us=%s p99_us=%s min_us=%s max_us=%s "
			"p90_ns=%lu count=%lu lost=%lu late=%lu proto=%s size=%u total=%lu ms=%lu "
			"kicks=%lu\n",
			nm, a, b, c, d, e, nj.rtt_p90, nj.pkts, nj.lost, nj.late,
			nj.icmp ? "icmp" : "udp", nj.size, nj.total, ms, nj.kicks);
	} else {
		kprintf("berth-bench %s pps=%lu mbps=%lu size=%u secs=%lu pkts=%lu total=%lu "
			"kicks=%lu suppressed=%lu other=%lu dropped=%lu arp_replies=%u max_bufs=%lu\n",
			nm, nj.pkts / secs, nj.bytes * 8 / secs / 1000000, nj.size, secs, nj.pkts,
			nj.total, nj.kicks, nj.kicks_suppressed, nj.other, nj.dropped,
			nj.arp_replies, nj.max_bufs);
	}
	virtio_reset(&ndev.v);
	return 0;
}
