/* redact/scan.c - one redaction call: field rules, one Vectorscan pass, overlaps, output.
 *
 *   field ──► field rules add "forced" spans (the credentials of Authorization, cookie values,
 *             userinfo, configured query parameters and path segments)
 *         ──► main scan: one hs_scan over the field (or over all fields of a batch, joined by
 *             '\n') with every enabled detector, forced spans masked: which detectors hit, and
 *             where their matches end (no start-of-match tracking: cheaper)
 *         ──► confirm: a fixed-width detector's hit is its match (start = end - width); any
 *             other detector that hit runs alone, with SOM, on the field up to its last end:
 *             the exact (start, end) of each match, on a window bounded by the field
 *         ──► each match validated (the validator may narrow it to the secret itself)
 *         ──► candidates, longest first, then highest priority:
 *               inside an accepted span        → dropped
 *               straddling a field rule's span → dropped (the rule knows the field's syntax)
 *               overlapping a detector's span  → that span grows to cover it (nothing a
 *                                                detector confirmed leaks around a token's edge)
 *               else                           → accepted
 *         ──► the field copied with each accepted span replaced by its token
 *
 * The hot path allocates only while its work arrays and the caller's result buffers grow to
 * the largest field seen. A field longer than the limit, a Vectorscan error, too many hits or
 * a failed allocation make the whole field one "unscannable" token (no allocation needed). */
#include "redact/redact-int.h"

#include <stdlib.h>
#include <string.h>

#define FORCED_RANK_BASE (-1000000)

void redact_result_init(struct redact_result *res)
{
    memset(res, 0, sizeof(*res));
    res->out = "";
}

void redact_result_fini(struct redact_result *res)
{
    free(res->buf);
    free(res->mbuf);
    memset(res, 0, sizeof(*res));
    res->out = "";
}

/* Clears the per-field state (not the main scan's hits: a batch shares them). */
static void reset(struct redact *rd)
{
    rd->nhits = 0;
    rd->nspans = 0;
    rd->nforced = 0;
    rd->hit_overflow = 0;
    rd->oom = 0;
    rd->scan_error = 0;
}

static int unscannable(struct redact *rd, const char *s, size_t len, struct redact_result *res, int rc)
{
    struct redact_match *m = &res->fallback_match;

    redact_token_make(rd->kr, REDACT_CLASS_UNSCANNABLE, s, len, res->fallback);
    memset(m, 0, sizeof(*m));
    m->cls = REDACT_CLASS_UNSCANNABLE;
    m->rule = REDACT_CLASS_UNSCANNABLE;
    m->in_off = 0;
    m->in_len = len;
    m->out_off = 0;
    m->out_len = strlen(res->fallback);
    memcpy(m->token, res->fallback, m->out_len + 1);
    res->out = res->fallback;
    res->len = m->out_len;
    res->matches = m;
    res->nmatches = 1;
    res->flags = REDACT_R_UNSCANNABLE;
    return rc;
}

static struct redact_span *span_push(struct redact *rd)
{
    if (rd->nspans == rd->capspans) {
        size_t nc = rd->capspans ? rd->capspans * 2 : 32;
        struct redact_span *ns = realloc(rd->spans, nc * sizeof(*ns));

        if (ns == NULL) {
            rd->oom = 1;
            return NULL;
        }
        rd->spans = ns;
        rd->capspans = nc;
    }
    return &rd->spans[rd->nspans++];
}

/* A span a field rule decided on. Field rules never produce overlapping spans. */
static void forced(struct redact *rd, size_t start, size_t end, const char *cls, const char *rule)
{
    struct redact_span *sp;

    if (start >= end)
        return;
    sp = span_push(rd);
    if (sp == NULL)
        return;
    *sp = (struct redact_span){.start = start, .end = end, .cls = cls, .rule = rule, .prio = 1000,
                               .rank = FORCED_RANK_BASE + rd->nforced++};
}

/* ---- the scan ---- */

