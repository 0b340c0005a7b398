/* audit/sink.h - the sink interface the pipeline drives.
 *
 * audit/ declares the interface and never includes sinks/: each sink type in sinks/ is a
 * const ops table, and the `vigil` main opens the configured instances through sinks/'s
 * registry (sinks/sinks.h) and hands them to the pipeline. Every ops slot is mandatory and
 * checked once when an instance is opened, so callers never test for NULL. */
#ifndef VIGIL_AUDIT_SINK_H
#define VIGIL_AUDIT_SINK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* One serialized record, borrowed for the duration of a write call. */
struct sink_record {
    const char *data; /* the JSON object, no trailing newline */
    size_t len;
    uint64_t seq;
    int64_t time_us;
};

enum sink_result {
    SINK_OK = 0, /* every record of the batch was accepted */
    SINK_RETRY,  /* nothing was accepted; call again later with the same batch */
    SINK_FAIL,   /* the batch is lost; the pipeline counts it and reports an audit.loss */
};

/* Health, for /readyz and diagnostics. */
enum sink_health {
    SINK_HEALTHY = 0, /* delivering */
    SINK_DEGRADED,    /* accepting, but its peer is away (spooling, reconnecting) */
    SINK_DOWN,        /* not accepting records */
};

/* Counters a sink reports for /metrics: totals since open. */
struct sink_stats {
    uint64_t delivered; /* records written out or acknowledged by the peer */
    uint64_t pending;   /* accepted, not yet delivered (buffered, in flight); a gauge */
    uint64_t spooled;   /* records put in the sink's disk spool while its peer was away */
    uint64_t replayed;  /* records taken back from the spool and delivered */
};

/* Output format of a sink's records (config "format"). */
enum sink_format {
    SINK_FORMAT_NATIVE = 0, /* vigil.event/1 JSON as serialized */
    SINK_FORMAT_OCSF,       /* OCSF HTTP Activity (class_uid 4002) JSON */
};

/* What the pipeline does when a sink's own queue is full (config "on_full"). */
enum sink_on_full {
    SINK_ON_FULL_BLOCK = 0, /* wait: the pipeline, then the ring, back up (its overflow policy applies) */
    SINK_ON_FULL_SPILL,     /* write the overflow to disk and replay it when the sink catches up */
    SINK_ON_FULL_DROP,      /* count it; an audit.loss event reports the count */
};

/* What every sink may need from the process. Borrowed during open. */
struct sink_env {
    const char *data_dir; /* DATA_DIR; the file sink writes under DATA_DIR/audit */
};

struct sink;

struct sink_ops {
    const char *type; /* config "type": "file", "kafka", "syslog" */
    /* Parses <conf> (the sink's config object) and allocates s->ctx. 0, or -1 with <err>
     * filled, naming the offending key. */
    int (*open)(struct sink *s, const json_t *conf, const struct sink_env *env, char *err, size_t errlen);
    /* Ships <n> records. Borrows <recs> for the duration of the call. */
    enum sink_result (*write)(struct sink *s, const struct sink_record *recs, size_t n);
    /* Time-driven work (close a frame after T ms, retry a connection). <now_us> is
     * CLOCK_REALTIME in microseconds. Called about every tick_ms by the pipeline. */
    void (*tick)(struct sink *s, int64_t now_us);
    /* 0 once every accepted record is written out (durable per the sink's fsync policy),
     * -1 if that could not be done within <timeout_ms>. */
    int (*flush)(struct sink *s, int timeout_ms);
    /* Frees s->ctx; must cope with a failed open (ctx NULL or partial). */
    void (*close)(struct sink *s);
    /* Health and counters. Called from any thread (the admin endpoint) while the sink runs:
     * implementations read atomics, never take the sink's own locks for long. */
    enum sink_health (*health)(struct sink *s);
    void (*stats)(struct sink *s, struct sink_stats *out);
};

struct sink {
    const struct sink_ops *ops;
    char *name;       /* config name (default: the type), used in diagnostics */
    void *ctx;        /* the implementation's state */
    uint64_t dropped; /* records lost since the last audit.loss; the pipeline adds to it */
    /* Keys every sink takes, parsed by the registry before ops->open: */
    enum sink_format format;   /* "format" */
    enum sink_on_full on_full; /* "on_full" */
    int required;              /* "required": /readyz fails while this sink is not healthy */
};

#endif
