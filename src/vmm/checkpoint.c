/* A VM's checkpoint tree: the tree file, and create/apply/delete on the running VM. Every node owns
 * a chain of disk layers per writable disk (top first); its bottom layer's backing file is its
 * parent's top layer. "now" is the running VM's node, always a leaf. */
#include "vmm/checkpoint.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/block.h"
#include "block/qcow2.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"
#include "vmm/vmstate.h"
#include "vmm/vmstate_mem.h"

#define TAG "checkpoint"
#define NOW "now"

struct ckpt_store {
	char *dir;
	struct vm *vm;
	json_t *tree;
	unsigned ndisks;
	struct virtio_pci *disk[VM_DISKS_MAX]; /* the writable disks, in configuration order */
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the tree ---- */

static json_t *nodes(struct ckpt_store *s)
{
	return json_object_get(s->tree, "nodes");
}

static json_t *node(struct ckpt_store *s, const char *id)
{
	return id ? json_object_get(nodes(s), id) : NULL;
}

static json_t *layers(json_t *n, unsigned k)
{
	return json_array_get(json_object_get(n, "layers"), k);
}

static const char *layer(json_t *n, unsigned k, size_t i)
{
	return json_string_value(json_array_get(layers(n, k), i));
}

static const char *parent_of(json_t *n)
{
	return json_string_value(json_object_get(n, "parent"));
}

static bool hidden(json_t *n)
{
	return json_is_true(json_object_get(n, "hidden"));
}

static json_t *disk_info(struct ckpt_store *s, unsigned k)
{
	return json_array_get(json_object_get(s->tree, "disks"), k);
}

static bool is_base(struct ckpt_store *s, unsigned k, const char *path)
{
	return !strcmp(path, json_string_value(json_object_get(disk_info(s, k), "base")));
}

/* Every layer berth made is qcow2; the disk's own file has the format it was opened with. */
static enum blk_format layer_fmt(struct ckpt_store *s, unsigned k, const char *path)
{
	const char *f = json_string_value(json_object_get(disk_info(s, k), "format"));
	return is_base(s, k, path) && !strcmp(f, "raw") ? BLK_FMT_RAW : BLK_FMT_QCOW2;
}

/* The ids of the nodes whose parent is id (hidden ones and "now" included). */
static size_t children(struct ckpt_store *s, const char *id, const char **out, size_t max)
{
	size_t n = 0;
	const char *key;
	json_t *v;
	json_object_foreach(nodes(s), key, v)
	{
		const char *p = parent_of(v);
		if (p && !strcmp(p, id)) {
			if (n < max)
				out[n] = key;
			n++;
		}
	}
	return n;
}

/* A visible checkpoint by id or name. */
static const char *find(struct ckpt_store *s, const char *ref)
{
	const char *key;
	json_t *v;
	json_object_foreach(nodes(s), key, v)
	{
		if (!strcmp(key, NOW) || hidden(v))
			continue;
		const char *name = json_string_value(json_object_get(v, "name"));
		if (!strcmp(key, ref) || (name && !strcmp(name, ref)))
			return key;
	}
	return NULL;
}

static int save_tree(struct ckpt_store *s, char *msg, size_t msglen)
{
	int r = vmstate_write_json(s->dir, "tree.json", s->tree);
	if (r)
		snprintf(msg, msglen, "'%s/tree.json': %s", s->dir, strerror(-r));
	return r;
}

static void new_layer_path(struct ckpt_store *s, unsigned k, char *buf, size_t len)
{
	json_int_t n = json_integer_value(json_object_get(s->tree, "next_layer"));
	json_object_set_new(s->tree, "next_layer", json_integer(n + 1));
	snprintf(buf, len, "%s/layers/L%lld-d%u.qcow2", s->dir, (long long)n, k);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)ftw;
	if ((flag == FTW_DP ? rmdir(path) : unlink(path)) < 0)
		log_warn(TAG, "cannot remove '%s': %s", path, strerror(errno));
	return 0;
}

