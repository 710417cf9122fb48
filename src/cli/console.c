/* berth CLI: `berth vm console` — the HTTP upgrade to berthd's console stream by hand (libcurl
 * does not hand over upgraded connections), over TLS (GnuTLS) for https://, then a raw terminal
 * or a plain copy until EOF. */
#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

#define ESCAPE_CHAR 0x1d   /* Ctrl-] detaches, as in virsh and telnet */
#define HEAD_MAX 16384	   /* the answer's header */
#define ERR_BODY_MAX 65536 /* an error answer's body */

static volatile sig_atomic_t got_signal;

/* The connection to berthd: a socket, with a TLS session on it for https://. */
struct conn {
	int fd;
	gnutls_session_t tls; /* NULL: plain */
	gnutls_certificate_credentials_t cred;
	bool https;	/* the URL asks for TLS */
	char host[256]; /* for https://: the name or address the certificate must hold */
};

static ssize_t conn_recv(struct conn *k, void *buf, size_t len)
{
	if (!k->tls)
		return recv(k->fd, buf, len, 0);
	for (;;) {
		ssize_t n = gnutls_record_recv(k->tls, buf, len);
		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n == GNUTLS_E_PREMATURE_TERMINATION)
			return 0; /* closed without close_notify: an end all the same */
		if (n < 0) {
			errno = EPROTO;
			return -1;
		}
		return n;
	}
}

