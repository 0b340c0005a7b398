/* sinks/file.c - the file sink: the record as zstd segments under DATA_DIR/audit.
 *
 * Records go into the open frame of the current segment (audit/segment.h). A frame ends
 * after frame_records records, or in tick() once it is frame_ms old, so a reader never
 * waits long and a crash costs at most one frame. A segment rotates at the first frame
 * boundary after it reaches segment_max_bytes, when it is segment_max_age_s old, and when a
 * record's UTC date is past the segment's: each date directory holds that day's records.
 * The next segment is opened lazily, by the first record that needs it, and named by it.
 *
 *     {"type": "file", "name": "local", "frame_records": 1024, "frame_ms": 1000,
 *      "segment_max_bytes": 67108864, "segment_max_age_s": 3600,
 *      "fsync": "none" | "frame" | "segment", "compression_level": 3}
 *
 * fsync: "frame" fdatasyncs after every frame, "segment" (default) when a segment is closed
 * and on flush, "none" never (the page cache covers a crash of the process, not of the host).
 *
 * Write errors (ENOSPC, EIO, EFBIG): the failed frame stays queued in memory, compressed, and
 * the batch that hit the error is still accepted (its records are buffered, later frames
 * queue behind the failed one); the next write() first retries the queue and returns
 * SINK_RETRY, accepting nothing, until it gets through, and tick() retries it meanwhile. So
 * memory is bounded by the failed frames plus one batch, nothing is reported written that
 * is not, and nothing is written twice. A diagnostic marks when writing starts failing and
 * when it recovers, never the records' content. Only the pipeline thread calls a file sink. */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zstd.h>

#include "audit/diag.h"
#include "audit/segment.h"

#define COMPONENT "sink.file"
#define FRAME_BYTES_MAX (4 * 1024 * 1024) /* end a frame this big whatever frame_records says */
#define DAY_US (86400LL * 1000000)

enum file_fsync {
    FILE_FSYNC_NONE = 0,
    FILE_FSYNC_FRAME,
    FILE_FSYNC_SEGMENT,
};

static const char *const fsync_names[] = { "none", "frame", "segment", NULL };

struct file_conf {
    long long frame_records;
    long long frame_ms;
    long long segment_max_bytes;
    long long segment_max_age_s;
    int fsync;
    long long level;
};

struct file_sink {
    struct file_conf conf;
    char *data_dir;
    struct audit_segment_writer *w; /* NULL until a record needs a segment */
    int64_t seg_day;                /* UTC day number of the segment's first record */
    int64_t seg_opened_us;          /* wall clock when the segment was opened */
    int64_t frame_opened_us;        /* wall clock of the open frame's first record */
    int failing;                    /* a frame write failed and has not got through yet */
    int open_failing;               /* the last attempt to create a segment failed */
};

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t day_of(int64_t time_us)
{
    return time_us >= 0 ? time_us / DAY_US : -((-time_us + DAY_US - 1) / DAY_US);
}

static int parse_conf(struct file_conf *c, const json_t *conf, char *err, size_t errlen)
{
    static const char *const known[] = {
        "name", "type", "frame_records", "frame_ms", "segment_max_bytes", "segment_max_age_s", "fsync",
        "compression_level", NULL,
    };

    c->frame_records = 1024;
    c->frame_ms = 1000;
    c->segment_max_bytes = 64LL * 1024 * 1024;
    c->segment_max_age_s = 3600;
    c->fsync = FILE_FSYNC_SEGMENT;
    c->level = 3;
    if (sink_conf_check_keys(conf, known, err, errlen) == -1 ||
        sink_conf_int(conf, "frame_records", 1, 1000000, &c->frame_records, err, errlen) == -1 ||
        sink_conf_int(conf, "frame_ms", 1, 86400LL * 1000, &c->frame_ms, err, errlen) == -1 ||
        sink_conf_int(conf, "segment_max_bytes", 1, 1LL << 40, &c->segment_max_bytes, err, errlen) == -1 ||
        sink_conf_int(conf, "segment_max_age_s", 1, 366LL * 86400, &c->segment_max_age_s, err, errlen) == -1 ||
        sink_conf_enum(conf, "fsync", fsync_names, &c->fsync, err, errlen) == -1 ||
        sink_conf_int(conf, "compression_level", 1, ZSTD_maxCLevel(), &c->level, err, errlen) == -1)
        return -1;
    return 0;
}

static int file_open(struct sink *s, const json_t *conf, const struct sink_env *env, char *err, size_t errlen)
{
    struct file_sink *fs;
    struct file_conf c;

    if (parse_conf(&c, conf, err, errlen) == -1)
        return -1;
    if (env == NULL || env->data_dir == NULL || *env->data_dir == '\0') {
        snprintf(err, errlen, "no data directory");
        return -1;
    }
    /* find a data directory we cannot write now, at startup, not at the first flow */
    if (audit_segment_prepare(env->data_dir, err, errlen) == -1)
        return -1;
    fs = calloc(1, sizeof(*fs));
    if (fs == NULL || (fs->data_dir = strdup(env->data_dir)) == NULL) {
        free(fs);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    fs->conf = c;
    s->ctx = fs;
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
        return -1;
    }
    if (fs->failing)
        diag_log(DIAG_INFO, COMPONENT, "%s: writing to %s again", s->name, audit_segment_writer_path(fs->w));
    fs->failing = 0;
    sync_if(s, fs, FILE_FSYNC_FRAME);
    return 0;
}

