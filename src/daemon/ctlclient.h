/* berthd's client side of the berth-vmm control socket: connect, one request, its reply. */
#ifndef BERTH_DAEMON_CTLCLIENT_H
#define BERTH_DAEMON_CTLCLIENT_H

#include <jansson.h>
#include <stddef.h>

/* Connect to a control socket; the descriptor is non-blocking and close-on-exec. -errno. */
int ctl_connect(const char *path, int *fd);

/*
 * Send {"id", "cmd", "args"} (args may be NULL) and wait up to timeout_ms for its reply; events
 * arriving meanwhile are dropped (the supervision connection is where berthd reads them). 0 and
 * *result (a new reference, may be NULL) on success; -EREMOTEIO with err = "code: message" when
 * the VMM answered with an error; -ETIMEDOUT; -EPIPE/-ECONNRESET when the VMM closed the
 * connection; other -errno.
 */
int ctl_call(int fd, const char *cmd, json_t *args, int timeout_ms, json_t **result, char *err,
	     size_t errlen);

/* ctl_call, with on_event(arg, name, data) called for each event that arrives meanwhile. */
typedef void (*ctl_event_fn)(void *arg, const char *event, json_t *data);
int ctl_call_ev(int fd, const char *cmd, json_t *args, int timeout_ms, ctl_event_fn on_event,
		void *arg, json_t **result, char *err, size_t errlen);

/* Close a command connection cleanly (shut down writing, read until the VMM hangs up, briefly). */
void ctl_close(int fd);

/* Connect, call, close. */
int ctl_call_path(const char *path, const char *cmd, json_t *args, int timeout_ms, json_t **result,
		  char *err, size_t errlen);

/* One VMM of a ctl_call_all: its socket, then the outcome. */
struct ctl_multi {
	const char *path;
	int ret;	/* 0 (result set), -EREMOTEIO (the VMM refused), -ETIMEDOUT, other -errno */
	json_t *result; /* a new reference on success */
};

/*
 * Send cmd (no arguments) to every socket at once and gather the replies for at most timeout_ms
 * in all, so one VMM that does not answer (stopped, stuck) costs the others nothing. Connections
 * are closed before it returns.
 */
void ctl_call_all(struct ctl_multi *items, unsigned n, const char *cmd, int timeout_ms);

#endif
