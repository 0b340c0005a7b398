/* tests/fuzz/fuzz_segment.c - libFuzzer target: the segment reader audit-query uses.
 *
 * audit-query reads segment files an attacker may have altered (that is what verify is
 * for), so the reader must survive any bytes: torn, corrupt, oversized or lying frames.
 * The input is written to a temporary file and read back with audit_segment_reader_next()
 * until it ends or fails, then once more with audit_segment_scan().
 *
 * Byte 0 picks the form: odd, the rest is the file as it is (seed it with real segments);
 * even, the rest is plain text cut at 0xff bytes into pieces that are each compressed into
 * one zstd frame (content checksum on, as the writer does), so line splitting, frame
 * boundaries and frames without a final newline are reached without the fuzzer having to
 * forge checksums. Checked (abort on violation), besides ASan/UBSan: each line returned is
 * within the frame cap and holds no newline, good_bytes never passes the file size, a
 * reader that failed keeps failing, and the scan agrees with the reader on the good bytes
 * and the lines. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zstd.h>

#include "audit/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static char path[64];
static ZSTD_CCtx *cctx;

static void cleanup(void)
{
    unlink(path);
    ZSTD_freeCCtx(cctx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(path, sizeof(path), "/tmp/vigil-fuzz-seg.XXXXXX");
    int fd = mkstemp(path);
    if (fd == -1)
        abort();
    close(fd);
    cctx = ZSTD_createCCtx();
    if (!cctx)
        abort();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    atexit(cleanup);
    return 0;
}

static int write_file(const uint8_t *data, size_t size, uint64_t *fsize)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    *fsize = 0;
    if (size == 0 || (data[0] & 1)) {
        if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1)
            goto fail;
        *fsize = size > 1 ? size - 1 : 0;
    } else {
        const uint8_t *p = data + 1, *end = data + size;
        size_t cap = ZSTD_compressBound(size);
        void *buf = malloc(cap);
        if (!buf)
            goto fail;
        while (p <= end) {
            const uint8_t *cut = memchr(p, 0xff, (size_t)(end - p));
            size_t n = cut ? (size_t)(cut - p) : (size_t)(end - p);
            size_t z = ZSTD_compress2(cctx, buf, cap, p, n);
            if (ZSTD_isError(z) || fwrite(buf, 1, z, f) != z) {
                free(buf);
                goto fail;
            }
            *fsize += z;
            if (!cut)
                break;
            p = cut + 1;
        }
        free(buf);
    }
    return fclose(f) == 0 ? 0 : -1;
fail:
    fclose(f);
    return -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    uint64_t fsize, lines = 0;
    const char *line;
    size_t len;
    int rc;

    if (write_file(data, size, &fsize) == -1)
        abort();
    struct audit_segment_reader *r = audit_segment_reader_open(path, err, sizeof(err));
    if (!r)
        abort();
    while ((rc = audit_segment_reader_next(r, &line, &len, err, sizeof(err))) == 1) {
        if (len >= AUDIT_SEGMENT_FRAME_MAX || memchr(line, '\n', len) != NULL)
            abort();
        lines++;
        if (audit_segment_reader_good_bytes(r) > fsize)
            abort();
    }
    uint64_t good = audit_segment_reader_good_bytes(r);
    if (good > fsize || (rc == 0 && good != fsize))
        abort();
    if (rc == -1 && (audit_segment_reader_next(r, &line, &len, err, sizeof(err)) != -1 || err[0] == '\0'))
        abort();
    audit_segment_reader_close(r);

    struct audit_segment_scan sc;
    if (audit_segment_scan(path, &sc, err, sizeof(err)) == -1)
        abort();
    if (sc.size != fsize || sc.good_bytes != good || sc.records != lines || (sc.damage[0] != '\0') != (rc == -1))
        abort();
    return 0;
}
