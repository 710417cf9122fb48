/* The VM spec of the API: validation naming the field, defaults, JSON merge patch (RFC 7386). */
#ifndef BERTH_DAEMON_VMSPEC_H
#define BERTH_DAEMON_VMSPEC_H

#include <jansson.h>
#include <stdbool.h>

/*
 * Limits follow what berth-vmm accepts (src/vmm/config.h), because a spec becomes a berth-vmm
 * configuration when the VM starts: a spec berthd accepts must be one the VMM runs.
 */
#define VMSPEC_NAME_MAX 63 /* VM_NAME_MAX */
#define VMSPEC_VCPUS_MAX 1024
#define VMSPEC_MEMORY_MIB_MIN 64
#define VMSPEC_MEMORY_MIB_MAX 65536
#define VMSPEC_DISKS_MAX 8	  /* VM_DISKS_MAX */
#define VMSPEC_PORTS_MAX 16	  /* VM_CONSOLE_PORTS_MAX */
#define VMSPEC_PORT_NAME_MAX 63	  /* CONSOLE_PORT_NAME_MAX */
#define VMSPEC_DISK_SERIAL_MAX 20 /* DISK_SERIAL_MAX */
#define VMSPEC_CMDLINE_MAX 65535  /* CMDLINE_MAX less the NUL */
#define VMSPEC_PATH_MAX 4095	  /* PATH_MAX less the NUL */
#define VMSPEC_NOTES_MAX 4096
#define VMSPEC_NICS_MAX 4 /* VM_NICS_MAX */
#define VMSPEC_VLAN_MAX 4094

/* What is wrong and where: code is "invalid-argument" or "unknown-field"; field a JSON path. */
struct spec_error {
	const char *code;
	char field[96];
	char msg[256];
};

/* Fill err (a stable code, the field, a message) and return -EEXIST for "conflict", -EIO for
 * "internal", -EINVAL otherwise. */
int spec_fail(struct spec_error *err, const char *code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Validate a spec as a client sends it (POST body, or a stored spec after a merge patch): every
 * field checked, unknown fields refused, read-only output fields refused. On success *out is a new
 * object with every field present (defaults filled in). Returns 0 or -EINVAL with err set.
 */
int vmspec_normalize(json_t *in, json_t **out, struct spec_error *err);

/* A valid VM name: 1..63 of [A-Za-z0-9._-], not starting with '.' or '-', not UUID-shaped. */
bool vmspec_name_valid(const char *name);

/*
 * "52:54:00:12:34:ab" (either case) as 6 bytes: a unicast address, not all zeros. -EINVAL.
 */
int vmspec_parse_mac(const char *s, unsigned char mac[6]);

/* A canonical lower-case UUID (8-4-4-4-12 hex). */
bool vmspec_is_uuid(const char *s);

/* RFC 7386: apply patch to target and return the result (new reference); NULL on OOM. */
json_t *json_merge_patch(json_t *target, json_t *patch);

#endif
