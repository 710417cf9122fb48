/* berthd's client side of the berth-vmm control socket: connect, one request, its reply. */
#include "daemon/ctlclient.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/util.h"

int ctl_connect(const char *path, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		int e = -errno;
		close(fd);
		return e;
	}
	*out = fd;
	return 0;
}

int ctl_call(int fd, const char *cmd, json_t *args, int timeout_ms, json_t **result, char *err,
	     size_t errlen)
{
	return ctl_call_ev(fd, cmd, args, timeout_ms, NULL, NULL, result, err, errlen);
}

int ctl_call_ev(int fd, const char *cmd, json_t *args, int timeout_ms, ctl_event_fn on_event,
		void *arg, json_t **result, char *err, size_t errlen)
{
	static int next_id = 1;
	int id = __atomic_fetch_add(&next_id, 1, __ATOMIC_RELAXED);
	int64_t deadline = mono_ms() + timeout_ms;
	struct proto_rx rx;
	json_t *req, *msg = NULL;
	int ret;

	*result = NULL;
	err[0] = '\0';
	req = json_pack("{s:i, s:s}", "id", id, "cmd", cmd);
	if (!req || (args && json_object_set(req, "args", args))) {
		json_decref(req);
		return -ENOMEM;
	}
	ret = proto_send(fd, req, NULL, 0);
	json_decref(req);
	if (ret)
		return ret;
	proto_rx_init(&rx);
	for (;;) {
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		ret = proto_recv(fd, &rx, &msg, fds, &nfds);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if (ret == PROTO_MESSAGE) {
			json_t *jid = json_object_get(msg, "id");
			const char *ev = json_string_value(json_object_get(msg, "event"));
			if (ev && on_event)
				on_event(arg, ev, json_object_get(msg, "data"));
			if (json_object_get(msg, "event") || !json_is_integer(jid) ||
			    json_integer_value(jid) != id) {
				json_decref(msg);
				msg = NULL;
				continue;
			}
			break;
		}
		if (ret < 0)
			goto out;
		int64_t left = deadline - mono_ms();
		if (left <= 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	if (json_is_true(json_object_get(msg, "ok"))) {
		*result = json_incref(json_object_get(msg, "result"));
		ret = 0;
	} else {
		json_t *e = json_object_get(msg, "error");
		snprintf(err, errlen, "%s: %s",
			 json_string_value(json_object_get(e, "code")) ?: "error",
			 json_string_value(json_object_get(e, "message")) ?: "");
		ret = -EREMOTEIO;
	}
out:
	json_decref(msg);
	proto_rx_reset(&rx);
	return ret;
}

/*
 * Close a command connection cleanly: events may still arrive after the reply, and closing a unix
 * socket with unread data makes the VMM's next read fail with ECONNRESET (a warning in its log).
 * So say we are done, read until the VMM hangs up (briefly), then close.
 */
void ctl_close(int fd)
{
	int64_t deadline = mono_ms() + 1000;
	uint8_t buf[4096];
	shutdown(fd, SHUT_WR);
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			break;
		int64_t left = deadline - mono_ms();
		if (n < 0 && left <= 0)
			break;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		if (n < 0)
			poll(&pfd, 1, (int)left);
	}
	close(fd);
}

int ctl_call_path(const char *path, const char *cmd, json_t *args, int timeout_ms, json_t **result,
		  char *err, size_t errlen)
{
	int fd, ret;
	*result = NULL;
	if ((ret = ctl_connect(path, &fd))) {
		snprintf(err, errlen, "connecting to %s: %s", path, strerror(-ret));
		return ret;
	}
	ret = ctl_call(fd, cmd, args, timeout_ms, result, err, errlen);
	if (ret && ret != -EREMOTEIO)
		snprintf(err, errlen, "%s on %s: %s", cmd, path, strerror(-ret));
	ctl_close(fd);
	return ret;
}

/* Read what fd has: 1 when the reply to id is complete (in it->ret/result), 0 for more, -errno. */
static int take_reply(int fd, struct proto_rx *rx, int id, struct ctl_multi *it)
{
	for (;;) {
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		json_t *msg = NULL;
		int r = proto_recv(fd, rx, &msg, fds, &nfds);
		for (unsigned i = 0; i < nfds; i++)
			close(fds[i]);
		if (r != PROTO_MESSAGE)
			return r;
		json_t *jid = json_object_get(msg, "id");
		if (json_object_get(msg, "event") || !json_is_integer(jid) ||
		    json_integer_value(jid) != id) {
			json_decref(msg);
			continue;
		}
		if (json_is_true(json_object_get(msg, "ok"))) {
			it->result = json_incref(json_object_get(msg, "result"));
			it->ret = 0;
		} else {
			it->ret = -EREMOTEIO;
		}
		json_decref(msg);
		return 1;
	}
}

void ctl_call_all(struct ctl_multi *items, unsigned n, const char *cmd, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;
	struct pollfd *pfd = calloc(n ? n : 1, sizeof(*pfd));
	struct proto_rx *rx = calloc(n ? n : 1, sizeof(*rx));
	json_t *req = json_pack("{s:i, s:s}", "id", 1, "cmd", cmd);
	unsigned open = 0;

	for (unsigned i = 0; i < n; i++) {
		items[i].result = NULL;
		items[i].ret = -ENOMEM;
		if (pfd)
			pfd[i].fd = -1;
		if (rx)
			proto_rx_init(&rx[i]);
	}
	if (!pfd || !rx || !req)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		int fd;
		if ((items[i].ret = ctl_connect(items[i].path, &fd)))
			continue;
		if ((items[i].ret = proto_send(fd, req, NULL, 0))) {
			close(fd);
			continue;
		}
		items[i].ret = -ETIMEDOUT;
		pfd[i] = (struct pollfd){.fd = fd, .events = POLLIN};
		open++;
	}
	while (open) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			break;
		if (poll(pfd, n, (int)left) < 0 && errno != EINTR)
			break;
		for (unsigned i = 0; i < n; i++) {
			if (pfd[i].fd < 0 || !pfd[i].revents)
				continue;
			int r = take_reply(pfd[i].fd, &rx[i], 1, &items[i]);
			if (r == PROTO_NEED_MORE)
				continue;
			if (r < 0)
				items[i].ret = r;
			shutdown(pfd[i].fd, SHUT_RDWR);
			close(pfd[i].fd);
			pfd[i].fd = -1;
			open--;
		}
	}
out:
	for (unsigned i = 0; pfd && rx && i < n; i++) {
		if (pfd[i].fd >= 0)
			close(pfd[i].fd);
		proto_rx_reset(&rx[i]);
	}
	json_decref(req);
	free(pfd);
	free(rx);
}
