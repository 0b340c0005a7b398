/* tools/aq-report.c - audit-query report: the record aggregated for people.
 *
 * One streaming pass over the records that match the filters (tools/aq.h), tallying:
 *   top denied domains      flow.phase with action deny, by request.host
 *   hits per rule           the deciding rule of each flow.phase (group/id, "default", or a
 *                           built-in guard), plus each alert and dry-run rule listed
 *   volume per client       flow.end: flows and bytes up/down by client.ip (and denials)
 *   volume per destination  flow.end: flows and bytes by request.host (destination.ip if none)
 *   tokens across clients   redactions: each token with the distinct clients whose records
 *                           carry it (DLP correlation: one secret leaving from several hosts)
 *   alerts over time        per UTC hour: alert rule matches, denials, flows
 * and prints them as a table, as JSON (schema "vigil.report/1") or as one self-contained
 * HTML page (inline CSS and SVG, no external asset: it can be mailed or archived as evidence).
 *
 * Memory grows with the distinct keys (hosts, clients, rules, tokens, hours), each map
 * capped at REPORT_KEYS_MAX; a capped map is said so in the output, never silently. */
#include "tools/aq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_KEYS_MAX (1u << 20)
#define DEFAULT_TOP 10

struct t_dom {
    uint64_t denies;
};
struct t_rule {
    uint64_t allow, deny, alert, dry_run;
};
struct t_vol {
    uint64_t flows, up, down, denies;
};
struct t_tok {
    uint64_t events, clients;
    char cls[64];
};
struct t_hour {
    uint64_t alerts, denies, flows;
};

struct report {
    struct aq_filter f;
    const char *data_dir;
    struct aq_map *domains, *rules, *clients, *dests, *tokens, *pairs, *hours;
    uint64_t records, flows, phases, denies, alerts, up, down;
    int64_t first_time, last_time;
    int top;
};

enum report_format {
    RF_TABLE = 0,
    RF_JSON,
    RF_HTML,
};

/* ---- tallying ---- */

static void *get(struct aq_map *m, const char *key)
{
    return aq_map_get(m, key, strlen(key), 1);
}

static void tally_rule(struct report *r, json_t *e, const char *action)
{
    const char *g = aq_str(e, "group"), *id = aq_str(e, "id");
    struct t_rule *t;
    char key[300];

    if (id == NULL)
        return;
    snprintf(key, sizeof(key), "%s%s%s", g != NULL ? g : "", g != NULL ? "/" : "", id);
    t = get(r->rules, key);
    if (t == NULL)
        return;
    if (strcmp(action, "allow") == 0)
        t->allow++;
    else if (strcmp(action, "deny") == 0)
        t->deny++;
    else if (strcmp(action, "alert") == 0)
        t->alert++;
    else
        t->dry_run++;
}

static void hour_key(const char *time, char out[32])
{
    /* "2026-11-26T10:..." -> "2026-11-26T10:00:00Z" */
    snprintf(out, 32, "%.13s:00:00Z", time != NULL ? time : "unknown");
}

