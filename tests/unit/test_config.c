/* Unit tests for vmm/config: defaults, every flag, JSON config files, validation and the golden
 * round trip. */
#include "unit.h"

#include <errno.h>

#include "common/util.h"
#include "vmm/config.h"
#include "vmm/layout.h"

/* Run config_parse_args on a fresh default config; args is NULL-terminated and excludes argv[0]. */
static int parse_argv(struct vm_config *c, struct cfg_error *err, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	argv[argc++] = strdup("berth-vmm");
	for (; *args; args++) {
		assert_true(argc < 63);
		argv[argc++] = strdup(*args);
	}
	argv[argc] = NULL;
	config_defaults(c);
	memset(err, 0, sizeof(*err));
	int r = config_parse_args(c, argc, argv, err);
	for (int i = 0; i < argc; i++)
		free(argv[i]);
	return r;
}

#define PARSE(c, err, ...) parse_argv(c, err, (const char *const[]){__VA_ARGS__, NULL})

/* Expect a parse failure whose message contains every given fragment. */
#define PARSE_FAILS(frag1, frag2, ...)                                                             \
	do {                                                                                       \
		struct vm_config c_;                                                               \
		struct cfg_error e_;                                                               \
		int r_ = PARSE(&c_, &e_, __VA_ARGS__);                                             \
		assert_int_equal(r_, -EINVAL);                                                     \
		assert_contains(e_.msg, frag1);                                                    \
		assert_contains(e_.msg, frag2);                                                    \
		config_free(&c_);                                                                  \
	} while (0)

/* Apply JSON text to a default config. */
static int apply_json(struct vm_config *c, struct cfg_error *err, const char *text)
{
	config_defaults(c);
	memset(err, 0, sizeof(*err));
	return config_apply_json_text(c, text, "test.json", err);
}

#define JSON_FAILS(text, frag1, frag2)                                                             \
	do {                                                                                       \
		struct vm_config c_;                                                               \
		struct cfg_error e_;                                                               \
		assert_int_equal(apply_json(&c_, &e_, text), -EINVAL);                             \
		assert_contains(e_.msg, "test.json");                                              \
		assert_contains(e_.msg, frag1);                                                    \
		assert_contains(e_.msg, frag2);                                                    \
		config_free(&c_);                                                                  \
	} while (0)

static void test_defaults(void **state)
{
	(void)state;
	struct vm_config c;
	config_defaults(&c);
	assert_string_equal(c.name, "vm");
	assert_null(c.kernel);
	assert_null(c.initrd);
	assert_null(c.cmdline);
	assert_int_equal(c.mem_bytes, 512 * MiB);
	assert_int_equal(c.cpus, 1);
	assert_string_equal(c.cpu_template, "host");
	assert_int_equal(c.boot, BOOT_AUTO);
	assert_int_equal(c.serial[0].kind, SERIAL_STDOUT);
	assert_null(c.serial[0].path);
	assert_int_equal(c.serial[1].kind, SERIAL_NONE);
	assert_int_equal(c.on_reboot, ON_REBOOT_EXIT);
	assert_int_equal(c.timeout_s, 0);
	assert_int_equal(c.log_level, LOG_INFO);
	assert_false(c.check_only);
	assert_false(c.print_config);
	config_free(&c);
}

static void test_every_long_flag(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	int r = PARSE(&c, &err, "--kernel", "/k/bzImage", "--initrd", "/k/initrd.img", "--cmdline",
		      "console=ttyS0 quiet", "--memory", "1G", "--cpus", "4", "--cpu-template",
		      "baseline", "--boot", "pvh", "--serial", "file:/tmp/com1.log", "--serial2",
		      "unix:/tmp/com2.sock", "--on-reboot", "restart", "--timeout", "30", "--name",
		      "my-vm.1_a", "--log-level", "debug", "--check", "--print-config");
	assert_int_equal(r, CFG_RUN);
	assert_string_equal(c.kernel, "/k/bzImage");
	assert_string_equal(c.initrd, "/k/initrd.img");
	assert_string_equal(c.cmdline, "console=ttyS0 quiet");
	assert_int_equal(c.mem_bytes, 1 * GiB);
	assert_int_equal(c.cpus, 4);
	assert_string_equal(c.cpu_template, "baseline");
	assert_int_equal(c.boot, BOOT_PVH);
	assert_int_equal(c.serial[0].kind, SERIAL_FILE);
	assert_string_equal(c.serial[0].path, "/tmp/com1.log");
	assert_int_equal(c.serial[1].kind, SERIAL_UNIX);
	assert_string_equal(c.serial[1].path, "/tmp/com2.sock");
	assert_int_equal(c.on_reboot, ON_REBOOT_RESTART);
	assert_int_equal(c.timeout_s, 30);
	assert_string_equal(c.name, "my-vm.1_a");
	assert_int_equal(c.log_level, LOG_DEBUG);
	assert_true(c.check_only);
	assert_true(c.print_config);
	config_free(&c);
}

