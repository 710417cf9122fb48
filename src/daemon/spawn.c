/* Starting berth-vmm detached from berthd (own session, log file, optional unprivileged user). */
#include "daemon/spawn.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int vmm_user_resolve(const char *name, struct vmm_user *u)
{
	struct passwd pw, *res = NULL;
	char buf[4096];
	int n = SPAWN_GROUPS_MAX;

	memset(u, 0, sizeof(*u));
	if (strlen(name) >= sizeof(u->name))
		return -ENAMETOOLONG;
	if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) || !res)
		return -ENOENT;
	if (getgrouplist(name, pw.pw_gid, u->groups, &n) < 0)
		return -E2BIG;
	snprintf(u->name, sizeof(u->name), "%s", name);
	u->uid = pw.pw_uid;
	u->gid = pw.pw_gid;
	u->ngroups = n;
	u->set = true;
	return 0;
}

/* In the grandchild, between fork and exec: only async-signal-safe calls. Returns errno. */
static int child_setup(const char *log_path, const char *cwd, const struct vmm_user *u)
{
	sigset_t all;
	int fd;

	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL); /* berthd blocks SIGTERM/SIGINT in every thread */
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) < 0 || dup2(fd, 0) < 0)
		return errno;
	close(fd);
	if ((fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT, 0600)) < 0)
		return errno;
	if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		return errno;
	close(fd);
	/* berthd's own descriptors (database, API sockets, other VMMs' connections) stay behind */
	syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC);
	if (chdir(cwd))
		return errno;
	umask(077);
	if (u->set) {
		if (setgroups((size_t)u->ngroups, u->groups) || setgid(u->gid) || setuid(u->uid))
			return errno;
		if (setuid(0) == 0) /* must not be able to regain root */
			return EPERM;
	}
	return 0;
}

/* Close every descriptor from 3 up except the n in keep (sorted in place; after a fork, so no
 * library sort that might allocate). */
static void close_all_but(int *keep, int n)
{
	unsigned lo = 3;
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (int i = 0; i < n; i++) {
		if ((unsigned)keep[i] > lo)
			syscall(SYS_close_range, lo, (unsigned)keep[i] - 1, 0U);
		if ((unsigned)keep[i] + 1 > lo)
			lo = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, lo, ~0U, 0U);
}

/*
 * In the grandchild: the handed descriptors to SPAWN_FD0.. (first moved above that range, with
 * the pipes, so no dup2 overwrites one still needed). Returns errno.
 */
static int place_fds(int *fds, int nfds, int *p1, int *g0)
{
	int top = SPAWN_FD0 + nfds, fd;
	for (int i = 0; i < nfds; i++) {
		if ((fd = fcntl(fds[i], F_DUPFD_CLOEXEC, top)) < 0)
			return errno;
		fds[i] = fd;
	}
	if ((fd = fcntl(*p1, F_DUPFD_CLOEXEC, top)) < 0)
		return errno;
	*p1 = fd;
	if ((fd = fcntl(*g0, F_DUPFD_CLOEXEC, top)) < 0)
		return errno;
	*g0 = fd;
	for (int i = 0; i < nfds; i++)
		if (dup2(fds[i], SPAWN_FD0 + i) < 0) /* dup2 clears FD_CLOEXEC */
			return errno;
	return 0;
}

