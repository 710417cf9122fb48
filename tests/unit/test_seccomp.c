/* Unit tests for berth-vmm's seccomp filter: each case forks a child that loads the filter the VMM
 * builds, makes one system call, and reports; forbidden calls must end the child as the mode says
 * (SIGSYS for kill, named on stderr and status 1 for trap, allowed for log), allowed ones work. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <net/if.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/sched.h>

#include "block/block.h"
#include "vmm/seccomp.h"

/* A call returns 0 when it did what an allowed call does, nonzero otherwise. */
typedef int (*call_fn)(void);

struct outcome {
	int status; /* waitpid status */
	char err[2048];
};

static void run(enum vmm_seccomp_mode mode, const struct vmm_seccomp_needs *n, call_fn call,
		struct outcome *o)
{
	int p[2];
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit no_core = {0, 0};
		setrlimit(RLIMIT_CORE, &no_core); /* SIGSYS dumps core by default */
		dup2(p[1], STDERR_FILENO);
		close(p[0]);
		char msg[300];
		int r = vmm_seccomp_install(mode, n, msg, sizeof(msg));
		if (r < 0) {
			dprintf(STDERR_FILENO, "install: %s\n", msg);
			_exit(20);
		}
		if (mode != VMM_SECCOMP_OFF && r < 50) {
			dprintf(STDERR_FILENO, "only %d rules\n", r);
			_exit(21);
		}
		_exit(call() ? 10 : 0);
	}
	close(p[1]);
	size_t len = 0;
	ssize_t k;
	while ((k = read(p[0], o->err + len, sizeof(o->err) - 1 - len)) > 0)
		len += (size_t)k;
	o->err[len] = 0;
	close(p[0]);
	assert_int_equal(waitpid(pid, &o->status, 0), pid);
}

static const struct vmm_seccomp_needs plain; /* --on-reboot=exit */

static void expect_killed(call_fn call, const struct vmm_seccomp_needs *n)
{
	struct outcome o;
	run(VMM_SECCOMP_KILL, n, call, &o);
	if (!WIFSIGNALED(o.status) || WTERMSIG(o.status) != SIGSYS)
		fail_msg("expected death by SIGSYS, got status 0x%x, stderr: %s", o.status, o.err);
}

static void expect_allowed(call_fn call, const struct vmm_seccomp_needs *n)
{
	struct outcome o;
	run(VMM_SECCOMP_KILL, n, call, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
		fail_msg("expected the call to work, got status 0x%x, stderr: %s", o.status, o.err);
}

/* Forbidden calls. */
static int do_execve(void)
{
	char *argv[] = {"/bin/true", NULL};
	execve("/bin/true", argv, NULL);
	return 1;
}

static int do_socket_inet(void)
{
	return socket(AF_INET, SOCK_STREAM, 0) < 0;
}

static int do_socket_unix(void)
{
	return socket(AF_UNIX, SOCK_STREAM, 0) < 0;
}

static int do_socket_inet_dgram(void)
{
	return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) < 0;
}

static int do_ptrace(void)
{
	return ptrace(PTRACE_TRACEME, 0, NULL, NULL) < 0;
}

static int do_mount(void)
{
	return mount("none", "/nonexistent", "tmpfs", 0, NULL) < 0;
}

static int do_fork(void)
{
	pid_t p = fork();
	if (p == 0)
		_exit(0);
	return p < 0;
}

static int do_unshare(void)
{
	return unshare(CLONE_NEWNET) < 0;
}

static int do_clone_newns_thread(void)
{
	/* a thread-like clone that also asks for a new namespace; never runs the child */
	long r = syscall(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND | CLONE_NEWNS, NULL,
			 NULL, NULL, 0);
	return r < 0;
}

static int do_mmap_exec(void)
{
	return mmap(NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) ==
	       MAP_FAILED;
}

static int do_mprotect_exec(void)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED || mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0;
}

static int do_kill_parent(void)
{
	return kill(getppid(), 0) < 0;
}

static int do_tgkill_other(void)
{
	return syscall(SYS_tgkill, getppid(), getppid(), 0) < 0;
}

static int do_setuid(void)
{
	return setuid(0) < 0;
}

static int do_ioctl_tiocsti(void)
{
	char c = 'x';
	return ioctl(STDIN_FILENO, TIOCSTI, &c) < 0;
}

static int do_ioctl_create_vm(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || ioctl(fd, KVM_CREATE_VM, 0) < 0;
}

/* KVM_RUN's number with bits set above the 32 the kernel reads must not slip another request by
 * the filter (the filter compares the low 32 bits, as the kernel does). */
