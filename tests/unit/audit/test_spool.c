/* tests/unit/audit/test_spool.c - the disk spool: records come back in order, once acked they
 * stay gone across restarts, acks in any order give disk space back, the size cap holds,
 * and damage is reported without losing the records around it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../testutil.h"
#include "audit/spool.h"

struct fixture {
    char dir[64];
    char spool[96];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    strcpy(f->dir, "/tmp/vigil-spool-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->spool, sizeof(f->spool), "%s/spool/kafka", f->dir);
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

/* Record <seq>'s content: distinct and of varying length. */
static size_t make_rec(char *buf, size_t cap, uint64_t seq, size_t pad)
{
    int n = snprintf(buf, cap, "{\"seq\":%llu,\"pad\":\"", (unsigned long long)seq);
    size_t len = (size_t)n;

    pad += seq % 17;
    assert_true(len + pad + 2 < cap);
    memset(buf + len, 'a' + (char)(seq % 26), pad);
    len += pad;
    memcpy(buf + len, "\"}", 2);
    return len + 2;
}

static struct audit_spool *open_spool(const char *dir, uint64_t max)
{
    char err[256] = "";
    struct audit_spool *sp = audit_spool_open(dir, max, err, sizeof(err));

    if (sp == NULL)
        fail_msg("audit_spool_open: %s", err);
    return sp;
}

static void append(struct audit_spool *sp, uint64_t seq, size_t pad)
{
    char buf[16384], err[256] = "";
    size_t len = make_rec(buf, sizeof(buf), seq, pad);

    if (audit_spool_append(sp, seq, buf, len, err, sizeof(err)) == -1)
        fail_msg("append %llu: %s", (unsigned long long)seq, err);
}

/* Asserts the next record is <seq> with the content append() gave it. */
static void expect_next(struct audit_spool *sp, uint64_t want, size_t pad)
{
    char buf[16384], err[256] = "";
    const char *data;
    size_t len, wlen = make_rec(buf, sizeof(buf), want, pad);
    uint64_t seq;
    int r = audit_spool_next(sp, &seq, &data, &len, err, sizeof(err));

    if (r != 1)
        fail_msg("next: %d (%s), wanted seq %llu", r, err, (unsigned long long)want);
    assert_int_equal(seq, want);
    assert_int_equal(len, wlen);
    assert_memory_equal(data, buf, len);
}

static void expect_end(struct audit_spool *sp)
{
    char err[256] = "";
    const char *data;
    size_t len;
    uint64_t seq = 0;
    int r = audit_spool_next(sp, &seq, &data, &len, err, sizeof(err));

    if (r != 0)
        fail_msg("next: %d (%s, seq %llu), wanted the end", r, err, (unsigned long long)seq);
}

static size_t count_files(const char *dir, const char *ext)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);

        if (l > strlen(ext) && strcmp(de->d_name + l - strlen(ext), ext) == 0)
            n++;
    }
    closedir(d);
    return n;
}

/* The path of the <nth> (0-based, by name) segment file of <dir>. */
static void nth_segment(const char *dir, size_t nth, char *out, size_t outlen)
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    size_t k = 0;
    int found = 0;

    assert_true(n >= 0);
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name);

        if (!found && l > 4 && strcmp(list[i]->d_name + l - 4, ".spl") == 0 && k++ == nth) {
            snprintf(out, outlen, "%s/%s", dir, list[i]->d_name);
            found = 1;
        }
        free(list[i]);
    }
    free(list);
    assert_true(found);
}

