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
#include "proxy/admin.h"
#include "proxy/auth.h"
#include "proxy/explain.h"
#include "audit/segment.h"
#include "proxy/proxy.h"
#include "proxy/user.h"
#include "sinks/sinks.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil [options]\n"
               "  --config FILE             load FILE instead of the embedded default config\n"
               "  --listen HOST:PORT        listen there (repeatable; replaces the config's list)\n"
               "  --data-dir DIR            write the record under DIR (default ./vigil-data)\n"
               "  --workers N               worker threads (default: one per core)\n"
               "  --admin HOST:PORT         serve /metrics, /healthz, /readyz there (loopback unless the\n"
               "                            config's admin.allow_remote is true)\n"
               "  --user NAME               started as root: run as NAME once the listeners are bound\n"
               "  --check-config FILE       validate FILE: exit 0, or 2 with one line per error\n"
               "  --explain URL             show each phase's decision for URL without sending traffic;\n"
               "                            with --client IP, --principal NAME, --ip IP (skip DNS),\n"
               "                            --method M, --header 'Name: value' (repeatable), --config FILE\n"
               "  --hash-password USER      read a password on stdin, print a password file line\n"
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

struct running {
    struct event_base *base;
    struct proxy_server *server;
    struct proxy_admin *admin; /* NULL when not configured */
    struct audit_ring *ring;
    const struct proxy_config *boot; /* listeners, workers, data dir, ring and sinks stay as started */
    const char *config_path;
    char version[65]; /* of the config new flows use */
};

/* Keys a reload cannot change in a running process. */
static void warn_restart_keys(const struct proxy_config *boot, const json_t *root)
{
    static const char *const keys[] = {"listen", "workers", "data_dir", "audit", "sinks", "redaction", "roles", "admin", "user", NULL};
    for (const char *const *k = keys; *k; k++) {
        json_t *a = json_object_get(boot->root, *k), *b = json_object_get(root, *k);
        if ((a || b) && !(a && b && json_equal(a, b)))
            diag_log(DIAG_WARN, "main", "reload: \"%s\" changed; it takes effect at the next restart", *k);
    }
}

/* SIGHUP: load the config file again. A bad one is rejected, recorded, and the running
 * policy stays; a good one serves every flow that starts from now on. */
static void reload(struct running *r)
{
    char err[4096];
    if (!r->config_path) {
        diag_log(DIAG_WARN, "main", "SIGHUP: running on the embedded default config; nothing to reload");
        return;
    }
    struct proxy_config *c = proxy_config_load(r->config_path, err, sizeof(err));
    if (!c) {
        char first[512];
        snprintf(first, sizeof(first), "rejected: %.*s", (int)strcspn(err, "\n"), err);
        diag_log(DIAG_ERROR, "main", "reload of %s %s; keeping config %s", r->config_path, first, r->version);
        proxy_emit_config_event(r->ring, r->version, first); /* the version that stays in force */
        return;
    }
    warn_restart_keys(r->boot, c->root);
    snprintf(r->version, sizeof(r->version), "%s", c->version);
    proxy_admin_set_config(r->admin, c);
    proxy_server_reload(r->server, c); /* takes our reference */
    proxy_emit_config_event(r->ring, r->version, "reloaded");
    diag_log(DIAG_INFO, "main", "reloaded %s: config %s", r->config_path, r->version);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct running *r = arg;
    (void)what;
    if (sig == SIGHUP) {
        reload(r);
        return;
    }
    diag_log(DIAG_INFO, "main", "signal %d: draining", (int)sig);
    proxy_admin_set_draining(r->admin);
    event_base_loopbreak(r->base);
}