/* Main scan: records (detector, end). Hits come roughly in end order. */
static int on_main(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
    struct redact *rd = ctx;

    (void)from;
    (void)flags;
    if (rd->nraw == rd->capraw) {
        size_t nc = rd->capraw ? rd->capraw * 2 : 64;
        struct redact_raw_hit *nr;

        if (rd->capraw >= REDACT_MAX_HITS) {
            rd->raw_overflow = 1;
            return 1;
        }
        nr = realloc(rd->raw, nc * sizeof(*nr));
        if (nr == NULL) {
            rd->oom = 1;
            return 1;
        }
        rd->raw = nr;
        rd->capraw = nc;
    }
    rd->raw[rd->nraw++] = (struct redact_raw_hit){.det = id, .to = (size_t)to};
    return 0;
}

/* A confirmed hit [from, to) of detector <det> in the current field. */
static int add_hit(struct redact *rd, unsigned det, size_t f, size_t to)
{
    const struct redact_detector *d = &rd->dets[det];
    long last = rd->last_hit[det];

    /* Same start as this detector's previous hit: keep only the longest end when shorter ends
     * cannot matter to the validator (hits arrive in end order). */
    if (d->longest_only && last >= 0 && rd->hits[last].from == f) {
        if (to > rd->hits[last].to)
            rd->hits[last].to = to;
        return 0;
    }
    if (rd->nhits == rd->caphits) {
        size_t nc = rd->caphits ? rd->caphits * 2 : 64;
        struct redact_hit *nh;

        if (rd->caphits >= REDACT_MAX_HITS) {
            rd->hit_overflow = 1;
            return 1;
        }
        nh = realloc(rd->hits, nc * sizeof(*nh));
        if (nh == NULL) {
            rd->oom = 1;
            return 1;
        }
        rd->hits = nh;
        rd->caphits = nc;
    }
    rd->hits[rd->nhits] = (struct redact_hit){.det = det, .prio = d->priority, .from = f, .to = to};
    rd->last_hit[det] = (long)rd->nhits++;
    return 0;
}

struct confirm_ctx {
    struct redact *rd;
    unsigned det;
};

/* Confirm scan of one detector on one field: exact (start, end) pairs. */
static int on_confirm(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
    struct confirm_ctx *c = ctx;
    const struct redact_detector *d = &c->rd->dets[c->det];

    (void)id;
    (void)flags;
    return add_hit(c->rd, c->det, d->fixed ? (size_t)to - d->width : (size_t)from, (size_t)to);
}

static int cmp_hit(const void *a, const void *b)
{
    const struct redact_hit *x = a, *y = b;
    size_t lx = x->to - x->from, ly = y->to - y->from;

    if (lx != ly)
        return lx > ly ? -1 : 1;
    if (x->prio != y->prio)
        return x->prio > y->prio ? -1 : 1;
    if (x->from != y->from)
        return x->from < y->from ? -1 : 1;
    return x->det < y->det ? -1 : x->det > y->det;
}

static int cmp_span(const void *a, const void *b)
{
    const struct redact_span *x = a, *y = b;

    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* Case-insensitive search of <needle> in s[b, e). Offset just past it, or (size_t)-1. */
static size_t find_after(const char *s, size_t b, size_t e, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = b; i + n <= e; i++)
        if (redact_ascii_ieq(s + i, n, needle, n))
            return i + n;
    return (size_t)-1;
}

/* Index of an accepted span that contains [b, e), or -1. *<overlap> gets a detector span that
 * overlaps it, or -1; *<forced_overlap> is set when a field rule's span does. */
static long containing(const struct redact *rd, size_t b, size_t e, long *overlap, int *forced_overlap)
{
    *overlap = -1;
    *forced_overlap = 0;
    for (size_t i = 0; i < rd->nspans; i++) {
        const struct redact_span *sp = &rd->spans[i];

        if (sp->start <= b && e <= sp->end)
            return (long)i;
        if (b < sp->end && sp->start < e) {
            if (sp->rank < 0)
                *forced_overlap = 1;
            else if (*overlap < 0)
                *overlap = (long)i;
        }
    }
    return -1;
}

