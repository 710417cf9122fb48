/* Opening a VMM's disk images, their backing chains, kernel and initrd for it, so that a VMM
 * running as an unprivileged user needs no access to them by name (berth-vmm --fd-map). */
#include "daemon/diskfds.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "common/fdmap.h"

static int bad(char *err, size_t errlen, int e, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(char *err, size_t errlen, int e, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -e;
}

static int find(const struct diskfds *df, const char *path)
{
	for (int i = 0; i < df->n; i++)
		if (!strcmp(df->path[i], path))
			return i;
	return -1;
}

/* Map path (normalized) to fd; a second path for the same open file gets its own duplicate. */
static int add(struct diskfds *df, const char *path, int fd, bool rw)
{
	if (df->n == DISKFDS_MAX)
		return -E2BIG;
	if (!(df->path[df->n] = strdup(path)))
		return -ENOMEM;
	df->fd[df->n] = fd;
	df->rw[df->n++] = rw;
	return 0;
}

/*
 * Open one file for the map under its normalized path and, if different, its canonical path
 * (the name a checkpoint layer records for its backing file). *fd gets a descriptor to read
 * (owned by df). -errno with errno-style reason in *why.
 */
static int open_file(struct diskfds *df, const char *norm, bool rw, int *fd, const char **why)
{
	int i = find(df, norm);
	*why = NULL;
	if (i >= 0 && (df->rw[i] || !rw)) {
		*fd = df->fd[i];
		return 0;
	}
	/* O_NONBLOCK: a FIFO named as a disk must not hold the start up; it is refused below */
	int nfd = open(norm, (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (nfd < 0)
		return -errno;
	struct stat st;
	int fl = fcntl(nfd, F_GETFL);
	if (fstat(nfd, &st) < 0 || (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) || fl < 0 ||
	    fcntl(nfd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
		close(nfd);
		*why = "not a regular file or block device";
		return -EINVAL;
	}
	if (i >= 0) { /* met read-only before, needed writable now: replace it */
		close(df->fd[i]);
		df->fd[i] = nfd;
		df->rw[i] = true;
	} else if (add(df, norm, nfd, rw)) {
		close(nfd);
		*why = "too many files for one VM";
		return -E2BIG;
	}
	*fd = nfd;
	char *canon = realpath(norm, NULL);
	if (canon && strcmp(canon, norm)) {
		int j = find(df, canon), dup = -1;
		if (j >= 0 && (df->rw[j] || !rw)) {
			free(canon);
			return 0;
		}
		if ((dup = fcntl(nfd, F_DUPFD_CLOEXEC, 0)) < 0) {
			int e = errno;
			free(canon);
			return -e;
		}
		if (j >= 0) {
			close(df->fd[j]);
			df->fd[j] = dup;
			df->rw[j] = true;
		} else if (add(df, canon, dup, rw)) {
			close(dup);
			free(canon);
			*why = "too many files for one VM";
			return -E2BIG;
		}
	}
	free(canon);
	return 0;
}

/* The image and the backing files its qcow2 headers name, down to a raw image or none. */
static int open_chain(struct diskfds *df, const char *field, const char *path, bool rw,
		      enum blk_format fmt, char *err, size_t errlen)
{
	char cur[PATH_MAX], next[PATH_MAX], name[1024];
	dev_t dev[BLK_CHAIN_MAX];
	ino_t ino[BLK_CHAIN_MAX];
	const char *why;
	if (fdmap_normalize(path, cur, sizeof(cur)))
		return bad(err, errlen, EINVAL, "%s: '%s': not an absolute path", field, path);
	for (unsigned depth = 0;; depth++) {
		int fd = -1, r = open_file(df, cur, rw && !depth, &fd, &why);
		if (r)
			return bad(err, errlen, -r, "%s: '%s'%s: %s", field, cur,
				   depth ? " (a backing file)" : "", why ? why : strerror(-r));
		struct stat st;
		if (fstat(fd, &st) < 0)
			return bad(err, errlen, errno, "%s: '%s': %s", field, cur, strerror(errno));
		for (unsigned k = 0; k < depth; k++)
			if (dev[k] == st.st_dev && ino[k] == st.st_ino)
				return bad(err, errlen, ELOOP,
					   "%s: '%s': the backing chain loops back into itself",
					   field, cur);
		dev[depth] = st.st_dev;
		ino[depth] = st.st_ino;
		if (fmt == BLK_FMT_RAW)
			return 0;
		char msg[600];
		if ((r = blk_backing_name(fd, cur, name, sizeof(name), &fmt, msg, sizeof(msg))))
			return bad(err, errlen, -r, "%s: %s", field, msg);
		if (!name[0])
			return 0;
		if (depth + 1 >= BLK_CHAIN_MAX)
			return bad(err, errlen, ELOOP,
				   "%s: '%s': backing chain deeper than %u images", field, path,
				   BLK_CHAIN_MAX);
		/* relative names are relative to the image's directory, as the VMM resolves them */
		char dir[PATH_MAX], joined[2 * PATH_MAX + 2];
		snprintf(dir, sizeof(dir), "%s", cur);
		if (name[0] == '/')
			snprintf(joined, sizeof(joined), "%s", name);
		else
			snprintf(joined, sizeof(joined), "%s/%s", dirname(dir), name);
		if (fdmap_normalize(joined, next, sizeof(next)))
			return bad(err, errlen, ENAMETOOLONG, "%s: '%s': backing path too long",
				   field, cur);
		memcpy(cur, next, sizeof(cur));
	}
}

int diskfds_open(struct diskfds *df, const json_t *spec, char *err, size_t errlen)
{
	const json_t *boot = json_object_get(spec, "boot"), *d;
	static const char *const files[] = {"kernel", "initrd"};
	char field[32];
	size_t i;
	int r = 0;
	memset(df, 0, sizeof(*df));
	json_array_foreach(json_object_get(spec, "disks"), i, d)
	{
		const char *path = json_string_value(json_object_get(d, "path"));
		const char *f = json_string_value(json_object_get(d, "format"));
		enum blk_format fmt = BLK_FMT_AUTO;
		snprintf(field, sizeof(field), "disks[%zu]", i);
		if (!path)
			continue;
		if (f)
			blk_format_parse(f, &fmt);
		if ((r = open_chain(df, field, path, !json_is_true(json_object_get(d, "readonly")),
				    fmt, err, errlen)))
			goto fail;
	}
	for (i = 0; i < 2; i++) {
		const char *path = json_string_value(json_object_get(boot, files[i]));
		snprintf(field, sizeof(field), "boot.%s", files[i]);
		if (path && (r = open_chain(df, field, path, false, BLK_FMT_RAW, err, errlen)))
			goto fail;
	}
	return 0;
fail:
	diskfds_close(df);
	return r;
}

int diskfds_argv(struct diskfds *df, int fd0, char **argv, int *argc, int max)
{
	if (*argc + 2 * df->n + 1 > max)
		return -E2BIG;
	for (int i = 0; i < df->n; i++) {
		free(df->arg[i]);
		if (asprintf(&df->arg[i], "%s=%d", df->path[i], fd0 + i) < 0) {
			df->arg[i] = NULL;
			return -ENOMEM;
		}
		argv[(*argc)++] = "--fd-map";
		argv[(*argc)++] = df->arg[i];
	}
	argv[*argc] = NULL;
	return 0;
}

void diskfds_close(struct diskfds *df)
{
	for (int i = 0; i < df->n; i++) {
		if (df->fd[i] >= 0)
			close(df->fd[i]);
		free(df->path[i]);
		free(df->arg[i]);
		df->fd[i] = -1;
		df->path[i] = df->arg[i] = NULL;
	}
	df->n = 0;
}
