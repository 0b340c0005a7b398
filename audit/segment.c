/* audit/segment.c - the segment format writer and reader (see audit/segment.h).
 *
 * The writer buffers the open frame uncompressed and compresses it in one
 * ZSTD_compressStream2(ZSTD_e_end) call with one reused context, so a frame reaches the
 * file whole or, when write(2) fails, stays in memory (compressed) until a retry writes the
 * rest. The reader streams the file through ZSTD_decompressStream with fixed buffers and
 * cuts lines out of the decoded bytes; ZSTD_decompressStream returns 0 exactly at a frame's
 * end, which is how the reader knows the offset of the last complete frame. */
#include "audit/segment.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <zstd.h>

#define DUP_MAX 1000 /* "-<n>" suffixes tried before giving up */
#define QUEUE_MAX (4 * AUDIT_SEGMENT_FRAME_MAX) /* compressed bytes kept while writes fail */

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* "YYYY-MM-DD" of <time_us> in UTC. */
static void format_date(int64_t time_us, char out[11])
{
    int64_t sec = time_us / 1000000;
    struct tm tm;
    time_t t;

    if (time_us % 1000000 < 0)
        sec--;
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
        memcpy(out, "0000-00-00", 11);
        return;
    }
    snprintf(out, 11, "%04u-%02u-%02u", (unsigned)(tm.tm_year + 1900) % 10000, (unsigned)(tm.tm_mon + 1) % 100,
             (unsigned)tm.tm_mday % 100);
}

/* mkdir -p <path> with <mode>. Sets *<created> when the last component was made. 0, or -1
 * with errno set. */
static int make_dirs(char *path, mode_t mode, int *created)
{
    char *p;

    *created = 0;
    for (p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, mode) == -1 && errno != EEXIST) {
            *p = '/';
            return -1;
        }
        *p = '/';
    }
    if (mkdir(path, mode) == 0) {
        *created = 1;
        return 0;
    }
    return errno == EEXIST ? 0 : -1;
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;

    if (fd == -1)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- writer ---- */

