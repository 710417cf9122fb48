/* virtio-net (virtio 1.2 5.1) on a Linux TAP with IFF_VNET_HDR: checksum/TSO offloads, mergeable
 * receive buffers, link status. */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"

#define NET_QUEUE_SIZE 256
#define RXQ 0
#define TXQ 1
#define VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1: VERSION_1 always has num_buffers */
#define MAX_FRAME (65536 + VNET_HDR_LEN)
#define MRG_MAX 64 /* buffers one received frame may span */

enum {
	F_CSUM = 0,
	F_GUEST_CSUM = 1,
	F_MAC = 5,
	F_GUEST_TSO4 = 7,
	F_GUEST_TSO6 = 8,
	F_GUEST_ECN = 9,
	F_HOST_TSO4 = 11,
	F_HOST_TSO6 = 12,
	F_HOST_ECN = 13,
	F_MRG_RXBUF = 15,
	F_STATUS = 16,
};

struct virtio_net {
	int tap;
	char ifname[IFNAMSIZ];
	bool rx_watched;
	size_t pending; /* a received frame in rxbuf waiting for buffers (0 = none) */
	/* query-stats: frames (without the virtio header) moved, updated on the I/O thread. */
	_Atomic uint64_t rx_bytes, rx_packets, tx_bytes, tx_packets, rx_dropped, tx_dropped;
	uint8_t config[12];
	struct vq_elem elem;
	struct iovec first[8]; /* the first buffer of a merged frame, for num_buffers */
	unsigned first_n;
	uint8_t rxbuf[MAX_FRAME];
};

static void config_read(struct virtio_pci *vp, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_net *n = vp->dev;
	if (off < sizeof(n->config))
		memcpy(buf, n->config + off,
		       len < sizeof(n->config) - off ? len : sizeof(n->config) - off);
}

static void on_tap(struct virtio_pci *vp, void *arg);

static void watch_tap(struct virtio_pci *vp, bool on)
{
	struct virtio_net *n = vp->dev;
	if (n->rx_watched == on)
		return;
	if (on)
		n->rx_watched = virtio_pci_watch(vp, n->tap, on_tap, n) == 0;
	else {
		virtio_pci_unwatch(vp, n->tap);
		n->rx_watched = false;
	}
}

/* Put the frame in rxbuf into guest buffers. false: not enough buffers (the frame stays pending).
 */
static bool deliver(struct virtio_pci *vp, size_t len, bool *pushed)
{
	struct virtio_net *n = vp->dev;
	struct virtqueue *vq = &vp->q[RXQ].vq;
	bool mrg = virtio_has(vp, F_MRG_RXBUF);
	uint16_t used = 0, nbufs = 0;
	struct vring_used_elem done[MRG_MAX];
	size_t off = 0;

	while (off < len) {
		if (nbufs == (mrg ? MRG_MAX : 1)) {
			/* It does not fit: drop this frame, keep the buffers. */
			vq_unpop(vq, nbufs);
			n->rx_dropped++;
			return true;
		}
		int r = virtio_pop(vp, RXQ, &n->elem);
		if (r < 0)
			return true;
		if (r == 0) {
			vq_unpop(vq, nbufs);
			return false;
		}
		if (nbufs == 0) {
			n->first_n = n->elem.in_num < 8 ? n->elem.in_num : 8;
			memcpy(n->first, n->elem.in, n->first_n * sizeof(struct iovec));
			if (n->elem.in_len < VNET_HDR_LEN) {
				virtio_needs_reset(vp, "receive buffer smaller than the header");
				return true;
			}
		}
		size_t c = iov_from_buf(n->elem.in, n->elem.in_num, 0, n->rxbuf + off, len - off);
		done[nbufs] = (struct vring_used_elem){n->elem.head, (uint32_t)c};
		nbufs++;
		off += c;
		if (c == 0) { /* a buffer with no room: the driver broke the rules */
			virtio_needs_reset(vp, "receive buffer without writable space");
			return true;
		}
	}
	/* num_buffers (header offset 10) is known only now. */
	uint16_t nb = nbufs;
	iov_from_buf(n->first, n->first_n, 10, &nb, sizeof(nb));
	for (used = 0; used < nbufs; used++)
		vq_push(vq, (uint16_t)done[used].id, done[used].len);
	atomic_fetch_add_explicit(&n->rx_bytes, len - VNET_HDR_LEN, memory_order_relaxed);
	atomic_fetch_add_explicit(&n->rx_packets, 1, memory_order_relaxed);
	*pushed = true;
	return true;
}

