/* berth-vmm's seccomp allow-list (libseccomp), loaded on all threads once the VM is set up. */
#include "vmm/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <linux/sockios.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/util.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZER_BUILD 1
#endif
#endif
#ifndef SANITIZER_BUILD
#define SANITIZER_BUILD 0
#endif

/* Plain system calls the VMM makes after setup, any arguments. */
// clang-format off
static const int always[] = {
	/* files: disks, saved states, checkpoint layers and tree.json (created and deleted at
	 * run time), /proc/self/statm for stats */
	SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(readv), SCMP_SYS(writev), SCMP_SYS(pread64),
	SCMP_SYS(pwrite64), SCMP_SYS(preadv), SCMP_SYS(pwritev), SCMP_SYS(lseek), SCMP_SYS(close),
	SCMP_SYS(openat), SCMP_SYS(fstat), SCMP_SYS(newfstatat), SCMP_SYS(statx), SCMP_SYS(fsync),
	SCMP_SYS(fdatasync), SCMP_SYS(ftruncate), SCMP_SYS(fallocate), SCMP_SYS(getdents64),
	SCMP_SYS(mkdir), SCMP_SYS(mkdirat), SCMP_SYS(unlink), SCMP_SYS(unlinkat), SCMP_SYS(rmdir),
	SCMP_SYS(rename), SCMP_SYS(renameat), SCMP_SYS(renameat2), SCMP_SYS(readlink),
	SCMP_SYS(readlinkat), SCMP_SYS(getcwd), SCMP_SYS(access), SCMP_SYS(faccessat),
	SCMP_SYS(faccessat2),
	/* memory (mmap and mprotect: below, without PROT_EXEC); mincore: a save's resident pages */
	SCMP_SYS(munmap), SCMP_SYS(madvise), SCMP_SYS(mincore), SCMP_SYS(brk), SCMP_SYS(mremap),
	/* threads and their synchronisation (clone: below) */
	SCMP_SYS(futex), SCMP_SYS(set_robust_list), SCMP_SYS(rseq), SCMP_SYS(exit),
	SCMP_SYS(exit_group), SCMP_SYS(gettid), SCMP_SYS(getpid), SCMP_SYS(sched_yield),
	SCMP_SYS(sched_getaffinity),
	/* signals: the vCPU kick (tgkill: below), the signalfd, restartable calls */
	SCMP_SYS(rt_sigprocmask), SCMP_SYS(rt_sigreturn), SCMP_SYS(rt_sigaction),
	/* the event loops, device threads and control connections */
	SCMP_SYS(epoll_wait), SCMP_SYS(epoll_pwait), SCMP_SYS(epoll_ctl), SCMP_SYS(poll),
	SCMP_SYS(ppoll), SCMP_SYS(timerfd_settime), SCMP_SYS(timerfd_gettime), SCMP_SYS(accept4),
	SCMP_SYS(recvmsg), SCMP_SYS(sendmsg), SCMP_SYS(shutdown),
	/* io_uring on the disks' rings (made at setup, restricted to readv/writev/fsync) */
	SCMP_SYS(io_uring_enter), SCMP_SYS(io_uring_register),
	/* time, entropy (virtio-rng, MACs) */
	SCMP_SYS(clock_gettime), SCMP_SYS(clock_getres), SCMP_SYS(gettimeofday),
	SCMP_SYS(clock_nanosleep), SCMP_SYS(nanosleep), SCMP_SYS(getrandom),
};

/* Creating a VM again after a guest reboot (--on-reboot=restart). */
static const int rebuild[] = {
	SCMP_SYS(epoll_create1), SCMP_SYS(eventfd2), SCMP_SYS(timerfd_create),
};

