/* berth-vmm: run one VM from flags or a JSON config; exit status tells how the guest ended. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "block/block.h"
#include "common/evloop.h"
#include "common/log.h"
#include "common/fdmap.h"
#include "common/util.h"
#include "vmm/boot.h"
#include "vmm/config.h"
#include "vmm/control.h"
#include "vmm/exitcode.h"
#include "vmm/layout.h"
#include "vmm/seccomp.h"
#include "vmm/vm.h"
#include "vmm/vmstate.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

struct runner {
	struct vm *vm;		  /* the running VM, NULL between runs */
	enum stop_reason pending; /* a stop that arrived while no VM ran */
	struct control *ctl;	  /* --control, or NULL */
	bool ran;		  /* a VM was started (a restart after a reboot is not paused) */
	bool sandboxed;		  /* the seccomp filter is loaded (it stays for later runs) */
};

static void request_stop(struct runner *rn, enum stop_reason why)
{
	if (rn->vm)
		vm_request_stop(rn->vm, why);
	else if (rn->pending == STOP_NONE)
		rn->pending = why;
}

static void on_control_stop(void *opaque, enum stop_reason why)
{
	request_stop(opaque, why);
}

static void on_signal(void *opaque, int fd, uint32_t events)
{
	struct runner *rn = opaque;
	struct signalfd_siginfo si;
	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	log_info(NULL, "stopping the VM: received %s", strsignal((int)si.ssi_signo));
	request_stop(rn, STOP_SIGNAL);
}

static void on_timeout(void *opaque, int fd, uint32_t events)
{
	struct runner *rn = opaque;
	uint64_t n;
	(void)events;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return;
	log_err(NULL, "stopping the VM: --timeout expired");
	request_stop(rn, STOP_TIMEOUT);
}

static void on_console_quit(void *opaque)
{
	log_info(NULL, "stopping the VM: Ctrl-A x on the console");
	request_stop(opaque, STOP_SIGNAL);
}

static void kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static int exit_status_of(enum stop_reason r)
{
	switch (r) {
	case STOP_POWEROFF:
		return EXIT_POWEROFF;
	case STOP_REBOOT:
		return EXIT_REBOOT;
	case STOP_CRASH:
		return EXIT_CRASH;
	case STOP_KVM_ERROR:
		return EXIT_KVM_ERROR;
	case STOP_TIMEOUT:
		return EXIT_TIMEOUT;
	case STOP_SIGNAL:
		return EXIT_SIGNAL;
	case STOP_QUIT:
		return EXIT_QUIT;
	case STOP_SAVED:
		return EXIT_SAVED;
	default:
		return EXIT_VMM_ERROR;
	}
}

/* Load the seccomp filter once, after the first VM is set up and before its threads run. */
static int sandbox(struct runner *rn, const struct vm_config *cfg)
{
	struct vmm_seccomp_needs n;
	char msg[300];
	if (rn->sandboxed)
		return 0;
	if (cfg->seccomp == VMM_SECCOMP_OFF) {
		log_warn(NULL, "seccomp: off (--seccomp off): the VMM may make any system call");
		rn->sandboxed = true;
		return 0;
	}
	vmm_seccomp_needs(cfg, &n);
	int r = vmm_seccomp_install(cfg->seccomp, &n, msg, sizeof(msg));
	if (r < 0) {
		log_err(NULL, "seccomp: %s", msg);
		return r;
	}
	log_info(NULL, "seccomp: %s mode, %d rules loaded on all threads%s",
		 config_seccomp_name(cfg->seccomp), r,
		 n.rebuild ? " (VM re-creation allowed for --on-reboot=restart)" : "");
	rn->sandboxed = true;
	return 0;
}

