/* The event stream's broadcaster: streams read the events table after their last id, park while
 * nothing is new, and are woken by commits (db hook) and a keep-alive ticker. */
#include "daemon/events.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "daemon/db.h"

#define BATCH 32 /* events read from the table per refill */

struct evstream {
	struct evbus *bus;
	struct evstream *next;
	struct evstream_conn conn;
	int64_t last;	/* the last event id sent */
	bool parked;	/* its connection is suspended */
	bool keepalive; /* a keep-alive comment is due */
	char *buf;	/* formatted text not yet sent */
	size_t len, off;
};

struct evbus {
	struct db *db;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* CLOCK_MONOTONIC: the ticker waits here */
	int64_t newest;	     /* the newest committed event id */
	unsigned max, n;
	struct evstream *streams;
	bool stopping;
	pthread_t ticker;
	bool ticker_started;
};

static void wake(struct evstream *s)
{
	if (s->parked) {
		s->parked = false;
		s->conn.resume(s->conn.arg);
	}
}

static void on_commit(void *arg, int64_t id)
{
	struct evbus *b = arg;
	pthread_mutex_lock(&b->lock);
	if (id > b->newest)
		b->newest = id;
	for (struct evstream *s = b->streams; s; s = s->next)
		if (s->parked && s->last < id) /* a parked stream's last is not written meanwhile */
			wake(s);
	pthread_mutex_unlock(&b->lock);
}

static void *ticker_main(void *arg)
{
	struct evbus *b = arg;
	struct timespec at;
	pthread_mutex_lock(&b->lock);
	clock_gettime(CLOCK_MONOTONIC, &at);
	while (!b->stopping) {
		at.tv_sec += EVENTS_KEEPALIVE_S;
		while (!b->stopping && pthread_cond_timedwait(&b->cond, &b->lock, &at) != ETIMEDOUT)
			;
		for (struct evstream *s = b->streams; s; s = s->next) {
			s->keepalive = true;
			wake(s);
		}
	}
	pthread_mutex_unlock(&b->lock);
	return NULL;
}

