/* proxy/util.c - address and authority parsing, clocks, status phrases. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/proxy-int.h"
#include "proxy/ssrf.h"

int proxy_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon;
    size_t hl;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        hl = (size_t)(end - s - 1);
        if (hl == 0 || hl >= sizeof(host))
            return -1;
        memcpy(host, s + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
        if (hl == 0 || hl >= sizeof(host))
            return -1;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *endp;
    long port = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || port < 0 || port > 65535)
        return -1;
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (s[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* RFC 3986 reg-name characters we accept in a host (plus '_' seen in the wild, and UTF-8
 * bytes of an internationalised name, converted to its ASCII form below). */
static int host_char_ok(unsigned char ch)
{
    return isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch >= 0x80;
}

int policy_normalize_domain(const char *in, char *out, size_t outlen);

int proxy_parse_authority(const char *s, size_t len, uint16_t default_port, struct proxy_target *t)
{
    size_t hl;
    const char *h, *rest;
    size_t restlen;

    memset(t, 0, sizeof(*t));
    if (len == 0)
        return -1;
    if (s[0] == '[') {
        const char *end = memchr(s, ']', len);
        if (!end)
            return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        rest = end + 1;
        restlen = len - (size_t)(rest - s);
        if (hl == 0 || hl >= sizeof(t->host))
            return -1;
        memcpy(t->host, h, hl);
        t->host[hl] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, t->host, &a6) != 1)
            return -1;
        t->host_is_ip = 1;
    } else {
        const char *colon = memchr(s, ':', len);
        h = s;
        hl = colon ? (size_t)(colon - s) : len;
        rest = s + hl;
        restlen = len - hl;
        if (hl > 0 && h[hl - 1] == '.') /* one trailing dot: the same name */
            hl--;
        if (hl == 0 || hl >= sizeof(t->host))
            return -1;
        int ascii = 1;
        for (size_t i = 0; i < hl; i++) {
            unsigned char ch = (unsigned char)h[i];
            if (!host_char_ok(ch))
                return -1;
            ascii &= ch < 0x80;
            t->host[i] = (char)tolower(ch);
        }
        t->host[hl] = '\0';
        if (!ascii) { /* an IDN: rules and the resolver see its punycode (A-label) form */
            char a[256];
            if (policy_normalize_domain(t->host, a, sizeof(a)) == -1)
                return -1;
            snprintf(t->host, sizeof(t->host), "%s", a);
        }
        /* "2130706433", "0x7f.1", "0177.0.0.1" are 127.0.0.1: one canonical form for policy and
         * the SSRF guard */
        char canon[64];
        int ipf = proxy_normalize_ip_host(t->host, canon, sizeof(canon));
        if (ipf == -1)
            return -1;
        if (ipf == 1)
            snprintf(t->host, sizeof(t->host), "%s", canon);
        t->host_is_ip = ipf == 1;
    }
    if (restlen == 0) {
        t->port = default_port;
    } else {
        if (rest[0] != ':' || restlen < 2 || restlen > 6)
            return -1;
        unsigned long port = 0;
        for (size_t i = 1; i < restlen; i++) {
            if (!isdigit((unsigned char)rest[i]))
                return -1;
            port = port * 10 + (unsigned long)(rest[i] - '0');
        }
        if (port == 0 || port > 65535)
            return -1;
        t->port = (uint16_t)port;
    }
    if (t->port == 0)
        return -1;
    return 0;
}

void proxy_format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
        snprintf(out, outlen, "%s:%u", ip, ntohs(sin->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outlen, "[%s]:%u", ip, ntohs(sin6->sin6_port));
    } else {
        snprintf(out, outlen, "?");
    }
}

int64_t proxy_now_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t proxy_now_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *proxy_status_phrase(unsigned status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}
