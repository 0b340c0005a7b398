/* tools/aq-verify.c - audit-query verify: is the stored record whole and unaltered?
 *
 * Offline, on local files, with the public key the auditor trusts (DATA_DIR/keys/
 * audit-signing.pub, or --public-key FILE obtained out of band). Modelled on CloudTrail's
 * validate-logs. For each segment, in writing order:
 *
 *   digest     <segment>.vseg.sig parses, its Ed25519 signature verifies, it was made by the
 *              trusted key, it names this file, and its prev_digest is the BLAKE2b-256 of the
 *              previous digest file (so a segment removed, inserted or reordered shows)
 *   file       BLAKE2b-256 and size equal the digest's hash and bytes
 *   records    every frame decodes (zstd checksum); each record's seq follows the previous
 *              one (across segments too) and its chain is BLAKE2b-256(previous chain ||
 *              the record without its chain member) (audit/segment.h); the first record of
 *              a segment matches the seq its name carries and chains from the previous
 *              segment's last; counts, seq and time range and last chain equal the digest's
 *
 * The newest segment of a running vigil has no digest yet: it is "unsealed (in progress)"
 * when its records chain, not invalid. A digest whose segment file is gone is reported as
 * the missing file. Each segment gets "valid" or "INVALID: <reason>"; the summary names the
 * first failure precisely: the record (seq, line, frame) that was altered, missing or out
 * of order, or the segment file that is missing, renamed, truncated or not sealed.
 *
 * Then: the coverage (first and last seq and time) with any gaps, the flows that never got
 * their flow.end, and the access log (DATA_DIR/access.log, see aq-reveal.c).
 *
 * Exit 0 when everything is intact, 1 on any integrity failure, 2 when it cannot run. */
#include "tools/aq.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit/audit.h"
#include "audit/segment.h"

#define MAX_GAPS 32
#define MAX_OPEN_FLOWS_SHOWN 20
#define OPEN_FLOWS_MAX (1u << 20)

/* Reasons, most precise first: a segment's headline is its lowest. */
enum why {
    WHY_RECORD = 0, /* a record altered, missing or out of order */
    WHY_SEGMENT,    /* a segment missing, renamed, reordered */
    WHY_TRUNCATED,
    WHY_FRAME,      /* a frame cannot be read */
    WHY_DIGEST,     /* the digest is missing, forged or edited */
    WHY_LINK,       /* the digest does not follow the previous one */
    WHY_MISMATCH,   /* the file or its records differ from the digest otherwise */
    WHY_NONE,
};

struct entry {
    char *path; /* the segment's path (its file may be missing) */
    char date[11];
    uint64_t first_seq;
    unsigned dup;
    int has_file, has_sig;
};

struct gap {
    uint64_t from, to;
    char after[80], before[80];
};

struct verify {
    const char *data_dir;
    uint8_t pk[32];
    int allow_retention;
    int quiet; /* only failures and the summary */

    /* continuity */
    int started;             /* a segment was seen */
    uint8_t prev_digest[32]; /* hash of the previous digest file */
    int prev_digest_known;
    char prev_name[80];
    uint64_t next_seq; /* expected seq of the next record; 0 unknown */
    uint8_t chain_a[32], chain_b[32]; /* the previous record's chain: as stored, as computed */
    int chain_known;

    /* the segment being checked */
    char name[80];
    enum why why;
    char reason[512];
    char notes[512];
    int ocsf;
    uint64_t miss_from, miss_to; /* the last records reported missing in this segment */
    int miss_headline;           /* ... and that report is the segment's reason */

    /* totals */
    size_t segs, segs_valid;
    uint64_t recs, recs_valid;
    int failed;
    char first_failure[700];
    int has_cov;
    uint64_t cov_first_seq, cov_last_seq;
    int64_t cov_first_time, cov_last_time;
    struct gap gaps[MAX_GAPS];
    size_t ngaps;
    uint64_t gaps_total;
    struct aq_map *open_flows; /* flow id -> 1 byte: started in the in-progress segment */
    int in_progress;

    /* progress on stderr when it is a terminal and the run has lasted half a second */
    int show_progress, progress_shown;
    int64_t progress_us, progress_every;
    size_t seg_i, seg_n;
};

static void progress(struct verify *v)
{
    int64_t now;

    if (!v->show_progress || (now = aq_now_us()) - v->progress_us < v->progress_every)
        return;
    v->progress_us = now;
    v->progress_shown = 1;
    fprintf(stderr, "\r%s verify: segment %zu/%zu, %" PRIu64 " records checked", AQ_PROG, v->seg_i + 1, v->seg_n,
            v->recs);
}

