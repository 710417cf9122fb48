/* Guest RAM into a saved state's sparse memory file: whole while paused, or pre-copied while the
 * guest runs (KVM dirty log merged with the VMM's own writes), the rest while paused. */
#include "vmm/vmstate_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

#define TAG "vmstate"
#define PAGE 4096u
#define CHUNK (64u * 1024)
#define RUN_MAX_PAGES 256 /* one pwrite covers at most 1 MiB of contiguous dirty pages */

struct vmstate_mem {
	struct vm *vm;
	int fd;
	bool live;	   /* dirty logging and VMM-side tracking are on */
	bool finished;	   /* vmstate_mem_finish completed the file */
	uint64_t npages;   /* pages of RAM */
	uint64_t *pending; /* harvested pages not yet written (one bit per page) */
	struct vmstate_mem_stats st;
	char dir[4096];
	char path[4200];
};

static int write_range(int fd, const uint8_t *p, uint64_t off, uint64_t n)
{
	for (uint64_t done = 0; done < n;) {
		ssize_t w = pwrite(fd, p + done, n - done, (off_t)(off + done));
		if (w < 0 && errno != EINTR)
			return -errno;
		if (w > 0)
			done += (uint64_t)w;
	}
	return 0;
}

/* Every page that may hold data, in 64 KiB chunks; chunks that are all zero are left as holes. */
static int write_ram(struct vm *vm, int fd, uint64_t *bytes)
{
	uint64_t total = vm->mem.layout.ram_bytes;
	static const uint8_t zero[CHUNK];
	int r = 0;
	/* Anonymous RAM the guest never touched has no page at all: skip it without reading it (a
	 * restored VM's RAM is file-backed, where an absent page still has data in the file). */
	unsigned char *resident = NULL;
	if (vm->mem.fd < 0 && (resident = malloc(total / PAGE + 1)) &&
	    mincore(vm->mem.base, total, resident) < 0) {
		free(resident);
		resident = NULL;
	}
	for (uint64_t off = 0; !r && off < total; off += CHUNK) {
		const uint8_t *p = vm->mem.base + off;
		uint64_t n = total - off < CHUNK ? total - off : CHUNK;
		if (resident) {
			bool any = false;
			for (uint64_t pg = off / PAGE; pg < (off + n + PAGE - 1) / PAGE && !any;
			     pg++)
				any = resident[pg] & 1;
			if (!any)
				continue;
		}
		if (n == CHUNK && !memcmp(p, zero, n))
			continue;
		r = write_range(fd, p, off, n);
		*bytes += n;
	}
	free(resident);
	return r;
}

/* Write the pages set in s->pending (clearing them); contiguous pages go in one pwrite. */
static int write_pending(struct vmstate_mem *s, uint64_t *bytes)
{
	const uint8_t *base = s->vm->mem.base;
	uint64_t *bm = s->pending;
	for (uint64_t pg = 0; pg < s->npages;) {
		uint64_t w = bm[pg / 64] >> (pg % 64);
		if (!w) {
			pg = (pg / 64 + 1) * 64;
			continue;
		}
		pg += (uint64_t)__builtin_ctzll(w);
		uint64_t start = pg;
		while (pg < s->npages && pg - start < RUN_MAX_PAGES &&
		       (bm[pg / 64] >> (pg % 64) & 1)) {
			bm[pg / 64] &= ~(1ULL << (pg % 64));
			pg++;
		}
		if (pg == start)
			break; /* a bit beyond the last page */
		int r = write_range(s->fd, base + start * PAGE, start * PAGE, (pg - start) * PAGE);
		if (r)
			return r;
		*bytes += (pg - start) * PAGE;
	}
	return 0;
}

/* Move what KVM logged and what the VMM wrote since the last harvest into s->pending; returns the
 * number of pending pages or -errno. */
static int64_t harvest(struct vmstate_mem *s)
{
	int r = vm_dirty_log_get(s->vm, s->pending);
	if (r)
		return r;
	guest_mem_take_dirty(&s->vm->mem, s->pending);
	int64_t n = 0;
	for (uint64_t i = 0; i < (s->npages + 63) / 64; i++)
		n += __builtin_popcountll(s->pending[i]);
	return n;
}

