/* berth CLI: `berth vm ...` — define, list, show, modify and delete virtual machines. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/table.h"
#include "cli/vm_spec.h"
#include "common/util.h"

#define VMS "/api/v1/vms"

static const char *str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

static json_int_t num(const json_t *obj, const char *key)
{
	return json_integer_value(json_object_get(obj, key));
}

static void memory_text(const json_t *vm, char *buf, size_t len)
{
	json_int_t mib = num(vm, "memory_mib");
	format_size(mib > 0 ? (uint64_t)mib * MiB : 0, buf, len);
}

static void show_vm(const json_t *vm)
{
	const json_t *boot = json_object_get(vm, "boot");
	char mem[32];
	size_t i;
	json_t *d;

	memory_text(vm, mem, sizeof(mem));
	kv_print(stdout, "Name", "%s", str(vm, "name"));
	kv_print(stdout, "UUID", "%s", str(vm, "uuid"));
	if (str(vm, "state_reason"))
		kv_print(stdout, "State", "%s (%s)", str(vm, "state"), str(vm, "state_reason"));
	else
		kv_print(stdout, "State", "%s", str(vm, "state"));
	kv_print(stdout, "vCPUs", "%" JSON_INTEGER_FORMAT, num(vm, "vcpus"));
	kv_print(stdout, "Memory", "%s", mem);
	kv_print(stdout, "CPU template", "%s", str(vm, "cpu_template"));
	kv_print(stdout, "Kernel", "%s", str(boot, "kernel"));
	kv_print(stdout, "Initrd", "%s", str(boot, "initrd") ? str(boot, "initrd") : "-");
	kv_print(stdout, "Cmdline", "%s", str(boot, "cmdline"));
	if (!json_array_size(json_object_get(vm, "disks")))
		kv_print(stdout, "Disks", "-");
	json_array_foreach(json_object_get(vm, "disks"), i, d)
	{
		char key[32], serial[40] = "";
		snprintf(key, sizeof(key), "Disk %zu", i);
		if (str(d, "serial"))
			snprintf(serial, sizeof(serial), " serial=%s", str(d, "serial"));
		kv_print(stdout, key, "%s (format=%s cache=%s%s%s)", str(d, "path"),
			 str(d, "format"), str(d, "cache"),
			 json_is_true(json_object_get(d, "readonly")) ? " readonly" : "", serial);
	}
	if (!json_array_size(json_object_get(vm, "console_ports")))
		kv_print(stdout, "Console ports", "-");
	json_array_foreach(json_object_get(vm, "console_ports"), i, d)
	{
		kv_print(stdout, i ? "" : "Console ports", "%s", str(d, "name"));
	}
	if (!json_array_size(json_object_get(vm, "nics")))
		kv_print(stdout, "NICs", "-");
	json_array_foreach(json_object_get(vm, "nics"), i, d)
	{
		char key[32], vlan[24] = "";
		snprintf(key, sizeof(key), "NIC %zu", i);
		if (json_is_integer(json_object_get(d, "vlan")))
			snprintf(vlan, sizeof(vlan), " vlan=%" JSON_INTEGER_FORMAT, num(d, "vlan"));
		kv_print(stdout, key, "switch=%s mac=%s%s%s", str(d, "switch"), str(d, "mac"), vlan,
			 json_is_true(json_object_get(d, "mac_spoofing")) ? " mac-spoofing=on" : "");
	}
	kv_print(stdout, "RNG", "%s", json_is_true(json_object_get(vm, "rng")) ? "yes" : "no");
	kv_print(stdout, "Auto start", "%s", str(vm, "auto_start"));
	kv_print(stdout, "Auto stop", "%s", str(vm, "auto_stop"));
	kv_print(stdout, "Created", "%s", str(vm, "created"));
	kv_print(stdout, "Modified", "%s", str(vm, "modified"));
	kv_print(stdout, "Generation", "%" JSON_INTEGER_FORMAT, num(vm, "generation"));
	kv_print(stdout, "Notes", "%s", str(vm, "notes"));
}

/* Print one VM answer (the document with --json, else the VM's fields) and free it. */
static int print_vm(struct cli *c, struct response *r)
{
	if (c->json)
		cli_print_json(r->body);
	else
		show_vm(r->body);
	response_free(r);
	return EXIT_OK;
}

