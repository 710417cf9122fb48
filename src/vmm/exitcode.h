/* berth-vmm's stable exit statuses (documented in --help and berth-vmm(1)). */
#ifndef BERTH_EXITCODE_H
#define BERTH_EXITCODE_H

enum vmm_exit {
	EXIT_POWEROFF = 0,  /* the guest powered off (ACPI S5) */
	EXIT_VMM_ERROR = 1, /* host or VMM error: no /dev/kvm, missing capability, out of memory */
	EXIT_CONFIG = 2,    /* bad configuration, flag or boot file; nothing was started */
	EXIT_REBOOT = 3,    /* the guest asked for a reset and --on-reboot=exit */
	EXIT_CRASH = 4,	    /* triple fault (KVM_EXIT_SHUTDOWN) or guest-reported crash */
	EXIT_KVM_ERROR = 5, /* KVM internal error, emulation failure, failed VM entry */
	EXIT_TIMEOUT = 6,   /* --timeout expired */
	EXIT_SIGNAL = 7,    /* SIGINT/SIGTERM/SIGHUP or Ctrl-A x on the console */
	EXIT_QUIT = 8,	    /* the control socket's quit command */
	EXIT_SAVED = 9,	    /* the VM's state was saved (control socket save) and the VM ended */
};

#endif