/* Create the VM, load it (boot image or saved state) and run it until it stops; returns why. */
static enum stop_reason run_once(struct runner *rn, struct kvm_host *host,
				 const struct vm_config *cfg, const struct mem_layout *layout,
				 const struct boot_image *img, struct serial_backend *be,
				 struct evloop *loop, const struct vmstate *saved)
{
	struct vm vm;
	enum stop_reason why = STOP_VMM_ERROR;
	char msg[600];
	if (vm_create(&vm, host, cfg, layout, be, loop, saved ? saved->memory_path : NULL))
		goto out;
	if (saved && vmstate_apply(&vm, saved, msg, sizeof(msg))) {
		log_err(NULL, "--restore '%s': %s", cfg->restore, msg);
		goto out;
	}
	if (!saved && vm_load(&vm, img))
		goto out;
	evloop_rearm(loop);
	rn->vm = &vm;
	if (control_attach(rn->ctl, &vm)) {
		rn->vm = NULL;
		goto out;
	}
	if (rn->pending != STOP_NONE)
		vm_request_stop(&vm, rn->pending);
	if (cfg->start_paused && !rn->ran) {
		vm_hold_paused(&vm);
		control_hold_paused(rn->ctl, !saved);
		log_info(NULL, "VM set up paused (--start-paused): it runs on the control socket's "
			       "resume");
	}
	rn->ran = true;
	if (sandbox(rn, cfg))
		vm_request_stop(&vm, STOP_VMM_ERROR);
	else if (vm_start(&vm) == 0) {
		int r = evloop_run(loop);
		if (r < 0) {
			log_err(NULL, "event loop failed: %s", strerror(-r));
			vm_request_stop(&vm, STOP_VMM_ERROR);
		}
	}
	vm_stop_vcpus(&vm);
	why = (enum stop_reason)vm.stop_reason;
	rn->vm = NULL;
	control_attach(rn->ctl, NULL);
out:
	vm_destroy(&vm);
	return why;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	struct cfg_error cerr;
	struct boot_error berr;
	struct mem_layout layout;
	struct boot_image img;
	struct kvm_host host = {.fd = -1};
	struct serial_backend be[2];
	struct evloop *loop = NULL;
	struct runner rn = {0};
	struct vmstate *saved = NULL;
	bool have_img = false;
	int status = EXIT_VMM_ERROR, sfd = -1, tfd = -1;
	char msg[256];

	log_init("berth-vmm", NULL, LOG_INFO);
	config_defaults(&cfg);
	int r = config_parse_args(&cfg, argc, argv, &cerr);
	if (r == CFG_HELP) {
		config_usage(stdout);
		config_free(&cfg);
		return 0;
	}
	if (r == CFG_VERSION) {
		printf("berth-vmm %s\n", BERTH_VERSION);
		config_free(&cfg);
		return 0;
	}
	if (r < 0) {
		fprintf(stderr, "berth-vmm: error: %s\n", cerr.msg);
		config_free(&cfg);
		return EXIT_CONFIG;
	}
	/* the files handed over open: every later open of these paths (disks, backing files,
	 * kernel, initrd, also after a guest reboot) duplicates the descriptor */
	for (unsigned i = 0; i < cfg.nfd_map; i++)
		if (fdmap_add(cfg.fd_map[i].path, cfg.fd_map[i].fd, msg, sizeof(msg))) {
			fprintf(stderr, "berth-vmm: error: --fd-map %s\n", msg);
			config_free(&cfg);
			return EXIT_CONFIG;
		}
	log_init("berth-vmm", cfg.name, cfg.log_level);
	if (layout_compute(cfg.mem_bytes, &layout)) {
		fprintf(stderr, "berth-vmm: error: --memory: invalid size\n");
		config_free(&cfg);
		return EXIT_CONFIG;
	}
	memset(&img, 0, sizeof(img));
	if (cfg.restore) {
		if (vmstate_read(cfg.restore, &saved, msg, sizeof(msg))) {
			fprintf(stderr, "berth-vmm: error: --restore %s\n", msg);
			config_free(&cfg);
			return EXIT_CONFIG;
		}
		if (saved->ram_bytes != layout.ram_bytes) {
			fprintf(stderr,
				"berth-vmm: error: --restore '%s': the saved RAM is %llu "
				"bytes, --memory asks for %llu\n",
				cfg.restore, (unsigned long long)saved->ram_bytes,
				(unsigned long long)layout.ram_bytes);
			vmstate_free(saved);
			config_free(&cfg);
			return EXIT_CONFIG;
		}
		/* The kernel is only needed if the guest reboots later. */
		have_img = boot_probe(&cfg, &layout, &img, &berr) == 0;
		if (!have_img)
			log_warn(NULL, "%s: a guest reboot will end the VM", berr.msg);
	} else if (boot_probe(&cfg, &layout, &img, &berr)) {
		fprintf(stderr, "berth-vmm: error: %s\n", berr.msg);
		config_free(&cfg);
		return EXIT_CONFIG;
	} else {
		have_img = true;
	}
	for (unsigned i = 0; i < cfg.ndisks; i++) { /* can each disk be opened as asked? */
		char dmsg[600];
		const struct disk_cfg *d = &cfg.disks[i];
		if (blk_check(d->path, d->format, d->readonly, d->cache_none, dmsg, sizeof(dmsg))) {
			fprintf(stderr, "berth-vmm: error: --disk %s\n", dmsg);
			status = EXIT_CONFIG;
			goto out_img;
		}
	}
	for (unsigned i = 0; i < cfg.nnics; i++) { /* do the named host resources exist? */
		const struct nic_cfg *n = &cfg.nics[i];
		char path[64];
		snprintf(path, sizeof(path), "/sys/class/net/%s/bridge", n->ifname);
		if (n->kind == NIC_BRIDGE && access(path, F_OK) != 0) {
			fprintf(stderr, "berth-vmm: error: --net bridge=%s: no such bridge\n",
				n->ifname);
			status = EXIT_CONFIG;
			goto out_img;
		}
		if (n->kind == NIC_FD && fcntl(n->fd, F_GETFD) < 0) {
			fprintf(stderr,
				"berth-vmm: error: --net fd=%d: not an open file descriptor\n",
				n->fd);
			status = EXIT_CONFIG;
			goto out_img;
		}
	}
	if (cfg.print_config) { /* validated like --check; stdout holds only the JSON */
		char *j = config_to_json(&cfg);
		printf("%s\n", j ? j : "{}");
		free(j);
		status = 0;
		goto out_img;
	}
	if (cfg.check_only) {
		printf("berth-vmm: configuration OK: %s, %u vCPU(s), %llu MiB\n",
		       saved			? "saved state"
		       : img.mode == BOOT_LINUX ? "Linux bzImage kernel"
						: "PVH ELF kernel",
		       cfg.cpus, (unsigned long long)(cfg.mem_bytes >> 20));
		status = 0;
		goto out_img;
	}
	if (kvm_host_open(&host, msg, sizeof(msg))) {
		log_err(NULL, "%s", msg);
		goto out_img;
	}
	if ((int)cfg.cpus > host.max_vcpus) {
		fprintf(stderr, "berth-vmm: error: --cpus %u: KVM on this host allows at most %d\n",
			cfg.cpus, host.max_vcpus);
		status = EXIT_CONFIG;
		goto out_host;
	}

