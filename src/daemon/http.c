/* berthd's HTTP server: libmicrohttpd on a unix socket berthd binds, peers authorised by
 * SO_PEERCRED (or a bearer token), and HTTPS on TCP for bearer tokens only. */
#include "daemon/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/console.h"
#include "daemon/events.h"
#include "daemon/ops.h"

#define DRAIN_TIMEOUT_MS 10000
#define CONNECTION_LIMIT 256
#define CONNECTION_TIMEOUT_S 60
/* A body over the limit is read and dropped so the client sees the 413, up to this much; a
 * declared length beyond it is answered at once and the connection closed. */
#define DRAIN_MAX (16 * API_BODY_MAX)
#define STALE_PROBES 40 /* 50 ms apart: a socket still answering after 2 s belongs to a berthd */
#define PEM_MAX (1024 * 1024)
/* TLS 1.2 and 1.3 only, GnuTLS's default ciphers and groups otherwise */
#define TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"
#define CHALLENGE "Bearer realm=\"berthd\""
#define CHALLENGE_INVALID "Bearer realm=\"berthd\", error=\"invalid_token\""

/* One libmicrohttpd daemon: the unix socket or HTTPS on TCP; both serve the same routes. */
struct listener {
	struct http_server *s;
	struct MHD_Daemon *mhd;
	int lfd;
	bool tcp; /* callers are known by their bearer token alone */
};

struct http_server {
	struct api_ctx *ctx;
	struct listener local, remote;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	/* the unix socket's groups: members get the role (the highest of their groups) */
	struct {
		gid_t gid;
		enum api_role role;
	} groups[HTTP_ROLE_GROUPS_MAX + 1];
	unsigned n_groups;
	bool have_group;	  /* --group exists: groups[0], the socket file's group */
	char *tls_cert, *tls_key; /* PEM, kept while libmicrohttpd runs */
	atomic_int inflight;	  /* requests between their first callback and completion */
	atomic_bool stopping;	  /* new connections are refused */
	struct console_relays *consoles;
};

/* One request's state across libmicrohttpd's callbacks. */
struct req_state {
	char *body;
	size_t len;
	bool too_large;
	uint64_t dropped;
	/* suspended until an operation finishes (?wait=true), then answered with it */
	bool waiting;
	bool op_created;
	char wait_op[40];
	/* answered 101: relayed to this console once libmicrohttpd hands over the socket */
	struct console_conn *console;
};

static void resume_conn(void *arg)
{
	MHD_resume_connection(arg);
}

static void close_upgraded(void *urh)
{
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

/* The 101 has been sent: the connection is ours, relay it to the console. */
static void on_upgrade(void *cls, struct MHD_Connection *c, void *con_cls, const char *extra,
		       size_t extra_len, MHD_socket sock, struct MHD_UpgradeResponseHandle *urh)
{
	struct http_server *s = ((struct listener *)cls)->s;
	struct req_state *st = con_cls;
	struct console_conn *cc = st ? st->console : NULL;
	int ret;
	(void)c;

	if (st)
		st->console = NULL;
	if (!cc) {
		close_upgraded(urh);
		return;
	}
	if ((ret = console_relay_start(s->consoles, cc, sock, extra, extra_len, close_upgraded,
				       urh))) {
		log_warn("http", "console relay: %s", strerror(-ret));
		close_upgraded(urh);
	}
}

/* Answer 101 and hand the connection to a console relay (on_upgrade). */
static enum MHD_Result send_upgrade(struct listener *l, struct MHD_Connection *c,
				    struct req_state *st, struct api_resp *r)
{
	struct MHD_Response *mr = MHD_create_response_for_upgrade(on_upgrade, l);
	enum MHD_Result ret;

	if (!mr)
		return MHD_NO;
	st->console = r->console;
	r->console = NULL;
	MHD_add_response_header(mr, MHD_HTTP_HEADER_UPGRADE, API_CONSOLE_PROTOCOL);
	/* libmicrohttpd adds Connection: Upgrade itself */
	/* a console may stay quiet for long: no idle timeout once it is a byte stream */
	MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
	ret = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, mr);
	MHD_destroy_response(mr);
	return ret;
}

