/* tests/unit/audit/test_redaction.c - the pipeline's redaction stage against a fake sink:
 * secrets in every user-data string field come out as tokens, the "redactions" list names
 * each, one secret gets one token across events, kept originals are sealed for exactly the
 * roles that may reveal them (audit.key records first and at rotation), and a sealed box
 * opens only for its record and field.
 *
 * Each test emits its events before starting the pipeline and stops it (which drains)
 * before looking at what the sink got, so nothing waits on time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <sodium.h>

#include <dirent.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/audit.h"
#include "audit/sink.h"
#include "redact/redact.h"

/* Known secrets: a GitHub token with a valid checksum, an AWS access key id, an e-mail. */
#define GH "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"
#define GH2 "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"
#define AWS "AKIAIOSFODNN7EXAMPLE"
#define MAIL "jane.doe@example.com"
#define APIKEY "k3y-9f8e7d6c5b4a3f2e1d0c"
#define COOKIE "s3ss10n-4b2f9e7a1c8d6f3e"

/* ---- the fake sink: keeps every record, parsed ---- */

struct fake {
    json_t *got;
    size_t bad;
    struct audit_buf raw; /* every record's bytes, for searching */
};

static enum sink_result fake_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct fake *f = s->ctx;

    for (size_t i = 0; i < n; i++) {
        json_t *o = json_loadb(recs[i].data, recs[i].len, 0, NULL);

        audit_buf_append(&f->raw, recs[i].data, recs[i].len);
        audit_buf_append(&f->raw, "\n", 1);
        if (o == NULL) {
            f->bad++;
            continue;
        }
        json_array_append_new(f->got, o);
    }
    return SINK_OK;
}

static void fake_tick(struct sink *s, int64_t now_us)
{
}

static int fake_flush(struct sink *s, int timeout_ms)
{
    return 0;
}

static void fake_close(struct sink *s)
{
}

static const struct sink_ops fake_ops = {
    .type = "fake", .write = fake_write, .tick = fake_tick, .flush = fake_flush, .close = fake_close,
};

/* ---- fixture: a temp dir with the key ring, two provisioned roles and one that is not ---- */

