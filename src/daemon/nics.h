/* A VM's NICs: switch references and the MAC pool when a spec is stored, TAPs when it starts. */
#ifndef BERTH_DAEMON_NICS_H
#define BERTH_DAEMON_NICS_H

#include <jansson.h>
#include <stddef.h>

#include "daemon/vmspec.h"

struct db;

/* The TAP of a VM's NIC idx: "bt", the first 8 hex digits of the VM's UUID, "-", idx. */
void nics_tap_name(const char *vm_uuid, unsigned idx, char out[16]);

/*
 * Inside a write transaction, for a normalized spec about to be stored for VM vm_uuid (prev: its
 * stored spec, or NULL for a new VM): every nics[].switch must name a switch (-EINVAL); a NIC
 * without a MAC keeps the one its index had in prev, else gets one from the pool (52:54:00 and
 * 24 random bits, used by no other VM); a MAC given must not be another VM's (-EEXIST, code
 * "conflict"). The MACs are written into spec. -EIO, -ENOMEM (code "internal").
 */
int nics_resolve(struct db *db, const char *vm_uuid, json_t *spec, json_t *prev,
		 struct spec_error *err);

/*
 * For a VM about to start: a TAP per nics[i] (fds[i], O_CLOEXEC), a port of its switch's bridge
 * (the switch applied first, so a bridge deleted behind berthd's back comes back) with the NIC's
 * VLAN, up. Takes the inventory lock. Returns the number of TAPs or -errno with err set (then
 * no descriptor is left open).
 */
int nics_open(struct db *db, const char *vm_uuid, const json_t *nics, int fds[VMSPEC_NICS_MAX],
	      char *err, size_t errlen);

/*
 * At daemon start, after the VMMs were reattached: the TAPs of running VMs (held by their VMMs)
 * become ports of their switches' bridges again with their VLANs, if they are not (a bridge
 * recreated by vswitch_restore has no ports).
 */
void nics_reattach(struct db *db);

#endif
