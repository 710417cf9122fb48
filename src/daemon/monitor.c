/* Supervision of the VMMs: one epoll thread reading their control-socket events and exits. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common/log.h"
#include "daemon/spawn.h"
#include "daemon/vmctl_int.h"

#define TAG "monitor"
/* A VMM whose connection ended without a shutdown event and that lives on this long is killed. */
#define EOF_GRACE_MS 5000

/* The state a VMM's shutdown reason leaves its VM in. */
static void final_state(const struct vmrt *rt, const char **state, const char **reason)
{
	const char *r = rt->exit_reason;
	if (rt->killed) {
		*state = "off";
		*reason = "killed";
	} else if (!rt->shutdown_seen) {
		*state = "crashed";
		*reason = "vmm-died";
	} else if (!strcmp(r, "saved")) {
		*state = "saved";
		*reason = "saved";
	} else if (!strcmp(r, "quit")) {
		*state = "off";
		*reason = rt->quit_reason[0] ? rt->quit_reason : "turned-off";
	} else if (!strcmp(r, "poweroff") || !strcmp(r, "timeout") || !strcmp(r, "signal") ||
		   !strcmp(r, "reboot")) {
		*state = "off";
		*reason = r;
	} else {
		*state = "crashed"; /* crash, kvm-error, vmm-error, or one berthd does not know */
		*reason = r[0] ? r : "vmm-error";
	}
}

static void drop_conn(struct vmctl *vc, struct vmrt *rt)
{
	if (rt->conn < 0)
		return;
	epoll_ctl(vc->epfd, EPOLL_CTL_DEL, rt->conn, NULL);
	close(rt->conn);
	rt->conn = -1;
	proto_rx_reset(&rt->rx);
}

static void on_event(struct vmctl *vc, struct vmrt *rt, json_t *msg)
{
	const char *ev = json_string_value(json_object_get(msg, "event"));
	json_t *data = json_object_get(msg, "data");
	if (!ev)
		return; /* a reply: berthd sends no requests on this connection after the first */
	log_debug(TAG, "VM %s: event %s", rt->name, ev);
	if (!strcmp(ev, "shutdown")) {
		rt->shutdown_seen = true;
		snprintf(rt->exit_reason, sizeof(rt->exit_reason), "%s",
			 json_string_value(json_object_get(data, "reason")) ?: "");
		rt->exit_status = (int)json_integer_value(json_object_get(data, "exit_status"));
		pthread_cond_broadcast(&vc->cond);
	} else if (rt->phase == PH_ACTIVE && !strcmp(ev, "paused") &&
		   strcmp(rt->state, "stopping")) {
		vc_set_state(vc, rt, "paused", "user", false, NULL);
	} else if (rt->phase == PH_ACTIVE && !strcmp(ev, "resumed") &&
		   strcmp(rt->state, "stopping")) {
		vc_set_state(vc, rt, "running", "resumed", false, NULL);
	} else if (!strcmp(ev, "reset")) {
		log_info(TAG, "VM %s: the guest rebooted", rt->name);
	}
}

static void on_conn(struct vmctl *vc, struct vmrt *rt)
{
	for (int i = 0; i < 32 && rt->conn >= 0; i++) {
		int fds[PROTO_MAX_FDS];
		unsigned nfds = 0;
		json_t *msg = NULL;
		int r = proto_recv(rt->conn, &rt->rx, &msg, fds, &nfds);
		for (unsigned k = 0; k < nfds; k++)
			close(fds[k]);
		if (r == PROTO_NEED_MORE)
			return;
		if (r == PROTO_MESSAGE) {
			on_event(vc, rt, msg);
			json_decref(msg);
			continue;
		}
		if (!rt->shutdown_seen) {
			log_warn(TAG,
				 "VM %s: the VMM's control connection ended (%s) without a "
				 "shutdown event",
				 rt->name, proto_strerror(r));
			rt->eof_ms = vc_now_ms();
		}
		drop_conn(vc, rt);
	}
}

