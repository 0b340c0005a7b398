/* audit/audit.h - the audit record: event model, flow ids, the ring between workers and
 * the pipeline thread, serialization and the pipeline that feeds the sinks.
 *
 * This is the only audit header that other folders include (with audit/sink.h for the sink
 * interface, audit/segment.h for the segment format and audit/diag.h for diagnostics).
 *
 * An event is a fixed-size, pointer-free struct: scalar fields plus a packed text area that
 * holds its strings. Being pointer-free, an event can be copied into a ring slot (or a
 * MAP_SHARED slot of a file) as plain bytes, and a producer builds it on its own stack. */
#ifndef VIGIL_AUDIT_AUDIT_H
#define VIGIL_AUDIT_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_SCHEMA "vigil.event/1"

enum audit_event_kind {
    AUDIT_EVENT_FLOW_PHASE = 0, /* "flow.phase": one per evaluated phase */
    AUDIT_EVENT_FLOW_END,       /* "flow.end": closes every flow, failed ones too */
    AUDIT_EVENT_PROXY_CONFIG,   /* "proxy.config": a config was loaded, reloaded or rejected */
    AUDIT_EVENT_AUDIT_LOSS,     /* "audit.loss": events lost or flows refused, never silent */
    AUDIT_EVENT_AUDIT_KEY,      /* "audit.key": a data key for sealed originals, sealed to each role */
    AUDIT_EVENT_KIND_COUNT
};

enum audit_phase {
    AUDIT_PHASE_NONE = 0,
    AUDIT_PHASE_PRE_DNS,
    AUDIT_PHASE_PRE_REQUEST,
    AUDIT_PHASE_POST_RESPONSE,
};

enum audit_action {
    AUDIT_ACTION_NONE = 0,
    AUDIT_ACTION_ALLOW,
    AUDIT_ACTION_DENY,
    AUDIT_ACTION_ALERT,
};

/* String fields, stored in the event's text area. */
enum audit_str {
    AUDIT_STR_REASON = 0,      /* "reason": why the phase decided so, or why the flow ended */
    AUDIT_STR_RULE_GROUP,      /* "rule.group" */
    AUDIT_STR_RULE_ID,         /* "rule.id"; unset with AUDIT_F_RULE means "default" */
    AUDIT_STR_CONFIG_VERSION,  /* "config_version": hash of the config the event was decided under */
    AUDIT_STR_METHOD,          /* "request.method" */
    AUDIT_STR_SCHEME,          /* "request.scheme": "http", or "connect" for a tunnel */
    AUDIT_STR_HOST,            /* "request.host" */
    AUDIT_STR_PATH,            /* "request.path" */
    AUDIT_STR_QUERY,           /* "request.query" (without the '?') */
    AUDIT_STR_CONTENT_TYPE,    /* "response.content_type" */
    AUDIT_STR_LISTENER,        /* "listener": the listen address the client came in on */
    AUDIT_STR_PRINCIPAL,       /* "principal": the authenticated proxy user */
    /* Lists, packed: entries end with '\n', their members are separated by '\t'. */
    AUDIT_STR_ALERTS,          /* "alerts": group \t id \t priority */
    AUDIT_STR_DRY_RUN,         /* "dry_run": group \t id \t priority \t action it would have taken */
    AUDIT_STR_UNEVALUABLE,     /* "unevaluable": group \t id \t priority \t condition */
    AUDIT_STR_DNS_ANSWERS,     /* "dns.answers": address \n address ... */
    AUDIT_STR_TLS_SNI,         /* "tls.sni": the ClientHello's server name */
    AUDIT_STR_TLS_ALPN,        /* "tls.alpn_offered": protocol \n protocol ... */
    AUDIT_STR_TLS_HELLO,       /* "tls.client_hello": "ok", "not_tls", "malformed", "timeout" */
    AUDIT_STR_TLS_VERSION,     /* "tls.version" of an intercepted connection ("TLSv1.3") */
    AUDIT_STR_TLS_CIPHER,      /* "tls.cipher" */
    AUDIT_STR_TLS_CERT,        /* "tls.upstream_certificate": sha256 \t issuer \t subject \t not_before \t not_after */
    AUDIT_STR_TLS_LEAF_SERIAL, /* "tls.leaf.serial": the minted leaf's serial (hex) */
    AUDIT_STR_TLS_VERIFY_ERROR,/* "tls.verify_error": why the upstream certificate was refused */
    AUDIT_STR_PARENT_FLOW,     /* "parent_flow_id": the CONNECT tunnel a request inside interception came through */
    /* Headers: "name \t value \n" per header, names lowercased (a value may hold a tab, never a
     * line break); serialized as an object, repeated names joined with ", ". */
    AUDIT_STR_REQ_HEADERS,     /* "request.headers" */
    AUDIT_STR_RESP_HEADERS,    /* "response.headers" */
    /* Set by the pipeline's redaction stage: */
    AUDIT_STR_REDACTIONS,      /* "redactions": field \t class \t token */
    AUDIT_STR_SEALED,          /* "sealed": field \t class \t key_id \t box (base64 of the sealed original) */
    AUDIT_STR_KEY_ID,          /* audit.key: "key_id" of the data key it carries */
    AUDIT_STR_KEY_SEALED,      /* audit.key: "sealed_for": role \t box (base64 of the data key sealed to the role) */
    AUDIT_STR_COUNT
};

