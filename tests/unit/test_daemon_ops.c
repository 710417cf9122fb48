/* Unit tests for berthd's operations (states, bounded history, notification) and the translation
 * of a VM spec into a berth-vmm configuration. */
#include "unit.h"

#include <errno.h>
#include <jansson.h>

#include "daemon/ops.h"
#include "daemon/vmmcfg.h"
#include "daemon/vmspec.h"

static const char *jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static void test_op_states(void **state)
{
	(void)state;
	struct ops *ops;
	char id[OP_ID_LEN + 1];
	bool fin = true;
	assert_int_equal(ops_new(&ops), 0);
	assert_int_equal(ops_create(ops, "start", "0ab774ae-89b0-40c1-b090-e7618683c114", id), 0);
	json_t *o = ops_get(ops, id, false, &fin);
	assert_false(fin);
	assert_string_equal(jstr(o, "state"), "queued");
	assert_true(json_is_null(json_object_get(o, "finished")));
	assert_true(json_is_null(json_object_get(o, "error")));
	json_decref(o);
	ops_progress(ops, id, 30);
	ops_progress(ops, id, 20); /* progress never goes back */
	o = ops_get(ops, id, false, &fin);
	assert_string_equal(jstr(o, "state"), "running");
	assert_int_equal(json_integer_value(json_object_get(o, "progress")), 30);
	json_decref(o);
	ops_fail(ops, id, "action-failed", "the VMM exited: %s", "boom");
	ops_succeed(ops, id); /* a finished operation stays as it ended */
	o = ops_get(ops, id, true, &fin);
	assert_true(fin);
	assert_string_equal(jstr(o, "state"), "failed");
	assert_string_equal(jstr(json_object_get(o, "error"), "code"), "action-failed");
	assert_string_equal(jstr(json_object_get(o, "error"), "message"), "the VMM exited: boom");
	assert_non_null(jstr(o, "finished"));
	json_decref(o);
	assert_null(ops_get(ops, "nope", false, &fin));
	ops_free(ops);
}

static void test_history_is_bounded(void **state)
{
	(void)state;
	struct ops *ops;
	char first[OP_ID_LEN + 1], pending[OP_ID_LEN + 1], id[OP_ID_LEN + 1];
	bool fin;
	assert_int_equal(ops_new(&ops), 0);
	assert_int_equal(ops_create(ops, "pause", NULL, pending), 0); /* never finishes */
	assert_int_equal(ops_create(ops, "start", NULL, first), 0);
	ops_succeed(ops, first);
	for (int i = 0; i < OPS_HISTORY + 10; i++) {
		assert_int_equal(ops_create(ops, "resume", NULL, id), 0);
		ops_succeed(ops, id);
	}
	assert_int_equal(ops_create(ops, "save", NULL, id), 0); /* trimming happens on create */
	json_t *o = ops_get(ops, first, false, &fin);
	assert_null(o); /* the oldest finished ones are gone */
	o = ops_get(ops, pending, false, &fin);
	assert_non_null(o); /* an unfinished one is always kept */
	json_decref(o);
	json_t *list = ops_list(ops);
	json_t *a = json_object_get(list, "operations");
	assert_int_equal(json_array_size(a), OPS_HISTORY + 2);
	assert_string_equal(jstr(json_array_get(a, 0), "kind"), "save"); /* newest first */
	assert_string_equal(jstr(json_array_get(a, OPS_HISTORY + 1), "id"), pending);
	json_decref(list);
	ops_free(ops);
}

static int calls;
static void count(void *arg)
{
	(void)arg;
	calls++;
}

static void test_notify(void **state)
{
	(void)state;
	struct ops *ops;
	char a[OP_ID_LEN + 1], b[OP_ID_LEN + 1];
	assert_int_equal(ops_new(&ops), 0);
	assert_int_equal(ops_create(ops, "start", NULL, a), 0);
	assert_int_equal(ops_create(ops, "start", NULL, b), 0);
	calls = 0;
	assert_int_equal(ops_notify(ops, a, count, NULL), 1);
	assert_int_equal(ops_notify(ops, b, count, NULL), 1);
	assert_int_equal(ops_notify(ops, "unknown", count, NULL), 0);
	ops_succeed(ops, a);
	assert_int_equal(calls, 1);
	ops_succeed(ops, a);
	assert_int_equal(calls, 1);			      /* once */
	assert_int_equal(ops_notify(ops, a, count, NULL), 0); /* finished already */
	ops_stop_waiting(ops);
	assert_int_equal(calls, 2); /* b's waiter is told the daemon stops */
	assert_int_equal(ops_notify(ops, b, count, NULL), 0);
	ops_free(ops);
}

