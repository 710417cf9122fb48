/* The event stream's broadcaster: server-sent-event streams of the events table, woken after
 * each commit that adds events and every 15 s for a keep-alive comment. */
#ifndef BERTH_DAEMON_EVENTS_H
#define BERTH_DAEMON_EVENTS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define EVENTS_MAX_STREAMS 64
#define EVENTS_KEEPALIVE_S 15

struct db;
struct evbus;
struct evstream;

/* Create the broadcaster and hook it to db's commits. -errno. */
int evbus_new(struct db *db, unsigned max_streams, struct evbus **out);
/* End every stream (each ends at its next read); the bus stays until evbus_free. */
void evbus_stop(struct evbus *b);
void evbus_free(struct evbus *b);
/* Streams open now. */
unsigned evbus_streams(struct evbus *b);

/* How a stream's reader parks its connection while nothing is to send, and wakes it up. */
struct evstream_conn {
	void (*suspend)(void *arg); /* called under the bus lock, from evstream_read */
	void (*resume)(void *arg);  /* called under the bus lock, from any thread */
	void *arg;
};

/* A stream of the events after id after. -EBUSY: max_streams are open; -ESHUTDOWN: stopping. */
int evstream_open(struct evbus *b, int64_t after, const struct evstream_conn *conn,
		  struct evstream **out);
/*
 * The next bytes of the stream into buf: the count (> 0); 0 when nothing is due, after the
 * stream suspended its connection (it is resumed when an event or a keep-alive is due); -1 at
 * its end (the bus stops, or the events table could not be read).
 */
ssize_t evstream_read(struct evstream *s, char *buf, size_t max);
void evstream_close(struct evstream *s);

#endif
