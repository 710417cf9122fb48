/* Checkpoints of berthd's VMs as operations: through the VMM of a running VM, or through a
 * maintenance VMM started paused for a VM that is off or saved (docs/checkpoints.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/api.h"
#include "daemon/ckpttree.h"
#include "daemon/ctlclient.h"
#include "daemon/vmctl_int.h"

#define TAG "checkpoint"
#define CREATE_TIMEOUT_MS 300000  /* writing the guest's RAM */
#define APPLY_TIMEOUT_MS 120000	  /* new overlays, remapping RAM */
#define DELETE_TIMEOUT_MS 3600000 /* merging disk layers */
#define SAVE_TIMEOUT_MS 300000

static const char *const OP_KIND[] = {"checkpoint-create", "checkpoint-apply", "checkpoint-delete"};
static const char *const VMM_CMD[] = {"checkpoint-create", "checkpoint-apply", "checkpoint-delete"};
static const char *const EVENT[] = {"checkpoint-created", "checkpoint-applied",
				    "checkpoint-deleted"};

struct ckpt_job {
	struct vmctl *vc;
	struct vmrt *rt;
	enum ckpt_op kind;
	char arg[CKPT_NAME_MAX + 1]; /* the new name, or the checkpoint's id */
	char target_name[CKPT_NAME_MAX + 1];
	bool disk_only; /* create: no memory; apply: the checkpoint is disk-only */
	char state[16]; /* the VM's when accepted */
	char op[OP_ID_LEN + 1];
	json_t *actor;
	int pct_base, pct_span; /* how checkpoint-progress maps onto the operation's progress */
};

static bool is_live(const char *state)
{
	return !strcmp(state, "running") || !strcmp(state, "paused");
}

static bool is_at_rest(const char *state)
{
	return !strcmp(state, "off") || !strcmp(state, "saved") || !strcmp(state, "crashed");
}

/* The checkpoints now: from the VMM of a live VM, else (or if it does not answer) tree.json. */
static int current_list(struct vmctl *vc, const char *uuid, const char *state, json_t **list,
			char *err, size_t errlen)
{
	struct vm_paths p;
	json_t *res = NULL, *tree = NULL;
	int r;

	*list = NULL;
	if ((r = vc_paths(vc, uuid, &p))) {
		snprintf(err, errlen, "the run directory's path is too long");
		return r;
	}
	if (is_live(state) &&
	    !ctl_call_path(p.control, "checkpoint-list", NULL, 10000, &res, err, errlen)) {
		*list = ckpt_api_list(res);
		json_decref(res);
		return *list ? 0 : -ENOMEM;
	}
	r = ckpt_tree_load(p.checkpoints, &tree, err, errlen);
	if (r == -ENOENT) {
		*list = json_pack("{s:[], s:n}", "checkpoints", "current");
		return *list ? 0 : -ENOMEM;
	}
	if (r)
		return r;
	json_t *vl = ckpt_tree_list(tree);
	*list = vl ? ckpt_api_list(vl) : NULL;
	json_decref(vl);
	json_decref(tree);
	return *list ? 0 : -ENOMEM;
}

/* The VM's uuid, name and state (lock taken here). */
static int vm_brief(struct vmctl *vc, const char *id, char uuid[37], char name[64], char state[16],
		    struct vmctl_err *e)
{
	struct db_vm vm = {0};
	pthread_mutex_lock(&vc->lock);
	int ret = vc_find_row(vc, id, &vm);
	if (ret == -ENOENT)
		ret = vc_refuse(e, 404, "not-found", "no VM with the name or UUID '%s'", id);
	else if (ret)
		ret = vc_refuse(e, 500, "internal", "inventory error: %s", strerror(-ret));
	else {
		struct vmrt *rt = vc_rt(vc, &vm);
		snprintf(uuid, 37, "%s", vm.uuid);
		snprintf(name, 64, "%s", vm.name);
		/* a VM under an operation: its runtime knows better than the row */
		snprintf(state, 16, "%s", rt ? rt->state : vm.state);
	}
	pthread_mutex_unlock(&vc->lock);
	db_vm_clear(&vm);
	return ret;
}