static void remove_state(struct ckpt_store *s, const char *id)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", s->dir, id);
	if (access(path, F_OK) == 0)
		nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void unlink_layer(struct ckpt_store *s, unsigned k, const char *path)
{
	if (is_base(s, k, path)) { /* the VM's own disk file is never removed */
		log_warn(TAG, "not removing '%s': it is the disk's base image", path);
		return;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		log_warn(TAG, "cannot remove '%s': %s", path, strerror(errno));
}

static void unlink_layers(struct ckpt_store *s, json_t *n)
{
	for (unsigned k = 0; k < s->ndisks; k++)
		for (size_t i = 0; i < json_array_size(layers(n, k)); i++)
			unlink_layer(s, k, layer(n, k, i));
}

/* Does the disk's open chain contain the file at path? */
static bool in_chain(struct virtio_pci *vp, const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return false;
	for (const struct blk *b = virtio_blk_disk(vp); b; b = b->backing)
		if (b->dev == (uint64_t)st.st_dev && b->ino == (uint64_t)st.st_ino)
			return true;
	return false;
}

static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;
	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* ---- open ---- */

static int check_tree(struct ckpt_store *s, char *msg, size_t msglen)
{
	json_t *t = s->tree, *n;
	const char *f = json_string_value(json_object_get(t, "format")), *key;
	if (!f || strcmp(f, CKPT_FORMAT) ||
	    json_integer_value(json_object_get(t, "version")) != CKPT_VERSION) {
		snprintf(msg, msglen, "tree.json: not a %s version %d file", CKPT_FORMAT,
			 CKPT_VERSION);
		return -EINVAL;
	}
	if (json_array_size(json_object_get(t, "disks")) != s->ndisks || !node(s, NOW) ||
	    !json_is_integer(json_object_get(t, "next_id")) ||
	    !json_is_integer(json_object_get(t, "next_layer"))) {
		snprintf(msg, msglen, "tree.json: describes %zu writable disk(s), the VM has %u",
			 json_array_size(json_object_get(t, "disks")), s->ndisks);
		return -EINVAL;
	}
	json_int_t next = json_integer_value(json_object_get(t, "next_id"));
	json_object_foreach(nodes(s), key, n)
	{
		const char *p = parent_of(n);
		char *end;
		long long num = key[0] == 'c' ? strtoll(key + 1, &end, 10) : 0;
		if (strcmp(key, NOW) && (num < 1 || num >= next || *end)) {
			snprintf(msg, msglen, "tree.json: bad node id '%s'", key);
			return -EINVAL;
		}
		if (json_array_size(json_object_get(n, "layers")) != s->ndisks) {
			snprintf(msg, msglen, "tree.json: node '%s' has no layers for %u disk(s)",
				 key, s->ndisks);
			return -EINVAL;
		}
		if (p && (!node(s, p) || !strcmp(p, NOW))) {
			snprintf(msg, msglen, "tree.json: node '%s' has a missing parent", key);
			return -EINVAL;
		}
		size_t depth = 0;
		for (const char *a = p; a && depth <= json_object_size(nodes(s)); depth++)
			a = parent_of(node(s, a));
		if (depth > json_object_size(nodes(s))) {
			snprintf(msg, msglen, "tree.json: node '%s' is its own ancestor", key);
			return -EINVAL;
		}
		for (unsigned k = 0; k < s->ndisks; k++) {
			json_t *l = layers(n, k);
			for (size_t i = 0; i < json_array_size(l); i++)
				if (!json_is_string(json_array_get(l, i))) {
					snprintf(msg, msglen,
						 "tree.json: node '%s' disk %u: bad layer", key, k);
					return -EINVAL;
				}
			if (!json_array_size(l)) {
				snprintf(msg, msglen,
					 "tree.json: node '%s' has no layer for disk %u", key, k);
				return -EINVAL;
			}
		}
	}
	for (unsigned k = 0; k < s->ndisks; k++) {
		const char *top = layer(node(s, NOW), k, 0);
		if (!same_file(top, virtio_blk_disk(s->disk[k])->path)) {
			snprintf(msg, msglen,
				 "writable disk %u is '%s', but the tree's current image is '%s'",
				 k, virtio_blk_disk(s->disk[k])->path, top);
			return -EINVAL;
		}
	}
	return 0;
}

int ckpt_open(struct ckpt_store **out, const char *dir, struct vm *vm, char *msg, size_t msglen)
{
	char path[PATH_MAX];
	int r = 0;
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(msg, msglen, "'%s': %s", dir, strerror(errno));
		return -errno;
	}
	struct ckpt_store *s = calloc(1, sizeof(*s));
	if (!s || !(s->dir = realpath(dir, NULL))) {
		r = s ? -errno : -ENOMEM;
		snprintf(msg, msglen, "'%s': %s", dir, strerror(-r));
		goto fail;
	}
	s->vm = vm;
	for (unsigned i = 0; i < vm->nvirtio; i++)
		if (virtio_blk_is(vm->virtio[i]) && virtio_blk_writable(vm->virtio[i]))
			s->disk[s->ndisks++] = vm->virtio[i];
	snprintf(path, sizeof(path), "%s/layers", s->dir);
	if (mkdir(path, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/tree.json", s->dir);
	if (access(path, F_OK) == 0) {
		json_error_t je;
		if (!(s->tree = json_load_file(path, JSON_REJECT_DUPLICATES, &je))) {
			snprintf(msg, msglen, "'%s' line %d: %s", path, je.line, je.text);
			r = -EINVAL;
			goto fail;
		}
		if ((r = check_tree(s, msg, msglen)))
			goto fail;
	} else {
		json_t *disks = json_array(), *now = json_array();
		for (unsigned k = 0; k < s->ndisks; k++) {
			const struct blk *b = virtio_blk_disk(s->disk[k]);
			char *abs = realpath(b->path, NULL);
			json_array_append_new(disks,
					      json_pack("{s:s,s:s}", "base", abs ? abs : b->path,
							"format", b->drv->name));
			json_array_append_new(now, json_pack("[s]", abs ? abs : b->path));
			free(abs);
		}
		s->tree = json_pack("{s:s,s:i,s:i,s:i,s:o,s:{s:{s:n,s:o}}}", "format", CKPT_FORMAT,
				    "version", CKPT_VERSION, "next_id", 1, "next_layer", 1, "disks",
				    disks, "nodes", NOW, "parent", "layers", now);
		if (!s->tree) {
			r = -ENOMEM;
			snprintf(msg, msglen, "out of memory");
			goto fail;
		}
		if ((r = save_tree(s, msg, msglen)))
			goto fail;
	}
	*out = s;
	return 0;
fail:
	ckpt_close(s);
	return r;
}

void ckpt_close(struct ckpt_store *s)
{
	if (!s)
		return;
	json_decref(s->tree);
	free(s->dir);
	free(s);
}

bool ckpt_find(struct ckpt_store *s, const char *ref)
{
	return find(s, ref) != NULL;
}

/* ---- list ---- */

/* The nearest visible ancestor of a node (hidden nodes are layers kept for several children). */
static const char *visible_parent(struct ckpt_store *s, json_t *n)
{
	const char *p = parent_of(n);
	while (p && hidden(node(s, p)))
		p = parent_of(node(s, p));
	return p;
}

json_t *ckpt_list(struct ckpt_store *s)
{
	json_t *arr = json_array(), *n;
	const char *cur = visible_parent(s, node(s, NOW));
	json_int_t next = json_integer_value(json_object_get(s->tree, "next_id"));
	for (json_int_t i = 1; i < next; i++) { /* in the order they were taken */
		char key[32];
		snprintf(key, sizeof(key), "c%lld", (long long)i);
		if (!(n = node(s, key)) || hidden(n))
			continue;
		const char *p = visible_parent(s, n);
		json_t *tops = json_array();
		for (unsigned k = 0; k < s->ndisks; k++)
			json_array_append_new(tops, json_string(layer(n, k, 0)));
		json_array_append_new(arr, json_pack("{s:s,s:O,s:o,s:O,s:O,s:b,s:o}", "id", key,
						     "name", json_object_get(n, "name"), "parent",
						     p ? json_string(p) : json_null(), "created_ms",
						     json_object_get(n, "created_ms"), "state",
						     json_object_get(n, "state"), "current",
						     cur && !strcmp(cur, key), "disks", tops));
	}
	return json_pack("{s:o,s:o,s:s}", "checkpoints", arr, "current",
			 cur ? json_string(cur) : json_null(), "dir", s->dir);
}

/* ---- create ---- */

int ckpt_create(struct ckpt_store *s, const struct ckpt_hooks *h, const char *name, bool disk_only,
		json_t **result, char *msg, size_t msglen)
{
	json_int_t idn = json_integer_value(json_object_get(s->tree, "next_id"));
	char id[32], defname[CKPT_NAME_MAX + 1], state[PATH_MAX];
	snprintf(id, sizeof(id), "c%lld", (long long)idn);
	if (!name) {
		snprintf(defname, sizeof(defname), "checkpoint-%lld", (long long)idn);
		name = defname;
	}
	if (find(s, name)) {
		snprintf(msg, msglen, "a checkpoint named '%s' exists", name);
		return -EEXIST;
	}
	json_t *overlays = json_array(), *disks = NULL;
	for (unsigned k = 0; k < s->ndisks; k++) {
		char p[PATH_MAX];
		new_layer_path(s, k, p, sizeof(p));
		json_array_append_new(overlays, json_string(p));
	}
	json_object_set_new(s->tree, "next_id", json_integer(idn + 1));
	snprintf(state, sizeof(state), "%s/%s", s->dir, id);
	/* RAM is pre-copied while the guest runs; the pause writes only what changed since. */
	struct vmstate_mem *pre = NULL;
	int r =
	    disk_only ? 0 : vmstate_mem_begin(s->vm, state, !vm_paused(s->vm), &pre, msg, msglen);
	if (!r && (r = h->pause(h->opaque, msg, msglen)))
		vmstate_mem_end(pre, false);
	if (r) {
		json_decref(overlays);
		return r;
	}
	uint64_t t0 = mono_ns();
	r = vmstate_checkpoint(s->vm, disk_only ? NULL : state, overlays, &disks, msg, msglen);
	uint64_t paused_us = (mono_ns() - t0) / 1000;
	h->resume(h->opaque);
	json_t *memory = pre && !r ? vmstate_mem_report(pre) : NULL;
	if (pre)
		vmstate_mem_end(pre, !r);
	json_t *now = node(s, NOW);
	if (r) {
		/* Disks that switched before the failure keep their overlay: it becomes the top of
		 * the running VM's chain. */
		for (size_t k = 0; k < json_array_size(disks); k++)
			json_array_insert(layers(now, (unsigned)k), 0, json_array_get(overlays, k));
		remove_state(s, id);
		char m2[200];
		save_tree(s, m2, sizeof(m2));
		json_decref(overlays);
		json_decref(disks);
		return r;
	}
	json_decref(disks);
	json_t *nd =
	    json_pack("{s:s,s:O,s:I,s:b,s:b,s:O}", "name", name, "parent",
		      json_object_get(now, "parent"), "created_ms", (json_int_t)wall_ms(), "state",
		      !disk_only, "hidden", 0, "layers", json_object_get(now, "layers"));
	json_t *nl = json_array();
	for (unsigned k = 0; k < s->ndisks; k++)
		json_array_append_new(nl, json_pack("[O]", json_array_get(overlays, k)));
	json_object_set_new(nodes(s), id, nd);
	json_object_set_new(now, "layers", nl);
	json_object_set_new(now, "parent", json_string(id));
	json_decref(overlays);
	if ((r = save_tree(s, msg, msglen))) {
		json_decref(memory);
		return r;
	}
	log_info(TAG, "checkpoint %s '%s' taken (guest paused %llu us)", id, name,
		 (unsigned long long)paused_us);
	*result =
	    json_pack("{s:s,s:s,s:I}", "id", id, "name", name, "paused_us", (json_int_t)paused_us);
	if (memory)
		json_object_set_new(*result, "memory", memory);
	return 0;
}

/* ---- apply ---- */

static int gc(struct ckpt_store *s, const struct ckpt_hooks *h, const char *id, uint64_t *bytes,
	      uint64_t *paused_us, char *msg, size_t msglen);

int ckpt_apply(struct ckpt_store *s, const struct ckpt_hooks *h, const char *ref, bool fresh,
	       json_t **result, char *msg, size_t msglen)
{
	const char *id = find(s, ref);
	json_t *n = node(s, id);
	if (!n) {
		snprintf(msg, msglen, "no checkpoint '%s'", ref);
		return -ENOENT;
	}
	bool disks_only = !json_is_true(json_object_get(n, "state"));
	if (disks_only && !fresh) {
		snprintf(msg, msglen,
			 "checkpoint '%s' holds disks only: apply it to a VM that is off "
			 "(start the VM on a new overlay of its images)",
			 ref);
		return -EINVAL;
	}
	char dir[PATH_MAX], ov[VM_DISKS_MAX][PATH_MAX];
	snprintf(dir, sizeof(dir), "%s/%s", s->dir, id);
	struct vmstate *st = NULL;
	int r = disks_only ? 0 : vmstate_read(dir, &st, msg, msglen);
	if (r)
		return r;
	if (st && st->ram_bytes != s->vm->mem.layout.ram_bytes) {
		snprintf(msg, msglen, "checkpoint '%s' has %llu bytes of RAM, the VM %llu", ref,
			 (unsigned long long)st->ram_bytes,
			 (unsigned long long)s->vm->mem.layout.ram_bytes);
		vmstate_free(st);
		return -EINVAL;
	}
	/* New overlays over the checkpoint's images, before the VM is touched. */
	unsigned made = 0;
	for (; made < s->ndisks; made++) {
		const char *below = layer(n, made, 0);
		enum blk_format f = layer_fmt(s, made, below);
		struct qcow2_create_opts o = {.size = virtio_blk_disk(s->disk[made])->size,
					      .backing = below,
					      .backing_fmt = blk_format_name(f)};
		new_layer_path(s, made, ov[made], sizeof(ov[made]));
		if ((r = qcow2_create(ov[made], &o, msg, msglen)))
			break;
	}
	if (r || (r = h->pause(h->opaque, msg, msglen))) {
		while (made--)
			unlink(ov[made]);
		vmstate_free(st);
		return r;
	}
	uint64_t t0 = mono_ns();
	struct vm *vm = s->vm;
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_reset_quiet(vm->virtio[i]);
	for (unsigned k = 0; !r && k < s->ndisks; k++) {
		virtio_pci_quiesce(s->disk[k]);
		r = virtio_blk_switch(s->disk[k], ov[k], BLK_FMT_QCOW2, NULL, NULL, msg, msglen);
		virtio_pci_unquiesce(s->disk[k]);
		if (!r)
			vmstate_set_disk_path(vm, k, ov[k], BLK_FMT_QCOW2);
	}
	if (!r && st && (r = guest_mem_replace_file(&vm->mem, st->memory_path)))
		snprintf(msg, msglen, "'%s': %s", st->memory_path, strerror(-r));
	if (!r && st)
		r = vmstate_apply(vm, st, msg, msglen);
	uint64_t paused_us = (mono_ns() - t0) / 1000;
	vmstate_free(st);
	if (r) {
		/* Devices were reset and disks may have moved: this VM cannot go on. */
		log_err(TAG, "applying checkpoint %s failed after the VM was stopped: %s", id, msg);
		return -EIO;
	}
	h->resume(h->opaque);
	/* What the VM did since its last checkpoint is gone (its layers are its own). */
	json_t *now = node(s, NOW);
	const char *old_parent = parent_of(now);
	char oldp[64] = "";
	if (old_parent)
		snprintf(oldp, sizeof(oldp), "%s", old_parent);
	unlink_layers(s, now);
	json_t *nl = json_array();
	for (unsigned k = 0; k < s->ndisks; k++)
		json_array_append_new(nl, json_pack("[s]", ov[k]));
	json_object_set_new(now, "layers", nl);
	json_object_set_new(now, "parent", json_string(id));
	r = save_tree(s, msg, msglen);
	uint64_t merged = 0, gc_paused = 0;
	if (!r && oldp[0] && (r = gc(s, h, oldp, &merged, &gc_paused, msg, msglen)))
		log_warn(TAG, "after applying %s, tidying the tree failed: %s", id, msg);
	r = 0; /* the apply itself succeeded */
	log_info(TAG, "checkpoint %s applied (guest paused %llu us)", id,
		 (unsigned long long)paused_us);
	*result = json_pack("{s:s,s:O,s:I}", "id", id, "name", json_object_get(n, "name"),
			    "paused_us", (json_int_t)paused_us);
	return r;
}

/* ---- delete: merging layers ---- */

struct switch_arg {
	struct ckpt_store *s;
	const struct ckpt_hooks *h;
	const char *image, *backing, *top; /* rebase image onto backing; or commit top into it */
	enum blk_format fmt;
	uint64_t copied;
};

static int on_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct switch_arg *a = opaque;
	return a->h->progress ? a->h->progress(a->h->opaque, a->top, done, total) : 0;
}

static int rebase_between(void *arg, char *msg, size_t msglen)
{
	struct switch_arg *a = arg;
	return blk_set_backing(a->image, a->backing, a->fmt, msg, msglen);
}

static int commit_between(void *arg, char *msg, size_t msglen)
{
	struct switch_arg *a = arg;
	struct blk_progress p = {on_progress, a};
	return blk_commit(a->top, a->backing, &p, &a->copied, msg, msglen);
}

/* Reopen disk k (paused, quiesced) at path, calling between() while nothing is open. */
static int switch_disk(struct ckpt_store *s, const struct ckpt_hooks *h, unsigned k,
		       const char *path, int (*between)(void *, char *, size_t),
		       struct switch_arg *arg, uint64_t *paused_us, char *msg, size_t msglen)
{
	int r = h->pause(h->opaque, msg, msglen);
	if (r)
		return r;
	uint64_t t0 = mono_ns();
	enum blk_format f = layer_fmt(s, k, path);
	virtio_pci_quiesce(s->disk[k]);
	r = virtio_blk_switch(s->disk[k], path, f, between, arg, msg, msglen);
	virtio_pci_unquiesce(s->disk[k]);
	if (!r)
		vmstate_set_disk_path(s->vm, k, path, f);
	*paused_us += (mono_ns() - t0) / 1000;
	h->resume(h->opaque);
	return r;
}

/*
 * Merge the two bottom layers of node id's chain for disk k: the upper one is committed into the
 * lower one while the VM runs, the images that had the upper one as backing file are rebased, and
 * the upper one is removed. The running disk's own image is first frozen under a temporary
 * overlay; that overlay (what the guest wrote meanwhile) is committed with the guest paused.
 */
static int merge_bottom(struct ckpt_store *s, const struct ckpt_hooks *h, const char *id,
			unsigned k, uint64_t *bytes, uint64_t *paused_us, char *msg, size_t msglen)
{
	json_t *n = node(s, id), *L = layers(n, k);
	size_t i = json_array_size(L) - 2;
	bool active = !strcmp(id, NOW) && i == 0;
	struct virtio_pci *vp = s->disk[k];
	char tmp[PATH_MAX] = "", upper[PATH_MAX], lower[PATH_MAX];
	int r;
	if (active) {
		new_layer_path(s, k, tmp, sizeof(tmp));
		if ((r = h->pause(h->opaque, msg, msglen)))
			return r;
		uint64_t t0 = mono_ns();
		virtio_pci_quiesce(vp);
		r = virtio_blk_push_overlay(vp, tmp, msg, msglen);
		virtio_pci_unquiesce(vp);
		*paused_us += (mono_ns() - t0) / 1000;
		h->resume(h->opaque);
		if (r)
			return r;
		vmstate_set_disk_path(s->vm, k, tmp, BLK_FMT_QCOW2);
		json_array_insert_new(L, 0, json_string(tmp));
		i = 1;
		if ((r = save_tree(s, msg, msglen)))
			return r;
	}
	snprintf(upper, sizeof(upper), "%s", layer(n, k, i));
	snprintf(lower, sizeof(lower), "%s", layer(n, k, i + 1));
	struct switch_arg a = {s, h, NULL, lower, upper, layer_fmt(s, k, lower), 0};
	struct blk_progress prog = {on_progress, &a};
	uint64_t copied = 0;
	if ((r = blk_commit(upper, lower, &prog, &copied, msg, msglen)))
		return r;
	*bytes += copied;
	if (active) {
		/* The temporary overlay into the lower image with the guest paused; the disk then
		 * runs on the lower image itself. */
		a.top = tmp;
		if ((r = switch_disk(s, h, k, lower, commit_between, &a, paused_us, msg, msglen)))
			return r;
		*bytes += a.copied;
		json_array_clear(L);
		json_array_append_new(L, json_string(lower));
		r = save_tree(s, msg, msglen);
		unlink_layer(s, k, tmp);
		unlink_layer(s, k, upper);
		return r;
	}
	/* The images whose backing file is the upper layer. */
	const char *above[64];
	size_t nab = 0;
	if (i > 0) {
		above[nab++] = layer(n, k, i - 1);
	} else {
		const char *kids[64];
		size_t nk = children(s, id, kids, 64);
		for (size_t c = 0; c < nk && c < 64; c++) {
			json_t *l = layers(node(s, kids[c]), k);
			above[nab++] = json_string_value(json_array_get(l, json_array_size(l) - 1));
		}
	}
	bool switched = false;
	const char *active_path = layer(node(s, NOW), k, 0);
	for (size_t c = 0; c < nab; c++) {
		struct switch_arg ra = {s, h, above[c], lower, NULL, layer_fmt(s, k, lower), 0};
		if (!strcmp(above[c], active_path)) {
			r = switch_disk(s, h, k, active_path, rebase_between, &ra, paused_us, msg,
					msglen);
			switched = true;
		} else {
			r = blk_set_backing(above[c], lower, ra.fmt, msg, msglen);
		}
		if (r)
			return r;
	}
	/* The running disk may still read through the upper layer: reopen it without. */
	if (!switched && in_chain(vp, upper) &&
	    (r = switch_disk(s, h, k, active_path, NULL, NULL, paused_us, msg, msglen)))
		return r;
	json_array_remove(L, i);
	r = save_tree(s, msg, msglen);
	unlink_layer(s, k, upper);
	return r;
}

static int compact(struct ckpt_store *s, const struct ckpt_hooks *h, const char *id,
		   uint64_t *bytes, uint64_t *paused_us, char *msg, size_t msglen)
{
	for (unsigned k = 0; k < s->ndisks; k++)
		while (json_array_size(layers(node(s, id), k)) >= 2) {
			int r = merge_bottom(s, h, id, k, bytes, paused_us, msg, msglen);
			if (r)
				return r;
		}
	return 0;
}

/* Node id leaves the tree: with no child its layers go, with one child that child takes its
 * layers (and merges them), with more it stays as a hidden node holding the layers they share. */
static int remove_node(struct ckpt_store *s, const struct ckpt_hooks *h, const char *id,
		       uint64_t *bytes, uint64_t *paused_us, char *msg, size_t msglen)
{
	json_t *n = json_incref(node(s, id));
	const char *kids[2];
	size_t nk = children(s, id, kids, 2);
	char parent[64] = "", kid[64] = "";
	int r = 0;
	if (parent_of(n))
		snprintf(parent, sizeof(parent), "%s", parent_of(n));
	remove_state(s, id);
	if (nk >= 2) {
		json_object_set_new(n, "hidden", json_true());
		json_object_set_new(n, "state", json_false());
		json_object_del(n, "name");
		r = save_tree(s, msg, msglen);
		json_decref(n);
		return r;
	}
	if (nk == 1) {
		snprintf(kid, sizeof(kid), "%s", kids[0]);
		json_t *c = node(s, kid);
		for (unsigned k = 0; k < s->ndisks; k++)
			json_array_extend(layers(c, k), layers(n, k));
		json_object_set(c, "parent", json_object_get(n, "parent"));
	}
	json_object_del(nodes(s), id);
	if ((r = save_tree(s, msg, msglen)))
		goto out;
	if (nk == 0) {
		unlink_layers(s, n);
		if (parent[0])
			r = gc(s, h, parent, bytes, paused_us, msg, msglen);
	} else {
		r = compact(s, h, kid, bytes, paused_us, msg, msglen);
	}
out:
	json_decref(n);
	return r;
}

/* A hidden node that is down to one child or none goes. */
static int gc(struct ckpt_store *s, const struct ckpt_hooks *h, const char *id, uint64_t *bytes,
	      uint64_t *paused_us, char *msg, size_t msglen)
{
	json_t *n = node(s, id);
	const char *kids[2];
	if (!n || !hidden(n) || children(s, id, kids, 2) >= 2)
		return 0;
	return remove_node(s, h, id, bytes, paused_us, msg, msglen);
}

int ckpt_delete(struct ckpt_store *s, const struct ckpt_hooks *h, const char *ref, json_t **result,
		char *msg, size_t msglen)
{
	const char *found = find(s, ref);
	if (!found) {
		snprintf(msg, msglen, "no checkpoint '%s'", ref);
		return -ENOENT;
	}
	char id[64];
	snprintf(id, sizeof(id), "%s", found);
	json_t *name = json_incref(json_object_get(node(s, id), "name"));
	uint64_t bytes = 0, paused_us = 0, t0 = mono_ns();
	int r = remove_node(s, h, id, &bytes, &paused_us, msg, msglen);
	if (r) {
		log_err(TAG, "deleting checkpoint %s: %s", id, msg);
		json_decref(name);
		return r;
	}
	log_info(TAG, "checkpoint %s deleted: %llu bytes merged in %llu ms (guest paused %llu us)",
		 id, (unsigned long long)bytes, (unsigned long long)((mono_ns() - t0) / 1000000),
		 (unsigned long long)paused_us);
	*result = json_pack("{s:s,s:o,s:I,s:I}", "id", id, "name", name, "merged_bytes",
			    (json_int_t)bytes, "paused_us", (json_int_t)paused_us);
	return 0;
}
