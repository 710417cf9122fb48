/* Saved VM state: a directory with config.json (the VM's configuration), state.json (versioned,
 * checksummed JSON: vCPUs, irqchip, PIT, clock, UARTs, PM, every device) and memory (the guest RAM,
 * sparse). Save runs on a paused VM with quiesced devices; restore maps memory lazily. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/b64.h"
#include "common/log.h"
#include "common/util.h"
#include "vmm/vcpu_state.h"
#include "vmm/virtio_devices.h"
#include "vmm/virtio_pci.h"
#include "vmm/vmstate.h"
#include "vmm/vmstate_mem.h"

#define TAG "vmstate"
#define STATE_MAX_BYTES (64u << 20)

/* CRC-32 (IEEE 802.3, reflected): the state file's checksum. */
static uint32_t crc32_ieee(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t c = 0xffffffffu;
	for (size_t i = 0; i < len; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = c >> 1 ^ (0xedb88320u & (0u - (c & 1)));
	}
	return ~c;
}

static uint32_t json_crc(json_t *o)
{
	char *s = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
	uint32_t c = s ? crc32_ieee(s, strlen(s)) : 0;
	free(s);
	return c;
}

static json_t *blob(const void *p, size_t len)
{
	char *b = b64_encode(p, len);
	json_t *j = b ? json_string(b) : NULL;
	free(b);
	return j;
}

static int unblob(json_t *j, void *dst, size_t len)
{
	size_t got = 0;
	uint8_t *b = json_is_string(j) ? b64_decode(json_string_value(j), &got) : NULL;
	int r = b && got == len ? 0 : -EINVAL;
	if (!r)
		memcpy(dst, b, len);
	free(b);
	return r;
}

static size_t xsave_size(struct vm *vm)
{
	int x2 = ioctl(vm->host->fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return x2 > (int)sizeof(struct kvm_xsave) ? (size_t)x2 : sizeof(struct kvm_xsave);
}

/* ---- save ---- */

static json_t *save_irqchip(struct vm *vm)
{
	json_t *o = json_object();
	static const char *const names[] = {"pic_master", "pic_slave", "ioapic"};
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip c = {.chip_id = i};
		if (ioctl(vm->fd, KVM_GET_IRQCHIP, &c) < 0) {
			json_decref(o);
			return NULL;
		}
		json_object_set_new(o, names[i], blob(&c.chip, sizeof(c.chip)));
	}
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clk = {0};
	if (ioctl(vm->fd, KVM_GET_PIT2, &pit) < 0 || ioctl(vm->fd, KVM_GET_CLOCK, &clk) < 0) {
		json_decref(o);
		return NULL;
	}
	json_object_set_new(o, "pit", blob(&pit, sizeof(pit)));
	json_object_set_new(o, "kvmclock", json_integer((json_int_t)clk.clock));
	return o;
}

static json_t *save_machine(struct vm *vm, char *msg, size_t msglen)
{
	uint32_t *msrs;
	unsigned nmsrs;
	int r = kvm_msr_list(vm->host->fd, &msrs, &nmsrs);
	if (r) {
		snprintf(msg, msglen, "cannot list the vCPUs' MSRs: %s", strerror(-r));
		return NULL;
	}
	json_t *m = json_object(), *vcpus = json_array(), *devs = json_array(), *com = json_array();
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu_state s;
		if ((r = vcpu_state_get(&vm->vcpus[i], msrs, nmsrs, &s))) {
			snprintf(msg, msglen, "vCPU %u: cannot read its state: %s", i,
				 strerror(-r));
			vcpu_state_free(&s);
			goto fail;
		}
		json_array_append_new(vcpus, vcpu_state_to_json(&s));
		vcpu_state_free(&s);
	}
	json_t *irq = save_irqchip(vm);
	if (!irq) {
		snprintf(msg, msglen, "cannot read the irqchip, PIT or clock: %s", strerror(errno));
		goto fail;
	}
	for (unsigned i = 0; i < 2; i++)
		json_array_append_new(com,
				      vm->com_present[i] ? serial_save(&vm->com[i]) : json_null());
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		json_t *d = virtio_pci_save(vm->virtio[i]);
		if (!d) {
			snprintf(msg, msglen, "%s: cannot save its state", vm->virtio[i]->tag);
			json_decref(irq);
			goto fail;
		}
		json_object_set_new(d, "slot", json_integer(vm->virtio[i]->pci.slot));
		json_array_append_new(devs, d);
	}
	json_object_set_new(m, "vcpus", vcpus);
	json_object_set_new(m, "irqchip", irq);
	json_object_set_new(m, "serial", com);
	json_object_set_new(m, "pm", pm_save(&vm->pm));
	json_object_set_new(m, "devices", devs);
	json_object_set_new(m, "xsave_size", json_integer((json_int_t)xsave_size(vm)));
	json_object_set_new(m, "memory",
			    json_pack("{s:s,s:I}", "file", "memory", "bytes",
				      (json_int_t)vm->mem.layout.ram_bytes));
	free(msrs);
	return m;