/* ioctl requests on KVM, vCPU, TAP, block device and terminal descriptors after setup. */
static const unsigned long ioctls_always[] = {
	/* vCPUs: running, exits, crash reports, save/restore/checkpoint of their state */
	KVM_RUN, KVM_TRANSLATE, KVM_GET_REGS, KVM_SET_REGS, KVM_GET_SREGS, KVM_SET_SREGS,
	KVM_GET_MSRS, KVM_SET_MSRS, KVM_GET_XSAVE, KVM_GET_XSAVE2, KVM_SET_XSAVE, KVM_GET_XCRS,
	KVM_SET_XCRS, KVM_GET_LAPIC, KVM_SET_LAPIC, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS,
	KVM_GET_MP_STATE, KVM_SET_MP_STATE, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS,
	/* the VM: interrupts, MSI routes, doorbells, dirty logging, irqchip/PIT/clock state */
	KVM_SET_GSI_ROUTING, KVM_IRQFD, KVM_IOEVENTFD, KVM_IRQ_LINE, KVM_SET_USER_MEMORY_REGION,
	KVM_GET_DIRTY_LOG, KVM_GET_IRQCHIP, KVM_SET_IRQCHIP, KVM_GET_PIT2, KVM_SET_PIT2,
	KVM_GET_CLOCK, KVM_SET_CLOCK,
	/* /dev/kvm: capability checks, the MSR list of a save */
	KVM_CHECK_EXTENSION, KVM_GET_MSR_INDEX_LIST,
	/* TAPs: the guest's offload features; disks reopened by a checkpoint (block devices) */
	TUNSETOFFLOAD, BLKGETSIZE64, BLKSSZGET,
	/* the stdout/stdin console: isatty, raw mode and its restore at exit */
	TCGETS, TCSETS,
};

static const unsigned long ioctls_rebuild[] = {
	KVM_CREATE_VM, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR, KVM_CREATE_IRQCHIP,
	KVM_ENABLE_CAP, KVM_CREATE_PIT2, KVM_CREATE_VCPU, KVM_SET_CPUID2, TUNGETIFF,
	TUNSETVNETHDRSZ,
};

static const unsigned long ioctls_tun[] = {TUNSETIFF, SIOCGIFFLAGS, SIOCSIFFLAGS};
static const unsigned long ioctls_bridge[] = {SIOCBRADDIF, SIOCGIFINDEX};
// clang-format on

/* fcntl commands: non-blocking TAPs and ptys, descriptor flags; F_DUPFD_CLOEXEC for fd= NICs. */
static const int fcntl_cmds[] = {F_GETFD, F_SETFD, F_GETFL, F_SETFL};

#define NS_FLAGS                                                                                   \
	(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | \
	 CLONE_NEWCGROUP)

struct builder {
	scmp_filter_ctx ctx;
	int nrules;
	int err;
	const char *what; /* the rule that failed */
};

static void add(struct builder *b, uint32_t action, int nr, unsigned nargs,
		const struct scmp_arg_cmp *args)
{
	if (b->err)
		return;
	int r = seccomp_rule_add_array(b->ctx, action, nr, nargs, args);
	if (r < 0) {
		b->err = r;
		b->what = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
		return;
	}
	b->nrules++;
}

/* Argument comparisons, spelled out (libseccomp's two-argument SCMP_An leave datum_b implicit). */
static struct scmp_arg_cmp arg_eq(unsigned arg, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){.arg = arg, .op = SCMP_CMP_EQ, .datum_a = v, .datum_b = 0};
}

/* (argument & mask) == v */
static struct scmp_arg_cmp arg_masked(unsigned arg, scmp_datum_t mask, scmp_datum_t v)
{
	return (struct scmp_arg_cmp){
	    .arg = arg, .op = SCMP_CMP_MASKED_EQ, .datum_a = mask, .datum_b = v};
}

static void allow(struct builder *b, int nr)
{
	add(b, SCMP_ACT_ALLOW, nr, 0, NULL);
}

static void allow_1(struct builder *b, int nr, struct scmp_arg_cmp a)
{
	add(b, SCMP_ACT_ALLOW, nr, 1, &a);
}

static void allow_2(struct builder *b, int nr, struct scmp_arg_cmp a, struct scmp_arg_cmp c)
{
	struct scmp_arg_cmp v[2] = {a, c};
	add(b, SCMP_ACT_ALLOW, nr, 2, v);
}

/* The kernel reads an ioctl request as 32 bits: compare those, whatever the upper half holds. */
static void allow_ioctls(struct builder *b, const unsigned long *req, size_t n)
{
	for (size_t i = 0; i < n; i++)
		allow_1(b, SCMP_SYS(ioctl), arg_masked(1, 0xffffffffu, req[i]));
}