static int do_ioctl_high_bits(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || syscall(SYS_ioctl, fd, 0x100000000UL | TIOCSTI, 0) < 0;
}

static int do_fcntl_setlk(void)
{
	struct flock fl = {.l_type = F_WRLCK};
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || fcntl(fd, F_SETLK, &fl) < 0;
}

/* Allowed calls: they must work (or fail the way the kernel says, not by the filter). */
static int test_pipe[2]; /* pipe2 is a setup-time call: the pair is made before the filter */

static int do_fcntl_dupfd_cloexec(void)
{
	int fd = fcntl(1, F_DUPFD_CLOEXEC, 0);
	return fd < 0 || close(fd);
}

/* what fdmap_open does besides the dup: read the access mode, set and clear a status flag (O_DIRECT
 * there; the filter checks the command, not the flag) */
static int do_fcntl_getfl_setfl(void)
{
	int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC),
	    fl = fd < 0 ? -1 : fcntl(fd, F_GETFL);
	int r = fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) || fcntl(fd, F_SETFL, fl);
	if (fd >= 0)
		close(fd);
	return r;
}

static int do_pipe_rw(void)
{
	char b = 0;
	return write(test_pipe[1], "k", 1) != 1 || read(test_pipe[0], &b, 1) != 1 || b != 'k';
}

static int do_file_cycle(void)
{
	char path[] = "/tmp/berth-seccomp-XXXXXX";
	char tmp[64], back = 0;
	/* create, write, fsync, rename, read back, delete: what save and checkpoints do */
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = openat(AT_FDCWD, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return 1;
	int bad = pwrite(fd, "z", 1, 0) != 1 || fsync(fd) < 0 || rename(tmp, path) < 0 ||
		  pread(fd, &back, 1, 0) != 1 || back != 'z' || ftruncate(fd, 4096) < 0;
	close(fd);
	return bad || unlink(path) < 0 || mkdir(tmp, 0700) < 0 || rmdir(tmp) < 0;
}

static int do_kvm_ioctl(void)
{
	/* an allowed request on a descriptor that is not KVM's: the kernel answers ENOTTY */
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) != -1 || errno != ENOTTY;
}

static int do_ioctl_create_vm_ok(void)
{
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || ioctl(fd, KVM_CREATE_VM, 0) != -1 || errno != ENOTTY;
}

static int do_ioctl_siocgifflags(void)
{
	/* the allowed request on a descriptor that is not a socket: ENOTTY from the kernel */
	struct ifreq ifr = {0};
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) != -1 || errno != ENOTTY;
}

static void *thread_main(void *arg)
{
	prctl(PR_SET_NAME, "probe");
	return arg;
}

static int do_thread(void)
{
	pthread_t t;
	void *ret = NULL;
	return pthread_create(&t, NULL, thread_main, (void *)0x1) || pthread_join(t, &ret) ||
	       ret != (void *)0x1;
}

static int do_clone3(void)
{
	/* glibc falls back to clone when clone3 says ENOSYS */
	long r = syscall(SYS_clone3, NULL, 0);
	return !(r == -1 && errno == ENOSYS);
}

static int do_mmap_rw(void)
{
	void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 1;
	memset(p, 1, 1 << 20);
	return madvise(p, 1 << 20, MADV_DONTNEED) < 0 || munmap(p, 1 << 20) < 0;
}

static int do_tgkill_self(void)
{
	signal(SIGUSR1, SIG_IGN);
	return syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1) < 0;
}

static int do_getrandom_clock(void)
{
	char b[8];
	struct timespec ts;
	return getrandom(b, sizeof(b), 0) != sizeof(b) ||
	       clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0;
}

static int do_ring_setup(void)
{
	struct io_uring ring;
	int r = io_uring_queue_init(4, &ring, 0);
	if (!r)
		io_uring_queue_exit(&ring);
	return r != 0;
}

static int do_blk_ring_setup(void)
{
	struct io_uring ring;
	int r = blk_ring_init(&ring, 4, -1);
	if (!r)
		io_uring_queue_exit(&ring);
	return r != 0;
}