static void resolve(struct redact *rd, const char *s, size_t len)
{
    int rank = 0;

    /* Validate first, so that candidates compete with the spans they really cover: "Bearer
     * <jwt>" narrows to the JWT, and then the more specific credential.jwt wins the tie. */
    for (size_t i = 0; i < rd->nhits; i++) {
        struct redact_hit *h = &rd->hits[i];
        const struct redact_detector *d = &rd->dets[h->det];
        size_t b = h->from, e = h->to;

        if (!redact_validate(d->validator, s, len, &b, &e)) {
            h->to = h->from; /* rejected: empty, skipped below */
            continue;
        }
        if (d->redact_after != NULL) {
            size_t a = find_after(s, b, e, d->redact_after);

            if (a != (size_t)-1) {
                while (a < e && (s[a] == ' ' || s[a] == '\t'))
                    a++;
                b = a;
            }
        }
        h->from = b;
        h->to = e > b ? e : b;
    }
    qsort(rd->hits, rd->nhits, sizeof(*rd->hits), cmp_hit);
    /* Userinfo found in free text is syntax, like the URL rule's: it goes first, as a field
     * rule's span, so that "admin:s3cret@files.example.org" is not read as an e-mail address. */
    for (size_t i = 0; i < rd->nhits; i++) {
        struct redact_hit *h = &rd->hits[i];
        const struct redact_detector *d = &rd->dets[h->det];
        long over;
        int fover;

        if (d->validator != REDACT_V_URL_USERINFO || h->from >= h->to)
            continue;
        if (containing(rd, h->from, h->to, &over, &fover) < 0 && !fover)
            forced(rd, h->from, h->to, d->cls, d->id);
        h->to = h->from;
    }
    for (size_t i = 0; i < rd->nhits; i++) {
        const struct redact_hit *h = &rd->hits[i];
        const struct redact_detector *d = &rd->dets[h->det];
        struct redact_span *sp;
        long over;
        int fover;

        if (h->from >= h->to || containing(rd, h->from, h->to, &over, &fover) >= 0)
            continue;
        /* A field rule knows the field's syntax: a detector hit that straddles one of its spans
         * (hunter2@example.com across "bob:hunter2@example.com") is a false positive. */
        if (fover)
            continue;
        if (over >= 0) {
            sp = &rd->spans[over];
            if (h->from < sp->start)
                sp->start = h->from;
            if (h->to > sp->end)
                sp->end = h->to;
            continue;
        }
        sp = span_push(rd);
        if (sp == NULL)
            return;
        *sp = (struct redact_span){.start = h->from, .end = h->to, .cls = d->cls, .rule = d->id,
                                   .prio = d->priority, .rank = rank++};
    }
    /* Grown spans may now overlap their neighbours: merge, keeping the better-ranked class. */
    if (rd->nspans > 1)
        qsort(rd->spans, rd->nspans, sizeof(*rd->spans), cmp_span);
    if (rd->nspans > 1) {
        size_t k = 0;

        for (size_t i = 1; i < rd->nspans; i++) {
            struct redact_span *cur = &rd->spans[k], *nx = &rd->spans[i];

            if (nx->start < cur->end) {
                if (nx->end > cur->end)
                    cur->end = nx->end;
                if (nx->rank < cur->rank) {
                    cur->cls = nx->cls;
                    cur->rule = nx->rule;
                    cur->rank = nx->rank;
                }
            } else {
                rd->spans[++k] = *nx;
            }
        }
        rd->nspans = k + 1;
    }
}

