/* GET /metrics: Prometheus text exposition (0.0.4) of every VM and of berthd itself; the VMMs'
 * counters come from their control sockets (query-stats), all asked at once, 100 ms in all. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/api.h"
#include "daemon/ctlclient.h"
#include "daemon/db.h"
#include "daemon/events.h"
#include "daemon/vmmcfg.h"

#define SCRAPE_TIMEOUT_MS 100

/* berth_domain_info_state's values (docs/berthd.md). */
static const char *const STATES[] = {"off",   "starting", "running", "paused",
				     "saved", "stopping", "crashed"};
enum { ST_RUNNING = 2, ST_PAUSED = 3 }; /* indices in STATES */

struct vmrow {
	char uuid[DB_UUID_LEN + 1];
	char *name;
	int state; /* index in STATES, -1 if unknown */
	json_t *spec;
	int64_t pid;
	uint64_t start_time;
	bool proc_ok; /* cpu_ticks and rss_pages read from /proc */
	uint64_t cpu_ticks, rss_pages;
	int stats_ret; /* the query-stats call: 0 and stats, or -errno; 1 if not asked */
	json_t *stats;
};

struct rows {
	struct vmrow *v;
	size_t n, cap;
};

static int add_row(const struct db_vm *vm, void *arg)
{
	struct rows *rs = arg;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct vmrow *nv = realloc(rs->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		rs->v = nv;
		rs->cap = cap;
	}
	struct vmrow *r = &rs->v[rs->n];
	*r = (struct vmrow){
	    .state = -1, .stats_ret = 1, .pid = vm->vmm_pid, .start_time = vm->vmm_start_time};
	memcpy(r->uuid, vm->uuid, sizeof(r->uuid));
	for (int i = 0; i < (int)ARRAY_SIZE(STATES); i++)
		if (!strcmp(vm->state, STATES[i]))
			r->state = i;
	r->name = strdup(vm->name);
	r->spec = json_loads(vm->config, 0, NULL);
	if (!r->name || !r->spec) {
		free(r->name);
		json_decref(r->spec);
		return -ENOMEM;
	}
	rs->n++;
	return 0;
}

static void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].name);
		json_decref(rs->v[i].spec);
		json_decref(rs->v[i].stats);
	}
	free(rs->v);
}

/* utime + stime (fields 14, 15) and rss (24) of the VMM, if it is still the process we started
 * (field 22, its start time, matches). */
static void read_proc(struct vmrow *r)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%lld/stat", (long long)r->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	unsigned long long ut, st, start, rss;
	if (!p || sscanf(p + 2,
			 "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
			 "%*d %*d %llu %*u %llu",
			 &ut, &st, &start, &rss) != 4)
		return;
	if (r->start_time && start != r->start_time)
		return;
	r->cpu_ticks = ut + st;
	r->rss_pages = rss;
	r->proc_ok = true;
}

/* Ask every VMM at once; the ones that do not answer in time are counted as scrape errors. */
static void collect_stats(struct api_ctx *ctx, struct rows *rs)
{
	struct ctl_multi *m = calloc(rs->n ? rs->n : 1, sizeof(*m));
	struct vm_paths *paths = calloc(rs->n ? rs->n : 1, sizeof(*paths));
	size_t *which = calloc(rs->n ? rs->n : 1, sizeof(*which));
	unsigned n = 0;
	if (!m || !paths || !which)
		goto out;
	for (size_t i = 0; i < rs->n; i++) {
		struct vmrow *r = &rs->v[i];
		if (r->pid <= 0)
			continue;
		read_proc(r);
		/* a starting VMM may not listen yet, a stopping one may be gone: not errors */
		if (r->state != ST_RUNNING && r->state != ST_PAUSED)
			continue;
		if (!ctx->state_dir ||
		    vmmcfg_paths(ctx->state_dir, ctx->run_dir, r->uuid, &paths[n]))
			continue;
		m[n].path = paths[n].control;
		which[n++] = i;
	}
	ctl_call_all(m, n, "query-stats", SCRAPE_TIMEOUT_MS);
	for (unsigned k = 0; k < n; k++) {
		struct vmrow *r = &rs->v[which[k]];
		r->stats_ret = m[k].ret;
		r->stats = m[k].result;
		if (m[k].ret) {
			atomic_fetch_add(&ctx->scrape_errors, 1);
			log_debug("metrics", "VM %s: query-stats: %s", r->name,
				  strerror(-m[k].ret));
		}
	}
out:
	free(m);
	free(paths);
	free(which);
}

/* A label value: backslash, double quote and newline escaped. */
static void put_label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fprintf(f, "\\%c", *s);
		else if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void dom(FILE *f, const char *name, const struct vmrow *r)
{
	fprintf(f, "%s{domain=\"", name);
	put_label(f, r->name);
	fprintf(f, "\",uuid=\"%s\"", r->uuid);
}

