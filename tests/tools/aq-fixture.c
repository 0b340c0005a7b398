/* tests/tools/aq-fixture.c - writes a small, fully known record for the audit-query tests.
 *
 *     aq-fixture DATA_DIR [--role NAME:PUBLIC_KEY_BASE64[:cred]]... [--open-last]
 *
 * The record is what the pipeline and the file sink would store (the same segment writer,
 * chain and signed digests from audit/), with contents chosen so every count is known:
 *
 *   seq 1 proxy.config, seq 2 audit.key "dk-pii" (sealed to every --role), seq 3 audit.key
 *   "dk-cred" (sealed to the roles marked :cred); then 24 flows, i = 0..23, flow i at
 *   2025-11-25T22:00:00Z + i * 10 min (its events 1 s apart), so flows 0-11 are on 2025-11-25 and
 * 12-23 on 11-26:
 *     client 10.0.0.(1 + i % 3)
 *     i % 4 == 0  pastebin.com: pre_dns deny by base/no-paste, flow.end 403 "denied"
 *     otherwise   api.example.com (1), www.example.com (2), files.example.org (3): pre_dns
 *                 allow (default), pre_request allow (default) with the alert base/big-upload
 *                 when i % 4 == 3, flow.end 200 "completed" with bytes up 100 (i + 1), down
 *                 1000 (i + 1); query "email=<token>" (alice@example.com for even i, bob@ for
 *                 odd i; pii.email, sealed with dk-pii in every event of the flow); flows with
 *                 i % 4 == 1 carry an authorization header (credential.bearer, sealed with
 *                 dk-cred) in their pre_request
 *     flow 23 has no flow.end
 *   68 records; a frame every 4 records; a segment every 16 records and at UTC midnight; the
 *   last segment is left unsealed with --open-last. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <sys/stat.h>

#include "audit/audit.h"
#include "audit/segment.h"
#include "redact/redact.h"

#define BASE_US 1764108000000000LL /* 2025-11-25T22:00:00Z */
#define TOK_ALICE "tok:pii.email:k1:00000000000000000000000001"
#define TOK_BOB "tok:pii.email:k1:00000000000000000000000002"
#define TOK_BEARER "tok:credential.bearer:k1:00000000000000000000000003"
#define MAX_ROLES 8

struct role {
    char name[65];
    uint8_t pk[32];
    int cred;
};

static struct {
    const char *dir;
    uint8_t pk[32], sk[64];
    struct audit_segment_writer *w;
    uint64_t seq;
    uint8_t chain[32];
    uint8_t seg_prev_chain[32];
    uint8_t prev_digest[32];
    uint64_t seg_records;
    int64_t seg_day;
    struct redact_data_key dk_pii, dk_cred;
    struct role roles[MAX_ROLES];
    int nroles;
} g;

static void die(const char *what, const char *err)
{
    fprintf(stderr, "aq-fixture: %s: %s\n", what, err);
    exit(1);
}

static void seal_segment(void)
{
    struct audit_segment_info info;
    struct audit_digest d;
    char err[512], path[4096];
    uint8_t h[32];

    if (audit_segment_writer_end_frame(g.w, err, sizeof(err)) == -1)
        die("end frame", err);
    audit_segment_writer_info(g.w, &info);
    memset(&d, 0, sizeof(d));
    audit_segment_writer_hash(g.w, d.hash);
    d.bytes = info.bytes_written;
    d.frames = info.frames;
    d.records = info.records;
    d.first_seq = info.first_seq;
    d.last_seq = info.last_seq;
    d.first_time_us = info.first_time_us;
    d.last_time_us = info.last_time_us;
    d.has_prev_chain = 1;
    memcpy(d.prev_chain, g.seg_prev_chain, 32);
    d.has_last_chain = 1;
    memcpy(d.last_chain, g.chain, 32);
    memcpy(d.prev_digest, g.prev_digest, 32);
    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(g.w));
    if (audit_segment_writer_close(g.w, err, sizeof(err)) == -1)
        die("close", err);
    g.w = NULL;
    if (audit_digest_write(path, &d, g.sk, 0, h, err, sizeof(err)) == -1)
        die("digest", err);
    memcpy(g.prev_digest, h, 32);
}

