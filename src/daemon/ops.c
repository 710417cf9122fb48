/* Operations: what a long action is doing, kept in memory with a bounded history. */
#include "daemon/ops.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/api.h"

enum op_state { OP_QUEUED, OP_RUNNING, OP_SUCCEEDED, OP_FAILED };
static const char *const OP_STATES[] = {"queued", "running", "succeeded", "failed"};

struct op {
	char id[OP_ID_LEN + 1];
	char kind[32];
	char vm[OP_ID_LEN + 1]; /* "" for none */
	enum op_state state;
	int progress;
	char err_code[32];
	char err_msg[512];
	char created[32], finished[32];
	json_t *result;	 /* what it made or did, NULL if nothing to say */
	struct op *next; /* newest first */
};

/* Someone to tell when an operation finishes (a suspended HTTP request). */
struct waiter {
	char id[OP_ID_LEN + 1];
	void (*fn)(void *arg);
	void *arg;
	struct waiter *next;
};

struct ops {
	pthread_mutex_t lock;
	struct waiter *waiters;
	pthread_cond_t cond;
	struct op *head;
	unsigned finished_count;
	bool stopping;
};

int ops_new(struct ops **out)
{
	struct ops *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	*out = o;
	return 0;
}

void ops_free(struct ops *ops)
{
	if (!ops)
		return;
	while (ops->waiters) {
		struct waiter *n = ops->waiters->next;
		free(ops->waiters);
		ops->waiters = n;
	}
	while (ops->head) {
		struct op *n = ops->head->next;
		json_decref(ops->head->result);
		free(ops->head);
		ops->head = n;
	}
	pthread_cond_destroy(&ops->cond);
	pthread_mutex_destroy(&ops->lock);
	free(ops);
}

static struct op *find(struct ops *ops, const char *id)
{
	for (struct op *o = ops->head; o; o = o->next)
		if (!strcmp(o->id, id))
			return o;
	return NULL;
}

/* Drop the oldest finished operations past the history bound. Lock held. */
static void trim(struct ops *ops)
{
	struct op **pp = &ops->head;
	unsigned seen = 0;
	while (*pp) {
		struct op *o = *pp;
		bool done = o->state == OP_SUCCEEDED || o->state == OP_FAILED;
		if (done && ++seen > OPS_HISTORY) {
			*pp = o->next;
			json_decref(o->result);
			free(o);
			ops->finished_count--;
			continue;
		}
		pp = &o->next;
	}
}

int ops_create(struct ops *ops, const char *kind, const char *vm, char id[OP_ID_LEN + 1])
{
	struct op *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	if (api_uuid_v4(o->id)) {
		free(o);
		return -EIO;
	}
	snprintf(o->kind, sizeof(o->kind), "%s", kind);
	snprintf(o->vm, sizeof(o->vm), "%s", vm ? vm : "");
	api_now(o->created);
	o->state = OP_QUEUED;
	memcpy(id, o->id, sizeof(o->id));
	pthread_mutex_lock(&ops->lock);
	o->next = ops->head;
	ops->head = o;
	trim(ops);
	pthread_mutex_unlock(&ops->lock);
	return 0;
}

/* Unlink the waiters of id (all of them if id is NULL). Lock held. */
static struct waiter *take_waiters(struct ops *ops, const char *id)
{
	struct waiter *out = NULL, **pp = &ops->waiters;
	while (*pp) {
		struct waiter *w = *pp;
		if (id && strcmp(w->id, id)) {
			pp = &w->next;
			continue;
		}
		*pp = w->next;
		w->next = out;
		out = w;
	}
	return out;
}

static void call_waiters(struct waiter *w)
{
	while (w) {
		struct waiter *n = w->next;
		w->fn(w->arg);
		free(w);
		w = n;
	}
}

int ops_notify(struct ops *ops, const char *id, void (*fn)(void *arg), void *arg)
{
	struct waiter *w = calloc(1, sizeof(*w));
	int ret = 0;
	if (!w)
		return -ENOMEM;
	pthread_mutex_lock(&ops->lock);
	struct op *o = find(ops, id);
	if (o && o->state != OP_SUCCEEDED && o->state != OP_FAILED && !ops->stopping) {
		snprintf(w->id, sizeof(w->id), "%s", id);
		w->fn = fn;
		w->arg = arg;
		w->next = ops->waiters;
		ops->waiters = w;
		w = NULL;
		ret = 1;
	}
	pthread_mutex_unlock(&ops->lock);
	free(w);
	return ret;
}