static void tally(struct report *r, json_t *obj)
{
    const char *ev = aq_str(obj, "event"), *action = aq_str(obj, "action"), *host = aq_str(obj, "request.host");
    const char *client = aq_str(obj, "client.ip"), *time = aq_str(obj, "time");
    struct t_hour *h = NULL;
    char hk[32];
    json_t *e;
    size_t i;
    int64_t t;

    r->records++;
    if (time != NULL && aq_parse_time(time, 0, &t) == 0) {
        if (r->first_time == 0 || t < r->first_time)
            r->first_time = t;
        if (t > r->last_time)
            r->last_time = t;
    }
    if (ev == NULL)
        return;
    hour_key(time, hk);
    if (strcmp(ev, "flow.phase") == 0) {
        size_t nalerts = json_array_size(json_object_get(obj, "alerts"));

        r->phases++;
        h = get(r->hours, hk);
        if (action != NULL && json_object_get(obj, "rule") != NULL)
            tally_rule(r, json_object_get(obj, "rule"), action);
        json_array_foreach(json_object_get(obj, "alerts"), i, e) tally_rule(r, e, "alert");
        json_array_foreach(json_object_get(obj, "dry_run"), i, e) tally_rule(r, e, "dry_run");
        if (nalerts == 0 && action != NULL && strcmp(action, "alert") == 0)
            nalerts = 1;
        r->alerts += nalerts;
        if (h != NULL)
            h->alerts += nalerts;
        if (action != NULL && strcmp(action, "deny") == 0) {
            struct t_dom *d = get(r->domains, host != NULL ? host : "(no host)");

            r->denies++;
            if (d != NULL)
                d->denies++;
            if (h != NULL)
                h->denies++;
            if (client != NULL) {
                struct t_vol *c = get(r->clients, client);

                if (c != NULL)
                    c->denies++;
            }
        }
    } else if (strcmp(ev, "flow.end") == 0) {
        uint64_t up = (uint64_t)aq_int(obj, "bytes.up", 0), down = (uint64_t)aq_int(obj, "bytes.down", 0);
        const char *dest = host != NULL ? host : aq_str(obj, "destination.ip");
        struct t_vol *v;

        r->flows++;
        r->up += up;
        r->down += down;
        h = get(r->hours, hk);
        if (h != NULL)
            h->flows++;
        if ((v = get(r->clients, client != NULL ? client : "(unknown)")) != NULL) {
            v->flows++;
            v->up += up;
            v->down += down;
        }
        if ((v = get(r->dests, dest != NULL ? dest : "(unknown)")) != NULL) {
            v->flows++;
            v->up += up;
            v->down += down;
        }
    }
    json_array_foreach(json_object_get(obj, "redactions"), i, e) {
        const char *tok = aq_str(e, "token"), *cls = aq_str(e, "class");
        struct t_tok *tt;
        char pair[600];

        if (tok == NULL || (tt = get(r->tokens, tok)) == NULL)
            continue;
        tt->events++;
        if (cls != NULL && tt->cls[0] == '\0')
            snprintf(tt->cls, sizeof(tt->cls), "%s", cls);
        snprintf(pair, sizeof(pair), "%s %s", tok, client != NULL ? client : "(unknown)");
        if (aq_map_get(r->pairs, pair, strlen(pair), 0) == NULL && get(r->pairs, pair) != NULL)
            tt->clients++;
    }
}

static int report_line(void *ctx, const struct aq_line *l)
{
    struct report *r = ctx;
    json_error_t jerr;
    json_t *obj;

    if (!aq_filter_prefilter(&r->f, l->data, l->len))
        return 0;
    obj = json_loadb(l->data, l->len, 0, &jerr);
    if (json_is_object(obj) && aq_filter_match(&r->f, obj))
        tally(r, obj);
    json_decref(obj);
    return 0;
}

/* ---- sorting ---- */

struct row {
    const char *key;
    void *val;
    uint64_t score;
};

static int row_cmp(const void *a, const void *b)
{
    const struct row *x = a, *y = b;

    if (x->score != y->score)
        return x->score < y->score ? 1 : -1;
    return strcmp(x->key, y->key);
}

static int row_cmp_key(const void *a, const void *b)
{
    return strcmp(((const struct row *)a)->key, ((const struct row *)b)->key);
}

enum sort_by {
    BY_DENIES = 0,
    BY_RULE_TOTAL,
    BY_BYTES,
    BY_CLIENTS,
    BY_KEY,
};

static uint64_t score_of(void *v, enum sort_by by)
{
    switch (by) {
    case BY_DENIES:
        return ((struct t_dom *)v)->denies;
    case BY_RULE_TOTAL: {
        struct t_rule *t = v;

        return t->allow + t->deny + t->alert + t->dry_run;
    }
    case BY_BYTES: {
        struct t_vol *t = v;

        return t->up + t->down;
    }
    case BY_CLIENTS: {
        struct t_tok *t = v;

        return t->clients < 2 ? 0 : t->clients * 1000000 + t->events;
    }
    default:
        return 0;
    }
}

/* The rows of <m>, sorted; at most <top> (0: all); rows scoring 0 dropped when <nonzero>. */
static struct row *rows(struct aq_map *m, enum sort_by by, int top, int nonzero, size_t *n)
{
    struct row *v = calloc(aq_map_count(m) + 1, sizeof(*v));
    size_t it = 0, k = 0;
    const char *key;
    void *val;

    *n = 0;
    if (v == NULL)
        return NULL;
    while (aq_map_next(m, &it, &key, &val)) {
        uint64_t s = score_of(val, by);

        if (nonzero && s == 0)
            continue;
        v[k++] = (struct row){ key, val, s };
    }
    qsort(v, k, sizeof(*v), by == BY_KEY ? row_cmp_key : row_cmp);
    *n = top > 0 && k > (size_t)top ? (size_t)top : k;
    return v;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The clients of <token>, sorted, as a JSON array. */
static json_t *token_clients(struct report *r, const char *token)
{
    json_t *a = json_array();
    size_t it = 0, tl = strlen(token);
    const char *key;
    void *val;

    const char **v = NULL;
    size_t n = 0, cap = 0;

    while (aq_map_next(r->pairs, &it, &key, &val)) {
        if (strncmp(key, token, tl) != 0 || key[tl] != ' ')
            continue;
        if (n == cap) {
            const char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

            if (nv == NULL)
                break;
            v = nv;
        }
        v[n++] = key + tl + 1;
    }
    if (n > 0)
        qsort(v, n, sizeof(*v), str_cmp);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    free(v);
    return a;
}

static void human_bytes(uint64_t b, char out[32])
{
    static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)b;
    int u = 0;

    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(out, 32, "%" PRIu64 " B", b);
    else
        snprintf(out, 32, "%.1f %s", v, units[u]);
}