	/* Signals: SIGINT/SIGTERM/SIGHUP arrive through a signalfd; SIGUSR1 kicks vCPUs. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	struct sigaction sa = {.sa_handler = kick_handler};
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigdelset(&set, SIGUSR1);
	sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);

	for (unsigned i = 0; i < 2; i++) {
		if (serial_backend_open(&be[i], &cfg.serial[i], i ? "serial1" : "serial0")) {
			fprintf(stderr, "berth-vmm: error: --serial%s: cannot open the backend\n",
				i ? "2" : "");
			if (i)
				serial_backend_close(&be[0]);
			status = EXIT_CONFIG;
			goto out_host;
		}
		be[i].quit = on_console_quit;
		be[i].quit_opaque = &rn;
	}
	if ((r = evloop_new(&loop)) ||
	    (sfd >= 0 && (r = evloop_add(loop, sfd, EPOLLIN, on_signal, &rn))) ||
	    (r = serial_backend_attach(&be[0], loop)) ||
	    (r = serial_backend_attach(&be[1], loop))) {
		log_err(NULL, "cannot set up the event loop: %s", strerror(-r));
		goto out_serial;
	}
	if (cfg.control &&
	    control_open(&rn.ctl, cfg.control, loop, &cfg, on_control_stop, &rn) < 0) {
		fprintf(stderr,
			"berth-vmm: error: --control '%s': cannot serve the control socket\n",
			cfg.control);
		status = EXIT_CONFIG;
		goto out_serial;
	}
	if (cfg.timeout_s) {
		tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		struct itimerspec its = {.it_value.tv_sec = cfg.timeout_s};
		if (tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) < 0 ||
		    evloop_add(loop, tfd, EPOLLIN, on_timeout, &rn) < 0) {
			log_err(NULL, "cannot arm --timeout: %s", strerror(errno));
			goto out_serial;
		}
	}

	for (;;) {
		enum stop_reason why = run_once(&rn, &host, &cfg, &layout, &img, be, loop, saved);
		vmstate_free(saved); /* a restart after a reboot boots the kernel */
		saved = NULL;
		if (why == STOP_REBOOT && cfg.on_reboot == ON_REBOOT_RESTART &&
		    rn.pending == STOP_NONE && have_img) {
			log_info(NULL, "guest rebooted: restarting the VM (--on-reboot=restart)");
			control_event(rn.ctl, "reset", json_pack("{s:s}", "reason", "reboot"));
			continue;
		}
		status = exit_status_of(why);
		control_event(rn.ctl, "shutdown",
			      json_pack("{s:s, s:i}", "reason", stop_reason_name(why),
					"exit_status", status));
		if (why == STOP_REBOOT)
			log_info(NULL, "guest rebooted: exiting with status %d (--on-reboot=exit)",
				 status);
		break;
	}

out_serial:
	control_close(rn.ctl);
	serial_backend_close(&be[0]);
	serial_backend_close(&be[1]);
	evloop_free(loop);
	if (sfd >= 0)
		close(sfd);
	if (tfd >= 0)
		close(tfd);
out_host:
	kvm_host_close(&host);
out_img:
	vmstate_free(saved);
	boot_image_free(&img);
	config_free(&cfg);
	return status;
}
