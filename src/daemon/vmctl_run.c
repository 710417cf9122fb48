/* The VM actions, each run by its operation's thread: start, shut down, turn off, save, ... */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/ckpttree.h"
#include "daemon/ctlclient.h"
#include "daemon/diskfds.h"
#include "daemon/nics.h"
#include "daemon/spawn.h"
#include "daemon/vmctl_int.h"

#define TAG "vmctl"
#define START_TIMEOUT_MS 30000 /* until the control socket answers */
#define CTL_TIMEOUT_MS 10000   /* a control command's reply */
#define QUIT_WAIT_MS 5000      /* after quit, before SIGKILL */
/* the command line with an --fd-map PATH=N per handed file */
#define VMM_ARGV_MAX (VMMCFG_ARGV_MAX + 2 * DISKFDS_MAX + 1)
#define SAVE_TIMEOUT_MS 300000 /* writing the guest's RAM */

/* snprintf for messages that may be cut short. */
__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Lock held: wait until the VMM has exited (and the monitor settled the state). */
static int wait_gone(struct vmctl *vc, struct vmrt *rt, int64_t ms)
{
	int64_t deadline = vc_now_ms() + ms;
	int r = 0;
	while (rt->phase != PH_NONE && !(r = vc_wait(vc, deadline)))
		;
	return rt->phase == PH_NONE ? 0 : r ? r : -ETIMEDOUT;
}

/* The last line of what the VMM wrote to its log since offset, for an error message. */
static void log_tail(const char *path, off_t from, char *out, size_t len)
{
	char buf[2048];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	out[0] = '\0';
	if (fd < 0)
		return;
	off_t end = lseek(fd, 0, SEEK_END);
	off_t at = end - (off_t)sizeof(buf) + 1 > from ? end - (off_t)sizeof(buf) + 1 : from;
	ssize_t n = at < end ? pread(fd, buf, sizeof(buf) - 1, at) : 0;
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	char *line = strrchr(buf, '\n');
	errf(out, len, "%s", line ? line + 1 : buf);
}

/* A file of the VM's, owned by the VMM user so the VMM can read it. */
static int write_owned(struct vmctl *vc, const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), ret = 0;
	if (fd < 0)
		return -errno;
	if ((text && (ret = write_all(fd, text, strlen(text)))) ||
	    (vc->user.set && fchown(fd, vc->user.uid, vc->user.gid)))
		ret = ret ? ret : -errno;
	if (close(fd) && !ret)
		ret = -errno;
	return ret;
}

