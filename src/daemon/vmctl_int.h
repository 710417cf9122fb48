/* VM lifecycle internals shared by vmctl.c, vmctl_run.c and monitor.c. */
#ifndef BERTH_DAEMON_VMCTL_INT_H
#define BERTH_DAEMON_VMCTL_INT_H

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/proto.h"
#include "daemon/db.h"
#include "daemon/vmctl.h"
#include "daemon/vmmcfg.h"

/* What berthd knows of a VM's VMM process. */
enum rt_phase {
	PH_NONE,     /* no VMM */
	PH_STARTING, /* spawned by a start operation, not yet answering: the operation decides */
	PH_ACTIVE    /* supervised: the monitor turns its events and its exit into states */
};

struct vmrt;

/* An epoll registration of the monitor: the control connection or the pidfd of a VMM. */
struct mon_watch {
	struct vmrt *rt;
	bool is_conn;
};

/* The runtime of one VM. Everything is protected by vmctl.lock. */
struct vmrt {
	char uuid[DB_UUID_LEN + 1];
	char name[64];
	char op[OP_ID_LEN + 1]; /* the operation running on it, "" if none */
	json_t *actor;		/* who asked for it (its vm-state events name them), or NULL */
	bool held;		/* PATCH or DELETE in progress */
	char state[16];		/* as in the inventory */
	char reason[48];
	enum rt_phase phase;
	pid_t pid;
	uint64_t start_time;
	int pidfd, conn; /* -1 if none */
	struct proto_rx rx;
	struct mon_watch wpid, wconn;
	bool shutdown_seen;
	char exit_reason[32];
	int exit_status;
	bool killed;	      /* berthd sent SIGKILL */
	char quit_reason[32]; /* the state reason when a quit ends it ("turned-off", ...) */
	int64_t eof_ms;	      /* when the connection ended without a shutdown event */
	struct vmrt *next;
};

struct vmctl {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC; broadcast on every runtime change */
	struct db *db;
	struct ops *ops;
	char state_dir[2048], run_dir[2048], vmm[2048];
	struct vmm_user user;
	struct vmrt *vms;
	int epfd;
	pthread_t mon;
	bool mon_started;
	bool stopping;
	int threads; /* operation threads alive */
};

int64_t vc_now_ms(void);

/* The runtime of a VM, created from the inventory row if new. Lock held. */
struct vmrt *vc_rt(struct vmctl *vc, const struct db_vm *vm);

/*
 * Record a state change: the inventory row (state, reason, the VMM's pid if there is one,
 * resume_on_start) and a vm-state event in one transaction; rt->state follows; waiters are woken.
 * Nothing is written if state and reason are unchanged and resume is false. extra (may be NULL)
 * is merged into the event's detail. Lock held. -errno.
 */
int vc_set_state(struct vmctl *vc, struct vmrt *rt, const char *state, const char *reason,
		 bool resume, json_t *extra);

/* Wait on vc->cond until deadline_ms (CLOCK_MONOTONIC); -ETIMEDOUT, -ECANCELED if stopping. */
int vc_wait(struct vmctl *vc, int64_t deadline_ms);

/* Record the VMM's pid and start time with the current state (no event). Lock held. */
int vc_record_pid(struct vmctl *vc, struct vmrt *rt);

/* Remove a directory tree (it need not exist). */
void vc_rm_tree(const char *path);

/* Paths of a VM. */
int vc_paths(struct vmctl *vc, const char *uuid, struct vm_paths *p);

/* monitor.c: the supervision thread. */
int monitor_start(struct vmctl *vc);
void monitor_join(struct vmctl *vc);
/* Watch rt->pidfd (and rt->conn if >= 0; it is made non-blocking). Lock held. -errno. */
int monitor_add_pid(struct vmctl *vc, struct vmrt *rt);
int monitor_add_conn(struct vmctl *vc, struct vmrt *rt, int fd);
/* SIGKILL the VMM through its pidfd (marks rt->killed). Lock held. */
void monitor_kill(struct vmctl *vc, struct vmrt *rt);

/* vmctl_run.c: the bodies of the operations, run in their own threads without the lock. */
struct action_job {
	struct vmctl *vc;
	struct vmrt *rt;
	enum vm_action act;
	int timeout_s;
	char origin[16];
	char op[OP_ID_LEN + 1];
	char prev_state[16]; /* when the action was accepted */
};
void run_action(struct action_job *job);
/*
 * Adopt a VMM found running (reattach): connect, query-status, watch it. Lock not held. 0, or
 * -errno when it does not answer.
 */
int vc_adopt(struct vmctl *vc, struct vmrt *rt, const char *db_state, int64_t db_pid,
	     uint64_t db_start);

/*
 * A maintenance VMM: berth-vmm started with --start-paused for work on a VM that is off or saved
 * (checkpoints), not supervised and not reported as the VM running. The caller holds the VM (an
 * operation in rt->op) so nothing else starts it meanwhile.
 */
struct vc_maint {
	pid_t pid;
	int pidfd;
	int fd; /* the control connection */
};
/* Start it (from the saved state if restore, else from the configuration on the tree's current
 * images) and wait until it answers, paused. Lock not held. -errno with err. */
int vc_spawn_paused(struct vmctl *vc, struct vmrt *rt, bool restore, struct vc_maint *m, char *err,
		    size_t errlen);
/* Close the connection (after a quit if quit) and wait for the VMM to exit, killing it if it does
 * not. -ETIMEDOUT if it had to be killed. */
int vc_maint_end(struct vc_maint *m, bool quit);

/* vmctl.c, for vmctl_ckpt.c: the inventory row of a VM (lock held); a refusal; a counted thread. */
int vc_find_row(struct vmctl *vc, const char *id, struct db_vm *vm);
int vc_refuse(struct vmctl_err *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
int vc_start_thread(struct vmctl *vc, void *(*fn)(void *), void *job);
/* vmctl_ckpt.c: mirror every VM's checkpoint tree into the inventory (daemon start). */
void vc_ckpt_reconcile(struct vmctl *vc);

#endif
