/* berth-vmm's control socket: listener, client connections, command handlers and event broadcast
 * on the main event loop. */
#include "vmm/control.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/evloop.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "vmm/checkpoint.h"
#include "vmm/control_req.h"
#include "vmm/stats.h"
#include "vmm/vcpu_state.h"
#include "vmm/vmstate.h"
#include "vmm/vmstate_mem.h"

#define TAG "control"
#define MSGS_PER_WAKEUP 32 /* then back to the loop, so one busy client cannot starve others */

struct client {
	struct control *ctl;
	int fd; /* -1: slot free */
	unsigned no;
	struct proto_rx rx;
	struct proto_tx tx;
	bool want_out; /* registered for EPOLLOUT */
	bool waiting;  /* a deferred reply is due: read no further request until it is sent */
};

/* A checkpoint-delete runs on a worker thread (it copies disk layers while the VM runs); its reply
 * goes out when it ends. The main loop hears of progress and the end through an eventfd. */
struct ckpt_job {
	pthread_t thread;
	bool running; /* started and not yet joined (main thread) */
	int efd;
	pthread_mutex_t lock; /* guards the fields below */
	bool done, cancel, progressed;
	char what[PATH_MAX];
	uint64_t done_bytes, total_bytes;
	int r;
	json_t *result;
	char msg[600];
	/* the request, for the reply */
	char ref[80];
	unsigned timeout_ms, client_no;
	json_t *id;
};

struct control {
	int lfd;
	char *path;
	struct evloop *loop;
	const struct vm_config *cfg;
	control_stop_fn stop;
	void *opaque;
	struct vm *vm;
	struct ckpt_store *ckpt;  /* --checkpoint-dir's tree, while a VM runs */
	unsigned ckpt_timeout_ms; /* the running checkpoint command's pause timeout */
	struct ckpt_job job;
	bool user_paused; /* a pause command holds one vm_pause_vcpus() */
	bool fresh;	  /* started paused from the configuration, no vCPU has run yet */
	unsigned next_no;
	struct client clients[CONTROL_MAX_CLIENTS];
};

static void drop_client(struct client *cl, const char *why)
{
	if (cl->fd < 0)
		return;
	log_debug(TAG, "client %u: disconnected (%s)", cl->no, why);
	evloop_del(cl->ctl->loop, cl->fd);
	close(cl->fd);
	cl->fd = -1;
	proto_rx_reset(&cl->rx);
	proto_tx_free(&cl->tx);
}

/* Write what the socket takes; wait for EPOLLOUT for the rest, drop a client that falls behind. */
static void flush_client(struct client *cl)
{
	int r = proto_tx_flush(cl->fd, &cl->tx);
	if (r < 0) {
		drop_client(cl, strerror(-r));
		return;
	}
	if (proto_tx_pending(&cl->tx) > CONTROL_TX_LIMIT) {
		log_warn(TAG, "client %u: more than %u MiB of replies and events unread; closing",
			 cl->no, CONTROL_TX_LIMIT >> 20);
		drop_client(cl, "too slow");
		return;
	}
	bool want = r == 1;
	if (want != cl->want_out &&
	    evloop_mod(cl->ctl->loop, cl->fd,
		       (cl->waiting ? 0 : EPOLLIN) | (want ? EPOLLOUT : 0)) == 0)
		cl->want_out = want;
}

/* Stop or start reading requests from a client (a deferred reply keeps replies in order). */
static void set_waiting(struct client *cl, bool waiting)
{
	cl->waiting = waiting;
	if (cl->fd >= 0)
		evloop_mod(cl->ctl->loop, cl->fd,
			   (waiting ? 0 : EPOLLIN) | (cl->want_out ? EPOLLOUT : 0));
}