static void test_short_flags(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	int r = PARSE(&c, &err, "-k", "kern", "-i", "rd", "-a", "root=/dev/vda", "-m", "2048", "-c",
		      "8", "-n", "short");
	assert_int_equal(r, CFG_RUN);
	assert_string_equal(c.kernel, "kern");
	assert_string_equal(c.initrd, "rd");
	assert_string_equal(c.cmdline, "root=/dev/vda");
	assert_int_equal(c.mem_bytes, 2 * GiB);
	assert_int_equal(c.cpus, 8);
	assert_string_equal(c.name, "short");
	config_free(&c);

	/* Attached short-option values work too. */
	r = PARSE(&c, &err, "-kkern2", "-c2");
	assert_int_equal(r, CFG_RUN);
	assert_string_equal(c.kernel, "kern2");
	assert_int_equal(c.cpus, 2);
	config_free(&c);
}

static void test_help_and_version(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "-h"), CFG_HELP);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--help"), CFG_HELP);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--version"), CFG_VERSION);
	config_free(&c);
	/* Help wins even without --kernel, and even after other flags. */
	assert_int_equal(PARSE(&c, &err, "--cpus", "2", "--help"), CFG_HELP);
	config_free(&c);
}

static void test_memory_sizes(void **state)
{
	(void)state;
	static const struct {
		const char *arg;
		uint64_t bytes; /* 0 = rejected */
		const char *why;
	} cases[] = {
	    {"512", 512 * MiB, NULL},
	    {"64", 64 * MiB, NULL},
	    {"4G", 4 * GiB, NULL},
	    {"4g", 4 * GiB, NULL},
	    {"4GiB", 4 * GiB, NULL},
	    {"4096M", 4 * GiB, NULL},
	    {"65536K", 64 * MiB, NULL},
	    {"64M", 64 * MiB, NULL},
	    {"64G", 64 * GiB, NULL},
	    {"65536", 64 * GiB, NULL},
	    {"63M", 0, "between 64M and 64G"},
	    {"63", 0, "between 64M and 64G"},
	    {"65G", 0, "between 64M and 64G"},
	    {"65537", 0, "between 64M and 64G"},
	    {"1T", 0, "between 64M and 64G"},
	    {"65537K", 0, "multiple of 1M"},
	    {"4194305K", 0, "multiple of 1M"}, /* 4G + 1K */
	    {"67109888B", 0, "not a size"},    /* "B" only follows K/M/G/T */
	    {"abc", 0, "not a size"},
	    {"4X", 0, "not a size"},
	    {"-512M", 0, "not a size"},
	    {"17592186044416", 0, "not a size"}, /* bare MiB count that overflows bytes */
	    {"99999999999999999999", 0, "not a size"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct vm_config c;
		struct cfg_error err;
		int r = PARSE(&c, &err, "--kernel", "k", "--memory", cases[i].arg);
		if (cases[i].bytes) {
			if (r != CFG_RUN)
				fail_msg("--memory %s: rejected: %s", cases[i].arg, err.msg);
			assert_int_equal(c.mem_bytes, cases[i].bytes);
		} else {
			if (r != -EINVAL)
				fail_msg("--memory %s: accepted as %llu", cases[i].arg,
					 (unsigned long long)c.mem_bytes);
			assert_contains(err.msg, "--memory");
			assert_contains(err.msg, cases[i].arg);
			assert_contains(err.msg, cases[i].why);
		}
		config_free(&c);
	}
}

static void test_cpus(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cpus", "1024"), CFG_RUN);
	assert_int_equal(c.cpus, 1024);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cpus", "1"), CFG_RUN);
	assert_int_equal(c.cpus, 1);
	config_free(&c);
	PARSE_FAILS("--cpus", "'0'", "--kernel", "k", "--cpus", "0");
	PARSE_FAILS("--cpus", "'1025'", "--kernel", "k", "--cpus", "1025");
	PARSE_FAILS("--cpus", "1 to 1024", "--kernel", "k", "--cpus", "-1");
	PARSE_FAILS("--cpus", "'4x'", "--kernel", "k", "--cpus", "4x");
	PARSE_FAILS("--cpus", "''", "--kernel", "k", "--cpus", "");
	PARSE_FAILS("-c", "needs a value", "--kernel", "k", "-c");
}

static void test_cpu_template(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cpu-template", "host"), CFG_RUN);
	assert_string_equal(c.cpu_template, "host");
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cpu-template", "nope"), -EINVAL);
	assert_contains(err.msg, "--cpu-template");
	assert_contains(err.msg, "'nope'");
	assert_contains(err.msg, "host");
	assert_contains(err.msg, "baseline");
	config_free(&c);
}

static void test_boot_mode(void **state)
{
	(void)state;
	static const struct {
		const char *arg;
		enum boot_mode mode;
	} ok[] = {{"auto", BOOT_AUTO}, {"linux", BOOT_LINUX}, {"pvh", BOOT_PVH}};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct vm_config c;
		struct cfg_error err;
		assert_int_equal(PARSE(&c, &err, "--boot", ok[i].arg, "--kernel", "k"), CFG_RUN);
		assert_int_equal(c.boot, ok[i].mode);
		config_free(&c);
	}
	PARSE_FAILS("--boot", "'efi'", "--kernel", "k", "--boot", "efi");
	PARSE_FAILS("--boot", "auto, linux or pvh", "--kernel", "k", "--boot", "PVH");
}

