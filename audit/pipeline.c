/* audit/pipeline.c - the pipeline thread: ring -> serialize -> sinks.
 *
 * One thread pops events in batches of up to PIPELINE_BATCH, numbers them (seq 1, 2, ...,
 * contiguous across the life of the pipeline), serializes each into one batch buffer and hands
 * the batch to every sink through its ops table:
 *
 *   evs[]:  | audit.loss ... | popped events ...........|
 *             ^ prepended when the ring lost or refused, or a sink dropped, since the last batch
 *   buf:    {"schema":...,"seq":41,...}{"schema":...,"seq":42,...}...
 *   recs[]: {data -> buf, len, seq, time_us} per record
 *
 * Loss is never silent: before a batch, the ring's lost and refused counts and every sink's
 * <dropped> become audit.loss events that take the next seqs. A sink that asks to retry gets
 * the same batch again after a back-off (10 ms doubling to 1 s) while ticks go on; the ring
 * absorbs the pause and its overflow policy applies when it fills. A sink that fails loses
 * the batch, which is added to its <dropped> and reported.
 *
 * Only this thread touches the sinks and their <dropped> counters. Stopping drains the ring
 * completely, reports what remains lost, flushes every sink and joins. */
#include "audit/audit.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/audit-int.h"
#include "audit/diag.h"
#include "audit/sink.h"

#define PIPELINE_IDLE_MAX_US 8000 /* longest sleep while the ring stays empty */
#define PIPELINE_BATCH 256
#define PIPELINE_LOSS_RING 2          /* ring overflow or ring full; serialization failure */
#define PIPELINE_RETRY_MIN_MS 10
#define PIPELINE_RETRY_MAX_MS 1000
#define PIPELINE_STOP_RETRY_MS 5000   /* while stopping, how long a retrying sink may hold the drain */
#define PIPELINE_FLUSH_MS 5000
#define PIPELINE_DIAG_INTERVAL_US (10 * 1000000LL)

/* One diagnostic per interval for a recurring condition; the rest are counted. */
struct ratelimit {
    int64_t last_us; /* monotonic; 0 = never */
    uint64_t suppressed;
};

struct audit_pipeline {
    struct audit_ring *ring;
    struct sink **sinks;
    struct ratelimit *sink_rl; /* per sink */
    size_t nsinks;
    unsigned idle_sleep_us;
    unsigned tick_ms;

    pthread_t thread;
    int running;
    _Atomic int stop;
    _Atomic uint64_t seq_pub; /* last seq written, for other threads */
    uint64_t seq;             /* pipeline thread's copy */

    struct audit_event *evs; /* loss slots, then PIPELINE_BATCH popped events */
    size_t nloss_slots;
    struct sink_record *recs;
    size_t *offs;
    struct audit_buf buf;

