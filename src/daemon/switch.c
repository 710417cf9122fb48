/* Linux bridges, ports, addresses, bridge VLANs and TAPs through rtnetlink (libmnl) and tun. */
#include "daemon/switch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

/* One reply datagram: a link dump of one interface is a few KiB; MSG_TRUNC is an error. */
#define NL_BUF 32768

bool sw_ifname_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > SW_IFNAME_MAX || !strcmp(name, ".") || !strcmp(name, ".."))
		return false;
	for (size_t i = 0; i < n; i++)
		if (name[i] == '/' || name[i] == ':' || name[i] <= ' ' || name[i] == 0x7f)
			return false;
	return true;
}

/*
 * Send one request (NLM_F_ACK added) and read replies until the ACK or an error; cb (may be NULL)
 * sees each reply message. 0 or -errno (the kernel's error for the request).
 */
static int nl_talk(struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	struct mnl_socket *nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
	char *buf = NULL;
	unsigned seq, portid;
	int ret;

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		ret = -errno;
		goto out;
	}
	if (!(buf = malloc(NL_BUF))) {
		ret = -ENOMEM;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	nlh->nlmsg_flags |= NLM_F_ACK;
	nlh->nlmsg_seq = seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		ret = -errno;
		goto out;
	}
	do {
		ssize_t n = mnl_socket_recvfrom(nl, buf, NL_BUF);
		if (n < 0) {
			ret = -errno;
			goto out;
		}
		/* validates every message's length against the datagram, seq and portid */
		ret = mnl_cb_run(buf, (size_t)n, seq, portid, cb, data);
	} while (ret > MNL_CB_STOP);
	ret = ret < 0 ? (errno ? -errno : -EIO) : 0;
out:
	free(buf);
	mnl_socket_close(nl);
	return ret;
}

static struct nlmsghdr *link_msg(char *buf, uint16_t type, uint16_t flags, int family, int index)
{
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct ifinfomsg *ifi = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifi));
	ifi->ifi_family = (unsigned char)family;
	ifi->ifi_index = index;
	return nlh;
}

static int ifindex_of(const char *name)
{
	struct sw_link l;
	int ret = sw_link_get(name, &l);
	return ret ? ret : l.index;
}

/* Parsed while reading one link message. */
struct link_parse {
	struct sw_link *l;
	char name[SW_IFNAME_MAX + 1];
	int br_vlan_filtering; /* IFLA_INFO_DATA attribute 7: meaningful for bridges only */
};

static int bridge_data_attr(const struct nlattr *a, void *data)
{
	struct link_parse *lp = data;
	if (mnl_attr_get_type(a) == IFLA_BR_VLAN_FILTERING &&
	    mnl_attr_validate(a, MNL_TYPE_U8) >= 0)
		lp->br_vlan_filtering = mnl_attr_get_u8(a);
	return MNL_CB_OK;
}

static int linkinfo_attr(const struct nlattr *a, void *data)
{
	struct link_parse *lp = data;
	switch (mnl_attr_get_type(a)) {
	case IFLA_INFO_KIND:
		if (mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
			snprintf(lp->l->kind, sizeof(lp->l->kind), "%.*s",
				 (int)mnl_attr_get_payload_len(a),
				 (const char *)mnl_attr_get_payload(a));
		break;
	case IFLA_INFO_DATA:
		if (mnl_attr_validate(a, MNL_TYPE_NESTED) >= 0)
			mnl_attr_parse_nested(a, bridge_data_attr, lp);
		break;
	}
	return MNL_CB_OK;
}

static int link_attr(const struct nlattr *a, void *data)
{
	struct link_parse *lp = data;
	switch (mnl_attr_get_type(a)) {
	case IFLA_IFNAME:
		if (mnl_attr_validate(a, MNL_TYPE_STRING) >= 0)
			snprintf(lp->name, sizeof(lp->name), "%.*s",
				 (int)mnl_attr_get_payload_len(a),
				 (const char *)mnl_attr_get_payload(a));
		break;
	case IFLA_MASTER:
		if (mnl_attr_validate(a, MNL_TYPE_U32) >= 0)
			lp->l->master = (int)mnl_attr_get_u32(a);
		break;
	case IFLA_LINKINFO:
		if (mnl_attr_validate(a, MNL_TYPE_NESTED) >= 0)
			mnl_attr_parse_nested(a, linkinfo_attr, lp);
		break;
	}
	return MNL_CB_OK;
}

/* One RTM_NEWLINK message into lp (0), or -EINVAL if it is not one. */
static int parse_link(const struct nlmsghdr *nlh, struct link_parse *lp)
{
	if (nlh->nlmsg_type != RTM_NEWLINK ||
	    mnl_nlmsg_get_payload_len(nlh) < sizeof(struct ifinfomsg))
		return -EINVAL;
	const struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	memset(lp->l, 0, sizeof(*lp->l));
	lp->name[0] = '\0';
	lp->br_vlan_filtering = 0;
	lp->l->index = ifi->ifi_index;
	lp->l->up = (ifi->ifi_flags & IFF_UP) != 0;
	mnl_attr_parse(nlh, sizeof(*ifi), link_attr, lp);
	lp->l->kind[sizeof(lp->l->kind) - 1] = '\0';
	lp->l->is_bridge = !strcmp(lp->l->kind, "bridge");
	lp->l->vlan_filtering = lp->l->is_bridge && lp->br_vlan_filtering;
	return 0;
}

static int link_cb(const struct nlmsghdr *nlh, void *data)
{
	struct link_parse lp = {.l = data};
	parse_link(nlh, &lp);
	return MNL_CB_OK;
}

struct each {
	sw_link_fn fn;
	void *arg;
	int ret;
};

static int each_cb(const struct nlmsghdr *nlh, void *data)
{
	struct each *e = data;
	struct sw_link l;
	struct link_parse lp = {.l = &l};
	if (e->ret || parse_link(nlh, &lp) || !lp.name[0])
		return MNL_CB_OK; /* after a stop, the rest of the dump is read and dropped */
	e->ret = e->fn(lp.name, &l, e->arg);
	return MNL_CB_OK;
}

int sw_link_each(sw_link_fn fn, void *arg)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct each e = {fn, arg, 0};
	int ret = nl_talk(link_msg(buf, RTM_GETLINK, NLM_F_DUMP, AF_UNSPEC, 0), each_cb, &e);
	return ret ? ret : e.ret;
}

