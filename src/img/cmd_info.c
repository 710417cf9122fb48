/* berth-img info: format, sizes, cluster size, version, refcount width, backing file and chain,
 * feature bits, dirty/corrupt marks, snapshots and bitmaps of an image; human or JSON. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "img/img.h"
#include "img/qmeta.h"

#define CMD "info"

void cmd_info_usage(FILE *f)
{
	fprintf(
	    f,
	    "Usage: berth-img info [-f FMT] [--backing-chain] [--json | --output=FMT] PATH\n\n"
	    "Show what an image is: format, virtual size, space used on disk, and for qcow2 the\n"
	    "cluster size, version (compat), refcount width, backing file and its format,\n"
	    "feature bits, whether it is marked dirty or corrupt, snapshots and bitmaps.\n\n"
	    "  -f, --format FMT     raw, qcow2 or auto (default: auto, from the file's contents)\n"
	    "      --backing-chain  show every image of the backing chain, top first\n"
	    "      --json           JSON output (same keys as qemu-img info --output=json)\n"
	    "      --output FMT     human (default) or json\n"
	    "  -h, --help           show this help\n\n"
	    "Exit status: 0 shown, 1 error (bad arguments, unreadable or invalid image).\n");
}

static json_t *feature_list(const struct qm_header *h, enum qm_feature_type type, uint64_t mask)
{
	json_t *a = json_array();
	for (unsigned bit = 0; bit < 64; bit++) {
		if (!(mask & (1ULL << bit)))
			continue;
		const char *name = qm_feature_name(h, type, bit);
		char buf[32];
		if (!name) {
			snprintf(buf, sizeof(buf), "bit %u", bit);
			name = buf;
		}
		json_array_append_new(a, json_string(name));
	}
	return a;
}

static json_t *snapshots_json(int fd, const struct qm_header *h, char *msg, size_t msglen)
{
	struct qm_snapshot *s;
	uint64_t bytes;
	if (qm_read_snapshots(fd, h, &s, &bytes, msg, msglen))
		return NULL;
	json_t *a = json_array();
	for (uint32_t i = 0; i < h->nb_snapshots; i++) {
		json_t *o = json_object();
		json_object_set_new(o, "id", json_string(s[i].id));
		json_object_set_new(o, "name", json_string(s[i].name));
		json_object_set_new(o, "vm-state-size",
				    json_integer((json_int_t)s[i].vm_state_size));
		json_object_set_new(o, "date-sec", json_integer(s[i].date_sec));
		json_object_set_new(o, "date-nsec", json_integer(s[i].date_nsec));
		json_object_set_new(o, "vm-clock-sec",
				    json_integer((json_int_t)(s[i].vm_clock_nsec / 1000000000)));
		json_object_set_new(o, "vm-clock-nsec",
				    json_integer((json_int_t)(s[i].vm_clock_nsec % 1000000000)));
		if (s[i].icount != UINT64_MAX)
			json_object_set_new(o, "icount", json_integer((json_int_t)s[i].icount));
		json_array_append_new(a, o);
	}
	qm_free_snapshots(s, h->nb_snapshots);
	return a;
}

static json_t *bitmaps_json(int fd, const struct qm_header *h, char *msg, size_t msglen)
{
	struct qm_bitmap *b;
	if (qm_read_bitmaps(fd, h, &b, msg, msglen))
		return NULL;
	json_t *a = json_array();
	for (uint32_t i = 0; i < h->nb_bitmaps; i++) {
		json_t *o = json_object(), *flags = json_array();
		if (b[i].flags & 1)
			json_array_append_new(flags, json_string("in-use"));
		if (b[i].flags & 2)
			json_array_append_new(flags, json_string("auto"));
		json_object_set_new(o, "flags", flags);
		json_object_set_new(o, "name", json_string(b[i].name));
		json_object_set_new(
		    o, "granularity",
		    json_integer((json_int_t)(1ULL << (b[i].granularity_bits & 63))));
		json_array_append_new(a, o);
	}
	qm_free_bitmaps(b, h->nb_bitmaps);
	return a;
}

static int qcow2_fields(json_t *o, int fd, const char *path, char *msg, size_t msglen)
{
	struct qm_header *h = malloc(sizeof(*h));
	int r = h ? qm_read_header(fd, h, msg, msglen) : -ENOMEM;
	if (r) {
		if (!h)
			snprintf(msg, msglen, "out of memory");
		free(h);
		return r;
	}
	json_object_set_new(o, "virtual-size", json_integer((json_int_t)h->size));
	json_object_set_new(o, "cluster-size", json_integer((json_int_t)h->cluster_size));
	json_object_set_new(o, "dirty-flag", json_boolean(h->incompat & QCOW2_INCOMPAT_DIRTY));
	if (h->crypt_method)
		json_object_set_new(o, "encrypted", json_true());
	if (h->has_backing) {
		char full[4096];
		if (img_backing_path(path, h->backing, full, sizeof(full))) {
			snprintf(msg, msglen, "backing file path too long");
			free(h);
			return -ENAMETOOLONG;
		}
		json_object_set_new(o, "backing-filename", json_string(h->backing));
		json_object_set_new(o, "full-backing-filename", json_string(full));
		if (h->backing_fmt[0])
			json_object_set_new(o, "backing-filename-format",
					    json_string(h->backing_fmt));
	}
	if (h->nb_snapshots) {
		json_t *s = snapshots_json(fd, h, msg, msglen);
		if (!s) {
			free(h);
			return -EINVAL;
		}
		json_object_set_new(o, "snapshots", s);
	}
	json_t *d = json_object();
	json_object_set_new(d, "compat", json_string(qm_compat_name(h)));
	json_object_set_new(d, "compression-type",
			    json_string(h->compression_type == 1   ? "zstd"
					: h->compression_type == 0 ? "zlib"
								   : "unknown"));
	if (h->version >= 3)
		json_object_set_new(d, "lazy-refcounts",
				    json_boolean(h->compat & QCOW2_COMPAT_LAZY_REFCOUNTS));
	if (h->has_bitmaps && (h->autoclear & QCOW2_AUTOCLEAR_BITMAPS)) {
		json_t *b = bitmaps_json(fd, h, msg, msglen);
		if (!b) {
			json_decref(d);
			free(h);
			return -EINVAL;
		}
		json_object_set_new(d, "bitmaps", b);
	}
	json_object_set_new(d, "refcount-bits", json_integer(1 << h->refcount_order));
	if (h->version >= 3) {
		json_object_set_new(d, "corrupt",
				    json_boolean(h->incompat & QCOW2_INCOMPAT_CORRUPT));
		json_object_set_new(d, "extended-l2",
				    json_boolean(h->incompat & QCOW2_INCOMPAT_EXTL2));
	}
	if (h->data_file[0])
		json_object_set_new(d, "data-file", json_string(h->data_file));
	/* berth's additions */
	json_object_set_new(d, "version", json_integer(h->version));
	json_object_set_new(d, "header-length", json_integer(h->header_length));
	json_object_set_new(d, "l1-size", json_integer(h->l1_size));
	json_object_set_new(d, "snapshot-count", json_integer(h->nb_snapshots));
	json_object_set_new(d, "incompatible-features", feature_list(h, QM_INCOMPAT, h->incompat));
	json_object_set_new(d, "compatible-features", feature_list(h, QM_COMPAT, h->compat));
	json_object_set_new(d, "autoclear-features", feature_list(h, QM_AUTOCLEAR, h->autoclear));
	if (h->has_bitmaps && !(h->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		json_object_set_new(d, "bitmaps-inconsistent", json_true());
	json_t *fs = json_object();
	json_object_set_new(fs, "type", json_string("qcow2"));
	json_object_set_new(fs, "data", d);
	json_object_set_new(o, "format-specific", fs);
	free(h);
	return 0;
}

json_t *img_info_json(const char *path, enum blk_format fmt, char *msg, size_t msglen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st = {0};
	if (fd < 0) {
		snprintf(msg, msglen, "'%s': %s", path, strerror(errno));
		return NULL;
	}
	const char *why = NULL;
	if (fstat(fd, &st) < 0)
		why = strerror(errno);
	else if (S_ISDIR(st.st_mode))
		why = "is a directory";
	else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		why = "not a regular file or block device";
	if (why) {
		snprintf(msg, msglen, "'%s': %s", path, why);
		close(fd);
		return NULL;
	}
	uint64_t length = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(fd, 0, SEEK_END);
		length = end > 0 ? (uint64_t)end : 0;
	}
	int r = fmt == BLK_FMT_AUTO ? img_probe(fd, &fmt) : 0;
	if (r) {
		snprintf(msg, msglen, "'%s': cannot read: %s", path, strerror(-r));
		close(fd);
		return NULL;
	}
	json_t *o = json_object();
	json_object_set_new(o, "filename", json_string(path));
	json_object_set_new(o, "format", json_string(blk_format_name(fmt)));
	json_object_set_new(o, "actual-size", json_integer((json_int_t)st.st_blocks * 512));
	json_object_set_new(o, "file-length", json_integer((json_int_t)length));
	if (fmt == BLK_FMT_QCOW2) {
		char sub[400];
		if (qcow2_fields(o, fd, path, sub, sizeof(sub))) {
			snprintf(msg, msglen, "'%s': qcow2: %s", path, sub);
			json_decref(o);
			o = NULL;
		}
	} else {
		json_object_set_new(o, "virtual-size", json_integer((json_int_t)length));
		json_object_set_new(o, "dirty-flag", json_false());
	}
	close(fd);
	return o;
}