int vmctl_ckpt_list(struct vmctl *vc, const char *id, json_t **list, char uuid[37],
		    struct vmctl_err *e)
{
	char name[64], state[16], err[512];
	int ret = vm_brief(vc, id, uuid, name, state, e);
	if (ret)
		return ret;
	if ((ret = current_list(vc, uuid, state, list, err, sizeof(err))))
		return vc_refuse(e, 500, "internal", "the checkpoints of VM '%s': %s", name, err);
	return 0;
}

/* Mirror the tree into the inventory and, for a change, add its audit event in the same
 * transaction. Lock held. */
static void record(struct vmctl *vc, const char *uuid, const json_t *list, const char *event,
		   json_t *detail)
{
	char now[32];
	int ret = db_begin(vc->db, true);
	if (!ret) {
		api_now(now);
		if ((ret = db_ckpt_replace(vc->db, uuid, list)) ||
		    (event && (ret = db_event_add(vc->db, now, uuid, event, detail))))
			db_rollback(vc->db);
		else
			ret = db_commit(vc->db);
	}
	if (ret)
		log_err(TAG, "VM %s: recording its checkpoints: %s", uuid, strerror(-ret));
}

struct uuids {
	char (*v)[DB_UUID_LEN + 1];
	size_t n;
};

static int add_uuid(const struct db_vm *vm, void *arg)
{
	struct uuids *us = arg;
	void *nv = realloc(us->v, (us->n + 1) * sizeof(*us->v));
	if (!nv)
		return -ENOMEM;
	us->v = nv;
	snprintf(us->v[us->n++], DB_UUID_LEN + 1, "%s", vm->uuid);
	return 0;
}

void vc_ckpt_reconcile(struct vmctl *vc)
{
	struct uuids u = {0};
	pthread_mutex_lock(&vc->lock);
	int ret = db_begin(vc->db, false);
	if (!ret) {
		ret = db_vm_list(vc->db, NULL, add_uuid, &u);
		db_rollback(vc->db);
	}
	pthread_mutex_unlock(&vc->lock);
	for (size_t i = 0; !ret && i < u.n; i++) {
		char err[512];
		json_t *list = NULL;
		/* the tree file, also for a running VM: it is replaced atomically */
		if (current_list(vc, u.v[i], "off", &list, err, sizeof(err))) {
			log_warn(TAG, "VM %s: its checkpoint tree is not readable: %s", u.v[i],
				 err);
			continue;
		}
		pthread_mutex_lock(&vc->lock);
		record(vc, u.v[i], list, NULL, NULL);
		pthread_mutex_unlock(&vc->lock);
		json_decref(list);
	}
	free(u.v);
}

/* checkpoint-progress events of a delete: the operation's progress follows the merge. */
static void on_vmm_event(void *arg, const char *event, json_t *data)
{
	struct ckpt_job *job = arg;
	if (strcmp(event, "checkpoint-progress"))
		return;
	json_int_t done = json_integer_value(json_object_get(data, "done_bytes"));
	json_int_t total = json_integer_value(json_object_get(data, "total_bytes"));
	if (total > 0 && done >= 0 && done <= total)
		ops_progress(job->vc->ops, job->op,
			     job->pct_base +
				 (int)((double)job->pct_span * (double)done / (double)total));
}

static json_t *vmm_args(const struct ckpt_job *job, bool vm_off)
{
	if (job->kind == CKPT_CREATE)
		/* a VM that is off has no memory to keep: its checkpoint is disk-only */
		return json_pack("{s:s, s:b}", "name", job->arg, "disk_only",
				 job->disk_only || vm_off);
	return json_pack("{s:s}", "checkpoint", job->arg);
}