int sw_link_get(const char *name, struct sw_link *out)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int ret;
	if (!sw_ifname_valid(name))
		return -ENODEV;
	struct nlmsghdr *nlh = link_msg(buf, RTM_GETLINK, 0, AF_UNSPEC, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	memset(out, 0, sizeof(*out));
	ret = nl_talk(nlh, link_cb, out);
	if (!ret && out->index <= 0)
		ret = -ENODEV;
	return ret;
}

/* IFLA_LINKINFO { kind "bridge" [, data { IFLA_BR_VLAN_FILTERING }] }: a kernel without VLAN
 * filtering refuses the attribute even when it turns filtering off */
static void put_bridge_info(struct nlmsghdr *nlh, int filtering)
{
	struct nlattr *info = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
	mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
	if (filtering >= 0) {
		struct nlattr *d = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
		mnl_attr_put_u8(nlh, IFLA_BR_VLAN_FILTERING, (uint8_t)filtering);
		mnl_attr_nest_end(nlh, d);
	}
	mnl_attr_nest_end(nlh, info);
}

int sw_bridge_create(const char *name, bool filtering)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	if (!sw_ifname_valid(name))
		return -EINVAL;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, AF_UNSPEC, 0);
	mnl_attr_put_strz(nlh, IFLA_IFNAME, name);
	put_bridge_info(nlh, filtering ? 1 : -1);
	return nl_talk(nlh, NULL, NULL);
}

int sw_bridge_vlan_filtering(const char *name, bool on)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(name);
	if (index < 0)
		return index;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, AF_UNSPEC, index);
	put_bridge_info(nlh, on ? 1 : 0);
	return nl_talk(nlh, NULL, NULL);
}

int sw_link_delete(const char *name)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(name);
	if (index < 0)
		return index;
	return nl_talk(link_msg(buf, RTM_DELLINK, 0, AF_UNSPEC, index), NULL, NULL);
}

int sw_link_set_up(const char *name, bool up)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(name);
	if (index < 0)
		return index;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, AF_UNSPEC, index);
	struct ifinfomsg *ifi = mnl_nlmsg_get_payload(nlh);
	ifi->ifi_change = IFF_UP;
	ifi->ifi_flags = up ? IFF_UP : 0;
	return nl_talk(nlh, NULL, NULL);
}

int sw_link_set_master(const char *name, const char *bridge)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(name), master = 0;
	if (index < 0)
		return index;
	if (bridge && (master = ifindex_of(bridge)) < 0)
		return master;
	struct nlmsghdr *nlh = link_msg(buf, RTM_NEWLINK, 0, AF_UNSPEC, index);
	mnl_attr_put_u32(nlh, IFLA_MASTER, (uint32_t)master);
	return nl_talk(nlh, NULL, NULL);
}

