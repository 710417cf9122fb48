/* A VM's NICs: switch references and the MAC pool when a spec is stored, TAPs when it starts. */
#include "daemon/nics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/db.h"
#include "daemon/switch.h"
#include "daemon/vswitch.h"

#define TAG "nics"
#define POOL_TRIES 256

void nics_tap_name(const char *vm_uuid, unsigned idx, char out[16])
{
	snprintf(out, 16, "bt%.8s-%u", vm_uuid, idx % 10);
}

/* The MACs in use: other VMs' (with their names) and, as they are settled, this spec's. */
struct macs {
	char (*mac)[18];
	char **vm;
	size_t n, cap;
};

static int macs_add(struct macs *m, const char *vm, const char *mac)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 64;
		char(*nm)[18] = realloc(m->mac, cap * sizeof(*nm));
		if (!nm)
			return -ENOMEM;
		m->mac = nm;
		char **nv = realloc(m->vm, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		m->vm = nv;
		m->cap = cap;
	}
	snprintf(m->mac[m->n], sizeof(m->mac[0]), "%s", mac);
	if (!(m->vm[m->n] = strdup(vm)))
		return -ENOMEM;
	m->n++;
	return 0;
}

static int macs_collect(const char *vm, const char *mac, void *arg)
{
	return macs_add(arg, vm, mac);
}

static const char *macs_owner(const struct macs *m, const char *mac)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcasecmp(m->mac[i], mac))
			return m->vm[i];
	return NULL;
}

static void macs_free(struct macs *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->vm[i]);
	free(m->mac);
	free(m->vm);
}

/* A free address from the pool: 52:54:00 (locally administered, unicast) and 24 random bits. */
static int pool_mac(const struct macs *m, char out[18])
{
	unsigned char r[3];
	for (int i = 0; i < POOL_TRIES; i++) {
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
			return -EIO;
		snprintf(out, 18, "52:54:00:%02x:%02x:%02x", r[0], r[1], r[2]);
		if (!macs_owner(m, out))
			return 0;
	}
	return -EADDRINUSE;
}

int nics_resolve(struct db *db, const char *vm_uuid, json_t *spec, json_t *prev,
		 struct spec_error *err)
{
	json_t *nics = json_object_get(spec, "nics"), *prev_nics = json_object_get(prev, "nics");
	struct macs m = {0};
	struct db_switch sw;
	char field[48], mac[18];
	size_t i;
	json_t *n;
	int ret = 0;

	if (!json_array_size(nics))
		return 0;
	if ((ret = db_nic_macs(db, vm_uuid, macs_collect, &m))) {
		ret = spec_fail(err, "internal", "", "reading the NICs' MAC addresses: %s",
				strerror(-ret));
		goto out;
	}
	/* the MACs given first, so an address from the pool never takes one of them */
	json_array_foreach(nics, i, n)
	{
		const char *given = json_string_value(json_object_get(n, "mac")), *owner;
		snprintf(field, sizeof(field), "nics[%zu].switch", i);
		ret = db_switch_find(db, json_string_value(json_object_get(n, "switch")), &sw);
		if (ret == -ENOENT) {
			ret = spec_fail(err, "invalid-argument", field, "%s: no switch named '%s'",
					field, json_string_value(json_object_get(n, "switch")));
			goto out;
		} else if (ret) {
			ret = spec_fail(err, "internal", "", "reading the switches: %s",
					strerror(-ret));
			goto out;
		}
		/* a NIC names its switch by name: a UUID given is stored as the name */
		json_object_set_new(n, "switch", json_string(sw.name));
		db_switch_clear(&sw);
		if (!given)
			continue;
		snprintf(field, sizeof(field), "nics[%zu].mac", i);
		if ((owner = macs_owner(&m, given))) {
			ret = spec_fail(err, "conflict", field, "%s: %s is VM '%s''s MAC address",
					field, given, owner);
			goto out;
		}
		if ((ret = macs_add(&m, "", given)))
			goto oom;
	}
	json_array_foreach(nics, i, n)
	{
		if (json_is_string(json_object_get(n, "mac")))
			continue;
		/* stable: the NIC at this index keeps its address when the list is rewritten */
		const char *old =
		    json_string_value(json_object_get(json_array_get(prev_nics, i), "mac"));
		if (old && !macs_owner(&m, old)) {
			snprintf(mac, sizeof(mac), "%s", old);
		} else if ((ret = pool_mac(&m, mac))) {
			snprintf(field, sizeof(field), "nics[%zu].mac", i);
			ret =
			    spec_fail(err, "internal", field, "%s: no free address in the pool: %s",
				      field, strerror(-ret));
			goto out;
		}
		if (json_object_set_new(n, "mac", json_string(mac)) || macs_add(&m, "", mac))
			goto oom;
	}
	goto out;
oom:
	spec_fail(err, "internal", "", "out of memory");
	ret = -ENOMEM;
out:
	macs_free(&m);
	return ret;
}

