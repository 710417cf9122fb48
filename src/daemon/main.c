/* berthd: the host daemon — inventory (SQLite) and the REST API on a unix socket and HTTPS. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/disks.h"
#include "daemon/events.h"
#include "daemon/http.h"
#include "daemon/nics.h"
#include "daemon/ops.h"
#include "daemon/spawn.h"
#include "daemon/vmctl.h"
#include "daemon/vswitch.h"

#ifndef BERTH_VERSION
#define BERTH_VERSION "unknown"
#endif

/* The OpenAPI document, generated into the build from src/daemon/openapi.json. */
extern const char berthd_openapi[];
extern const size_t berthd_openapi_len;

struct opts {
	const char *state_dir;
	const char *socket_path;
	const char *group;
	const char *vmm;
	const char *vmm_user;
	const char *run_dir;
	const char *disk_dir;
	const char *listen, *tls_cert, *tls_key;
	struct http_role_group role_groups[HTTP_ROLE_GROUPS_MAX];
	unsigned n_role_groups;
	unsigned threads;
	bool foreground;
	enum log_level level;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: berthd [--foreground] [--state-dir DIR] [--socket PATH] [--group NAME]\n"
		"              [--threads N] [--log-level LEVEL] [--vmm PATH] [--vmm-user NAME]\n"
		"              [--run-dir DIR] [--disk-dir DIR] [--role-group ROLE=GROUP]...\n"
		"              [--listen ADDR:PORT --tls-cert FILE --tls-key FILE]\n"
		"\n"
		"berth's host daemon: the VM inventory and the REST API (docs/berthd.md).\n"
		"\n"
		"  --foreground      log for a terminal (\"berthd http: info: ...\"); without it, "
		"lines\n"
		"                    carry syslog priorities for the systemd journal (\"<6>...\")\n"
		"  --state-dir DIR   inventory directory, holds berth.db (default /var/lib/berth)\n"
		"  --socket PATH     the API's unix socket (default /run/berth/berthd.sock)\n"
		"  --group NAME      members of this group may use the API as admins, as may root\n"
		"                    (default berth)\n"
		"  --role-group ROLE=GROUP\n"
		"                    members of GROUP get ROLE (viewer, operator or admin) on the\n"
		"                    unix socket, which then is 0666 (others get 403); repeatable\n"
		"  --listen ADDR:PORT  also serve the API over HTTPS on TCP (127.0.0.1:8443,\n"
		"                    [::]:8443) for holders of API tokens; needs --tls-cert and\n"
		"                    --tls-key (berthd never serves plain HTTP on TCP)\n"
		"  --tls-cert FILE   the server's certificate (PEM; its chain may follow)\n"
		"  --tls-key FILE    its private key (PEM, mode 0600)\n"
		"  --threads N       HTTP worker threads, 1..64 (default 4)\n"
		"  --vmm PATH        the berth-vmm to run VMs with (default: berth-vmm next to\n"
		"                    berthd's own executable)\n"
		"  --vmm-user NAME   run the VMMs as this user (its groups, e.g. kvm, included);\n"
		"                    default: as root (a warning is logged)\n"
		"  --run-dir DIR     the VMs' control and console sockets (default: vms/ next to\n"
		"                    --socket)\n"
		"  --disk-dir DIR    the pool of managed disk images (default: disks/ in the\n"
		"                    state directory)\n"
		"  --log-level L     error, warn, info (default) or debug\n"
		"  -h, --help        this text\n"
		"  -V, --version     the version\n"
		"\n"
		"SIGTERM or SIGINT stop berthd gracefully; running VMs keep running. Exit status:\n"
		"0 stopped, 1 error, 2 bad usage.\n");
}