/* Move frames from the TAP into the guest until it is empty or the guest has no buffers. */
static void rx(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	struct virtqueue *vq = &vp->q[RXQ].vq;
	bool pushed = false;
	if (!vp->q[RXQ].ready || vp->broken || !(vp->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	/* While buffers remain, the driver need not ring when it adds more: the TAP drives us. */
	vq_enable_notify(vq, false);
	for (unsigned budget = 0; budget < 256; budget++) {
		if (!n->pending) {
			if (!vq_has_avail(vq)) {
				/* No buffers: stop reading until the driver adds some. */
				watch_tap(vp, false);
				if (!vq_enable_notify(vq, true))
					break;
				watch_tap(vp, true);
			}
			ssize_t r = read(n->tap, n->rxbuf, sizeof(n->rxbuf));
			if (r < 0) {
				if (errno != EAGAIN && errno != EINTR)
					log_debug(vp->tag, "TAP read: %s", strerror(errno));
				break;
			}
			if (r <= VNET_HDR_LEN)
				continue;
			n->pending = (size_t)r;
		}
		if (!deliver(vp, n->pending, &pushed)) {
			watch_tap(vp, false);
			if (vq_enable_notify(vq, true))
				continue; /* buffers raced in: try again */
			break;
		}
		n->pending = 0;
		if (vp->broken)
			return;
		watch_tap(vp, true);
	}
	if (pushed)
		virtio_queue_interrupt(vp, RXQ);
}

static void on_tap(struct virtio_pci *vp, void *arg)
{
	(void)arg;
	rx(vp);
}

/* One frame from the driver to the TAP (header included: the TAP takes virtio_net_hdr_v1). */
static int64_t tx_one(struct virtio_pci *vp, struct vq_elem *e, void *arg)
{
	struct virtio_net *n = arg;
	if (e->in_num || e->out_len <= VNET_HDR_LEN) {
		virtio_needs_reset(vp, "malformed transmit buffer");
		return 0;
	}
	for (int tries = 0;; tries++) {
		if (writev(n->tap, e->out, (int)e->out_num) >= 0) {
			atomic_fetch_add_explicit(&n->tx_bytes, e->out_len - VNET_HDR_LEN,
						  memory_order_relaxed);
			atomic_fetch_add_explicit(&n->tx_packets, 1, memory_order_relaxed);
			return 0;
		}
		if (errno == EAGAIN && tries < 3) {
			struct pollfd p = {.fd = n->tap, .events = POLLOUT};
			poll(&p, 1, 10);
			continue;
		}
		if (errno != EINTR) {
			n->tx_dropped++;
			return 0;
		}
	}
}

static void tx(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	virtio_serve(vp, TXQ, &n->elem, tx_one, n);
}

/* Polling hook: look for frames on the TAP while the device thread polls. */
static bool net_poll(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	if (!n->rx_watched || !vp->q[RXQ].ready)
		return false;
	uint16_t before = vp->q[RXQ].vq.used_idx;
	rx(vp);
	return vp->q[RXQ].vq.used_idx != before;
}

static void net_notify(struct virtio_pci *vp, unsigned qi)
{
	if (qi == RXQ)
		rx(vp);
	else if (qi == TXQ)
		tx(vp);
}

/* DRIVER_OK: tell the TAP which offloads the driver can take on receive. */
static int net_activate(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	unsigned off = 0;
	if (virtio_has(vp, F_GUEST_CSUM)) {
		off |= TUN_F_CSUM;
		if (virtio_has(vp, F_GUEST_TSO4))
			off |= TUN_F_TSO4;
		if (virtio_has(vp, F_GUEST_TSO6))
			off |= TUN_F_TSO6;
		if (virtio_has(vp, F_GUEST_ECN) && (off & (TUN_F_TSO4 | TUN_F_TSO6)))
			off |= TUN_F_TSO_ECN;
	}
	if (ioctl(n->tap, TUNSETOFFLOAD, off) < 0) {
		log_err(vp->tag, "TUNSETOFFLOAD 0x%x on %s: %s", off, n->ifname, strerror(errno));
		return -errno;
	}
	watch_tap(vp, true);
	return 0;
}

static void net_reset(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	watch_tap(vp, false);
	n->pending = 0;
}

static json_t *net_stats(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "ifname", n->ifname, "rx_bytes",
			 (json_int_t)atomic_load(&n->rx_bytes), "rx_packets",
			 (json_int_t)atomic_load(&n->rx_packets), "tx_bytes",
			 (json_int_t)atomic_load(&n->tx_bytes), "tx_packets",
			 (json_int_t)atomic_load(&n->tx_packets), "rx_dropped",
			 (json_int_t)atomic_load(&n->rx_dropped), "tx_dropped",
			 (json_int_t)atomic_load(&n->tx_dropped));
}

static void net_destroy(struct virtio_pci *vp)
{
	struct virtio_net *n = vp->dev;
	uint64_t rxd = atomic_load(&n->rx_dropped), txd = atomic_load(&n->tx_dropped);
	if (rxd || txd)
		log_info(vp->tag, "%s: %llu received and %llu sent frames were dropped", n->ifname,
			 (unsigned long long)rxd, (unsigned long long)txd);
	close(n->tap);
	free(n);
	vp->dev = NULL;
}

static int set_up(const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	int r = 0;
	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0 ||
	    (ifr.ifr_flags |= IFF_UP, ioctl(s, SIOCSIFFLAGS, &ifr) < 0))
		r = -errno;
	close(s);
	return r;
}

