/* MSI-X: table/PBA emulation; each vector is a KVM MSI route plus an irqfd, so device threads
 * inject directly. */
#include "vmm/msix.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/b64.h"
#include "common/log.h"
#include "vmm/vm.h"

#define MSIX_CTRL_ENABLE 0x8000
#define MSIX_CTRL_FMASK 0x4000
#define ENTRY_MASKED 1u

static uint64_t entry_addr(const struct msix *m, unsigned v)
{
	const uint8_t *e = m->table + 16 * v;
	uint64_t lo = (uint32_t)(e[0] | e[1] << 8 | e[2] << 16 | (uint32_t)e[3] << 24);
	uint64_t hi = (uint32_t)(e[4] | e[5] << 8 | e[6] << 16 | (uint32_t)e[7] << 24);
	return lo | hi << 32;
}

static uint32_t entry_word(const struct msix *m, unsigned v, unsigned word)
{
	const uint8_t *e = m->table + 16 * v + 4 * word;
	return (uint32_t)(e[0] | e[1] << 8 | e[2] << 16 | (uint32_t)e[3] << 24);
}

static bool vector_masked(const struct msix *m, unsigned v)
{
	return m->fmask || (entry_word(m, v, 3) & ENTRY_MASKED);
}

static void fire(struct msix *m, unsigned v)
{
	uint64_t one = 1;
	if (write(m->efd[v], &one, sizeof(one)) != sizeof(one))
		log_warn(m->pci->name, "MSI-X vector %u: irqfd write failed: %s", v,
			 strerror(errno));
}

/* Bring the KVM route in line with the entry, then deliver what is pending and unmasked (lock
 * held). */
static void sync_vector(struct msix *m, unsigned v)
{
	if (vector_masked(m, v) || !m->enabled)
		return;
	uint64_t addr = entry_addr(m, v);
	uint32_t data = entry_word(m, v, 2);
	if (!m->routed[v] || m->routed_addr[v] != addr || m->routed_data[v] != data) {
		if (vm_set_msi_route(m->vm, m->gsi[v], addr, data) == 0) {
			m->routed[v] = true;
			m->routed_addr[v] = addr;
			m->routed_data[v] = data;
		}
	}
	if (m->pba & (1ULL << v)) {
		m->pba &= ~(1ULL << v);
		fire(m, v);
	}
}

int msix_init(struct msix *m, struct pci_device *pci, struct vm *vm, unsigned nvec, unsigned bar,
	      uint32_t table_off, uint32_t pba_off)
{
	memset(m, 0, sizeof(*m));
	for (unsigned v = 0; v < MSIX_MAX_VECTORS; v++)
		m->efd[v] = -1;
	if (nvec == 0 || nvec > MSIX_MAX_VECTORS || bar > 5 || (table_off & 7) || (pba_off & 7))
		return -EINVAL;
	m->pci = pci;
	m->vm = vm;
	m->nvec = nvec;
	pthread_mutex_init(&m->lock, NULL);
	int cap = pci_add_cap(pci, PCI_CAP_ID_MSIX, 12);
	if (cap < 0)
		return cap;
	m->cap = (unsigned)cap;
	pci_put16(pci, m->cap + 2, (uint16_t)(nvec - 1));
	pci->wmask[m->cap + 3] = 0xc0; /* enable, function mask */
	pci_put32(pci, m->cap + 4, table_off | bar);
	pci_put32(pci, m->cap + 8, pba_off | bar);
	for (unsigned v = 0; v < nvec; v++) {
		m->table[16 * v + 12] = ENTRY_MASKED; /* entries start masked */
		int g = vm_alloc_gsi(vm);
		if (g < 0)
			return g;
		m->gsi[v] = (unsigned)g;
		m->efd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->efd[v] < 0)
			return -errno;
		int r = vm_irqfd(vm, m->efd[v], m->gsi[v], true);
		if (r)
			return r;
	}
	return 0;
}

void msix_destroy(struct msix *m)
{
	for (unsigned v = 0; v < MSIX_MAX_VECTORS; v++) {
		if (m->efd[v] < 0)
			continue;
		vm_irqfd(m->vm, m->efd[v], m->gsi[v], false);
		close(m->efd[v]);
		m->efd[v] = -1;
	}
	if (m->pci)
		pthread_mutex_destroy(&m->lock);
}

