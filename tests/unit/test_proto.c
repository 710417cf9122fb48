/* Unit tests for common/proto: frame decoding (whole, byte by byte, limits, bad payloads), socket
 * receive with descriptors, end of stream, the encoder and the output queue. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>

#include "common/proto.h"
#include "common/util.h"

/* A frame with the given payload bytes (len may differ from strlen for corrupt headers). */
static size_t frame(uint8_t *out, uint32_t hdr_len, const char *payload)
{
	out[0] = (uint8_t)(hdr_len >> 24);
	out[1] = (uint8_t)(hdr_len >> 16);
	out[2] = (uint8_t)(hdr_len >> 8);
	out[3] = (uint8_t)hdr_len;
	size_t n = payload ? strlen(payload) : 0;
	memcpy(out + 4, payload, n);
	return 4 + n;
}

/* Feed a whole buffer; returns the last result and the message, if any. */
static int feed_all(struct proto_rx *rx, const uint8_t *buf, size_t len, json_t **msg)
{
	size_t used;
	*msg = NULL;
	int r = proto_rx_feed(rx, buf, len, &used, msg);
	if (r == PROTO_MESSAGE)
		assert_int_equal(used, len);
	return r;
}

static void test_decode_whole_and_bytewise(void **state)
{
	(void)state;
	static const char req[] = "{\"id\": 7, \"cmd\": \"query-status\"}";
	uint8_t buf[256];
	size_t n = frame(buf, sizeof(req) - 1, req);
	assert_int_equal(n, 4 + sizeof(req) - 1);
	struct proto_rx rx;
	proto_rx_init(&rx);
	json_t *msg;
	assert_int_equal(feed_all(&rx, buf, n, &msg), PROTO_MESSAGE);
	assert_int_equal(json_integer_value(json_object_get(msg, "id")), 7);
	assert_string_equal(json_string_value(json_object_get(msg, "cmd")), "query-status");
	json_decref(msg);
	assert_false(proto_rx_busy(&rx));

	/* One byte at a time: NEED_MORE until the last byte. */
	for (size_t i = 0; i < n; i++) {
		size_t used;
		msg = NULL;
		int r = proto_rx_feed(&rx, buf + i, 1, &used, &msg);
		assert_int_equal(used, 1);
		assert_int_equal(r, i + 1 == n ? PROTO_MESSAGE : PROTO_NEED_MORE);
		if (i + 1 < n)
			assert_true(proto_rx_busy(&rx));
	}
	assert_non_null(msg);
	json_decref(msg);

	/* Two frames in one buffer: feed stops at the end of the first. */
	uint8_t two[128];
	size_t a = frame(two, 8, "{\"a\": 1}");
	size_t b = frame(two + a, 8, "{\"b\": 2}");
	size_t used;
	assert_int_equal(proto_rx_feed(&rx, two, a + b, &used, &msg), PROTO_MESSAGE);
	assert_int_equal(used, a);
	assert_non_null(json_object_get(msg, "a"));
	json_decref(msg);
	assert_int_equal(proto_rx_feed(&rx, two + a, b, &used, &msg), PROTO_MESSAGE);
	assert_non_null(json_object_get(msg, "b"));
	json_decref(msg);
	proto_rx_reset(&rx);
}

