/* libFuzzer target: what berthd parses itself from requests — paths against the route patterns,
 * If-Match headers, VM specs (validation, defaults) and merge patches of them. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/route.h"
#include "daemon/vmspec.h"

/*
 * Input: one mode byte, then text. Mode % 4: 0 a path, 1 an If-Match header, 2 a JSON VM spec,
 * 3 a JSON VM spec followed by a JSON merge patch applied to it (or to a valid base spec).
 */

static const char *const PATTERNS[] = {"/api/v1/openapi.json", "/api/v1/host", "/api/v1/vms",
				       "/api/v1/vms/{id}", "/api/v1/vms/{id}/disks/{n}"};

static void check(int ok)
{
	if (!ok)
		abort();
}

static void fuzz_path(const char *path)
{
	for (size_t i = 0; i < sizeof(PATTERNS) / sizeof(PATTERNS[0]); i++) {
		struct route_params p;
		if (!route_match(PATTERNS[i], path, &p))
			continue;
		check(p.n <= ROUTE_PARAMS_MAX);
		for (unsigned j = 0; j < p.n; j++) {
			size_t len = strlen(p.v[j]);
			check(len > 0 && len <= ROUTE_PARAM_LEN_MAX && !strchr(p.v[j], '/'));
		}
	}
}

/* A normalized spec is valid and normalizes to itself. */
static void check_normalized(json_t *spec)
{
	struct spec_error err = {0};
	json_t *again = NULL;
	check(vmspec_normalize(spec, &again, &err) == 0);
	check(json_equal(spec, again));
	check(vmspec_name_valid(json_string_value(json_object_get(spec, "name"))));
	json_decref(again);
}

static json_t *normalize(json_t *in)
{
	struct spec_error err = {0};
	json_t *out = NULL;
	if (vmspec_normalize(in, &out, &err)) {
		check(err.code != NULL && err.msg[0] != '\0');
		return NULL;
	}
	check_normalized(out);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_error_t jerr;
	if (size < 1)
		return 0;
	unsigned mode = data[0] % 4;
	char *text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';

	if (mode == 0) {
		fuzz_path(text);
	} else if (mode == 1) {
		int64_t gen = (int64_t)(size * 7919) % 1000;
		int r = route_if_match(text, gen);
		check(r == 0 || r == 1 || r == -22);
	} else {
		/* the body flags berthd uses; the first document, then (mode 3) a patch */
		size_t flags = JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DISABLE_EOF_CHECK;
		json_t *doc = json_loadb(text, size - 1, flags, &jerr);
		size_t used = doc ? jerr.position : 0;
		json_t *spec = doc ? normalize(doc) : NULL;
		if (mode == 3) {
			json_t *patch = json_loadb(text + used, size - 1 - used, flags, &jerr);
			json_t *base = spec ? json_incref(spec)
					    : json_pack("{s:s, s:{s:s}}", "name", "vm", "boot",
							"kernel", "/k");
			if (patch && base) {
				json_t *merged = json_merge_patch(base, patch);
				check(merged != NULL);
				json_t *after = normalize(merged);
				json_decref(after);
				json_decref(merged);
			}
			json_decref(base);
			json_decref(patch);
		}
		json_decref(spec);
		json_decref(doc);
	}
	free(text);
	return 0;
}
