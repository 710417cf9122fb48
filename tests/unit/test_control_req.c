/* Unit tests for vmm/control_req: request envelope and argument validation (codes and fields),
 * replies and events. */
#include "unit.h"

#include <errno.h>

#include "common/proto.h"
#include "common/util.h"
#include "vmm/control_req.h"

static int parse_text(const char *text, unsigned nfds, struct control_request *req,
		      struct control_error *err)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	if (!j)
		fail_msg("bad test JSON %s: %s", text, jerr.text);
	memset(err, 0, sizeof(*err));
	int r = control_req_parse(j, nfds, req, err);
	json_decref(j); /* req->id is borrowed: not used after this */
	req->id = NULL;
	return r;
}

static void test_valid_requests(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		enum control_cmd cmd;
	} ok[] = {
	    {"{\"id\": 1, \"cmd\": \"query-status\"}", CMD_QUERY_STATUS},
	    {"{\"cmd\": \"query-status\", \"args\": {}}", CMD_QUERY_STATUS},
	    {"{\"id\": {\"any\": [\"json\"]}, \"cmd\": \"pause\"}", CMD_PAUSE},
	    {"{\"id\": null, \"cmd\": \"resume\"}", CMD_RESUME},
	    {"{\"id\": \"p\", \"cmd\": \"powerdown\"}", CMD_POWERDOWN},
	    {"{\"id\": 2.5, \"cmd\": \"quit\"}", CMD_QUIT},
	};
	for (size_t i = 0; i < ARRAY_SIZE(ok); i++) {
		struct control_request req;
		struct control_error err;
		if (parse_text(ok[i].text, 0, &req, &err))
			fail_msg("%s: %s %s %s", ok[i].text, err.code, err.field, err.message);
		assert_int_equal(req.cmd, ok[i].cmd);
	}
	struct control_request req;
	struct control_error err;
	assert_int_equal(parse_text("{\"cmd\": \"pause\"}", 0, &req, &err), 0);
	assert_int_equal(req.args.pause.timeout_ms, PAUSE_TIMEOUT_MS_DEFAULT);
	assert_int_equal(
	    parse_text("{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": 250}}", 0, &req, &err), 0);
	assert_int_equal(req.args.pause.timeout_ms, 250);
	assert_string_equal(control_cmd_name(CMD_POWERDOWN), "powerdown");
}

static void test_invalid_requests(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		unsigned nfds;
		const char *code, *field, *msg;
	} bad[] = {
	    {"{}", 0, CERR_INVALID_REQUEST, "cmd", "missing"},
	    {"{\"id\": 1}", 0, CERR_INVALID_REQUEST, "cmd", "missing"},
	    {"{\"cmd\": 5}", 0, CERR_INVALID_REQUEST, "cmd", "not an integer"},
	    {"{\"cmd\": null}", 0, CERR_INVALID_REQUEST, "cmd", "not null"},
	    {"{\"cmd\": \"reboot\"}", 0, CERR_UNKNOWN_COMMAND, "cmd", "'reboot'"},
	    {"{\"cmd\": \"pause\", \"extra\": 1}", 0, CERR_UNKNOWN_FIELD, "extra", "'extra'"},
	    {"{\"cmd\": \"pause\", \"args\": []}", 0, CERR_INVALID_REQUEST, "args", "an array"},
	    {"{\"cmd\": \"pause\", \"args\": \"x\"}", 0, CERR_INVALID_REQUEST, "args", "a string"},
	    {"{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": \"5\"}}", 0, CERR_INVALID_ARGUMENT,
	     "args.timeout_ms", "not a string"},
	    {"{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": 1.5}}", 0, CERR_INVALID_ARGUMENT,
	     "args.timeout_ms", "a real number"},
	    {"{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": 0}}", 0, CERR_INVALID_ARGUMENT,
	     "args.timeout_ms", "out of range"},
	    {"{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": -1}}", 0, CERR_INVALID_ARGUMENT,
	     "args.timeout_ms", "out of range"},
	    {"{\"cmd\": \"pause\", \"args\": {\"timeout_ms\": 60001}}", 0, CERR_INVALID_ARGUMENT,
	     "args.timeout_ms", "1 to 60000"},
	    {"{\"cmd\": \"resume\", \"args\": {\"timeout_ms\": 5}}", 0, CERR_UNKNOWN_FIELD,
	     "args.timeout_ms", "resume takes no argument"},
	    {"{\"cmd\": \"quit\"}", 1, CERR_UNEXPECTED_FDS, "", "1 received"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct control_request req;
		struct control_error err;
		int r = parse_text(bad[i].text, bad[i].nfds, &req, &err);
		if (r != -EINVAL || !err.code || strcmp(err.code, bad[i].code) ||
		    strcmp(err.field, bad[i].field) || err.has_field != !!bad[i].field[0])
			fail_msg("%s: got %d %s field '%s' (%s)", bad[i].text, r,
				 err.code ? err.code : "(none)", err.field, err.message);
		assert_contains(err.message, bad[i].msg);
	}
	/* An empty key is still a field the error names. */
	struct control_request req;
	struct control_error err;
	assert_int_equal(parse_text("{\"cmd\": \"pause\", \"\": 1}", 0, &req, &err), -EINVAL);
	assert_string_equal(err.code, CERR_UNKNOWN_FIELD);
	assert_true(err.has_field);
	assert_string_equal(err.field, "");
	json_t *reply = control_reply_error(NULL, &err);
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(reply, "error"), "field")), "");
	json_decref(reply);
}