/* Queue a message (consumed) for one client. */
static void send_msg(struct client *cl, json_t *msg)
{
	if (!msg || cl->fd < 0) {
		json_decref(msg);
		return;
	}
	int r = proto_tx_push(&cl->tx, msg);
	json_decref(msg);
	if (r == -EMSGSIZE) { /* an enormous id echoed back */
		struct control_error e;
		control_fail(&e, CERR_INTERNAL, "id",
			     "the reply would exceed the 1 MiB frame limit");
		msg = control_reply_error(NULL, &e);
		r = msg ? proto_tx_push(&cl->tx, msg) : -ENOMEM;
		json_decref(msg);
	}
	if (r) {
		drop_client(cl, strerror(-r));
		return;
	}
	flush_client(cl);
}

void control_event(struct control *c, const char *name, json_t *data)
{
	json_t *ev = control_event_msg(name, data);
	if (!c || !ev) {
		json_decref(ev);
		return;
	}
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			send_msg(&c->clients[i], json_incref(ev));
	json_decref(ev);
}

static const char *state_name(struct control *c)
{
	return vm_paused(c->vm) ? "paused" : "running";
}

static json_t *status(struct control *c)
{
	struct vm *vm = c->vm;
	return json_pack("{s:s, s:s, s:i, s:i, s:I, s:I, s:i}", "state", state_name(c), "name",
			 c->cfg->name, "pid", (int)getpid(), "vcpus", (int)vm->ncpus,
			 "memory_bytes", (json_int_t)c->cfg->mem_bytes, "uptime_ms",
			 (json_int_t)((mono_ns() - vm->start_ns) / 1000000), "protocol",
			 CONTROL_PROTOCOL_VERSION);
}

/* What a command announces to every client once its reply is queued. */
struct pending_event {
	const char *name; /* NULL: none */
	json_t *data;
};

static int cmd_pause(struct control *c, const struct control_request *req, json_t **result,
		     struct control_error *err, struct pending_event *ev)
{
	if (!c->user_paused) {
		uint64_t t0 = mono_ns();
		int r = vm_pause_vcpus(c->vm, req->args.pause.timeout_ms);
		if (r == -ETIMEDOUT)
			return control_fail(err, CERR_TIMEOUT, "args.timeout_ms",
					    "the vCPUs did not all stop within %u ms; the VM "
					    "keeps running",
					    req->args.pause.timeout_ms);
		if (r)
			return control_fail(err, CERR_STOPPING, NULL, "the VM is stopping");
		c->user_paused = true;
		log_info(TAG, "VM paused (%u vCPUs stopped in %llu us)", c->vm->ncpus,
			 (unsigned long long)((mono_ns() - t0) / 1000));
		ev->name = "paused";
	}
	*result = json_pack("{s:s}", "state", state_name(c));
	return 0;
}

static int cmd_resume(struct control *c, json_t **result, struct pending_event *ev)
{
	if (c->user_paused) {
		vm_resume_vcpus(c->vm);
		c->user_paused = false;
		c->fresh = false;
		log_info(TAG, "VM resumed");
		ev->name = "resumed";
	}
	*result = json_pack("{s:s}", "state", state_name(c));
	return 0;
}

/* Pause for a save or checkpoint, at a moment when no vCPU is delivering an exception. */
static int pause_for_save(struct control *c, unsigned timeout_ms, uint64_t *t0,
			  struct control_error *err)
{
	for (unsigned tries = 0;; tries++) {
		*t0 = mono_ns();
		int r = vm_pause_vcpus(c->vm, timeout_ms);
		if (r == -ETIMEDOUT)
			return control_fail(err, CERR_TIMEOUT, "args.timeout_ms",
					    "the vCPUs did not all stop within %u ms; nothing was "
					    "saved",
					    timeout_ms);
		if (r)
			return control_fail(err, CERR_STOPPING, NULL, "the VM is stopping");
		bool busy = false;
		for (unsigned i = 0; i < c->vm->ncpus && !busy; i++)
			busy = vcpu_event_in_flight(&c->vm->vcpus[i]);
		/* A vCPU stopped while delivering an exception: let it finish (unless a client's
		 * pause holds the VM, or it keeps happening). */
		if (!busy || c->user_paused || tries == 50)
			return 0;
		vm_resume_vcpus(c->vm);
		log_debug(TAG, "save: a vCPU was delivering an event; pausing again");
	}
}