/* The VM's directory, config.json and log, ready for the VMM (and its user). */
static int prepare_files(struct vmctl *vc, const struct vm_paths *p, const char *config, char *err,
			 size_t errlen)
{
	int ret = 0;
	if (mkdir(p->dir, 0700) && errno != EEXIST)
		ret = -errno;
	else if (vc->user.set && chown(p->dir, vc->user.uid, vc->user.gid))
		ret = -errno;
	else if (vc->user.set && chown(p->checkpoints, vc->user.uid, vc->user.gid) &&
		 errno != ENOENT)
		ret = -errno;
	if (ret) {
		errf(err, errlen, "%s: %s", p->dir, strerror(-ret));
		return ret;
	}
	if (config && (ret = write_owned(vc, p->config, config))) {
		errf(err, errlen, "writing %s: %s", p->config, strerror(-ret));
		return ret;
	}
	int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0 || (vc->user.set && fchown(fd, vc->user.uid, vc->user.gid))) {
		ret = -errno;
		errf(err, errlen, "%s: %s", p->log, strerror(errno));
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

/* Connect to a new VMM's control socket and ask its state. Lock not held. */
static int connect_new(struct vmctl *vc, struct vmrt *rt, const struct vm_paths *p, int *fd,
		       json_t **status, char *err, size_t errlen)
{
	int64_t deadline = vc_now_ms() + START_TIMEOUT_MS;
	int ret;
	for (;;) {
		pthread_mutex_lock(&vc->lock);
		bool gone = rt->phase == PH_NONE, stopping = vc->stopping;
		pthread_mutex_unlock(&vc->lock);
		if (stopping)
			return -ECANCELED;
		if (gone) {
			errf(err, errlen, "the VMM exited");
			return -ECHILD;
		}
		if (!(ret = ctl_connect(p->control, fd)))
			break;
		if (vc_now_ms() > deadline) {
			errf(err, errlen, "the VMM's control socket %s did not answer within %d s",
			     p->control, START_TIMEOUT_MS / 1000);
			return -ETIMEDOUT;
		}
		sleep_ms(20);
	}
	if ((ret = ctl_call(*fd, "query-status", NULL, CTL_TIMEOUT_MS, status, err, errlen))) {
		if (ret != -EREMOTEIO)
			errf(err, errlen, "query-status: %s", strerror(-ret));
		close(*fd);
		*fd = -1;
	}
	return ret;
}

/*
 * The VMM's files open for it (disks, backing chains, kernel, initrd: berth-vmm --fd-map), after
 * the TAPs in the descriptors it inherits; argv gets the --fd-map arguments. -errno with err.
 */
static int vmm_files(const json_t *spec, struct diskfds *df, const int *taps, int ntaps,
		     int fds[SPAWN_FDS_MAX], char **argv, int argv_max, char *err, size_t errlen)
{
	int argc = 0, ret;
	while (argv[argc])
		argc++;
	if ((ret = diskfds_open(df, spec, err, errlen)))
		return ret;
	if (ntaps + df->n > SPAWN_FDS_MAX ||
	    (ret = diskfds_argv(df, SPAWN_FD0 + ntaps, argv, &argc, argv_max))) {
		diskfds_close(df);
		errf(err, errlen, "too many files to hand to the VMM (%d)", ntaps + df->n);
		return ret ? ret : -E2BIG;
	}
	for (int i = 0; i < ntaps; i++)
		fds[i] = taps[i];
	for (int i = 0; i < df->n; i++)
		fds[ntaps + i] = df->fd[i];
	return ntaps + df->n;
}

/* Spawn the VMM and wait until it answers; the VM is then running (or paused). */
static int do_start(struct action_job *job, const char *reason, char *err, size_t errlen)
{
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	struct db_vm vm = {0};
	struct vm_paths p;
	json_t *spec = NULL, *cfg = NULL, *status = NULL;
	char *cfg_text = NULL, *argv[VMM_ARGV_MAX], name[64];
	char prev[16];
	int fd = -1, ret, taps[VMSPEC_NICS_MAX] = {-1, -1, -1, -1}, ntaps = 0, fds[SPAWN_FDS_MAX];
	struct diskfds df = {0};
	pid_t pid = 0;
	struct stat sb;
	struct spawn sp;

	pthread_mutex_lock(&vc->lock);
	snprintf(prev, sizeof(prev), "%s", rt->state);
	ret = db_begin(vc->db, false);
	if (!ret) {
		ret = db_vm_find(vc->db, rt->uuid, &vm);
		db_rollback(vc->db);
	}
	if (!ret)
		ret = vc_set_state(vc, rt, "starting", reason, false, NULL);
	pthread_mutex_unlock(&vc->lock);
	if (ret) {
		errf(err, errlen, "inventory error: %s", strerror(-ret));
		goto out_state;
	}
	snprintf(name, sizeof(name), "%s", vm.name);
	bool restore = !strcmp(prev, "saved");
	if ((ret = vc_paths(vc, rt->uuid, &p))) {
		errf(err, errlen, "the run directory's path is too long for unix sockets");
		goto out_state;
	}
	if (restore && stat(p.saved, &sb)) {
		ret = -ENOENT;
		errf(err, errlen, "the saved state %s is missing: %s", p.saved, strerror(errno));
		goto out_state;
	}
	spec = json_loads(vm.config, 0, NULL);
	cfg = spec ? vmmcfg_build(spec, name, &p) : NULL;
	/* a VM with checkpoints runs on the tree's current images, not its disks' own files */
	if (cfg && !restore && (ret = ckpt_tree_apply_cfg(cfg, p.checkpoints, err, errlen)))
		goto out_state;
	cfg_text = cfg ? json_dumps(cfg, JSON_INDENT(2)) : NULL;
	if (!cfg_text) {
		ret = -ENOMEM;
		errf(err, errlen, "cannot build the VMM configuration");
		goto out_state;
	}
	if ((ret = prepare_files(vc, &p, cfg_text, err, errlen)))
		goto out_state;
	off_t log_from = stat(p.log, &sb) ? 0 : sb.st_size;
	vmmcfg_argv(vc->vmm, &p, name, restore, argv);
	/* a TAP per NIC on its switch, handed over as --net fd=N: the VMM needs no CAP_NET_ADMIN,
	 * and the TAP goes when the VMM (its only holder once spawned) does */
	if ((ntaps = nics_open(vc->db, rt->uuid, json_object_get(spec, "nics"), taps, err,
			       errlen)) < 0) {
		ret = ntaps;
		ntaps = 0;
		goto out_state;
	}
	/* its disks (with their backing files), kernel and initrd open, handed over with
	 * --fd-map: an unprivileged VMM needs no access to them by name */
	int nfds = vmm_files(spec, &df, taps, ntaps, fds, argv, VMM_ARGV_MAX, err, errlen);
	if (nfds < 0) {
		ret = nfds;
		goto out_state;
	}
	/* the VMM waits for the go until its pid and start time are in the inventory: a berthd
	 * killed at any moment of this leaves no VMM it does not know of */
	ret = spawn_begin(argv, p.log, p.dir, &vc->user, fds, nfds, &sp, err, errlen);
	for (int i = 0; i < ntaps; i++) {
		close(taps[i]); /* the VMM holds them now */
		taps[i] = -1;
	}
	diskfds_close(&df);
	if (ret)
		goto out_state;
	pid = sp.pid;
	pthread_mutex_lock(&vc->lock);
	rt->pid = pid;
	rt->shutdown_seen = rt->killed = false;
	rt->quit_reason[0] = rt->exit_reason[0] = '\0';
	rt->eof_ms = 0;
	if ((rt->pidfd = pidfd_open_pid(pid)) < 0 ||
	    proc_start_time(pid, &rt->start_time, &(bool){0}) || monitor_add_pid(vc, rt) ||
	    vc_record_pid(vc, rt)) {
		if (rt->pidfd >= 0)
			close(rt->pidfd);
		rt->pidfd = -1;
		rt->pid = 0;
		pthread_mutex_unlock(&vc->lock);
		spawn_abort(&sp); /* it exits without running */
		errf(err, errlen, "cannot watch or record the new VMM process");
		ret = -ECHILD;
		goto out_state;
	}
	rt->phase = PH_STARTING;
	pthread_mutex_unlock(&vc->lock);
	if ((ret = spawn_go(&sp, vc->vmm, err, errlen))) {
		pthread_mutex_lock(&vc->lock);
		wait_gone(vc, rt, QUIT_WAIT_MS); /* the monitor sees it exit */
		pthread_mutex_unlock(&vc->lock);
		goto out_state;
	}
	ops_progress(vc->ops, job->op, 30);
	log_info(TAG, "VM %s: VMM %d started%s", name, (int)pid,
		 restore ? " from the saved state" : "");

	ret = connect_new(vc, rt, &p, &fd, &status, err, errlen);
	if (ret == -ECANCELED)
		goto out; /* berthd stops: the VMM runs on and the next berthd adopts it */
	pthread_mutex_lock(&vc->lock);
	if (!ret && rt->phase == PH_NONE) {
		errf(err, errlen, "the VMM exited");
		ret = -ECHILD;
	}
	if (!ret && (ret = monitor_add_conn(vc, rt, fd)))
		errf(err, errlen, "watching the VMM: %s", strerror(-ret));
	if (!ret) {
		fd = -1;
		rt->phase = PH_ACTIVE;
		const char *st = json_string_value(json_object_get(status, "state"));
		vc_set_state(vc, rt, st && !strcmp(st, "paused") ? "paused" : "running",
			     restore ? "restored" : "booted", false, NULL);
	}
	if (ret && rt->phase != PH_NONE) {
		/* not answering: it must not live on unmanaged */
		monitor_kill(vc, rt);
		wait_gone(vc, rt, QUIT_WAIT_MS);
	}
	pthread_mutex_unlock(&vc->lock);
	if (ret == -ECHILD || (ret && !err[0])) {
		sleep_ms(50); /* the VMM's last words reach its log */
		char tail[400];
		log_tail(p.log, log_from, tail, sizeof(tail));
		if (tail[0])
			errf(err, errlen, "the VMM exited: %s", tail);
	}
	if (!ret && restore)
		vc_rm_tree(p.saved); /* it is running: the saved state is spent */
out_state:
	if (ret) {
		log_warn(TAG, "VM %s: start failed: %s", name[0] ? name : rt->uuid, err);
		pthread_mutex_lock(&vc->lock);
		vc_set_state(vc, rt, prev, "start-failed", false, NULL);
		pthread_mutex_unlock(&vc->lock);
	}
out:
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < ntaps; i++)
		if (taps[i] >= 0)
			close(taps[i]);
	diskfds_close(&df);
	json_decref(status);
	json_decref(spec);
	json_decref(cfg);
	free(cfg_text);
	db_vm_clear(&vm);
	return ret;
}

