/* virtio-console with MULTIPORT (virtio 1.2 5.3): named ports, each served to the host on a unix
 * socket. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"

#define CON_QUEUE_SIZE 128
#define F_MULTIPORT 1
#define CTRL_RX 2 /* control receiveq (device -> driver) */
#define CTRL_TX 3 /* control transmitq (driver -> device) */
#define PENDING_MAX 4096
#define CTRLQ_MAX 256

enum {
	DEVICE_READY = 0,
	DEVICE_ADD = 1,
	DEVICE_REMOVE = 2,
	PORT_READY = 3,
	CONSOLE_PORT = 4,
	RESIZE = 5,
	PORT_OPEN = 6,
	PORT_NAME = 7,
};

struct port {
	unsigned id; /* 1.. (port 0 is the unused console slot) */
	char name[CONSOLE_PORT_NAME_MAX + 1];
	char *path;
	int listen_fd, client_fd;
	bool client_watched;
	bool ready;		      /* the driver sent PORT_READY */
	bool guest_open;	      /* a guest process has the port open */
	uint8_t pending[PENDING_MAX]; /* host bytes waiting for receive buffers */
	size_t plen, poff;
	struct virtio_console *con;
};

struct ctrl_msg {
	uint32_t id;
	uint16_t event, value;
	char name[CONSOLE_PORT_NAME_MAX + 1]; /* PORT_NAME only */
};

struct virtio_console {
	struct virtio_pci *vp;
	unsigned nports;
	struct port ports[VM_CONSOLE_PORTS_MAX];
	struct ctrl_msg ctrlq[CTRLQ_MAX]; /* messages for the driver, waiting for buffers */
	unsigned ctrl_head, ctrl_count;
	uint8_t config[12];
	/* Separate elements: serving one queue may fill another (a control message, port data). */
	struct vq_elem elem, ctrl_elem, rx_elem;
};

static unsigned rxq(unsigned id)
{
	return id == 0 ? 0 : 2 * id + 2;
}

static struct port *port_by_id(struct virtio_console *c, uint32_t id)
{
	for (unsigned i = 0; i < c->nports; i++)
		if (c->ports[i].id == id)
			return &c->ports[i];
	return NULL;
}

static void config_read(struct virtio_pci *vp, uint32_t off, uint8_t *buf, uint32_t len)
{
	struct virtio_console *c = vp->dev;
	if (off < sizeof(c->config))
		memcpy(buf, c->config + off,
		       len < sizeof(c->config) - off ? len : sizeof(c->config) - off);
}

/* Deliver queued control messages into the control receiveq (lock held). */
static void flush_ctrl(struct virtio_pci *vp)
{
	struct virtio_console *c = vp->dev;
	struct virtio_queue_state *qs = &vp->q[CTRL_RX];
	bool pushed = false;
	if (!qs->ready || !(vp->status & VIRTIO_STATUS_DRIVER_OK) || vp->broken)
		return;
	while (c->ctrl_count) {
		int r = virtio_pop(vp, CTRL_RX, &c->ctrl_elem);
		if (r < 0)
			return;
		if (r == 0)
			break;
		struct ctrl_msg *m = &c->ctrlq[c->ctrl_head];
		uint8_t buf[8 + CONSOLE_PORT_NAME_MAX];
		size_t n = 8;
		memcpy(buf, &m->id, 4);
		memcpy(buf + 4, &m->event, 2);
		memcpy(buf + 6, &m->value, 2);
		if (m->event == PORT_NAME) {
			memcpy(buf + 8, m->name, strlen(m->name));
			n += strlen(m->name);
		}
		size_t w = iov_from_buf(c->ctrl_elem.in, c->ctrl_elem.in_num, 0, buf, n);
		vq_push(&qs->vq, c->ctrl_elem.head, (uint32_t)w);
		pushed = true;
		c->ctrl_head = (c->ctrl_head + 1) % CTRLQ_MAX;
		c->ctrl_count--;
	}
	if (pushed)
		virtio_queue_interrupt(vp, CTRL_RX);
}

