/* user_virtio.c — ring-3 virtio workloads: rng reads with checks, MSI-X wait in user mode. */
#include "guest.h"
#include "virtio.h"

uint64_t u_irq_wait(uint64_t arg)
{
	struct irq_job *job = (struct irq_job *)arg;
	struct vq_buf b = {(uint64_t)job->buf, sizeof(job->buf), 1};

	if (vq_add(job->vq, &b, 1, 0, job->token) < 0)
		return 2;
	vq_kick(job->vq);
	while (*job->counter == job->before) {
		if (vq_rdtsc() > job->deadline)
			return 1;
		job->spins++;
	}
	return 0;
}

/* Request sizes and how each is split into buffers (a chain, or an indirect table). */
static const uint32_t sizes[4] = {1, 7, 64, 4096};
static const uint32_t nsegs[4] = {1, 2, 3, 4};

static uint64_t ones64(uint64_t x)
{
	x = x - ((x >> 1) & 0x5555555555555555ULL);
	x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
	x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (x * 0x0101010101010101ULL) >> 56;
}

/* Prepare slot `s` for a request of size class `c`: zero the buffer, canary after it, post. */
static int post(struct rng_job *job, unsigned int s, unsigned int c)
{
	uint8_t *p = job->buf + (uint64_t)s * RNG_SLOT_SIZE;
	uint32_t size = sizes[c], n = nsegs[c], off = 0;
	struct vq_buf b[4];

	for (uint32_t i = 0; i < size; i++)
		p[i] = 0;
	for (uint32_t i = size; i < size + 64; i++)
		p[i] = RNG_CANARY;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t len = k + 1 < n ? size / n : size - off;

		b[k] = (struct vq_buf){(uint64_t)(p + off), len, 1};
		off += len;
	}
	return vq_add(job->vq, b, n, job->indirect, (uint64_t)s << 8 | c) < 0 ? -1 : 0;
}

static int check(struct rng_job *job, uint64_t token, uint32_t len)
{
	unsigned int s = token >> 8, c = token & 0xff;
	const uint8_t *p;

	if (s >= RNG_SLOTS || c >= 4) {
		job->fail_token = token;
		return RNG_FAIL_TOKEN;
	}
	p = job->buf + (uint64_t)s * RNG_SLOT_SIZE;
	if (len == 0 || len > sizes[c]) {
		job->fail_len = len;
		job->fail_cap = sizes[c];
		return RNG_FAIL_LEN;
	}
	for (uint32_t i = sizes[c]; i < sizes[c] + 64; i++)
		if (p[i] != RNG_CANARY) {
			job->fail_len = i;
			return RNG_FAIL_CANARY;
		}
	if (len < sizes[c])
		job->short_reads++;
	if (!job->bytes)
		job->first = p[0];
	for (uint32_t i = 0; i < len; i++) {
		job->ones += ones64(p[i]);
		job->differ |= p[i] != job->first;
	}
	job->bytes += len;
	job->requests++;
	job->by_size[c]++;
	return 0;
}

/* Keep up to `depth` requests in flight, cycling through the sizes, until want_bytes arrived.
 * Returns 0 or a RNG_FAIL_* code (also in job->fail). */
uint64_t u_rng_job(uint64_t arg)
{
	struct rng_job *job = (struct rng_job *)arg;
	uint32_t free_slots = (1u << RNG_SLOTS) - 1, inflight = 0, c = 0;
	uint64_t posted = 0;

	while (job->bytes < job->want_bytes || inflight) {
		int added = 0;

		while (inflight < job->depth && free_slots && posted < job->want_bytes) {
			unsigned int s = __builtin_ctz(free_slots);

			if (post(job, s, c) < 0)
				break;
			free_slots &= ~(1u << s);
			inflight++;
			posted += sizes[c];
			c = (c + 1) & 3;
			added = 1;
		}
		if (added)
			vq_kick(job->vq);
		if (!inflight) {
			if (job->bytes >= job->want_bytes)
				break;
			if (posted < job->want_bytes)
				return job->fail = RNG_FAIL_ADD; /* nothing could be posted */
			posted = job->bytes;			 /* short reads: ask for the rest */
			continue;
		}
		for (;;) {
			uint64_t token;
			uint32_t len;
			int r = vq_get(job->vq, &len, &token);

			if (r < 0)
				return job->fail = RNG_FAIL_RING;
			if (!r)
				break;
			r = check(job, token, len);
			if (r)
				return job->fail = r;
			free_slots |= 1u << (token >> 8);
			inflight--;
		}
		if (vq_rdtsc() > job->deadline)
			return job->fail = RNG_FAIL_TIMEOUT;
	}
	return 0;
}
