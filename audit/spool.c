/* audit/spool.c - a disk queue of serialized records that survives restarts (audit/spool.h).
 *
 * The spool directory holds append-only segment files and, beside each, the record of
 * which of its records were acknowledged:
 *
 *     DIR/lock                     flock()ed while a process has the spool open
 *     DIR/<16 hex digits>.spl      a segment: an 8-byte file magic, then frames
 *     DIR/<16 hex digits>.ack      u32 LE indexes (in the segment) of acknowledged records
 *
 *     frame:  "VSPR" | u32 LE len | u64 LE seq | BLAKE2b-128(magic..seq ‖ data) | data[len]
 *             0      4            8            16                                32
 *
 * Segment numbers only grow; a new process always appends to a fresh segment, so a torn
 * tail left by a crash is never written after. A segment is unlinked with its .ack file as
 * soon as every record in it is acknowledged (acks may come in any order), except the one
 * being appended to, which is unlinked once it has reached its roll size (or when its
 * space is needed under <max_bytes>).
 *
 * Durability. An append is one write(2): the record survives a crash of the process from
 * then on (page cache). Appends are fdatasync()ed as a batch: before a record appended
 * since the last sync is handed out by audit_spool_next() (so nothing is delivered that a
 * power loss could take back out of the spool), when a segment is rolled and on close;
 * the directory is fsync()ed when a segment is created. Acknowledgements are buffered and
 * written (without fsync) on the next audit_spool_next(), every ACK_BUF_MAX acks and on
 * close: a crash can forget the last acks, never a record, so a restart may hand out
 * again records that were delivered (at least once: duplicates, never loss).
 *
 * Damage. Opening checks every frame's checksum. A bad frame is skipped by scanning for
 * the next valid one; each damaged stretch is reported once by audit_spool_next() (-1 with
 * the segment and byte count in <err>) before the records that follow it. A record that
 * was good at open and reads back bad later is reported the same way and counted as
 * acknowledged, so it cannot block the reclaiming of its segment.
 *
 * Records are identified by seq for audit_spool_ack(); should a seq occur twice, an ack
 * marks the oldest unacknowledged record that has it. */
#include "audit/spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#define FILE_MAGIC "VGSPOOL1"
#define FILE_HDR 8
#define FRAME_MAGIC 0x52505356u /* "VSPR" little-endian */
#define FRAME_HDR 32
#define HASH_LEN 16
#define RECORD_MAX (16u * 1024 * 1024)   /* larger records are refused */
#define ROLL_MIN (64u * 1024)
#define ROLL_MAX (64u * 1024 * 1024)
#define READ_CHUNK (256u * 1024)
#define ACK_BUF_MAX 1024
#define DAMAGE_MAX 16

struct seg {
    uint64_t no;
    uint64_t bytes;     /* file size (valid frames and any damage) */
    uint32_t n;         /* records indexed */
    uint32_t cap;
    uint32_t nacked;    /* acked (or lost to damage) */
    uint64_t *seqs;
    uint32_t *offs;     /* frame offsets */
    uint8_t *acked;     /* bitmap */
    uint64_t min_seq, max_seq;
    int sorted;         /* seqs non-decreasing: binary search */
};

struct ack_ent {
    uint64_t no;
    uint32_t idx;
};