static bool user_in_group(uid_t uid, gid_t gid)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	gid_t groups[256];
	int n = ARRAY_SIZE(groups);

	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &res) || !res)
		return false;
	if (pw.pw_gid == gid)
		return true;
	/* n is set to the real count when the array is too small: the group may be past it */
	if (getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0) {
		gid_t *more = n > 0 ? calloc((size_t)n, sizeof(*more)) : NULL;
		bool found = false;
		if (more && getgrouplist(pw.pw_name, pw.pw_gid, more, &n) >= 0)
			for (int i = 0; i < n; i++)
				found |= more[i] == gid;
		free(more);
		return found;
	}
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/* admin for root, else the highest role of the groups the peer is in (its gid, or the user's
 * primary and supplementary groups). */
static enum api_role peer_role(struct http_server *s, struct MHD_Connection *c, struct ucred *cred)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	socklen_t len = sizeof(*cred);

	cred->uid = (uid_t)-1;
	cred->pid = 0;
	if (!ci || getsockopt(ci->connect_fd, SOL_SOCKET, SO_PEERCRED, cred, &len) ||
	    len != sizeof(*cred)) {
		log_warn("http", "no peer credentials: %s", strerror(errno));
		return ROLE_NONE;
	}
	if (cred->uid == 0)
		return ROLE_ADMIN;
	enum api_role role = ROLE_NONE;
	for (unsigned i = 0; i < s->n_groups; i++)
		if (s->groups[i].role > role &&
		    (cred->gid == s->groups[i].gid || user_in_group(cred->uid, s->groups[i].gid)))
			role = s->groups[i].role;
	return role;
}

/* The TCP peer as "192.0.2.1:40000" or "[2001:db8::1]:40000". */
static void peer_address(struct MHD_Connection *c, char *buf, size_t len)
{
	const union MHD_ConnectionInfo *ci =
	    MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	char host[INET6_ADDRSTRLEN], port[8];
	snprintf(buf, len, "unknown");
	if (!ci || !ci->client_addr)
		return;
	socklen_t sl = ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
							      : sizeof(struct sockaddr_in);
	if (getnameinfo(ci->client_addr, sl, host, sizeof(host), port, sizeof(port),
			NI_NUMERICHOST | NI_NUMERICSERV))
		return;
	snprintf(buf, len, ci->client_addr->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
		 port);
}

/*
 * Who the caller is: over TCP only a bearer token says so; on the unix socket the peer's
 * credentials, unless it sends a token, which it then acts with. false with resp a 401 (or 500).
 */
static bool authenticate(struct listener *l, struct MHD_Connection *c, struct api_req *req,
			 struct api_caller *who, struct api_resp *resp)
{
	const char *authz =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	const char *why;
	int ret;

	if (!l->tcp && !authz)
		return true;
	if ((ret = api_token_check(l->s->ctx, authz, who, &why)) == -EACCES) {
		api_error(resp, 401, "unauthenticated", NULL, "%s%s", why,
			  authz ? "" : ": berthd's TCP listener needs an API token");
		resp->www_authenticate = authz ? CHALLENGE_INVALID : CHALLENGE;
		return false;
	}
	if (ret) {
		api_error(resp, 500, "internal", NULL, "checking the token: %s", strerror(-ret));
		return false;
	}
	req->role = who->role;
	req->token_id = who->token_id;
	req->token_name = who->token_name;
	return true;
}

struct query_acc {
	json_t *obj;
	const char *dup;
};

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key,
				 const char *value)
{
	struct query_acc *q = cls;
	(void)kind;
	if (json_object_get(q->obj, key)) {
		q->dup = key;
		return MHD_NO;
	}
	json_object_set_new(q->obj, key, value ? json_string(value) : json_null());
	return MHD_YES;
}

/* An event stream: its connection is suspended while the stream has nothing to send. */
struct sse {
	struct MHD_Connection *c;
	struct evstream *s;
};

static void sse_suspend(void *arg)
{
	MHD_suspend_connection(((struct sse *)arg)->c);
}

