/* proxy/proxy-int.h - private to proxy/: workers, client connections, flows, upstreams.
 *
 *   client ──► conn (one per client TCP connection, many flows in turn with keep-alive)
 *                │  llhttp request parser; a flow per request or CONNECT
 *                ├─ pre_dns ─► resolve (evdns) ─► pre_request ─► upstream connect (or reuse)
 *                ├─ HTTP: request head + streamed body ─► upstream; llhttp response parser
 *                │        ─► post_response ─► response head + streamed body ─► client
 *                └─ CONNECT: 200, then bytes both ways (tunnel.c)
 *
 * Everything here runs on the worker thread that owns the conn; nothing is shared between
 * workers except the audit ring (lock-free) and the read-only config. */
#ifndef VIGIL_PROXY_PROXY_INT_H
#define VIGIL_PROXY_PROXY_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <llhttp.h>

#include "audit/audit.h"
#include "proxy/clienthello.h"
#include "proxy/http.h"
#include "proxy/metrics.h"
#include "proxy/policy.h"
#include "proxy/proxy.h"
#include "proxy/ssrf.h"

#define PROXY_MAX_HEADERS 1000
#define PROXY_HIGH_WATER (256 * 1024) /* bytes queued toward a peer before we stop reading the other */
#define PROXY_READ_HIGH (64 * 1024)   /* unparsed input kept before a bufferevent stops reading */
#define PROXY_RING_RETRY_MS 5         /* overflow policy "block": how often a waiting flow retries */

struct proxy_worker;
struct conn;

/* A parsed authority: host (lowercased, without brackets and trailing dot) and port. */
struct proxy_target {
    char host[256];
    uint16_t port;
    int host_is_ip; /* the host was a literal address */
};

enum up_state {
    UP_CONNECTING = 0,
    UP_ACTIVE,
    UP_IDLE, /* kept alive between flows of the same client connection */
};

struct upstream {
    struct bufferevent *bev;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    enum up_state state;
    int reused; /* this flow runs on a connection an earlier flow used */
    int64_t connect_start_us; /* CLOCK_MONOTONIC when the connect began, for the latency metric */
};

enum conn_state {
    CONN_IDLE = 0,  /* waiting for a request (keep-alive) */
    CONN_HEAD,      /* reading request headers */
    CONN_AUTH,      /* the credentials are being checked on an offload thread */
    CONN_PEEK,      /* CONNECT answered 200: waiting for the ClientHello */
    CONN_TLS_UP,    /* interception: TLS handshake with the upstream */
    CONN_MINTING,   /* interception: the leaf is being minted on an offload thread */
    CONN_TLS_CLIENT,/* interception: TLS handshake with the client */
    CONN_WAIT_RING, /* overflow policy "block": the head waits for room in the ring */
    CONN_RESOLVING, /* pre_dns done, waiting for evdns */
    CONN_CONNECTING,
    CONN_FORWARD,   /* HTTP: request going up, response coming down */
    CONN_TUNNEL,    /* CONNECT relay */
    CONN_CLOSING,   /* flushing the last bytes to the client, then free */
};

/* The current flow of a conn. */
struct flow {
    uint8_t id[16];
    char id_text[AUDIT_FLOW_ID_LEN + 1];
    int64_t start_us; /* wall clock */
    int active;       /* begun and not yet ended (flow.end not yet recorded) */
    int refused;      /* refused for want of ring space: counted by the ring, not recorded */
    int head_done;    /* the request head was processed */
    int is_connect;
    int is_head;      /* HEAD request: the response has no body */
    int client_11;    /* the client speaks HTTP/1.1 or later */
    char method[24];
    struct proxy_target target;
    uint32_t path_off, path_len;   /* in c->req.buf: path and query as received */
    uint32_t query_off, query_len; /* the query alone, without '?' */
    int query_set;
    struct sockaddr_storage dest;
    socklen_t destlen;
    int dest_set;
    int req_chunked;   /* the request body is re-chunked upstream */
    int req_done;      /* the request message was read whole */
    int req_keepalive; /* the client wants the connection kept */
    int resp_started;  /* the response head went to the client */
    int resp_chunked;  /* the response body is re-chunked to the client */
    int resp_close;    /* the client connection closes after this response */
    int resp_eof;      /* the response body ends when the upstream closes */
    int retried;       /* resent once on a fresh upstream after a stale reused one closed */
    uint16_t status;
    int64_t resp_content_length;
    char content_type[128];
    uint64_t bytes_up, bytes_down;
    struct evdns_getaddrinfo_request *dns_req;
    int dns_done;
    int dns_resolved; /* a name was resolved: the event carries the evidence */
    int64_t dns_start_us;
    uint64_t dns_latency_us;
    char dns_answers[256]; /* the answers, one per line */
    size_t dns_answers_len;
    const struct policy_pconf *pc; /* the proxy configuration serving this flow */
    char principal[256];           /* the authenticated user, "" when none */
    int allowed_by_rule;           /* a rule allowed an earlier phase (allowlist mode) */
    int post_denied;               /* post_response denied: answered once the parser returns */
    struct policy_decision post_deny;
    char ssrf_reason[40];
    struct proxy_clienthello hello; /* CONNECT: what the ClientHello showed */
    int hello_done;                 /* the ClientHello was read (or will not come) */
    int hello_result;               /* enum proxy_ch_result */
    int intercept;                  /* TLS interception: the tunnel, or a request inside one */
    struct policy_decision pending_decision; /* interception: pre_request, recorded once TLS is up */
    char tls_cert[768];      /* the upstream certificate: sha256 \t issuer \t subject \t not_before \t not_after */
    char tls_version[16];
    char tls_cipher[64];
    char tls_verify_error[160];
    char tls_leaf_serial[48];
    int tls_leaf, tls_leaf_hit;
    struct evbuffer *req_head; /* the head as sent upstream, until the first response byte */
};