/* Presence flags: which groups of fields the event carries. */
enum audit_flag {
    AUDIT_F_CLIENT = 1u << 0,      /* client {ip, port} */
    AUDIT_F_REQUEST = 1u << 1,     /* request {method, scheme, host, port, path, query} */
    AUDIT_F_DESTINATION = 1u << 2, /* destination {ip, port} */
    AUDIT_F_RESPONSE = 1u << 3,    /* response {status, content_type, content_length} */
    AUDIT_F_BYTES = 1u << 4,       /* bytes {up, down} */
    AUDIT_F_DURATION = 1u << 5,    /* duration_ms */
    AUDIT_F_RULE = 1u << 6,        /* rule {group, id, priority} or {"id":"default"} */
    AUDIT_F_TRUNCATED = 1u << 7,   /* some string did not fit the text area: "truncated": true */
    AUDIT_F_FLOW = 1u << 8,        /* flow_id is set */
    AUDIT_F_DNS = 1u << 9,         /* dns {answers, used (= destination.ip), latency_ms} */
    AUDIT_F_TLS = 1u << 10,        /* tls {...}, with tls_bits */
};

/* tls_bits of an event with AUDIT_F_TLS */
enum audit_tls_bit {
    AUDIT_TLS_INTERCEPTED = 1u << 0,   /* "intercepted": true */
    AUDIT_TLS_SNI_COMPARED = 1u << 1,  /* an SNI was compared with the CONNECT host: "sni_matches_host" present */
    AUDIT_TLS_SNI_MATCHES = 1u << 2,   /* ... and it matched */
    AUDIT_TLS_LEAF = 1u << 3,          /* a leaf was minted or taken from the cache: "leaf" present */
    AUDIT_TLS_LEAF_CACHE_HIT = 1u << 4,/* "leaf.cache": "hit" (else "miss") */
};

struct audit_ip {
    uint8_t family; /* 0: unset, 4: IPv4 (addr[0..3]), 6: IPv6 */
    uint8_t addr[16];
    uint16_t port;
};

#define AUDIT_EVENT_SIZE 16384
#define AUDIT_TEXT_MAX 15872

struct audit_event {
    uint8_t kind;   /* enum audit_event_kind */
    uint8_t phase;  /* enum audit_phase */
    uint8_t action; /* enum audit_action */
    uint8_t tls_bits; /* enum audit_tls_bit, with AUDIT_F_TLS */
    uint32_t flags; /* enum audit_flag bits */
    int64_t time_us; /* wall clock, microseconds since the epoch, set by audit_event_init() */
    uint8_t flow_id[16];
    struct audit_ip client;
    struct audit_ip destination;
    uint16_t request_port;
    uint16_t status;        /* response.status; 0 = none */
    int32_t rule_priority;  /* with a named rule */
    int64_t content_length; /* response.content_length; -1 = unknown */
    uint64_t bytes_up;      /* client -> upstream */
    uint64_t bytes_down;    /* upstream -> client */
    uint64_t duration_us;
    uint64_t lost;          /* audit.loss: events lost */
    uint64_t refused;       /* audit.loss: flows refused because the ring was full (fail_closed) */
    uint64_t dns_latency_us; /* with AUDIT_F_DNS: how long the resolver took */
    uint16_t str_off[AUDIT_STR_COUNT];
    uint16_t str_len[AUDIT_STR_COUNT];
    uint16_t text_used;
    char text[AUDIT_TEXT_MAX];
};