static void capped_note(FILE *out, struct aq_map *m, const char *what)
{
    if (aq_map_refused(m) > 0)
        fprintf(out, "note: more than %u distinct %s: the rest were not counted\n", REPORT_KEYS_MAX, what);
}

/* ---- JSON ---- */

static json_t *report_json(struct report *r)
{
    json_t *o = json_object(), *a;
    struct row *v;
    size_t n, i;
    char t1[32], t2[32];

    json_object_set_new(o, "schema", json_string("vigil.report/1"));
    aq_format_time(aq_now_us(), t1);
    json_object_set_new(o, "generated", json_string(t1));
    json_object_set_new(o, "filters", aq_filter_to_json(&r->f));
    if (r->records > 0) {
        aq_format_time(r->first_time, t1);
        aq_format_time(r->last_time, t2);
        json_object_set_new(o, "first_time", json_string(t1));
        json_object_set_new(o, "last_time", json_string(t2));
    }
    json_object_set_new(o, "totals",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "records", (json_int_t)r->records, "flows",
                                  (json_int_t)r->flows, "phases", (json_int_t)r->phases, "denies",
                                  (json_int_t)r->denies, "alerts", (json_int_t)r->alerts, "bytes_up",
                                  (json_int_t)r->up, "bytes_down", (json_int_t)r->down));

    a = json_array();
    v = rows(r->domains, BY_DENIES, r->top, 1, &n);
    for (i = 0; v != NULL && i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:I}", "domain", v[i].key, "denies", (json_int_t)v[i].score));
    free(v);
    json_object_set_new(o, "top_denied_domains", a);

    a = json_array();
    v = rows(r->rules, BY_RULE_TOTAL, 0, 0, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_rule *t = v[i].val;

        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "rule", v[i].key, "hits", (json_int_t)v[i].score,
                                           "allow", (json_int_t)t->allow, "deny", (json_int_t)t->deny, "alert",
                                           (json_int_t)t->alert, "dry_run", (json_int_t)t->dry_run));
    }
    free(v);
    json_object_set_new(o, "rule_hits", a);

    for (int pass = 0; pass < 2; pass++) {
        struct aq_map *m = pass == 0 ? r->clients : r->dests;

        a = json_array();
        v = rows(m, BY_BYTES, r->top, 0, &n);
        for (i = 0; v != NULL && i < n; i++) {
            struct t_vol *t = v[i].val;

            if (t->flows == 0 && pass == 0 && t->denies == 0)
                continue;
            if (pass == 0)
                json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I,s:I}", "client", v[i].key, "flows",
                                                   (json_int_t)t->flows, "bytes_up", (json_int_t)t->up, "bytes_down",
                                                   (json_int_t)t->down, "denies", (json_int_t)t->denies));
            else
                json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I}", "destination", v[i].key, "flows",
                                                   (json_int_t)t->flows, "bytes_up", (json_int_t)t->up, "bytes_down",
                                                   (json_int_t)t->down));
        }
        free(v);
        json_object_set_new(o, pass == 0 ? "clients" : "destinations", a);
    }

    a = json_array();
    v = rows(r->tokens, BY_CLIENTS, r->top, 1, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_tok *t = v[i].val;

        json_array_append_new(a, json_pack("{s:s,s:s,s:I,s:I,s:o}", "token", v[i].key, "class", t->cls, "clients",
                                           (json_int_t)t->clients, "events", (json_int_t)t->events, "client_list",
                                           token_clients(r, v[i].key)));
    }
    free(v);
    json_object_set_new(o, "tokens_across_clients", a);

    a = json_array();
    v = rows(r->hours, BY_KEY, 0, 0, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_hour *t = v[i].val;

        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I}", "hour", v[i].key, "alerts", (json_int_t)t->alerts,
                                           "denies", (json_int_t)t->denies, "flows", (json_int_t)t->flows));
    }
    free(v);
    json_object_set_new(o, "alerts_per_hour", a);
    {
        json_t *capped = json_array();

        if (aq_map_refused(r->domains) || aq_map_refused(r->rules) || aq_map_refused(r->clients) ||
            aq_map_refused(r->dests) || aq_map_refused(r->tokens) || aq_map_refused(r->pairs) ||
            aq_map_refused(r->hours))
            json_array_append_new(capped, json_string("some tallies hit their cap; counts are lower bounds"));
        if (json_array_size(capped) > 0)
            json_object_set_new(o, "notes", capped);
        else
            json_decref(capped);
    }
    return o;
}

