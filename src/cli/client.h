/* berth CLI: an HTTP/JSON client for berthd's REST API (libcurl; unix socket or a URL). */
#ifndef BERTH_CLI_CLIENT_H
#define BERTH_CLI_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#define BERTH_DEFAULT_SOCKET "/run/berth/berthd.sock"

struct client_opts {
	const char *socket_path; /* used when host is NULL */
	const char *host;	 /* base URL (http[s]://host[:port]) for a remote berthd */
	const char *token;	 /* sent as "Authorization: Bearer <token>" when set */
	const char *cacert;	 /* PEM file of the CA (or self-signed certificate) to trust for
				  * https://; NULL: the system's */
};

struct response {
	long status;
	json_t *body; /* the parsed body, NULL when empty or not JSON */
	char *raw;    /* the body as received (NUL-terminated), NULL when empty */
	size_t raw_len;
	char etag[80]; /* the ETag header, "" if none */
	char location[256];
};

struct client;

/* -ENOMEM, or -EIO if libcurl cannot be set up. */
int client_open(struct client **out, const struct client_opts *o);
void client_close(struct client *c);

/* Send one request. 0 when an HTTP answer arrived (any status, r filled); otherwise -errno and
 * client_error() says why: -ECONNREFUSED/-ENOENT/-EACCES/... for the socket's connect,
 * -EHOSTUNREACH for other connection failures, -EPROTO for a broken answer, -EFBIG for an oversized
 * one. content_type is used when body is set. */
int client_request(struct client *c, const char *method, const char *path, const char *if_match,
		   const char *content_type, const json_t *body, struct response *r);
const char *client_error(const struct client *c);
/* Where requests go, for messages: the socket path or the URL. */
const char *client_target(const struct client *c);

void response_free(struct response *r);

#endif