/* records come back in append order, each once, and acks empty the spool */
static void test_spool_append_next_ack_in_order(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);
    struct stat st;

    assert_int_equal(stat(f->spool, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    for (uint64_t s = 1; s <= 20; s++)
        append(sp, s, 100);
    assert_int_equal(audit_spool_pending(sp), 20);
    assert_true(audit_spool_bytes(sp) > 20 * 100);
    for (uint64_t s = 1; s <= 20; s++)
        expect_next(sp, s, 100);
    expect_end(sp);
    /* records appended after the reader reached the end are handed out next */
    append(sp, 21, 100);
    expect_next(sp, 21, 100);
    expect_end(sp);
    for (uint64_t s = 1; s <= 21; s++)
        assert_int_equal(audit_spool_ack(sp, s), 0);
    assert_int_equal(audit_spool_pending(sp), 0);
    assert_int_equal(audit_spool_ack(sp, 5), -1);
    assert_int_equal(audit_spool_ack(sp, 99), -1);
    expect_end(sp);
    audit_spool_close(sp);
}

/* after a restart only the unacknowledged records are handed out, in order */
static void test_spool_restart_rereads_only_unacked(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);

    for (uint64_t s = 1; s <= 10; s++)
        append(sp, s, 50);
    for (uint64_t s = 1; s <= 6; s++)
        expect_next(sp, s, 50);
    assert_int_equal(audit_spool_ack(sp, 4), 0);
    assert_int_equal(audit_spool_ack(sp, 1), 0);
    assert_int_equal(audit_spool_ack(sp, 9), 0); /* acked before being handed out */
    audit_spool_close(sp);

    sp = open_spool(f->spool, 1 << 20);
    assert_int_equal(audit_spool_pending(sp), 7);
    expect_next(sp, 2, 50);
    expect_next(sp, 3, 50);
    expect_next(sp, 5, 50);
    expect_next(sp, 6, 50);
    expect_next(sp, 7, 50);
    expect_next(sp, 8, 50);
    expect_next(sp, 10, 50);
    expect_end(sp);
    /* new records follow the old ones */
    append(sp, 11, 50);
    expect_next(sp, 11, 50);
    for (uint64_t s = 2; s <= 11; s++) {
        if (s != 4 && s != 9)
            assert_int_equal(audit_spool_ack(sp, s), 0);
    }
    audit_spool_close(sp);

    sp = open_spool(f->spool, 1 << 20);
    assert_int_equal(audit_spool_pending(sp), 0);
    expect_end(sp);
    audit_spool_close(sp);
}

/* a process that dies without closing loses no record: unacked ones all come back */
static void test_spool_crash_keeps_every_unacked_record(void **state)
{
    struct fixture *f = *state;
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        struct audit_spool *sp = open_spool(f->spool, 1 << 20);

        for (uint64_t s = 1; s <= 50; s++)
            append(sp, s, 200);
        for (uint64_t s = 1; s <= 50; s++)
            expect_next(sp, s, 200);
        for (uint64_t s = 1; s <= 50; s += 2)
            audit_spool_ack(sp, s);
        _exit(0); /* no close: buffered acks are lost, records are not */
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    struct audit_spool *sp = open_spool(f->spool, 1 << 20);
    uint64_t seen[51] = {0}, seq;
    const char *data;
    size_t len;
    char err[256];
    int r;

    while ((r = audit_spool_next(sp, &seq, &data, &len, err, sizeof(err))) == 1) {
        assert_true(seq >= 1 && seq <= 50);
        seen[seq]++;
    }
    assert_int_equal(r, 0);
    for (uint64_t s = 2; s <= 50; s += 2)
        assert_int_equal(seen[s], 1);
    audit_spool_close(sp);
}

