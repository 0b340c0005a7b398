/* audit/flowid.c - flow ids: 128-bit, time-ordered, printed as 26 Crockford base32 characters.
 *
 *   byte  0               6                                        16
 *         | ms since epoch | 80 bits: random, +1 per id in the same ms |
 *           48 bits, big-endian
 *
 * Sorting ids (as bytes or as text) sorts them by creation time, like ULIDs. Each thread keeps
 * its own state: the last millisecond it used and the 80 low bits it handed out. An id in a
 * new millisecond takes fresh bits from a per-thread xoshiro256** generator, seeded once from
 * libsodium; an id in the same millisecond (or after the clock stepped back) adds one to the
 * previous bits, so one thread's ids strictly increase. Across threads, ids differ with the
 * probability of two 80-bit random draws colliding. No lock, and no syscall after a thread's
 * first id (clock_gettime is a vDSO call). */
#include "audit/audit.h"

#include <sodium.h>
#include <string.h>

#include "audit/audit-int.h"
#include "audit/diag.h"

struct flowid_state {
    int seeded;
    uint64_t rng[4];  /* xoshiro256** */
    uint64_t last_ms; /* timestamp of the previous id; never decreases */
    uint16_t hi;      /* top 16 of the 80 low bits */
    uint64_t lo;      /* low 64 of the 80 low bits */
};

static _Thread_local struct flowid_state flowid_tls;

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** 1.0 (Blackman and Vigna, public domain). */
static uint64_t rng_next(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(struct flowid_state *st)
{
    /* sodium_init() is idempotent and thread-safe; the library asks for it before use. */
    if (sodium_init() == -1)
        diag_log(DIAG_ERROR, "audit", "sodium_init failed; seeding flow ids from the default random source");
    do
        randombytes_buf(st->rng, sizeof(st->rng));
    while ((st->rng[0] | st->rng[1] | st->rng[2] | st->rng[3]) == 0); /* the one bad state */
    st->seeded = 1;
}

static void fresh_bits(struct flowid_state *st)
{
    st->lo = rng_next(st->rng);
    st->hi = (uint16_t)(rng_next(st->rng) >> 48);
}

void audit_flow_id_new(uint8_t out[16])
{
    struct flowid_state *st = &flowid_tls;
    uint64_t now_ms = (uint64_t)audit_now_us() / 1000, ms;

    if (!st->seeded)
        rng_seed(st);
    now_ms &= (UINT64_C(1) << 48) - 1;
    if (now_ms > st->last_ms) {
        st->last_ms = now_ms;
        fresh_bits(st);
    } else if (++st->lo == 0 && ++st->hi == 0) {
        /* 2^80 ids in one millisecond cannot happen, but stay increasing if it does. */
        st->last_ms++;
        fresh_bits(st);
    }
    ms = st->last_ms;
    for (int i = 0; i < 6; i++)
        out[i] = (uint8_t)(ms >> (40 - 8 * i));
    out[6] = (uint8_t)(st->hi >> 8);
    out[7] = (uint8_t)st->hi;
    for (int i = 0; i < 8; i++)
        out[8 + i] = (uint8_t)(st->lo >> (56 - 8 * i));
}

static const char crockford[32] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Bits [shift, shift + 5) of the 130-bit number 00‖<id> (bit 0 = least significant). */
static unsigned bits5(uint64_t hi, uint64_t lo, unsigned shift)
{
    if (shift >= 64)
        return (unsigned)(hi >> (shift - 64)) & 31;
    if (shift > 59) /* straddles the two halves */
        return (unsigned)((lo >> shift) | (hi << (64 - shift))) & 31;
    return (unsigned)(lo >> shift) & 31;
}

void audit_flow_id_format(const uint8_t id[16], char out[AUDIT_FLOW_ID_LEN + 1])
{
    uint64_t hi = 0, lo = 0;

    for (int i = 0; i < 8; i++) {
        hi = hi << 8 | id[i];
        lo = lo << 8 | id[8 + i];
    }
    for (int i = 0; i < AUDIT_FLOW_ID_LEN; i++)
        out[i] = crockford[bits5(hi, lo, 5 * (unsigned)(AUDIT_FLOW_ID_LEN - 1 - i))];
    out[AUDIT_FLOW_ID_LEN] = '\0';
}

/* Value of Crockford digit <c> (either case), or -1. */
static int digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'z')
        c = (char)(c - 'a' + 'A');
    for (int i = 10; i < 32; i++)
        if (crockford[i] == c)
            return i;
    return -1;
}

int audit_flow_id_parse(const char *s, uint8_t out[16])
{
    uint64_t hi = 0, lo = 0;

    if (s == NULL || strlen(s) != AUDIT_FLOW_ID_LEN)
        return -1;
    for (int i = 0; i < AUDIT_FLOW_ID_LEN; i++) {
        int v = digit(s[i]);

        /* 26 digits hold 130 bits: the first may only carry the top 3. */
        if (v < 0 || (i == 0 && v > 7))
            return -1;
        hi = hi << 5 | lo >> 59;
        lo = lo << 5 | (uint64_t)v;
    }
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(hi >> (56 - 8 * i));
        out[8 + i] = (uint8_t)(lo >> (56 - 8 * i));
    }
    return 0;
}

uint64_t audit_flow_id_time_ms(const uint8_t id[16])
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id[i];
    return ms;
}
