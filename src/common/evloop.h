/* A small epoll event loop: fds with callbacks, run until asked to stop. */
#ifndef BERTH_EVLOOP_H
#define BERTH_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

struct evloop;
typedef void (*evloop_cb)(void *opaque, int fd, uint32_t events);

int evloop_new(struct evloop **out);
void evloop_free(struct evloop *l);
/* events: EPOLLIN etc. -errno. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque);
int evloop_del(struct evloop *l, int fd);
/* Change the events a registered fd waits for. -errno, -ENOENT if fd is not registered. */
int evloop_mod(struct evloop *l, int fd, uint32_t events);
/* Dispatch until evloop_stop() is called (from a callback or another thread). -errno on failure. */
int evloop_run(struct evloop *l);
void evloop_stop(struct evloop *l);
/* Clear a stop request so the loop can run again. */
void evloop_rearm(struct evloop *l);
bool evloop_stopped(const struct evloop *l);

#endif