fail:
	free(msrs);
	json_decref(m);
	json_decref(vcpus);
	json_decref(devs);
	json_decref(com);
	return NULL;
}

/* The saved configuration must not depend on the directory berth-vmm ran in. */
static void absolute_path(json_t *o, const char *key)
{
	const char *p = json_string_value(json_object_get(o, key));
	char *abs = p && p[0] != '/' ? realpath(p, NULL) : NULL;
	if (abs)
		json_object_set_new(o, key, json_string(abs));
	free(abs);
}

static void absolute_paths(json_t *cfg)
{
	absolute_path(cfg, "kernel");
	absolute_path(cfg, "initrd");
	size_t i;
	json_t *d;
	json_array_foreach(json_object_get(cfg, "disks"), i, d) absolute_path(d, "path");
	absolute_path(cfg, "checkpoint_dir");
}

int vmstate_write_json(const char *dir, const char *name, json_t *o)
{
	char tmp[4200], path[4200];
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	char *s = json_dumps(o, JSON_INDENT(1) | JSON_SORT_KEYS);
	if (!s)
		return -ENOMEM;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600), r = 0;
	if (fd < 0)
		r = -errno;
	else if ((r = write_all(fd, s, strlen(s))) == 0 && fsync(fd) < 0)
		r = -errno;
	if (fd >= 0)
		close(fd);
	free(s);
	if (!r && rename(tmp, path) < 0)
		r = -errno;
	return r;
}

/* Write the state of a paused VM with quiesced devices into dir (created here). */
static int save_quiesced(struct vm *vm, const char *dir, char *msg, size_t msglen)
{
	uint64_t t0 = mono_ns();
	if (!vm->precopy && mkdir(dir, 0700) < 0) { /* a pre-copy made it */
		int e = errno;
		snprintf(msg, msglen, "'%s': %s", dir,
			 e == EEXIST ? "already exists (save into a new directory)" : strerror(e));
		return -e;
	}
	json_t *m = save_machine(vm, msg, msglen), *cfg = NULL;
	int r = m ? 0 : -EIO;
	char path[4200];
	snprintf(path, sizeof(path), "%s/memory", dir);
	if (!r && vm->precopy)
		r = vmstate_mem_finish(vm->precopy, dir, msg, msglen);
	else if (!r && (r = vmstate_mem_write(vm, path)))
		snprintf(msg, msglen, "'%s': %s", path, strerror(-r));
	char *cfgtext = r ? NULL : config_to_json(vm->cfg);
	if (!r && !(cfg = cfgtext ? json_loads(cfgtext, 0, NULL) : NULL))
		r = -ENOMEM;
	free(cfgtext);
	if (!r) {
		absolute_paths(cfg);
		/* how this run started is not part of the VM: a restore runs unless asked */
		json_object_del(cfg, "start_paused");
		/* nor are the descriptors it was handed: a restore gets its own --fd-map */
		json_object_del(cfg, "fd_map");
	}
	if (!r) {
		json_t *doc = json_pack("{s:s,s:i,s:o}", "format", VMSTATE_FORMAT, "version",
					VMSTATE_VERSION, "machine", json_incref(m));
		char crc[16];
		snprintf(crc, sizeof(crc), "%08x", json_crc(m));
		json_object_set_new(doc, "crc32", json_string(crc));
		if ((r = vmstate_write_json(dir, "config.json", cfg)) ||
		    (r = vmstate_write_json(dir, "state.json", doc)))
			snprintf(msg, msglen, "'%s': %s", dir, strerror(-r));
		json_decref(doc);
	}
	json_decref(cfg);
	json_decref(m);
	if (!r)
		log_info(TAG, "saved to %s in %llu ms", dir,
			 (unsigned long long)((mono_ns() - t0) / 1000000));
	return r;
}

int vmstate_save(struct vm *vm, const char *dir, char *msg, size_t msglen)
{
	/* The caller paused the vCPUs: quiesce the devices, so memory is final. */
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_quiesce(vm->virtio[i]);
	int r = save_quiesced(vm, dir, msg, msglen);
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_unquiesce(vm->virtio[i]);
	return r;
}

void vmstate_set_disk_path(struct vm *vm, unsigned k, const char *path, enum blk_format fmt)
{
	/* The configuration is the VM's record of its disks: a later save must name the image the
	 * disk uses now. (It is const for everything else.) */
	for (unsigned c = 0, w = 0; c < vm->cfg->ndisks; c++) {
		struct disk_cfg *dc = (struct disk_cfg *)&vm->cfg->disks[c];
		if (dc->readonly || w++ != k)
			continue;
		char *copy = strdup(path);
		if (copy) {
			free(dc->path);
			dc->path = copy;
			dc->format = fmt;
		}
		return;
	}
}

