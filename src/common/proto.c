/* Framed control messages: incremental decoder, socket receive with SCM_RIGHTS, encoder and
 * output queue. */
#include "common/proto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void proto_rx_init(struct proto_rx *rx)
{
	memset(rx, 0, sizeof(*rx));
}

static void close_fds(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

void proto_rx_reset(struct proto_rx *rx)
{
	free(rx->buf);
	close_fds(rx->fds, rx->nfds);
	proto_rx_init(rx);
}

bool proto_rx_busy(const struct proto_rx *rx)
{
	return rx->hdr_got > 0 || rx->nfds > 0;
}

size_t proto_rx_space(struct proto_rx *rx, uint8_t **where)
{
	if (rx->hdr_got < PROTO_HDR_SIZE) {
		*where = rx->hdr + rx->hdr_got;
		return PROTO_HDR_SIZE - rx->hdr_got;
	}
	*where = rx->buf + rx->got;
	return rx->len - rx->got;
}

/* Parse the complete payload; on success rx is emptied for the next frame (fds stay). */
static int finish_frame(struct proto_rx *rx, json_t **msg)
{
	json_error_t jerr;
	json_t *j = json_loadb((const char *)rx->buf, rx->len,
			       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	free(rx->buf);
	rx->buf = NULL;
	rx->hdr_got = rx->got = 0;
	rx->len = 0;
	if (!j)
		return -EBADMSG;
	if (!json_is_object(j)) {
		json_decref(j);
		return -EPROTO;
	}
	*msg = j;
	return PROTO_MESSAGE;
}

int proto_rx_commit(struct proto_rx *rx, size_t n, json_t **msg)
{
	if (rx->hdr_got < PROTO_HDR_SIZE) {
		rx->hdr_got += n;
		if (rx->hdr_got < PROTO_HDR_SIZE)
			return PROTO_NEED_MORE;
		uint32_t len = (uint32_t)rx->hdr[0] << 24 | (uint32_t)rx->hdr[1] << 16 |
			       (uint32_t)rx->hdr[2] << 8 | rx->hdr[3];
		if (len > PROTO_MAX_FRAME)
			return -EMSGSIZE;
		if (len == 0)
			return -EBADMSG; /* an empty document is not JSON */
		rx->buf = malloc(len);
		if (!rx->buf)
			return -ENOMEM;
		rx->len = len;
		rx->got = 0;
		return PROTO_NEED_MORE;
	}
	rx->got += n;
	if (rx->got < rx->len)
		return PROTO_NEED_MORE;
	return finish_frame(rx, msg);
}

int proto_rx_feed(struct proto_rx *rx, const uint8_t *data, size_t len, size_t *used, json_t **msg)
{
	int r = PROTO_NEED_MORE;
	*used = 0;
	while (*used < len && r == PROTO_NEED_MORE) {
		uint8_t *where;
		size_t space = proto_rx_space(rx, &where);
		size_t n = len - *used < space ? len - *used : space;
		memcpy(where, data + *used, n);
		*used += n;
		r = proto_rx_commit(rx, n, msg);
	}
	return r;
}

/* Take the descriptors of one recvmsg; beyond PROTO_MAX_FDS they are closed and it is an error. */
static int take_fds(struct proto_rx *rx, struct msghdr *mh)
{
	int err = (mh->msg_flags & MSG_CTRUNC) ? -ETOOMANYREFS : 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			if (rx->nfds < PROTO_MAX_FDS) {
				rx->fds[rx->nfds++] = fd;
			} else {
				close(fd);
				err = -ETOOMANYREFS;
			}
		}
	}
	return err;
}

int proto_recv(int fd, struct proto_rx *rx, json_t **msg, int *fds, unsigned *nfds)
{
	*nfds = 0;
	for (;;) {
		uint8_t *where;
		size_t space = proto_rx_space(rx, &where);
		union {
			struct cmsghdr align;
			uint8_t buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		} cbuf;
		struct iovec iov = {.iov_base = where, .iov_len = space};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = cbuf.buf,
				    .msg_controllen = sizeof(cbuf.buf)};
		ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return PROTO_NEED_MORE;
			return -errno;
		}
		int r = take_fds(rx, &mh);
		if (r)
			return r;
		if (n == 0)
			return proto_rx_busy(rx) ? -ECONNRESET : -EPIPE;
		r = proto_rx_commit(rx, (size_t)n, msg);
		if (r == PROTO_MESSAGE) {
			memcpy(fds, rx->fds, rx->nfds * sizeof(int));
			*nfds = rx->nfds;
			rx->nfds = 0;
		}
		if (r != PROTO_NEED_MORE)
			return r;
	}
}

