/* audit/ring.c - bounded MPSC ring between worker threads and the pipeline thread.
 *
 * Dmitry Vyukov's bounded queue with one consumer, with events spanning whole slots: a slot
 * is 1 KiB (a sequence number, a span and AUDIT_SLOT_PAYLOAD bytes), most events fit one,
 * and an event with long strings takes k consecutive slots (wrapping at the end). So the
 * ring's memory holds about four times the events a slot of a whole struct audit_event
 * would. Each slot carries a sequence number:
 *
 *   slot[i].seq == pos          free for the producer that claims position <pos>
 *   slot[i].seq == pos + 1      first slot of an event published by its producer
 *   slot[i].seq == pos + cap    freed by the consumer for the next lap
 *
 * A producer claims positions [head, head + k) with one compare-and-swap on <head>, after
 * checking that the last of them is free for this lap (the consumer frees in order, so the
 * earlier ones are too). It copies the event's used bytes into the k payloads and publishes
 * with a release store of the first slot's sequence. The consumer reads in order from
 * <tail>. Producers never lock, allocate or make a syscall: proxy/ relies on it. A full ring
 * fails the push, which counts one lost event for audit.loss to report.
 *
 * head, tail and the counters sit on separate cache lines so producers and the consumer do
 * not false-share; slots are 64-byte aligned for the same reason. */
#include "audit/audit.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit-int.h"

#define AUDIT_SLOT_SIZE 1024
#define AUDIT_SLOT_PAYLOAD (AUDIT_SLOT_SIZE - 16)

struct slot {
    alignas(AUDIT_CACHELINE) _Atomic uint64_t seq;
    uint32_t span; /* first slot of an event: how many slots it takes */
    uint32_t len;  /* first slot: the event's bytes */
    unsigned char data[AUDIT_SLOT_PAYLOAD];
};

_Static_assert(sizeof(struct slot) == AUDIT_SLOT_SIZE, "slot size");

struct audit_ring {
    alignas(AUDIT_CACHELINE) _Atomic uint64_t head; /* next position to claim; = events pushed */
    alignas(AUDIT_CACHELINE) _Atomic uint64_t tail; /* next position to pop; consumer writes */
    alignas(AUDIT_CACHELINE) _Atomic uint64_t lost; /* since the last take */
    _Atomic uint64_t refused;
    _Atomic uint64_t total_lost;
    _Atomic uint64_t total_refused;
    _Atomic uint64_t events; /* events pushed (head counts slots) */
    alignas(AUDIT_CACHELINE) struct slot *slots; /* read-only after creation */
    uint64_t mask;
    size_t capacity;
    size_t reserve; /* slots kept for flows already running (admit) */
    enum audit_overflow policy;
};

struct audit_ring *audit_ring_new(size_t capacity, enum audit_overflow policy)
{
    struct audit_ring *r;
    size_t cap = 16, rsize = (sizeof(*r) + AUDIT_CACHELINE - 1) & ~(size_t)(AUDIT_CACHELINE - 1);

    if ((unsigned)policy > AUDIT_OVERFLOW_DROP)
        return NULL;
    while (cap < capacity) {
        if (cap > SIZE_MAX / 2 / sizeof(struct slot))
            return NULL;
        cap *= 2;
    }
    r = aligned_alloc(AUDIT_CACHELINE, rsize);
    if (r == NULL)
        return NULL;
    memset(r, 0, sizeof(*r));
    r->slots = aligned_alloc(AUDIT_CACHELINE, cap * sizeof(struct slot));
    if (r->slots == NULL)
        goto fail;
    for (size_t i = 0; i < cap; i++)
        atomic_init(&r->slots[i].seq, i);
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->lost, 0);
    atomic_init(&r->refused, 0);
    atomic_init(&r->total_lost, 0);
    atomic_init(&r->total_refused, 0);
    atomic_init(&r->events, 0);
    r->mask = cap - 1;
    r->capacity = cap;
    /* A quarter of the ring for the events of flows already admitted (a flow emits a few
     * phase events and an end), at least 2, and never the whole ring. */
    r->reserve = cap / 4 < 2 ? 2 : cap / 4;
    if (r->reserve > cap / 2)
        r->reserve = cap / 2;
    r->policy = policy;
    return r;

fail:
    free(r);
    return NULL;
}

void audit_ring_free(struct audit_ring *r)
{
    if (r == NULL)
        return;
    free(r->slots);
    free(r);
}

