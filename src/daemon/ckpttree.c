/* berthd's read-only view of a VM's checkpoint tree (berth-vmm's DIR/tree.json, see
 * checkpoints.md). */
#include "daemon/ckpttree.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TREE_FORMAT "berth-checkpoints"
#define TREE_VERSION 1
#define NOW "now"

static json_t *nodes(const json_t *t)
{
	return json_object_get(t, "nodes");
}

static json_t *node(const json_t *t, const char *id)
{
	return id ? json_object_get(nodes(t), id) : NULL;
}

static const char *parent_of(const json_t *n)
{
	return json_string_value(json_object_get(n, "parent"));
}

static bool hidden(const json_t *n)
{
	return json_is_true(json_object_get(n, "hidden"));
}

static const char *top_layer(const json_t *n, size_t k)
{
	return json_string_value(
	    json_array_get(json_array_get(json_object_get(n, "layers"), k), 0));
}

__attribute__((format(printf, 3, 4))) static int bad(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int check(const json_t *t, const char *path, char *err, size_t errlen)
{
	const char *f = json_string_value(json_object_get(t, "format")), *key;
	json_t *disks = json_object_get(t, "disks"), *n, *d;
	size_t nd = json_array_size(disks), i;

	if (!json_is_object(t) || !f || strcmp(f, TREE_FORMAT) ||
	    json_integer_value(json_object_get(t, "version")) != TREE_VERSION)
		return bad(err, errlen, "%s: not a %s version %d file", path, TREE_FORMAT,
			   TREE_VERSION);
	if (!json_is_array(disks) || !json_is_object(nodes(t)) || !node(t, NOW) ||
	    !json_is_integer(json_object_get(t, "next_id")))
		return bad(err, errlen, "%s: disks, nodes, nodes.now or next_id missing", path);
	json_array_foreach(disks, i, d)
	{
		const char *fmt = json_string_value(json_object_get(d, "format"));
		if (!json_is_string(json_object_get(d, "base")) || !fmt ||
		    (strcmp(fmt, "raw") && strcmp(fmt, "qcow2")))
			return bad(err, errlen, "%s: disks[%zu]: bad base or format", path, i);
	}
	json_int_t next = json_integer_value(json_object_get(t, "next_id"));
	size_t count = json_object_size(nodes(t));
	json_object_foreach(nodes(t), key, n)
	{
		const char *p = parent_of(n);
		char *end = NULL;
		long long num = key[0] == 'c' ? strtoll(key + 1, &end, 10) : 0;
		json_t *layers = json_object_get(n, "layers");
		if (!json_is_object(n) || (strcmp(key, NOW) && (num < 1 || num >= next || *end)))
			return bad(err, errlen, "%s: bad node id '%s'", path, key);
		if (strcmp(key, NOW) && !hidden(n) &&
		    (!json_is_string(json_object_get(n, "name")) ||
		     !json_is_integer(json_object_get(n, "created_ms"))))
			return bad(err, errlen, "%s: node '%s' has no name or created_ms", path,
				   key);
		if (json_object_get(n, "parent") && !json_is_null(json_object_get(n, "parent")) &&
		    !p)
			return bad(err, errlen, "%s: node '%s': parent is not a string", path, key);
		if (p && (!node(t, p) || !strcmp(p, NOW)))
			return bad(err, errlen, "%s: node '%s' has a missing parent", path, key);
		size_t depth = 0;
		for (const char *a = p; a && depth <= count; depth++)
			a = parent_of(node(t, a));
		if (depth > count)
			return bad(err, errlen, "%s: node '%s' is its own ancestor", path, key);
		if (json_array_size(layers) != nd)
			return bad(err, errlen, "%s: node '%s' has layers for %zu disk(s), not %zu",
				   path, key, json_array_size(layers), nd);
		for (size_t k = 0; k < nd; k++) {
			json_t *l = json_array_get(layers, k), *s;
			size_t j;
			if (!json_array_size(l))
				return bad(err, errlen, "%s: node '%s' has no layer for disk %zu",
					   path, key, k);
			json_array_foreach(l, j, s) if (!json_is_string(s)) return bad(
			    err, errlen, "%s: node '%s' disk %zu: bad layer", path, key, k);
		}
	}
	return 0;
}

int ckpt_tree_load(const char *dir, json_t **tree, char *err, size_t errlen)
{
	char path[4200];
	json_error_t je;
	snprintf(path, sizeof(path), "%s/tree.json", dir);
	*tree = NULL;
	if (access(path, F_OK)) {
		int e = errno;
		snprintf(err, errlen, "%s: %s", path, strerror(e));
		return -e;
	}
	json_t *t = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
	if (!t)
		return bad(err, errlen, "%s: line %d: %s", path, je.line, je.text);
	int r = check(t, path, err, errlen);
	if (r) {
		json_decref(t);
		return r;
	}
	*tree = t;
	return 0;
}

static const char *visible_parent(const json_t *t, const json_t *n)
{
	const char *p = parent_of(n);
	while (p && hidden(node(t, p)))
		p = parent_of(node(t, p));
	return p;
}

size_t ckpt_tree_ndisks(const json_t *tree)
{
	return json_array_size(json_object_get(tree, "disks"));
}

json_t *ckpt_tree_list(const json_t *t)
{
	json_t *arr = json_array(), *n;
	const char *cur = visible_parent(t, node(t, NOW));
	json_int_t next = json_integer_value(json_object_get(t, "next_id"));
	size_t nd = ckpt_tree_ndisks(t);
	for (json_int_t i = 1; arr && i < next; i++) { /* in the order they were taken */
		char key[32];
		snprintf(key, sizeof(key), "c%lld", (long long)i);
		if (!(n = node(t, key)) || hidden(n))
			continue;
		const char *p = visible_parent(t, n);
		json_t *tops = json_array();
		for (size_t k = 0; k < nd; k++)
			json_array_append_new(tops, json_string(top_layer(n, k)));
		json_array_append_new(arr, json_pack("{s:s,s:O,s:o,s:O,s:b,s:b,s:o}", "id", key,
						     "name", json_object_get(n, "name"), "parent",
						     p ? json_string(p) : json_null(), "created_ms",
						     json_object_get(n, "created_ms"), "state",
						     json_is_true(json_object_get(n, "state")),
						     "current", cur && !strcmp(cur, key), "disks",
						     tops));
	}
	return arr ? json_pack("{s:o,s:o}", "checkpoints", arr, "current",
			       cur ? json_string(cur) : json_null())
		   : NULL;
}

const char *ckpt_tree_base(const json_t *t, size_t k)
{
	return json_string_value(
	    json_object_get(json_array_get(json_object_get(t, "disks"), k), "base"));
}

const char *ckpt_tree_current(const json_t *t, size_t k, const char **format)
{
	const char *top = top_layer(node(t, NOW), k), *base = ckpt_tree_base(t, k);
	if (!top || !base)
		return NULL;
	/* every layer berth made is qcow2; the disk's own file has its own format */
	*format = !strcmp(top, base)
		      ? json_string_value(json_object_get(
			    json_array_get(json_object_get(t, "disks"), k), "format"))
		      : "qcow2";
	return top;
}

static void iso_ms(json_int_t ms, char out[32])
{
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&s, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%03dZ", (int)(ms % 1000));
}

json_t *ckpt_api_list(const json_t *list)
{
	json_t *arr = json_array(), *c;
	size_t i;
	json_array_foreach(json_object_get(list, "checkpoints"), i, c)
	{
		char created[32];
		iso_ms(json_integer_value(json_object_get(c, "created_ms")), created);
		json_t *e =
		    json_pack("{s:O,s:O,s:O,s:s,s:s,s:b,s:O}", "id", json_object_get(c, "id"),
			      "name", json_object_get(c, "name"), "parent",
			      json_object_get(c, "parent"), "created", created, "kind",
			      json_is_true(json_object_get(c, "state")) ? "standard" : "disk-only",
			      "current", json_is_true(json_object_get(c, "current")), "disks",
			      json_object_get(c, "disks"));
		if (!e || json_array_append_new(arr, e)) {
			json_decref(arr);
			return NULL;
		}
	}
	json_t *cur = json_object_get(list, "current");
	return arr ? json_pack("{s:o,s:O}", "checkpoints", arr, "current",
			       json_is_string(cur) ? cur : json_null())
		   : NULL;
}

json_t *ckpt_api_find(const json_t *api_list, const char *ref)
{
	json_t *c;
	size_t i;
	json_array_foreach(json_object_get(api_list, "checkpoints"), i, c)
	{
		if (!strcmp(json_string_value(json_object_get(c, "id")), ref) ||
		    !strcmp(json_string_value(json_object_get(c, "name")), ref))
			return c;
	}
	return NULL;
}

int ckpt_tree_apply_cfg(json_t *cfg, const char *dir, char *err, size_t errlen)
{
	json_t *tree = NULL, *d;
	size_t i, k = 0;
	int r = ckpt_tree_load(dir, &tree, err, errlen);
	if (r == -ENOENT)
		return 0;
	if (r)
		return r;
	json_array_foreach(json_object_get(cfg, "disks"), i, d)
	{
		if (json_is_true(json_object_get(d, "readonly")))
			continue;
		const char *path = json_string_value(json_object_get(d, "path")), *fmt = NULL;
		const char *base = ckpt_tree_base(tree, k), *cur = ckpt_tree_current(tree, k, &fmt);
		char *abs = path ? realpath(path, NULL) : NULL;
		bool same =
		    base && (!strcmp(base, path ? path : "") || (abs && !strcmp(base, abs)));
		free(abs);
		if (!cur || !same) {
			r = bad(
			    err, errlen,
			    "the checkpoint tree in %s belongs to %s as writable disk %zu, but the "
			    "VM's disk is %s: restore the disk or delete the checkpoints",
			    dir, base ? base : "no disk", k, path ? path : "?");
			goto out;
		}
		json_object_set_new(d, "path", json_string(cur));
		json_object_set_new(d, "format", json_string(fmt));
		k++;
	}
	if (k != ckpt_tree_ndisks(tree))
		r = bad(err, errlen,
			"the checkpoint tree in %s describes %zu writable disk(s), the VM has %zu",
			dir, ckpt_tree_ndisks(tree), k);
out:
	json_decref(tree);
	return r;
}
