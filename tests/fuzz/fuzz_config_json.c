/* libFuzzer target: arbitrary text through config_apply_json_text, then config_to_json and back. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/config.h"

static void check(int ok)
{
	if (!ok)
		abort();
}

static size_t path_len(const struct serial_cfg *s)
{
	return s->path ? strlen(s->path) : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	check(text != NULL);
	memcpy(text, data, size);
	text[size] = 0;

	struct vm_config c;
	struct cfg_error err;
	memset(&err, 0, sizeof(err));
	config_defaults(&c);
	int r = config_apply_json_text(&c, text, "fuzz.json", &err);
	if (r) {
		check(r == -EINVAL);
		check(memchr(err.msg, 0, sizeof(err.msg)) != NULL);
		check(strncmp(err.msg, "fuzz.json", 9) == 0); /* every message names the origin */
	}
	(void)config_validate(&c, &err);

	char *json = config_to_json(&c);
	check(json != NULL);

	/*
	 * A config that applied cleanly and has a kernel must survive --print-config unchanged.
	 * Serial paths over ~190 bytes are skipped: config_to_json truncates them (known bug,
	 * covered by test_config.c test_golden_long_serial_path); drop the skip once fixed.
	 */
	if (r == 0 && c.kernel && path_len(&c.serial[0]) < 190 && path_len(&c.serial[1]) < 190) {
		struct vm_config d;
		config_defaults(&d);
		check(config_apply_json_text(&d, json, "print-config", &err) == 0);
		char *again = config_to_json(&d);
		check(again != NULL && strcmp(json, again) == 0);
		check(d.mem_bytes == c.mem_bytes && d.cpus == c.cpus && d.boot == c.boot);
		check(d.serial[0].kind == c.serial[0].kind && d.serial[1].kind == c.serial[1].kind);
		free(again);
		config_free(&d);
	}
	free(json);
	config_free(&c);
	free(text);
	return 0;
}