static void sse_resume(void *arg)
{
	MHD_resume_connection(((struct sse *)arg)->c);
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct sse *e = cls;
	(void)pos;
	ssize_t n = evstream_read(e->s, buf, max);
	return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void sse_free(void *cls)
{
	struct sse *e = cls;
	evstream_close(e->s);
	free(e);
}

/* Open the stream and answer with it: true (and *res); false with r an error to send (503 when
 * too many are open). */
static bool send_stream(struct http_server *s, struct MHD_Connection *c, struct api_resp *r,
			enum MHD_Result *res)
{
	struct sse *e = calloc(1, sizeof(*e));
	int ret = e ? 0 : -ENOMEM;
	if (e) {
		e->c = c;
		struct evstream_conn conn = {sse_suspend, sse_resume, e};
		ret = evstream_open(s->ctx->events, r->stream_after, &conn, &e->s);
	}
	if (ret) {
		free(e);
		if (ret == -EBUSY)
			api_error(r, 503, "too-many-streams", NULL,
				  "%u event streams are open already: try again later",
				  (unsigned)EVENTS_MAX_STREAMS);
		else
			api_error(r, 503, "unavailable", NULL, "no event stream: %s",
				  strerror(-ret));
		return false;
	}
	struct MHD_Response *mr =
	    MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, e, sse_free);
	if (!mr) {
		sse_free(e);
		api_error(r, 500, "internal", NULL, "out of memory");
		return false;
	}
	MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	*res = MHD_queue_response(c, 200, mr);
	MHD_destroy_response(mr);
	return true;
}

static enum MHD_Result send_resp(struct MHD_Connection *c, struct api_resp *r)
{
	struct MHD_Response *mr;
	char etag[32];
	enum MHD_Result ret;