static void test_decode_errors(void **state)
{
	(void)state;
	static const struct {
		const char *payload;
		int err;
	} bad[] = {
	    {"{\"a\": ", -EBADMSG},		/* truncated JSON */
	    {"{\"a\": 1} x", -EBADMSG},		/* trailing garbage */
	    {"{\"a\": 1, \"a\": 2}", -EBADMSG}, /* duplicate key */
	    {"{\"a\": \"\xff\"}", -EBADMSG},	/* invalid UTF-8 */
	    {"{\"a\": \"\\u0000\"}", -EBADMSG}, /* NUL in a string */
	    {"[1, 2]", -EPROTO},		/* not an object */
	    {"\"text\"", -EPROTO},
	    {"42", -EPROTO},
	    {"null", -EPROTO},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		uint8_t buf[64];
		size_t n = frame(buf, (uint32_t)strlen(bad[i].payload), bad[i].payload);
		struct proto_rx rx;
		json_t *msg;
		proto_rx_init(&rx);
		int r = feed_all(&rx, buf, n, &msg);
		if (r != bad[i].err)
			fail_msg("payload %zu '%s': got %d, want %d", i, bad[i].payload, r,
				 bad[i].err);
		assert_null(msg);
		proto_rx_reset(&rx);
	}
	/* Empty payload; oversized length prefix (rejected from the header alone). */
	uint8_t hdr[4];
	struct proto_rx rx;
	json_t *msg;
	proto_rx_init(&rx);
	frame(hdr, 0, NULL);
	assert_int_equal(feed_all(&rx, hdr, 4, &msg), -EBADMSG);
	proto_rx_reset(&rx);
	frame(hdr, PROTO_MAX_FRAME + 1, NULL);
	assert_int_equal(feed_all(&rx, hdr, 4, &msg), -EMSGSIZE);
	proto_rx_reset(&rx);
	frame(hdr, 0xffffffffu, NULL);
	assert_int_equal(feed_all(&rx, hdr, 4, &msg), -EMSGSIZE);
	proto_rx_reset(&rx);
	assert_string_equal(proto_strerror(-EMSGSIZE), "frame longer than the 1 MiB limit");
}

/* An object whose compact encoding is exactly len bytes: {"s":"xxx..."}. */
static json_t *object_of_size(size_t len)
{
	size_t n = len - 8;
	char *s = malloc(n + 1);
	assert_non_null(s);
	memset(s, 'x', n);
	s[n] = 0;
	json_t *o = json_pack("{s:s}", "s", s);
	free(s);
	return o;
}

static void test_frame_size_limit(void **state)
{
	(void)state;
	uint8_t *f;
	size_t len;
	json_t *o = object_of_size(PROTO_MAX_FRAME);
	assert_int_equal(proto_encode(o, &f, &len), 0);
	assert_int_equal(len, 4 + PROTO_MAX_FRAME);
	struct proto_rx rx;
	json_t *msg;
	proto_rx_init(&rx);
	assert_int_equal(feed_all(&rx, f, len, &msg), PROTO_MESSAGE);
	assert_true(json_equal(msg, o));
	json_decref(msg);
	free(f);
	json_decref(o);

	o = object_of_size(PROTO_MAX_FRAME + 1);
	assert_int_equal(proto_encode(o, &f, &len), -EMSGSIZE);
	json_decref(o);
	o = json_array();
	assert_int_equal(proto_encode(o, &f, &len), -EINVAL);
	json_decref(o);
}

static void nonblocking_pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(fcntl(sv[i], F_SETFL, fcntl(sv[i], F_GETFL) | O_NONBLOCK), 0);
}

static void test_socket_with_fds(void **state)
{
	(void)state;
	int sv[2], p[2];
	nonblocking_pair(sv);
	assert_int_equal(pipe(p), 0);
	json_t *o = json_pack("{s:s, s:i}", "cmd", "attach", "n", 2);
	struct proto_rx rx;
	json_t *msg = NULL;
	int fds[PROTO_MAX_FDS];
	unsigned nfds = 99;
	proto_rx_init(&rx);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), PROTO_NEED_MORE);
	assert_int_equal(nfds, 0);
	assert_int_equal(proto_send(sv[0], o, p, 2), 0);
	assert_int_equal(proto_send(sv[0], o, NULL, 0), 0);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), PROTO_MESSAGE);
	assert_true(json_equal(msg, o));
	json_decref(msg);
	assert_int_equal(nfds, 2);
	/* The received descriptors are the pipe's ends. */
	assert_int_equal(write(fds[1], "x", 1), 1);
	char c;
	assert_int_equal(read(p[0], &c, 1), 1);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), PROTO_MESSAGE);
	assert_int_equal(nfds, 0);
	json_decref(msg);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), PROTO_NEED_MORE);

	/* More than PROTO_MAX_FDS: proto_send refuses; a raw sendmsg is rejected by the reader. */
	int many[PROTO_MAX_FDS + 1];
	for (unsigned i = 0; i < ARRAY_SIZE(many); i++)
		many[i] = p[0];
	assert_int_equal(proto_send(sv[0], o, many, ARRAY_SIZE(many)), -EINVAL);
	union {
		struct cmsghdr align;
		uint8_t buf[CMSG_SPACE(sizeof(many))];
	} cbuf;
	uint8_t hdr[4];
	frame(hdr, 2, NULL);
	struct iovec iov = {hdr, 4};
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cbuf.buf,
			    .msg_controllen = sizeof(cbuf.buf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(many));
	memcpy(CMSG_DATA(cm), many, sizeof(many));
	assert_int_equal(sendmsg(sv[0], &mh, 0), 4);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), -ETOOMANYREFS);
	proto_rx_reset(&rx); /* closes the ones it kept */
	json_decref(o);
	close(p[0]);
	close(p[1]);
	close(sv[0]);
	close(sv[1]);
}