static int64_t num(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

/* vda, vdb, ... vdz, vdaa: the guest's names of the disks in the order of the spec. */
static void disk_name(size_t i, char out[8])
{
	if (i < 26)
		snprintf(out, 8, "vd%c", (char)('a' + i));
	else
		snprintf(out, 8, "vd%c%c", (char)('a' + i / 26 - 1), (char)('a' + i % 26));
}

struct dev_metric {
	const char *name, *key, *help;
};

static const struct dev_metric BLOCK[] = {
    {"berth_domain_block_stats_read_bytes_total", "read_bytes", "Bytes the guest read."},
    {"berth_domain_block_stats_read_requests_total", "read_requests", "Read requests done."},
    {"berth_domain_block_stats_write_bytes_total", "write_bytes", "Bytes the guest wrote."},
    {"berth_domain_block_stats_write_requests_total", "write_requests", "Write requests done."},
    {"berth_domain_block_stats_flush_requests_total", "flush_requests", "Flush requests done."},
    {"berth_domain_block_stats_errors_total", "errors", "Requests that failed."},
};

static const struct dev_metric NET[] = {
    {"berth_domain_interface_stats_receive_bytes_total", "rx_bytes", "Bytes received."},
    {"berth_domain_interface_stats_receive_packets_total", "rx_packets", "Frames received."},
    {"berth_domain_interface_stats_receive_drops_total", "rx_dropped",
     "Frames dropped on receive."},
    {"berth_domain_interface_stats_transmit_bytes_total", "tx_bytes", "Bytes sent."},
    {"berth_domain_interface_stats_transmit_packets_total", "tx_packets", "Frames sent."},
    {"berth_domain_interface_stats_transmit_drops_total", "tx_dropped", "Frames dropped on send."},
};

static void write_devices(FILE *f, const struct rows *rs)
{
	for (size_t m = 0; m < ARRAY_SIZE(BLOCK); m++) {
		head(f, BLOCK[m].name, "counter", BLOCK[m].help);
		for (size_t i = 0; i < rs->n; i++) {
			const struct vmrow *r = &rs->v[i];
			json_t *disks = json_object_get(r->stats, "disks");
			json_t *spec_disks = json_object_get(r->spec, "disks"), *d;
			size_t k;
			json_array_foreach(disks, k, d)
			{
				char tgt[8];
				const char *src = json_string_value(
				    json_object_get(json_array_get(spec_disks, k), "path"));
				disk_name(k, tgt);
				dom(f, BLOCK[m].name, r);
				fprintf(f, ",target_device=\"%s\",source_file=\"", tgt);
				put_label(f, src ? src : "");
				fprintf(f, "\"} %lld\n", (long long)num(d, BLOCK[m].key));
			}
		}
	}
	for (size_t m = 0; m < ARRAY_SIZE(NET); m++) {
		head(f, NET[m].name, "counter", NET[m].help);
		for (size_t i = 0; i < rs->n; i++) {
			const struct vmrow *r = &rs->v[i];
			json_t *spec_nics = json_object_get(r->spec, "nics"), *d;
			size_t k;
			json_array_foreach(json_object_get(r->stats, "nics"), k, d)
			{
				json_t *nic = json_array_get(spec_nics, k);
				const char *sw = json_string_value(json_object_get(nic, "switch"));
				const char *mac = json_string_value(json_object_get(nic, "mac"));
				dom(f, NET[m].name, r);
				fputs(",target_device=\"", f);
				put_label(f, json_string_value(json_object_get(d, "ifname")) ?: "");
				fputs("\",switch=\"", f);
				put_label(f, sw ? sw : "");
				fputs("\",mac=\"", f);
				put_label(f, mac ? mac : "");
				fprintf(f, "\"} %lld\n", (long long)num(d, NET[m].key));
			}
		}
	}
}

static void write_domains(FILE *f, const struct rows *rs)
{
	long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	head(f, "berth_domain_info_state", "gauge",
	     "The VM's state: 0 off, 1 starting, 2 running, 3 paused, 4 saved, 5 stopping, "
	     "6 crashed.");
	for (size_t i = 0; i < rs->n; i++) {
		dom(f, "berth_domain_info_state", &rs->v[i]);
		fprintf(f, "} %d\n", rs->v[i].state);
	}
	head(f, "berth_domain_info_vcpus", "gauge", "Virtual CPUs configured.");
	for (size_t i = 0; i < rs->n; i++) {
		dom(f, "berth_domain_info_vcpus", &rs->v[i]);
		fprintf(f, "} %lld\n", (long long)num(rs->v[i].spec, "vcpus"));
	}
	head(f, "berth_domain_info_memory_bytes", "gauge", "Memory configured, in bytes.");
	for (size_t i = 0; i < rs->n; i++) {
		dom(f, "berth_domain_info_memory_bytes", &rs->v[i]);
		fprintf(f, "} %lld\n", (long long)num(rs->v[i].spec, "memory_mib") << 20);
	}
	head(f, "berth_domain_info_cpu_time_seconds_total", "counter",
	     "CPU time of the VM's berth-vmm process (all its threads), in seconds.");
	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].proc_ok) {
			dom(f, "berth_domain_info_cpu_time_seconds_total", &rs->v[i]);
			fprintf(f, "} %.2f\n", (double)rs->v[i].cpu_ticks / (double)tick);
		}
	head(f, "berth_domain_memory_rss_bytes", "gauge",
	     "Resident memory of the VM's berth-vmm process, in bytes.");
	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].proc_ok) {
			dom(f, "berth_domain_memory_rss_bytes", &rs->v[i]);
			fprintf(f, "} %llu\n",
				(unsigned long long)rs->v[i].rss_pages * (unsigned long long)page);
		}
	head(f, "berth_domain_vcpu_time_seconds_total", "counter",
	     "CPU time of each vCPU thread, in seconds.");
	for (size_t i = 0; i < rs->n; i++) {
		json_t *v;
		size_t k;
		json_array_foreach(json_object_get(rs->v[i].stats, "vcpus"), k, v)
		{
			dom(f, "berth_domain_vcpu_time_seconds_total", &rs->v[i]);
			fprintf(f, ",vcpu=\"%lld\"} %.9f\n", (long long)num(v, "id"),
				(double)num(v, "cpu_time_ns") / 1e9);
		}
	}
	head(f, "berth_domain_stats_up", "gauge",
	     "1 if the VMM answered query-stats within the scrape's time, else 0.");
	for (size_t i = 0; i < rs->n; i++)
		if (rs->v[i].stats_ret <= 0) {
			dom(f, "berth_domain_stats_up", &rs->v[i]);
			fprintf(f, "} %d\n", rs->v[i].stats_ret == 0);
		}
	write_devices(f, rs);
}