	if (r->text) {
		mr = MHD_create_response_from_buffer(r->text_len, r->text, MHD_RESPMEM_MUST_FREE);
		if (mr)
			r->text = NULL; /* the response owns it now */
	} else if (r->raw) {
		mr = MHD_create_response_from_buffer(r->raw_len, (void *)r->raw,
						     MHD_RESPMEM_PERSISTENT);
	} else if (r->body) {
		char *text = json_dumps(r->body, JSON_COMPACT);
		size_t n = text ? strlen(text) : 0;
		char *nl = text ? realloc(text, n + 2) : NULL;
		if (!nl) {
			free(text);
			return MHD_NO;
		}
		nl[n] = '\n';
		nl[n + 1] = '\0';
		mr = MHD_create_response_from_buffer(n + 1, nl, MHD_RESPMEM_MUST_FREE);
		if (!mr)
			free(nl);
	} else {
		mr = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	}
	if (!mr)
		return MHD_NO;
	if (r->content_type)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	else if (r->raw || r->body)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	MHD_add_response_header(mr, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (r->etag > 0) {
		snprintf(etag, sizeof(etag), "\"%lld\"", (long long)r->etag);
		MHD_add_response_header(mr, MHD_HTTP_HEADER_ETAG, etag);
	}
	if (r->allow[0])
		MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->location[0])
		MHD_add_response_header(mr, MHD_HTTP_HEADER_LOCATION, r->location);
	if (r->www_authenticate)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_authenticate);
	ret = MHD_queue_response(c, r->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static void count(struct http_server *s, unsigned status)
{
	if (status < API_STATUS_MAX)
		atomic_fetch_add_explicit(&s->ctx->responses[status], 1, memory_order_relaxed);
}

/* The request is complete (or refused early): authorise, route, run, answer. */
static enum MHD_Result answer(struct listener *l, struct MHD_Connection *c, struct req_state *st,
			      const char *url, const char *method)
{
	struct http_server *s = l->s;
	struct api_resp resp = {0};
	struct api_req req = {0};
	struct query_acc q = {0};
	struct api_caller who = {0};
	struct ucred cred = {.pid = 0, .uid = (uid_t)-1};
	char address[INET6_ADDRSTRLEN + 16];
	enum MHD_Result ret;

	if (st->waiting) { /* resumed: the operation has finished (or berthd stops) */
		api_op_answer(s->ctx, st->wait_op, st->op_created, &resp);
		count(s, resp.status);
		ret = send_resp(c, &resp);
		api_resp_free(&resp);
		return ret;
	}
	req.ctx = s->ctx;
	req.method = method;
	req.path = url;
	if (l->tcp) {
		peer_address(c, address, sizeof(address));
		req.address = address;
	} else {
		req.role = peer_role(s, c, &cred);
	}
	req.uid = cred.uid;
	req.pid = cred.pid;
	req.content_type =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	req.if_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
	req.last_event_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	req.upgrade = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_UPGRADE);
	req.connection =
	    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
	req.body = st->body;
	req.body_len = st->len;
	req.query = q.obj = json_object();
	if (!q.obj)
		return MHD_NO;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, &q);
	/* 401 (authenticate) or 403 (the dispatch of ROLE_NONE) before anything else is checked */
	bool known = authenticate(l, c, &req, &who, &resp);
	if (known && req.role == ROLE_NONE)
		api_dispatch(&req, &resp);
	else if (known && st->too_large)
		api_error(&resp, 413, "payload-too-large", NULL,
			  "the request body is larger than %d bytes", API_BODY_MAX);
	else if (known && q.dup)
		api_error(&resp, 400, "invalid-argument", q.dup, "query parameter '%s' given twice",
			  q.dup);
	else if (known)
		api_dispatch(&req, &resp);
	if (l->tcp)
		log_debug("http", "%s %s from %s token %s -> %u", method, url, address,
			  req.token_name ? req.token_name : "none", resp.status);
	else
		log_debug("http", "%s %s uid %u%s%s -> %u", method, url, (unsigned)cred.uid,
			  req.token_name ? " token " : "", req.token_name ? req.token_name : "",
			  resp.status);
	if (resp.wait_op[0] && s->ctx->ops) {
		/* suspended first, so the resume can never come before it */
		st->waiting = true;
		st->op_created = resp.op_created;
		memcpy(st->wait_op, resp.wait_op, sizeof(st->wait_op));
		MHD_suspend_connection(c);
		if (ops_notify(s->ctx->ops, st->wait_op, resume_conn, c) != 1)
			MHD_resume_connection(
			    c); /* finished meanwhile: answered when called again */
		api_resp_free(&resp);
		json_decref(q.obj);
		return MHD_YES;
	}
	if (resp.stream && send_stream(s, c, &resp, &ret)) {
		count(s, 200);
		json_decref(q.obj);
		return ret;
	}
	count(s, resp.status);
	ret = resp.console ? send_upgrade(l, c, st, &resp) : send_resp(c, &resp);
	api_resp_free(&resp);
	json_decref(q.obj);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct listener *l = cls;
	struct http_server *s = l->s;
	struct req_state *st = *con_cls;
	(void)version;

	if (!st) {
		if (!(st = calloc(1, sizeof(*st))))
			return MHD_NO;
		*con_cls = st;
		atomic_fetch_add(&s->inflight, 1);
		const char *cl =
		    MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
		uint64_t n;
		if (cl && !parse_u64(cl, &n) && n > API_BODY_MAX) {
			st->too_large = true; /* read and drop it, then answer 413 */
			if (n > DRAIN_MAX)    /* not worth reading: answer now, then close */
				return answer(l, c, st, url, method);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		size_t n = *upload_size;
		*upload_size = 0;
		if (st->too_large) {
			st->dropped += n;
			return st->dropped > DRAIN_MAX ? MHD_NO : MHD_YES;
		}
		if (st->len + n > API_BODY_MAX) {
			st->too_large = true;
			st->dropped = st->len + n;
			free(st->body);
			st->body = NULL;
			st->len = 0;
			return MHD_YES;
		}
		char *b = realloc(st->body, st->len + n + 1);
		if (!b)
			return MHD_NO;
		memcpy(b + st->len, upload, n);
		st->len += n;
		b[st->len] = '\0';
		st->body = b;
		return MHD_YES;
	}
	return answer(l, c, st, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = ((struct listener *)cls)->s;
	struct req_state *st = *con_cls;
	(void)c;
	(void)toe;
	if (!st)
		return;
	console_conn_free(st->console);
	free(st->body);
	free(st);
	*con_cls = NULL;
	atomic_fetch_sub(&s->inflight, 1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char msg[512];
	(void)cls;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	log_warn("http", "%s", msg);
}

/* A socket file left by a berthd that died is removed; a live one is someone else's: refuse. */
static int clear_stale_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat sb;
	int fd, ret = 0;

	if (lstat(path, &sb)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		log_err("http", "%s: %s", path, strerror(errno));
		return ret;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		log_err("http", "%s exists and is not a socket: refusing to replace it", path);
		return -EEXIST;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	/* A berthd killed while it spawned a VMM leaves the listening socket open in the child for
	 * a moment (until it closes its copies): a socket that stops answering soon is stale. */
	for (int i = 0; i < STALE_PROBES; i++) {
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return -errno;
		int r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		close(fd);
		if (r)
			break;
		if (i == STALE_PROBES - 1) {
			log_err("http", "%s: another berthd is listening there", path);
			return -EADDRINUSE;
		}
		struct timespec ts = {0, 50 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	if (unlink(path) && errno != ENOENT) {
		ret = -errno;
		log_err("http", "removing the stale socket %s: %s", path, strerror(errno));
	}
	return ret;
}

/* The gid of a group by name; -ENOENT if there is none. */
static int group_gid(const char *name, gid_t *gid)
{
	struct group gr, *gres = NULL;
	char buf[4096];
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &gres) || !gres)
		return -ENOENT;
	*gid = gr.gr_gid;
	return 0;
}

/* The unix socket's groups: --group (admin; may be missing) and the role groups (must exist). */
static int resolve_groups(struct http_server *s, const struct http_opts *o)
{
	gid_t gid;
	if (!group_gid(o->group, &gid)) {
		s->groups[s->n_groups].gid = gid;
		s->groups[s->n_groups++].role = ROLE_ADMIN;
		s->have_group = true;
	} else {
		log_warn("http", "group '%s' does not exist: only root may use the API as admin",
			 o->group);
	}
	for (unsigned i = 0; i < o->n_role_groups && i < HTTP_ROLE_GROUPS_MAX; i++) {
		if (group_gid(o->role_groups[i].group, &gid)) {
			log_err("http", "--role-group %s=%s: no such group",
				api_role_name(o->role_groups[i].role), o->role_groups[i].group);
			return -ENOENT;
		}
		s->groups[s->n_groups].gid = gid;
		s->groups[s->n_groups++].role = o->role_groups[i].role;
		log_info("http", "members of group %s are %ss on %s", o->role_groups[i].group,
			 api_role_name(o->role_groups[i].role), s->path);
	}
	return 0;
}

static int make_socket(struct http_server *s, const struct http_opts *o)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char dir[sizeof(s->path)];
	int ret;

	snprintf(dir, sizeof(dir), "%s", s->path);
	char *slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) && errno != EEXIST) {
			ret = -errno;
			log_err("http", "creating %s: %s", dir, strerror(errno));
			return ret;
		}
	}
	if ((ret = clear_stale_socket(s->path)) || (ret = resolve_groups(s, o)))
		return ret;
	memcpy(sa.sun_path, s->path, strlen(s->path) + 1);
	if ((s->local.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	/* the socket file is born 0660: nobody else can connect before it belongs to the group */
	mode_t old = umask(0117);
	ret = bind(s->local.lfd, (struct sockaddr *)&sa, sizeof(sa)) ? -errno : 0;
	umask(old);
	if (ret) {
		log_err("http", "bind %s: %s", s->path, strerror(-ret));
		return ret;
	}
	if (s->have_group && chown(s->path, (uid_t)-1, s->groups[0].gid)) {
		ret = -errno;
		log_err("http", "chown %s to group %s: %s", s->path, o->group, strerror(errno));
		return ret;
	}
	/* members of role groups must reach the socket too: everyone may connect, and whoever is
	 * in none of the groups is refused by the credentials (403) */
	if (o->n_role_groups && chmod(s->path, 0666)) {
		ret = -errno;
		log_err("http", "chmod %s: %s", s->path, strerror(errno));
		return ret;
	}
	if (listen(s->local.lfd, 64)) {
		ret = -errno;
		log_err("http", "listen %s: %s", s->path, strerror(errno));
		return ret;
	}
	return 0;
}

int http_parse_listen(const char *str, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon, *h = str;
	uint64_t port;
	size_t n;

	memset(ss, 0, sizeof(*ss));
	if (str[0] == '[') {
		const char *rb = strchr(str, ']');
		if (!rb || rb[1] != ':')
			return -EINVAL;
		h = str + 1;
		n = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(str, ':');
		if (!colon || strchr(str, ':') != colon)
			return -EINVAL;
		n = (size_t)(colon - str);
	}
	if (!n || n >= sizeof(host) || parse_u64(colon + 1, &port) || port < 1 || port > 65535)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (str[0] != '[' && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
		return 0;
	}
	if (str[0] == '[' && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	return -EINVAL;
}

/* A PEM file into memory (NUL-terminated, at most PEM_MAX). -errno, logged. */
static int read_pem(const char *what, const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	size_t len = 0;
	char *buf = NULL;
	struct stat sb;

	if (fd < 0 || fstat(fd, &sb)) {
		ret = -errno;
		log_err("http", "%s %s: %s", what, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size <= 0 || sb.st_size > PEM_MAX) {
		log_err("http", "%s %s: not a PEM file of at most %d bytes", what, path, PEM_MAX);
		ret = -EINVAL;
		goto out;
	}
	if (!strcmp(what, "--tls-key") && (sb.st_mode & 0077))
		log_warn("http",
			 "--tls-key %s can be read by others than its owner (mode %04o): "
			 "chmod 600 it",
			 path, (unsigned)(sb.st_mode & 07777));
	if (!(buf = malloc((size_t)sb.st_size + 1))) {
		ret = -ENOMEM;
		goto out;
	}
	while (len < (size_t)sb.st_size) {
		ssize_t r = read(fd, buf + len, (size_t)sb.st_size - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ret = r ? -errno : -EIO;
			log_err("http", "%s %s: %s", what, path, strerror(-ret));
			goto out;
		}
		len += (size_t)r;
	}
	buf[len] = '\0';
	*out = buf;
	buf = NULL;
out:
	if (buf) {
		explicit_bzero(buf, len);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

static int tcp_socket(const char *listen_addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, ret;

	if (http_parse_listen(listen_addr, &ss, &len)) {
		log_err("http", "--listen %s: not ADDR:PORT (127.0.0.1:8443, [::1]:8443)",
			listen_addr);
		return -EINVAL;
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) || listen(fd, 64)) {
		ret = -errno;
		log_err("http", "--listen %s: %s", listen_addr, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

/* Accept policy: once berthd is stopping, connections still in the backlog are closed at once. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t len)
{
	struct http_server *s = ((struct listener *)cls)->s;
	(void)addr;
	(void)len;
	return atomic_load(&s->stopping) ? MHD_NO : MHD_YES;
}

static struct MHD_Daemon *start_mhd(struct listener *l, const struct http_opts *o)
{
	unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
			 MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE;
	struct MHD_OptionItem tls[] = {
	    {MHD_OPTION_HTTPS_MEM_CERT, 0, l->s->tls_cert},
	    {MHD_OPTION_HTTPS_MEM_KEY, 0, l->s->tls_key},
	    {MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)TLS_PRIORITIES},
	    {MHD_OPTION_END, 0, NULL},
	};
	if (l->tcp)
		flags |= MHD_USE_TLS;
	else
		tls[0].option = MHD_OPTION_END;
	return MHD_start_daemon(
	    flags, 0, on_accept, l, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
	    MHD_OPTION_LISTEN_SOCKET, l->lfd, MHD_OPTION_THREAD_POOL_SIZE,
	    (unsigned)(o->threads ? o->threads : 1), MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)CONNECTION_TIMEOUT_S, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
}

static void free_pems(struct http_server *s)
{
	if (s->tls_key) {
		explicit_bzero(s->tls_key, strlen(s->tls_key));
		free(s->tls_key);
	}
	free(s->tls_cert);
	s->tls_key = s->tls_cert = NULL;
}

/* HTTPS on TCP. */
static int start_remote(struct http_server *s, const struct http_opts *o)
{
	int ret;

	if (!MHD_is_feature_supported(MHD_FEATURE_TLS)) {
		log_err("http", "--listen: this libmicrohttpd was built without TLS");
		return -ENOTSUP;
	}
	if ((ret = read_pem("--tls-cert", o->tls_cert, &s->tls_cert)) ||
	    (ret = read_pem("--tls-key", o->tls_key, &s->tls_key)))
		return ret;
	if ((s->remote.lfd = tcp_socket(o->listen)) < 0)
		return s->remote.lfd;
	if (!(s->remote.mhd = start_mhd(&s->remote, o))) {
		log_err("http",
			"HTTPS on %s did not start: are --tls-cert %s and --tls-key %s a "
			"PEM certificate and its private key?",
			o->listen, o->tls_cert, o->tls_key);
		return -EINVAL;
	}
	log_info("http", "serving the API over HTTPS on %s (bearer tokens, TLS 1.2 and 1.3)",
		 o->listen);
	return 0;
}

int http_start(struct api_ctx *ctx, const struct http_opts *o, struct http_server **out)
{
	struct http_server *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->ctx = ctx;
	s->local = (struct listener){.s = s, .lfd = -1};
	s->remote = (struct listener){.s = s, .lfd = -1, .tcp = true};
	if (strlen(o->socket_path) >= sizeof(s->path)) {
		log_err("http", "socket path %s: longer than %zu bytes", o->socket_path,
			sizeof(s->path) - 1);
		ret = -ENAMETOOLONG;
		goto fail;
	}
	snprintf(s->path, sizeof(s->path), "%s", o->socket_path);
	if ((ret = console_relays_new(&s->consoles)) || (ret = make_socket(s, o)))
		goto fail;
	if (!(s->local.mhd = start_mhd(&s->local, o))) {
		log_err("http", "libmicrohttpd did not start on %s", s->path);
		ret = -EIO;
		goto fail;
	}
	if (o->listen && (ret = start_remote(s, o)))
		goto fail;
	log_info("http", "serving the API on %s (%u threads)", s->path, o->threads);
	*out = s;
	return 0;
fail:
	if (s->remote.mhd)
		MHD_stop_daemon(s->remote.mhd);
	else if (s->remote.lfd >= 0)
		close(s->remote.lfd);
	if (s->local.mhd)
		MHD_stop_daemon(s->local.mhd);
	else if (s->local.lfd >= 0)
		close(s->local.lfd);
	if (s->local.lfd >= 0)
		unlink(s->path);
	free_pems(s);
	console_relays_free(s->consoles);
	free(s);
	return ret;
}

void http_stop(struct http_server *s)
{
	struct timespec ts = {0, 10 * 1000 * 1000};
	int waited = 0;

	if (!s)
		return;
	/* Not MHD_quiesce_daemon: with a thread pool it removes the listening socket from each
	 * worker's epoll set while that worker may be doing the same, and libmicrohttpd 0.9.75
	 * aborts when it loses that race. The socket's path goes, so nobody new can connect, and
	 * whatever is still in the backlog (of the TCP socket too) is refused by on_accept;
	 * MHD_stop_daemon closes the sockets. */
	atomic_store(&s->stopping, true);
	unlink(s->path);
	/* consoles never end by themselves; upgraded connections must be closed before the stop */
	bool relays_done = console_relays_stop(s->consoles) == 0;
	while (atomic_load(&s->inflight) > 0 && waited < DRAIN_TIMEOUT_MS) {
		nanosleep(&ts, NULL);
		waited += 10;
	}
	if (atomic_load(&s->inflight) > 0)
		log_warn("http", "%d requests still running after %d ms: stopping anyway",
			 atomic_load(&s->inflight), DRAIN_TIMEOUT_MS);
	if (s->remote.mhd)
		MHD_stop_daemon(s->remote.mhd);
	MHD_stop_daemon(s->local.mhd);
	free_pems(s);
	if (relays_done)
		console_relays_free(s->consoles);
	free(s);
}