/*
 * Attach a NIC's TAP to its switch: a port of its bridge (or VLAN bridge), the VLAN, MAC spoofing
 * protection unless the NIC allows spoofing, up.
 */
static int attach(const struct db_switch *s, const char *tap, const json_t *nic, char *err,
		  size_t errlen)
{
	unsigned vlan = (unsigned)json_integer_value(json_object_get(nic, "vlan"));
	const char *mac = json_string_value(json_object_get(nic, "mac"));
	bool spoofing = json_is_true(json_object_get(nic, "mac_spoofing"));
	unsigned char addr[6];
	char bridge[16];
	bool port_vlans;
	int ret;
	if ((ret = vswitch_port_bridge(s, vlan, bridge, &port_vlans, err, errlen)))
		return ret;
	if ((ret = sw_link_set_master(tap, bridge))) {
		snprintf(err, errlen, "%s as a port of %s: %s", tap, bridge, strerror(-ret));
		return ret;
	}
	/* an access port of the VLAN; an external switch's uplink carries it tagged */
	if (port_vlans && (ret = sw_port_vlan(tap, vlan, true))) {
		snprintf(err, errlen, "%s: VLAN %u: %s", tap, vlan, strerror(-ret));
		return ret;
	}
	if (port_vlans && s->host_nic && (ret = sw_port_vlan(s->host_nic, vlan, false))) {
		snprintf(err, errlen, "uplink %s: VLAN %u: %s", s->host_nic, vlan, strerror(-ret));
		return ret;
	}
	/* the guest may send only from its own MAC: a locked port forwards a source MAC only if
	 * a static FDB entry puts it on that port */
	if (!spoofing) {
		if (!mac || vmspec_parse_mac(mac, addr)) {
			snprintf(err, errlen, "%s: no valid MAC address in the NIC's spec", tap);
			return -EINVAL;
		}
		/* with VLAN filtering the entry belongs to the port's VLAN (untagged ports: the
		 * bridge's default VLAN 1) */
		struct sw_link br;
		unsigned vid = 0;
		if (!sw_link_get(bridge, &br) && br.vlan_filtering)
			vid = vlan ? vlan : 1;
		if ((ret = sw_fdb_add_static(tap, addr, vid))) {
			snprintf(err, errlen, "%s: static FDB entry for %s: %s", tap, mac,
				 strerror(-ret));
			return ret;
		}
		if ((ret = sw_port_lock(tap, true))) {
			snprintf(err, errlen,
				 "%s: locking the bridge port against MAC spoofing: %s (Linux 5.18 "
				 "or later has locked ports; or allow it with mac_spoofing: true)",
				 tap, strerror(-ret));
			return ret;
		}
	}
	if ((ret = sw_link_set_up(tap, true))) {
		snprintf(err, errlen, "%s: setting it up: %s", tap, strerror(-ret));
		return ret;
	}
	return 0;
}

