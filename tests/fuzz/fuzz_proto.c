/* libFuzzer target: a control-socket byte stream through the frame decoder, every message through
 * request validation, and every reply through the encoder and back. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"
#include "vmm/control_req.h"

/*
 * Input: one control byte, then the stream. Control byte: bits 0..5 + 1 = the size of the chunks
 * the stream arrives in (1..64 bytes, like short reads), bit 6 = each frame came with one
 * descriptor.
 */

static void check(int ok)
{
	if (!ok)
		abort();
}

/* The reply must encode (unless an enormous id pushes it past the frame limit) and decode back to
 * an equal object. */
static void roundtrip(json_t *reply)
{
	uint8_t *f;
	size_t len, used;
	check(reply != NULL);
	int r = proto_encode(reply, &f, &len);
	if (r == -EMSGSIZE) {
		json_decref(reply);
		return;
	}
	check(r == 0 && len > PROTO_HDR_SIZE && len <= PROTO_HDR_SIZE + PROTO_MAX_FRAME);
	struct proto_rx rx;
	json_t *back = NULL;
	proto_rx_init(&rx);
	check(proto_rx_feed(&rx, f, len, &used, &back) == PROTO_MESSAGE && used == len);
	check(json_equal(back, reply));
	json_decref(back);
	proto_rx_reset(&rx);
	free(f);
	json_decref(reply);
}

static void validate(json_t *msg, unsigned nfds)
{
	struct control_request req;
	struct control_error err;
	memset(&err, 0, sizeof(err));
	int r = control_req_parse(msg, nfds, &req, &err);
	if (r == 0) {
		check(strcmp(control_cmd_name(req.cmd), "?") != 0);
		if (req.cmd == CMD_PAUSE)
			check(req.args.pause.timeout_ms >= 1 &&
			      req.args.pause.timeout_ms <= PAUSE_TIMEOUT_MS_MAX);
		check(nfds == 0);
		roundtrip(control_reply_ok(req.id, NULL));
		return;
	}
	check(r == -EINVAL && err.code != NULL && err.message[0] != 0);
	check(memchr(err.field, 0, sizeof(err.field)) != NULL);
	if (!strcmp(err.code, CERR_UNKNOWN_FIELD) || !strcmp(err.code, CERR_INVALID_ARGUMENT) ||
	    !strcmp(err.code, CERR_UNKNOWN_COMMAND))
		check(err.has_field); /* these always name the field */
	roundtrip(control_reply_error(req.id, &err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t chunk = (data[0] & 0x3f) + 1u;
	unsigned nfds = (data[0] >> 6) & 1u;
	data++, size--;

	struct proto_rx rx;
	proto_rx_init(&rx);
	size_t off = 0;
	while (off < size) {
		size_t n = size - off < chunk ? size - off : chunk;
		size_t used = 0;
		json_t *msg = NULL;
		int r = proto_rx_feed(&rx, data + off, n, &used, &msg);
		check(used <= n && (used > 0 || r < 0));
		off += used;
		if (r == PROTO_NEED_MORE) {
			check(used == n && msg == NULL);
			continue;
		}
		if (r < 0) { /* the server closes the connection here */
			check(r == -EMSGSIZE || r == -EBADMSG || r == -EPROTO);
			check(msg == NULL);
			break;
		}
		check(r == PROTO_MESSAGE && json_is_object(msg) && !proto_rx_busy(&rx));
		validate(msg, nfds);
		json_decref(msg);
	}
	proto_rx_reset(&rx);
	return 0;
}
