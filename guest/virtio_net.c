/* virtio_net.c — virtio-net bring-up: features, MAC and link status, receive/transmit queues. */
#include "guest.h"
#include "virtio_net.h"
#include "x86.h"

static uint8_t cfg8(const struct net_dev *n, unsigned int off)
{
	return off + 1 <= n->v.devcfg_len ? *(volatile uint8_t *)(n->v.devcfg + off) : 0;
}

static uint16_t cfg16(const struct net_dev *n, unsigned int off)
{
	return off + 2 <= n->v.devcfg_len ? *(volatile uint16_t *)(n->v.devcfg + off) : 0;
}

/* struct virtio_net_config: mac[6] at 0, status at 6 (virtio 1.2, 5.1.4), read under
 * config_generation since the MAC takes six reads. */
static int read_config(struct net_dev *n)
{
	uint8_t before, after;
	uint32_t tries = 0;

	do {
		if (tries++ > 100)
			return virtio_fail(&n->v, "config-generation-unstable");
		before = *(volatile uint8_t *)(n->v.common + VCOMMON_CFGGEN);
		for (unsigned int i = 0; i < 6; i++)
			n->mac[i] = cfg8(n, i);
		n->have_status = !!(n->v.features & VIRTIO_NET_F_STATUS);
		n->status = n->have_status ? cfg16(n, 6) : 0;
		after = *(volatile uint8_t *)(n->v.common + VCOMMON_CFGGEN);
	} while (before != after);
	if (!(n->v.features & VIRTIO_NET_F_MAC)) {
		/* No MAC from the device: a fixed locally administered one. */
		static const uint8_t mine[6] = {0x02, 0x62, 0x65, 0x72, 0x74, 0x68};

		memcpy(n->mac, mine, 6);
	}
	return 0;
}

/* Find the first virtio-net function; VERSION_1 + MAC + STATUS + MRG_RXBUF (no offloads: every
 * frame carries complete checksums both ways); receive queue 0 and transmit queue 1, polled from
 * ring 3 with interrupts suppressed; DRIVER_OK. */
int net_open(struct net_dev *n)
{
	uint64_t want =
	    VIRTIO_F_VERSION_1 | VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MRG_RXBUF;

	memset(n, 0, sizeof(*n));
	if (virtio_find(&n->v, VIRTIO_TYPE_NET, 0) < 0)
		return -1;
	if (virtio_negotiate(&n->v, want, VIRTIO_F_VERSION_1) < 0)
		return -1;
	if (read_config(n) < 0)
		goto fail;
	virtio_set_config_vector(&n->v, VIRTIO_NO_VECTOR, NULL);
	for (unsigned int q = NET_RXQ; q <= NET_TXQ; q++) {
		if (virtio_setup_queue(&n->v, q, VQ_MAX_SIZE, VIRTIO_NO_VECTOR) < 0)
			goto fail;
		vq_irq_enable(n->v.vq[q], 0);
	}
	if (virtio_driver_ok(&n->v) < 0)
		goto fail;
	return 0;
fail:
	virtio_reset(&n->v);
	return -1;
}
