/* tests/unit/sinks/test_file.c - the file sink through the registry: what it writes reads
 * back identically through the segment reader, frames and rotation follow the config, a
 * failed write loses and repeats nothing, and config errors name their JSON path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zstd.h>

#include "../testutil.h"
#include "audit/audit.h"
#include "audit/segment.h"
#include "sinks/sinks.h"

/* 2026-11-26T16:30:45Z */
#define T0 (1795710645LL * 1000000)
#define DAY (86400LL * 1000000)
#define SEC 1000000LL

struct fixture {
    char dir[64];
    struct sink_env env;
    struct sink *sink;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-file-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->env.data_dir = f->dir;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    sink_free(f->sink);
    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Opens a sink from the JSON text <conf> into f->sink. */
static void open_sink(struct fixture *f, const char *conf)
{
    json_error_t jerr;
    json_t *j = json_loads(conf, 0, &jerr);
    char err[512] = "";

    assert_non_null(j);
    f->sink = sink_open(j, "sinks[0]", &f->env, err, sizeof(err));
    json_decref(j);
    if (f->sink == NULL)
        fail_msg("sink_open: %s", err);
}

/* The error sink_open() gives for <conf>; NULL when it opened. */
static const char *open_error(struct fixture *f, const char *conf, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j = json_loads(conf, JSON_DECODE_ANY, &jerr);
    struct sink *s;

    assert_non_null(j);
    err[0] = '\0';
    s = sink_open(j, "sinks[0]", &f->env, err, errlen);
    json_decref(j);
    if (s != NULL) {
        sink_free(s);
        return NULL;
    }
    return err;
}

static size_t make_line(char *buf, size_t cap, uint64_t seq)
{
    return (size_t)snprintf(buf, cap,
                            "{\"schema\":\"vigil.event/1\",\"event\":\"flow.end\",\"seq\":%llu,\"pad\":\"%0*d\"}",
                            (unsigned long long)seq, (int)(seq % 50), 0);
}

/* Writes records <first>..<first+n-1> (time <t0> + seq) in one batch; returns the result. */
static enum sink_result write_batch(struct sink *s, uint64_t first, size_t n, int64_t t0)
{
    struct sink_record *recs = calloc(n, sizeof(*recs));
    char(*lines)[160] = calloc(n, sizeof(*lines));
    enum sink_result rc;
    size_t i;

    assert_non_null(recs);
    assert_non_null(lines);
    for (i = 0; i < n; i++) {
        recs[i].seq = first + i;
        recs[i].time_us = t0 + (int64_t)(first + i);
        recs[i].len = make_line(lines[i], sizeof(lines[i]), first + i);
        recs[i].data = lines[i];
    }
    rc = s->ops->write(s, recs, n);
    free(lines);
    free(recs);
    return rc;
}

/* Reads every segment in order, checking records <first>.. come back identical; returns
 * how many, and the number of segments in *<nseg>. Stops at the first damaged frame. */
static uint64_t read_all(const char *dir, uint64_t first, size_t *nseg)
{
    struct audit_segment_entry *list;
    char err[256], want[160];
    uint64_t n = 0;
    size_t i;

    assert_int_equal(audit_segment_list(dir, &list, nseg, err, sizeof(err)), 0);
    for (i = 0; i < *nseg; i++) {
        struct audit_segment_reader *r = audit_segment_reader_open(list[i].path, err, sizeof(err));
        const char *line;
        size_t len;
        int rc;

        assert_non_null(r);
        /* a segment is named by its first record */
        assert_int_equal(list[i].first_seq, first + n);
        while ((rc = audit_segment_reader_next(r, &line, &len, err, sizeof(err))) == 1) {
            size_t wlen = make_line(want, sizeof(want), first + n);

            assert_int_equal(len, wlen);
            assert_memory_equal(line, want, len);
            n++;
        }
        assert_int_equal(rc, 0);
        audit_segment_reader_close(r);
    }
    audit_segment_list_free(list, *nseg);
    return n;
}

/* Number of zstd frames in <path>. */
static size_t count_frames(const char *path)
{
    FILE *fp = fopen(path, "rb");
    struct stat st;
    char *buf;
    size_t off = 0, n = 0;

    assert_non_null(fp);
    assert_int_equal(fstat(fileno(fp), &st), 0);
    buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, fp), (size_t)st.st_size);
    fclose(fp);
    while (off < (size_t)st.st_size) {
        size_t fl = ZSTD_findFrameCompressedSize(buf + off, (size_t)st.st_size - off);

        assert_false(ZSTD_isError(fl));
        off += fl;
        n++;
    }
    free(buf);
    return n;
}