static void write_daemon(FILE *f, struct api_ctx *ctx, const struct rows *rs)
{
	head(f, "berth_daemon_up", "gauge", "1: berthd answers.");
	fputs("berth_daemon_up 1\n", f);
	head(f, "berth_daemon_build_info", "gauge", "berthd's version, as a label.");
	fprintf(f, "berth_daemon_build_info{version=\"%s\"} 1\n", BERTH_VERSION);
	head(f, "berth_daemon_start_time_seconds", "gauge",
	     "When berthd started, in seconds since the epoch.");
	struct timespec now, mono;
	clock_gettime(CLOCK_REALTIME, &now);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	double up = (double)(mono.tv_sec - ctx->started.tv_sec) +
		    (double)(mono.tv_nsec - ctx->started.tv_nsec) / 1e9;
	fprintf(f, "berth_daemon_start_time_seconds %.3f\n",
		(double)now.tv_sec + (double)now.tv_nsec / 1e9 - up);
	head(f, "berth_daemon_vms", "gauge", "VMs defined, by state.");
	for (int s = 0; s < (int)ARRAY_SIZE(STATES); s++) {
		unsigned n = 0;
		for (size_t i = 0; i < rs->n; i++)
			n += rs->v[i].state == s;
		fprintf(f, "berth_daemon_vms{state=\"%s\"} %u\n", STATES[s], n);
	}
	head(f, "berth_daemon_http_requests_total", "counter",
	     "HTTP requests answered, by status code.");
	for (unsigned c = 100; c < API_STATUS_MAX; c++) {
		uint64_t n = atomic_load(&ctx->responses[c]);
		if (n)
			fprintf(f, "berth_daemon_http_requests_total{code=\"%u\"} %llu\n", c,
				(unsigned long long)n);
	}
	head(f, "berth_daemon_scrape_errors_total", "counter",
	     "VMMs that did not answer query-stats in time (or refused) during a scrape.");
	fprintf(f, "berth_daemon_scrape_errors_total %llu\n",
		(unsigned long long)atomic_load(&ctx->scrape_errors));
	head(f, "berth_daemon_event_streams", "gauge", "Event streams open now.");
	fprintf(f, "berth_daemon_event_streams %u\n", ctx->events ? evbus_streams(ctx->events) : 0);
}

void api_metrics_get(struct api_req *req, struct api_resp *resp)
{
	struct api_ctx *ctx = req->ctx;
	struct rows rs = {0};
	char *text = NULL;
	size_t len = 0;
	int r = db_begin(ctx->db, false);
	if (!r) {
		r = db_vm_list(ctx->db, NULL, add_row, &rs);
		db_commit(ctx->db);
	}
	if (r) {
		api_error(resp, 500, "internal", NULL, "reading the inventory failed");
		goto out;
	}
	collect_stats(ctx, &rs);
	FILE *f = open_memstream(&text, &len);
	if (!f) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto out;
	}
	write_daemon(f, ctx, &rs);
	write_domains(f, &rs);
	if (fclose(f)) {
		free(text);
		api_error(resp, 500, "internal", NULL, "out of memory");
		goto out;
	}
	resp->status = 200;
	resp->text = text;
	resp->text_len = len;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
out:
	rows_free(&rs);
}
