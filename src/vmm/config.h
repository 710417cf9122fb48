/* berth-vmm configuration: one struct filled from a JSON file and/or flags, validated before
 * anything runs. */
#ifndef BERTH_CONFIG_H
#define BERTH_CONFIG_H

#include "common/fdmap.h"
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "block/block.h"
#include "common/log.h"

#define VM_NAME_MAX 63
#define VM_CPUS_MAX 1024 /* APIC IDs from 255 on are x2APIC (MADT type 9, KVM_CAP_X2APIC_API) */

#define VM_DISKS_MAX 8
#define DISK_SERIAL_MAX 20 /* virtio-blk GET_ID returns 20 bytes */

struct disk_cfg {
	char *path;
	enum blk_format format; /* auto (probe), raw or qcow2 */
	bool readonly;
	bool cache_none; /* O_DIRECT: bypass the host page cache */
	char serial[DISK_SERIAL_MAX + 1];
};

#define VM_CONSOLE_PORTS_MAX 16
#define CONSOLE_PORT_NAME_MAX 63

struct console_port_cfg {
	char name[CONSOLE_PORT_NAME_MAX + 1];
	char *socket; /* unix socket path the host side listens on */
};

#define VM_NICS_MAX 4
#define UNIX_PATH_MAX_LEN 107 /* sun_path holds 108 bytes with the NUL */

enum nic_kind { NIC_TAP, NIC_BRIDGE, NIC_FD };

struct nic_cfg {
	enum nic_kind kind;
	char ifname[16]; /* tap=NAME, or bridge=NAME */
	int fd;		 /* fd=N: an open TAP handed over by the parent */
	uint8_t mac[6];
	bool mac_set; /* else generated (locally administered) */
};

enum boot_mode { BOOT_AUTO = 0, BOOT_LINUX, BOOT_PVH };
enum serial_kind { SERIAL_NONE = 0, SERIAL_STDOUT, SERIAL_FILE, SERIAL_PTY, SERIAL_UNIX };
enum on_reboot { ON_REBOOT_EXIT = 0, ON_REBOOT_RESTART };
/* --seccomp: what a system call outside the allow-list does (see vmm/seccomp.h). */
enum vmm_seccomp_mode { VMM_SECCOMP_KILL = 0, VMM_SECCOMP_TRAP, VMM_SECCOMP_LOG, VMM_SECCOMP_OFF };

struct serial_cfg {
	enum serial_kind kind;
	char *path; /* file or socket path */
};

/* An absolute path (normalized) the VMM opens through inherited descriptor fd (common/fdmap). */
struct fd_map_cfg {
	char *path;
	int fd;
};

struct vm_config {
	char name[VM_NAME_MAX + 1];
	char *kernel;
	char *initrd;
	char *cmdline;
	uint64_t mem_bytes;
	unsigned cpus;
	char cpu_template[32];
	enum boot_mode boot;
	struct serial_cfg serial[2]; /* COM1, COM2 */
	enum on_reboot on_reboot;
	unsigned timeout_s; /* 0 = none */
	bool rng;	    /* a virtio-rng device */
	bool start_paused;  /* the vCPUs wait for the control socket's resume */
	struct disk_cfg disks[VM_DISKS_MAX];
	unsigned ndisks;
	bool disks_from_flags; /* --disk given: it replaces the config file's disks */
	struct nic_cfg nics[VM_NICS_MAX];
	unsigned nnics;
	bool nics_from_flags;
	struct console_port_cfg ports[VM_CONSOLE_PORTS_MAX];
	unsigned nports;
	bool ports_from_flags;
	char *control; /* unix socket path of the control socket (NULL: none) */
	char *checkpoint_dir; /* the checkpoint tree's directory (NULL: none) */
	char *restore; /* --restore DIR: start from this saved state (NULL: boot) */
	/* --fd-map PATH=N: files handed over open */
	struct fd_map_cfg fd_map[FDMAP_MAX];
	unsigned nfd_map;
	bool fd_map_from_flags;
	enum log_level log_level;
	enum vmm_seccomp_mode seccomp;
	bool check_only;
	bool print_config;
};

/* A message naming the flag or field and the reason. */
struct cfg_error {
	char msg[512];
};

void config_defaults(struct vm_config *c);
void config_free(struct vm_config *c);

/* Result of config_parse_args. */
enum { CFG_RUN = 0, CFG_HELP = 1, CFG_VERSION = 2 };

/*
 * Parse argv (a --config FILE is applied first; flags override it), then validate.
 * Returns CFG_RUN/CFG_HELP/CFG_VERSION, or -EINVAL with err filled.
 */
int config_parse_args(struct vm_config *c, int argc, char **argv, struct cfg_error *err);
/* Apply a JSON document (object) to c. Unknown fields are errors. */
int config_apply_json_text(struct vm_config *c, const char *text, const char *origin,
			   struct cfg_error *err);
/* Whole-config checks (required fields, ranges, conflicts). */
int config_validate(const struct vm_config *c, struct cfg_error *err);
/* The effective configuration as a JSON document (malloc'd string), in the config file format. */
char *config_to_json(const struct vm_config *c);

void config_usage(FILE *out);
/* "kill", "trap", "log" or "off". */
const char *config_seccomp_name(enum vmm_seccomp_mode m);

#endif
