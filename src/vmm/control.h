/* berth-vmm's control socket: a unix stream server on the main event loop speaking framed JSON
 * requests, replies and events (docs/control.md). */
#ifndef BERTH_CONTROL_H
#define BERTH_CONTROL_H

#include <jansson.h>
#include <stdbool.h>

#include "vmm/vm.h"

#define CONTROL_MAX_CLIENTS 8
/* A client whose unread replies and events exceed this is disconnected. */
#define CONTROL_TX_LIMIT (4u << 20)
/* How long control_close() waits for replies and the shutdown event to drain. */
#define CONTROL_DRAIN_MS 1000

struct control;
struct evloop;

/* How the control socket stops the VMM (quit): the caller's request_stop. */
typedef void (*control_stop_fn)(void *opaque, enum stop_reason why);

/*
 * Listen on path (mode 0600; a stale socket left by an earlier run is replaced, any other file is
 * refused) and serve clients from loop. -errno, logged.
 */
int control_open(struct control **out, const char *path, struct evloop *loop,
		 const struct vm_config *cfg, control_stop_fn stop, void *opaque);
/* The VM that commands act on (NULL between runs); opens its checkpoint tree (--checkpoint-dir),
 * -errno (logged) if that fails. */
int control_attach(struct control *c, struct vm *vm);
/* --start-paused: the VM (attached, not started) holds a pause that resume releases, as if a
 * client had paused it. fresh: it was not restored, so until that resume nothing of the guest
 * has run and a disk-only checkpoint may be applied (its disks just switch). */
void control_hold_paused(struct control *c, bool fresh);
/* Send {"event": name, "data": data} to every client; data is stolen (NULL = {}). Main thread. */
void control_event(struct control *c, const char *name, json_t *data);
/* Drain pending output (at most CONTROL_DRAIN_MS), close every connection, remove the socket. */
void control_close(struct control *c);

#endif
