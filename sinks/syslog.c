/* sinks/syslog.c - the syslog sink: each record as one RFC 5424 message.
 *
 *     {"type": "syslog", "name": "siem", "transport": "udp" | "tcp" | "tls" | "unix",
 *      "address": "host:port" | "/dev/log", "facility": "local0", "ca_file": "/etc/vigil/ca.pem",
 *      "cert_file": ..., "key_file": ..., "tls_name": "syslog.example.com", "hostname": ...,
 *      "max_message": 8192, "bom": false, "spool_max_bytes": 268435456, "reconnect_max_ms": 30000}
 *
 *     <PRI>1 TIMESTAMP HOSTNAME vigil PROCID MSGID [vigil@32473 flow_id="…" seq="…" chain="…"
 *       phase="…" action="…" rule="…"] {"schema":"vigil.event/1",…}
 *
 * PRI is facility (default local0) * 8 + a severity chosen from the event: flow.phase with
 * action deny → warning (4), alert → alert (1) (an alert rule exists to get a person to look:
 * DESIGN "alert logs at alert severity"), other phases → info (6); flow.end → info (6);
 * proxy.config → notice (5); audit.loss → error (3): the record lost events. TIMESTAMP is the
 * record's time (RFC 3339, microseconds, UTC), HOSTNAME "hostname" or gethostname(), PROCID
 * the pid, MSGID the event kind ("flow.phase"). The structured data repeats the fields an
 * auditor needs to cross-check the feed against the signed files; absent fields are left
 * out; values are escaped as RFC 5424 §6.3.3 asks ('"', '\' and ']' get a backslash). MSG is
 * the record's JSON as the pipeline serialized it, behind a UTF-8 BOM when "bom" is true.
 * (32473 is the private enterprise number RFC 5612 reserves for documentation.)
 *
 * Transports. "udp" (RFC 5426, default address 127.0.0.1:514): one datagram per message.
 * "tcp" (RFC 6587 octet counting, 127.0.0.1:514) and "tls" (RFC 5425, 127.0.0.1:6514,
 * OpenSSL, TLS 1.2 or later, the server verified against "ca_file" or the system store and
 * "tls_name" or the address's host; "cert_file"/"key_file" for client authentication):
 * "LEN SP MSG" on a stream. "unix" (default /dev/log): one datagram per message on a local
 * AF_UNIX datagram socket.
 *
 * Never truncated silently. A message longer than "max_message" (default 8192, the size
 * receivers accept by default; at most 65507 for udp, the largest UDP payload) is not sent:
 * it is counted in s->dropped, so the pipeline reports it in an audit.loss event, with a
 * diagnostic naming its seq and length. Splitting a record over several messages would hand
 * the SIEM fragments it cannot reassemble, so it is refused whole; raise "max_message" (and
 * the receiver's limit) where records are larger.
 *
 * Delivery. udp is fire and forget: a datagram that cannot be sent (no route) is counted as
 * dropped; a full socket buffer makes write() return SINK_RETRY. unix: a full receiver makes
 * write() return SINK_RETRY, and so does an absent socket (syslogd restarting) while it
 * reconnects. tcp and tls connect without blocking the pipeline (non-blocking connect and
 * handshake, driven by write() and tick()), reconnect with exponential back-off (250 ms up to
 * "reconnect_max_ms"), and spool like the kafka sink: while disconnected or behind, messages
 * go to a disk spool (audit/spool.h) under DATA_DIR/spool/<name>/, which is replayed in
 * order on reconnect and after a restart before anything newer. A message counts as
 * delivered once the kernel took all its bytes; syslog over TCP has no acknowledgement, so
 * what sat in the kernel's buffer when a connection died is lost with it (RFC 6587 §3.4.2; RELP
 * exists for that). Messages queued in user space when a connection fails go back to the
 * spool. One thread at a time (the sink's delivery thread) calls write, tick and flush, and
 * close comes after it stopped; health and stats read atomics, from any thread. */
#include "sinks/sinks.h"
#include "sinks/sinks-int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "audit/audit.h"
#include "audit/diag.h"
#include "audit/spool.h"

#define COMPONENT "sink.syslog"
#define SD_ID "vigil@32473"
#define APP_NAME "vigil"
#define UDP_MAX 65507
#define STREAM_MAX (1024 * 1024)
#define OUT_MAX (1024 * 1024) /* bytes queued in user space for a stream */
#define BACKOFF_MIN_MS 250
#define SPOOL_DEFAULT (256LL * 1024 * 1024)

enum transport {
    T_UDP = 0,
    T_TCP,
    T_TLS,
    T_UNIX,
};

static const char *const transport_names[] = { "udp", "tcp", "tls", "unix", NULL };

enum conn_state {
    C_DOWN = 0,
    C_CONNECTING,
    C_HANDSHAKE,
    C_UP,
};

/* One message queued in <out>. */
struct out_ent {
    uint64_t seq;
    size_t start;     /* offset of its octet count */
    size_t msg;       /* offset of the message itself */
    size_t end;
    int from_spool;   /* acknowledge it in the spool once sent; otherwise spool it if it is not */
};

struct syslog_sink {
    struct sink *s;
    int transport;
    char *host, *port, *path;
    int facility;
    long long max_message;
    long long reconnect_max_ms;
    int bom;
    char *ca_file, *cert_file, *key_file, *tls_name;
    char hostname[256];
    char procid[16];
    char target[300]; /* "host:port" or the socket path, for diagnostics */