static int ensure(void **p, size_t *cap, size_t want, size_t elem)
{
    void *np;
    size_t nc;

    if (want <= *cap)
        return 0;
    nc = *cap ? *cap : 256;
    while (nc < want)
        nc *= 2;
    np = realloc(*p, nc * elem);
    if (np == NULL)
        return -1;
    *p = np;
    *cap = nc;
    return 0;
}

static int emit(struct redact *rd, const char *s, size_t len, struct redact_result *res)
{
    size_t want = len + rd->nspans * REDACT_TOKEN_MAX + 1, o = 0, pos = 0;

    if (ensure((void **)&res->buf, &res->buf_cap, want, 1) == -1
        || ensure((void **)&res->mbuf, &res->mbuf_cap, rd->nspans + 1, sizeof(*res->mbuf)) == -1)
        return unscannable(rd, s, len, res, -1);
    for (size_t i = 0; i < rd->nspans; i++) {
        const struct redact_span *sp = &rd->spans[i];
        struct redact_match *m = &res->mbuf[i];
        size_t tl;

        if (sp->start > pos)
            memcpy(res->buf + o, s + pos, sp->start - pos);
        o += sp->start - pos;
        if (redact_token_make(rd->kr, sp->cls, s + sp->start, sp->end - sp->start, m->token) == -1)
            return unscannable(rd, s, len, res, 0); /* cannot happen: classes are checked at load */
        tl = strlen(m->token);
        memcpy(res->buf + o, m->token, tl);
        m->cls = sp->cls;
        m->rule = sp->rule;
        m->in_off = sp->start;
        m->in_len = sp->end - sp->start;
        m->out_off = o;
        m->out_len = tl;
        o += tl;
        pos = sp->end;
    }
    if (len > pos)
        memcpy(res->buf + o, s + pos, len - pos);
    o += len - pos;
    res->buf[o] = '\0';
    res->out = res->buf;
    res->len = o;
    res->matches = res->mbuf;
    res->nmatches = rd->nspans;
    res->flags = 0;
    return 0;
}

/* Runs the main database over <len> bytes at <buf>: raw hits in rd->raw. 0, or -1 on a
 * scanner error or too many hits. */
static int scan_main(struct redact *rd, const char *buf, size_t len)
{
    hs_error_t r;

    rd->nraw = 0;
    rd->raw_overflow = 0;
    if (rd->db == NULL || len == 0)
        return 0;
    if (len > UINT32_MAX)
        return -1;
    r = hs_scan(rd->db, buf, (unsigned)len, 0, rd->scratch, on_main, rd);
    return r == HS_SUCCESS && !rd->raw_overflow && !rd->oom ? 0 : -1;
}

/* The field <s> (<len> bytes) was at offset <base> of the main scan, and <raw>[0, <nraw>) are
 * the main-scan hits that end in it (or on the '\n' after it). Confirms them, resolves the
 * overlaps with the field rules' spans already in <rd>, and writes the output. */