/* Pre-copy the memory into dir while the guest runs (unless a client paused it); the save or
 * checkpoint then writes only what changed since (vmstate_mem.h). */
static int precopy(struct control *c, const char *dir, struct vmstate_mem **pre, const char *code,
		   struct control_error *err)
{
	char msg[512];
	int r = vmstate_mem_begin(c->vm, dir, !vm_paused(c->vm), pre, msg, sizeof(msg));
	if (r) {
		log_err(TAG, "%s failed: %s", code, msg);
		return control_fail(err, code, "args.dir", "%s", msg);
	}
	return 0;
}

/* The reply's "memory" and an info line: how long the guest stopped, what was written when. */
static void precopy_done(struct vmstate_mem *pre, const char *what, uint64_t paused_us,
			 json_t *result)
{
	const struct vmstate_mem_stats *st = vmstate_mem_stats(pre);
	log_info(TAG,
		 "%s: guest paused %llu us; memory: %llu KiB written live (%u rounds, %llu ms), "
		 "%llu KiB paused (%llu us)",
		 what, (unsigned long long)paused_us, (unsigned long long)(st->live_bytes >> 10),
		 st->rounds, (unsigned long long)st->live_ms,
		 (unsigned long long)(st->paused_bytes >> 10), (unsigned long long)st->paused_us);
	if (result)
		json_object_set_new(result, "memory", vmstate_mem_report(pre));
	vmstate_mem_end(pre, true);
}

/* Save the VM's state into a new directory; by default the VM then ends (Hyper-V "Save"). */
static int cmd_save(struct control *c, const struct control_request *req, json_t **result,
		    struct control_error *err, struct pending_event *ev)
{
	const char *dir = req->args.save.dir;
	uint64_t t0;
	struct vmstate_mem *pre;
	int r = precopy(c, dir, &pre, CERR_SAVE_FAILED, err);
	if (r)
		return r;
	if ((r = pause_for_save(c, req->args.save.timeout_ms, &t0, err))) {
		vmstate_mem_end(pre, false);
		return r;
	}
	char msg[512];
	r = vmstate_save(c->vm, dir, msg, sizeof(msg));
	uint64_t paused_us = (mono_ns() - t0) / 1000;
	if (r) {
		vm_resume_vcpus(c->vm);
		vmstate_mem_end(pre, false);
		log_err(TAG, "save failed: %s", msg);
		return control_fail(err, CERR_SAVE_FAILED, "args.dir", "%s", msg);
	}
	bool stop = req->args.save.stop;
	if (stop) /* the pause is kept: the vCPUs never run again */
		c->stop(c->opaque, STOP_SAVED);
	else
		vm_resume_vcpus(c->vm);
	*result = json_pack("{s:s,s:I,s:b}", "dir", dir, "paused_us", (json_int_t)paused_us,
			    "stopped", stop);
	precopy_done(pre, "saved", paused_us, *result);
	ev->name = "saved";
	ev->data = json_pack("{s:s,s:b}", "dir", dir, "stopped", stop);
	return 0;
}

