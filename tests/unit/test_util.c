/* Unit tests for common/util: size and integer parsing, size formatting, file reading, checked
 * arithmetic. */
#include "unit.h"

#include <errno.h>
#include <sys/stat.h>

#include "common/util.h"

static void test_parse_size_ok(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
	    {"0", 0},
	    {"1", 1},
	    {"007", 7},
	    {"1073741824", GiB},
	    {"1K", KiB},
	    {"1k", KiB},
	    {"1KB", KiB},
	    {"1KiB", KiB},
	    {"1kib", KiB},
	    {"65536K", 64 * MiB},
	    {"512M", 512 * MiB},
	    {"512MiB", 512 * MiB},
	    {"2G", 2 * GiB},
	    {"2gb", 2 * GiB},
	    {"1T", 1024 * GiB},
	    {"0G", 0},
	    {"16777215T", 16777215ULL * 1024 * GiB},
	    {"18014398509481983K", UINT64_MAX - 1023},
	    {"18446744073709551615", UINT64_MAX},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		uint64_t v = 12345;
		int r = parse_size(ok[i].s, &v);
		if (r || v != ok[i].v)
			fail_msg("parse_size(\"%s\") = %d, %llu", ok[i].s, r,
				 (unsigned long long)v);
	}
}

static void test_parse_size_bad(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int err;
	} bad[] = {
	    {"", -EINVAL},
	    {" 1", -EINVAL},
	    {"1 ", -EINVAL},
	    {"-1", -EINVAL},
	    {"+1", -EINVAL},
	    {"1.5G", -EINVAL},
	    {"0x10", -EINVAL},
	    {"1X", -EINVAL},
	    {"1Ki", -EINVAL},
	    {"1KBB", -EINVAL},
	    {"1KX", -EINVAL},
	    {"1MiBs", -EINVAL},
	    {"1GG", -EINVAL},
	    {"M", -EINVAL},
	    {"16777216T", -ERANGE},
	    {"18014398509481984K", -ERANGE},
	    {"18446744073709551616", -ERANGE},
	    {"99999999999999999999999G", -ERANGE},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint64_t v = 12345;
		int r = parse_size(bad[i].s, &v);
		if (r != bad[i].err)
			fail_msg("parse_size(\"%s\") = %d, want %d", bad[i].s, r, bad[i].err);
		assert_int_equal(v, 12345); /* untouched on error */
	}
	uint64_t v = 1;
	assert_int_equal(parse_size(NULL, &v), -EINVAL);
}

static void test_parse_u64(void **state)
{
	(void)state;
	uint64_t v = 0;
	assert_int_equal(parse_u64("0", &v), 0);
	assert_int_equal(v, 0);
	assert_int_equal(parse_u64("42", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_u64("0042", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(parse_u64("18446744073709551615", &v), 0);
	assert_int_equal(v, UINT64_MAX);
	v = 7;
	assert_int_equal(parse_u64("18446744073709551616", &v), -ERANGE);
	assert_int_equal(parse_u64("", &v), -EINVAL);
	assert_int_equal(parse_u64(NULL, &v), -EINVAL);
	assert_int_equal(parse_u64("4k", &v), -EINVAL);
	assert_int_equal(parse_u64("-1", &v), -EINVAL);
	assert_int_equal(parse_u64("+1", &v), -EINVAL);
	assert_int_equal(parse_u64(" 1", &v), -EINVAL);
	assert_int_equal(parse_u64("1 ", &v), -EINVAL);
	assert_int_equal(parse_u64("0x1", &v), -EINVAL);
	assert_int_equal(v, 7);
}

static void test_format_size(void **state)
{
	(void)state;
	static const struct {
		uint64_t v;
		const char *s;
	} cases[] = {
	    {0, "0"},
	    {1, "1"},
	    {1023, "1023"},
	    {1024, "1K"},
	    {1536, "1536"},
	    {3 * KiB, "3K"},
	    {512 * MiB, "512M"},
	    {1536 * MiB, "1536M"},
	    {3 * GiB + MiB, "3073M"},
	    {4 * GiB, "4G"},
	    {64 * GiB, "64G"},
	    {1024 * GiB, "1T"},
	    {1024 * 1024 * GiB, "1024T"},
	    {UINT64_MAX, "18446744073709551615"},
	    {1ULL << 63, "8388608T"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		char buf[32];
		format_size(cases[i].v, buf, sizeof(buf));
		assert_string_equal(buf, cases[i].s);
		/* And back. */
		uint64_t back;
		assert_int_equal(parse_size(buf, &back), 0);
		assert_int_equal(back, cases[i].v);
	}
	char small[3];
	format_size(512 * MiB, small, sizeof(small));
	assert_string_equal(small, "51");
}

static void test_read_file(void **state)
{
	(void)state;
	static const char text[] = "0123456789";
	char *path = write_temp_file(text, 10);
	uint8_t *data = NULL;
	size_t len = 0;
	assert_int_equal(read_file(path, 10, &data, &len), 0);
	assert_int_equal(len, 10);
	assert_memory_equal(data, text, 10);
	free(data);
	data = NULL;
	assert_int_equal(read_file(path, 9, &data, &len), -EFBIG);
	assert_null(data);
	unlink(path);
	assert_int_equal(read_file(path, 100, &data, &len), -ENOENT);
	free(path);

	path = write_temp_file("", 0);
	assert_int_equal(read_file(path, 0, &data, &len), 0);
	assert_non_null(data);
	assert_int_equal(len, 0);
	free(data);
	unlink(path);
	free(path);

	assert_int_equal(read_file("/tmp", 100, &data, &len), -EISDIR);
	assert_int_equal(read_file("/dev/null", 100, &data, &len), -EINVAL);
}

static void test_write_all(void **state)
{
	(void)state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	assert_int_equal(write_all(fds[1], "hello", 5), 0);
	assert_int_equal(write_all(fds[1], "", 0), 0);
	char buf[8] = {0};
	assert_int_equal(read(fds[0], buf, sizeof(buf)), 5);
	assert_string_equal(buf, "hello");
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(write_all(-1, "x", 1), -EBADF);
}

static void test_arith(void **state)
{
	(void)state;
	assert_false(add_overflows_u64(0, 0));
	assert_false(add_overflows_u64(UINT64_MAX, 0));
	assert_false(add_overflows_u64(UINT64_MAX - 1, 1));
	assert_true(add_overflows_u64(UINT64_MAX, 1));
	assert_true(add_overflows_u64(1ULL << 63, 1ULL << 63));
	assert_int_equal(ALIGN_UP(0, 4096), 0);
	assert_int_equal(ALIGN_UP(1, 4096), 4096);
	assert_int_equal(ALIGN_UP(4096, 4096), 4096);
	assert_int_equal(ALIGN_DOWN(4097, 4096), 4096);
	assert_int_equal(ALIGN_DOWN(0xffffffffffffffffULL, 4096), 0xfffffffffffff000ULL);
	assert_int_equal(ALIGN_UP(0x1fffff, 0x200000), 0x200000);
	assert_int_equal(ARRAY_SIZE((int[7]){0}), 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_size_ok), cmocka_unit_test(test_parse_size_bad),
	    cmocka_unit_test(test_parse_u64),	  cmocka_unit_test(test_format_size),
	    cmocka_unit_test(test_read_file),	  cmocka_unit_test(test_write_all),
	    cmocka_unit_test(test_arith),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
