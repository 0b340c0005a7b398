/* tools/bench/redact-bench.c - redaction throughput on one core: MB/s and events/s.
 *
 *   build/bin/redact-bench [SECONDS] [EVENTS] [batch]     (defaults 3 and 4096; "batch": that run only)
 *
 * Builds EVENTS synthetic events of the mix the pipeline sees after interception: host,
 * path and query (redact_url), 8 to 12 request headers and 4 to 6 response headers
 * (redact_header), and a reason string (redact_string). About one event in four carries a
 * secret somewhere (bearer token, cookie, API key, e-mail or token in the query, a card number
 * in a path, a userinfo URL in a Referer); the rest are clean. Then redacts them round-robin
 * for SECONDS on one thread and prints events/s, fields/s, MB/s of input, and ns per field,
 * per second of the thread's CPU time (so a busy machine does not deflate them; the share of
 * a core the thread got is printed too):
 * for the realistic mix with one redact_fields() call per event (batch, as the pipeline would)
 * and with one call per field, then batched for an all-clean and an all-secrets mix. The key ring lives in a
 * temporary directory removed on exit.
 *
 * Target (issue 5): redaction never the bottleneck below 200,000 events/s on one core. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redact/redact.h"

enum kind { K_URL = 0, K_HEADER, K_STRING };

struct field {
    enum kind kind;
    const char *name; /* header name */
    char *value;
    size_t len;
};

struct event {
    struct field f[24];
    size_t n;
    size_t bytes;
};

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static const char *pick(const char *const *a, size_t n)
{
    return a[rnd() % n];
}

#define PICK(a) pick(a, sizeof(a) / sizeof(a[0]))

static void add(struct event *ev, enum kind k, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void add(struct event *ev, enum kind k, const char *name, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0 || ev->n == sizeof(ev->f) / sizeof(ev->f[0]))
        return;
    ev->f[ev->n] = (struct field){.kind = k, .name = name, .value = strdup(buf), .len = (size_t)n};
    ev->bytes += (size_t)n + (name ? strlen(name) : 0);
    ev->n++;
}

static const char *const hosts[] = {"api.github.com", "registry.npmjs.org", "pypi.org", "s3.eu-west-1.amazonaws.com",
                                    "hooks.slack.com", "api.stripe.com", "login.microsoftonline.com",
                                    "www.googleapis.com", "updates.example-vendor.net", "telemetry.internal.example"};
static const char *const paths[] = {"/", "/v1/objects/7f3a9c2e-41d2-4b8e-9a61-2f0c5e7d8b11", "/repos/acme/widgets/pulls",
                                    "/simple/requests/", "/api/v2/users/12345/orders?page=3&per_page=50",
                                    "/static/js/app.4f9c2a1b.js", "/oauth2/v2.0/token", "/storage/v1/b/bucket/o",
                                    "/healthz", "/services/data/v58.0/query"};
static const char *const agents[] = {"curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1",
                                     "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                     "Chrome/120.0 Safari/537.36",
                                     "aws-sdk-java/2.20.0 Linux/5.15 OpenJDK_64-Bit_Server_VM/17"};
static const char *const ctypes[] = {"application/json", "text/html; charset=utf-8", "application/octet-stream",
                                     "application/x-www-form-urlencoded", "image/png"};

