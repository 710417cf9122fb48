/* berth's virtual switches on this host: the inventory's switches made real as Linux bridges. */
#ifndef BERTH_DAEMON_VSWITCH_H
#define BERTH_DAEMON_VSWITCH_H

#include <stdbool.h>
#include <stddef.h>

struct db;
struct db_switch;

/* The bridge of a switch: "bs" and the first 8 hex digits of its UUID. */
void vswitch_bridge_name(const char *uuid, char out[16]);

/*
 * Check that a host NIC may become an external switch's uplink: it exists, is not a bridge, not
 * the loopback and not a port of another bridge. -errno with err set.
 */
int vswitch_check_uplink(const char *nic, char *err, size_t errlen);

/*
 * Make the host match the switch: its bridge present (created if missing) with VLAN filtering
 * and up; external: the host NIC a port of it and up; internal: the host address on it.
 * -errno with err naming what failed.
 */
int vswitch_apply(const struct db_switch *s, char *err, size_t errlen);

/*
 * The bridge a NIC on VLAN vlan (0: none) of the switch is a port of: the switch's bridge, where
 * the port's VLAN is set on it (*port_vlans true) if the bridge filters VLANs; on a kernel
 * without bridge VLAN filtering a bridge per VLAN, "<bridge>v<vlan>" (made if missing), which an
 * external switch cannot have (no 802.1Q on the uplink: -EOPNOTSUPP). -errno with err set.
 */
int vswitch_port_bridge(const struct db_switch *s, unsigned vlan, char out[16], bool *port_vlans,
			char *err, size_t errlen);

/* "filtering", "bridge-per-vlan", or NULL if the switch's bridge is not there. */
const char *vswitch_vlan_mode(const struct db_switch *s);

/* Delete the switch's bridge and its VLAN bridges (an external switch's NIC is released). Gone
 * already is fine. */
int vswitch_remove(const struct db_switch *s);

/* At daemon start: vswitch_apply every switch of the inventory (failures are logged). */
void vswitch_restore(struct db *db);

#endif