/* Ends the last frame of the segment, syncs it per policy and closes it. 0, or -1 when the
 * last frame could not be written: the segment stays open. */
static int close_segment(struct sink *s, struct file_sink *fs)
{
    char err[512];

    if (fs->w == NULL)
        return 0;
    if (end_frame(s, fs) == -1)
        return -1;
    sync_if(s, fs, FILE_FSYNC_SEGMENT);
    diag_log(DIAG_DEBUG, COMPONENT, "%s: closing %s (%" PRIu64 " bytes)", s->name, audit_segment_writer_path(fs->w),
             audit_segment_writer_bytes(fs->w));
    if (audit_segment_writer_close(fs->w, err, sizeof(err)) == -1)
        diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
    fs->w = NULL;
    return 0;
}

/* A new segment for <rec>. NULL (logged) when it cannot be created. */
static struct audit_segment_writer *new_segment(struct sink *s, struct file_sink *fs, const struct sink_record *rec)
{
    struct audit_segment_writer *w;
    char err[512];

    w = audit_segment_writer_open(fs->data_dir, rec->seq, rec->time_us, (int)fs->conf.level, err, sizeof(err));
    if (w == NULL) {
        if (!fs->open_failing)
            diag_log(DIAG_WARN, COMPONENT, "%s: %s", s->name, err);
        fs->open_failing = 1;
        return NULL;
    }
    if (fs->open_failing)
        diag_log(DIAG_INFO, COMPONENT, "%s: creating segments again", s->name);
    fs->open_failing = 0;
    diag_log(DIAG_DEBUG, COMPONENT, "%s: opened %s", s->name, audit_segment_writer_path(w));
    return w;
}

static int segment_full(const struct file_sink *fs, const struct sink_record *rec, int64_t now)
{
    return day_of(rec->time_us) > fs->seg_day ||
           audit_segment_writer_bytes(fs->w) >= (uint64_t)fs->conf.segment_max_bytes ||
           now - fs->seg_opened_us >= fs->conf.segment_max_age_s * 1000000;
}

/* Makes fs->w the segment <rec> belongs in. 0, or -1 when there is none (no segment could
 * be opened). A segment due for rotation whose successor cannot be opened, or whose last
 * frame cannot be written, keeps taking records: rotation is retried on the next one. */
static int ensure_segment(struct sink *s, struct file_sink *fs, const struct sink_record *rec, int64_t now)
{
    struct audit_segment_writer *w;

    if (fs->w != NULL && (fs->failing || !segment_full(fs, rec, now)))
        return 0;
    if (fs->w != NULL && end_frame(s, fs) == -1)
        return 0;
    w = new_segment(s, fs, rec);
    if (w == NULL)
        return fs->w != NULL ? 0 : -1;
    close_segment(s, fs); /* its frames are written: this cannot fail */
    fs->w = w;
    fs->seg_day = day_of(rec->time_us);
    fs->seg_opened_us = now;
    return 0;
}

static enum sink_result file_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct file_sink *fs = s->ctx;
    struct audit_segment_info info;
    int64_t now;
    size_t i;

    /* a frame is waiting for a write that failed: accept nothing until it gets through */
    if (fs->failing && end_frame(s, fs) == -1)
        return SINK_RETRY;
    now = now_us();
    for (i = 0; i < n; i++) {
        char err[256];

        if (ensure_segment(s, fs, &recs[i], now) == -1) {
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
        audit_segment_writer_info(fs->w, &info);
        if (info.frame_records == 1)
            fs->frame_opened_us = now;
        /* after a failure, ending a frame only queues it (compressed) behind the failed one */
        if (info.frame_records >= (size_t)fs->conf.frame_records || info.frame_bytes >= FRAME_BYTES_MAX)
            end_frame(s, fs);
    }
    return SINK_OK;
}

static void file_tick(struct sink *s, int64_t now)
{
    struct file_sink *fs = s->ctx;
    struct audit_segment_info info;

    if (fs == NULL || fs->w == NULL)
        return;
    if (fs->failing && end_frame(s, fs) == -1)
        return;
    audit_segment_writer_info(fs->w, &info);
    if (info.frame_records > 0 && now - fs->frame_opened_us >= fs->conf.frame_ms * 1000 && end_frame(s, fs) == -1)
        return;
    /* an idle segment is closed on time too; the next record opens its successor */
    if (now - fs->seg_opened_us >= fs->conf.segment_max_age_s * 1000000)
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
    free(fs->data_dir);
    free(fs);
    s->ctx = NULL;
}

const struct sink_ops sink_file_ops = {
    .type = "file",
    .open = file_open,
    .write = file_write,
    .tick = file_tick,
    .flush = file_flush,
    .close = file_close,
};