static int finish(struct redact *rd, const char *s, size_t len, const struct redact_raw_hit *raw, size_t nraw,
                  size_t base, struct redact_result *res)
{
    rd->nhits = 0;
    rd->hit_overflow = 0;
    rd->npending = 0;
    if (rd->oom)
        return unscannable(rd, s, len, res, -1);
    if (rd->scan_error)
        return unscannable(rd, s, len, res, 0);
    for (size_t i = 0; i < nraw; i++) {
        const struct redact_detector *d = &rd->dets[raw[i].det];
        size_t to = raw[i].to - base;

        if (d->trusted) {
            /* fixed width, no anchors: the main-scan hit is the match, unless it crosses an edge */
            if (to <= len && to >= d->width)
                add_hit(rd, raw[i].det, to - d->width, to);
            continue;
        }
        if (to > len)
            to = len; /* the match took the '\n' after the field: confirm up to the field's end */
        if (to == 0)
            continue;
        if (rd->pend_to[raw[i].det] == 0)
            rd->pending[rd->npending++] = raw[i].det;
        if (to > rd->pend_to[raw[i].det])
            rd->pend_to[raw[i].det] = to;
    }
    /* Each detector that hit is run alone on the field, up to its last hit: matches get their
     * exact start (SOM), and anchors see the field on its own. */
    for (size_t i = 0; i < rd->npending; i++) {
        unsigned det = rd->pending[i];
        struct confirm_ctx c = {.rd = rd, .det = det};
        size_t wend = rd->pend_to[det];
        hs_error_t r;

        rd->pend_to[det] = 0;
        rd->last_hit[det] = -1;
        if (rd->scan_error || rd->hit_overflow || rd->oom)
            continue; /* keep clearing pend_to */
        r = hs_scan(rd->dets[det].confirm, s, (unsigned)wend, 0, rd->scratch, on_confirm, &c);
        if (r != HS_SUCCESS && !rd->hit_overflow && !rd->oom)
            rd->scan_error = 1;
    }
    for (size_t i = 0; i < rd->nhits; i++)
        rd->last_hit[rd->hits[i].det] = -1;
    if (rd->oom)
        return unscannable(rd, s, len, res, -1);
    if (rd->scan_error || rd->hit_overflow)
        return unscannable(rd, s, len, res, 0);
    if (rd->nhits > 0)
        resolve(rd, s, len);
    if (rd->oom)
        return unscannable(rd, s, len, res, -1);
    return emit(rd, s, len, res);
}

