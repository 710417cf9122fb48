/* berth-vmm's seccomp allow-list: what the VMM may still ask the kernel once the VM is set up. */
#ifndef BERTH_VMM_SECCOMP_H
#define BERTH_VMM_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/config.h"

/* What the filter must allow beyond the run-time set every VMM needs. */
struct vmm_seccomp_needs {
	bool rebuild;	 /* --on-reboot=restart: vCPUs, memory and devices are created anew */
	bool ring_setup; /* new io_uring rings: rebuild, or checkpoint commits (--checkpoint-dir) */
	bool unix_listen; /* with rebuild: console ports listen on new unix sockets */
	bool tun_open;	  /* with rebuild: tap=/bridge= NICs: TUNSETIFF, bring the TAP up */
	bool bridge_add;  /* with rebuild: bridge= NICs: enslave the TAP (SIOCBRADDIF) */
	bool fd_map;	  /* --fd-map: mapped paths are opened by duplicating (F_DUPFD_CLOEXEC) */
};

/* Derive the needs from the configuration the VM runs with. */
void vmm_seccomp_needs(const struct vm_config *cfg, struct vmm_seccomp_needs *n);

/*
 * Build the filter and load it on every thread of the process (TSYNC); a forbidden call then
 * kills the process (KILL), is reported by name on stderr before exit status 1 (TRAP), or is
 * allowed and logged by the kernel's audit log (LOG). OFF installs nothing and returns 0.
 * Returns the number of rules, or -errno with msg filled.
 */
int vmm_seccomp_install(enum vmm_seccomp_mode mode, const struct vmm_seccomp_needs *n, char *msg,
			size_t msglen);

#endif
