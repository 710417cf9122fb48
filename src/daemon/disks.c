/* Managed disks: the pool directory, creating image files with berth's own block code, checkpoint
 * layers of a VM, and binding VM spec disks to managed disks. */
#include "daemon/disks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "common/log.h"
#include "daemon/db.h"
#include "daemon/spawn.h"
#include "daemon/vmmcfg.h"

int disks_pool_init(struct disk_pool *p, const char *dir, const struct vmm_user *u, char *err,
		    size_t errlen)
{
	struct stat st;
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (dir[0] != '/' || n >= sizeof(p->dir)) {
		snprintf(err, errlen, "%s: must be an absolute path of at most %zu bytes", dir,
			 sizeof(p->dir) - 1);
		return -EINVAL;
	}
	memcpy(p->dir, dir, n);
	p->dir[n] = '\0';
	p->chown = u && u->set;
	p->uid = p->chown ? u->uid : 0;
	p->gid = p->chown ? u->gid : 0;
	if (mkdir(p->dir, 0700) == 0) {
		if (p->chown && chmod(p->dir, 0711)) {
			snprintf(err, errlen, "chmod %s: %s", p->dir, strerror(errno));
			return -errno;
		}
	} else if (errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", p->dir, strerror(errno));
		return -errno;
	}
	if (stat(p->dir, &st) || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s: not a directory", p->dir);
		return -ENOTDIR;
	}
	if (p->chown && !(st.st_mode & S_IXOTH))
		log_warn("disks",
			 "%s is not searchable by others: the VMMs (user %s) cannot "
			 "reach its images",
			 p->dir, u->name);
	return 0;
}

bool disks_in_pool(const struct disk_pool *p, const char *path)
{
	size_t n = strlen(p->dir);
	return !strncmp(path, p->dir, n) && path[n] == '/' && path[n + 1] &&
	       !strchr(path + n + 1, '/');
}

int disks_create_image(const struct disk_pool *p, const struct db_disk *d, const char *backing_path,
		       const char *backing_fmt, char *err, size_t errlen)
{
	int ret = 0, fd;

	if (!strcmp(d->format, "qcow2")) {
		struct qcow2_create_opts o = {
		    .size = d->size, .backing = backing_path, .backing_fmt = backing_fmt};
		if ((ret = qcow2_create(d->path, &o, err, errlen)))
			return ret;
		fd = open(d->path, O_RDONLY | O_CLOEXEC);
	} else {
		fd = open(d->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			ret = -errno;
			snprintf(err, errlen, "'%s': %s", d->path, strerror(errno));
			return ret;
		}
		if (ftruncate(fd, (off_t)d->size) || fsync(fd))
			ret = -errno;
	}
	if (fd < 0 || (!ret && (fchmod(fd, 0600) || (p->chown && fchown(fd, p->uid, p->gid)))))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (ret) {
		snprintf(err, errlen, "'%s': %s", d->path, strerror(-ret));
		unlink(d->path);
	}
	return ret;
}

bool disks_vm_has_checkpoints(const char *state_dir, const char *run_dir, const char *vm_uuid)
{
	struct vm_paths p;
	char layers[VMMCFG_PATH_MAX + 16];
	struct dirent *e;
	bool found = false;

	if (!state_dir || vmmcfg_paths(state_dir, run_dir ? run_dir : "/", vm_uuid, &p))
		return false;
	snprintf(layers, sizeof(layers), "%s/layers", p.checkpoints);
	DIR *dir = opendir(layers);
	if (!dir)
		return false;
	while (!found && (e = readdir(dir)))
		found = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(dir);
	return found;
}

void disks_reset_empty_tree(const char *state_dir, const char *run_dir, const char *vm_uuid)
{
	char layers[VMMCFG_PATH_MAX + 16], tree[VMMCFG_PATH_MAX + 16];
	struct vm_paths p;

	if (!state_dir || vmmcfg_paths(state_dir, run_dir ? run_dir : "/", vm_uuid, &p))
		return;
	snprintf(layers, sizeof(layers), "%s/layers", p.checkpoints);
	snprintf(tree, sizeof(tree), "%s/tree.json", p.checkpoints);
	/* only an empty tree: layers/ must go (empty) before tree.json does */
	if ((!rmdir(layers) || errno == ENOENT) && unlink(tree) && errno != ENOENT)
		log_warn("disks", "VM %s: removing %s: %s", vm_uuid, tree, strerror(errno));
}

