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

/*
 * Run argv[0] detached: a double fork with setsid in between, so the VMM is in its own session
 * and process group, is not berthd's child and survives berthd; stdin /dev/null, stdout and
 * stderr appended to log_path, working directory cwd, every signal unblocked and at its default,
 * then (if u->set) the user's groups, gid and uid. *pid is the VMM's pid once exec succeeded.
 * -errno of the fork or of the exec (err describes it).
 */
int spawn_detached(char *const argv[], const char *log_path, const char *cwd,
		   const struct vmm_user *u, pid_t *pid, char *err, size_t errlen);

/*
 * The start time of a process (field 22 of /proc/PID/stat, clock ticks since boot) and whether it
 * is still alive (not a zombie). -ENOENT if there is no such process.
 */
int proc_start_time(pid_t pid, uint64_t *start, bool *alive);

/* pidfd_open(2): a descriptor that becomes readable when the process exits. -errno. */
int pidfd_open_pid(pid_t pid);
/* pidfd_send_signal(2). -errno. */
int pidfd_kill(int pidfd, int sig);

#endif