/* The path of the only segment under the fixture's directory. */
static void only_segment(struct fixture *f, char *path, size_t pathlen)
{
    struct audit_segment_entry *list;
    char err[256];
    size_t n;

    assert_int_equal(audit_segment_list(f->dir, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    snprintf(path, pathlen, "%s", list[0].path);
    audit_segment_list_free(list, n);
}

/* records written and flushed read back identical and in order from one segment */
static void test_file_write_flush_reads_back_identical(void **state)
{
    struct fixture *f = *state;
    size_t nseg;
    uint64_t i;

    open_sink(f, "{\"type\":\"file\"}");
    assert_string_equal(f->sink->name, "file");
    for (i = 0; i < 10; i++)
        assert_int_equal(write_batch(f->sink, 1 + i * 50, 50, T0), SINK_OK);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(read_all(f->dir, 1, &nseg), 500);
    assert_int_equal(nseg, 1);
    assert_int_equal(f->sink->dropped, 0);
}

/* frame_records ends a frame every N records: the file holds several zstd frames */
static void test_file_frame_records_writes_several_frames(void **state)
{
    struct fixture *f = *state;
    char path[256];
    size_t nseg;

    open_sink(f, "{\"type\":\"file\",\"name\":\"local\",\"frame_records\":10,\"fsync\":\"frame\"}");
    assert_string_equal(f->sink->name, "local");
    assert_int_equal(write_batch(f->sink, 1, 95, T0), SINK_OK);
    only_segment(f, path, sizeof(path));
    /* nine full frames are in the file before any flush; the tenth is open */
    assert_int_equal(count_frames(path), 9);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(count_frames(path), 10);
    assert_int_equal(read_all(f->dir, 1, &nseg), 95);
}

/* the tick ends a frame older than frame_ms, making its records readable without a flush */
static void test_file_tick_after_frame_ms_ends_frame(void **state)
{
    struct fixture *f = *state;
    char path[256];
    size_t nseg;

    open_sink(f, "{\"type\":\"file\",\"frame_ms\":500}");
    assert_int_equal(write_batch(f->sink, 1, 3, T0), SINK_OK);
    only_segment(f, path, sizeof(path));
    assert_int_equal(count_frames(path), 0);
    f->sink->ops->tick(f->sink, wall_us() - SEC);
    assert_int_equal(count_frames(path), 0);
    f->sink->ops->tick(f->sink, wall_us() + SEC);
    assert_int_equal(count_frames(path), 1);
    assert_int_equal(read_all(f->dir, 1, &nseg), 3);
}

/* rotate_bytes rotates: several files, each named by its first seq, read back in order */
static void test_file_rotate_bytes_rotates_by_first_seq(void **state)
{
    struct fixture *f = *state;
    size_t nseg;
    uint64_t i;

    open_sink(f, "{\"type\":\"file\",\"frame_records\":5,\"rotate_bytes\":300,\"fsync\":\"none\"}");
    for (i = 0; i < 20; i++)
        assert_int_equal(write_batch(f->sink, 1 + i * 7, 7, T0), SINK_OK);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(read_all(f->dir, 1, &nseg), 140);
    assert_true(nseg >= 3);
}

/* a record past the segment's UTC date opens a segment in that date's directory */
static void test_file_date_change_rotates_into_new_dir(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    char err[256];
    size_t n;

    open_sink(f, "{\"type\":\"file\"}");
    assert_int_equal(write_batch(f->sink, 1, 5, T0), SINK_OK);
    assert_int_equal(write_batch(f->sink, 6, 5, T0 + DAY), SINK_OK);
    /* a late record from before midnight stays where it is: no flapping */
    assert_int_equal(write_batch(f->sink, 11, 1, T0), SINK_OK);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(audit_segment_list(f->dir, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0].date, "2026-11-26");
    assert_int_equal(list[0].first_seq, 1);
    assert_string_equal(list[1].date, "2026-11-27");
    assert_int_equal(list[1].first_seq, 6);
    audit_segment_list_free(list, n);
    assert_int_equal(read_all(f->dir, 1, &n), 11);
}

/* a segment older than rotate_seconds is closed by the tick; the next record opens one */
static void test_file_segment_age_tick_closes_segment(void **state)
{
    struct fixture *f = *state;
    size_t nseg;

    open_sink(f, "{\"type\":\"file\",\"rotate_seconds\":60}");
    assert_int_equal(write_batch(f->sink, 1, 5, T0), SINK_OK);
    f->sink->ops->tick(f->sink, wall_us() + 61 * SEC);
    /* closed, so complete on disk */
    assert_int_equal(read_all(f->dir, 1, &nseg), 5);
    assert_int_equal(write_batch(f->sink, 6, 5, T0), SINK_OK);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(read_all(f->dir, 1, &nseg), 10);
    assert_int_equal(nseg, 2);
}

/* a segment cut short (crash mid-frame) reads back its complete frames, then -1 with a reason */
static void test_file_truncated_segment_reads_complete_frames(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_reader *r;
    struct stat st;
    char path[256], err[256];
    const char *line;
    size_t len;
    int n = 0, rc;

    open_sink(f, "{\"type\":\"file\",\"frame_records\":10}");
    assert_int_equal(write_batch(f->sink, 1, 30, T0), SINK_OK);
    sink_free(f->sink);
    f->sink = NULL;
    only_segment(f, path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(truncate(path, st.st_size - 3), 0);

    r = audit_segment_reader_open(path, err, sizeof(err));
    assert_non_null(r);
    while ((rc = audit_segment_reader_next(r, &line, &len, err, sizeof(err))) == 1)
        n++;
    assert_int_equal(n, 20);
    assert_int_equal(rc, -1);
    assert_true(strlen(err) > 0);
    assert_true(audit_segment_reader_good_bytes(r) > 0);
    assert_true(audit_segment_reader_good_bytes(r) < (uint64_t)st.st_size - 3);
    audit_segment_reader_close(r);
}

/* a failed write (EFBIG here) keeps the batch; the next write is refused until the disk takes
 * it again, and then nothing is lost or doubled */
static void test_file_write_error_retry_loses_nothing(void **state)
{
    struct fixture *f = *state;
    struct rlimit old, lim;
    char path[256];
    struct stat st;
    enum sink_result rc2, rc3;
    size_t nseg;

    open_sink(f, "{\"type\":\"file\",\"frame_records\":10,\"fsync\":\"none\"}");
    assert_int_equal(write_batch(f->sink, 1, 10, T0), SINK_OK);
    only_segment(f, path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);

    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = (rlim_t)st.st_size + 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    rc2 = write_batch(f->sink, 11, 10, T0); /* the frame fails halfway: accepted, kept */
    rc3 = write_batch(f->sink, 21, 10, T0); /* still failing: nothing accepted */
    assert_int_equal(f->sink->ops->flush(f->sink, 0), -1);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc2, SINK_OK);
    assert_int_equal(rc3, SINK_RETRY);

    assert_int_equal(write_batch(f->sink, 21, 10, T0), SINK_OK);
    assert_int_equal(f->sink->ops->flush(f->sink, 1000), 0);
    assert_int_equal(read_all(f->dir, 1, &nseg), 30);
    assert_int_equal(f->sink->dropped, 0);
}

/* every bad key or value is refused with its JSON path and what is wrong */
static void test_file_bad_config_names_json_path(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *conf;
        const char *err;
    } cases[] = {
        { "{\"type\":\"file\",\"frame_records\":0}", "sinks[0].frame_records: must be a positive integer" },
        { "{\"type\":\"file\",\"frame_records\":\"10\"}", "sinks[0].frame_records: must be a positive integer" },
        { "{\"type\":\"file\",\"frame_records\":1.5}", "sinks[0].frame_records: must be a positive integer" },
        { "{\"type\":\"file\",\"frame_ms\":-1}", "sinks[0].frame_ms: must be a positive integer" },
        { "{\"type\":\"file\",\"rotate_bytes\":true}", "sinks[0].rotate_bytes: must be a positive integer" },
        { "{\"type\":\"file\",\"rotate_seconds\":null}", "sinks[0].rotate_seconds: must be a positive integer" },
        { "{\"type\":\"file\",\"fsync\":\"always\"}",
          "sinks[0].fsync: must be one of \"none\", \"frame\", \"segment\"" },
        { "{\"type\":\"file\",\"compression_level\":99}", "sinks[0].compression_level: must be at most 22" },
        { "{\"type\":\"file\",\"frame_record\":10}", "sinks[0].frame_record: unknown key" },
        { "{\"type\":\"file\",\"format\":\"cef\"}", "sinks[0].format: must be one of \"native\", \"ocsf\"" },
        { "{\"type\":\"file\",\"on_full\":\"wait\"}",
          "sinks[0].on_full: must be one of \"block\", \"spill\", \"drop\"" },
        { "{\"type\":\"file\",\"required\":1}", "sinks[0].required: must be true or false" },
        { "{\"type\":\"file\",\"dir\":\"\"}", "sinks[0].dir: must be a non-empty path" },
        { "{\"type\":\"file\",\"dir\":5}", "sinks[0].dir: must be a non-empty path" },
        { "{\"type\":\"file\",\"retain_days\":-1}", "sinks[0].retain_days: must be an integer from 0 to 36500" },
        { "{\"type\":\"file\",\"retain_bytes\":\"1G\"}",
          "sinks[0].retain_bytes: must be an integer from 0 to 1125899906842624" },
        { "{\"type\":\"file\",\"rotate_seconds\":0}", "sinks[0].rotate_seconds: must be a positive integer" },
        { "{\"type\":\"file\",\"name\":\"\"}", "sinks[0].name: must be a non-empty string" },
        { "{\"type\":\"file\",\"name\":7}", "sinks[0].name: must be a non-empty string" },
        { "{\"type\":\"file\",\"name\":\"../x\"}", "sinks[0].name: must not contain '/' or start with '.'" },
        { "{\"name\":\"x\"}", "sinks[0].type: missing" },
        { "{\"type\":3}", "sinks[0].type: must be a string" },
        { "[]", "sinks[0]: must be an object" },
    };
    char err[512];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = open_error(f, cases[i].conf, err, sizeof(err));

        if (got == NULL)
            fail_msg("%s: opened", cases[i].conf);
        assert_string_equal(got, cases[i].err);
    }
}