struct fx {
    char dir[64];
    char keys[128];
    char roles[128];
    uint8_t pk[2][REDACT_ROLE_KEY_BYTES], sk[2][REDACT_ROLE_KEY_BYTES]; /* dlp, ir */
    struct fake fake;
    struct sink sink;
    struct audit_ring *ring;
    struct audit_pipeline *p;
};

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[512];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char path[256], err[256], b64[2][64];
    const char *names[2] = {"dlp", "ir"};
    FILE *fp;

    assert_non_null(f);
    assert_true(sodium_init() >= 0);
    strcpy(f->dir, "/tmp/vigil-redaction-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->keys, sizeof(f->keys), "%s/keys", f->dir);
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s.key", f->dir, names[i]);
        assert_int_equal(redact_role_key_create(path, f->pk[i], err, sizeof(err)), 0);
        assert_int_equal(redact_role_key_load(path, f->pk[i], f->sk[i], err, sizeof(err)), 0);
        sodium_bin2base64(b64[i], sizeof(b64[i]), f->pk[i], REDACT_ROLE_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
    }
    snprintf(f->roles, sizeof(f->roles), "%s/roles.json", f->dir);
    fp = fopen(f->roles, "w");
    assert_non_null(fp);
    fprintf(fp,
            "{\"version\": 1, \"roles\": ["
            "{\"name\": \"dlp\", \"public_key\": \"%s\", \"reveal\": [\"pii.*\"]},"
            "{\"name\": \"ir\", \"public_key\": \"%s\", \"reveal\": [\"credential.*\", \"pii.*\"]},"
            "{\"name\": \"unprovisioned\", \"public_key\": null, \"reveal\": [\"*\", \"credential.*\"]}]}",
            b64[0], b64[1]);
    fclose(fp);
    f->fake.got = json_array();
    audit_buf_init(&f->fake.raw, 0);
    f->sink = (struct sink){.ops = &fake_ops, .name = "fake", .ctx = &f->fake};
    f->ring = audit_ring_new(16384, AUDIT_OVERFLOW_DROP);
    assert_non_null(f->ring);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    audit_pipeline_free(f->p);
    audit_ring_free(f->ring);
    json_decref(f->fake.got);
    audit_buf_fini(&f->fake.raw);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* The redaction config: the fixture's roles file and <extra> members (JSON text or NULL). */
static json_t *conf(struct fx *f, const char *extra)
{
    char text[1024];
    json_t *c;

    snprintf(text, sizeof(text), "{\"roles_file\": \"%s\"%s%s}", f->roles, extra ? ", " : "", extra ? extra : "");
    c = json_loads(text, 0, NULL);
    assert_non_null(c);
    return c;
}

static void start(struct fx *f, json_t *c)
{
    struct sink *sinks[] = {&f->sink};
    struct audit_pipeline_opts o = {.keys_dir = f->keys, .redaction = c};
    char err[1024];

    f->p = audit_pipeline_new(f->ring, sinks, 1, &o, err, sizeof(err));
    if (f->p == NULL)
        fail_msg("audit_pipeline_new: %s", err);
    json_decref(c);
    assert_int_equal(audit_pipeline_start(f->p, err, sizeof(err)), 0);
}

static void stop(struct fx *f)
{
    audit_pipeline_stop(f->p);
    assert_int_equal(f->fake.bad, 0);
}

/* An intercepted request with a secret in every user-data string field. */
static void emit_dirty(struct fx *f, const char *gh)
{
    struct audit_event ev;
    char hdr[1024], resp[512];

    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_REQUEST | AUDIT_F_RESPONSE | AUDIT_F_TLS | AUDIT_F_RULE;
    ev.phase = AUDIT_PHASE_POST_RESPONSE;
    ev.action = AUDIT_ACTION_ALLOW;
    ev.status = 200;
    audit_event_set_str(&ev, AUDIT_STR_METHOD, "GET", 3);
    audit_event_set_str(&ev, AUDIT_STR_SCHEME, "https", 5);
    audit_event_set_str(&ev, AUDIT_STR_HOST, AWS ".example.net", strlen(AWS ".example.net"));
    audit_event_set_str(&ev, AUDIT_STR_PATH, "/u/" MAIL "/keys/" AWS, strlen("/u/" MAIL "/keys/" AWS));
    snprintf(hdr, sizeof(hdr), "q=1&ref=%s&email=%s&token=opaque", gh, MAIL);
    audit_event_set_str(&ev, AUDIT_STR_QUERY, hdr, strlen(hdr));
    audit_event_set_str(&ev, AUDIT_STR_PRINCIPAL, MAIL, strlen(MAIL));
    audit_event_set_str(&ev, AUDIT_STR_REASON, "upstream said " AWS, strlen("upstream said " AWS));
    audit_event_set_str(&ev, AUDIT_STR_TLS_SNI, AWS ".example.net", strlen(AWS ".example.net"));
    audit_event_set_str(&ev, AUDIT_STR_CONTENT_TYPE, "text/plain; owner=" MAIL, strlen("text/plain; owner=" MAIL));
    audit_event_set_str(&ev, AUDIT_STR_RULE_ID, "rule-1", 6);
    audit_event_set_str(&ev, AUDIT_STR_CONFIG_VERSION, "00112233445566778899aabbccddeeff", 32);
    snprintf(hdr, sizeof(hdr),
             "host\t" AWS ".example.net\nauthorization\tBearer %s\nx-api-key\t" APIKEY "\ncookie\tsid=" COOKIE
             "; theme=dark\nuser-agent\tcurl/8 (" MAIL ")\naccept\t*/*\n",
             gh);
    audit_event_set_str(&ev, AUDIT_STR_REQ_HEADERS, hdr, strlen(hdr));
    snprintf(resp, sizeof(resp), "set-cookie\tsid=" COOKIE "; Path=/; HttpOnly\nx-echo\t%s\nserver\ttest\n", gh);
    audit_event_set_str(&ev, AUDIT_STR_RESP_HEADERS, resp, strlen(resp));
    assert_int_equal(audit_emit(f->ring, &ev), 0);
}

static void emit_clean(struct fx *f, uint64_t tag)
{
    struct audit_event ev;

    audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
    audit_flow_id_new(ev.flow_id);
    ev.flags = AUDIT_F_FLOW | AUDIT_F_BYTES | AUDIT_F_REQUEST;
    ev.bytes_up = tag;
    audit_event_set_str(&ev, AUDIT_STR_HOST, "example.com", 11);
    audit_event_set_str(&ev, AUDIT_STR_REASON, "completed", 9);
    assert_int_equal(audit_emit(f->ring, &ev), 0);
}

static const char *str_at(json_t *o, const char *path)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k != NULL && o != NULL; k = strtok_r(NULL, ".", &save))
        o = json_object_get(o, k);
    return json_string_value(o);
}