/* quit, then SIGKILL if the VMM is still there a few seconds later. */
static int do_turn_off(struct action_job *job, const char *quit_reason, char *err, size_t errlen)
{
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	struct vm_paths p;
	json_t *res = NULL;
	char cerr[256];
	int ret;

	vc_paths(vc, rt->uuid, &p);
	pthread_mutex_lock(&vc->lock);
	snprintf(rt->quit_reason, sizeof(rt->quit_reason), "%s", quit_reason);
	if (rt->phase == PH_ACTIVE && strcmp(rt->state, "stopping"))
		vc_set_state(vc, rt, "stopping", "turning-off", false, NULL);
	pthread_mutex_unlock(&vc->lock);
	if (ctl_call_path(p.control, "quit", NULL, QUIT_WAIT_MS, &res, cerr, sizeof(cerr)))
		log_warn(TAG, "VM %s: quit: %s", rt->name, cerr);
	json_decref(res);
	pthread_mutex_lock(&vc->lock);
	ret = wait_gone(vc, rt, QUIT_WAIT_MS);
	if (ret == -ETIMEDOUT) {
		monitor_kill(vc, rt);
		ret = wait_gone(vc, rt, QUIT_WAIT_MS);
	}
	pthread_mutex_unlock(&vc->lock);
	if (ret)
		errf(err, errlen, "the VMM did not stop: %s", strerror(-ret));
	return ret;
}

