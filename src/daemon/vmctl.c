/* VM lifecycle: the runtime table, the state machine, actions as operations, reattach. */
#include "daemon/vmctl.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/api.h"
#include "daemon/vmctl_int.h"
#include "daemon/vmspec.h"

#define TAG "vmctl"
#define STOP_WAIT_MS 20000 /* vmctl_stop waits this long for operation threads */

static const char *const ACTIONS[ACT_COUNT] = {"start", "shutdown", "turn-off", "restart",
					       "pause", "resume",   "save"};

/* The states each action may start from; the rest get 409 invalid-state. */
static const char *const ALLOWED[ACT_COUNT][4] = {
    [ACT_START] = {"off", "crashed", "saved", NULL},
    [ACT_SHUTDOWN] = {"running", NULL},
    [ACT_TURN_OFF] = {"running", "paused", NULL},
    [ACT_RESTART] = {"running", "paused", NULL},
    [ACT_PAUSE] = {"running", NULL},
    [ACT_RESUME] = {"paused", NULL},
    [ACT_SAVE] = {"running", "paused", NULL},
};

int vmctl_action_parse(const char *name)
{
	for (int i = 0; i < ACT_COUNT; i++)
		if (!strcmp(name, ACTIONS[i]))
			return i;
	return -1;
}

const char *vmctl_action_name(enum vm_action a)
{
	return a < ACT_COUNT ? ACTIONS[a] : "?";
}

int64_t vc_now_ms(void)
{
	return mono_ms();
}

int vc_wait(struct vmctl *vc, int64_t deadline_ms)
{
	if (vc->stopping)
		return -ECANCELED;
	if (vc_now_ms() >= deadline_ms)
		return -ETIMEDOUT;
	struct timespec ts = {.tv_sec = deadline_ms / 1000,
			      .tv_nsec = (long)(deadline_ms % 1000) * 1000000};
	pthread_cond_timedwait(&vc->cond, &vc->lock, &ts);
	return vc->stopping ? -ECANCELED : 0;
}

int vc_paths(struct vmctl *vc, const char *uuid, struct vm_paths *p)
{
	return vmmcfg_paths(vc->state_dir, vc->run_dir, uuid, p);
}

static struct vmrt *rt_find(struct vmctl *vc, const char *uuid)
{
	for (struct vmrt *rt = vc->vms; rt; rt = rt->next)
		if (!strcmp(rt->uuid, uuid))
			return rt;
	return NULL;
}

struct vmrt *vc_rt(struct vmctl *vc, const struct db_vm *vm)
{
	struct vmrt *rt = rt_find(vc, vm->uuid);
	if (!rt) {
		if (!(rt = calloc(1, sizeof(*rt))))
			return NULL;
		snprintf(rt->uuid, sizeof(rt->uuid), "%s", vm->uuid);
		rt->pidfd = rt->conn = -1;
		proto_rx_init(&rt->rx);
		rt->next = vc->vms;
		vc->vms = rt;
	}
	/* the inventory is the truth for a VM without a VMM; a supervised one is kept current */
	snprintf(rt->name, sizeof(rt->name), "%s", vm->name);
	snprintf(rt->state, sizeof(rt->state), "%s", vm->state);
	snprintf(rt->reason, sizeof(rt->reason), "%s", vm->state_reason ? vm->state_reason : "");
	return rt;
}

