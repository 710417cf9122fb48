/* epoll event loop with per-fd callbacks; evloop_stop wakes it through an eventfd. */
#include "common/evloop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define EVLOOP_MAX_FDS 64

struct watch {
	int fd;
	evloop_cb cb;
	void *opaque;
};

struct evloop {
	int epfd;
	int wakefd;
	volatile bool stop;
	struct watch w[EVLOOP_MAX_FDS];
};

int evloop_new(struct evloop **out)
{
	struct evloop *l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	for (int i = 0; i < EVLOOP_MAX_FDS; i++)
		l->w[i].fd = -1;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->epfd < 0 || l->wakefd < 0) {
		int e = -errno;
		evloop_free(l);
		return e;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.u32 = EVLOOP_MAX_FDS};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
		int e = -errno;
		evloop_free(l);
		return e;
	}
	*out = l;
	return 0;
}

void evloop_free(struct evloop *l)
{
	if (!l)
		return;
	if (l->epfd >= 0)
		close(l->epfd);
	if (l->wakefd >= 0)
		close(l->wakefd);
	free(l);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	for (uint32_t i = 0; i < EVLOOP_MAX_FDS; i++) {
		if (l->w[i].fd != -1)
			continue;
		struct epoll_event ev = {.events = events, .data.u32 = i};
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		l->w[i] = (struct watch){fd, cb, opaque};
		return 0;
	}
	return -ENOSPC;
}

int evloop_del(struct evloop *l, int fd)
{
	for (int i = 0; i < EVLOOP_MAX_FDS; i++) {
		if (l->w[i].fd != fd)
			continue;
		epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
		l->w[i].fd = -1;
		return 0;
	}
	return -ENOENT;
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	for (uint32_t i = 0; i < EVLOOP_MAX_FDS; i++) {
		if (l->w[i].fd != fd)
			continue;
		struct epoll_event ev = {.events = events, .data.u32 = i};
		return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	}
	return -ENOENT;
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[16];
	while (!l->stop) {
		int n = epoll_wait(l->epfd, evs, 16, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n && !l->stop; i++) {
			uint32_t idx = evs[i].data.u32;
			if (idx == EVLOOP_MAX_FDS) {
				uint64_t v;
				ssize_t r = read(l->wakefd, &v, sizeof(v));
				(void)r;
				continue;
			}
			struct watch w = l->w[idx];
			if (w.fd >= 0)
				w.cb(w.opaque, w.fd, evs[i].events);
		}
	}
	return 0;
}

void evloop_stop(struct evloop *l)
{
	uint64_t one = 1;
	l->stop = true;
	ssize_t r = write(l->wakefd, &one, sizeof(one));
	(void)r;
}

void evloop_rearm(struct evloop *l)
{
	l->stop = false;
}

bool evloop_stopped(const struct evloop *l)
{
	return l->stop;
}