int audit_emit(struct audit_ring *r, const struct audit_event *ev)
{
    size_t len = audit_event_used_size(ev);
    uint64_t k = (len + AUDIT_SLOT_PAYLOAD - 1) / AUDIT_SLOT_PAYLOAD;
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);

    if (k > r->capacity / 2) { /* a tiny ring cannot take a huge event: lost, never a hang */
        atomic_fetch_add_explicit(&r->lost, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->total_lost, 1, memory_order_relaxed);
        return -1;
    }
    for (;;) {
        struct slot *last = &r->slots[(pos + k - 1) & r->mask];
        int64_t diff = (int64_t)(atomic_load_explicit(&last->seq, memory_order_acquire) - (pos + k - 1));
        if (diff == 0) {
            /* Free for this lap: claim [pos, pos + k). On failure <pos> is the current head. */
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + k, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (diff < 0) {
            /* The slot still holds an event of the previous lap: the ring is full. */
            atomic_fetch_add_explicit(&r->lost, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&r->total_lost, 1, memory_order_relaxed);
            return -1;
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed); /* another producer won */
        }
    }
    const unsigned char *src = (const unsigned char *)ev;
    struct slot *first = &r->slots[pos & r->mask];
    for (uint64_t i = 0; i < k; i++) {
        size_t n = len - i * AUDIT_SLOT_PAYLOAD < AUDIT_SLOT_PAYLOAD ? len - i * AUDIT_SLOT_PAYLOAD : AUDIT_SLOT_PAYLOAD;
        memcpy(r->slots[(pos + i) & r->mask].data, src + i * AUDIT_SLOT_PAYLOAD, n);
    }
    first->span = (uint32_t)k;
    first->len = (uint32_t)len;
    atomic_fetch_add_explicit(&r->events, 1, memory_order_relaxed);
    atomic_store_explicit(&first->seq, pos + 1, memory_order_release);
    return 0;
}

int audit_ring_pop(struct audit_ring *r, struct audit_event *out)
{
    uint64_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    struct slot *first = &r->slots[pos & r->mask];

    if (atomic_load_explicit(&first->seq, memory_order_acquire) != pos + 1)
        return -1; /* empty, or the next event is claimed but not yet published */
    uint64_t k = first->span;
    size_t len = first->len;
    unsigned char *dst = (unsigned char *)out;
    for (uint64_t i = 0; i < k; i++) {
        size_t n = len - i * AUDIT_SLOT_PAYLOAD < AUDIT_SLOT_PAYLOAD ? len - i * AUDIT_SLOT_PAYLOAD : AUDIT_SLOT_PAYLOAD;
        memcpy(dst + i * AUDIT_SLOT_PAYLOAD, r->slots[(pos + i) & r->mask].data, n);
    }
    /* free the slots for the next lap only once copied out */
    for (uint64_t i = 0; i < k; i++)
        atomic_store_explicit(&r->slots[(pos + i) & r->mask].seq, pos + i + r->capacity, memory_order_release);
    atomic_store_explicit(&r->tail, pos + k, memory_order_release);
    return 0;
}

size_t audit_ring_depth(const struct audit_ring *r)
{
    uint64_t tail = atomic_load_explicit(&((struct audit_ring *)r)->tail, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&((struct audit_ring *)r)->head, memory_order_acquire);

    /* Two loads, not one snapshot: clamp what a racing consumer or producer can skew. */
    if (head <= tail)
        return 0;
    return head - tail > r->capacity ? r->capacity : (size_t)(head - tail);
}

int audit_ring_admit(struct audit_ring *r)
{
    if (r->policy == AUDIT_OVERFLOW_DROP)
        return 0;
    if (audit_ring_depth(r) < r->capacity - r->reserve)
        return 0;
    if (r->policy == AUDIT_OVERFLOW_FAIL_CLOSED) {
        atomic_fetch_add_explicit(&r->refused, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&r->total_refused, 1, memory_order_relaxed);
    }
    return -1;
}

size_t audit_ring_capacity(const struct audit_ring *r)
{
    return r->capacity;
}

enum audit_overflow audit_ring_policy(const struct audit_ring *r)
{
    return r->policy;
}

uint64_t audit_ring_take_lost(struct audit_ring *r)
{
    return atomic_exchange_explicit(&r->lost, 0, memory_order_relaxed);
}

uint64_t audit_ring_take_refused(struct audit_ring *r)
{
    return atomic_exchange_explicit(&r->refused, 0, memory_order_relaxed);
}

uint64_t audit_ring_total_pushed(const struct audit_ring *r)
{
    return atomic_load_explicit(&((struct audit_ring *)r)->events, memory_order_relaxed);
}

uint64_t audit_ring_total_lost(const struct audit_ring *r)
{
    return atomic_load_explicit(&((struct audit_ring *)r)->total_lost, memory_order_relaxed);
}

uint64_t audit_ring_total_refused(const struct audit_ring *r)
{
    return atomic_load_explicit(&((struct audit_ring *)r)->total_refused, memory_order_relaxed);
}

int audit_overflow_parse(const char *s, enum audit_overflow *out)
{
    static const char *const names[] = {
        [AUDIT_OVERFLOW_FAIL_CLOSED] = "fail_closed",
        [AUDIT_OVERFLOW_BLOCK] = "block",
        [AUDIT_OVERFLOW_DROP] = "drop",
    };

    if (s == NULL)
        return -1;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum audit_overflow)i;
            return 0;
        }
    }
    return -1;
}