static void test_serial_backends(void **state)
{
	(void)state;
	static const struct {
		const char *arg;
		enum serial_kind kind;
		const char *path;
	} ok[] = {
	    {"stdout", SERIAL_STDOUT, NULL},
	    {"stdio", SERIAL_STDOUT, NULL},
	    {"none", SERIAL_NONE, NULL},
	    {"pty", SERIAL_PTY, NULL},
	    {"file:/var/log/x", SERIAL_FILE, "/var/log/x"},
	    {"unix:/run/c.sock", SERIAL_UNIX, "/run/c.sock"},
	    {"file:rel:colon", SERIAL_FILE, "rel:colon"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct vm_config c;
		struct cfg_error err;
		int r = PARSE(&c, &err, "--kernel", "k", "--serial", ok[i].arg);
		if (r != CFG_RUN)
			fail_msg("--serial %s: %s", ok[i].arg, err.msg);
		assert_int_equal(c.serial[0].kind, ok[i].kind);
		if (ok[i].path)
			assert_string_equal(c.serial[0].path, ok[i].path);
		else
			assert_null(c.serial[0].path);
		config_free(&c);
		/* Same backend on COM2 (COM1 off, so stdout is free). */
		r = PARSE(&c, &err, "--kernel", "k", "--serial", "none", "--serial2", ok[i].arg);
		assert_int_equal(r, CFG_RUN);
		assert_int_equal(c.serial[1].kind, ok[i].kind);
		config_free(&c);
	}

	/* A later --serial replaces an earlier one (and frees its path). */
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--serial", "file:/a", "--serial", "pty"),
			 CFG_RUN);
	assert_int_equal(c.serial[0].kind, SERIAL_PTY);
	assert_null(c.serial[0].path);
	config_free(&c);

	PARSE_FAILS("--serial", "path is empty", "--kernel", "k", "--serial", "file:");
	PARSE_FAILS("--serial", "path is empty", "--kernel", "k", "--serial", "unix:");
	PARSE_FAILS("--serial2", "path is empty", "--kernel", "k", "--serial2", "file:");
	PARSE_FAILS("--serial", "'tcp:1234'", "--kernel", "k", "--serial", "tcp:1234");
	PARSE_FAILS("--serial", "file:PATH", "--kernel", "k", "--serial", "");

	/* unix socket paths must fit sun_path (108 bytes including the NUL). */
	char arg[140];
	snprintf(arg, sizeof(arg), "unix:/%0106d", 0); /* 107 bytes of path */
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--serial", arg), CFG_RUN);
	assert_int_equal(strlen(c.serial[0].path), 107);
	config_free(&c);
	snprintf(arg, sizeof(arg), "unix:/%0107d", 0); /* 108 bytes */
	PARSE_FAILS("--serial", "108", "--kernel", "k", "--serial", arg);
}

static void test_serial_conflicts(void **state)
{
	(void)state;
	/* COM1 defaults to stdout, so COM2 on stdout conflicts. */
	PARSE_FAILS("--serial2", "stdout", "--kernel", "k", "--serial2", "stdout");
	PARSE_FAILS("--serial2", "stdout", "--kernel", "k", "--serial", "stdio", "--serial2",
		    "stdout");
	PARSE_FAILS("--serial2", "same path", "--kernel", "k", "--serial", "file:/x", "--serial2",
		    "file:/x");
	PARSE_FAILS("--serial2", "same path", "--kernel", "k", "--serial", "unix:/s", "--serial2",
		    "unix:/s");

	struct vm_config c;
	struct cfg_error err;
	/* Two ptys, two different files, file and socket of the same name are fine. */
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--serial", "pty", "--serial2", "pty"),
			 CFG_RUN);
	config_free(&c);
	assert_int_equal(
	    PARSE(&c, &err, "--kernel", "k", "--serial", "file:/a", "--serial2", "file:/b"),
	    CFG_RUN);
	config_free(&c);
	assert_int_equal(
	    PARSE(&c, &err, "--kernel", "k", "--serial", "file:/a", "--serial2", "unix:/a"),
	    CFG_RUN);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--serial", "none", "--serial2", "none"),
			 CFG_RUN);
	config_free(&c);
}