int vmstate_checkpoint(struct vm *vm, const char *dir, json_t *overlays, json_t **disks, char *msg,
		       size_t msglen)
{
	unsigned nw = 0;
	for (unsigned i = 0; i < vm->nvirtio; i++)
		nw += virtio_blk_is(vm->virtio[i]) && virtio_blk_writable(vm->virtio[i]);
	if (json_array_size(overlays) != nw) {
		snprintf(msg, msglen, "%u overlay path(s) given, the VM has %u writable disk(s)",
			 (unsigned)json_array_size(overlays), nw);
		return -EINVAL;
	}
	for (size_t k = 0; k < nw; k++) {
		const char *p = json_string_value(json_array_get(overlays, k));
		if (!p || !*p || access(p, F_OK) == 0) {
			snprintf(msg, msglen, "overlays[%zu]: %s", k,
				 !p || !*p ? "must be a file name" : "already exists");
			return -EINVAL;
		}
	}
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_quiesce(vm->virtio[i]);
	int r = dir ? save_quiesced(vm, dir, msg, msglen) : 0;
	*disks = json_array();
	for (unsigned i = 0, k = 0; !r && i < vm->nvirtio; i++) {
		struct virtio_pci *vp = vm->virtio[i];
		if (!virtio_blk_is(vp) || !virtio_blk_writable(vp))
			continue;
		const char *ov = json_string_value(json_array_get(overlays, k));
		unsigned d = k++;
		char *below = realpath(virtio_blk_disk(vp)->path, NULL);
		if ((r = virtio_blk_push_overlay(vp, ov, msg, msglen))) {
			free(below);
			break;
		}
		json_array_append_new(
		    *disks, json_pack("{s:s,s:s}", "image", ov, "backing", below ? below : ""));
		vmstate_set_disk_path(vm, d, ov, BLK_FMT_QCOW2);
		free(below);
	}
	for (unsigned i = 0; i < vm->nvirtio; i++)
		virtio_pci_unquiesce(vm->virtio[i]);
	return r;
}

/* ---- restore ---- */

int vmstate_read(const char *dir, struct vmstate **out, char *msg, size_t msglen)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/state.json", dir);
	uint8_t *data;
	size_t len;
	*out = NULL;
	int r = read_file(path, STATE_MAX_BYTES, &data, &len);
	if (r) {
		snprintf(msg, msglen, "'%s': %s", path,
			 r == -EFBIG ? "larger than 64 MiB" : strerror(-r));
		return r;
	}
	json_error_t je;
	json_t *doc = json_loadb((const char *)data, len, 0, &je);
	free(data);
	if (!doc) {
		snprintf(msg, msglen,
			 "'%s': not valid JSON (line %d: %s); the file is truncated or "
			 "corrupt",
			 path, je.line, je.text);
		return -EINVAL;
	}
	const char *fmt = json_string_value(json_object_get(doc, "format"));
	json_t *ver = json_object_get(doc, "version"), *m = json_object_get(doc, "machine");
	const char *crc = json_string_value(json_object_get(doc, "crc32"));
	char want[16];
	if (!fmt || strcmp(fmt, VMSTATE_FORMAT)) {
		snprintf(msg, msglen, "'%s': not a berth VM state (field 'format')", path);
		r = -EINVAL;
	} else if (!json_is_integer(ver) || json_integer_value(ver) != VMSTATE_VERSION) {
		snprintf(msg, msglen, "'%s': state version %lld; this berth-vmm reads version %d",
			 path, json_is_integer(ver) ? (long long)json_integer_value(ver) : -1LL,
			 VMSTATE_VERSION);
		r = -EINVAL;
	} else if (!json_is_object(m) || !crc ||
		   (snprintf(want, sizeof(want), "%08x", json_crc(m)), strcmp(want, crc))) {
		snprintf(msg, msglen,
			 "'%s': checksum mismatch (field 'crc32'): the state is corrupt", path);
		r = -EINVAL;
	}
	json_t *mem = json_object_get(m, "memory");
	json_t *bytes = json_object_get(mem, "bytes");
	struct stat st;
	snprintf(path, sizeof(path), "%s/memory", dir);
	if (!r && (!json_is_integer(bytes) || stat(path, &st) < 0 ||
		   (uint64_t)st.st_size != (uint64_t)json_integer_value(bytes))) {
		snprintf(msg, msglen, "'%s': %s", path,
			 errno == ENOENT ? "missing"
					 : "size does not match the saved RAM size (truncated?)");
		r = -EINVAL;
	}
	if (r) {
		json_decref(doc);
		return r;
	}
	struct vmstate *s = calloc(1, sizeof(*s));
	if (!s) {
		json_decref(doc);
		return -ENOMEM;
	}
	s->doc = doc;
	s->machine = m;
	s->ram_bytes = (uint64_t)json_integer_value(bytes);
	snprintf(s->memory_path, sizeof(s->memory_path), "%s", path);
	*out = s;
	return 0;
}