static void build(struct builder *b, const struct vmm_seccomp_needs *n)
{
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		allow(b, always[i]);
#if defined(__SANITIZE_ADDRESS__) || SANITIZER_BUILD
	/* ASan's runtime checks the alternate signal stack (sanitizer builds only; LeakSanitizer's
	 * exit-time check needs ptrace and stays forbidden: run those with detect_leaks=0) */
	allow(b, SCMP_SYS(sigaltstack));
#endif
	allow_ioctls(b, ioctls_always, ARRAY_SIZE(ioctls_always));

	/* No executable mappings: injected code cannot be made runnable. */
	allow_1(b, SCMP_SYS(mmap), arg_masked(2, PROT_EXEC, 0));
	allow_1(b, SCMP_SYS(mprotect), arg_masked(2, PROT_EXEC, 0));
	/* Threads only (pthread_create): no fork, no new namespaces. glibc falls back from clone3,
	 * whose flags sit in memory a filter cannot read, to clone when clone3 says ENOSYS. */
	allow_1(b, SCMP_SYS(clone),
		arg_masked(0, CLONE_THREAD | CLONE_VM | NS_FLAGS, CLONE_THREAD | CLONE_VM));
	add(b, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0, NULL);
	/* Signals to the VMM's own threads only (vCPU kicks, abort). */
	allow_1(b, SCMP_SYS(tgkill), arg_eq(0, (scmp_datum_t)getpid()));
	/* Thread names ("vcpu0", device threads). */
	allow_1(b, SCMP_SYS(prctl), arg_eq(0, PR_SET_NAME));
	/* send() on connected sockets (control events); no datagrams to an address of its choice */
	allow_1(b, SCMP_SYS(sendto), arg_eq(4, 0));
	/* Control clients' credentials. */
	allow_2(b, SCMP_SYS(getsockopt), arg_eq(1, SOL_SOCKET), arg_eq(2, SO_PEERCRED));
	for (size_t i = 0; i < ARRAY_SIZE(fcntl_cmds); i++)
		allow_1(b, SCMP_SYS(fcntl), arg_eq(1, (scmp_datum_t)fcntl_cmds[i]));

	/* A new ring: a checkpoint commit's copy ring, or the disks' rings of a re-created VM.
	 * Rings are not filtered by seccomp; blk_ring_init restricts ours, but a process that
	 * may create rings may create unrestricted ones. */
	if (n->ring_setup)
		allow(b, SCMP_SYS(io_uring_setup));
	/* fd= NICs of a re-created VM, and files opened through the --fd-map descriptors (a
	 * checkpoint's reopen of a disk, a backing file, the kernel after a reboot) */
	if (n->rebuild || n->fd_map)
		allow_1(b, SCMP_SYS(fcntl), arg_eq(1, F_DUPFD_CLOEXEC));
	if (!n->rebuild)
		return;
	for (size_t i = 0; i < ARRAY_SIZE(rebuild); i++)
		allow(b, rebuild[i]);
	allow_ioctls(b, ioctls_rebuild, ARRAY_SIZE(ioctls_rebuild));
	if (n->unix_listen) {
		allow_1(b, SCMP_SYS(socket), arg_eq(0, AF_UNIX));
		allow(b, SCMP_SYS(bind));
		allow(b, SCMP_SYS(listen));
	}
	/* a TAP made by name, brought up through an AF_INET datagram socket */
	if (n->tun_open) {
		allow_ioctls(b, ioctls_tun, ARRAY_SIZE(ioctls_tun));
		allow_2(b, SCMP_SYS(socket), arg_eq(0, AF_INET), arg_masked(1, 0xf, SOCK_DGRAM));
	}
	/* ... and enslaved to a bridge (if_nametoindex asks a unix datagram socket) */
	if (n->bridge_add) {
		allow_ioctls(b, ioctls_bridge, ARRAY_SIZE(ioctls_bridge));
		if (!n->unix_listen)
			allow_1(b, SCMP_SYS(socket), arg_eq(0, AF_UNIX));
	}
}

void vmm_seccomp_needs(const struct vm_config *cfg, struct vmm_seccomp_needs *n)
{
	memset(n, 0, sizeof(*n));
	n->rebuild = cfg->on_reboot == ON_REBOOT_RESTART;
	n->fd_map = cfg->nfd_map > 0;
	n->ring_setup = n->rebuild || cfg->checkpoint_dir;
	if (!n->rebuild)
		return;
	n->unix_listen = cfg->nports > 0;
	for (unsigned i = 0; i < cfg->nnics; i++) {
		n->tun_open |= cfg->nics[i].kind != NIC_FD;
		n->bridge_add |= cfg->nics[i].kind == NIC_BRIDGE;
	}
}