static const char *kind(json_t *o)
{
    return json_string_value(json_object_get(o, "event"));
}

/* The first record of kind <k>, or NULL. */
static json_t *first_of(struct fx *f, const char *k)
{
    size_t i;
    json_t *o;

    json_array_foreach(f->fake.got, i, o)
        if (strcmp(kind(o), k) == 0)
            return o;
    return NULL;
}

/* The token the "redactions" list of <o> gives for <field> and <cls> (the <nth> one). */
static const char *token_for(json_t *o, const char *field, const char *cls, int nth)
{
    size_t i;
    json_t *r;

    json_array_foreach(json_object_get(o, "redactions"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "field")), field) == 0 &&
            strcmp(json_string_value(json_object_get(r, "class")), cls) == 0 && nth-- == 0)
            return json_string_value(json_object_get(r, "token"));
    }
    return NULL;
}

static void expect_token(json_t *o, const char *field, const char *cls)
{
    if (token_for(o, field, cls, 0) == NULL)
        fail_msg("no %s redaction for %s in %s", cls, field, json_dumps(json_object_get(o, "redactions"), 0));
}

/* no raw secret in any record; each user-data field carries its tokens and says so in "redactions" */
static void test_redaction_every_field_tokenized(void **state)
{
    struct fx *f = *state;
    json_t *o;
    char *text;
    struct redact_keyring *kr;
    char err[256];

    emit_dirty(f, GH);
    start(f, conf(f, NULL));
    stop(f);
    text = f->fake.raw.data;
    assert_non_null(text);
    f->fake.raw.data[f->fake.raw.len - 1] = '\0';
    for (const char *const *s = (const char *const[]){GH, AWS, MAIL, APIKEY, COOKIE, NULL}; *s != NULL; s++)
        if (strstr(text, *s) != NULL)
            fail_msg("raw secret %s in the record:\n%s", *s, text);
    o = first_of(f, "flow.phase");
    assert_non_null(o);
    expect_token(o, "request.host", "credential.aws");
    expect_token(o, "request.path", "pii.email");
    expect_token(o, "request.path", "credential.aws");
    expect_token(o, "request.query", "credential.github");
    expect_token(o, "request.query", "pii.email");
    expect_token(o, "request.query", "credential.query"); /* a configured parameter: the value whatever it is */
    expect_token(o, "principal", "pii.email");
    expect_token(o, "reason", "credential.aws");
    expect_token(o, "tls.sni", "credential.aws");
    expect_token(o, "response.content_type", "pii.email");
    expect_token(o, "request.headers.host", "credential.aws");
    expect_token(o, "request.headers.authorization", "credential.bearer");
    expect_token(o, "request.headers.x-api-key", "credential.api_key");
    expect_token(o, "request.headers.cookie", "credential.cookie");
    expect_token(o, "request.headers.user-agent", "pii.email");
    expect_token(o, "response.headers.set-cookie", "credential.cookie");
    expect_token(o, "response.headers.x-echo", "credential.github");
    /* what is kept: the scheme, cookie names, clean headers, the proxy's own fields */
    assert_string_equal(str_at(o, "request.method"), "GET");
    assert_string_equal(str_at(o, "request.headers.accept"), "*/*");
    assert_string_equal(str_at(o, "response.headers.server"), "test");
    assert_string_equal(str_at(o, "rule.id"), "rule-1");
    assert_non_null(strstr(str_at(o, "request.headers.authorization"), "Bearer tok:credential.bearer:k1:"));
    assert_non_null(strstr(str_at(o, "request.headers.cookie"), "sid=tok:credential.cookie:"));
    assert_non_null(strstr(str_at(o, "request.headers.cookie"), "; theme=tok:credential.cookie:")); /* every value */
    /* the value in the field is the token the list names */
    assert_non_null(strstr(str_at(o, "principal"), token_for(o, "principal", "pii.email", 0)));
    assert_string_equal(str_at(o, "principal"), token_for(o, "principal", "pii.email", 0));
    /* and it is the token of the value under the ring's key */
    kr = redact_keyring_open(f->keys, err, sizeof(err));
    assert_non_null(kr);
    assert_int_equal(redact_token_verify(kr, MAIL, strlen(MAIL), str_at(o, "principal")), REDACT_VERIFY_MATCH);
    assert_int_equal(redact_token_verify(kr, AWS, strlen(AWS), token_for(o, "reason", "credential.aws", 0)),
                     REDACT_VERIFY_MATCH);
    redact_keyring_free(kr);
    assert_null(json_object_get(o, "truncated"));
}