/* acks in any order give a segment's space back once all of its records are acked */
static void test_spool_out_of_order_acks_reclaim_segments(void **state)
{
    struct fixture *f = *state;
    /* 64 KiB segments (the minimum) of ~4 KiB records: several segments */
    struct audit_spool *sp = open_spool(f->spool, 512 * 1024);
    uint64_t full;

    for (uint64_t s = 1; s <= 60; s++)
        append(sp, s, 4000);
    assert_true(count_files(f->spool, ".spl") >= 3);
    full = audit_spool_bytes(sp);
    for (uint64_t s = 1; s <= 60; s++)
        expect_next(sp, s, 4000);
    /* acks from the back, evens first: nothing can go until a segment is complete */
    for (uint64_t s = 60; s >= 2; s -= 2)
        assert_int_equal(audit_spool_ack(sp, s), 0);
    assert_int_equal(audit_spool_bytes(sp), full);
    assert_int_equal(audit_spool_pending(sp), 30);
    for (uint64_t s = 59; s >= 21; s -= 2)
        assert_int_equal(audit_spool_ack(sp, s), 0);
    /* the later segments are complete (all but the one being appended to) and gone */
    assert_true(audit_spool_bytes(sp) < full);
    assert_int_equal(audit_spool_pending(sp), 10);
    audit_spool_close(sp);

    sp = open_spool(f->spool, 512 * 1024);
    for (uint64_t s = 1; s <= 19; s += 2)
        expect_next(sp, s, 4000);
    expect_end(sp);
    for (uint64_t s = 1; s <= 19; s += 2)
        assert_int_equal(audit_spool_ack(sp, s), 0);
    assert_int_equal(audit_spool_pending(sp), 0);
    assert_int_equal(audit_spool_bytes(sp), 0);
    assert_int_equal(count_files(f->spool, ".spl"), 0);
    assert_int_equal(count_files(f->spool, ".ack"), 0);
    audit_spool_close(sp);
}

/* rewind hands out every unacked record again from the oldest */
static void test_spool_rewind_replays_unacked(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);

    for (uint64_t s = 1; s <= 8; s++)
        append(sp, s, 10);
    for (uint64_t s = 1; s <= 5; s++)
        expect_next(sp, s, 10);
    assert_int_equal(audit_spool_ack(sp, 2), 0);
    assert_int_equal(audit_spool_ack(sp, 3), 0);
    audit_spool_rewind(sp);
    expect_next(sp, 1, 10);
    expect_next(sp, 4, 10);
    expect_next(sp, 5, 10);
    expect_next(sp, 6, 10);
    expect_next(sp, 7, 10);
    expect_next(sp, 8, 10);
    expect_end(sp);
    audit_spool_close(sp);
}

/* the size cap refuses a record whole, and acks make room again */
static void test_spool_full_refuses_until_acked(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 256 * 1024);
    char buf[16384], err[256] = "";
    uint64_t s = 0, bytes;
    size_t len;

    for (;;) {
        len = make_rec(buf, sizeof(buf), s + 1, 8000);
        if (audit_spool_append(sp, s + 1, buf, len, err, sizeof(err)) == -1)
            break;
        s++;
        assert_true(s < 100);
    }
    assert_non_null(strstr(err, "full"));
    assert_true(s >= 25);
    assert_true(audit_spool_bytes(sp) <= 256 * 1024);
    bytes = audit_spool_bytes(sp);
    assert_int_equal(audit_spool_pending(sp), s);
    /* a refused record left nothing behind */
    audit_spool_close(sp);
    sp = open_spool(f->spool, 256 * 1024);
    assert_int_equal(audit_spool_pending(sp), s);
    assert_int_equal(audit_spool_bytes(sp), bytes);
    for (uint64_t k = 1; k <= s; k++)
        expect_next(sp, k, 8000);
    expect_end(sp);
    for (uint64_t k = 1; k <= s; k++)
        assert_int_equal(audit_spool_ack(sp, k), 0);
    append(sp, s + 1, 8000);
    expect_next(sp, s + 1, 8000);
    audit_spool_close(sp);
}

