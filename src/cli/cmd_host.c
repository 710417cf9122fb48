/* berth CLI: `berth host ...` — the host berthd runs on. */
#include <inttypes.h>
#include <stdio.h>

#include "cli/cli.h"
#include "cli/table.h"

static void human_bytes(uint64_t v, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	double d = (double)v;
	int u = 0;
	while (d >= 1024 && u < 4) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(buf, len, "%" PRIu64 " B", v);
	else
		snprintf(buf, len, "%.1f %s", d, units[u]);
}

static void human_duration(uint64_t s, char *buf, size_t len)
{
	if (s >= 86400)
		snprintf(buf, len, "%" PRIu64 "d %" PRIu64 "h %" PRIu64 "m", s / 86400,
			 s % 86400 / 3600, s % 3600 / 60);
	else if (s >= 3600)
		snprintf(buf, len, "%" PRIu64 "h %" PRIu64 "m %" PRIu64 "s", s / 3600,
			 s % 3600 / 60, s % 60);
	else if (s >= 60)
		snprintf(buf, len, "%" PRIu64 "m %" PRIu64 "s", s / 60, s % 60);
	else
		snprintf(buf, len, "%" PRIu64 "s", s);
}

static int host_show(struct cli *c, const struct cli_verb *v, const struct cli_args *a)
{
	struct response r;
	char mem[32], up[48];
	(void)v;
	(void)a;

	int code = cli_api(c, "GET", "/api/v1/host", NULL, NULL, &r);
	if (code)
		return code;
	if (c->json) {
		cli_print_json(r.body);
		response_free(&r);
		return EXIT_OK;
	}
	json_t *h = r.body;
	json_t *kvm = json_object_get(h, "kvm");
	human_bytes((uint64_t)json_integer_value(json_object_get(h, "memory_bytes")), mem,
		    sizeof(mem));
	human_duration((uint64_t)json_integer_value(json_object_get(h, "uptime_seconds")), up,
		       sizeof(up));
	kv_print(stdout, "Hostname", "%s", json_string_value(json_object_get(h, "hostname")));
	kv_print(stdout, "berthd", "%s", json_string_value(json_object_get(h, "version")));
	kv_print(stdout, "CPUs", "%" JSON_INTEGER_FORMAT,
		 json_integer_value(json_object_get(h, "cpus")));
	kv_print(stdout, "Memory", "%s", mem);
	if (json_is_true(json_object_get(kvm, "available")))
		kv_print(stdout, "KVM", "available (API version %" JSON_INTEGER_FORMAT ")",
			 json_integer_value(json_object_get(kvm, "api_version")));
	else if (json_string_value(json_object_get(kvm, "reason")))
		kv_print(stdout, "KVM", "not available: %s",
			 json_string_value(json_object_get(kvm, "reason")));
	else
		kv_print(stdout, "KVM", "not available");
	kv_print(stdout, "Uptime", "%s", up);
	response_free(&r);
	return EXIT_OK;
}

static const struct cli_opt no_opts[] = {{NULL, 0, NULL, NULL, NULL}};

const struct cli_verb cli_host_verbs[] = {
    {"show", host_show, "", 0, 0, "show the host: CPUs, memory, KVM, berthd's version and uptime",
     "Show the host berthd runs on: its name, berthd's version, online CPUs, memory, whether KVM\n"
     "is usable (and why not), and how long berthd has been running.",
     no_opts, false},
    {NULL, NULL, NULL, 0, 0, NULL, NULL, NULL, false},
};
