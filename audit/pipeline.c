/* audit/pipeline.c - the pipeline: ring -> redact -> serialize -> chain -> one queue per sink -> sinks.
 *
 * The pipeline thread pops events in batches of up to PIPELINE_BATCH, numbers them (seq
 * contiguous across restarts: opts.last_seq + 1, ...), passes each through the redaction
 * stage (audit/redaction.c: every string that can carry user data becomes its redacted form,
 * kept originals are sealed, and audit.key records announce each data key before its first
 * use), serializes the redacted copy, chains it (the
 * record's "chain" member, audit/segment.h), and copies the batch into the bounded queue of
 * every sink. Each sink has its own delivery thread that takes batches from its queue in
 * order and calls the sink's ops (write, tick, flush), so a slow or dead sink holds up the
 * others only once its own queue is full; then its on_full policy applies:
 *
 *   block  the pipeline thread waits for room in that queue: the ring backs up and its
 *          overflow policy applies (the other sinks get nothing new meanwhile);
 *   spill  the records go to a disk spool (audit/spool.h, <spool_dir>/<sink>/overflow) and
 *          every later record follows them there until the queue has room again and the
 *          spool is replayed into it, oldest first, so the sink still sees seq order;
 *   drop   the records are counted as lost for that sink; an audit.loss reports them.
 *
 *   ring ──► pipeline thread ──► evs[]: | audit.loss ... | popped events ..........|
 *                                buf:   {...,"seq":41,...,"chain":"..."}{...seq 42...}
 *                                obuf:  the same records in OCSF form (only if a sink wants it)
 *                 │ copy (one memcpy per batch and sink)
 *                 ├──► queue[0]: slot slot slot ... ──► delivery thread 0 ──► sink 0
 *                 └──► queue[1]: slot slot ...       ──► delivery thread 1 ──► sink 1
 *
 * A queue is a ring of slots, each a reusable byte buffer plus record offsets holding up to
 * a batch of records; a small batch is appended to the newest slot not yet taken by the
 * delivery thread, so the bound is in records, not in batches. Slots keep their memory:
 * no allocation per record or per batch once warm.
 *
 * Loss is never silent: the ring's lost and refused counts, records that could not be
 * serialized and every sink's losses (on_full drop, failed writes, its own <dropped>)
 * become audit.loss events that take the next seqs. A sink that asks to retry gets the same
 * records again after a back-off (10 ms doubling to 1 s) on its own thread while its ticks
 * go on. A sink that fails loses the batch, which is counted and reported.
 *
 * Threads: the pipeline thread alone touches the ring's consumer side, the chain, the
 * spools and the producer side of the queues; a delivery thread alone calls its sink's
 * write/tick/flush and touches s->dropped (moved into the queue's atomic <lost> after each
 * call). Stopping drains the ring, waits until every queue is empty, reports what was lost
 * meanwhile, then lets every delivery thread flush its sink and joins them. */
#include "audit/audit.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "audit/audit-int.h"
#include "audit/diag.h"
#include "audit/segment.h"
#include "audit/sink.h"
#include "audit/spool.h"

#define PIPELINE_IDLE_MAX_US 8000 /* longest sleep while the ring stays empty */
#define PIPELINE_BATCH 256
#define PIPELINE_LOSS_RING 3          /* ring overflow or ring full; serialization failure; redaction failure */
#define PIPELINE_RETRY_MIN_MS 10
#define PIPELINE_RETRY_MAX_MS 1000
#define PIPELINE_STOP_RETRY_MS 5000   /* while stopping, how long a retrying sink may hold the drain */
#define PIPELINE_FLUSH_MS 5000
#define PIPELINE_DIAG_INTERVAL_US (10 * 1000000LL)
#define PIPELINE_QUEUE_RECORDS 16384
#define PIPELINE_SPOOL_MAX (1024ULL * 1024 * 1024)

/* One diagnostic per interval for a recurring condition; the rest are counted. */
struct ratelimit {
    int64_t last_us; /* monotonic; 0 = never */
    uint64_t suppressed;
};

/* A batch of records in a queue: bytes back to back, and where each record starts. */
struct slot {
    char *buf;
    size_t len;
    size_t cap;
    struct sink_record *recs; /* data pointers are set by the delivery thread when it takes the slot */
    size_t *offs;
    size_t n;
};

struct audit_pipeline;

/* One sink's queue and delivery state. */
struct sinkq {
    struct audit_pipeline *p;
    struct sink *s;
    size_t idx;
    pthread_t thread;
    int started;
    int inited; /* mu and the conds exist */

    pthread_mutex_t mu;
    pthread_cond_t cv_data;  /* delivery thread: records or stop */
    pthread_cond_t cv_space; /* pipeline thread: room, or the queue went idle */
    struct slot *slots;
    size_t nslots;
    size_t head;    /* oldest filled slot */
    size_t count;   /* filled slots, the one being delivered included */
    int inflight;   /* slots[head] is being delivered (the producer must not append to it) */
    size_t queued;  /* records in the queue */
    int stop;       /* deliver what is queued, flush and exit */

    /* delivery thread */
    struct ratelimit rl;
    int64_t last_tick_us;
    _Atomic int abandon; /* stopping and the sink kept refusing past PIPELINE_STOP_RETRY_MS: drop */

    /* pipeline thread */
    struct audit_spool *spool;
    int spilling; /* records for this sink go to the spool until it is replayed */
    struct ratelimit prl;

