/* berthd's HTTP server: libmicrohttpd on a unix socket berthd binds, peers authorised by
 * SO_PEERCRED, and HTTPS on TCP for holders of bearer tokens. */
#ifndef BERTH_DAEMON_HTTP_H
#define BERTH_DAEMON_HTTP_H

#include <sys/socket.h>

#include "daemon/api.h"

struct http_server;

/* A group whose members get a role on the unix socket (--role-group ROLE=GROUP). */
struct http_role_group {
	enum api_role role;
	const char *group;
};

#define HTTP_ROLE_GROUPS_MAX 8

struct http_opts {
	const char *socket_path;
	const char *group; /* members (and root) get the admin role */
	struct http_role_group role_groups[HTTP_ROLE_GROUPS_MAX];
	unsigned n_role_groups;
	unsigned threads;
	/* HTTPS on TCP: listen ("127.0.0.1:8443", "[::1]:8443"; NULL: none), PEM files */
	const char *listen;
	const char *tls_cert;
	const char *tls_key;
};

/* "ADDR:PORT" or "[IPv6]:PORT" into a socket address. -EINVAL if it is not one. */
int http_parse_listen(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/*
 * Create, bind and listen on the socket (mode 0660, the group's; 0666 when role groups are given,
 * non-members being refused by their credentials), then serve it; and HTTPS on the TCP address
 * if one is given (bearer tokens only). -errno.
 */
int http_start(struct api_ctx *ctx, const struct http_opts *o, struct http_server **out);

/*
 * Graceful stop: stop accepting (the socket file goes away), let requests in flight finish (up to
 * a few seconds), then stop the server's threads.
 */
void http_stop(struct http_server *s);

#endif