static int vmm_cmd(struct ckpt_job *job, int fd, bool vm_off, json_t **res, char *err,
		   size_t errlen)
{
	static const int timeout[] = {CREATE_TIMEOUT_MS, APPLY_TIMEOUT_MS, DELETE_TIMEOUT_MS};
	json_t *args = vmm_args(job, vm_off);
	int r = args ? ctl_call_ev(fd, VMM_CMD[job->kind], args, timeout[job->kind], on_vmm_event,
				   job, res, err, errlen)
		     : -ENOMEM;
	json_decref(args);
	if (r && r != -EREMOTEIO)
		snprintf(err, errlen, "%s: %s", VMM_CMD[job->kind], strerror(-r));
	return r;
}

/* A running or paused VM: its own VMM does it; apply keeps it running or paused. */
static int run_live(struct ckpt_job *job, json_t **res, char *err, size_t errlen)
{
	struct vm_paths p;
	int fd, r;
	if ((r = vc_paths(job->vc, job->rt->uuid, &p)))
		return r;
	if ((r = ctl_connect(p.control, &fd))) {
		snprintf(err, errlen, "connecting to %s: %s", p.control, strerror(-r));
		return r;
	}
	job->pct_base = 5;
	job->pct_span = 90;
	r = vmm_cmd(job, fd, false, res, err, errlen);
	ctl_close(fd);
	return r;
}

/* Save the maintenance VMM's VM as the VM's saved state (replacing the one it came from). */
static int save_as_saved(struct ckpt_job *job, struct vc_maint *m, const struct vm_paths *p,
			 char *err, size_t errlen)
{
	char fresh[VMMCFG_PATH_MAX + 8], old[VMMCFG_PATH_MAX + 8];
	json_t *res = NULL;
	snprintf(fresh, sizeof(fresh), "%s.new", p->saved);
	snprintf(old, sizeof(old), "%s.old", p->saved);
	vc_rm_tree(fresh);
	vc_rm_tree(old);
	json_t *args = json_pack("{s:s, s:b}", "dir", fresh, "stop", 1);
	int r = ctl_call(m->fd, "save", args, SAVE_TIMEOUT_MS, &res, err, errlen);
	json_decref(args);
	json_decref(res);
	if (r) {
		if (r != -EREMOTEIO)
			snprintf(err, errlen, "save: %s", strerror(-r));
		vc_maint_end(m, true);
		vc_rm_tree(fresh);
		return r;
	}
	vc_maint_end(m, false); /* it exits once saved */
	if ((rename(p->saved, old) && errno != ENOENT) || rename(fresh, p->saved)) {
		r = -errno;
		snprintf(err, errlen, "replacing %.600s: %s", p->saved, strerror(errno));
		return r;
	}
	vc_rm_tree(old);
	(void)job;
	return 0;
}

/*
 * A VM that is off or saved: a maintenance VMM started paused does it, then is saved again (a
 * saved VM, or any VM a standard checkpoint was applied to: Hyper-V leaves it saved) or quits.
 * *new_state: what the VM is afterwards.
 */
static int run_at_rest(struct ckpt_job *job, json_t **res, const char **new_state, char *err,
		       size_t errlen)
{
	struct vmctl *vc = job->vc;
	bool saved = !strcmp(job->state, "saved");
	bool disk_apply = job->kind == CKPT_APPLY && job->disk_only;
	struct vc_maint m;
	struct vm_paths p;
	int r;

	*new_state = job->state;
	if ((r = vc_paths(vc, job->rt->uuid, &p)))
		return r;
	/* a disk-only checkpoint takes the VM back to its disks alone: it boots from them, so the
	 * VMM starts from the configuration (a saved state would not match them) */
	if ((r = vc_spawn_paused(vc, job->rt, saved && !disk_apply, &m, err, errlen)))
		return r;
	ops_progress(vc->ops, job->op, 20);
	job->pct_base = 20;
	job->pct_span = 60;
	if ((r = vmm_cmd(job, m.fd, !saved, res, err, errlen))) {
		vc_maint_end(&m, true);
		return r;
	}
	ops_progress(vc->ops, job->op, 80);
	if (job->kind == CKPT_APPLY && !disk_apply) {
		r = save_as_saved(job, &m, &p, err, errlen);
		if (!r)
			*new_state = "saved";
	} else if (saved && !disk_apply) {
		r = save_as_saved(job, &m, &p, err, errlen);
	} else {
		vc_maint_end(&m, true);
		if (disk_apply) {
			vc_rm_tree(p.saved); /* the VM boots on the checkpoint's disks */
			*new_state = "off";
		}
	}
	return r;
}

