/* The files a VMM gets open rather than by name: its disks' images and their backing chains, its
 * kernel and initrd, handed over as inherited descriptors with berth-vmm --fd-map PATH=N. */
#ifndef BERTH_DAEMON_DISKFDS_H
#define BERTH_DAEMON_DISKFDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define DISKFDS_MAX 200 /* paths handed to one VMM */

struct diskfds {
	int n;
	int fd[DISKFDS_MAX];	 /* berthd's descriptors, O_CLOEXEC */
	char *path[DISKFDS_MAX]; /* the absolute (normalized) path the VMM knows it by */
	bool rw[DISKFDS_MAX];
	char *arg[DISKFDS_MAX]; /* "PATH=N" once numbered */
};

/*
 * Open what the spec's VM reads by path: each disk's image (read-write unless readonly) and the
 * backing files its qcow2 headers name (read-only, depth and loops bounded; read from the
 * headers, not through the qcow2 driver), boot.kernel and boot.initrd (read-only). A file met
 * twice is opened once (read-write if any use needs it). -errno with err naming the field
 * (disks[i], boot.kernel, boot.initrd) and the path; nothing stays open then.
 */
int diskfds_open(struct diskfds *df, const json_t *spec, char *err, size_t errlen);

/*
 * Append "--fd-map" "PATH=N" for each file to argv (whose *argc entries are used, room for max
 * including the NULL), numbering them fd0, fd0 + 1, ... (where spawn_begin puts them).
 * -E2BIG if they do not fit, -ENOMEM.
 */
int diskfds_argv(struct diskfds *df, int fd0, char **argv, int *argc, int max);

/* Close berthd's copies (once the VMM holds its own) and free. */
void diskfds_close(struct diskfds *df);

#endif