static void test_end_of_stream(void **state)
{
	(void)state;
	int sv[2];
	struct proto_rx rx;
	json_t *msg;
	int fds[PROTO_MAX_FDS];
	unsigned nfds;

	nonblocking_pair(sv);
	proto_rx_init(&rx);
	close(sv[0]);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), -EPIPE);
	close(sv[1]);

	nonblocking_pair(sv);
	uint8_t buf[32];
	size_t n = frame(buf, 10, "{\"a\"");
	assert_int_equal(write(sv[0], buf, n), (ssize_t)n);
	close(sv[0]);
	assert_int_equal(proto_recv(sv[1], &rx, &msg, fds, &nfds), -ECONNRESET);
	proto_rx_reset(&rx);
	close(sv[1]);
}

static void test_tx_queue(void **state)
{
	(void)state;
	int sv[2];
	nonblocking_pair(sv);
	struct proto_tx tx;
	proto_tx_init(&tx);
	assert_int_equal(proto_tx_flush(sv[0], &tx), 0);
	json_t *o = object_of_size(64 * 1024);
	/* Queue more than the socket buffer takes: flushing leaves bytes pending. */
	unsigned frames = 0;
	int r = 0;
	while (r != 1 && frames < 1000) {
		assert_int_equal(proto_tx_push(&tx, o), 0);
		frames++;
		r = proto_tx_flush(sv[0], &tx);
		assert_true(r == 0 || r == 1);
	}
	assert_int_equal(r, 1);
	assert_true(proto_tx_pending(&tx) > 0);
	/* Read everything back, flushing as room appears; every frame arrives whole and in order.
	 */
	struct proto_rx rx;
	proto_rx_init(&rx);
	unsigned got = 0;
	while (got < frames) {
		json_t *msg;
		int fds[PROTO_MAX_FDS];
		unsigned nfds;
		int rr = proto_recv(sv[1], &rx, &msg, fds, &nfds);
		if (rr == PROTO_MESSAGE) {
			assert_true(json_equal(msg, o));
			json_decref(msg);
			got++;
			continue;
		}
		assert_int_equal(rr, PROTO_NEED_MORE);
		assert_true(proto_tx_flush(sv[0], &tx) >= 0);
	}
	assert_int_equal(proto_tx_pending(&tx), 0);
	json_t *arr = json_array();
	assert_int_equal(proto_tx_push(&tx, arr), -EINVAL); /* only objects are messages */
	json_decref(arr);
	json_decref(o);
	proto_rx_reset(&rx);
	/* The peer is gone: flushing reports it. */
	close(sv[1]);
	json_t *e = json_object();
	assert_int_equal(proto_tx_push(&tx, e), 0);
	assert_int_equal(proto_tx_flush(sv[0], &tx), -EPIPE);
	json_decref(e);
	proto_tx_free(&tx);
	close(sv[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_whole_and_bytewise),
	    cmocka_unit_test(test_decode_errors),
	    cmocka_unit_test(test_frame_size_limit),
	    cmocka_unit_test(test_socket_with_fds),
	    cmocka_unit_test(test_end_of_stream),
	    cmocka_unit_test(test_tx_queue),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