static void set_state(struct ops *ops, const char *id, enum op_state st, int progress,
		      const char *code, const char *msg)
{
	struct waiter *done = NULL;
	pthread_mutex_lock(&ops->lock);
	struct op *o = find(ops, id);
	if (o && o->state != OP_SUCCEEDED && o->state != OP_FAILED) {
		if (progress >= 0 && progress > o->progress)
			o->progress = progress > 100 ? 100 : progress;
		o->state = st;
		if (code) {
			snprintf(o->err_code, sizeof(o->err_code), "%s", code);
			snprintf(o->err_msg, sizeof(o->err_msg), "%s", msg);
		}
		if (st == OP_SUCCEEDED || st == OP_FAILED) {
			api_now(o->finished);
			ops->finished_count++;
			pthread_cond_broadcast(&ops->cond);
			done = take_waiters(ops, id);
		}
	}
	pthread_mutex_unlock(&ops->lock);
	call_waiters(done);
}

void ops_running(struct ops *ops, const char *id)
{
	set_state(ops, id, OP_RUNNING, -1, NULL, NULL);
}

void ops_progress(struct ops *ops, const char *id, int percent)
{
	set_state(ops, id, OP_RUNNING, percent, NULL, NULL);
}

void ops_set_result(struct ops *ops, const char *id, json_t *result)
{
	pthread_mutex_lock(&ops->lock);
	struct op *o = find(ops, id);
	if (o) {
		json_decref(o->result);
		o->result = result;
		result = NULL;
	}
	pthread_mutex_unlock(&ops->lock);
	json_decref(result);
}

void ops_succeed(struct ops *ops, const char *id)
{
	set_state(ops, id, OP_SUCCEEDED, 100, NULL, NULL);
}

void ops_fail(struct ops *ops, const char *id, const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	set_state(ops, id, OP_FAILED, -1, code, msg);
}

static json_t *op_json(const struct op *o)
{
	json_t *err = json_null();
	if (o->state == OP_FAILED)
		err = json_pack("{s:s, s:s}", "code", o->err_code, "message", o->err_msg);
	json_t *j = json_pack("{s:s, s:s, s:o, s:s, s:i, s:o, s:s, s:o}", "id", o->id, "kind",
			      o->kind, "vm", o->vm[0] ? json_string(o->vm) : json_null(), "state",
			      OP_STATES[o->state], "progress", o->progress, "error", err, "created",
			      o->created, "finished",
			      o->finished[0] ? json_string(o->finished) : json_null());
	if (j && o->result)
		json_object_set_new(j, "result", json_deep_copy(o->result));
	return j;
}

json_t *ops_get(struct ops *ops, const char *id, bool wait, bool *finished)
{
	json_t *j = NULL;
	pthread_mutex_lock(&ops->lock);
	for (;;) {
		struct op *o = find(ops, id);
		if (!o)
			break;
		*finished = o->state == OP_SUCCEEDED || o->state == OP_FAILED;
		if (!wait || *finished || ops->stopping) {
			j = op_json(o);
			break;
		}
		pthread_cond_wait(&ops->cond, &ops->lock);
	}
	pthread_mutex_unlock(&ops->lock);
	return j;
}

json_t *ops_list(struct ops *ops)
{
	json_t *a = json_array();
	pthread_mutex_lock(&ops->lock);
	for (struct op *o = ops->head; o && a; o = o->next)
		if (json_array_append_new(a, op_json(o))) {
			json_decref(a);
			a = NULL;
		}
	pthread_mutex_unlock(&ops->lock);
	return a ? json_pack("{s:o}", "operations", a) : NULL;
}

void ops_stop_waiting(struct ops *ops)
{
	pthread_mutex_lock(&ops->lock);
	ops->stopping = true;
	pthread_cond_broadcast(&ops->cond);
	struct waiter *all = take_waiters(ops, NULL);
	pthread_mutex_unlock(&ops->lock);
	call_waiters(all);
}
