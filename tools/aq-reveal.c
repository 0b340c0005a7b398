/* tools/aq-reveal.c - audit-query reveal, the access log, and keys new-role.
 *
 * reveal --role-key FILE --reason TEXT [filters] prints the records that match with the
 * sealed originals this role may see restored into their fields, and everything else still
 * tokenized. The role is the entry of the roles file (--roles, default compliance/roles.json)
 * whose public key is the one FILE's secret key derives; a role sees a class only when its
 * "reveal" list covers it (redact_role_may_reveal: credential.* and "unscannable" only when
 * listed by name), whatever the file's sealed_for says.
 *
 *   pass 1  streams the matching records: indexes the audit.key records (key_id -> the data
 *           key, opened with the role's key pair when one of its sealed_for boxes is ours)
 *           and notes which records and fields hold values this role may see; a data key
 *           that the range does not hold is looked for from the start of the record
 *   log     appends one entry to DATA_DIR/access.log and fsyncs it; no entry, no reveal
 *   pass 2  streams the same records again (up to the last seq pass 1 saw) and prints them,
 *           restoring values only in the records the entry names
 *
 * The access log is JSON lines, one per reveal, hash-chained:
 *
 *   {"time":"<RFC 3339>","role":"<name>","key_id":"<fingerprint>","reason":"<text>",
 *    "filters":{...},"matched":N,"records":[seq,...],"fields":["request.query",...],
 *    "prev":"<hash of the previous entry; 64 zeros for the first>","hash":"<64 hex>"}
 *
 * where key_id is the hex BLAKE2b-128 of the role's public key and hash is the BLAKE2b-256
 * of the line without its ,"hash":"<64 hex>" member (the object up to "prev", closed). An
 * entry that is edited, removed from the middle or reordered breaks the chain and `verify`
 * names it; removing the newest entries leaves a shorter valid chain (keep a copy of the
 * newest hash elsewhere, e.g. in the ticket that asked for the reveal). Appends take an
 * exclusive flock so two reveals never interleave. */
#include "tools/aq.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "audit/segment.h"
#include "redact/redact.h"

#define ACCESS_ENTRY_MAX (64u << 20)
#define KEYS_MAX 65536
#define VALUE_MAX (1u << 20)
#define HASH_MEMBER ",\"hash\":\""
#define HASH_MEMBER_LEN (sizeof(HASH_MEMBER) - 1 + 64 + 1) /* ,"hash":"<64 hex>" */

/* ---- the access log ---- */

static int unhex32(const char *s, size_t n, uint8_t out[32])
{
    size_t bin;

    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return -1;
    return n == 64 && sodium_hex2bin(out, 32, s, n, NULL, &bin, NULL) == 0 && bin == 32 ? 0 : -1;
}

/* Checks one entry <line>: its hash and that it follows <prev>. 0 with its hash in <hash>,
 * or -1 with <why>. */
static int entry_check(const char *line, size_t len, const uint8_t prev[32], uint8_t hash[32], long no, char *why,
                       size_t whylen)
{
    crypto_generichash_state st;
    uint8_t stored[32], calc[32], p[32];
    const char *m;
    json_error_t jerr;
    json_t *o;
    const char *pv;

    if (len < HASH_MEMBER_LEN + 2 || line[len - 1] != '}' ||
        memcmp(line + len - 1 - HASH_MEMBER_LEN, HASH_MEMBER, sizeof(HASH_MEMBER) - 1) != 0 ||
        line[len - 2] != '"' || unhex32(line + len - 1 - 65, 64, stored) == -1) {
        snprintf(why, whylen, "entry %ld (line %ld) is not an access log entry (no hash at its end)", no, no);
        return -1;
    }
    m = line + len - 1 - HASH_MEMBER_LEN;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const unsigned char *)line, (size_t)(m - line));
    crypto_generichash_update(&st, (const unsigned char *)"}", 1);
    crypto_generichash_final(&st, calc, 32);
    if (sodium_memcmp(calc, stored, 32) != 0) {
        snprintf(why, whylen, "entry %ld (line %ld) altered: its hash does not match its content", no, no);
        return -1;
    }
    o = json_loadb(line, len, 0, &jerr);
    pv = json_is_object(o) ? aq_str(o, "prev") : NULL;
    if (pv == NULL || unhex32(pv, strlen(pv), p) == -1) {
        snprintf(why, whylen, "entry %ld (line %ld) has no valid \"prev\"", no, no);
        json_decref(o);
        return -1;
    }
    json_decref(o);
    if (sodium_memcmp(p, prev, 32) != 0) {
        snprintf(why, whylen,
                 no == 1 ? "entry 1 does not start the log (its prev is not zero): earlier entries were removed"
                         : "entry %ld (line %ld) does not follow entry %ld: an entry was removed, inserted or reordered",
                 no, no, no - 1);
        return -1;
    }
    memcpy(hash, stored, 32);
    return 0;
}