/* one value, one token: across fields and across events; another value, another token */
static void test_redaction_same_secret_same_token(void **state)
{
    struct fx *f = *state;
    json_t *a, *b, *c;

    emit_dirty(f, GH);
    emit_dirty(f, GH);
    emit_dirty(f, GH2);
    start(f, conf(f, NULL));
    stop(f);
    assert_int_equal(json_array_size(f->fake.got), 3);
    a = json_array_get(f->fake.got, 0);
    b = json_array_get(f->fake.got, 1);
    c = json_array_get(f->fake.got, 2);
    assert_string_equal(token_for(a, "request.query", "credential.github", 0),
                        token_for(b, "request.query", "credential.github", 0));
    assert_string_equal(token_for(a, "request.query", "credential.github", 0),
                        token_for(a, "response.headers.x-echo", "credential.github", 0));
    assert_string_equal(token_for(a, "principal", "pii.email", 0), token_for(c, "principal", "pii.email", 0));
    assert_string_not_equal(token_for(a, "request.query", "credential.github", 0),
                            token_for(c, "request.query", "credential.github", 0));
}

/* The sealed_for box of <role> in audit.key record <k>, decoded; 0, or -1 when absent. */
static int sealed_for(json_t *k, const char *role, uint8_t out[REDACT_SEALED_KEY_BYTES])
{
    size_t i, bin;
    json_t *e;

    json_array_foreach(json_object_get(k, "sealed_for"), i, e)
    {
        const char *box = json_string_value(json_object_get(e, "box"));

        if (strcmp(json_string_value(json_object_get(e, "role")), role) != 0)
            continue;
        assert_int_equal(sodium_base642bin(out, REDACT_SEALED_KEY_BYTES, box, strlen(box), NULL, &bin, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        assert_int_equal(bin, REDACT_SEALED_KEY_BYTES);
        return 0;
    }
    return -1;
}

/* The audit.key record of <key_id> that comes before record <seq>, or NULL. */
static json_t *key_record(struct fx *f, const char *key_id, json_int_t seq)
{
    size_t i;
    json_t *o;

    json_array_foreach(f->fake.got, i, o)
    {
        if (json_integer_value(json_object_get(o, "seq")) >= seq)
            break;
        if (strcmp(kind(o), "audit.key") == 0 && strcmp(str_at(o, "key_id"), key_id) == 0)
            return o;
    }
    return NULL;
}

/* The <field>/<cls> sealed entry of <o> opened with role <r>'s key: 0 with the value in <out>,
 * -1 when the role has no key for it; <seq_delta> and <other_field> tamper with the AD. */
static int reveal(struct fx *f, json_t *o, const char *field, const char *cls, int r, const char *role,
                  int seq_delta, const char *other_field, char *out, size_t outcap)
{
    size_t i, bin, len;
    json_t *e, *k;
    uint8_t sk[REDACT_SEALED_KEY_BYTES], box[1024];
    struct redact_data_key dk;
    json_int_t seq = json_integer_value(json_object_get(o, "seq"));

    json_array_foreach(json_object_get(o, "sealed"), i, e)
    {
        const char *b = str_at(e, "box");

        if (strcmp(str_at(e, "field"), field) != 0 || strcmp(str_at(e, "class"), cls) != 0)
            continue;
        k = key_record(f, str_at(e, "key_id"), seq);
        assert_non_null(k); /* announced before its first use */
        if (sealed_for(k, role, sk) == -1)
            return -1;
        assert_int_equal(redact_data_key_open(&dk, sk, f->pk[r], f->sk[r]), 0);
        assert_int_equal(sodium_base642bin(box, sizeof(box), b, strlen(b), NULL, &bin, NULL,
                                           sodium_base64_VARIANT_ORIGINAL),
                         0);
        if (redact_open(&dk, (uint64_t)(seq + seq_delta), other_field ? other_field : field, box, bin,
                        (uint8_t *)out, outcap - 1, &len) == -1) {
            redact_data_key_wipe(&dk);
            return -2;
        }
        out[len] = '\0';
        redact_data_key_wipe(&dk);
        return 0;
    }
    fail_msg("no sealed %s for %s", cls, field);
    return -1;
}

/* kept classes are sealed for the roles that may reveal them, and only for those: dlp opens the
 * e-mail, not the bearer token; ir opens both; the box is bound to its record and field */
static void test_redaction_sealed_for_roles(void **state)
{
    struct fx *f = *state;
    json_t *o, *k;
    char v[512];
    size_t i, nkeys = 0;

    emit_dirty(f, GH);
    start(f, conf(f, "\"keep_originals\": [\"pii.*\", \"credential.bearer\"]"));
    stop(f);
    /* audit.key records come first, one per audience (pii.*: dlp+ir; credential.bearer: ir) */
    json_array_foreach(f->fake.got, i, k)
    {
        if (strcmp(kind(k), "audit.key") != 0)
            break;
        nkeys++;
        assert_string_equal(str_at(k, "reason"), "start");
        assert_int_equal(strncmp(str_at(k, "key_id"), "dk-", 3), 0);
        json_t *e;
        size_t j;
        json_array_foreach(json_object_get(k, "sealed_for"), j, e)
            assert_string_not_equal(str_at(e, "role"), "unprovisioned");
    }
    assert_int_equal(nkeys, 2);
    o = first_of(f, "flow.phase");
    assert_non_null(o);
    assert_int_equal(reveal(f, o, "principal", "pii.email", 0, "dlp", 0, NULL, v, sizeof(v)), 0);
    assert_string_equal(v, MAIL);
    assert_int_equal(reveal(f, o, "principal", "pii.email", 1, "ir", 0, NULL, v, sizeof(v)), 0);
    assert_string_equal(v, MAIL);
    assert_int_equal(reveal(f, o, "request.headers.authorization", "credential.bearer", 1, "ir", 0, NULL, v,
                            sizeof(v)),
                     0);
    assert_string_equal(v, GH);
    assert_int_equal(reveal(f, o, "request.headers.authorization", "credential.bearer", 0, "dlp", 0, NULL, v,
                            sizeof(v)),
                     -1);
    /* associated data: another record or another field does not open */
    assert_int_equal(reveal(f, o, "principal", "pii.email", 0, "dlp", 1, NULL, v, sizeof(v)), -2);
    assert_int_equal(reveal(f, o, "principal", "pii.email", 0, "dlp", 0, "request.path", v, sizeof(v)), -2);
    /* classes nobody asked to keep are not sealed */
    json_array_foreach(json_object_get(o, "sealed"), i, k)
    {
        const char *cls = str_at(k, "class");

        assert_true(strncmp(cls, "pii.", 4) == 0 || strcmp(cls, "credential.bearer") == 0);
    }
    /* two e-mails in the path and query are sealed in their own fields */
    assert_int_equal(reveal(f, o, "request.query", "pii.email", 1, "ir", 0, NULL, v, sizeof(v)), 0);
    assert_string_equal(v, MAIL);
    {
        struct audit_redaction_stats st;

        assert_int_equal(audit_pipeline_redaction_stats(f->p, &st), 0);
        assert_int_equal(st.events, 1);
        assert_int_equal(st.keys, 2);
        assert_true(st.sealed >= 6);
        assert_int_equal(st.seal_dropped, 0);
        assert_int_equal(st.lost, 0);
    }
}

/* a new key epoch every key_rotate_records records: new audit.key records, new key ids, and
 * every sealed value names a key announced before it */
static void test_redaction_keys_rotate(void **state)
{
    struct fx *f = *state;
    json_t *o;
    size_t i, starts = 0, rotations = 0;
    char v[256];
    const char *first_id = NULL;

    for (int n = 0; n < 2500; n++) {
        if (n % 500 == 0)
            emit_dirty(f, GH);
        else
            emit_clean(f, (uint64_t)n);
    }
    start(f, conf(f, "\"keep_originals\": [\"pii.email\"], \"key_rotate_records\": 1000"));
    stop(f);
    assert_string_equal(kind(json_array_get(f->fake.got, 0)), "audit.key");
    json_array_foreach(f->fake.got, i, o)
    {
        if (strcmp(kind(o), "audit.key") == 0) {
            const char *r = str_at(o, "reason");

            starts += strcmp(r, "start") == 0;
            rotations += strcmp(r, "rotate_records") == 0;
            if (first_id == NULL)
                first_id = str_at(o, "key_id");
            else
                assert_string_not_equal(first_id, str_at(o, "key_id"));
            continue;
        }
        if (json_object_get(o, "sealed") != NULL) {
            assert_int_equal(reveal(f, o, "principal", "pii.email", 0, "dlp", 0, NULL, v, sizeof(v)), 0);
            assert_string_equal(v, MAIL);
        }
    }
    assert_int_equal(starts, 1);
    assert_int_equal(rotations, 2);
}

/* without a provisioned role for a kept class nothing is sealed and no key is made */
static void test_redaction_no_provisioned_role_no_keys(void **state)
{
    struct fx *f = *state;
    json_t *o;
    size_t i;
    FILE *fp = fopen(f->roles, "w");

    assert_non_null(fp);
    fputs("{\"version\": 1, \"roles\": [{\"name\": \"dlp\", \"public_key\": null, \"reveal\": [\"pii.*\"]}]}", fp);
    fclose(fp);
    emit_dirty(f, GH);
    start(f, conf(f, "\"keep_originals\": [\"pii.*\"]"));
    stop(f);
    json_array_foreach(f->fake.got, i, o)
    {
        assert_string_not_equal(kind(o), "audit.key");
        assert_null(json_object_get(o, "sealed"));
    }
    assert_non_null(json_object_get(first_of(f, "flow.phase"), "redactions"));
}

/* "enabled": false: the stage is off, values pass as they are */
static void test_redaction_disabled_passes_through(void **state)
{
    struct fx *f = *state;
    json_t *o;

    emit_dirty(f, GH);
    start(f, conf(f, "\"enabled\": false"));
    stop(f);
    o = first_of(f, "flow.phase");
    assert_string_equal(str_at(o, "principal"), MAIL);
    assert_null(json_object_get(o, "redactions"));
    {
        struct audit_redaction_stats st;

        assert_int_equal(audit_pipeline_redaction_stats(f->p, &st), -1);
    }
}

/* counts by class, for the admin endpoint */
static void test_redaction_counts_by_class(void **state)
{
    struct fx *f = *state;
    struct audit_redaction_count c[64];
    size_t n;
    uint64_t email = 0, cookie = 0;

    emit_dirty(f, GH);
    emit_dirty(f, GH);
    emit_clean(f, 1);
    start(f, conf(f, NULL));
    stop(f);
    n = audit_pipeline_redaction_counts(f->p, c, 64);
    assert_true(n > 3 && n < 64);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c[i].cls, "pii.email") == 0)
            email = c[i].count;
        if (strcmp(c[i].cls, "credential.cookie") == 0)
            cookie = c[i].count;
    }
    assert_int_equal(email, 2 * 5); /* path, query, principal, content type, user-agent */
    assert_int_equal(cookie, 2 * 3); /* each cookie value: sid and theme, and the Set-Cookie's sid */
    assert_int_equal(audit_pipeline_redaction_counts(f->p, c, 1), n);
}

