/* audit/segment.h - the segment format: how the file sink stores the record, how it seals
 * each segment with a signed digest, and how audit-query reads both back.
 *
 * A segment is one file, <dir>/<UTC date of its first record>/<first seq>.vseg, where <dir>
 * is the file sink's directory (DATA_DIR/audit by default):
 *
 *     DATA_DIR/audit/2026-11-26/00000000000000000001.vseg
 *                               00000000000000000001.vseg.sig   <- its digest
 *                               00000000000000004097.vseg
 *                               00000000000000004097.vseg.sig
 *     DATA_DIR/audit/2026-11-27/00000000000000008193.vseg      <- open: no digest yet
 *
 * The first seq is printed with 20 zero-padded digits, so names sort as numbers. A restart
 * that hands out a seq already used on that date gets "<first seq>-<n>.vseg" (n = 1, 2, ...)
 * instead of overwriting: segments are created with O_EXCL and never rewritten.
 *
 * The file is a sequence of complete zstd frames (content checksum on), each holding whole
 * JSON lines that end in '\n'; no line spans two frames:
 *
 *     +---------------------+---------------------+-----+---------------------+
 *     | frame 0: lines 1..k | frame 1: lines ...  | ... | frame m (last)      |
 *     +---------------------+---------------------+-----+---------------------+
 *
 * So `zstdcat FILE` prints the lines, a reader can start at any frame boundary, and a crash
 * costs at most the frame being written: the reader returns every complete frame and
 * reports the torn one with its byte offset. The reader skips zstd skippable frames, which
 * leaves room for per-segment metadata (an index) in later versions of the format.
 *
 * Chain. Every record the pipeline writes ends with a "chain" member, its last:
 *
 *     {"schema":"vigil.event/1",...,"seq":42,...,"chain":"<64 hex>"}
 *     chain(42) = BLAKE2b-256(chain(41) || the record without its chain member)
 *
 * where "the record without its chain member" is the line with the 76 bytes
 * ,"chain":"<64 hex>" removed before its closing brace (the object exactly as serialized
 * before the chain was appended), and chain(0) of a fresh data directory is 32 zero bytes.
 * A restart continues from the last stored record (audit_segment_last_record()).
 *
 * Digest. When a segment is closed (rotation, clean shutdown, or recovery after a crash)
 * the file sink writes <segment>.sig next to it (schemas/segment-digest.schema.json): one
 * JSON object and a newline,
 *
 *     {"schema":"vigil.segment-digest/1","segment":"00000000000000000001.vseg",
 *      "hash":"<BLAKE2b-256 of the segment file, hex>","bytes":N,"frames":F,"records":R,
 *      "first_seq":1,"last_seq":R,"first_time":"<RFC 3339>","last_time":"<RFC 3339>",
 *      "prev_chain":"<hex>"|null,"last_chain":"<hex>"|null,
 *      "prev_digest":"<BLAKE2b-256 of the previous digest file, hex; zeros for the first>",
 *      "recovered":false,"discarded_bytes":0,
 *      "public_key":"<Ed25519 public key, hex>","signature":"<Ed25519 signature, hex>"}
 *
 * The members appear in this order; a recovered digest adds "recovery_reason" after
 * "discarded_bytes". The signature (crypto_sign_detached) covers the object without its
 * signature member, that is the file's bytes with the final ,"signature":"<128 hex>"}\n
 * replaced by "}". The signing key is DATA_DIR/keys/audit-signing.key (mode 0600: 64 hex
 * digits of the Ed25519 seed and a newline) with its public half in audit-signing.pub
 * (0644, 64 hex digits and a newline), made on first use; a key file readable by group or
 * others is refused. Digests are a chain too: "prev_digest" links each to the one before,
 * so a removed or reordered segment shows. A digest file is written to <name>.sig.tmp and
 * renamed, so it is either whole or absent.
 *
 * The writer is used by one thread at a time (the file sink's delivery thread); readers
 * are independent objects and may run in any thread. */
#ifndef VIGIL_AUDIT_SEGMENT_H
#define VIGIL_AUDIT_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_SEGMENT_SUFFIX ".vseg"
#define AUDIT_SEGMENT_SUBDIR "audit" /* DATA_DIR/audit/<date>/... */
#define AUDIT_SEGMENT_SEQ_DIGITS 20
#define AUDIT_SEGMENT_LINE_MAX (1024 * 1024)      /* longest record, newline included */
#define AUDIT_SEGMENT_FRAME_MAX (8 * 1024 * 1024) /* most uncompressed bytes in one frame */
#define AUDIT_SEGMENT_DIR_MODE 0750
#define AUDIT_SEGMENT_FILE_MODE 0640
#define AUDIT_DIGEST_SUFFIX ".sig" /* <segment path>.sig */
#define AUDIT_DIGEST_SCHEMA "vigil.segment-digest/1"
#define AUDIT_KEYS_SUBDIR "keys" /* DATA_DIR/keys */
#define AUDIT_SIGNING_KEY_FILE "audit-signing.key"
#define AUDIT_SIGNING_PUB_FILE "audit-signing.pub"
#define AUDIT_CHAIN_BYTES 32
#define AUDIT_CHAIN_HEX 64
/* ,"chain":"<64 hex>" : what the pipeline inserts before a record's closing brace */
#define AUDIT_CHAIN_MEMBER_LEN (sizeof(",\"chain\":\"") - 1 + AUDIT_CHAIN_HEX + 1)