/* The ACPI power button; after timeout_s a forced turn-off. */
static int do_shutdown(struct action_job *job, char *err, size_t errlen)
{
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	struct vm_paths p;
	json_t *res = NULL;
	char cerr[256];
	int ret;

	vc_paths(vc, rt->uuid, &p);
	pthread_mutex_lock(&vc->lock);
	vc_set_state(vc, rt, "stopping", "shutting-down", false, NULL);
	pthread_mutex_unlock(&vc->lock);
	ret = ctl_call_path(p.control, "powerdown", NULL, CTL_TIMEOUT_MS, &res, cerr, sizeof(cerr));
	if (ret)
		log_warn(TAG, "VM %s: powerdown: %s", rt->name, cerr);
	else if (!json_is_true(json_object_get(res, "guest_enabled")))
		log_info(TAG, "VM %s: the guest has not enabled its power button", rt->name);
	json_decref(res);
	ops_progress(vc->ops, job->op, 10);
	pthread_mutex_lock(&vc->lock);
	ret = ret ? -ETIMEDOUT : wait_gone(vc, rt, (int64_t)job->timeout_s * 1000);
	pthread_mutex_unlock(&vc->lock);
	if (ret == -ECANCELED)
		return ret;
	if (ret == -ETIMEDOUT) {
		log_info(TAG, "VM %s: no power-off within %d s: turning it off", rt->name,
			 job->timeout_s);
		ops_progress(vc->ops, job->op, 90);
		return do_turn_off(job, "shutdown-timeout", err, errlen);
	}
	return 0;
}

static int do_save(struct action_job *job, char *err, size_t errlen)
{
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	struct vm_paths p;
	json_t *res = NULL, *args;
	char prev[16];
	int ret;

	vc_paths(vc, rt->uuid, &p);
	vc_rm_tree(p.saved); /* the VM runs: anything there is a stale, failed save */
	pthread_mutex_lock(&vc->lock);
	snprintf(prev, sizeof(prev), "%s", rt->state);
	vc_set_state(vc, rt, "stopping", "saving", false, NULL);
	pthread_mutex_unlock(&vc->lock);
	args = json_pack("{s:s, s:b, s:i}", "dir", p.saved, "stop", 1, "timeout_ms", 10000);
	ret = ctl_call_path(p.control, "save", args, SAVE_TIMEOUT_MS, &res, err, errlen);
	json_decref(args);
	json_decref(res);
	pthread_mutex_lock(&vc->lock);
	if (ret) {
		if (rt->phase == PH_ACTIVE)
			vc_set_state(vc, rt, prev, "save-failed", false, NULL);
	} else if ((ret = wait_gone(vc, rt, QUIT_WAIT_MS * 2))) {
		errf(err, errlen, "the VMM did not exit after saving: %s", strerror(-ret));
	}
	pthread_mutex_unlock(&vc->lock);
	return ret;
}

