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

static void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;

    if (d == NULL) {
        unlink(path);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        char sub[1024];

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        rm_rf(sub);
    }
    closedir(d);
    rmdir(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    sink_free(f->sink);
    rm_rf(f->dir);
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

/* segment_max_bytes rotates: several files, each named by its first seq, read back in order */
static void test_file_segment_max_bytes_rotates_by_first_seq(void **state)
{
    struct fixture *f = *state;
    size_t nseg;
    uint64_t i;

    open_sink(f, "{\"type\":\"file\",\"frame_records\":5,\"segment_max_bytes\":300,\"fsync\":\"none\"}");
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

/* a segment older than segment_max_age_s is closed by the tick; the next record opens one */
static void test_file_segment_age_tick_closes_segment(void **state)
{
    struct fixture *f = *state;
    size_t nseg;

    open_sink(f, "{\"type\":\"file\",\"segment_max_age_s\":60}");
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
        { "{\"type\":\"file\",\"segment_max_bytes\":true}", "sinks[0].segment_max_bytes: must be a positive integer" },
        { "{\"type\":\"file\",\"segment_max_age_s\":null}", "sinks[0].segment_max_age_s: must be a positive integer" },
        { "{\"type\":\"file\",\"fsync\":\"always\"}",
          "sinks[0].fsync: must be one of \"none\", \"frame\", \"segment\"" },
        { "{\"type\":\"file\",\"compression_level\":99}", "sinks[0].compression_level: must be at most 22" },
        { "{\"type\":\"file\",\"frame_record\":10}", "sinks[0].frame_record: unknown key" },
        { "{\"type\":\"file\",\"name\":\"\"}", "sinks[0].name: must be a non-empty string" },
        { "{\"type\":\"file\",\"name\":7}", "sinks[0].name: must be a non-empty string" },
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_file_write_flush_reads_back_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_frame_records_writes_several_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_tick_after_frame_ms_ends_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_segment_max_bytes_rotates_by_first_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_date_change_rotates_into_new_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_segment_age_tick_closes_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_truncated_segment_reads_complete_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_write_error_retry_loses_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_bad_config_names_json_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_unknown_type_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_unwritable_data_dir_fails_open, setup, teardown),
    };
    return cmocka_run_group_tests_name("sinks/file", tests, NULL, NULL);
}