/* ---- table ---- */

static void print_table(struct report *r)
{
    struct row *v;
    size_t n, i;
    char t1[32], t2[32], b1[32], b2[32];

    printf("Vigil audit report\n");
    if (r->records > 0) {
        aq_format_time(r->first_time, t1);
        aq_format_time(r->last_time, t2);
        printf("records %" PRIu64 " from %s to %s\n", r->records, t1, t2);
    }
    human_bytes(r->up, b1);
    human_bytes(r->down, b2);
    printf("flows %" PRIu64 ", denials %" PRIu64 ", alerts %" PRIu64 ", bytes up %s, down %s\n", r->flows, r->denies,
           r->alerts, b1, b2);

    printf("\nTop denied domains\n  %-48s %10s\n", "DOMAIN", "DENIES");
    v = rows(r->domains, BY_DENIES, r->top, 1, &n);
    for (i = 0; v != NULL && i < n; i++) {
        printf("  ");
        aq_safe_text(stdout, v[i].key);
        printf("%*s %10" PRIu64 "\n", (int)(strlen(v[i].key) < 48 ? 48 - strlen(v[i].key) : 0), "", v[i].score);
    }
    if (n == 0)
        printf("  (none)\n");
    free(v);

    printf("\nHits per rule\n  %-40s %8s %8s %8s %8s %8s\n", "RULE", "HITS", "ALLOW", "DENY", "ALERT", "DRY_RUN");
    v = rows(r->rules, BY_RULE_TOTAL, 0, 0, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_rule *t = v[i].val;

        printf("  %-40s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n", v[i].key, v[i].score,
               t->allow, t->deny, t->alert, t->dry_run);
    }
    if (n == 0)
        printf("  (none)\n");
    free(v);

    for (int pass = 0; pass < 2; pass++) {
        printf("\nVolume per %s\n  %-40s %8s %12s %12s%s\n", pass == 0 ? "client" : "destination",
               pass == 0 ? "CLIENT" : "DESTINATION", "FLOWS", "BYTES_UP", "BYTES_DOWN", pass == 0 ? "   DENIES" : "");
        v = rows(pass == 0 ? r->clients : r->dests, BY_BYTES, r->top, 0, &n);
        for (i = 0; v != NULL && i < n; i++) {
            struct t_vol *t = v[i].val;

            printf("  ");
            aq_safe_text(stdout, v[i].key);
            printf("%*s %8" PRIu64 " %12" PRIu64 " %12" PRIu64, (int)(strlen(v[i].key) < 40 ? 40 - strlen(v[i].key) : 0),
                   "", t->flows, t->up, t->down);
            if (pass == 0)
                printf(" %8" PRIu64, t->denies);
            printf("\n");
        }
        if (n == 0)
            printf("  (none)\n");
        free(v);
    }

    printf("\nTokens seen from several clients\n  %-60s %-20s %8s %8s\n", "TOKEN", "CLASS", "CLIENTS", "EVENTS");
    v = rows(r->tokens, BY_CLIENTS, r->top, 1, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_tok *t = v[i].val;
        json_t *cl = token_clients(r, v[i].key), *e;
        size_t k;

        printf("  %-60s %-20s %8" PRIu64 " %8" PRIu64 "\n    clients:", v[i].key, t->cls, t->clients, t->events);
        json_array_foreach(cl, k, e) printf(" %s", json_string_value(e));
        printf("\n");
        json_decref(cl);
    }
    if (n == 0)
        printf("  (none)\n");
    free(v);

    printf("\nAlerts over time (UTC hours)\n  %-20s %8s %8s %8s\n", "HOUR", "ALERTS", "DENIES", "FLOWS");
    v = rows(r->hours, BY_KEY, 0, 0, &n);
    for (i = 0; v != NULL && i < n; i++) {
        struct t_hour *t = v[i].val;

        printf("  %-20s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n", v[i].key, t->alerts, t->denies, t->flows);
    }
    if (n == 0)
        printf("  (none)\n");
    free(v);
    capped_note(stdout, r->tokens, "tokens");
    capped_note(stdout, r->pairs, "token/client pairs");
    capped_note(stdout, r->clients, "clients");
    capped_note(stdout, r->dests, "destinations");
}