/* A checkpoint: optional memory/device state, then every writable disk moves to a new overlay. */
static int cmd_checkpoint(struct control *c, const struct control_request *req, json_t **result,
			  struct control_error *err, struct pending_event *ev)
{
	const char *dir = req->args.checkpoint.dir;
	json_t *overlays = req->args.checkpoint.overlays, *none = NULL, *disks = NULL;
	if (!overlays)
		overlays = none = json_array();
	uint64_t t0;
	struct vmstate_mem *pre = NULL;
	int r = dir ? precopy(c, dir, &pre, CERR_CHECKPOINT_FAILED, err) : 0;
	if (!r && (r = pause_for_save(c, req->args.checkpoint.timeout_ms, &t0, err)))
		vmstate_mem_end(pre, false);
	if (r) {
		json_decref(none);
		return r;
	}
	char msg[512];
	r = vmstate_checkpoint(c->vm, dir, overlays, &disks, msg, sizeof(msg));
	uint64_t paused_us = (mono_ns() - t0) / 1000;
	vm_resume_vcpus(c->vm);
	json_decref(none);
	if (r) {
		vmstate_mem_end(pre, false);
		json_decref(disks);
		log_err(TAG, "checkpoint failed: %s", msg);
		return control_fail(err, CERR_CHECKPOINT_FAILED,
				    strstr(msg, "overlay") || strstr(msg, "disk") ? "args.overlays"
										  : "args.dir",
				    "%s", msg);
	}
	log_info(TAG, "checkpoint taken (guest paused %llu us)", (unsigned long long)paused_us);
	*result = json_pack("{s:I,s:o}", "paused_us", (json_int_t)paused_us, "disks", disks);
	if (pre)
		precopy_done(pre, "checkpoint", paused_us, *result);
	if (dir)
		json_object_set_new(*result, "dir", json_string(dir));
	ev->name = "checkpoint";
	ev->data = json_pack("{s:O}", "disks", json_object_get(*result, "disks"));
	return 0;
}

/* ---- the checkpoint tree (checkpoint.c does the work) ---- */

static int ckpt_pause(void *opaque, char *msg, size_t msglen)
{
	struct control *c = opaque;
	struct control_error err;
	uint64_t t0;
	int r = pause_for_save(c, c->ckpt_timeout_ms, &t0, &err);
	if (r)
		snprintf(msg, msglen, "%s", err.message);
	return r;
}

static void ckpt_resume(void *opaque)
{
	struct control *c = opaque;
	vm_resume_vcpus(c->vm);
}

static int ckpt_progress_log(void *opaque, const char *what, uint64_t done, uint64_t total)
{
	(void)opaque;
	log_info(TAG, "merging %s: %.1f of %.1f MiB", what, (double)done / (1 << 20),
		 (double)total / (1 << 20));
	return 0;
}

/* ---- checkpoint-delete on a worker thread ---- */

#define CONTROL_DEFERRED 1 /* run_cmd: the reply comes later */

static void on_client(void *opaque, int fd, uint32_t events);

