/* virtio_console.c — virtio-console bring-up: MULTIPORT, max_nr_ports, control and port queues. */
#include "guest.h"
#include "virtio_console.h"
#include "x86.h"

int con_find(struct con_dev *c)
{
	memset(c, 0, sizeof(*c));
	return virtio_find(&c->v, VIRTIO_TYPE_CONSOLE, 0);
}

/* (Re)initialise the device with MULTIPORT: the control queues and, with `with_port`, the
 * receive/transmit queues of port `port` — all before DRIVER_OK, as virtio 1.2 3.1.1 wants, which
 * is why the `console` test learns the port ids first and then starts over. Queues are polled
 * from ring 3. */
int con_start(struct con_dev *c, int with_port, uint32_t port)
{
	uint32_t qs[4] = {CON_CTRL_RX, CON_CTRL_TX, con_port_rxq(port), con_port_txq(port)};
	unsigned int nq = with_port ? 4 : 2;

	if (virtio_negotiate(&c->v, VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT,
			     VIRTIO_F_VERSION_1 | VIRTIO_CONSOLE_F_MULTIPORT) < 0)
		return -1;
	/* struct virtio_console_config: cols, rows (u16), max_nr_ports (u32) at 4 */
	c->max_ports = c->v.devcfg_len >= 8 ? *(volatile uint32_t *)(c->v.devcfg + 4) : 0;
	if (!c->max_ports) {
		virtio_fail(&c->v, "max_nr_ports-zero");
		goto fail;
	}
	if (with_port && port >= c->max_ports) {
		virtio_fail(&c->v, "port-beyond-max_nr_ports");
		goto fail;
	}
	virtio_set_config_vector(&c->v, VIRTIO_NO_VECTOR, NULL);
	for (unsigned int i = 0; i < nq; i++) {
		if (virtio_setup_queue(&c->v, qs[i], VQ_MAX_SIZE, VIRTIO_NO_VECTOR) < 0)
			goto fail;
		vq_irq_enable(c->v.vq[qs[i]], 0);
	}
	if (virtio_driver_ok(&c->v) < 0)
		goto fail;
	return 0;
fail:
	virtio_reset(&c->v);
	return -1;
}
