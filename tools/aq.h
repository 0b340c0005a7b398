/* tools/aq.h - audit-query internals shared by tools/audit-query.c and tools/aq-*.c.
 *
 * audit-query is one binary with subcommands (search, report, verify, reveal, keys); each
 * lives in its own file and shares three things declared here:
 *
 *   filters  (aq-scan.c)  the search options, parsed once, matched against a record in two
 *                         steps: a byte-level prefilter on the raw line, then the JSON object
 *   scanner  (aq-scan.c)  walks DATA_DIR/audit in writing order, skipping whole segments and
 *                         single frames that a time range excludes (the digests' first/last
 *                         time, each frame's first record), and hands over line by line
 *   frames   (aq-scan.c)  a zstd frame reader with byte offsets, used by the scanner and by
 *                         verify (which must name the exact frame and record that is damaged)
 *
 * Memory stays flat: one frame (at most AUDIT_SEGMENT_FRAME_MAX decompressed bytes) is held
 * at a time. Everything here is single-threaded. */
#ifndef VIGIL_TOOLS_AQ_H
#define VIGIL_TOOLS_AQ_H

#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#define AQ_PROG "audit-query"
#define AQ_VERSION "0.2.0"
#define AQ_DEFAULT_DATA_DIR "./vigil-data"
#define AQ_DEFAULT_ROLES "compliance/roles.json"
#define AQ_ACCESS_LOG "access.log" /* DATA_DIR/access.log */

/* Records are written in order, but their times come from worker threads and may lag the
 * order by a little (an event waits in the ring): a time bound skips a segment or a frame
 * only when it is this far outside the range. Records are always filtered exactly. */
#define AQ_TIME_SLACK_US (300LL * 1000000)

enum aq_exit {
    AQ_EXIT_OK = 0,    /* something matched; verify: intact */
    AQ_EXIT_NONE = 1,  /* nothing matched; verify: an integrity failure */
    AQ_EXIT_USAGE = 2, /* usage, I/O or data directory error */
};

/* ---- filters ---- */

struct aq_cidr {
    int family; /* 4 or 6 */
    uint8_t addr[16];
    int bits;
};

struct aq_filter {
    int has_since, has_until;
    int64_t since_us, until_us; /* inclusive */
    char flow[27];              /* upper-cased flow id; "" for none */
    const char *domain;         /* exact host, or the suffix of "*.suffix" */
    int domain_suffix;
    int has_client;
    struct aq_cidr client;
    const char *action, *phase, *event, *principal;
    const char *rule_group, *rule_id; /* --rule [group/]id */
    const char *cls;                  /* redaction class or pattern ("pii.*") */
    const char *token;
};

/* getopt_long ids of the filter options, above any single character */
enum aq_filter_opt {
    AQ_OPT_SINCE = 1000,
    AQ_OPT_UNTIL,
    AQ_OPT_FLOW,
    AQ_OPT_DOMAIN,
    AQ_OPT_CLIENT,
    AQ_OPT_ACTION,
    AQ_OPT_PHASE,
    AQ_OPT_RULE,
    AQ_OPT_CLASS,
    AQ_OPT_TOKEN,
    AQ_OPT_PRINCIPAL,
    AQ_OPT_EVENT,
    AQ_OPT_DATA_DIR,
    AQ_OPT_STATS,
};

#define AQ_FILTER_OPTIONS                                                                                       \
    { "since", required_argument, NULL, AQ_OPT_SINCE }, { "until", required_argument, NULL, AQ_OPT_UNTIL },     \
        { "flow", required_argument, NULL, AQ_OPT_FLOW }, { "domain", required_argument, NULL, AQ_OPT_DOMAIN },  \
        { "client", required_argument, NULL, AQ_OPT_CLIENT }, { "action", required_argument, NULL, AQ_OPT_ACTION }, \
        { "phase", required_argument, NULL, AQ_OPT_PHASE }, { "rule", required_argument, NULL, AQ_OPT_RULE },     \
        { "class", required_argument, NULL, AQ_OPT_CLASS }, { "token", required_argument, NULL, AQ_OPT_TOKEN },   \
        { "principal", required_argument, NULL, AQ_OPT_PRINCIPAL },                                             \
        { "event", required_argument, NULL, AQ_OPT_EVENT }, { "data-dir", required_argument, NULL, AQ_OPT_DATA_DIR }, \
        { "stats", no_argument, NULL, AQ_OPT_STATS }