/* Zeroes <ev>, sets its kind and time (CLOCK_REALTIME, a vDSO call, no syscall) and marks
 * content_length unknown. Any thread. */
void audit_event_init(struct audit_event *ev, enum audit_event_kind kind);

/* Appends one entry to the packed list field <f> (AUDIT_STR_ALERTS ...): its <n> members,
 * separated by '\t', then '\n'. Only while <f> is the last field set (build a list in one go).
 * Members must not contain '\t' or '\n'. 0, or -1 when the text area is full (then the entry
 * is left out and AUDIT_F_TRUNCATED set). */
int audit_event_list_add(struct audit_event *ev, enum audit_str f, const char *const *members, size_t n);
/* The same with member lengths given (members need not be NUL-terminated); at most 8 for
 * audit_event_list_add. */
int audit_event_list_add_n(struct audit_event *ev, enum audit_str f, const char *const *members, const size_t *lens,
                           size_t n);

/* Stores <len> bytes of <s> as field <f> (replacing an earlier value only by appending: set
 * each field once). Returns 0, or -1 when the text area was too small: a prefix is kept and
 * AUDIT_F_TRUNCATED is set. Borrows <s> for the call. */
int audit_event_set_str(struct audit_event *ev, enum audit_str f, const char *s, size_t len);

/* Field <f> of <ev> and its length in *<len>; NULL when unset. Valid while <ev> is. */
const char *audit_event_str(const struct audit_event *ev, enum audit_str f, size_t *len);

/* Fills <ip> from a sockaddr (AF_INET or AF_INET6; anything else leaves it unset). */
struct sockaddr;
void audit_ip_from_sockaddr(struct audit_ip *ip, const struct sockaddr *sa);

/* Writes the textual address of <ip> (no port) into <out>; returns <out>. */
const char *audit_ip_format(const struct audit_ip *ip, char *out, size_t outlen);

/* Number of bytes of <ev> that matter (header plus used text): what a copy must move. */
size_t audit_event_used_size(const struct audit_event *ev);

const char *audit_event_kind_name(enum audit_event_kind k); /* "flow.phase", ... */
const char *audit_phase_name(enum audit_phase p);           /* "pre_dns", ...; NULL for NONE */
const char *audit_action_name(enum audit_action a);         /* "allow", ...; NULL for NONE */

/* ---- flow ids: 128-bit, time-ordered (48-bit ms timestamp + 80 random bits, ULID-like),
 * printed as 26 Crockford base32 characters. ---- */

#define AUDIT_FLOW_ID_LEN 26

/* A new id into <out>. Ids made by one thread are strictly increasing; across threads they
 * are unique with overwhelming probability. Per-thread state, seeded once per thread from
 * libsodium; no syscall after the first call on a thread. */
void audit_flow_id_new(uint8_t out[16]);

/* 26 characters and a NUL into <out>. */
void audit_flow_id_format(const uint8_t id[16], char out[AUDIT_FLOW_ID_LEN + 1]);

/* Parses 26 Crockford base32 characters (case-insensitive). 0, or -1 when malformed. */
int audit_flow_id_parse(const char *s, uint8_t out[16]);

/* Milliseconds since the epoch encoded in <id>. */
uint64_t audit_flow_id_time_ms(const uint8_t id[16]);

/* ---- serialization ---- */

/* A growable byte buffer, capped at <max> bytes (0: no cap beyond memory). */
struct audit_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};
void audit_buf_init(struct audit_buf *b, size_t max);
void audit_buf_fini(struct audit_buf *b);
int audit_buf_append(struct audit_buf *b, const void *p, size_t n); /* 0, or -1 (cap/ENOMEM) */

/* Appends the JSON object of <ev> with sequence number <seq> to <out>, without a newline.
 * Fields follow schemas/event.schema.json; strings are escaped as JSON requires (bytes that
 * are not valid UTF-8 become U+FFFD). Returns 0, or -1 when <out> could not grow. */
int audit_event_to_json(const struct audit_event *ev, uint64_t seq, struct audit_buf *out);