static int count_one(const char *a, const char *b, const char *c, void *arg)
{
	(void)a, (void)b, (void)c;
	++*(int *)arg;
	return 0;
}

int disks_resolve(struct db *db, json_t *spec, struct spec_error *err)
{
	json_t *disks = json_object_get(spec, "disks"), *d;
	struct db_disk row;
	char field[64];
	size_t i;
	int ret;

	json_array_foreach(disks, i, d)
	{
		const char *id = json_string_value(json_object_get(d, "disk"));
		const char *path = json_string_value(json_object_get(d, "path"));
		const char *fmt = json_string_value(json_object_get(d, "format"));
		if (id) {
			snprintf(field, sizeof(field), "disks[%zu].disk", i);
			ret = db_disk_find(db, id, &row);
		} else {
			snprintf(field, sizeof(field), "disks[%zu].path", i);
			ret = db_disk_find_path(db, path, &row);
			if (ret == -ENOENT)
				continue; /* the administrator's own file */
		}
		if (ret == -ENOENT)
			return spec_fail(err, "invalid-argument", field,
					 "%s: no managed disk named '%s'", field, id);
		if (ret)
			return spec_fail(err, "internal", "", "reading the disks: %s",
					 strerror(-ret));
		int kids = 0;
		if (!json_is_true(json_object_get(d, "readonly")) &&
		    (ret = db_disk_children(db, row.uuid, count_one, &kids))) {
			db_disk_clear(&row);
			return spec_fail(err, "internal", "", "reading the disks: %s",
					 strerror(-ret));
		}
		if (kids) {
			snprintf(field, sizeof(field), "disks[%zu].readonly", i);
			ret = spec_fail(err, "invalid-argument", field,
					"%s: disk '%s' is the backing disk of %d other disk%s: a "
					"VM may only read it (readonly: true)",
					field, row.name, kids, kids == 1 ? "" : "s");
		} else if (id && path && strcmp(path, row.path)) {
			snprintf(field, sizeof(field), "disks[%zu].path", i);
			ret = spec_fail(err, "invalid-argument", field,
					"%s: managed disk '%s' is the image %s (give its disk, or "
					"its path, not both)",
					field, row.name, row.path);
		} else if (strcmp(fmt, "auto") && strcmp(fmt, row.format)) {
			snprintf(field, sizeof(field), "disks[%zu].format", i);
			ret = spec_fail(err, "invalid-argument", field,
					"%s: managed disk '%s' is %s, not %s", field, row.name,
					row.format, fmt);
		} else {
			/* the order of a plain disk's fields, then the reference */
			json_t *n =
			    json_pack("{s:s, s:s, s:O, s:O, s:O, s:s}", "path", row.path, "format",
				      row.format, "readonly", json_object_get(d, "readonly"),
				      "cache", json_object_get(d, "cache"), "serial",
				      json_object_get(d, "serial"), "disk", row.uuid);
			if (!n || json_array_set_new(disks, i, n))
				ret = spec_fail(err, "internal", "", "out of memory");
			d = n;
		}
		db_disk_clear(&row);
		if (ret)
			return ret;
	}
	/* a managed disk named twice shows only now that its path is known */
	json_array_foreach(disks, i, d)
	{
		const char *path = json_string_value(json_object_get(d, "path"));
		for (size_t j = 0; j < i; j++)
			if (!strcmp(path, json_string_value(
					      json_object_get(json_array_get(disks, j), "path")))) {
				snprintf(field, sizeof(field), "disks[%zu].%s", i,
					 json_object_get(d, "disk") ? "disk" : "path");
				return spec_fail(err, "invalid-argument", field,
						 "%s: the same image as disks[%zu]", field, j);
			}
	}
	return 0;
}

int disks_resize_image(const char *path, const char *format, uint64_t size, char *err,
		       size_t errlen)
{
	enum blk_format fmt;
	if (blk_format_parse(format, &fmt)) {
		snprintf(err, errlen, "'%s': unknown format %s", path, format);
		return -EINVAL;
	}
	return blk_resize(path, fmt, size, err, errlen);
}