/* ---- field rules ---- */

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char *s, size_t *b, size_t *e)
{
    while (*b < *e && is_ows(s[*b]))
        (*b)++;
    while (*e > *b && is_ows(s[*e - 1]))
        (*e)--;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes and lower-cases s[b, e) into <out>. Its length, or (size_t)-1 when too long. */
static size_t decode_name(const char *s, size_t b, size_t e, char out[REDACT_NAME_MAX])
{
    size_t n = 0;

    for (size_t i = b; i < e; i++) {
        char c = s[i];

        if (c == '%' && i + 2 < e && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (n == REDACT_NAME_MAX)
            return (size_t)-1;
        out[n++] = c;
    }
    return n;
}

static const struct redact_param_rule *find_param(const struct redact *rd, const char *name, size_t n)
{
    for (size_t i = 0; i < rd->nparams; i++)
        if (rd->params[i].name_len == n && memcmp(rd->params[i].name, name, n) == 0)
            return &rd->params[i];
    return NULL;
}

/* name=value pairs separated by '&' in s[b, e): the values of configured names are tokenized. */
static void query_rules(struct redact *rd, const char *s, size_t b, size_t e)
{
    size_t i = b;

    if (rd->nparams == 0)
        return;
    while (i < e) {
        const char *amp = memchr(s + i, '&', e - i);
        size_t pe = amp ? (size_t)(amp - s) : e;
        const char *eq = memchr(s + i, '=', pe - i);

        if (eq != NULL) {
            char name[REDACT_NAME_MAX];
            size_t ne = (size_t)(eq - s), n = decode_name(s, i, ne, name);
            const struct redact_param_rule *r = n == (size_t)-1 ? NULL : find_param(rd, name, n);

            if (r != NULL)
                forced(rd, ne + 1, pe, r->cls, "query");
        }
        i = pe + 1;
    }
}

struct seg_hit {
    long rule;
};

static int on_segment(unsigned id, unsigned long long from, unsigned long long to, unsigned flags, void *ctx)
{
    struct seg_hit *h = ctx;

    (void)from;
    (void)to;
    (void)flags;
    h->rule = (long)id;
    return 1; /* the first rule that matches decides */
}

/* Each '/'-separated segment of s[b, e) that a path rule matches whole is tokenized. */
static void path_rules(struct redact *rd, const char *s, size_t b, size_t e)
{
    size_t i = b;

    if (rd->segdb == NULL)
        return;
    while (i < e) {
        const char *sl = memchr(s + i, '/', e - i);
        size_t se = sl ? (size_t)(sl - s) : e;

        if (se > i) {
            struct seg_hit h = {.rule = -1};
            hs_error_t r = hs_scan(rd->segdb, s + i, (unsigned)(se - i), 0, rd->scratch, on_segment, &h);

            if (r != HS_SUCCESS && r != HS_SCAN_TERMINATED)
                rd->scan_error = 1;
            else if (h.rule >= 0)
                forced(rd, i, se, rd->segs[h.rule].cls, "path");
        }
        i = se + 1;
    }
}

static int scheme_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-'
        || c == '.';
}

static void url_rules(struct redact *rd, const char *s, size_t b, size_t e)
{
    size_t k = b, auth = (size_t)-1, p;

    while (k < e && k - b < 32 && scheme_char(s[k]))
        k++;
    if (k > b && k + 2 < e && s[k] == ':' && s[k + 1] == '/' && s[k + 2] == '/')
        auth = k + 3;
    else if (e - b >= 2 && s[b] == '/' && s[b + 1] == '/')
        auth = b + 2; /* scheme-relative */
    p = b;
    if (auth != (size_t)-1) {
        size_t ae = auth, at = (size_t)-1;

        while (ae < e && s[ae] != '/' && s[ae] != '?' && s[ae] != '#') {
            if (s[ae] == '@')
                at = ae;
            ae++;
        }
        if (at != (size_t)-1)
            forced(rd, auth, at, "credential.userinfo", "userinfo");
        p = ae;
    }
    {
        size_t pe = p, qe;

        while (pe < e && s[pe] != '?' && s[pe] != '#')
            pe++;
        path_rules(rd, s, p, pe);
        if (pe < e && s[pe] == '?') {
            const char *h = memchr(s + pe, '#', e - pe);

            qe = h ? (size_t)(h - s) : e;
            query_rules(rd, s, pe + 1, qe);
            pe = qe;
        }
        if (pe < e && s[pe] == '#')
            query_rules(rd, s, pe + 1, e); /* fragment parameters: OAuth's #access_token=... */
    }
}

static const struct redact_header_rule *find_header(const struct redact *rd, const char *name, size_t n)
{
    for (size_t i = 0; i < rd->nhdrs; i++)
        if (redact_ascii_ieq(rd->hdrs[i].name, rd->hdrs[i].name_len, name, n))
            return &rd->hdrs[i];
    return NULL;
}

static void authorization_rule(struct redact *rd, const char *s, size_t len)
{
    size_t b = 0, e = len, sp;
    const char *cls = "credential.authorization";

    trim(s, &b, &e);
    for (sp = b; sp < e && !is_ows(s[sp]); sp++)
        ;
    if (sp == e) { /* no scheme: the whole value is the credential */
        forced(rd, b, e, cls, "authorization");
        return;
    }
    if (redact_ascii_ieq(s + b, sp - b, "bearer", 6))
        cls = "credential.bearer";
    else if (redact_ascii_ieq(s + b, sp - b, "basic", 5))
        cls = "credential.basic";
    while (sp < e && is_ows(s[sp]))
        sp++;
    forced(rd, sp, e, cls, "authorization");
}

/* Cookie: "a=1; b=2" (every value). Set-Cookie: "a=1; Path=/; HttpOnly" (the first pair only;
 * attributes are kept and only scanned). Names are kept; values lose enclosing quotes. */
static void cookie_rule(struct redact *rd, const char *s, size_t len, int set_cookie)
{
    size_t i = 0;

    while (i < len) {
        const char *semi = memchr(s + i, ';', len - i);
        size_t pe = semi ? (size_t)(semi - s) : len, vb, ve;
        const char *eq = memchr(s + i, '=', pe - i);

        vb = eq ? (size_t)(eq - s) + 1 : i;
        ve = pe;
        trim(s, &vb, &ve);
        if (ve - vb >= 2 && s[vb] == '"' && s[ve - 1] == '"') {
            vb++;
            ve--;
        }
        forced(rd, vb, ve, "credential.cookie", "cookie");
        if (set_cookie)
            break;
        i = pe + 1;
    }
}

/* ---- the API ---- */

/* Applies the field rule of <f> to its value: forced spans in <rd>. */
static void field_rules(struct redact *rd, const struct redact_field *f)
{
    const struct redact_header_rule *r;
    const char *value = f->value;
    size_t len = f->len;

    switch (f->kind) {
    case REDACT_FIELD_STRING:
        return;
    case REDACT_FIELD_URL:
        url_rules(rd, value, 0, len);
        return;
    case REDACT_FIELD_QUERY:
        query_rules(rd, value, 0, len);
        return;
    case REDACT_FIELD_HEADER:
        break;
    }
    r = find_header(rd, f->name, f->name_len);
    if (r == NULL)
        return;
    switch (r->kind) {
    case REDACT_H_VALUE: {
        size_t b = 0, e = len;

        trim(value, &b, &e);
        forced(rd, b, e, r->cls, "header");
        break;
    }
    case REDACT_H_AUTHORIZATION:
        authorization_rule(rd, value, len);
        break;
    case REDACT_H_COOKIE:
        cookie_rule(rd, value, len, 0);
        break;
    case REDACT_H_SET_COOKIE:
        cookie_rule(rd, value, len, 1);
        break;
    case REDACT_H_URL:
        url_rules(rd, value, 0, len);
        break;
    }
}

/* Copies <f>'s value to <dst> with the field rules' spans (in rd->spans) replaced by '\n'. What
 * a field rule tokenizes needs no detector, so the main scan, which only tells which detectors
 * to confirm, need not look at it: a Bearer token in an Authorization header would otherwise
 * report a hit at every byte. The confirm scans see the real field, so a '\n' that makes a
 * match look possible at a span's edge costs a confirm scan, never a wrong result. */
static void copy_masked(const struct redact *rd, const struct redact_field *f, char *dst)
{
    if (f->len > 0)
        memcpy(dst, f->value, f->len);
    for (size_t i = 0; i < rd->nspans; i++)
        memset(dst + rd->spans[i].start, '\n', rd->spans[i].end - rd->spans[i].start);
}

static int one(struct redact *rd, const struct redact_field *fin, struct redact_result *res)
{
    struct redact_field fl = *fin, *f = &fl;
    const char *scan;

    if (f->value == NULL)
        f->value = ""; /* with len 0: "nothing" */
    if (f->name == NULL)
        f->name = "";
    scan = f->value;

    reset(rd);
    if (f->len > rd->max_field)
        return unscannable(rd, f->value, f->len, res, 0);
    field_rules(rd, f);
    if (rd->nspans > 0 && rd->db != NULL) {
        if (ensure((void **)&rd->batch, &rd->batch_cap, f->len + 1, 1) == -1)
            return unscannable(rd, f->value, f->len, res, -1);
        copy_masked(rd, f, rd->batch);
        scan = rd->batch;
    }
    if (scan_main(rd, scan, f->len) == -1) {
        int rc = rd->oom ? -1 : 0;

        return unscannable(rd, f->value, f->len, res, rc);
    }
    return finish(rd, f->value, f->len, rd->raw, rd->nraw, 0, res);
}

int redact_string(struct redact *rd, const char *s, size_t len, struct redact_result *res)
{
    struct redact_field f = {.kind = REDACT_FIELD_STRING, .value = s, .len = len};

    return one(rd, &f, res);
}

int redact_url(struct redact *rd, const char *s, size_t len, struct redact_result *res)
{
    struct redact_field f = {.kind = REDACT_FIELD_URL, .value = s, .len = len};

    return one(rd, &f, res);
}

int redact_query(struct redact *rd, const char *s, size_t len, struct redact_result *res)
{
    struct redact_field f = {.kind = REDACT_FIELD_QUERY, .value = s, .len = len};

    return one(rd, &f, res);
}

int redact_header(struct redact *rd, const char *name, size_t name_len, const char *value, size_t len,
                  struct redact_result *res)
{
    struct redact_field f = {.kind = REDACT_FIELD_HEADER, .name = name, .name_len = name_len, .value = value,
                             .len = len};

    return one(rd, &f, res);
}

static int cmp_raw(const void *a, const void *b)
{
    const struct redact_raw_hit *x = a, *y = b;

    return x->to < y->to ? -1 : x->to > y->to;
}

/* Each field on its own: when the joined scan cannot be used (no memory, too many hits). */
static int each(struct redact *rd, const struct redact_field *f, size_t n, struct redact_result *res)
{
    int rc = 0;

    for (size_t i = 0; i < n; i++)
        if (one(rd, &f[i], &res[i]) == -1)
            rc = -1;
    return rc;
}

int redact_fields(struct redact *rd, const struct redact_field *f, size_t n, struct redact_result *res)
{
    size_t total = 0, off = 0, k = 0;
    int rc = 0, sorted = 1;

    /* Join the scannable fields with '\n': one main scan for all of them. '\n' is a non-word
     * character and a line end (the main database is multi-line), so each field's edges look
     * to it as a field's own edges do; the confirm scans then run on each field alone. */
    for (size_t i = 0; i < n; i++)
        if (f[i].len <= rd->max_field)
            total += f[i].len + 1;
    if (total > UINT32_MAX || ensure((void **)&rd->batch, &rd->batch_cap, total + 1, 1) == -1
        || ensure((void **)&rd->fidx, &rd->capfidx, n + 1, sizeof(*rd->fidx)) == -1)
        return each(rd, f, n, res);
    rd->nfsp = 0;
    for (size_t i = 0; i < n; i++) {
        rd->fidx[i] = rd->nfsp;
        if (f[i].len > rd->max_field)
            continue;
        reset(rd);
        field_rules(rd, &f[i]);
        if (rd->oom || ensure((void **)&rd->fsp, &rd->capfsp, rd->nfsp + rd->nspans, sizeof(*rd->fsp)) == -1)
            return each(rd, f, n, res);
        if (rd->nspans > 0)
            memcpy(rd->fsp + rd->nfsp, rd->spans, rd->nspans * sizeof(*rd->spans));
        rd->nfsp += rd->nspans;
        copy_masked(rd, &f[i], rd->batch + off);
        off += f[i].len;
        rd->batch[off++] = '\n';
    }
    rd->fidx[n] = rd->nfsp;
    rd->oom = 0;
    if (scan_main(rd, rd->batch, off) == -1)
        return each(rd, f, n, res);
    for (size_t i = 1; i < rd->nraw && sorted; i++)
        sorted = rd->raw[i - 1].to <= rd->raw[i].to;
    if (!sorted)
        qsort(rd->raw, rd->nraw, sizeof(*rd->raw), cmp_raw);
    off = 0;
    for (size_t i = 0; i < n; i++) {
        size_t lo = k, nf = rd->fidx[i + 1] - rd->fidx[i];

        reset(rd);
        if (f[i].len > rd->max_field) {
            unscannable(rd, f[i].value, f[i].len, &res[i], 0);
            continue;
        }
        while (k < rd->nraw && rd->raw[k].to <= off + f[i].len + 1)
            k++;
        /* the field's rule spans, saved above (rd->spans has room: it held them then) */
        if (nf > 0)
            memcpy(rd->spans, rd->fsp + rd->fidx[i], nf * sizeof(*rd->spans));
        rd->nspans = nf;
        rd->nforced = (int)nf;
        /* rd->raw is NULL until a scan had a hit: no arithmetic on it then (UB, found by fuzz_detectors) */
        if (finish(rd, f[i].value, f[i].len, k > lo ? rd->raw + lo : NULL, k - lo, off, &res[i]) == -1)
            rc = -1;
        off += f[i].len + 1;
    }
    return rc;
}