/* Appends the OCSF form of <ev> (schemas/ocsf-mapping.md: HTTP Activity, class_uid 4002, for
 * flow events; Device Config State Change 5019 for proxy.config; Base Event 0 for
 * audit.loss) with sequence number <seq> and chain <chain_hex> (64 hex digits, or NULL) to
 * <out>, without a newline. Returns 0, or -1 when <out> could not grow. */
int audit_event_to_ocsf(const struct audit_event *ev, uint64_t seq, const char *chain_hex, struct audit_buf *out);

/* RFC 3339 UTC with microseconds ("2026-11-26T16:30:45.123456Z") of <time_us>. */
void audit_format_time(int64_t time_us, char out[32]);

/* ---- the ring: bounded MPSC queue of fixed-size slots ----
 *
 * Producers (worker threads) claim a slot with a compare-and-swap on the head counter and
 * publish it by storing the slot's sequence number (Vyukov's bounded queue). The enqueue path
 * takes no lock and makes no syscall; proxy/ relies on it. One consumer: the pipeline. */

enum audit_overflow {
    AUDIT_OVERFLOW_FAIL_CLOSED = 0, /* new flows are refused (503 + counted) until it drains */
    AUDIT_OVERFLOW_BLOCK,           /* stop accepting connections until it drains */
    AUDIT_OVERFLOW_DROP,            /* count what is lost; audit.loss reports it */
};

struct audit_ring;

/* A ring of <capacity> slots of 1 KiB (rounded up to a power of two, at least 16). An event
 * takes one slot, or up to five when its strings are long. NULL on failure. */
struct audit_ring *audit_ring_new(size_t capacity, enum audit_overflow policy);
void audit_ring_free(struct audit_ring *r);

/* Copies <ev> into the ring. 0, or -1 when full; a failed push adds one to the lost count,
 * which the pipeline reports in an audit.loss event. Any thread; no lock, no syscall. */
int audit_emit(struct audit_ring *r, const struct audit_event *ev);

/* Asks whether a new flow may start: 0 when the ring has room for a flow's events (its
 * free slots exceed the reserve kept for flows already running), -1 otherwise. Under
 * fail_closed a -1 also counts one refused flow. Any thread; no lock, no syscall. */
int audit_ring_admit(struct audit_ring *r);

/* Copies the oldest event into <out>. 0, or -1 when empty. Consumer thread only. */
int audit_ring_pop(struct audit_ring *r, struct audit_event *out);

size_t audit_ring_capacity(const struct audit_ring *r); /* in slots */
size_t audit_ring_depth(const struct audit_ring *r);    /* slots in use; approximate from any thread */
enum audit_overflow audit_ring_policy(const struct audit_ring *r);

/* Returns the lost / refused counts accumulated since the last call and clears them.
 * Consumer thread (the pipeline reports them). */
uint64_t audit_ring_take_lost(struct audit_ring *r);
uint64_t audit_ring_take_refused(struct audit_ring *r);

/* Totals since creation, for metrics. Any thread. */
uint64_t audit_ring_total_pushed(const struct audit_ring *r);
uint64_t audit_ring_total_lost(const struct audit_ring *r);
uint64_t audit_ring_total_refused(const struct audit_ring *r); /* flows refused (fail_closed) */

/* Parses "fail_closed" | "block" | "drop". 0, or -1. */
int audit_overflow_parse(const char *s, enum audit_overflow *out);

/* ---- the pipeline thread: ring -> serialize -> sinks ---- */

struct sink;
struct audit_pipeline;
struct json_t;

struct audit_pipeline_opts {
    unsigned idle_sleep_us; /* sleep when the ring is empty; 0 = 1000 */
    unsigned tick_ms;       /* how often sinks get their tick; 0 = 100 */
    uint64_t last_seq;      /* seq of the last record already stored (a restart continues after it) */
    uint8_t last_chain[32]; /* its chain; all zero for a fresh data directory */
    size_t queue_records;   /* each sink's queue holds about this many records; 0 = 16384 */
    const char *spool_dir;  /* on_full "spill" spools under <spool_dir>/<sink name>/ (DATA_DIR/spool);
                             * NULL: spill behaves as block */
    uint64_t spool_max_bytes; /* per sink; 0 = 1 GiB */
    /* The redaction stage (audit/redaction.c): runs when <keys_dir> is set, unless <redaction>
     * says "enabled": false. <keys_dir> holds the token key ring (DATA_DIR/keys; the config's
     * "keys_dir" overrides it); <redaction> is the config's "redaction" object (NULL: every
     * default), borrowed for audit_pipeline_new(). NULL <keys_dir>: no redaction stage at all,
     * for tests and benchmarks of other parts; vigil always sets it. */
    const char *keys_dir;
    const struct json_t *redaction;
};

