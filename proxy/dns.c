/* proxy/dns.c - asynchronous resolution of a flow's target with evdns.
 *
 * Literal addresses are not resolved. Names under the special-use TLDs ".invalid" (and the
 * bare name "invalid") fail at once, as RFC 6761 asks of name resolution APIs; everything
 * else goes to the worker's evdns_base (resolv.conf nameservers and /etc/hosts). The address
 * returned is the one the flow connects to: no second lookup, so no rebinding between
 * policy and connect. */
#include <arpa/inet.h>
#include <string.h>

#include <event2/util.h>

#include "proxy/proxy-int.h"

struct resolve_ctx {
    struct conn *c;
    proxy_resolve_cb cb;
};

static int is_special_invalid(const char *host)
{
    size_t n = strlen(host);
    return strcmp(host, "invalid") == 0 || (n > 8 && strcmp(host + n - 8, ".invalid") == 0);
}

static void dns_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct resolve_ctx *rc = arg;
    struct conn *c = rc->c;
    proxy_resolve_cb cb = rc->cb;
    free(rc);
    if (result == EVUTIL_EAI_CANCEL) {
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    c->flow.dns_req = NULL;
    c->flow.dns_done = 1;
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        cb(c, result ? result : EVUTIL_EAI_FAIL, NULL, 0);
        return;
    }
    struct sockaddr_storage addrs[PROXY_DNS_MAX_ANSWERS];
    size_t n = 0;
    memset(addrs, 0, sizeof(addrs));
    for (struct evutil_addrinfo *ai = res; ai && n < PROXY_DNS_MAX_ANSWERS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(addrs[0]))
            continue;
        memcpy(&addrs[n++], ai->ai_addr, ai->ai_addrlen);
    }
    evutil_freeaddrinfo(res);
    cb(c, n ? 0 : EVUTIL_EAI_FAIL, addrs, n);
}

void proxy_resolve(struct conn *c, proxy_resolve_cb cb)
{
    struct proxy_target *t = &c->flow.target;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    /* literal addresses (already in canonical form) are not resolved */
    if (t->host_is_ip) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, t->host, &sin->sin_addr) == 1) {
            sin->sin_family = AF_INET;
            sin->sin_port = htons(t->port);
            cb(c, 0, &ss, 1);
            return;
        }
        if (inet_pton(AF_INET6, t->host, &sin6->sin6_addr) == 1) {
            sin6->sin6_family = AF_INET6;
            sin6->sin6_port = htons(t->port);
            cb(c, 0, &ss, 1);
            return;
        }
        cb(c, EVUTIL_EAI_NONAME, NULL, 0);
        return;
    }
    if (is_special_invalid(t->host)) {
        cb(c, EVUTIL_EAI_NONAME, NULL, 0);
        return;
    }

    struct resolve_ctx *rc = malloc(sizeof(*rc));
    if (!rc) {
        cb(c, EVUTIL_EAI_MEMORY, NULL, 0);
        return;
    }
    rc->c = c;
    rc->cb = cb;
    char port[8];
    snprintf(port, sizeof(port), "%u", t->port);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
    /* The callback may run before this returns (hosts file): it sets dns_done. The caller
     * holds the conn (c->feeding), so it is still there when this returns. */
    c->flow.dns_done = 0;
    struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(c->w->dns, t->host, port, &hints, dns_cb, rc);
    if (!c->flow.dns_done)
        c->flow.dns_req = req;
}

void proxy_resolve_cancel(struct conn *c)
{
    if (c->flow.dns_req) {
        struct evdns_getaddrinfo_request *req = c->flow.dns_req;
        c->flow.dns_req = NULL;
        evdns_getaddrinfo_cancel(req); /* runs dns_cb with EVUTIL_EAI_CANCEL, which frees the ctx */
    }
}
