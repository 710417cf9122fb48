/* Test tool: drive berth's block layer (raw and qcow2 drivers) on an image file from the command
 * line — writes, verified reads, discard, zeroing, flush — so system tests can check the result
 * with qemu-img and berth-img. Usage: blk-io [--format F] [--direct] IMAGE OP...; OP is one of
 *   write:OFF:LEN:BYTE[:STEP:COUNT]  read:OFF:LEN:BYTE[:STEP:COUNT] (verify)  discard:OFF:LEN
 *   zero:OFF:LEN   flush   crash (exit at once: no flush, no metadata write-back)
 * with OFF, LEN and STEP as sizes (K/M/G suffixes), BYTE a number (0xaa); STEP and COUNT repeat
 * the operation COUNT times, STEP bytes apart. Exit 0, or 1 with a message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "common/util.h"

struct waiter {
	struct blk_aio aio;
	int res;
	bool done;
};

static void on_done(struct blk_aio *a, int res)
{
	struct waiter *w = (struct waiter *)a;
	w->res = res;
	w->done = true;
}

/* Submit one operation and reap completions until it is done. */
static int run(struct blk *b, struct io_uring *ring, bool flush, bool write, uint64_t off,
	       uint8_t *buf, uint64_t len)
{
	struct waiter w = {.aio.done = on_done};
	struct iovec iov = {buf, len};
	int r = flush ? b->drv->submit_flush(b, ring, &w.aio)
		      : b->drv->submit_rw(b, ring, &w.aio, write, off, &iov, 1, len);
	if (r)
		return r;
	while (!w.done) {
		struct io_uring_cqe *cqe;
		io_uring_submit(ring);
		if ((r = io_uring_wait_cqe(ring, &cqe)))
			return r;
		blk_aio_complete(cqe);
		io_uring_cqe_seen(ring, cqe);
	}
	if (w.res < 0)
		return w.res;
	return !flush && (uint64_t)w.res != len ? -EIO : 0;
}

static int op(struct blk *b, struct io_uring *ring, char *spec)
{
	char *f[6] = {0};
	unsigned n = 0;
	for (char *save = NULL, *t = strtok_r(spec, ":", &save); t && n < 6;
	     t = strtok_r(NULL, ":", &save))
		f[n++] = t;
	uint64_t off = 0, len = 0;
	if (!strcmp(f[0], "flush"))
		return run(b, ring, true, false, 0, NULL, 0);
	if (!strcmp(f[0], "crash"))
		_exit(0);
	if (n < 3 || parse_size(f[1], &off) || parse_size(f[2], &len) || !len)
		return -EINVAL;
	if (!strcmp(f[0], "discard"))
		return b->drv->discard(b, off, len);
	if (!strcmp(f[0], "zero"))
		return b->drv->write_zeroes(b, off, len, true);
	bool write = !strcmp(f[0], "write");
	if ((!write && strcmp(f[0], "read")) || n < 4)
		return -EINVAL;
	unsigned long byte = strtoul(f[3], NULL, 0);
	uint64_t step = 0, count = 1;
	if (n == 6 && (parse_size(f[4], &step) || parse_u64(f[5], &count)))
		return -EINVAL;
	uint8_t *buf;
	if (posix_memalign((void **)&buf, 4096, len))
		return -ENOMEM;
	int r = 0;
	for (uint64_t k = 0; k < count && !r; k++, off += step) {
		memset(buf, write ? (int)byte : ~(int)byte, len);
		r = run(b, ring, false, write, off, buf, len);
		for (uint64_t i = 0; !r && !write && i < len; i++)
			if (buf[i] != (uint8_t)byte) {
				fprintf(stderr, "blk-io: byte %llu is 0x%02x, expected 0x%02lx\n",
					(unsigned long long)(off + i), buf[i], byte);
				r = -EILSEQ;
			}
	}
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	enum blk_format fmt = BLK_FMT_AUTO;
	bool direct = false;
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--direct"))
			direct = true;
		else if (!strcmp(argv[i], "--format") && i + 1 < argc &&
			 !blk_format_parse(argv[i + 1], &fmt))
			i++;
		else
			return fprintf(stderr, "blk-io: bad option '%s'\n", argv[i]), 1;
	}
	if (i >= argc)
		return fprintf(stderr, "usage: blk-io [--format F] [--direct] IMAGE OP...\n"), 1;
	struct blk b;
	struct io_uring ring;
	char msg[600];
	const char *path = argv[i];
	if (blk_open(&b, path, fmt, false, direct, msg, sizeof(msg)))
		return fprintf(stderr, "blk-io: %s\n", msg), 1;
	if (io_uring_queue_init(64, &ring, 0))
		return fprintf(stderr, "blk-io: io_uring_queue_init failed\n"), 1;
	int status = 0;
	for (i++; i < argc && !status; i++) {
		char spec[256];
		snprintf(spec, sizeof(spec), "%s", argv[i]);
		int r = op(&b, &ring, spec);
		if (r) {
			fprintf(stderr, "blk-io: %s: %s\n", argv[i], strerror(-r));
			status = 1;
		}
	}
	io_uring_queue_exit(&ring);
	if (blk_close(&b)) {
		fprintf(stderr, "blk-io: closing %s failed\n", path);
		status = 1;
	}
	return status;
}