static void send_ctrl(struct virtio_pci *vp, uint32_t id, uint16_t event, uint16_t value,
		      const char *name)
{
	struct virtio_console *c = vp->dev;
	if (c->ctrl_count == CTRLQ_MAX) {
		log_warn(vp->tag, "control queue full: a message for port %u is lost", id);
		return;
	}
	struct ctrl_msg *m = &c->ctrlq[(c->ctrl_head + c->ctrl_count) % CTRLQ_MAX];
	*m = (struct ctrl_msg){id, event, value, ""};
	if (name)
		snprintf(m->name, sizeof(m->name), "%s", name);
	c->ctrl_count++;
	flush_ctrl(vp);
}

static void on_client(struct virtio_pci *vp, void *arg);

static void watch_client(struct port *p, bool on)
{
	struct virtio_pci *vp = p->con->vp;
	if (p->client_fd < 0 || p->client_watched == on)
		return;
	if (on)
		p->client_watched = virtio_pci_watch(vp, p->client_fd, on_client, p) == 0;
	else {
		virtio_pci_unwatch(vp, p->client_fd);
		p->client_watched = false;
	}
}

/* Move host bytes into the port's receive buffers; resume reading the socket when drained. */
static void flush_rx(struct virtio_pci *vp, struct port *p)
{
	struct virtio_queue_state *qs = &vp->q[rxq(p->id)];
	bool pushed = false;
	if (!qs->ready || vp->broken || !(vp->status & VIRTIO_STATUS_DRIVER_OK))
		return;
	struct virtio_console *c = vp->dev;
	while (p->poff < p->plen) {
		int r = virtio_pop(vp, rxq(p->id), &c->rx_elem);
		if (r < 0)
			return;
		if (r == 0)
			break;
		size_t w = iov_from_buf(c->rx_elem.in, c->rx_elem.in_num, 0, p->pending + p->poff,
					p->plen - p->poff);
		p->poff += w;
		vq_push(&qs->vq, c->rx_elem.head, (uint32_t)w);
		pushed = true;
	}
	if (pushed)
		virtio_queue_interrupt(vp, rxq(p->id));
	if (p->poff == p->plen) {
		p->poff = p->plen = 0;
		watch_client(p, true);
	}
}

static void drop_client(struct virtio_pci *vp, struct port *p)
{
	watch_client(p, false);
	close(p->client_fd);
	p->client_fd = -1;
	p->plen = p->poff = 0;
	if (p->ready)
		send_ctrl(vp, p->id, PORT_OPEN, 0, NULL);
}

static void on_client(struct virtio_pci *vp, void *arg)
{
	struct port *p = arg;
	if (p->plen) /* still delivering the last read */
		return;
	ssize_t n = read(p->client_fd, p->pending, sizeof(p->pending));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_client(vp, p);
		return;
	}
	p->plen = (size_t)n;
	p->poff = 0;
	watch_client(p, false); /* backpressure: read more once the guest took this */
	flush_rx(vp, p);
}

static void on_accept(struct virtio_pci *vp, void *arg)
{
	struct port *p = arg;
	int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return;
	if (p->client_fd >= 0) { /* one host client per port */
		close(fd);
		return;
	}
	p->client_fd = fd;
	watch_client(p, true);
	if (p->ready)
		send_ctrl(vp, p->id, PORT_OPEN, 1, NULL);
}