    /* any thread */
    _Atomic uint64_t lost; /* not yet reported in an audit.loss */
    _Atomic uint64_t dropped_total;
    _Atomic uint64_t spilled_total;
    _Atomic uint64_t blocked_total;
    _Atomic uint64_t queued_pub;
};

struct audit_pipeline {
    struct audit_ring *ring;
    struct sinkq *q;
    size_t nsinks;
    unsigned idle_sleep_us;
    unsigned tick_ms;
    size_t slot_recs; /* records per slot: a whole batch, loss events included */
    int want_ocsf;

    pthread_t thread;
    int running;
    _Atomic int stop;
    _Atomic uint64_t seq_pub; /* last seq written, for other threads */
    uint64_t seq;             /* pipeline thread's copy */
    uint8_t chain[32];        /* chain of record <seq> */

    struct audit_event *evs; /* loss slots, then PIPELINE_BATCH popped events */
    size_t nloss_slots;
    struct sink_record *recs;
    size_t *offs;
    struct audit_buf buf;
    struct sink_record *orecs; /* OCSF form; len 0: could not be serialized */
    size_t *ooffs;
    struct audit_buf obuf;
    struct audit_buf sbuf; /* spool replay scratch */
    struct sink_record *srecs;
    size_t *soffs;

    uint64_t bad;            /* events that could not be serialized, not yet reported */
    struct ratelimit bad_rl;
    struct audit_redactor *red; /* NULL: no redaction stage */
    struct ratelimit red_rl;
    struct audit_event *rev;    /* the redacted copy of the event being written */
    struct audit_event *kev;    /* an audit.key record being written */
    uint64_t red_bad;           /* events the redaction stage could not process, not yet reported */
    _Atomic uint64_t red_lost;  /* total, for metrics */
    int64_t last_sinkloss_us; /* monotonic: when sink drops were last turned into events */
};

static int ratelimit_pass(struct ratelimit *rl, uint64_t *suppressed)
{
    int64_t now = audit_mono_us();

    if (rl->last_us != 0 && now - rl->last_us < PIPELINE_DIAG_INTERVAL_US) {
        rl->suppressed++;
        return 0;
    }
    rl->last_us = now;
    *suppressed = rl->suppressed;
    rl->suppressed = 0;
    return 1;
}

/* " (N similar messages suppressed)" into <buf>, or "" when none were. */
static const char *suppressed_note(char *buf, size_t len, uint64_t n)
{
    if (n == 0)
        return "";
    snprintf(buf, len, " (%llu similar messages suppressed)", (unsigned long long)n);
    return buf;
}

static const char *sink_name(const struct sink *s)
{
    return s->name != NULL ? s->name : s->ops->type;
}

static void sleep_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

