/* berth's virtual switches on this host: the inventory's switches made real as Linux bridges. */
#include "daemon/vswitch.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "daemon/db.h"
#include "daemon/switch.h"

#define TAG "switch"

void vswitch_bridge_name(const char *uuid, char out[16])
{
	snprintf(out, 16, "bs%.8s", uuid);
}

int vswitch_check_uplink(const char *nic, char *err, size_t errlen)
{
	struct sw_link l;
	int ret;
	if (!sw_ifname_valid(nic)) {
		snprintf(err, errlen, "'%s' is not an interface name", nic);
		return -EINVAL;
	}
	if ((ret = sw_link_get(nic, &l))) {
		snprintf(err, errlen, "host NIC '%s': %s", nic,
			 ret == -ENODEV ? "no such interface" : strerror(-ret));
		return ret;
	}
	if (l.is_bridge || !strcmp(nic, "lo")) {
		snprintf(err, errlen, "host NIC '%s' is a %s, not a NIC", nic,
			 l.is_bridge ? "bridge" : "loopback");
		return -EINVAL;
	}
	if (l.master) {
		snprintf(err, errlen, "host NIC '%s' is already a port of another bridge", nic);
		return -EBUSY;
	}
	return 0;
}

int vswitch_apply(const struct db_switch *s, char *err, size_t errlen)
{
	struct sw_link l;
	struct in_addr addr;
	unsigned prefix;
	int ret;

	ret = sw_link_get(s->bridge, &l);
	if (ret == -ENODEV) {
		bool filtering = true;
		if ((ret = sw_bridge_create(s->bridge, true)) == -EOPNOTSUPP) {
			filtering = false;
			ret = sw_bridge_create(s->bridge, false);
		}
		if (ret) {
			snprintf(err, errlen, "creating bridge %s: %s", s->bridge, strerror(-ret));
			return ret;
		}
		log_info(TAG, "switch %s: bridge %s created%s", s->name, s->bridge,
			 filtering
			     ? ""
			     : " (the kernel has no bridge VLAN filtering: a bridge per VLAN)");
	} else if (ret) {
		snprintf(err, errlen, "bridge %s: %s", s->bridge, strerror(-ret));
		return ret;
	} else if (!l.is_bridge) {
		snprintf(err, errlen, "%s exists on the host and is not a bridge (kind '%s')",
			 s->bridge, l.kind);
		return -EEXIST;
	} else if (!l.vlan_filtering && (ret = sw_bridge_vlan_filtering(s->bridge, true)) &&
		   ret != -EOPNOTSUPP) {
		snprintf(err, errlen, "bridge %s: VLAN filtering: %s", s->bridge, strerror(-ret));
		return ret;
	}
	if ((ret = sw_link_set_up(s->bridge, true))) {
		snprintf(err, errlen, "bridge %s: setting it up: %s", s->bridge, strerror(-ret));
		return ret;
	}
	if (s->host_nic) {
		if ((ret = sw_link_set_master(s->host_nic, s->bridge)) ||
		    (ret = sw_link_set_up(s->host_nic, true))) {
			snprintf(err, errlen, "host NIC %s as a port of %s: %s", s->host_nic,
				 s->bridge, strerror(-ret));
			return ret;
		}
	}
	if (s->address) {
		if (sw_parse_cidr(s->address, &addr, &prefix)) {
			snprintf(err, errlen, "the stored address '%s' is not valid", s->address);
			return -EINVAL;
		}
		if ((ret = sw_addr_add(s->bridge, addr, prefix)) && ret != -EEXIST) {
			snprintf(err, errlen, "address %s on %s: %s", s->address, s->bridge,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int vswitch_port_bridge(const struct db_switch *s, unsigned vlan, char out[16], bool *port_vlans,
			char *err, size_t errlen)
{
	struct sw_link l;
	int ret;

	*port_vlans = false;
	snprintf(out, 16, "%s", s->bridge);
	if ((ret = sw_link_get(s->bridge, &l))) {
		snprintf(err, errlen, "bridge %s: %s", s->bridge, strerror(-ret));
		return ret;
	}
	if (!vlan)
		return 0;
	if (l.vlan_filtering) {
		*port_vlans = true;
		return 0;
	}
	if (s->host_nic) {
		snprintf(err, errlen,
			 "VLAN %u on external switch '%s' needs bridge VLAN filtering, which this "
			 "kernel lacks",
			 vlan, s->name);
		return -EOPNOTSUPP;
	}
	snprintf(out, 16, "%.10sv%u", s->bridge, vlan % 10000);
	ret = sw_link_get(out, &l);
	if (ret == -ENODEV && !(ret = sw_bridge_create(out, false)))
		log_info(TAG, "switch %s: bridge %s for VLAN %u created", s->name, out, vlan);
	else if (!ret && !l.is_bridge)
		ret = -EEXIST;
	if (!ret)
		ret = sw_link_set_up(out, true);
	if (ret)
		snprintf(err, errlen, "bridge %s for VLAN %u: %s", out, vlan, strerror(-ret));
	return ret;
}

const char *vswitch_vlan_mode(const struct db_switch *s)
{
	struct sw_link l;
	if (sw_link_get(s->bridge, &l) || !l.is_bridge)
		return NULL;
	return l.vlan_filtering ? "filtering" : "bridge-per-vlan";
}

struct vlan_bridges {
	char prefix[16];
	char names[64][16];
	int n;
};

static int collect_vlan_bridge(const char *name, const struct sw_link *l, void *arg)
{
	struct vlan_bridges *vb = arg;
	size_t n = strlen(vb->prefix);
	if (l->is_bridge && !strncmp(name, vb->prefix, n) && name[n] >= '1' && name[n] <= '9' &&
	    vb->n < 64)
		snprintf(vb->names[vb->n++], sizeof(vb->names[0]), "%s", name);
	return 0;
}

int vswitch_remove(const struct db_switch *s)
{
	struct vlan_bridges vb = {.n = 0};
	struct sw_link l;
	int ret;

	snprintf(vb.prefix, sizeof(vb.prefix), "%.10sv", s->bridge);
	if (!sw_link_each(collect_vlan_bridge, &vb))
		for (int i = 0; i < vb.n; i++)
			sw_link_delete(vb.names[i]);
	ret = sw_link_get(s->bridge, &l);
	if (ret == -ENODEV)
		return 0;
	if (!ret && !l.is_bridge)
		return -EEXIST; /* not ours */
	if (!ret)
		ret = sw_link_delete(s->bridge);
	return ret == -ENODEV ? 0 : ret;
}

static int restore_one(const struct db_switch *s, void *arg)
{
	char err[256];
	int *n = arg;
	if (vswitch_apply(s, err, sizeof(err)))
		log_err(TAG, "switch %s (%s): %s", s->name, s->kind, err);
	else
		(*n)++;
	return 0;
}

void vswitch_restore(struct db *db)
{
	int n = 0, ret;
	if ((ret = db_begin(db, false))) {
		log_err(TAG, "reading the switches: %s", strerror(-ret));
		return;
	}
	ret = db_switch_list(db, restore_one, &n);
	db_rollback(db);
	if (ret)
		log_err(TAG, "reading the switches: %s", strerror(-ret));
	else if (n)
		log_info(TAG, "%d switch%s ready", n, n == 1 ? "" : "es");
}