struct audit_spool {
    char *dir;
    int dir_fd;
    int lock_fd;
    uint64_t max_bytes;
    uint64_t roll_bytes;
    struct seg **segs; /* by segment number */
    size_t nsegs, capsegs;
    uint64_t next_no;
    struct seg *wseg;  /* being appended to, or NULL */
    int wfd;
    int dirty;         /* appended since the last fdatasync */
    uint64_t bytes;
    uint64_t pending;
    /* reader: next record to hand out */
    uint64_t cur_no;
    uint32_t cur_idx;
    /* read cache: bytes [rc_off, rc_off + rc_len) of segment rc_no */
    int rfd;
    uint64_t rfd_no;
    char *rc;
    size_t rc_cap, rc_len;
    uint64_t rc_no, rc_off;
    /* damage found at open, reported by next() */
    char *damage[DAMAGE_MAX];
    size_t ndamage, damage_more;
    /* acks not yet written */
    struct ack_ent acks[ACK_BUF_MAX];
    size_t nacks;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void frame_hash(uint8_t out[HASH_LEN], const uint8_t *hdr16, const void *data, size_t len)
{
    crypto_generichash_state st;

    crypto_generichash_init(&st, NULL, 0, HASH_LEN);
    crypto_generichash_update(&st, hdr16, 16);
    crypto_generichash_update(&st, data, len);
    crypto_generichash_final(&st, out, HASH_LEN);
}

/* Whether a frame starts at <p> (<avail> bytes there) and is whole and intact; its data
 * length in *<len>. */
static int frame_valid(const uint8_t *p, size_t avail, uint32_t *len)
{
    uint8_t h[HASH_LEN];
    uint32_t l;

    if (avail < FRAME_HDR || get32(p) != FRAME_MAGIC)
        return 0;
    l = get32(p + 4);
    if (l > RECORD_MAX || avail - FRAME_HDR < l)
        return 0;
    frame_hash(h, p, p + FRAME_HDR, l);
    if (sodium_memcmp(h, p + 16, HASH_LEN) != 0)
        return 0;
    *len = l;
    return 1;
}

static void seg_path(const struct audit_spool *sp, uint64_t no, const char *ext, char *out, size_t outlen)
{
    snprintf(out, outlen, "%016" PRIx64 ".%s", no, ext);
    (void)sp;
}

static void seg_free(struct seg *g)
{
    if (g == NULL)
        return;
    free(g->seqs);
    free(g->offs);
    free(g->acked);
    free(g);
}

static struct seg *seg_new(uint64_t no)
{
    struct seg *g = calloc(1, sizeof(*g));

    if (g == NULL)
        return NULL;
    g->no = no;
    g->sorted = 1;
    return g;
}

/* Indexes one more record of <g>. 0, or -1 (no memory). */
static int seg_add(struct seg *g, uint64_t seq, uint32_t off)
{
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 64;
        uint64_t *seqs = realloc(g->seqs, cap * sizeof(*seqs));
        uint32_t *offs;
        uint8_t *acked;

        if (seqs == NULL)
            return -1;
        g->seqs = seqs;
        offs = realloc(g->offs, cap * sizeof(*offs));
        if (offs == NULL)
            return -1;
        g->offs = offs;
        acked = realloc(g->acked, cap / 8);
        if (acked == NULL)
            return -1;
        memset(acked + g->cap / 8, 0, (cap - g->cap) / 8);
        g->acked = acked;
        g->cap = cap;
    }
    if (g->n == 0) {
        g->min_seq = g->max_seq = seq;
    } else {
        if (seq < g->seqs[g->n - 1])
            g->sorted = 0;
        if (seq < g->min_seq)
            g->min_seq = seq;
        if (seq > g->max_seq)
            g->max_seq = seq;
    }
    g->seqs[g->n] = seq;
    g->offs[g->n] = off;
    g->n++;
    return 0;
}

static int is_acked(const struct seg *g, uint32_t i)
{
    return (g->acked[i / 8] >> (i % 8)) & 1;
}

/* Marks record <i> of <g> acked; returns 1 if it was not. */
static int mark_acked(struct audit_spool *sp, struct seg *g, uint32_t i)
{
    if (is_acked(g, i))
        return 0;
    g->acked[i / 8] |= (uint8_t)(1u << (i % 8));
    g->nacked++;
    sp->pending--;
    return 1;
}