static void tracking_off(struct vmstate_mem *s)
{
	if (!s->live)
		return;
	vm_dirty_log(s->vm, false);
	guest_mem_track(&s->vm->mem, false);
	s->live = false;
}

static int tracking_on(struct vmstate_mem *s)
{
	int r = guest_mem_track(&s->vm->mem, true);
	if (r)
		return r;
	if ((r = vm_dirty_log(s->vm, true))) {
		guest_mem_track(&s->vm->mem, false);
		return r;
	}
	s->live = true;
	return 0;
}

/* Why the rounds stop here (NULL: go on). rate: bytes per microsecond written and synced. */
static const char *stop_why(const struct vmstate_mem *s, uint64_t left, double rate,
			    unsigned stalled, uint64_t ms)
{
	if (left <= PRECOPY_SMALL_BYTES || (double)left / rate <= PRECOPY_TARGET_US)
		return "converged";
	if (s->st.rounds == PRECOPY_MAX_ROUNDS)
		return "round limit";
	if (stalled >= 3)
		return "no progress";
	if (ms >= PRECOPY_MAX_MS)
		return "time limit";
	return NULL;
}

/* First pass and dirty rounds while the guest runs; the last harvest stays in s->pending. Each
 * round ends with fdatasync: what is left for the pause is then only the last pages and their
 * sync, and the measured rate (write + sync) predicts how long that takes. */
static int precopy(struct vmstate_mem *s)
{
	uint64_t t0 = mono_ns(), bytes = 0;
	int r = write_ram(s->vm, s->fd, &bytes);
	if (!r && fdatasync(s->fd) < 0)
		r = -errno;
	if (r)
		return r;
	uint64_t t_rounds = mono_ns();
	/* Bytes per microsecond written and synced (the first pass, then the last round). */
	double rate = (double)bytes / ((double)(t_rounds - t0) / 1000.0 + 1.0);
	s->st.live_bytes = bytes;
	int64_t prev = -1;
	unsigned stalled = 0;
	for (;;) {
		int64_t n = harvest(s);
		if (n < 0)
			return (int)n;
		uint64_t left = (uint64_t)n * PAGE, now = mono_ns();
		/* A round that does not shrink the dirty set much means the guest writes about as
		 * fast as we do: more rounds would not make the pause shorter. */
		stalled = prev >= 0 && n > prev - prev / 8 ? stalled + 1 : 0;
		log_debug(TAG, "pre-copy round %u: %lld dirty pages (%.0f MB/s)", s->st.rounds,
			  (long long)n, rate);
		const char *why = stop_why(s, left, rate, stalled, (now - t_rounds) / 1000000);
		if (why) {
			log_debug(TAG, "pre-copy: %s, %llu KiB left for the pause", why,
				  (unsigned long long)(left >> 10));
			break;
		}
		prev = n;
		bytes = 0;
		if ((r = write_pending(s, &bytes)) || (fdatasync(s->fd) < 0 && (r = -errno)))
			return r;
		rate = (double)bytes / ((double)(mono_ns() - now) / 1000.0 + 1.0);
		s->st.live_bytes += bytes;
		s->st.rounds++;
	}
	s->st.live_ms = (mono_ns() - t0) / 1000000;
	return 0;
}

static void cleanup(struct vmstate_mem *s)
{
	if (s->fd >= 0) {
		close(s->fd);
		unlink(s->path);
	}
	rmdir(s->dir);
	s->fd = -1;
}