void vmstate_free(struct vmstate *s)
{
	if (!s)
		return;
	json_decref(s->doc);
	free(s);
}

static int load_irqchip(struct vm *vm, json_t *o, char *msg, size_t msglen)
{
	static const char *const names[] = {"pic_master", "pic_slave", "ioapic"};
	for (unsigned i = 0; i < 3; i++) {
		struct kvm_irqchip c = {.chip_id = i};
		if (unblob(json_object_get(o, names[i]), &c.chip, sizeof(c.chip))) {
			snprintf(msg, msglen, "field 'irqchip.%s': missing or wrong size",
				 names[i]);
			return -EINVAL;
		}
		if (ioctl(vm->fd, KVM_SET_IRQCHIP, &c) < 0) {
			snprintf(msg, msglen, "restoring the %s: %s", names[i], strerror(errno));
			return -errno;
		}
	}
	struct kvm_pit_state2 pit;
	if (unblob(json_object_get(o, "pit"), &pit, sizeof(pit))) {
		snprintf(msg, msglen, "field 'irqchip.pit': missing or wrong size");
		return -EINVAL;
	}
	if (ioctl(vm->fd, KVM_SET_PIT2, &pit) < 0) {
		snprintf(msg, msglen, "restoring the PIT: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

int vmstate_apply(struct vm *vm, const struct vmstate *s, char *msg, size_t msglen)
{
	json_t *m = s->machine, *vcpus = json_object_get(m, "vcpus"),
	       *devs = json_object_get(m, "devices"), *com = json_object_get(m, "serial");
	json_t *xs = json_object_get(m, "xsave_size");
	int r;
	if (!json_is_array(vcpus) || json_array_size(vcpus) != vm->ncpus) {
		snprintf(msg, msglen, "field 'vcpus': %zu saved, the configuration has %u",
			 json_array_size(vcpus), vm->ncpus);
		return -EINVAL;
	}
	if (!json_is_integer(xs) || (size_t)json_integer_value(xs) != xsave_size(vm)) {
		snprintf(msg, msglen,
			 "field 'xsave_size': saved on a host with another XSAVE size");
		return -EINVAL;
	}
	if (!json_is_array(devs) || json_array_size(devs) != vm->nvirtio) {
		snprintf(msg, msglen, "field 'devices': %zu saved, the configuration has %u",
			 json_array_size(devs), vm->nvirtio);
		return -EINVAL;
	}
	if ((r = load_irqchip(vm, json_object_get(m, "irqchip"), msg, msglen)))
		return r;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		struct vcpu_state st;
		char sub[200];
		r = vcpu_state_from_json(json_array_get(vcpus, i), xsave_size(vm), &st, sub,
					 sizeof(sub));
		if (r) {
			snprintf(msg, msglen, "vcpus[%u]: %s", i, sub);
		} else if ((r = vcpu_state_set(&vm->vcpus[i], &st))) {
			snprintf(msg, msglen, "vcpus[%u]: KVM refused the saved state", i);
		}
		vcpu_state_free(&st);
		if (r)
			return r;
	}
	for (unsigned i = 0; i < 2; i++) {
		json_t *c = json_array_get(com, i);
		if (vm->com_present[i] && json_is_object(c) &&
		    (r = serial_load(&vm->com[i], c, msg, msglen)))
			return r;
	}
	if ((r = pm_load(&vm->pm, json_object_get(m, "pm"), msg, msglen)))
		return r;
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		json_t *d = json_array_get(devs, i);
		json_t *slot = json_object_get(d, "slot");
		if (!json_is_integer(slot) || json_integer_value(slot) != vm->virtio[i]->pci.slot) {
			snprintf(msg, msglen, "devices[%u]: saved in another PCI slot", i);
			return -EINVAL;
		}
		if ((r = virtio_pci_load(vm->virtio[i], d, msg, msglen)))
			return r;
	}
	/* The guest clock continues from the saved value (kvmclock stays monotonic). */
	json_t *clk = json_object_get(json_object_get(m, "irqchip"), "kvmclock");
	struct kvm_clock_data cd = {.clock = (uint64_t)json_integer_value(clk)};
	if (!json_is_integer(clk) || ioctl(vm->fd, KVM_SET_CLOCK, &cd) < 0) {
		snprintf(msg, msglen, "restoring the guest clock: %s",
			 json_is_integer(clk) ? strerror(errno)
					      : "field 'irqchip.kvmclock' missing");
		return -EINVAL;
	}
	return 0;
}