static void add_damage(struct audit_spool *sp, uint64_t no, uint64_t off, uint64_t len)
{
    char msg[160];

    if (sp->ndamage == DAMAGE_MAX) {
        sp->damage_more++;
        return;
    }
    snprintf(msg, sizeof(msg), "spool %s: segment %016" PRIx64 ": %" PRIu64 " damaged bytes skipped at offset %" PRIu64,
             sp->dir, no, len, off);
    sp->damage[sp->ndamage] = strdup(msg);
    if (sp->damage[sp->ndamage] != NULL)
        sp->ndamage++;
}

static void unlink_seg_files(struct audit_spool *sp, uint64_t no)
{
    char name[64];

    seg_path(sp, no, "spl", name, sizeof(name));
    unlinkat(sp->dir_fd, name, 0);
    seg_path(sp, no, "ack", name, sizeof(name));
    unlinkat(sp->dir_fd, name, 0);
}

/* Removes segment <i> from the spool and its files from disk. */
static void drop_seg(struct audit_spool *sp, size_t i)
{
    struct seg *g = sp->segs[i];
    size_t k, j;

    if (g == sp->wseg) {
        close(sp->wfd);
        sp->wfd = -1;
        sp->wseg = NULL;
        sp->dirty = 0;
    }
    if (sp->rfd != -1 && sp->rfd_no == g->no) {
        close(sp->rfd);
        sp->rfd = -1;
    }
    if (sp->rc_no == g->no)
        sp->rc_len = 0;
    /* buffered acks of this segment need not be written any more */
    for (k = 0, j = 0; k < sp->nacks; k++) {
        if (sp->acks[k].no != g->no)
            sp->acks[j++] = sp->acks[k];
    }
    sp->nacks = j;
    unlink_seg_files(sp, g->no);
    sp->bytes -= g->bytes;
    sp->pending -= g->n - g->nacked;
    memmove(&sp->segs[i], &sp->segs[i + 1], (sp->nsegs - i - 1) * sizeof(*sp->segs));
    sp->nsegs--;
    seg_free(g);
}

/* Gives back the disk space of segment <i> if everything in it is acknowledged. */
static void maybe_reclaim(struct audit_spool *sp, size_t i)
{
    struct seg *g = sp->segs[i];

    if (g->nacked != g->n)
        return;
    if (g == sp->wseg && g->bytes < sp->roll_bytes)
        return;
    drop_seg(sp, i);
}

static int push_seg(struct audit_spool *sp, struct seg *g)
{
    if (sp->nsegs == sp->capsegs) {
        size_t cap = sp->capsegs ? sp->capsegs * 2 : 16;
        struct seg **segs = realloc(sp->segs, cap * sizeof(*segs));

        if (segs == NULL)
            return -1;
        sp->segs = segs;
        sp->capsegs = cap;
    }
    sp->segs[sp->nsegs++] = g;
    return 0;
}

static int read_all(int fd, uint8_t **out, size_t *len)
{
    struct stat st;
    uint8_t *buf;
    size_t got = 0;

    if (fstat(fd, &st) == -1)
        return -1;
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL)
        return -1;
    while (got < (size_t)st.st_size) {
        ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);

        if (r == -1 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                break;
            free(buf);
            return -1;
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = got;
    return 0;
}

