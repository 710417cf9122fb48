/* The qcow2 consistency check of berth-img, from the specification: count the references to every
 * cluster of the file (header, L1/L2 tables, data, refcount table and blocks, snapshots, bitmaps),
 * then compare them with the stored refcounts and the COPIED flags. Nothing is written. */
#include "img/check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What a cluster is used for; a cluster may collect several (that is an overlap). */
enum use {
	U_HEADER = 1 << 0,
	U_L1 = 1 << 1,
	U_L2 = 1 << 2,
	U_DATA = 1 << 3,
	U_REFTABLE = 1 << 4,
	U_REFBLOCK = 1 << 5,
	U_SNAPTABLE = 1 << 6,
	U_SNAP_L1 = 1 << 7,
	U_BITMAP = 1 << 8,
	U_CRYPTO = 1 << 9,
};
static const char *const use_names[] = {
    "header",	      "L1 table",	"L2 table",	     "data",   "refcount table",
    "refcount block", "snapshot table", "snapshot L1 table", "bitmap", "encryption header",
};
/* Only L2 tables (internal snapshots) and data clusters may legitimately be shared. */
#define U_SHAREABLE (U_L2 | U_DATA)

enum rb_state { RB_ZERO, RB_LOADED, RB_BAD };

struct ck {
	int fd;
	const struct qm_header *h;
	struct check_result *res;
	check_report_fn fn;
	void *ctx;
	unsigned cb;
	uint64_t cs;
	uint64_t file_size, file_clusters;
	uint64_t n; /* clusters tracked: the file's, plus one a region may end in */
	uint32_t *refs;
	uint16_t *uses;
	uint64_t *rt; /* refcount table, host order */
	uint64_t rt_entries;
	uint8_t **rb; /* refcount blocks of the first nrb reftable entries (those for the file) */
	uint8_t *rb_state;
	uint64_t nrb;
	unsigned rb_bits;  /* log2 refcounts per block */
	uint8_t *l2;	   /* one L2 table */
	unsigned l2_shift; /* log2 bytes per L2 entry: 3, or 4 with extended L2 entries */
	bool data_file;	   /* guest data lives in an external file: not refcounted here */
	uint64_t next_contig;
};