/* Appends the record "{"schema":...,"event":<fmt...>" with seq and time put in after the
 * event name, chained and framed as the pipeline and the file sink would. */
static void record(int64_t t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(int64_t t, const char *fmt, ...)
{
    static const char head[] = "{\"schema\":\"vigil.event/1\",\"event\":";
    static char rest[16384], line[16600];
    char ts[32], hex[65], err[512], *comma;
    uint8_t next[32];
    va_list ap;
    int n;

    g.seq++;
    if (g.w != NULL && (g.seg_records == 16 || t / 86400000000LL != g.seg_day)) {
        seal_segment();
        g.seg_records = 0;
    }
    if (g.w == NULL) {
        g.w = audit_segment_writer_open(g.dir, g.seq, t, 3, err, sizeof(err));
        if (g.w == NULL)
            die("open segment", err);
        g.seg_day = t / 86400000000LL;
        memcpy(g.seg_prev_chain, g.chain, 32);
    }
    audit_format_time(t, ts);
    va_start(ap, fmt);
    vsnprintf(rest, sizeof(rest), fmt, ap);
    va_end(ap);
    comma = strchr(rest, ','); /* after the event name */
    if (comma == NULL)
        die("record", "no member after the event name");
    *comma = '\0';
    n = snprintf(line, sizeof(line), "%s%s,\"seq\":%llu,\"time\":\"%s\",%s", head, rest, (unsigned long long)g.seq,
                 ts, comma + 1);
    audit_chain_next(g.chain, line, (size_t)n, next);
    sodium_bin2hex(hex, sizeof(hex), next, 32);
    memcpy(g.chain, next, 32);
    n += snprintf(line + n - 1, sizeof(line) - (size_t)n + 1, ",\"chain\":\"%s\"}", hex) - 1;
    if (audit_segment_writer_append(g.w, g.seq, t, line, (size_t)n, err, sizeof(err)) == -1)
        die("append", err);
    g.seg_records++;
    if (g.seg_records % 4 == 0 && audit_segment_writer_end_frame(g.w, err, sizeof(err)) == -1)
        die("frame", err);
}

static void box(const struct redact_data_key *k, const char *field, const char *value, char *out, size_t outlen)
{
    uint8_t sealed[512];
    size_t n;

    /* the record that will carry it is the next one */
    if (redact_seal(k, g.seq + 1, field, value, strlen(value), sealed, sizeof(sealed), &n) == -1)
        die("seal", field);
    sodium_bin2base64(out, outlen, sealed, n, sodium_base64_VARIANT_ORIGINAL);
}

static void key_record(int64_t t, const char *id, const struct redact_data_key *k, int cred)
{
    char list[4096] = "";
    size_t used = 0;

    for (int i = 0; i < g.nroles; i++) {
        uint8_t sealed[REDACT_SEALED_KEY_BYTES];
        char b64[200];

        if (cred && !g.roles[i].cred)
            continue;
        redact_data_key_seal(k, g.roles[i].pk, sealed);
        sodium_bin2base64(b64, sizeof(b64), sealed, sizeof(sealed), sodium_base64_VARIANT_ORIGINAL);
        used += (size_t)snprintf(list + used, sizeof(list) - used, "%s{\"role\":\"%s\",\"box\":\"%s\"}",
                                 used > 0 ? "," : "", g.roles[i].name, b64);
    }
    record(t, "\"audit.key\",\"reason\":\"start\",\"key_id\":\"%s\",\"sealed_for\":[%s]}", id, list);
}

int main(int argc, char **argv)
{
    static const char *const hosts[] = { "pastebin.com", "api.example.com", "www.example.com", "files.example.org" };
    char dir[4096], err[512];
    int open_last = 0;

    if (argc < 2 || sodium_init() == -1) {
        fprintf(stderr, "usage: aq-fixture DATA_DIR [--role NAME:PUBLIC_KEY_BASE64[:cred]]... [--open-last]\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--open-last") == 0) {
            open_last = 1;
        } else if (strcmp(argv[i], "--role") == 0 && i + 1 < argc && g.nroles < MAX_ROLES) {
            struct role *r = &g.roles[g.nroles++];
            char *spec = argv[++i], *c1 = strchr(spec, ':'), *c2;
            size_t bin;

            if (c1 == NULL)
                die("--role", spec);
            *c1 = '\0';
            c2 = strchr(c1 + 1, ':');
            if (c2 != NULL) {
                *c2 = '\0';
                r->cred = strcmp(c2 + 1, "cred") == 0;
            }
            snprintf(r->name, sizeof(r->name), "%s", spec);
            if (sodium_base642bin(r->pk, 32, c1 + 1, strlen(c1 + 1), NULL, &bin, NULL,
                                  sodium_base64_VARIANT_ORIGINAL) != 0 ||
                bin != 32)
                die("--role: not a base64 public key", c1 + 1);
        } else {
            die("unknown argument", argv[i]);
        }
    }
    if (mkdir(argv[1], 0700) == -1 && errno != EEXIST)
        die("mkdir", argv[1]);
    if (audit_signing_key_load(argv[1], g.pk, g.sk, err, sizeof(err)) == -1)
        die("signing key", err);
    snprintf(dir, sizeof(dir), "%s/audit", argv[1]);
    if (audit_segment_prepare(dir, err, sizeof(err)) == -1)
        die("prepare", err);
    g.dir = dir;
    redact_data_key_new(&g.dk_pii);
    redact_data_key_new(&g.dk_cred);

    record(BASE_US, "\"proxy.config\",\"reason\":\"loaded\",\"config_version\":\"fixture\"}");
    key_record(BASE_US, "dk-pii", &g.dk_pii, 0);
    key_record(BASE_US, "dk-cred", &g.dk_cred, 1);
    for (int i = 0; i < 24; i++) {
        int64_t t = BASE_US + (int64_t)i * 600 * 1000000;
        uint8_t id[16] = { 0 };
        char flow[AUDIT_FLOW_ID_LEN + 1], common[1024], red[1024], sealed[2048], b1[256], b2[256];
        const char *host = hosts[i % 4], *tok = i % 2 == 0 ? TOK_ALICE : TOK_BOB;
        const char *email = i % 2 == 0 ? "alice@example.com" : "bob@example.com";
        int64_t ms = t / 1000;

        for (int k = 0; k < 6; k++)
            id[k] = (uint8_t)(ms >> (40 - 8 * k));
        id[15] = (uint8_t)i;
        audit_flow_id_format(id, flow);
        if (i % 4 == 0) {
            snprintf(common, sizeof(common),
                     "\"client\":{\"ip\":\"10.0.0.%d\",\"port\":40000},\"request\":{\"method\":\"GET\",\"scheme\":"
                     "\"http\",\"host\":\"%s\",\"port\":80,\"path\":\"/\"}",
                     1 + i % 3, host);
            record(t,
                   "\"flow.phase\",\"flow_id\":\"%s\",\"phase\":\"pre_dns\",\"action\":\"deny\",\"rule\":{\"group\":"
                   "\"base\",\"id\":\"no-paste\",\"priority\":10},\"reason\":\"rule_match\",%s}",
                   flow, common);
            record(t + 1000000,
                   "\"flow.end\",\"flow_id\":\"%s\",\"reason\":\"denied\",%s,\"response\":{\"status\":403},\"bytes\":"
                   "{\"up\":0,\"down\":0},\"duration_ms\":1.000}",
                   flow, common);
            continue;
        }
        snprintf(common, sizeof(common),
                 "\"client\":{\"ip\":\"10.0.0.%d\",\"port\":40000},\"request\":{\"method\":\"GET\",\"scheme\":"
                 "\"http\",\"host\":\"%s\",\"port\":80,\"path\":\"/x\",\"query\":\"email=%s\"",
                 1 + i % 3, host, tok);
        snprintf(red, sizeof(red), "\"redactions\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"token\":\"%s\"}]",
                 tok);
        box(&g.dk_pii, "request.query", email, b1, sizeof(b1));
        snprintf(sealed, sizeof(sealed),
                 "\"sealed\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"key_id\":\"dk-pii\",\"box\":\"%s\"}]",
                 b1);
        record(t,
               "\"flow.phase\",\"flow_id\":\"%s\",\"phase\":\"pre_dns\",\"action\":\"allow\",\"rule\":{\"id\":"
               "\"default\"},\"reason\":\"default_action\",%s},%s,%s}",
               flow, common, red, sealed);
        box(&g.dk_pii, "request.query", email, b1, sizeof(b1));
        snprintf(sealed, sizeof(sealed),
                 "\"sealed\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"key_id\":\"dk-pii\",\"box\":\"%s\"}]",
                 b1);
        if (i % 4 == 1) {
            char hred[1024], hsealed[2048];

            box(&g.dk_cred, "request.headers.authorization", "s3cr3t-bearer-value", b2, sizeof(b2));
            snprintf(hred, sizeof(hred),
                     "\"redactions\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"token\":\"%s\"},"
                     "{\"field\":\"request.headers.authorization\",\"class\":\"credential.bearer\",\"token\":\"%s\"}]",
                     tok, TOK_BEARER);
            snprintf(hsealed, sizeof(hsealed),
                     "\"sealed\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"key_id\":\"dk-pii\",\"box\":"
                     "\"%s\"},{\"field\":\"request.headers.authorization\",\"class\":\"credential.bearer\",\"key_id\":"
                     "\"dk-cred\",\"box\":\"%s\"}]",
                     b1, b2);
            record(t + 1000000,
                   "\"flow.phase\",\"flow_id\":\"%s\",\"phase\":\"pre_request\",\"action\":\"allow\",\"rule\":{\"id\":"
                   "\"default\"},\"reason\":\"default_action\",%s,\"headers\":{\"authorization\":\"Bearer %s\"}},"
                   "\"destination\":{\"ip\":\"93.184.216.34\",\"port\":80},%s,%s}",
                   flow, common, TOK_BEARER, hred, hsealed);
        } else {
            record(t + 1000000,
                   "\"flow.phase\",\"flow_id\":\"%s\",\"phase\":\"pre_request\",\"action\":\"allow\",\"rule\":{\"id\":"
                   "\"default\"},%s\"reason\":\"default_action\",%s},\"destination\":{\"ip\":\"93.184.216.34\","
                   "\"port\":80},%s,%s}",
                   flow,
                   i % 4 == 3 ? "\"alerts\":[{\"group\":\"base\",\"id\":\"big-upload\",\"priority\":30}]," : "",
                   common, red, sealed);
        }
        if (i == 23)
            continue; /* a flow without its flow.end */
        box(&g.dk_pii, "request.query", email, b1, sizeof(b1));
        snprintf(sealed, sizeof(sealed),
                 "\"sealed\":[{\"field\":\"request.query\",\"class\":\"pii.email\",\"key_id\":\"dk-pii\",\"box\":\"%s\"}]",
                 b1);
        record(t + 2000000,
               "\"flow.end\",\"flow_id\":\"%s\",\"reason\":\"completed\",%s},\"destination\":{\"ip\":"
               "\"93.184.216.34\",\"port\":80},\"response\":{\"status\":200},\"bytes\":{\"up\":%d,\"down\":%d},"
               "\"duration_ms\":2.000,%s,%s}",
               flow, common, 100 * (i + 1), 1000 * (i + 1), red, sealed);
    }
    if (open_last) {
        if (audit_segment_writer_end_frame(g.w, err, sizeof(err)) == -1 ||
            audit_segment_writer_close(g.w, err, sizeof(err)) == -1)
            die("close", err);
    } else {
        seal_segment();
    }
    redact_data_key_wipe(&g.dk_pii);
    redact_data_key_wipe(&g.dk_cred);
    printf("%llu records\n", (unsigned long long)g.seq);
    return 0;
}
