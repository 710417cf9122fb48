/* GET /api/v1/events: where an event stream starts (Last-Event-ID, ?since=); http.c serves it. */
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "daemon/api.h"
#include "daemon/db.h"

/* "2026-11-25T22:21:55Z" or with fractional seconds: to the events table's ".mmmZ" form. */
static bool parse_time(const char *s, char out[80])
{
	int y, mo, d, h, mi, sec, n = 0;
	unsigned ms = 0;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
	    n != 19 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	s += n;
	if (*s == '.') {
		unsigned digits = 0, scale = 100;
		for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
			ms += (unsigned)(*s - '0') * scale;
			scale /= 10;
		}
		if (!digits)
			return false;
	}
	if (strcmp(s, "Z"))
		return false;
	snprintf(out, 80, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", y, mo, d, h, mi, sec, ms);
	return true;
}

void api_events_get(struct api_req *req, struct api_resp *resp)
{
	json_t *jsince = json_object_get(req->query, "since");
	const char *since = json_string_value(jsince);
	char ts[80];
	uint64_t id;
	int64_t after = -1; /* only what comes next */

	if (!req->ctx->events) {
		api_error(resp, 503, "unavailable", NULL, "this berthd serves no event stream");
		return;
	}
	if (req->last_event_id) {
		if (parse_u64(req->last_event_id, &id) || id > INT64_MAX) {
			api_error(resp, 400, "invalid-argument", "Last-Event-ID",
				  "Last-Event-ID must be an event id (a whole number)");
			return;
		}
		after = (int64_t)id;
	} else if (jsince) {
		if (since && !parse_u64(since, &id) && id <= INT64_MAX) {
			after = (int64_t)id;
		} else if (since && parse_time(since, ts)) {
			struct db *db = req->ctx->db;
			int r = db_begin(db, false);
			if (!r) {
				r = db_event_last(db, ts, &after);
				db_commit(db);
			}
			if (r) {
				api_error(resp, 500, "internal", NULL, "reading the events failed");
				return;
			}
		} else {
			api_error(resp, 400, "invalid-argument", "since",
				  "since must be an event id or a UTC time like "
				  "2026-11-25T22:21:55Z");
			return;
		}
	}
	resp->status = 200;
	resp->stream = true;
	resp->stream_after = after;
}