/* CLOCK_MONOTONIC deadline <ms> from now, for pthread_cond_timedwait on a monotonic cond. */
static struct timespec deadline_ms(int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

/* Moves what the sink counted in s->dropped into the queue's lost count. Delivery thread. */
static void collect_dropped(struct sinkq *q)
{
    uint64_t d = q->s->dropped;

    if (d == 0)
        return;
    q->s->dropped = 0;
    atomic_fetch_add(&q->lost, d);
    atomic_fetch_add(&q->dropped_total, d);
}

/* ---- queues ---- */

static int slot_reserve(struct slot *sl, size_t need)
{
    size_t cap;
    char *b;

    if (sl->cap - sl->len >= need)
        return 0;
    cap = sl->cap != 0 ? sl->cap : 64 * 1024;
    while (cap - sl->len < need)
        cap *= 2;
    b = realloc(sl->buf, cap);
    if (b == NULL)
        return -1;
    sl->buf = b;
    sl->cap = cap;
    return 0;
}

/* Appends <n> records, whose bytes lie back to back from recs[0].data, to <sl>. Caller
 * holds the lock and checked the record count. 0, or -1 out of memory. */
static int slot_append(struct slot *sl, const struct sink_record *recs, size_t n)
{
    const char *base = recs[0].data;
    size_t bytes = (size_t)(recs[n - 1].data + recs[n - 1].len - base);

    if (slot_reserve(sl, bytes) == -1)
        return -1;
    memcpy(sl->buf + sl->len, base, bytes);
    for (size_t i = 0; i < n; i++) {
        sl->offs[sl->n + i] = sl->len + (size_t)(recs[i].data - base);
        sl->recs[sl->n + i] = recs[i];
    }
    sl->len += bytes;
    sl->n += n;
    return 0;
}

/* Places <n> contiguous records in <q> if there is room: 1 when placed, 0 when the queue
 * is full, -1 out of memory. Caller holds the lock. */
static int queue_put_locked(struct sinkq *q, const struct sink_record *recs, size_t n)
{
    struct audit_pipeline *p = q->p;
    struct slot *sl;

    if (q->count > 0) {
        size_t tail = (q->head + q->count - 1) % q->nslots;

        sl = &q->slots[tail];
        if (!(tail == q->head && q->inflight) && sl->n + n <= p->slot_recs)
            goto append;
    }
    if (q->count == q->nslots)
        return 0;
    sl = &q->slots[(q->head + q->count) % q->nslots];
    sl->n = 0;
    sl->len = 0;
    q->count++;
append:
    if (slot_append(sl, recs, n) == -1) {
        if (sl->n == 0)
            q->count--;
        return -1;
    }
    q->queued += n;
    atomic_store_explicit(&q->queued_pub, q->queued, memory_order_relaxed);
    pthread_cond_signal(&q->cv_data);
    return 1;
}

/* Whether a slot's worth of records would fit now. Caller holds the lock. */
static int queue_has_room_locked(const struct sinkq *q)
{
    return q->count < q->nslots;
}

static void count_lost(struct sinkq *q, size_t n)
{
    atomic_fetch_add(&q->lost, n);
    atomic_fetch_add(&q->dropped_total, n);
}

/* Appends <n> records to <q>'s spool. Records the spool refuses are lost and counted. */
static void spill(struct sinkq *q, const struct sink_record *recs, size_t n)
{
    uint64_t supp;
    char err[256], note[64];
    size_t failed = 0;

    for (size_t i = 0; i < n; i++) {
        if (audit_spool_append(q->spool, recs[i].seq, recs[i].data, recs[i].len, err, sizeof(err)) == -1) {
            failed++;
            continue;
        }
        atomic_fetch_add(&q->spilled_total, 1);
    }
    if (!q->spilling) {
        q->spilling = 1;
        diag_log(DIAG_WARN, "audit", "sink %s: queue full, spilling to disk", sink_name(q->s));
    }
    if (failed > 0) {
        count_lost(q, failed);
        if (ratelimit_pass(&q->prl, &supp))
            diag_log(DIAG_ERROR, "audit", "sink %s: spool refused %zu records (lost): %s%s", sink_name(q->s),
                     failed, err, suppressed_note(note, sizeof(note), supp));
    }
}

/* Moves spooled records into <q> while it has room, oldest first. Pipeline thread. Returns
 * 1 when the spool is empty (spilling is over), 0 otherwise. */
static int replay(struct audit_pipeline *p, struct sinkq *q)
{
    uint64_t supp;
    char err[256], note[64];

    /* a sink given up at shutdown would only drop them: they stay spooled for the next start */
    while (q->spilling && !atomic_load(&q->abandon)) {
        size_t n = 0;
        int room, rc = 0;

        pthread_mutex_lock(&q->mu);
        room = queue_has_room_locked(q);
        pthread_mutex_unlock(&q->mu);
        if (!room)
            return 0;
        p->sbuf.len = 0;
        while (n < p->slot_recs) {
            uint64_t seq;
            const char *data;
            size_t len;

            rc = audit_spool_next(q->spool, &seq, &data, &len, err, sizeof(err));
            if (rc == -1) {
                /* damage: the spool says how much; those records are lost, the rest follows */
                if (ratelimit_pass(&q->prl, &supp))
                    diag_log(DIAG_ERROR, "audit", "sink %s: spool: %s%s", sink_name(q->s), err,
                             suppressed_note(note, sizeof(note), supp));
                count_lost(q, 1);
                continue;
            }
            if (rc == 0)
                break;
            p->soffs[n] = p->sbuf.len;
            if (audit_buf_append(&p->sbuf, data, len) == -1) {
                count_lost(q, 1);
                audit_spool_ack(q->spool, seq);
                continue;
            }
            p->srecs[n].len = len;
            p->srecs[n].seq = seq;
            p->srecs[n].time_us = 0;
            n++;
        }
        if (n > 0) {
            int put;

            for (size_t i = 0; i < n; i++)
                p->srecs[i].data = p->sbuf.data + p->soffs[i];
            pthread_mutex_lock(&q->mu);
            put = queue_put_locked(q, p->srecs, n);
            pthread_mutex_unlock(&q->mu);
            if (put != 1) {
                /* cannot happen with room checked, bar ENOMEM: hand them out again later */
                audit_spool_rewind(q->spool);
                return 0;
            }
            /* handed to the sink's queue: the spool may give the space back */
            for (size_t i = 0; i < n; i++)
                audit_spool_ack(q->spool, p->srecs[i].seq);
        }
        if (rc == 0 && audit_spool_pending(q->spool) == 0) {
            q->spilling = 0;
            diag_log(DIAG_INFO, "audit", "sink %s: spool replayed, queue back in use", sink_name(q->s));
        }
        if (n == 0)
            break;
    }
    return !q->spilling;
}

/* Hands <n> contiguous records to sink queue <q> following its on_full policy. Pipeline
 * thread. */
static void enqueue(struct audit_pipeline *p, struct sinkq *q, const struct sink_record *recs, size_t n)
{
    uint64_t supp;
    char note[64];
    int blocked = 0;

    if (q->spool != NULL && q->spilling) {
        replay(p, q);
        if (q->spilling) {
            spill(q, recs, n);
            return;
        }
    }
    pthread_mutex_lock(&q->mu);
    for (;;) {
        int rc = queue_put_locked(q, recs, n);

        if (rc == 1)
            break;
        if (rc == -1) {
            pthread_mutex_unlock(&q->mu);
            count_lost(q, n);
            if (ratelimit_pass(&q->prl, &supp))
                diag_log(DIAG_ERROR, "audit", "sink %s: out of memory, %zu records dropped%s", sink_name(q->s), n,
                         suppressed_note(note, sizeof(note), supp));
            return;
        }
        /* full */
        if (q->s->on_full == SINK_ON_FULL_DROP) {
            pthread_mutex_unlock(&q->mu);
            count_lost(q, n);
            if (ratelimit_pass(&q->prl, &supp))
                diag_log(DIAG_WARN, "audit", "sink %s: queue full, dropping records (on_full drop)%s",
                         sink_name(q->s), suppressed_note(note, sizeof(note), supp));
            return;
        }
        if (q->s->on_full == SINK_ON_FULL_SPILL && q->spool != NULL) {
            pthread_mutex_unlock(&q->mu);
            spill(q, recs, n);
            return;
        }
        if (!blocked) {
            blocked = 1;
            atomic_fetch_add(&q->blocked_total, 1);
        }
        pthread_cond_wait(&q->cv_space, &q->mu);
    }
    pthread_mutex_unlock(&q->mu);
}

/* Waits until every queue is empty and no delivery is in progress. Pipeline thread. */
static void wait_idle(struct audit_pipeline *p)
{
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];

        for (;;) {
            int more;

            if (q->spool != NULL && q->spilling)
                replay(p, q);
            pthread_mutex_lock(&q->mu);
            while (q->count > 0)
                pthread_cond_wait(&q->cv_space, &q->mu);
            pthread_mutex_unlock(&q->mu);
            /* a spool that still holds records after the sink gave up stays for the next start */
            more = q->spool != NULL && q->spilling && !atomic_load(&q->abandon);
            if (!more)
                break;
        }
    }
}