static int add_to_bridge(const char *bridge, const char *ifname)
{
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct ifreq ifr = {0};
	int r = 0;
	if (s < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	ifr.ifr_ifindex = (int)if_nametoindex(ifname);
	if (!ifr.ifr_ifindex || ioctl(s, SIOCBRADDIF, &ifr) < 0)
		r = -errno;
	close(s);
	return r;
}

/* Open (or adopt) the TAP of a NIC: IFF_VNET_HDR with the 12-byte header, non-blocking, up. */
static int open_tap(const struct nic_cfg *c, const char *vmname, unsigned idx, char *ifname)
{
	struct ifreq ifr = {0};
	int fd;
	if (c->kind == NIC_FD) {
		fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0 || ioctl(fd, TUNGETIFF, &ifr) < 0) {
			int e = -errno;
			log_err("virtio-net", "--net fd=%d: not an open TAP: %s", c->fd,
				strerror(errno));
			if (fd >= 0)
				close(fd);
			return e;
		}
		if (!(ifr.ifr_flags & IFF_VNET_HDR) || !(ifr.ifr_flags & IFF_TAP)) {
			log_err("virtio-net", "--net fd=%d: the TAP needs IFF_TAP and IFF_VNET_HDR",
				c->fd);
			close(fd);
			return -EINVAL;
		}
	} else {
		fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			int e = -errno;
			log_err("virtio-net", "cannot open /dev/net/tun: %s", strerror(errno));
			return e;
		}
		ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
		if (c->kind == NIC_TAP)
			snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", c->ifname);
		else
			snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "bt%.7s%u-%%d", vmname, idx);
		if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
			int e = -errno;
			log_err("virtio-net", "--net %s=%s: cannot create the TAP: %s",
				c->kind == NIC_TAP ? "tap" : "bridge", c->ifname, strerror(errno));
			close(fd);
			return e;
		}
	}
	snprintf(ifname, IFNAMSIZ, "%s", ifr.ifr_name);
	int hdr = VNET_HDR_LEN;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) {
		int e = -errno;
		log_err("virtio-net", "%s: cannot configure the TAP: %s", ifname, strerror(errno));
		close(fd);
		return e;
	}
	int r;
	if (c->kind == NIC_BRIDGE && (r = add_to_bridge(c->ifname, ifname))) {
		log_err("virtio-net", "--net bridge=%s: cannot add %s to it: %s", c->ifname, ifname,
			strerror(-r));
		close(fd);
		return r;
	}
	if (c->kind != NIC_FD && (r = set_up(ifname)))
		log_warn("virtio-net", "%s: cannot bring it up: %s", ifname, strerror(-r));
	return fd;
}

static const struct virtio_device_ops net_ops = {
    .name = "virtio-net",
    .device_id = 1,
    .pci_class = 0x020000,
    .num_queues = 2,
    .queue_max = NET_QUEUE_SIZE,
    .features = 1ULL << F_CSUM | 1ULL << F_GUEST_CSUM | 1ULL << F_MAC | 1ULL << F_GUEST_TSO4 |
		1ULL << F_GUEST_TSO6 | 1ULL << F_GUEST_ECN | 1ULL << F_HOST_TSO4 |
		1ULL << F_HOST_TSO6 | 1ULL << F_HOST_ECN | 1ULL << F_MRG_RXBUF | 1ULL << F_STATUS,
    .config_size = 12,
    .config_read = config_read,
    .activate = net_activate,
    .reset = net_reset,
    .queue_notify = net_notify,
    .destroy = net_destroy,
    .poll_us = 30,
    .poll = net_poll,
    .stats = net_stats,
};

int virtio_net_create(struct vm *vm, const struct nic_cfg *cfg, const char *vmname, unsigned idx)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->tap = open_tap(cfg, vmname, idx, n->ifname);
	if (n->tap < 0) {
		int r = n->tap;
		free(n);
		return r;
	}
	uint8_t mac[6];
	if (cfg->mac_set) {
		memcpy(mac, cfg->mac, 6);
	} else {
		if (getrandom(mac, sizeof(mac), 0) != sizeof(mac))
			mac[5] = (uint8_t)idx;
		mac[0] = (uint8_t)((mac[0] & 0xfc) | 0x02); /* locally administered, unicast */
	}
	memcpy(n->config, mac, 6);
	n->config[6] = 1; /* status: VIRTIO_NET_S_LINK_UP */
	n->config[8] = 1; /* max_virtqueue_pairs */
	struct virtio_pci *vp;
	int r = virtio_pci_create(vm, &net_ops, n, &vp);
	if (r) {
		close(n->tap);
		free(n);
		return r;
	}
	log_info(vp->tag, "on %s, MAC %02x:%02x:%02x:%02x:%02x:%02x", n->ifname, mac[0], mac[1],
		 mac[2], mac[3], mac[4], mac[5]);
	return 0;
}
