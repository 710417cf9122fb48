/* Starting berth-vmm detached from berthd (own session, log file, optional unprivileged user). */
#ifndef BERTH_DAEMON_SPAWN_H
#define BERTH_DAEMON_SPAWN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPAWN_GROUPS_MAX 64

/* The user VMMs run as (--vmm-user), resolved once at daemon start. */
struct vmm_user {
	bool set; /* false: VMMs run as berthd's user (root) */
	char name[64];
	uid_t uid;
	gid_t gid;
	gid_t groups[SPAWN_GROUPS_MAX]; /* supplementary groups (initgroups, e.g. kvm) */
	int ngroups;
};

/* Look the user up and collect its groups. -ENOENT (no such user), -E2BIG (too many groups). */
int vmm_user_resolve(const char *name, struct vmm_user *u);

/* A VMM process between spawn_begin and spawn_go. */
struct spawn {
	pid_t pid;
	int go_fd, status_fd;
};

/* Descriptors handed to the VMM: fds[i] becomes its descriptor SPAWN_FD0 + i (not close-on-exec).
 */
#define SPAWN_FD0 3
#define SPAWN_FDS_MAX 256

/*
 * Fork argv[0] detached: a double fork with setsid in between, so the VMM is in its own session
 * and process group, is not berthd's child and survives berthd; stdin /dev/null, stdout and
 * stderr appended to log_path, working directory cwd, every signal unblocked and at its default,
 * then (if u->set) the user's groups, gid and uid; fds[0..nfds) (e.g. TAPs) become its
 * descriptors SPAWN_FD0.., every other of berthd's stays behind. The process (sp->pid, its start
 * time already fixed) then waits: spawn_go lets it exec, spawn_abort (or berthd's death) makes it
 * exit without running — so a VMM runs only once berthd has recorded its pid. -errno.
 */
int spawn_begin(char *const argv[], const char *log_path, const char *cwd, const struct vmm_user *u,
		const int *fds, int nfds, struct spawn *sp, char *err, size_t errlen);
/* Let it exec; 0 once it has, -errno of the exec (err says which program, what). */
int spawn_go(struct spawn *sp, const char *what, char *err, size_t errlen);
void spawn_abort(struct spawn *sp);

/*
 * The start time of a process (field 22 of /proc/PID/stat, clock ticks since boot) and whether it
 * is still alive (not a zombie). -ENOENT if there is no such process.
 */
int proc_start_time(pid_t pid, uint64_t *start, bool *alive);

/*
 * A live process whose command line has arg as one of its arguments (berth-vmm's --control PATH
 * names its VM), e.g. a VMM spawned by a berthd that was killed before it recorded the pid.
 * 0 if there is none.
 */
pid_t proc_find_by_arg(const char *arg);

/* pidfd_open(2): a descriptor that becomes readable when the process exits. -errno. */
int pidfd_open_pid(pid_t pid);
/* pidfd_send_signal(2). -errno. */
int pidfd_kill(int pidfd, int sig);

#endif