/* a flipped byte costs that record only: damage is reported once, the rest comes back */
static void test_spool_damage_reported_and_skipped(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);
    char path[512], err[256] = "";
    const char *data;
    size_t len;
    uint64_t seq;
    int fd;
    unsigned char c;
    struct stat st;

    for (uint64_t s = 1; s <= 10; s++)
        append(sp, s, 100);
    audit_spool_close(sp);

    /* record 4: 8-byte file header, then frames of 32 + len bytes */
    nth_segment(f->spool, 0, path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    {
        off_t off = 8;
        char buf[16384];

        for (uint64_t s = 1; s < 4; s++)
            off += 32 + (off_t)make_rec(buf, sizeof(buf), s, 100);
        off += 40;
        assert_int_equal(pread(fd, &c, 1, off), 1);
        c ^= 0x20;
        assert_int_equal(pwrite(fd, &c, 1, off), 1);
    }
    /* and a torn last record, as a crash mid-write leaves it */
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(ftruncate(fd, st.st_size - 30), 0);
    close(fd);

    sp = open_spool(f->spool, 1 << 20);
    assert_int_equal(audit_spool_pending(sp), 8);
    assert_int_equal(audit_spool_next(sp, &seq, &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "damaged"));
    assert_int_equal(audit_spool_next(sp, &seq, &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "damaged"));
    expect_next(sp, 1, 100);
    expect_next(sp, 2, 100);
    expect_next(sp, 3, 100);
    expect_next(sp, 5, 100);
    expect_next(sp, 6, 100);
    expect_next(sp, 7, 100);
    expect_next(sp, 8, 100);
    expect_next(sp, 9, 100);
    expect_end(sp);
    /* new appends go to a new segment, never after the torn tail */
    append(sp, 11, 100);
    expect_next(sp, 11, 100);
    for (uint64_t s = 1; s <= 11; s++) {
        if (s != 4 && s != 10)
            assert_int_equal(audit_spool_ack(sp, s), 0);
    }
    assert_int_equal(audit_spool_pending(sp), 0);
    audit_spool_close(sp);
    sp = open_spool(f->spool, 1 << 20);
    expect_end(sp);
    audit_spool_close(sp);
}

/* a record damaged after open is reported when read and does not block reclaiming */
static void test_spool_damage_after_open_is_reported(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);
    char path[512], err[256] = "";
    const char *data;
    size_t len;
    uint64_t seq;
    int fd;
    unsigned char c;

    for (uint64_t s = 1; s <= 3; s++)
        append(sp, s, 100);
    nth_segment(f->spool, 0, path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, 8 + 40), 1);
    c ^= 1;
    assert_int_equal(pwrite(fd, &c, 1, 8 + 40), 1);
    close(fd);
    assert_int_equal(audit_spool_next(sp, &seq, &data, &len, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "damaged"));
    expect_next(sp, 2, 100);
    expect_next(sp, 3, 100);
    expect_end(sp);
    assert_int_equal(audit_spool_pending(sp), 2);
    audit_spool_close(sp);
}

/* one seq twice: each ack takes one of them */
static void test_spool_duplicate_seq_acked_one_by_one(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20);

    append(sp, 7, 10);
    append(sp, 8, 10);
    append(sp, 7, 10);
    assert_int_equal(audit_spool_ack(sp, 7), 0);
    assert_int_equal(audit_spool_pending(sp), 2);
    expect_next(sp, 8, 10);
    expect_next(sp, 7, 10);
    expect_end(sp);
    assert_int_equal(audit_spool_ack(sp, 7), 0);
    assert_int_equal(audit_spool_ack(sp, 7), -1);
    assert_int_equal(audit_spool_ack(sp, 8), 0);
    assert_int_equal(audit_spool_pending(sp), 0);
    audit_spool_close(sp);
}

/* two users of one spool directory would corrupt it: the second open is refused */
static void test_spool_second_open_refused(void **state)
{
    struct fixture *f = *state;
    struct audit_spool *sp = open_spool(f->spool, 1 << 20), *sp2;
    char err[256] = "";

    sp2 = audit_spool_open(f->spool, 1 << 20, err, sizeof(err));
    assert_null(sp2);
    assert_non_null(strstr(err, "in use"));
    audit_spool_close(sp);
    audit_spool_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_append_next_ack_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_restart_rereads_only_unacked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_crash_keeps_every_unacked_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_out_of_order_acks_reclaim_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_rewind_replays_unacked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_full_refuses_until_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_damage_reported_and_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_damage_after_open_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_duplicate_seq_acked_one_by_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_second_open_refused, setup, teardown),
    };
    return cmocka_run_group_tests_name("audit/spool", tests, NULL, NULL);
}