/* Erases the progress line before a result line is printed. */
static void progress_clear(struct verify *v)
{
    if (v->progress_shown) {
        fputs("\r\033[K", stderr);
        v->progress_shown = 0;
    }
}

static void reason(struct verify *v, enum why w, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void reason(struct verify *v, enum why w, const char *fmt, ...)
{
    va_list ap;

    if (w >= v->why)
        return;
    v->why = w;
    va_start(ap, fmt);
    vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
    va_end(ap);
}

static void note(struct verify *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(struct verify *v, const char *fmt, ...)
{
    size_t n = strlen(v->notes);
    va_list ap;

    if (n + 3 >= sizeof(v->notes))
        return;
    if (n > 0) {
        memcpy(v->notes + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(v->notes + n, sizeof(v->notes) - n, fmt, ap);
    va_end(ap);
}

static void add_gap(struct verify *v, uint64_t from, uint64_t to, const char *after, const char *before)
{
    v->gaps_total += to - from + 1;
    if (v->ngaps == MAX_GAPS)
        return;
    v->gaps[v->ngaps] = (struct gap){ .from = from, .to = to };
    snprintf(v->gaps[v->ngaps].after, sizeof(v->gaps[0].after), "%s", after);
    snprintf(v->gaps[v->ngaps].before, sizeof(v->gaps[0].before), "%s", before);
    v->ngaps++;
}

/* ---- listing: segments and digests, orphans included ---- */

static int is_date(const char *s)
{
    static const char pat[] = "dddd-dd-dd";

    for (size_t i = 0; i < 10; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != '-')
            return 0;
    return s[10] == '\0';
}

/* "<20 digits>[-n].vseg" or the same + ".sig": 1 segment, 2 digest, 0 neither */
static int parse_name(const char *s, uint64_t *seq, unsigned *dup, size_t *baselen)
{
    const char *p = s;
    uint64_t v = 0;

    for (int i = 0; i < AUDIT_SEGMENT_SEQ_DIGITS; i++, p++) {
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *dup = 0;
    if (*p == '-') {
        char *end;
        unsigned long d = strtoul(p + 1, &end, 10);

        if (end == p + 1 || d == 0 || p[1] == '0')
            return 0;
        *dup = (unsigned)d;
        p = end;
    }
    if (strncmp(p, AUDIT_SEGMENT_SUFFIX, strlen(AUDIT_SEGMENT_SUFFIX)) != 0)
        return 0;
    p += strlen(AUDIT_SEGMENT_SUFFIX);
    *seq = v;
    *baselen = (size_t)(p - s);
    if (*p == '\0')
        return 1;
    if (strcmp(p, AUDIT_DIGEST_SUFFIX) == 0)
        return 2;
    return 0;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    int c = strcmp(x->date, y->date);

    if (c != 0)
        return c;
    if (x->first_seq != y->first_seq)
        return x->first_seq < y->first_seq ? -1 : 1;
    return x->dup < y->dup ? -1 : x->dup > y->dup;
}

static void entries_free(struct entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(e[i].path);
    free(e);
}

static int list_entries(const char *data_dir, struct entry **out, size_t *nout)
{
    char top[4096], sub[4400];
    struct entry *list = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d, *sd;

    snprintf(top, sizeof(top), "%s/%s", data_dir, AUDIT_SEGMENT_SUBDIR);
    *out = NULL;
    *nout = 0;
    d = opendir(top);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        fprintf(stderr, "%s: cannot read %s: %s\n", AQ_PROG, top, strerror(errno));
        return -1;
    }
    while ((de = readdir(d)) != NULL) {
        struct dirent *fe;

        if (!is_date(de->d_name))
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", top, de->d_name);
        sd = opendir(sub);
        if (sd == NULL)
            continue;
        while ((fe = readdir(sd)) != NULL) {
            uint64_t seq;
            unsigned dup;
            size_t baselen, i;
            int kind = parse_name(fe->d_name, &seq, &dup, &baselen);

            if (kind == 0)
                continue;
            for (i = 0; i < n; i++)
                if (list[i].first_seq == seq && list[i].dup == dup && strcmp(list[i].date, de->d_name) == 0)
                    break;
            if (i == n) {
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 64;
                    struct entry *nl = realloc(list, ncap * sizeof(*nl));

                    if (nl == NULL)
                        goto oom;
                    list = nl;
                    cap = ncap;
                }
                memset(&list[n], 0, sizeof(list[n]));
                list[n].path = malloc(strlen(sub) + baselen + 2);
                if (list[n].path == NULL)
                    goto oom;
                snprintf(list[n].path, strlen(sub) + baselen + 2, "%s/%.*s", sub, (int)baselen, fe->d_name);
                memcpy(list[n].date, de->d_name, 11);
                list[n].first_seq = seq;
                list[n].dup = dup;
                n++;
            }
            if (kind == 1)
                list[i].has_file = 1;
            else
                list[i].has_sig = 1;
        }
        closedir(sd);
    }
    closedir(d);
    if (n > 0)
        qsort(list, n, sizeof(*list), entry_cmp);
    *out = list;
    *nout = n;
    return 0;
oom:
    closedir(sd);
    closedir(d);
    entries_free(list, n);
    fprintf(stderr, "%s: out of memory\n", AQ_PROG);
    return -1;
}

/* ---- records ---- */

static void hex8(const uint8_t *b, char out[17])
{
    sodium_bin2hex(out, 17, b, 8);
}

/* Notes a flow event of <line> for the open-flows report. */
static void track_flow(struct verify *v, const char *line, size_t len)
{
    static const char fkey[] = "\"flow_id\":\"";
    const char *f = memmem(line, len, fkey, sizeof(fkey) - 1);
    int end;

    if (f == NULL || v->open_flows == NULL)
        return;
    f += sizeof(fkey) - 1;
    if ((size_t)(line + len - f) < AUDIT_FLOW_ID_LEN)
        return;
    end = memmem(line, len < 96 ? len : 96, "\"event\":\"flow.end\"", 18) != NULL;
    if (end) {
        aq_map_del(v->open_flows, f, AUDIT_FLOW_ID_LEN);
    } else if (memmem(line, len < 96 ? len : 96, "\"event\":\"flow.phase\"", 20) != NULL) {
        unsigned char *st = aq_map_get(v->open_flows, f, AUDIT_FLOW_ID_LEN, 1);

        if (st != NULL && *st == 0)
            *st = (unsigned char)(v->in_progress ? 2 : 1);
    }
}

/* Checks one record (line <lineno>, frame <frame>). Returns 1 when it is valid. */
static int check_record(struct verify *v, const struct entry *e, int first, const char *line, size_t len,
                        uint64_t lineno, uint64_t frame, int64_t *t_first, int64_t *t_last, uint64_t *s_first,
                        uint64_t *s_last)
{
    uint8_t stored[32], calc_a[32], calc_b[32];
    uint64_t seq;
    int64_t t;
    size_t body;
    int ok = 1;

    if (aq_line_seq(line, len, &seq) == -1) {
        reason(v, WHY_RECORD, "line %" PRIu64 " (frame %" PRIu64 ") has no seq: not a record", lineno, frame);
        return 0;
    }
    if (aq_line_time(line, len, &t) == 0) {
        if (*t_first == 0)
            *t_first = t;
        *t_last = t;
    }
    if (*s_first == 0)
        *s_first = seq;
    *s_last = seq;
    if (first && seq != e->first_seq) {
        reason(v, WHY_SEGMENT,
               "holds records from seq %" PRIu64 " but its name says seq %" PRIu64
               ": segment files were renamed, reordered or replaced",
               seq, e->first_seq);
        ok = 0;
        v->next_seq = 0; /* do not also report the shift as missing records */
    }
    if (v->next_seq != 0 && seq != v->next_seq) {
        if (seq > v->next_seq) {
            if (first) {
                reason(v, WHY_SEGMENT,
                       "seq %" PRIu64 "..%" PRIu64 " missing before it (after %s): a segment file was removed",
                       v->next_seq, seq - 1, v->prev_name[0] ? v->prev_name : "the start");
                add_gap(v, v->next_seq, seq - 1, v->prev_name, v->name);
            } else {
                char range[64];

                if (seq - v->next_seq == 1)
                    snprintf(range, sizeof(range), "record seq %" PRIu64, v->next_seq);
                else
                    snprintf(range, sizeof(range), "records seq %" PRIu64 "..%" PRIu64, v->next_seq, seq - 1);
                v->miss_headline = v->why > WHY_RECORD;
                reason(v, WHY_RECORD, "%s missing: deleted before line %" PRIu64 " (frame %" PRIu64 ", seq %" PRIu64 ")",
                       range, lineno, frame, seq);
                v->miss_from = v->next_seq;
                v->miss_to = seq - 1;
                add_gap(v, v->next_seq, seq - 1, v->name, v->name);
            }
            v->recs += seq - v->next_seq;
            ok = 0;
        } else if (seq >= v->miss_from && seq <= v->miss_to) {
            /* it was reported missing: it is here, later */
            if (v->miss_headline)
                snprintf(v->reason, sizeof(v->reason),
                         "record seq %" PRIu64 " (line %" PRIu64 ", frame %" PRIu64
                         ") out of order: it comes after seq %" PRIu64 " (records reordered)",
                         seq, lineno, frame, v->next_seq - 1);
            if (v->ngaps > 0 && v->gaps[v->ngaps - 1].from == seq && v->gaps[v->ngaps - 1].to == seq) {
                v->ngaps--;
                v->gaps_total--;
            }
            v->recs--; /* counted as missing, and now read */
            ok = 0;
        } else {
            reason(v, WHY_RECORD,
                   "record seq %" PRIu64 " (line %" PRIu64 ", frame %" PRIu64 ") out of order: expected seq %" PRIu64
                   " (records reordered or repeated)",
                   seq, lineno, frame, v->next_seq);
            ok = 0;
        }
    }
    if (seq + 1 > v->next_seq || v->next_seq == 0)
        v->next_seq = seq + 1;
    if (audit_chain_split(line, len, &body, stored) == -1) {
        if (audit_chain_find(line, len, stored) == 0) {
            v->ocsf = 1; /* the OCSF form carries the chain but is not what was hashed */
            memcpy(v->chain_a, stored, 32);
            memcpy(v->chain_b, stored, 32);
            v->chain_known = 1;
            return ok;
        }
        reason(v, WHY_RECORD, "record seq %" PRIu64 " (line %" PRIu64 ", frame %" PRIu64 ") has no chain member", seq,
               lineno, frame);
        v->chain_known = 0;
        return 0;
    }
    if (v->chain_known) {
        audit_chain_expected(v->chain_a, line, len, calc_a);
        audit_chain_expected(v->chain_b, line, len, calc_b);
        if (sodium_memcmp(calc_a, stored, 32) != 0 && sodium_memcmp(calc_b, stored, 32) != 0) {
            if (ok) /* a missing record breaks the chain too: that is the reason already */
                reason(v, WHY_RECORD,
                       "record seq %" PRIu64 " (line %" PRIu64 ", frame %" PRIu64
                       ") altered: its chain does not match its content and the previous record's chain",
                       seq, lineno, frame);
            ok = 0;
        }
        /* go on from both: the stored chain (the record's body was edited) and the computed
         * one (its chain member was edited), so one alteration is reported once */
        memcpy(v->chain_b, calc_a, 32);
    } else {
        memcpy(v->chain_b, stored, 32);
    }
    memcpy(v->chain_a, stored, 32);
    v->chain_known = 1;
    return ok;
}

/* ---- one segment ---- */

static void print_line(struct verify *v, const char *status, uint64_t s_first, uint64_t s_last, uint64_t nrec,
                       int64_t t_first, int64_t t_last)
{
    char a[32], b[32];

    if (v->quiet && strncmp(status, "INVALID", 7) != 0)
        return;
    progress_clear(v);
    printf("%s  %s", v->name, status);
    if (nrec > 0) {
        aq_format_time(t_first, a);
        aq_format_time(t_last, b);
        printf("  seq %" PRIu64 "..%" PRIu64 " (%" PRIu64 " records)  %s .. %s", s_first, s_last, nrec, a, b);
    }
    printf("\n");
    if (v->notes[0] != '\0')
        printf("    %s\n", v->notes);
}

static void verify_segment(struct verify *v, const struct entry *e, int last)
{
    char sig[4200], err[512];
    struct audit_digest d;
    uint8_t dhash[32], fhash[32];
    int has_digest = 0;
    uint64_t fsize = 0, lineno = 0, s_first = 0, s_last = 0, nread = 0, frame = 0;
    int64_t t_first = 0, t_last = 0;
    struct aq_frames *fr = NULL;
    enum aq_frame_rc rc = AQ_FRAME_END;
    const char *slash = strrchr(e->path, '/');

    snprintf(v->name, sizeof(v->name), "%s/%s", e->date, slash != NULL ? slash + 1 : e->path);
    v->why = WHY_NONE;
    v->reason[0] = v->notes[0] = '\0';
    v->miss_from = v->miss_to = 0;
    v->miss_headline = 0;
    v->ocsf = 0;
    v->segs++;
    v->in_progress = last && !e->has_sig;
    snprintf(sig, sizeof(sig), "%s%s", e->path, AUDIT_DIGEST_SUFFIX);

    /* the digest */
    memset(&d, 0, sizeof(d));
    if (e->has_sig) {
        if (audit_digest_read(sig, NULL, &d, dhash, err, sizeof(err)) == -1) {
            const char *m = strstr(err, ": ");

            if (strstr(err, "bad signature") != NULL)
                reason(v, WHY_DIGEST, "its digest was edited or forged: the signature does not verify");
            else
                reason(v, WHY_DIGEST, "its digest is unreadable: %s", m != NULL ? m + 2 : err);
            /* the fields may still be whole: keep using what parsed */
            has_digest = d.segment[0] != '\0';
        } else if (sodium_memcmp(d.public_key, v->pk, 32) != 0) {
            char h[17];

            hex8(d.public_key, h);
            reason(v, WHY_DIGEST, "its digest is signed by another key (%s...), not the trusted one", h);
            has_digest = 1;
        } else {
            has_digest = 1;
        }
        if (has_digest && strcmp(d.segment, slash != NULL ? slash + 1 : e->path) != 0)
            reason(v, WHY_SEGMENT, "its digest belongs to %s: files were renamed or swapped", d.segment);
        if (has_digest) {
            static const uint8_t zero[32];

            if (v->prev_digest_known) {
                if (sodium_memcmp(d.prev_digest, v->prev_digest, 32) != 0)
                    reason(v, WHY_LINK,
                           "its digest does not follow %s's (prev_digest differs): a segment between them was "
                           "removed, or segments were reordered",
                           v->prev_name);
            } else if (!v->started && d.first_seq <= 1 && sodium_memcmp(d.prev_digest, zero, 32) != 0 &&
                       !v->allow_retention) {
                reason(v, WHY_SEGMENT,
                       "it is not the first segment of this record (its digest follows another): the oldest "
                       "segment(s) are missing (pass --allow-retention if retain_days/retain_bytes deleted them)");
            }
        }
    } else if (!last) {
        reason(v, WHY_DIGEST, "not sealed: its digest is missing and newer segments exist");
    }
    if (has_digest && !v->started && d.has_prev_chain && !v->chain_known && d.first_seq > 1) {
        /* the record starts after retention: the signed digest anchors the chain */
        memcpy(v->chain_a, d.prev_chain, 32);
        memcpy(v->chain_b, d.prev_chain, 32);
        v->chain_known = 1;
    }
    if (v->next_seq == 0 && !v->started) {
        uint64_t s = has_digest ? d.first_seq : e->first_seq;

        if (s > 1 && !v->allow_retention)
            reason(v, WHY_SEGMENT, "the record starts at seq %" PRIu64 ": seq 1..%" PRIu64 " are missing", s, s - 1);
        if (s > 1)
            add_gap(v, 1, s - 1, "", v->name);
        if (s == 1) {
            memset(v->chain_a, 0, 32);
            memset(v->chain_b, 0, 32);
            v->chain_known = 1;
        }
        v->next_seq = s;
    }
    if (has_digest && d.has_prev_chain && v->chain_known && v->started &&
        sodium_memcmp(d.prev_chain, v->chain_a, 32) != 0 && sodium_memcmp(d.prev_chain, v->chain_b, 32) != 0)
        reason(v, WHY_LINK, "its digest's prev_chain is not the previous segment's last chain");

    /* the file */
    if (!e->has_file) {
        reason(v, WHY_SEGMENT,
               "segment file missing (its digest remains): seq %" PRIu64 "..%" PRIu64 " (%" PRIu64
               " records) were removed",
               d.first_seq, d.last_seq, d.records);
        if (has_digest && d.records > 0) {
            add_gap(v, d.first_seq, d.last_seq, v->prev_name, v->name);
            v->recs += d.records;
            v->next_seq = d.last_seq + 1;
            memcpy(v->chain_a, d.last_chain, 32);
            memcpy(v->chain_b, d.last_chain, 32);
            v->chain_known = d.has_last_chain;
        }
        goto done;
    }
    if (has_digest) {
        if (audit_file_hash(e->path, UINT64_MAX, fhash, &fsize, err, sizeof(err)) == -1) {
            reason(v, WHY_FRAME, "%s", err);
            goto done;
        }
    }
    fr = aq_frames_open(e->path, err, sizeof(err));
    if (fr == NULL) {
        reason(v, WHY_FRAME, "%s", err);
        goto done;
    }
    if (!has_digest)
        fsize = aq_frames_size(fr);
    for (;;) {
        const char *data, *p, *end;
        size_t len;

        rc = aq_frames_next(fr);
        if (rc != AQ_FRAME_OK)
            break;
        frame = aq_frames_index(fr);
        rc = aq_frames_decode(fr, &data, &len);
        if (rc != AQ_FRAME_OK)
            break;
        for (p = data, end = data + len; p < end;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));

            lineno++;
            nread++;
            v->recs++;
            if (check_record(v, e, nread == 1, p, (size_t)(nl - p), lineno, frame, &t_first, &t_last, &s_first,
                             &s_last))
                v->recs_valid++;
            track_flow(v, p, (size_t)(nl - p));
            p = nl + 1;
        }
        progress(v);
    }
    if (rc == AQ_FRAME_BAD) {
        uint64_t at = aq_frames_offset(fr);
        const char *msg = aq_frames_error(fr);

        if (!e->has_sig && last && strstr(msg, "incomplete") != NULL) {
            note(v, "its last frame (at byte %" PRIu64 ") is incomplete: being written, or torn by a crash", at);
        } else if (has_digest && fsize < d.bytes) {
            reason(v, WHY_TRUNCATED,
                   "truncated: %" PRIu64 " of %" PRIu64 " bytes; records after seq %" PRIu64
                   " (up to seq %" PRIu64 ") are missing",
                   fsize, d.bytes, s_last != 0 ? s_last : d.first_seq - 1, d.last_seq);
        } else {
            reason(v, WHY_FRAME,
                   "frame %" PRIu64 " at byte %" PRIu64 " cannot be read (%s): records after seq %" PRIu64
                   " are unreadable",
                   aq_frames_index(fr), at, msg, s_last != 0 ? s_last : e->first_seq - 1);
        }
    }

    /* the file against its digest */
    if (has_digest) {
        if (fsize < d.bytes && nread < d.records)
            reason(v, WHY_TRUNCATED,
                   "truncated: %" PRIu64 " of %" PRIu64 " bytes; records after seq %" PRIu64 " (up to seq %" PRIu64
                   ") are missing",
                   fsize, d.bytes, s_last != 0 ? s_last : d.first_seq - 1, d.last_seq);
        else if (fsize > d.bytes)
            reason(v, WHY_MISMATCH, "%" PRIu64 " bytes were added after it was sealed", fsize - d.bytes);
        if (sodium_memcmp(fhash, d.hash, 32) != 0)
            reason(v, WHY_MISMATCH, "its content differs from its digest (hash mismatch)");
        if (nread != d.records && nread < d.records && v->why > WHY_TRUNCATED)
            reason(v, WHY_TRUNCATED, "holds %" PRIu64 " records, its digest says %" PRIu64 ": records after seq %" PRIu64
                                     " are missing",
                   nread, d.records, s_last);
        else if (nread != d.records)
            reason(v, WHY_MISMATCH, "holds %" PRIu64 " records, its digest says %" PRIu64, nread, d.records);
        if (d.records > nread)
            v->recs += d.records - nread; /* missing ones count as invalid */
        if (nread > 0 && nread == d.records && (s_first != d.first_seq || s_last != d.last_seq))
            reason(v, WHY_MISMATCH, "seq %" PRIu64 "..%" PRIu64 " differ from its digest's %" PRIu64 "..%" PRIu64,
                   s_first, s_last, d.first_seq, d.last_seq);
        if (nread > 0 && nread == d.records && d.has_last_chain && v->chain_known && !v->ocsf &&
            sodium_memcmp(d.last_chain, v->chain_a, 32) != 0)
            reason(v, WHY_MISMATCH, "its last record's chain differs from its digest's last_chain");
        if (d.recovered)
            note(v, "recovered after a crash: %" PRIu64 " bytes of a torn frame discarded (%s)", d.discarded_bytes,
                 d.recovery_reason);
        if (d.records > d.last_seq - d.first_seq + 1 && d.records > 0)
            reason(v, WHY_MISMATCH, "its digest's record count does not fit its seq range");
        /* the rest of the record goes on from what the digest sealed */
        if (d.records > 0 && nread < d.records) {
            v->next_seq = d.last_seq + 1;
            if (d.has_last_chain) {
                memcpy(v->chain_a, d.last_chain, 32);
                memcpy(v->chain_b, d.last_chain, 32);
                v->chain_known = 1;
            }
        }
    }
    if (v->ocsf)
        note(v, "records in OCSF form: the digest covers them, their chains cannot be recomputed");

done:
    if (nread > 0) {
        if (!v->has_cov) {
            v->cov_first_seq = s_first;
            v->cov_first_time = t_first;
            v->has_cov = 1;
        }
        if (s_last > v->cov_last_seq)
            v->cov_last_seq = s_last;
        if (t_last > v->cov_last_time)
            v->cov_last_time = t_last;
    } else if (has_digest && d.records > 0 && !v->has_cov) {
        v->cov_first_seq = d.first_seq;
        v->cov_first_time = d.first_time_us;
        v->has_cov = 1;
    }
    if (v->why == WHY_NONE) {
        v->segs_valid++;
        print_line(v, e->has_sig ? "valid" : "unsealed (in progress)", s_first, s_last, nread, t_first, t_last);
    } else {
        char status[600];

        snprintf(status, sizeof(status), "INVALID: %s", v->reason);
        print_line(v, status, s_first, s_last, nread, t_first, t_last);
        if (!v->failed)
            snprintf(v->first_failure, sizeof(v->first_failure), "%s: %s", v->name, v->reason);
        v->failed = 1;
    }
    if (has_digest) {
        memcpy(v->prev_digest, dhash, 32);
        v->prev_digest_known = 1;
    } else {
        v->prev_digest_known = 0;
    }
    snprintf(v->prev_name, sizeof(v->prev_name), "%s", v->name);
    v->started = 1;
    aq_frames_close(fr);
}

/* ---- the command ---- */

static void verify_usage(FILE *out)
{
    fprintf(out,
            "usage: %s verify [--data-dir DIR] [--public-key FILE] [--allow-retention] [--quiet]\n\n"
            "Checks every record's chain and seq, every segment digest's signature and continuity, and\n"
            "the access log, offline. Prints valid / INVALID: <reason> per segment, the coverage and\n"
            "gaps, flows without a flow.end, and \"N/M segments valid, N/M records valid\".\n\n"
            "  --data-dir DIR      Vigil's data directory (default " AQ_DEFAULT_DATA_DIR ")\n"
            "  --public-key FILE   the signing public key you trust (64 hex digits; default\n"
            "                      DATA_DIR/keys/audit-signing.pub: pin a copy kept elsewhere)\n"
            "  --allow-retention   the oldest segments may have been deleted by retain_days or\n"
            "                      retain_bytes: a record that starts after seq 1 is not a failure\n"
            "  --quiet             print only failures and the summary\n\n"
            "exit status: 0 intact, 1 an integrity failure (the first one is named), 2 cannot run\n",
            AQ_PROG);
}

int aq_cmd_verify(int argc, char **argv)
{
    static const struct option opts[] = {
        { "data-dir", required_argument, NULL, 'd' },  { "public-key", required_argument, NULL, 'k' },
        { "allow-retention", no_argument, NULL, 'r' }, { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },            { NULL, 0, NULL, 0 },
    };
    struct verify v = { .data_dir = AQ_DEFAULT_DATA_DIR };
    const char *pub = NULL;
    char pubpath[4200], err[512], why[512], h[17], a[32], b[32];
    struct entry *list;
    size_t n, i, shown;
    long entries;
    int c, present;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            v.data_dir = optarg;
            break;
        case 'k':
            pub = optarg;
            break;
        case 'r':
            v.allow_retention = 1;
            break;
        case 'q':
            v.quiet = 1;
            break;
        case 'h':
            verify_usage(stdout);
            return AQ_EXIT_OK;
        case ':':
            fprintf(stderr, "%s verify: %s needs a value\n", AQ_PROG, argv[optind - 1]);
            return AQ_EXIT_USAGE;
        default:
            fprintf(stderr, "%s verify: unknown option %s\n", AQ_PROG, argv[optind - 1]);
            verify_usage(stderr);
            return AQ_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s verify: unexpected argument \"%s\"\n", AQ_PROG, argv[optind]);
        return AQ_EXIT_USAGE;
    }
    if (sodium_init() == -1 || aq_check_data_dir(v.data_dir) == -1)
        return AQ_EXIT_USAGE;
    if (pub == NULL) {
        snprintf(pubpath, sizeof(pubpath), "%s/%s/%s", v.data_dir, AUDIT_KEYS_SUBDIR, AUDIT_SIGNING_PUB_FILE);
        pub = pubpath;
    }
    if (audit_signing_pub_read(pub, v.pk, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s verify: no public key to check the digests with: %s (pass --public-key FILE)\n", AQ_PROG,
                err);
        return AQ_EXIT_USAGE;
    }
    if (list_entries(v.data_dir, &list, &n) == -1)
        return AQ_EXIT_USAGE;
    v.open_flows = aq_map_new(1, OPEN_FLOWS_MAX);
    hex8(v.pk, h);
    printf("Verifying %s/%s with public key %s... (%s)\n", v.data_dir, AUDIT_SEGMENT_SUBDIR, h, pub);
    v.show_progress = isatty(STDERR_FILENO);
    v.progress_us = aq_now_us();
    v.progress_every = aq_progress_interval_us();
    v.seg_n = n;
    for (i = 0; i < n; i++) {
        v.seg_i = i;
        verify_segment(&v, &list[i], i + 1 == n);
    }
    progress_clear(&v);
    entries_free(list, n);

    printf("\nCoverage: ");
    if (v.has_cov) {
        aq_format_time(v.cov_first_time, a);
        aq_format_time(v.cov_last_time, b);
        printf("seq %" PRIu64 "..%" PRIu64 ", %s .. %s\n", v.cov_first_seq, v.cov_last_seq, a, b);
    } else {
        printf("no records\n");
    }
    if (v.ngaps == 0) {
        printf("Gaps: none\n");
    } else {
        printf("Gaps: %" PRIu64 " records missing\n", v.gaps_total);
        for (i = 0; i < v.ngaps; i++) {
            printf("  seq %" PRIu64 "..%" PRIu64, v.gaps[i].from, v.gaps[i].to);
            if (strcmp(v.gaps[i].after, v.gaps[i].before) == 0)
                printf(" inside %s\n", v.gaps[i].before);
            else if (v.gaps[i].after[0] == '\0')
                printf(" before %s (the start of the record)\n", v.gaps[i].before);
            else
                printf(" between %s and %s\n", v.gaps[i].after, v.gaps[i].before);
        }
    }
    if (v.open_flows != NULL) {
        size_t it = 0, inprog = 0;
        const char *key;
        void *val;

        while (aq_map_next(v.open_flows, &it, &key, &val))
            inprog += *(unsigned char *)val == 2;
        printf("Flows without flow.end: %zu", aq_map_count(v.open_flows));
        if (inprog > 0)
            printf(" (%zu in the unsealed segment: still in progress)", inprog);
        if (aq_map_refused(v.open_flows) > 0)
            printf(" (more not tracked: over %u)", OPEN_FLOWS_MAX);
        printf("\n");
        it = 0;
        shown = 0;
        while (aq_map_next(v.open_flows, &it, &key, &val) && shown++ < MAX_OPEN_FLOWS_SHOWN)
            printf("  %s%s\n", key, *(unsigned char *)val == 2 ? " (in progress)" : "");
        if (aq_map_count(v.open_flows) > MAX_OPEN_FLOWS_SHOWN)
            printf("  ... (%zu more)\n", aq_map_count(v.open_flows) - MAX_OPEN_FLOWS_SHOWN);
        aq_map_free(v.open_flows);
    }
    entries = aq_access_log_verify(v.data_dir, &present, why, sizeof(why));
    if (entries < 0) {
        printf("Access log %s/%s: INVALID: %s\n", v.data_dir, AQ_ACCESS_LOG, why);
        if (!v.failed)
            snprintf(v.first_failure, sizeof(v.first_failure), "%s: %s", AQ_ACCESS_LOG, why);
        v.failed = 1;
    } else if (present) {
        printf("Access log %s/%s: %ld entr%s, valid\n", v.data_dir, AQ_ACCESS_LOG, entries, entries == 1 ? "y" : "ies");
    } else {
        printf("Access log: none (no reveal has been made)\n");
    }
    printf("\nResults:\n%zu/%zu segments valid, %" PRIu64 "/%" PRIu64 " records valid\n", v.segs_valid, v.segs,
           v.recs_valid, v.recs);
    if (v.failed)
        printf("First failure: %s\n", v.first_failure);
    fflush(stdout);
    return v.failed ? AQ_EXIT_NONE : AQ_EXIT_OK;
}