/* ---- writer ---- */

/* Creates the segment directory <dir> (mode 0750, parents too) and checks that it is
 * writable, so that a misconfigured data directory is found at startup rather than at the
 * first record. 0, or -1 with <err>. Borrows <dir> for the call. */
int audit_segment_prepare(const char *dir, char *err, size_t errlen);

/* "<data_dir>/audit" into <out>: the default segment directory. -1 when it does not fit. */
int audit_segment_default_dir(const char *data_dir, char *out, size_t outlen);

struct audit_segment_writer;

/* What a writer has stored so far. Records and times count appended lines, buffered or not. */
struct audit_segment_info {
    uint64_t first_seq;     /* seq of the first record (the one the name carries) */
    uint64_t last_seq;      /* seq of the last record appended; first_seq - 1 when none */
    int64_t first_time_us;  /* time of the first record (its UTC date names the directory) */
    int64_t last_time_us;
    uint64_t records;       /* lines appended */
    uint64_t frames;        /* frames written to the file (counted once no write is pending) */
    uint64_t bytes_written; /* bytes written to the file: complete frames, plus any part of
                             * a frame whose write failed halfway */
    size_t frame_records;   /* lines in the open frame (appended since the last end_frame) */
    size_t frame_bytes;     /* uncompressed bytes in the open frame */
    int unwritten;          /* 1 while compressed frames wait for a write that failed */
};

/* Creates the segment for a record with sequence number <first_seq> and time <time_us>
 * (microseconds since the epoch): makes <dir>/<UTC date> (mode 0750, parents too)
 * and the file (mode 0640, O_CREAT|O_EXCL|O_APPEND; see the header comment for the -<n>
 * suffix). Frames are compressed at zstd level <level>. Returns the writer, or NULL with a
 * message naming the path in <err> (at most <errlen> bytes, always terminated). The caller
 * releases it with audit_segment_writer_close(). Borrows <dir> (the segment directory,
 * DATA_DIR/audit by default) for the call. */
struct audit_segment_writer *audit_segment_writer_open(const char *dir, uint64_t first_seq, int64_t time_us,
                                                       int level, char *err, size_t errlen);

/* Appends one record, <len> bytes of <line> without its newline (the writer adds it), to
 * the open frame, in memory: nothing reaches the file before audit_segment_writer_end_frame().
 * <seq> and <time_us> are the record's, kept for the segment's info. Refuses (-1 with <err>)
 * a line that contains a newline or is longer than AUDIT_SEGMENT_LINE_MAX - 1 bytes, a line
 * that would take the open frame past AUDIT_SEGMENT_FRAME_MAX bytes (end the frame first),
 * and fails when memory runs out; on -1 nothing was appended. Borrows <line> for the call. */
int audit_segment_writer_append(struct audit_segment_writer *w, uint64_t seq, int64_t time_us, const char *line,
                                size_t len, char *err, size_t errlen);

/* Closes the open frame: compresses it into one zstd frame (one reused context) and
 * write(2)s it whole (short writes and EINTR handled). Returns 0 once every frame ended so
 * far is in the file (a no-op when there is nothing to write), or -1 with the reason in
 * <err>: when write(2) failed, the frames not yet written stay queued, compressed and in
 * order (what part of one was written stays written), and the next call writes them before
 * anything else, so a retry after ENOSPC loses and repeats nothing. Lines appended meanwhile
 * go into the next frame. At most 4 * AUDIT_SEGMENT_FRAME_MAX compressed bytes are queued;
 * past that the open frame stays open and -1 is returned. Never reports success for data
 * that is not in the file. */
int audit_segment_writer_end_frame(struct audit_segment_writer *w, char *err, size_t errlen);

/* fdatasync(2) of the file: 0, or -1 with <err>. Covers what end_frame wrote, not the
 * open frame. */
int audit_segment_writer_sync(struct audit_segment_writer *w, char *err, size_t errlen);

/* Bytes written to the file so far (info.bytes_written). */
uint64_t audit_segment_writer_bytes(const struct audit_segment_writer *w);

/* Copies the writer's counters into *<out>. */
void audit_segment_writer_info(const struct audit_segment_writer *w, struct audit_segment_info *out);

