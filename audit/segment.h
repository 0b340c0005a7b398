/* audit/segment.h - the segment format: how the file sink stores the record and how
 * audit-query reads it back.
 *
 * A segment is one file, DATA_DIR/audit/<UTC date of its first record>/<first seq>.vseg:
 *
 *     DATA_DIR/audit/2026-11-26/00000000000000000001.vseg
 *                               00000000000000004097.vseg
 *     DATA_DIR/audit/2026-11-27/00000000000000008193.vseg
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
 * leaves room for per-segment metadata (digests, an index) in later versions of the format.
 *
 * The writer is used by one thread at a time (the pipeline thread, through the file sink);
 * readers are independent objects and may run in any thread. */
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

/* ---- writer ---- */

/* Creates DATA_DIR/audit (mode 0750, parents too) and checks that it is writable, so that
 * a misconfigured data directory is found at startup rather than at the first record.
 * 0, or -1 with <err>. Borrows <data_dir> for the call. */
int audit_segment_prepare(const char *data_dir, char *err, size_t errlen);

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
 * (microseconds since the epoch): makes DATA_DIR/audit/<UTC date> (mode 0750, parents too)
 * and the file (mode 0640, O_CREAT|O_EXCL|O_APPEND; see the header comment for the -<n>
 * suffix). Frames are compressed at zstd level <level>. Returns the writer, or NULL with a
 * message naming the path in <err> (at most <errlen> bytes, always terminated). The caller
 * releases it with audit_segment_writer_close(). Borrows <data_dir> for the call. */
struct audit_segment_writer *audit_segment_writer_open(const char *data_dir, uint64_t first_seq, int64_t time_us,
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
 * are ignored. A missing DATA_DIR/audit is an empty list. Returns 0 with a malloc'ed array
 * in *<out> (count in *<n>) that the caller frees with audit_segment_list_free(), or -1
 * with <err> when a directory could not be read. */
int audit_segment_list(const char *data_dir, struct audit_segment_entry **out, size_t *n, char *err, size_t errlen);

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

/* The highest seq stored in the newest segment under <data_dir> that holds a record, into
 * *<out> (0 when there is none), so a restarted process continues the numbering. Reads that
 * segment once. 0, or -1 with <err> when the directory cannot be listed. */
int audit_segment_last_seq(const char *data_dir, uint64_t *out, char *err, size_t errlen);

#endif