static void *ckpt_thread(void *arg)
{
	struct ckpt_job *job = arg;
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	const char *new_state = job->state;
	json_t *res = NULL, *list = NULL, *result = NULL, *entry = NULL;
	char err[768] = "", lerr[256];
	int r;

	ops_running(vc->ops, job->op);
	if (is_live(job->state))
		r = run_live(job, &res, err, sizeof(err));
	else
		r = run_at_rest(job, &res, &new_state, err, sizeof(err));
	if (current_list(vc, rt->uuid, "off", &list, lerr, sizeof(lerr)))
		log_warn(TAG, "VM %s: reading its checkpoint tree: %s", rt->name, lerr);
	const char *id = json_string_value(json_object_get(res, "id"));
	entry = id ? json_deep_copy(ckpt_api_find(list, id)) : NULL;
	if (!r) {
		if (!entry || job->kind == CKPT_DELETE)
			entry = json_pack("{s:s?, s:O?}", "id", id, "name",
					  json_object_get(res, "name"));
		result = json_pack("{s:O}", "checkpoint", entry);
		if (result && job->kind == CKPT_DELETE)
			json_object_set(result, "merged_bytes",
					json_object_get(res, "merged_bytes"));
		if (result && job->kind == CKPT_APPLY)
			json_object_set_new(result, "state", json_string(new_state));
	}
	pthread_mutex_lock(&vc->lock);
	if (list) {
		json_t *detail =
		    r ? NULL
		      : json_pack("{s:O, s:s, s:O, s:s}", "actor", job->actor, "operation", job->op,
				  "checkpoint", entry, "vm_state", new_state);
		record(vc, rt->uuid, list, r ? NULL : EVENT[job->kind], detail);
		json_decref(detail);
	}
	if (strcmp(new_state, job->state) || (!r && job->kind == CKPT_APPLY && !is_live(new_state)))
		vc_set_state(vc, rt, new_state, "checkpoint-applied", false, NULL);
	rt->op[0] = '\0';
	pthread_cond_broadcast(&vc->cond);
	pthread_mutex_unlock(&vc->lock);
	if (r) {
		log_warn(TAG, "VM %s: %s failed: %s", rt->name, OP_KIND[job->kind], err);
		ops_fail(vc->ops, job->op, "action-failed", "%s", err[0] ? err : strerror(-r));
	} else {
		log_info(TAG, "VM %s: %s %s done", rt->name, OP_KIND[job->kind], job->arg);
		ops_set_result(vc->ops, job->op, result);
		result = NULL;
		ops_succeed(vc->ops, job->op);
	}
	json_decref(result);
	json_decref(entry);
	json_decref(list);
	json_decref(res);
	json_decref(job->actor);
	pthread_mutex_lock(&vc->lock);
	vc->threads--;
	pthread_cond_broadcast(&vc->cond);
	pthread_mutex_unlock(&vc->lock);
	free(job);
	return NULL;
}

/* Check the request against the checkpoints there are; fills the job's target. */
static int check_target(struct ckpt_job *job, const json_t *list, const char *vm_name,
			struct vmctl_err *e)
{
	if (job->kind == CKPT_CREATE) {
		if (ckpt_api_find(list, job->arg)) {
			int r = vc_refuse(e, 409, "conflict",
					  "VM '%s' has a checkpoint named '%s' already", vm_name,
					  job->arg);
			e->field = "name";
			return r;
		}
		return 0;
	}
	json_t *c = ckpt_api_find(list, job->arg);
	if (!c) {
		int r = vc_refuse(e, 404, "not-found", "VM '%s' has no checkpoint '%s'", vm_name,
				  job->arg);
		e->field = "checkpoint";
		return r;
	}
	snprintf(job->target_name, sizeof(job->target_name), "%s",
		 json_string_value(json_object_get(c, "name")));
	snprintf(job->arg, sizeof(job->arg), "%s", json_string_value(json_object_get(c, "id")));
	job->disk_only = !strcmp(json_string_value(json_object_get(c, "kind")), "disk-only");
	if (job->kind == CKPT_APPLY && job->disk_only && is_live(job->state))
		return vc_refuse(e, 409, "invalid-state",
				 "VM '%s' is %s: checkpoint '%s' is disk-only, so it applies to "
				 "the VM when it is off or saved",
				 vm_name, job->state, job->target_name);
	return 0;
}