static int do_pause_resume(struct action_job *job, bool pause, char *err, size_t errlen)
{
	struct vmctl *vc = job->vc;
	struct vmrt *rt = job->rt;
	struct vm_paths p;
	json_t *res = NULL;
	int ret;

	vc_paths(vc, rt->uuid, &p);
	ret = ctl_call_path(p.control, pause ? "pause" : "resume", NULL, CTL_TIMEOUT_MS + 5000,
			    &res, err, errlen);
	json_decref(res);
	if (ret)
		return ret;
	pthread_mutex_lock(&vc->lock);
	if (rt->phase == PH_ACTIVE)
		vc_set_state(vc, rt, pause ? "paused" : "running", pause ? "user" : "resumed",
			     false, NULL);
	pthread_mutex_unlock(&vc->lock);
	return 0;
}

/* The state an action should leave the VM in; the operation fails if it is not reached. */
static const char *const GOAL[ACT_COUNT] = {
    [ACT_START] = "running",   [ACT_SHUTDOWN] = "off", [ACT_TURN_OFF] = "off",
    [ACT_RESTART] = "running", [ACT_PAUSE] = "paused", [ACT_RESUME] = "running",
    [ACT_SAVE] = "saved"};

void run_action(struct action_job *job)
{
	struct vmctl *vc = job->vc;
	char err[512] = "";
	const char *reason = !strcmp(job->origin, "auto-start") ? "auto-start" : "user";
	int ret = 0;

	ops_running(vc->ops, job->op);
	switch (job->act) {
	case ACT_START:
		ret = do_start(job, reason, err, sizeof(err));
		break;
	case ACT_SHUTDOWN:
		ret = do_shutdown(job, err, sizeof(err));
		break;
	case ACT_TURN_OFF:
		ret = do_turn_off(job, "turned-off", err, sizeof(err));
		break;
	case ACT_RESTART:
		if (!(ret = do_turn_off(job, "restarting", err, sizeof(err)))) {
			ops_progress(vc->ops, job->op, 50);
			ret = do_start(job, "restart", err, sizeof(err));
		}
		break;
	case ACT_PAUSE:
	case ACT_RESUME:
		ret = do_pause_resume(job, job->act == ACT_PAUSE, err, sizeof(err));
		break;
	case ACT_SAVE:
		ret = do_save(job, err, sizeof(err));
		break;
	default:
		ret = -EINVAL;
	}
	/* the VM is free again before the operation reads finished: a client that waited for it
	 * may act on the VM at once */
	pthread_mutex_lock(&vc->lock);
	char state[16], reason_now[48];
	snprintf(state, sizeof(state), "%s", job->rt->state);
	snprintf(reason_now, sizeof(reason_now), "%s", job->rt->reason);
	job->rt->op[0] = '\0';
	json_decref(job->rt->actor);
	job->rt->actor = NULL;
	pthread_cond_broadcast(&vc->cond);
	pthread_mutex_unlock(&vc->lock);
	if (ret == -ECANCELED)
		ops_fail(vc->ops, job->op, "daemon-stopping",
			 "berthd stopped during the operation; the VM is left as it was (%s)",
			 state);
	else if (ret)
		ops_fail(vc->ops, job->op, "action-failed", "%s", err[0] ? err : strerror(-ret));
	else if (strcmp(state, GOAL[job->act]))
		ops_fail(vc->ops, job->op, "action-failed", "the VM ended %s (%s), not %s", state,
			 reason_now, GOAL[job->act]);
	else
		ops_succeed(vc->ops, job->op);
}