/* A pipeline that drains <ring> into <sinks> (borrowed: they must outlive the pipeline;
 * <nsinks> may be 0 for tests). Each sink gets its own bounded queue and delivery thread
 * (started by audit_pipeline_start()), so a slow sink holds up the others only once its
 * queue is full, and then as its on_full says. <o> may be NULL. NULL with <err> on failure. */
struct audit_pipeline *audit_pipeline_new(struct audit_ring *ring, struct sink *const *sinks, size_t nsinks,
                                          const struct audit_pipeline_opts *o, char *err, size_t errlen);

/* Starts the thread. 0, or -1 with <err>. */
int audit_pipeline_start(struct audit_pipeline *p, char *err, size_t errlen);

/* Drains the ring completely, flushes every sink, and joins the thread. Call only once the
 * producers have stopped. Idempotent. */
void audit_pipeline_stop(struct audit_pipeline *p);
void audit_pipeline_free(struct audit_pipeline *p); /* stops it first if running */

/* Records written to the sinks so far (the last seq handed out). Any thread. */
uint64_t audit_pipeline_seq(const struct audit_pipeline *p);

/* The queue of sink <i> (in the order given to audit_pipeline_new()), for metrics. */
struct audit_pipeline_sink_stats {
    uint64_t queued;  /* records waiting in its queue (a gauge) */
    uint64_t dropped; /* records lost to it since start: on_full drop, failed writes */
    uint64_t spilled; /* records put in its spool under on_full spill */
    uint64_t blocked; /* times the pipeline waited for its queue (on_full block) */
};
void audit_pipeline_sink_stats(const struct audit_pipeline *p, size_t i, struct audit_pipeline_sink_stats *out);

/* ---- the redaction stage, as the config and the admin endpoint see it ---- */

struct json_t;

/* Validates a "redaction" config object (NULL: the defaults): its keys and types, the
 * detectors as configured (compiled, then discarded, when the object changes them: a custom
 * file, enable/disable, query_params, api_key_headers), the roles file and the keep_originals
 * patterns.
 * Touches no key. 0, or -1 with one line per error in <err>, each naming its JSON path
 * ("redaction.keep_originals[1]: not a class pattern ..."). Any thread. */
int audit_redaction_check(const struct json_t *conf, char *err, size_t errlen);

/* Totals since the pipeline was made. */
struct audit_redaction_stats {
    uint64_t events;       /* events redacted */
    uint64_t redactions;   /* spans replaced by tokens */
    uint64_t unscannable;  /* fields tokenized whole (too long, scanner error, out of memory) */
    uint64_t failures;     /* redaction calls that ran out of memory (their fields tokenized whole) */
    uint64_t lost;         /* events not written because the stage itself failed (audit.loss
                            * "redaction_failure"): never written unredacted */
    uint64_t sealed;       /* originals sealed */
    uint64_t seal_dropped; /* originals of kept classes not sealed (no room in the event, no key) */
    uint64_t keys;         /* data keys made (one audit.key record each) */
};

/* 0 with the stage's totals in <out>, or -1 (zeroed) when the pipeline has no redaction
 * stage. Any thread, while <p> lives. */
int audit_pipeline_redaction_stats(const struct audit_pipeline *p, struct audit_redaction_stats *out);

/* Redactions by class: one entry per class seen so far (classes past the first 128 are
 * summed under "other"). */
struct audit_redaction_count {
    const char *cls; /* "credential.bearer", ...; valid while the pipeline lives */
    uint64_t count;
};

/* Fills up to <max> entries of <out> and returns how many classes there are (call again with
 * more room when that exceeds <max>). 0 without a redaction stage. Any thread, while <p>
 * lives. */
size_t audit_pipeline_redaction_counts(const struct audit_pipeline *p, struct audit_redaction_count *out,
                                       size_t max);

#endif