/* ---- delivery threads ---- */

static void tick_if_due(struct sinkq *q)
{
    int64_t now = audit_mono_us();

    if (now - q->last_tick_us < (int64_t)q->p->tick_ms * 1000)
        return;
    q->last_tick_us = now;
    q->s->ops->tick(q->s, audit_now_us());
    collect_dropped(q);
}

/* Writes <n> records to the sink until it accepts or fails them. Delivery thread. */
static void deliver(struct sinkq *q, const struct sink_record *recs, size_t n)
{
    struct audit_pipeline *p = q->p;
    struct sink *s = q->s;
    int64_t delay_ms = PIPELINE_RETRY_MIN_MS, waited_ms = 0;
    uint64_t supp;
    char note[64];

    if (atomic_load(&q->abandon)) {
        count_lost(q, n);
        return;
    }
    for (;;) {
        enum sink_result r = s->ops->write(s, recs, n);

        collect_dropped(q);
        if (r == SINK_OK)
            return;
        if (r == SINK_RETRY) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire) && waited_ms >= PIPELINE_STOP_RETRY_MS) {
                diag_log(DIAG_ERROR, "audit", "sink %s: still retrying at shutdown, dropping what is queued",
                         sink_name(s));
                atomic_store(&q->abandon, 1);
                count_lost(q, n);
                return;
            }
            if (ratelimit_pass(&q->rl, &supp))
                diag_log(DIAG_WARN, "audit", "sink %s: write deferred (%zu records), retrying in %lld ms%s",
                         sink_name(s), n, (long long)delay_ms, suppressed_note(note, sizeof(note), supp));
            /* Sleep in tick-sized steps so time-driven sink work (reconnects) goes on. */
            for (int64_t left = delay_ms; left > 0;) {
                int64_t step = left < (int64_t)p->tick_ms ? left : (int64_t)p->tick_ms;

                sleep_us(step * 1000);
                left -= step;
                tick_if_due(q);
            }
            waited_ms += delay_ms;
            delay_ms = delay_ms * 2 > PIPELINE_RETRY_MAX_MS ? PIPELINE_RETRY_MAX_MS : delay_ms * 2;
            continue;
        }
        /* SINK_FAIL, or a result the interface does not know: the batch is lost there. */
        count_lost(q, n);
        if (ratelimit_pass(&q->rl, &supp))
            diag_log(DIAG_ERROR, "audit", "sink %s: write failed, %zu records dropped%s", sink_name(s), n,
                     suppressed_note(note, sizeof(note), supp));
        return;
    }
}

static void *delivery_main(void *arg)
{
    struct sinkq *q = arg;
    struct sink *s = q->s;
    uint64_t supp;

    q->last_tick_us = audit_mono_us();
    pthread_mutex_lock(&q->mu);
    for (;;) {
        struct slot *sl;
        size_t n;

        while (q->count == 0 && !q->stop) {
            struct timespec ts = deadline_ms(q->p->tick_ms);

            pthread_cond_timedwait(&q->cv_data, &q->mu, &ts);
            if (q->count == 0) {
                pthread_mutex_unlock(&q->mu);
                tick_if_due(q);
                pthread_mutex_lock(&q->mu);
            }
        }
        if (q->count == 0)
            break; /* stop, and nothing left */
        sl = &q->slots[q->head];
        q->inflight = 1;
        n = sl->n;
        pthread_mutex_unlock(&q->mu);

        for (size_t i = 0; i < n; i++)
            sl->recs[i].data = sl->buf + sl->offs[i];
        deliver(q, sl->recs, n);

        pthread_mutex_lock(&q->mu);
        sl->n = 0;
        sl->len = 0;
        q->head = (q->head + 1) % q->nslots;
        q->count--;
        q->inflight = 0;
        q->queued -= n;
        atomic_store_explicit(&q->queued_pub, q->queued, memory_order_relaxed);
        pthread_cond_broadcast(&q->cv_space);
        pthread_mutex_unlock(&q->mu);
        tick_if_due(q);
        pthread_mutex_lock(&q->mu);
    }
    pthread_mutex_unlock(&q->mu);
    if (s->ops->flush(s, PIPELINE_FLUSH_MS) == -1 && ratelimit_pass(&q->rl, &supp))
        diag_log(DIAG_ERROR, "audit", "sink %s: flush at shutdown did not complete", sink_name(s));
    collect_dropped(q);
    return NULL;
}