static void test_control_socket(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k"), CFG_RUN);
	assert_null(c.control);
	char *j = config_to_json(&c);
	assert_not_contains(j, "control");
	free(j);
	config_free(&c);

	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--control", "/run/berth/a.ctl"),
			 CFG_RUN);
	assert_string_equal(c.control, "/run/berth/a.ctl");
	j = config_to_json(&c);
	assert_contains(j, "\"control\": \"/run/berth/a.ctl\"");
	free(j);
	config_free(&c);

	char longpath[120];
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	PARSE_FAILS("--control", "shorter than 108 bytes", "--kernel", "k", "--control", longpath);
	PARSE_FAILS("--control", "path is empty", "--kernel", "k", "--control", "");
	JSON_FAILS("{\"control\": 5}", "field 'control'", "must be a string");
	assert_int_equal(apply_json(&c, &err, "{\"control\": \"/c.sock\"}"), 0);
	assert_string_equal(c.control, "/c.sock");
	config_free(&c);
}

static void test_on_reboot_timeout_log_level(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--on-reboot", "exit"), CFG_RUN);
	assert_int_equal(c.on_reboot, ON_REBOOT_EXIT);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--on-reboot", "restart"), CFG_RUN);
	assert_int_equal(c.on_reboot, ON_REBOOT_RESTART);
	config_free(&c);
	PARSE_FAILS("--on-reboot", "'reset'", "--kernel", "k", "--on-reboot", "reset");

	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--timeout", "0"), CFG_RUN);
	assert_int_equal(c.timeout_s, 0);
	config_free(&c);
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--timeout", "315360000"), CFG_RUN);
	assert_int_equal(c.timeout_s, 315360000u);
	config_free(&c);
	PARSE_FAILS("--timeout", "'315360001'", "--kernel", "k", "--timeout", "315360001");
	PARSE_FAILS("--timeout", "'-1'", "--kernel", "k", "--timeout", "-1");
	PARSE_FAILS("--timeout", "'10s'", "--kernel", "k", "--timeout", "10s");
	PARSE_FAILS("--timeout", "seconds", "--kernel", "k", "--timeout", "4294967296");

	static const char *const levels[] = {"error", "warn", "info", "debug"};
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--log-level", levels[i]),
				 CFG_RUN);
		assert_int_equal(c.log_level, (enum log_level)i);
		config_free(&c);
	}
	PARSE_FAILS("--log-level", "'trace'", "--kernel", "k", "--log-level", "trace");
}

static void test_name_and_cmdline(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	char name[80];
	memset(name, 'a', 63);
	name[63] = 0;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--name", name), CFG_RUN);
	assert_string_equal(c.name, name);
	config_free(&c);
	name[63] = 'a';
	name[64] = 0;
	PARSE_FAILS("--name", "1..63", "--kernel", "k", "--name", name);
	PARSE_FAILS("--name", "1..63", "--kernel", "k", "--name", "");
	PARSE_FAILS("--name", "'a b'", "--kernel", "k", "--name", "a b");
	PARSE_FAILS("--name", "'a/b'", "--kernel", "k", "--name", "a/b");
	PARSE_FAILS("--kernel", "path is empty", "--kernel", "");
	PARSE_FAILS("--initrd", "path is empty", "--kernel", "k", "--initrd", "");

	/* Command line: at most CMDLINE_MAX - 1 bytes. */
	char *line = malloc(CMDLINE_MAX + 1);
	assert_non_null(line);
	memset(line, 'x', CMDLINE_MAX - 1);
	line[CMDLINE_MAX - 1] = 0;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cmdline", line), CFG_RUN);
	assert_int_equal(strlen(c.cmdline), CMDLINE_MAX - 1);
	config_free(&c);
	line[CMDLINE_MAX - 1] = 'x';
	line[CMDLINE_MAX] = 0;
	PARSE_FAILS("--cmdline", "65535", "--kernel", "k", "--cmdline", line);
	free(line);

	/* An empty command line is allowed. */
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--cmdline", ""), CFG_RUN);
	assert_string_equal(c.cmdline, "");
	config_free(&c);
}

static void test_argument_errors(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	const char *const none[] = {NULL};
	assert_int_equal(parse_argv(&c, &err, none), -EINVAL);
	assert_contains(err.msg, "--kernel");
	assert_contains(err.msg, "required");
	config_free(&c);

	PARSE_FAILS("--kernel", "required", "--cpus", "2");
	PARSE_FAILS("unknown option", "'--bogus'", "--kernel", "k", "--bogus");
	PARSE_FAILS("unknown option", "'--bogus=1'", "--kernel", "k", "--bogus=1");
	PARSE_FAILS("unknown option", "'-x'", "--kernel", "k", "-x");
	PARSE_FAILS("needs a value", "--kernel", "--kernel");
	PARSE_FAILS("needs a value", "--memory", "--kernel", "k", "--memory");
	PARSE_FAILS("unexpected argument", "'stray'", "--kernel", "k", "stray");
	PARSE_FAILS("unexpected argument", "'vmlinuz'", "vmlinuz");
	/* --check takes no value. */
	PARSE_FAILS("unexpected argument", "'yes'", "--kernel", "k", "--check", "yes");
}