    int fd;
    enum conn_state state;
    SSL_CTX *ssl_ctx;
    SSL *ssl;
    int64_t next_attempt_ms; /* monotonic */
    int64_t backoff_ms;
    int failing;             /* the last connection attempt or send failed; diagnostics on transitions */
    char last_err[256];

    struct audit_spool *sp;  /* tcp, tls */
    int spool_full;
    char *out;
    size_t out_len, out_sent, out_cap;
    struct out_ent *ents;
    size_t nents, cap_ents, ent_head;

    struct audit_buf msg;    /* the message being built */
    struct {
        size_t k;
        uint64_t first, last;
    } retry;
    int64_t toobig_logged_ms;
    uint64_t toobig_suppressed;

    atomic_int health;
    atomic_uint_least64_t delivered, pending, spooled, replayed;
};

static int64_t mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_stream(const struct syslog_sink *ss)
{
    return ss->transport == T_TCP || ss->transport == T_TLS;
}

/* ---- configuration ---- */

static int facility_parse(const json_t *v, int *out)
{
    static const char *const names[] = {
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
        "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
        "local7",
    };

    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 23) {
        *out = (int)json_integer_value(v);
        return 0;
    }
    if (json_is_string(v)) {
        for (int i = 0; i < 24; i++) {
            if (strcmp(json_string_value(v), names[i]) == 0) {
                *out = i;
                return 0;
            }
        }
    }
    return -1;
}

