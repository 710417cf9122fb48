/* Guest RAM: one anonymous mapping (THP), split into KVM regions around the PCI hole; checked gpa
 * access; the record of the VMM's own writes during a pre-copy. */
#include "vmm/memory.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Low RAM at 0, the rest above the PCI hole, both in the one mapping. */
static void set_regions(struct guest_mem *m, const struct mem_layout *l)
{
	m->regions[0] = (struct mem_region){0, l->low_ram, 0, m->base};
	m->nregions = 1;
	if (l->high_ram) {
		m->regions[1] = (struct mem_region){HIGHMEM_BASE, l->high_ram, l->low_ram,
						    m->base + l->low_ram};
		m->nregions = 2;
	}
}

int guest_mem_init(struct guest_mem *m, const struct mem_layout *l)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
	m->layout = *l;
	/* Anonymous private memory, so transparent huge pages back it (shmem THP is off by default
	 * on Linux): fewer TLB misses, and a guest buffer is physically contiguous, so one O_DIRECT
	 * request of 1 MiB stays one host I/O instead of exceeding the disk's segment limit. */
	void *p = mmap(NULL, l->ram_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	m->base = p;
	madvise(m->base, l->ram_bytes, MADV_HUGEPAGE); /* best effort */
	set_regions(m, l);
	return 0;
}

int guest_mem_init_file(struct guest_mem *m, const struct mem_layout *l, const char *path)
{
	memset(m, 0, sizeof(*m));
	m->layout = *l;
	m->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (m->fd < 0)
		return -errno;
	struct stat st;
	if (fstat(m->fd, &st) < 0 || (uint64_t)st.st_size != l->ram_bytes) {
		int e = errno ? -errno : -EINVAL;
		close(m->fd);
		m->fd = -1;
		return (uint64_t)st.st_size != l->ram_bytes ? -EINVAL : e;
	}
	void *p =
	    mmap(NULL, l->ram_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, m->fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(m->fd);
		m->fd = -1;
		return e;
	}
	m->base = p;
	set_regions(m, l);
	return 0;
}

int guest_mem_replace_file(struct guest_mem *m, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != m->layout.ram_bytes) {
		int e = errno && (uint64_t)st.st_size == m->layout.ram_bytes ? -errno : -EINVAL;
		close(fd);
		return e;
	}
	/* Same addresses, so KVM's memory slots stay; its MMU notifier drops the old pages. */
	void *p = mmap(m->base, m->layout.ram_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_NORESERVE | MAP_FIXED, fd, 0);
	if (p == MAP_FAILED) {
		int e = -errno;
		close(fd);
		return e;
	}
	if (m->fd >= 0)
		close(m->fd);
	m->fd = fd;
	return 0;
}

void guest_mem_destroy(struct guest_mem *m)
{
	free(m->dirty);
	m->dirty = NULL;
	if (m->base)
		munmap(m->base, m->layout.ram_bytes);
	if (m->fd >= 0)
		close(m->fd);
	m->base = NULL;
	m->fd = -1;
}

void *gpa_to_hva(const struct guest_mem *m, uint64_t gpa, uint64_t len)
{
	if (len == 0)
		len = 1;
	if (gpa + len < gpa)
		return NULL;
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct mem_region *r = &m->regions[i];
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->host + (gpa - r->gpa);
	}
	return NULL;
}

int guest_write(const struct guest_mem *m, uint64_t gpa, const void *src, size_t len)
{
	void *p = gpa_to_hva(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	guest_mem_mark_dirty(m, p, len);
	return 0;
}

int guest_read(const struct guest_mem *m, uint64_t gpa, void *dst, size_t len)
{
	void *p = gpa_to_hva(m, gpa, len);
	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int guest_zero(const struct guest_mem *m, uint64_t gpa, size_t len)
{
	void *p = gpa_to_hva(m, gpa, len);
	if (!p)
		return -EFAULT;
	memset(p, 0, len);
	guest_mem_mark_dirty(m, p, len);
	return 0;
}

static uint64_t bitmap_words(const struct guest_mem *m)
{
	return (m->layout.ram_bytes / 4096 + 63) / 64;
}

int guest_mem_track(struct guest_mem *m, bool on)
{
	if (on && !m->dirty && !(m->dirty = calloc(bitmap_words(m), sizeof(uint64_t))))
		return -ENOMEM;
	if (on)
		for (uint64_t i = 0; i < bitmap_words(m); i++)
			__atomic_store_n(&m->dirty[i], 0, __ATOMIC_RELAXED);
	/* Pair with the fence in guest_mem_mark_dirty: a write that missed the flag happened
	 * before the caller's next read of guest RAM. */
	__atomic_store_n(&m->tracking, on, __ATOMIC_SEQ_CST);
	return 0;
}

void guest_mem_mark_dirty(const struct guest_mem *m, const void *hva, size_t len)
{
	if (!len || !guest_mem_tracking(m))
		return;
	uint64_t off = (uint64_t)((const uint8_t *)hva - m->base);
	if ((const uint8_t *)hva < m->base || off >= m->layout.ram_bytes)
		return;
	uint64_t last =
	    off + len - 1 < m->layout.ram_bytes ? off + len - 1 : m->layout.ram_bytes - 1;
	for (uint64_t pg = off / 4096; pg <= last / 4096; pg++)
		__atomic_fetch_or(&m->dirty[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
}

void guest_mem_take_dirty(struct guest_mem *m, uint64_t *bitmap)
{
	if (!m->dirty)
		return;
	for (uint64_t i = 0; i < bitmap_words(m); i++)
		if (__atomic_load_n(&m->dirty[i], __ATOMIC_RELAXED))
			bitmap[i] |= __atomic_exchange_n(&m->dirty[i], 0, __ATOMIC_ACQ_REL);
}
