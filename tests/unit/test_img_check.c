/* Unit tests for berth-img's qcow2 reader and checker: images made by qcow2_create and patched
 * byte by byte; header validation; sizes and backing paths. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>

#include "block/qcow2.h"
#include "common/util.h"
#include "img/check.h"
#include "img/img.h"
#include "img/qmeta.h"

#define CS 4096ULL

struct img {
	char path[64];
	int fd;
	struct qm_header h;
	struct check_result res;
	char log[8192];
};

static void collect(void *ctx, enum check_msg kind, const char *text)
{
	struct img *m = ctx;
	size_t n = strlen(m->log);
	snprintf(m->log + n, sizeof(m->log) - n, "%d %s\n", kind, text);
}

/* A 1 MiB image with 4 KiB clusters: header 0, reftable 1, refblock 2, L1 3. */
static void make(struct img *m, const char *backing)
{
	char msg[256];
	memset(m, 0, sizeof(*m));
	strcpy(m->path, "/tmp/berth-unit-img-XXXXXX");
	int fd = mkstemp(m->path);
	assert_true(fd >= 0);
	close(fd);
	unlink(m->path);
	struct qcow2_create_opts o = {.size = 1 << 20,
				      .cluster_bits = 12,
				      .backing = backing,
				      .backing_fmt = backing ? "raw" : NULL};
	assert_int_equal(qcow2_create(m->path, &o, msg, sizeof(msg)), 0);
	m->fd = open(m->path, O_RDWR);
	assert_true(m->fd >= 0);
}

static void put64(struct img *m, uint64_t off, uint64_t v)
{
	uint8_t b[8];
	be64_put(b, v);
	assert_int_equal(pwrite(m->fd, b, 8, (off_t)off), 8);
}

static void put16(struct img *m, uint64_t off, uint16_t v)
{
	uint8_t b[2];
	be16_put(b, v);
	assert_int_equal(pwrite(m->fd, b, 2, (off_t)off), 2);
}

/* Add an L2 table at cluster 4 mapping guest clusters 0..n-1 to clusters 5.., refcounts 1. */
static void add_data(struct img *m, unsigned n)
{
	assert_int_equal(ftruncate(m->fd, (off_t)((5 + n) * CS)), 0);
	put64(m, 3 * CS, QCOW2_OFLAG_COPIED | 4 * CS);
	for (unsigned i = 0; i < n; i++)
		put64(m, 4 * CS + 8 * i, QCOW2_OFLAG_COPIED | (5 + i) * CS);
	for (unsigned c = 4; c < 5 + n; c++)
		put16(m, 2 * CS + 2 * c, 1);
}

static int run(struct img *m)
{
	char msg[256];
	assert_int_equal(qm_read_header(m->fd, &m->h, msg, sizeof(msg)), 0);
	return qcow2_check(m->fd, &m->h, &m->res, collect, m);
}

static void done(struct img *m)
{
	close(m->fd);
	unlink(m->path);
}

static void test_created_image_is_clean(void **state)
{
	(void)state;
	struct img m;
	make(&m, "base.raw");
	assert_int_equal(run(&m), 0);
	assert_string_equal(m.log, "");
	assert_int_equal(m.res.corruptions + m.res.leaks + m.res.check_errors, 0);
	assert_int_equal(m.res.total_clusters, 256);
	assert_int_equal(m.res.image_end_offset, 4 * CS);
	assert_string_equal(m.h.backing, "base.raw");
	assert_string_equal(m.h.backing_fmt, "raw");
	assert_int_equal(m.h.version, 3);
	done(&m);
}

static void test_data_counts(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	add_data(&m, 3);
	assert_int_equal(run(&m), 0);
	assert_string_equal(m.log, "");
	assert_int_equal(m.res.allocated_clusters, 3);
	assert_int_equal(m.res.fragmented_clusters, 0);
	assert_int_equal(m.res.image_end_offset, 8 * CS);
	done(&m);
}

static void test_leak(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	add_data(&m, 2);
	put64(&m, 4 * CS + 8, 0); /* guest cluster 1 unmapped: cluster 6 leaks */
	assert_int_equal(run(&m), 0);
	assert_int_equal(m.res.leaks, 1);
	assert_int_equal(m.res.corruptions, 0);
	assert_contains(m.log, "1 cluster 6 (offset 0x6000): refcount 1 but 0 reference(s)");
	done(&m);
}

static void test_refcount_zero_and_copied(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	add_data(&m, 2);
	put16(&m, 2 * CS + 2 * 5, 0);
	assert_int_equal(run(&m), 0);
	assert_int_equal(m.res.corruptions, 2); /* refcount < references, and COPIED is wrong */
	assert_contains(m.log, "refcount 0 is lower than its 1 reference(s)");
	assert_contains(m.log, "the COPIED flag is set but the refcount of cluster 5 is 0");
	done(&m);
}

