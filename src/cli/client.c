/* berth CLI: HTTP requests to berthd with libcurl over its unix socket or a URL; JSON bodies. */
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/client.h"

#define MAX_BODY (64u << 20) /* larger answers are refused rather than buffered without end */
#define MAX_URL 8192

struct client {
	CURL *curl;
	struct client_opts o;
	char target[MAX_URL];
	char errbuf[CURL_ERROR_SIZE];
	char msg[CURL_ERROR_SIZE + 256];
};

struct sink {
	struct response *r;
	char *buf;
	size_t len, cap;
	bool too_big;
};

int client_open(struct client **out, const struct client_opts *o)
{
	struct client *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *o;
	c->curl = curl_easy_init();
	if (!c->curl) {
		free(c);
		return -EIO;
	}
	if (o->host) {
		size_t n = strlen(o->host);
		while (n && o->host[n - 1] == '/')
			n--;
		snprintf(c->target, sizeof(c->target), "%.*s", (int)n, o->host);
	} else {
		snprintf(c->target, sizeof(c->target), "%s",
			 o->socket_path ? o->socket_path : BERTH_DEFAULT_SOCKET);
	}
	*out = c;
	return 0;
}

void client_close(struct client *c)
{
	if (!c)
		return;
	curl_easy_cleanup(c->curl);
	free(c);
}

const char *client_error(const struct client *c)
{
	return c->msg;
}

const char *client_target(const struct client *c)
{
	return c->target;
}

void response_free(struct response *r)
{
	json_decref(r->body);
	free(r->raw);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *data, size_t size, size_t n, void *opaque)
{
	struct sink *s = opaque;
	size_t len = size * n;
	if (len > MAX_BODY - s->len) {
		s->too_big = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (s->len + len + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + len + 1)
			cap *= 2;
		char *b = realloc(s->buf, cap);
		if (!b)
			return 0;
		s->buf = b;
		s->cap = cap;
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return len;
}

/* Copy a header's value (trimmed) if line is "name: value". */
static void header_value(const char *line, size_t len, const char *name, char *dst, size_t dlen)
{
	size_t nl = strlen(name);
	if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	const char *v = line + nl + 1;
	const char *end = line + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && isspace((unsigned char)end[-1]))
		end--;
	snprintf(dst, dlen, "%.*s", (int)(end - v), v);
}

static size_t on_header(char *line, size_t size, size_t n, void *opaque)
{
	struct sink *s = opaque;
	size_t len = size * n;
	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a new response (after 100, redirect) */
		s->r->etag[0] = '\0';
		s->r->location[0] = '\0';
	}
	header_value(line, len, "ETag", s->r->etag, sizeof(s->r->etag));
	header_value(line, len, "Location", s->r->location, sizeof(s->r->location));
	return len;
}

static int map_curl_error(struct client *c, CURLcode rc, const struct sink *s)
{
	long os_errno = 0;
	const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc);

	curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		if (!c->o.host && os_errno > 0) {
			snprintf(c->msg, sizeof(c->msg), "%s", strerror((int)os_errno));
			return -(int)os_errno;
		}
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return c->o.host ? -EHOSTUNREACH : -ECONNREFUSED;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return -EHOSTUNREACH;
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return -ETIMEDOUT;
	case CURLE_WRITE_ERROR:
		if (s->too_big) {
			snprintf(c->msg, sizeof(c->msg), "the answer is larger than %u MiB",
				 MAX_BODY >> 20);
			return -EFBIG;
		}
		snprintf(c->msg, sizeof(c->msg), "out of memory");
		return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return -EKEYREJECTED;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return -EINVAL;
	default:
		snprintf(c->msg, sizeof(c->msg), "%s", detail);
		return -EPROTO;
	}
}

int client_request(struct client *c, const char *method, const char *path, const char *if_match,
		   const char *content_type, const json_t *body, struct response *r)
{
	struct curl_slist *hdrs = NULL, *h;
	struct sink s = {.r = r};
	char url[MAX_URL], line[512];
	char *data = NULL;
	int ret = 0;

	memset(r, 0, sizeof(*r));
	c->msg[0] = c->errbuf[0] = '\0';
	if ((size_t)snprintf(url, sizeof(url), "%s%s", c->o.host ? c->target : "http://localhost",
			     path) >= sizeof(url)) {
		snprintf(c->msg, sizeof(c->msg), "the request URL is too long");
		return -ENAMETOOLONG;
	}
	if (body) {
		data = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (!data) {
			snprintf(c->msg, sizeof(c->msg), "cannot encode the request body");
			return -ENOMEM;
		}
	}

	const char *lines[5] = {"Accept: application/json", "Expect:", NULL, NULL, NULL};
	int nl = 2;
	char ctype[128], match[128], auth[1024];
	if (body) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", content_type);
		lines[nl++] = ctype;
	}
	if (if_match) {
		snprintf(match, sizeof(match), "If-Match: %s", if_match);
		lines[nl++] = match;
	}
	if (c->o.token) {
		if ((size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->o.token) >=
		    sizeof(auth)) {
			snprintf(c->msg, sizeof(c->msg), "the token is too long");
			ret = -EINVAL;
			goto out;
		}
		lines[nl++] = auth;
	}
	for (int i = 0; i < nl; i++) {
		h = curl_slist_append(hdrs, lines[i]);
		if (!h) {
			ret = -ENOMEM;
			snprintf(c->msg, sizeof(c->msg), "out of memory");
			goto out;
		}
		hdrs = h;
	}

	CURL *k = c->curl;
	curl_easy_reset(k);
	curl_easy_setopt(k, CURLOPT_URL, url);
	if (!c->o.host)
		curl_easy_setopt(k, CURLOPT_UNIX_SOCKET_PATH, c->target);
	if (c->o.cacert)
		curl_easy_setopt(k, CURLOPT_CAINFO, c->o.cacert);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(k, CURLOPT_ERRORBUFFER, c->errbuf);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, &s);
	curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(k, CURLOPT_HEADERDATA, &s);
	snprintf(line, sizeof(line), "berth/%s", BERTH_VERSION);
	curl_easy_setopt(k, CURLOPT_USERAGENT, line);
	if (data) {
		curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE, (long)strlen(data));
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, data);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "POST") != 0)
		curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, method);
	else if (strcmp(method, "POST") == 0 && !data)
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, "");

	CURLcode rc = curl_easy_perform(k);
	if (rc != CURLE_OK) {
		ret = map_curl_error(c, rc, &s);
		goto out;
	}
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &r->status);
	r->raw = s.buf;
	r->raw_len = s.len;
	s.buf = NULL;
	if (r->raw_len) {
		json_error_t jerr;
		r->body = json_loadb(r->raw, r->raw_len, JSON_REJECT_DUPLICATES, &jerr);
	}
out:
	curl_slist_free_all(hdrs);
	free(s.buf);
	free(data);
	if (ret)
		response_free(r);
	return ret;
}