static void forbidden_calls_kill(void **state)
{
	(void)state;
#define CALL(fn)                                                                                   \
	{                                                                                          \
#fn, fn                                                                            \
	}
	static const struct {
		const char *name;
		call_fn fn;
	} calls[] = {
	    CALL(do_execve),	      CALL(do_socket_inet),
	    CALL(do_socket_unix),     CALL(do_ptrace),
	    CALL(do_mount),	      CALL(do_fork),
	    CALL(do_unshare),	      CALL(do_clone_newns_thread),
	    CALL(do_mmap_exec),	      CALL(do_mprotect_exec),
	    CALL(do_kill_parent),     CALL(do_tgkill_other),
	    CALL(do_setuid),	      CALL(do_ioctl_tiocsti),
	    CALL(do_ioctl_create_vm), CALL(do_ioctl_high_bits),
	    CALL(do_fcntl_setlk),     CALL(do_ring_setup),
	};
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		print_message("forbidden: %s\n", calls[i].name);
		expect_killed(calls[i].fn, &plain);
	}
}

static void allowed_calls_work(void **state)
{
	(void)state;
	assert_int_equal(pipe(test_pipe), 0);
	static const struct {
		const char *name;
		call_fn fn;
	} calls[] = {
	    CALL(do_pipe_rw), CALL(do_file_cycle), CALL(do_kvm_ioctl),	 CALL(do_thread),
	    CALL(do_clone3),  CALL(do_mmap_rw),	   CALL(do_tgkill_self), CALL(do_getrandom_clock),
	};
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		print_message("allowed: %s\n", calls[i].name);
		expect_allowed(calls[i].fn, &plain);
	}
	close(test_pipe[0]);
	close(test_pipe[1]);
}

static void trap_names_the_call(void **state)
{
	(void)state;
	struct outcome o;
	run(VMM_SECCOMP_TRAP, &plain, do_execve, &o);
	assert_true(WIFEXITED(o.status));
	assert_int_equal(WEXITSTATUS(o.status), 1);
	assert_contains(o.err, "seccomp: forbidden system call execve (nr 59");
	run(VMM_SECCOMP_TRAP, &plain, do_socket_inet, &o);
	assert_true(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 1);
	assert_contains(o.err, "forbidden system call socket (nr 41");
	/* allowed calls run as in kill mode */
	run(VMM_SECCOMP_TRAP, &plain, do_thread, &o);
	assert_true(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0);
}

static void log_allows(void **state)
{
	(void)state;
	struct outcome o;
	run(VMM_SECCOMP_LOG, &plain, do_socket_inet, &o);
	if (!WIFEXITED(o.status) || WEXITSTATUS(o.status) != 0)
		fail_msg("log mode: status 0x%x, stderr: %s", o.status, o.err);
}

static void off_installs_nothing(void **state)
{
	(void)state;
	struct outcome o;
	run(VMM_SECCOMP_OFF, &plain, do_socket_inet, &o);
	assert_true(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0);
}

static void rebuild_needs_widen_only_what_they_say(void **state)
{
	(void)state;
	struct vmm_seccomp_needs r = {.rebuild = true};
	expect_allowed(do_ioctl_create_vm_ok, &r);
	expect_killed(do_socket_unix, &r); /* no console ports */
	r.unix_listen = true;
	expect_allowed(do_socket_unix, &r);
	expect_killed(do_socket_inet_dgram, &r); /* no tap= or bridge= NIC */
	r.unix_listen = false;
	r.bridge_add = true;
	expect_allowed(do_socket_unix, &r); /* if_nametoindex */
	r.tun_open = true;
	expect_allowed(do_socket_inet_dgram, &r); /* bringing the TAP up */
	expect_allowed(do_ioctl_siocgifflags, &r);
	r.tun_open = false;
	expect_killed(do_ioctl_siocgifflags, &r);
	r.tun_open = true;
	expect_killed(do_socket_inet, &r); /* stream sockets never */
	expect_killed(do_execve, &r);
	expect_killed(do_fork, &r);
}

/* One request on the ring; its completion's result. */
static int ring_one(struct io_uring *ring, void (*prep)(struct io_uring_sqe *, void *), void *arg)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	assert_non_null(sqe);
	prep(sqe, arg);
	assert_int_equal(io_uring_submit(ring), 1);
	assert_int_equal(io_uring_wait_cqe(ring, &cqe), 0);
	int res = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	return res;
}

static void prep_openat(struct io_uring_sqe *sqe, void *arg)
{
	(void)arg;
	io_uring_prep_openat(sqe, AT_FDCWD, "/dev/null", O_RDONLY, 0);
}

static void prep_readv(struct io_uring_sqe *sqe, void *arg)
{
	static char buf[64];
	static struct iovec iov = {buf, sizeof(buf)};
	io_uring_prep_readv(sqe, *(int *)arg, &iov, 1, 0);
}

