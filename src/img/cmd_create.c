/* berth-img create: a new qcow2 image (through the driver's qcow2_create, optionally on a backing
 * file that is opened first to validate it and learn its size and format) or a sparse raw file. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "common/util.h"
#include "img/img.h"

#define CMD "create"

void cmd_create_usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: berth-img create [-f FMT] [-b BACKING [-F FMT] [-u]] [-o OPTIONS] [-q] "
	    "[--json]\n"
	    "                        PATH [SIZE]\n\n"
	    "Create a disk image. It never overwrites: PATH must not exist.\n\n"
	    "  SIZE                 virtual size in bytes, or with a suffix K, M, G or T (powers "
	    "of\n"
	    "                       1024); rounded up to a multiple of 512. Optional with -b: the\n"
	    "                       backing file's virtual size.\n"
	    "  -f, --format FMT     qcow2 or raw (default: raw, or qcow2 with -b). raw is a "
	    "sparse\n"
	    "                       file; qcow2 is version 3 (compat 1.1) with 16-bit refcounts.\n"
	    "  -b, --backing FILE   qcow2 only: reads of unwritten clusters come from FILE. The "
	    "name\n"
	    "                       is stored as given; a relative name is relative to the new\n"
	    "                       image's directory. FILE is opened (with its own backing "
	    "chain)\n"
	    "                       to check it and to learn its size and format.\n"
	    "  -F, --backing-format FMT\n"
	    "                       raw or qcow2: the backing file's format, recorded in the "
	    "image\n"
	    "                       (default: detected from the file, and recorded)\n"
	    "  -u, --unsafe         do not open the backing file (needs -F and SIZE)\n"
	    "  -o OPTIONS           comma-separated qcow2 options: cluster_size=SIZE (512 to 2M, "
	    "a\n"
	    "                       power of two; default 64K)\n"
	    "  -q, --quiet          print nothing on success\n"
	    "      --json           print the new image's 'berth-img info --json' object\n"
	    "      --output FMT     human (default) or json\n"
	    "  -h, --help           show this help\n\n"
	    "Exit status: 0 created, 1 error (bad arguments, PATH exists, backing file "
	    "unusable).\n");
}

/* -o name=value[,name=value...] */
static int parse_options(char *s, unsigned *cluster_bits)
{
	for (char *save = NULL, *kv = strtok_r(s, ",", &save); kv;
	     kv = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(kv, '=');
		if (!eq) {
			img_err(CMD, "-o '%s': expected name=value", kv);
			return -1;
		}
		*eq = 0;
		const char *v = eq + 1;
		if (strcmp(kv, "cluster_size")) {
			img_err(CMD, "-o '%s': unknown option (known: cluster_size)", kv);
			return -1;
		}
		uint64_t cs;
		if (parse_size(v, &cs) || cs < 512 || cs > (2u << 20) || (cs & (cs - 1))) {
			img_err(CMD, "-o cluster_size '%s': must be a power of two from 512 to 2M",
				v);
			return -1;
		}
		*cluster_bits = (unsigned)__builtin_ctzll(cs);
	}
	return 0;
}

