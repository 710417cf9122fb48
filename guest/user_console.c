/* user_console.c — ring-3 virtio-console work: control handshake, port names, bytes both ways. */
#include "guest.h"
#include "virtio_console.h"

static uint32_t get32le(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t get16le(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint64_t now(void)
{
	return vq_rdtsc();
}

static int fail(struct con_job *j, uint32_t code, uint64_t info)
{
	if (!j->fail) {
		j->fail = code;
		j->fail_info = info;
	}
	return -1;
}

static int post(struct con_job *j, struct virtq *vq, uint8_t *base, uint32_t size, uint32_t i)
{
	struct vq_buf b = {(uint64_t)(base + (uint64_t)i * size), size, 1};

	if (vq_add(vq, &b, 1, 0, i) < 0)
		return fail(j, CON_FAIL_POST, vq->index);
	return 0;
}

/* Send `len` bytes on `vq` (device-readable) and wait until the device has used them. */
static int send_sync(struct con_job *j, struct virtq *vq, const uint8_t *data, uint32_t len)
{
	struct vq_buf b = {(uint64_t)j->txbuf, len, 0};
	uint64_t tok;
	uint32_t used_len;
	int r;

	if (len > CON_TXBUF)
		return fail(j, CON_FAIL_PROTO, len);
	for (uint32_t i = 0; i < len; i++)
		j->txbuf[i] = data[i];
	if (vq_add(vq, &b, 1, 0, 0x5e4d) < 0)
		return fail(j, CON_FAIL_POST, vq->index);
	vq_kick(vq);
	while (!(r = vq_get(vq, &used_len, &tok)))
		if (now() > j->deadline)
			return fail(j, CON_FAIL_TIMEOUT, (uint64_t)vq->index << 8 | j->stage);
	if (r < 0 || tok != 0x5e4d)
		return fail(j, CON_FAIL_RING, vq->index);
	return 0;
}

static int send_ctrl(struct con_job *j, uint32_t id, uint16_t event, uint16_t value)
{
	uint8_t m[8] = {(uint8_t)id,	     (uint8_t)(id >> 8),   (uint8_t)(id >> 16),
			(uint8_t)(id >> 24), (uint8_t)event,	   (uint8_t)(event >> 8),
			(uint8_t)value,	     (uint8_t)(value >> 8)};

	j->ctrl_sent++;
	return send_sync(j, j->ctx, m, sizeof(m));
}

/* A port name as we print it: printable, no blanks, quotes or commas. */
static void set_name(struct con_job *j, uint32_t id, const uint8_t *s, uint32_t n)
{
	uint32_t k = 0;

	for (; k < n && k < CON_NAME_MAX && s[k]; k++)
		j->names[id][k] =
		    s[k] > 0x20 && s[k] < 0x7f && s[k] != '"' && s[k] != ',' ? s[k] : '?';
	j->names[id][k] = 0;
	j->named[id] = 1;
}

/* One message from the device (struct virtio_console_control, then the name for PORT_NAME). */
static int on_ctrl(struct con_job *j, const uint8_t *m, uint32_t len)
{
	uint32_t id;
	uint16_t event, value;

	j->ctrl_msgs++;
	if (len < 8)
		return fail(j, CON_FAIL_PROTO, len);
	id = get32le(m);
	event = get16le(m + 4);
	value = get16le(m + 6);
	if (id >= CON_MAX_PORTS || id >= j->max_ports) {
		j->unknown_events++;
		return 0;
	}
	switch (event) {
	case CON_DEVICE_ADD:
		j->added[id] = 1;
		return send_ctrl(j, id, CON_PORT_READY, 1); /* ready: we (could) use every port */
	case CON_DEVICE_REMOVE:
		j->added[id] = 0;
		return 0;
	case CON_PORT_NAME:
		set_name(j, id, m + 8, len - 8);
		if (j->mode == CON_MODE_TALK && id == j->port && j->stage == 0) {
			j->stage = 1; /* like a process opening /dev/virtio-ports/NAME */
			return send_ctrl(j, id, CON_PORT_OPEN, 1);
		}
		return 0;
	case CON_PORT_OPEN:
		j->host_open[id] = value != 0;
		j->host_open_seen++;
		return 0;
	case CON_CONSOLE_PORT:
		j->console[id] = 1;
		return 0;
	case CON_RESIZE:
		return 0;
	default:
		j->unknown_events++;
		return 0;
	}
}

/* Handle every control message that arrived; returns how many, or -1. */
static int poll_ctrl(struct con_job *j)
{
	uint64_t tok;
	uint32_t len;
	int r, n = 0;

	while ((r = vq_get(j->crx, &len, &tok)) != 0) {
		if (r < 0 || tok >= CON_CBUFS || len > CON_CBUF)
			return fail(j, CON_FAIL_RING, tok);
		if (on_ctrl(j, j->cbufs + tok * CON_CBUF, len) < 0 ||
		    post(j, j->crx, j->cbufs, CON_CBUF, (uint32_t)tok) < 0)
			return -1;
		n++;
	}
	if (n)
		vq_kick(j->crx);
	return n;
}

/* Bytes from the host on our port: collect one line (CR dropped). */
static int poll_port(struct con_job *j)
{
	uint64_t tok;
	uint32_t len;
	int r, n = 0;

	while ((r = vq_get(j->prx, &len, &tok)) != 0) {
		const uint8_t *b = j->pbufs + tok * CON_PBUF;

		if (r < 0 || tok >= CON_PBUFS || len > CON_PBUF)
			return fail(j, CON_FAIL_RING, tok);
		j->rx_bytes += len;
		for (uint32_t i = 0; i < len && !j->line_done; i++) {
			if (b[i] == '\n')
				j->line_done = 1;
			else if (b[i] != '\r' && j->line_len < CON_LINE_MAX)
				j->line[j->line_len++] = (char)b[i];
		}
		if (post(j, j->prx, j->pbufs, CON_PBUF, (uint32_t)tok) < 0)
			return -1;
		n++;
	}
	if (n)
		vq_kick(j->prx);
	return 0;
}

static int write_port(struct con_job *j, const char *a, const char *b, const char *c)
{
	uint8_t msg[CON_TXBUF];
	uint32_t n = 0;
	const char *parts[3] = {a, b, c};

	for (int k = 0; k < 3; k++)
		for (const char *s = parts[k]; s && *s && n < sizeof(msg); s++)
			msg[n++] = (uint8_t)*s;
	j->tx_bytes += n;
	return send_sync(j, j->ptx, msg, n);
}

static uint64_t discover(struct con_job *j)
{
	uint64_t last = now(), quiet = j->quiet_ms * j->tsc_khz;

	while (now() < j->deadline) {
		int n = poll_ctrl(j), any = 0;

		if (n < 0)
			return j->fail;
		if (n)
			last = now();
		for (uint32_t i = 0; i < CON_MAX_PORTS; i++)
			any |= j->added[i];
		if (any && now() - last > quiet)
			return 0;
	}
	return fail(j, CON_FAIL_TIMEOUT, 0), j->fail;
}

/* Stages: 0 wait for our port's name (then PORT_OPEN 1), 1 wait for the host side to be open
 * (then hello), 2 read a line (then echo it), 3 done (PORT_OPEN 0). */
static uint64_t talk(struct con_job *j)
{
	while (j->stage < 3) {
		if (now() > j->deadline)
			return fail(j, CON_FAIL_TIMEOUT, j->stage), j->fail;
		if (poll_ctrl(j) < 0 || poll_port(j) < 0)
			return j->fail;
		if (j->stage == 1 && j->host_open[j->port]) {
			if (write_port(j, j->hello, NULL, NULL) < 0)
				return j->fail;
			j->stage = 2;
		}
		if (j->stage == 2 && j->line_done) {
			j->line[j->line_len] = 0;
			if (write_port(j, "echo:", j->line, "\n") < 0)
				return j->fail;
			j->stage = 3;
		}
	}
	return send_ctrl(j, j->port, CON_PORT_OPEN, 0) < 0 ? j->fail : 0;
}

uint64_t u_con_job(uint64_t arg)
{
	struct con_job *j = (struct con_job *)arg;

	for (uint32_t i = 0; i < CON_CBUFS && i < j->crx->size; i++)
		if (post(j, j->crx, j->cbufs, CON_CBUF, i) < 0)
			return j->fail;
	vq_kick(j->crx);
	if (j->mode == CON_MODE_TALK) {
		for (uint32_t i = 0; i < CON_PBUFS && i < j->prx->size; i++)
			if (post(j, j->prx, j->pbufs, CON_PBUF, i) < 0)
				return j->fail;
		vq_kick(j->prx);
	}
	if (send_ctrl(j, 0, CON_DEVICE_READY, 1) < 0)
		return j->fail;
	return j->mode == CON_MODE_TALK ? talk(j) : discover(j);
}