/* The filter options' help text, for the usage of search, report and reveal. */
extern const char aq_filter_help[];

/* Applies one parsed filter option <opt> with argument <arg> to <f>. 0, or -1 with <err>
 * (a bad time, CIDR, flow id, ...). <arg> is borrowed: it must outlive <f> (argv does). */
int aq_filter_set(struct aq_filter *f, int opt, const char *arg, char *err, size_t errlen);

/* 1 when <f> filters on anything beyond the time range. */
int aq_filter_any(const struct aq_filter *f);

/* A cheap test on the stored bytes: 0 when <line> cannot match <f> (a literal the filter needs
 * is absent), 1 when it may. */
int aq_filter_prefilter(const struct aq_filter *f, const char *line, size_t len);

/* The full test on the parsed record <obj>. 1 when it matches every filter. */
int aq_filter_match(const struct aq_filter *f, json_t *obj);

/* The filters as a JSON object (for the access log). New reference. */
json_t *aq_filter_to_json(const struct aq_filter *f);

/* Parses an RFC 3339 time ("2026-11-26T10:00:00Z", fractions and offsets allowed, or a date
 * "2026-11-26") or a relative one ("90s", "30m", "2h", "7d": that long before <now_us>).
 * 0, or -1. */
int aq_parse_time(const char *s, int64_t now_us, int64_t *out);

/* The "time" member of a stored record, read from the bytes without parsing the object:
 * 0 with microseconds since the epoch, or -1 when absent or malformed. */
int aq_line_time(const char *line, size_t len, int64_t *out);

/* The "seq" member likewise. 0, or -1. */
int aq_line_seq(const char *line, size_t len, uint64_t *out);

/* Parses "10.0.0.0/8", "2001:db8::/32" or a bare address (a /32 or /128). 0, or -1. */
int aq_cidr_parse(const char *s, struct aq_cidr *out);
/* 1 when the textual address <ip> lies in <c>. */
int aq_cidr_contains(const struct aq_cidr *c, const char *ip);

/* The string at a dotted <path> ("request.host") of <obj>, or NULL. */
const char *aq_str(json_t *obj, const char *path);
/* The integer at <path>, or <dflt>. */
long long aq_int(json_t *obj, const char *path, long long dflt);

/* RFC 3339 UTC with microseconds of <us> (audit_format_time) into <out>. */
void aq_format_time(int64_t us, char out[32]);

int64_t aq_now_us(void);

/* How long a search or verify runs before, and between, progress lines on a terminal's
 * stderr: 500 ms, or AQ_PROGRESS_MS from the environment (the tests set 0). */
int64_t aq_progress_interval_us(void);

/* ---- frames: one segment file, frame by frame ---- */

struct aq_frames;

enum aq_frame_rc {
    AQ_FRAME_OK = 0, /* a frame is there (decode or skip it) */
    AQ_FRAME_END,    /* the file ends cleanly at a frame boundary */
    AQ_FRAME_BAD,    /* the rest cannot be read: torn, corrupt, oversized; aq_frames_error() says why */
};

/* Opens <path>. NULL with <err>. */
struct aq_frames *aq_frames_open(const char *path, char *err, size_t errlen);
void aq_frames_close(struct aq_frames *fr);

/* Finds the extent of the next data frame (skippable frames are passed over). On AQ_FRAME_OK
 * the frame starts at aq_frames_offset(). */
enum aq_frame_rc aq_frames_next(struct aq_frames *fr);
/* Decodes the frame found by aq_frames_next() whole (checksum verified), into a buffer that
 * stays valid until the next call; <*data>/<*len> are its lines, each ending in '\n'. */
enum aq_frame_rc aq_frames_decode(struct aq_frames *fr, const char **data, size_t *len);
/* Decodes only the start of the frame and returns its first record's time: 0, or -1 when it
 * cannot tell (then decode the frame). Does not consume the frame. */
int aq_frames_peek_time(struct aq_frames *fr, int64_t *time_us);
/* Moves past the frame found by aq_frames_next() without decompressing it. */
void aq_frames_skip(struct aq_frames *fr);