/* ---- the pipeline thread ---- */

static void free_queue(struct sinkq *q)
{
    for (size_t i = 0; q->slots != NULL && i < q->nslots; i++) {
        free(q->slots[i].buf);
        free(q->slots[i].recs);
        free(q->slots[i].offs);
    }
    free(q->slots);
    q->slots = NULL;
    if (q->inited) {
        pthread_cond_destroy(&q->cv_data);
        pthread_cond_destroy(&q->cv_space);
        pthread_mutex_destroy(&q->mu);
        q->inited = 0;
    }
    audit_spool_close(q->spool);
    q->spool = NULL;
}

/* mkdir -p of <path>, mode 0700 for what it creates. */
static int make_dirs(const char *path)
{
    char tmp[4096];
    size_t len = strlen(path);

    if (len >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, len + 1);
    for (char *c = tmp + 1; *c != '\0'; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(tmp, 0700) == -1 && errno != EEXIST)
            return -1;
        *c = '/';
    }
    return mkdir(tmp, 0700) == -1 && errno != EEXIST ? -1 : 0;
}

static int init_queue(struct audit_pipeline *p, struct sinkq *q, size_t queue_records, const char *spool_dir,
                      uint64_t spool_max, char *err, size_t errlen)
{
    pthread_condattr_t ca;

    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cv_data, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&q->cv_space, NULL);
    q->inited = 1;
    q->nslots = queue_records / p->slot_recs;
    if (q->nslots < 2)
        q->nslots = 2;
    q->slots = calloc(q->nslots, sizeof(*q->slots));
    if (q->slots == NULL)
        goto nomem;
    for (size_t i = 0; i < q->nslots; i++) {
        q->slots[i].recs = malloc(p->slot_recs * sizeof(*q->slots[i].recs));
        q->slots[i].offs = malloc(p->slot_recs * sizeof(*q->slots[i].offs));
        if (q->slots[i].recs == NULL || q->slots[i].offs == NULL)
            goto nomem;
    }
    if (q->s->on_full == SINK_ON_FULL_SPILL && spool_dir != NULL) {
        char dir[4096], serr[512];

        if (snprintf(dir, sizeof(dir), "%s/%s/overflow", spool_dir, sink_name(q->s)) >= (int)sizeof(dir) ||
            make_dirs(dir) == -1) {
            snprintf(err, errlen, "audit pipeline: sink %s: cannot create %s: %s", sink_name(q->s), dir,
                     strerror(errno));
            return -1;
        }
        q->spool = audit_spool_open(dir, spool_max, serr, sizeof(serr));
        if (q->spool == NULL) {
            snprintf(err, errlen, "audit pipeline: sink %s: %s", sink_name(q->s), serr);
            return -1;
        }
        if (audit_spool_pending(q->spool) > 0) {
            /* an earlier process spilled: those records go first */
            q->spilling = 1;
            diag_log(DIAG_INFO, "audit", "sink %s: %" PRIu64 " spooled records to replay", sink_name(q->s),
                     audit_spool_pending(q->spool));
        }
    }
    return 0;

nomem:
    snprintf(err, errlen, "audit pipeline: out of memory");
    return -1;
}

struct audit_pipeline *audit_pipeline_new(struct audit_ring *ring, struct sink *const *sinks, size_t nsinks,
                                          const struct audit_pipeline_opts *o, char *err, size_t errlen)
{
    struct audit_pipeline *p;
    size_t nev, queue_records;

    if (ring == NULL) {
        snprintf(err, errlen, "audit pipeline: no ring");
        return NULL;
    }
    for (size_t i = 0; i < nsinks; i++) {
        const struct sink_ops *ops = sinks[i] != NULL ? sinks[i]->ops : NULL;

        if (ops == NULL || ops->write == NULL || ops->tick == NULL || ops->flush == NULL) {
            snprintf(err, errlen, "audit pipeline: sinks[%zu]: incomplete sink", i);
            return NULL;
        }
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(err, errlen, "audit pipeline: out of memory");
        return NULL;
    }
    p->ring = ring;
    p->nsinks = nsinks;
    p->idle_sleep_us = o != NULL && o->idle_sleep_us != 0 ? o->idle_sleep_us : 1000;
    p->tick_ms = o != NULL && o->tick_ms != 0 ? o->tick_ms : 100;
    p->seq = o != NULL ? o->last_seq : 0;
    if (o != NULL)
        memcpy(p->chain, o->last_chain, sizeof(p->chain));
    queue_records = o != NULL && o->queue_records != 0 ? o->queue_records : PIPELINE_QUEUE_RECORDS;
    p->nloss_slots = PIPELINE_LOSS_RING + nsinks;
    nev = p->nloss_slots + PIPELINE_BATCH;
    p->slot_recs = nev;
    p->q = calloc(nsinks + 1, sizeof(*p->q));
    p->evs = malloc(nev * sizeof(*p->evs));
    p->recs = malloc(nev * sizeof(*p->recs));
    p->offs = malloc(nev * sizeof(*p->offs));
    p->orecs = malloc(nev * sizeof(*p->orecs));
    p->ooffs = malloc(nev * sizeof(*p->ooffs));
    p->srecs = malloc(nev * sizeof(*p->srecs));
    p->soffs = malloc(nev * sizeof(*p->soffs));
    audit_buf_init(&p->buf, 0);
    audit_buf_init(&p->obuf, 0);
    audit_buf_init(&p->sbuf, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->seq_pub, p->seq);
    if (p->q == NULL || p->evs == NULL || p->recs == NULL || p->offs == NULL || p->orecs == NULL ||
        p->ooffs == NULL || p->srecs == NULL || p->soffs == NULL) {
        snprintf(err, errlen, "audit pipeline: out of memory");
        goto fail;
    }
    atomic_init(&p->red_lost, 0);
    if (o != NULL && o->keys_dir != NULL) {
        p->rev = malloc(sizeof(*p->rev));
        p->kev = malloc(sizeof(*p->kev));
        if (p->rev == NULL || p->kev == NULL) {
            snprintf(err, errlen, "audit pipeline: out of memory");
            goto fail;
        }
        /* compiled now, not lazily on the pipeline thread: once vigil says "ready", records flow */
        if (audit_redactor_new(&p->red, o->redaction, o->keys_dir, err, errlen) == -1 ||
            (p->red != NULL && audit_redactor_compile(p->red, err, errlen) == -1))
            goto fail;
    }
    for (size_t i = 0; i < nsinks; i++) {
        struct sinkq *q = &p->q[i];

        q->p = p;
        q->s = sinks[i];
        q->idx = i;
        if (sinks[i]->format == SINK_FORMAT_OCSF)
            p->want_ocsf = 1;
        if (init_queue(p, q, queue_records, o != NULL ? o->spool_dir : NULL,
                       o != NULL && o->spool_max_bytes != 0 ? o->spool_max_bytes : PIPELINE_SPOOL_MAX, err,
                       errlen) == -1)
            goto fail;
    }
    return p;

fail:
    audit_pipeline_free(p);
    return NULL;
}

