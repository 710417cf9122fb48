/* Control-socket requests: the envelope and each command's arguments validated against one table;
 * reply and event messages. No VM needed (the fuzz target uses it alone). */
#ifndef BERTH_CONTROL_REQ_H
#define BERTH_CONTROL_REQ_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CONTROL_PROTOCOL_VERSION 1

enum control_cmd {
	CMD_QUERY_STATUS,
	CMD_PAUSE,
	CMD_RESUME,
	CMD_POWERDOWN,
	CMD_QUIT,
	CMD_SAVE,
	CMD_CHECKPOINT,
	CMD_CKPT_CREATE,
	CMD_CKPT_LIST,
	CMD_CKPT_APPLY,
	CMD_CKPT_DELETE,
	CMD_QUERY_STATS,
};

/* Defaults and limits of command arguments. */
#define PAUSE_TIMEOUT_MS_DEFAULT 10000
#define PAUSE_TIMEOUT_MS_MAX 60000

/* Stable error codes (docs/control.md lists them). */
#define CERR_INVALID_REQUEST "invalid-request"
#define CERR_UNKNOWN_FIELD "unknown-field"
#define CERR_UNKNOWN_COMMAND "unknown-command"
#define CERR_INVALID_ARGUMENT "invalid-argument"
#define CERR_MISSING_ARGUMENT "missing-argument"
#define CERR_UNEXPECTED_FDS "unexpected-fds"
#define CERR_TIMEOUT "timeout"
#define CERR_STOPPING "stopping"
#define CERR_NOT_RUNNING "not-running"
#define CERR_BAD_FRAME "bad-frame"
#define CERR_TOO_MANY_CLIENTS "too-many-clients"
#define CERR_INTERNAL "internal-error"
#define CERR_SAVE_FAILED "save-failed"
#define CERR_CHECKPOINT_FAILED "checkpoint-failed"
#define CERR_NO_CHECKPOINT_DIR "no-checkpoint-dir"
#define CERR_NO_SUCH_CHECKPOINT "no-such-checkpoint"
#define CERR_CHECKPOINT_EXISTS "checkpoint-exists"
#define CERR_BUSY "busy"

struct control_error {
	const char *code;  /* one of CERR_* */
	char message[256]; /* for humans; valid UTF-8 */
	char field[96];	   /* "cmd", "args.timeout_ms", ... (a request may use "" as a key) */
	bool has_field;	   /* the error names a field */
};

struct control_request {
	enum control_cmd cmd;
	json_t *id; /* borrowed from the request object; NULL if absent */
	union {
		struct {
			unsigned timeout_ms;
		} pause;
		struct {
			const char *dir; /* borrowed from the request */
			bool stop;	 /* stop the VM once saved (default) */
			unsigned timeout_ms;
		} save;
		struct {
			const char *dir;  /* memory and device state; NULL: disks only */
			json_t *overlays; /* borrowed array of paths, one per writable disk */
			unsigned timeout_ms;
		} checkpoint;
		struct {
			const char
			    *name; /* checkpoint-create: NULL = default; others: id or name */
			bool disk_only;
			unsigned timeout_ms;
		} ckpt;
	} args;
};

/*
 * Validate a request object ({"id": any, "cmd": "...", "args": {...}}) that arrived with nfds file
 * descriptors. 0 and *out filled, or -EINVAL with err naming the code, the field and the reason.
 * out->id is set even on failure when the request has one, so the error reply can carry it.
 */
int control_req_parse(json_t *req, unsigned nfds, struct control_request *out,
		      struct control_error *err);
const char *control_cmd_name(enum control_cmd cmd);

/* Messages (new references; NULL only when out of memory). A NULL id is sent as null. */
json_t *control_reply_ok(json_t *id, json_t *result /* stolen; NULL = {} */);
json_t *control_reply_error(json_t *id, const struct control_error *err);
json_t *control_event_msg(const char *name, json_t *data /* stolen; NULL = {} */);

/* Fill err (printf-style message); returns -EINVAL. Field may be NULL. */
int control_fail(struct control_error *err, const char *code, const char *field, const char *fmt,
		 ...) __attribute__((format(printf, 4, 5)));

#endif
