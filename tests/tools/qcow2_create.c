/* Test tool: create a qcow2 image with berth's own qcow2_create (fuzz seeds, system tests).
 * Usage: qcow2-create PATH SIZE [CLUSTER_BITS [BACKING [BACKING_FMT]]] */
#include <stdio.h>
#include <stdlib.h>

#include "block/qcow2.h"

int main(int argc, char **argv)
{
	if (argc < 3 || argc > 6) {
		fprintf(stderr, "usage: %s PATH SIZE [CLUSTER_BITS [BACKING [BACKING_FMT]]]\n",
			argv[0]);
		return 2;
	}
	struct qcow2_create_opts o = {
	    .size = strtoull(argv[2], NULL, 0),
	    .cluster_bits = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 0) : 0,
	    .backing = argc > 4 ? argv[4] : NULL,
	    .backing_fmt = argc > 5 ? argv[5] : NULL,
	};
	char msg[300];
	if (qcow2_create(argv[1], &o, msg, sizeof(msg))) {
		fprintf(stderr, "qcow2-create: %s\n", msg);
		return 1;
	}
	return 0;
}
