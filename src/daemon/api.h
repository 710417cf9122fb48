/* berthd's REST API: requests and responses independent of the HTTP server, the router, errors. */
#ifndef BERTH_DAEMON_API_H
#define BERTH_DAEMON_API_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "daemon/route.h"

#define API_PREFIX "/api/v1"
#define API_BODY_MAX (1024 * 1024)
#define API_CONSOLE_PROTOCOL "berth-console" /* Upgrade: of GET /vms/{id}/console */

/* What a caller may do; each route names the least role it needs. */
enum api_role { ROLE_NONE = 0, ROLE_VIEWER, ROLE_OPERATOR, ROLE_ADMIN };

const char *api_role_name(enum api_role r);
/* "viewer", "operator", "admin" (or ROLE_NONE). */
enum api_role api_role_parse(const char *s);

struct db;
struct disk_pool;
struct evbus;
struct ops;
struct vmctl;

#define API_STATUS_MAX 600

/* Daemon-wide state the handlers use. */
struct api_ctx {
	struct db *db;
	struct vmctl *vmctl; /* VM lifecycle; NULL where only definitions are served (unit tests) */
	struct ops *ops;
	struct timespec started; /* CLOCK_MONOTONIC */
	const char *openapi;	 /* the OpenAPI document, embedded at build time */
	size_t openapi_len;
	struct evbus *events;  /* the event stream's broadcaster; NULL: no streams */
	const char *state_dir; /* for the VMs' paths (metrics); NULL: no VMM is asked */
	const char *run_dir;
	const struct disk_pool *disks; /* the managed disks' pool; NULL: no disks can be made */
	/* daemon health for /metrics: responses by status, VMMs a scrape could not read */
	atomic_uint_fast64_t responses[API_STATUS_MAX];
	atomic_uint_fast64_t scrape_errors;
};

struct api_req {
	struct api_ctx *ctx;
	const char *method;
	const char *path;
	enum api_role role;
	uid_t uid; /* the peer on the unix socket, for the audit log; (uid_t)-1 over TCP */
	pid_t pid;
	const char *token_name; /* the bearer token the caller acts with, NULL if none */
	int64_t token_id;
	const char *address;	   /* the TCP peer ("192.0.2.1:40000"), NULL on the unix socket */
	const char *content_type;  /* NULL if absent */
	const char *if_match;	   /* NULL if absent */
	const char *last_event_id; /* the Last-Event-ID header, NULL if absent */
	const char *body;	   /* NULL/0 if none */
	size_t body_len;
	json_t *query;	     /* object: parameter name -> string (or null for a bare "?flag") */
	const char *upgrade; /* the Upgrade and Connection headers, NULL if absent */
	const char *connection;
	/* filled by api_dispatch */
	struct route_params params;
	json_t *json; /* the parsed body of routes that take one */
};

struct api_resp {
	unsigned status;
	json_t *body;	 /* JSON body (owned), or NULL */
	const char *raw; /* or a static JSON body */
	size_t raw_len;
	int64_t etag;	    /* > 0: ETag: "<etag>" */
	char allow[64];	    /* 405: the Allow header */
	char location[128]; /* 201: the Location header */
	/* ?wait=true on an operation not finished yet: the HTTP layer answers (api_op_answer)
	 * when it finishes instead of holding a worker thread; "" otherwise */
	char wait_op[40];
	bool op_created; /* the request created it: 202 while unfinished, and a Location */
	/* a text body (owned) with its type, e.g. the metrics, instead of JSON */
	char *text;
	size_t text_len;
	const char *content_type;
	/* an event stream of the events after stream_after: the HTTP layer serves it */
	bool stream;
	int64_t stream_after;
	/* 401: the WWW-Authenticate challenge */
	const char *www_authenticate;
	/* 101: the HTTP layer switches the connection to a relay of this console (owned) */
	struct console_conn *console;
};

/* Route, authorise, check the query and body, run the handler. resp starts zeroed. */
void api_dispatch(struct api_req *req, struct api_resp *resp);
void api_resp_free(struct api_resp *resp);

/* Fill resp with {"error": {"code", "message", "field"}} (field omitted if NULL or empty). */
__attribute__((format(printf, 5, 6))) void api_error(struct api_resp *resp, unsigned status,
						     const char *code, const char *field,
						     const char *fmt, ...);

