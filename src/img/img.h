/* berth-img: the subcommands, their stable exit statuses, and the helpers they share (messages,
 * option errors, sizes, JSON output, format probing, backing file paths). */
#ifndef BERTH_IMG_H
#define BERTH_IMG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "block/block.h"

/* Exit statuses, the same as qemu-img's where both have them. */
enum img_exit {
	IMG_EXIT_OK = 0,      /* done; check: the image is clean (or raw: nothing to check) */
	IMG_EXIT_ERROR = 1,   /* bad arguments, unreadable or invalid image, check incomplete */
	IMG_EXIT_CORRUPT = 2, /* check: corruptions found */
	IMG_EXIT_LEAKS = 3,   /* check: leaked clusters found, no corruptions */
};

struct img_cmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand's name */
	void (*usage)(FILE *f);
};

int cmd_create(int argc, char **argv);
void cmd_create_usage(FILE *f);
int cmd_info(int argc, char **argv);
void cmd_info_usage(FILE *f);
int cmd_check(int argc, char **argv);
void cmd_check_usage(FILE *f);

/* "berth-img: error: <cmd>: ..." on stderr. */
void img_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report getopt_long's verdict on argv (c is ':' or '?'); returns IMG_EXIT_ERROR. */
int img_opt_error(const char *cmd, int c, char **argv);

/* The PATH operand at argv[optind] (with more_ok, operands may follow it); prints an error and
 * returns NULL if it is missing or followed by another operand. */
const char *img_path_arg(const char *cmd, int argc, char **argv, int optind, bool more_ok);

/* --output=json|human; returns 0 and sets *json, or prints an error and returns -1. */
int img_parse_output(const char *cmd, const char *arg, bool *json);

/* -f FMT: "raw", "qcow2" or "auto"; prints an error and returns -1 otherwise. */
int img_parse_format(const char *cmd, const char *opt, const char *arg, enum blk_format *fmt);

/* "64 MiB", "1.25 MiB", "512 B". */
void img_human_size(uint64_t v, char *buf, size_t len);

/* Print j to stdout, indented, and drop the reference. 0, or -1 if it could not be encoded. */
int img_print_json(json_t *j);

/* The format of an open image: qcow2 if it starts with the qcow2 magic, raw otherwise. */
int img_probe(int fd, enum blk_format *fmt);

/* Where a backing file name stored in `image` points: absolute names as they are, relative ones
 * against the image's directory (as berth's driver and QEMU resolve them). -ENAMETOOLONG. */
int img_backing_path(const char *image, const char *backing, char *out, size_t len);

/* Everything info shows about one image, as qemu-img info's JSON object plus berth's fields;
 * NULL with a message if the image cannot be read. */
json_t *img_info_json(const char *path, enum blk_format fmt, char *msg, size_t msglen);

#endif