int vmctl_ckpt_op(struct vmctl *vc, const char *id, enum ckpt_op kind, const char *arg,
		  bool disk_only, json_t *actor, char op_id[OP_ID_LEN + 1], struct vmctl_err *e)
{
	struct ckpt_job *job = calloc(1, sizeof(*job));
	char uuid[37], name[64], err[512];
	json_t *list = NULL;
	int ret;

	if (!job)
		return vc_refuse(e, 500, "internal", "out of memory");
	job->vc = vc;
	job->kind = kind;
	job->disk_only = disk_only;
	snprintf(job->arg, sizeof(job->arg), "%s", arg);
	if ((ret = vm_brief(vc, id, uuid, name, job->state, e)))
		goto out;
	if (!is_live(job->state) && !is_at_rest(job->state)) {
		ret = vc_refuse(e, 409, "invalid-state",
				"VM '%s' is %s: %s needs it running, paused, off or saved", name,
				job->state, OP_KIND[kind]);
		goto out;
	}
	if ((ret = current_list(vc, uuid, job->state, &list, err, sizeof(err)))) {
		ret = vc_refuse(e, 500, "internal", "the checkpoints of VM '%s': %s", name, err);
		goto out;
	}
	if ((ret = check_target(job, list, name, e)))
		goto out;

	pthread_mutex_lock(&vc->lock);
	struct db_vm vm = {0};
	struct vmrt *rt = NULL;
	if (vc->stopping)
		ret = vc_refuse(e, 500, "internal", "berthd is stopping");
	else if ((ret = vc_find_row(vc, uuid, &vm)))
		ret = vc_refuse(e, 404, "not-found", "no VM with the name or UUID '%s'", id);
	else if (!(rt = vc_rt(vc, &vm)))
		ret = vc_refuse(e, 500, "internal", "out of memory");
	else if (rt->op[0] || rt->held)
		ret = vc_refuse(
		    e, 409, "busy", "VM '%s' is busy with %s%s: try again when it has ended", name,
		    rt->held ? "a change of its definition" : "operation ", rt->held ? "" : rt->op);
	else if (strcmp(rt->state, job->state))
		ret = vc_refuse(e, 409, "busy", "VM '%s' went from %s to %s meanwhile: try again",
				name, job->state, rt->state);
	else if (ops_create(vc->ops, OP_KIND[kind], uuid, job->op))
		ret = vc_refuse(e, 500, "internal", "cannot create an operation");
	if (!ret) {
		job->rt = rt;
		job->actor = json_incref(actor);
		memcpy(rt->op, job->op, sizeof(rt->op));
		if ((ret = vc_start_thread(vc, ckpt_thread, job))) {
			ops_fail(vc->ops, job->op, "internal", "cannot start a thread: %s",
				 strerror(-ret));
			rt->op[0] = '\0';
			json_decref(job->actor);
			ret = vc_refuse(e, 500, "internal", "cannot start a thread");
		} else {
			memcpy(op_id, job->op, OP_ID_LEN + 1);
			log_info(TAG, "VM %s: %s %s accepted (%s, operation %s)", name,
				 OP_KIND[kind], arg, job->state, job->op);
			job = NULL;
		}
	}
	pthread_mutex_unlock(&vc->lock);
	db_vm_clear(&vm);
out:
	json_decref(list);
	free(job);
	return ret;
}