int nics_open(struct db *db, const char *vm_uuid, const json_t *nics, int fds[VMSPEC_NICS_MAX],
	      char *err, size_t errlen)
{
	struct db_switch sw = {0};
	char tap[16], e2[256];
	size_t i, n = json_array_size(nics);
	int ret = 0;

	if (n > VMSPEC_NICS_MAX) {
		snprintf(err, errlen, "too many NICs");
		return -E2BIG;
	}
	for (i = 0; i < VMSPEC_NICS_MAX; i++)
		fds[i] = -1;
	if (!n)
		return 0;
	if ((ret = db_begin(db, false))) {
		snprintf(err, errlen, "inventory error: %s", strerror(-ret));
		return ret;
	}
	for (i = 0; i < n && !ret; i++) {
		const json_t *nic = json_array_get(nics, i);
		const char *name = json_string_value(json_object_get(nic, "switch"));
		if ((ret = db_switch_find(db, name ? name : "", &sw))) {
			snprintf(err, errlen, "nics[%zu]: switch '%s': %s", i, name ? name : "",
				 ret == -ENOENT ? "no such switch" : strerror(-ret));
			break;
		}
		nics_tap_name(vm_uuid, (unsigned)i, tap);
		if ((ret = vswitch_apply(&sw, e2, sizeof(e2)))) {
			snprintf(err, errlen, "nics[%zu]: switch '%s': %s", i, sw.name, e2);
		} else if ((fds[i] = sw_tap_open(tap)) < 0) {
			ret = fds[i];
			snprintf(err, errlen, "nics[%zu]: creating TAP %s: %s", i, tap,
				 strerror(-ret));
		} else if ((ret = attach(&sw, tap, nic, e2, sizeof(e2)))) {
			snprintf(err, errlen, "nics[%zu]: %s", i, e2);
		}
		db_switch_clear(&sw);
	}
	db_rollback(db);
	if (ret) {
		for (i = 0; i < VMSPEC_NICS_MAX; i++) {
			if (fds[i] >= 0)
				close(fds[i]); /* the TAP goes with its only descriptor */
			fds[i] = -1;
		}
		return ret;
	}
	return (int)n;
}

struct reattach {
	struct db *db;
	int n;
};

static bool is_active(const char *state)
{
	return !strcmp(state, "running") || !strcmp(state, "paused") ||
	       !strcmp(state, "starting") || !strcmp(state, "stopping");
}

static int reattach_vm(const struct db_vm *vm, void *arg)
{
	struct reattach *r = arg;
	json_t *cfg, *nic;
	struct db_switch sw;
	struct sw_link l, br;
	char tap[16], err[256];
	size_t i;

	if (!is_active(vm->state) || !(cfg = json_loads(vm->config, 0, NULL)))
		return 0;
	json_array_foreach(json_object_get(cfg, "nics"), i, nic)
	{
		const char *name = json_string_value(json_object_get(nic, "switch"));
		nics_tap_name(vm->uuid, (unsigned)i, tap);
		if (!name || sw_link_get(tap, &l))
			continue; /* the VMM has gone, and its TAP with it */
		if (db_switch_find(r->db, name, &sw))
			continue;
		unsigned vlan = (unsigned)json_integer_value(json_object_get(nic, "vlan"));
		char want[16];
		bool pv;
		if (vswitch_port_bridge(&sw, vlan, want, &pv, err, sizeof(err)) ||
		    sw_link_get(want, &br) || l.master != br.index) {
			if (attach(&sw, tap, nic, err, sizeof(err)))
				log_err(TAG, "VM %s: %s", vm->name, err);
			else
				r->n++;
		}
		db_switch_clear(&sw);
	}
	json_decref(cfg);
	return 0;
}

void nics_reattach(struct db *db)
{
	struct reattach r = {db, 0};
	int ret;
	if ((ret = db_begin(db, false))) {
		log_err(TAG, "reading the VMs: %s", strerror(-ret));
		return;
	}
	ret = db_vm_list(db, NULL, reattach_vm, &r);
	db_rollback(db);
	if (ret)
		log_err(TAG, "reading the VMs: %s", strerror(-ret));
	if (r.n)
		log_info(TAG, "%d TAP%s of running VMs back on their switches", r.n,
			 r.n == 1 ? "" : "s");
}
