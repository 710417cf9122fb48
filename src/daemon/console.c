/* berthd's serial consoles over the API: connect to a VMM's console socket and relay it to and
 * from a client's upgraded HTTP connection, one thread per console. */
#include "daemon/console.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define TAG "console"
#define ACCEPT_WAIT_MS 200 /* a VMM that turns a client away closes it within this */
#define BUSY_RETRY_MS 1500 /* a client that just left may still hold the VMM's one slot */
#define STOP_WAIT_MS 5000

struct console_relays {
	pthread_mutex_t lock;
	int count; /* relay threads alive */
	bool stopping;
	int stopfd; /* eventfd, readable once console_relays_stop is called */
};

struct relay {
	struct console_relays *r;
	struct console_conn *cc;
	int sock;
	char *extra;
	size_t extra_len;
	void (*done)(void *);
	void *arg;
};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

void console_conn_free(struct console_conn *cc)
{
	if (!cc)
		return;
	if (cc->fd >= 0)
		close(cc->fd);
	free(cc);
}

/* One attempt: 0 (taken, cc->pre holds what came first), -EAGAIN (turned away), -errno. */
static int try_connect(const char *path, struct console_conn *cc)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		goto fail;
	}
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ret = poll(&p, 1, ACCEPT_WAIT_MS);
	if (ret < 0) {
		ret = -errno;
		goto fail;
	}
	if (ret > 0) {
		ssize_t n = read(fd, cc->pre, sizeof(cc->pre));
		if (n <= 0) {
			ret = n == 0 ? -EAGAIN : -errno;
			goto fail;
		}
		cc->pre_len = (size_t)n;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) {
		ret = -errno;
		goto fail;
	}
	cc->fd = fd;
	return 0;
fail:
	close(fd);
	return ret;
}

int console_open(const char *path, const char *vm, bool input, struct console_conn **out)
{
	struct console_conn *cc = calloc(1, sizeof(*cc));
	long deadline = mono_ms() + BUSY_RETRY_MS;
	int ret;

	if (!cc)
		return -ENOMEM;
	cc->fd = -1;
	cc->input = input;
	snprintf(cc->vm, sizeof(cc->vm), "%s", vm);
	while ((ret = try_connect(path, cc)) == -EAGAIN && mono_ms() < deadline)
		sleep_ms(50);
	if (ret) {
		free(cc);
		return ret == -EAGAIN ? -EBUSY : ret;
	}
	*out = cc;
	return 0;
}

/* Write all of buf to a non-blocking fd, waiting while it is full; -ECANCELED on stop. */
static int send_all(int fd, const char *buf, size_t len, int stopfd)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			buf += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN)
			return -errno;
		struct pollfd p[2] = {{.fd = fd, .events = POLLOUT},
				      {.fd = stopfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return -errno;
		if (p[1].revents)
			return -ECANCELED;
	}
	return 0;
}

/* The relay proper; returns why it ended, for the log. */
static const char *relay_run(struct relay *rl)
{
	struct console_conn *cc = rl->cc;
	int stopfd = rl->r->stopfd;
	char buf[16384];

	if (send_all(rl->sock, cc->pre, cc->pre_len, stopfd))
		return "the client went away";
	if (cc->input && rl->extra_len && send_all(cc->fd, rl->extra, rl->extra_len, stopfd))
		return "the VMM closed the console";
	struct pollfd p[3] = {{.fd = cc->fd, .events = POLLIN},
			      {.fd = rl->sock, .events = POLLIN},
			      {.fd = stopfd, .events = POLLIN}};
	for (;;) {
		if (poll(p, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			return "poll failed";
		}
		if (p[2].revents)
			return "berthd stops";
		if (p[0].revents) {
			ssize_t n = read(cc->fd, buf, sizeof(buf));
			if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
				return "the VMM closed the console";
			if (n > 0 && send_all(rl->sock, buf, (size_t)n, stopfd))
				return "the client went away";
		}
		if (p[1].revents & (POLLHUP | POLLERR))
			return "the client went away";
		if (p[1].revents & POLLIN) {
			ssize_t n = recv(rl->sock, buf, sizeof(buf), 0);
			if (n == 0) /* the client is done typing: keep showing the output */
				p[1].events = 0;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				return "the client went away";
			else if (n > 0 && cc->input && send_all(cc->fd, buf, (size_t)n, stopfd))
				return "the VMM closed the console";
		}
	}
}

static void *relay_thread(void *arg)
{
	struct relay *rl = arg;
	struct console_relays *r = rl->r;

	log_info(TAG, "VM %s: console attached%s", rl->cc->vm, rl->cc->input ? "" : " (read-only)");
	const char *why = relay_run(rl);
	log_info(TAG, "VM %s: console detached: %s", rl->cc->vm, why);
	console_conn_free(rl->cc);
	rl->done(rl->arg);
	free(rl->extra);
	free(rl);
	pthread_mutex_lock(&r->lock);
	r->count--;
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int console_relay_start(struct console_relays *r, struct console_conn *cc, int sock,
			const char *extra, size_t extra_len, void (*done)(void *), void *arg)
{
	struct relay *rl = calloc(1, sizeof(*rl));
	pthread_attr_t attr;
	pthread_t t;
	int ret = -ENOMEM;

	if (!rl || (extra_len && !(rl->extra = malloc(extra_len))))
		goto fail;
	*rl = (struct relay){.r = r,
			     .cc = cc,
			     .sock = sock,
			     .extra = rl->extra,
			     .extra_len = extra_len,
			     .done = done,
			     .arg = arg};
	if (extra_len)
		memcpy(rl->extra, extra, extra_len);
	pthread_mutex_lock(&r->lock);
	if (r->stopping) {
		ret = -ECANCELED;
	} else {
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ret = -pthread_create(&t, &attr, relay_thread, rl);
		pthread_attr_destroy(&attr);
		if (!ret)
			r->count++;
	}
	pthread_mutex_unlock(&r->lock);
	if (!ret)
		return 0;
fail:
	if (rl)
		free(rl->extra);
	free(rl);
	console_conn_free(cc);
	return ret;
}

int console_relays_new(struct console_relays **out)
{
	struct console_relays *r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	if ((r->stopfd = eventfd(0, EFD_CLOEXEC)) < 0) {
		int ret = -errno;
		free(r);
		return ret;
	}
	pthread_mutex_init(&r->lock, NULL);
	*out = r;
	return 0;
}

int console_relays_stop(struct console_relays *r)
{
	uint64_t one = 1;
	long deadline = mono_ms() + STOP_WAIT_MS;
	int left;

	pthread_mutex_lock(&r->lock);
	r->stopping = true;
	pthread_mutex_unlock(&r->lock);
	if (write(r->stopfd, &one, sizeof(one)) < 0)
		log_warn(TAG, "waking the console relays: %s", strerror(errno));
	for (;;) {
		pthread_mutex_lock(&r->lock);
		left = r->count;
		pthread_mutex_unlock(&r->lock);
		if (!left || mono_ms() >= deadline)
			break;
		sleep_ms(10);
	}
	if (left)
		log_warn(TAG, "%d console relays still running after %d ms", left, STOP_WAIT_MS);
	return left ? -EBUSY : 0;
}

void console_relays_free(struct console_relays *r)
{
	if (!r)
		return;
	close(r->stopfd);
	pthread_mutex_destroy(&r->lock);
	free(r);
}
