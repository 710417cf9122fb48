/* Operations: what a long action is doing, kept in memory with a bounded history. */
#ifndef BERTH_DAEMON_OPS_H
#define BERTH_DAEMON_OPS_H

#include <jansson.h>
#include <stdbool.h>

#define OP_ID_LEN 36
#define OPS_HISTORY 256 /* finished operations kept; unfinished ones are always kept */

struct ops;

int ops_new(struct ops **out);
void ops_free(struct ops *ops);

/* A new operation (state queued); id receives its UUID. vm may be NULL. -ENOMEM, -EIO. */
int ops_create(struct ops *ops, const char *kind, const char *vm, char id[OP_ID_LEN + 1]);
void ops_running(struct ops *ops, const char *id);
void ops_progress(struct ops *ops, const char *id, int percent);
void ops_succeed(struct ops *ops, const char *id);
/* What the operation made or did ("result" in its JSON); result is stolen. */
void ops_set_result(struct ops *ops, const char *id, json_t *result);
__attribute__((format(printf, 4, 5))) void ops_fail(struct ops *ops, const char *id,
						    const char *code, const char *fmt, ...);

/*
 * The operation as JSON (a new reference), NULL if unknown. With wait, first wait until it has
 * finished or ops_stop_waiting was called; *finished tells which.
 */
json_t *ops_get(struct ops *ops, const char *id, bool wait, bool *finished);
/* {"operations": [...]}, newest first. */
json_t *ops_list(struct ops *ops);
/*
 * Call fn(arg) once, from the thread that finishes the operation (or from ops_stop_waiting),
 * without the registry's lock held. Returns 1 if registered, 0 if the operation is unknown or
 * finished already or the daemon stops (fn is then not called). -ENOMEM.
 */
int ops_notify(struct ops *ops, const char *id, void (*fn)(void *arg), void *arg);

/* Wake every waiter and make later waits return at once (the daemon is stopping). */
void ops_stop_waiting(struct ops *ops);

#endif
