/* Unit tests for common/fdmap: lexical normalization, PATH=N parsing, the map's refusals, opening a
 * mapped path through its descriptor (access mode, O_DIRECT, shared file, never by name). */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "common/fdmap.h"
#include "common/util.h"

static char dir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/berth-fdmap-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	fdmap_clear();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static void test_normalize(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
	    {"/", "/"},
	    {"/a", "/a"},
	    {"/a/", "/a"},
	    {"//a//b", "/a/b"},
	    {"/a/./b", "/a/b"},
	    {"/a/b/../c", "/a/c"},
	    {"/..", "/"},
	    {"/a/../../b", "/b"},
	    {"/a/b/..", "/a"},
	    {"/a/.b/..c", "/a/.b/..c"},
	    {"/d/x/../base.qcow2", "/d/base.qcow2"},
	};
	char out[64];
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		assert_int_equal(fdmap_normalize(cases[i][0], out, sizeof(out)), 0);
		assert_string_equal(out, cases[i][1]);
	}
	assert_int_equal(fdmap_normalize("a/b", out, sizeof(out)), -EINVAL);
	assert_int_equal(fdmap_normalize("/abcdefgh", out, 6), -ENAMETOOLONG);
}

static void test_parse(void **state)
{
	(void)state;
	char msg[200], *path;
	int fd;
	assert_int_equal(fdmap_parse("/x/../a=b=7", &path, &fd, msg, sizeof(msg)), 0);
	assert_string_equal(path, "/a=b"); /* split at the last '=' */
	assert_int_equal(fd, 7);
	free(path);
	static const char *const bad[][2] = {
	    {"/a", "PATH=N"},
	    {"=3", "PATH=N"},
	    {"/a=", "PATH=N"},
	    {"a=3", "absolute"},
	    {"/a=x", "not a descriptor"},
	    {"/a=-1", "not a descriptor"},
	    {"/a=+1", "not a descriptor"},
	    {"/a=3x", "not a descriptor"},
	    {"/a=99999999999", "not a descriptor"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		assert_int_equal(fdmap_parse(bad[i][0], &path, &fd, msg, sizeof(msg)), -EINVAL);
		assert_null(path);
		assert_contains(msg, bad[i][1]);
	}
}

static void test_add_refusals(void **state)
{
	(void)state;
	char msg[300], f[128];
	snprintf(f, sizeof(f), "%s/img", dir);
	int fd = open(f, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_int_equal(fdmap_add("rel", fd, msg, sizeof(msg)), -EINVAL);
	assert_int_equal(fdmap_add("/x", d, msg, sizeof(msg)), -EINVAL);
	assert_contains(msg, "not a regular file or block device");
	assert_int_equal(fdmap_add("/x", 987, msg, sizeof(msg)), -EBADF);
	assert_int_equal(fdmap_add(f, fd, msg, sizeof(msg)), 0);
	char twice[160];
	snprintf(twice, sizeof(twice), "%s/./sub/../img", dir);
	assert_int_equal(fdmap_add(twice, fd, msg, sizeof(msg)), -EEXIST);
	assert_contains(msg, "mapped twice");
	assert_int_equal(fdmap_lookup(twice), fd);
	assert_int_equal(fdmap_lookup("/nowhere"), -1);
	fdmap_clear();
	assert_int_equal(fdmap_lookup(f), -1);
	close(d);
	close(fd);
}

static void test_open_through_the_map(void **state)
{
	(void)state;
	char msg[300], f[128], g[128];
	snprintf(f, sizeof(f), "%s/disk", dir);
	snprintf(g, sizeof(g), "%s/other", dir);
	int w = open(f, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	assert_true(w >= 0);
	assert_int_equal(write(w, "berth", 5), 5);
	int ro = open(g, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	close(ro);
	ro = open(g, O_RDONLY | O_CLOEXEC);
	assert_int_equal(fdmap_add(f, w, msg, sizeof(msg)), 0);
	assert_int_equal(fdmap_add(g, ro, msg, sizeof(msg)), 0);
	/* the names go: only the descriptors can open them now */
	assert_int_equal(unlink(f), 0);
	assert_int_equal(unlink(g), 0);

	int a = fdmap_open(f, O_RDWR, msg, sizeof(msg));
	assert_true(a >= 0 && a != w);
	assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
	char buf[8] = {0};
	assert_int_equal(pread(a, buf, 5, 0), 5);
	assert_string_equal(buf, "berth");
	assert_int_equal(pwrite(a, "B", 1, 0), 1); /* the same file as the original */
	assert_int_equal(pread(w, buf, 1, 0), 1);
	assert_int_equal(buf[0], 'B');
	close(a); /* the original stays open: it can be duplicated again (a guest reboot) */
	assert_true(fcntl(w, F_GETFD) >= 0);
	a = fdmap_open(f, O_RDONLY, msg, sizeof(msg));
	assert_true(a >= 0);
	close(a);

	/* a read-only descriptor for a writable open is refused, naming the path */
	assert_int_equal(fdmap_open(g, O_RDWR, msg, sizeof(msg)), -EACCES);
	assert_contains(msg, g);
	assert_contains(msg, "read-only");
	a = fdmap_open(g, O_RDONLY, msg, sizeof(msg));
	assert_true(a >= 0);
	close(a);

	/* O_DIRECT follows the request (tmpfs may not support it: then the refusal says so) */
	a = fdmap_open(f, O_RDONLY | O_DIRECT, msg, sizeof(msg));
	if (a >= 0) {
		assert_true(fcntl(a, F_GETFL) & O_DIRECT);
		close(a);
		a = fdmap_open(f, O_RDONLY, msg, sizeof(msg));
		assert_true(a >= 0);
		assert_false(fcntl(a, F_GETFL) & O_DIRECT);
		close(a);
	} else {
		assert_int_equal(a, -EINVAL);
		assert_contains(msg, "O_DIRECT");
	}

	/* read_file reads a mapped file from its start, however often */
	uint8_t *data;
	size_t len;
	for (int i = 0; i < 2; i++) {
		assert_int_equal(read_file(f, 100, &data, &len), 0);
		assert_int_equal(len, 5);
		assert_memory_equal(data, "Berth", 5);
		free(data);
	}

	/* unmapped paths open by name (and say nothing: the caller does) */
	a = fdmap_open("/nonexistent/berth", O_RDONLY, msg, sizeof(msg));
	assert_int_equal(a, -ENOENT);
	assert_string_equal(msg, "");
	fdmap_clear();
	close(w);
	close(ro);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_normalize),
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test_setup_teardown(test_add_refusals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_open_through_the_map, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