/* Bytes the guest wrote to a port go to its host client (dropped when none is connected). */
static int64_t port_tx_one(struct virtio_pci *vp, struct vq_elem *e, void *arg)
{
	struct port *p = arg;
	struct iovec *iov = e->out;
	unsigned n = e->out_num;
	while (p && p->client_fd >= 0 && n) {
		ssize_t w = writev(p->client_fd, iov, (int)n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				drop_client(vp, p);
			break; /* a slow reader loses data rather than stall the guest */
		}
		while (n && (size_t)w >= iov->iov_len)
			w -= (ssize_t)iov->iov_len, iov++, n--;
		if (n && w) {
			iov->iov_base = (uint8_t *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

/* A control message from the driver. */
static int64_t control_one(struct virtio_pci *vp, struct vq_elem *e, void *arg)
{
	struct virtio_console *c = arg;
	uint8_t m[8];
	if (iov_to_buf(e->out, e->out_num, 0, m, sizeof(m)) < 8)
		return 0; /* too short: ignored */
	uint32_t id;
	uint16_t event, value;
	memcpy(&id, m, 4);
	memcpy(&event, m + 4, 2);
	memcpy(&value, m + 6, 2);
	struct port *p = port_by_id(c, id);
	switch (event) {
	case DEVICE_READY:
		if (value != 1)
			break;
		for (unsigned i = 0; i < c->nports; i++)
			send_ctrl(vp, c->ports[i].id, DEVICE_ADD, 0, NULL);
		break;
	case PORT_READY:
		if (!p || value != 1) {
			log_debug(vp->tag, "port %u failed to initialise in the guest", id);
			break;
		}
		p->ready = true;
		send_ctrl(vp, p->id, PORT_NAME, 1, p->name);
		if (p->client_fd >= 0)
			send_ctrl(vp, p->id, PORT_OPEN, 1, NULL);
		break;
	case PORT_OPEN:
		if (p)
			p->guest_open = value;
		break;
	default:
		break;
	}
	return 0;
}

static void con_notify(struct virtio_pci *vp, unsigned qi)
{
	struct virtio_console *c = vp->dev;
	if (qi == CTRL_RX) {
		flush_ctrl(vp);
	} else if (qi == CTRL_TX) {
		virtio_serve(vp, CTRL_TX, &c->elem, control_one, c);
	} else if (qi % 2 == 0) { /* a receiveq got buffers */
		struct port *p = port_by_id(c, qi == 0 ? 0 : qi / 2 - 1);
		if (p)
			flush_rx(vp, p);
	} else {
		virtio_serve(vp, qi, &c->elem, port_tx_one,
			     port_by_id(c, qi == 1 ? 0 : (qi - 3) / 2));
	}
}

static void con_reset(struct virtio_pci *vp)
{
	struct virtio_console *c = vp->dev;
	c->ctrl_head = c->ctrl_count = 0;
	for (unsigned i = 0; i < c->nports; i++) {
		c->ports[i].ready = c->ports[i].guest_open = false;
		c->ports[i].plen = c->ports[i].poff = 0;
		watch_client(&c->ports[i], true);
	}
}

/* Port handshake state survives a save/restore; host bytes not yet delivered do not. */
static json_t *con_save(struct virtio_pci *vp)
{
	struct virtio_console *c = vp->dev;
	json_t *ports = json_array(), *ctrl = json_array();
	for (unsigned i = 0; i < c->nports; i++)
		json_array_append_new(ports, json_pack("{s:s,s:b,s:b}", "name", c->ports[i].name,
						       "ready", c->ports[i].ready, "guest_open",
						       c->ports[i].guest_open));
	for (unsigned i = 0; i < c->ctrl_count; i++) {
		const struct ctrl_msg *m = &c->ctrlq[(c->ctrl_head + i) % CTRLQ_MAX];
		json_array_append_new(ctrl,
				      json_pack("{s:i,s:i,s:i,s:s}", "id", (int)m->id, "event",
						m->event, "value", m->value, "name", m->name));
	}
	return json_pack("{s:o,s:o}", "ports", ports, "control", ctrl);
}

static int con_load(struct virtio_pci *vp, json_t *st, char *msg, size_t msglen)
{
	struct virtio_console *c = vp->dev;
	json_t *ports = json_object_get(st, "ports"), *ctrl = json_object_get(st, "control");
	if (!json_is_array(ports) || json_array_size(ports) != c->nports || !json_is_array(ctrl) ||
	    json_array_size(ctrl) > CTRLQ_MAX) {
		snprintf(msg, msglen, "%s: saved console state does not match its %u port(s)",
			 vp->tag, c->nports);
		return -EINVAL;
	}
	for (unsigned i = 0; i < c->nports; i++) {
		json_t *p = json_array_get(ports, i);
		const char *name = json_string_value(json_object_get(p, "name"));
		if (!name || strcmp(name, c->ports[i].name)) {
			snprintf(msg, msglen, "%s: saved port %u is not '%s'", vp->tag, i + 1,
				 c->ports[i].name);
			return -EINVAL;
		}
		c->ports[i].ready = json_is_true(json_object_get(p, "ready"));
		c->ports[i].guest_open = json_is_true(json_object_get(p, "guest_open"));
	}
	c->ctrl_head = 0;
	c->ctrl_count = 0;
	size_t i;
	json_t *m;
	json_array_foreach(ctrl, i, m)
	{
		struct ctrl_msg *d = &c->ctrlq[c->ctrl_count++];
		const char *name = json_string_value(json_object_get(m, "name"));
		d->id = (uint32_t)json_integer_value(json_object_get(m, "id"));
		d->event = (uint16_t)json_integer_value(json_object_get(m, "event"));
		d->value = (uint16_t)json_integer_value(json_object_get(m, "value"));
		snprintf(d->name, sizeof(d->name), "%s", name ? name : "");
	}
	return 0;
}

static void con_destroy(struct virtio_pci *vp)
{
	struct virtio_console *c = vp->dev;
	for (unsigned i = 0; i < c->nports; i++) {
		struct port *p = &c->ports[i];
		if (p->client_fd >= 0)
			close(p->client_fd);
		if (p->listen_fd >= 0) {
			close(p->listen_fd);
			unlink(p->path);
		}
		free(p->path);
	}
	free(c);
	vp->dev = NULL;
}

static int listen_on(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path); /* stale socket of an earlier run */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

static const struct virtio_device_ops con_ops_template = {
    .name = "virtio-console",
    .device_id = 3,
    .pci_class = 0x078000,
    .queue_max = CON_QUEUE_SIZE,
    .features = 1ULL << F_MULTIPORT,
    .config_size = 12,
    .config_read = config_read,
    .reset = con_reset,
    .queue_notify = con_notify,
    .save = con_save,
    .load = con_load,
    .destroy = con_destroy,
    .owns_ops = true,
};

int virtio_console_create(struct vm *vm, const struct console_port_cfg *ports, unsigned n)
{
	struct virtio_console *c = calloc(1, sizeof(*c));
	struct virtio_device_ops *ops = malloc(sizeof(*ops));
	int r = 0;
	if (!c || !ops) {
		free(c);
		free(ops);
		return -ENOMEM;
	}
	c->nports = n;
	for (unsigned i = 0; i < n; i++) {
		struct port *p = &c->ports[i];
		p->id = i + 1;
		p->con = c;
		p->client_fd = -1;
		snprintf(p->name, sizeof(p->name), "%s", ports[i].name);
		p->path = strdup(ports[i].socket);
		p->listen_fd = listen_on(ports[i].socket);
		if (p->listen_fd < 0) {
			r = p->listen_fd;
			log_err("virtio-console",
				"--console-port name=%s: cannot listen on '%s': %s", p->name,
				ports[i].socket, strerror(-r));
			goto fail;
		}
	}
	uint32_t max_ports = n + 1;
	memcpy(c->config + 4, &max_ports, 4); /* cols, rows = 0; max_nr_ports; emerg_wr = 0 */
	*ops = con_ops_template;
	ops->num_queues = (uint16_t)(2 * (n + 1) + 2);
	struct virtio_pci *vp;
	if ((r = virtio_pci_create(vm, ops, c, &vp)))
		goto fail;
	c->vp = vp;
	for (unsigned i = 0; i < n; i++)
		if ((r = virtio_pci_watch(vp, c->ports[i].listen_fd, on_accept, &c->ports[i])))
			return r; /* on the bus already: the VM teardown frees it */
	return 0;
fail:
	for (unsigned i = 0; i < n; i++) {
		if (c->ports[i].listen_fd > 0) {
			close(c->ports[i].listen_fd);
			unlink(c->ports[i].path);
		}
		free(c->ports[i].path);
	}
	free(c);
	free(ops);
	return r;
}
