/* Host side of a serial port: stdout/stdin (raw tty, Ctrl-A x quits), file, pty, unix socket
 * server. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/evloop.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/serial.h"

#define CTRL_A 0x01

int serial_backend_open(struct serial_backend *be, const struct serial_cfg *cfg, const char *tag)
{
	memset(be, 0, sizeof(*be));
	pthread_mutex_init(&be->out_lock, NULL);
	be->kind = cfg->kind;
	be->in_fd = be->out_fd = be->listen_fd = -1;
	snprintf(be->tag, sizeof(be->tag), "%s", tag);

	switch (cfg->kind) {
	case SERIAL_NONE:
		return 0;
	case SERIAL_STDOUT:
		be->out_fd = STDOUT_FILENO;
		be->in_fd = STDIN_FILENO;
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &be->saved) == 0) {
			struct termios raw = be->saved;
			cfmakeraw(&raw);
			raw.c_oflag |= OPOST | ONLCR; /* keep "\n" -> "\r\n" on our own output */
			if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
				be->tty_raw = true;
		}
		return 0;
	case SERIAL_FILE:
		be->out_fd =
		    open(cfg->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0644);
		if (be->out_fd < 0) {
			int e = -errno;
			log_err(tag, "cannot open serial file '%s': %s", cfg->path,
				strerror(errno));
			return e;
		}
		return 0;
	case SERIAL_PTY: {
		int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (m < 0 || grantpt(m) || unlockpt(m)) {
			int e = -errno;
			log_err(tag, "cannot create a pty: %s", strerror(errno));
			if (m >= 0)
				close(m);
			return e;
		}
		struct termios t;
		if (tcgetattr(m, &t) == 0) {
			cfmakeraw(&t);
			tcsetattr(m, TCSANOW, &t);
		}
		fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
		be->in_fd = be->out_fd = m;
		/* Tell the user (and berthd) where to connect. */
		log_info(tag, "serial console on %s", ptsname(m));
		return 0;
	}
	case SERIAL_UNIX: {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", cfg->path);
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return -errno;
		struct stat st;
		if (lstat(cfg->path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(cfg->path); /* a stale socket from an earlier run */
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
			int e = -errno;
			log_err(tag, "cannot listen on unix socket '%s': %s", cfg->path,
				strerror(errno));
			close(fd);
			return e;
		}
		be->listen_fd = fd;
		be->sock_path = strdup(cfg->path);
		be->history = malloc(SERIAL_HISTORY);
		return 0;
	}
	}
	return -EINVAL;
}

/* Send the socket client what it has not got yet, as far as its socket takes it (never blocks: a
 * vCPU thread may be the caller). The rest goes when the socket has room (EPOLLOUT). out_lock. */
static void flush_client(struct serial_backend *be)
{
	while (be->out_fd >= 0 && be->sent < be->total) {
		if (be->total - be->sent >
		    be->hist_len) { /* fell behind by more than the history */
			be->lost += be->total - be->hist_len - be->sent;
			be->sent = be->total - be->hist_len;
		}
		size_t back = (size_t)(be->total - be->sent);
		size_t pos = (be->hist_head + be->hist_len - back) % SERIAL_HISTORY;
		size_t n = back < SERIAL_HISTORY - pos ? back : SERIAL_HISTORY - pos;
		ssize_t w = write(be->out_fd, be->history + pos, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* full (EAGAIN) or gone: the event loop sees which */
		be->sent += (uint64_t)w;
	}
}

void serial_backend_output(struct serial_backend *be, const uint8_t *buf, size_t len)
{
	pthread_mutex_lock(&be->out_lock);
	if (be->history) {
		for (size_t i = 0; i < len; i++) {
			be->history[(be->hist_head + be->hist_len) % SERIAL_HISTORY] = buf[i];
			if (be->hist_len < SERIAL_HISTORY)
				be->hist_len++;
			else
				be->hist_head = (be->hist_head + 1) % SERIAL_HISTORY;
		}
		be->total += len;
		flush_client(be); /* a socket client gets its output from the history */
		pthread_mutex_unlock(&be->out_lock);
		return;
	}
	ssize_t w = 0;
	while (be->out_fd >= 0 && (w = write(be->out_fd, buf, len)) < 0 && errno == EINTR)
		;
	pthread_mutex_unlock(&be->out_lock);
}

static void drop_client(struct serial_backend *be)
{
	pthread_mutex_lock(&be->out_lock);
	if (be->in_fd >= 0) {
		if (be->loop)
			evloop_del(be->loop, be->in_fd);
		close(be->in_fd);
	}
	be->in_fd = be->out_fd = -1;
	pthread_mutex_unlock(&be->out_lock);
}

/* Read one buffer of input from fd; false once there is nothing more to read now. */
static bool on_input_once(struct serial_backend *be, int fd)
{
	uint8_t buf[256], out[256];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n <= 0) {
		if (n < 0 && errno == EINTR)
			return true;
		if (n < 0 && errno == EAGAIN)
			return false;
		if (be->kind == SERIAL_UNIX) {
			drop_client(be);
		} else if (be->loop) {
			evloop_del(be->loop, fd); /* stdin closed: keep running without input */
			if (be->kind == SERIAL_STDOUT)
				be->in_fd = -1;
		}
		return false;
	}
	size_t m = 0;
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = buf[i];
		if (be->tty_raw) {
			if (be->escape) {
				be->escape = false;
				if (c == 'x' || c == 'X') {
					if (be->quit)
						be->quit(be->quit_opaque);
					return false;
				}
				if (c != CTRL_A)
					continue;
			} else if (c == CTRL_A) {
				be->escape = true;
				continue;
			}
		}
		out[m++] = c;
	}
	/* The device is swapped on VM restart; input with no device is dropped. */
	if (be->dev && m)
		serial_receive(be->dev, out, m);
	return n == (ssize_t)sizeof(buf);
}