static int send_all(struct conn *k, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = k->tls ? gnutls_record_send(k->tls, buf, len)
				   : send(k->fd, buf, len, MSG_NOSIGNAL);
		if (k->tls && (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN))
			continue;
		if (k->tls && n < 0) {
			errno = EPIPE;
			return -EPIPE;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* No more input: a TLS close_notify for our direction, or a socket half-close. */
static void conn_shutdown_wr(struct conn *k)
{
	if (k->tls)
		gnutls_bye(k->tls, GNUTLS_SHUT_WR);
	shutdown(k->fd, SHUT_WR);
}

static void conn_close(struct conn *k)
{
	if (k->tls)
		gnutls_deinit(k->tls);
	if (k->cred)
		gnutls_certificate_free_credentials(k->cred);
	if (k->fd >= 0)
		close(k->fd);
}

/* TLS on k->fd, berthd's certificate checked against --cacert (or the system's CAs) and the
 * host name of the URL. EXIT_OK or the error printed. */
static int tls_start(const struct cli *c, struct conn *k, const char *where)
{
	unsigned char addr[16];
	int ret;

	if ((ret = gnutls_certificate_allocate_credentials(&k->cred)) < 0)
		goto fail;
	if (c->conn.cacert) {
		if (gnutls_certificate_set_x509_trust_file(k->cred, c->conn.cacert,
							   GNUTLS_X509_FMT_PEM) <= 0)
			return cli_fail(EXIT_USAGE, "--cacert %s: no PEM certificate in it",
					c->conn.cacert);
	} else if ((ret = gnutls_certificate_set_x509_system_trust(k->cred)) < 0) {
		goto fail;
	}
	if ((ret = gnutls_init(&k->tls, GNUTLS_CLIENT)) < 0 ||
	    (ret = gnutls_set_default_priority(k->tls)) < 0 ||
	    (ret = gnutls_credentials_set(k->tls, GNUTLS_CRD_CERTIFICATE, k->cred)) < 0)
		goto fail;
	/* SNI for names only; the certificate is checked for the name or the address */
	if (inet_pton(AF_INET, k->host, addr) != 1 && inet_pton(AF_INET6, k->host, addr) != 1)
		gnutls_server_name_set(k->tls, GNUTLS_NAME_DNS, k->host, strlen(k->host));
	gnutls_session_set_verify_cert(k->tls, k->host, 0);
	gnutls_transport_set_int(k->tls, k->fd);
	gnutls_handshake_set_timeout(k->tls, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	do
		ret = gnutls_handshake(k->tls);
	while (ret < 0 && !gnutls_error_is_fatal(ret));
	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		gnutls_datum_t why = {NULL, 0};
		gnutls_certificate_verification_status_print(
		    gnutls_session_get_verify_cert_status(k->tls), GNUTLS_CRT_X509, &why, 0);
		int code = cli_fail(EXIT_UNREACHABLE,
				    "no trusted TLS connection to berthd at %s: %s (a self-signed "
				    "certificate needs --cacert FILE or $BERTH_CACERT)",
				    where, why.data ? (const char *)why.data : "not trusted");
		gnutls_free(why.data);
		return code;
	}
	if (ret < 0)
		return cli_fail(EXIT_UNREACHABLE, "no TLS connection to berthd at %s: %s", where,
				gnutls_strerror(ret));
	return EXIT_OK;
fail:
	return cli_fail(EXIT_ERROR, "TLS: %s", gnutls_strerror(ret));
}

static void on_signal(int sig)
{
	got_signal = sig;
}

/* Connect to berthd: its unix socket, or host:port of an http:// or https:// URL (k->host set).
 * fd or -errno. */
static int dial(const struct cli *c, struct conn *k, char *where, size_t len)
{
	int fd, ret;

	if (!c->conn.host) {
		struct sockaddr_un sa = {.sun_family = AF_UNIX};
		const char *p = c->conn.socket_path ? c->conn.socket_path : BERTH_DEFAULT_SOCKET;
		snprintf(where, len, "%s", p);
		if (strlen(p) >= sizeof(sa.sun_path))
			return -ENAMETOOLONG;
		memcpy(sa.sun_path, p, strlen(p) + 1);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
			ret = -errno;
			close(fd);
			return ret;
		}
		return fd;
	}
	/* http[s]://HOST[:PORT][/] */
	char host[256], port[16] = "80";
	const char *h = c->conn.host;
	snprintf(where, len, "%s", h);
	if (!strncasecmp(h, "https://", 8)) {
		snprintf(port, sizeof(port), "443");
		h += 8;
		k->https = true;
	} else if (!strncasecmp(h, "http://", 7)) {
		h += 7;
	} else {
		return -EPROTONOSUPPORT;
	}
	size_t n = strcspn(h, "/");
	if (!n || n >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	char *colon = strrchr(host, ':');
	if (host[0] == '[') { /* [::1]:8080 */
		char *rb = strchr(host, ']');
		if (!rb || (rb[1] && rb[1] != ':'))
			return -EINVAL;
		if (rb[1] == ':')
			snprintf(port, sizeof(port), "%s", rb + 2);
		*rb = '\0';
		memmove(host, host + 1, strlen(host));
	} else if (colon && colon == strchr(host, ':')) { /* host:port; a bare IPv6 has several */
		snprintf(port, sizeof(port), "%s", colon + 1);
		*colon = '\0';
	}
	snprintf(k->host, sizeof(k->host), "%s", host);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	if (getaddrinfo(host, port, &hints, &res))
		return -EHOSTUNREACH;
	ret = -EHOSTUNREACH;
	for (ai = res; ai; ai = ai->ai_next) {
		if ((fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0)) < 0)
			continue;
		if (!connect(fd, ai->ai_addr, ai->ai_addrlen)) {
			ret = fd;
			break;
		}
		ret = -errno;
		close(fd);
	}
	freeaddrinfo(res);
	return ret;
}

static int dial_error(const struct cli *c, const char *where, int err)
{
	switch (-err) {
	case EACCES:
	case EPERM:
		return cli_fail(EXIT_DENIED,
				"permission denied on berthd's socket %s: use root or a member of "
				"berthd's group (berth)",
				where);
	case EPROTONOSUPPORT:
		return cli_fail(
		    EXIT_ERROR,
		    "vm console over %s: only the local socket, http:// and https:// URLs "
		    "are supported",
		    where);
	case EINVAL:
	case ENAMETOOLONG:
		return cli_fail(EXIT_USAGE, "cannot use '%s' to reach berthd", where);
	default:
		return cli_fail(
		    EXIT_UNREACHABLE, "cannot reach berthd at %s: %s%s", where, strerror(-err),
		    c->conn.host ? " (is berthd running there, and is the URL right?)"
				 : " (is berthd running? check 'systemctl status berthd', "
				   "or pass --socket PATH)");
	}
}

static int write_out(int fd, const char *buf, size_t len)
{
	while (len) {
		ssize_t n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

/* A header's value in the answer head (lines after the status line), or NULL. */
static const char *head_value(const char *head, const char *name, char *buf, size_t len)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(head, "\r\n"); l && l[2]; l = strstr(l + 2, "\r\n")) {
		const char *s = l + 2;
		if (!strncasecmp(s, name, nl) && s[nl] == ':') {
			s += nl + 1;
			s += strspn(s, " \t");
			snprintf(buf, len, "%.*s", (int)strcspn(s, "\r\n"), s);
			return buf;
		}
	}
	return NULL;
}

/* An error answer: its body (Content-Length of it) read and reported like any API error. */
static int report_answer(struct conn *k, long status, const char *head, const char *rest,
			 size_t rest_len)
{
	char cl[32];
	size_t want =
	    head_value(head, "Content-Length", cl, sizeof(cl)) ? strtoul(cl, NULL, 10) : 0;
	struct response r = {.status = status};
	int code;

	if (want > ERR_BODY_MAX)
		want = ERR_BODY_MAX;
	if (!(r.raw = calloc(1, want + 1)))
		return cli_fail(EXIT_ERROR, "out of memory");
	r.raw_len = rest_len < want ? rest_len : want;
	memcpy(r.raw, rest, r.raw_len);
	while (r.raw_len < want) {
		ssize_t n = conn_recv(k, r.raw + r.raw_len, want - r.raw_len);
		if (n <= 0)
			break;
		r.raw_len += (size_t)n;
	}
	r.body = json_loadb(r.raw, r.raw_len, 0, NULL);
	code = cli_report(&r, NULL);
	response_free(&r);
	return code;
}

/* Send the upgrade request and read the answer's head. EXIT_OK with the bytes that came after
 * it in early/early_len (console output), else the error printed. */
static int upgrade(struct cli *c, struct conn *k, const char *path, char *early, size_t *early_len)
{
	char req[2048], auth[1100] = "", head[HEAD_MAX + 1], val[64];
	size_t got = 0;
	char *end = NULL;
	long status;

	if (c->conn.token && (size_t)snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n",
					      c->conn.token) >= sizeof(auth))
		return cli_fail(EXIT_USAGE, "the token is too long");
	int n = snprintf(req, sizeof(req),
			 "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: berth/%s\r\n"
			 "Upgrade: berth-console\r\nConnection: Upgrade\r\n%s\r\n",
			 path, BERTH_VERSION, auth);
	if (n < 0 || (size_t)n >= sizeof(req))
		return cli_fail(EXIT_ERROR, "the request is too long");
	if (send_all(k, req, (size_t)n))
		return cli_fail(EXIT_UNREACHABLE, "berthd closed the connection: %s",
				strerror(errno));
	while (!(end = got ? strstr(head, "\r\n\r\n") : NULL)) {
		if (got == HEAD_MAX)
			return cli_fail(EXIT_ERROR,
					"bad answer from berthd: the header is too long");
		ssize_t r = conn_recv(k, head + got, HEAD_MAX - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return cli_fail(EXIT_ERROR, "bad answer from berthd: the connection ended "
						    "before the header");
		got += (size_t)r;
		head[got] = '\0'; /* console output after the head may hold NULs: not searched */
	}
	end += 4;
	if (sscanf(head, "HTTP/1.%*1[01] %ld", &status) != 1)
		return cli_fail(EXIT_ERROR, "bad answer from berthd: %.60s", head);
	size_t rest = got - (size_t)(end - head);
	end[-2] = '\0'; /* the head ends with its last header's \r\n */
	if (status != 101)
		return report_answer(k, status, head, end, rest);
	if (!head_value(head, "Upgrade", val, sizeof(val)) || strcasecmp(val, "berth-console"))
		return cli_fail(EXIT_ERROR, "bad answer from berthd: 101 without Upgrade: "
					    "berth-console");
	memcpy(early, end, rest);
	*early_len = rest;
	return EXIT_OK;
}

/* Copy between the console and stdin/stdout until one ends. raw: stdin is a terminal in raw
 * mode, where Ctrl-] detaches. Returns EXIT_OK, or 128+signal. */
static int relay(struct conn *k, bool raw, bool *detached)
{
	struct pollfd p[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
			      {.fd = k->fd, .events = POLLIN}};
	char buf[16384];

	*detached = false;
	for (;;) {
		if (got_signal)
			return 128 + got_signal;
		/* TLS may hold decrypted bytes the socket no longer signals */
		bool pending = k->tls && gnutls_record_check_pending(k->tls) > 0;
		if (poll(p, 2, pending ? 0 : -1) < 0) {
			if (errno == EINTR)
				continue;
			return cli_fail(EXIT_ERROR, "poll: %s", strerror(errno));
		}
		if (p[1].revents || pending) {
			ssize_t n = conn_recv(k, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) /* the VM stopped, or berthd went away */
				return EXIT_OK;
			if (write_out(STDOUT_FILENO, buf, (size_t)n))
				return EXIT_OK; /* nobody reads our output any more */
		}
		if (p[0].revents) {
			ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) { /* no more input: keep showing the output */
				conn_shutdown_wr(k);
				p[0].fd = -1;
				continue;
			}
			char *esc = raw ? memchr(buf, ESCAPE_CHAR, (size_t)n) : NULL;
			size_t len = esc ? (size_t)(esc - buf) : (size_t)n;
			if (send_all(k, buf, len))
				return EXIT_OK;
			if (esc) {
				*detached = true;
				return EXIT_OK;
			}
		}
	}
}