/* Indexes segment <no> left by an earlier process, and its acks. 0, or -1 with <err>. */
static int load_seg(struct audit_spool *sp, uint64_t no, char *err, size_t errlen)
{
    char name[64];
    uint8_t *buf = NULL;
    size_t len = 0, off, bad_start = 0;
    int fd, in_bad = 0;
    struct seg *g;

    seg_path(sp, no, "spl", name, sizeof(name));
    fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd == -1 || read_all(fd, &buf, &len) == -1) {
        set_err(err, errlen, "spool %s: cannot read %s: %s", sp->dir, name, strerror(errno));
        if (fd != -1)
            close(fd);
        return -1;
    }
    close(fd);
    g = seg_new(no);
    if (g == NULL)
        goto oom;
    g->bytes = len;
    off = FILE_HDR;
    if (len < FILE_HDR || memcmp(buf, FILE_MAGIC, FILE_HDR) != 0) {
        /* a file cut short before its header was written holds nothing; anything else is damage */
        if (len > 0 && !(len < FILE_HDR && memcmp(buf, FILE_MAGIC, len) == 0))
            add_damage(sp, no, 0, len < FILE_HDR ? len : FILE_HDR);
        off = len < FILE_HDR ? len : FILE_HDR;
    }
    while (off < len) {
        uint32_t l;

        if (off <= UINT32_MAX && frame_valid(buf + off, len - off, &l)) {
            if (in_bad) {
                add_damage(sp, no, bad_start, off - bad_start);
                in_bad = 0;
            }
            if (seg_add(g, get64(buf + off + 8), (uint32_t)off) == -1)
                goto oom;
            off += FRAME_HDR + l;
            continue;
        }
        if (!in_bad) {
            in_bad = 1;
            bad_start = off;
        }
        off++;
    }
    if (in_bad)
        add_damage(sp, no, bad_start, len - bad_start);
    free(buf);
    buf = NULL;
    sp->bytes += g->bytes;
    sp->pending += g->n;
    if (push_seg(sp, g) == -1) {
        sp->bytes -= g->bytes;
        sp->pending -= g->n;
        goto oom;
    }

    /* its acks: whole u32 entries; a torn last one (crash) is ignored */
    seg_path(sp, no, "ack", name, sizeof(name));
    fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd != -1) {
        if (read_all(fd, &buf, &len) == 0) {
            for (off = 0; off + 4 <= len; off += 4) {
                uint32_t i = get32(buf + off);

                if (i < g->n)
                    mark_acked(sp, g, i);
            }
            free(buf);
            buf = NULL;
        }
        close(fd);
    }
    return 0;

oom:
    free(buf);
    seg_free(g);
    set_err(err, errlen, "spool %s: out of memory", sp->dir);
    return -1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

static int mkdir_p(const char *path)
{
    char *p = strdup(path), *s;
    int rc = 0;

    if (p == NULL)
        return -1;
    for (s = p + 1; *s != '\0'; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) == -1 && errno != EEXIST)
            rc = -1;
        *s = '/';
    }
    if (mkdir(p, 0700) == -1 && errno != EEXIST)
        rc = -1;
    free(p);
    return rc;
}

struct audit_spool *audit_spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen)
{
    struct audit_spool *sp;
    uint64_t *nos = NULL;
    size_t nnos = 0, capnos = 0, i;
    struct dirent *de;
    DIR *d = NULL;