/* Walks the log at <fp>: the number of entries, with the last hash in <last>; -1 with <why>. */
static long log_walk(FILE *fp, uint8_t last[32], char *why, size_t whylen)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long no = 0;

    memset(last, 0, 32);
    while ((n = getline(&line, &cap, fp)) != -1) {
        no++;
        if (n == 0 || line[n - 1] != '\n') {
            snprintf(why, whylen, "entry %ld (line %ld) is incomplete (no newline): the log was truncated", no, no);
            free(line);
            return -1;
        }
        if ((size_t)n > ACCESS_ENTRY_MAX) {
            snprintf(why, whylen, "entry %ld (line %ld) is too long", no, no);
            free(line);
            return -1;
        }
        if (entry_check(line, (size_t)n - 1, last, last, no, why, whylen) == -1) {
            free(line);
            return -1;
        }
    }
    free(line);
    if (ferror(fp)) {
        snprintf(why, whylen, "read error: %s", strerror(errno));
        return -1;
    }
    return no;
}

long aq_access_log_verify(const char *data_dir, int *present, char *why, size_t whylen)
{
    char path[4200];
    uint8_t last[32];
    FILE *fp;
    long n;

    snprintf(path, sizeof(path), "%s/%s", data_dir, AQ_ACCESS_LOG);
    *present = 0;
    fp = fopen(path, "re");
    if (fp == NULL) {
        if (errno == ENOENT)
            return 0;
        snprintf(why, whylen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    *present = 1;
    n = log_walk(fp, last, why, whylen);
    fclose(fp);
    return n;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd == -1)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* Appends <entry> (an object without prev and hash; consumed) to the log. 0, or -1 with a
 * message printed. */
static int access_log_append(const char *data_dir, json_t *entry)
{
    char path[4200], why[512], hex[65];
    uint8_t last[32], hash[32];
    char *text = NULL;
    struct stat st;
    FILE *fp = NULL;
    size_t len;
    int fd, rc = -1, created;
    long n;

    snprintf(path, sizeof(path), "%s/%s", data_dir, AQ_ACCESS_LOG);
    created = stat(path, &st) == -1 && errno == ENOENT;
    fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd == -1) {
        fprintf(stderr, "%s reveal: cannot open the access log %s: %s\n", AQ_PROG, path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX) == -1) {
        fprintf(stderr, "%s reveal: cannot lock %s: %s\n", AQ_PROG, path, strerror(errno));
        close(fd);
        goto out;
    }
    fp = fdopen(fd, "r");
    if (fp == NULL) {
        close(fd);
        goto out;
    }
    n = log_walk(fp, last, why, sizeof(why));
    if (n < 0) {
        /* never chain onto a log that does not verify: that would launder the damage */
        fprintf(stderr, "%s reveal: the access log %s does not verify (%s); refusing to reveal\n", AQ_PROG, path,
                why);
        goto out;
    }
    sodium_bin2hex(hex, sizeof(hex), last, 32);
    json_object_set_new(entry, "prev", json_string(hex));
    text = json_dumps(entry, JSON_COMPACT);
    if (text == NULL) {
        fprintf(stderr, "%s reveal: out of memory\n", AQ_PROG);
        goto out;
    }
    len = strlen(text);
    crypto_generichash(hash, 32, (const unsigned char *)text, len, NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), hash, 32);
    text[len - 1] = '\0'; /* the closing brace: the hash member goes before it */
    if (dprintf(fd, "%s" HASH_MEMBER "%s\"}\n", text, hex) < 0 || fsync(fd) == -1) {
        fprintf(stderr, "%s reveal: cannot write the access log %s: %s\n", AQ_PROG, path, strerror(errno));
        goto out;
    }
    if (created)
        fsync_dir(data_dir);
    rc = 0;
out:
    free(text);
    if (fp != NULL)
        fclose(fp); /* closes fd, releasing the lock */
    json_decref(entry);
    return rc;
}

