/* tests/unit/audit/test_segment.c - the segment format: what the writer stores, the reader
 * returns, in order, frame by frame, and how both behave on torn files and failed writes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "../testutil.h"
#include "audit/segment.h"

/* 2026-11-26T16:30:45Z */
#define T0 (1795710645LL * 1000000)
#define DAY (86400LL * 1000000)

struct fixture {
    char dir[64];  /* the data directory */
    char seg[80];  /* its segment directory, <dir>/audit */
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-segment-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->seg, sizeof(f->seg), "%s/audit", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    tu_rm_rf(f->dir);
    free(f);
    return 0;
}

/* Record <i>'s line: distinct, of varying length, and sometimes long. */
static size_t make_line(char *buf, size_t cap, unsigned i)
{
    int n = snprintf(buf, cap, "{\"seq\":%u,\"pad\":\"", i);
    size_t len = (size_t)n, pad = (i * 37) % 300;

    memset(buf + len, 'a' + (char)(i % 26), pad);
    len += pad;
    memcpy(buf + len, "\"}", 2);
    return len + 2;
}

/* Writes records <first>..<first+n-1> with a frame every <per_frame>; returns the writer open. */
static struct audit_segment_writer *write_records(const char *dir, unsigned first, unsigned n, unsigned per_frame)
{
    char err[256], line[512];
    struct audit_segment_writer *w = audit_segment_writer_open(dir, first, T0, 3, err, sizeof(err));
    unsigned i;

    assert_non_null(w);
    for (i = first; i < first + n; i++) {
        size_t len = make_line(line, sizeof(line), i);

        assert_int_equal(audit_segment_writer_append(w, i, T0 + i, line, len, err, sizeof(err)), 0);
        if ((i - first + 1) % per_frame == 0)
            assert_int_equal(audit_segment_writer_end_frame(w, err, sizeof(err)), 0);
    }
    return w;
}

/* Reads <path> expecting records <first>.. in order; returns how many, and the last
 * reader_next result in *<rc>. */
static unsigned read_records(const char *path, unsigned first, int *rc, uint64_t *good, char *err, size_t errlen)
{
    struct audit_segment_reader *r = audit_segment_reader_open(path, err, errlen);
    char want[512];
    const char *line;
    size_t len;
    unsigned n = 0;

    assert_non_null(r);
    while ((*rc = audit_segment_reader_next(r, &line, &len, err, errlen)) == 1) {
        size_t wlen = make_line(want, sizeof(want), first + n);

        assert_int_equal(len, wlen);
        assert_memory_equal(line, want, len);
        n++;
    }
    if (good != NULL)
        *good = audit_segment_reader_good_bytes(r);
    audit_segment_reader_close(r);
    return n;
}

static size_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return (size_t)st.st_size;
}

static void *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    void *buf;

    assert_non_null(fp);
    *len = file_size(path);
    buf = malloc(*len + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, *len, fp), *len);
    fclose(fp);
    return buf;
}

/* Offsets where each zstd frame of <path> ends; returns the number of frames. */
static size_t frame_ends(const char *path, size_t *ends, size_t max)
{
    size_t len, off = 0, n = 0;
    char *buf = slurp(path, &len);

    while (off < len) {
        size_t fl = ZSTD_findFrameCompressedSize(buf + off, len - off);

        assert_false(ZSTD_isError(fl));
        off += fl;
        if (n < max)
            ends[n] = off;
        n++;
    }
    free(buf);
    return n;
}

/* the file is named <date of the first record>/<first seq, 20 digits>.vseg */
static void test_segment_open_names_file_by_date_and_seq(void **state)
{
    struct fixture *f = *state;
    char err[256], want[256];
    struct audit_segment_writer *w = audit_segment_writer_open(f->seg, 42, T0, 3, err, sizeof(err));
    struct stat st;

    assert_non_null(w);
    snprintf(want, sizeof(want), "%s/audit/2026-11-26/00000000000000000042.vseg", f->dir);
    assert_string_equal(audit_segment_writer_path(w), want);
    assert_int_equal(stat(want, &st), 0);
    assert_int_equal(st.st_mode & 0077 & ~0040, 0);
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
}

/* every line appended comes back, identical and in order, across frames */
static void test_segment_roundtrip_many_frames_identical(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256];
    struct audit_segment_writer *w = write_records(f->seg, 1, 1000, 64);
    struct audit_segment_info info;
    uint64_t good;
    size_t ends[32];
    int rc;

    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    audit_segment_writer_info(w, &info);
    assert_int_equal(info.records, 1000);
    assert_int_equal(info.frame_records, 1000 % 64);
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);

    assert_int_equal(frame_ends(path, ends, 32), 1000 / 64 + 1);
    assert_int_equal(read_records(path, 1, &rc, &good, err, sizeof(err)), 1000);
    assert_int_equal(rc, 0);
    assert_int_equal(good, file_size(path));
}