/* a type no table entry has is refused, naming it */
static void test_file_unknown_type_rejected(void **state)
{
    struct fixture *f = *state;
    char err[512];

    assert_string_equal(open_error(f, "{\"type\":\"x\"}", err, sizeof(err)), "sinks[0].type: unknown sink type \"x\"");
    assert_null(sink_type_find("x"));
    assert_ptr_equal(sink_type_find("file"), &sink_file_ops);
}

/* a data directory that cannot be created fails at open, not at the first record */
static void test_file_unwritable_data_dir_fails_open(void **state)
{
    struct fixture *f = *state;
    char err[512];

    f->env.data_dir = "/proc/vigil-no-such-dir";
    assert_non_null(open_error(f, "{\"type\":\"file\"}", err, sizeof(err)));
    assert_non_null(strstr(err, "sinks[0]: cannot create /proc/vigil-no-such-dir/audit: "));
}

/* ---- integrity: chain, digests, recovery, retention ---- */

/* Records <first>.. with a chain member, chained from *<chain> (updated), time <t>. */
static enum sink_result write_chained(struct sink *s, uint64_t first, size_t n, int64_t t, uint8_t chain[32])
{
    struct sink_record *recs = calloc(n, sizeof(*recs));
    char(*lines)[300] = calloc(n, sizeof(*lines));
    enum sink_result rc;

