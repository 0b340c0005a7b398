/* tests/unit/redact/test_roles.c - the roles file: the shipped compliance/roles.json loads,
 * class patterns cover what they say (and "*" never covers credentials), and every error names
 * the file and the JSON path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "helpers.h"

/* the shipped roles file loads with the default roles: siem and dlp-analyst see tokens and
 * classes only, privacy-officer may reveal PII, nobody may reveal credentials */
static void test_roles_shipped_file_loads(void **state)
{
    char path[512], err[512];
    struct redact_roles *r = redact_roles_load(src_path("compliance/roles.json", path, sizeof(path)), err, sizeof(err));
    const struct redact_role *siem, *dlp, *po;

    if (r == NULL)
        fail_msg("%s", err);
    assert_int_equal(redact_roles_count(r), 3);
    siem = redact_roles_find(r, "siem");
    dlp = redact_roles_find(r, "dlp-analyst");
    po = redact_roles_find(r, "privacy-officer");
    assert_non_null(siem);
    assert_non_null(dlp);
    assert_non_null(po);
    assert_null(redact_roles_find(r, "nobody"));
    assert_int_equal(siem->nreveal, 0);
    assert_int_equal(dlp->nreveal, 0);
    assert_true(redact_role_may_reveal(po, "pii.email"));
    assert_true(redact_role_may_reveal(po, "pii.card"));
    assert_false(redact_role_may_reveal(po, "credential.aws"));
    assert_false(redact_role_may_reveal(po, "unscannable"));
    for (size_t i = 0; i < redact_roles_count(r); i++) {
        const struct redact_role *role = redact_roles_at(r, i);
        int lists_credentials = 0;

        for (size_t k = 0; k < role->nreveal; k++)
            lists_credentials |= strncmp(role->reveal[k], "credential.", 11) == 0;
        assert_int_equal(lists_credentials, 0);
        assert_false(redact_role_may_reveal(role, "credential.bearer"));
    }
    redact_roles_free(r);
}

/* class patterns: exact, prefix wildcard, and "*" that excludes credentials and unscannable */
static void test_roles_class_patterns(void **state)
{
    assert_true(redact_class_match("pii.email", "pii.email"));
    assert_false(redact_class_match("pii.email", "pii.emails"));
    assert_true(redact_class_match("pii.*", "pii.email"));
    assert_true(redact_class_match("pii.*", "pii.card.amex"));
    assert_false(redact_class_match("pii.*", "pii"));
    assert_false(redact_class_match("pii.*", "piix.email"));
    assert_true(redact_class_match("*", "pii.ssn"));
    assert_true(redact_class_match("*", "confidential.project"));
    assert_false(redact_class_match("*", "credential.jwt"));
    assert_false(redact_class_match("*", "unscannable"));
    assert_true(redact_class_match("credential.*", "credential.jwt"));
    assert_true(redact_class_match("unscannable", "unscannable"));
    (void)state;
}

/* a role with a public key: decoded, flagged, and its patterns available */
static void test_roles_public_key_decoded(void **state)
{
    const char *json = "{\"roles\": [{\"name\": \"a\", \"public_key\": \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\","
                       " \"reveal\": [\"pii.*\", \"credential.github\"]}]}";
    char err[256];
    struct redact_roles *r = redact_roles_parse(json, strlen(json), "t.json", err, sizeof(err));
    const struct redact_role *a;

    assert_non_null(r);
    a = redact_roles_at(r, 0);
    assert_string_equal(a->name, "a");
    assert_string_equal(a->description, "");
    assert_true(a->has_key);
    for (int i = 0; i < 32; i++)
        assert_int_equal(a->public_key[i], i);
    assert_int_equal(a->nreveal, 2);
    assert_true(redact_role_may_reveal(a, "credential.github"));
    assert_false(redact_role_may_reveal(a, "credential.gitlab"));
    redact_roles_free(r);
    (void)state;
}

static void expect_error(const char *json, const char *want)
{
    char err[512];
    struct redact_roles *r = redact_roles_parse(json, strlen(json), "roles.json", err, sizeof(err));

    assert_null(r);
    if (strstr(err, want) == NULL || strncmp(err, "roles.json", 10) != 0)
        fail_msg("error \"%s\" does not name \"%s\"", err, want);
}