static int vm_path(char *buf, size_t len, const char *id)
{
	if (!*id || cli_path(buf, len, VMS, id, NULL))
		return cli_usage(NULL, NULL, "'%.80s' is not a VM name or UUID", id);
	return EXIT_OK;
}

static int vm_list(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	static const char *const head[] = {"NAME", "STATE", "VCPUS", "MEMORY", "UUID"};
	struct response r;
	struct table t;
	size_t i;
	json_t *vm;
	int code;
	(void)v;
	(void)a;

	if ((code = cli_api(c, "GET", VMS, NULL, NULL, &r)))
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	table_init(&t, 5, head);
	json_array_foreach(json_object_get(r.body, "vms"), i, vm)
	{
		char vcpus[24], mem[32];
		snprintf(vcpus, sizeof(vcpus), "%" JSON_INTEGER_FORMAT, num(vm, "vcpus"));
		memory_text(vm, mem, sizeof(mem));
		const char *row[] = {str(vm, "name"), str(vm, "state"), vcpus, mem,
				     str(vm, "uuid")};
		if (table_add(&t, row)) {
			code = cli_fail(EXIT_ERROR, "out of memory");
			goto out;
		}
	}
	table_print(&t, stdout);
out:
	table_free(&t);
	response_free(&r);
	return code;
}

static int vm_show(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512];
	int code;
	(void)v;

	if ((code = vm_path(path, sizeof(path), a->pos[0])) ||
	    (code = cli_api(c, "GET", path, NULL, NULL, &r)))
		return code;
	return print_vm(c, &r);
}

static int vm_create(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	json_t *spec = NULL;
	const char *from = args_get(a, "from-json");
	int code;
	(void)v;

	if (from)
		code = vm_spec_load(from, &spec);
	else
		code = (spec = json_object()) ? EXIT_OK : cli_fail(EXIT_ERROR, "out of memory");
	if (code)
		return code;
	if (a->npos && json_object_set_new(spec, "name", json_string(a->pos[0]))) {
		code = cli_fail(EXIT_ERROR, "out of memory");
		goto out;
	}
	if (!json_object_get(spec, "name")) {
		code = cli_usage(NULL, NULL, "missing NAME");
		goto out;
	}
	if (!from && !args_has(a, "kernel")) {
		code = cli_usage(NULL, NULL, "missing --kernel PATH");
		goto out;
	}
	if ((code = vm_spec_apply(c, a, spec)) || (code = cli_api(c, "POST", VMS, NULL, spec, &r)))
		goto out;
	code = print_vm(c, &r);
out:
	json_decref(spec);
	return code;
}

/* PATCH with the ETag of a GET, so a change made by someone else in between is refused (412)
 * instead of overwritten; --force sends no If-Match (the last writer wins). */
static int vm_set(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	json_t *patch = NULL;
	const char *from = args_get(a, "from-json");
	char path[512], etag[80] = "";
	int code;
	(void)v;

	if ((code = vm_path(path, sizeof(path), a->pos[0])))
		return code;
	if (from)
		code = vm_spec_load(from, &patch);
	else
		code = (patch = json_object()) ? EXIT_OK : cli_fail(EXIT_ERROR, "out of memory");
	if (code || (code = vm_spec_apply(c, a, patch)))
		goto out;
	if (!json_object_size(patch)) {
		code = cli_usage(NULL, NULL, "nothing to change: give at least one option");
		goto out;
	}
	if (!args_has(a, "force")) {
		if ((code = cli_api(c, "GET", path, NULL, NULL, &r)))
			goto out;
		snprintf(etag, sizeof(etag), "%s", r.etag);
		/* address the VM read, even if it is renamed meanwhile */
		code = str(r.body, "uuid") ? vm_path(path, sizeof(path), str(r.body, "uuid")) : 0;
		response_free(&r);
		if (code)
			goto out;
		if (!etag[0]) {
			code = cli_fail(EXIT_ERROR,
					"berthd sent no ETag for %s: cannot guard the "
					"change (use --force to change it anyway)",
					a->pos[0]);
			goto out;
		}
	}
	code = cli_api_keep(c, "PATCH", path, etag[0] ? etag : NULL, patch, &r);
	if (code && r.status) {
		/* 412: the ETag read no longer matches */
		cli_report(&r, r.status == 412 && etag[0]
				   ? "; run the command again to apply the change to the current "
				     "version, or use --force"
				   : NULL);
		response_free(&r);
	}
	if (code)
		goto out;
	code = print_vm(c, &r);
out:
	json_decref(patch);
	return code;
}