/* ---- HTML ---- */

static const char html_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    "<title>Vigil audit report</title>\n<style>\n"
    "body{font:14px/1.45 -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;color:#1f2933;background:#f5f7fa;"
    "margin:0}\n"
    "header{background:#1f2933;color:#fff;padding:20px 32px}header h1{margin:0;font-size:22px}"
    "header p{margin:4px 0 0;color:#cbd2d9}\n"
    "main{max-width:1100px;margin:0 auto;padding:24px 32px}\n"
    ".cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:20px}"
    ".card{background:#fff;border-radius:8px;padding:12px 18px;box-shadow:0 1px 3px rgba(0,0,0,.12);min-width:120px}"
    ".card b{display:block;font-size:22px}.card span{color:#616e7c;font-size:12px;text-transform:uppercase}\n"
    "section{background:#fff;border-radius:8px;padding:16px 20px;margin-bottom:20px;"
    "box-shadow:0 1px 3px rgba(0,0,0,.12)}\n"
    "section h2{margin:0 0 10px;font-size:16px}\n"
    "table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 8px;"
    "border-bottom:1px solid #e4e7eb}th{color:#616e7c;font-weight:600}td.n,th.n{text-align:right;"
    "font-variant-numeric:tabular-nums}\n"
    "code{font:12px ui-monospace,Menlo,Consolas,monospace;word-break:break-all}\n"
    ".empty{color:#9aa5b1}.legend span{display:inline-block;margin-right:14px;font-size:12px}"
    ".legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}\n"
    "svg text{font:11px -apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;fill:#3e4c59}\n"
    "footer{color:#9aa5b1;font-size:12px;text-align:center;padding:8px 0 24px}\n"
    "</style></head><body>\n";

/* A horizontal bar chart of <n> rows; labels from the keys, values from <vals>. */
static void svg_hbars(FILE *out, const struct row *v, const uint64_t *vals, size_t n, const char *color, int bytes)
{
    const int lw = 260, bw = 560, rh = 22, w = lw + bw + 110;
    uint64_t max = 1;
    size_t i;

    for (i = 0; i < n; i++)
        if (vals[i] > max)
            max = vals[i];
    fprintf(out, "<svg role=\"img\" width=\"%d\" height=\"%zu\" viewBox=\"0 0 %d %zu\">\n", w, n * rh + 4, w,
            n * rh + 4);
    for (i = 0; i < n; i++) {
        char lab[48], num[32];
        double len = (double)bw * (double)vals[i] / (double)max;
        size_t kl = strlen(v[i].key);

        snprintf(lab, sizeof(lab), "%s%s", kl > 38 ? "\xe2\x80\xa6" : "", kl > 38 ? v[i].key + kl - 37 : v[i].key);
        if (bytes)
            human_bytes(vals[i], num);
        else
            snprintf(num, sizeof(num), "%" PRIu64, vals[i]);
        fprintf(out, "<text x=\"%d\" y=\"%zu\" text-anchor=\"end\">", lw - 8, i * rh + 15);
        aq_html_text(out, lab);
        fprintf(out, "</text><rect x=\"%d\" y=\"%zu\" width=\"%.1f\" height=\"%d\" rx=\"2\" fill=\"%s\"><title>", lw,
                i * rh + 3, len < 1 ? 1 : len, rh - 6, color);
        aq_html_text(out, v[i].key);
        fprintf(out, ": %s</title></rect><text x=\"%.1f\" y=\"%zu\">%s</text>\n", num, lw + (len < 1 ? 1 : len) + 6,
                i * rh + 15, num);
    }
    fprintf(out, "</svg>\n");
}

