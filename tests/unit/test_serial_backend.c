/* Unit tests for the serial port's unix-socket backend: a client that connects late gets the
 * history, and a client that stops reading catches up from the history instead of losing what came
 * last. */
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/evloop.h"
#include "vmm/config.h"
#include "vmm/serial.h"

struct fixture {
	char dir[64], path[128];
	struct serial_backend be;
	struct evloop *loop;
	pthread_t thread;
};

static void *loop_main(void *arg)
{
	evloop_run(arg);
	return NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/berth-unit-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/com1.sock", f->dir);
	struct serial_cfg cfg = {.kind = SERIAL_UNIX, .path = f->path};
	if (serial_backend_open(&f->be, &cfg, "com1") || evloop_new(&f->loop) ||
	    serial_backend_attach(&f->be, f->loop))
		return -1;
	pthread_create(&f->thread, NULL, loop_main, f->loop);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	evloop_stop(f->loop);
	pthread_join(f->thread, NULL);
	serial_backend_close(&f->be);
	evloop_free(f->loop);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int connect_client(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Everything the client receives until the stream has been quiet for quiet_ms. */
static size_t drain(int fd, uint8_t *buf, size_t cap, int quiet_ms)
{
	size_t n = 0;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, quiet_ms) <= 0)
			return n;
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0)
			return n;
		n += (size_t)r;
		assert_true(n < cap);
	}
}

/* Output byte i of the test stream: distinguishable positions (a 32-bit counter per 4 bytes). */
static void pattern(uint8_t *buf, uint64_t from, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		uint64_t k = from + i, word = k / 4;
		buf[i] = (uint8_t)(word >> (8 * (k % 4)));
	}
}

static void wait_client(struct fixture *f)
{
	for (int i = 0; i < 1000; i++) {
		pthread_mutex_lock(&f->be.out_lock);
		bool on = f->be.out_fd >= 0;
		pthread_mutex_unlock(&f->be.out_lock);
		if (on)
			return;
		usleep(1000);
	}
	fail_msg("the backend did not accept the client");
}

static void test_late_client_gets_the_history(void **state)
{
	struct fixture *f = *state;
	uint8_t out[100000];
	pattern(out, 0, sizeof(out));
	serial_backend_output(&f->be, out, sizeof(out)); /* before anyone listens */
	int c = connect_client(f->path);
	wait_client(f);
	serial_backend_output(&f->be, (const uint8_t *)"more", 4);
	static uint8_t got[1 << 20];
	size_t n = drain(c, got, sizeof(got), 200);
	assert_int_equal(n, SERIAL_HISTORY + 4); /* the last 64 KiB before it came, then the new */
	assert_memory_equal(got, out + sizeof(out) - SERIAL_HISTORY, SERIAL_HISTORY);
	assert_memory_equal(got + SERIAL_HISTORY, "more", 4);
	close(c);
}

static void test_slow_client_catches_up_from_the_history(void **state)
{
	struct fixture *f = *state;
	int c = connect_client(f->path);
	wait_client(f);
	/* Far more than the socket holds, while the client reads nothing (a vCPU never blocks). */
	const size_t total = 4u << 20, chunk = 4096;
	static uint8_t buf[4096], got[8 << 20];
	for (size_t off = 0; off < total; off += chunk) {
		pattern(buf, off, chunk);
		serial_backend_output(&f->be, buf, chunk);
	}
	size_t n = drain(c, got, sizeof(got), 300);
	/* It got a prefix of the output, then (when its socket had room again) the last 64 KiB:
	 * what came last is never lost to a slow reader. */
	assert_true(n >= SERIAL_HISTORY && n < total);
	uint8_t *want = malloc(SERIAL_HISTORY);
	pattern(want, total - SERIAL_HISTORY, SERIAL_HISTORY);
	assert_memory_equal(got + n - SERIAL_HISTORY, want, SERIAL_HISTORY);
	free(want);
	uint8_t *head = malloc(n - SERIAL_HISTORY);
	pattern(head, 0, n - SERIAL_HISTORY);
	assert_memory_equal(got, head, n - SERIAL_HISTORY);
	free(head);
	close(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_late_client_gets_the_history, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_slow_client_catches_up_from_the_history, setup,
					    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
