/* tools/audit-query.c - reads the record the file sink stored under DATA_DIR/audit.
 *
 *     audit-query search [filters] [--format table|json|csv]     records that match
 *     audit-query report [filters] [--format table|json|html]    aggregations for people
 *     audit-query verify [--data-dir DIR] [--public-key FILE]    chain, digests, access log
 *     audit-query reveal --role-key FILE --reason TEXT [filters] sealed originals, logged
 *     audit-query keys new-role NAME [--out DIR]                 a role key pair
 *
 * Subcommands are a table; each lives in its own file (tools/aq-*.c) and shares the
 * filters and the time-indexed scanner of tools/aq-scan.c (tools/aq.h). search reads the
 * segments in writing order and prints the records that match every filter given: as
 * stored (JSON lines), as a table or as CSV. A damaged segment (a frame torn by a crash, or
 * corrupt) is reported on stderr with its byte offset and the search goes on with the next.
 *
 * Exit status, like ausearch: 0 when something matched, 1 when nothing did, 2 on a usage
 * error or a data directory that cannot be read (verify: 0 intact, 1 integrity failure).
 * Memory stays flat whatever the size of the record: segments are streamed a frame at a
 * time and the table's columns have fixed widths. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "tools/aq.h"

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

static const struct command commands[] = {
    { "search", "print the stored records that match filters", aq_cmd_search },
    { "report", "aggregate the record: denied domains, rule hits, volumes, tokens, alerts", aq_cmd_report },
    { "verify", "check every record's chain, every segment digest and the access log", aq_cmd_verify },
    { "reveal", "print records with the sealed originals a role may see (logged)", aq_cmd_reveal },
    { "keys", "key management: keys new-role NAME --out DIR", aq_cmd_keys },
};

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage: %s COMMAND [OPTIONS]\n"
                 "       %s --help | --version\n\n"
                 "Reads the audit record stored by Vigil's file sink (DATA_DIR/audit).\n\ncommands:\n",
            AQ_PROG, AQ_PROG);
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'%s COMMAND --help' describes a command's options.\n"
                 "exit status: 0 something matched (verify: intact), 1 nothing matched (verify: an integrity\n"
                 "failure), 2 usage or data directory error\n",
            AQ_PROG);
}

/* ---- search ---- */

enum search_format {
    FORMAT_JSON = 0,
    FORMAT_TABLE,
    FORMAT_CSV,
};

struct search {
    struct aq_filter f;
    const char *data_dir;
    enum search_format format;
    int need_parse; /* a filter or the format needs the fields */
    int time_only;  /* only a time range: the bytes tell */
    int header_done;
    unsigned long long matched;
};

static void search_usage(FILE *out)
{
    fprintf(out, "usage: %s search [--data-dir DIR] [--format table|json|csv] [filters]\n\n"
                 "Prints the records that match every filter given, oldest first.\n\n"
                 "  --format FORMAT     json: the JSON lines as stored (default); table: aligned columns;\n"
                 "                      csv: one row per record with a header (RFC 4180)\n"
                 "%s",
            AQ_PROG, aq_filter_help);
}

/* Prints <s> padded to <width>, with control characters replaced: a record's strings come
 * from the network and must not drive the terminal. */