/* The file's path; valid until the writer is closed. */
const char *audit_segment_writer_path(const struct audit_segment_writer *w);

/* BLAKE2b-256 of the bytes written to the file so far into <out> (kept incrementally: no
 * read of the file). */
void audit_segment_writer_hash(const struct audit_segment_writer *w, uint8_t out[32]);

/* Ends the open frame, closes the file and frees <w>; NULL does nothing. Returns 0, or -1
 * with <err> when the last frame could not be written or close(2) failed: the writer is
 * freed either way and the records that were not written are lost, so a caller that cares
 * calls audit_segment_writer_end_frame() first and closes once it succeeded. Does not sync:
 * call audit_segment_writer_sync() before when the data must be durable. */
int audit_segment_writer_close(struct audit_segment_writer *w, char *err, size_t errlen);

/* ---- listing ---- */

struct audit_segment_entry {
    char *path;          /* DATA_DIR/audit/<date>/<name> */
    char date[11];       /* "YYYY-MM-DD" */
    uint64_t first_seq;
    unsigned dup;        /* the -<n> suffix; 0 without one */
};

/* Lists the segments under DATA_DIR/audit, sorted by (date, first seq, suffix): the order
 * they were written in. Entries that do not look like a date directory or a segment name
 * (digests included) are ignored. A missing DATA_DIR/audit is an empty list. Returns 0 with
 * a malloc'ed array in *<out> (count in *<n>) that the caller frees with
 * audit_segment_list_free(), or -1 with <err> when a directory could not be read. */
int audit_segment_list(const char *data_dir, struct audit_segment_entry **out, size_t *n, char *err, size_t errlen);

/* The same for the segment directory <dir> itself (a file sink's "dir"). */
int audit_segment_list_dir(const char *dir, struct audit_segment_entry **out, size_t *n, char *err, size_t errlen);

void audit_segment_list_free(struct audit_segment_entry *list, size_t n);

/* ---- reader ---- */

struct audit_segment_reader;

/* Opens the segment file <path> for reading. NULL with <err> when it cannot be opened.
 * Memory stays bounded whatever the file's size: streaming decompression into one frame
 * buffer of at most AUDIT_SEGMENT_FRAME_MAX bytes. Borrows <path> for the call. */
struct audit_segment_reader *audit_segment_reader_open(const char *path, char *err, size_t errlen);

/* The next line: returns 1 with *<line> and *<len> set (without the newline; valid until
 * the next call or audit_segment_reader_close()), 0 at the clean end of the file, or -1
 * with the reason in <err> when the rest cannot be read: a frame torn at the end of the
 * file (a crash while it was being written), a corrupt frame (checksum or format), a frame
 * larger than AUDIT_SEGMENT_FRAME_MAX or not ending in a newline, or a read error. After
 * -1, every call returns -1, and audit_segment_reader_good_bytes() gives the offset where
 * the damage starts. Only lines of complete frames whose checksum verified are returned:
 * a frame is decoded whole before its first line is. */
int audit_segment_reader_next(struct audit_segment_reader *r, const char **line, size_t *len, char *err,
                              size_t errlen);

/* Bytes of the file made of complete, verified frames decoded so far: after a -1 from
 * audit_segment_reader_next(), the byte offset of the frame that could not be read
 * ("truncated at byte N of FILE"). */
uint64_t audit_segment_reader_good_bytes(const struct audit_segment_reader *r);

/* Number of complete frames decoded so far (skippable frames included). */
uint64_t audit_segment_reader_frames(const struct audit_segment_reader *r);

/* Closes and frees <r>; NULL does nothing. */
void audit_segment_reader_close(struct audit_segment_reader *r);

/* The last record stored in the segment directory <dir>: its seq into *<seq> (0 when there
 * is none) and its chain into <chain> (32 zero bytes when there is none or it carries no
 * chain), so a restarted process continues the numbering and the chain. Uses the newest
 * digest when it covers the newest segment that holds a record, otherwise reads that
 * segment's complete frames once. 0, or -1 with <err> when the directory cannot be listed. */
int audit_segment_last_record(const char *dir, uint64_t *seq, uint8_t chain[32], char *err, size_t errlen);

/* What a segment file holds, read back frame by frame (crash recovery, verification). */
struct audit_segment_scan {
    uint64_t size;        /* bytes in the file */
    uint64_t good_bytes;  /* bytes of complete, verified frames: size unless damaged */
    uint64_t frames;
    uint64_t records;     /* lines in the complete frames */
    uint64_t first_seq;   /* of the first and last line ("seq" member); 0 when absent */
    uint64_t last_seq;
    int64_t first_time_us; /* of the first and last line ("time" member); 0 when absent */
    int64_t last_time_us;
    int has_last_chain;   /* the last line carries a chain */
    uint8_t last_chain[32];
    char damage[256];     /* why the rest could not be read; "" when the file ended cleanly */
};