int vc_set_state(struct vmctl *vc, struct vmrt *rt, const char *state, const char *reason,
		 bool resume, json_t *extra)
{
	char now[32];
	int ret;

	if (!strcmp(rt->state, state) && !strcmp(rt->reason, reason ? reason : "") && !resume)
		return 0;
	json_t *d = json_pack("{s:s, s:s?, s:s, s:s?}", "state", state, "reason", reason,
			      "previous", rt->state, "operation", rt->op[0] ? rt->op : NULL);
	if (!d)
		return -ENOMEM;
	if (extra)
		json_object_update(d, extra);
	if (rt->op[0] && rt->actor)
		json_object_set(d, "actor", rt->actor);
	api_now(now);
	if ((ret = db_begin(vc->db, true)))
		goto out;
	if ((ret = db_vm_set_state(vc->db, rt->uuid, state, reason,
				   rt->phase != PH_NONE ? rt->pid : 0, rt->start_time, resume)) ||
	    (ret = db_event_add(vc->db, now, rt->uuid, "vm-state", d))) {
		db_rollback(vc->db);
		goto out;
	}
	if ((ret = db_commit(vc->db)))
		goto out;
	log_info(TAG, "VM %s: %s -> %s%s%s", rt->name, rt->state, state, reason ? " " : "",
		 reason ? reason : "");
	snprintf(rt->state, sizeof(rt->state), "%s", state);
	snprintf(rt->reason, sizeof(rt->reason), "%s", reason ? reason : "");
	pthread_cond_broadcast(&vc->cond);
out:
	if (ret)
		log_err(TAG, "VM %s: recording state %s: %s", rt->name, state, strerror(-ret));
	json_decref(d);
	return ret;
}

/* The inventory row of a VM by name or UUID (lock held). */
int vc_find_row(struct vmctl *vc, const char *id, struct db_vm *vm)
{
	int ret = db_begin(vc->db, false);
	if (ret)
		return ret;
	ret = db_vm_find(vc->db, id, vm);
	db_rollback(vc->db);
	return ret;
}

static void *action_thread(void *arg)
{
	struct action_job *job = arg;
	struct vmctl *vc = job->vc;
	run_action(job); /* frees the VM (rt->op) before it finishes the operation */
	pthread_mutex_lock(&vc->lock);
	vc->threads--;
	pthread_cond_broadcast(&vc->cond);
	pthread_mutex_unlock(&vc->lock);
	free(job);
	return NULL;
}

/* Run fn(job) in a detached thread counted in vc->threads. Lock held. */
int vc_start_thread(struct vmctl *vc, void *(*fn)(void *), void *job)
{
	pthread_attr_t attr;
	pthread_t t;
	int r;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	r = pthread_create(&t, &attr, fn, job);
	pthread_attr_destroy(&attr);
	if (r)
		return -r;
	vc->threads++;
	return 0;
}

int vc_refuse(struct vmctl_err *e, unsigned status, const char *code, const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->code = code;
	e->field = NULL;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return status == 404 ? -ENOENT : status == 409 ? -EBUSY : -EIO;
}

static bool allowed(enum vm_action a, const char *state)
{
	for (int i = 0; ALLOWED[a][i]; i++)
		if (!strcmp(ALLOWED[a][i], state))
			return true;
	return false;
}

static void allowed_text(enum vm_action a, char *buf, size_t len)
{
	size_t off = 0;
	buf[0] = '\0';
	for (int i = 0; ALLOWED[a][i] && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s",
					i == 0		    ? ""
					: ALLOWED[a][i + 1] ? ", "
							    : " or ",
					ALLOWED[a][i]);
}

/* Claim the VM for an action and start it. Lock held. */
static int claim(struct vmctl *vc, const char *id, enum vm_action a, int timeout_s,
		 const char *origin, const json_t *actor, char op_id[OP_ID_LEN + 1],
		 struct vmctl_err *e)
{
	struct db_vm vm = {0};
	struct action_job *job = NULL;
	char allowed_states[64];
	int ret;

