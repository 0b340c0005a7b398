/* audit/spool.h - a disk queue of serialized records that survives restarts.
 *
 * Used where a record must not be lost while its destination is away: the kafka sink keeps
 * every record not yet acknowledged by the broker in one, and the pipeline spills a sink's
 * overflow into one under on_full "spill". Records go in at the tail in seq order; a reader
 * takes them from the head in the same order and acknowledges them, possibly out of order
 * (kafka delivery reports); disk space is given back once everything before a point is
 * acknowledged. A spool is used by one thread at a time. */
#ifndef VIGIL_AUDIT_SPOOL_H
#define VIGIL_AUDIT_SPOOL_H

#include <stddef.h>
#include <stdint.h>

struct audit_spool;

/* Opens (creating, mode 0700) the spool directory <dir>, keeping at most <max_bytes> of
 * records on disk; records left by an earlier process that were not acknowledged are read
 * again first. NULL with <err> on failure. */
struct audit_spool *audit_spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen);

/* Appends one record. 0, or -1 when the spool is full or the write failed (<err> says which;
 * nothing of the record is kept then). */
int audit_spool_append(struct audit_spool *sp, uint64_t seq, const char *data, size_t len, char *err, size_t errlen);

/* The next record not yet handed out by this call since open (or since audit_spool_rewind):
 * 1 with *<seq>, *<data> and *<len> valid until the next call on <sp>, 0 when there is none,
 * -1 with <err> on a read error or damage. */
int audit_spool_next(struct audit_spool *sp, uint64_t *seq, const char **data, size_t *len, char *err,
                     size_t errlen);

/* Marks the record <seq> delivered. 0, or -1 when <seq> is not in the spool. */
int audit_spool_ack(struct audit_spool *sp, uint64_t seq);

/* Hands out again, from the oldest, every record not yet acknowledged (after a reconnect). */
void audit_spool_rewind(struct audit_spool *sp);

uint64_t audit_spool_pending(const struct audit_spool *sp); /* records not yet acknowledged */
uint64_t audit_spool_bytes(const struct audit_spool *sp);   /* bytes on disk */

/* Syncs and closes; NULL does nothing. */
void audit_spool_close(struct audit_spool *sp);

#endif