/* errors name the JSON path */
static void test_roles_errors_name_json_path(void **state)
{
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null, \"reveal\": []},"
                 " {\"name\": \"b\", \"public_key\": \"c2hvcnQ=\", \"reveal\": []}]}",
                 "roles[1].public_key: neither a .pub path nor the base64 of 32 bytes");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": 7, \"reveal\": []}]}", "roles[0].public_key: not a string");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null, \"reveal\": [\"pii.*\", \"pii.email\", \"PII\"]}]}",
                 "roles[0].reveal[2]:");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null, \"reveal\": [\"*.pii\"]}]}", "roles[0].reveal[0]:");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null, \"reveal\": [], \"colour\": 1}]}",
                 "roles[0].colour: unknown key");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null, \"reveal\": []},"
                 " {\"name\": \"a\", \"public_key\": null, \"reveal\": []}]}",
                 "roles[1].name: duplicate role");
    expect_error("{\"roles\": [{\"name\": \"a\", \"reveal\": []}]}", "roles[0].public_key: required");
    expect_error("{\"roles\": [{\"name\": \"a\", \"public_key\": null}]}", "roles[0].reveal: required");
    expect_error("{\"roles\": [{\"name\": \"Bad Name\", \"public_key\": null, \"reveal\": []}]}", "roles[0].name:");
    expect_error("{\"role\": []}", "role: unknown key");
    expect_error("{\"roles\": {}}", "roles: required, an array");
    expect_error("{\"roles\": [", "roles.json:1:");
    (void)state;
}

/* "public_key" may name a .pub file (as `audit-query keys new-role` writes it), relative to
 * the roles file's directory or absolute; a missing or malformed one names the role and file */
static void test_roles_public_key_from_pub_file(void **state)
{
    char dir[] = "/tmp/vigil-roles-XXXXXX", path[128], err[512];
    struct redact_roles *r;
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/a.pub", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/bad.pub", dir);
    assert_non_null(f = fopen(path, "w"));
    fputs("c2hvcnQ=\n", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/roles.json", dir);
    assert_non_null(f = fopen(path, "w"));
    fprintf(f, "{\"roles\": [{\"name\": \"a\", \"public_key\": \"a.pub\", \"reveal\": [\"pii.*\"]},"
               " {\"name\": \"b\", \"public_key\": \"%s/a.pub\", \"reveal\": []}]}", dir);
    fclose(f);
    r = redact_roles_load(path, err, sizeof(err));
    if (r == NULL)
        fail_msg("%s", err);
    for (size_t k = 0; k < 2; k++) {
        const struct redact_role *a = redact_roles_at(r, k);

        assert_true(a->has_key);
        for (int i = 0; i < 32; i++)
            assert_int_equal(a->public_key[i], i);
    }
    redact_roles_free(r);

    assert_non_null(f = fopen(path, "w"));
    fputs("{\"roles\": [{\"name\": \"a\", \"public_key\": \"missing.pub\", \"reveal\": []}]}", f);
    fclose(f);
    assert_null(redact_roles_load(path, err, sizeof(err)));
    if (strstr(err, "roles[0].public_key:") == NULL || strstr(err, "missing.pub") == NULL)
        fail_msg("error \"%s\" does not name the role and the file", err);
    assert_non_null(f = fopen(path, "w"));
    fputs("{\"roles\": [{\"name\": \"a\", \"public_key\": \"bad.pub\", \"reveal\": []}]}", f);
    fclose(f);
    assert_null(redact_roles_load(path, err, sizeof(err)));
    if (strstr(err, "roles[0].public_key:") == NULL || strstr(err, "bad.pub: not the base64 of 32 bytes") == NULL)
        fail_msg("error \"%s\" does not name the malformed file", err);

    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
    (void)state;
}

/* a missing file is an error naming it */
static void test_roles_missing_file(void **state)
{
    char err[256];

    assert_null(redact_roles_load("/nonexistent/roles.json", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/roles.json"));
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles_shipped_file_loads),
        cmocka_unit_test(test_roles_class_patterns),
        cmocka_unit_test(test_roles_public_key_decoded),
        cmocka_unit_test(test_roles_errors_name_json_path),
        cmocka_unit_test(test_roles_public_key_from_pub_file),
        cmocka_unit_test(test_roles_missing_file),
    };
    return cmocka_run_group_tests_name("redact/roles", tests, NULL, NULL);
}