    if (sodium_init() == -1) {
        set_err(err, errlen, "spool %s: libsodium failed to initialize", dir);
        return NULL;
    }
    sp = calloc(1, sizeof(*sp));
    if (sp == NULL) {
        set_err(err, errlen, "spool %s: out of memory", dir);
        return NULL;
    }
    sp->dir_fd = sp->lock_fd = sp->wfd = sp->rfd = -1;
    sp->max_bytes = max_bytes;
    sp->roll_bytes = max_bytes / 8;
    if (sp->roll_bytes < ROLL_MIN)
        sp->roll_bytes = ROLL_MIN;
    if (sp->roll_bytes > ROLL_MAX)
        sp->roll_bytes = ROLL_MAX;
    sp->dir = strdup(dir);
    if (sp->dir == NULL) {
        set_err(err, errlen, "spool %s: out of memory", dir);
        goto fail;
    }
    if (mkdir_p(dir) == -1) {
        set_err(err, errlen, "spool %s: cannot create: %s", dir, strerror(errno));
        goto fail;
    }
    sp->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (sp->dir_fd == -1) {
        set_err(err, errlen, "spool %s: cannot open: %s", dir, strerror(errno));
        goto fail;
    }
    sp->lock_fd = openat(sp->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lock_fd == -1) {
        set_err(err, errlen, "spool %s: cannot create its lock file: %s", dir, strerror(errno));
        goto fail;
    }
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) == -1) {
        set_err(err, errlen, "spool %s: in use by another process", dir);
        goto fail;
    }

    d = fdopendir(dup(sp->dir_fd));
    if (d == NULL) {
        set_err(err, errlen, "spool %s: cannot list: %s", dir, strerror(errno));
        goto fail;
    }
    while ((de = readdir(d)) != NULL) {
        char *end;
        uint64_t no;

        if (strlen(de->d_name) != 20 || strcmp(de->d_name + 16, ".spl") != 0)
            continue;
        errno = 0;
        no = strtoull(de->d_name, &end, 16);
        if (errno != 0 || end != de->d_name + 16)
            continue;
        if (nnos == capnos) {
            size_t cap = capnos ? capnos * 2 : 16;
            uint64_t *n2 = realloc(nos, cap * sizeof(*n2));

            if (n2 == NULL) {
                set_err(err, errlen, "spool %s: out of memory", dir);
                goto fail;
            }
            nos = n2;
            capnos = cap;
        }
        nos[nnos++] = no;
    }
    closedir(d);
    d = NULL;
    if (nnos > 0)
        qsort(nos, nnos, sizeof(*nos), cmp_u64);
    for (i = 0; i < nnos; i++) {
        if (load_seg(sp, nos[i], err, errlen) == -1)
            goto fail;
        sp->next_no = nos[i] + 1;
    }
    free(nos);
    nos = NULL;
    /* segments an earlier process acknowledged completely but did not get to remove */
    for (i = sp->nsegs; i-- > 0;)
        maybe_reclaim(sp, i);
    sp->cur_no = 0;
    sp->cur_idx = 0;
    return sp;

fail:
    if (d != NULL)
        closedir(d);
    free(nos);
    audit_spool_close(sp);
    return NULL;
}

static int fsync_dir(struct audit_spool *sp)
{
    return fsync(sp->dir_fd);
}

/* Syncs the segment being appended to if anything was appended since the last sync. */
static int sync_appends(struct audit_spool *sp, char *err, size_t errlen)
{
    if (!sp->dirty || sp->wfd == -1)
        return 0;
    if (fdatasync(sp->wfd) == -1) {
        set_err(err, errlen, "spool %s: fdatasync: %s", sp->dir, strerror(errno));
        return -1;
    }
    sp->dirty = 0;
    return 0;
}

/* Closes the segment being appended to (synced); it stays in the spool for reading. */
static int roll(struct audit_spool *sp, char *err, size_t errlen)
{
    struct seg *g = sp->wseg;

    if (g == NULL)
        return 0;
    if (sync_appends(sp, err, errlen) == -1)
        return -1;
    close(sp->wfd);
    sp->wfd = -1;
    sp->wseg = NULL;
    /* a rolled segment that is already acknowledged goes now */
    for (size_t i = 0; i < sp->nsegs; i++) {
        if (sp->segs[i] == g) {
            maybe_reclaim(sp, i);
            break;
        }
    }
    return 0;
}

/* Makes a new segment to append to. 0, or -1 with <err>. */
static int new_wseg(struct audit_spool *sp, char *err, size_t errlen)
{
    char name[64];
    struct seg *g;
    int fd;

    seg_path(sp, sp->next_no, "spl", name, sizeof(name));
    fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd == -1) {
        set_err(err, errlen, "spool %s: cannot create %s: %s", sp->dir, name, strerror(errno));
        return -1;
    }
    g = seg_new(sp->next_no);
    if (g == NULL || push_seg(sp, g) == -1) {
        seg_free(g);
        close(fd);
        unlinkat(sp->dir_fd, name, 0);
        set_err(err, errlen, "spool %s: out of memory", sp->dir);
        return -1;
    }
    if (write(fd, FILE_MAGIC, FILE_HDR) != FILE_HDR || fsync_dir(sp) == -1) {
        set_err(err, errlen, "spool %s: cannot write %s: %s", sp->dir, name, strerror(errno));
        sp->nsegs--;
        seg_free(g);
        close(fd);
        unlinkat(sp->dir_fd, name, 0);
        return -1;
    }
    g->bytes = FILE_HDR;
    sp->bytes += FILE_HDR;
    sp->next_no++;
    sp->wseg = g;
    sp->wfd = fd;
    return 0;
}

