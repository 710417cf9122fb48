/* A VM spec as a berth-vmm configuration: the per-VM paths, config.json and the command line. */
#ifndef BERTH_DAEMON_VMMCFG_H
#define BERTH_DAEMON_VMMCFG_H

#include <jansson.h>
#include <stdbool.h>

#define VMMCFG_PATH_MAX 4096
#define VMMCFG_ARGV_MAX 24
/* NIC i's TAP is descriptor VMMCFG_NIC_FD0 + i in the VMM (--net fd=N; spawn_begin puts it there)
 */
#define VMMCFG_NIC_FD0 3

/* Where one VM's files live. */
struct vm_paths {
	char dir[VMMCFG_PATH_MAX];	   /* <state>/vms/<uuid> */
	char config[VMMCFG_PATH_MAX];	   /* dir/config.json */
	char log[VMMCFG_PATH_MAX];	   /* dir/vmm.log */
	char saved[VMMCFG_PATH_MAX];	   /* dir/saved */
	char checkpoints[VMMCFG_PATH_MAX]; /* dir/checkpoints */
	char control[108];		   /* <run>/<uuid>.ctl (a sun_path) */
	char console[108];		   /* <run>/<uuid>.console */
	char serial[120];		   /* "unix:" console */
	char run_dir[VMMCFG_PATH_MAX];
};

/* Fill the paths; -ENAMETOOLONG if a socket path does not fit a unix socket address. */
int vmmcfg_paths(const char *state_dir, const char *run_dir, const char *uuid, struct vm_paths *p);

/* The berth-vmm configuration (config.json) of a normalized spec (a new reference). */
json_t *vmmcfg_build(const json_t *spec, const char *name, const struct vm_paths *p);

/*
 * The command line: argv[0] the VMM, then --config FILE (or --restore DIR when restore), --control,
 * --serial, --checkpoint-dir and --name. Strings point into p, vmm and name; argv is NULL-ended.
 */
void vmmcfg_argv(const char *vmm, const struct vm_paths *p, const char *name, bool restore,
		 char *argv[VMMCFG_ARGV_MAX]);

#endif