uint64_t msix_table_read(struct msix *m, uint64_t off, unsigned size)
{
	if (off + size > 16ULL * m->nvec || (size != 4 && size != 8))
		return 0;
	pthread_mutex_lock(&m->lock);
	uint64_t v = 0;
	memcpy(&v, m->table + off, size);
	pthread_mutex_unlock(&m->lock);
	return v;
}

void msix_table_write(struct msix *m, uint64_t off, unsigned size, uint64_t val)
{
	if (off + size > 16ULL * m->nvec || (size != 4 && size != 8))
		return;
	pthread_mutex_lock(&m->lock);
	memcpy(m->table + off, &val, size);
	unsigned v = (unsigned)(off / 16);
	m->table[16 * v + 12] &= ENTRY_MASKED; /* vector control: only the mask bit exists */
	memset(m->table + 16 * v + 13, 0, 3);
	sync_vector(m, v);
	pthread_mutex_unlock(&m->lock);
}

uint64_t msix_pba_read(struct msix *m, uint64_t off, unsigned size)
{
	if (off + size > 8 * ((m->nvec + 63) / 64))
		return 0;
	pthread_mutex_lock(&m->lock);
	uint64_t v = m->pba >> (8 * off);
	pthread_mutex_unlock(&m->lock);
	return size == 8 ? v : v & ((1ULL << (8 * size)) - 1);
}

void msix_cfg_written(struct msix *m, unsigned off, unsigned size)
{
	if (off + size <= m->cap + 2 || off > m->cap + 3)
		return;
	uint16_t ctrl = pci_get16(m->pci, m->cap + 2);
	pthread_mutex_lock(&m->lock);
	m->enabled = ctrl & MSIX_CTRL_ENABLE;
	m->fmask = ctrl & MSIX_CTRL_FMASK;
	for (unsigned v = 0; v < m->nvec; v++)
		sync_vector(m, v);
	pthread_mutex_unlock(&m->lock);
}

bool msix_enabled(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	bool e = m->enabled;
	pthread_mutex_unlock(&m->lock);
	return e;
}

bool msix_notify(struct msix *m, unsigned vec)
{
	pthread_mutex_lock(&m->lock);
	if (!m->enabled) {
		pthread_mutex_unlock(&m->lock);
		return false;
	}
	if (vec < m->nvec) {
		if (vector_masked(m, vec))
			m->pba |= 1ULL << vec;
		else
			fire(m, vec);
	}
	pthread_mutex_unlock(&m->lock);
	return true;
}

/* ---- save/restore ---- */

json_t *msix_save(struct msix *m)
{
	pthread_mutex_lock(&m->lock);
	char *t = b64_encode(m->table, m->nvec * 16);
	json_t *o = t ? json_pack("{s:s,s:I,s:b,s:b}", "table", t, "pba", (json_int_t)m->pba,
				  "enabled", m->enabled, "function_mask", m->fmask)
		      : NULL;
	pthread_mutex_unlock(&m->lock);
	free(t);
	return o;
}

int msix_load(struct msix *m, json_t *o, char *msg, size_t msglen)
{
	size_t len = 0;
	const char *s = json_string_value(json_object_get(o, "table"));
	json_t *pba = json_object_get(o, "pba"), *en = json_object_get(o, "enabled"),
	       *fm = json_object_get(o, "function_mask");
	uint8_t *t = s ? b64_decode(s, &len) : NULL;
	if (!t || len != m->nvec * 16 || !json_is_integer(pba) || !json_is_boolean(en) ||
	    !json_is_boolean(fm)) {
		snprintf(msg, msglen,
			 "%s: MSI-X state: fields table (%u vectors), pba, enabled, "
			 "function_mask required",
			 m->pci->name, m->nvec);
		free(t);
		return -EINVAL;
	}
	pthread_mutex_lock(&m->lock);
	memcpy(m->table, t, len);
	m->pba =
	    (uint64_t)json_integer_value(pba) & (m->nvec >= 64 ? ~0ULL : (1ULL << m->nvec) - 1);
	m->enabled = json_is_true(en);
	m->fmask = json_is_true(fm);
	for (unsigned v = 0; v < m->nvec; v++) {
		m->routed[v] = false;
		sync_vector(m, v);
	}
	pthread_mutex_unlock(&m->lock);
	free(t);
	return 0;
}
