/* The qcow2 consistency check of berth-img: references counted from the metadata, compared with
 * the stored refcounts. Read-only; independent of the block driver. */
#ifndef BERTH_IMG_CHECK_H
#define BERTH_IMG_CHECK_H

#include <stdint.h>

#include "img/qmeta.h"

struct check_result {
	uint64_t corruptions;	 /* refcount too low, bad offsets, overlaps, wrong COPIED flags */
	uint64_t leaks;		 /* clusters whose refcount is higher than their references */
	uint64_t check_errors;	 /* what could not be checked (I/O errors, unreadable refcounts) */
	uint64_t total_clusters; /* guest clusters of the virtual disk */
	uint64_t allocated_clusters; /* guest clusters mapped to the image file */
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	uint64_t image_end_offset; /* end of the last cluster in use or with a refcount */
};

enum check_msg { CHECK_CORRUPTION, CHECK_LEAK, CHECK_ERROR };

/* Receives one line per problem found (no trailing newline). */
typedef void (*check_report_fn)(void *ctx, enum check_msg kind, const char *text);

/* Check the qcow2 image open on fd whose header h was read with qm_read_header. 0 when the check
 * ran to the end (counts in *res), -errno when it could not (the reason was reported as a
 * CHECK_ERROR and counted in res->check_errors). */
int qcow2_check(int fd, const struct qm_header *h, struct check_result *res, check_report_fn fn,
		void *ctx);

#endif