static void put_cell(const char *s, int width, int last)
{
    int n = 0;

    if (s == NULL || *s == '\0')
        s = "-";
    for (; *s != '\0'; s++, n++)
        putchar((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s);
    if (last)
        return;
    do
        putchar(' ');
    while (++n < width + 1);
}

#define W_TIME 27
#define W_SEQ 8
#define W_EVENT 12
#define W_FLOW 26
#define W_PHASE 13
#define W_ACTION 6
#define W_RULE 24
#define W_CLIENT 15
#define W_HOST 32
#define W_STATUS 6

static void table_header(void)
{
    printf("%-*s %*s %-*s %-*s %-*s %-*s %-*s %-*s %-*s %-*s %s\n", W_TIME, "TIME", W_SEQ, "SEQ", W_EVENT, "EVENT",
           W_FLOW, "FLOW_ID", W_PHASE, "PHASE", W_ACTION, "ACTION", W_RULE, "RULE", W_CLIENT, "CLIENT", W_HOST, "HOST",
           W_STATUS, "STATUS", "REASON");
}

static const char *rule_name(json_t *obj, char *buf, size_t len)
{
    const char *g = aq_str(obj, "rule.group"), *id = aq_str(obj, "rule.id");

    if (id == NULL)
        return NULL;
    snprintf(buf, len, "%s%s%s", g != NULL ? g : "", g != NULL ? "/" : "", id);
    return buf;
}

static void table_row(json_t *obj)
{
    long long seq = aq_int(obj, "seq", -1), status = aq_int(obj, "response.status", -1);
    char num[32], rule[256];

    put_cell(aq_str(obj, "time"), W_TIME, 0);
    if (seq >= 0)
        snprintf(num, sizeof(num), "%*lld", W_SEQ, seq);
    else
        snprintf(num, sizeof(num), "%*s", W_SEQ, "-");
    put_cell(num, W_SEQ, 0);
    put_cell(aq_str(obj, "event"), W_EVENT, 0);
    put_cell(aq_str(obj, "flow_id"), W_FLOW, 0);
    put_cell(aq_str(obj, "phase"), W_PHASE, 0);
    put_cell(aq_str(obj, "action"), W_ACTION, 0);
    put_cell(rule_name(obj, rule, sizeof(rule)), W_RULE, 0);
    put_cell(aq_str(obj, "client.ip"), W_CLIENT, 0);
    put_cell(aq_str(obj, "request.host"), W_HOST, 0);
    if (status >= 0)
        snprintf(num, sizeof(num), "%lld", status);
    else
        snprintf(num, sizeof(num), "-");
    put_cell(num, W_STATUS, 0);
    put_cell(aq_str(obj, "reason"), 0, 1);
    putchar('\n');
}

static const char *const csv_columns[] = {
    "time", "seq", "event", "flow_id", "parent_flow_id", "phase", "action", "rule_group", "rule_id", "client_ip",
    "client_port", "principal", "method", "scheme", "host", "port", "path", "destination_ip", "status",
    "bytes_up", "bytes_down", "duration_ms", "reason", "classes", "tokens", NULL,
};

static void csv_header(void)
{
    for (size_t i = 0; csv_columns[i] != NULL; i++)
        printf("%s%s", i > 0 ? "," : "", csv_columns[i]);
    printf("\r\n");
}

static void csv_num(json_t *obj, const char *path)
{
    json_t *v = json_object_get(obj, path);
    const char *dot = strchr(path, '.');

    if (dot != NULL) {
        char key[64];

        snprintf(key, sizeof(key), "%.*s", (int)(dot - path), path);
        v = json_object_get(json_object_get(obj, key), dot + 1);
    }
    if (json_is_integer(v))
        printf("%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        printf("%.3f", json_real_value(v));
}

/* The members <key> of the entries of list <list>, joined with ';' (duplicates kept once). */
static void csv_list(json_t *obj, const char *list, const char *key)
{
    json_t *a = json_object_get(obj, list), *e;
    char buf[4096];
    size_t used = 0, i;

    buf[0] = '\0';
    json_array_foreach(a, i, e) {
        const char *v = aq_str(e, key);
        size_t vl;

        if (v == NULL || strstr(buf, v) != NULL)
            continue;
        vl = strlen(v);
        if (used + vl + 2 >= sizeof(buf))
            break;
        if (used > 0)
            buf[used++] = ';';
        memcpy(buf + used, v, vl + 1);
        used += vl;
    }
    aq_csv_cell(stdout, buf);
}

static void csv_row(json_t *obj)
{
#define STR(p) aq_csv_cell(stdout, aq_str(obj, p))
    STR("time");
    putchar(',');
    csv_num(obj, "seq");
    putchar(',');
    STR("event");
    putchar(',');
    STR("flow_id");
    putchar(',');
    STR("parent_flow_id");
    putchar(',');
    STR("phase");
    putchar(',');
    STR("action");
    putchar(',');
    STR("rule.group");
    putchar(',');
    STR("rule.id");
    putchar(',');
    STR("client.ip");
    putchar(',');
    csv_num(obj, "client.port");
    putchar(',');
    STR("principal");
    putchar(',');
    STR("request.method");
    putchar(',');
    STR("request.scheme");
    putchar(',');
    STR("request.host");
    putchar(',');
    csv_num(obj, "request.port");
    putchar(',');
    STR("request.path");
    putchar(',');
    STR("destination.ip");
    putchar(',');
    csv_num(obj, "response.status");
    putchar(',');
    csv_num(obj, "bytes.up");
    putchar(',');
    csv_num(obj, "bytes.down");
    putchar(',');
    csv_num(obj, "duration_ms");
    putchar(',');
    STR("reason");
    putchar(',');
    csv_list(obj, "redactions", "class");
    putchar(',');
    csv_list(obj, "redactions", "token");
    printf("\r\n");
#undef STR
}

static int search_line(void *ctx, const struct aq_line *l)
{
    struct search *q = ctx;
    json_error_t jerr;
    json_t *obj;

    if (!aq_filter_prefilter(&q->f, l->data, l->len))
        return 0;
    if (!q->need_parse) {
        int64_t t;

        if (q->time_only && aq_line_time(l->data, l->len, &t) == -1)
            return 0;
        fwrite(l->data, 1, l->len, stdout);
        putchar('\n');
        q->matched++;
        return 0;
    }
    obj = json_loadb(l->data, l->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        fprintf(stderr, "%s: warning: %s: line %llu is not a JSON object, skipped\n", AQ_PROG, l->path,
                (unsigned long long)l->lineno);
        json_decref(obj);
        return 0;
    }
    if (aq_filter_match(&q->f, obj)) {
        q->matched++;
        switch (q->format) {
        case FORMAT_JSON:
            fwrite(l->data, 1, l->len, stdout);
            putchar('\n');
            break;
        case FORMAT_TABLE:
            if (!q->header_done)
                table_header();
            q->header_done = 1;
            table_row(obj);
            break;
        case FORMAT_CSV:
            csv_row(obj);
            break;
        }
    }
    json_decref(obj);
    return 0;
}

int aq_cmd_search(int argc, char **argv)
{
    static const struct option opts[] = {
        AQ_FILTER_OPTIONS,
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    struct search q = { .data_dir = AQ_DEFAULT_DATA_DIR, .format = FORMAT_JSON };
    struct aq_scan_stats st;
    struct aq_scan_opts so;
    int c, stats = 0;
    char err[512];

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'f':
            if (strcmp(optarg, "json") == 0) {
                q.format = FORMAT_JSON;
            } else if (strcmp(optarg, "table") == 0) {
                q.format = FORMAT_TABLE;
            } else if (strcmp(optarg, "csv") == 0) {
                q.format = FORMAT_CSV;
            } else {
                fprintf(stderr, "%s search: --format: must be table, json or csv, not \"%s\"\n", AQ_PROG, optarg);
                return AQ_EXIT_USAGE;
            }
            break;
        case AQ_OPT_DATA_DIR:
            q.data_dir = optarg;
            break;
        case AQ_OPT_STATS:
            stats = 1;
            break;
        case 'h':
            search_usage(stdout);
            return AQ_EXIT_OK;
        case ':':
            fprintf(stderr, "%s search: %s needs a value\n", AQ_PROG, argv[optind - 1]);
            search_usage(stderr);
            return AQ_EXIT_USAGE;
        case '?':
            fprintf(stderr, "%s search: unknown option %s\n", AQ_PROG, argv[optind - 1]);
            search_usage(stderr);
            return AQ_EXIT_USAGE;
        default:
            if (aq_filter_set(&q.f, c, optarg, err, sizeof(err)) == -1) {
                fprintf(stderr, "%s search: %s\n", AQ_PROG, err);
                return AQ_EXIT_USAGE;
            }
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s search: unexpected argument \"%s\"\n", AQ_PROG, argv[optind]);
        search_usage(stderr);
        return AQ_EXIT_USAGE;
    }
    q.time_only = q.f.has_since || q.f.has_until;
    {
        struct aq_filter rest = q.f;

        rest.has_since = rest.has_until = 0;
        /* filters the prefilter decides exactly need no parse: an exact host ("host" is only
         * ever request.host), the event kind, the phase */
        if (!rest.domain_suffix)
            rest.domain = NULL;
        rest.event = NULL;
        rest.phase = NULL;
        q.need_parse = q.format != FORMAT_JSON || aq_filter_any(&rest);
    }
    if (aq_check_data_dir(q.data_dir) == -1)
        return AQ_EXIT_USAGE;
    if (q.format == FORMAT_CSV)
        csv_header();
    so = (struct aq_scan_opts){ .data_dir = q.data_dir, .f = &q.f, .progress = 1 };
    if (aq_scan(&so, search_line, &q, &st, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s: %s\n", AQ_PROG, err);
        return AQ_EXIT_USAGE;
    }
    if (stats)
        aq_scan_stats_print(&st);
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", AQ_PROG, strerror(errno));
        return AQ_EXIT_USAGE;
    }
    return q.matched > 0 ? AQ_EXIT_OK : AQ_EXIT_NONE;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return AQ_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return AQ_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", AQ_PROG, AQ_VERSION);
        return AQ_EXIT_OK;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "%s: unknown command \"%s\"\n", AQ_PROG, argv[1]);
    usage(stderr);
    return AQ_EXIT_USAGE;
}