uint64_t aq_frames_offset(const struct aq_frames *fr); /* where the current frame starts */
uint64_t aq_frames_size(const struct aq_frames *fr);   /* of the file */
uint64_t aq_frames_index(const struct aq_frames *fr);  /* 0-based number of the current data frame */
const char *aq_frames_error(const struct aq_frames *fr);

/* ---- scanner ---- */

struct aq_scan_stats {
    uint64_t segments, segments_skipped;
    uint64_t frames_decoded, frames_skipped;
    uint64_t bytes_decompressed;
    uint64_t lines;
    uint64_t damaged; /* segments with a frame that could not be read */
};

struct aq_line {
    const char *path; /* segment */
    uint64_t lineno;  /* 1-based within the segment */
    const char *data; /* without the newline */
    size_t len;
};

/* Called per line in the time range; returns 0 to go on, 1 to stop the scan. */
typedef int (*aq_line_cb)(void *ctx, const struct aq_line *l);

struct aq_scan_opts {
    const char *data_dir;
    const struct aq_filter *f; /* its time range selects segments and frames; NULL: all */
    int quiet;                 /* no warnings about damaged segments */
    int progress;              /* progress on stderr (when it is a terminal) */
    uint64_t last_segment;     /* 0: all segments; N: only the first N (reveal's index lookup) */
};

/* Streams every line of the record in writing order. Damaged frames are reported on stderr
 * and skipped with the rest of their segment. 0, or -1 with <err> when the data directory
 * cannot be read. */
int aq_scan(const struct aq_scan_opts *o, aq_line_cb cb, void *ctx, struct aq_scan_stats *st, char *err,
            size_t errlen);

/* Prints the scan statistics line on stderr ("--stats"). */
void aq_scan_stats_print(const struct aq_scan_stats *st);

/* Checks that <dir> is a readable directory. 0, or -1 with a message printed. */
int aq_check_data_dir(const char *dir);

/* ---- a string-keyed hash map with fixed-size values (report tallies, verify's open flows) ---- */

struct aq_map;

/* A map whose values are <vsize> bytes, zeroed when created, holding at most <max> keys
 * (past that, inserts fail and aq_map_refused() counts them). NULL when out of memory. */
struct aq_map *aq_map_new(size_t vsize, size_t max);
void aq_map_free(struct aq_map *m);
/* The value of <key> (<klen> bytes); with <create>, made when absent. NULL when absent, or
 * (with <create>) when the map is full or memory ran out. Valid until the next insert. */
void *aq_map_get(struct aq_map *m, const char *key, size_t klen, int create);
/* Removes <key>; 0, or -1 when absent. */
int aq_map_del(struct aq_map *m, const char *key, size_t klen);
size_t aq_map_count(const struct aq_map *m);
uint64_t aq_map_refused(const struct aq_map *m);
/* Iterates: start with *<i> = 0; 1 with the next key (NUL-terminated) and value, 0 at the end. */
int aq_map_next(const struct aq_map *m, size_t *i, const char **key, void **val);

/* ---- output helpers ---- */

/* <s> as a CSV cell (RFC 4180 quoting; a cell that a spreadsheet would run as a formula,
 * starting with = + - @ or a control character, gets a leading '). */
void aq_csv_cell(FILE *out, const char *s);
/* <s> with HTML's special characters escaped. */
void aq_html_text(FILE *out, const char *s);
/* Writes <s> replacing control characters with '?' (terminal safety). */
void aq_safe_text(FILE *out, const char *s);

/* ---- subcommands ---- */

int aq_cmd_search(int argc, char **argv);
int aq_cmd_report(int argc, char **argv);
int aq_cmd_verify(int argc, char **argv);
int aq_cmd_reveal(int argc, char **argv);
int aq_cmd_keys(int argc, char **argv);

/* access log (aq-reveal.c): verifies DATA_DIR/access.log, printing a line per problem to <out>.
 * Returns the number of entries (>= 0) when intact or absent (*<present> says which), or -1
 * on an integrity failure with the first one in <why>. */
long aq_access_log_verify(const char *data_dir, int *present, char *why, size_t whylen);

#endif
