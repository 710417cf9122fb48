/* berthd's HTTP server: libmicrohttpd on a unix socket berthd binds, peers authorised by
 * SO_PEERCRED. */
#ifndef BERTH_DAEMON_HTTP_H
#define BERTH_DAEMON_HTTP_H

#include "daemon/api.h"

struct http_server;

struct http_opts {
	const char *socket_path;
	const char *group; /* members (and root) get the admin role */
	unsigned threads;
};

/* Create, bind and listen on the socket (mode 0660, the group's), then serve it. -errno. */
int http_start(struct api_ctx *ctx, const struct http_opts *o, struct http_server **out);

/*
 * Graceful stop: stop accepting (the socket file goes away), let requests in flight finish (up to
 * a few seconds), then stop the server's threads.
 */
void http_stop(struct http_server *s);

#endif