struct conn {
    struct proxy_worker *w;
    struct proxy_config *cfg; /* a reference: the config of the current (or next) flow */
    struct sockaddr_storage client_sa;
    struct conn *prev, *next; /* the worker's list */
    struct bufferevent *bev;  /* client */
    struct audit_ip client;
    const char *listener; /* the name of the listener it came in on */
    struct event *timer;  /* header, idle and connect timeouts */
    llhttp_t req_parser;
    llhttp_t resp_parser;
    struct msg req;
    struct msg resp;
    struct flow flow;
    struct upstream *up;
    enum conn_state state;
    int hold;          /* callbacks on the stack: free is deferred until they unwind */
    int dead;          /* freed once hold drops to 0 */
    int req_paused;    /* the request parser returned HPE_PAUSED and awaits llhttp_resume */
    int need_kick;     /* after a resume, run the parser once even with no new input */
    int client_paused; /* request body held back: upstream output is full */
    int up_paused;     /* response body held back: client output is full */
    int client_eof;    /* the client half-closed after a complete request */
    int got_bytes;     /* a byte of the current request has arrived */
    int obs_fold;      /* obs-fold seen in the current request head */
    uint8_t last_byte; /* the last head byte scanned, for obs-fold across reads */
    struct tunnel *tunnel; /* CONNECT relay state, once the 200 is sent */
    struct event *peek_ev; /* CONNECT: peeking the ClientHello in the socket (MSG_PEEK) */
    int intercepted;              /* the client speaks TLS with a minted leaf: requests inside are flows */
    struct flow tunnel_flow;      /* ... and this is the tunnel's own flow, ended when the client leaves */
    uint64_t tunnel_bytes_up, tunnel_bytes_down;
    const char *close_reason;     /* why the connection closes, for the tunnel's flow.end */
};

struct proxy_listener {
    char name[64];
    struct sockaddr_storage addr;
    socklen_t addrlen;
};

struct offload_job;

struct proxy_worker {
    struct proxy_server *server;
    struct proxy_config *cfg;                   /* new flows use it (a reference) */
    _Atomic(struct proxy_config *) pending_cfg; /* handed over by a reload */
    int reload_fd;                              /* eventfd: a reload is pending */
    struct event *reload_ev;
    int done_fd; /* eventfd: offloaded jobs finished */
    struct event *done_ev;
    pthread_mutex_t done_mu;
    struct offload_job *done;
    unsigned index;
    pthread_t thread;
    struct event_base *base;
    struct evdns_base *dns;
    struct evconnlistener **listeners; /* one per server listener */
    int stop_fd; /* eventfd: proxy_server_stop() writes it */
    struct event *stop_ev;
    struct event *drain_timer;
    struct conn *conns;
    size_t nconns;
    int draining;
    struct proxy_metrics_worker metrics; /* written by this worker only; read by the admin thread */
};

struct proxy_offload;

struct proxy_server {
    const struct proxy_config *cfg; /* the start-up config: listeners, workers, ring, sinks */
    struct proxy_ssrf_self self;    /* the proxy's own addresses, for the SSRF guard */
    struct proxy_offload *offload;
    struct audit_ring *ring;
    struct proxy_listener *listeners;
    size_t nlisteners;
    int **fds; /* fds[worker][listener] */
    struct proxy_worker *workers;
    unsigned nworkers;
    int started;
};