static void on_input(void *opaque, int fd, uint32_t events)
{
	(void)events;
	on_input_once(opaque, fd);
}

/* A socket client (edge-triggered): catch up when its socket has room; read all its input. */
static void on_client(void *opaque, int fd, uint32_t events)
{
	struct serial_backend *be = opaque;
	if (events & EPOLLOUT) {
		pthread_mutex_lock(&be->out_lock);
		flush_client(be);
		if (be->lost) {
			log_warn(be->tag,
				 "the console client reads too slowly: %llu bytes of output "
				 "were not sent to it",
				 (unsigned long long)be->lost);
			be->lost = 0;
		}
		pthread_mutex_unlock(&be->out_lock);
	}
	while (be->in_fd == fd && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		if (!on_input_once(be, fd))
			break;
}

static void on_accept(void *opaque, int fd, uint32_t events)
{
	struct serial_backend *be = opaque;
	(void)events;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c < 0)
		return;
	if (be->in_fd >= 0) { /* one client at a time */
		close(c);
		return;
	}
	/* The client first gets what the guest printed before it came (the history), then the
	 * output as it comes; a client that reads slowly catches up from the history. */
	pthread_mutex_lock(&be->out_lock);
	be->in_fd = be->out_fd = c;
	be->sent = be->total - be->hist_len;
	be->lost = 0;
	flush_client(be);
	pthread_mutex_unlock(&be->out_lock);
	if (be->loop)
		evloop_add(be->loop, c, EPOLLIN | EPOLLOUT | EPOLLET, on_client, be);
}

int serial_backend_attach(struct serial_backend *be, struct evloop *loop)
{
	be->loop = loop;
	if (be->listen_fd >= 0)
		return evloop_add(loop, be->listen_fd, EPOLLIN, on_accept, be);
	if (be->in_fd >= 0) {
		int r = evloop_add(loop, be->in_fd, EPOLLIN, on_input, be);
		if (r == -EPERM) /* stdin is a regular file or /dev/null: no input */
			return 0;
		return r;
	}
	return 0;
}

void serial_backend_close(struct serial_backend *be)
{
	if (be->tty_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &be->saved);
	if (be->kind == SERIAL_STDOUT)
		be->in_fd = be->out_fd = -1;
	if (be->in_fd >= 0)
		close(be->in_fd);
	if (be->out_fd >= 0 && be->out_fd != be->in_fd)
		close(be->out_fd);
	if (be->listen_fd >= 0)
		close(be->listen_fd);
	free(be->history);
	if (be->sock_path) {
		unlink(be->sock_path);
		free(be->sock_path);
	}
	pthread_mutex_destroy(&be->out_lock);
	memset(be, 0, sizeof(*be));
	be->in_fd = be->out_fd = be->listen_fd = -1;
}