static void test_parse_twice_resets_getopt(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(PARSE(&c, &err, "--kernel", "k", "-c", "3"), CFG_RUN);
		assert_int_equal(c.cpus, 3);
		config_free(&c);
		PARSE_FAILS("unknown option", "-z", "-z");
	}
}

static void test_config_file_and_flag_override(void **state)
{
	(void)state;
	static const char doc[] = "{\n"
				  "  \"kernel\": \"/from/file\",\n"
				  "  \"memory\": \"1G\",\n"
				  "  \"cpus\": 2,\n"
				  "  \"name\": \"fromfile\",\n"
				  "  \"serial\": \"pty\"\n"
				  "}\n";
	char *path = write_temp_file(doc, strlen(doc));
	struct vm_config c;
	struct cfg_error err;

	assert_int_equal(PARSE(&c, &err, "--config", path), CFG_RUN);
	assert_string_equal(c.kernel, "/from/file");
	assert_int_equal(c.mem_bytes, 1 * GiB);
	assert_int_equal(c.cpus, 2);
	assert_string_equal(c.name, "fromfile");
	assert_int_equal(c.serial[0].kind, SERIAL_PTY);
	config_free(&c);

	/* Flags win regardless of where --config appears. */
	assert_int_equal(
	    PARSE(&c, &err, "--cpus", "4", "--config", path, "--kernel", "/flag", "-m", "256"),
	    CFG_RUN);
	assert_int_equal(c.cpus, 4);
	assert_string_equal(c.kernel, "/flag");
	assert_int_equal(c.mem_bytes, 256 * MiB);
	assert_string_equal(c.name, "fromfile"); /* not overridden */
	config_free(&c);

	/* A bad flag value is still an error even if the file sets the field. */
	PARSE_FAILS("--cpus", "'0'", "--config", path, "--cpus", "0");
	unlink(path);
	free(path);

	/* A missing file, and a file with an error, name the file. */
	PARSE_FAILS("--config", "No such file", "--config", "/nonexistent/berth.json");
	PARSE_FAILS("'/nonexistent/berth.json'", "--config", "--config", "/nonexistent/berth.json");
	PARSE_FAILS("--config", "needs a value", "--kernel", "k", "--config");

	static const char bad[] = "{\n  \"cpus\": 3000\n}\n";
	path = write_temp_file(bad, strlen(bad));
	PARSE_FAILS(path, "field 'cpus'", "--config", path);
	unlink(path);
	free(path);

	static const char broken[] = "{\n  \"cpus\": 3,\n  \"memory\" \"1G\"\n}\n";
	path = write_temp_file(broken, strlen(broken));
	char where[300];
	snprintf(where, sizeof(where), "%s:3:", path);
	PARSE_FAILS(where, "invalid JSON", "--kernel", "k", "--config", path);
	unlink(path);
	free(path);

	char *dir = strdup("/tmp/berth-unit-dir-XXXXXX");
	assert_non_null(mkdtemp(dir));
	PARSE_FAILS("--config", "directory", "--config", dir);
	rmdir(dir);
	free(dir);
}

static void test_json_every_field(void **state)
{
	(void)state;
	static const char doc[] =
	    "{\"kernel\": \"/boot/vmlinuz\", \"initrd\": \"/boot/initrd\","
	    " \"cmdline\": \"console=ttyS0\", \"memory\": \"2G\", \"cpus\": 6,"
	    " \"cpu_template\": \"baseline\", \"boot\": \"linux\","
	    " \"serial\": \"unix:/run/s\", \"serial2\": \"file:/log/2\","
	    " \"on_reboot\": \"restart\", \"timeout\": 600, \"name\": \"j\","
	    " \"log_level\": \"warn\"}";
	struct vm_config c;
	struct cfg_error err;
	int r = apply_json(&c, &err, doc);
	if (r)
		fail_msg("%s", err.msg);
	assert_string_equal(c.kernel, "/boot/vmlinuz");
	assert_string_equal(c.initrd, "/boot/initrd");
	assert_string_equal(c.cmdline, "console=ttyS0");
	assert_int_equal(c.mem_bytes, 2 * GiB);
	assert_int_equal(c.cpus, 6);
	assert_string_equal(c.cpu_template, "baseline");
	assert_int_equal(c.boot, BOOT_LINUX);
	assert_int_equal(c.serial[0].kind, SERIAL_UNIX);
	assert_string_equal(c.serial[0].path, "/run/s");
	assert_int_equal(c.serial[1].kind, SERIAL_FILE);
	assert_string_equal(c.serial[1].path, "/log/2");
	assert_int_equal(c.on_reboot, ON_REBOOT_RESTART);
	assert_int_equal(c.timeout_s, 600);
	assert_string_equal(c.name, "j");
	assert_int_equal(c.log_level, LOG_WARN);
	assert_int_equal(config_validate(&c, &err), 0);
	config_free(&c);

	/* Memory may be a number (MiB) or a bare-number string (MiB). */
	assert_int_equal(apply_json(&c, &err, "{\"memory\": 1024}"), 0);
	assert_int_equal(c.mem_bytes, 1 * GiB);
	config_free(&c);
	assert_int_equal(apply_json(&c, &err, "{\"memory\": \"768\"}"), 0);
	assert_int_equal(c.mem_bytes, 768 * MiB);
	config_free(&c);
	/* Numeric fields also accept their text form (same parser as the flag). */
	assert_int_equal(apply_json(&c, &err, "{\"cpus\": \"3\", \"timeout\": \"9\"}"), 0);
	assert_int_equal(c.cpus, 3);
	assert_int_equal(c.timeout_s, 9);
	config_free(&c);
	/* An empty object changes nothing. */
	assert_int_equal(apply_json(&c, &err, "{}"), 0);
	assert_int_equal(c.mem_bytes, 512 * MiB);
	config_free(&c);
}