static void prep_socket(struct io_uring_sqe *sqe, void *arg)
{
	(void)arg;
	/* IORING_OP_SOCKET, by hand: liburing 2.3 may lack its helper */
	io_uring_prep_rw(IORING_OP_SOCKET, sqe, AF_INET, NULL, SOCK_STREAM, 0);
}

static void prep_readv_linked(struct io_uring_sqe *sqe, void *arg)
{
	prep_readv(sqe, arg);
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
}

/* The rings the disks and checkpoint commits use do what the drivers ask and nothing else: a
 * taken-over VMM cannot open files or sockets through them, behind seccomp's back. */
static void blk_rings_are_restricted(void **state)
{
	(void)state;
	struct io_uring ring;
	int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(blk_ring_init(&ring, 8, -1), 0);
	assert_int_equal(ring_one(&ring, prep_readv, &fd), 64);
	assert_int_equal(ring_one(&ring, prep_openat, NULL), -EACCES);
	assert_int_equal(ring_one(&ring, prep_socket, NULL), -EACCES);
	assert_int_equal(ring_one(&ring, prep_readv_linked, &fd), -EACCES); /* no SQE flags */
	int efd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(io_uring_register_eventfd(&ring, efd), -EACCES); /* no registration */
	io_uring_queue_exit(&ring);
	close(efd);
	/* an unrestricted ring would have opened it: the test can tell */
	assert_int_equal(io_uring_queue_init(8, &ring, 0), 0);
	int r = ring_one(&ring, prep_openat, NULL);
	assert_true(r >= 0);
	close(r);
	io_uring_queue_exit(&ring);
	close(fd);
}

/* --fd-map: mapped paths open by duplicating their descriptor, at any time (a checkpoint's reopen)
 */
static void fd_map_allows_dup_cloexec(void **state)
{
	(void)state;
	struct vmm_seccomp_needs n = {0};
	expect_killed(do_fcntl_dupfd_cloexec, &n);
	expect_allowed(do_fcntl_getfl_setfl, &n);
	n.fd_map = true;
	expect_allowed(do_fcntl_dupfd_cloexec, &n);
	expect_killed(do_fcntl_setlk, &n);
	expect_killed(do_execve, &n);
}

static void ring_setup_only_when_needed(void **state)
{
	(void)state;
	struct vmm_seccomp_needs n = {0};
	expect_killed(do_blk_ring_setup, &n);
	n.ring_setup = true;
	expect_allowed(do_blk_ring_setup, &n);
}

static void needs_follow_the_config(void **state)
{
	(void)state;
	struct vm_config c;
	struct vmm_seccomp_needs n;
	config_defaults(&c);
	c.nports = 1;
	c.nnics = 2;
	c.nics[0].kind = NIC_FD;
	c.nics[1].kind = NIC_BRIDGE;
	vmm_seccomp_needs(&c, &n);
	assert_false(n.rebuild || n.ring_setup || n.unix_listen || n.tun_open || n.bridge_add ||
		     n.fd_map);
	c.nfd_map = 1;
	vmm_seccomp_needs(&c, &n);
	assert_true(n.fd_map);
	assert_false(n.rebuild || n.ring_setup || n.unix_listen || n.tun_open || n.bridge_add);
	c.nfd_map = 0;
	c.checkpoint_dir = "/var/lib/berth/ckpt";
	vmm_seccomp_needs(&c, &n);
	assert_true(n.ring_setup); /* a checkpoint commit makes a copy ring */
	assert_false(n.rebuild || n.unix_listen || n.tun_open || n.bridge_add);
	c.checkpoint_dir = NULL;
	c.on_reboot = ON_REBOOT_RESTART;
	vmm_seccomp_needs(&c, &n);
	assert_true(n.rebuild && n.ring_setup && n.unix_listen && n.tun_open && n.bridge_add);
	c.nics[1].kind = NIC_FD;
	c.nports = 0;
	vmm_seccomp_needs(&c, &n);
	assert_true(n.rebuild);
	assert_false(n.unix_listen || n.tun_open || n.bridge_add);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(forbidden_calls_kill),
	    cmocka_unit_test(allowed_calls_work),
	    cmocka_unit_test(trap_names_the_call),
	    cmocka_unit_test(log_allows),
	    cmocka_unit_test(off_installs_nothing),
	    cmocka_unit_test(rebuild_needs_widen_only_what_they_say),
	    cmocka_unit_test(needs_follow_the_config),
	    cmocka_unit_test(blk_rings_are_restricted),
	    cmocka_unit_test(ring_setup_only_when_needed),
	    cmocka_unit_test(fd_map_allows_dup_cloexec),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