/* Without --yes ask on a terminal, and refuse elsewhere: a script must say what it means. */
static int vm_delete(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char path[512], etag[80] = "", q[256];
	const char *name = a->pos[0];
	int code;
	(void)v;

	bool drop = args_has(a, "delete-disks");
	if ((code = vm_path(path, sizeof(path), name)))
		return code;
	if (!args_has(a, "yes")) {
		if (!isatty(STDIN_FILENO))
			return cli_usage(NULL, NULL,
					 "not deleting %s: stdin is not a terminal to confirm on; "
					 "pass --yes",
					 name);
		if ((code = cli_api(c, "GET", path, NULL, NULL, &r)))
			return code;
		snprintf(q, sizeof(q), "Delete VM %s (%s)? %s", str(r.body, "name"),
			 str(r.body, "uuid"),
			 drop ? "Its managed disks no other VM uses are deleted too."
			      : "Its disk files are kept.");
		snprintf(etag, sizeof(etag), "%s", r.etag);
		code = str(r.body, "uuid") ? vm_path(path, sizeof(path), str(r.body, "uuid")) : 0;
		response_free(&r);
		if (code)
			return code;
		if (!cli_confirm(q))
			return cli_fail(EXIT_ERROR, "not deleted");
	}
	if (drop)
		strncat(path, "?delete_disks=true", sizeof(path) - strlen(path) - 1);
	if ((code = cli_api(c, "DELETE", path, etag[0] ? etag : NULL, NULL, &r)))
		return code;
	response_free(&r); /* 204: no document, so --json prints nothing */
	if (!c->json)
		printf("deleted VM %s\n", name);
	return EXIT_OK;
}

/* Options shared by create and set; D() adds the default to the help of create. */
#define WITH_DEFAULT(x) " (default " x ")"
#define NO_DEFAULT(x) ""
// clang-format off
#define SPEC_OPTS(D) \
	{"vcpus", OPT_ARG, "N", NULL, "virtual CPUs, 1..1024" D("1")}, \
	{"memory", OPT_ARG, "SIZE", NULL, "RAM, 64M..64G: 512M, 2G; bare number = MiB" D("512M")}, \
	{"cpu-template", OPT_ARG, "T", "host baseline", "CPUID: host or baseline" D("host")}, \
	{"kernel", OPT_ARG | OPT_FILE, "PATH", NULL, "kernel on the host: bzImage or PVH ELF"}, \
	{"initrd", OPT_ARG | OPT_FILE, "PATH", NULL, "initial ramdisk on the host"}, \
	{"cmdline", OPT_ARG, "TEXT", NULL, "kernel command line"}, \
	{"disk", OPT_ARG | OPT_REPEAT | OPT_FILE, \
	 "PATH[,format=auto|raw|qcow2][,readonly][,cache=none|writeback][,serial=S]", NULL, \
	 "a virtio-blk disk; repeat for more, in order (at most 8)"}, \
	{"console-port", OPT_ARG | OPT_REPEAT, "NAME", NULL, \
	 "a named virtio-console port, repeatable (org.qemu.guest_agent.0)"}, \
	{"nic", OPT_ARG | OPT_REPEAT, "switch=NAME[,mac=M][,vlan=N][,mac-spoofing=on]", NULL, \
	 "a virtio-net NIC on a virtual switch; repeat for more (at most 4); no mac=: berthd assigns one; " \
	 "mac-spoofing=on lets the guest send from other MACs"}, \
	{"rng", 0, NULL, NULL, "a virtio-rng device"}, \
	{"auto-start", OPT_ARG, "ACTION", "nothing start-if-running always", \
	 "on host start: nothing, start-if-running, always" D("start-if-running")}, \
	{"auto-stop", OPT_ARG, "ACTION", "save turn-off shut-down", \
	 "on host shutdown: save, turn-off, shut-down" D("save")}, \
	{"notes", OPT_ARG, "TEXT", NULL, "free text, at most 4096 bytes"}

