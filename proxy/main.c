/* proxy/main.c - `vigil`: load the config, open the sinks, start the pipeline and the
 * workers, and wait for signals.
 *
 * Start-up order makes "no flow without a record" hold from the first connection: the
 * ring, the sinks and the pipeline thread exist and the proxy.config event is recorded
 * before any listener accepts. Shutdown runs the other way: stop accepting and drain the
 * flows, then drain the ring into the sinks and flush them. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/event.h>
#include <sodium.h>

#include "audit/diag.h"
#include "audit/segment.h"
#include "proxy/proxy.h"
#include "sinks/sinks.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil [options]\n"
               "  --config FILE             load FILE instead of the embedded default config\n"
               "  --listen HOST:PORT        listen there (repeatable; replaces the config's list)\n"
               "  --data-dir DIR            write the record under DIR (default ./vigil-data)\n"
               "  --workers N               worker threads (default: one per core)\n"
               "  --check-config FILE       validate FILE: exit 0, or 2 with one line per error\n"
               "  --print-default-config    print the embedded default config\n"
               "  --version                 print the version\n"
               "  --help                    this text\n"
               "With no options vigil serves 127.0.0.1:3128 and records under ./vigil-data.\n"
               "Clients: HTTP_PROXY=http://127.0.0.1:3128 HTTPS_PROXY=http://127.0.0.1:3128\n");
}

/* Validates the sinks array through the registry: types must exist. */
static int check_sinks(const struct proxy_config *cfg, char *err, size_t errlen)
{
    size_t i;
    json_t *s;
    json_array_foreach(cfg->sinks, i, s)
    {
        const char *type = json_string_value(json_object_get(s, "type"));
        if (!sink_type_find(type)) {
            snprintf(err, errlen, "sinks[%zu].type: unknown sink type \"%s\"", i, type ? type : "");
            return -1;
        }
    }
    return 0;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0750) == -1 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0750) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct event_base *base = arg;
    (void)what;
    if (sig == SIGHUP) {
        diag_log(DIAG_WARN, "main", "SIGHUP: live reload is not available in this version; config unchanged");
        return;
    }
    diag_log(DIAG_INFO, "main", "signal %d: draining", (int)sig);
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *data_dir = NULL, *check_path = NULL;
    const char *listen[64];
    size_t nlisten = 0;
    long workers = -1;
    char err[4096];
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("vigil %s\n", PROXY_VERSION);
            return 0;
        } else if (strcmp(a, "--print-default-config") == 0) {
            fputs(proxy_config_default_text(), stdout);
            return 0;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--listen") == 0 || strcmp(a, "--data-dir") == 0 ||
                    strcmp(a, "--workers") == 0 || strcmp(a, "--check-config") == 0) &&
                   v) {
            i++;
            if (strcmp(a, "--config") == 0)
                config_path = v;
            else if (strcmp(a, "--listen") == 0) {
                if (nlisten == sizeof(listen) / sizeof(listen[0])) {
                    fprintf(stderr, "vigil: at most 64 --listen options\n");
                    return 2;
                }
                listen[nlisten++] = v;
            }
            else if (strcmp(a, "--data-dir") == 0)
                data_dir = v;
            else if (strcmp(a, "--check-config") == 0)
                check_path = v;
            else {
                char *end;
                workers = strtol(v, &end, 10);
                if (*end || workers < 1 || workers > 256) {
                    fprintf(stderr, "vigil: --workers takes a number from 1 to 256\n");
                    return 2;
                }
            }
        } else {
            fprintf(stderr, "vigil: unknown or incomplete option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (sodium_init() < 0) {
        fprintf(stderr, "vigil: libsodium failed to initialise\n");
        return 1;
    }

    if (check_path) {
        struct proxy_config *c = proxy_config_load(check_path, err, sizeof(err));
        if (!c || check_sinks(c, err, sizeof(err)) == -1) {
            fprintf(stderr, "%s\n", err);
            proxy_config_free(c);
            return 2;
        }
        printf("%s: valid (version %s)\n", check_path, c->version);
        proxy_config_free(c);
        return 0;
    }

    struct proxy_config *cfg = config_path ? proxy_config_load(config_path, err, sizeof(err))
                                           : proxy_config_parse(proxy_config_default_text(),
                                                                strlen(proxy_config_default_text()), err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "vigil: config: %s\n", err);
        return 2;
    }
    for (size_t i = 0; i < nlisten; i++)
        if (proxy_config_override_listen(cfg, listen[i], i == 0, err, sizeof(err)) == -1) {
            fprintf(stderr, "vigil: %s\n", err);
            proxy_config_free(cfg);
            return 2;
        }
    if (data_dir && proxy_config_override_data_dir(cfg, data_dir) == -1) {
        fprintf(stderr, "vigil: out of memory\n");
        return 1;
    }
    if (workers > 0)
        cfg->workers = (unsigned)workers;
    if (check_sinks(cfg, err, sizeof(err)) == -1) {
        fprintf(stderr, "vigil: config: %s\n", err);
        proxy_config_free(cfg);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    if (mkdir_p(cfg->data_dir) == -1) {
        diag_log(DIAG_ERROR, "main", "cannot create data dir %s: %s", cfg->data_dir, strerror(errno));
        proxy_config_free(cfg);
        return 1;
    }

    struct audit_ring *ring = audit_ring_new(cfg->ring_slots, cfg->overflow);
    size_t nsinks = json_array_size(cfg->sinks);
    struct sink **sinks = calloc(nsinks ? nsinks : 1, sizeof(*sinks));
    struct audit_pipeline *pipe = NULL;
    struct proxy_server *server = NULL;
    struct event_base *base = NULL;
    struct event *sig[3] = {NULL, NULL, NULL};
    struct sink_env env = {.data_dir = cfg->data_dir};
    if (!ring || !sinks) {
        diag_log(DIAG_ERROR, "main", "out of memory");
        goto out;
    }
    for (size_t i = 0; i < nsinks; i++) {
        char path[32];
        snprintf(path, sizeof(path), "sinks[%zu]", i);
        sinks[i] = sink_open(json_array_get(cfg->sinks, i), path, &env, err, sizeof(err));
        if (!sinks[i]) {
            diag_log(DIAG_ERROR, "main", "sink: %s", err);
            goto out;
        }
    }
    /* a restart continues the record's numbering after the last stored seq */
    struct audit_pipeline_opts popts = {0};
    if (audit_segment_last_seq(cfg->data_dir, &popts.last_seq, err, sizeof(err)) == -1)
        diag_log(DIAG_WARN, "main", "cannot read the last seq of the record: %s", err);
    pipe = audit_pipeline_new(ring, sinks, nsinks, &popts, err, sizeof(err));
    if (!pipe || audit_pipeline_start(pipe, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, "main", "audit pipeline: %s", err);
        goto out;
    }
    proxy_emit_config_event(ring, cfg, "loaded");

    server = proxy_server_new(cfg, ring, err, sizeof(err));
    if (!server || proxy_server_start(server, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, "main", "%s", err);
        goto out;
    }

    base = event_base_new();
    if (!base)
        goto out;
    int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        sig[i] = evsignal_new(base, signums[i], on_signal, base);
        if (!sig[i] || event_add(sig[i], NULL) == -1)
            goto out;
    }
    diag_log(DIAG_INFO, "main", "vigil %s ready (config %s, data dir %s)", PROXY_VERSION, cfg->version,
             cfg->data_dir);
    event_base_dispatch(base);
    rc = 0;

out:
    proxy_server_free(server); /* stops accepting and drains the flows first */
    audit_pipeline_free(pipe); /* then the ring drains into the sinks, which flush */
    for (size_t i = 0; sinks && i < nsinks; i++)
        sink_free(sinks[i]);
    free(sinks);
    audit_ring_free(ring);
    for (int i = 0; i < 3; i++)
        if (sig[i])
            event_free(sig[i]);
    if (base)
        event_base_free(base);
    if (rc == 0)
        diag_log(DIAG_INFO, "main", "stopped");
    proxy_config_free(cfg);
    return rc;
}