	if (vc->stopping)
		return vc_refuse(e, 500, "internal", "berthd is stopping");
	if ((ret = vc_find_row(vc, id, &vm)))
		return ret == -ENOENT
			   ? vc_refuse(e, 404, "not-found", "no VM with the name or UUID '%s'", id)
			   : vc_refuse(e, 500, "internal", "inventory error: %s", strerror(-ret));
	struct vmrt *rt = vc_rt(vc, &vm);
	if (!rt) {
		ret = vc_refuse(e, 500, "internal", "out of memory");
		goto out;
	}
	if (rt->op[0] || rt->held) {
		ret = vc_refuse(e, 409, "busy",
				"VM '%s' is busy with %s%s: try again when it has ended", vm.name,
				rt->held ? "a change of its definition" : "operation ",
				rt->held ? "" : rt->op);
		goto out;
	}
	if (!allowed(a, vm.state)) {
		allowed_text(a, allowed_states, sizeof(allowed_states));
		ret = vc_refuse(e, 409, "invalid-state", "VM '%s' is %s: %s needs it %s", vm.name,
				vm.state, ACTIONS[a], allowed_states);
		goto out;
	}
	if (!(job = calloc(1, sizeof(*job)))) {
		ret = vc_refuse(e, 500, "internal", "out of memory");
		goto out;
	}
	*job = (struct action_job){.vc = vc, .rt = rt, .act = a, .timeout_s = timeout_s};
	snprintf(job->origin, sizeof(job->origin), "%s", origin);
	snprintf(job->prev_state, sizeof(job->prev_state), "%s", vm.state);
	if (ops_create(vc->ops, ACTIONS[a], vm.uuid, job->op)) {
		ret = vc_refuse(e, 500, "internal", "cannot create an operation");
		goto out;
	}
	memcpy(rt->op, job->op, sizeof(rt->op));
	json_decref(rt->actor);
	rt->actor = actor ? json_deep_copy(actor) : NULL;
	if ((ret = vc_start_thread(vc, action_thread, job))) {
		ops_fail(vc->ops, job->op, "internal", "cannot start a thread: %s", strerror(-ret));
		rt->op[0] = '\0';
		json_decref(rt->actor);
		rt->actor = NULL;
		vc_refuse(e, 500, "internal", "cannot start a thread");
		goto out;
	}
	memcpy(op_id, job->op, OP_ID_LEN + 1);
	log_info(TAG, "VM %s: %s accepted (%s, operation %s)", vm.name, ACTIONS[a], origin,
		 job->op);
	job = NULL;
	ret = 0;
out:
	free(job);
	db_vm_clear(&vm);
	return ret;
}

int vmctl_action(struct vmctl *vc, const char *id, enum vm_action a, int timeout_s,
		 const char *origin, const json_t *actor, char op_id[OP_ID_LEN + 1],
		 struct vmctl_err *e)
{
	pthread_mutex_lock(&vc->lock);
	int ret = claim(vc, id, a, timeout_s, origin, actor, op_id, e);
	pthread_mutex_unlock(&vc->lock);
	return ret;
}

int vmctl_console(struct vmctl *vc, const char *id, char path[108], char uuid[37], char name[64],
		  struct vmctl_err *e)
{
	static const char *const with_vmm[] = {"running", "paused", "stopping"};
	struct db_vm vm = {0};
	struct vm_paths p;
	bool has_vmm = false;
	int ret;

	pthread_mutex_lock(&vc->lock);
	if ((ret = vc_find_row(vc, id, &vm))) {
		ret = ret == -ENOENT
			  ? vc_refuse(e, 404, "not-found", "no VM with the name or UUID '%s'", id)
			  : vc_refuse(e, 500, "internal", "inventory error: %s", strerror(-ret));
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(with_vmm); i++)
		has_vmm |= !strcmp(vm.state, with_vmm[i]);
	if (!has_vmm) {
		ret = vc_refuse(e, 409, "invalid-state",
				"VM '%s' is %s: its console needs it running or paused", vm.name,
				vm.state);
		goto out;
	}
	if ((ret = vc_paths(vc, vm.uuid, &p))) {
		ret = vc_refuse(e, 500, "internal", "console path of VM '%s': %s", vm.name,
				strerror(-ret));
		goto out;
	}
	snprintf(path, 108, "%s", p.console);
	snprintf(uuid, 37, "%s", vm.uuid);
	snprintf(name, 64, "%s", vm.name);
out:
	pthread_mutex_unlock(&vc->lock);
	db_vm_clear(&vm);
	return ret;
}