/* lines longer than the decoder's output chunk are reassembled whole */
static void test_segment_long_lines_reassembled(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256];
    struct audit_segment_writer *w = audit_segment_writer_open(f->seg, 1, T0, 1, err, sizeof(err));
    struct audit_segment_reader *r;
    size_t sizes[] = { 300000, 1, 131072, 131071, AUDIT_SEGMENT_LINE_MAX - 1 };
    char *big = malloc(AUDIT_SEGMENT_LINE_MAX + 1);
    const char *line;
    size_t len, i;

    assert_non_null(w);
    assert_non_null(big);
    for (i = 0; i < AUDIT_SEGMENT_LINE_MAX + 1; i++)
        big[i] = (char)('A' + (i * 7) % 26);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        assert_int_equal(audit_segment_writer_append(w, i + 1, T0, big, sizes[i], err, sizeof(err)), 0);
    assert_int_equal(audit_segment_writer_append(w, 9, T0, big, AUDIT_SEGMENT_LINE_MAX, err, sizeof(err)), -1);
    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);

    r = audit_segment_reader_open(path, err, sizeof(err));
    assert_non_null(r);
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        assert_int_equal(audit_segment_reader_next(r, &line, &len, err, sizeof(err)), 1);
        assert_int_equal(len, sizes[i]);
        assert_memory_equal(line, big, len);
    }
    assert_int_equal(audit_segment_reader_next(r, &line, &len, err, sizeof(err)), 0);
    audit_segment_reader_close(r);
    free(big);
}

/* a line with a newline inside would split into two records: refused */
static void test_segment_append_newline_refused(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_segment_writer *w = audit_segment_writer_open(f->seg, 1, T0, 3, err, sizeof(err));
    struct audit_segment_info info;

    assert_non_null(w);
    assert_int_equal(audit_segment_writer_append(w, 1, T0, "{\"a\":\n1}", 8, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "newline"));
    audit_segment_writer_info(w, &info);
    assert_int_equal(info.records, 0);
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
}

/* a file torn inside its last frame yields every complete frame, then -1 at that frame's offset */
static void test_segment_truncated_last_frame_reports_offset(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256];
    struct audit_segment_writer *w = write_records(f->seg, 1, 30, 10);
    size_t ends[8];
    uint64_t good;
    int rc;

    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
    assert_int_equal(frame_ends(path, ends, 8), 3);
    assert_int_equal(truncate(path, (off_t)ends[2] - 7), 0);

    err[0] = '\0';
    assert_int_equal(read_records(path, 1, &rc, &good, err, sizeof(err)), 20);
    assert_int_equal(rc, -1);
    assert_int_equal(good, ends[1]);
    assert_non_null(strstr(err, "incomplete"));
}

/* a flipped byte inside a frame is detected (checksum or format): none of its lines come out */
static void test_segment_corrupt_frame_reports_error(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256];
    struct audit_segment_writer *w = write_records(f->seg, 1, 30, 10);
    size_t ends[8];
    uint64_t good;
    unsigned n;
    int rc, fd;
    unsigned char c;
    off_t at;

    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
    assert_int_equal(frame_ends(path, ends, 8), 3);
    at = (off_t)(ends[0] + ends[1]) / 2;
    fd = open(path, O_RDWR);
    assert_int_not_equal(fd, -1);
    assert_int_equal(pread(fd, &c, 1, at), 1);
    c ^= 0x55;
    assert_int_equal(pwrite(fd, &c, 1, at), 1);
    close(fd);

    n = read_records(path, 1, &rc, &good, err, sizeof(err));
    assert_int_equal(n, 10);
    assert_int_equal(rc, -1);
    assert_int_equal(good, ends[0]);
}

/* an empty segment (a crash right after it was created) is a clean, empty read */
static void test_segment_empty_file_reads_nothing(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256];
    struct audit_segment_writer *w = audit_segment_writer_open(f->seg, 5, T0, 3, err, sizeof(err));
    int rc;

    assert_non_null(w);
    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
    assert_int_equal(read_records(path, 1, &rc, NULL, err, sizeof(err)), 0);
    assert_int_equal(rc, 0);
}

/* an existing segment is never overwritten: the new one gets a -1 suffix */
static void test_segment_name_taken_gets_suffix(void **state)
{
    struct fixture *f = *state;
    char err[256], want[256];
    struct audit_segment_writer *a = write_records(f->seg, 7, 3, 100);
    struct audit_segment_writer *b = audit_segment_writer_open(f->seg, 7, T0, 3, err, sizeof(err));

    assert_non_null(b);
    snprintf(want, sizeof(want), "%s/audit/2026-11-26/00000000000000000007-1.vseg", f->dir);
    assert_string_equal(audit_segment_writer_path(b), want);
    assert_int_equal(audit_segment_writer_close(a, err, sizeof(err)), 0);
    assert_int_equal(audit_segment_writer_close(b, err, sizeof(err)), 0);
}

