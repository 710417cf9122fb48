/* Paths the process was handed as open descriptors (berth-vmm --fd-map PATH=N): opening such a
 * path duplicates its descriptor instead of opening the file by name. */
#ifndef BERTH_COMMON_FDMAP_H
#define BERTH_COMMON_FDMAP_H

#include <stdbool.h>
#include <stddef.h>

#define FDMAP_MAX 256 /* entries in one map */

/*
 * Parse "PATH=N" (split at the last '='): an absolute path and a descriptor number. The path is
 * normalized lexically (fdmap_normalize). *path is malloc'd. -EINVAL with msg saying why.
 */
int fdmap_parse(const char *arg, char **path, int *fd, char *msg, size_t msglen);

/*
 * Add path (absolute) → fd to the process's map. fd must be open on a regular file or a block
 * device; a path mapped twice is refused. The map never closes fd. -errno with msg.
 */
int fdmap_add(const char *path, int fd, char *msg, size_t msglen);

/* Forget every entry (the descriptors stay open). */
void fdmap_clear(void);

/* The descriptor mapped to path (after lexical normalization), or -1. */
int fdmap_lookup(const char *path);

/*
 * open(path, flags) for a mapped path: a new descriptor (F_DUPFD_CLOEXEC) of the mapped one,
 * refused (-EACCES, msg names the path and the map) if flags ask for writing and the descriptor
 * was opened read-only; O_DIRECT is set or cleared on it as flags ask (on the shared open file
 * description). An unmapped path is opened by name (msg left empty on failure: the caller says
 * why with strerror). Returns the descriptor or -errno.
 */
int fdmap_open(const char *path, int flags, char *msg, size_t msglen);

/*
 * "/a//b/./c/../d" → "/a/b/d": '.' and '..' resolved without looking at the file system (so
 * without permission on the directories). in must be absolute. -ENAMETOOLONG or -EINVAL.
 */
int fdmap_normalize(const char *in, char *out, size_t outlen);

#endif