int vmctl_hold(struct vmctl *vc, const char *uuid)
{
	int ret = 0;
	pthread_mutex_lock(&vc->lock);
	struct vmrt *rt = rt_find(vc, uuid);
	if (rt && (rt->op[0] || rt->held))
		ret = -EBUSY;
	else if (rt)
		rt->held = true;
	else if (!(rt = calloc(1, sizeof(*rt)))) {
		ret = -ENOMEM;
	} else {
		snprintf(rt->uuid, sizeof(rt->uuid), "%s", uuid);
		rt->pidfd = rt->conn = -1;
		proto_rx_init(&rt->rx);
		rt->held = true;
		/* state "" until vc_rt reads the row: nothing compares it meanwhile */
		rt->next = vc->vms;
		vc->vms = rt;
	}
	pthread_mutex_unlock(&vc->lock);
	return ret;
}

void vmctl_release(struct vmctl *vc, const char *uuid)
{
	pthread_mutex_lock(&vc->lock);
	struct vmrt *rt = rt_find(vc, uuid);
	if (rt)
		rt->held = false;
	pthread_mutex_unlock(&vc->lock);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) && errno != ENOENT)
		log_warn(TAG, "removing %s: %s", path, strerror(errno));
	return 0;
}

/* Remove a directory tree (it need not exist). */
void vc_rm_tree(const char *path)
{
	nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

void vmctl_forget(struct vmctl *vc, const char *uuid)
{
	struct vm_paths p;
	pthread_mutex_lock(&vc->lock);
	for (struct vmrt **pp = &vc->vms; *pp; pp = &(*pp)->next) {
		struct vmrt *rt = *pp;
		if (strcmp(rt->uuid, uuid) || rt->phase != PH_NONE)
			continue;
		*pp = rt->next;
		json_decref(rt->actor);
		free(rt);
		break;
	}
	pthread_mutex_unlock(&vc->lock);
	if (vc_paths(vc, uuid, &p))
		return;
	unlink(p.config);
	unlink(p.log);
	vc_rm_tree(p.saved);
	/* the checkpoint tree (its states and disk layers) belongs to the VM and goes with it; the
	 * disks' own files stay unless the caller deleted them */
	vc_rm_tree(p.checkpoints);
	if (rmdir(p.dir) && errno != ENOENT)
		log_warn(TAG, "VM %s deleted: %s is kept (%s)", uuid, p.dir, strerror(errno));
}

/* A copy of the rows that matter at daemon start. */
struct row {
	char uuid[DB_UUID_LEN + 1];
	char state[16];
	char reason[48];
	char auto_start[24], auto_stop[24];
	int64_t pid;
	uint64_t start_time;
	bool resume;
	struct db_vm vm; /* for vc_rt: uuid, name, state, reason */
};

struct rows {
	struct row *v;
	size_t n;
};

static int collect(const struct db_vm *vm, void *arg)
{
	struct rows *rs = arg;
	struct row *nv = realloc(rs->v, (rs->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	rs->v = nv;
	struct row *r = &rs->v[rs->n];
	memset(r, 0, sizeof(*r));
	json_t *spec = json_loads(vm->config, 0, NULL);
	snprintf(r->uuid, sizeof(r->uuid), "%s", vm->uuid);
	snprintf(r->state, sizeof(r->state), "%s", vm->state);
	snprintf(r->reason, sizeof(r->reason), "%s", vm->state_reason ? vm->state_reason : "");
	snprintf(r->auto_start, sizeof(r->auto_start), "%s",
		 json_string_value(json_object_get(spec, "auto_start")) ?: "nothing");
	snprintf(r->auto_stop, sizeof(r->auto_stop), "%s",
		 json_string_value(json_object_get(spec, "auto_stop")) ?: "turn-off");
	json_decref(spec);
	r->pid = vm->vmm_pid;
	r->start_time = vm->vmm_start_time;
	r->resume = vm->resume_on_start;
	snprintf(r->vm.uuid, sizeof(r->vm.uuid), "%s", vm->uuid);
	r->vm.name = strdup(vm->name); /* vm.state points into the row once the array is final */
	rs->n++;
	return r->vm.name ? 0 : -ENOMEM;
}

static void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		free(rs->v[i].vm.name);
	free(rs->v);
	rs->v = NULL;
	rs->n = 0;
}

static int load_rows(struct vmctl *vc, struct rows *rs)
{
	int ret = db_begin(vc->db, false);
	if (ret)
		return ret;
	ret = db_vm_list(vc->db, NULL, collect, rs);
	db_rollback(vc->db);
	return ret;
}

static bool is_active(const char *state)
{
	return !strcmp(state, "starting") || !strcmp(state, "running") ||
	       !strcmp(state, "paused") || !strcmp(state, "stopping");
}

/* A VMM that is gone (or will not answer) while berthd was down: settle the VM's state. */
static void settle_lost(struct vmctl *vc, struct vmrt *rt, const struct row *r)
{
	struct vm_paths p;
	char path[VMMCFG_PATH_MAX + 16];
	uint64_t st;
	bool alive = false;

	if (r->pid > 0 && !proc_start_time((pid_t)r->pid, &st, &alive) && alive &&
	    st == r->start_time) {
		int fd = pidfd_open_pid((pid_t)r->pid);
		log_warn(TAG,
			 "VM %s: VMM %lld lives but its control socket does not answer: "
			 "killing it",
			 rt->name, (long long)r->pid);
		if (fd >= 0) {
			pidfd_kill(fd, SIGKILL);
			close(fd);
		}
		vc_set_state(vc, rt, "crashed", "vmm-unreachable", false, NULL);
		return;
	}
	bool saved = false;
	pid_t stray = vc_paths(vc, rt->uuid, &p) ? 0 : proc_find_by_arg(p.control);
	if (stray > 0) {
		/* spawned for this VM (by a berthd killed before it recorded the pid) and mute */
		int fd = pidfd_open_pid(stray);
		log_warn(TAG, "VM %s: VMM %d does not answer on its control socket: killing it",
			 rt->name, (int)stray);
		if (fd >= 0) {
			pidfd_kill(fd, SIGKILL);
			close(fd);
		}
		vc_set_state(vc, rt, "crashed", "vmm-unreachable", false, NULL);
		return;
	}
	if (!vc_paths(vc, rt->uuid, &p)) {
		snprintf(path, sizeof(path), "%s/state.json", p.saved);
		saved = access(path, F_OK) == 0;
	}
	if (!strcmp(r->state, "stopping") && !strcmp(r->reason, "saving") && saved)
		vc_set_state(vc, rt, "saved", "saved", false, NULL);
	else if (!strcmp(r->state, "stopping"))
		vc_set_state(vc, rt, "off", "stopped-while-daemon-down", false, NULL);
	else
		vc_set_state(vc, rt, "crashed", "vmm-lost-while-daemon-down", true, NULL);
}

/*
 * A VM deleted from the inventory has its files removed after the commit: a berthd killed in
 * between leaves a directory no row owns. Remove what vmctl_forget would have.
 */
static void remove_strays(struct vmctl *vc, const struct rows *rs)
{
	char path[sizeof(vc->state_dir) + 8];
	struct dirent *e;
	DIR *d;

	snprintf(path, sizeof(path), "%s/vms", vc->state_dir);
	if (!(d = opendir(path)))
		return;
	while ((e = readdir(d))) {
		bool known = false;
		if (!vmspec_is_uuid(e->d_name))
			continue;
		for (size_t i = 0; i < rs->n && !known; i++)
			known = !strcmp(rs->v[i].uuid, e->d_name);
		if (known)
			continue;
		log_info(TAG, "VM %s was deleted, but berthd stopped before its files went: removing "
			      "them", e->d_name);
		vmctl_forget(vc, e->d_name);
	}
	closedir(d);
}

void vmctl_reattach(struct vmctl *vc)
{
	struct rows rs = {0};
	int ret;

	if ((ret = load_rows(vc, &rs))) {
		log_err(TAG, "reading the inventory: %s", strerror(-ret));
		return;
	}
	for (size_t i = 0; i < rs.n; i++) {
		struct row *r = &rs.v[i];
		struct vm_paths p;
		pid_t stray;
		if (!is_active(r->state) && !vc_paths(vc, r->uuid, &p) &&
		    (stray = proc_find_by_arg(p.control)) > 0) {
			/* a maintenance VMM (checkpoints of a VM that is off) of a berthd that was
			 * killed: it never ran the guest, and its work ended consistently */
			int fd = pidfd_open_pid(stray);
			log_warn(TAG, "VM %s is %s: ending its leftover VMM %d", r->vm.name,
				 r->state, (int)stray);
			if (fd >= 0) {
				pidfd_kill(fd, SIGTERM);
				close(fd);
			}
		}
		if (!is_active(r->state))
			continue;
		r->vm.state = r->state;
		r->vm.state_reason = r->reason;
		pthread_mutex_lock(&vc->lock);
		struct vmrt *rt = vc_rt(vc, &r->vm);
		pthread_mutex_unlock(&vc->lock);
		if (!rt)
			continue;
		if (vc_adopt(vc, rt, r->state, r->pid, r->start_time) == 0)
			continue;
		pthread_mutex_lock(&vc->lock);
		settle_lost(vc, rt, r);
		pthread_mutex_unlock(&vc->lock);
	}
	remove_strays(vc, &rs);
	rows_free(&rs);
	vc_ckpt_reconcile(vc);
}

void vmctl_autostart(struct vmctl *vc)
{
	struct rows rs = {0};
	char op[OP_ID_LEN + 1];
	struct vmctl_err e;
	int ret;

	if ((ret = load_rows(vc, &rs))) {
		log_err(TAG, "reading the inventory: %s", strerror(-ret));
		return;
	}
	for (size_t i = 0; i < rs.n; i++) {
		struct row *r = &rs.v[i];
		bool go = !strcmp(r->auto_start, "always") ||
			  (!strcmp(r->auto_start, "start-if-running") && r->resume);
		if (!go || !allowed(ACT_START, r->state))
			continue;
		log_info(TAG, "VM %s: automatic start (%s)", r->vm.name, r->auto_start);
		if (vmctl_action(vc, r->uuid, ACT_START, 0, "auto-start", NULL, op, &e))
			log_warn(TAG, "VM %s: automatic start refused: %s", r->vm.name, e.msg);
	}
	rows_free(&rs);
}

struct host_job {
	struct vmctl *vc;
	int timeout_s;
	json_t *actor;
	char op[OP_ID_LEN + 1];
};

/* Apply each active VM's auto_stop; each VM it stopped is marked to resume at the next start. */
static void *host_stop_thread(void *arg)
{
	struct host_job *job = arg;
	struct vmctl *vc = job->vc;
	struct rows rs = {0};
	struct {
		char op[OP_ID_LEN + 1];
		char uuid[DB_UUID_LEN + 1];
	} *ops = NULL;
	size_t n = 0, failed = 0;
	struct vmctl_err e;

	ops_running(vc->ops, job->op);
	if (load_rows(vc, &rs) || !(ops = calloc(rs.n + 1, sizeof(*ops)))) {
		ops_fail(vc->ops, job->op, "internal", "cannot read the inventory");
		goto out;
	}
	pthread_mutex_lock(&vc->lock);
	for (size_t i = 0; i < rs.n; i++) {
		struct row *r = &rs.v[i];
		enum vm_action a = !strcmp(r->auto_stop, "save")	? ACT_SAVE
				   : !strcmp(r->auto_stop, "shut-down") ? ACT_SHUTDOWN
									: ACT_TURN_OFF;
		int64_t deadline = vc_now_ms() + 60000;
		struct vmrt *rt = NULL;
		/* an action in progress is let finish first */
		while ((rt = rt_find(vc, r->uuid)) && (rt->op[0] || rt->held) &&
		       !vc_wait(vc, deadline))
			;
		rt = rt_find(vc, r->uuid);
		const char *state = rt ? rt->state : r->state;
		if (!strcmp(state, "paused") && a == ACT_SHUTDOWN)
			a = ACT_TURN_OFF; /* a paused guest cannot hear the power button */
		if (strcmp(state, "running") && strcmp(state, "paused"))
			continue;
		if (claim(vc, r->uuid, a, job->timeout_s, "host-stop", job->actor, ops[n].op, &e)) {
			log_warn(TAG, "VM %s: automatic stop refused: %s", r->vm.name, e.msg);
			failed++;
			continue;
		}
		memcpy(ops[n].uuid, r->uuid, sizeof(r->uuid));
		n++;
	}
	pthread_mutex_unlock(&vc->lock);
	for (size_t i = 0; i < n; i++) {
		bool finished = false;
		json_t *o = ops_get(vc->ops, ops[i].op, true, &finished);
		if (!o || strcmp(json_string_value(json_object_get(o, "state")) ?: "", "succeeded"))
			failed++;
		json_decref(o);
		pthread_mutex_lock(&vc->lock);
		struct vmrt *rt = rt_find(vc, ops[i].uuid);
		if (rt && (!strcmp(rt->state, "off") || !strcmp(rt->state, "saved")))
			vc_set_state(vc, rt, rt->state, rt->reason, true, NULL);
		pthread_mutex_unlock(&vc->lock);
		ops_progress(vc->ops, job->op, (int)((i + 1) * 100 / n));
	}
	if (failed)
		ops_fail(vc->ops, job->op, "action-failed",
			 "%zu of the VMs could not be stopped "
			 "(see their operations and berthd's log)",
			 failed);
	else
		ops_succeed(vc->ops, job->op);
out:
	free(ops);
	rows_free(&rs);
	pthread_mutex_lock(&vc->lock);
	vc->threads--;
	pthread_cond_broadcast(&vc->cond);
	pthread_mutex_unlock(&vc->lock);
	json_decref(job->actor);
	free(job);
	return NULL;
}

int vmctl_host_stop(struct vmctl *vc, int timeout_s, const json_t *actor, char op_id[OP_ID_LEN + 1],
		    struct vmctl_err *e)
{
	struct host_job *job = calloc(1, sizeof(*job));
	int ret;
	if (!job)
		return vc_refuse(e, 500, "internal", "out of memory");
	job->vc = vc;
	job->timeout_s = timeout_s;
	job->actor = actor ? json_deep_copy(actor) : NULL;
	if (ops_create(vc->ops, "host-stop-vms", NULL, job->op)) {
		json_decref(job->actor);
		free(job);
		return vc_refuse(e, 500, "internal", "cannot create an operation");
	}
	memcpy(op_id, job->op, OP_ID_LEN + 1);
	pthread_mutex_lock(&vc->lock);
	ret = vc->stopping ? -ECANCELED : vc_start_thread(vc, host_stop_thread, job);
	pthread_mutex_unlock(&vc->lock);
	if (ret) {
		ops_fail(vc->ops, job->op, "internal", "cannot start: %s", strerror(-ret));
		json_decref(job->actor);
		free(job);
	}
	return 0;
}

/* A directory of berthd's, made (or re-made) with mode and, for the VMM user, its group. */
static int prepare_dir(const char *path, mode_t mode, gid_t gid)
{
	if (mkdir(path, mode) && errno != EEXIST) {
		int e = -errno;
		log_err(TAG, "creating %s: %s", path, strerror(errno));
		return e;
	}
	if (chmod(path, mode) || (gid != (gid_t)-1 && chown(path, 0, gid))) {
		int e = -errno;
		log_err(TAG, "%s: %s", path, strerror(errno));
		return e;
	}
	return 0;
}

int vmctl_new(struct db *db, struct ops *ops, const struct vmctl_opts *o, struct vmctl **out)
{
	struct vmctl *vc = calloc(1, sizeof(*vc));
	char path[4096];
	pthread_condattr_t ca;
	int ret;

	if (!vc)
		return -ENOMEM;
	pthread_mutex_init(&vc->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vc->cond, &ca);
	pthread_condattr_destroy(&ca);
	vc->db = db;
	vc->ops = ops;
	vc->epfd = -1;
	if (o->user)
		vc->user = *o->user;
	if ((size_t)snprintf(vc->state_dir, sizeof(vc->state_dir), "%s", o->state_dir) >=
		sizeof(vc->state_dir) ||
	    (size_t)snprintf(vc->run_dir, sizeof(vc->run_dir), "%s", o->run_dir) >=
		sizeof(vc->run_dir) ||
	    (size_t)snprintf(vc->vmm, sizeof(vc->vmm), "%s", o->vmm_path) >= sizeof(vc->vmm) ||
	    (size_t)snprintf(path, sizeof(path), "%s/vms", o->state_dir) >= sizeof(path)) {
		ret = -ENAMETOOLONG;
		goto fail;
	}
	/* VMMs of an unprivileged user traverse the state directory to their own directory and
	 * create their sockets in the run directory; nobody else gets in */
	if (vc->user.set && (ret = prepare_dir(vc->state_dir, 0711, (gid_t)-1)))
		goto fail;
	if ((ret = prepare_dir(path, vc->user.set ? 0711 : 0700, (gid_t)-1)) ||
	    (ret = prepare_dir(vc->run_dir, vc->user.set ? 0770 : 0700,
			       vc->user.set ? vc->user.gid : (gid_t)-1)))
		goto fail;
	if (access(vc->vmm, X_OK))
		log_warn(TAG, "the VMM %s is not executable (%s): starting VMs will fail", vc->vmm,
			 strerror(errno));
	if (vc->user.set)
		log_info(TAG, "VMMs run as user %s (uid %u, gid %u)", vc->user.name,
			 (unsigned)vc->user.uid, (unsigned)vc->user.gid);
	else if (geteuid() == 0)
		log_warn(TAG, "VMMs run as root: give --vmm-user to run them unprivileged");
	if ((ret = monitor_start(vc)))
		goto fail;
	*out = vc;
	return 0;
fail:
	log_err(TAG, "cannot prepare VM management: %s", strerror(-ret));
	vmctl_free(vc);
	return ret;
}

int vmctl_stop(struct vmctl *vc)
{
	if (!vc)
		return 0;
	pthread_mutex_lock(&vc->lock);
	vc->stopping = true;
	pthread_cond_broadcast(&vc->cond);
	int64_t deadline = vc_now_ms() + STOP_WAIT_MS;
	while (vc->threads > 0 && vc_now_ms() < deadline) {
		struct timespec ts = {.tv_sec = deadline / 1000,
				      .tv_nsec = (long)(deadline % 1000) * 1000000};
		pthread_cond_timedwait(&vc->cond, &vc->lock, &ts);
	}
	int left = vc->threads;
	pthread_mutex_unlock(&vc->lock);
	monitor_join(vc);
	if (left) {
		log_warn(TAG, "%d operations still running after %d ms", left, STOP_WAIT_MS);
		return -EBUSY;
	}
	return 0;
}

void vmctl_free(struct vmctl *vc)
{
	if (!vc)
		return;
	monitor_join(vc);
	while (vc->vms) {
		struct vmrt *n = vc->vms->next;
		if (vc->vms->conn >= 0)
			close(vc->vms->conn);
		if (vc->vms->pidfd >= 0)
			close(vc->vms->pidfd);
		proto_rx_reset(&vc->vms->rx);
		json_decref(vc->vms->actor);
		free(vc->vms);
		vc->vms = n;
	}
	if (vc->epfd >= 0)
		close(vc->epfd);
	pthread_cond_destroy(&vc->cond);
	pthread_mutex_destroy(&vc->lock);
	free(vc);
}

int vc_record_pid(struct vmctl *vc, struct vmrt *rt)
{
	int ret = db_begin(vc->db, true);
	if (ret)
		return ret;
	if ((ret = db_vm_set_state(vc->db, rt->uuid, rt->state, rt->reason[0] ? rt->reason : NULL,
				   rt->pid, rt->start_time, false))) {
		db_rollback(vc->db);
		return ret;
	}
	return db_commit(vc->db);
}