int audit_segment_default_dir(const char *data_dir, char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/%s", data_dir, AUDIT_SEGMENT_SUBDIR);

    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int audit_segment_prepare(const char *dir, char *err, size_t errlen)
{
    char *path;
    int created;

    if (dir == NULL || *dir == '\0') {
        set_err(err, errlen, "no segment directory");
        return -1;
    }
    path = strdup(dir);
    if (path == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    if (make_dirs(path, AUDIT_SEGMENT_DIR_MODE, &created) == -1) {
        set_err(err, errlen, "cannot create %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    if (access(path, W_OK | X_OK) == -1) {
        set_err(err, errlen, "cannot write to %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    free(path);
    return 0;
}

struct audit_segment_writer {
    int fd;
    char *path;
    char *dir;          /* DATA_DIR/audit/<date>: fsync'ed once so the new entry is durable */
    int dir_created;    /* the date directory is new: DATA_DIR/audit needs an fsync too */
    int dir_synced;
    ZSTD_CCtx *cctx;
    char *frame;        /* the open frame, uncompressed */
    size_t frame_len;
    size_t frame_cap;
    char *out;          /* compressed frames being written, back to back */
    size_t out_len;
    size_t out_cap;
    size_t out_done;    /* bytes of <out> already in the file */
    uint64_t out_frames; /* frames in <out> */
    crypto_generichash_state hash; /* over every byte written to the file */
    struct audit_segment_info info;
};

struct audit_segment_writer *audit_segment_writer_open(const char *dir, uint64_t first_seq, int64_t time_us,
                                                       int level, char *err, size_t errlen)
{
    struct audit_segment_writer *w;
    char date[11];
    size_t dirlen, pathlen;
    size_t r;
    unsigned dup;

    if (dir == NULL || *dir == '\0') {
        set_err(err, errlen, "no segment directory");
        return NULL;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        goto oom;
    w->fd = -1;
    crypto_generichash_init(&w->hash, NULL, 0, 32);
    format_date(time_us, date);
    dirlen = strlen(dir) + 1 + sizeof(date);
    w->dir = malloc(dirlen);
    if (w->dir == NULL)
        goto oom;
    snprintf(w->dir, dirlen, "%s/%s", dir, date);
    if (make_dirs(w->dir, AUDIT_SEGMENT_DIR_MODE, &w->dir_created) == -1) {
        set_err(err, errlen, "cannot create %s: %s", w->dir, strerror(errno));
        goto fail;
    }
    pathlen = dirlen + AUDIT_SEGMENT_SEQ_DIGITS + 16 + sizeof(AUDIT_SEGMENT_SUFFIX);
    w->path = malloc(pathlen);
    if (w->path == NULL)
        goto oom;
    for (dup = 0; dup < DUP_MAX; dup++) {
        if (dup == 0)
            snprintf(w->path, pathlen, "%s/%020" PRIu64 "%s", w->dir, first_seq, AUDIT_SEGMENT_SUFFIX);
        else
            snprintf(w->path, pathlen, "%s/%020" PRIu64 "-%u%s", w->dir, first_seq, dup, AUDIT_SEGMENT_SUFFIX);
        w->fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, AUDIT_SEGMENT_FILE_MODE);
        if (w->fd != -1 || errno != EEXIST)
            break;
    }
    if (w->fd == -1) {
        set_err(err, errlen, "cannot create %s: %s", w->path, strerror(dup == DUP_MAX ? EEXIST : errno));
        goto fail;
    }
    w->cctx = ZSTD_createCCtx();
    if (w->cctx == NULL)
        goto oom;
    r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
    if (ZSTD_isError(r)) {
        set_err(err, errlen, "zstd level %d: %s", level, ZSTD_getErrorName(r));
        goto fail;
    }
    w->info.first_seq = first_seq;
    w->info.last_seq = first_seq - 1;
    w->info.first_time_us = time_us;
    w->info.last_time_us = time_us;
    return w;

oom:
    set_err(err, errlen, "out of memory");
fail:
    if (w != NULL && w->fd != -1) {
        /* nothing was written: do not leave an empty segment behind */
        unlink(w->path);
        close(w->fd);
        w->fd = -1;
    }
    if (w != NULL) {
        ZSTD_freeCCtx(w->cctx);
        free(w->path);
        free(w->dir);
        free(w);
    }
    return NULL;
}

int audit_segment_writer_append(struct audit_segment_writer *w, uint64_t seq, int64_t time_us, const char *line,
                                size_t len, char *err, size_t errlen)
{
    if (len >= AUDIT_SEGMENT_LINE_MAX) {
        set_err(err, errlen, "record of %zu bytes is longer than %d", len, AUDIT_SEGMENT_LINE_MAX - 1);
        return -1;
    }
    if (memchr(line, '\n', len) != NULL) {
        set_err(err, errlen, "record contains a newline");
        return -1;
    }
    if (w->frame_len + len + 1 > AUDIT_SEGMENT_FRAME_MAX) {
        set_err(err, errlen, "the open frame is full (%zu bytes): end it first", w->frame_len);
        return -1;
    }
    if (w->frame_cap - w->frame_len < len + 1) {
        size_t cap = w->frame_cap != 0 ? w->frame_cap : 64 * 1024;
        char *p;

        while (cap - w->frame_len < len + 1)
            cap *= 2;
        p = realloc(w->frame, cap);
        if (p == NULL) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        w->frame = p;
        w->frame_cap = cap;
    }
    memcpy(w->frame + w->frame_len, line, len);
    w->frame[w->frame_len + len] = '\n';
    w->frame_len += len + 1;
    w->info.last_seq = seq;
    w->info.last_time_us = time_us;
    w->info.records++;
    w->info.frame_records++;
    w->info.frame_bytes = w->frame_len;
    return 0;
}

/* Writes what is left of <out>. 0 once it is all in the file, or -1 with <err>: what was
 * written stays written and a later call continues from there. */
static int write_out(struct audit_segment_writer *w, char *err, size_t errlen)
{
    while (w->out_done < w->out_len) {
        ssize_t n = write(w->fd, w->out + w->out_done, w->out_len - w->out_done);

        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1) {
            set_err(err, errlen, "write %s: %s", w->path, strerror(errno));
            return -1;
        }
        if (n == 0) {
            set_err(err, errlen, "write %s: wrote nothing", w->path);
            return -1;
        }
        crypto_generichash_update(&w->hash, (const unsigned char *)w->out + w->out_done, (size_t)n);
        w->out_done += (size_t)n;
        w->info.bytes_written += (uint64_t)n;
    }
    w->out_len = 0;
    w->out_done = 0;
    w->info.frames += w->out_frames;
    w->out_frames = 0;
    w->info.unwritten = 0;
    return 0;
}

/* Compresses the open frame onto the end of the queue <out>. 0, or -1 with <err> (the
 * open frame is kept). */
static int compress_frame(struct audit_segment_writer *w, char *err, size_t errlen)
{
    ZSTD_inBuffer in;
    ZSTD_outBuffer out;
    size_t bound = ZSTD_compressBound(w->frame_len), r;

    if (w->out_done != 0) {
        memmove(w->out, w->out + w->out_done, w->out_len - w->out_done);
        w->out_len -= w->out_done;
        w->out_done = 0;
    }
    if (w->out_len + bound > QUEUE_MAX) {
        set_err(err, errlen, "%zu bytes of frames are waiting to be written to %s", w->out_len, w->path);
        return -1;
    }
    if (w->out_cap - w->out_len < bound) {
        char *p = realloc(w->out, w->out_len + bound);

        if (p == NULL) {
            set_err(err, errlen, "out of memory");
            return -1;
        }
        w->out = p;
        w->out_cap = w->out_len + bound;
    }
    ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
    ZSTD_CCtx_setPledgedSrcSize(w->cctx, w->frame_len);
    in = (ZSTD_inBuffer){ w->frame, w->frame_len, 0 };
    out = (ZSTD_outBuffer){ w->out, w->out_cap, w->out_len };
    /* with ZSTD_compressBound() bytes of room, one call ends the frame */
    r = ZSTD_compressStream2(w->cctx, &out, &in, ZSTD_e_end);
    if (ZSTD_isError(r) || r != 0) {
        ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
        set_err(err, errlen, "zstd compression: %s", ZSTD_isError(r) ? ZSTD_getErrorName(r) : "frame not ended");
        return -1;
    }
    w->out_len = out.pos;
    w->out_frames++;
    w->frame_len = 0;
    w->info.frame_records = 0;
    w->info.frame_bytes = 0;
    w->info.unwritten = 1;
    return 0;
}

int audit_segment_writer_end_frame(struct audit_segment_writer *w, char *err, size_t errlen)
{
    /* frames whose write failed go first, and stay queued (in order) while it fails */
    if (w->frame_len != 0 && compress_frame(w, err, errlen) == -1)
        return -1;
    if (w->out_len == 0)
        return 0;
    return write_out(w, err, errlen);
}

int audit_segment_writer_sync(struct audit_segment_writer *w, char *err, size_t errlen)
{
    if (fdatasync(w->fd) == -1) {
        set_err(err, errlen, "fdatasync %s: %s", w->path, strerror(errno));
        return -1;
    }
    if (!w->dir_synced) {
        /* the file's directory entry (and a new date directory's) must be durable too */
        if (fsync_dir(w->dir) == -1) {
            set_err(err, errlen, "fsync %s: %s", w->dir, strerror(errno));
            return -1;
        }
        if (w->dir_created) {
            char *slash = strrchr(w->dir, '/');
            int rc;

            *slash = '\0';
            rc = fsync_dir(w->dir);
            *slash = '/';
            if (rc == -1) {
                set_err(err, errlen, "fsync %.*s: %s", (int)(slash - w->dir), w->dir, strerror(errno));
                return -1;
            }
        }
        w->dir_synced = 1;
    }
    return 0;
}

uint64_t audit_segment_writer_bytes(const struct audit_segment_writer *w)
{
    return w->info.bytes_written;
}

void audit_segment_writer_info(const struct audit_segment_writer *w, struct audit_segment_info *out)
{
    *out = w->info;
}

const char *audit_segment_writer_path(const struct audit_segment_writer *w)
{
    return w->path;
}

void audit_segment_writer_hash(const struct audit_segment_writer *w, uint8_t out[32])
{
    crypto_generichash_state st = w->hash; /* finishing consumes the state: use a copy */

    crypto_generichash_final(&st, out, 32);
}

int audit_segment_writer_close(struct audit_segment_writer *w, char *err, size_t errlen)
{
    int rc = 0;

    if (w == NULL)
        return 0;
    if (audit_segment_writer_end_frame(w, err, errlen) == -1)
        rc = -1;
    if (close(w->fd) == -1 && rc == 0) {
        set_err(err, errlen, "close %s: %s", w->path, strerror(errno));
        rc = -1;
    }
    w->fd = -1;
    ZSTD_freeCCtx(w->cctx);
    free(w->frame);
    free(w->out);
    free(w->path);
    free(w->dir);
    free(w);
    return rc;
}

/* ---- listing ---- */

static int is_date_name(const char *s)
{
    static const char pattern[] = "dddd-dd-dd";
    size_t i;

    for (i = 0; pattern[i] != '\0'; i++) {
        if (pattern[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pattern[i])
            return 0;
    }
    return s[i] == '\0';
}

/* "<20 digits>[-<n>].vseg" -> seq and dup. 0, or -1 when <s> is not a segment name. */
static int parse_segment_name(const char *s, uint64_t *seq, unsigned *dup)
{
    uint64_t v = 0;
    size_t i;

    for (i = 0; i < AUDIT_SEGMENT_SEQ_DIGITS; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *seq = v;
    *dup = 0;
    s += i;
    if (*s == '-') {
        unsigned d = 0;
        int digits = 0;

        for (s++; *s >= '0' && *s <= '9' && digits < 9; s++, digits++)
            d = d * 10 + (unsigned)(*s - '0');
        if (digits == 0 || d == 0)
            return -1;
        *dup = d;
    }
    return strcmp(s, AUDIT_SEGMENT_SUFFIX) == 0 ? 0 : -1;
}

static int entry_cmp(const void *a, const void *b)
{
    const struct audit_segment_entry *x = a, *y = b;
    int c = strcmp(x->date, y->date);

    if (c != 0)
        return c;
    if (x->first_seq != y->first_seq)
        return x->first_seq < y->first_seq ? -1 : 1;
    return x->dup < y->dup ? -1 : x->dup > y->dup;
}

void audit_segment_list_free(struct audit_segment_entry *list, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(list[i].path);
    free(list);
}

int audit_segment_list(const char *data_dir, struct audit_segment_entry **out, size_t *n, char *err, size_t errlen)
{
    size_t len = strlen(data_dir) + sizeof("/" AUDIT_SEGMENT_SUBDIR);
    char *dir = malloc(len);
    int rc;

    *out = NULL;
    *n = 0;
    if (dir == NULL) {
        set_err(err, errlen, "out of memory");
        return -1;
    }
    snprintf(dir, len, "%s/%s", data_dir, AUDIT_SEGMENT_SUBDIR);
    rc = audit_segment_list_dir(dir, out, n, err, errlen);
    free(dir);
    return rc;
}

int audit_segment_list_dir(const char *dir, struct audit_segment_entry **out, size_t *n, char *err, size_t errlen)
{
    struct audit_segment_entry *list = NULL;
    size_t len = 0, cap = 0;
    DIR *top = NULL, *sub = NULL;
    struct dirent *de;
    char *top_path = NULL, *sub_path = NULL;
    size_t top_len;

    *out = NULL;
    *n = 0;
    top_len = strlen(dir) + 1;
    top_path = strdup(dir);
    sub_path = malloc(top_len + 12);
    if (top_path == NULL || sub_path == NULL)
        goto oom;
    top = opendir(top_path);
    if (top == NULL) {
        if (errno == ENOENT) {
            free(top_path);
            free(sub_path);
            return 0;
        }
        set_err(err, errlen, "cannot read %s: %s", top_path, strerror(errno));
        goto fail;
    }
    while ((errno = 0, de = readdir(top)) != NULL) {
        if (!is_date_name(de->d_name))
            continue;
        snprintf(sub_path, top_len + 12, "%s/%s", top_path, de->d_name);
        sub = opendir(sub_path);
        if (sub == NULL) {
            if (errno == ENOTDIR || errno == ENOENT)
                continue;
            set_err(err, errlen, "cannot read %s: %s", sub_path, strerror(errno));
            goto fail;
        }
        for (;;) {
            struct dirent *fe;
            struct audit_segment_entry e;
            size_t plen;

            errno = 0;
            fe = readdir(sub);
            if (fe == NULL) {
                if (errno != 0) {
                    set_err(err, errlen, "cannot read %s: %s", sub_path, strerror(errno));
                    goto fail;
                }
                break;
            }
            if (parse_segment_name(fe->d_name, &e.first_seq, &e.dup) == -1)
                continue;
            memcpy(e.date, de->d_name, sizeof(e.date));
            plen = strlen(sub_path) + strlen(fe->d_name) + 2;
            e.path = malloc(plen);
            if (e.path == NULL)
                goto oom;
            snprintf(e.path, plen, "%s/%s", sub_path, fe->d_name);
            if (len == cap) {
                size_t ncap = cap != 0 ? cap * 2 : 64;
                struct audit_segment_entry *p = realloc(list, ncap * sizeof(*list));

                if (p == NULL) {
                    free(e.path);
                    goto oom;
                }
                list = p;
                cap = ncap;
            }
            list[len++] = e;
        }
        closedir(sub);
        sub = NULL;
    }
    if (errno != 0) {
        set_err(err, errlen, "cannot read %s: %s", top_path, strerror(errno));
        goto fail;
    }
    closedir(top);
    free(top_path);
    free(sub_path);
    if (len > 1)
        qsort(list, len, sizeof(*list), entry_cmp);
    *out = list;
    *n = len;
    return 0;

oom:
    set_err(err, errlen, "out of memory");
fail:
    if (sub != NULL)
        closedir(sub);
    if (top != NULL)
        closedir(top);
    free(top_path);
    free(sub_path);
    audit_segment_list_free(list, len);
    return -1;
}

/* ---- reader ---- */

struct audit_segment_reader {
    int fd;
    ZSTD_DCtx *dctx;
    char *in_buf;
    size_t in_cap;
    ZSTD_inBuffer in;
    uint64_t in_base;   /* file offset of in_buf[0] */
    char *frame;        /* the decoded frame, verified: lines are cut from frame[pos..len) */
    size_t frame_len;
    size_t frame_cap;
    size_t frame_pos;
    uint64_t good;      /* end of the last complete frame */
    uint64_t frame_start; /* where the frame in <frame> began */
    uint64_t frames;
    int failed;
    char msg[256];      /* the reason, repeated by every call after a failure */
};

struct audit_segment_reader *audit_segment_reader_open(const char *path, char *err, size_t errlen)
{
    struct audit_segment_reader *r = calloc(1, sizeof(*r));

    if (r == NULL)
        goto oom;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd == -1) {
        set_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
        free(r);
        return NULL;
    }
    r->dctx = ZSTD_createDCtx();
    r->in_cap = ZSTD_DStreamInSize();
    r->in_buf = malloc(r->in_cap);
    if (r->dctx == NULL || r->in_buf == NULL) {
        audit_segment_reader_close(r);
        goto oom;
    }
    r->in = (ZSTD_inBuffer){ r->in_buf, 0, 0 };
    return r;

oom:
    set_err(err, errlen, "out of memory");
    return NULL;
}

__attribute__((format(printf, 2, 3))) static int reader_fail(struct audit_segment_reader *r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
    va_end(ap);
    r->failed = 1;
    return -1;
}

/* Decodes the next frame whole into r->frame: 1 once it is complete and its checksum
 * verified, 0 at the clean end of the file, -1 (r->failed) when the file is torn, corrupt
 * or unreadable. Nothing of a frame is delivered before its end: a corrupt frame could
 * decode to plausible bytes that only the checksum rejects. */
static int decode_frame(struct audit_segment_reader *r)
{
    int started = 0; /* input of this frame was consumed */
    int full = 0;    /* the last call filled the output: call again before reading more */

    r->frame_len = 0;
    r->frame_pos = 0;
    r->frame_start = r->good;
    for (;;) {
        ZSTD_outBuffer out;
        size_t pos0, ret;

        if (r->in.pos == r->in.size && !full) {
            ssize_t n;

            do
                n = read(r->fd, r->in_buf, r->in_cap);
            while (n == -1 && errno == EINTR);
            if (n == -1)
                return reader_fail(r, "read error: %s", strerror(errno));
            if (n == 0)
                return started ? reader_fail(r, "the last frame is incomplete") : 0;
            r->in_base += r->in.size;
            r->in = (ZSTD_inBuffer){ r->in_buf, (size_t)n, 0 };
        }
        if (r->frame_len == r->frame_cap) {
            size_t cap = r->frame_cap != 0 ? r->frame_cap * 2 : 256 * 1024;
            char *p;

            if (r->frame_cap >= AUDIT_SEGMENT_FRAME_MAX)
                return reader_fail(r, "a frame holds more than %d bytes", AUDIT_SEGMENT_FRAME_MAX);
            if (cap > AUDIT_SEGMENT_FRAME_MAX)
                cap = AUDIT_SEGMENT_FRAME_MAX;
            p = realloc(r->frame, cap);
            if (p == NULL)
                return reader_fail(r, "out of memory");
            r->frame = p;
            r->frame_cap = cap;
        }
        out = (ZSTD_outBuffer){ r->frame, r->frame_cap, r->frame_len };
        pos0 = r->in.pos;
        ret = ZSTD_decompressStream(r->dctx, &out, &r->in);
        if (ZSTD_isError(ret))
            return reader_fail(r, "corrupt frame: %s", ZSTD_getErrorName(ret));
        if (r->in.pos != pos0 || out.pos != r->frame_len)
            started = 1;
        r->frame_len = out.pos;
        full = out.pos == out.size;
        if (ret == 0) {
            /* complete: checksum verified, output flushed (a skippable frame decodes to nothing) */
            r->good = r->in_base + r->in.pos;
            r->frames++;
            return 1;
        }
    }
}

int audit_segment_reader_next(struct audit_segment_reader *r, const char **line, size_t *len, char *err,
                              size_t errlen)
{
    for (;;) {
        if (r->failed) {
            set_err(err, errlen, "%s", r->msg);
            return -1;
        }
        if (r->frame_pos < r->frame_len) {
            char *p = r->frame + r->frame_pos;
            char *nl = memchr(p, '\n', r->frame_len - r->frame_pos);

            if (nl == NULL) {
                /* the writer never cuts a line in two: this frame is not one of ours */
                r->good = r->frame_start;
                reader_fail(r, "a frame does not end with a newline");
                continue;
            }
            *line = p;
            *len = (size_t)(nl - p);
            r->frame_pos += *len + 1;
            return 1;
        }
        if (decode_frame(r) == 0)
            return 0;
    }
}

uint64_t audit_segment_reader_good_bytes(const struct audit_segment_reader *r)
{
    return r->good;
}

uint64_t audit_segment_reader_frames(const struct audit_segment_reader *r)
{
    return r->frames;
}

void audit_segment_reader_close(struct audit_segment_reader *r)
{
    if (r == NULL)
        return;
    if (r->fd != -1)
        close(r->fd);
    ZSTD_freeDCtx(r->dctx);
    free(r->in_buf);
    free(r->frame);
    free(r);
}

/* The unsigned integer member <key> ("\"seq\":") of a stored record line; 0 when absent. */
static uint64_t line_uint(const char *line, size_t len, const char *key, size_t keylen)
{
    const char *end = line + len, *p = line;

    while ((p = memmem(p, (size_t)(end - p), key, keylen)) != NULL) {
        uint64_t v = 0;
        int digits = 0;

        p += keylen;
        while (p < end && *p >= '0' && *p <= '9' && digits < 20) {
            v = v * 10 + (uint64_t)(*p++ - '0');
            digits++;
        }
        if (digits)
            return v;
    }
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era;
    unsigned yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = (unsigned)(y - era * 400);
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* The "time" member (RFC 3339 UTC with microseconds, as audit_format_time() writes it) of a
 * stored line in microseconds since the epoch; 0 when absent or malformed. */
static int64_t line_time(const char *line, size_t len)
{
    static const char key[] = "\"time\":\"";
    const char *p = memmem(line, len, key, sizeof(key) - 1);
    unsigned v[7] = {0};
    static const int width[7] = {4, 2, 2, 2, 2, 2, 6};
    static const char sep[7] = {'-', '-', 'T', ':', ':', '.', 'Z'};

    if (p == NULL)
        return 0;
    p += sizeof(key) - 1;
    if ((size_t)(line + len - p) < 27)
        return 0;
    for (int i = 0; i < 7; i++) {
        for (int k = 0; k < width[i]; k++, p++) {
            if (*p < '0' || *p > '9')
                return 0;
            v[i] = v[i] * 10 + (unsigned)(*p - '0');
        }
        if (*p++ != sep[i])
            return 0;
    }
    return ((days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600 + v[4] * 60 + v[5]) * 1000000) + v[6];
}

int audit_segment_scan(const char *path, struct audit_segment_scan *out, char *err, size_t errlen)
{
    struct audit_segment_reader *r;
    struct stat st;
    const char *line;
    size_t len;
    int rc;

    memset(out, 0, sizeof(*out));
    r = audit_segment_reader_open(path, err, errlen);
    if (r == NULL)
        return -1;
    if (fstat(r->fd, &st) == -1) {
        set_err(err, errlen, "stat %s: %s", path, strerror(errno));
        audit_segment_reader_close(r);
        return -1;
    }
    out->size = (uint64_t)st.st_size;
    while ((rc = audit_segment_reader_next(r, &line, &len, out->damage, sizeof(out->damage))) == 1) {
        uint64_t seq = line_uint(line, len, "\"seq\":", 6);
        int64_t t = line_time(line, len);

        if (out->records == 0) {
            out->first_seq = seq;
            out->first_time_us = t;
        }
        out->last_seq = seq;
        out->last_time_us = t;
        out->has_last_chain = audit_chain_find(line, len, out->last_chain) == 0;
        out->records++;
    }
    if (rc == 0)
        out->damage[0] = '\0';
    out->good_bytes = rc == 0 ? out->size : audit_segment_reader_good_bytes(r);
    out->frames = audit_segment_reader_frames(r);
    audit_segment_reader_close(r);
    return 0;
}

int audit_segment_last_record(const char *dir, uint64_t *seq, uint8_t chain[32], char *err, size_t errlen)
{
    struct audit_segment_entry *list = NULL;
    size_t n = 0;

    *seq = 0;
    memset(chain, 0, 32);
    if (audit_segment_list_dir(dir, &list, &n, err, errlen) == -1)
        return -1;
    /* the newest segment holding a record decides; a torn last frame keeps what was whole */
    for (size_t i = n; i-- > 0;) {
        struct audit_segment_scan sc;
        struct audit_digest d;
        char rerr[256], sig[4096];

        snprintf(sig, sizeof(sig), "%s%s", list[i].path, AUDIT_DIGEST_SUFFIX);
        if (access(sig, F_OK) == 0 && audit_digest_read(sig, NULL, &d, NULL, rerr, sizeof(rerr)) == 0) {
            if (d.records == 0)
                continue;
            *seq = d.last_seq;
            if (d.has_last_chain)
                memcpy(chain, d.last_chain, 32);
            break;
        }
        if (audit_segment_scan(list[i].path, &sc, rerr, sizeof(rerr)) == -1 || sc.records == 0)
            continue;
        *seq = sc.last_seq;
        if (sc.has_last_chain)
            memcpy(chain, sc.last_chain, 32);
        break;
    }
    audit_segment_list_free(list, n);
    return 0;
}
