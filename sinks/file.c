/* sinks/file.c - the file sink: the record as signed zstd segments under DATA_DIR/audit.
 *
 * Records go into the open frame of the current segment (audit/segment.h). A frame ends
 * after frame_records records, or in tick() once it is frame_ms old, so a reader never
 * waits long and a crash costs at most one frame. A segment rotates at the first frame
 * boundary after it reaches rotate_bytes, when it is rotate_seconds old, and when a
 * record's UTC date is past the segment's: each date directory holds that day's records.
 * The next segment is opened lazily, by the first record that needs it, and named by it.
 *
 *     {"type": "file", "name": "file", "format": "native", "on_full": "block", "required": true,
 *      "dir": "DATA_DIR/audit", "rotate_bytes": 67108864, "rotate_seconds": 3600,
 *      "retain_days": 0, "retain_bytes": 0, "fsync": "none" | "frame" | "segment",
 *      "frame_records": 1024, "frame_ms": 1000, "compression_level": 3}
 *
 * fsync: "frame" fdatasyncs after every frame, "segment" (default) when a segment is closed
 * and on flush, "none" never (the page cache covers a crash of the process, not of the host).
 *
 * Sealing. A segment that is closed (rotation, flush at shutdown, close) gets its signed
 * digest, <segment>.sig (audit/segment.h): hash of the file, seq and time range, record
 * count, the chain it starts from and ends with, the hash of the previous digest. The
 * Ed25519 key is DATA_DIR/keys/audit-signing.key, made on first use.
 *
 * Recovery. Opening the sink seals what a crash left: every segment after the newest one
 * with a digest is read frame by frame, cut back to its last complete frame (a torn frame
 * is what a kill during write(2) leaves), and sealed with a digest that says it was
 * recovered, what it kept and how many bytes it discarded. Writing then continues in a new
 * segment: a recovered file is never appended to.
 *
 * Retention. retain_days and retain_bytes delete whole segments with their digests, oldest
 * first, never the open one: a segment older than retain_days (by its last record), or
 * while all segments together take more than retain_bytes. Checked at open, after each
 * rotation and once a minute; each deletion is a diagnostic.
 *
 * Write errors (ENOSPC, EIO, EFBIG): the failed frame stays queued in memory, compressed, and
 * the batch that hit the error is still accepted (its records are buffered, later frames
 * queue behind the failed one); the next write() first retries the queue and returns
 * SINK_RETRY, accepting nothing, until it gets through, and tick() retries it meanwhile. So
 * memory is bounded by the failed frames plus one batch, nothing is reported written that
 * is not, and nothing is written twice. A diagnostic marks when writing starts failing and
 * when it recovers, never the records' content.
 *
 * Threads: write, tick, flush and close run on the sink's delivery thread only; health and
 * stats read atomics from any thread. */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#include "audit/diag.h"
#include "audit/segment.h"

#define COMPONENT "sink.file"
#define FRAME_BYTES_MAX (4 * 1024 * 1024) /* end a frame this big whatever frame_records says */
#define DAY_US (86400LL * 1000000)
#define RETENTION_INTERVAL_US (60 * 1000000LL)

enum file_fsync {
    FILE_FSYNC_NONE = 0,
    FILE_FSYNC_FRAME,
    FILE_FSYNC_SEGMENT,
};

static const char *const fsync_names[] = {"none", "frame", "segment", NULL};

struct file_conf {
    char *dir;
    long long frame_records;
    long long frame_ms;
    long long rotate_bytes;
    long long rotate_seconds;
    long long retain_days;
    long long retain_bytes;
    int fsync;
    long long level;
};

