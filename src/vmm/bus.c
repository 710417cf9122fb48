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
}

void bus_destroy(struct bus *b)
{
	free(b->ranges);
	b->ranges = NULL;
	b->count = b->cap = 0;
}

int bus_register(struct bus *b, uint64_t base, uint64_t len, const struct bus_ops *ops,
		 void *opaque, const char *name)
{
	if (!len || base + len - 1 < base)
		return -EINVAL;
	unsigned pos = 0;
	while (pos < b->count && b->ranges[pos].base < base)
		pos++;
	if (pos > 0) {
		const struct bus_range *prev = &b->ranges[pos - 1];
		if (prev->base + prev->len - 1 >= base)
			return -EEXIST;
	}
	if (pos < b->count && base + len - 1 >= b->ranges[pos].base)
		return -EEXIST;
	if (b->count == b->cap) {
		unsigned ncap = b->cap ? b->cap * 2 : 16;
		struct bus_range *n = realloc(b->ranges, ncap * sizeof(*n));
		if (!n)
			return -ENOMEM;
		b->ranges = n;
		b->cap = ncap;
	}
	memmove(&b->ranges[pos + 1], &b->ranges[pos], (b->count - pos) * sizeof(*b->ranges));
	b->ranges[pos] = (struct bus_range){base, len, ops, opaque, name};
	b->count++;
	return 0;
}

const struct bus_range *bus_find(const struct bus *b, uint64_t addr)
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

bool bus_access(struct bus *b, uint64_t addr, unsigned size, bool is_write, uint64_t *val)
{
	const struct bus_range *r = bus_find(b, addr);
	if (!r) {
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