int cli_vm_console(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	const char *name = a->pos[0];
	char path[512], where[512], early[HEAD_MAX];
	size_t early_len = 0;
	bool raw = isatty(STDIN_FILENO), detached = false;
	struct termios saved, t;
	struct sigaction sa = {.sa_handler = on_signal}, old[4];
	static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
	struct conn k = {.fd = -1};
	int code;
	(void)v;

	if (!*name || cli_path(path, sizeof(path), "/api/v1/vms", name, "/console"))
		return cli_usage(NULL, NULL, "'%.80s' is not a VM name or UUID", name);
	if ((k.fd = dial(c, &k, where, sizeof(where))) < 0)
		return dial_error(c, where, k.fd);
	if (k.https && (code = tls_start(c, &k, where)))
		goto out;
	if ((code = upgrade(c, &k, path, early, &early_len)))
		goto out;
	if (raw && tcgetattr(STDIN_FILENO, &saved))
		raw = false;
	if (raw) {
		fprintf(stderr, "Connected to the console of VM %s (Ctrl-] detaches)\n", name);
		for (size_t i = 0; i < 4; i++)
			sigaction(sigs[i], &sa, &old[i]);
		t = saved;
		cfmakeraw(&t);
		tcsetattr(STDIN_FILENO, TCSADRAIN, &t);
	}
	if (write_out(STDOUT_FILENO, early, early_len) == 0)
		code = relay(&k, raw, &detached);
	if (raw) {
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved);
		for (size_t i = 0; i < 4; i++)
			sigaction(sigs[i], &old[i], NULL);
		fprintf(stderr,
			detached ? "\nDetached from VM %s\n"
			: code	 ? "\nStopped by a signal; the VM %s runs on\n"
				 : "\nThe console of VM %s closed (the VM stopped)\n",
			name);
	}
out:
	conn_close(&k);
	return code;
}