/* Serializes <ev> as record <seq> chained after p->chain into p->buf; advances the chain.
 * 0, or -1 (nothing appended). */
static int serialize(struct audit_pipeline *p, const struct audit_event *ev, uint64_t seq, char hex[65])
{
    static const char member[] = ",\"chain\":\"";
    size_t off = p->buf.len;
    uint8_t next[32];

    if (audit_event_to_json(ev, seq, &p->buf) == -1) {
        p->buf.len = off;
        return -1;
    }
    /* chain over the object as serialized, then the member goes in before its brace */
    audit_chain_next(p->chain, p->buf.data + off, p->buf.len - off, next);
    sodium_bin2hex(hex, 65, next, 32);
    p->buf.len--;
    if (audit_buf_append(&p->buf, member, sizeof(member) - 1) == -1 || audit_buf_append(&p->buf, hex, 64) == -1 ||
        audit_buf_append(&p->buf, "\"}", 2) == -1) {
        p->buf.len = off;
        return -1;
    }
    memcpy(p->chain, next, 32);
    return 0;
}

/* Hands the <nrec> records serialized in p->buf (and p->obuf; <obad> of them without an
 * OCSF form) to every sink's queue, then empties the buffers. */
static void hand_out(struct audit_pipeline *p, size_t nrec, size_t obad)
{
    if (nrec == 0)
        goto done;
    /* The buffers may have moved while they grew: point the records into them only now. */
    for (size_t i = 0; i < nrec; i++) {
        p->recs[i].data = p->buf.data + p->offs[i];
        if (p->want_ocsf)
            p->orecs[i].data = p->obuf.data + p->ooffs[i];
    }
    atomic_store_explicit(&p->seq_pub, p->seq, memory_order_release);
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];

        if (q->s->format != SINK_FORMAT_OCSF) {
            enqueue(p, q, p->recs, nrec);
            continue;
        }
        if (obad == 0) {
            enqueue(p, q, p->orecs, nrec);
            continue;
        }
        /* records whose OCSF form failed (out of memory) are lost to OCSF sinks only */
        count_lost(q, obad);
        for (size_t a = 0; a < nrec;) {
            size_t b = a;

            while (b < nrec && p->orecs[b].len > 0)
                b++;
            if (b > a)
                enqueue(p, q, p->orecs + a, b - a);
            a = b + 1;
        }
    }
done:
    p->buf.len = 0;
    p->obuf.len = 0;
}

/* Serializes <ev> as the next record into p->buf (and p->obuf), handing out what is there
 * first when a queue slot's worth is waiting. 0, or -1 (not serialized: counted). */
static int add_record(struct audit_pipeline *p, const struct audit_event *ev, size_t *nrec, size_t *obad)
{
    size_t off, i;
    uint64_t supp;
    char hex[65], note[64];

    if (*nrec == p->slot_recs) {
        hand_out(p, *nrec, *obad);
        *nrec = 0;
        *obad = 0;
    }
    i = *nrec;
    off = p->buf.len;
    if (serialize(p, ev, p->seq + 1, hex) == -1) {
        p->bad++;
        if (ratelimit_pass(&p->bad_rl, &supp))
            diag_log(DIAG_ERROR, "audit", "event of kind %u could not be serialized%s", (unsigned)ev->kind,
                     suppressed_note(note, sizeof(note), supp));
        return -1;
    }
    p->seq++;
    p->offs[i] = off;
    p->recs[i].len = p->buf.len - off;
    p->recs[i].seq = p->seq;
    p->recs[i].time_us = ev->time_us;
    if (p->want_ocsf) {
        size_t ooff = p->obuf.len;

        p->ooffs[i] = ooff;
        p->orecs[i] = p->recs[i];
        if (audit_event_to_ocsf(ev, p->seq, hex, &p->obuf) == -1) {
            p->obuf.len = ooff;
            (*obad)++;
        }
        p->orecs[i].len = p->obuf.len - ooff;
    }
    (*nrec)++;
    return 0;
}