/* 500 "internal": the inventory failed with err (a negative errno). */
void api_db_failed(struct api_resp *resp, int err);

/*
 * Answer 200 {key: [...]}: fill appends the items to the array, in a read transaction of the
 * inventory (a non-zero return is an inventory error).
 */
void api_respond_list(struct api_req *req, struct api_resp *resp, const char *key,
		      int (*fill)(struct db *db, json_t *list));

/* "2026-11-25T21:52:28.123Z" */
void api_now(char buf[32]);

/* A random (version 4) UUID, lower case. -EIO without randomness. */
int api_uuid_v4(char out[37]);

/* The audit "actor" of a request: {"role"} with "uid" and "pid" (unix socket), "address" (TCP)
 * and "token": {"id", "name"} (a bearer token). */
json_t *api_actor(const struct api_req *req);

/* The answer about an operation: 202 (created, unfinished) or 200, with Location if created;
 * 404 if it is gone. */
void api_op_answer(struct api_ctx *ctx, const char *id, bool created, struct api_resp *resp);

/* Handlers (api_vms.c, api_host.c, api_actions.c). */
void api_vms_create(struct api_req *req, struct api_resp *resp);
void api_vms_list(struct api_req *req, struct api_resp *resp);
void api_vms_get(struct api_req *req, struct api_resp *resp);
void api_vms_patch(struct api_req *req, struct api_resp *resp);
void api_vms_delete(struct api_req *req, struct api_resp *resp);
void api_host_get(struct api_req *req, struct api_resp *resp);
void api_vm_action(struct api_req *req, struct api_resp *resp);
void api_ops_list(struct api_req *req, struct api_resp *resp);
void api_ops_get(struct api_req *req, struct api_resp *resp);
void api_host_stop_vms(struct api_req *req, struct api_resp *resp);
void api_vm_console(struct api_req *req, struct api_resp *resp);
void api_openapi_get(struct api_req *req, struct api_resp *resp);
void api_metrics_get(struct api_req *req, struct api_resp *resp);
void api_events_get(struct api_req *req, struct api_resp *resp);
/* api_switches.c */
void api_switches_create(struct api_req *req, struct api_resp *resp);
void api_switches_list(struct api_req *req, struct api_resp *resp);
void api_switches_get(struct api_req *req, struct api_resp *resp);
void api_switches_delete(struct api_req *req, struct api_resp *resp);
/* api_disks.c; attach and detach edit a VM's spec (api_vms.c) */
void api_disks_create(struct api_req *req, struct api_resp *resp);
void api_disks_list(struct api_req *req, struct api_resp *resp);
void api_disks_get(struct api_req *req, struct api_resp *resp);
void api_disks_delete(struct api_req *req, struct api_resp *resp);
void api_disks_resize(struct api_req *req, struct api_resp *resp);
void api_vm_disk_attach(struct api_req *req, struct api_resp *resp);
void api_vm_disk_detach(struct api_req *req, struct api_resp *resp);

/* api_tokens.c */
void api_tokens_create(struct api_req *req, struct api_resp *resp);
void api_tokens_list(struct api_req *req, struct api_resp *resp);
void api_tokens_get(struct api_req *req, struct api_resp *resp);
void api_tokens_delete(struct api_req *req, struct api_resp *resp);

/* Who a bearer token says the caller is. */
struct api_caller {
	enum api_role role;
	int64_t token_id;
	char token_name[64];
};

/*
 * Check an Authorization header ("Bearer berth_<id>_<secret>"): 0 with who filled (and the
 * token's last use noted); -EACCES if it is missing, malformed, unknown, deleted or expired (why
 * says which, for the 401's message); -EIO if the inventory failed.
 */
int api_token_check(struct api_ctx *ctx, const char *authorization, struct api_caller *who,
		    const char **why);

/* api_checkpoints.c */
void api_ckpt_list(struct api_req *req, struct api_resp *resp);
void api_ckpt_get(struct api_req *req, struct api_resp *resp);
void api_ckpt_create(struct api_req *req, struct api_resp *resp);
void api_ckpt_apply(struct api_req *req, struct api_resp *resp);
void api_ckpt_delete(struct api_req *req, struct api_resp *resp);

#endif