/* Trap mode: names resolved before the filter is loaded, so the handler only copies bytes. */
#define TRAP_NAMES 512
static char trap_names[TRAP_NAMES][24];

static size_t put_str(char *buf, size_t at, size_t len, const char *s)
{
	while (*s && at < len)
		buf[at++] = *s++;
	return at;
}

static size_t put_num(char *buf, size_t at, size_t len, long v)
{
	char d[24];
	int n = 0;
	unsigned long u = v < 0 ? (unsigned long)-v : (unsigned long)v;
	do
		d[n++] = (char)('0' + u % 10);
	while ((u /= 10) && n < (int)sizeof(d));
	if (v < 0 && at < len)
		buf[at++] = '-';
	while (n && at < len)
		buf[at++] = d[--n];
	return at;
}

/* Async-signal-safe: name the call and the thread, then exit with status 1. */
static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	char buf[200];
	size_t n = 0, len = sizeof(buf) - 1;
	int nr = si->si_syscall;
	(void)sig;
	(void)uc;
	n = put_str(buf, n, len, "berth-vmm: error: seccomp: forbidden system call ");
	n = put_str(buf, n, len,
		    nr >= 0 && nr < TRAP_NAMES && trap_names[nr][0] ? trap_names[nr] : "(unknown)");
	n = put_str(buf, n, len, " (nr ");
	n = put_num(buf, n, len, nr);
	n = put_str(buf, n, len, ", arch 0x");
	for (int s = 28; s >= 0; s -= 4)
		buf[n < len ? n++ : n] = "0123456789abcdef"[(si->si_arch >> s) & 0xf];
	n = put_str(buf, n, len, ") in thread ");
	n = put_num(buf, n, len, gettid());
	n = put_str(buf, n, len, "; exiting\n");
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
	_exit(1);
}

static int trap_setup(void)
{
	for (int i = 0; i < TRAP_NAMES; i++) {
		char *s = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, i);
		if (s)
			snprintf(trap_names[i], sizeof(trap_names[i]), "%s", s);
		free(s);
	}
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGSYS);
	return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int vmm_seccomp_install(enum vmm_seccomp_mode mode, const struct vmm_seccomp_needs *n, char *msg,
			size_t msglen)
{
	uint32_t deny;
	int r;
	switch (mode) {
	case VMM_SECCOMP_OFF:
		return 0;
	case VMM_SECCOMP_TRAP:
		deny = SCMP_ACT_TRAP;
		break;
	case VMM_SECCOMP_LOG:
		deny = SCMP_ACT_LOG;
		break;
	default:
		deny = SCMP_ACT_KILL_PROCESS;
		break;
	}
	if (mode == VMM_SECCOMP_TRAP && (r = trap_setup())) {
		snprintf(msg, msglen, "cannot install the SIGSYS handler: %s", strerror(-r));
		return r;
	}
	struct builder b = {.ctx = seccomp_init(deny)};
	if (!b.ctx) {
		snprintf(msg, msglen, "seccomp_init failed");
		return -ENOMEM;
	}
	/* Another ABI (x32, i386 via int 0x80) gets the same answer as a forbidden call. */
	if ((r = seccomp_attr_set(b.ctx, SCMP_FLTATR_ACT_BADARCH, deny)) ||
	    (r = seccomp_attr_set(b.ctx, SCMP_FLTATR_CTL_TSYNC, 1))) {
		snprintf(msg, msglen, "seccomp_attr_set: %s", strerror(-r));
		goto out;
	}
	build(&b, n);
	if ((r = b.err)) {
		snprintf(msg, msglen, "cannot add the rule for %s: %s", b.what ? b.what : "?",
			 strerror(-r));
		free((void *)b.what);
		goto out;
	}
	if ((r = seccomp_load(b.ctx))) {
		snprintf(msg, msglen, "cannot load the filter: %s", strerror(-r));
		goto out;
	}
	r = b.nrules;
out:
	seccomp_release(b.ctx);
	return r;
}