static const struct cli_opt create_opts[] = {
	SPEC_OPTS(WITH_DEFAULT),
	{"from-json", OPT_ARG | OPT_FILE, "FILE|-", NULL,
	 "start from a full VM spec in JSON (as in the API); NAME and options override it"},
	{NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt set_opts[] = {
	{"name", OPT_ARG, "NEW", NULL, "rename the VM"},
	SPEC_OPTS(NO_DEFAULT),
	{"no-initrd", 0, NULL, NULL, "remove the initial ramdisk"},
	{"no-disks", 0, NULL, NULL, "remove every disk (--disk replaces the whole list)"},
	{"no-console-ports", 0, NULL, NULL, "remove every console port (--console-port replaces the list)"},
	{"no-nics", 0, NULL, NULL, "remove every NIC (--nic replaces the list)"},
	{"no-rng", 0, NULL, NULL, "remove the virtio-rng device"},
	{"from-json", OPT_ARG | OPT_FILE, "FILE|-", NULL,
	 "start from a JSON merge patch (RFC 7386); options override it"},
	{"force", 0, NULL, NULL, "change it even if someone else changed it since it was read"},
	{NULL, 0, NULL, NULL, NULL},
};
// clang-format on

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

static const struct cli_opt delete_opts[] = {
    {"yes", 0, NULL, NULL, "do not ask (required when stdin is not a terminal)"},
    {"delete-disks", 0, NULL, NULL,
     "also delete its managed disks that no other VM uses and no disk has as backing"},
    {NULL, 0, NULL, NULL, NULL},
};

#define NO_WAIT_OPT                                                                                \
	{                                                                                          \
		"no-wait", 0, NULL, NULL,                                                          \
		    "return once berthd accepted it: print the operation's id (with --json, the "  \
		    "operation)"                                                                   \
	}

static const struct cli_opt action_opts[] = {
    NO_WAIT_OPT,
    {NULL, 0, NULL, NULL, NULL},
};

static const struct cli_opt stop_opts[] = {
    {"timeout", OPT_ARG, "S", NULL,
     "seconds the guest has to power off before it is turned off, 1..3600 (default 60)"},
    {"turn-off", 0, NULL, NULL, "turn it off at once instead (as Stop-VM -TurnOff; = vm turn-off)"},
    NO_WAIT_OPT,
    {NULL, 0, NULL, NULL, NULL},
};

#define FOLLOW_TEXT                                                                                \
	"\nberth waits for the operation to finish (a progress line on a terminal) and prints "    \
	"the\n"                                                                                    \
	"VM's new state; --json prints the finished operation. A failed operation exits 1 with\n"  \
	"its error; a VM in the wrong state, or busy with another action, exits 4."

const struct cli_verb cli_vm_verbs[] = {
    {"create", vm_create, "NAME", 0, 1, "define a VM (it is off; nothing starts)",
     "Define a VM in berthd's inventory. It is created off. --kernel is required unless\n"
     "--from-json gives a full spec. Paths are paths on berthd's host; relative ones are made\n"
     "absolute against the working directory when berthd is local. Prints the new VM.",
     create_opts, false},
    {"list", vm_list, "", 0, 0, "list the VMs: NAME STATE VCPUS MEMORY UUID",
     "List every VM on the host, ordered by name.", no_opts, false},
    {"show", vm_show, "NAME|UUID", 1, 1, "show one VM's definition and state",
     "Show one VM: its state and every field of its definition.", no_opts, true},
    {"set", vm_set, "NAME|UUID", 1, 1, "modify or rename a VM",
     "Change a VM's definition: only the fields given change; --disk and --console-port\n"
     "replace the whole list. The VM is read first and the change sent with its ETag, so a\n"
     "change someone else made meanwhile makes this fail with exit status 4 instead of being\n"
     "overwritten. Prints the VM as changed.",
     set_opts, true},
    {"delete", vm_delete, "NAME|UUID", 1, 1, "delete a VM's definition (disk files are kept)",
     "Delete a VM from the inventory. Its disk files stay where they are unless\n"
     "--delete-disks is given: then its managed disks (berth disk) that no other VM uses and\n"
     "that back no other disk are deleted too; plain disk paths are never deleted. Asks for\n"
     "confirmation on a terminal; elsewhere --yes is required.",
     delete_opts, true},
    {"start", cli_vm_action, "NAME|UUID", 1, 1, "start a VM (a saved one is restored)",
     "Start a VM that is off or crashed; a saved VM is restored where it was saved (as\n"
     "Hyper-V's Start-VM)." FOLLOW_TEXT,
     action_opts, true},
    {"stop", cli_vm_action, "NAME|UUID", 1, 1, "shut a VM down (ACPI), turned off after --timeout",
     "Shut a running VM down as Hyper-V's Stop-VM does: press its ACPI power button and give\n"
     "the guest --timeout seconds to power off; berthd then turns it off (its state reason\n"
     "says shutdown-timeout), so stop always ends with the VM off. --turn-off skips the\n"
     "shutdown (as Stop-VM -TurnOff)." FOLLOW_TEXT,
     stop_opts, true},
    {"turn-off", cli_vm_action, "NAME|UUID", 1, 1, "turn a VM off at once (power cut)",
     "Turn a running or paused VM off at once, like pulling the plug: the guest is not asked.\n"
     "Anything it had not written to its disks is lost." FOLLOW_TEXT,
     action_opts, true},
    {"restart", cli_vm_action, "NAME|UUID", 1, 1, "turn a VM off and start it again (reset)",
     "Turn a running or paused VM off and boot it again (Hyper-V's Restart-VM / "
     "Reset)." FOLLOW_TEXT,
     action_opts, true},
    {"pause", cli_vm_action, "NAME|UUID", 1, 1, "stop a VM's vCPUs (Suspend-VM)",
     "Stop a running VM's virtual CPUs; its memory stays where it is. 'vm resume' continues\n"
     "it." FOLLOW_TEXT,
     action_opts, true},
    {"resume", cli_vm_action, "NAME|UUID", 1, 1, "continue a paused VM",
     "Let a paused VM's virtual CPUs run again." FOLLOW_TEXT, action_opts, true},
    {"save", cli_vm_action, "NAME|UUID", 1, 1, "save a VM's state to disk and stop it",
     "Save a running or paused VM's memory and devices to disk and end its VMM (as Hyper-V's\n"
     "Save-VM). 'vm start' restores it where it was." FOLLOW_TEXT,
     action_opts, true},
    {"console", cli_vm_console, "NAME|UUID", 1, 1,
     "attach to a VM's serial console (Ctrl-] detaches)",
     "Attach to the serial console (COM1) of a running or paused VM: first the last 64 KiB it\n"
     "printed, then its output as it comes. On a terminal the terminal goes raw (keys go to\n"
     "the guest, Ctrl-C too) and Ctrl-] detaches; the terminal is restored however berth\n"
     "ends. When stdin is not a terminal, stdin is sent to the console and the console copied\n"
     "to stdout; at the end of stdin berth keeps copying the output until the console closes\n"
     "(the VM stops) or berth is killed. One client at a time: a console in use exits 4.",
     no_opts, true},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