static void say(struct ck *k, enum check_msg kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(struct ck *k, enum check_msg kind, const char *fmt, ...)
{
	char text[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (kind == CHECK_CORRUPTION)
		k->res->corruptions++;
	else if (kind == CHECK_LEAK)
		k->res->leaks++;
	else
		k->res->check_errors++;
	if (k->fn)
		k->fn(k->ctx, kind, text);
}

#define ULL(x) ((unsigned long long)(x))

/* "L2 table and data" for a set of uses. */
static void describe_uses(unsigned uses, char *buf, size_t len)
{
	size_t p = 0;
	buf[0] = 0;
	for (unsigned i = 0; i < sizeof(use_names) / sizeof(use_names[0]); i++) {
		if (!(uses & (1u << i)))
			continue;
		int n = snprintf(buf + p, len - p, "%s%s", p ? " and " : "", use_names[i]);
		if (n < 0 || (size_t)n >= len - p)
			break;
		p += (size_t)n;
	}
}

static bool overlapping(unsigned uses, uint32_t refs)
{
	return (uses & (uses - 1)) || ((uses & ~U_SHAREABLE) && refs > 1);
}

/* One reference from a structure to every cluster that [off, off+len) touches. */
static void ref(struct ck *k, uint64_t off, uint64_t len, unsigned use, const char *what)
{
	if (!len)
		return;
	if (off >= QCOW2_MAX_OFFSET || len > QCOW2_MAX_OFFSET ||
	    (off + len > k->file_size && off + len - k->file_size >= k->cs)) {
		say(k, CHECK_CORRUPTION,
		    "%s at offset 0x%llx (%llu bytes) lies past the end of the file (%llu bytes)",
		    what, ULL(off), ULL(len), ULL(k->file_size));
		return;
	}
	for (uint64_t c = off >> k->cb; c <= (off + len - 1) >> k->cb; c++) {
		if (k->refs[c] < UINT32_MAX)
			k->refs[c]++;
		k->uses[c] |= (uint16_t)use;
	}
}

static uint64_t rc_decode(const uint8_t *blk, uint64_t i, unsigned order)
{
	unsigned bits = 1u << order;
	if (bits >= 8) {
		const uint8_t *p = blk + (i << order) / 8;
		uint64_t v = 0;
		for (unsigned j = 0; j < bits / 8; j++)
			v = v << 8 | p[j];
		return v;
	}
	unsigned per = 8 / bits; /* refcounts per byte, bit 0 is the least significant */
	return (blk[i / per] >> ((i % per) * bits)) & ((1u << bits) - 1);
}

/* The stored refcount of cluster c; -EINVAL if its refcount block's offset is not aligned, -EIO
 * if the block could not be read. */
static int stored(struct ck *k, uint64_t c, uint64_t *rc)
{
	uint64_t rti = c >> k->rb_bits, i = c & ((1ULL << k->rb_bits) - 1);
	*rc = 0;
	if (rti >= k->rt_entries)
		return 0;
	uint64_t off = k->rt[rti] & QM_REFT_OFFSET_MASK;
	if (!off)
		return 0;
	if (off & (k->cs - 1))
		return -EINVAL;
	if (rti < k->nrb) {
		if (k->rb_state[rti] == RB_BAD)
			return -EIO;
		if (k->rb_state[rti] == RB_LOADED)
			*rc = rc_decode(k->rb[rti], i, k->h->refcount_order);
		return 0;
	}
	/* A cluster far past the end of the file (a corrupt reference): read just its entry. */
	uint8_t tmp[8];
	int r = qm_pread_pad(k->fd, tmp, sizeof(tmp), off + ((i << k->h->refcount_order) >> 3));
	if (r)
		return r;
	*rc = rc_decode(tmp, k->h->refcount_order < 3 ? i & ((8u >> k->h->refcount_order) - 1) : 0,
			k->h->refcount_order);
	return 0;
}

/* The refcount table and the blocks that describe the file's clusters, as stored. */
static int load_refcounts(struct ck *k)
{
	const struct qm_header *h = k->h;
	uint64_t bytes = (uint64_t)h->reftable_clusters * k->cs;
	uint8_t *raw = malloc(bytes);
	k->rt_entries = bytes / 8;
	k->rt = calloc(k->rt_entries, sizeof(*k->rt));
	if (!raw || !k->rt) {
		free(raw);
		return -ENOMEM;
	}
	int r = qm_pread_pad(k->fd, raw, bytes, h->reftable_offset);
	if (r) {
		free(raw);
		say(k, CHECK_ERROR, "cannot read the refcount table at 0x%llx: %s",
		    ULL(h->reftable_offset), strerror(-r));
		return r;
	}
	for (uint64_t i = 0; i < k->rt_entries; i++)
		k->rt[i] = be64_get(raw + 8 * i);
	free(raw);
	k->nrb = ((k->n - 1) >> k->rb_bits) + 1;
	if (k->nrb > k->rt_entries)
		k->nrb = k->rt_entries;
	k->rb = calloc(k->nrb ? k->nrb : 1, sizeof(*k->rb));
	k->rb_state = calloc(k->nrb ? k->nrb : 1, 1);
	if (!k->rb || !k->rb_state)
		return -ENOMEM;
	for (uint64_t i = 0; i < k->nrb; i++) {
		uint64_t off = k->rt[i] & QM_REFT_OFFSET_MASK;
		if (!off || (off >> k->cb) >= k->file_clusters)
			continue; /* none, or past the end of the file: reads as zeroes */
		if (off & (k->cs - 1)) {
			k->rb_state[i] = RB_BAD;
			continue;
		}
		if (!(k->rb[i] = malloc(k->cs)))
			return -ENOMEM;
		if ((r = qm_pread_pad(k->fd, k->rb[i], k->cs, off))) {
			say(k, CHECK_ERROR, "cannot read refcount block %llu at 0x%llx: %s", ULL(i),
			    ULL(off), strerror(-r));
			k->rb_state[i] = RB_BAD;
			continue;
		}
		k->rb_state[i] = RB_LOADED;
	}
	return 0;
}

/* COPIED must be set exactly when the stored refcount is one. */
static void check_copied(struct ck *k, uint64_t off, bool copied, const char *what, uint64_t entry)
{
	uint64_t rc;
	if (stored(k, off >> k->cb, &rc))
		return; /* reported when the refcounts are compared */
	if ((rc == 1) != copied)
		say(k, CHECK_CORRUPTION,
		    "%s (entry 0x%016llx): the COPIED flag is %s but the refcount of cluster %llu "
		    "is %llu",
		    what, ULL(entry), copied ? "set" : "clear", ULL(off >> k->cb), ULL(rc));
}

/* Count what one L2 table references. active: reachable from the active L1 table (COPIED flags
 * and allocation statistics are checked there only). */
static void walk_l2(struct ck *k, uint64_t l2off, bool active, const char *where, uint64_t l1i)
{
	char what[160];
	int r = qm_pread_pad(k->fd, k->l2, k->cs, l2off);
	if (r) {
		say(k, CHECK_ERROR, "%s: cannot read L2 table %llu at 0x%llx: %s", where, ULL(l1i),
		    ULL(l2off), strerror(-r));
		return;
	}
	uint64_t entries = k->cs >> k->l2_shift;
	k->next_contig = 0; /* fragmentation is counted within each L2 table */
	for (uint64_t i = 0; i < entries; i++) {
		uint64_t e = be64_get(k->l2 + (i << k->l2_shift));
		if (!e)
			continue;
		uint64_t guest = (l1i * entries + i) << k->cb;
		snprintf(what, sizeof(what), "%s: L2 entry for guest offset 0x%llx", where,
			 ULL(guest));
		if (e & QCOW2_OFLAG_COMPRESSED) {
			unsigned x = 62 - (k->cb - 8);
			uint64_t coff = e & ((1ULL << x) - 1);
			uint64_t sectors = ((e >> x) & ((1ULL << (k->cb - 8)) - 1)) + 1;
			if (e & QCOW2_OFLAG_COPIED)
				say(k, CHECK_CORRUPTION,
				    "%s (0x%016llx): compressed cluster with the COPIED flag set",
				    what, ULL(e));
			ref(k, coff, sectors * 512 - (coff & 511), U_DATA, what);
			if (active) {
				k->res->allocated_clusters++;
				k->res->compressed_clusters++;
				k->res->fragmented_clusters++; /* sector granularity: never
								  contiguous */
			}
			continue;
		}
		if (e & QM_L2E_RESERVED)
			say(k, CHECK_CORRUPTION, "%s (0x%016llx): reserved bits are set", what,
			    ULL(e));
		uint64_t off = e & QCOW2_OFFSET_MASK;
		if (!off)
			continue; /* unallocated, or reads as zeroes without a host cluster */
		if (off & (k->cs - 1))
			say(k, CHECK_CORRUPTION,
			    "%s (0x%016llx): data cluster offset 0x%llx is not cluster-aligned",
			    what, ULL(e), ULL(off));
		if (active) {
			k->res->allocated_clusters++;
			if (k->next_contig && off != k->next_contig)
				k->res->fragmented_clusters++;
			k->next_contig = off + k->cs;
		}
		if (k->data_file)
			continue; /* clusters of the external data file have no refcounts */
		if (active)
			check_copied(k, off, e & QCOW2_OFLAG_COPIED, what, e);
		ref(k, off, k->cs, U_DATA, what);
	}
}

/* Count what an L1 table (active or a snapshot's) and its L2 tables reference. */
static int walk_l1(struct ck *k, uint64_t l1off, uint32_t l1_size, bool active, const char *where)
{
	char what[160];
	snprintf(what, sizeof(what), "%s: L1 table", where);
	ref(k, l1off, (uint64_t)l1_size * 8, active ? U_L1 : U_SNAP_L1, what);
	if (!l1_size)
		return 0;
	uint8_t *raw = malloc((size_t)l1_size * 8);
	if (!raw)
		return -ENOMEM;
	int r = qm_pread_pad(k->fd, raw, (size_t)l1_size * 8, l1off);
	if (r) {
		say(k, CHECK_ERROR, "%s: cannot read the L1 table at 0x%llx: %s", where, ULL(l1off),
		    strerror(-r));
		free(raw);
		return 0;
	}
	for (uint64_t i = 0; i < l1_size; i++) {
		uint64_t e = be64_get(raw + 8 * i);
		if (!e)
			continue;
		snprintf(what, sizeof(what), "%s: L1 entry %llu", where, ULL(i));
		if (e & QM_L1E_RESERVED)
			say(k, CHECK_CORRUPTION, "%s (0x%016llx): reserved bits are set", what,
			    ULL(e));
		uint64_t l2off = e & QCOW2_OFFSET_MASK;
		if (!l2off)
			continue;
		ref(k, l2off, k->cs, U_L2, what);
		if (l2off & (k->cs - 1))
			say(k, CHECK_CORRUPTION,
			    "%s (0x%016llx): L2 table offset 0x%llx is not cluster-aligned", what,
			    ULL(e), ULL(l2off));
		if (active)
			check_copied(k, l2off, e & QCOW2_OFLAG_COPIED, what, e);
		walk_l2(k, l2off, active, where, i);
	}
	free(raw);
	return 0;
}

static int walk_snapshots(struct ck *k)
{
	const struct qm_header *h = k->h;
	struct qm_snapshot *s;
	uint64_t bytes;
	char msg[300], where[200];
	if (!h->nb_snapshots)
		return 0;
	int r = qm_read_snapshots(k->fd, h, &s, &bytes, msg, sizeof(msg));
	if (r) {
		say(k, CHECK_ERROR, "snapshot table: %s", msg);
		return r;
	}
	for (uint32_t i = 0; i < h->nb_snapshots && !r; i++) {
		snprintf(where, sizeof(where), "snapshot %s ('%.100s')", s[i].id, s[i].name);
		r = walk_l1(k, s[i].l1_offset, s[i].l1_size, false, where);
	}
	qm_free_snapshots(s, h->nb_snapshots);
	ref(k, h->snapshots_offset, bytes, U_SNAPTABLE, "the snapshot table");
	return r;
}

/* Bitmaps count only while the autoclear bit says they are consistent (otherwise their clusters
 * are leaks, as the specification says the data must not be trusted). */
static int walk_bitmaps(struct ck *k)
{
	const struct qm_header *h = k->h;
	struct qm_bitmap *b;
	char msg[300], what[200];
	if (!h->has_bitmaps || !(h->autoclear & QCOW2_AUTOCLEAR_BITMAPS))
		return 0;
	if (qm_read_bitmaps(k->fd, h, &b, msg, sizeof(msg))) {
		say(k, CHECK_ERROR, "bitmaps: %s", msg);
		return 0;
	}
	ref(k, h->bitmap_dir_offset, h->bitmap_dir_size, U_BITMAP, "the bitmap directory");
	int r = 0;
	for (uint32_t i = 0; i < h->nb_bitmaps && !r; i++) {
		uint64_t n = b[i].table_size;
		snprintf(what, sizeof(what), "bitmap '%.100s': table", b[i].name);
		ref(k, b[i].table_offset, n * 8, U_BITMAP, what);
		uint8_t *t = malloc(n ? n * 8 : 1);
		if (!t) {
			r = -ENOMEM;
			break;
		}
		if ((r = qm_pread_pad(k->fd, t, n * 8, b[i].table_offset))) {
			say(k, CHECK_ERROR, "%s: cannot read it: %s", what, strerror(-r));
			free(t);
			r = 0;
			continue;
		}
		for (uint64_t j = 0; j < n; j++) {
			uint64_t off = be64_get(t + 8 * j) & QCOW2_OFFSET_MASK;
			if (!off)
				continue;
			snprintf(what, sizeof(what), "bitmap '%.100s': data cluster %llu",
				 b[i].name, ULL(j));
			if (off & (k->cs - 1))
				say(k, CHECK_CORRUPTION, "%s at 0x%llx is not cluster-aligned",
				    what, ULL(off));
			ref(k, off, k->cs, U_BITMAP, what);
		}
		free(t);
	}
	qm_free_bitmaps(b, h->nb_bitmaps);
	return r;
}

/* The refcount table and blocks reference themselves; each block must be used exactly once. */
static void walk_refcounts(struct ck *k)
{
	char what[120];
	ref(k, k->h->reftable_offset, (uint64_t)k->h->reftable_clusters * k->cs, U_REFTABLE,
	    "the refcount table");
	for (uint64_t i = 0; i < k->rt_entries; i++) {
		uint64_t off = k->rt[i] & QM_REFT_OFFSET_MASK;
		if (!off)
			continue;
		if (off & (k->cs - 1)) {
			say(k, CHECK_CORRUPTION,
			    "refcount table entry %llu (0x%016llx): refcount block offset is not "
			    "cluster-aligned",
			    ULL(i), ULL(k->rt[i]));
			continue;
		}
		if ((off >> k->cb) >= k->file_clusters) {
			say(k, CHECK_CORRUPTION,
			    "refcount block %llu at 0x%llx lies past the end of the file (%llu "
			    "bytes)",
			    ULL(i), ULL(off), ULL(k->file_size));
			continue;
		}
		snprintf(what, sizeof(what), "refcount block %llu", ULL(i));
		ref(k, off, k->cs, U_REFBLOCK, what);
		uint64_t c = off >> k->cb;
		if (k->refs[c] != 1) {
			char uses[200];
			describe_uses(k->uses[c], uses, sizeof(uses));
			say(k, CHECK_CORRUPTION,
			    "refcount block %llu at 0x%llx: its cluster has %u references (used as "
			    "%s)",
			    ULL(i), ULL(off), k->refs[c], uses);
		}
	}
}

/* Stored refcounts against counted references, cluster by cluster. */
static void compare(struct ck *k)
{
	uint64_t highest = 0;
	for (uint64_t c = 0; c < k->n; c++) {
		uint32_t refs = k->refs[c];
		uint64_t rc;
		if (c >= k->file_clusters && !refs)
			continue; /* past the end of the file and unused */
		int r = stored(k, c, &rc);
		if (r) {
			say(k, CHECK_ERROR,
			    "cannot read the refcount of cluster %llu: refcount block %llu "
			    "(0x%016llx) "
			    "%s",
			    ULL(c), ULL(c >> k->rb_bits), ULL(k->rt[c >> k->rb_bits]),
			    r == -EINVAL ? "is not cluster-aligned" : "could not be read");
			continue;
		}
		if (rc || refs)
			highest = c;
		char uses[200], note[240] = "";
		if (overlapping(k->uses[c], refs)) {
			describe_uses(k->uses[c], uses, sizeof(uses));
			snprintf(note, sizeof(note), " (overlap: used as %s)", uses);
		}
		if (rc < refs)
			say(k, CHECK_CORRUPTION,
			    "cluster %llu (offset 0x%llx): refcount %llu is lower than its %u "
			    "reference(s)%s",
			    ULL(c), ULL(c << k->cb), ULL(rc), refs, note);
		else if (rc > refs)
			say(k, CHECK_LEAK,
			    "cluster %llu (offset 0x%llx): refcount %llu but %u reference(s): "
			    "leaked",
			    ULL(c), ULL(c << k->cb), ULL(rc), refs);
		else if (note[0] && !(k->uses[c] & U_REFBLOCK))
			say(k, CHECK_CORRUPTION, "cluster %llu (offset 0x%llx): metadata overlap%s",
			    ULL(c), ULL(c << k->cb), note);
	}
	k->res->image_end_offset = (highest + 1) << k->cb;
}

int qcow2_check(int fd, const struct qm_header *h, struct check_result *res, check_report_fn fn,
		void *ctx)
{
	struct ck k = {.fd = fd, .h = h, .res = res, .fn = fn, .ctx = ctx};
	struct stat st;
	int r = 0;
	memset(res, 0, sizeof(*res));
	k.cb = h->cluster_bits;
	k.cs = h->cluster_size;
	k.rb_bits = k.cb + 3 - h->refcount_order;
	k.l2_shift = (h->incompat & QCOW2_INCOMPAT_EXTL2) ? 4 : 3;
	k.data_file = h->incompat & QCOW2_INCOMPAT_DATA_FILE;
	res->total_clusters = (h->size + k.cs - 1) >> k.cb;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		say(&k, CHECK_ERROR, "cannot stat the image: %s", strerror(-r));
		return r;
	}
	k.file_size = (uint64_t)st.st_size;
	if (S_ISBLK(st.st_mode)) { /* a block device's size is where it ends */
		off_t end = lseek(fd, 0, SEEK_END);
		k.file_size = end > 0 ? (uint64_t)end : 0;
	}
	k.file_clusters = (k.file_size + k.cs - 1) >> k.cb;
	k.n = k.file_clusters + 1;
	k.refs = calloc(k.n, sizeof(*k.refs));
	k.uses = calloc(k.n, sizeof(*k.uses));
	k.l2 = malloc(k.cs);
	if (!k.refs || !k.uses || !k.l2) {
		r = -ENOMEM;
		goto out;
	}
	if ((r = load_refcounts(&k)))
		goto out;
	ref(&k, 0, k.cs, U_HEADER, "the header");
	if ((r = walk_l1(&k, h->l1_offset, h->l1_size, true, "active")) ||
	    (r = walk_snapshots(&k)) || (r = walk_bitmaps(&k)))
		goto out;
	if (h->has_crypto)
		ref(&k, h->crypto_offset, h->crypto_length, U_CRYPTO, "the encryption header");
	walk_refcounts(&k);
	compare(&k);
out:
	if (r == -ENOMEM)
		say(&k, CHECK_ERROR, "out of memory (the file has %llu clusters)",
		    ULL(k.file_clusters));
	free(k.refs);
	free(k.uses);
	free(k.l2);
	free(k.rt);
	for (uint64_t i = 0; k.rb && i < k.nrb; i++)
		free(k.rb[i]);
	free(k.rb);
	free(k.rb_state);
	return r;
}