/* the list is in writing order, (date, first seq, suffix), and skips what is not a segment */
static void test_segment_list_sorted_by_date_then_seq(void **state)
{
    struct fixture *f = *state;
    char err[256], junk[256];
    struct audit_segment_entry *list;
    size_t n;
    struct {
        uint64_t seq;
        int64_t t;
    } segs[] = { { 900, T0 + DAY }, { 10, T0 }, { 100, T0 }, { 9, T0 - DAY }, { 10, T0 } };
    size_t i;

    for (i = 0; i < sizeof(segs) / sizeof(segs[0]); i++) {
        struct audit_segment_writer *w = audit_segment_writer_open(f->seg, segs[i].seq, segs[i].t, 3, err,
                                                                   sizeof(err));

        assert_non_null(w);
        assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);
    }
    snprintf(junk, sizeof(junk), "%s/audit/2026-11-26/notes.txt", f->dir);
    fclose(fopen(junk, "w"));
    snprintf(junk, sizeof(junk), "%s/audit/lost+found", f->dir);
    mkdir(junk, 0700);

    assert_int_equal(audit_segment_list(f->dir, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 5);
    assert_string_equal(list[0].date, "2026-11-25");
    assert_int_equal(list[0].first_seq, 9);
    assert_int_equal(list[1].first_seq, 10);
    assert_int_equal(list[1].dup, 0);
    assert_int_equal(list[2].first_seq, 10);
    assert_int_equal(list[2].dup, 1);
    assert_int_equal(list[3].first_seq, 100);
    assert_string_equal(list[4].date, "2026-11-27");
    assert_int_equal(list[4].first_seq, 900);
    assert_non_null(strstr(list[2].path, "/2026-11-26/00000000000000000010-1.vseg"));
    audit_segment_list_free(list, n);
}

/* a data directory without audit/ yet lists no segments and is not an error */
static void test_segment_list_missing_dir_empty(void **state)
{
    struct fixture *f = *state;
    char err[256];
    struct audit_segment_entry *list;
    size_t n = 99;

    assert_int_equal(audit_segment_list(f->dir, &list, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    audit_segment_list_free(list, n);
}

/* a write that fails (here EFBIG past RLIMIT_FSIZE, halfway through a frame) returns -1,
 * keeps the frame, and a retry completes it: nothing lost, nothing doubled */
static void test_segment_failed_write_kept_for_retry(void **state)
{
    struct fixture *f = *state;
    char err[256], path[256], line[512];
    struct audit_segment_writer *w = write_records(f->seg, 1, 20, 10);
    struct audit_segment_info info;
    struct rlimit old, lim;
    uint64_t good;
    unsigned i;
    int rc;

    snprintf(path, sizeof(path), "%s", audit_segment_writer_path(w));
    for (i = 21; i <= 40; i++)
        assert_int_equal(audit_segment_writer_append(w, i, T0, line, make_line(line, sizeof(line), i), err,
                                                     sizeof(err)), 0);

    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = audit_segment_writer_bytes(w) + 10;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    err[0] = '\0';
    rc = audit_segment_writer_end_frame(w, err, sizeof(err));
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(err, "write"));
    audit_segment_writer_info(w, &info);
    assert_int_equal(info.unwritten, 1);
    assert_int_equal(info.frames, 2);

    /* appended meanwhile: goes into the next frame */
    assert_int_equal(audit_segment_writer_append(w, 41, T0, line, make_line(line, sizeof(line), 41), err,
                                                 sizeof(err)), 0);
    assert_int_equal(audit_segment_writer_end_frame(w, err, sizeof(err)), 0);
    assert_int_equal(audit_segment_writer_end_frame(w, err, sizeof(err)), 0);
    audit_segment_writer_info(w, &info);
    assert_int_equal(info.unwritten, 0);
    assert_int_equal(info.frames, 4);
    assert_int_equal(audit_segment_writer_sync(w, err, sizeof(err)), 0);
    assert_int_equal(audit_segment_writer_close(w, err, sizeof(err)), 0);

    assert_int_equal(read_records(path, 1, &rc, &good, err, sizeof(err)), 41);
    assert_int_equal(rc, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segment_open_names_file_by_date_and_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_roundtrip_many_frames_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_long_lines_reassembled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_append_newline_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_truncated_last_frame_reports_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_corrupt_frame_reports_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_empty_file_reads_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_name_taken_gets_suffix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_list_sorted_by_date_then_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_list_missing_dir_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_failed_write_kept_for_retry, setup, teardown),
    };
    return cmocka_run_group_tests_name("audit/segment", tests, NULL, NULL);
}