/* Alerts and denials per hour: grouped vertical bars. */
static void svg_hours(FILE *out, const struct row *v, size_t n)
{
    const int h = 200, left = 40, bottom = 40, top = 10;
    uint64_t max = 1;
    size_t i, step;
    double slot;
    int w;

    for (i = 0; i < n; i++) {
        const struct t_hour *t = v[i].val;

        if (t->alerts > max)
            max = t->alerts;
        if (t->denies > max)
            max = t->denies;
    }
    {
        /* four gridlines at a round step: 1, 2, 5, 10, 20, 50, ... */
        uint64_t want = (max + 3) / 4, grid = 1;

        while (grid < want) {
            if (grid * 2 >= want) {
                grid *= 2;
                break;
            }
            if (grid * 5 >= want) {
                grid *= 5;
                break;
            }
            grid *= 10;
        }
        max = grid * 4;
    }
    w = left + (int)(n < 24 ? 24 : n) * 30 + 10;
    if (w > 1000)
        w = 1000;
    slot = (double)(w - left - 10) / (double)(n > 0 ? n : 1);
    step = n > 24 ? (n + 11) / 12 : 1;
    fprintf(out, "<svg role=\"img\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", w, h + bottom + top, w,
            h + bottom + top);
    for (int g = 0; g <= 4; g++) {
        double y = top + h - (double)h * g / 4;

        fprintf(out,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e7eb\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%" PRIu64 "</text>\n",
                left, w - 10, y, y, left - 6, y + 4, (uint64_t)((double)max * g / 4 + 0.5));
    }
    for (i = 0; i < n; i++) {
        const struct t_hour *t = v[i].val;
        double x = left + slot * (double)i, bw = slot * 0.38 > 1 ? slot * 0.38 : 1;
        double ha = (double)h * (double)t->alerts / (double)max, hd = (double)h * (double)t->denies / (double)max;

        fprintf(out,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#e8833a\"><title>%s: %" PRIu64
                " alerts</title></rect>"
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#c2333b\"><title>%s: %" PRIu64
                " denials</title></rect>\n",
                x + slot * 0.1, top + h - ha, bw, ha, v[i].key, t->alerts, x + slot * 0.1 + bw, top + h - hd, bw, hd,
                v[i].key, t->denies);
        if (i % step == 0)
            fprintf(out, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.5s</text>"
                         "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%.5s</text>\n",
                    x + slot / 2, top + h + 14, v[i].key + 11, x + slot / 2, top + h + 28, v[i].key + 5);
    }
    fprintf(out, "</svg>\n");
}

static void html_section_bars(FILE *out, const char *title, struct aq_map *m, enum sort_by by, int top,
                              const char *color, int is_volume)
{
    struct row *v;
    uint64_t *vals;
    size_t n, i;

    fprintf(out, "<section><h2>%s</h2>\n", title);
    v = rows(m, by, top, !is_volume, &n);
    vals = calloc(n + 1, sizeof(*vals));
    if (v == NULL || vals == NULL || n == 0) {
        fprintf(out, "<p class=\"empty\">None in this range.</p></section>\n");
        free(v);
        free(vals);
        return;
    }
    for (i = 0; i < n; i++)
        vals[i] = v[i].score;
    svg_hbars(out, v, vals, n, color, is_volume);
    if (is_volume) {
        fprintf(out, "<table><tr><th>%s</th><th class=\"n\">flows</th><th class=\"n\">bytes up</th>"
                     "<th class=\"n\">bytes down</th></tr>\n",
                m == NULL ? "" : (strstr(title, "client") != NULL ? "client" : "destination"));
        for (i = 0; i < n; i++) {
            struct t_vol *t = v[i].val;

            fprintf(out, "<tr><td><code>");
            aq_html_text(out, v[i].key);
            fprintf(out, "</code></td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64
                         "</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
                    t->flows, t->up, t->down);
        }
        fprintf(out, "</table>\n");
    }
    fprintf(out, "</section>\n");
    free(v);
    free(vals);
}