static void job_notify(struct control *c)
{
	uint64_t one = 1;
	if (write(c->job.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn(TAG, "eventfd: %s", strerror(errno));
}

static int job_pause(void *opaque, char *msg, size_t msglen)
{
	struct control *c = opaque;
	int r = vm_pause_vcpus(c->vm, c->job.timeout_ms);
	if (r)
		snprintf(msg, msglen, "%s",
			 r == -ETIMEDOUT ? "the vCPUs did not all stop in time"
					 : "the VM is stopping");
	return r;
}

static int job_progress(void *opaque, const char *what, uint64_t done, uint64_t total)
{
	struct control *c = opaque;
	ckpt_progress_log(opaque, what, done, total);
	pthread_mutex_lock(&c->job.lock);
	snprintf(c->job.what, sizeof(c->job.what), "%s", what);
	c->job.done_bytes = done;
	c->job.total_bytes = total;
	c->job.progressed = true;
	bool cancel = c->job.cancel;
	pthread_mutex_unlock(&c->job.lock);
	job_notify(c);
	return cancel;
}

static void *job_main(void *arg)
{
	struct control *c = arg;
	const struct ckpt_hooks h = {job_pause, ckpt_resume, job_progress, c};
	json_t *result = NULL;
	char msg[600] = "";
	int r = ckpt_delete(c->ckpt, &h, c->job.ref, &result, msg, sizeof(msg));
	pthread_mutex_lock(&c->job.lock);
	c->job.r = r;
	c->job.result = result;
	snprintf(c->job.msg, sizeof(c->job.msg), "%s", msg);
	c->job.done = true;
	pthread_mutex_unlock(&c->job.lock);
	job_notify(c);
	return NULL;
}

/* Main thread: pass progress on; once the job ended, join it, reply and announce. */
static void job_poll(struct control *c, bool final)
{
	struct ckpt_job *j = &c->job;
	if (!j->running)
		return;
	pthread_mutex_lock(&j->lock);
	bool done = j->done, progressed = j->progressed;
	json_t *pev = progressed ? json_pack("{s:s,s:I,s:I}", "image", j->what, "done_bytes",
					     (json_int_t)j->done_bytes, "total_bytes",
					     (json_int_t)j->total_bytes)
				 : NULL;
	j->progressed = false;
	pthread_mutex_unlock(&j->lock);
	if (pev)
		control_event(c, "checkpoint-progress", pev);
	if (!done && !final)
		return;
	if (!done) { /* the VMM is stopping: end the merge where it is */
		pthread_mutex_lock(&j->lock);
		j->cancel = true;
		pthread_mutex_unlock(&j->lock);
	}
	pthread_join(j->thread, NULL);
	j->running = false;
	struct client *cl = NULL;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0 && c->clients[i].no == j->client_no)
			cl = &c->clients[i];
	struct control_error err;
	json_t *reply;
	if (j->r) {
		control_fail(&err,
			     j->r == -ENOENT ? CERR_NO_SUCH_CHECKPOINT : CERR_CHECKPOINT_FAILED,
			     j->r == -ENOENT ? "args.checkpoint" : NULL, "%s", j->msg);
		reply = control_reply_error(j->id, &err);
	} else {
		reply = control_reply_ok(j->id, json_incref(j->result));
	}
	json_decref(j->id);
	j->id = NULL;
	if (cl) {
		send_msg(cl, reply);
		set_waiting(cl, false);
	} else {
		json_decref(reply);
	}
	if (!j->r)
		control_event(c, "checkpoint-deleted", j->result);
	else
		json_decref(j->result);
	j->result = NULL;
	/* Requests the client sent meanwhile are waiting in its buffer. */
	if (cl && cl->fd >= 0 && !final)
		on_client(cl, cl->fd, 0);
}

static void on_job(void *opaque, int fd, uint32_t events)
{
	(void)events;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn(TAG, "eventfd: %s", strerror(errno));
	job_poll(opaque, false);
}

static int start_delete(struct control *c, struct client *cl, const struct control_request *req,
			struct control_error *err)
{
	struct ckpt_job *j = &c->job;
	if (!ckpt_find(c->ckpt, req->args.ckpt.name))
		return control_fail(err, CERR_NO_SUCH_CHECKPOINT, "args.checkpoint",
				    "no checkpoint '%s'", req->args.ckpt.name);
	snprintf(j->ref, sizeof(j->ref), "%s", req->args.ckpt.name);
	j->timeout_ms = req->args.ckpt.timeout_ms;
	j->client_no = cl->no;
	j->id = json_incref(req->id);
	j->done = j->cancel = j->progressed = false;
	j->result = NULL;
	int r = pthread_create(&j->thread, NULL, job_main, c);
	if (r) {
		json_decref(j->id);
		j->id = NULL;
		return control_fail(err, CERR_INTERNAL, NULL, "cannot start a thread: %s",
				    strerror(r));
	}
	j->running = true;
	set_waiting(cl, true);
	return CONTROL_DEFERRED;
}

static int cmd_ckpt(struct control *c, struct client *cl, const struct control_request *req,
		    json_t **result, struct control_error *err, struct pending_event *ev)
{
	if (!c->ckpt)
		return control_fail(
		    err, CERR_NO_CHECKPOINT_DIR, "cmd",
		    "this VM has no checkpoint tree (start it with --checkpoint-dir)");
	if (req->cmd == CMD_CKPT_LIST) {
		*result = ckpt_list(c->ckpt);
		return 0;
	}
	if (req->cmd == CMD_CKPT_DELETE)
		return start_delete(c, cl, req, err);
	const struct ckpt_hooks h = {ckpt_pause, ckpt_resume, ckpt_progress_log, c};
	const char *name = req->args.ckpt.name;
	char msg[600];
	int r;
	c->ckpt_timeout_ms = req->args.ckpt.timeout_ms;
	if (req->cmd == CMD_CKPT_CREATE) {
		r = ckpt_create(c->ckpt, &h, name, req->args.ckpt.disk_only, result, msg,
				sizeof(msg));
		ev->name = "checkpoint-created";
	} else {
		r = ckpt_apply(c->ckpt, &h, name, c->fresh, result, msg, sizeof(msg));
		ev->name = "checkpoint-applied";
	}
	if (r) {
		ev->name = NULL;
		if (r == -EIO && req->cmd == CMD_CKPT_APPLY) /* the VM was half restored */
			c->stop(c->opaque, STOP_VMM_ERROR);
		return control_fail(
		    err,
		    r == -ENOENT   ? CERR_NO_SUCH_CHECKPOINT
		    : r == -EEXIST ? CERR_CHECKPOINT_EXISTS
				   : CERR_CHECKPOINT_FAILED,
		    r == -ENOENT || r == -EEXIST
			? (req->cmd == CMD_CKPT_CREATE ? "args.name" : "args.checkpoint")
			: NULL,
		    "%s", msg);
	}
	ev->data = json_deep_copy(*result);
	return 0;
}

static int run_cmd(struct control *c, struct client *cl, const struct control_request *req,
		   json_t **result, struct control_error *err, struct pending_event *ev)
{
	if (!c->vm)
		return control_fail(err, CERR_NOT_RUNNING, NULL, "no VM is running");
	bool disks = req->cmd == CMD_SAVE || req->cmd == CMD_CHECKPOINT ||
		     req->cmd == CMD_CKPT_CREATE || req->cmd == CMD_CKPT_LIST ||
		     req->cmd == CMD_CKPT_APPLY || req->cmd == CMD_CKPT_DELETE;
	if (disks && c->job.running)
		return control_fail(err, CERR_BUSY, "cmd",
				    "a checkpoint is being deleted (its disk layers are merging); "
				    "try again when it is done");
	switch (req->cmd) {
	case CMD_QUERY_STATUS:
		*result = status(c);
		return 0;
	case CMD_QUERY_STATS:
		*result = vm_stats(c->vm);
		return *result ? 0 : control_fail(err, CERR_INTERNAL, NULL, "out of memory");
	case CMD_PAUSE:
		return cmd_pause(c, req, result, err, ev);
	case CMD_RESUME:
		return cmd_resume(c, result, ev);
	case CMD_POWERDOWN: {
		bool listening = pm_power_button(&c->vm->pm);
		log_info(TAG, "ACPI power button pressed%s",
			 listening ? ""
				   : " (the guest has not enabled it: the press stays latched)");
		*result = json_pack("{s:b}", "guest_enabled", listening);
		ev->name = "powerdown-requested";
		ev->data = json_pack("{s:b}", "guest_enabled", listening);
		return 0;
	}
	case CMD_SAVE:
		return cmd_save(c, req, result, err, ev);
	case CMD_CHECKPOINT:
		return cmd_checkpoint(c, req, result, err, ev);
	case CMD_CKPT_CREATE:
	case CMD_CKPT_LIST:
	case CMD_CKPT_APPLY:
	case CMD_CKPT_DELETE:
		return cmd_ckpt(c, cl, req, result, err, ev);
	case CMD_QUIT:
		log_info(TAG, "stopping the VM: quit command on the control socket");
		*result = json_object();
		c->stop(c->opaque, STOP_QUIT);
		return 0;
	}
	return control_fail(err, CERR_INTERNAL, NULL, "unhandled command");
}

static void handle(struct client *cl, json_t *msg, const int *fds, unsigned nfds)
{
	struct control *c = cl->ctl;
	struct control_request req;
	struct control_error err;
	json_t *result = NULL;
	struct pending_event ev = {NULL, NULL};
	int r = control_req_parse(msg, nfds, &req, &err);
	for (unsigned i = 0; i < nfds; i++) /* no command keeps descriptors yet */
		close(fds[i]);
	json_t *id = json_incref(req.id);
	if (r == 0) {
		log_debug(TAG, "client %u: %s", cl->no, control_cmd_name(req.cmd));
		r = run_cmd(c, cl, &req, &result, &err, &ev);
	}
	if (r == CONTROL_DEFERRED) { /* the job replies when it ends */
		json_decref(id);
		return;
	}
	if (r == 0 && !result)
		r = control_fail(&err, CERR_INTERNAL, NULL, "out of memory");
	if (r)
		log_debug(TAG, "client %u: error %s%s%s: %s", cl->no, err.code,
			  err.has_field ? " field " : "", err.has_field ? err.field : "",
			  err.message);
	/* The reply goes to the requester before the quit takes effect: the loop stops only after
	 * this callback, and control_close() drains the queue. */
	send_msg(cl, r ? control_reply_error(id, &err) : control_reply_ok(id, result));
	json_decref(id);
	if (ev.name) /* after the reply, so the requester sees its answer first */
		control_event(c, ev.name, ev.data);
	else
		json_decref(ev.data);
}

static void on_client(void *opaque, int fd, uint32_t events)
{
	struct client *cl = opaque;
	if (events & EPOLLOUT)
		flush_client(cl);
	for (unsigned n = 0; n < MSGS_PER_WAKEUP && cl->fd == fd && !cl->waiting; n++) {
		json_t *msg = NULL;
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		int r = proto_recv(fd, &cl->rx, &msg, fds, &nfds);
		if (r == PROTO_NEED_MORE)
			break;
		if (r < 0) {
			if (r == -EPIPE) {
				drop_client(cl, "closed by the client");
				break;
			}
			log_warn(TAG, "client %u: %s; closing the connection", cl->no,
				 proto_strerror(r));
			if (r == -EBADMSG || r == -EPROTO) { /* the frame was read whole: say why */
				struct control_error e;
				control_fail(&e, CERR_BAD_FRAME, NULL, "%s", proto_strerror(r));
				json_t *m = control_reply_error(NULL, &e);
				if (m && proto_tx_push(&cl->tx, m) == 0)
					proto_tx_flush(fd, &cl->tx);
				json_decref(m);
			}
			drop_client(cl, proto_strerror(r));
			break;
		}
		handle(cl, msg, fds, nfds);
		json_decref(msg);
	}
}

static void on_accept(void *opaque, int fd, uint32_t events)
{
	struct control *c = opaque;
	(void)events;
	int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (cfd < 0) {
		if (errno != EAGAIN && errno != EINTR)
			log_warn(TAG, "accept: %s", strerror(errno));
		return;
	}
	struct client *cl = NULL;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS && !cl; i++)
		if (c->clients[i].fd < 0)
			cl = &c->clients[i];
	if (!cl) {
		struct control_error e;
		control_fail(&e, CERR_TOO_MANY_CLIENTS, NULL,
			     "%d clients are connected already; try again later",
			     CONTROL_MAX_CLIENTS);
		log_warn(TAG, "refusing a client: %d are connected already", CONTROL_MAX_CLIENTS);
		json_t *m = control_reply_error(NULL, &e);
		if (m)
			proto_send(cfd, m, NULL, 0); /* a fresh socket has room for one frame */
		json_decref(m);
		close(cfd);
		return;
	}
	cl->fd = cfd;
	cl->no = ++c->next_no;
	cl->want_out = false;
	proto_rx_init(&cl->rx);
	proto_tx_init(&cl->tx);
	int r = evloop_add(c->loop, cfd, EPOLLIN, on_client, cl);
	if (r) {
		log_warn(TAG, "cannot watch a new client: %s", strerror(-r));
		close(cfd);
		cl->fd = -1;
		return;
	}
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
		log_debug(TAG, "client %u: connected (pid %d, uid %u)", cl->no, (int)cred.pid,
			  (unsigned)cred.uid);
}