/* Keys and names of any length are cut in messages, and the cut keeps UTF-8 whole. */
static void test_long_names_stay_valid_utf8(void **state)
{
	(void)state;
	char key[400], text[600];
	size_t n = 0;
	while (n + 2 < 300) { /* "é" is two bytes: a cut at an odd offset would split one */
		key[n++] = (char)0xc3;
		key[n++] = (char)0xa9;
	}
	key[n] = 0;
	snprintf(text, sizeof(text), "{\"cmd\": \"pause\", \"args\": {\"x%s\": 1}}", key);
	struct control_request req;
	struct control_error err;
	json_t *j = json_loads(text, 0, NULL);
	assert_non_null(j);
	assert_int_equal(control_req_parse(j, 0, &req, &err), -EINVAL);
	assert_string_equal(err.code, CERR_UNKNOWN_FIELD);
	assert_contains(err.field, "...");
	json_t *reply = control_reply_error(req.id, &err);
	uint8_t *f;
	size_t len;
	assert_int_equal(proto_encode(reply, &f, &len), 0);
	json_t *msg = json_object_get(json_object_get(reply, "error"), "message");
	assert_non_null(json_string_value(msg));
	assert_string_not_equal(json_string_value(msg), "(not valid UTF-8)");
	free(f);
	json_decref(reply);
	json_decref(j);
}

static void test_messages(void **state)
{
	(void)state;
	json_t *id = json_string("abc");
	json_t *r = control_reply_ok(id, json_pack("{s:s}", "state", "paused"));
	assert_true(json_equal(json_object_get(r, "id"), id));
	assert_true(json_is_true(json_object_get(r, "ok")));
	assert_string_equal(
	    json_string_value(json_object_get(json_object_get(r, "result"), "state")), "paused");
	json_decref(r);

	r = control_reply_ok(NULL, NULL);
	assert_true(json_is_null(json_object_get(r, "id")));
	assert_true(json_is_object(json_object_get(r, "result")));
	json_decref(r);

	struct control_error err;
	assert_int_equal(control_fail(&err, CERR_TIMEOUT, "args.timeout_ms", "after %d ms", 5),
			 -EINVAL);
	r = control_reply_error(id, &err);
	json_t *e = json_object_get(r, "error");
	assert_true(json_is_false(json_object_get(r, "ok")));
	assert_string_equal(json_string_value(json_object_get(e, "code")), "timeout");
	assert_string_equal(json_string_value(json_object_get(e, "field")), "args.timeout_ms");
	assert_string_equal(json_string_value(json_object_get(e, "message")), "after 5 ms");
	json_decref(r);
	control_fail(&err, CERR_BAD_FRAME, NULL, "x");
	r = control_reply_error(NULL, &err);
	assert_null(json_object_get(json_object_get(r, "error"), "field"));
	json_decref(r);

	r = control_event_msg("paused", NULL);
	assert_string_equal(json_string_value(json_object_get(r, "event")), "paused");
	assert_true(json_is_object(json_object_get(r, "data")));
	json_decref(r);
	json_decref(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_requests),
	    cmocka_unit_test(test_invalid_requests),
	    cmocka_unit_test(test_long_names_stay_valid_utf8),
	    cmocka_unit_test(test_messages),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
