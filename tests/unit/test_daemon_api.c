/* Unit tests for berthd's request handling without a server: JSON merge patch (RFC 7386's own
 * examples), If-Match parsing, path patterns, and the router's 404/405/403/415/400 answers. */
#include "unit.h"

#include <errno.h>
#include <jansson.h>

#include "daemon/api.h"
#include "daemon/route.h"
#include "daemon/vmspec.h"

static void test_merge_patch_rfc7386(void **state)
{
	(void)state;
	/* RFC 7386 appendix A: original, patch, result */
	static const char *const cases[][3] = {
	    {"{\"a\":\"b\"}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
	    {"{\"a\":\"b\"}", "{\"b\":\"c\"}", "{\"a\":\"b\",\"b\":\"c\"}"},
	    {"{\"a\":\"b\"}", "{\"a\":null}", "{}"},
	    {"{\"a\":\"b\",\"b\":\"c\"}", "{\"a\":null}", "{\"b\":\"c\"}"},
	    {"{\"a\":[\"b\"]}", "{\"a\":\"c\"}", "{\"a\":\"c\"}"},
	    {"{\"a\":\"c\"}", "{\"a\":[\"b\"]}", "{\"a\":[\"b\"]}"},
	    {"{\"a\":{\"b\":\"c\"}}", "{\"a\":{\"b\":\"d\",\"c\":null}}", "{\"a\":{\"b\":\"d\"}}"},
	    {"{\"a\":[{\"b\":\"c\"}]}", "{\"a\":[1]}", "{\"a\":[1]}"},
	    {"[\"a\",\"b\"]", "[\"c\",\"d\"]", "[\"c\",\"d\"]"},
	    {"{\"a\":\"b\"}", "[\"c\"]", "[\"c\"]"},
	    {"{\"a\":\"foo\"}", "null", "null"},
	    {"{\"a\":\"foo\"}", "\"bar\"", "\"bar\""},
	    {"{\"e\":null}", "{\"a\":1}", "{\"e\":null,\"a\":1}"},
	    {"[1,2]", "{\"a\":\"b\",\"c\":null}", "{\"a\":\"b\"}"},
	    {"{}", "{\"a\":{\"bb\":{\"ccc\":null}}}", "{\"a\":{\"bb\":{}}}"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *t = json_loads(cases[i][0], JSON_DECODE_ANY, NULL);
		json_t *p = json_loads(cases[i][1], JSON_DECODE_ANY, NULL);
		json_t *want = json_loads(cases[i][2], JSON_DECODE_ANY, NULL);
		assert_non_null(t);
		assert_non_null(p);
		assert_non_null(want);
		json_t *got = json_merge_patch(t, p);
		if (!json_equal(got, want))
			fail_msg("case %zu: got %s", i, json_dumps(got, JSON_ENCODE_ANY));
		json_decref(t);
		json_decref(p);
		json_decref(want);
		json_decref(got);
	}
}

static void test_if_match(void **state)
{
	(void)state;
	assert_int_equal(route_if_match("\"3\"", 3), 1);
	assert_int_equal(route_if_match(" \"3\" ", 3), 1);
	assert_int_equal(route_if_match("\"4\"", 3), 0);
	assert_int_equal(route_if_match("\"1\", \"3\"", 3), 1);
	assert_int_equal(route_if_match("W/\"3\"", 3), 0); /* strong comparison */
	assert_int_equal(route_if_match("*", 3), 1);
	assert_int_equal(route_if_match("\"03\"", 3), 0);
	assert_int_equal(route_if_match("\"\"", 3), 0);
	assert_int_equal(route_if_match("\"99999999999999999999\"", 3), 0);
	assert_int_equal(route_if_match("\"abc\"", 3), 0);
	assert_int_equal(route_if_match("3", 3), -EINVAL);
	assert_int_equal(route_if_match("", 3), -EINVAL);
	assert_int_equal(route_if_match("\"3", 3), -EINVAL);
	assert_int_equal(route_if_match("\"3\" \"4\"", 3), -EINVAL);
	assert_int_equal(route_if_match("\"3\",", 3), -EINVAL);
	assert_int_equal(route_if_match("*, \"3\"", 3), -EINVAL);
	assert_int_equal(route_if_match("\"a b\"", 3), -EINVAL);
}

static void test_route_match(void **state)
{
	(void)state;
	struct route_params p;
	assert_true(route_match("/api/v1/vms/{id}", "/api/v1/vms/web1", &p));
	assert_int_equal(p.n, 1);
	assert_string_equal(p.v[0], "web1");
	assert_true(route_match("/a/{x}/b/{y}", "/a/1/b/2", &p));
	assert_int_equal(p.n, 2);
	assert_string_equal(p.v[1], "2");
	assert_false(route_match("/api/v1/vms/{id}", "/api/v1/vms/", &p));
	assert_false(route_match("/api/v1/vms/{id}", "/api/v1/vms/a/b", &p));
	assert_false(route_match("/api/v1/vms/{id}", "/api/v1/vms", &p));
	assert_false(route_match("/api/v1/vms", "/api/v1/vms/", &p));
	assert_false(route_match("/api/v1/vms", "/api/v1/vmsx", &p));
	char longp[400] = "/api/v1/vms/";
	memset(longp + strlen(longp), 'a', 300);
	assert_false(route_match("/api/v1/vms/{id}", longp, &p));
}

static void test_names(void **state)
{
	(void)state;
	assert_true(vmspec_name_valid("web-1.example_A"));
	assert_true(vmspec_name_valid("_x"));
	assert_false(vmspec_name_valid(""));
	assert_false(vmspec_name_valid("-x"));
	assert_false(vmspec_name_valid(".x"));
	assert_false(vmspec_name_valid("a b"));
	assert_false(vmspec_name_valid("0e0f5df4-1c1b-4b35-8c2a-6a2e53f2e4f0"));
	assert_false(vmspec_name_valid("0E0F5DF4-1C1B-4B35-8C2A-6A2E53F2E4F0"));
	assert_true(vmspec_name_valid("0e0f5df4-1c1b-4b35-8c2a-6a2e53f2e4f0x"));
	char n[80];
	memset(n, 'a', sizeof(n));
	n[VMSPEC_NAME_MAX] = '\0';
	assert_true(vmspec_name_valid(n));
	n[VMSPEC_NAME_MAX] = 'a';
	n[VMSPEC_NAME_MAX + 1] = '\0';
	assert_false(vmspec_name_valid(n));
}

/* One request through the router, without a database (only routes that need none get that far). */
static unsigned dispatch(enum api_role role, const char *method, const char *path,
			 const char *ctype, const char *body, json_t **err)
{
	struct api_ctx ctx = {.openapi = "{}", .openapi_len = 2};
	struct api_req req = {.ctx = &ctx,
			      .method = method,
			      .path = path,
			      .role = role,
			      .content_type = ctype,
			      .body = body,
			      .body_len = body ? strlen(body) : 0,
			      .query = json_object()};
	struct api_resp resp = {0};
	api_dispatch(&req, &resp);
	*err = json_incref(json_object_get(resp.body, "error"));
	api_resp_free(&resp);
	json_decref(req.query);
	return resp.status;
}

static const char *code(json_t *err)
{
	return json_string_value(json_object_get(err, "code"));
}

/* GET .../console with these Upgrade and Connection headers: the status (no VMs here, so headers
 * that would do reach "not-supported"). */
static unsigned console(enum api_role role, const char *upgrade, const char *connection)
{
	struct api_ctx ctx = {.openapi = "{}", .openapi_len = 2};
	struct api_req req = {.ctx = &ctx,
			      .method = "GET",
			      .path = "/api/v1/vms/web1/console",
			      .role = role,
			      .upgrade = upgrade,
			      .connection = connection,
			      .query = json_object()};
	struct api_resp resp = {0};
	api_dispatch(&req, &resp);
	assert_null(resp.console);
	api_resp_free(&resp);
	json_decref(req.query);
	return resp.status;
}

static void test_console_route(void **state)
{
	(void)state;
	/* viewers may attach (they only watch); nobody else */
	assert_int_equal(console(ROLE_NONE, "berth-console", "Upgrade"), 403);
	assert_int_equal(console(ROLE_VIEWER, "berth-console", "Upgrade"), 400);
	assert_int_equal(console(ROLE_ADMIN, "Berth-Console", "keep-alive, upgrade"), 400);
	assert_int_equal(console(ROLE_ADMIN, "websocket, berth-console", " Upgrade ,x"), 400);
	/* the protocol upgrade is checked first */
	assert_int_equal(console(ROLE_VIEWER, NULL, NULL), 426);
	assert_int_equal(console(ROLE_ADMIN, "berth-console", NULL), 426);
	assert_int_equal(console(ROLE_ADMIN, "berth-console", "upgrades"), 426);
	assert_int_equal(console(ROLE_ADMIN, "websocket", "Upgrade"), 426);
	assert_int_equal(console(ROLE_ADMIN, "berth-console2", "Upgrade"), 426);
}

static void test_router(void **state)
{
	(void)state;
	json_t *e;
	assert_int_equal(dispatch(ROLE_NONE, "GET", "/api/v1/host", NULL, NULL, &e), 403);
	assert_string_equal(code(e), "forbidden");
	json_decref(e);
	assert_int_equal(dispatch(ROLE_VIEWER, "GET", "/api/v1/openapi.json", NULL, NULL, &e), 200);
	json_decref(e);
	assert_int_equal(dispatch(ROLE_VIEWER, "GET", "/api/v1/host", NULL, NULL, &e), 200);
	json_decref(e);
	/* changes need admin: a viewer or operator is refused before the body is looked at */
	assert_int_equal(dispatch(ROLE_OPERATOR, "POST", "/api/v1/vms", NULL, "{", &e), 403);
	assert_contains(json_string_value(json_object_get(e, "message")), "admin");
	json_decref(e);
	assert_int_equal(dispatch(ROLE_VIEWER, "DELETE", "/api/v1/vms/x", NULL, NULL, &e), 403);
	json_decref(e);
	assert_int_equal(dispatch(ROLE_ADMIN, "GET", "/api/v1/nope", NULL, NULL, &e), 404);
	assert_string_equal(code(e), "not-found");
	json_decref(e);
	assert_int_equal(dispatch(ROLE_ADMIN, "PUT", "/api/v1/host", NULL, NULL, &e), 405);
	assert_string_equal(code(e), "method-not-allowed");
	json_decref(e);
	assert_int_equal(dispatch(ROLE_ADMIN, "POST", "/api/v1/vms", "text/json", "{}", &e), 415);
	json_decref(e);
	assert_int_equal(
	    dispatch(ROLE_ADMIN, "PATCH", "/api/v1/vms/x", "application/jsonx", "{}", &e), 415);
	json_decref(e);
	assert_int_equal(
	    dispatch(ROLE_ADMIN, "POST", "/api/v1/vms", "application/merge-patch+json", "{}", &e),
	    415); /* merge patches are for PATCH */
	json_decref(e);
	assert_int_equal(dispatch(ROLE_ADMIN, "POST", "/api/v1/vms",
				  "Application/JSON; charset=utf-8", "{\"a\":1,\"a\":2}", &e),
			 400);
	assert_string_equal(code(e), "invalid-json");
	json_decref(e);
	assert_int_equal(dispatch(ROLE_ADMIN, "GET", "/api/v1/host", NULL, "{}", &e), 400);
	assert_string_equal(code(e), "invalid-argument");
	json_decref(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_merge_patch_rfc7386),
	    cmocka_unit_test(test_if_match),
	    cmocka_unit_test(test_route_match),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_router),
	    cmocka_unit_test(test_console_route),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