/* ---- reveal ---- */

struct dkey {
    int seen;   /* an audit.key record with this id was read */
    int opened; /* ... and one of its boxes opened with our key */
    struct redact_data_key k;
};

struct reveal {
    struct aq_filter f;
    const char *data_dir;
    const struct redact_role *role;
    uint8_t pk[REDACT_ROLE_KEY_BYTES], sk[REDACT_ROLE_KEY_BYTES];
    struct aq_map *keys; /* key_id -> struct dkey */
    int pass;
    /* pass 1 */
    uint64_t matched, max_seq;
    uint64_t *seqs; /* records with something this role may see, ascending */
    size_t nseqs, capseqs;
    json_t *fields; /* distinct field paths */
    size_t pending; /* keys needed and not seen yet */
    int oom;
    /* pass 2 */
    uint64_t printed, restored, failed_open;
    uint8_t *bin, *val; /* a sealed value, decoded and opened */
};

/* Decodes base64 in any of libsodium's variants. 0, or -1. */
static int b64_decode(const char *s, uint8_t *out, size_t cap, size_t *n)
{
    static const int variants[] = { sodium_base64_VARIANT_ORIGINAL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING,
                                    sodium_base64_VARIANT_URLSAFE, sodium_base64_VARIANT_URLSAFE_NO_PADDING };

    for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
        if (sodium_base642bin(out, cap, s, strlen(s), NULL, n, NULL, variants[i]) == 0)
            return 0;
    return -1;
}

/* An audit.key record: opens its data key when it was sealed to this role. */
static void index_key(struct reveal *r, json_t *obj)
{
    const char *id = aq_str(obj, "key_id");
    json_t *e;
    size_t i;
    struct dkey *k;

    if (id == NULL)
        return;
    /* while looking for missing keys, only those */
    k = aq_map_get(r->keys, id, strlen(id), r->pass != 0);
    if (k == NULL || k->opened)
        return;
    if (!k->seen && r->pending > 0 && r->pass == 0)
        r->pending--;
    k->seen = 1;
    /* the box named for our role first, then any (a renamed role keeps its key) */
    for (int pass = 0; pass < 2 && !k->opened; pass++) {
        json_array_foreach(json_object_get(obj, "sealed_for"), i, e) {
            const char *role = aq_str(e, "role"), *box = aq_str(e, "box");
            uint8_t sealed[REDACT_SEALED_KEY_BYTES + 8];
            size_t n;

            if (box == NULL || (pass == 0) != (role != NULL && strcmp(role, r->role->name) == 0))
                continue;
            if (b64_decode(box, sealed, sizeof(sealed), &n) == 0 && n == REDACT_SEALED_KEY_BYTES &&
                redact_data_key_open(&k->k, sealed, r->pk, r->sk) == 0) {
                k->opened = 1;
                break;
            }
        }
    }
}

