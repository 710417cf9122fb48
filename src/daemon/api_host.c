/* The host resource: what this host is and offers (name, version, CPUs, memory, KVM, uptime). */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "daemon/api.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

/* {"available", "api_version", "reason"}: can this host run VMs? */
static json_t *kvm_info(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return json_pack("{s:b, s:n, s:s+}", "available", 0, "api_version", "reason",
				 "/dev/kvm: ", strerror(errno));
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	int e = errno;
	close(fd);
	if (v != KVM_API_VERSION)
		return json_pack("{s:b, s:o, s:s}", "available", 0, "api_version",
				 v < 0 ? json_null() : json_integer(v), "reason",
				 v < 0 ? strerror(e) : "unsupported KVM API version");
	return json_pack("{s:b, s:i, s:n}", "available", 1, "api_version", v, "reason");
}

void api_host_get(struct api_req *req, struct api_resp *resp)
{
	char host[256] = "";
	struct sysinfo si;
	struct timespec now;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (gethostname(host, sizeof(host) - 1) || sysinfo(&si)) {
		api_error(resp, 500, "internal", NULL, "cannot read host information: %s",
			  strerror(errno));
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	json_int_t up = (json_int_t)(now.tv_sec - req->ctx->started.tv_sec);
	resp->body = json_pack("{s:s, s:s, s:I, s:I, s:o, s:I}", "hostname", host, "version",
			       BERTH_VERSION, "cpus", (json_int_t)cpus, "memory_bytes",
			       (json_int_t)si.totalram * (json_int_t)si.mem_unit, "kvm", kvm_info(),
			       "uptime_seconds", up);
	if (!resp->body) {
		api_error(resp, 500, "internal", NULL, "out of memory");
		return;
	}
	resp->status = 200;
}