/* Redacts, serializes and hands out <n> events with the next seqs; audit.key records go in
 * before the first record that uses their key. */
static void write_batch(struct audit_pipeline *p, const struct audit_event *evs, size_t n)
{
    size_t nrec = 0, obad = 0;
    uint64_t supp;
    char note[64];

    p->buf.len = 0;
    p->obuf.len = 0;
    for (size_t i = 0; i < n; i++) {
        const struct audit_event *ev = &evs[i];

        if (p->red != NULL) {
            /* audit.loss (and audit.key) are the pipeline's own: nothing of a user in them */
            int own = ev->kind == AUDIT_EVENT_AUDIT_LOSS || ev->kind == AUDIT_EVENT_AUDIT_KEY;

            audit_redactor_rotate_if_due(p->red);
            if (!own && audit_redactor_prepare(p->red, ev) == -1) {
                /* never written unredacted: lost, and reported as such */
                p->red_bad++;
                atomic_fetch_add_explicit(&p->red_lost, 1, memory_order_relaxed);
                if (ratelimit_pass(&p->red_rl, &supp))
                    diag_log(DIAG_ERROR, "audit", "redaction failed (no detectors, or out of memory): event of "
                             "kind %u not written, counted as lost%s",
                             (unsigned)ev->kind, suppressed_note(note, sizeof(note), supp));
                continue;
            }
            while (audit_redactor_key_event(p->red, p->kev))
                if (add_record(p, p->kev, &nrec, &obad) == -1)
                    audit_redactor_key_failed(p->red);
            if (!own) {
                audit_redactor_finish(p->red, ev, p->seq + 1, p->rev);
                ev = p->rev;
            }
        }
        add_record(p, ev, &nrec, &obad);
    }
    hand_out(p, nrec, obad);
}

static void loss_event(struct audit_event *ev, const char *reason, size_t rlen, uint64_t lost, uint64_t refused)
{
    audit_event_init(ev, AUDIT_EVENT_AUDIT_LOSS);
    audit_event_set_str(ev, AUDIT_STR_REASON, reason, rlen);
    ev->lost = lost;
    ev->refused = refused;
}

/* Fills audit.loss events for what was lost since the last report, ending at <end> (the
 * slots just before the batch), and returns how many. Sink losses are reported when <sinks>
 * is set: not on every idle loop, or a sink that fails everything would be fed a stream of
 * loss events about its own failures. */
static size_t loss_events(struct audit_pipeline *p, struct audit_event *end, int sinks)
{
    struct audit_event *ev = end - p->nloss_slots;
    size_t n = 0;
    uint64_t lost = audit_ring_take_lost(p->ring), refused = audit_ring_take_refused(p->ring);

    if (lost > 0)
        loss_event(&ev[n++], "ring_overflow", 13, lost, refused);
    else if (refused > 0)
        loss_event(&ev[n++], "ring_full", 9, 0, refused);
    if (p->bad > 0) {
        loss_event(&ev[n++], "serialize_failure", 17, p->bad, 0);
        p->bad = 0;
    }
    if (p->red_bad > 0) {
        loss_event(&ev[n++], "redaction_failure", 17, p->red_bad, 0);
        p->red_bad = 0;
    }
    for (size_t i = 0; sinks && i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];
        uint64_t d = atomic_exchange(&q->lost, 0);
        char reason[256];
        int len;

        if (d == 0)
            continue;
        len = snprintf(reason, sizeof(reason), "sink_failure:%s", sink_name(q->s));
        if (len < 0)
            len = 0;
        if ((size_t)len >= sizeof(reason))
            len = sizeof(reason) - 1;
        loss_event(&ev[n++], reason, (size_t)len, d, 0);
    }
    if (sinks)
        p->last_sinkloss_us = audit_mono_us();
    /* Move them next to the batch so the whole write is one contiguous array. */
    if (n > 0 && n < p->nloss_slots)
        memmove(end - n, ev, n * sizeof(*ev));
    return n;
}

static void *pipeline_main(void *arg)
{
    struct audit_pipeline *p = arg;
    struct audit_event *batch = p->evs + p->nloss_slots;
    unsigned idle_us = p->idle_sleep_us;

    p->last_sinkloss_us = audit_mono_us();
    for (;;) {
        /* Read the flag before popping: once it is set the producers have stopped, so an
         * empty pop after it means the ring is drained. */
        int stopping = atomic_load_explicit(&p->stop, memory_order_acquire);
        size_t n = 0, nloss;
        int sinkloss;

        while (n < PIPELINE_BATCH && audit_ring_pop(p->ring, &batch[n]) == 0)
            n++;
        sinkloss = n > 0 || audit_mono_us() - p->last_sinkloss_us >= (int64_t)p->tick_ms * 1000;
        nloss = loss_events(p, batch, sinkloss);
        if (n + nloss > 0)
            write_batch(p, batch - nloss, n + nloss);
        for (size_t i = 0; i < p->nsinks; i++) {
            if (p->q[i].spilling)
                replay(p, &p->q[i]);
        }
        /* A full batch: more is waiting. Otherwise let events accumulate rather than wake for
         * each one (fewer, larger batches and fewer wake-ups competing with the workers), and
         * back off further while the ring stays empty, up to PIPELINE_IDLE_MAX_US. */
        if (n == PIPELINE_BATCH) {
            idle_us = p->idle_sleep_us;
        } else if (n > 0) {
            idle_us = p->idle_sleep_us;
            sleep_us(idle_us);
        } else {
            if (stopping)
                break;
            sleep_us(idle_us);
            if (idle_us < PIPELINE_IDLE_MAX_US)
                idle_us = idle_us * 2 < PIPELINE_IDLE_MAX_US ? idle_us * 2 : PIPELINE_IDLE_MAX_US;
        }
    }

    /* Drained: once the sinks have caught up, report what is still counted as lost. */
    for (int round = 0; round < 3; round++) {
        size_t nloss;

        wait_idle(p);
        nloss = loss_events(p, batch, 1);
        if (nloss == 0)
            break;
        write_batch(p, batch - nloss, nloss);
    }
    wait_idle(p);
    return NULL;
}