int audit_spool_append(struct audit_spool *sp, uint64_t seq, const char *data, size_t len, char *err, size_t errlen)
{
    uint8_t hdr[FRAME_HDR];
    uint64_t need = FRAME_HDR + (uint64_t)len;
    struct iovec iov[2];
    size_t done = 0, total;
    struct seg *g;

    if (len > RECORD_MAX) {
        set_err(err, errlen, "spool %s: record of %zu bytes is larger than %u", sp->dir, len, RECORD_MAX);
        return -1;
    }
    if (sp->wseg != NULL && sp->wseg->n > 0 && sp->wseg->bytes + need > sp->roll_bytes && roll(sp, err, errlen) == -1)
        return -1;
    /* a fully acknowledged segment being appended to gives its space back when it is needed */
    if (sp->wseg != NULL && sp->bytes + need > sp->max_bytes && sp->wseg->nacked == sp->wseg->n && sp->wseg->n > 0 &&
        roll(sp, err, errlen) == -1)
        return -1;
    if (sp->bytes + need + (sp->wseg == NULL ? FILE_HDR : 0) > sp->max_bytes) {
        set_err(err, errlen, "spool %s: full (%" PRIu64 " of %" PRIu64 " bytes)", sp->dir, sp->bytes, sp->max_bytes);
        return -1;
    }
    if (sp->wseg == NULL && new_wseg(sp, err, errlen) == -1)
        return -1;
    g = sp->wseg;
    if (g->bytes + need > UINT32_MAX) {
        set_err(err, errlen, "spool %s: segment too large", sp->dir);
        return -1;
    }
    put32(hdr, FRAME_MAGIC);
    put32(hdr + 4, (uint32_t)len);
    put64(hdr + 8, seq);
    frame_hash(hdr + 16, hdr, data, len);
    if (seg_add(g, seq, (uint32_t)g->bytes) == -1) {
        set_err(err, errlen, "spool %s: out of memory", sp->dir);
        return -1;
    }
    total = (size_t)need;
    while (done < total) {
        ssize_t w;

        if (done < FRAME_HDR) {
            iov[0].iov_base = hdr + done;
            iov[0].iov_len = FRAME_HDR - done;
            iov[1].iov_base = (void *)data;
            iov[1].iov_len = len;
            w = writev(sp->wfd, iov, 2);
        } else {
            w = write(sp->wfd, data + (done - FRAME_HDR), total - done);
        }
        if (w == -1 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = w == -1 ? errno : EIO;

            /* keep nothing of the record: cut the file back and forget its index entry */
            if (ftruncate(sp->wfd, (off_t)g->bytes) == -1) {
                /* the next open skips the torn frame as damage; append elsewhere from now on */
                close(sp->wfd);
                sp->wfd = -1;
                sp->wseg = NULL;
                g->bytes += done;
                sp->bytes += done;
            }
            g->n--;
            set_err(err, errlen, "spool %s: write: %s", sp->dir, strerror(e));
            return -1;
        }
        done += (size_t)w;
    }
    g->bytes += need;
    sp->bytes += need;
    sp->pending++;
    sp->dirty = 1;
    return 0;
}

/* Writes the buffered acks to the .ack files. Failures are ignored: an ack that is not
 * written only means the record may be handed out again after a restart. */
