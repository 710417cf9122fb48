/* The path → inherited descriptor map: lets a process without access to a file by name (an
 * unprivileged VMM) open it through a descriptor its parent opened and handed down. */
#include "common/fdmap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fdmap_entry {
	char *path;
	int fd;
};

static struct fdmap_entry map[FDMAP_MAX];
static unsigned nmap;

int fdmap_normalize(const char *in, char *out, size_t outlen)
{
	if (in[0] != '/')
		return -EINVAL;
	size_t n = 0;
	const char *p = in;
	while (*p) {
		while (*p == '/')
			p++;
		const char *e = strchrnul(p, '/');
		size_t len = (size_t)(e - p);
		if (!len || (len == 1 && p[0] == '.')) {
			/* nothing */
		} else if (len == 2 && p[0] == '.' && p[1] == '.') {
			while (n > 0 && out[n - 1] != '/')
				n--;
			if (n > 0)
				n--; /* the '/' before the dropped component; "/.." is "/" */
		} else {
			if (n + 1 + len + 1 > outlen)
				return -ENAMETOOLONG;
			out[n++] = '/';
			memcpy(out + n, p, len);
			n += len;
		}
		p = e;
	}
	if (outlen < 2)
		return -ENAMETOOLONG;
	if (!n)
		out[n++] = '/';
	out[n] = 0;
	return 0;
}

int fdmap_parse(const char *arg, char **path, int *fd, char *msg, size_t msglen)
{
	const char *eq = strrchr(arg, '=');
	char norm[PATH_MAX], *end;
	*path = NULL;
	if (!eq || eq == arg || !eq[1]) {
		snprintf(msg, msglen,
			 "'%s': must be PATH=N (an absolute path, a descriptor number)", arg);
		return -EINVAL;
	}
	errno = 0;
	long v = strtol(eq + 1, &end, 10);
	if (*end || errno || v < 0 || v > INT_MAX || eq[1] < '0' || eq[1] > '9') {
		snprintf(msg, msglen, "'%s': '%s' is not a descriptor number", arg, eq + 1);
		return -EINVAL;
	}
	if (arg[0] != '/') {
		snprintf(msg, msglen, "'%s': the path must be absolute", arg);
		return -EINVAL;
	}
	size_t plen = (size_t)(eq - arg);
	char *raw = strndup(arg, plen);
	if (!raw) {
		snprintf(msg, msglen, "'%s': out of memory", arg);
		return -ENOMEM;
	}
	int r = fdmap_normalize(raw, norm, sizeof(norm));
	free(raw);
	if (r) {
		snprintf(msg, msglen, "'%s': the path is too long", arg);
		return r;
	}
	if (!(*path = strdup(norm))) {
		snprintf(msg, msglen, "'%s': out of memory", arg);
		return -ENOMEM;
	}
	*fd = (int)v;
	return 0;
}

static int find(const char *path)
{
	char norm[PATH_MAX];
	if (!nmap || fdmap_normalize(path, norm, sizeof(norm)))
		return -1;
	for (unsigned i = 0; i < nmap; i++)
		if (!strcmp(map[i].path, norm))
			return (int)i;
	return -1;
}

int fdmap_lookup(const char *path)
{
	int i = find(path);
	return i < 0 ? -1 : map[i].fd;
}

int fdmap_add(const char *path, int fd, char *msg, size_t msglen)
{
	char norm[PATH_MAX];
	struct stat st;
	if (fdmap_normalize(path, norm, sizeof(norm))) {
		snprintf(msg, msglen, "'%s': not an absolute path", path);
		return -EINVAL;
	}
	if (fstat(fd, &st) < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s=%d': descriptor %d: %s", norm, fd, fd, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		snprintf(msg, msglen,
			 "'%s=%d': descriptor %d is not a regular file or block device", norm, fd,
			 fd);
		return -EINVAL;
	}
	if (find(norm) >= 0) {
		snprintf(msg, msglen, "'%s=%d': the path is mapped twice", norm, fd);
		return -EEXIST;
	}
	if (nmap == FDMAP_MAX) {
		snprintf(msg, msglen, "'%s=%d': more than %d paths", norm, fd, FDMAP_MAX);
		return -E2BIG;
	}
	if (!(map[nmap].path = strdup(norm))) {
		snprintf(msg, msglen, "'%s=%d': out of memory", norm, fd);
		return -ENOMEM;
	}
	map[nmap++].fd = fd;
	return 0;
}

void fdmap_clear(void)
{
	for (unsigned i = 0; i < nmap; i++)
		free(map[i].path);
	memset(map, 0, sizeof(map));
	nmap = 0;
}

int fdmap_open(const char *path, int flags, char *msg, size_t msglen)
{
	if (msglen)
		msg[0] = 0;
	int i = find(path);
	if (i < 0) {
		int fd = open(path, flags | O_CLOEXEC);
		return fd < 0 ? -errno : fd;
	}
	int e, fl = fcntl(map[i].fd, F_GETFL);
	if (fl < 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': mapped descriptor %d (--fd-map): %s", path, map[i].fd,
			 strerror(e));
		return -e;
	}
	if ((flags & O_ACCMODE) != O_RDONLY && (fl & O_ACCMODE) == O_RDONLY) {
		snprintf(msg, msglen,
			 "'%s': mapped descriptor %d (--fd-map) is open read-only, a writable "
			 "open needs it read-write",
			 path, map[i].fd);
		return -EACCES;
	}
	int fd = fcntl(map[i].fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': duplicating mapped descriptor %d: %s", path, map[i].fd,
			 strerror(e));
		return -e;
	}
	int want = (fl & ~O_DIRECT) | (flags & O_DIRECT);
	if (want != fl && fcntl(fd, F_SETFL, want) < 0) {
		e = errno;
		snprintf(msg, msglen, "'%s': mapped descriptor %d: cannot %s O_DIRECT: %s%s", path,
			 map[i].fd, flags & O_DIRECT ? "set" : "clear", strerror(e),
			 e == EINVAL ? " (cache=none needs O_DIRECT support)" : "");
		close(fd);
		return -e;
	}
	return fd;
}