int vc_adopt(struct vmctl *vc, struct vmrt *rt, const char *db_state, int64_t db_pid,
	     uint64_t db_start)
{
	struct vm_paths p;
	json_t *status = NULL;
	char err[256];
	uint64_t st = 0, st_db_pid;
	bool alive = false;
	int fd = -1, pidfd = -1, ret;

	if ((ret = vc_paths(vc, rt->uuid, &p)))
		return ret;
	/* a VMM that lives (the recorded process, or one a killed berthd spawned before recording
	 * it) may still be setting up its socket: give it time */
	bool db_alive = db_pid > 0 && !proc_start_time((pid_t)db_pid, &st_db_pid, &alive) &&
			alive && st_db_pid == db_start;
	int64_t deadline = vc_now_ms() + (db_alive || proc_find_by_arg(p.control) ? 5000 : 0);
	while ((ret = ctl_connect(p.control, &fd)) && vc_now_ms() < deadline) {
		sleep_ms(50);
		/* stop waiting once no such process is left (one that never got its go exits) */
		if (!(db_pid > 0 && !proc_start_time((pid_t)db_pid, &st_db_pid, &alive) && alive &&
		      st_db_pid == db_start) &&
		    !proc_find_by_arg(p.control))
			deadline = 0;
	}
	if (ret)
		return ret;
	if ((ret = ctl_call(fd, "query-status", NULL, 5000, &status, err, sizeof(err))))
		goto fail;
	pid_t pid = (pid_t)json_integer_value(json_object_get(status, "pid"));
	if (pid <= 0 || proc_start_time(pid, &st, &alive) || !alive ||
	    (pidfd = pidfd_open_pid(pid)) < 0) {
		ret = -ESRCH;
		goto fail;
	}
	const char *vst = json_string_value(json_object_get(status, "state"));
	const char *state = vst && !strcmp(vst, "paused") ? "paused" : "running";
	pthread_mutex_lock(&vc->lock);
	rt->pid = pid;
	rt->start_time = st;
	rt->pidfd = pidfd;
	rt->shutdown_seen = rt->killed = false;
	rt->quit_reason[0] = rt->exit_reason[0] = '\0';
	rt->eof_ms = 0;
	if ((ret = monitor_add_pid(vc, rt)) || (ret = monitor_add_conn(vc, rt, fd))) {
		pthread_mutex_unlock(&vc->lock);
		goto fail; /* the pidfd, not yet watched if add_pid failed, is closed below */
	}
	fd = pidfd = -1;
	rt->phase = PH_ACTIVE;
	if (strcmp(db_state, state))
		vc_set_state(vc, rt, state, "reattached", false, NULL);
	if (pid != db_pid || st != db_start)
		vc_record_pid(vc, rt);
	pthread_mutex_unlock(&vc->lock);
	log_info(TAG, "VM %s: reattached to VMM %d (%s)", rt->name, (int)pid, state);
	json_decref(status);
	return 0;
fail:
	log_info(TAG, "VM %s: its VMM does not answer on %s: %s", rt->name, p.control,
		 ret == -EREMOTEIO ? err : strerror(-ret));
	json_decref(status);
	if (fd >= 0)
		close(fd);
	if (pidfd >= 0) {
		pthread_mutex_lock(&vc->lock);
		if (rt->pidfd == pidfd) {
			rt->pidfd = -1;
			rt->pid = 0;
		}
		pthread_mutex_unlock(&vc->lock);
		close(pidfd);
	}
	return ret ? ret : -EIO;
}