/* Bind path, replacing only a socket nobody listens on any more. */
static int listen_unix(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return -EEXIST;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int live = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		if (probe >= 0)
			close(probe);
		if (live) {
			close(fd);
			return -EADDRINUSE;
		}
		unlink(path); /* stale: left by a VMM that did not exit cleanly */
	}
	mode_t old = umask(0177); /* the socket file is created 0600 */
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r == 0 && chmod(path, 0600) < 0)
		r = -1;
	if (r < 0 || listen(fd, CONTROL_MAX_CLIENTS) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

int control_open(struct control **out, const char *path, struct evloop *loop,
		 const struct vm_config *cfg, control_stop_fn stop, void *opaque)
{
	struct control *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->cfg = cfg;
	c->stop = stop;
	c->opaque = opaque;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		c->clients[i].fd = -1;
		c->clients[i].ctl = c;
	}
	c->path = strdup(path);
	c->lfd = c->path ? listen_unix(path) : -ENOMEM;
	if (c->lfd < 0) {
		int r = c->lfd;
		log_err(TAG, "cannot listen on '%s': %s", path,
			r == -EEXIST	   ? "the file exists and is not a socket"
			: r == -EADDRINUSE ? "another process is serving this socket"
					   : strerror(-r));
		free(c->path);
		free(c);
		return r;
	}
	pthread_mutex_init(&c->job.lock, NULL);
	c->job.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	int r = c->job.efd < 0 ? -errno : evloop_add(loop, c->lfd, EPOLLIN, on_accept, c);
	if (!r && (r = evloop_add(loop, c->job.efd, EPOLLIN, on_job, c)))
		evloop_del(loop, c->lfd);
	if (r) {
		log_err(TAG, "cannot watch the control socket: %s", strerror(-r));
		if (c->job.efd >= 0)
			close(c->job.efd);
		pthread_mutex_destroy(&c->job.lock);
		close(c->lfd);
		unlink(path);
		free(c->path);
		free(c);
		return r;
	}
	log_info(TAG, "control socket on %s", path);
	*out = c;
	return 0;
}

