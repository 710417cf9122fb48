/* Framed control messages: a 4-byte big-endian length, then one JSON object; fds via SCM_RIGHTS. */
#ifndef BERTH_PROTO_H
#define BERTH_PROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_HDR_SIZE 4
#define PROTO_MAX_FRAME (1u << 20) /* payload bytes, the length prefix not counted */
#define PROTO_MAX_FDS 8		   /* file descriptors that may travel with one frame */

/* What proto_rx_commit()/proto_rx_feed()/proto_recv() return besides -errno. */
enum { PROTO_NEED_MORE = 0, PROTO_MESSAGE = 1 };

/*
 * Errors of the decoder (the connection should be closed after any of them):
 *   -EMSGSIZE      the length prefix exceeds PROTO_MAX_FRAME
 *   -EBADMSG       the payload is not valid UTF-8 JSON (an empty payload included)
 *   -EPROTO        the payload is valid JSON but not an object
 *   -ETOOMANYREFS  more than PROTO_MAX_FDS file descriptors arrived with a frame
 *   -EPIPE         (proto_recv) the peer closed the connection between frames
 *   -ECONNRESET    (proto_recv) the peer closed the connection in the middle of a frame
 */

/* Receive state of one connection: the frame being assembled and the fds that came with it. */
struct proto_rx {
	uint8_t hdr[PROTO_HDR_SIZE];
	size_t hdr_got;
	uint8_t *buf; /* payload, allocated once the header is complete */
	uint32_t len; /* payload length from the header */
	size_t got;
	int fds[PROTO_MAX_FDS];
	unsigned nfds;
};

void proto_rx_init(struct proto_rx *rx);
/* Drop a partial frame and close fds not yet handed out; rx can be used again. */
void proto_rx_reset(struct proto_rx *rx);
/* True while part of a frame has been received. */
bool proto_rx_busy(const struct proto_rx *rx);

/* Where the next bytes of the current frame go and how many belong to it (never 0). */
size_t proto_rx_space(struct proto_rx *rx, uint8_t **where);
/* n bytes were written at proto_rx_space()'s pointer. PROTO_NEED_MORE, PROTO_MESSAGE (*msg is the
 * parsed object, the caller's reference; rx is ready for the next frame), or a decoder error. */
int proto_rx_commit(struct proto_rx *rx, size_t n, json_t **msg);
/* Copy bytes from a buffer: consumes at most up to the end of the current frame (*used). */
int proto_rx_feed(struct proto_rx *rx, const uint8_t *data, size_t len, size_t *used, json_t **msg);

/*
 * Read from a (non-blocking) stream socket until one message is complete or the socket would
 * block. PROTO_MESSAGE: *msg set, and fds[0..*nfds) the descriptors that came with the frame (the
 * caller owns them; fds must have room for PROTO_MAX_FDS). PROTO_NEED_MORE: nothing complete yet.
 * Otherwise a decoder error or -errno of recvmsg.
 */
int proto_recv(int fd, struct proto_rx *rx, json_t **msg, int *fds, unsigned *nfds);

/* Encode msg (an object) as one frame in a malloc'd buffer. -EINVAL, -EMSGSIZE, -ENOMEM. */
int proto_encode(const json_t *msg, uint8_t **frame, size_t *len);

/* Send one frame and up to PROTO_MAX_FDS fds, waiting (poll) while a non-blocking socket is
 * full. -errno. */
int proto_send(int fd, const json_t *msg, const int *fds, unsigned nfds);

/* Output queue of a non-blocking connection: frames appended, flushed as the socket accepts. */
struct proto_tx {
	uint8_t *buf;
	size_t len, off, cap;
};

void proto_tx_init(struct proto_tx *tx);
void proto_tx_free(struct proto_tx *tx);
/* Append msg as one frame. -EINVAL, -EMSGSIZE, -ENOMEM. */
int proto_tx_push(struct proto_tx *tx, const json_t *msg);
/* Bytes queued and not yet written. */
size_t proto_tx_pending(const struct proto_tx *tx);
/* Write what the socket takes without blocking: 0 when the queue is empty, 1 when bytes remain
 * (wait for EPOLLOUT), -errno if the connection failed. */
int proto_tx_flush(int fd, struct proto_tx *tx);

/* A short description of a decoder error for log lines ("frame too large", ...). */
const char *proto_strerror(int err);

#endif