static const char jwt[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
                          "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

/* One event; <secrets>: 0 none, 1 realistic (one in four), 2 always. */
static void make_event(struct event *ev, int secrets)
{
    int s = secrets == 2 || (secrets == 1 && rnd() % 4 == 0);
    unsigned which = rnd() % 8;

    memset(ev, 0, sizeof(*ev));
    add(ev, K_STRING, NULL, "%s", PICK(hosts));
    if (s && which == 0)
        add(ev, K_URL, NULL, "/v1/customers/4111111111111111/charges?limit=%u", rnd() % 100);
    else if (s && which == 1)
        add(ev, K_URL, NULL, "/search?q=widgets&email=jane.doe%%40example.com&token=%08x%08x", rnd(), rnd());
    else
        add(ev, K_URL, NULL, "%s", PICK(paths));
    add(ev, K_HEADER, "Host", "%s", PICK(hosts));
    add(ev, K_HEADER, "User-Agent", "%s", PICK(agents));
    add(ev, K_HEADER, "Accept", "*/*");
    add(ev, K_HEADER, "Accept-Encoding", "gzip, deflate, br");
    add(ev, K_HEADER, "X-Request-Id", "%08x-%04x-%04x-%04x-%08x%04x", rnd(), rnd() & 0xffff, rnd() & 0xffff,
        rnd() & 0xffff, rnd(), rnd() & 0xffff);
    add(ev, K_HEADER, "Content-Type", "%s", PICK(ctypes));
    add(ev, K_HEADER, "Content-Length", "%u", rnd() % 100000);
    if (s && which == 2)
        add(ev, K_HEADER, "Authorization", "Bearer %s", jwt);
    else if (rnd() % 3 == 0)
        add(ev, K_HEADER, "Authorization", "Bearer %08x%08x%08x%08x", rnd(), rnd(), rnd(), rnd());
    if (s && which == 3)
        add(ev, K_HEADER, "Cookie", "_ga=GA1.2.%u.%u; session=%08x%08x%08x; theme=dark", rnd(), rnd(), rnd(), rnd(),
            rnd());
    if (s && which == 4)
        add(ev, K_HEADER, "X-Api-Key", "sk_live_%08x%08x%08x", rnd(), rnd(), rnd());
    if (s && which == 5)
        add(ev, K_HEADER, "Referer", "https://admin:pa55w0rd@intranet.example.com/dashboard?tab=%u", rnd() % 9);
    else
        add(ev, K_HEADER, "Referer", "https://app.example.com/dashboard?tab=%u", rnd() % 9);
    add(ev, K_HEADER, "Content-Type", "%s", PICK(ctypes));
    add(ev, K_HEADER, "Server", "nginx/1.25.3");
    add(ev, K_HEADER, "Cache-Control", "private, max-age=%u", rnd() % 3600);
    add(ev, K_HEADER, "Date", "Tue, 26 Nov 2024 16:30:%02u GMT", rnd() % 60);
    if (s && which == 6)
        add(ev, K_HEADER, "Set-Cookie", "sid=%08x%08x; Path=/; HttpOnly; Secure", rnd(), rnd());
    if (s && which == 7)
        add(ev, K_STRING, NULL, "upstream said: contact ops@example.com or +1 415 555 2671");
    else
        add(ev, K_STRING, NULL, "completed");
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of this thread: the rate per core even when other processes share the machine. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* <batch>: one redact_fields() call per event (what the pipeline does); else one call per field. */
static void run(const char *label, struct redact *rd, struct event *evs, size_t nev, double seconds, int batch)
{
    struct redact_result res[24];
    struct redact_field rf[24];
    uint64_t events = 0, fields = 0, bytes = 0, matches = 0, unscannable = 0;
    double t0 = now_s(), c0 = cpu_s(), t, wall;

    for (size_t i = 0; i < 24; i++)
        redact_result_init(&res[i]);
    do {
        for (int round = 0; round < 256; round++) {
            const struct event *ev = &evs[events % nev];

            if (batch) {
                for (size_t i = 0; i < ev->n; i++) {
                    const struct field *f = &ev->f[i];
                    static const enum redact_field_kind kinds[] = {
                        [K_URL] = REDACT_FIELD_URL, [K_HEADER] = REDACT_FIELD_HEADER, [K_STRING] = REDACT_FIELD_STRING};

                    rf[i] = (struct redact_field){.kind = kinds[f->kind], .name = f->name,
                                                  .name_len = f->name ? strlen(f->name) : 0, .value = f->value,
                                                  .len = f->len};
                }
                redact_fields(rd, rf, ev->n, res);
            }
            for (size_t i = 0; i < ev->n; i++) {
                const struct field *f = &ev->f[i];

                if (!batch) {
                    switch (f->kind) {
                    case K_URL:
                        redact_url(rd, f->value, f->len, &res[i]);
                        break;
                    case K_HEADER:
                        redact_header(rd, f->name, strlen(f->name), f->value, f->len, &res[i]);
                        break;
                    case K_STRING:
                        redact_string(rd, f->value, f->len, &res[i]);
                        break;
                    }
                }
                matches += res[i].nmatches;
                unscannable += (res[i].flags & REDACT_R_UNSCANNABLE) != 0;
            }
            fields += ev->n;
            bytes += ev->bytes;
            events++;
        }
        wall = now_s() - t0;
    } while (wall < seconds);
    t = cpu_s() - c0;
    printf("%-10s %-9s %9.0f events/s %10.0f fields/s %7.1f MB/s %6.0f ns/field %5.2f matches/event "
           "(%.0f%% of a core)%s\n",
           label, batch ? "batch" : "per-field", (double)events / t, (double)fields / t, (double)bytes / t / 1e6,
           t * 1e9 / (double)fields, (double)matches / (double)events, 100 * t / wall,
           unscannable ? " (unscannable fields!)" : "");
    for (size_t i = 0; i < 24; i++)
        redact_result_fini(&res[i]);
}

static void free_events(struct event *evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < evs[i].n; k++)
            free(evs[i].f[k].value);
    free(evs);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    size_t nev = argc > 2 ? (size_t)atol(argv[2]) : 4096, fields = 0, bytes = 0;
    const char *only = argc > 3 ? argv[3] : NULL; /* one run only, for profiling */
    char dir[] = "/tmp/redact-bench-XXXXXX", keys[64], err[512], cmd[128];
    struct redact_keyring *kr;
    struct redact *rd;
    struct event *mix, *clean, *dirty;
    double t0;

    if (seconds <= 0 || nev == 0) {
        fprintf(stderr, "usage: %s [SECONDS] [EVENTS]\n", argv[0]);
        return 2;
    }
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(keys, sizeof(keys), "%s/keys", dir);
    kr = redact_keyring_open(keys, err, sizeof(err));
    if (kr == NULL) {
        fprintf(stderr, "redact-bench: %s\n", err);
        return 1;
    }
    t0 = now_s();
    rd = redact_new(NULL, kr, err, sizeof(err));
    if (rd == NULL) {
        fprintf(stderr, "redact-bench: %s\n", err);
        return 1;
    }
    printf("redact-bench: %zu detectors compiled in %.0f ms; %zu events per mix, %.1f s each, one thread\n",
           redact_detector_count(rd), (now_s() - t0) * 1e3, nev, seconds);
    mix = calloc(nev, sizeof(*mix));
    clean = calloc(nev, sizeof(*clean));
    dirty = calloc(nev, sizeof(*dirty));
    if (mix == NULL || clean == NULL || dirty == NULL)
        return 1;
    for (size_t i = 0; i < nev; i++) {
        make_event(&mix[i], 1);
        make_event(&clean[i], 0);
        make_event(&dirty[i], 2);
        fields += mix[i].n;
        bytes += mix[i].bytes;
    }
    printf("realistic mix: %.1f string fields and %.0f bytes per event\n", (double)fields / (double)nev,
           (double)bytes / (double)nev);
    if (only == NULL || strcmp(only, "realistic") == 0)
        run("realistic", rd, mix, nev, seconds, 1);
    if (only == NULL || strcmp(only, "per-field") == 0)
        run("realistic", rd, mix, nev, seconds, 0);
    if (only == NULL || strcmp(only, "clean") == 0)
        run("clean", rd, clean, nev, seconds, 1);
    if (only == NULL || strcmp(only, "secrets") == 0)
        run("secrets", rd, dirty, nev, seconds, 1);
    free_events(mix, nev);
    free_events(clean, nev);
    free_events(dirty, nev);
    redact_free(rd);
    redact_keyring_free(kr);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "redact-bench: could not remove %s\n", dir);
    return 0;
}