int spawn_begin(char *const argv[], const char *log_path, const char *cwd, const struct vmm_user *u,
		const int *fds, int nfds, struct spawn *sp, char *err, size_t errlen)
{
	int p[2], g[2], status, keep[SPAWN_FDS_MAX + 2], moved[SPAWN_FDS_MAX];
	pid_t child, vmm = -1;
	ssize_t n;

	sp->pid = 0;
	sp->go_fd = sp->status_fd = -1;
	if (nfds < 0 || nfds > SPAWN_FDS_MAX)
		return -E2BIG;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	if (pipe2(g, O_CLOEXEC)) {
		int e = -errno;
		close(p[0]);
		close(p[1]);
		return e;
	}
	child = fork();
	if (child < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		close(g[0]);
		close(g[1]);
		snprintf(err, errlen, "fork: %s", strerror(e));
		return -e;
	}
	if (child == 0) {
		/* the intermediate child. berthd's descriptors go at once (the state directory's
		 * lock and the API socket among them: a berthd started right after this one was
		 * killed must get them); a new session; the VMM's parent exits at once so the VMM
		 * is re-parented away from berthd */
		keep[0] = p[1];
		keep[1] = g[0];
		for (int i = 0; i < nfds; i++)
			keep[2 + i] = moved[i] = fds[i];
		close_all_but(keep, nfds + 2);
		setsid();
		pid_t gc = fork();
		if (gc != 0) {
			if (write(p[1], &gc, sizeof(gc)) != (ssize_t)sizeof(gc))
				_exit(127);
			_exit(gc < 0 ? 127 : 0);
		}
		int e = child_setup(log_path, cwd, u);
		if (!e)
			e = place_fds(moved, nfds, &p[1], &g[0]);
		char go;
		/* no go (berthd died before it recorded this pid): never run unmanaged */
		if (read(g[0], &go, 1) != 1)
			_exit(0);
		if (!e) {
			execv(argv[0], argv);
			e = errno;
		}
		if (write(p[1], &e, sizeof(e)) != (ssize_t)sizeof(e))
			_exit(127);
		_exit(127);
	}
	close(p[1]);
	close(g[0]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	n = read(p[0], &vmm, sizeof(vmm));
	if (n != (ssize_t)sizeof(vmm) || vmm <= 0) {
		close(p[0]);
		close(g[1]);
		snprintf(err, errlen, "fork of the VMM process failed");
		return -ECHILD;
	}
	sp->pid = vmm;
	sp->go_fd = g[1];
	sp->status_fd = p[0];
	return 0;
}

int spawn_go(struct spawn *sp, const char *what, char *err, size_t errlen)
{
	int code = 0;
	ssize_t n;
	if (write(sp->go_fd, "g", 1) != 1) {
		code = errno;
		spawn_abort(sp);
		snprintf(err, errlen, "starting %s: %s", what, strerror(code));
		return -code;
	}
	close(sp->go_fd);
	sp->go_fd = -1;
	/* the pipe closes on a successful exec; an error number arrives otherwise */
	do {
		n = read(sp->status_fd, &code, sizeof(code));
	} while (n < 0 && errno == EINTR);
	close(sp->status_fd);
	sp->status_fd = -1;
	if (n == (ssize_t)sizeof(code)) {
		snprintf(err, errlen, "starting %s: %s", what, strerror(code));
		return -code;
	}
	return 0;
}

void spawn_abort(struct spawn *sp)
{
	if (sp->go_fd >= 0)
		close(sp->go_fd);
	if (sp->status_fd >= 0)
		close(sp->status_fd);
	sp->go_fd = sp->status_fd = -1;
}

int proc_start_time(pid_t pid, uint64_t *start, bool *alive)
{
	char path[64], buf[1024];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -ENOENT;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -ENOENT;
	buf[n] = '\0';
	/* "pid (comm) S ppid ...": comm may hold spaces and ')', so start after the last ')' */
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EIO;
	p += 2;
	*alive = *p != 'Z' && *p != 'X' && *p != 'x';
	/* p is field 3 (state); field 22 is 19 fields further */
	for (int i = 3; i < 22; i++) {
		p = strchr(p, ' ');
		if (!p)
			return -EIO;
		p++;
	}
	*start = strtoull(p, NULL, 10);
	return 0;
}

pid_t proc_find_by_arg(const char *arg)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	char path[64], buf[8192];
	pid_t found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *a = buf; a < buf + n; a += strlen(a) + 1)
			if (!strcmp(a, arg)) {
				uint64_t st;
				bool alive = false;
				if (!proc_start_time((pid_t)pid, &st, &alive) && alive)
					found = (pid_t)pid;
				break;
			}
	}
	closedir(d);
	return found;
}

int pidfd_open_pid(pid_t pid)
{
	long fd = syscall(SYS_pidfd_open, pid, 0);
	if (fd < 0)
		return -errno;
	if (fcntl((int)fd, F_SETFD, FD_CLOEXEC)) {
		int e = -errno;
		close((int)fd);
		return e;
	}
	return (int)fd;
}

int pidfd_kill(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) ? -errno : 0;
}