static void print_html(struct report *r)
{
    struct row *v;
    size_t n, i;
    char t1[32], t2[32], now[32], b1[32], b2[32];
    FILE *out = stdout;

    aq_format_time(aq_now_us(), now);
    fputs(html_head, out);
    fprintf(out, "<header><h1>Vigil audit report</h1><p>");
    if (r->records > 0) {
        aq_format_time(r->first_time, t1);
        aq_format_time(r->last_time, t2);
        fprintf(out, "Records from %s to %s", t1, t2);
    } else {
        fprintf(out, "No records in this range");
    }
    fprintf(out, " &middot; data directory <code>");
    aq_html_text(out, r->data_dir);
    fprintf(out, "</code> &middot; generated %s</p></header>\n<main>\n<div class=\"cards\">\n", now);
    human_bytes(r->up, b1);
    human_bytes(r->down, b2);
    fprintf(out,
            "<div class=\"card\"><b>%" PRIu64 "</b><span>records</span></div>\n"
            "<div class=\"card\"><b>%" PRIu64 "</b><span>flows</span></div>\n"
            "<div class=\"card\"><b>%" PRIu64 "</b><span>denials</span></div>\n"
            "<div class=\"card\"><b>%" PRIu64 "</b><span>alerts</span></div>\n"
            "<div class=\"card\"><b>%s</b><span>bytes up</span></div>\n"
            "<div class=\"card\"><b>%s</b><span>bytes down</span></div>\n</div>\n",
            r->records, r->flows, r->denies, r->alerts, b1, b2);

    fprintf(out, "<section><h2>Alerts and denials per hour (UTC)</h2>\n<div class=\"legend\">"
                 "<span><i style=\"background:#e8833a\"></i>alerts</span>"
                 "<span><i style=\"background:#c2333b\"></i>denials</span></div>\n");
    v = rows(r->hours, BY_KEY, 0, 0, &n);
    if (v != NULL && n > 0)
        svg_hours(out, v, n);
    else
        fprintf(out, "<p class=\"empty\">None in this range.</p>\n");
    free(v);
    fprintf(out, "</section>\n");

    html_section_bars(out, "Top denied domains", r->domains, BY_DENIES, r->top, "#c2333b", 0);

    fprintf(out, "<section><h2>Hits per rule</h2>\n");
    v = rows(r->rules, BY_RULE_TOTAL, 0, 0, &n);
    if (v != NULL && n > 0) {
        uint64_t *vals = calloc(n, sizeof(*vals));

        for (i = 0; vals != NULL && i < n; i++)
            vals[i] = v[i].score;
        if (vals != NULL)
            svg_hbars(out, v, vals, n < 20 ? n : 20, "#3e7cb1", 0);
        free(vals);
        fprintf(out, "<table><tr><th>rule</th><th class=\"n\">hits</th><th class=\"n\">allow</th>"
                     "<th class=\"n\">deny</th><th class=\"n\">alert</th><th class=\"n\">dry run</th></tr>\n");
        for (i = 0; i < n; i++) {
            struct t_rule *t = v[i].val;

            fprintf(out, "<tr><td><code>");
            aq_html_text(out, v[i].key);
            fprintf(out,
                    "</code></td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64
                    "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td></tr>\n",
                    v[i].score, t->allow, t->deny, t->alert, t->dry_run);
        }
        fprintf(out, "</table>\n");
    } else {
        fprintf(out, "<p class=\"empty\">None in this range.</p>\n");
    }
    free(v);
    fprintf(out, "</section>\n");

    html_section_bars(out, "Volume per client (bytes up + down)", r->clients, BY_BYTES, r->top, "#2f8f83", 1);
    html_section_bars(out, "Volume per destination (bytes up + down)", r->dests, BY_BYTES, r->top, "#7b5ea7", 1);

    fprintf(out, "<section><h2>Tokens seen from several clients</h2>\n"
                 "<p>The same redacted value (one token) in records of different clients: a shared secret "
                 "or personal data leaving from several hosts.</p>\n");
    v = rows(r->tokens, BY_CLIENTS, r->top, 1, &n);
    if (v != NULL && n > 0) {
        fprintf(out, "<table><tr><th>token</th><th>class</th><th class=\"n\">clients</th><th class=\"n\">events</th>"
                     "<th>clients</th></tr>\n");
        for (i = 0; i < n; i++) {
            struct t_tok *t = v[i].val;
            json_t *cl = token_clients(r, v[i].key), *e;
            size_t k;

            fprintf(out, "<tr><td><code>");
            aq_html_text(out, v[i].key);
            fprintf(out, "</code></td><td>");
            aq_html_text(out, t->cls);
            fprintf(out, "</td><td class=\"n\">%" PRIu64 "</td><td class=\"n\">%" PRIu64 "</td><td>", t->clients,
                    t->events);
            json_array_foreach(cl, k, e) {
                fprintf(out, "%s<code>", k > 0 ? ", " : "");
                aq_html_text(out, json_string_value(e));
                fprintf(out, "</code>");
            }
            fprintf(out, "</td></tr>\n");
            json_decref(cl);
        }
        fprintf(out, "</table>\n");
    } else {
        fprintf(out, "<p class=\"empty\">None in this range.</p>\n");
    }
    free(v);
    fprintf(out, "</section>\n</main>\n<footer>audit-query %s &middot; verify the record this report was made from "
                 "with <code>audit-query verify</code></footer>\n</body></html>\n",
            AQ_VERSION);
}

/* ---- the command ---- */

static void report_usage(FILE *out)
{
    fprintf(out,
            "usage: %s report [--data-dir DIR] [--format table|json|html] [--top N] [filters]\n\n"
            "Aggregates the records that match: top denied domains, hits per rule, volume per client and\n"
            "per destination, tokens seen from several clients, alerts and denials per UTC hour.\n\n"
            "  --format FORMAT     table (default), json (\"schema\": \"vigil.report/1\"), or html: one\n"
            "                      self-contained page with charts (no external assets)\n"
            "  --top N             rows per list (default %d; rule hits and hours are complete)\n"
            "%s",
            AQ_PROG, DEFAULT_TOP, aq_filter_help);
}

