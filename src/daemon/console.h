/* berthd's serial consoles over the API: a client's upgraded connection relayed to the VMM's
 * console socket. */
#ifndef BERTH_DAEMON_CONSOLE_H
#define BERTH_DAEMON_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>

#define CONSOLE_PRE_MAX 4096

/* A connection to a VMM's console socket, made before the client is answered. */
struct console_conn {
	int fd;
	bool input; /* the client may type (operator role or more); else its bytes are dropped */
	char vm[64];
	size_t pre_len; /* output read while checking that the VMM took us */
	char pre[CONSOLE_PRE_MAX];
};

/*
 * Connect to the console socket at path. The VMM serves one client at a time and closes the
 * others at once: a connection closed before it sent anything is retried for a moment, then
 * -EBUSY. -ENOENT/-ECONNREFUSED if nothing serves it. *out is freed with console_conn_free.
 */
int console_open(const char *path, const char *vm, bool input, struct console_conn **out);
void console_conn_free(struct console_conn *cc);

struct console_relays;

int console_relays_new(struct console_relays **out);
/*
 * Relay between sock (the client's upgraded connection, not ours to close) and cc (taken) in a
 * thread: first cc's early output, then both ways; extra (bytes the client sent after its request)
 * counts as input. done(arg) is called from the thread when it ends (the client or the VMM closed,
 * or console_relays_stop). -errno (cc freed, done not called).
 */
int console_relay_start(struct console_relays *r, struct console_conn *cc, int sock,
			const char *extra, size_t extra_len, void (*done)(void *), void *arg);
/* End every relay and wait for their threads (at most a few seconds); -EBUSY if some did not
 * end (then r must not be freed). */
int console_relays_stop(struct console_relays *r);
void console_relays_free(struct console_relays *r);

#endif