    assert_non_null(recs);
    assert_non_null(lines);
    for (size_t i = 0; i < n; i++) {
        size_t len = make_line(lines[i], sizeof(lines[i]), first + i);
        uint8_t next[32];
        char hex[65];

        audit_chain_next(chain, lines[i], len, next);
        memcpy(chain, next, 32);
        for (size_t k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", next[k]);
        len--; /* the closing brace */
        len += (size_t)snprintf(lines[i] + len, sizeof(lines[i]) - len, ",\"chain\":\"%s\"}", hex);
        recs[i].seq = first + i;
        recs[i].time_us = t;
        recs[i].len = len;
        recs[i].data = lines[i];
    }
    rc = s->ops->write(s, recs, n);
    free(lines);
    free(recs);
    return rc;
}

/* The segment list of the fixture's default segment directory. */
static size_t list_segments(struct fixture *f, struct audit_segment_entry **list)
{
    char err[256];
    size_t n;

    assert_int_equal(audit_segment_list(f->dir, list, &n, err, sizeof(err)), 0);
    return n;
}

/* The public key the sink made. */
static void read_pub(struct fixture *f, uint8_t pk[32])
{
    char path[256], err[256];

    snprintf(path, sizeof(path), "%s/keys/audit-signing.pub", f->dir);
    if (audit_signing_pub_read(path, pk, err, sizeof(err)) == -1)
        fail_msg("%s", err);
}

/* Checks every segment's digest: it verifies with the sink's key, hashes the file, counts
 * its records, and links to the digest and chain before it. Returns the segment count;
 * *<recovered> counts digests that say recovered. Every line's chain is checked too. */
static size_t verify_all(struct fixture *f, uint64_t *records, size_t *recovered)
{
    struct audit_segment_entry *list;
    uint8_t pk[32], prev_digest[32] = {0}, chain[32] = {0};
    size_t n = list_segments(f, &list);
    uint64_t total = 0;

    read_pub(f, pk);
    *recovered = 0;
    for (size_t i = 0; i < n; i++) {
        struct audit_digest d;
        struct audit_segment_reader *r;
        char sig[512], err[512];
        uint8_t h[32], fh[32];
        uint64_t bytes, recs = 0;
        const char *line;
        size_t len;
        int rc;

        snprintf(sig, sizeof(sig), "%s.sig", list[i].path);
        if (audit_digest_read(sig, pk, &d, fh, err, sizeof(err)) == -1)
            fail_msg("%s", err);
        assert_int_equal(audit_file_hash(list[i].path, UINT64_MAX, h, &bytes, err, sizeof(err)), 0);
        assert_memory_equal(h, d.hash, 32);
        assert_int_equal(bytes, d.bytes);
        assert_memory_equal(d.prev_digest, prev_digest, 32);
        memcpy(prev_digest, fh, 32);
        if (d.has_prev_chain)
            assert_memory_equal(d.prev_chain, chain, 32);
        r = audit_segment_reader_open(list[i].path, err, sizeof(err));
        assert_non_null(r);
        while ((rc = audit_segment_reader_next(r, &line, &len, err, sizeof(err))) == 1) {
            uint8_t want[32], got[32];
            size_t body;

            assert_int_equal(audit_chain_split(line, len, &body, got), 0);
            assert_int_equal(audit_chain_expected(chain, line, len, want), 0);
            assert_memory_equal(want, got, 32);
            memcpy(chain, got, 32);
            recs++;
        }
        assert_int_equal(rc, 0);
        audit_segment_reader_close(r);
        assert_int_equal(recs, d.records);
        assert_int_equal(d.first_seq, total + 1);
        assert_int_equal(d.last_seq, total + recs);
        assert_true(d.has_last_chain);
        assert_memory_equal(d.last_chain, chain, 32);
        total += recs;
        *recovered += (size_t)d.recovered;
    }
    audit_segment_list_free(list, n);
    *records = total;
    return n;
}

/* rotation and a clean close seal each segment with a signed digest chained to the one
 * before; the record chain runs on across segments */
static void test_file_rotation_seals_chained_digests(void **state)
{
    struct fixture *f = *state;
    uint8_t chain[32] = {0};
    struct sink_stats st;
    uint64_t records;
    size_t nrec;
    struct stat kst;
    char path[256];

    open_sink(f, "{\"type\":\"file\",\"frame_records\":5,\"rotate_bytes\":300,\"fsync\":\"segment\"}");
    for (uint64_t i = 0; i < 20; i++)
        assert_int_equal(write_chained(f->sink, 1 + i * 7, 7, wall_us(), chain), SINK_OK);
    f->sink->ops->stats(f->sink, &st);
    assert_int_equal(st.delivered + st.pending, 140);
    assert_int_equal(f->sink->ops->health(f->sink), SINK_HEALTHY);
    sink_free(f->sink);
    f->sink = NULL;
    assert_true(verify_all(f, &records, &nrec) >= 3);
    assert_int_equal(records, 140);
    assert_int_equal(nrec, 0);
    /* the key was made on first use, private */
    snprintf(path, sizeof(path), "%s/keys/audit-signing.key", f->dir);
    assert_int_equal(stat(path, &kst), 0);
    assert_int_equal(kst.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/keys/audit-signing.pub", f->dir);
    assert_int_equal(stat(path, &kst), 0);
    assert_int_equal(kst.st_mode & 0777, 0644);
}

/* a key file readable by others is refused at open */
static void test_file_group_readable_key_refused(void **state)
{
    struct fixture *f = *state;
    char path[256], err[512];

    open_sink(f, "{\"type\":\"file\"}");
    sink_free(f->sink);
    f->sink = NULL;
    snprintf(path, sizeof(path), "%s/keys/audit-signing.key", f->dir);
    assert_int_equal(chmod(path, 0644), 0);
    assert_non_null(open_error(f, "{\"type\":\"file\"}", err, sizeof(err)));
    assert_non_null(strstr(err, "audit-signing.key: mode 0644"));
}

/* A segment as a crash leaves it: <frames> frames of 10 chained records (from seq 1), no
 * digest, and <garbage> bytes of a torn frame after them. Returns the last chain. */
static void crash_segment(struct fixture *f, size_t frames, size_t garbage, uint8_t chain[32], uint64_t *good)
{
    char seg[128], err[256];
    struct audit_segment_writer *w;
    FILE *fp;

    snprintf(seg, sizeof(seg), "%s/audit", f->dir);
    w = audit_segment_writer_open(seg, 1, T0, 3, err, sizeof(err));
    assert_non_null(w);
    memset(chain, 0, 32);
    for (uint64_t i = 1; i <= frames * 10; i++) {
        char line[300], hex[65];
        size_t len = make_line(line, sizeof(line), i);
        uint8_t next[32];

        audit_chain_next(chain, line, len, next);
        memcpy(chain, next, 32);
        for (size_t k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", next[k]);
        len = len - 1 + (size_t)snprintf(line + len - 1, sizeof(line) - len + 1, ",\"chain\":\"%s\"}", hex);
        assert_int_equal(audit_segment_writer_append(w, i, T0 + (int64_t)i, line, len, err, sizeof(err)), 0);
        if (i % 10 == 0)
            assert_int_equal(audit_segment_writer_end_frame(w, err, sizeof(err)), 0);
    }
    *good = audit_segment_writer_bytes(w);
    snprintf(seg, sizeof(seg), "%s", audit_segment_writer_path(w));
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
    fp = fopen(seg, "ab");
    assert_non_null(fp);
    /* the start of a zstd frame, then nothing: what a kill during write(2) leaves */
    fwrite("\x28\xb5\x2f\xfd\x64\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a", 1, garbage < 16 ? garbage : 16, fp);
    for (size_t i = 16; i < garbage; i++)
        fputc((int)(i * 7), fp);
    fclose(fp);
}

/* opening after a crash cuts the torn frame off, seals what was whole with a recovery
 * digest saying so, and the chain goes on in a new segment */
static void test_file_torn_segment_recovered_on_open(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    struct audit_digest d;
    uint8_t chain[32], pk[32], last[32];
    uint64_t good, records, seq;
    size_t n, nrec;
    struct stat st;
    char sig[512], err[512];

    crash_segment(f, 3, 100, chain, &good);
    open_sink(f, "{\"type\":\"file\"}");
    n = list_segments(f, &list);
    assert_int_equal(n, 1);
    assert_int_equal(stat(list[0].path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, good);
    snprintf(sig, sizeof(sig), "%s.sig", list[0].path);
    read_pub(f, pk);
    if (audit_digest_read(sig, pk, &d, NULL, err, sizeof(err)) == -1)
        fail_msg("%s", err);
    assert_true(d.recovered);
    assert_int_equal(d.discarded_bytes, 100);
    assert_int_equal(d.records, 30);
    assert_int_equal(d.bytes, good);
    assert_int_equal(d.first_seq, 1);
    assert_int_equal(d.last_seq, 30);
    assert_int_equal(d.frames, 3);
    assert_memory_equal(d.last_chain, chain, 32);
    assert_true(strlen(d.recovery_reason) > 0);
    audit_segment_list_free(list, n);
    /* a restart reads the last record from the recovery digest */
    snprintf(sig, sizeof(sig), "%s/audit", f->dir);
    assert_int_equal(audit_segment_last_record(sig, &seq, last, err, sizeof(err)), 0);
    assert_int_equal(seq, 30);
    assert_memory_equal(last, chain, 32);

    assert_int_equal(write_chained(f->sink, 31, 10, T0 + 100, chain), SINK_OK);
    sink_free(f->sink);
    f->sink = NULL;
    assert_int_equal(verify_all(f, &records, &nrec), 2);
    assert_int_equal(records, 40);
    assert_int_equal(nrec, 1);
}

/* a crash right after a segment was created leaves an empty file, which is removed */
static void test_file_empty_unsealed_segment_removed(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    uint8_t chain[32];
    uint64_t good;

    crash_segment(f, 0, 0, chain, &good);
    assert_int_equal(list_segments(f, &list), 1);
    audit_segment_list_free(list, 1);
    open_sink(f, "{\"type\":\"file\"}");
    assert_int_equal(list_segments(f, &list), 0);
    audit_segment_list_free(list, 0);
}

/* retain_days deletes sealed segments whose last record is older, never the open one */
static void test_file_retention_by_age_deletes_old_segments(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    uint8_t chain[32] = {0};
    int64_t now = wall_us();
    size_t n;

    open_sink(f, "{\"type\":\"file\",\"retain_days\":30}");
    assert_int_equal(write_chained(f->sink, 1, 5, now - 40 * DAY, chain), SINK_OK);
    assert_int_equal(write_chained(f->sink, 6, 5, now - 35 * DAY, chain), SINK_OK);
    assert_int_equal(write_chained(f->sink, 11, 5, now - 20 * DAY, chain), SINK_OK);
    assert_int_equal(write_chained(f->sink, 16, 5, now, chain), SINK_OK);
    sink_free(f->sink);
    f->sink = NULL;
    n = list_segments(f, &list);
    assert_int_equal(n, 2);
    assert_int_equal(list[0].first_seq, 11);
    assert_int_equal(list[1].first_seq, 16);
    for (size_t i = 0; i < n; i++) {
        char sig[512];

        snprintf(sig, sizeof(sig), "%s.sig", list[i].path);
        assert_int_equal(access(sig, F_OK), 0);
    }
    audit_segment_list_free(list, n);
}

/* retain_bytes deletes the oldest segments until the rest fits, keeping the newest */
static void test_file_retention_by_size_keeps_newest(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    uint8_t chain[32] = {0};
    uint64_t total = 0;
    size_t n;

    open_sink(f, "{\"type\":\"file\",\"frame_records\":5,\"rotate_bytes\":400,\"retain_bytes\":4000}");
    for (uint64_t i = 0; i < 60; i++)
        assert_int_equal(write_chained(f->sink, 1 + i * 5, 5, T0, chain), SINK_OK);
    sink_free(f->sink);
    f->sink = NULL;
    n = list_segments(f, &list);
    assert_true(n >= 2);
    assert_true(list[0].first_seq > 1);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        char sig[512];

        snprintf(sig, sizeof(sig), "%s.sig", list[i].path);
        assert_int_equal(stat(list[i].path, &st), 0);
        total += (uint64_t)st.st_size;
        assert_int_equal(stat(sig, &st), 0);
        total += (uint64_t)st.st_size;
    }
    assert_true(total <= 4000);
    /* the newest record is still there */
    {
        char dir[128], err[256];
        uint64_t seq;
        uint8_t last[32];

        snprintf(dir, sizeof(dir), "%s/audit", f->dir);
        assert_int_equal(audit_segment_last_record(dir, &seq, last, err, sizeof(err)), 0);
        assert_int_equal(seq, 300);
        assert_memory_equal(last, chain, 32);
    }
    audit_segment_list_free(list, n);
}

/* "dir" puts the segments elsewhere; the key stays under the data directory */
static void test_file_dir_key_writes_there(void **state)
{
    struct fixture *f = *state;
    struct audit_segment_entry *list;
    uint8_t chain[32] = {0};
    char conf[256], dir[128], err[256];
    size_t n;

    snprintf(dir, sizeof(dir), "%s/elsewhere", f->dir);
    snprintf(conf, sizeof(conf), "{\"type\":\"file\",\"dir\":\"%s\",\"on_full\":\"drop\",\"required\":false}", dir);
    open_sink(f, conf);
    assert_int_equal(f->sink->on_full, SINK_ON_FULL_DROP);
    assert_int_equal(f->sink->required, 0);
    assert_int_equal(write_chained(f->sink, 1, 3, T0, chain), SINK_OK);
    sink_free(f->sink);
    f->sink = NULL;
    assert_int_equal(audit_segment_list_dir(dir, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    audit_segment_list_free(list, n);
    assert_int_equal(list_segments(f, &list), 0);
    audit_segment_list_free(list, 0);
}

/* the common keys default per type: file is native, block, required */
static void test_file_common_key_defaults(void **state)
{
    struct fixture *f = *state;

    open_sink(f, "{\"type\":\"file\"}");
    assert_int_equal(f->sink->format, SINK_FORMAT_NATIVE);
    assert_int_equal(f->sink->on_full, SINK_ON_FULL_BLOCK);
    assert_int_equal(f->sink->required, 1);
    sink_free(f->sink);
    f->sink = NULL;
    open_sink(f, "{\"type\":\"file\",\"format\":\"ocsf\",\"on_full\":\"spill\"}");
    assert_int_equal(f->sink->format, SINK_FORMAT_OCSF);
    assert_int_equal(f->sink->on_full, SINK_ON_FULL_SPILL);
}

/* two pipelines, one after the other, on one data directory: seqs and the chain run on
 * across rotations and the restart, and every digest links to the one before */
static void test_file_pipeline_restart_continues_chain(void **state)
{
    struct fixture *f = *state;
    uint64_t records;
    size_t nrec;

    for (int run = 0; run < 2; run++) {
        struct audit_ring *r = audit_ring_new(4096, AUDIT_OVERFLOW_DROP);
        struct audit_pipeline_opts o = {0};
        struct audit_pipeline *p;
        struct sink *sinks[1];
        char dir[128], err[256];

        open_sink(f, "{\"type\":\"file\",\"frame_records\":50,\"rotate_bytes\":20000}");
        snprintf(dir, sizeof(dir), "%s/audit", f->dir);
        assert_int_equal(audit_segment_last_record(dir, &o.last_seq, o.last_chain, err, sizeof(err)), 0);
        assert_int_equal(o.last_seq, run == 0 ? 0 : 1000);
        for (int i = 0; i < 1000; i++) {
            struct audit_event ev;

            audit_event_init(&ev, AUDIT_EVENT_FLOW_END);
            audit_flow_id_new(ev.flow_id);
            ev.flags = AUDIT_F_FLOW;
            assert_int_equal(audit_emit(r, &ev), 0);
        }
        sinks[0] = f->sink;
        p = audit_pipeline_new(r, sinks, 1, &o, err, sizeof(err));
        assert_non_null(p);
        assert_int_equal(audit_pipeline_start(p, err, sizeof(err)), 0);
        audit_pipeline_free(p);
        audit_ring_free(r);
        sink_free(f->sink);
        f->sink = NULL;
    }
    assert_true(verify_all(f, &records, &nrec) >= 4);
    assert_int_equal(records, 2000);
    assert_int_equal(nrec, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_write_flush_reads_back_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_frame_records_writes_several_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_tick_after_frame_ms_ends_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_rotate_bytes_rotates_by_first_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_date_change_rotates_into_new_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_segment_age_tick_closes_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_truncated_segment_reads_complete_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_write_error_retry_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_bad_config_names_json_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_unknown_type_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_unwritable_data_dir_fails_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_rotation_seals_chained_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_group_readable_key_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_torn_segment_recovered_on_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_empty_unsealed_segment_removed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_retention_by_age_deletes_old_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_retention_by_size_keeps_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_dir_key_writes_there, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_common_key_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_pipeline_restart_continues_chain, setup, teardown),
    };
    return cmocka_run_group_tests_name("sinks/file", tests, NULL, NULL);
}
