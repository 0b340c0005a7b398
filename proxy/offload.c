/* proxy/offload.c - slow work (password hashing, later certificate minting) off the
 * workers' event loops.
 *
 * A small pool of threads takes jobs from one queue; a finished job goes back to the
 * worker that submitted it (a mutex-protected list and an eventfd its event_base watches),
 * whose loop runs the job's completion. So completions run on the thread that owns the
 * connection, and a worker never waits for a job. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "audit/diag.h"
#include "proxy/proxy-int.h"

struct offload_job {
    struct proxy_worker *w;
    proxy_offload_fn work;
    proxy_offload_fn done;
    void *arg;
    struct offload_job *next;
};

struct proxy_offload {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct offload_job *head, *tail;
    int stop;
    size_t queued;
    pthread_t *threads;
    unsigned nthreads;
};

static void *offload_main(void *arg)
{
    struct proxy_offload *o = arg;
    for (;;) {
        pthread_mutex_lock(&o->mu);
        while (!o->head && !o->stop)
            pthread_cond_wait(&o->cv, &o->mu);
        struct offload_job *j = o->head;
        if (!j) { /* stopping and drained */
            pthread_mutex_unlock(&o->mu);
            return NULL;
        }
        o->head = j->next;
        if (!o->head)
            o->tail = NULL;
        o->queued--;
        pthread_mutex_unlock(&o->mu);

        j->work(j->arg);

        struct proxy_worker *w = j->w;
        pthread_mutex_lock(&w->done_mu);
        j->next = w->done;
        w->done = j;
        pthread_mutex_unlock(&w->done_mu);
        uint64_t one = 1;
        if (write(w->done_fd, &one, sizeof(one)) != sizeof(one))
            diag_log(DIAG_ERROR, "proxy", "offload: cannot wake worker %u: %s", w->index, strerror(errno));
    }
}

struct proxy_offload *proxy_offload_new(unsigned nthreads)
{
    struct proxy_offload *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cv, NULL);
    o->threads = calloc(nthreads, sizeof(*o->threads));
    if (!o->threads) {
        proxy_offload_free(o);
        return NULL;
    }
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&o->threads[i], NULL, offload_main, o) != 0)
            break;
        o->nthreads++;
    }
    if (o->nthreads == 0) {
        proxy_offload_free(o);
        return NULL;
    }
    return o;
}

void proxy_offload_free(struct proxy_offload *o)
{
    if (!o)
        return;
    pthread_mutex_lock(&o->mu);
    o->stop = 1;
    pthread_cond_broadcast(&o->cv);
    pthread_mutex_unlock(&o->mu);
    for (unsigned i = 0; i < o->nthreads; i++)
        pthread_join(o->threads[i], NULL);
    free(o->threads);
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cv);
    free(o);
}

int proxy_offload_submit(struct proxy_worker *w, proxy_offload_fn work, proxy_offload_fn done, void *arg)
{
    struct proxy_offload *o = w->server->offload;
    struct offload_job *j = calloc(1, sizeof(*j));
    if (!j)
        return -1;
    j->w = w;
    j->work = work;
    j->done = done;
    j->arg = arg;
    pthread_mutex_lock(&o->mu);
    if (o->queued >= PROXY_OFFLOAD_MAX_QUEUED) { /* e.g. a flood of wrong passwords: shed, do not queue */
        pthread_mutex_unlock(&o->mu);
        free(j);
        return -1;
    }
    o->queued++;
    if (o->tail)
        o->tail->next = j;
    else
        o->head = j;
    o->tail = j;
    pthread_cond_signal(&o->cv);
    pthread_mutex_unlock(&o->mu);
    return 0;
}

void proxy_offload_run_done(struct proxy_worker *w)
{
    uint64_t n;
    if (read(w->done_fd, &n, sizeof(n)) == -1 && errno != EAGAIN)
        diag_log(DIAG_WARN, "proxy", "offload: read eventfd: %s", strerror(errno));
    pthread_mutex_lock(&w->done_mu);
    struct offload_job *j = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->done_mu);
    /* the list is newest first: run in submission order */
    struct offload_job *rev = NULL;
    while (j) {
        struct offload_job *next = j->next;
        j->next = rev;
        rev = j;
        j = next;
    }
    while (rev) {
        struct offload_job *next = rev->next;
        rev->done(rev->arg);
        free(rev);
        rev = next;
    }
}