static void test_vmm_config(void **state)
{
	(void)state;
	struct spec_error err;
	struct vm_paths p;
	json_t *spec = NULL;
	json_t *in = json_loads(
	    "{\"name\": \"web1\", \"vcpus\": 2, \"memory_mib\": 1024,"
	    " \"boot\": {\"kernel\": \"/k\", \"initrd\": \"/i\", \"cmdline\": \"c=1\"},"
	    " \"disks\": [{\"path\": \"/d.qcow2\", \"format\": \"qcow2\", \"serial\": "
	    "\"S1\"}, {\"path\": \"/e.img\", \"readonly\": true}],"
	    " \"console_ports\": [{\"name\": \"org.qemu.guest_agent.0\"}], \"rng\": true}",
	    0, NULL);
	assert_int_equal(vmspec_normalize(in, &spec, &err), 0);
	assert_int_equal(vmmcfg_paths("/var/lib/berth", "/run/berth/vms",
				      "0ab774ae-89b0-40c1-b090-e7618683c114", &p),
			 0);
	assert_string_equal(p.control, "/run/berth/vms/0ab774ae-89b0-40c1-b090-e7618683c114.ctl");
	assert_string_equal(p.saved,
			    "/var/lib/berth/vms/0ab774ae-89b0-40c1-b090-e7618683c114/saved");
	json_t *c = vmmcfg_build(spec, "web1", &p);
	assert_non_null(c);
	assert_string_equal(jstr(c, "memory"), "1024M");
	assert_int_equal(json_integer_value(json_object_get(c, "cpus")), 2);
	assert_string_equal(jstr(c, "initrd"), "/i");
	assert_string_equal(jstr(c, "cmdline"), "c=1");
	assert_string_equal(jstr(c, "on_reboot"), "restart");
	assert_string_equal(jstr(c, "serial"),
			    "unix:/run/berth/vms/0ab774ae-89b0-40c1-b090-e7618683c114.console");
	assert_string_equal(jstr(c, "control"), p.control);
	assert_string_equal(jstr(c, "checkpoint_dir"), p.checkpoints);
	assert_true(json_is_true(json_object_get(c, "rng")));
	json_t *d = json_object_get(c, "disks");
	assert_int_equal(json_array_size(d), 2);
	assert_string_equal(jstr(json_array_get(d, 0), "serial"), "S1");
	assert_null(json_object_get(json_array_get(d, 1), "serial"));
	assert_true(json_is_true(json_object_get(json_array_get(d, 1), "readonly")));
	json_t *port = json_array_get(json_object_get(c, "console_ports"), 0);
	assert_string_equal(jstr(port, "socket"),
			    "/run/berth/vms/0ab774ae-89b0-40c1-b090-e7618683c114.port0");
	char *argv[VMMCFG_ARGV_MAX];
	vmmcfg_argv("/usr/sbin/berth-vmm", &p, "web1", true, argv);
	assert_string_equal(argv[1], "--restore");
	assert_string_equal(argv[2], p.saved);
	assert_string_equal(argv[10], "web1");
	assert_null(argv[11]);
	json_decref(c);
	json_decref(spec);
	json_decref(in);
	char longdir[120];
	memset(longdir, 'r', sizeof(longdir) - 1);
	longdir[0] = '/';
	longdir[sizeof(longdir) - 1] = '\0';
	assert_int_equal(vmmcfg_paths("/s", longdir, "0ab774ae-89b0-40c1-b090-e7618683c114", &p),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_op_states),
	    cmocka_unit_test(test_history_is_bounded),
	    cmocka_unit_test(test_notify),
	    cmocka_unit_test(test_vmm_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
