/* tests_console.c — `console`: find a named virtio-console port, say hello, echo a host line. */
#include "guest.h"
#include "virtio_console.h"
#include "x86.h"

#define DEFAULT_PORT "org.qemu.guest_agent.0"
#define HELLO "berth-console hello\n"
#define DISCOVER_US 10000000ULL
#define DISCOVER_QUIET_MS 300

static struct con_dev dev;
static struct con_job job;

static const char *fail_name(uint32_t code)
{
	switch (code) {
	case CON_FAIL_RING:
		return "bad-used-entry";
	case CON_FAIL_POST:
		return "cannot-post";
	case CON_FAIL_TIMEOUT:
		return "timeout";
	case CON_FAIL_PROTO:
		return "bad-control-message";
	default:
		return "unknown";
	}
}

/* Fresh job for `mode` on the queues con_start() set up; its buffers from DMA memory. */
static int job_init(uint32_t mode, uint32_t port, uint64_t timeout_us)
{
	dma_reset();
	memset(&job, 0, sizeof(job));
	job.mode = mode;
	job.port = port;
	job.max_ports = dev.max_ports;
	job.crx = dev.v.vq[CON_CTRL_RX];
	job.ctx = dev.v.vq[CON_CTRL_TX];
	if (mode == CON_MODE_TALK) {
		job.prx = dev.v.vq[con_port_rxq(port)];
		job.ptx = dev.v.vq[con_port_txq(port)];
	}
	job.cbufs = dma_alloc(CON_CBUFS * CON_CBUF);
	job.pbufs = dma_alloc(CON_PBUFS * CON_PBUF);
	job.txbuf = dma_alloc(CON_TXBUF);
	job.hello = HELLO;
	job.tsc_khz = tsc_khz;
	job.quiet_ms = DISCOVER_QUIET_MS;
	job.deadline = tsc_after_us(timeout_us);
	return job.cbufs && job.pbufs && job.txbuf ? 0 : -1;
}

/* "name1,name2,…" in port-id order. */
static void port_list(char *buf, size_t n)
{
	size_t len = 0;

	buf[0] = 0;
	for (uint32_t i = 0; i < CON_MAX_PORTS; i++) {
		if (!job.added[i])
			continue;
		len += snprintf(buf + len, len < n ? n - len : 0, "%s%s", len ? "," : "",
				job.named[i] ? job.names[i] : "(unnamed)");
	}
}

static void fail_line(const char *step)
{
	kprintf("berth-test console FAIL reason=\"%s step=%s stage=%u info=0x%lx status=0x%02x\" "
		"ctrl_msgs=%u\n",
		job.fail ? fail_name(job.fail) : dev.v.error, step, job.stage, job.fail_info,
		virtio_status(&dev.v), job.ctrl_msgs);
	virtio_reset(&dev.v);
}

void test_console(void)
{
	size_t want_len;
	const char *want = cmdline_value("port", &want_len);
	uint64_t secs = cmdline_u64("secs", 30);
	char ports[CON_MAX_PORTS * 24], wname[CON_NAME_MAX + 1];
	uint32_t port = CON_MAX_PORTS;

	if (!want) {
		want = DEFAULT_PORT;
		want_len = strlen(DEFAULT_PORT);
	}
	if (want_len > CON_NAME_MAX) {
		kprintf("berth-test console FAIL reason=port-name-too-long\n");
		return;
	}
	memcpy(wname, want, want_len);
	wname[want_len] = 0;
	if (con_find(&dev) < 0) {
		kprintf("berth-test console FAIL reason=\"%s\"\n", dev.v.error);
		return;
	}

	/* 1: which ports exist, and their names */
	if (con_start(&dev, 0, 0) < 0) {
		kprintf("berth-test console FAIL reason=\"%s step=start\"\n", dev.v.error);
		return;
	}
	if (job_init(CON_MODE_DISCOVER, 0, DISCOVER_US) < 0) {
		kprintf("berth-test console FAIL reason=no-dma-memory\n");
		virtio_reset(&dev.v);
		return;
	}
	if (user_run(u_con_job, (uint64_t)&job) != 0) {
		fail_line("discover");
		return;
	}
	port_list(ports, sizeof(ports));
	for (uint32_t i = 0; i < CON_MAX_PORTS && port == CON_MAX_PORTS; i++)
		if (job.added[i] && job.named[i] && !strncmp(job.names[i], wname, want_len + 1))
			port = i;
	if (port == CON_MAX_PORTS) {
		kprintf("berth-test console FAIL reason=\"no-port-named %s\" ports=%s\n", wname,
			ports);
		virtio_reset(&dev.v);
		return;
	}

	/* 2: start over with that port's queues, open it, hello, echo one line */
	if (virtio_reset(&dev.v) < 0 || con_start(&dev, 1, port) < 0) {
		kprintf("berth-test console FAIL reason=\"%s step=restart\"\n", dev.v.error);
		return;
	}
	if (job_init(CON_MODE_TALK, port, secs * 1000000) < 0) {
		kprintf("berth-test console FAIL reason=no-dma-memory\n");
		virtio_reset(&dev.v);
		return;
	}
	if (user_run(u_con_job, (uint64_t)&job) != 0) {
		fail_line("talk");
		return;
	}
	for (uint32_t i = 0; i < job.line_len; i++)
		if (job.line[i] < 0x20 || job.line[i] > 0x7e || job.line[i] == '"' ||
		    job.line[i] == '\\')
			job.line[i] = '?'; /* keep the result line parseable */
	kprintf("berth-test console PASS ports=%s port=%s id=%u got=\"%s\" max_ports=%u "
		"ctrl_msgs=%u rx_bytes=%u tx_bytes=%u\n",
		ports, wname, port, job.line, dev.max_ports, job.ctrl_msgs, job.rx_bytes,
		job.tx_bytes);
	virtio_reset(&dev.v);
}