static int opt_str(const json_t *conf, const char *key, char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(conf, key);

    if (v == NULL)
        return 0;
    if (!json_is_string(v) || json_string_length(v) == 0) {
        snprintf(err, errlen, ".%s: must be a non-empty string", key);
        return -1;
    }
    *out = strdup(json_string_value(v));
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* Splits "host:port" or "[v6]:port" into ss->host and ss->port. */
static int split_hostport(struct syslog_sink *ss, const char *a, char *err, size_t errlen)
{
    const char *colon, *hs = a, *he;

    if (a[0] == '[') {
        he = strchr(a, ']');
        if (he == NULL || he[1] != ':')
            goto bad;
        hs = a + 1;
        colon = he + 1;
    } else {
        colon = strrchr(a, ':');
        if (colon == NULL || memchr(a, ':', (size_t)(colon - a)) != NULL)
            goto bad;
        he = colon;
    }
    if (he == hs || colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
        atoi(colon + 1) < 1 || atoi(colon + 1) > 65535)
        goto bad;
    ss->host = strndup(hs, (size_t)(he - hs));
    ss->port = strdup(colon + 1);
    if (ss->host == NULL || ss->port == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, ".address: must be \"host:port\" (IPv6 as \"[addr]:port\")");
    return -1;
}

static int parse_conf(struct syslog_sink *ss, const json_t *conf, long long *spool_max, char *err, size_t errlen)
{
    static const char *const known[] = {
        "name", "type", "format", "on_full", "required", "transport", "address", "facility", "ca_file",
        "cert_file", "key_file", "tls_name", "hostname", "max_message", "bom", "spool_max_bytes",
        "reconnect_max_ms", NULL,
    };
    const json_t *v;
    char *address = NULL, *hostname = NULL;
    int rc = -1;

    ss->transport = T_UDP;
    ss->facility = 16;
    ss->max_message = 8192;
    ss->reconnect_max_ms = 30000;
    *spool_max = SPOOL_DEFAULT;
    if (sink_conf_check_keys(conf, known, err, errlen) == -1 ||
        sink_conf_enum(conf, "transport", transport_names, &ss->transport, err, errlen) == -1 ||
        sink_conf_int(conf, "max_message", 480, ss->transport == T_UDP ? UDP_MAX : STREAM_MAX, &ss->max_message, err,
                      errlen) == -1 ||
        sink_conf_int(conf, "spool_max_bytes", 1024 * 1024, 1LL << 50, spool_max, err, errlen) == -1 ||
        sink_conf_int(conf, "reconnect_max_ms", 1, 3600 * 1000, &ss->reconnect_max_ms, err, errlen) == -1 ||
        opt_str(conf, "address", &address, err, errlen) == -1 ||
        opt_str(conf, "ca_file", &ss->ca_file, err, errlen) == -1 ||
        opt_str(conf, "cert_file", &ss->cert_file, err, errlen) == -1 ||
        opt_str(conf, "key_file", &ss->key_file, err, errlen) == -1 ||
        opt_str(conf, "tls_name", &ss->tls_name, err, errlen) == -1 ||
        opt_str(conf, "hostname", &hostname, err, errlen) == -1)
        goto out;
    v = json_object_get(conf, "facility");
    if (v != NULL && facility_parse(v, &ss->facility) == -1) {
        snprintf(err, errlen, ".facility: must be a facility name (\"local0\", \"daemon\", ...) or 0 to 23");
        goto out;
    }
    v = json_object_get(conf, "bom");
    if (v != NULL && !json_is_boolean(v)) {
        snprintf(err, errlen, ".bom: must be true or false");
        goto out;
    }
    ss->bom = json_is_true(v);
    if (ss->transport != T_TLS && (ss->ca_file || ss->cert_file || ss->key_file || ss->tls_name)) {
        snprintf(err, errlen, ".%s: only for \"transport\": \"tls\"",
                 ss->ca_file ? "ca_file" : ss->cert_file ? "cert_file" : ss->key_file ? "key_file" : "tls_name");
        goto out;
    }
    if ((ss->cert_file == NULL) != (ss->key_file == NULL)) {
        snprintf(err, errlen, ".%s: needs %s too", ss->cert_file ? "cert_file" : "key_file",
                 ss->cert_file ? "key_file" : "cert_file");
        goto out;
    }
    if (ss->transport == T_UNIX) {
        ss->path = strdup(address != NULL ? address : "/dev/log");
        if (ss->path == NULL || strlen(ss->path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            snprintf(err, errlen, ".address: socket path too long");
            goto out;
        }
    } else if (split_hostport(ss, address != NULL ? address : ss->transport == T_TLS ? "127.0.0.1:6514"
                                                                                     : "127.0.0.1:514",
                              err, errlen) == -1) {
        goto out;
    }
    if (hostname != NULL) {
        snprintf(ss->hostname, sizeof(ss->hostname), "%s", hostname);
    } else if (gethostname(ss->hostname, sizeof(ss->hostname)) == -1) {
        strcpy(ss->hostname, "-");
    }
    ss->hostname[sizeof(ss->hostname) - 1] = '\0';
    /* HOSTNAME is 1*255PRINTUSASCII: anything else becomes '_' */
    for (char *p = ss->hostname; *p != '\0'; p++) {
        if (*p < 33 || *p > 126)
            *p = '_';
    }
    if (ss->hostname[0] == '\0')
        strcpy(ss->hostname, "-");
    rc = 0;
out:
    free(address);
    free(hostname);
    return rc;
}

/* ---- formatting ---- */

static int severity_of(const char *event, const char *action)
{
    if (event == NULL)
        return 5;
    if (strcmp(event, "flow.phase") == 0) {
        if (action != NULL && strcmp(action, "deny") == 0)
            return 4;
        if (action != NULL && strcmp(action, "alert") == 0)
            return 1;
        return 6;
    }
    if (strcmp(event, "flow.end") == 0)
        return 6;
    if (strcmp(event, "audit.loss") == 0)
        return 3;
    return 5; /* proxy.config and kinds to come */
}

static int put(struct audit_buf *b, const char *s)
{
    return audit_buf_append(b, s, strlen(s));
}

/* Appends ' name="value"' with the value escaped as an SD-PARAM value. */
static int put_param(struct audit_buf *b, const char *name, const char *val, size_t len)
{
    size_t i, run = 0;

    if (put(b, " ") == -1 || put(b, name) == -1 || put(b, "=\"") == -1)
        return -1;
    for (i = 0; i < len; i++) {
        if (val[i] == '"' || val[i] == '\\' || val[i] == ']') {
            if (audit_buf_append(b, val + run, i - run) == -1 || audit_buf_append(b, "\\", 1) == -1)
                return -1;
            run = i;
        }
    }
    if (audit_buf_append(b, val + run, len - run) == -1)
        return -1;
    return put(b, "\"");
}

static const char *jstr(json_t *o, const char *key, size_t *len)
{
    json_t *v = json_object_get(o, key);

    if (!json_is_string(v))
        return NULL;
    *len = json_string_length(v);
    return json_string_value(v);
}

/* Builds the RFC 5424 message of <r> into ss->msg (without framing). 0, or -1 when memory ran out. */
static int format_msg(struct syslog_sink *ss, const struct sink_record *r)
{
    struct audit_buf *b = &ss->msg;
    json_t *root = json_loadb(r->data, r->len, 0, NULL);
    const char *event = NULL, *action = NULL, *v;
    char head[64], ts[32], seqs[24];
    size_t len = 0;
    int rc = -1, n;

    b->len = 0;
    if (json_is_object(root)) {
        event = json_string_value(json_object_get(root, "event"));
        action = json_string_value(json_object_get(root, "action"));
    }
    audit_format_time(r->time_us, ts);
    n = snprintf(head, sizeof(head), "<%d>1 ", ss->facility * 8 + severity_of(event, action));
    if (audit_buf_append(b, head, (size_t)n) == -1 || put(b, ts) == -1 || put(b, " ") == -1 ||
        put(b, ss->hostname) == -1 || put(b, " " APP_NAME " ") == -1 || put(b, ss->procid) == -1 ||
        put(b, " ") == -1)
        goto out;
    /* MSGID: 1*32PRINTUSASCII */
    if (event != NULL && strlen(event) <= 32 &&
        strspn(event, "abcdefghijklmnopqrstuvwxyz.-_0123456789") == strlen(event))
        rc = put(b, event);
    else
        rc = put(b, "-");
    if (rc == -1 || put(b, " [" SD_ID) == -1)
        goto out;
    rc = -1;
    if (json_is_object(root) && (v = jstr(root, "flow_id", &len)) != NULL && put_param(b, "flow_id", v, len) == -1)
        goto out;
    n = snprintf(seqs, sizeof(seqs), "%" PRIu64, r->seq);
    if (put_param(b, "seq", seqs, (size_t)n) == -1)
        goto out;
    if (json_is_object(root)) {
        json_t *rule = json_object_get(root, "rule");

        if ((v = jstr(root, "chain", &len)) != NULL && put_param(b, "chain", v, len) == -1)
            goto out;
        if ((v = jstr(root, "phase", &len)) != NULL && put_param(b, "phase", v, len) == -1)
            goto out;
        if ((v = jstr(root, "action", &len)) != NULL && put_param(b, "action", v, len) == -1)
            goto out;
        if (json_is_object(rule) && (v = jstr(rule, "id", &len)) != NULL && put_param(b, "rule", v, len) == -1)
            goto out;
    }
    if (put(b, "] ") == -1 || (ss->bom && put(b, "\xEF\xBB\xBF") == -1) || audit_buf_append(b, r->data, r->len) == -1)
        goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- connections ---- */

static void set_health(struct syslog_sink *ss)
{
    enum sink_health h = SINK_HEALTHY;

    if (ss->spool_full)
        h = SINK_DOWN;
    else if (ss->transport == T_UNIX)
        h = ss->state == C_UP ? SINK_HEALTHY : SINK_DOWN;
    else if (is_stream(ss))
        h = ss->state == C_UP && audit_spool_pending(ss->sp) == 0 ? SINK_HEALTHY : SINK_DEGRADED;
    else if (ss->failing)
        h = SINK_DEGRADED;
    atomic_store(&ss->health, (int)h);
    if (ss->sp != NULL)
        atomic_store(&ss->pending, audit_spool_pending(ss->sp) + (ss->nents - ss->ent_head));
}

static void ssl_errors(char *out, size_t outlen)
{
    unsigned long e;
    size_t off = 0;

    out[0] = '\0';
    while ((e = ERR_get_error()) != 0 && off + 2 < outlen) {
        char one[256];

        ERR_error_string_n(e, one, sizeof(one));
        off += (size_t)snprintf(out + off, outlen - off, "%s%s", off ? "; " : "", one);
    }
}

static int tls_ctx_new(struct syslog_sink *ss, char *err, size_t errlen)
{
    char e[512];

    ss->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (ss->ssl_ctx == NULL)
        goto ssl_fail;
    SSL_CTX_set_min_proto_version(ss->ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ss->ssl_ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ss->ssl_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (ss->ca_file != NULL) {
        if (SSL_CTX_load_verify_locations(ss->ssl_ctx, ss->ca_file, NULL) != 1) {
            ssl_errors(e, sizeof(e));
            snprintf(err, errlen, ".ca_file: cannot load %s: %s", ss->ca_file, e);
            return -1;
        }
    } else if (SSL_CTX_set_default_verify_paths(ss->ssl_ctx) != 1) {
        goto ssl_fail;
    }
    if (ss->cert_file != NULL) {
        if (SSL_CTX_use_certificate_chain_file(ss->ssl_ctx, ss->cert_file) != 1) {
            ssl_errors(e, sizeof(e));
            snprintf(err, errlen, ".cert_file: cannot load %s: %s", ss->cert_file, e);
            return -1;
        }
        if (SSL_CTX_use_PrivateKey_file(ss->ssl_ctx, ss->key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ss->ssl_ctx) != 1) {
            ssl_errors(e, sizeof(e));
            snprintf(err, errlen, ".key_file: cannot use %s: %s", ss->key_file, e);
            return -1;
        }
    }
    return 0;
ssl_fail:
    ssl_errors(e, sizeof(e));
    snprintf(err, errlen, "TLS set-up failed: %s", e);
    return -1;
}

/* Moves what <out> holds and the kernel did not take back to the spool (messages that came
 * from it are still there), and empties <out>. */
static void out_to_spool(struct syslog_sink *ss)
{
    char err[256];

    for (size_t i = ss->ent_head; i < ss->nents; i++) {
        struct out_ent *e = &ss->ents[i];

        if (e->from_spool)
            continue;
        if (audit_spool_append(ss->sp, e->seq, ss->out + e->msg, e->end - e->msg, err, sizeof(err)) == -1) {
            ss->s->dropped++;
            diag_log(DIAG_ERROR, COMPONENT, "%s: record %" PRIu64 " lost: %s", ss->s->name, e->seq, err);
        } else {
            atomic_fetch_add(&ss->spooled, 1);
        }
    }
    ss->nents = ss->ent_head = 0;
    ss->out_len = ss->out_sent = 0;
    if (ss->sp != NULL)
        audit_spool_rewind(ss->sp);
}

static void conn_close(struct syslog_sink *ss)
{
    if (ss->ssl != NULL) {
        SSL_free(ss->ssl);
        ss->ssl = NULL;
    }
    if (ss->fd != -1) {
        close(ss->fd);
        ss->fd = -1;
    }
    ss->state = C_DOWN;
}

/* Ends an established stream in order: close_notify (tls) and a half-close, then reads until
 * the receiver closes its side too, up to <deadline_ms> (monotonic). The receiver has then
 * read every byte sent: the one confirmation syslog over TCP offers. Closing without this
 * could reset the connection (unread TLS session tickets), and a reset makes the receiver's
 * kernel throw away what it had not read yet. */
static void conn_shutdown(struct syslog_sink *ss, int64_t deadline_ms)
{
    char buf[4096];

    if (ss->state != C_UP || ss->fd == -1)
        return;
    if (ss->ssl != NULL) {
        for (int i = 0; i < 50 && SSL_shutdown(ss->ssl) < 0; i++) {
            int e = SSL_get_error(ss->ssl, -1);
            struct pollfd pfd = { .fd = ss->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT };

            if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) || mono_ms() >= deadline_ms)
                break;
            poll(&pfd, 1, 20);
        }
        ERR_clear_error();
    }
    shutdown(ss->fd, SHUT_WR);
    for (;;) {
        struct pollfd pfd = { .fd = ss->fd, .events = POLLIN };
        int64_t left = deadline_ms - mono_ms();
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        r = recv(ss->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0 || (r == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            break;
    }
}

/* The connection failed: close it, put back what was queued, and wait before the next try. */
static void conn_fail(struct syslog_sink *ss, const char *what)
{
    if (!ss->failing || strcmp(ss->last_err, what) != 0)
        diag_log(DIAG_WARN, COMPONENT, "%s: %s: %s; %s", ss->s->name, ss->target, what,
                 is_stream(ss) ? "spooling and reconnecting" : "retrying");
    snprintf(ss->last_err, sizeof(ss->last_err), "%s", what);
    ss->failing = 1;
    conn_close(ss);
    if (is_stream(ss))
        out_to_spool(ss);
    ss->next_attempt_ms = mono_ms() + ss->backoff_ms;
    ss->backoff_ms = ss->backoff_ms * 2 > ss->reconnect_max_ms ? ss->reconnect_max_ms : ss->backoff_ms * 2;
}

static void conn_up(struct syslog_sink *ss)
{
    ss->state = C_UP;
    ss->backoff_ms = BACKOFF_MIN_MS;
    if (ss->failing)
        diag_log(DIAG_INFO, COMPONENT, "%s: connected to %s", ss->s->name, ss->target);
    ss->failing = 0;
}

static void tls_step(struct syslog_sink *ss)
{
    int r = SSL_connect(ss->ssl), e;
    char msg[512], errs[384];

    if (r == 1) {
        conn_up(ss);
        return;
    }
    e = SSL_get_error(ss->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return;
    ssl_errors(errs, sizeof(errs));
    if (SSL_get_verify_result(ss->ssl) != X509_V_OK)
        snprintf(msg, sizeof(msg), "TLS handshake failed: certificate verification: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ss->ssl)));
    else
        snprintf(msg, sizeof(msg), "TLS handshake failed: %s",
                 errs[0] ? errs : e == SSL_ERROR_SYSCALL ? "connection closed" : "error");
    conn_fail(ss, msg);
}

/* Starts a connection (tcp, tls, unix). Never blocks on the network: a TCP connect goes on in
 * conn_progress(). Name resolution uses getaddrinfo(), which may wait on DNS for a name. */
static void conn_start(struct syslog_sink *ss)
{
    char msg[300];

    if (ss->transport == T_UNIX) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        ss->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (ss->fd == -1) {
            snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
            conn_fail(ss, msg);
            return;
        }
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ss->path);
        if (connect(ss->fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
            snprintf(msg, sizeof(msg), "connect: %s", strerror(errno));
            conn_fail(ss, msg);
            return;
        }
        conn_up(ss);
        return;
    }

    struct addrinfo hints = { .ai_socktype = ss->transport == T_UDP ? SOCK_DGRAM : SOCK_STREAM }, *ai = NULL, *p;
    int r = getaddrinfo(ss->host, ss->port, &hints, &ai);

    if (r != 0) {
        snprintf(msg, sizeof(msg), "cannot resolve: %s", gai_strerror(r));
        conn_fail(ss, msg);
        return;
    }
    msg[0] = '\0';
    for (p = ai; p != NULL; p = p->ai_next) {
        ss->fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, p->ai_protocol);
        if (ss->fd == -1)
            continue;
        if (connect(ss->fd, p->ai_addr, p->ai_addrlen) == 0) {
            ss->state = C_CONNECTING; /* conn_progress() finishes it */
            break;
        }
        if (errno == EINPROGRESS) {
            ss->state = C_CONNECTING;
            break;
        }
        snprintf(msg, sizeof(msg), "connect: %s", strerror(errno));
        close(ss->fd);
        ss->fd = -1;
    }
    freeaddrinfo(ai);
    if (ss->fd == -1) {
        conn_fail(ss, msg[0] ? msg : "no usable address");
        return;
    }
    if (ss->transport == T_UDP)
        conn_up(ss);
}

/* Advances a connection that is being made, and starts one when it is time. */
static void conn_progress(struct syslog_sink *ss)
{
    if (ss->state == C_DOWN) {
        if (mono_ms() < ss->next_attempt_ms)
            return;
        conn_start(ss);
    }
    if (ss->state == C_CONNECTING) {
        struct pollfd pfd = { .fd = ss->fd, .events = POLLOUT };
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        char msg[300];

        if (poll(&pfd, 1, 0) <= 0)
            return;
        if (getsockopt(ss->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == -1)
            soerr = errno;
        if (soerr != 0) {
            snprintf(msg, sizeof(msg), "connect: %s", strerror(soerr));
            conn_fail(ss, msg);
            return;
        }
        if (ss->transport != T_TLS) {
            conn_up(ss);
            return;
        }
        ss->ssl = SSL_new(ss->ssl_ctx);
        if (ss->ssl == NULL || SSL_set_fd(ss->ssl, ss->fd) != 1) {
            conn_fail(ss, "TLS: out of memory");
            return;
        }
        {
            const char *name = ss->tls_name != NULL ? ss->tls_name : ss->host;
            unsigned char bin[16];
            int ip = inet_pton(AF_INET, name, bin) == 1 || inet_pton(AF_INET6, name, bin) == 1;

            if (!ip)
                SSL_set_tlsext_host_name(ss->ssl, name);
            if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ss->ssl), name) != 1
                   : SSL_set1_host(ss->ssl, name) != 1) {
                conn_fail(ss, "TLS: bad server name");
                return;
            }
        }
        ss->state = C_HANDSHAKE;
    }
    if (ss->state == C_HANDSHAKE)
        tls_step(ss);
}

/* Whether the peer of an established stream has closed it (it never sends us anything). */
static int stream_closed(struct syslog_sink *ss)
{
    struct pollfd pfd = { .fd = ss->fd, .events = POLLIN | POLLRDHUP };
    char buf[512];

    if (poll(&pfd, 1, 0) <= 0)
        return 0;
    if (pfd.revents & (POLLERR | POLLHUP | POLLRDHUP))
        return 1;
    if (ss->transport == T_TLS) {
        /* post-handshake messages (session tickets) are fine; a close_notify or EOF is not */
        for (;;) {
            int r = SSL_read(ss->ssl, buf, sizeof(buf));

            if (r > 0)
                continue;
            r = SSL_get_error(ss->ssl, r);
            return !(r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE);
        }
    }
    {
        ssize_t r = recv(ss->fd, buf, sizeof(buf), MSG_DONTWAIT);

        return r == 0 || (r == -1 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
}

/* Sends what <out> holds; acknowledges (or counts) the messages the kernel took whole. */
static void out_flush(struct syslog_sink *ss)
{
    while (ss->state == C_UP && ss->out_sent < ss->out_len) {
        size_t n = ss->out_len - ss->out_sent;
        ssize_t w;
        char msg[300];

        if (ss->transport == T_TLS) {
            int r = SSL_write(ss->ssl, ss->out + ss->out_sent, n > INT32_MAX ? INT32_MAX : (int)n);

            if (r <= 0) {
                int e = SSL_get_error(ss->ssl, r);
                char errs[256];

                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
                    break;
                ssl_errors(errs, sizeof(errs));
                snprintf(msg, sizeof(msg), "TLS write: %s", errs[0] ? errs : strerror(errno));
                conn_fail(ss, msg);
                return;
            }
            w = r;
        } else {
            w = send(ss->fd, ss->out + ss->out_sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w == -1) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                    break;
                snprintf(msg, sizeof(msg), "send: %s", strerror(errno));
                conn_fail(ss, msg);
                return;
            }
        }
        ss->out_sent += (size_t)w;
    }
    while (ss->ent_head < ss->nents && ss->ents[ss->ent_head].end <= ss->out_sent) {
        struct out_ent *e = &ss->ents[ss->ent_head++];

        if (e->from_spool) {
            audit_spool_ack(ss->sp, e->seq);
            atomic_fetch_add(&ss->replayed, 1);
        }
        atomic_fetch_add(&ss->delivered, 1);
    }
    if (ss->ent_head == ss->nents) {
        ss->nents = ss->ent_head = 0;
        ss->out_len = ss->out_sent = 0;
    } else if (ss->ents[ss->ent_head].start >= OUT_MAX / 2) {
        /* give the front back: a message partly sent keeps its place at the new front */
        size_t base = ss->ents[ss->ent_head].start;

        memmove(ss->out, ss->out + base, ss->out_len - base);
        ss->out_len -= base;
        ss->out_sent -= base;
        memmove(ss->ents, ss->ents + ss->ent_head, (ss->nents - ss->ent_head) * sizeof(*ss->ents));
        ss->nents -= ss->ent_head;
        ss->ent_head = 0;
        for (size_t i = 0; i < ss->nents; i++) {
            ss->ents[i].start -= base;
            ss->ents[i].msg -= base;
            ss->ents[i].end -= base;
        }
    }
}

/* Queues one message (ss->msg-like bytes <m>, <len>) with its octet count. 0, or -1 when
 * <out> has no room (or memory ran out). */
static int out_push(struct syslog_sink *ss, uint64_t seq, const char *m, size_t len, int from_spool)
{
    char pre[24];
    int n = snprintf(pre, sizeof(pre), "%zu ", len);
    size_t need = (size_t)n + len;

    /* messages from the spool are bounded by drain_spool(), which stops at OUT_MAX / 2 */
    if (!from_spool && ss->out_len - ss->out_sent + need > OUT_MAX && ss->out_len > 0)
        return -1;
    if (ss->out_len + need > ss->out_cap) {
        size_t cap = ss->out_cap ? ss->out_cap : 65536;
        char *o;

        while (cap < ss->out_len + need)
            cap *= 2;
        o = realloc(ss->out, cap);
        if (o == NULL)
            return -1;
        ss->out = o;
        ss->out_cap = cap;
    }
    if (ss->nents == ss->cap_ents) {
        size_t cap = ss->cap_ents ? ss->cap_ents * 2 : 256;
        struct out_ent *e = realloc(ss->ents, cap * sizeof(*e));

        if (e == NULL)
            return -1;
        ss->ents = e;
        ss->cap_ents = cap;
    }
    ss->ents[ss->nents].seq = seq;
    ss->ents[ss->nents].start = ss->out_len;
    ss->ents[ss->nents].msg = ss->out_len + (size_t)n;
    ss->ents[ss->nents].end = ss->out_len + need;
    ss->ents[ss->nents].from_spool = from_spool;
    ss->nents++;
    memcpy(ss->out + ss->out_len, pre, (size_t)n);
    memcpy(ss->out + ss->out_len + n, m, len);
    ss->out_len += need;
    return 0;
}

/* Moves spooled messages into <out> while connected and there is room, sending as it goes. */
static void drain_spool(struct syslog_sink *ss)
{
    char err[512];

    for (;;) {
        const char *data;
        size_t len;
        uint64_t seq;
        int r;

        out_flush(ss);
        if (ss->state != C_UP || ss->out_len - ss->out_sent > OUT_MAX / 2)
            return;
        r = audit_spool_next(ss->sp, &seq, &data, &len, err, sizeof(err));
        if (r == 0)
            return;
        if (r == -1) {
            diag_log(DIAG_ERROR, COMPONENT, "%s: %s", ss->s->name, err);
            if (strstr(err, "damaged") == NULL)
                return;
            ss->s->dropped++;
            continue;
        }
        if (out_push(ss, seq, data, len, 1) == -1) {
            /* out of memory: start over on a new connection, from the oldest unsent message */
            conn_fail(ss, "out of memory");
            return;
        }
    }
}

/* ---- datagrams ---- */

/* Sends one datagram. SINK_OK when sent or dropped (counted), SINK_RETRY when the socket is
 * full or (unix) the receiver is away. */
static enum sink_result dgram_send(struct syslog_sink *ss, uint64_t seq, const char *m, size_t len)
{
    char msg[300];

    for (int attempt = 0; attempt < 2; attempt++) {
        ssize_t w;

        if (ss->state != C_UP) {
            conn_progress(ss);
            if (ss->state != C_UP)
                return SINK_RETRY;
        }
        w = send(ss->fd, m, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w >= 0) {
            atomic_fetch_add(&ss->delivered, 1);
            if (ss->failing && ss->transport == T_UDP) {
                diag_log(DIAG_INFO, COMPONENT, "%s: sending again", ss->s->name);
                ss->failing = 0;
            }
            return SINK_OK;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)
            return SINK_RETRY;
        if (errno == ECONNREFUSED && ss->transport == T_UDP)
            continue; /* an earlier datagram's ICMP error; this one was not sent: once more */
        if (ss->transport == T_UNIX && (errno == ECONNREFUSED || errno == ENOENT || errno == ENOTCONN)) {
            snprintf(msg, sizeof(msg), "send: %s", strerror(errno));
            conn_fail(ss, msg);
            ss->next_attempt_ms = 0; /* reconnect right away once: syslogd may have restarted */
            continue;
        }
        break;
    }
    if (!ss->failing)
        diag_log(DIAG_WARN, COMPONENT, "%s: record %" PRIu64 " not sent: %s; counted as lost", ss->s->name, seq,
                 strerror(errno));
    ss->failing = 1;
    ss->s->dropped++;
    return SINK_OK;
}

/* ---- the ops ---- */

static int syslog_open(struct sink *s, const json_t *conf, const struct sink_env *env, char *err, size_t errlen)
{
    struct syslog_sink *ss;
    long long spool_max;

    ss = calloc(1, sizeof(*ss));
    if (ss == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ss->s = s;
    ss->fd = -1;
    ss->backoff_ms = BACKOFF_MIN_MS;
    s->ctx = ss;
    audit_buf_init(&ss->msg, 0);
    if (parse_conf(ss, conf, &spool_max, err, errlen) == -1)
        return -1;
    snprintf(ss->procid, sizeof(ss->procid), "%ld", (long)getpid());
    if (ss->path != NULL)
        snprintf(ss->target, sizeof(ss->target), "%s", ss->path);
    else
        snprintf(ss->target, sizeof(ss->target), strchr(ss->host, ':') ? "[%s]:%s" : "%s:%s", ss->host, ss->port);
    if (ss->transport == T_TLS && tls_ctx_new(ss, err, errlen) == -1)
        return -1;
    if (is_stream(ss)) {
        char dir[4096];
        uint64_t left;

        if (env == NULL || env->data_dir == NULL || *env->data_dir == '\0') {
            snprintf(err, errlen, "no data directory for the spool");
            return -1;
        }
        if (strchr(s->name, '/') != NULL || s->name[0] == '.') {
            snprintf(err, errlen, ".name: names the spool directory: no '/' and no leading '.'");
            return -1;
        }
        snprintf(dir, sizeof(dir), "%s/spool/%s", env->data_dir, s->name);
        ss->sp = audit_spool_open(dir, (uint64_t)spool_max, err, errlen);
        if (ss->sp == NULL)
            return -1;
        left = audit_spool_pending(ss->sp);
        if (left > 0)
            diag_log(DIAG_INFO, COMPONENT, "%s: %" PRIu64 " messages left in the spool by an earlier run go first",
                     s->name, left);
    }
    if (ss->transport == T_UDP) {
        /* resolve now: a bad address is a config error, not a runtime one */
        conn_start(ss);
        if (ss->state != C_UP) {
            snprintf(err, errlen, ".address: %s", ss->last_err);
            return -1;
        }
    } else {
        conn_start(ss); /* a peer not there yet is not an error: we keep trying */
    }
    set_health(ss);
    return 0;
}

static void log_toobig(struct syslog_sink *ss, const struct sink_record *r, size_t len)
{
    int64_t now = mono_ms();

    if (now - ss->toobig_logged_ms < 1000 && ss->toobig_logged_ms != 0) {
        ss->toobig_suppressed++;
        return;
    }
    diag_log(DIAG_WARN, COMPONENT,
             "%s: record %" PRIu64 " not sent: its message is %zu bytes, more than max_message %lld; counted as lost"
             " (%" PRIu64 " more since the last such line)",
             ss->s->name, r->seq, len, ss->max_message, ss->toobig_suppressed);
    ss->toobig_logged_ms = now;
    ss->toobig_suppressed = 0;
}

static enum sink_result syslog_write(struct sink *s, const struct sink_record *recs, size_t n)
{
    struct syslog_sink *ss = s->ctx;
    size_t i = 0;
    char err[512];

    if (ss->retry.k > 0 && ss->retry.k < n && recs[0].seq == ss->retry.first &&
        recs[ss->retry.k - 1].seq == ss->retry.last)
        i = ss->retry.k;
    ss->retry.k = 0;
    if (is_stream(ss) && ss->state == C_UP && stream_closed(ss))
        conn_fail(ss, "connection closed by the receiver");
    if (ss->transport != T_UDP)
        conn_progress(ss);
    if (is_stream(ss))
        drain_spool(ss);
    for (; i < n; i++) {
        enum sink_result r = SINK_OK;

        if (format_msg(ss, &recs[i]) == -1) {
            s->dropped++;
            diag_log(DIAG_ERROR, COMPONENT, "%s: record %" PRIu64 ": out of memory", s->name, recs[i].seq);
            continue;
        }
        if (ss->msg.len > (size_t)ss->max_message) {
            s->dropped++;
            log_toobig(ss, &recs[i], ss->msg.len);
            continue;
        }
        if (!is_stream(ss)) {
            r = dgram_send(ss, recs[i].seq, ss->msg.data, ss->msg.len);
        } else if (ss->state == C_UP && audit_spool_pending(ss->sp) == 0 &&
                   out_push(ss, recs[i].seq, ss->msg.data, ss->msg.len, 0) == 0) {
            /* queued; sent below */
        } else if (audit_spool_append(ss->sp, recs[i].seq, ss->msg.data, ss->msg.len, err, sizeof(err)) == 0) {
            atomic_fetch_add(&ss->spooled, 1);
        } else {
            if (!ss->spool_full)
                diag_log(DIAG_WARN, COMPONENT, "%s: %s; not accepting records until the receiver catches up",
                         s->name, err);
            ss->spool_full = 1;
            r = SINK_RETRY;
        }
        if (r == SINK_RETRY) {
            if (i > 0) {
                ss->retry.k = i;
                ss->retry.first = recs[0].seq;
                ss->retry.last = recs[i - 1].seq;
            }
            if (is_stream(ss))
                drain_spool(ss);
            set_health(ss);
            return SINK_RETRY;
        }
    }
    if (ss->spool_full)
        diag_log(DIAG_INFO, COMPONENT, "%s: accepting records again", s->name);
    ss->spool_full = 0;
    if (is_stream(ss))
        drain_spool(ss);
    set_health(ss);
    return SINK_OK;
}

static void syslog_tick(struct sink *s, int64_t now_us)
{
    struct syslog_sink *ss = s->ctx;

    if (ss == NULL || ss->transport == T_UDP)
        return;
    if (ss->state == C_UP && is_stream(ss) && stream_closed(ss))
        conn_fail(ss, "connection closed by the receiver");
    conn_progress(ss);
    if (is_stream(ss))
        drain_spool(ss);
    set_health(ss);
}

/* Waits up to <timeout_ms> for everything queued or spooled to be sent. What is not stays in
 * the spool on disk for the next start (that is the durability of tcp and tls), so this
 * returns 0 either way, after saying how much waits. */
static int syslog_flush(struct sink *s, int timeout_ms)
{
    struct syslog_sink *ss = s->ctx;
    int64_t start = mono_ms(), deadline = start + timeout_ms;

    if (ss == NULL || !is_stream(ss))
        return 0;
    for (;;) {
        struct pollfd pfd = { .fd = ss->fd, .events = POLLOUT };
        int64_t now;

        conn_progress(ss);
        drain_spool(ss);
        if (ss->nents == ss->ent_head && audit_spool_pending(ss->sp) == 0)
            break;
        now = mono_ms();
        if (now >= deadline || (ss->state == C_DOWN && ss->failing && now - start >= 1000))
            break;
        if (ss->fd != -1)
            poll(&pfd, 1, 20);
        else
            poll(NULL, 0, 20);
    }
    if (ss->nents > ss->ent_head) {
        /* a message may be half sent: this connection cannot carry another one */
        conn_close(ss);
        out_to_spool(ss);
    } else if (ss->state == C_UP) {
        int64_t now = mono_ms();

        /* everything is written: end the connection so the receiver confirms it read it all */
        conn_shutdown(ss, now + (deadline - now > 1000 ? deadline - now : 1000));
        conn_close(ss);
    }
    set_health(ss);
    if (audit_spool_pending(ss->sp) > 0)
        diag_log(DIAG_INFO, COMPONENT, "%s: %" PRIu64 " messages not yet sent stay in the spool for the next start",
                 s->name, audit_spool_pending(ss->sp));
    return 0;
}

static void syslog_close(struct sink *s)
{
    struct syslog_sink *ss = s->ctx;

    if (ss == NULL)
        return;
    if (ss->sp != NULL && ss->nents > ss->ent_head) {
        conn_close(ss);
        out_to_spool(ss);
    }
    conn_shutdown(ss, mono_ms() + 1000);
    conn_close(ss);
    SSL_CTX_free(ss->ssl_ctx);
    audit_spool_close(ss->sp);
    audit_buf_fini(&ss->msg);
    free(ss->out);
    free(ss->ents);
    free(ss->host);
    free(ss->port);
    free(ss->path);
    free(ss->ca_file);
    free(ss->cert_file);
    free(ss->key_file);
    free(ss->tls_name);
    free(ss);
    s->ctx = NULL;
}

static enum sink_health syslog_health(struct sink *s)
{
    struct syslog_sink *ss = s->ctx;

    return ss == NULL ? SINK_DOWN : (enum sink_health)atomic_load(&ss->health);
}

static void syslog_stats(struct sink *s, struct sink_stats *out)
{
    struct syslog_sink *ss = s->ctx;

    memset(out, 0, sizeof(*out));
    if (ss == NULL)
        return;
    out->delivered = atomic_load(&ss->delivered);
    out->pending = atomic_load(&ss->pending);
    out->spooled = atomic_load(&ss->spooled);
    out->replayed = atomic_load(&ss->replayed);
}

const struct sink_ops sink_syslog_ops = {
    .type = "syslog",
    .open = syslog_open,
    .write = syslog_write,
    .tick = syslog_tick,
    .flush = syslog_flush,
    .close = syslog_close,
    .health = syslog_health,
    .stats = syslog_stats,
};