static void test_overlap_and_past_eof(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	add_data(&m, 2);
	put64(&m, 4 * CS + 8, QCOW2_OFLAG_COPIED | 1 * CS); /* data in the refcount table */
	put64(&m, 4 * CS + 16, QCOW2_OFLAG_COPIED | 99 * CS);
	assert_int_equal(run(&m), 0);
	assert_contains(m.log, "overlap: used as data and refcount table");
	assert_contains(m.log,
			"guest offset 0x2000 at offset 0x63000 (4096 bytes) lies past the end");
	assert_int_equal(m.res.leaks, 1); /* cluster 6 */
	assert_int_equal(m.res.corruptions, 3);
	done(&m);
}

static void test_overlap_hidden_by_raised_refcount(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	add_data(&m, 1);
	put64(&m, 4 * CS + 8, 3 * CS); /* data in the L1 table... */
	put16(&m, 2 * CS + 2 * 3, 2);  /* ...with a refcount that makes the counts match */
	assert_int_equal(run(&m), 0);
	assert_contains(m.log,
			"cluster 3 (offset 0x3000): metadata overlap (overlap: used as L1 table "
			"and data)");
	assert_int_equal(m.res.corruptions, 1);
	done(&m);
}

static void test_unusable_refblock_is_incomplete(void **state)
{
	(void)state;
	struct img m;
	make(&m, NULL);
	put64(&m, 1 * CS, 2 * CS + 512);
	assert_int_equal(run(&m), 0);
	assert_int_equal(m.res.check_errors, 4); /* the refcounts of clusters 0..3 are unknown */
	assert_contains(m.log, "is not cluster-aligned");
	done(&m);
}

static void test_header_validation(void **state)
{
	(void)state;
	static const struct {
		uint64_t off;
		unsigned len;
		uint64_t val;
		const char *msg;
	} bad[] = {
	    {0, 4, 0x12345678, "not a qcow2 image"},
	    {4, 4, 4, "version 4 is not supported"},
	    {20, 4, 8, "cluster_bits 8"},
	    {36, 4, 0, "l1_size 0 is too small"},
	    {40, 8, 3 * CS + 8, "L1 table offset 0x3008"},
	    {48, 8, 0, "refcount table"},
	    {56, 4, 0, "refcount table"},
	    {96, 4, 9, "refcount_order 9"},
	    {100, 4, 108, "header_length 108"},
	    {32, 4, 3, "crypt_method 3"},
	    {60, 4, 1, "snapshot table (1 snapshots at 0x0)"},
	    {8, 8, 5000, "backing file name (offset 5000"},
	    {104, 4, 0x6803f857, "not terminated"}, /* an extension spanning the rest */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct img m;
		char msg[256] = "";
		make(&m, "b");
		if (bad[i].off == 104)
			put64(&m, 104, 0x6803f85700000000ULL | (CS - 104 - 8));
		else if (bad[i].len == 8)
			put64(&m, bad[i].off, bad[i].val);
		else {
			uint8_t b[4];
			be32_put(b, (uint32_t)bad[i].val);
			assert_int_equal(pwrite(m.fd, b, 4, (off_t)bad[i].off), 4);
		}
		int r = qm_read_header(m.fd, &m.h, msg, sizeof(msg));
		if (r != -EINVAL || !strstr(msg, bad[i].msg))
			fail_msg("case %zu: %d '%s', expected '%s'", i, r, msg, bad[i].msg);
		done(&m);
	}
}

static void test_human_size_and_paths(void **state)
{
	(void)state;
	static const struct {
		uint64_t v;
		const char *s;
	} sizes[] = {{0, "0 B"},	  {1023, "1023 B"},	 {1024, "1 KiB"},
		     {1536, "1.5 KiB"},	  {64 << 20, "64 MiB"},	 {1310720, "1.25 MiB"},
		     {200704, "196 KiB"}, {3ULL << 40, "3 TiB"}, {1000448, "977 KiB"}};
	char buf[32];
	for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
		img_human_size(sizes[i].v, buf, sizeof(buf));
		assert_string_equal(buf, sizes[i].s);
	}
	assert_int_equal(img_backing_path("top.qcow2", "base", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "base");
	assert_int_equal(img_backing_path("/vm/top.qcow2", "base", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/vm/base");
	assert_int_equal(img_backing_path("a/b/top", "../base", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "a/b/../base");
	assert_int_equal(img_backing_path("a/top", "/abs/base", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/abs/base");
	assert_int_equal(img_backing_path("/top", "base", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/base");
	assert_int_equal(
	    img_backing_path("dir/top", "0123456789012345678901234567890123", buf, sizeof(buf)),
	    -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_created_image_is_clean),
	    cmocka_unit_test(test_data_counts),
	    cmocka_unit_test(test_leak),
	    cmocka_unit_test(test_refcount_zero_and_copied),
	    cmocka_unit_test(test_overlap_and_past_eof),
	    cmocka_unit_test(test_overlap_hidden_by_raised_refcount),
	    cmocka_unit_test(test_unusable_refblock_is_incomplete),
	    cmocka_unit_test(test_header_validation),
	    cmocka_unit_test(test_human_size_and_paths),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