static void test_json_errors(void **state)
{
	(void)state;
	JSON_FAILS("{\"colour\": \"red\"}", "field 'colour'", "unknown field");
	JSON_FAILS("{\"cpus\": 2, \"cpu-template\": \"host\"}", "'cpu-template'", "unknown field");
	JSON_FAILS("{\"check\": true}", "field 'check'", "unknown field");
	JSON_FAILS("{\"kernel\": 5}", "field 'kernel'", "must be a string");
	JSON_FAILS("{\"name\": 12}", "field 'name'", "must be a string");
	JSON_FAILS("{\"serial\": null}", "field 'serial'", "must be a string");
	JSON_FAILS("{\"cmdline\": [\"a\"]}", "field 'cmdline'", "must be a string");
	JSON_FAILS("{\"cpus\": true}", "field 'cpus'", "must be a number");
	JSON_FAILS("{\"cpus\": 1.5}", "field 'cpus'", "must be a number");
	JSON_FAILS("{\"timeout\": {}}", "field 'timeout'", "must be a number");
	JSON_FAILS("{\"memory\": true}", "field 'memory'", "must be a string");
	JSON_FAILS("{\"cpus\": -1}", "field 'cpus'", "must not be negative");
	JSON_FAILS("{\"timeout\": -5}", "field 'timeout'", "must not be negative");
	JSON_FAILS("{\"memory\": -512}", "field 'memory'", "must not be negative");
	JSON_FAILS("{\"cpus\": 0}", "field 'cpus'", "1 to 1024");
	JSON_FAILS("{\"cpus\": 1025}", "field 'cpus'", "'1025'");
	JSON_FAILS("{\"memory\": \"63M\"}", "field 'memory'", "between 64M and 64G");
	JSON_FAILS("{\"memory\": 66560}", "field 'memory'", "between 64M and 64G");
	JSON_FAILS("{\"memory\": \"\"}", "field 'memory'", "not a size");
	JSON_FAILS("{\"memory\": 9223372036854775807}", "field 'memory'", "not a size");
	JSON_FAILS("{\"cpu_template\": \"nope\"}", "field 'cpu_template'", "host, baseline");
	JSON_FAILS("{\"serial\": \"file:\"}", "field 'serial'", "path is empty");
	JSON_FAILS("{\"serial2\": \"tcp:1\"}", "field 'serial2'", "'tcp:1'");
	JSON_FAILS("{\"kernel\": \"\"}", "field 'kernel'", "path is empty");
	JSON_FAILS("{\"on_reboot\": \"halt\"}", "field 'on_reboot'", "exit or restart");
	JSON_FAILS("{\"log_level\": \"loud\"}", "field 'log_level'", "'loud'");
	JSON_FAILS("{\"boot\": \"efi\"}", "field 'boot'", "'efi'");
	JSON_FAILS("{\"name\": \"a b\"}", "field 'name'", "'a b'");

	/* Syntax errors carry line:column. */
	JSON_FAILS("{\"cpus\": 1, \"cpus\": 2}", "test.json:1:", "duplicate");
	JSON_FAILS("{\n  \"cpus\": 2,\n  oops\n}", "test.json:3:", "invalid JSON");
	JSON_FAILS("{\"cpus\": 2,}", "test.json:1:", "invalid JSON");
	JSON_FAILS("", "test.json:", "invalid JSON");
	JSON_FAILS("{\"a\": 1} trailing", "test.json:1:", "invalid JSON");
	JSON_FAILS("[1, 2]", "top level", "object");
	JSON_FAILS("\"text\"", "test.json", "invalid JSON");
}

