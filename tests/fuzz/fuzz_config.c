/* tests/fuzz/fuzz_config.c - libFuzzer target: proxy_config_parse() on any text.
 *
 * The config loader turns an operator's JSON into listeners, timeouts, the audit settings
 * and the compiled policy (rule groups, regexes, CIDRs, ports, proxy configurations), and
 * SIGHUP runs it again in a live process, so a config that crashes it takes the proxy
 * down. Checked: no crash or leak whatever the text, a NULL result always comes with an
 * error message, and an accepted config is accepted again (the version hash is a pure
 * function of the document). Paths a config names (auth.password_file, TLS files) are only
 * read; the data directory is not created by parsing.
 *
 * Inputs naming "redaction" are skipped: that section is checked by compiling the whole
 * Vectorscan detector database (redact_check(), seconds per call under ASan), which would
 * bring the run to a few inputs per second; fuzz_detectors covers what the database does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[4096];
    if (size > 256 * 1024 || memmem(data, size, "redaction", 9) != NULL)
        return 0;
    err[0] = '\0';
    struct proxy_config *c = proxy_config_parse((const char *)data, size, err, sizeof(err));
    if (!c) {
        if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
            abort();
        return 0;
    }
    char version[sizeof(c->version)];
    memcpy(version, c->version, sizeof(version));
    proxy_config_free(c);
    c = proxy_config_parse((const char *)data, size, err, sizeof(err));
    if (!c || memcmp(version, c->version, sizeof(version)) != 0)
        abort();
    proxy_config_free(c);
    return 0;
}