static int addr_change(const char *name, uint16_t type, uint16_t flags, struct in_addr addr,
		       unsigned prefix)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(name);
	if (index < 0)
		return index;
	if (prefix < 1 || prefix > 32)
		return -EINVAL;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | flags;
	struct ifaddrmsg *ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = AF_INET;
	ifa->ifa_prefixlen = (unsigned char)prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)index;
	mnl_attr_put(nlh, IFA_LOCAL, sizeof(addr), &addr);
	mnl_attr_put(nlh, IFA_ADDRESS, sizeof(addr), &addr);
	if (type == RTM_NEWADDR && prefix < 31) {
		struct in_addr brd = {addr.s_addr | htonl(0xffffffffu >> prefix)};
		mnl_attr_put(nlh, IFA_BROADCAST, sizeof(brd), &brd);
	}
	return nl_talk(nlh, NULL, NULL);
}

int sw_addr_add(const char *name, struct in_addr addr, unsigned prefix)
{
	return addr_change(name, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, addr, prefix);
}

int sw_addr_del(const char *name, struct in_addr addr, unsigned prefix)
{
	return addr_change(name, RTM_DELADDR, 0, addr, prefix);
}

/* RTM_SETLINK (add) or RTM_DELLINK (remove) of one VLAN on a bridge port. */
static int port_vlan_msg(int index, uint16_t type, unsigned vid, uint16_t vflags)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	struct nlmsghdr *nlh = link_msg(buf, type, 0, AF_BRIDGE, index);
	struct bridge_vlan_info vi = {.flags = vflags, .vid = (uint16_t)vid};
	struct nlattr *spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
	mnl_attr_put(nlh, IFLA_BRIDGE_VLAN_INFO, sizeof(vi), &vi);
	mnl_attr_nest_end(nlh, spec);
	return nl_talk(nlh, NULL, NULL);
}

int sw_port_vlan(const char *port, unsigned vid, bool access)
{
	int index = ifindex_of(port), ret;
	if (index < 0)
		return index;
	if (vid < 1 || vid > 4094)
		return -EINVAL;
	if (!access)
		return port_vlan_msg(index, RTM_SETLINK, vid, 0);
	if ((ret = port_vlan_msg(index, RTM_SETLINK, vid,
				 BRIDGE_VLAN_INFO_PVID | BRIDGE_VLAN_INFO_UNTAGGED)))
		return ret;
	if (vid != 1 && (ret = port_vlan_msg(index, RTM_DELLINK, 1, 0)) && ret != -ENOENT)
		return ret;
	return 0;
}

int sw_port_lock(const char *port, bool locked)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(port);
	if (index < 0)
		return index;
	struct nlmsghdr *nlh = link_msg(buf, RTM_SETLINK, 0, AF_BRIDGE, index);
	struct nlattr *pi = mnl_attr_nest_start(nlh, IFLA_PROTINFO);
	mnl_attr_put_u8(nlh, IFLA_BRPORT_LEARNING, !locked);
	mnl_attr_put_u8(nlh, IFLA_BRPORT_LOCKED, locked);
	mnl_attr_nest_end(nlh, pi);
	return nl_talk(nlh, NULL, NULL);
}

int sw_fdb_add_static(const char *port, const unsigned char mac[6], unsigned vid)
{
	char buf[MNL_SOCKET_BUFFER_SIZE];
	int index = ifindex_of(port);
	if (index < 0)
		return index;
	struct nlmsghdr *nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_NEWNEIGH;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE;
	struct ndmsg *nd = mnl_nlmsg_put_extra_header(nlh, sizeof(*nd));
	nd->ndm_family = AF_BRIDGE;
	nd->ndm_ifindex = index;
	nd->ndm_state = NUD_NOARP; /* static: never ages out */
	nd->ndm_flags = NTF_MASTER;
	mnl_attr_put(nlh, NDA_LLADDR, 6, mac);
	if (vid)
		mnl_attr_put_u16(nlh, NDA_VLAN, (uint16_t)vid);
	return nl_talk(nlh, NULL, NULL);
}

int sw_parse_cidr(const char *s, struct in_addr *addr, unsigned *prefix)
{
	char ip[INET_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	char *end;
	if (!slash || (size_t)(slash - s) >= sizeof(ip) || slash == s)
		return -EINVAL;
	memcpy(ip, s, (size_t)(slash - s));
	ip[slash - s] = '\0';
	if (inet_pton(AF_INET, ip, addr) != 1)
		return -EINVAL;
	if (slash[1] < '0' || slash[1] > '9')
		return -EINVAL;
	unsigned long p = strtoul(slash + 1, &end, 10);
	if (*end || p < 1 || p > 32 || strlen(slash + 1) > 2)
		return -EINVAL;
	*prefix = (unsigned)p;
	return 0;
}

int sw_tap_open(const char *name)
{
	struct ifreq ifr = {0};
	int fd;
	if (!sw_ifname_valid(name))
		return -EINVAL;
	if ((fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)) < 0)
		return -errno;
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}
