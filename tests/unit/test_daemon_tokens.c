/* Unit tests for berthd's API tokens and TCP listener address: a token made through the router
 * checks out with its role; altered, malformed, expired and deleted ones do not; --listen forms. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <sqlite3.h>

#include "daemon/api.h"
#include "daemon/db.h"
#include "daemon/http.h"

static unsigned call(struct api_ctx *ctx, const char *method, const char *path, const char *body,
		     json_t **out)
{
	struct api_req req = {.ctx = ctx,
			      .method = method,
			      .path = path,
			      .role = ROLE_ADMIN,
			      .content_type = body ? "application/json" : NULL,
			      .body = body,
			      .body_len = body ? strlen(body) : 0};
	struct api_resp resp = {0};
	req.query = json_object();
	api_dispatch(&req, &resp);
	json_decref(req.query);
	*out = json_incref(resp.body);
	api_resp_free(&resp);
	return resp.status;
}

static void test_token_check(void **state)
{
	char dir[] = "/tmp/berth-tokens-XXXXXX", path[64], err[256], bad[128];
	struct api_ctx ctx = {0};
	struct api_caller who;
	const char *why;
	json_t *r;
	(void)state;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/berth.db", dir);
	assert_int_equal(db_open(path, &ctx.db, err, sizeof(err)), 0);
	assert_int_equal(
	    call(&ctx, "POST", "/api/v1/tokens", "{\"name\":\"ci\",\"role\":\"operator\"}", &r),
	    201);
	const char *tok = json_string_value(json_object_get(r, "token"));
	char header[160];
	snprintf(header, sizeof(header), "Bearer %s", tok);
	assert_int_equal(api_token_check(&ctx, header, &who, &why), 0);
	assert_int_equal(who.role, ROLE_OPERATOR);
	assert_string_equal(who.token_name, "ci");
	assert_int_equal(who.token_id, json_integer_value(json_object_get(r, "id")));
	snprintf(header, sizeof(header), "bearer   %s", tok); /* the scheme is case-insensitive */
	assert_int_equal(api_token_check(&ctx, header, &who, &why), 0);

	/* one character of the secret changed; the id changed; malformed; missing */
	snprintf(bad, sizeof(bad), "Bearer %s", tok);
	bad[strlen(bad) - 1] = bad[strlen(bad) - 1] == 'A' ? 'B' : 'A';
	assert_int_equal(api_token_check(&ctx, bad, &who, &why), -EACCES);
	assert_contains(why, "invalid");
	snprintf(bad, sizeof(bad), "Bearer berth_99%s", tok + 6);
	assert_int_equal(api_token_check(&ctx, bad, &who, &why), -EACCES);
	static const char *const malformed[] = {
	    "Basic YTpi",
	    "Bearer",
	    "Bearer ",
	    "Bearer berth_",
	    "Bearer berth__x",
	    "Bearer berth_1_",
	    "Bearer berth_1_short",
	    "Bearer berth_x_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "Bearer berth_1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", /* not base64url */
	    "Bearer berth_99999999999999999999999_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
		if (api_token_check(&ctx, malformed[i], &who, &why) != -EACCES)
			fail_msg("accepted '%s'", malformed[i]);
	assert_int_equal(api_token_check(&ctx, NULL, &who, &why), -EACCES);
	assert_contains(why, "no Authorization");

	/* expired: its expiry moved into the past */
	sqlite3 *h;
	assert_int_equal(sqlite3_open(path, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "UPDATE tokens SET expires = '2020-01-01T00:00:00.000Z'",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(h);
	snprintf(header, sizeof(header), "Bearer %s", tok);
	assert_int_equal(api_token_check(&ctx, header, &who, &why), -EACCES);
	assert_contains(why, "expired");

	/* deleted */
	json_t *d;
	assert_int_equal(call(&ctx, "DELETE", "/api/v1/tokens/ci", NULL, &d), 204);
	assert_int_equal(api_token_check(&ctx, header, &who, &why), -EACCES);
	json_decref(r);
	db_close(ctx.db);
	unlink(path);
	snprintf(path, sizeof(path), "%s/berth.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/berth.db-shm", dir);
	unlink(path);
	rmdir(dir);
}

static void test_parse_listen(void **state)
{
	struct sockaddr_storage ss;
	socklen_t len;
	(void)state;

	assert_int_equal(http_parse_listen("127.0.0.1:8443", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8443);
	assert_int_equal(len, sizeof(struct sockaddr_in));
	assert_int_equal(http_parse_listen("[::1]:443", &ss, &len), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 443);
	assert_int_equal(http_parse_listen("[::]:1", &ss, &len), 0);
	assert_int_equal(http_parse_listen("0.0.0.0:65535", &ss, &len), 0);
	static const char *const bad[] = {
	    "",		  "8443",	 ":8443",	  "127.0.0.1",
	    "127.0.0.1:", "127.0.0.1:0", "1.2.3.4:65536", "::1:8443",
	    "[::1]",	  "[::1]8443",	 "[127.0.0.1]:1", "localhost:8443",
	    "[::1]:x",	  "1.2.3.4:+1"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (http_parse_listen(bad[i], &ss, &len) != -EINVAL)
			fail_msg("accepted '%s'", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_token_check),
	    cmocka_unit_test(test_parse_listen),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