/* The VMM process is gone: settle the VM's state (a start in progress settles its own). */
static void on_exit_(struct vmctl *vc, struct vmrt *rt)
{
	const char *state, *reason;
	if (rt->conn >= 0)
		on_conn(vc, rt); /* the last frames, the shutdown event among them */
	drop_conn(vc, rt);
	epoll_ctl(vc->epfd, EPOLL_CTL_DEL, rt->pidfd, NULL);
	close(rt->pidfd);
	rt->pidfd = -1;
	enum rt_phase phase = rt->phase;
	rt->phase = PH_NONE;
	final_state(rt, &state, &reason);
	log_info(TAG, "VM %s: VMM %d exited (%s%s%s)", rt->name, (int)rt->pid,
		 rt->shutdown_seen ? "shutdown " : "no shutdown event",
		 rt->shutdown_seen ? rt->exit_reason : "", rt->killed ? ", killed" : "");
	if (phase == PH_ACTIVE) {
		json_t *x = json_pack("{s:i}", "pid", (int)rt->pid);
		if (x && rt->shutdown_seen) {
			json_object_set_new(x, "vmm_exit_reason", json_string(rt->exit_reason));
			json_object_set_new(x, "exit_status", json_integer(rt->exit_status));
		}
		rt->pid = 0;
		vc_set_state(vc, rt, state, reason, false, x);
		json_decref(x);
	} else {
		rt->pid = 0;
	}
	pthread_cond_broadcast(&vc->cond);
}

/* VMMs that hung up without saying why and still live after a grace period are killed. */
static void check_deadlines(struct vmctl *vc)
{
	int64_t now = vc_now_ms();
	for (struct vmrt *rt = vc->vms; rt; rt = rt->next) {
		if (rt->phase == PH_ACTIVE && rt->conn < 0 && rt->eof_ms &&
		    now - rt->eof_ms > EOF_GRACE_MS && !rt->killed) {
			log_warn(TAG, "VM %s: VMM %d no longer answers: killing it", rt->name,
				 (int)rt->pid);
			pidfd_kill(rt->pidfd, SIGKILL); /* not marked killed: this is a crash */
			rt->eof_ms = 0;
		}
	}
}

static void *monitor_main(void *arg)
{
	struct vmctl *vc = arg;
	struct epoll_event evs[32];
	for (;;) {
		int n = epoll_wait(vc->epfd, evs, 32, 250);
		if (n < 0 && errno != EINTR) {
			log_err(TAG, "epoll: %s", strerror(errno));
			break;
		}
		pthread_mutex_lock(&vc->lock);
		if (vc->stopping) {
			pthread_mutex_unlock(&vc->lock);
			break;
		}
		/* a pidfd handled first would close the connection whose last frames wait */
		for (int pass = 0; pass < 2; pass++)
			for (int i = 0; i < n; i++) {
				struct mon_watch *w = evs[i].data.ptr;
				if (w->is_conn == (pass == 0) && w->rt)
					(pass == 0 ? on_conn : on_exit_)(vc, w->rt);
			}
		check_deadlines(vc);
		pthread_mutex_unlock(&vc->lock);
	}
	return NULL;
}

int monitor_start(struct vmctl *vc)
{
	int r;
	if ((vc->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		return -errno;
	if ((r = pthread_create(&vc->mon, NULL, monitor_main, vc)))
		return -r;
	vc->mon_started = true;
	return 0;
}

void monitor_join(struct vmctl *vc)
{
	if (vc->mon_started)
		pthread_join(vc->mon, NULL);
	vc->mon_started = false;
}

int monitor_add_pid(struct vmctl *vc, struct vmrt *rt)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rt->wpid};
	rt->wpid = (struct mon_watch){rt, false};
	return epoll_ctl(vc->epfd, EPOLL_CTL_ADD, rt->pidfd, &ev) ? -errno : 0;
}

int monitor_add_conn(struct vmctl *vc, struct vmrt *rt, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &rt->wconn};
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK))
		return -errno;
	rt->wconn = (struct mon_watch){rt, true};
	proto_rx_init(&rt->rx);
	if (epoll_ctl(vc->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	rt->conn = fd;
	rt->eof_ms = 0;
	return 0;
}

void monitor_kill(struct vmctl *vc, struct vmrt *rt)
{
	(void)vc;
	if (rt->pidfd < 0)
		return;
	log_warn(TAG, "VM %s: killing VMM %d", rt->name, (int)rt->pid);
	rt->killed = true;
	pidfd_kill(rt->pidfd, SIGKILL);
}