int vc_spawn_paused(struct vmctl *vc, struct vmrt *rt, bool restore, struct vc_maint *m, char *err,
		    size_t errlen)
{
	struct db_vm vm = {0};
	struct vm_paths p;
	json_t *spec = NULL, *cfg = NULL, *status = NULL;
	char *cfg_text = NULL, *argv[VMM_ARGV_MAX], name[64];
	int ret, taps[VMSPEC_NICS_MAX] = {-1, -1, -1, -1}, ntaps = 0, fds[SPAWN_FDS_MAX], nfds;
	struct diskfds df = {0};
	struct spawn sp;

	m->pid = 0;
	m->pidfd = m->fd = -1;
	pthread_mutex_lock(&vc->lock);
	ret = db_begin(vc->db, false);
	if (!ret) {
		ret = db_vm_find(vc->db, rt->uuid, &vm);
		db_rollback(vc->db);
	}
	pthread_mutex_unlock(&vc->lock);
	if (ret) {
		errf(err, errlen, "inventory error: %s", strerror(-ret));
		return ret;
	}
	snprintf(name, sizeof(name), "%s", vm.name);
	if ((ret = vc_paths(vc, rt->uuid, &p))) {
		errf(err, errlen, "the run directory's path is too long for unix sockets");
		goto out;
	}
	spec = json_loads(vm.config, 0, NULL);
	cfg = spec ? vmmcfg_build(spec, name, &p) : NULL;
	if (cfg && !restore && (ret = ckpt_tree_apply_cfg(cfg, p.checkpoints, err, errlen)))
		goto out;
	cfg_text = cfg ? json_dumps(cfg, JSON_INDENT(2)) : NULL;
	if (!cfg_text) {
		ret = -ENOMEM;
		errf(err, errlen, "cannot build the VMM configuration");
		goto out;
	}
	if ((ret = prepare_files(vc, &p, cfg_text, err, errlen)))
		goto out;
	vmmcfg_argv(vc->vmm, &p, name, restore, argv);
	for (int i = 0; i < VMMCFG_ARGV_MAX - 2; i++)
		if (!argv[i]) {
			argv[i] = "--start-paused";
			argv[i + 1] = NULL;
			break;
		}
	/* the VM's NICs exist as for a start (a restored VM needs its devices), but the guest does
	 * not run */
	if ((ntaps = nics_open(vc->db, rt->uuid, json_object_get(spec, "nics"), taps, err,
			       errlen)) < 0) {
		ret = ntaps;
		ntaps = 0;
		goto out;
	}
	if ((nfds = vmm_files(spec, &df, taps, ntaps, fds, argv, VMM_ARGV_MAX, err, errlen)) < 0) {
		for (int i = 0; i < ntaps; i++)
			close(taps[i]);
		ret = nfds;
		goto out;
	}
	ret = spawn_begin(argv, p.log, p.dir, &vc->user, fds, nfds, &sp, err, errlen);
	for (int i = 0; i < ntaps; i++)
		close(taps[i]);
	diskfds_close(&df);
	if (ret)
		goto out;
	m->pid = sp.pid;
	if ((m->pidfd = pidfd_open_pid(sp.pid)) < 0) {
		ret = m->pidfd;
		spawn_abort(&sp);
		errf(err, errlen, "cannot watch the VMM: %s", strerror(-ret));
		goto out;
	}
	if ((ret = spawn_go(&sp, vc->vmm, err, errlen)))
		goto out;
	log_info(TAG, "VM %s: maintenance VMM %d started paused%s", name, (int)sp.pid,
		 restore ? " from the saved state" : "");
	int64_t deadline = vc_now_ms() + START_TIMEOUT_MS;
	for (;;) {
		struct pollfd pfd = {.fd = m->pidfd, .events = POLLIN};
		if (poll(&pfd, 1, 0) > 0) {
			ret = -ECHILD;
			sleep_ms(50);
			char tail[400];
			log_tail(p.log, 0, tail, sizeof(tail));
			errf(err, errlen, "the VMM exited: %s", tail);
			goto out;
		}
		if (!ctl_connect(p.control, &m->fd))
			break;
		if (vc_now_ms() > deadline) {
			ret = -ETIMEDOUT;
			errf(err, errlen, "the VMM's control socket %s did not answer within %d s",
			     p.control, START_TIMEOUT_MS / 1000);
			goto out;
		}
		sleep_ms(20);
	}
	if ((ret = ctl_call(m->fd, "query-status", NULL, CTL_TIMEOUT_MS, &status, err, errlen)))
		goto out;
	const char *st = json_string_value(json_object_get(status, "state"));
	if (!st || strcmp(st, "paused")) {
		ret = -EPROTO;
		errf(err, errlen, "the VMM started %s, not paused", st ? st : "in no known state");
	}
out:
	if (ret)
		vc_maint_end(m, true);
	json_decref(status);
	json_decref(spec);
	json_decref(cfg);
	free(cfg_text);
	db_vm_clear(&vm);
	return ret;
}

int vc_maint_end(struct vc_maint *m, bool quit)
{
	json_t *res = NULL;
	char cerr[256];
	int ret = 0;

	if (m->fd >= 0) {
		if (quit)
			ctl_call(m->fd, "quit", NULL, QUIT_WAIT_MS, &res, cerr, sizeof(cerr));
		json_decref(res);
		close(m->fd);
		m->fd = -1;
	}
	if (m->pidfd >= 0) {
		struct pollfd pfd = {.fd = m->pidfd, .events = POLLIN};
		if (poll(&pfd, 1, QUIT_WAIT_MS * 2) <= 0) {
			log_warn(TAG, "maintenance VMM %d did not exit: killing it", (int)m->pid);
			pidfd_kill(m->pidfd, SIGKILL);
			poll(&pfd, 1, QUIT_WAIT_MS);
			ret = -ETIMEDOUT;
		}
		close(m->pidfd);
		m->pidfd = -1;
	}
	return ret;
}
