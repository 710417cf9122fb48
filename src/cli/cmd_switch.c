/* berth CLI: `berth switch ...` — virtual switches (Linux bridges berthd manages). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"

#define SWITCHES "/api/v1/switches"

static const char *str(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s ? s : "-";
}

static int switch_path(char *buf, size_t len, const char *id)
{
	if (!*id || cli_path(buf, len, SWITCHES, id, NULL))
		return cli_usage(NULL, NULL, "'%.80s' is not a switch name or UUID", id);
	return EXIT_OK;
}

static void show_switch(const json_t *s)
{
	kv_print(stdout, "Name", "%s", str(s, "name"));
	kv_print(stdout, "UUID", "%s", str(s, "uuid"));
	kv_print(stdout, "Kind", "%s", str(s, "kind"));
	kv_print(stdout, "Bridge", "%s%s", str(s, "bridge"),
		 json_is_true(json_object_get(s, "bridge_present")) ? "" : " (missing)");
	kv_print(stdout, "Host NIC", "%s", str(s, "host_nic"));
	kv_print(stdout, "Address", "%s", str(s, "address"));
	kv_print(stdout, "VLAN mode", "%s", str(s, "vlan_mode"));
	kv_print(stdout, "Created", "%s", str(s, "created"));
}

static int print_switch(struct cli *c, struct response *r)
{
	if (c->json)
		cli_print_json(r->body);
	else
		show_switch(r->body);
	response_free(r);
	return EXIT_OK;
}

static int switch_list(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	static const char *const head[] = {"NAME", "KIND", "BRIDGE", "HOST NIC", "ADDRESS", "UUID"};
	struct response r;
	struct table t;
	size_t i;
	json_t *s;
	int code;
	(void)v;
	(void)a;

	if ((code = cli_api(c, "GET", SWITCHES, NULL, NULL, &r)))
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	table_init(&t, 6, head);
	json_array_foreach(json_object_get(r.body, "switches"), i, s)
	{
		const char *row[] = {str(s, "name"),	 str(s, "kind"),    str(s, "bridge"),
				     str(s, "host_nic"), str(s, "address"), str(s, "uuid")};
		if (table_add(&t, row)) {
			code = cli_fail(EXIT_ERROR, "out of memory");
			break;
		}
	}
	if (!code)
		table_print(&t, stdout);
	table_free(&t);
	response_free(&r);
	return code;
}

static int switch_show(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	int code;
	(void)v;

	if ((code = switch_path(path, sizeof(path), a->pos[0])) ||
	    (code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	return print_switch(c, &r);
}

static int switch_create(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	const char *kind = args_get(a, "kind"), *nic = args_get(a, "host-nic"),
		   *addr = args_get(a, "address");
	(void)v;

	if (!kind)
		return cli_usage(NULL, NULL, "--kind is required: external, internal or private");
	json_t *body = json_pack("{s:s,s:s}", "name", a->pos[0], "kind", kind);
	if (nic)
		json_object_set_new(body, "host_nic", json_string(nic));
	if (addr)
		json_object_set_new(body, "address", json_string(addr));
	int code = cli_api(c, "POST", SWITCHES, NULL, body, &r);
	json_decref(body);
	return code ? code : print_switch(c, &r);
}

static int switch_delete(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512], q[256];
	int code;
	(void)v;

	if ((code = switch_path(path, sizeof(path), a->pos[0])))
		return code;
	if (!args_has(a, "yes")) {
		if (!isatty(STDIN_FILENO))
			return cli_usage(NULL, NULL,
					 "not deleting %s: stdin is not a terminal to confirm on; "
					 "pass --yes",
					 a->pos[0]);
		snprintf(q, sizeof(q), "Delete switch %s and its bridge?", a->pos[0]);
		if (!cli_confirm(q))
			return EXIT_ERROR;
	}
	if ((code = cli_api(c, "DELETE", path, NULL, NULL, &r)))
		return code;
	response_free(&r);
	if (!c->json)
		printf("deleted switch %s\n", a->pos[0]);
	return EXIT_OK;
}

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

static const struct cli_opt create_opts[] = {
    {"kind", OPT_ARG, "KIND", "external internal private",
     "external (a host NIC is a port: VMs reach its network), internal (the host has an "
     "address on it) or private (VMs only); required"},
    {"host-nic", OPT_ARG, "IFNAME", NULL, "external switches: the host interface to enslave"},
    {"address", OPT_ARG, "ADDR/PREFIX", NULL,
     "internal switches: the host's IPv4 address on the switch, e.g. 10.0.0.1/24"},
    {NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt delete_opts[] = {
    {"yes", 0, NULL, NULL, "do not ask (needed when stdin is not a terminal)"},
    {NULL, 0, NULL, NULL, NULL},
};

const struct cli_verb cli_switch_verbs[] = {
    {"create", switch_create, "NAME", 1, 1, "create a virtual switch (a Linux bridge)",
     "Create a virtual switch: a Linux bridge berthd keeps (and recreates when it starts). VMs\n"
     "plug NICs into it with `berth vm create|set --nic switch=NAME`. Prints the new switch.",
     create_opts, false},
    {"list", switch_list, "", 0, 0, "list the virtual switches",
     "List the virtual switches: name, kind, bridge, host NIC, address and UUID.", no_opts, false},
    {"show", switch_show, "NAME|UUID", 1, 1, "show one virtual switch",
     "Show one virtual switch, including whether its bridge exists on the host now and how it\n"
     "keeps VLANs apart (bridge VLAN filtering, or a bridge per VLAN).",
     no_opts, false},
    {"delete", switch_delete, "NAME|UUID", 1, 1, "delete a virtual switch",
     "Delete a virtual switch and its bridge. Refused (exit status 4) while a VM's NIC uses it.",
     delete_opts, false},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