int evbus_new(struct db *db, unsigned max_streams, struct evbus **out)
{
	struct evbus *b = calloc(1, sizeof(*b));
	pthread_condattr_t ca;
	int ret;
	if (!b)
		return -ENOMEM;
	b->db = db;
	b->max = max_streams;
	pthread_mutex_init(&b->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((ret = db_begin(db, false)))
		goto fail;
	ret = db_event_last(db, NULL, &b->newest);
	db_commit(db);
	if (ret)
		goto fail;
	if ((ret = -pthread_create(&b->ticker, NULL, ticker_main, b)))
		goto fail;
	b->ticker_started = true;
	db_set_event_hook(db, on_commit, b);
	*out = b;
	return 0;
fail:
	evbus_free(b);
	return ret;
}

void evbus_stop(struct evbus *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->stopping = true;
	pthread_cond_broadcast(&b->cond);
	for (struct evstream *s = b->streams; s; s = s->next)
		wake(s);
	pthread_mutex_unlock(&b->lock);
}

void evbus_free(struct evbus *b)
{
	if (!b)
		return;
	evbus_stop(b);
	db_set_event_hook(b->db, NULL, NULL);
	if (b->ticker_started)
		pthread_join(b->ticker, NULL);
	pthread_cond_destroy(&b->cond);
	pthread_mutex_destroy(&b->lock);
	free(b);
}

unsigned evbus_streams(struct evbus *b)
{
	pthread_mutex_lock(&b->lock);
	unsigned n = b->n;
	pthread_mutex_unlock(&b->lock);
	return n;
}

int evstream_open(struct evbus *b, int64_t after, const struct evstream_conn *conn,
		  struct evstream **out)
{
	struct evstream *s;
	int ret = 0;
	pthread_mutex_lock(&b->lock);
	if (b->stopping)
		ret = -ESHUTDOWN;
	else if (b->n >= b->max)
		ret = -EBUSY;
	else if (!(s = calloc(1, sizeof(*s))))
		ret = -ENOMEM;
	if (!ret) {
		s->bus = b;
		s->conn = *conn;
		s->last = after < 0 ? b->newest : after;
		/* the first bytes open the stream at once, so a client knows it is connected */
		s->keepalive = true;
		s->next = b->streams;
		b->streams = s;
		b->n++;
		*out = s;
	}
	pthread_mutex_unlock(&b->lock);
	return ret;
}

static int append(struct evstream *s, const char *text, size_t n)
{
	char *nb = realloc(s->buf, s->len + n);
	if (!nb)
		return -ENOMEM;
	memcpy(nb + s->len, text, n);
	s->buf = nb;
	s->len += n;
	return 0;
}

static int format_event(const struct db_event *ev, void *arg)
{
	struct evstream *s = arg;
	json_t *detail = json_loads(ev->detail, 0, NULL);
	json_t *o =
	    json_pack("{s:I, s:s, s:s?, s:s?, s:s, s:o?}", "id", (json_int_t)ev->id, "ts", ev->ts,
		      "vm", ev->vm, "name", ev->name, "kind", ev->kind, "detail", detail);
	char *data = o ? json_dumps(o, JSON_COMPACT) : NULL;
	char head[128];
	int ret = -ENOMEM;
	json_decref(o);
	if (!data)
		return ret;
	int n = snprintf(head, sizeof(head), "id: %lld\nevent: %s\ndata: ", (long long)ev->id,
			 ev->kind);
	if (n > 0 && (size_t)n < sizeof(head) && !append(s, head, (size_t)n) &&
	    !append(s, data, strlen(data)) && !append(s, "\n\n", 2)) {
		s->last = ev->id;
		ret = 0;
	}
	free(data);
	return ret;
}

/* Fill the buffer with the events after s->last (at most BATCH), outside the bus lock. */
static int refill(struct evstream *s)
{
	struct db *db = s->bus->db;
	int ret;
	s->len = s->off = 0;
	if ((ret = db_begin(db, false)))
		return ret;
	ret = db_events_after(db, s->last, BATCH, format_event, s);
	db_commit(db);
	return ret;
}

ssize_t evstream_read(struct evstream *s, char *buf, size_t max)
{
	struct evbus *b = s->bus;
	while (s->off == s->len) {
		pthread_mutex_lock(&b->lock);
		int64_t newest = b->newest;
		bool stopping = b->stopping, fresh = newest > s->last, ka = s->keepalive;
		s->keepalive = false;
		if (!stopping && !fresh && !ka) {
			/* nothing to send: park until an event or a keep-alive is due */
			s->parked = true;
			s->conn.suspend(s->conn.arg);
			pthread_mutex_unlock(&b->lock);
			return 0;
		}
		pthread_mutex_unlock(&b->lock);
		if (stopping)
			return -1;
		if (fresh && refill(s)) {
			log_warn("events", "the events table could not be read: ending a stream");
			return -1;
		}
		if (fresh && s->off == s->len && s->last < newest)
			s->last = newest; /* rows gone from the table: do not ask for them again */
		if (s->off == s->len && ka) {
			s->len = s->off = 0;
			if (append(s, ": keep-alive\n\n", 14))
				return -1;
		}
	}
	size_t n = s->len - s->off < max ? s->len - s->off : max;
	memcpy(buf, s->buf + s->off, n);
	s->off += n;
	return (ssize_t)n;
}

void evstream_close(struct evstream *s)
{
	if (!s)
		return;
	struct evbus *b = s->bus;
	pthread_mutex_lock(&b->lock);
	for (struct evstream **p = &b->streams; *p; p = &(*p)->next)
		if (*p == s) {
			*p = s->next;
			b->n--;
			break;
		}
	pthread_mutex_unlock(&b->lock);
	free(s->buf);
	free(s);
}
