/* Linux bridges, ports, addresses, bridge VLANs and TAPs through rtnetlink (libmnl) and tun. */
#ifndef BERTH_DAEMON_SWITCH_H
#define BERTH_DAEMON_SWITCH_H

#include <netinet/in.h>
#include <stdbool.h>

#define SW_IFNAME_MAX 15 /* IFNAMSIZ less the NUL */

/* What rtnetlink says about one interface. */
struct sw_link {
	int index;
	bool up;	     /* IFF_UP */
	bool is_bridge;	     /* IFLA_INFO_KIND "bridge" */
	int master;	     /* the bridge it is a port of, 0 if none */
	char kind[16];	     /* IFLA_INFO_KIND, "" if none */
	bool vlan_filtering; /* a bridge with IFLA_BR_VLAN_FILTERING on */
};

/* One interface of a link dump. */
typedef int (*sw_link_fn)(const char *name, const struct sw_link *l, void *arg);

/* A valid interface name: 1..15 bytes, no '/', ':' or white space, not "." or "..". */
bool sw_ifname_valid(const char *name);

/* Look an interface up. -ENODEV if there is none. */
int sw_link_get(const char *name, struct sw_link *out);

/* Every interface (a link dump); a non-zero return of fn stops it and is returned. */
int sw_link_each(sw_link_fn fn, void *arg);

/*
 * Create a bridge (down), with VLAN filtering if filtering. -EEXIST if the name is taken,
 * -EOPNOTSUPP if the kernel has no VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING).
 */
int sw_bridge_create(const char *name, bool filtering);
/* Turn a bridge's VLAN filtering on (IFLA_BR_VLAN_FILTERING). */
int sw_bridge_vlan_filtering(const char *name, bool on);
/* Delete an interface (a bridge releases its ports). -ENODEV if there is none. */
int sw_link_delete(const char *name);
/* Set IFF_UP or clear it. */
int sw_link_set_up(const char *name, bool up);
/* Make name a port of bridge (IFLA_MASTER), or of none if bridge is NULL. */
int sw_link_set_master(const char *name, const char *bridge);

/* Add an IPv4 address with its prefix length to an interface. -EEXIST if it has it. */
int sw_addr_add(const char *name, struct in_addr addr, unsigned prefix);
/* Remove it. -EADDRNOTAVAIL if it does not have it. */
int sw_addr_del(const char *name, struct in_addr addr, unsigned prefix);

/*
 * Bridge VLANs of a port (AF_BRIDGE IFLA_BRIDGE_VLAN_INFO): an access port of vid (pvid, egress
 * untagged; VLAN 1, the bridge's default, removed) or, with access false, vid added tagged (a
 * trunk such as an external switch's uplink).
 */
int sw_port_vlan(const char *port, unsigned vid, bool access);

/*
 * MAC spoofing protection of a bridge port: locked (IFLA_BRPORT_LOCKED, Linux 5.18) with learning
 * off, the bridge forwards a frame from the port only if its source MAC has a static FDB entry on
 * that port; unlocked, learning is back on.
 */
int sw_port_lock(const char *port, bool locked);
/* A static FDB entry (never ages out) of mac on a bridge port, in VLAN vid if vid is not 0. */
int sw_fdb_add_static(const char *port, const unsigned char mac[6], unsigned vid);

/* "1.2.3.4/24" → address and prefix (1..32). -EINVAL. */
int sw_parse_cidr(const char *s, struct in_addr *addr, unsigned *prefix);

/*
 * Create a TAP (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, not persistent: it disappears when its last
 * descriptor closes) named name. Returns the descriptor (O_CLOEXEC) or -errno (-EBUSY if a TAP of
 * that name is in use).
 */
int sw_tap_open(const char *name);

#endif