static int create_raw(const char *path, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		img_err(CMD, "'%s': %s", path, strerror(errno));
		return -1;
	}
	if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0) {
		img_err(CMD, "'%s': %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

/* Open the backing file as the new image will (relative to its directory, with its own chain):
 * it must exist and be readable; learn its format and, if size is not NULL, its virtual size. */
static int probe_backing(const char *path, const char *backing, enum blk_format *fmt,
			 uint64_t *size)
{
	char bpath[4096], msg[600];
	struct blk bb;
	if (img_backing_path(path, backing, bpath, sizeof(bpath))) {
		img_err(CMD, "-b '%s': path too long", backing);
		return -1;
	}
	if (blk_open(&bb, bpath, *fmt, true, false, msg, sizeof(msg))) {
		bool moved = strcmp(bpath, backing) != 0;
		img_err(CMD, "-b '%s'%s%s%s: cannot open the backing file: %s", backing,
			moved ? " (resolved to '" : "", moved ? bpath : "", moved ? "')" : "", msg);
		return -1;
	}
	*fmt = bb.drv == &blk_raw_driver ? BLK_FMT_RAW : BLK_FMT_QCOW2;
	if (size)
		*size = bb.size;
	blk_close(&bb);
	return 0;
}

/* qcow2 limits: the L1 table (at most 32 MiB) bounds the size; the backing file name, its format
 * extension and the header share the first cluster. */
static int check_fits(uint64_t size, uint64_t cs, const char *backing, enum blk_format bfmt)
{
	uint64_t max = (cs * (cs / 8)) * (QCOW2_MAX_L1_BYTES / 8);
	if (size > max) {
		char a[32], b[32];
		img_human_size(size, a, sizeof(a));
		img_human_size(max, b, sizeof(b));
		img_err(
		    CMD,
		    "SIZE %s is too large for cluster_size %llu (at most %s); use larger clusters",
		    a, (unsigned long long)cs, b);
		return -1;
	}
	if (!backing)
		return 0;
	size_t blen = strlen(backing), flen = strlen(blk_format_name(bfmt));
	uint64_t room = cs - QCOW2_V3_HEADER_LEN - 8 - ((flen + 7) & ~7ULL) - 8;
	if (room > QCOW2_MAX_BACKING_NAME)
		room = QCOW2_MAX_BACKING_NAME;
	if (blen > room) {
		img_err(CMD, "-b: the backing file name is %zu bytes; at most %llu fit%s", blen,
			(unsigned long long)room,
			room < QCOW2_MAX_BACKING_NAME
			    ? " in the header cluster (use larger clusters)"
			    : "");
		return -1;
	}
	return 0;
}

int cmd_create(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_OUTPUT };
	static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
					     {"backing", required_argument, NULL, 'b'},
					     {"backing-format", required_argument, NULL, 'F'},
					     {"unsafe", no_argument, NULL, 'u'},
					     {"quiet", no_argument, NULL, 'q'},
					     {"json", no_argument, NULL, OPT_JSON},
					     {"output", required_argument, NULL, OPT_OUTPUT},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	enum blk_format fmt = BLK_FMT_AUTO, bfmt = BLK_FMT_AUTO;
	const char *backing = NULL;
	bool unsafe = false, quiet = false, json = false;
	unsigned cluster_bits = 0;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:b:F:o:uqh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (img_parse_format(CMD, "-f", optarg, &fmt))
				return IMG_EXIT_ERROR;
			break;
		case 'b':
			if (!optarg[0]) {
				img_err(CMD, "-b: the backing file name is empty");
				return IMG_EXIT_ERROR;
			}
			backing = optarg;
			break;
		case 'F':
			if (img_parse_format(CMD, "-F", optarg, &bfmt))
				return IMG_EXIT_ERROR;
			break;
		case 'o':
			if (parse_options(optarg, &cluster_bits))
				return IMG_EXIT_ERROR;
			break;
		case 'u':
			unsafe = true;
			break;
		case 'q':
			quiet = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_OUTPUT:
			if (img_parse_output(CMD, optarg, &json))
				return IMG_EXIT_ERROR;
			break;
		case 'h':
			cmd_create_usage(stdout);
			return IMG_EXIT_OK;
		default:
			return img_opt_error(CMD, c, argv);
		}
	}
	const char *path = img_path_arg(CMD, argc, argv, optind, true);
	if (!path)
		return IMG_EXIT_ERROR;
	const char *size_arg = optind + 1 < argc ? argv[optind + 1] : NULL;
	if (optind + 2 < argc) {
		img_err(CMD, "unexpected argument '%s' after SIZE", argv[optind + 2]);
		return IMG_EXIT_ERROR;
	}
	if (fmt == BLK_FMT_AUTO)
		fmt = backing ? BLK_FMT_QCOW2 : BLK_FMT_RAW;
	if (fmt == BLK_FMT_RAW && (backing || cluster_bits)) {
		img_err(CMD, "%s: raw images have no %s; use -f qcow2", backing ? "-b" : "-o",
			backing ? "backing file" : "options");
		return IMG_EXIT_ERROR;
	}
	if (!backing && (bfmt != BLK_FMT_AUTO || unsafe)) {
		img_err(CMD, "%s needs -b", unsafe ? "-u" : "-F");
		return IMG_EXIT_ERROR;
	}
	uint64_t size = 0;
	if (size_arg) {
		int r = parse_size(size_arg, &size);
		if (r || size > (1ULL << 62)) {
			img_err(
			    CMD, "SIZE '%s': %s", size_arg,
			    r == -ERANGE || size > (1ULL << 62)
				? "too large"
				: "not a size (a number of bytes, or with a suffix K, M, G or T)");
			return IMG_EXIT_ERROR;
		}
	} else if (!backing || unsafe) {
		img_err(CMD, "SIZE is missing (it is optional only with -b, without -u)");
		return IMG_EXIT_ERROR;
	}
	if (unsafe && bfmt == BLK_FMT_AUTO) {
		img_err(CMD,
			"-u needs -F: the backing file is not opened, so its format is unknown");
		return IMG_EXIT_ERROR;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		img_err(CMD, "'%s' already exists; berth-img never overwrites an image", path);
		return IMG_EXIT_ERROR;
	}

	if (backing && !unsafe && probe_backing(path, backing, &bfmt, size_arg ? NULL : &size))
		return IMG_EXIT_ERROR;
	size = (size + 511) & ~511ULL;
	uint64_t cs = 1ULL << (cluster_bits ? cluster_bits : 16);
	if (fmt == BLK_FMT_QCOW2 && check_fits(size, cs, backing, bfmt))
		return IMG_EXIT_ERROR;

	char msg[600];
	if (fmt == BLK_FMT_QCOW2) {
		struct qcow2_create_opts o = {.size = size,
					      .cluster_bits = cluster_bits,
					      .backing = backing,
					      .backing_fmt =
						  backing ? blk_format_name(bfmt) : NULL};
		if (qcow2_create(path, &o, msg, sizeof(msg))) {
			img_err(CMD, "%s", msg);
			return IMG_EXIT_ERROR;
		}
	} else if (create_raw(path, size)) {
		return IMG_EXIT_ERROR;
	}

	if (json) {
		json_t *o = img_info_json(path, fmt, msg, sizeof(msg));
		if (!o || img_print_json(o)) {
			img_err(CMD, "created, but cannot describe it: %s", o ? "JSON" : msg);
			return IMG_EXIT_ERROR;
		}
	} else if (!quiet) {
		char hs[32];
		img_human_size(size, hs, sizeof(hs));
		printf("Created '%s': %s, virtual size %s (%llu bytes)", path, blk_format_name(fmt),
		       hs, (unsigned long long)size);
		if (fmt == BLK_FMT_QCOW2)
			printf(", cluster size %llu", (unsigned long long)cs);
		if (backing)
			printf(", backing file '%s' (%s)", backing, blk_format_name(bfmt));
		printf("\n");
	}
	return IMG_EXIT_OK;
}