int control_attach(struct control *c, struct vm *vm)
{
	if (!c)
		return 0;
	job_poll(c, true); /* a merge still running ends here (the VM is gone or new) */
	c->vm = vm;
	c->user_paused = false; /* a new VM run starts unpaused */
	c->fresh = false;
	ckpt_close(c->ckpt);
	c->ckpt = NULL;
	if (vm && c->cfg->checkpoint_dir) {
		char msg[600];
		int r = ckpt_open(&c->ckpt, c->cfg->checkpoint_dir, vm, msg, sizeof(msg));
		if (r) {
			log_err(TAG, "--checkpoint-dir '%s': %s", c->cfg->checkpoint_dir, msg);
			return r;
		}
	}
	return 0;
}

void control_hold_paused(struct control *c, bool fresh)
{
	if (!c)
		return;
	c->user_paused = true;
	c->fresh = fresh;
}

void control_close(struct control *c)
{
	if (!c)
		return;
	job_poll(c, true);
	uint64_t deadline = mono_ns() + (uint64_t)CONTROL_DRAIN_MS * 1000000ULL;
	for (unsigned i = 0; i < CONTROL_MAX_CLIENTS; i++) {
		struct client *cl = &c->clients[i];
		while (cl->fd >= 0 && proto_tx_flush(cl->fd, &cl->tx) == 1) {
			uint64_t now = mono_ns();
			struct pollfd p = {.fd = cl->fd, .events = POLLOUT};
			if (now >= deadline ||
			    poll(&p, 1, (int)((deadline - now) / 1000000 + 1)) <= 0)
				break;
		}
		drop_client(cl, "VMM exiting");
	}
	evloop_del(c->loop, c->lfd);
	close(c->lfd);
	evloop_del(c->loop, c->job.efd);
	close(c->job.efd);
	pthread_mutex_destroy(&c->job.lock);
	ckpt_close(c->ckpt);
	unlink(c->path);
	free(c->path);
	free(c);
}