/* Reads <path> once. 0, or -1 with <err> when it cannot be opened. Damage is not an error:
 * it is reported in <out>->damage with good_bytes < size. */
int audit_segment_scan(const char *path, struct audit_segment_scan *out, char *err, size_t errlen);

/* ---- chain (see the header comment) ---- */

/* <out> = BLAKE2b-256(<prev> || <rec>[0..<len>)), <rec> being a record without its chain. */
void audit_chain_next(const uint8_t prev[32], const char *rec, size_t len, uint8_t out[32]);

/* Splits a stored line: when it ends in ,"chain":"<64 hex>"} (the native form) sets *<body>
 * to the length of the part before that member and <chain> to its value, and returns 0;
 * the record that was hashed is then <line>[0..*<body>) followed by "}". -1 otherwise. */
int audit_chain_split(const char *line, size_t len, size_t *body, uint8_t chain[32]);

/* The chain a stored native line should carry after <prev> into <out>. 0, or -1 when the
 * line has no chain member (audit_chain_split). */
int audit_chain_expected(const uint8_t prev[32], const char *line, size_t len, uint8_t out[32]);

/* Finds the last "chain":"<64 hex>" member in <line>, whatever the format (the OCSF form
 * carries it in "unmapped"), into <chain>. 0, or -1 when there is none. */
int audit_chain_find(const char *line, size_t len, uint8_t chain[32]);

/* ---- digests and the signing key (see the header comment) ---- */

struct audit_digest {
    char segment[64];        /* the segment's file name, no directory */
    uint8_t hash[32];        /* BLAKE2b-256 of the segment file's bytes */
    uint64_t bytes;          /* its size */
    uint64_t frames;
    uint64_t records;
    uint64_t first_seq;      /* records == 0: the seq the name carries, and last_seq = first_seq - 1 */
    uint64_t last_seq;
    int64_t first_time_us;   /* records == 0: written as null */
    int64_t last_time_us;
    int has_prev_chain;      /* the chain the first record chains from is known */
    uint8_t prev_chain[32];
    int has_last_chain;      /* the last record carries a chain */
    uint8_t last_chain[32];
    uint8_t prev_digest[32]; /* BLAKE2b-256 of the previous digest file; zeros for the first */
    int recovered;           /* written after a crash, from what the file held */
    uint64_t discarded_bytes; /* recovery: bytes of a torn or damaged tail that were cut off */
    char recovery_reason[160];
    uint8_t public_key[32];  /* filled in by audit_digest_write(), read by audit_digest_read() */
    uint8_t signature[64];
};

/* Signs <d> with <sk> (a libsodium Ed25519 secret key, 64 bytes; fills d->segment from
 * <segment_path>, d->public_key and d->signature) and writes it as <segment_path>.sig via a temporary file and rename(2),
 * fsync'ed when <sync>. The BLAKE2b-256 of the file written goes to <file_hash> (the next
 * digest's prev_digest). 0, or -1 with <err>. */
int audit_digest_write(const char *segment_path, struct audit_digest *d, const uint8_t sk[64], int sync,
                       uint8_t file_hash[32], char *err, size_t errlen);

/* Reads the digest file <path> into <d> and the file's BLAKE2b-256 into <file_hash> (NULL:
 * not wanted), and checks its signature against <pk> (NULL: the public key it names). 0
 * when it parses and the signature verifies; -1 with <err> otherwise (<d> is filled as far
 * as it parsed). */
int audit_digest_read(const char *path, const uint8_t *pk, struct audit_digest *d, uint8_t *file_hash, char *err,
                      size_t errlen);

/* BLAKE2b-256 of the first <limit> bytes of the file <path> (UINT64_MAX: all of it), the
 * number of bytes hashed into *<bytes>. 0, or -1 with <err>. */
int audit_file_hash(const char *path, uint64_t limit, uint8_t out[32], uint64_t *bytes, char *err, size_t errlen);

/* Loads the signing key from <data_dir>/keys/, creating the directory (0700) and the key
 * pair (audit-signing.key 0600, audit-signing.pub 0644) when absent. Refuses a key file
 * that is not a regular file or whose mode grants anything to group or others, or that
 * does not hold 64 hex digits. Rewrites a missing or mismatching .pub from the key.
 * 0 with the keys in <pk> and <sk>, or -1 with <err>. */
int audit_signing_key_load(const char *data_dir, uint8_t pk[32], uint8_t sk[64], char *err, size_t errlen);

/* Reads a public key file (64 hex digits, optional newline) into <pk>. 0, or -1 with <err>. */
int audit_signing_pub_read(const char *path, uint8_t pk[32], char *err, size_t errlen);

#endif