static void test_json_error_leaves_earlier_fields(void **state)
{
	(void)state;
	/* Fields are applied in document order; an error stops there (callers then exit). */
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(apply_json(&c, &err, "{\"cpus\": 7, \"bogus\": 1, \"timeout\": 3}"),
			 -EINVAL);
	assert_int_equal(c.cpus, 7);
	assert_int_equal(c.timeout_s, 0);
	config_free(&c);
}

static void test_validate(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	config_defaults(&c);
	assert_int_equal(config_validate(&c, &err), -EINVAL);
	assert_contains(err.msg, "--kernel");
	assert_contains(err.msg, "field 'kernel'");
	c.kernel = strdup("k");
	assert_int_equal(config_validate(&c, &err), 0);
	c.serial[1].kind = SERIAL_STDOUT;
	assert_int_equal(config_validate(&c, &err), -EINVAL);
	assert_contains(err.msg, "field 'serial2'");
	config_free(&c);
}

/* Compare two configs field by field (a NULL cmdline equals ""; config_to_json writes it so). */
static void assert_config_equal(const struct vm_config *a, const struct vm_config *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->kernel ? a->kernel : "", b->kernel ? b->kernel : "");
	if (a->initrd || b->initrd) {
		assert_non_null(a->initrd);
		assert_non_null(b->initrd);
		assert_string_equal(a->initrd, b->initrd);
	}
	assert_string_equal(a->cmdline ? a->cmdline : "", b->cmdline ? b->cmdline : "");
	assert_int_equal(a->mem_bytes, b->mem_bytes);
	assert_int_equal(a->cpus, b->cpus);
	assert_string_equal(a->cpu_template, b->cpu_template);
	assert_int_equal(a->boot, b->boot);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(a->serial[i].kind, b->serial[i].kind);
		if (a->serial[i].path || b->serial[i].path) {
			assert_non_null(a->serial[i].path);
			assert_non_null(b->serial[i].path);
			assert_string_equal(a->serial[i].path, b->serial[i].path);
		}
	}
	assert_int_equal(a->on_reboot, b->on_reboot);
	assert_int_equal(a->timeout_s, b->timeout_s);
	assert_int_equal(a->rng, b->rng);
	assert_int_equal(a->ndisks, b->ndisks);
	for (unsigned i = 0; i < a->ndisks; i++) {
		assert_string_equal(a->disks[i].path, b->disks[i].path);
		assert_int_equal(a->disks[i].readonly, b->disks[i].readonly);
		assert_int_equal(a->disks[i].cache_none, b->disks[i].cache_none);
		assert_int_equal(a->disks[i].format, b->disks[i].format);
		assert_string_equal(a->disks[i].serial, b->disks[i].serial);
	}
	assert_int_equal(a->nnics, b->nnics);
	for (unsigned i = 0; i < a->nnics; i++) {
		assert_int_equal(a->nics[i].kind, b->nics[i].kind);
		assert_string_equal(a->nics[i].ifname, b->nics[i].ifname);
		assert_int_equal(a->nics[i].mac_set, b->nics[i].mac_set);
		assert_memory_equal(a->nics[i].mac, b->nics[i].mac, 6);
	}
	assert_int_equal(a->nports, b->nports);
	for (unsigned i = 0; i < a->nports; i++) {
		assert_string_equal(a->ports[i].name, b->ports[i].name);
		assert_string_equal(a->ports[i].socket, b->ports[i].socket);
	}
	assert_int_equal(a->log_level, b->log_level);
}

/* config_to_json(a) applied to defaults must give a config equal to a, and the same JSON again. */
static void round_trip(const struct vm_config *a)
{
	char *j1 = config_to_json(a);
	assert_non_null(j1);
	struct vm_config b;
	struct cfg_error err;
	config_defaults(&b);
	int r = config_apply_json_text(&b, j1, "print-config", &err);
	if (r)
		fail_msg("re-reading\n%s\nfailed: %s", j1, err.msg);
	assert_config_equal(a, &b);
	char *j2 = config_to_json(&b);
	assert_string_equal(j1, j2);
	free(j1);
	free(j2);
	config_free(&b);
}