/* --hash-password USER: the password on the first line of stdin; prints a password file line. */
static int hash_password(const char *user)
{
    char pass[1024], hash[256];
    if (!proxy_auth_user_valid(user)) {
        fprintf(stderr, "vigil: a user name must be non-empty, without ':' or control characters\n");
        return 2;
    }
    if (!fgets(pass, sizeof(pass), stdin)) {
        fprintf(stderr, "vigil: --hash-password reads the password from standard input\n");
        return 2;
    }
    pass[strcspn(pass, "\r\n")] = '\0';
    int rc = proxy_auth_hash_password(pass, hash, sizeof(hash));
    sodium_memzero(pass, sizeof(pass));
    if (rc == -1) {
        fprintf(stderr, "vigil: no hash made: the password must be non-empty, without control characters "
                        "(or memory ran out)\n");
        return 2;
    }
    printf("%s:%s\n", user, hash);
    return 0;
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *data_dir = NULL, *check_path = NULL, *admin_listen = NULL, *user = NULL;
    const char *listen[64];
    size_t nlisten = 0;
    long workers = -1;
    struct proxy_explain_opts ex = {0};
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
        } else if (strcmp(a, "--hash-password") == 0 && v) {
            if (sodium_init() < 0)
                return 1;
            return hash_password(v);
        } else if ((strcmp(a, "--explain") == 0 || strcmp(a, "--client") == 0 || strcmp(a, "--principal") == 0 ||
                    strcmp(a, "--ip") == 0 || strcmp(a, "--method") == 0 || strcmp(a, "--header") == 0) &&
                   v) {
            i++;
            if (strcmp(a, "--explain") == 0)
                ex.url = v;
            else if (strcmp(a, "--client") == 0)
                ex.client = v;
            else if (strcmp(a, "--principal") == 0)
                ex.principal = v;
            else if (strcmp(a, "--ip") == 0)
                ex.ip = v;
            else if (strcmp(a, "--method") == 0)
                ex.method = v;
            else if (ex.nheaders < PROXY_EXPLAIN_MAX_HEADERS)
                ex.headers[ex.nheaders++] = v;
        } else if ((strcmp(a, "--config") == 0 || strcmp(a, "--listen") == 0 || strcmp(a, "--data-dir") == 0 ||
                    strcmp(a, "--workers") == 0 || strcmp(a, "--check-config") == 0 || strcmp(a, "--admin") == 0 ||
                    strcmp(a, "--user") == 0) &&
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
            else if (strcmp(a, "--admin") == 0)
                admin_listen = v;
            else if (strcmp(a, "--user") == 0)
                user = v;
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
    if (ex.url) {
        int erc = proxy_explain(cfg, &ex, stdout, err, sizeof(err));
        if (erc == 2)
            fprintf(stderr, "vigil: --explain: %s\n", err);
        proxy_config_free(cfg);
        return erc;
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
    if (!admin_listen)
        admin_listen = cfg->admin_listen;
    if (!user)
        user = cfg->user;
    if (admin_listen && proxy_admin_check_listen(admin_listen, cfg->admin_allow_remote, err, sizeof(err)) == -1) {
        fprintf(stderr, "vigil: admin: %s\n", err);
        proxy_config_free(cfg);
        return 2;
    }
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
    struct proxy_admin *admin = NULL;
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
    /* a restart continues the record's numbering and chain after the last stored record:
     * the newest in any file sink's directory (each sealed what a crash left when it
     * opened); a sink with on_full "spill" spools its overflow under DATA_DIR/spool */
    struct audit_pipeline_opts popts = {0};
    char spool_dir[4096];
    snprintf(spool_dir, sizeof(spool_dir), "%s/spool", cfg->data_dir);
    popts.spool_dir = spool_dir;
    /* the redaction stage: token key ring in DATA_DIR/keys unless "redaction.keys_dir" says
     * otherwise; the "redaction" object was validated with the config */
    char keys_dir[4096];
    snprintf(keys_dir, sizeof(keys_dir), "%s/keys", cfg->data_dir);
    popts.keys_dir = keys_dir;
    popts.redaction = json_object_get(cfg->root, "redaction");
    for (size_t i = 0; i < nsinks; i++) {
        json_t *sc = json_array_get(cfg->sinks, i);
        const char *type = json_string_value(json_object_get(sc, "type"));
        const char *dir = json_string_value(json_object_get(sc, "dir"));
        char segdir[4096];
        uint64_t seq;
        uint8_t chain[32];
        if (!type || strcmp(type, "file") != 0)
            continue;
        if (!dir) {
            snprintf(segdir, sizeof(segdir), "%s/audit", cfg->data_dir);
            dir = segdir;
        }
        if (audit_segment_last_record(dir, &seq, chain, err, sizeof(err)) == -1) {
            diag_log(DIAG_WARN, "main", "cannot read the last record: %s", err);
            continue;
        }
        if (seq > popts.last_seq) {
            popts.last_seq = seq;
            memcpy(popts.last_chain, chain, sizeof(chain));
        }
    }
    pipe = audit_pipeline_new(ring, sinks, nsinks, &popts, err, sizeof(err));
    if (!pipe || audit_pipeline_start(pipe, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, "main", "audit pipeline: %s", err);
        goto out;
    }
    proxy_emit_config_event(ring, cfg->version, "loaded");

    server = proxy_server_new(cfg, ring, err, sizeof(err));
    if (!server) {
        diag_log(DIAG_ERROR, "main", "%s", err);
        goto out;
    }
    if (admin_listen) {
        struct proxy_admin_sources src = {
            .server = server, .ring = ring, .pipeline = pipe, .sinks = sinks, .nsinks = nsinks};
        admin = proxy_admin_new(admin_listen, cfg->admin_allow_remote, &src, cfg, err, sizeof(err));
        if (!admin) {
            diag_log(DIAG_ERROR, "main", "%s", err);
            goto out;
        }
    }
    /* everything that needs root is bound or open: from here on, the configured user */
    if (proxy_user_drop(cfg, user, err, sizeof(err)) == -1) {
        diag_log(DIAG_ERROR, "main", "cannot drop privileges: %s; exiting", err);
        goto out;
    }
    if (proxy_server_start(server, err, sizeof(err)) == -1 ||
        (admin && proxy_admin_start(admin, err, sizeof(err)) == -1)) {
        diag_log(DIAG_ERROR, "main", "%s", err);
        goto out;
    }

    base = event_base_new();
    if (!base)
        goto out;
    struct running run = {.base = base, .server = server, .admin = admin, .ring = ring, .boot = cfg,
                          .config_path = config_path};
    snprintf(run.version, sizeof(run.version), "%s", cfg->version);
    int signums[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        sig[i] = evsignal_new(base, signums[i], on_signal, &run);
        if (!sig[i] || event_add(sig[i], NULL) == -1)
            goto out;
    }
    diag_log(DIAG_INFO, "main", "vigil %s ready (config %s, data dir %s)", PROXY_VERSION, cfg->version,
             cfg->data_dir);
    event_base_dispatch(base);
    rc = 0;

out:
    if (server)
        proxy_server_stop(server); /* stops accepting and drains the flows; /readyz says draining */
    proxy_admin_free(admin);       /* before the workers whose counters it reads are freed */
    proxy_server_free(server);
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