int aq_cmd_report(int argc, char **argv)
{
    static const struct option opts[] = {
        AQ_FILTER_OPTIONS,
        { "format", required_argument, NULL, 'f' },
        { "top", required_argument, NULL, 't' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct report r = { .data_dir = AQ_DEFAULT_DATA_DIR, .top = DEFAULT_TOP };
    enum report_format format = RF_TABLE;
    struct aq_scan_stats st;
    struct aq_scan_opts so;
    char err[512], *end;
    int c, stats = 0, rc = AQ_EXIT_USAGE;
    long top;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "table") == 0)
                format = RF_TABLE;
            else if (strcmp(optarg, "json") == 0)
                format = RF_JSON;
            else if (strcmp(optarg, "html") == 0)
                format = RF_HTML;
            else {
                fprintf(stderr, "%s report: --format: must be table, json or html, not \"%s\"\n", AQ_PROG, optarg);
                return AQ_EXIT_USAGE;
            }
            break;
        case 't':
            errno = 0;
            top = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || top < 1 || top > 100000) {
                fprintf(stderr, "%s report: --top: a number from 1 to 100000\n", AQ_PROG);
                return AQ_EXIT_USAGE;
            }
            r.top = (int)top;
            break;
        case AQ_OPT_DATA_DIR:
            r.data_dir = optarg;
            break;
        case AQ_OPT_STATS:
            stats = 1;
            break;
        case 'h':
            report_usage(stdout);
            return AQ_EXIT_OK;
        case ':':
            fprintf(stderr, "%s report: %s needs a value\n", AQ_PROG, argv[optind - 1]);
            return AQ_EXIT_USAGE;
        case '?':
            fprintf(stderr, "%s report: unknown option %s\n", AQ_PROG, argv[optind - 1]);
            report_usage(stderr);
            return AQ_EXIT_USAGE;
        default:
            if (aq_filter_set(&r.f, c, optarg, err, sizeof(err)) == -1) {
                fprintf(stderr, "%s report: %s\n", AQ_PROG, err);
                return AQ_EXIT_USAGE;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s report: unexpected argument \"%s\"\n", AQ_PROG, argv[optind]);
        return AQ_EXIT_USAGE;
    }
    if (aq_check_data_dir(r.data_dir) == -1)
        return AQ_EXIT_USAGE;
    r.domains = aq_map_new(sizeof(struct t_dom), REPORT_KEYS_MAX);
    r.rules = aq_map_new(sizeof(struct t_rule), REPORT_KEYS_MAX);
    r.clients = aq_map_new(sizeof(struct t_vol), REPORT_KEYS_MAX);
    r.dests = aq_map_new(sizeof(struct t_vol), REPORT_KEYS_MAX);
    r.tokens = aq_map_new(sizeof(struct t_tok), REPORT_KEYS_MAX);
    r.pairs = aq_map_new(1, 4 * REPORT_KEYS_MAX);
    r.hours = aq_map_new(sizeof(struct t_hour), REPORT_KEYS_MAX);
    if (r.domains == NULL || r.rules == NULL || r.clients == NULL || r.dests == NULL || r.tokens == NULL ||
        r.pairs == NULL || r.hours == NULL) {
        fprintf(stderr, "%s report: out of memory\n", AQ_PROG);
        goto out;
    }
    so = (struct aq_scan_opts){ .data_dir = r.data_dir, .f = &r.f, .progress = 1 };
    if (aq_scan(&so, report_line, &r, &st, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s: %s\n", AQ_PROG, err);
        goto out;
    }
    if (stats)
        aq_scan_stats_print(&st);
    switch (format) {
    case RF_TABLE:
        print_table(&r);
        break;
    case RF_JSON: {
        json_t *o = report_json(&r);
        char *text = json_dumps(o, JSON_INDENT(2));

        if (text != NULL)
            puts(text);
        free(text);
        json_decref(o);
        break;
    }
    case RF_HTML:
        print_html(&r);
        break;
    }
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", AQ_PROG, strerror(errno));
        goto out;
    }
    rc = r.records > 0 ? AQ_EXIT_OK : AQ_EXIT_NONE;
out:
    aq_map_free(r.domains);
    aq_map_free(r.rules);
    aq_map_free(r.clients);
    aq_map_free(r.dests);
    aq_map_free(r.tokens);
    aq_map_free(r.pairs);
    aq_map_free(r.hours);
    return rc;
}