static void test_golden_config(void **state)
{
	(void)state;
	struct vm_config c;
	struct cfg_error err;
	int r =
	    PARSE(&c, &err, "--kernel", "/k/vmlinuz", "--initrd", "/k/rd", "--cmdline",
		  "console=ttyS0 \"quoted\" \\ tab\t", "--memory", "1536", "--cpus", "12",
		  "--cpu-template", "baseline", "--boot", "linux", "--serial", "file:/l/1",
		  "--serial2", "unix:/s/2", "--on-reboot", "restart", "--timeout", "120", "--name",
		  "golden", "--log-level", "debug", "--seccomp", "trap", "--rng", "--disk",
		  "/d/a.img,readonly,cache=none,serial=S1,format=qcow2", "--disk", "/d/b.img",
		  "--console-port", "name=org.qemu.guest_agent.0,socket=/run/qga.sock", "--net",
		  "bridge=br0,mac=02:00:00:aa:bb:cc");
	assert_int_equal(r, CFG_RUN);
	static const char golden[] =
	    "{\n"
	    "  \"name\": \"golden\",\n"
	    "  \"kernel\": \"/k/vmlinuz\",\n"
	    "  \"initrd\": \"/k/rd\",\n"
	    "  \"cmdline\": \"console=ttyS0 \\\"quoted\\\" \\\\ tab\\t\",\n"
	    "  \"memory\": \"1536M\",\n"
	    "  \"cpus\": 12,\n"
	    "  \"cpu_template\": \"baseline\",\n"
	    "  \"boot\": \"linux\",\n"
	    "  \"serial\": \"file:/l/1\",\n"
	    "  \"serial2\": \"unix:/s/2\",\n"
	    "  \"on_reboot\": \"restart\",\n"
	    "  \"timeout\": 120,\n"
	    "  \"seccomp\": \"trap\",\n"
	    "  \"rng\": true,\n"
	    "  \"disks\": [\n"
	    "    {\n"
	    "      \"path\": \"/d/a.img\",\n"
	    "      \"readonly\": true,\n"
	    "      \"format\": \"qcow2\",\n"
	    "      \"cache\": \"none\",\n"
	    "      \"serial\": \"S1\"\n"
	    "    },\n"
	    "    {\n"
	    "      \"path\": \"/d/b.img\",\n"
	    "      \"readonly\": false,\n"
	    "      \"format\": \"auto\",\n"
	    "      \"cache\": \"writeback\"\n"
	    "    }\n"
	    "  ],\n"
	    "  \"console_ports\": [\n"
	    "    {\n"
	    "      \"name\": \"org.qemu.guest_agent.0\",\n"
	    "      \"socket\": \"/run/qga.sock\"\n"
	    "    }\n"
	    "  ],\n"
	    "  \"nets\": [\n"
	    "    \"bridge=br0,mac=02:00:00:aa:bb:cc\"\n"
	    "  ],\n"
	    "  \"log_level\": \"debug\"\n"
	    "}";
	char *j = config_to_json(&c);
	assert_string_equal(j, golden);
	free(j);
	round_trip(&c);
	config_free(&c);

	/* Defaults plus a kernel; pvh/auto boot and every serial kind. */
	static const char *const kinds[] = {"stdout", "none", "pty"};
	for (unsigned i = 0; i < 3; i++) {
		r = PARSE(&c, &err, "--kernel", "k", "--serial", kinds[i], "--boot", "pvh", "-m",
			  "64G", "-c", "254");
		assert_int_equal(r, CFG_RUN);
		round_trip(&c);
		config_free(&c);
	}
	r = PARSE(&c, &err, "--kernel", "k");
	assert_int_equal(r, CFG_RUN);
	j = config_to_json(&c);
	assert_contains(j, "\"memory\": \"512M\"");
	assert_contains(j, "\"serial2\": \"none\"");
	assert_not_contains(j, "initrd");
	free(j);
	round_trip(&c);
	config_free(&c);
}

static void test_golden_long_serial_path(void **state)
{
	(void)state;
	/* A serial file path as long as a real deep path must survive --print-config. */
	char arg[400], *p = arg;
	p += sprintf(p, "file:");
	for (int i = 0; i < 30; i++)
		p += sprintf(p, "/dir%04d", i); /* 240 bytes of path */
	struct vm_config c;
	struct cfg_error err;
	assert_int_equal(PARSE(&c, &err, "--kernel", "k", "--serial", arg), CFG_RUN);
	assert_string_equal(c.serial[0].path, arg + 5);
	round_trip(&c);
	config_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),
	    cmocka_unit_test(test_every_long_flag),
	    cmocka_unit_test(test_short_flags),
	    cmocka_unit_test(test_help_and_version),
	    cmocka_unit_test(test_memory_sizes),
	    cmocka_unit_test(test_cpus),
	    cmocka_unit_test(test_cpu_template),
	    cmocka_unit_test(test_boot_mode),
	    cmocka_unit_test(test_serial_backends),
	    cmocka_unit_test(test_serial_conflicts),
	    cmocka_unit_test(test_on_reboot_timeout_log_level),
	    cmocka_unit_test(test_control_socket),
	    cmocka_unit_test(test_name_and_cmdline),
	    cmocka_unit_test(test_argument_errors),
	    cmocka_unit_test(test_parse_twice_resets_getopt),
	    cmocka_unit_test(test_config_file_and_flag_override),
	    cmocka_unit_test(test_json_every_field),
	    cmocka_unit_test(test_json_errors),
	    cmocka_unit_test(test_json_error_leaves_earlier_fields),
	    cmocka_unit_test(test_validate),
	    cmocka_unit_test(test_golden_config),
	    cmocka_unit_test(test_golden_long_serial_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