/* a field longer than max_field_bytes is one "unscannable" token, never passed through */
static void test_redaction_long_field_tokenized_whole(void **state)
{
    struct fx *f = *state;
    struct audit_event ev;
    char big[2000];
    json_t *o;

    memset(big, 'a', sizeof(big));
    memcpy(big + 1000, AWS, strlen(AWS));
    audit_event_init(&ev, AUDIT_EVENT_FLOW_PHASE);
    ev.flags = AUDIT_F_REQUEST;
    audit_event_set_str(&ev, AUDIT_STR_PATH, big, sizeof(big));
    assert_int_equal(audit_emit(f->ring, &ev), 0);
    start(f, conf(f, "\"max_field_bytes\": 1024"));
    stop(f);
    o = first_of(f, "flow.phase");
    assert_int_equal(strncmp(str_at(o, "request.path"), "tok:unscannable:", 16), 0);
    expect_token(o, "request.path", "unscannable");
}

/* detectors that do not compile (a file gone since the config was checked): no pipeline, and
 * the error names the key */
static void test_redaction_compile_failure_refuses_pipeline(void **state)
{
    struct fx *f = *state;
    struct sink *sinks[] = {&f->sink};
    json_t *c = conf(f, "\"detectors\": \"/nonexistent/custom.json\"");
    struct audit_pipeline_opts o = {.keys_dir = f->keys, .redaction = c};
    char err[1024];

    assert_null(audit_pipeline_new(f->ring, sinks, 1, &o, err, sizeof(err)));
    assert_non_null(strstr(err, "redaction.detectors: "));
    json_decref(c);
}