/* ---- human output ---- */

static const char *str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

static uint64_t num(json_t *o, const char *key)
{
	return (uint64_t)json_integer_value(json_object_get(o, key));
}

static void print_list(const char *label, json_t *a)
{
	size_t i;
	printf("%s: ", label);
	if (!json_array_size(a))
		printf("none");
	for (i = 0; i < json_array_size(a); i++)
		printf("%s%s", i ? ", " : "", json_string_value(json_array_get(a, i)));
	printf("\n");
}

static void print_human(json_t *o)
{
	char a[32], b[32];
	img_human_size(num(o, "virtual-size"), a, sizeof(a));
	img_human_size(num(o, "actual-size"), b, sizeof(b));
	printf("image: %s\nfile format: %s\n", str(o, "filename"), str(o, "format"));
	printf("virtual size: %s (%llu bytes)\n", a, (unsigned long long)num(o, "virtual-size"));
	printf("disk size: %s (file length %llu bytes)\n", b,
	       (unsigned long long)num(o, "file-length"));
	json_t *d = json_object_get(json_object_get(o, "format-specific"), "data");
	if (!d)
		return;
	printf("cluster size: %llu\n", (unsigned long long)num(o, "cluster-size"));
	if (str(o, "backing-filename")) {
		printf("backing file: %s (actual path: %s)\n", str(o, "backing-filename"),
		       str(o, "full-backing-filename"));
		printf("backing file format: %s\n", str(o, "backing-filename-format")
							? str(o, "backing-filename-format")
							: "not recorded (probed when opened)");
	}
	printf("qcow2 version: %llu (compat %s)\n", (unsigned long long)num(d, "version"),
	       str(d, "compat"));
	printf("refcount bits: %llu\n", (unsigned long long)num(d, "refcount-bits"));
	printf("compression type: %s\n", str(d, "compression-type"));
	if (str(d, "data-file"))
		printf("data file: %s\n", str(d, "data-file"));
	print_list("incompatible features", json_object_get(d, "incompatible-features"));
	print_list("compatible features", json_object_get(d, "compatible-features"));
	print_list("autoclear features", json_object_get(d, "autoclear-features"));
	printf("dirty: %s\n", json_is_true(json_object_get(o, "dirty-flag")) ? "yes" : "no");
	printf("corrupt: %s\n", json_is_true(json_object_get(d, "corrupt")) ? "yes" : "no");
	if (json_is_true(json_object_get(o, "encrypted")))
		printf("encrypted: yes\n");
	json_t *snaps = json_object_get(o, "snapshots"), *v;
	size_t i;
	if (json_array_size(snaps)) {
		printf("snapshots:\n  %-8s %-20s %12s %-19s %s\n", "ID", "TAG", "VM SIZE", "DATE",
		       "VM CLOCK");
		for (i = 0; i < json_array_size(snaps); i++) {
			v = json_array_get(snaps, i);
			time_t t = (time_t)num(v, "date-sec");
			struct tm tm;
			char date[32], vms[32];
			strftime(date, sizeof(date), "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
			img_human_size(num(v, "vm-state-size"), vms, sizeof(vms));
			uint64_t s = num(v, "vm-clock-sec");
			printf("  %-8s %-20s %12s %-19s %02llu:%02llu:%02llu.%03llu\n",
			       str(v, "id"), str(v, "name"), vms, date,
			       (unsigned long long)(s / 3600), (unsigned long long)(s / 60 % 60),
			       (unsigned long long)(s % 60),
			       (unsigned long long)(num(v, "vm-clock-nsec") / 1000000));
		}
	}
	json_t *bms = json_object_get(d, "bitmaps");
	if (json_array_size(bms)) {
		printf("bitmaps:\n");
		for (i = 0; i < json_array_size(bms); i++) {
			v = json_array_get(bms, i);
			json_t *flags = json_object_get(v, "flags");
			size_t j;
			printf("  %s (granularity %llu, flags:", str(v, "name"),
			       (unsigned long long)num(v, "granularity"));
			if (!json_array_size(flags))
				printf(" none");
			for (j = 0; j < json_array_size(flags); j++)
				printf(" %s", json_string_value(json_array_get(flags, j)));
			printf(")\n");
		}
	}
	if (json_is_true(json_object_get(d, "bitmaps-inconsistent")))
		printf("bitmaps: inconsistent (the autoclear bit is clear; their data is stale)\n");
}

/* ---- the subcommand ---- */

int cmd_info(int argc, char **argv)
{
	enum { OPT_CHAIN = 256, OPT_JSON, OPT_OUTPUT };
	static const struct option opts[] = {{"format", required_argument, NULL, 'f'},
					     {"backing-chain", no_argument, NULL, OPT_CHAIN},
					     {"json", no_argument, NULL, OPT_JSON},
					     {"output", required_argument, NULL, OPT_OUTPUT},
					     {"help", no_argument, NULL, 'h'},
					     {NULL, 0, NULL, 0}};
	enum blk_format fmt = BLK_FMT_AUTO;
	bool json = false, chain = false;
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":f:h", opts, NULL)) != -1) {
		switch (c) {
		case 'f':
			if (img_parse_format(CMD, "-f", optarg, &fmt))
				return IMG_EXIT_ERROR;
			break;
		case OPT_CHAIN:
			chain = true;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_OUTPUT:
			if (img_parse_output(CMD, optarg, &json))
				return IMG_EXIT_ERROR;
			break;
		case 'h':
			cmd_info_usage(stdout);
			return IMG_EXIT_OK;
		default:
			return img_opt_error(CMD, c, argv);
		}
	}
	const char *first = img_path_arg(CMD, argc, argv, optind, false);
	if (!first)
		return IMG_EXIT_ERROR;
	char msg[600], path[4096];
	json_t *all = json_array();
	struct {
		dev_t dev;
		ino_t ino;
	} seen[BLK_CHAIN_MAX];
	unsigned depth = 0;
	int status = IMG_EXIT_OK;
	snprintf(path, sizeof(path), "%s", first);
	for (;;) {
		struct stat st;
		json_t *o = img_info_json(path, fmt, msg, sizeof(msg));
		if (!o) {
			if (depth)
				img_err(CMD, "backing file of '%s': %s",
					str(json_array_get(all, depth - 1), "filename"), msg);
			else
				img_err(CMD, "%s", msg);
			status = IMG_EXIT_ERROR;
			break;
		}
		json_array_append_new(all, o);
		if (stat(path, &st) == 0) {
			for (unsigned i = 0; i < depth; i++)
				if (seen[i].dev == st.st_dev && seen[i].ino == st.st_ino) {
					img_err(CMD,
						"'%s': the backing chain loops back to this file",
						path);
					status = IMG_EXIT_ERROR;
				}
			seen[depth].dev = st.st_dev;
			seen[depth].ino = st.st_ino;
		}
		depth++;
		const char *next = str(o, "full-backing-filename");
		if (status || !chain || !next)
			break;
		if (depth >= BLK_CHAIN_MAX) {
			img_err(CMD, "'%s': backing chain deeper than %u images", argv[optind],
				BLK_CHAIN_MAX);
			status = IMG_EXIT_ERROR;
			break;
		}
		fmt = BLK_FMT_AUTO;
		const char *bf = str(o, "backing-filename-format");
		if (bf && blk_format_parse(bf, &fmt)) {
			img_err(CMD, "'%s': backing format '%s' is not supported", path, bf);
			status = IMG_EXIT_ERROR;
			break;
		}
		snprintf(path, sizeof(path), "%s", next);
	}
	if (status) {
		json_decref(all);
		return status;
	}
	if (json) {
		if (img_print_json(chain ? all : json_incref(json_array_get(all, 0)))) {
			img_err(CMD, "cannot encode the JSON output");
			status = IMG_EXIT_ERROR;
		}
		if (!chain)
			json_decref(all);
		return status;
	}
	size_t i;
	json_t *v;
	for (i = 0; i < json_array_size(all); i++) {
		v = json_array_get(all, i);
		if (i)
			printf("\n");
		print_human(v);
	}
	json_decref(all);
	return IMG_EXIT_OK;
}