    uint64_t bad;            /* events that could not be serialized, not yet reported */
    struct ratelimit bad_rl;
    int64_t last_tick_us;    /* monotonic */
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

struct audit_pipeline *audit_pipeline_new(struct audit_ring *ring, struct sink *const *sinks, size_t nsinks,
                                          const struct audit_pipeline_opts *o, char *err, size_t errlen)
{
    struct audit_pipeline *p;
    size_t nev;

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
    if (p == NULL)
        goto nomem;
    p->ring = ring;
    p->nsinks = nsinks;
    p->idle_sleep_us = o != NULL && o->idle_sleep_us != 0 ? o->idle_sleep_us : 1000;
    p->tick_ms = o != NULL && o->tick_ms != 0 ? o->tick_ms : 100;
    p->seq = o != NULL ? o->last_seq : 0;
    p->nloss_slots = PIPELINE_LOSS_RING + nsinks;
    nev = p->nloss_slots + PIPELINE_BATCH;
    p->sinks = calloc(nsinks + 1, sizeof(*p->sinks));
    p->sink_rl = calloc(nsinks + 1, sizeof(*p->sink_rl));
    p->evs = malloc(nev * sizeof(*p->evs));
    p->recs = malloc(nev * sizeof(*p->recs));
    p->offs = malloc(nev * sizeof(*p->offs));
    if (p->sinks == NULL || p->sink_rl == NULL || p->evs == NULL || p->recs == NULL || p->offs == NULL)
        goto nomem;
    for (size_t i = 0; i < nsinks; i++)
        p->sinks[i] = sinks[i];
    audit_buf_init(&p->buf, 0);
    atomic_init(&p->stop, 0);
    atomic_init(&p->seq_pub, p->seq);
    return p;

nomem:
    snprintf(err, errlen, "audit pipeline: out of memory");
    audit_pipeline_free(p);
    return NULL;
}

static void sleep_us(int64_t us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

static void tick_if_due(struct audit_pipeline *p)
{
    int64_t now = audit_mono_us(), wall;

    if (now - p->last_tick_us < (int64_t)p->tick_ms * 1000)
        return;
    p->last_tick_us = now;
    wall = audit_now_us();
    for (size_t i = 0; i < p->nsinks; i++)
        p->sinks[i]->ops->tick(p->sinks[i], wall);
}

/* Writes <n> records to sink <i> until it accepts or fails them. */
static void write_sink(struct audit_pipeline *p, size_t i, const struct sink_record *recs, size_t n)
{
    struct sink *s = p->sinks[i];
    int64_t delay_ms = PIPELINE_RETRY_MIN_MS, waited_ms = 0;
    uint64_t supp;
    char note[64];

    for (;;) {
        enum sink_result r = s->ops->write(s, recs, n);

        if (r == SINK_OK)
            return;
        if (r == SINK_RETRY) {
            if (atomic_load_explicit(&p->stop, memory_order_acquire) && waited_ms >= PIPELINE_STOP_RETRY_MS) {
                diag_log(DIAG_ERROR, "audit", "sink %s: still retrying at shutdown, %zu records dropped",
                         sink_name(s), n);
                s->dropped += n;
                return;
            }
            if (ratelimit_pass(&p->sink_rl[i], &supp))
                diag_log(DIAG_WARN, "audit", "sink %s: write deferred (%zu records), retrying in %lld ms%s",
                         sink_name(s), n, (long long)delay_ms, suppressed_note(note, sizeof(note), supp));
            /* Sleep in tick-sized steps so time-driven sink work (reconnects) goes on. */
            for (int64_t left = delay_ms; left > 0;) {
                int64_t step = left < (int64_t)p->tick_ms ? left : (int64_t)p->tick_ms;

                sleep_us(step * 1000);
                left -= step;
                tick_if_due(p);
            }
            waited_ms += delay_ms;
            delay_ms = delay_ms * 2 > PIPELINE_RETRY_MAX_MS ? PIPELINE_RETRY_MAX_MS : delay_ms * 2;
            continue;
        }
        /* SINK_FAIL, or a result the interface does not know: the batch is lost there. */
        s->dropped += n;
        if (ratelimit_pass(&p->sink_rl[i], &supp))
            diag_log(DIAG_ERROR, "audit", "sink %s: write failed, %zu records dropped%s", sink_name(s), n,
                     suppressed_note(note, sizeof(note), supp));
        return;
    }
}

/* Serializes <n> events with the next seqs and hands them to every sink. */
static void write_batch(struct audit_pipeline *p, const struct audit_event *evs, size_t n)
{
    size_t nrec = 0;
    uint64_t supp;
    char note[64];

    p->buf.len = 0;
    for (size_t i = 0; i < n; i++) {
        size_t off = p->buf.len;

        if (audit_event_to_json(&evs[i], p->seq + 1, &p->buf) == -1) {
            p->buf.len = off;
            p->bad++;
            if (ratelimit_pass(&p->bad_rl, &supp))
                diag_log(DIAG_ERROR, "audit", "event of kind %u could not be serialized%s", (unsigned)evs[i].kind,
                         suppressed_note(note, sizeof(note), supp));
            continue;
        }
        p->seq++;
        p->offs[nrec] = off;
        p->recs[nrec].len = p->buf.len - off;
        p->recs[nrec].seq = p->seq;
        p->recs[nrec].time_us = evs[i].time_us;
        nrec++;
    }
    if (nrec == 0)
        return;
    /* The buffer may have moved while it grew: point the records into it only now. */
    for (size_t i = 0; i < nrec; i++)
        p->recs[i].data = p->buf.data + p->offs[i];
    for (size_t i = 0; i < p->nsinks; i++)
        write_sink(p, i, p->recs, nrec);
    atomic_store_explicit(&p->seq_pub, p->seq, memory_order_release);
}

static void loss_event(struct audit_event *ev, const char *reason, size_t rlen, uint64_t lost, uint64_t refused)
{
    audit_event_init(ev, AUDIT_EVENT_AUDIT_LOSS);
    audit_event_set_str(ev, AUDIT_STR_REASON, reason, rlen);
    ev->lost = lost;
    ev->refused = refused;
}

/* Fills audit.loss events for what was lost since the last report, ending at <end> (the
 * slots just before the batch), and returns how many. Sink drops are reported when <sinks>
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
    for (size_t i = 0; sinks && i < p->nsinks; i++) {
        struct sink *s = p->sinks[i];
        char reason[256];
        int len;

        if (s->dropped == 0)
            continue;
        len = snprintf(reason, sizeof(reason), "sink_failure:%s", sink_name(s));
        if (len < 0)
            len = 0;
        if ((size_t)len >= sizeof(reason))
            len = sizeof(reason) - 1;
        loss_event(&ev[n++], reason, (size_t)len, s->dropped, 0);
        s->dropped = 0;
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
    uint64_t supp;

    unsigned idle_us = p->idle_sleep_us;

    p->last_tick_us = audit_mono_us();
    p->last_sinkloss_us = p->last_tick_us;
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
        tick_if_due(p);
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

    /* Drained: report what is still counted as lost, then make it durable. */
    for (int round = 0; round < 2; round++) {
        size_t nloss = loss_events(p, batch, 1);

        if (nloss == 0)
            break;
        write_batch(p, batch - nloss, nloss);
    }
    for (size_t i = 0; i < p->nsinks; i++) {
        struct sink *s = p->sinks[i];

        if (s->ops->flush(s, PIPELINE_FLUSH_MS) == -1 && ratelimit_pass(&p->sink_rl[i], &supp))
            diag_log(DIAG_ERROR, "audit", "sink %s: flush at shutdown did not complete", sink_name(s));
        if (s->dropped > 0)
            diag_log(DIAG_ERROR, "audit", "sink %s: %llu records lost at shutdown", sink_name(s),
                     (unsigned long long)s->dropped);
    }
    return NULL;
}

int audit_pipeline_start(struct audit_pipeline *p, char *err, size_t errlen)
{
    sigset_t all, old;
    int rc;

    if (p->running) {
        snprintf(err, errlen, "audit pipeline: already running");
        return -1;
    }
    atomic_store(&p->stop, 0);
    /* The thread blocks every signal: SIGTERM and SIGHUP belong to the main thread. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&p->thread, NULL, pipeline_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
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
    p->running = 0;
}

void audit_pipeline_free(struct audit_pipeline *p)
{
    if (p == NULL)
        return;
    audit_pipeline_stop(p);
    audit_buf_fini(&p->buf);
    free(p->offs);
    free(p->recs);
    free(p->evs);
    free(p->sink_rl);
    free(p->sinks);
    free(p);
}

uint64_t audit_pipeline_seq(const struct audit_pipeline *p)
{
    return atomic_load_explicit(&((struct audit_pipeline *)p)->seq_pub, memory_order_acquire);
}