int vmstate_mem_begin(struct vm *vm, const char *dir, bool live, struct vmstate_mem **out,
		      char *msg, size_t msglen)
{
	*out = NULL;
	struct vmstate_mem *s = calloc(1, sizeof(*s));
	uint64_t ram = vm->mem.layout.ram_bytes;
	if (s)
		s->npages = ram / PAGE;
	if (!s || !(s->pending = calloc((s->npages + 63) / 64, sizeof(uint64_t)))) {
		free(s);
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	s->vm = vm;
	s->fd = -1;
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	snprintf(s->path, sizeof(s->path), "%s/memory", dir);
	if (mkdir(dir, 0700) < 0) {
		int e = errno;
		snprintf(msg, msglen, "'%s': %s", dir,
			 e == EEXIST ? "already exists (save into a new directory)" : strerror(e));
		free(s->pending);
		free(s);
		return -e;
	}
	int r = 0;
	s->fd = open(s->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (s->fd < 0 || ftruncate(s->fd, (off_t)ram) < 0)
		r = -errno;
	if (!r && live && (r = tracking_on(s))) {
		log_warn(TAG, "no dirty logging (%s): the whole memory is written while paused",
			 strerror(-r));
		r = 0;
	}
	if (!r && s->live) {
		s->st.precopy = true;
		if ((r = precopy(s)))
			tracking_off(s);
	}
	if (r) {
		snprintf(msg, msglen, "'%s': %s", s->path, strerror(-r));
		cleanup(s);
		free(s->pending);
		free(s);
		return r;
	}
	if (s->live)
		log_debug(TAG, "pre-copy: %llu MiB in %llu ms, %u rounds",
			  (unsigned long long)(s->st.live_bytes >> 20),
			  (unsigned long long)s->st.live_ms, s->st.rounds);
	vm->precopy = s;
	*out = s;
	return 0;
}

int vmstate_mem_finish(struct vmstate_mem *s, const char *dir, char *msg, size_t msglen)
{
	uint64_t t0 = mono_ns(), bytes = 0;
	int r = 0;
	if (strcmp(dir, s->dir)) {
		snprintf(msg, msglen, "'%s': a pre-copy into '%s' is in progress", dir, s->dir);
		return -EBUSY;
	}
	if (!s->live) {
		r = write_ram(s->vm, s->fd, &bytes);
	} else {
		int64_t n = harvest(s);
		r = n < 0 ? (int)n : write_pending(s, &bytes);
	}
	uint64_t tw = mono_ns();
	if (!r && fsync(s->fd) < 0)
		r = -errno;
	log_debug(TAG, "final pass: %llu KiB written in %llu us, fsync %llu us",
		  (unsigned long long)(bytes >> 10), (unsigned long long)((tw - t0) / 1000),
		  (unsigned long long)((mono_ns() - tw) / 1000));
	s->st.paused_bytes = bytes;
	s->st.paused_us = (mono_ns() - t0) / 1000;
	if (r)
		snprintf(msg, msglen, "'%s': %s", s->path, strerror(-r));
	s->finished = !r;
	return r;
}

void vmstate_mem_end(struct vmstate_mem *s, bool keep)
{
	if (!s)
		return;
	tracking_off(s);
	if (s->vm->precopy == s)
		s->vm->precopy = NULL;
	/* A save that failed after its memory was complete (state.json, an overlay) leaves the
	 * directory as a save without pre-copy would. */
	if (keep || s->finished)
		close(s->fd);
	else
		cleanup(s);
	free(s->pending);
	free(s);
}

const struct vmstate_mem_stats *vmstate_mem_stats(const struct vmstate_mem *s)
{
	return &s->st;
}

json_t *vmstate_mem_report(const struct vmstate_mem *s)
{
	return json_pack("{s:b,s:i,s:I,s:I,s:I}", "precopy", s->st.precopy, "rounds",
			 (int)s->st.rounds, "live_bytes", (json_int_t)s->st.live_bytes, "live_ms",
			 (json_int_t)s->st.live_ms, "paused_bytes", (json_int_t)s->st.paused_bytes);
}

int vmstate_mem_write(struct vm *vm, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	uint64_t bytes = 0;
	int r = ftruncate(fd, (off_t)vm->mem.layout.ram_bytes) < 0 ? -errno : 0;
	if (!r)
		r = write_ram(vm, fd, &bytes);
	if (!r && fsync(fd) < 0)
		r = -errno;
	close(fd);
	return r;
}