static int add_seq(struct reveal *r, uint64_t seq)
{
    if (r->nseqs > 0 && r->seqs[r->nseqs - 1] == seq)
        return 0;
    if (r->nseqs == r->capseqs) {
        size_t ncap = r->capseqs ? r->capseqs * 2 : 1024;
        uint64_t *n = realloc(r->seqs, ncap * sizeof(*n));

        if (n == NULL)
            return -1;
        r->seqs = n;
        r->capseqs = ncap;
    }
    r->seqs[r->nseqs++] = seq;
    return 0;
}

static int seq_logged(const struct reveal *r, uint64_t seq)
{
    size_t lo = 0, hi = r->nseqs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (r->seqs[mid] == seq)
            return 1;
        if (r->seqs[mid] < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

/* Finds the string member a sealed "field" path names: the container and its key. Keys may
 * hold dots (header names): every split is tried, the longest key first. */
static json_t *resolve(json_t *obj, const char *path, const char **key)
{
    json_t *v;
    const char *dot;

    if (!json_is_object(obj))
        return NULL;
    v = json_object_get(obj, path);
    if (json_is_string(v)) {
        *key = json_object_iter_key(json_object_iter_at(obj, path));
        return obj;
    }
    for (dot = strrchr(path, '.'); dot != NULL;) {
        char head[256];
        size_t n = (size_t)(dot - path);
        json_t *found;

        if (n < sizeof(head)) {
            memcpy(head, path, n);
            head[n] = '\0';
            v = json_object_get(obj, head);
            if (json_is_object(v) && (found = resolve(v, dot + 1, key)) != NULL)
                return found;
        }
        /* the previous dot */
        while (dot > path && *--dot != '.')
            ;
        if (*dot != '.')
            break;
    }
    return NULL;
}

/* The token of the <nth> redaction of (<field>, <cls>) in <obj>, or NULL. */
static const char *token_for(json_t *obj, const char *field, const char *cls, size_t nth)
{
    json_t *e;
    size_t i;

    json_array_foreach(json_object_get(obj, "redactions"), i, e) {
        const char *f = aq_str(e, "field"), *c = aq_str(e, "class");

        if (f != NULL && c != NULL && strcmp(f, field) == 0 && strcmp(c, cls) == 0 && nth-- == 0)
            return aq_str(e, "token");
    }
    return NULL;
}

/* Puts <value> (<n> bytes) in place of <token> in the string at <field>. 0, or -1 when it
 * has no place there (then the caller lists it in "revealed"). */
static int restore(json_t *obj, const char *field, const char *token, const char *value, size_t n)
{
    const char *key, *s, *at;
    json_t *parent = resolve(obj, field, &key), *nv;
    char *buf;
    size_t sl, tl;

    if (parent == NULL)
        return -1;
    s = json_string_value(json_object_get(parent, key));
    sl = strlen(s);
    if (token == NULL || (at = strstr(s, token)) == NULL) {
        if (token != NULL)
            return -1;
        nv = json_stringn(value, n); /* no token named: the whole field was sealed */
    } else {
        tl = strlen(token);
        buf = malloc(sl - tl + n + 1);
        if (buf == NULL)
            return -1;
        memcpy(buf, s, (size_t)(at - s));
        memcpy(buf + (at - s), value, n);
        memcpy(buf + (at - s) + n, at + tl, sl - (size_t)(at - s) - tl);
        nv = json_stringn(buf, sl - tl + n);
        free(buf);
    }
    if (nv == NULL)
        return -1; /* not UTF-8 */
    return json_object_set_new(parent, key, nv);
}

/* Pass 1 on a matching record: does it hold anything this role may see? */
static void note_record(struct reveal *r, json_t *obj)
{
    json_t *e;
    size_t i;
    uint64_t seq = (uint64_t)aq_int(obj, "seq", 0);
    int any = 0;

    json_array_foreach(json_object_get(obj, "sealed"), i, e) {
        const char *field = aq_str(e, "field"), *cls = aq_str(e, "class"), *kid = aq_str(e, "key_id");
        struct dkey *k;
        size_t j;
        json_t *x;
        int dup = 0;

        if (field == NULL || cls == NULL || kid == NULL || !redact_role_may_reveal(r->role, cls))
            continue;
        k = aq_map_get(r->keys, kid, strlen(kid), 1);
        if (k == NULL) {
            r->oom = 1;
            continue;
        }
        if (!k->seen)
            r->pending++; /* from before the range: looked for from the start once pass 1 ends */
        any = 1;
        json_array_foreach(r->fields, j, x) dup = dup || strcmp(json_string_value(x), field) == 0;
        if (!dup)
            json_array_append_new(r->fields, json_string(field));
    }
    if (any && add_seq(r, seq) == -1)
        r->oom = 1;
}

/* Pass 2: prints <obj> with what this role may see restored. */
static void print_revealed(struct reveal *r, json_t *obj)
{
    json_t *sealed = json_object_get(obj, "sealed"), *revealed = json_array(), *e;
    uint64_t seq = (uint64_t)aq_int(obj, "seq", 0);
    int logged = seq_logged(r, seq);
    uint8_t *bin = r->bin, *val = r->val;
    size_t i;
    char *text;

    json_array_foreach(sealed, i, e) {
        const char *field = aq_str(e, "field"), *cls = aq_str(e, "class"), *kid = aq_str(e, "key_id");
        const char *box = aq_str(e, "box");
        struct dkey *k;
        size_t bn, vn, nth = 0, j;
        json_t *x;

        if (!logged || field == NULL || cls == NULL || kid == NULL || box == NULL ||
            !redact_role_may_reveal(r->role, cls))
            continue;
        k = aq_map_get(r->keys, kid, strlen(kid), 0);
        if (k == NULL || !k->opened) {
            r->failed_open++;
            continue;
        }
        if (b64_decode(box, bin, VALUE_MAX + REDACT_SEAL_OVERHEAD, &bn) == -1 ||
            redact_open(&k->k, seq, field, bin, bn, val, VALUE_MAX, &vn) == -1) {
            fprintf(stderr, "%s reveal: warning: record seq %" PRIu64 ": the sealed %s does not open\n", AQ_PROG, seq,
                    field);
            r->failed_open++;
            continue;
        }
        for (j = 0; j < i; j++) {
            x = json_array_get(sealed, j);
            nth += aq_str(x, "field") != NULL && aq_str(x, "class") != NULL && strcmp(aq_str(x, "field"), field) == 0 &&
                   strcmp(aq_str(x, "class"), cls) == 0;
        }
        x = json_pack("{s:s,s:s}", "field", field, "class", cls);
        if (restore(obj, field, token_for(obj, field, cls, nth), (const char *)val, vn) == -1) {
            json_t *s = json_stringn((const char *)val, vn);

            if (s != NULL) {
                json_object_set_new(x, "value", s);
            } else {
                char *b64 = malloc(sodium_base64_ENCODED_LEN(vn, sodium_base64_VARIANT_ORIGINAL));

                if (b64 != NULL) {
                    sodium_bin2base64(b64, sodium_base64_ENCODED_LEN(vn, sodium_base64_VARIANT_ORIGINAL), val, vn,
                                      sodium_base64_VARIANT_ORIGINAL);
                    json_object_set_new(x, "value_base64", json_string(b64));
                    free(b64);
                }
            }
        }
        json_array_append_new(revealed, x);
        r->restored++;
        sodium_memzero(val, vn);
    }
    json_object_del(obj, "sealed"); /* ciphertext: of no use to the reader */
    if (json_array_size(revealed) > 0)
        json_object_set(obj, "revealed", revealed);
    json_decref(revealed);
    text = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (text != NULL) {
        puts(text);
        free(text);
    }
    r->printed++;
}

static int reveal_line(void *ctx, const struct aq_line *l)
{
    struct reveal *r = ctx;
    json_error_t jerr;
    json_t *obj;
    int is_key = memmem(l->data, l->len < 96 ? l->len : 96, "\"event\":\"audit.key\"", 19) != NULL;
    uint64_t seq;

    if (r->pass == 0 && !is_key)
        return 0;
    if (r->pass == 2 && aq_line_seq(l->data, l->len, &seq) == 0 && seq > r->max_seq)
        return 1; /* newer than what the access log entry covers */
    if (!is_key && !aq_filter_prefilter(&r->f, l->data, l->len))
        return 0;
    obj = json_loadb(l->data, l->len, 0, &jerr);
    if (!json_is_object(obj)) {
        json_decref(obj);
        return 0;
    }
    if (is_key)
        index_key(r, obj);
    if (r->pass != 0 && aq_filter_match(&r->f, obj)) {
        if (r->pass == 1) {
            r->matched++;
            if ((uint64_t)aq_int(obj, "seq", 0) > r->max_seq)
                r->max_seq = (uint64_t)aq_int(obj, "seq", 0);
            note_record(r, obj);
        } else {
            print_revealed(r, obj);
        }
    }
    json_decref(obj);
    return r->pass == 0 && r->pending == 0 ? 1 : 0;
}

static void reveal_usage(FILE *out)
{
    fprintf(out,
            "usage: %s reveal --role-key FILE --reason TEXT [--roles FILE] [--data-dir DIR] [filters]\n\n"
            "Prints the matching records with the sealed originals this role may see restored into their\n"
            "fields (listed in \"revealed\"), everything else still tokenized. First appends who, when, why\n"
            "and which records and fields to DATA_DIR/access.log (hash-chained; `verify` checks it).\n\n"
            "  --role-key FILE     the role's secret key (vigil-keygen role NAME, or keys new-role)\n"
            "  --reason TEXT       why (a ticket, a case number): required, recorded in the access log\n"
            "  --roles FILE        the roles file (default " AQ_DEFAULT_ROLES "); the role is the\n"
            "                      one whose public_key matches the key\n"
            "%s",
            AQ_PROG, aq_filter_help);
}

int aq_cmd_reveal(int argc, char **argv)
{
    static const struct option opts[] = {
        AQ_FILTER_OPTIONS,
        { "role-key", required_argument, NULL, 'k' },
        { "reason", required_argument, NULL, 'r' },
        { "roles", required_argument, NULL, 'R' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct reveal r = { .data_dir = AQ_DEFAULT_DATA_DIR };
    const char *keyfile = NULL, *reason = NULL, *roles_path = AQ_DEFAULT_ROLES;
    struct redact_roles *roles = NULL;
    struct aq_scan_stats st;
    struct aq_scan_opts so;
    uint8_t fp[16];
    char err[512], hex[33], now[32];
    json_t *entry, *recs;
    int c, stats = 0, rc = AQ_EXIT_USAGE;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            keyfile = optarg;
            break;
        case 'r':
            reason = optarg;
            break;
        case 'R':
            roles_path = optarg;
            break;
        case AQ_OPT_DATA_DIR:
            r.data_dir = optarg;
            break;
        case AQ_OPT_STATS:
            stats = 1;
            break;
        case 'h':
            reveal_usage(stdout);
            return AQ_EXIT_OK;
        case ':':
            fprintf(stderr, "%s reveal: %s needs a value\n", AQ_PROG, argv[optind - 1]);
            return AQ_EXIT_USAGE;
        case '?':
            fprintf(stderr, "%s reveal: unknown option %s\n", AQ_PROG, argv[optind - 1]);
            reveal_usage(stderr);
            return AQ_EXIT_USAGE;
        default:
            if (aq_filter_set(&r.f, c, optarg, err, sizeof(err)) == -1) {
                fprintf(stderr, "%s reveal: %s\n", AQ_PROG, err);
                return AQ_EXIT_USAGE;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s reveal: unexpected argument \"%s\"\n", AQ_PROG, argv[optind]);
        return AQ_EXIT_USAGE;
    }
    if (keyfile == NULL) {
        fprintf(stderr, "%s reveal: --role-key FILE is required\n", AQ_PROG);
        return AQ_EXIT_USAGE;
    }
    if (reason == NULL || reason[strspn(reason, " \t")] == '\0') {
        fprintf(stderr, "%s reveal: --reason TEXT is required: every reveal is logged with why it was made\n",
                AQ_PROG);
        return AQ_EXIT_USAGE;
    }
    if (sodium_init() == -1 || aq_check_data_dir(r.data_dir) == -1)
        return AQ_EXIT_USAGE;
    if (redact_role_key_load(keyfile, r.pk, r.sk, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s reveal: %s\n", AQ_PROG, err);
        return AQ_EXIT_USAGE;
    }
    roles = redact_roles_load(roles_path, err, sizeof(err));
    if (roles == NULL) {
        fprintf(stderr, "%s reveal: %s\n", AQ_PROG, err);
        goto out;
    }
    for (size_t i = 0; i < redact_roles_count(roles) && r.role == NULL; i++) {
        const struct redact_role *ro = redact_roles_at(roles, i);

        if (ro->has_key && sodium_memcmp(ro->public_key, r.pk, sizeof(r.pk)) == 0)
            r.role = ro;
    }
    if (r.role == NULL) {
        char b64[64];

        sodium_bin2base64(b64, sizeof(b64), r.pk, sizeof(r.pk), sodium_base64_VARIANT_ORIGINAL);
        fprintf(stderr, "%s reveal: the key in %s (public key %s) belongs to no role in %s: wrong key or roles file\n",
                AQ_PROG, keyfile, b64, roles_path);
        goto out;
    }
    crypto_generichash(fp, sizeof(fp), r.pk, sizeof(r.pk), NULL, 0);
    sodium_bin2hex(hex, sizeof(hex), fp, sizeof(fp));
    r.keys = aq_map_new(sizeof(struct dkey), KEYS_MAX);
    r.fields = json_array();
    r.bin = malloc(VALUE_MAX + REDACT_SEAL_OVERHEAD);
    r.val = malloc(VALUE_MAX);
    if (r.keys == NULL || r.fields == NULL || r.bin == NULL || r.val == NULL) {
        fprintf(stderr, "%s reveal: out of memory\n", AQ_PROG);
        goto out;
    }

    /* pass 1: what will be revealed */
    so = (struct aq_scan_opts){ .data_dir = r.data_dir, .f = &r.f, .progress = 1 };
    r.pass = 1;
    if (aq_scan(&so, reveal_line, &r, &st, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s: %s\n", AQ_PROG, err);
        goto out;
    }
    if (r.oom) {
        fprintf(stderr, "%s reveal: out of memory\n", AQ_PROG);
        goto out;
    }
    if (r.pending > 0) {
        /* data keys from before the range: their audit.key records, from the start */
        struct aq_scan_stats st0;
        struct aq_scan_opts so0 = { .data_dir = r.data_dir, .quiet = 1 };
        size_t it = 0;
        const char *k;
        void *v;

        r.pending = 0;
        while (aq_map_next(r.keys, &it, &k, &v))
            r.pending += !((struct dkey *)v)->seen;
        r.pass = 0;
        if (r.pending > 0 && aq_scan(&so0, reveal_line, &r, &st0, err, sizeof(err)) == -1) {
            fprintf(stderr, "%s: %s\n", AQ_PROG, err);
            goto out;
        }
    }

    /* the access log entry, before anything is shown */
    aq_format_time(aq_now_us(), now);
    recs = json_array();
    for (size_t i = 0; i < r.nseqs; i++)
        json_array_append_new(recs, json_integer((json_int_t)r.seqs[i]));
    entry = json_pack("{s:s,s:s,s:s,s:s,s:o,s:I,s:o,s:O}", "time", now, "role", r.role->name, "key_id", hex, "reason",
                      reason, "filters", aq_filter_to_json(&r.f), "matched", (json_int_t)r.matched, "records", recs,
                      "fields", r.fields);
    if (entry == NULL || access_log_append(r.data_dir, entry) == -1)
        goto out;

    /* pass 2: show */
    r.pass = 2;
    if (r.matched > 0 && aq_scan(&so, reveal_line, &r, &st, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s: %s\n", AQ_PROG, err);
        goto out;
    }
    if (stats)
        aq_scan_stats_print(&st);
    if (r.failed_open > 0)
        fprintf(stderr,
                "%s reveal: %" PRIu64 " sealed value(s) of classes role %s may see could not be opened (their data "
                "key was not sealed to this role, or is not in the record)\n",
                AQ_PROG, r.failed_open, r.role->name);
    fprintf(stderr, "%s reveal: role %s: %" PRIu64 " records, %" PRIu64 " values revealed; logged in %s/%s\n", AQ_PROG,
            r.role->name, r.printed, r.restored, r.data_dir, AQ_ACCESS_LOG);
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", AQ_PROG, strerror(errno));
        goto out;
    }
    rc = r.printed > 0 ? AQ_EXIT_OK : AQ_EXIT_NONE;
out:
    if (r.keys != NULL) {
        size_t it = 0;
        const char *k;
        void *v;

        while (aq_map_next(r.keys, &it, &k, &v))
            redact_data_key_wipe(&((struct dkey *)v)->k);
        aq_map_free(r.keys);
    }
    sodium_memzero(r.sk, sizeof(r.sk));
    if (r.val != NULL)
        sodium_memzero(r.val, VALUE_MAX);
    free(r.bin);
    free(r.val);
    json_decref(r.fields);
    free(r.seqs);
    redact_roles_free(roles);
    return rc;
}

/* ---- keys ---- */

int aq_cmd_keys(int argc, char **argv)
{
    const char *name, *dir = ".";
    char path[4200], pubpath[4200], err[512], b64[64];
    uint8_t pk[REDACT_ROLE_KEY_BYTES];
    FILE *fp;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: %s keys new-role NAME [--out DIR]\n\n"
               "Writes a role key pair: DIR/NAME.key (the X25519 secret key, base64, mode 0600; never\n"
               "overwritten) and DIR/NAME.pub (its public key), and prints the roles.json entry.\n",
               AQ_PROG);
        return AQ_EXIT_OK;
    }
    if (!(argc == 3 || (argc == 5 && strcmp(argv[3], "--out") == 0)) || strcmp(argv[1], "new-role") != 0) {
        fprintf(stderr, "usage: %s keys new-role NAME [--out DIR]\n", AQ_PROG);
        return AQ_EXIT_USAGE;
    }
    name = argv[2];
    if (argc == 5)
        dir = argv[4];
    if (name[0] == '\0' || name[0] == '.' || strlen(name) > 64 || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(name)) {
        fprintf(stderr, "%s keys: role names are 1-64 characters of [a-z0-9_.-]\n", AQ_PROG);
        return AQ_EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    snprintf(pubpath, sizeof(pubpath), "%s/%s.pub", dir, name);
    if (redact_role_key_create(path, pk, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s keys: %s\n", AQ_PROG, err);
        return AQ_EXIT_NONE;
    }
    sodium_bin2base64(b64, sizeof(b64), pk, sizeof(pk), sodium_base64_VARIANT_ORIGINAL);
    fp = fopen(pubpath, "we");
    if (fp == NULL || fprintf(fp, "%s\n", b64) < 0 || fclose(fp) != 0) {
        fprintf(stderr, "%s keys: cannot write %s: %s\n", AQ_PROG, pubpath, strerror(errno));
        return AQ_EXIT_NONE;
    }
    fprintf(stderr, "%s keys: secret key %s (mode 0600), public key %s\n", AQ_PROG, path, pubpath);
    printf("{\"name\": \"%s\", \"public_key\": \"%s\", \"reveal\": []}\n", name, b64);
    return AQ_EXIT_OK;
}
