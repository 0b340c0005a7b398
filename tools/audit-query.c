/* tools/audit-query.c - reads the record the file sink stored under DATA_DIR/audit.
 *
 *     audit-query search --data-dir DIR [--format json|table] [--flow ID] [--event KIND]
 *                        [--phase P] [--action A]
 *
 * Subcommands are a table (search now; report, verify and reveal later), each with its own
 * options and usage. search reads every segment in writing order (audit/segment.h) and
 * prints the records that match every filter given: as stored (JSON lines) or as a table.
 * A damaged segment (a frame torn by a crash, or corrupt) is reported on stderr with its
 * byte offset and the search goes on with the next segment.
 *
 * Exit status, like ausearch: 0 when something matched, 1 when nothing did, 2 on a usage
 * error or a data directory that cannot be read. Memory stays flat whatever the size of the
 * record: segments are streamed and the table's columns have fixed widths. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "audit/segment.h"

#define PROG "audit-query"
#define VERSION "0.1.0"
#define DEFAULT_DATA_DIR "./vigil-data"

enum exit_code {
    EXIT_MATCH = 0,
    EXIT_NO_MATCH = 1,
    EXIT_USAGE = 2,
};

struct command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
};

static int cmd_search(int argc, char **argv);

static const struct command commands[] = {
    { "search", "print the stored records that match filters", cmd_search },
};

static void usage(FILE *out)
{
    size_t i;

    fprintf(out, "usage: %s COMMAND [OPTIONS]\n"
                 "       %s --help | --version\n\n"
                 "Reads the audit record stored by Vigil's file sink (DATA_DIR/audit).\n\ncommands:\n",
            PROG, PROG);
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'%s COMMAND --help' describes a command's options.\n"
                 "exit status: 0 something matched, 1 nothing matched, 2 usage or data directory error\n",
            PROG);
}

/* ---- search ---- */

enum search_format {
    FORMAT_JSON = 0,
    FORMAT_TABLE,
};

struct search {
    const char *data_dir;
    enum search_format format;
    const char *flow;
    const char *event;
    const char *phase;
    const char *action;
    int need_parse;   /* a filter or the table needs the fields */
    int header_done;
    unsigned long long matched;
};

static void search_usage(FILE *out)
{
    fprintf(out, "usage: %s search [--data-dir DIR] [--format json|table] [--flow ID] [--event KIND]\n"
                 "                          [--phase PHASE] [--action ACTION]\n\n"
                 "Prints the records that match every filter given, oldest first.\n\n"
                 "  --data-dir DIR   Vigil's data directory (default " DEFAULT_DATA_DIR ")\n"
                 "  --format FORMAT  json: the JSON lines as stored (default); table: aligned columns\n"
                 "  --flow ID        flow_id (26 characters, case-insensitive)\n"
                 "  --event KIND     flow.phase, flow.end, proxy.config, audit.loss\n"
                 "  --phase PHASE    pre_dns, pre_request, post_response\n"
                 "  --action ACTION  allow, deny, alert\n",
            PROG);
}

/* The string at the dotted <path> of <obj> ("request.host"), or NULL. */
static const char *field_str(json_t *obj, const char *path)
{
    char key[64];
    const char *dot;
    json_t *v = obj;

    while ((dot = strchr(path, '.')) != NULL) {
        size_t n = (size_t)(dot - path);

        if (n >= sizeof(key))
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        v = json_object_get(v, key);
        path = dot + 1;
    }
    v = json_object_get(v, path);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int match_str(json_t *obj, const char *key, const char *want, int nocase)
{
    const char *v;

    if (want == NULL)
        return 1;
    v = field_str(obj, key);
    if (v == NULL)
        return 0;
    return nocase ? strcasecmp(v, want) == 0 : strcmp(v, want) == 0;
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
#define W_REASON 24
#define W_HOST 32

static void table_header(void)
{
    printf("%-*s %*s %-*s %-*s %-*s %-*s %-*s %-*s %s\n", W_TIME, "TIME", W_SEQ, "SEQ", W_EVENT, "EVENT", W_FLOW,
           "FLOW_ID", W_PHASE, "PHASE", W_ACTION, "ACTION", W_REASON, "REASON", W_HOST, "HOST", "STATUS");
}

static void table_row(json_t *obj)
{
    json_t *seq = json_object_get(obj, "seq");
    json_t *status = json_object_get(json_object_get(obj, "response"), "status");
    char num[32];

    put_cell(field_str(obj, "time"), W_TIME, 0);
    if (json_is_integer(seq))
        snprintf(num, sizeof(num), "%*lld", W_SEQ, (long long)json_integer_value(seq));
    else
        snprintf(num, sizeof(num), "%*s", W_SEQ, "-");
    put_cell(num, W_SEQ, 0);
    put_cell(field_str(obj, "event"), W_EVENT, 0);
    put_cell(field_str(obj, "flow_id"), W_FLOW, 0);
    put_cell(field_str(obj, "phase"), W_PHASE, 0);
    put_cell(field_str(obj, "action"), W_ACTION, 0);
    put_cell(field_str(obj, "reason"), W_REASON, 0);
    put_cell(field_str(obj, "request.host"), W_HOST, 0);
    if (json_is_integer(status))
        snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(status));
    else
        snprintf(num, sizeof(num), "-");
    put_cell(num, 0, 1);
    putchar('\n');
}

/* Handles one stored line <line> (line <lineno> of segment <path>). */
static void search_line(struct search *q, const char *path, unsigned long long lineno, const char *line, size_t len)
{
    json_error_t jerr;
    json_t *obj;

    if (!q->need_parse) {
        fwrite(line, 1, len, stdout);
        putchar('\n');
        q->matched++;
        return;
    }
    obj = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(obj)) {
        fprintf(stderr, "%s: warning: %s: line %llu is not a JSON object, skipped\n", PROG, path, lineno);
        json_decref(obj);
        return;
    }
    if (match_str(obj, "flow_id", q->flow, 1) && match_str(obj, "event", q->event, 0) &&
        match_str(obj, "phase", q->phase, 0) && match_str(obj, "action", q->action, 0)) {
        q->matched++;
        if (q->format == FORMAT_JSON) {
            fwrite(line, 1, len, stdout);
            putchar('\n');
        } else {
            if (!q->header_done)
                table_header();
            q->header_done = 1;
            table_row(obj);
        }
    }
    json_decref(obj);
}