struct file_sink {
    struct file_conf conf;
    char *dir; /* the segment directory */
    uint8_t pk[32];
    uint8_t sk[64];
    struct audit_segment_writer *w; /* NULL until a record needs a segment */
    int64_t seg_day;                /* UTC day number of the segment's first record */
    int64_t seg_opened_us;          /* wall clock when the segment was opened */
    int64_t frame_opened_us;        /* wall clock of the open frame's first record */
    int failing;                    /* a frame write failed and has not got through yet */
    int open_failing;               /* the last attempt to create a segment failed */
    uint8_t prev_digest[32];        /* hash of the newest digest file; zeros before the first */
    int has_last_chain;             /* chain of the last record appended */
    uint8_t last_chain[32];
    int seg_has_prev_chain;         /* the chain the open segment's first record chains from */
    uint8_t seg_prev_chain[32];
    int64_t last_retention_us;      /* monotonic */

    _Atomic uint64_t appended;  /* records accepted */
    _Atomic uint64_t delivered; /* records in frames written to the file */
    _Atomic int down;           /* writes or segment creation are failing */
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t day_of(int64_t time_us)
{
    return time_us >= 0 ? time_us / DAY_US : -((-time_us + DAY_US - 1) / DAY_US);
}

static int parse_conf(struct file_conf *c, const json_t *conf, char *err, size_t errlen)
{
    static const char *const known[] = {
        "dir",          "rotate_bytes", "rotate_seconds", "retain_days",       "retain_bytes", "fsync",
        "frame_records", "frame_ms",    "compression_level", NULL,
    };
    const json_t *dir;

    memset(c, 0, sizeof(*c));
    c->frame_records = 1024;
    c->frame_ms = 1000;
    c->rotate_bytes = 64LL * 1024 * 1024;
    c->rotate_seconds = 3600;
    c->retain_days = 0;
    c->retain_bytes = 0;
    c->fsync = FILE_FSYNC_SEGMENT;
    c->level = 3;
    if (sink_conf_check_keys(conf, known, err, errlen) == -1 ||
        sink_conf_int(conf, "frame_records", 1, 1000000, &c->frame_records, err, errlen) == -1 ||
        sink_conf_int(conf, "frame_ms", 1, 86400LL * 1000, &c->frame_ms, err, errlen) == -1 ||
        sink_conf_int(conf, "rotate_bytes", 1, 1LL << 40, &c->rotate_bytes, err, errlen) == -1 ||
        sink_conf_int(conf, "rotate_seconds", 1, 366LL * 86400, &c->rotate_seconds, err, errlen) == -1 ||
        sink_conf_int(conf, "retain_days", 0, 36500, &c->retain_days, err, errlen) == -1 ||
        sink_conf_int(conf, "retain_bytes", 0, 1LL << 50, &c->retain_bytes, err, errlen) == -1 ||
        sink_conf_enum(conf, "fsync", fsync_names, &c->fsync, err, errlen) == -1 ||
        sink_conf_int(conf, "compression_level", 1, ZSTD_maxCLevel(), &c->level, err, errlen) == -1)
        return -1;
    dir = json_object_get(conf, "dir");
    if (dir != NULL) {
        if (!json_is_string(dir) || json_string_length(dir) == 0 || json_string_length(dir) > 3800) {
            snprintf(err, errlen, ".dir: must be a non-empty path");
            return -1;
        }
        c->dir = strdup(json_string_value(dir));
        if (c->dir == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* Syncs the segment if <policy> is the configured one. 0, or -1 (logged). */
static int sync_if(struct sink *s, struct file_sink *fs, int policy)
{
    char err[512];

    if (fs->conf.fsync != policy || fs->w == NULL)
        return 0;
    if (audit_segment_writer_sync(fs->w, err, sizeof(err)) == -1) {
        diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
        return -1;
    }
    return 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');

    return slash != NULL ? slash + 1 : path;
}

/* Signs and writes the digest <d> of the segment <path>; on success it becomes the previous
 * digest of the next. 0, or -1 (logged). */
static int write_digest(struct sink *s, struct file_sink *fs, const char *path, struct audit_digest *d)
{
    char err[512];
    uint8_t h[32];

    snprintf(d->segment, sizeof(d->segment), "%s", base_name(path));
    memcpy(d->prev_digest, fs->prev_digest, 32);
    if (audit_digest_write(path, d, fs->sk, fs->conf.fsync != FILE_FSYNC_NONE, h, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: cannot seal %s: %s", s->name, path, err);
        return -1;
    }
    memcpy(fs->prev_digest, h, 32);
    return 0;
}

/* Ends the open frame (or writes the one a failed write left). 0, or -1 with the sink
 * marked failing; a diagnostic is printed when it starts failing and when it recovers. */
static int end_frame(struct sink *s, struct file_sink *fs)
{
    char err[512];

    if (fs->w == NULL)
        return 0;
    if (audit_segment_writer_end_frame(fs->w, err, sizeof(err)) == -1) {
        if (!fs->failing)
            diag_log(DIAG_WARN, COMPONENT, "%s: %s; keeping the frame to retry", s->name, err);
        fs->failing = 1;
        atomic_store(&fs->down, 1);
        return -1;
    }
    if (fs->failing)
        diag_log(DIAG_INFO, COMPONENT, "%s: writing to %s again", s->name, audit_segment_writer_path(fs->w));
    fs->failing = 0;
    atomic_store(&fs->down, fs->open_failing);
    atomic_store(&fs->delivered, atomic_load(&fs->appended));
    sync_if(s, fs, FILE_FSYNC_FRAME);
    return 0;
}

static void enforce_retention(struct sink *s, struct file_sink *fs);

/* Ends the last frame of the segment, syncs it per policy, closes and seals it. 0, or -1
 * when the last frame could not be written: the segment stays open. */
static int close_segment(struct sink *s, struct file_sink *fs)
{
    struct audit_segment_info info;
    struct audit_digest d;
    char err[512], *path;

    if (fs->w == NULL)
        return 0;
    if (end_frame(s, fs) == -1)
        return -1;
    sync_if(s, fs, FILE_FSYNC_SEGMENT);
    audit_segment_writer_info(fs->w, &info);
    memset(&d, 0, sizeof(d));
    audit_segment_writer_hash(fs->w, d.hash);
    d.bytes = info.bytes_written;
    d.frames = info.frames;
    d.records = info.records;
    d.first_seq = info.first_seq;
    d.last_seq = info.last_seq;
    d.first_time_us = info.first_time_us;
    d.last_time_us = info.last_time_us;
    d.has_prev_chain = fs->seg_has_prev_chain;
    memcpy(d.prev_chain, fs->seg_prev_chain, 32);
    d.has_last_chain = info.records > 0 ? fs->has_last_chain : fs->seg_has_prev_chain;
    memcpy(d.last_chain, info.records > 0 ? fs->last_chain : fs->seg_prev_chain, 32);
    path = strdup(audit_segment_writer_path(fs->w));
    diag_log(DIAG_DEBUG, COMPONENT, "%s: closing %s (%" PRIu64 " bytes)", s->name, audit_segment_writer_path(fs->w),
             info.bytes_written);
    if (audit_segment_writer_close(fs->w, err, sizeof(err)) == -1)
        diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
    fs->w = NULL;
    if (path == NULL) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: out of memory: a segment is left unsealed", s->name);
        return 0;
    }
    /* an unsealed segment is sealed as recovered by the next start */
    write_digest(s, fs, path, &d);
    free(path);
    enforce_retention(s, fs);
    return 0;
}

/* ---- recovery ---- */

/* Cuts <path> back to <size> bytes and syncs it. 0, or -1 with errno. */
static int cut_file(const char *path, uint64_t size)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC), rc;

    if (fd == -1)
        return -1;
    rc = ftruncate(fd, (off_t)size);
    if (rc == 0)
        rc = fdatasync(fd);
    close(fd);
    return rc;
}

/* Seals segment <e>, left without a digest by a crash. */
static void recover_segment(struct sink *s, struct file_sink *fs, const struct audit_segment_entry *e)
{
    struct audit_segment_scan sc;
    struct audit_digest d;
    char err[512];
    uint64_t hashed;

    if (audit_segment_scan(e->path, &sc, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: cannot recover %s: %s", s->name, e->path, err);
        return;
    }
    if (sc.size == 0) {
        /* created, never written: nothing to keep or to account for */
        unlink(e->path);
        diag_log(DIAG_INFO, COMPONENT, "%s: removed empty unsealed segment %s", s->name, e->path);
        return;
    }
    if (sc.good_bytes < sc.size && cut_file(e->path, sc.good_bytes) == -1) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: cannot cut %s back to %" PRIu64 " bytes: %s", s->name, e->path,
                 sc.good_bytes, strerror(errno));
        return;
    }
    memset(&d, 0, sizeof(d));
    if (audit_file_hash(e->path, sc.good_bytes, d.hash, &hashed, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, COMPONENT, "%s: cannot recover %s: %s", s->name, e->path, err);
        return;
    }
    d.bytes = hashed;
    d.frames = sc.frames;
    d.records = sc.records;
    d.first_seq = sc.records > 0 ? sc.first_seq : e->first_seq;
    d.last_seq = sc.records > 0 ? sc.last_seq : e->first_seq - 1;
    d.first_time_us = sc.first_time_us;
    d.last_time_us = sc.last_time_us;
    d.has_prev_chain = fs->has_last_chain;
    memcpy(d.prev_chain, fs->last_chain, 32);
    if (sc.records > 0) {
        d.has_last_chain = sc.has_last_chain;
        memcpy(d.last_chain, sc.last_chain, 32);
    } else {
        d.has_last_chain = fs->has_last_chain;
        memcpy(d.last_chain, fs->last_chain, 32);
    }
    d.recovered = 1;
    d.discarded_bytes = sc.size - sc.good_bytes;
    snprintf(d.recovery_reason, sizeof(d.recovery_reason), "%.150s",
             sc.damage[0] != '\0' ? sc.damage : "not sealed: the process stopped before closing it");
    if (write_digest(s, fs, e->path, &d) == -1)
        return;
    if (sc.records > 0 && sc.has_last_chain) {
        fs->has_last_chain = 1;
        memcpy(fs->last_chain, sc.last_chain, 32);
    }
    diag_log(DIAG_WARN, COMPONENT,
             "%s: recovered %s: kept %" PRIu64 " records (seq %" PRIu64 "..%" PRIu64 ", %" PRIu64
             " bytes), discarded %" PRIu64 " bytes (%s)",
             s->name, e->path, d.records, d.first_seq, d.last_seq, d.bytes, d.discarded_bytes, d.recovery_reason);
}

/* Reads the state the newest digest leaves (prev digest, last chain) and seals every
 * segment after it. */
static int recover(struct sink *s, struct file_sink *fs, char *err, size_t errlen)
{
    struct audit_segment_entry *list;
    size_t n, k;
    char sig[4200];

    if (audit_segment_list_dir(fs->dir, &list, &n, err, errlen) == -1)
        return -1;
    for (k = n; k-- > 0;) {
        snprintf(sig, sizeof(sig), "%s%s", list[k].path, AUDIT_DIGEST_SUFFIX);
        if (access(sig, F_OK) == 0)
            break;
    }
    if (k < n) {
        struct audit_digest d;
        char derr[512];

        if (audit_digest_read(sig, NULL, &d, fs->prev_digest, derr, sizeof(derr)) == -1)
            diag_log(DIAG_ERROR, COMPONENT, "%s: the newest digest does not verify: %s", s->name, derr);
        if (d.has_last_chain) {
            fs->has_last_chain = 1;
            memcpy(fs->last_chain, d.last_chain, 32);
        }
    }
    for (size_t i = k < n ? k + 1 : 0; i < n; i++)
        recover_segment(s, fs, &list[i]);
    audit_segment_list_free(list, n);
    return 0;
}

/* ---- retention ---- */

/* Bytes of <path> and its digest. */
static uint64_t file_bytes(const char *path, int64_t *mtime_us)
{
    struct stat st;
    char sig[4200];
    uint64_t n = 0;

    *mtime_us = 0;
    if (stat(path, &st) == 0) {
        n += (uint64_t)st.st_size;
        *mtime_us = (int64_t)st.st_mtim.tv_sec * 1000000 + st.st_mtim.tv_nsec / 1000;
    }
    snprintf(sig, sizeof(sig), "%s%s", path, AUDIT_DIGEST_SUFFIX);
    if (stat(sig, &st) == 0)
        n += (uint64_t)st.st_size;
    return n;
}

static void enforce_retention(struct sink *s, struct file_sink *fs)
{
    struct audit_segment_entry *list;
    const char *open_path = fs->w != NULL ? audit_segment_writer_path(fs->w) : NULL;
    uint64_t *bytes, total = 0;
    int64_t now = now_us(), *mtime;
    size_t n;
    char err[512];

    fs->last_retention_us = mono_us();
    if (fs->conf.retain_days == 0 && fs->conf.retain_bytes == 0)
        return;
    if (audit_segment_list_dir(fs->dir, &list, &n, err, sizeof(err)) == -1) {
        diag_log(DIAG_WARN, COMPONENT, "%s: retention: %s", s->name, err);
        return;
    }
    bytes = calloc(n + 1, sizeof(*bytes));
    mtime = calloc(n + 1, sizeof(*mtime));
    if (bytes == NULL || mtime == NULL)
        goto out;
    for (size_t i = 0; i < n; i++) {
        bytes[i] = file_bytes(list[i].path, &mtime[i]);
        total += bytes[i];
    }
    for (size_t i = 0; i < n; i++) {
        struct audit_digest d;
        char sig[4200], dir[4200], *slash;
        int64_t last = mtime[i];
        const char *why;

        if (open_path != NULL && strcmp(list[i].path, open_path) == 0)
            continue; /* never the open segment */
        snprintf(sig, sizeof(sig), "%s%s", list[i].path, AUDIT_DIGEST_SUFFIX);
        if (audit_digest_read(sig, NULL, &d, NULL, err, sizeof(err)) == 0 && d.records > 0)
            last = d.last_time_us;
        if (fs->conf.retain_days > 0 && last < now - fs->conf.retain_days * DAY_US)
            why = "older than retain_days";
        else if (fs->conf.retain_bytes > 0 && total > (uint64_t)fs->conf.retain_bytes)
            why = "over retain_bytes";
        else
            break; /* oldest first: the rest are younger and fit */
        if (unlink(list[i].path) == -1 && errno != ENOENT) {
            diag_log(DIAG_WARN, COMPONENT, "%s: retention: cannot delete %s: %s", s->name, list[i].path,
                     strerror(errno));
            break;
        }
        unlink(sig);
        total -= bytes[i];
        diag_log(DIAG_INFO, COMPONENT, "%s: retention: deleted %s and its digest (%" PRIu64 " bytes, %s)", s->name,
                 list[i].path, bytes[i], why);
        snprintf(dir, sizeof(dir), "%s", list[i].path);
        slash = strrchr(dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            rmdir(dir); /* only when that date is now empty */
        }
    }
out:
    free(bytes);
    free(mtime);
    audit_segment_list_free(list, n);
}

/* ---- ops ---- */

static void free_sink(struct file_sink *fs)
{
    if (fs == NULL)
        return;
    sodium_memzero(fs->sk, sizeof(fs->sk));
    free(fs->conf.dir);
    free(fs->dir);
    free(fs);
}

static int file_open(struct sink *s, const json_t *conf, const struct sink_env *env, char *err, size_t errlen)
{
    struct file_sink *fs = calloc(1, sizeof(*fs));
    char dir[4096];

    if (fs == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->ctx = fs;
    if (parse_conf(&fs->conf, conf, err, errlen) == -1)
        return -1;
    if (env == NULL || env->data_dir == NULL || *env->data_dir == '\0') {
        snprintf(err, errlen, "no data directory");
        return -1;
    }
    if (fs->conf.dir != NULL)
        snprintf(dir, sizeof(dir), "%s", fs->conf.dir);
    else if (audit_segment_default_dir(env->data_dir, dir, sizeof(dir)) == -1) {
        snprintf(err, errlen, "data directory path too long");
        return -1;
    }
    fs->dir = strdup(dir);
    if (fs->dir == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    /* find a directory we cannot write now, at startup, not at the first flow */
    if (audit_segment_prepare(fs->dir, err, errlen) == -1)
        return -1;
    if (audit_signing_key_load(env->data_dir, fs->pk, fs->sk, err, errlen) == -1)
        return -1;
    if (recover(s, fs, err, errlen) == -1)
        return -1;
    enforce_retention(s, fs);
    return 0;
}

/* A new segment for <rec>. NULL (logged) when it cannot be created. */
static struct audit_segment_writer *new_segment(struct sink *s, struct file_sink *fs, const struct sink_record *rec)
{
    struct audit_segment_writer *w;
    char err[512];

    w = audit_segment_writer_open(fs->dir, rec->seq, rec->time_us, (int)fs->conf.level, err, sizeof(err));
    if (w == NULL) {
        if (!fs->open_failing)
            diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
        fs->open_failing = 1;
        atomic_store(&fs->down, 1);
        return NULL;
    }
    if (fs->open_failing)
        diag_log(DIAG_INFO, COMPONENT, "%s: creating segments again", s->name);
    fs->open_failing = 0;
    atomic_store(&fs->down, fs->failing);
    diag_log(DIAG_DEBUG, COMPONENT, "%s: opened %s", s->name, audit_segment_writer_path(w));
    return w;
}

static int segment_full(const struct file_sink *fs, const struct sink_record *rec, int64_t now)
{
    return day_of(rec->time_us) > fs->seg_day || audit_segment_writer_bytes(fs->w) >= (uint64_t)fs->conf.rotate_bytes ||
           now - fs->seg_opened_us >= fs->conf.rotate_seconds * 1000000;
}

/* The chain of the record just appended before <recs>[<i>] becomes the sink's last chain. */
static void note_chain(struct file_sink *fs, const struct sink_record *rec)
{
    if (audit_chain_find(rec->data, rec->len, fs->last_chain) == 0)
        fs->has_last_chain = 1;
}

/* Makes fs->w the segment <recs>[<i>] belongs in. 0, or -1 when there is none (no segment
 * could be opened). A segment due for rotation whose successor cannot be opened, or whose
 * last frame cannot be written, keeps taking records: rotation is retried on the next one. */
static int ensure_segment(struct sink *s, struct file_sink *fs, const struct sink_record *recs, size_t i,
                          int64_t now)
{
    const struct sink_record *rec = &recs[i];
    struct audit_segment_writer *w;

    if (fs->w != NULL && (fs->failing || !segment_full(fs, rec, now)))
        return 0;
    if (fs->w != NULL && end_frame(s, fs) == -1)
        return 0;
    w = new_segment(s, fs, rec);
    if (w == NULL)
        return fs->w != NULL ? 0 : -1;
    if (i > 0)
        note_chain(fs, &recs[i - 1]); /* the closing segment's digest needs its last chain */
    close_segment(s, fs); /* its frames are written: this cannot fail */
    fs->w = w;
    fs->seg_day = day_of(rec->time_us);
    fs->seg_opened_us = now;
    fs->seg_has_prev_chain = fs->has_last_chain;
    memcpy(fs->seg_prev_chain, fs->last_chain, 32);
    return 0;
}

static enum sink_result file_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct file_sink *fs = s->ctx;
    struct audit_segment_info info;
    int64_t now;
    size_t i, last = n;

    /* a frame is waiting for a write that failed: accept nothing until it gets through */
    if (fs->failing && end_frame(s, fs) == -1)
        return SINK_RETRY;
    now = now_us();
    for (i = 0; i < n; i++) {
        char err[256];

        if (ensure_segment(s, fs, recs, i, now) == -1) {
            /* only the first record can find no segment: fs->w stays set once opened */
            return SINK_RETRY;
        }
        if (audit_segment_writer_append(fs->w, recs[i].seq, recs[i].time_us, recs[i].data, recs[i].len, err,
                                        sizeof(err)) == -1) {
            /* a record no segment can hold (or no memory): counted, never silent */
            s->dropped++;
            diag_log(DIAG_WARN, COMPONENT, "%s: dropping record %" PRIu64 " (%zu bytes): %s", s->name, recs[i].seq,
                     recs[i].len, err);
            continue;
        }
        last = i;
        atomic_fetch_add_explicit(&fs->appended, 1, memory_order_relaxed);
        audit_segment_writer_info(fs->w, &info);
        if (info.frame_records == 1)
            fs->frame_opened_us = now;
        /* after a failure, ending a frame only queues it (compressed) behind the failed one */
        if (info.frame_records >= (size_t)fs->conf.frame_records || info.frame_bytes >= FRAME_BYTES_MAX)
            end_frame(s, fs);
    }
    if (last < n)
        note_chain(fs, &recs[last]);
    return SINK_OK;
}

static void file_tick(struct sink *s, int64_t now)
{
    struct file_sink *fs = s->ctx;
    struct audit_segment_info info;

    if (fs == NULL)
        return;
    if (mono_us() - fs->last_retention_us >= RETENTION_INTERVAL_US)
        enforce_retention(s, fs);
    if (fs->w == NULL)
        return;
    if (fs->failing && end_frame(s, fs) == -1)
        return;
    audit_segment_writer_info(fs->w, &info);
    if (info.frame_records > 0 && now - fs->frame_opened_us >= fs->conf.frame_ms * 1000 && end_frame(s, fs) == -1)
        return;
    /* an idle segment is closed on time too; the next record opens its successor */
    if (now - fs->seg_opened_us >= fs->conf.rotate_seconds * 1000000)
        close_segment(s, fs);
}

/* One attempt, no waiting: <timeout_ms> is not needed by a local file. */
static int file_flush(struct sink *s, int timeout_ms)
{
    struct file_sink *fs = s->ctx;
    char err[512];

    if (fs == NULL || fs->w == NULL)
        return 0;
    if (end_frame(s, fs) == -1)
        return -1;
    if (fs->conf.fsync != FILE_FSYNC_NONE && audit_segment_writer_sync(fs->w, err, sizeof(err)) == -1) {
        diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
        return -1;
    }
    return 0;
}

/* A clean close seals the open segment. */
static void file_close(struct sink *s)
{
    struct file_sink *fs = s->ctx;

    if (fs == NULL)
        return;
    if (fs->w != NULL && close_segment(s, fs) == -1) {
        struct audit_segment_info info;
        char err[512];

        audit_segment_writer_info(fs->w, &info);
        if (audit_segment_writer_close(fs->w, err, sizeof(err)) == -1)
            diag_log(DIAG_ERROR, COMPONENT, "%s: records up to seq %" PRIu64 " lost: %s", s->name, info.last_seq,
                     err);
        fs->w = NULL;
    }
    free_sink(fs);
    s->ctx = NULL;
}

static enum sink_health file_health(struct sink *s)
{
    struct file_sink *fs = s->ctx;

    return fs != NULL && !atomic_load(&fs->down) ? SINK_HEALTHY : SINK_DOWN;
}

static void file_stats(struct sink *s, struct sink_stats *out)
{
    struct file_sink *fs = s->ctx;
    uint64_t appended, delivered;

    memset(out, 0, sizeof(*out));
    if (fs == NULL)
        return;
    delivered = atomic_load_explicit(&fs->delivered, memory_order_relaxed);
    appended = atomic_load_explicit(&fs->appended, memory_order_relaxed);
    out->delivered = delivered;
    out->pending = appended > delivered ? appended - delivered : 0;
}

const struct sink_ops sink_file_ops = {
    .type = "file",
    .open = file_open,
    .write = file_write,
    .tick = file_tick,
    .flush = file_flush,
    .close = file_close,
    .health = file_health,
    .stats = file_stats,
};
