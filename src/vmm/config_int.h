/* Inside berth-vmm's configuration parser: the error helper and the parsers of one device option
 * ("PATH,format=qcow2", "tap=NAME,mac=...", ...) that config.c's flags and JSON fields share. */
#ifndef BERTH_VMM_CONFIG_INT_H
#define BERTH_VMM_CONFIG_INT_H

#include "vmm/config.h"

/* Fill err->msg and return -EINVAL. */
int cfg_fail(struct cfg_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Each parses v into *out; "what" (a flag or a field) starts the error message. 0 or -EINVAL. */
int cfg_parse_serial(struct serial_cfg *s, const char *v, const char *what, struct cfg_error *err);
/* "PATH[,format=auto|raw|qcow2][,readonly][,cache=none|writeback][,serial=S]" */
int cfg_parse_disk(struct disk_cfg *d, const char *v, const char *what, struct cfg_error *err);
/* "tap=NAME|bridge=NAME|fd=N[,mac=MAC]" */
int cfg_parse_nic(struct nic_cfg *n, const char *v, const char *what, struct cfg_error *err);
/* "name=NAME,socket=PATH" */
int cfg_parse_port(struct console_port_cfg *pc, const char *v, const char *what,
		   struct cfg_error *err);

#endif