static void flush_acks(struct audit_spool *sp)
{
    size_t i = 0;

    while (i < sp->nacks) {
        uint8_t buf[4 * ACK_BUF_MAX];
        uint64_t no = sp->acks[i].no;
        size_t n = 0;
        char name[64];
        int fd;

        while (i < sp->nacks && sp->acks[i].no == no) {
            put32(buf + 4 * n, sp->acks[i].idx);
            n++;
            i++;
        }
        seg_path(sp, no, "ack", name, sizeof(name));
        fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd == -1)
            continue;
        if (write(fd, buf, 4 * n) == -1) {
            /* see above */
        }
        close(fd);
    }
    sp->nacks = 0;
}

static size_t seg_index(const struct audit_spool *sp, const struct seg *g)
{
    for (size_t i = 0; i < sp->nsegs; i++) {
        if (sp->segs[i] == g)
            return i;
    }
    return sp->nsegs;
}

static void record_ack(struct audit_spool *sp, struct seg *g, uint32_t i)
{
    if (!mark_acked(sp, g, i))
        return;
    if (sp->nacks == ACK_BUF_MAX)
        flush_acks(sp);
    sp->acks[sp->nacks].no = g->no;
    sp->acks[sp->nacks].idx = i;
    sp->nacks++;
    maybe_reclaim(sp, seg_index(sp, g));
}

/* Makes bytes [off, off + len) of segment <g> available in the read cache. 0, or -1 with
 * errno set (0 for a short file). */