int proto_encode(const json_t *msg, uint8_t **frame, size_t *len)
{
	if (!json_is_object(msg))
		return -EINVAL;
	char *text = json_dumps(msg, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	size_t n = strlen(text);
	if (n > PROTO_MAX_FRAME) {
		free(text);
		return -EMSGSIZE;
	}
	uint8_t *f = malloc(PROTO_HDR_SIZE + n);
	if (!f) {
		free(text);
		return -ENOMEM;
	}
	f[0] = (uint8_t)(n >> 24);
	f[1] = (uint8_t)(n >> 16);
	f[2] = (uint8_t)(n >> 8);
	f[3] = (uint8_t)n;
	memcpy(f + PROTO_HDR_SIZE, text, n);
	free(text);
	*frame = f;
	*len = PROTO_HDR_SIZE + n;
	return 0;
}

static int wait_writable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLOUT};
	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

int proto_send(int fd, const json_t *msg, const int *fds, unsigned nfds)
{
	if (nfds > PROTO_MAX_FDS)
		return -EINVAL;
	uint8_t *frame;
	size_t len, off = 0;
	int r = proto_encode(msg, &frame, &len);
	if (r)
		return r;
	while (off < len) {
		union {
			struct cmsghdr align;
			uint8_t buf[CMSG_SPACE(sizeof(int) * PROTO_MAX_FDS)];
		} cbuf;
		struct iovec iov = {.iov_base = frame + off, .iov_len = len - off};
		struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
		if (off == 0 && nfds) { /* the descriptors travel with the first byte */
			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
		}
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if ((errno == EAGAIN || errno == EWOULDBLOCK) && !(r = wait_writable(fd)))
				continue;
			r = r ? r : -errno;
			break;
		}
		off += (size_t)n;
	}
	free(frame);
	return r;
}

void proto_tx_init(struct proto_tx *tx)
{
	memset(tx, 0, sizeof(*tx));
}

void proto_tx_free(struct proto_tx *tx)
{
	free(tx->buf);
	proto_tx_init(tx);
}

size_t proto_tx_pending(const struct proto_tx *tx)
{
	return tx->len - tx->off;
}

int proto_tx_push(struct proto_tx *tx, const json_t *msg)
{
	uint8_t *frame;
	size_t len;
	int r = proto_encode(msg, &frame, &len);
	if (r)
		return r;
	if (tx->off == tx->len) /* empty: start over at the front */
		tx->off = tx->len = 0;
	if (tx->len + len > tx->cap) {
		if (tx->off) { /* slide the unsent bytes down first */
			memmove(tx->buf, tx->buf + tx->off, tx->len - tx->off);
			tx->len -= tx->off;
			tx->off = 0;
		}
		size_t cap = tx->cap ? tx->cap : 4096;
		while (cap < tx->len + len)
			cap *= 2;
		if (cap != tx->cap) {
			uint8_t *b = realloc(tx->buf, cap);
			if (!b) {
				free(frame);
				return -ENOMEM;
			}
			tx->buf = b;
			tx->cap = cap;
		}
	}
	memcpy(tx->buf + tx->len, frame, len);
	tx->len += len;
	free(frame);
	return 0;
}

int proto_tx_flush(int fd, struct proto_tx *tx)
{
	while (tx->off < tx->len) {
		ssize_t n =
		    send(fd, tx->buf + tx->off, tx->len - tx->off, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 1;
			return -errno;
		}
		tx->off += (size_t)n;
	}
	tx->off = tx->len = 0;
	return 0;
}

const char *proto_strerror(int err)
{
	switch (err) {
	case -EMSGSIZE:
		return "frame longer than the 1 MiB limit";
	case -EBADMSG:
		return "payload is not valid JSON";
	case -EPROTO:
		return "payload is not a JSON object";
	case -ETOOMANYREFS:
		return "more than 8 file descriptors with one frame";
	case -EPIPE:
		return "connection closed";
	case -ECONNRESET:
		return "connection closed in the middle of a frame";
	default:
		return strerror(-err);
	}
}
