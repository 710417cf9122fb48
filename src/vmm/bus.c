/* PIO/MMIO buses: a sorted array of registered ranges, binary-searched on every access. */
#include "vmm/bus.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void bus_init(struct bus *b, const char *name)
{
	memset(b, 0, sizeof(*b));
	b->name = name;
	pthread_rwlock_init(&b->lock, NULL);
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	b->ranges = NULL;
	b->count = b->cap = 0;
	pthread_rwlock_destroy(&b->lock);
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	if (!len || base + len - 1 < base)
		return -EINVAL;
	pthread_rwlock_wrlock(&b->lock);
	int r = 0;
	unsigned pos = 0;
	while (pos < b->count && b->ranges[pos].base < base)
		pos++;
	if (pos > 0) {
		const struct bus_range *prev = &b->ranges[pos - 1];
		if (prev->base + prev->len - 1 >= base) {
			r = -EEXIST;
			goto out;
		}
	}
	if (pos < b->count && base + len - 1 >= b->ranges[pos].base) {
		r = -EEXIST;
		goto out;
	}
	if (b->count == b->cap) {
		unsigned ncap = b->cap ? b->cap * 2 : 16;
		struct bus_range *n = realloc(b->ranges, ncap * sizeof(*n));
		if (!n) {
			r = -ENOMEM;
			goto out;
		}
		b->ranges = n;
		b->cap = ncap;
	}
	memmove(&b->ranges[pos + 1], &b->ranges[pos], (b->count - pos) * sizeof(*b->ranges));
	b->ranges[pos] = (struct bus_range){base, len, ops, opaque, name};
	b->count++;
out:
	pthread_rwlock_unlock(&b->lock);
	return r;
}

int bus_unregister(struct bus *b, uint64_t base, void *opaque)
{
	int r = -ENOENT;
	pthread_rwlock_wrlock(&b->lock);
	for (unsigned i = 0; i < b->count; i++) {
		if (b->ranges[i].base == base && b->ranges[i].opaque == opaque) {
			memmove(&b->ranges[i], &b->ranges[i + 1],
				(b->count - i - 1) * sizeof(*b->ranges));
			b->count--;
			r = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&b->lock);
	return r;
}

static const struct bus_range *find_locked(const struct bus *b, uint64_t addr)
{
	unsigned lo = 0, hi = b->count;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		const struct bus_range *r = &b->ranges[mid];
		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

bool bus_find(struct bus *b, uint64_t addr, struct bus_range *out)
{
	pthread_rwlock_rdlock(&b->lock);
	const struct bus_range *r = find_locked(b, addr);
	if (r)
		*out = *r;
	pthread_rwlock_unlock(&b->lock);
	return r != NULL;
}

bool bus_access(struct bus *b, uint64_t addr, unsigned size, bool is_write, uint64_t *val)
{
	struct bus_range range;
	const struct bus_range *r = &range;
	if (!bus_find(b, addr, &range)) {
		__atomic_add_fetch(&b->unhandled, 1, __ATOMIC_RELAXED);
		log_debug(b->name, "unclaimed %s addr=0x%llx size=%u", is_write ? "write" : "read",
			  (unsigned long long)addr, size);
		if (!is_write)
			*val = size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
		return false;
	}
	if (is_write) {
		if (r->ops->write)
			r->ops->write(r->opaque, addr - r->base, size, *val);
	} else {
		*val = r->ops->read ? r->ops->read(r->opaque, addr - r->base, size) : 0;
	}
	return true;
}