/* Stops and joins the delivery threads (each flushes its sink first). */
static void stop_delivery(struct audit_pipeline *p)
{
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];

        if (!q->started)
            continue;
        pthread_mutex_lock(&q->mu);
        q->stop = 1;
        pthread_cond_signal(&q->cv_data);
        pthread_mutex_unlock(&q->mu);
    }
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];
        uint64_t left;

        if (!q->started)
            continue;
        pthread_join(q->thread, NULL);
        q->started = 0;
        left = atomic_exchange(&q->lost, 0);
        if (left > 0)
            diag_log(DIAG_ERROR, "audit", "sink %s: %" PRIu64 " records lost at shutdown", sink_name(q->s), left);
    }
}

int audit_pipeline_start(struct audit_pipeline *p, char *err, size_t errlen)
{
    sigset_t all, old;
    int rc = 0;

    if (p->running) {
        snprintf(err, errlen, "audit pipeline: already running");
        return -1;
    }
    atomic_store(&p->stop, 0);
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sinkq *q = &p->q[i];

        /* what the sink counted before it was handed to us is reported first */
        atomic_fetch_add(&q->lost, q->s->dropped);
        q->s->dropped = 0;
        q->stop = 0;
        atomic_store(&q->abandon, 0);
    }
    /* The threads block every signal: SIGTERM and SIGHUP belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (size_t i = 0; i < p->nsinks && rc == 0; i++) {
        struct sinkq *q = &p->q[i];
        char name[32];

        rc = pthread_create(&q->thread, NULL, delivery_main, q);
        if (rc == 0) {
            q->started = 1;
            snprintf(name, sizeof(name), "vigil-sink-%zu", i % 10000);
            name[15] = '\0'; /* the kernel's limit */
            pthread_setname_np(q->thread, name);
        }
    }
    if (rc == 0)
        rc = pthread_create(&p->thread, NULL, pipeline_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        stop_delivery(p);
        snprintf(err, errlen, "audit pipeline: pthread_create: %s", strerror(rc));
        return -1;
    }
    pthread_setname_np(p->thread, "vigil-audit");
    p->running = 1;
    return 0;
}

void audit_pipeline_stop(struct audit_pipeline *p)
{
    if (p == NULL || !p->running)
        return;
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    pthread_join(p->thread, NULL);
    stop_delivery(p);
    p->running = 0;
}

void audit_pipeline_free(struct audit_pipeline *p)
{
    if (p == NULL)
        return;
    audit_pipeline_stop(p);
    for (size_t i = 0; p->q != NULL && i < p->nsinks; i++)
        free_queue(&p->q[i]);
    audit_buf_fini(&p->buf);
    audit_buf_fini(&p->obuf);
    audit_buf_fini(&p->sbuf);
    audit_redactor_free(p->red);
    free(p->rev);
    free(p->kev);
    free(p->soffs);
    free(p->srecs);
    free(p->ooffs);
    free(p->orecs);
    free(p->offs);
    free(p->recs);
    free(p->evs);
    free(p->q);
    free(p);
}

uint64_t audit_pipeline_seq(const struct audit_pipeline *p)
{
    return atomic_load_explicit(&((struct audit_pipeline *)p)->seq_pub, memory_order_acquire);
}

void audit_pipeline_sink_stats(const struct audit_pipeline *p, size_t i, struct audit_pipeline_sink_stats *out)
{
    struct sinkq *q;

    memset(out, 0, sizeof(*out));
    if (i >= p->nsinks)
        return;
    q = &((struct audit_pipeline *)p)->q[i];
    out->queued = atomic_load_explicit(&q->queued_pub, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&q->dropped_total, memory_order_relaxed);
    out->spilled = atomic_load_explicit(&q->spilled_total, memory_order_relaxed);
    out->blocked = atomic_load_explicit(&q->blocked_total, memory_order_relaxed);
}

int audit_pipeline_redaction_stats(const struct audit_pipeline *p, struct audit_redaction_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p->red == NULL)
        return -1;
    audit_redactor_stats(p->red, out);
    out->lost = atomic_load_explicit(&((struct audit_pipeline *)p)->red_lost, memory_order_relaxed);
    return 0;
}

size_t audit_pipeline_redaction_counts(const struct audit_pipeline *p, struct audit_redaction_count *out,
                                       size_t max)
{
    return p->red != NULL ? audit_redactor_counts(p->red, out, max) : 0;
}
