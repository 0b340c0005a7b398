/* tests/fuzz/fuzz_clienthello.c - libFuzzer target: proxy_clienthello_parse() on any bytes.
 *
 * The parser reads what a client sends first into a CONNECT tunnel, before anything goes
 * upstream: hostile input by definition. Beyond "no crash, no read past <len>" (ASan sees
 * that, since the input buffer is exactly <len> bytes), this checks the header's contract:
 * an OK result has a well-formed SNI (lowercase host-name bytes, no trailing dot, at most
 * 253 bytes) and ALPN list, record_len within the input, and the same verdict for the
 * records alone; a prefix of an accepted hello is never MALFORMED or NOT_TLS, only
 * NEED_MORE; any other result leaves <out> zeroed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/clienthello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_zeroed(const struct proxy_clienthello *ch)
{
    static const struct proxy_clienthello zero;
    if (memcmp(ch, &zero, sizeof(zero)) != 0)
        abort();
}

static void check_ok(const struct proxy_clienthello *ch, size_t size)
{
    size_t n = strnlen(ch->sni, sizeof(ch->sni));
    if (n == sizeof(ch->sni) || n > 253)
        abort();
    if (n > 0 && ch->sni[n - 1] == '.')
        abort();
    for (size_t i = 0; i < n; i++) {
        char c = ch->sni[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
            abort();
    }
    if (ch->nalpn > PROXY_CH_MAX_ALPN || (ch->nalpn > 0 && !ch->has_alpn))
        abort();
    for (size_t i = 0; i < ch->nalpn; i++) {
        size_t l = strnlen(ch->alpn[i], PROXY_CH_ALPN_LEN);
        if (l == 0 || l == PROXY_CH_ALPN_LEN)
            abort();
        for (size_t k = 0; k < l; k++)
            if (ch->alpn[i][k] < 0x21 || ch->alpn[i][k] > 0x7e)
                abort();
    }
    if (ch->record_len < 5 + 4 || ch->record_len > size || ch->record_len > PROXY_CH_MAX_PEEK)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_clienthello ch, again;
    enum proxy_ch_result r;

    memset(&ch, 0xa5, sizeof(ch));
    r = proxy_clienthello_parse(data, size, &ch);
    if (r == PROXY_CH_MALFORMED || r == PROXY_CH_NOT_TLS)
        check_zeroed(&ch);
    if (r != PROXY_CH_OK)
        return 0;
    check_ok(&ch, size);

    /* the records that carry the hello decide alone: what follows them is not looked at */
    uint8_t *copy = malloc(ch.record_len);
    if (!copy)
        return 0;
    memcpy(copy, data, ch.record_len);
    if (proxy_clienthello_parse(copy, ch.record_len, &again) != PROXY_CH_OK ||
        memcmp(&again, &ch, sizeof(ch)) != 0)
        abort();
    /* a strict prefix is a valid beginning: the caller must be told to peek more */
    for (size_t cut = 0; cut < ch.record_len; cut += 1 + cut / 8) {
        r = proxy_clienthello_parse(copy, cut, &again);
        if (r != PROXY_CH_NEED_MORE)
            abort();
    }
    free(copy);
    return 0;
}