/* 0 run, 1 exit 0 (help, version), -EINVAL usage error (message printed). */
static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {{"foreground", no_argument, NULL, 'f'},
						 {"state-dir", required_argument, NULL, 'd'},
						 {"socket", required_argument, NULL, 's'},
						 {"group", required_argument, NULL, 'g'},
						 {"threads", required_argument, NULL, 't'},
						 {"log-level", required_argument, NULL, 'l'},
						 {"vmm", required_argument, NULL, 'm'},
						 {"vmm-user", required_argument, NULL, 'u'},
						 {"run-dir", required_argument, NULL, 'r'},
						 {"disk-dir", required_argument, NULL, 'D'},
						 {"help", no_argument, NULL, 'h'},
						 {"version", no_argument, NULL, 'V'},
						 {"listen", required_argument, NULL, 'L'},
						 {"tls-cert", required_argument, NULL, 'C'},
						 {"tls-key", required_argument, NULL, 'K'},
						 {"role-group", required_argument, NULL, 'R'},
						 {NULL, 0, NULL, 0}};
	struct sockaddr_storage ss;
	socklen_t sl;
	char *eq;
	uint64_t n;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":hV", longopts, NULL)) != -1) {
		switch (c) {
		case 'f':
			o->foreground = true;
			break;
		case 'd':
			o->state_dir = optarg;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'g':
			o->group = optarg;
			break;
		case 't':
			if (parse_u64(optarg, &n) || n < 1 || n > 64) {
				log_err(NULL, "--threads '%s': must be a number from 1 to 64",
					optarg);
				return -EINVAL;
			}
			o->threads = (unsigned)n;
			break;
		case 'l':
			if (log_level_parse(optarg, &o->level)) {
				log_err(NULL,
					"--log-level '%s': must be error, warn, info or debug",
					optarg);
				return -EINVAL;
			}
			break;
		case 'm':
			o->vmm = optarg;
			break;
		case 'u':
			o->vmm_user = optarg;
			break;
		case 'r':
			o->run_dir = optarg;
			break;
		case 'D':
			o->disk_dir = optarg;
			break;
		case 'L':
			if (http_parse_listen(optarg, &ss, &sl)) {
				log_err(NULL,
					"--listen '%s': must be ADDR:PORT, like 127.0.0.1:8443, "
					"0.0.0.0:8443 or [::1]:8443",
					optarg);
				return -EINVAL;
			}
			o->listen = optarg;
			break;
		case 'C':
			o->tls_cert = optarg;
			break;
		case 'K':
			o->tls_key = optarg;
			break;
		case 'R':
			eq = strchr(optarg, '=');
			if (eq)
				*eq = '\0';
			enum api_role role = api_role_parse(optarg);
			if (eq)
				*eq = '=';
			if (!eq || role == ROLE_NONE || !eq[1]) {
				log_err(NULL,
					"--role-group '%s': must be ROLE=GROUP with ROLE viewer, "
					"operator or admin",
					optarg);
				return -EINVAL;
			}
			if (o->n_role_groups == HTTP_ROLE_GROUPS_MAX) {
				log_err(NULL, "--role-group: at most %d", HTTP_ROLE_GROUPS_MAX);
				return -EINVAL;
			}
			o->role_groups[o->n_role_groups].role = role;
			o->role_groups[o->n_role_groups++].group = eq + 1;
			break;
		case 'h':
			usage(stdout);
			return 1;
		case 'V':
			printf("berthd %s\n", BERTH_VERSION);
			return 1;
		case ':':
			log_err(NULL, "%s needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			log_err(NULL, "unknown option '%s' (see --help)", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		log_err(NULL, "unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (o->listen && (!o->tls_cert || !o->tls_key)) {
		log_err(NULL,
			"--listen %s needs --tls-cert and --tls-key: berthd serves the API on "
			"TCP only over HTTPS, never as plain HTTP",
			o->listen);
		return -EINVAL;
	}
	if (!o->listen && (o->tls_cert || o->tls_key)) {
		log_err(NULL, "--tls-cert and --tls-key go with --listen ADDR:PORT");
		return -EINVAL;
	}
	if (!*o->state_dir || !*o->socket_path || !*o->group || (o->vmm && !*o->vmm) ||
	    (o->vmm_user && !*o->vmm_user) || (o->run_dir && !*o->run_dir) ||
	    (o->disk_dir && !*o->disk_dir)) {
		log_err(NULL, "--state-dir, --socket, --group, --vmm, --vmm-user, --run-dir and "
			      "--disk-dir must not be empty");
		return -EINVAL;
	}
	return 0;
}

/* The state directory, created 0700 if missing, locked so one berthd at a time uses it. */
static int lock_state_dir(const char *dir, int *lock_fd)
{
	char path[4096];
	int fd, ret;

	if (mkdir(dir, 0700) && errno != EEXIST) {
		ret = -errno;
		log_err(NULL, "creating the state directory %s: %s", dir, strerror(errno));
		return ret;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/berthd.lock", dir) >= sizeof(path))
		return -ENAMETOOLONG;
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		ret = -errno;
		log_err(NULL, "%s: %s", path, strerror(errno));
		return ret;
	}
	/* a VMM being spawned by a berthd just killed holds the lock for a moment (between fork
	 * and closing its copy): wait a little before calling it another berthd */
	for (int i = 0; flock(fd, LOCK_EX | LOCK_NB) && errno == EWOULDBLOCK && i < 40; i++)
		usleep(50 * 1000);
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		ret = -errno;
		log_err(NULL, "%s: %s", path,
			errno == EWOULDBLOCK ? "another berthd uses this state directory"
					     : strerror(errno));
		close(fd);
		return ret;
	}
	*lock_fd = fd;
	return 0;
}

/* berth-vmm next to berthd's own executable. */
static int default_vmm(char *out, size_t len)
{
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -errno;
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	return (size_t)snprintf(out, len, "%s/berth-vmm", self) < len ? 0 : -ENAMETOOLONG;
}

/* The run directory: --run-dir, or vms/ next to the API socket. */
static int default_run_dir(const char *socket_path, char *out, size_t len)
{
	const char *slash = strrchr(socket_path, '/');
	int n = slash ? (int)(slash - socket_path) : 1;
	const char *dir = slash ? socket_path : ".";
	if (slash == socket_path)
		n = 0;
	return (size_t)snprintf(out, len, "%.*s/vms", n, dir) < len ? 0 : -ENAMETOOLONG;
}

/* path made absolute (the VMMs run in their own directories): relative to the working directory. */
static int absolute(const char *path, char *out, size_t len)
{
	char cwd[4096];
	if (path[0] == '/')
		return (size_t)snprintf(out, len, "%s", path) < len ? 0 : -ENAMETOOLONG;
	if (!getcwd(cwd, sizeof(cwd)))
		return -errno;
	return (size_t)snprintf(out, len, "%s/%s", cwd, path) < len ? 0 : -ENAMETOOLONG;
}

/* The inventory is berthd's alone, even where the state directory is traversable (0711). */
static void protect_db(const char *dbpath)
{
	char path[4200];
	static const char *const sfx[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < ARRAY_SIZE(sfx); i++) {
		snprintf(path, sizeof(path), "%s%s", dbpath, sfx[i]);
		if (chmod(path, 0600) && errno != ENOENT)
			log_warn("db", "chmod %s: %s", path, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	struct opts o = {.state_dir = "/var/lib/berth",
			 .socket_path = "/run/berth/berthd.sock",
			 .group = "berth",
			 .threads = 4,
			 .level = LOG_INFO};
	struct api_ctx ctx = {.openapi = berthd_openapi, .openapi_len = berthd_openapi_len};
	struct http_server *http = NULL;
	struct vmctl *vmctl = NULL;
	struct ops *ops = NULL;
	struct vmm_user user = {0};
	static struct disk_pool pool;
	char dbpath[4096], err[512] = "path too long", vmm[4096], disk_dir[4096], run_dir[4096],
			   state_dir[4096], path[4096];
	bool vmctl_busy = false;
	sigset_t stop;
	int lock_fd = -1, sig, ret;

	log_init("berthd", NULL, LOG_INFO);
	if ((ret = parse_args(argc, argv, &o)))
		return ret > 0 ? 0 : 2;
	log_init("berthd", NULL, o.level);
	log_set_journal(!o.foreground);

	/* Every thread inherits the mask; the main thread alone takes the stop signals. */
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &ctx.started);

	if (lock_state_dir(o.state_dir, &lock_fd))
		return 1;
	if ((size_t)snprintf(dbpath, sizeof(dbpath), "%s/berth.db", o.state_dir) >=
	    sizeof(dbpath)) {
		log_err(NULL, "--state-dir: path too long");
		ret = 1;
		goto out;
	}
	if ((ret = db_open(dbpath, &ctx.db, err, sizeof(err)))) {
		log_err("db", "%s", err);
		ret = 1;
		goto out;
	}
	log_info("db", "inventory %s (schema version %d)", dbpath, db_schema_version_known());
	protect_db(dbpath);
	if (o.vmm ? absolute(o.vmm, vmm, sizeof(vmm)) : default_vmm(vmm, sizeof(vmm))) {
		log_err(NULL, "cannot find berth-vmm: give --vmm");
		ret = 1;
		goto out;
	}
	if ((o.run_dir ? snprintf(path, sizeof(path), "%s", o.run_dir) < 0
		       : default_run_dir(o.socket_path, path, sizeof(path))) ||
	    absolute(path, run_dir, sizeof(run_dir)) ||
	    absolute(o.state_dir, state_dir, sizeof(state_dir))) {
		log_err(NULL, "--run-dir, --state-dir: path too long");
		ret = 1;
		goto out;
	}
	if (o.vmm_user && (ret = vmm_user_resolve(o.vmm_user, &user))) {
		log_err(NULL, "--vmm-user %s: %s", o.vmm_user,
			ret == -ENOENT ? "no such user" : strerror(-ret));
		ret = 1;
		goto out;
	}
	if ((o.disk_dir
		 ? snprintf(path, sizeof(path), "%s", o.disk_dir) < 0
		 : (size_t)snprintf(path, sizeof(path), "%s/disks", state_dir) >= sizeof(path)) ||
	    absolute(path, disk_dir, sizeof(disk_dir)) ||
	    disks_pool_init(&pool, disk_dir, &user, err, sizeof(err))) {
		log_err(NULL, "--disk-dir: %s", err);
		ret = 1;
		goto out;
	}
	ctx.disks = &pool;
	log_info("disks", "disk pool %s", pool.dir);
	struct vmctl_opts vo = {
	    .state_dir = state_dir, .run_dir = run_dir, .vmm_path = vmm, .user = &user};
	if (ops_new(&ops) || vmctl_new(ctx.db, ops, &vo, &vmctl)) {
		ret = 1;
		goto out;
	}
	ctx.ops = ops;
	ctx.vmctl = vmctl;
	ctx.state_dir = state_dir;
	ctx.run_dir = run_dir;
	if ((ret = evbus_new(ctx.db, EVENTS_MAX_STREAMS, &ctx.events))) {
		log_err(NULL, "the event stream: %s", strerror(-ret));
		ret = 1;
		goto out;
	}
	vswitch_restore(ctx.db); /* bridges, addresses, uplinks as the inventory says */
	vmctl_reattach(vmctl);
	nics_reattach(ctx.db); /* running VMs' TAPs back on their (maybe recreated) bridges */
	struct http_opts ho = {.socket_path = o.socket_path,
			       .group = o.group,
			       .threads = o.threads,
			       .n_role_groups = o.n_role_groups,
			       .listen = o.listen,
			       .tls_cert = o.tls_cert,
			       .tls_key = o.tls_key};
	memcpy(ho.role_groups, o.role_groups, sizeof(ho.role_groups));
	if (http_start(&ctx, &ho, &http)) {
		ret = 1;
		goto out;
	}
	log_info(NULL, "berthd %s ready (pid %d)", BERTH_VERSION, (int)getpid());
	vmctl_autostart(vmctl);
	do {
		sig = sigwaitinfo(&stop, NULL);
	} while (sig < 0 && errno == EINTR);
	log_info(NULL, "stopping: received %s", sig > 0 ? strsignal(sig) : "an error");
	ret = 0;
out:
	/* waiting requests answer first, then the server stops; the VMs keep running */
	if (ops)
		ops_stop_waiting(ops);
	evbus_stop(ctx.events); /* event streams end, so their requests finish */
	http_stop(http);
	vmctl_busy = vmctl_stop(vmctl) != 0;
	if (vmctl_busy) {
		/* an operation thread still uses the inventory: leave it to the exit */
		log_warn(NULL, "stopped with operations in progress");
		return ret;
	}
	vmctl_free(vmctl);
	ops_free(ops);
	evbus_free(ctx.events);
	db_close(ctx.db);
	if (lock_fd >= 0)
		close(lock_fd);
	if (!ret)
		log_info(NULL, "stopped");
	return ret;
}