/* config errors name their JSON path */
static void test_redaction_check_names_paths(void **state)
{
    struct fx *f = *state;
    char err[2048];
    json_t *c;

    c = json_loads("{\"keep_originals\": [\"pii.email\", \"Not A Class\"], \"bogus\": 1,"
                   " \"key_rotate_records\": 5, \"roles_file\": \"/nonexistent/roles.json\"}",
                   0, NULL);
    assert_int_equal(audit_redaction_check(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "redaction.keep_originals[1]: not a class pattern"));
    assert_non_null(strstr(err, "redaction.bogus: unknown key"));
    assert_non_null(strstr(err, "redaction.key_rotate_records: must be an integer from 1000"));
    json_decref(c);
    c = json_loads("{\"roles_file\": \"/nonexistent/roles.json\"}", 0, NULL);
    assert_int_equal(audit_redaction_check(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "redaction.roles_file: "));
    json_decref(c);
    c = json_loads("{\"detectors\": \"/nonexistent/custom.json\"}", 0, NULL);
    assert_int_equal(audit_redaction_check(c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "redaction.detectors: "));
    json_decref(c);
    c = conf(f, "\"keep_originals\": [\"pii.*\", \"credential.bearer\"], \"query_params\": [\"sig\"]");
    assert_int_equal(audit_redaction_check(c, err, sizeof(err)), 0);
    json_decref(c);
    assert_int_equal(audit_redaction_check(NULL, err, sizeof(err)), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_redaction_every_field_tokenized, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_same_secret_same_token, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_sealed_for_roles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_keys_rotate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_no_provisioned_role_no_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_disabled_passes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_counts_by_class, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_long_field_tokenized_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_compile_failure_refuses_pipeline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redaction_check_names_paths, setup, teardown),
    };
    return cmocka_run_group_tests_name("audit/redaction", tests, NULL, NULL);
}
