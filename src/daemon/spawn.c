/* Starting berth-vmm detached from berthd (own session, log file, optional unprivileged user). */
#include "daemon/spawn.h"

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

int spawn_detached(char *const argv[], const char *log_path, const char *cwd,
		   const struct vmm_user *u, pid_t *pid, char *err, size_t errlen)
{
	int p[2], status, code = 0;
	pid_t child, vmm = -1;
	ssize_t n;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	child = fork();
	if (child < 0) {
		int e = errno;
		close(p[0]);
		close(p[1]);
		snprintf(err, errlen, "fork: %s", strerror(e));
		return -e;
	}
	if (child == 0) {
		/* the intermediate child: a new session, then the VMM's parent exits at once so
		 * the VMM is re-parented away from berthd */
		close(p[0]);
		setsid();
		pid_t g = fork();
		if (g != 0) {
			if (write(p[1], &g, sizeof(g)) != (ssize_t)sizeof(g))
				_exit(127);
			_exit(g < 0 ? 127 : 0);
		}
		int e = child_setup(log_path, cwd, u);
		if (!e) {
			execv(argv[0], argv);
			e = errno;
		}
		if (write(p[1], &e, sizeof(e)) != (ssize_t)sizeof(e))
			_exit(127);
		_exit(127);
	}
	close(p[1]);
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	n = read(p[0], &vmm, sizeof(vmm));
	if (n != (ssize_t)sizeof(vmm) || vmm <= 0) {
		close(p[0]);
		snprintf(err, errlen, "fork of the VMM process failed");
		return -ECHILD;
	}
	/* the pipe closes on a successful exec; an error number arrives otherwise */
	do {
		n = read(p[0], &code, sizeof(code));
	} while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n == (ssize_t)sizeof(code)) {
		snprintf(err, errlen, "starting %s: %s", argv[0], strerror(code));
		return -code;
	}
	*pid = vmm;
	return 0;
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