/* util.c */
/* Parses "IP:PORT" / "[IPv6]:PORT" (numeric only). 0, or -1. */
int proxy_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* Parses an authority "host[:port]" (userinfo already removed), normalising the host
 * (lowercase, brackets and one trailing dot removed). <default_port> when absent. 0, or -1. */
int proxy_parse_authority(const char *s, size_t len, uint16_t default_port, struct proxy_target *t);
/* "ip:port" / "[ip]:port" of <sa> into <out>. */
void proxy_format_sockaddr(const struct sockaddr *sa, char *out, size_t outlen);
int64_t proxy_now_mono_us(void);
int64_t proxy_now_wall_us(void);
const char *proxy_status_phrase(unsigned status);

/* flow.c */
void proxy_flow_init_once(void); /* llhttp settings; before the first accept */
void proxy_conn_accept(struct proxy_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                       const char *listener);
void proxy_conn_close_idle(struct conn *c);  /* drain: close a conn with no flow in progress */
void proxy_conn_abort(struct conn *c, const char *reason); /* drain deadline: end the flow, close */

/* Shared by flow.c and tunnel.c */
void conn_hold(struct conn *c);
void conn_release(struct conn *c); /* frees a conn marked dead once nothing holds it */
void conn_free(struct conn *c);    /* now, or when the last hold is released */
void conn_flow_end(struct conn *c, const char *reason);
void conn_send_error(struct conn *c, unsigned status, const char *reason, const char *text);
/* The same with <extra> ("Name: value\r\n" lines, or NULL) in the head. */
void conn_send_error_hdr(struct conn *c, unsigned status, const char *reason, const char *text, const char *extra);
void conn_upstream_free(struct conn *c);
void conn_set_timer(struct conn *c, unsigned ms);
void conn_feed(struct conn *c);            /* runs the request parser over the client's input */
void conn_start_forward(struct conn *c);   /* upstream ready: send the request head, stream the rest */
void conn_set_client_callbacks(struct conn *c);
void conn_set_up_callbacks(struct conn *c);
/* Policy phases: decide (with the built-in guards) without recording; record a decision;
 * decide + record + apply (0 goes on, -1 denied and answered); record a deny and answer it. */
void conn_decide_phase(struct conn *c, enum audit_phase phase, struct policy_decision *d);
int conn_emit_phase(struct conn *c, enum audit_phase phase, const struct policy_decision *d);
int conn_run_phase(struct conn *c, enum audit_phase phase);
void conn_deny_phase(struct conn *c, enum audit_phase phase, const struct policy_decision *d);

/* tunnel.c */
struct tunnel;
void tunnel_start(struct conn *c); /* upstream connected: send the 200 and relay */
void tunnel_free(struct conn *c);  /* stops the relay's events; NULL tunnel does nothing */

/* offload.c */
typedef void (*proxy_offload_fn)(void *arg);
struct proxy_offload *proxy_offload_new(unsigned nthreads);
void proxy_offload_free(struct proxy_offload *o); /* finishes queued jobs first */
#define PROXY_OFFLOAD_MAX_QUEUED 256
/* Runs <work>(<arg>) on a pool thread, then <done>(<arg>) on <w>'s loop. 0, or -1 when out of
 * memory or PROXY_OFFLOAD_MAX_QUEUED jobs already wait. */
int proxy_offload_submit(struct proxy_worker *w, proxy_offload_fn work, proxy_offload_fn done, void *arg);
void proxy_offload_run_done(struct proxy_worker *w); /* the worker's done_ev callback body */

/* intercept.c */
void intercept_upstream_start(struct conn *c);   /* the upstream's TCP is up: TLS, verify, mint */
void intercept_client_ready(struct conn *c);     /* the client's handshake is done: requests follow */
int intercept_request_head(struct conn *c);      /* a request inside: 0, or -1 refused (answered) */
void intercept_tunnel_end(struct conn *c, const char *reason); /* the tunnel's own flow.end */
void intercept_alert(struct conn *c);            /* refused after the 200: a TLS alert, then close */
void intercept_timeout(struct conn *c);          /* a handshake took too long */

/* dns.c */
typedef void (*proxy_resolve_cb)(struct conn *c, int err, const struct sockaddr_storage *addrs, size_t n);
/* Resolves c->flow.target. Calls <cb> exactly once, possibly before returning, with the
 * answers (at most PROXY_DNS_MAX_ANSWERS, ports set). err 0 on success, else an EVUTIL_EAI_*
 * code. */
#define PROXY_DNS_MAX_ANSWERS 8
void proxy_resolve(struct conn *c, proxy_resolve_cb cb);
void proxy_resolve_cancel(struct conn *c);

#endif