/* Reads segment <path>. A segment that cannot be opened or is damaged is reported and
 * what could be read of it counts. */
static void search_segment(struct search *q, const char *path)
{
    struct audit_segment_reader *r;
    unsigned long long lineno = 0;
    const char *line;
    size_t len;
    char err[512];
    int rc;

    r = audit_segment_reader_open(path, err, sizeof(err));
    if (r == NULL) {
        fprintf(stderr, "%s: warning: %s\n", PROG, err);
        return;
    }
    while ((rc = audit_segment_reader_next(r, &line, &len, err, sizeof(err))) == 1)
        search_line(q, path, ++lineno, line, len);
    if (rc == -1)
        fprintf(stderr, "%s: warning: truncated at byte %llu of %s: %s\n", PROG,
                (unsigned long long)audit_segment_reader_good_bytes(r), path, err);
    audit_segment_reader_close(r);
}

static int cmd_search(int argc, char **argv)
{
    static const struct option opts[] = {
        { "data-dir", required_argument, NULL, 'd' }, { "format", required_argument, NULL, 'f' },
        { "flow", required_argument, NULL, 'F' },     { "event", required_argument, NULL, 'e' },
        { "phase", required_argument, NULL, 'p' },    { "action", required_argument, NULL, 'a' },
        { "help", no_argument, NULL, 'h' },           { NULL, 0, NULL, 0 },
    };
    struct search q = { .data_dir = DEFAULT_DATA_DIR, .format = FORMAT_JSON };
    struct audit_segment_entry *list;
    struct stat st;
    char err[512];
    size_t n, i;
    int c;

    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            q.data_dir = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") == 0) {
                q.format = FORMAT_JSON;
            } else if (strcmp(optarg, "table") == 0) {
                q.format = FORMAT_TABLE;
            } else {
                fprintf(stderr, "%s search: --format: must be json or table, not \"%s\"\n", PROG, optarg);
                return EXIT_USAGE;
            }
            break;
        case 'F':
            q.flow = optarg;
            break;
        case 'e':
            q.event = optarg;
            break;
        case 'p':
            q.phase = optarg;
            break;
        case 'a':
            q.action = optarg;
            break;
        case 'h':
            search_usage(stdout);
            return EXIT_MATCH;
        case ':':
            fprintf(stderr, "%s search: %s needs a value\n", PROG, argv[optind - 1]);
            search_usage(stderr);
            return EXIT_USAGE;
        default:
            fprintf(stderr, "%s search: unknown option %s\n", PROG, argv[optind - 1]);
            search_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s search: unexpected argument \"%s\"\n", PROG, argv[optind]);
        search_usage(stderr);
        return EXIT_USAGE;
    }
    q.need_parse = q.format == FORMAT_TABLE || q.flow != NULL || q.event != NULL || q.phase != NULL ||
                   q.action != NULL;

    if (stat(q.data_dir, &st) == -1) {
        fprintf(stderr, "%s: cannot read data directory %s: %s\n", PROG, q.data_dir, strerror(errno));
        return EXIT_USAGE;
    }
    if (!S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: cannot read data directory %s: not a directory\n", PROG, q.data_dir);
        return EXIT_USAGE;
    }
    if (audit_segment_list(q.data_dir, &list, &n, err, sizeof(err)) == -1) {
        fprintf(stderr, "%s: %s\n", PROG, err);
        return EXIT_USAGE;
    }
    for (i = 0; i < n; i++)
        search_segment(&q, list[i].path);
    audit_segment_list_free(list, n);
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "%s: writing the output: %s\n", PROG, strerror(errno));
        return EXIT_USAGE;
    }
    return q.matched > 0 ? EXIT_MATCH : EXIT_NO_MATCH;
}

int main(int argc, char **argv)
{
    size_t i;

    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_MATCH;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("%s %s\n", PROG, VERSION);
        return EXIT_MATCH;
    }
    for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    }
    fprintf(stderr, "%s: unknown command \"%s\"\n", PROG, argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
