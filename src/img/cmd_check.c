/* berth-img check: run the read-only qcow2 consistency check (check.c) and report it, human or
 * JSON, with qemu-img check's exit statuses. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <string.h>
#include <unistd.h>

#include "img/check.h"
#include "img/img.h"

#define CMD "check"
#define MAX_MESSAGES 1000

void cmd_check_usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: berth-img check [-f FMT] [-q] [--json | --output=FMT] PATH\n\n"
	    "Check a qcow2 image's metadata without changing it: every cluster's references\n"
	    "(header, L1 and L2 tables, data, refcount table and blocks, snapshots, bitmaps) are\n"
	    "counted from the tables and compared with the stored refcounts; COPIED flags, "
	    "offsets\n"
	    "(alignment, end of file) and overlapping metadata are checked too. Each problem is "
	    "one\n"
	    "line on stderr (at most %d); the summary goes to stdout.\n\n"
	    "  -f, --format FMT   raw, qcow2 or auto (default: auto, from the file's contents)\n"
	    "  -q, --quiet        no per-problem lines\n"
	    "      --json         JSON summary (same keys as qemu-img check --output=json)\n"
	    "      --output FMT   human (default) or json\n"
	    "  -h, --help         show this help\n\n"
	    "Raw images have no metadata: the check reports that and exits 0.\n\n"
	    "Exit status (as qemu-img check):\n"
	    "  0  no problems found (or a raw image)\n"
	    "  1  the check could not complete: bad arguments, unreadable or invalid image, or\n"
	    "     parts that could not be checked (check-errors)\n"
	    "  2  corruptions found (refcount below references, offsets past the end of the file\n"
	    "     or unaligned, overlapping metadata, wrong COPIED flags, reserved bits set)\n"
	    "  3  leaked clusters found (refcount above references), no corruptions\n",
	    MAX_MESSAGES);
}

struct sink {
	bool quiet;
	unsigned printed, dropped;
};

static void report(void *ctx, enum check_msg kind, const char *text)
{
	struct sink *s = ctx;
	if (s->quiet)
		return;
	if (s->printed >= MAX_MESSAGES) {
		s->dropped++;
		return;
	}
	s->printed++;
	fprintf(stderr, "%s: %s\n",
		kind == CHECK_CORRUPTION ? "corruption"
		: kind == CHECK_LEAK	 ? "leak"
					 : "check error",
		text);
}

static int status_of(const struct check_result *r, bool complete)
{
	if (!complete || r->check_errors)
		return IMG_EXIT_ERROR;
	if (r->corruptions)
		return IMG_EXIT_CORRUPT;
	return r->leaks ? IMG_EXIT_LEAKS : IMG_EXIT_OK;
}

static double pct(uint64_t a, uint64_t b)
{
	return b ? 100.0 * (double)a / (double)b : 0.0;
}

static void print_human(const struct check_result *r, bool complete)
{
	if (!r->corruptions && !r->leaks && !r->check_errors && complete)
		printf("No errors were found on the image.\n");
	if (r->corruptions)
		printf(
		    "\n%llu errors were found on the image.\n"
		    "Data may be corrupted, and writing to the image may corrupt more: repair it "
		    "first.\n",
		    (unsigned long long)r->corruptions);
	if (r->leaks)
		printf("\n%llu leaked clusters were found on the image.\n"
		       "They waste space in the file but do not harm its data.\n",
		       (unsigned long long)r->leaks);
	if (r->check_errors || !complete)
		printf("\nThe check could not complete: %llu internal error%s occurred.\n",
		       (unsigned long long)r->check_errors, r->check_errors == 1 ? "" : "s");
	if (r->total_clusters)
		printf("%llu/%llu = %.2f%% allocated, %.2f%% fragmented, %.2f%% compressed "
		       "clusters\n",
		       (unsigned long long)r->allocated_clusters,
		       (unsigned long long)r->total_clusters,
		       pct(r->allocated_clusters, r->total_clusters),
		       pct(r->fragmented_clusters, r->allocated_clusters),
		       pct(r->compressed_clusters, r->allocated_clusters));
	if (complete)
		printf("Image end offset: %llu\n", (unsigned long long)r->image_end_offset);
}

static json_t *result_json(const char *path, const struct check_result *r, bool complete,
			   const struct qm_header *h)
{
	json_t *o = json_object();
	json_object_set_new(o, "filename", json_string(path));
	json_object_set_new(o, "format", json_string("qcow2"));
	json_object_set_new(o, "check-errors", json_integer((json_int_t)r->check_errors));
	json_object_set_new(o, "corruptions", json_integer((json_int_t)r->corruptions));
	json_object_set_new(o, "leaks", json_integer((json_int_t)r->leaks));
	if (complete)
		json_object_set_new(o, "image-end-offset",
				    json_integer((json_int_t)r->image_end_offset));
	json_object_set_new(o, "total-clusters", json_integer((json_int_t)r->total_clusters));
	json_object_set_new(o, "allocated-clusters",
			    json_integer((json_int_t)r->allocated_clusters));
	json_object_set_new(o, "fragmented-clusters",
			    json_integer((json_int_t)r->fragmented_clusters));
	json_object_set_new(o, "compressed-clusters",
			    json_integer((json_int_t)r->compressed_clusters));
	json_object_set_new(o, "complete", json_boolean(complete));
	json_object_set_new(o, "dirty-flag", json_boolean(h->incompat & QCOW2_INCOMPAT_DIRTY));
	json_object_set_new(o, "corrupt-flag", json_boolean(h->incompat & QCOW2_INCOMPAT_CORRUPT));
	return o;
}

static int check_raw(const char *path, bool json)
{
	if (json) {
		json_t *o = json_object();
		json_object_set_new(o, "filename", json_string(path));
		json_object_set_new(o, "format", json_string("raw"));
		json_object_set_new(o, "supported", json_false());
		json_object_set_new(o, "check-errors", json_integer(0));
		json_object_set_new(o, "corruptions", json_integer(0));
		json_object_set_new(o, "leaks", json_integer(0));
		img_print_json(o);
	} else {
		printf(
		    "check is not supported for raw images: a raw file has no metadata that could "
		    "be inconsistent.\n");
	}
	return IMG_EXIT_OK;
}

int cmd_check(int argc, char **argv)
{
	enum { OPT_JSON = 256, OPT_OUTPUT };
	static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
					     {"quiet", no_argument, NULL, 'q'},
					     {"json", no_argument, NULL, OPT_JSON},
					     {"output", required_argument, NULL, OPT_OUTPUT},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	enum blk_format fmt = BLK_FMT_AUTO;
	bool json = false;
	struct sink sink = {0};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:qh", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (img_parse_format(CMD, "-f", optarg, &fmt))
				return IMG_EXIT_ERROR;
			break;
		case 'q':
			sink.quiet = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_OUTPUT:
			if (img_parse_output(CMD, optarg, &json))
				return IMG_EXIT_ERROR;
			break;
		case 'h':
			cmd_check_usage(stdout);
			return IMG_EXIT_OK;
		default:
			return img_opt_error(CMD, c, argv);
		}
	}
	const char *path = img_path_arg(CMD, argc, argv, optind, false);
	if (!path)
		return IMG_EXIT_ERROR;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		img_err(CMD, "'%s': %s", path, strerror(errno));
		return IMG_EXIT_ERROR;
	}
	int r = fmt == BLK_FMT_AUTO ? img_probe(fd, &fmt) : 0;
	if (r) {
		img_err(CMD, "'%s': cannot read: %s", path, strerror(-r));
		close(fd);
		return IMG_EXIT_ERROR;
	}
	if (fmt == BLK_FMT_RAW) {
		close(fd);
		return check_raw(path, json);
	}
	struct qm_header *h = malloc(sizeof(*h));
	char msg[600];
	if (!h || qm_read_header(fd, h, msg, sizeof(msg))) {
		img_err(CMD, "'%s': qcow2: %s", path, h ? msg : "out of memory");
		free(h);
		close(fd);
		return IMG_EXIT_ERROR;
	}
	if (!sink.quiet && (h->incompat & QCOW2_INCOMPAT_DIRTY))
		fprintf(stderr,
			"note: '%s' is marked dirty (lazy refcounts were not written back): "
			"refcount mismatches are expected until it is repaired\n",
			path);
	if (!sink.quiet && (h->incompat & QCOW2_INCOMPAT_CORRUPT))
		fprintf(stderr, "note: '%s' is marked corrupt\n", path);
	struct check_result res;
	bool complete = qcow2_check(fd, h, &res, report, &sink) == 0;
	close(fd);
	if (sink.dropped)
		fprintf(stderr, "(%u more problems not shown; the counts include them)\n",
			sink.dropped);
	if (json)
		img_print_json(result_json(path, &res, complete, h));
	else
		print_human(&res, complete);
	free(h);
	return status_of(&res, complete);
}