static int cache_range(struct audit_spool *sp, const struct seg *g, uint64_t off, size_t len)
{
    size_t want, got = 0;

    if (sp->rc_len > 0 && sp->rc_no == g->no && off >= sp->rc_off && off + len <= sp->rc_off + sp->rc_len)
        return 0;
    if (sp->rfd == -1 || sp->rfd_no != g->no) {
        char name[64];

        if (sp->rfd != -1)
            close(sp->rfd);
        seg_path(sp, g->no, "spl", name, sizeof(name));
        sp->rfd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (sp->rfd == -1)
            return -1;
        sp->rfd_no = g->no;
    }
    want = len > READ_CHUNK ? len : READ_CHUNK;
    if (sp->rc_cap < want) {
        char *b = realloc(sp->rc, want);

        if (b == NULL)
            return -1;
        sp->rc = b;
        sp->rc_cap = want;
    }
    sp->rc_len = 0;
    while (got < want) {
        ssize_t r = pread(sp->rfd, sp->rc + got, want - got, (off_t)(off + got));

        if (r == -1 && errno == EINTR)
            continue;
        if (r == -1)
            return -1;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    sp->rc_no = g->no;
    sp->rc_off = off;
    sp->rc_len = got;
    if (got < len) {
        errno = 0;
        return -1;
    }
    return 0;
}

int audit_spool_next(struct audit_spool *sp, uint64_t *seq, const char **data, size_t *len, char *err,
                     size_t errlen)
{
    size_t i;

    flush_acks(sp);
    if (sp->ndamage > 0) {
        set_err(err, errlen, "%s", sp->damage[0]);
        free(sp->damage[0]);
        memmove(&sp->damage[0], &sp->damage[1], (sp->ndamage - 1) * sizeof(sp->damage[0]));
        sp->ndamage--;
        return -1;
    }
    if (sp->damage_more > 0) {
        set_err(err, errlen, "spool %s: %zu more damaged stretches skipped", sp->dir, sp->damage_more);
        sp->damage_more = 0;
        return -1;
    }
    for (i = 0; i < sp->nsegs; i++) {
        struct seg *g = sp->segs[i];
        uint32_t k;

        if (g->no < sp->cur_no)
            continue;
        k = g->no == sp->cur_no ? sp->cur_idx : 0;
        while (k < g->n && is_acked(g, k))
            k++;
        if (k == g->n)
            continue;
        /* about to hand out a record: everything appended must be on disk first */
        if (g == sp->wseg && sync_appends(sp, err, errlen) == -1)
            return -1;
        {
            uint64_t off = g->offs[k];
            const uint8_t *p;
            uint32_t l;

            sp->cur_no = g->no;
            sp->cur_idx = k + 1;
            if (cache_range(sp, g, off, FRAME_HDR) == -1)
                goto read_err;
            p = (const uint8_t *)sp->rc + (off - sp->rc_off);
            l = get32(p + 4);
            if (l > RECORD_MAX || cache_range(sp, g, off, FRAME_HDR + (size_t)l) == -1)
                goto read_err;
            p = (const uint8_t *)sp->rc + (off - sp->rc_off);
            if (!frame_valid(p, FRAME_HDR + (size_t)l, &l)) {
                set_err(err, errlen, "spool %s: segment %016" PRIx64 ": record at offset %" PRIu64 " is damaged",
                        sp->dir, g->no, off);
                record_ack(sp, g, k);
                return -1;
            }
            *seq = get64(p + 8);
            *data = (const char *)p + FRAME_HDR;
            *len = l;
            return 1;
read_err:
            set_err(err, errlen, "spool %s: segment %016" PRIx64 ": cannot read the record at offset %" PRIu64 ": %s",
                    sp->dir, g->no, off, errno != 0 ? strerror(errno) : "file too short");
            if (errno == 0)
                record_ack(sp, g, k);
            else
                sp->cur_idx = k; /* an I/O error may pass: try it again next time */
            return -1;
        }
    }
    if (sp->nsegs > 0) {
        sp->cur_no = sp->segs[sp->nsegs - 1]->no;
        sp->cur_idx = sp->segs[sp->nsegs - 1]->n;
    }
    return 0;
}

int audit_spool_ack(struct audit_spool *sp, uint64_t seq)
{
    for (size_t i = 0; i < sp->nsegs; i++) {
        struct seg *g = sp->segs[i];
        uint32_t k;

        if (g->nacked == g->n || seq < g->min_seq || seq > g->max_seq)
            continue;
        if (g->sorted) {
            uint32_t lo = 0, hi = g->n;

            while (lo < hi) {
                uint32_t mid = lo + (hi - lo) / 2;

                if (g->seqs[mid] < seq)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            for (k = lo; k < g->n && g->seqs[k] == seq; k++) {
                if (!is_acked(g, k)) {
                    record_ack(sp, g, k);
                    return 0;
                }
            }
            continue;
        }
        for (k = 0; k < g->n; k++) {
            if (g->seqs[k] == seq && !is_acked(g, k)) {
                record_ack(sp, g, k);
                return 0;
            }
        }
    }
    return -1;
}

void audit_spool_rewind(struct audit_spool *sp)
{
    sp->cur_no = 0;
    sp->cur_idx = 0;
}

uint64_t audit_spool_pending(const struct audit_spool *sp)
{
    return sp->pending;
}

uint64_t audit_spool_bytes(const struct audit_spool *sp)
{
    return sp->bytes;
}

void audit_spool_close(struct audit_spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->dir_fd != -1) {
        if (sp->wfd != -1)
            fdatasync(sp->wfd);
        flush_acks(sp);
        /* an acknowledged segment need not wait for the next start to go */
        for (size_t i = sp->nsegs; i-- > 0;) {
            if (sp->segs[i]->nacked == sp->segs[i]->n)
                unlink_seg_files(sp, sp->segs[i]->no);
        }
    }
    if (sp->wfd != -1)
        close(sp->wfd);
    if (sp->rfd != -1)
        close(sp->rfd);
    for (size_t i = 0; i < sp->nsegs; i++)
        seg_free(sp->segs[i]);
    free(sp->segs);
    for (size_t i = 0; i < sp->ndamage; i++)
        free(sp->damage[i]);
    free(sp->rc);
    if (sp->lock_fd != -1)
        close(sp->lock_fd);
    if (sp->dir_fd != -1)
        close(sp->dir_fd);
    free(sp->dir);
    free(sp);
}
