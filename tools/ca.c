/* tools/ca.c - vigil-ca: a certificate authority for trying TLS interception.
 *
 *   vigil-ca create --out-cert FILE --out-key FILE [--cn NAME] [--days N]
 *
 * Makes an EC P-256 key and a self-signed CA certificate for it: basicConstraints
 * critical CA:TRUE with pathlen 0 (it signs leaves only), keyUsage critical
 * keyCertSign+cRLSign, subjectKeyIdentifier (the minted leaves' authorityKeyIdentifier
 * copies it), a random 128-bit serial, valid from an hour ago (clock skew) for N days
 * (default 365). The key is written mode 0600 and the certificate 0644; neither file may
 * exist already (O_EXCL: nothing is ever overwritten), and when writing the certificate
 * fails the new key file is removed. Prints what it made and how to use and trust it.
 *
 * For trials: a production CA key belongs in an HSM or at least on a machine of its own.
 * Exit status: 0 done, 1 failure (message on stderr), 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define DEFAULT_CN "Vigil trial CA"
#define DEFAULT_DAYS 365
#define MAX_DAYS 3650

static int usage(void)
{
    fprintf(stderr,
            "usage: vigil-ca create --out-cert FILE --out-key FILE [--cn NAME] [--days N]\n"
            "  makes an EC P-256 CA for trials: key mode 0600, certificate 0644, never overwrites\n"
            "  --cn NAME  subject common name (default \"" DEFAULT_CN "\")\n"
            "  --days N   validity in days, 1-%d (default %d)\n",
            MAX_DAYS, DEFAULT_DAYS);
    return 2;
}

static void ssl_fail(const char *what)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    fprintf(stderr, "vigil-ca: %s: %s\n", what, r ? r : "OpenSSL error");
    ERR_clear_error();
}

static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, ctx, nid, value);
    int ok = e && X509_add_ext(x, e, -1) == 1;
    X509_EXTENSION_free(e);
    return ok ? 0 : -1;
}

static X509 *make_ca(EVP_PKEY *key, const char *cn, long days)
{
    unsigned char rnd[16];
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *bn = NULL;
    X509V3_CTX ctx;

    if (!x || !name || RAND_bytes(rnd, sizeof(rnd)) != 1)
        goto fail;
    rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
    bn = BN_bin2bn(rnd, sizeof(rnd), NULL);
    if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) || X509_set_version(x, X509_VERSION_3) != 1)
        goto fail;
    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"Vigil", -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) != 1 ||
        X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1)
        goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600) || !X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL))
        goto fail;
    if (X509_set_pubkey(x, key) != 1)
        goto fail;
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    if (add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") == -1 ||
        add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign") == -1 ||
        add_ext(x, &ctx, NID_subject_key_identifier, "hash") == -1 ||
        add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always") == -1)
        goto fail;
    if (X509_sign(x, key, EVP_sha256()) <= 0)
        goto fail;
    BN_free(bn);
    X509_NAME_free(name);
    return x;
fail:
    BN_free(bn);
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

/* Writes the PEM in <b> to a new file <path> with <mode>. 0, or -1 (message printed). */
static int write_new(const char *path, BIO *b, mode_t mode)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd == -1) {
        fprintf(stderr, "vigil-ca: %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (refusing to overwrite: remove it or choose another name)" : "");
        return -1;
    }
    /* the mode exactly, whatever the umask */
    if (fchmod(fd, mode) == -1)
        goto fail;
    for (long off = 0; off < n;) {
        ssize_t w = write(fd, data + off, (size_t)(n - off));
        if (w == -1) {
            if (errno == EINTR)
                continue;
            goto fail;
        }
        off += w;
    }
    if (fsync(fd) == -1)
        goto fail;
    if (close(fd) == -1) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "vigil-ca: %s: %s\n", path, strerror(errno));
    if (fd != -1)
        close(fd);
    unlink(path);
    return -1;
}

static void print_made(X509 *x, const char *cert_path, const char *key_path, long days)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    char nb[32] = "", na[32] = "";
    struct tm tm;

    X509_digest(x, EVP_sha256(), md, &n);
    if (ASN1_TIME_to_tm(X509_get0_notBefore(x), &tm) == 1)
        strftime(nb, sizeof(nb), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        strftime(na, sizeof(na), "%Y-%m-%dT%H:%M:%SZ", &tm);
    printf("vigil-ca: made a trial CA (EC P-256, valid %ld days)\n", days);
    printf("  subject:     ");
    X509_NAME_print_ex_fp(stdout, X509_get_subject_name(x), 0, XN_FLAG_RFC2253);
    printf("\n  validity:    %s .. %s\n  sha256:      ", nb, na);
    for (unsigned i = 0; i < n; i++)
        printf("%02X%s", md[i], i + 1 < n ? ":" : "\n");
    printf("  certificate: %s (0644, give it to clients)\n", cert_path);
    printf("  key:         %s (0600, keep it secret: it can impersonate any site to whoever trusts the CA)\n\n",
           key_path);
    printf("Use it in the Vigil config:\n"
           "  \"tls\": {\"ca_cert\": \"%s\", \"ca_key\": \"%s\"}\n\n",
           cert_path, key_path);
    printf("Trust it in a client for a trial:\n"
           "  curl --proxy http://127.0.0.1:3128 --cacert %s https://example.com/\n"
           "  (system-wide on Debian: cp %s /usr/local/share/ca-certificates/vigil-ca.crt && update-ca-certificates)\n",
           cert_path, cert_path);
}

static int cmd_create(int argc, char **argv)
{
    const char *cert_path = NULL, *key_path = NULL, *cn = DEFAULT_CN;
    long days = DEFAULT_DAYS;
    int rc = 1;

    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--out-cert") == 0) {
            cert_path = argv[++i];
        } else if (strcmp(argv[i], "--out-key") == 0) {
            key_path = argv[++i];
        } else if (strcmp(argv[i], "--cn") == 0) {
            cn = argv[++i];
        } else if (strcmp(argv[i], "--days") == 0) {
            char *end;
            errno = 0;
            days = strtol(argv[++i], &end, 10);
            if (errno || *end || end == argv[i] || days < 1 || days > MAX_DAYS) {
                fprintf(stderr, "vigil-ca: --days: a number of days from 1 to %d\n", MAX_DAYS);
                return 2;
            }
        } else {
            return usage();
        }
    }
    if (!cert_path || !key_path)
        return usage();
    if (strcmp(cert_path, key_path) == 0) {
        fprintf(stderr, "vigil-ca: --out-cert and --out-key must be different files\n");
        return 2;
    }
    size_t cnlen = strlen(cn);
    if (cnlen == 0 || cnlen > 64) {
        fprintf(stderr, "vigil-ca: --cn: 1 to 64 characters\n");
        return 2;
    }
    /* both names free before anything is written, so a refusal leaves no half-made pair */
    struct stat st;
    if (lstat(cert_path, &st) == 0 || lstat(key_path, &st) == 0) {
        fprintf(stderr, "vigil-ca: %s exists (refusing to overwrite: remove it or choose another name)\n",
                lstat(key_path, &st) == 0 ? key_path : cert_path);
        return 1;
    }

    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = NULL;
    BIO *kb = BIO_new(BIO_s_mem()), *cb = BIO_new(BIO_s_mem());
    if (!key) {
        ssl_fail("generating the key");
        goto out;
    }
    if (!(x = make_ca(key, cn, days))) {
        ssl_fail("making the certificate");
        goto out;
    }
    if (!kb || !cb || PEM_write_bio_PrivateKey(kb, key, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_X509(cb, x) != 1) {
        ssl_fail("encoding");
        goto out;
    }
    if (write_new(key_path, kb, 0600) == -1)
        goto out;
    if (write_new(cert_path, cb, 0644) == -1) {
        unlink(key_path);
        goto out;
    }
    print_made(x, cert_path, key_path, days);
    rc = 0;
out:
    BIO_free(kb);
    BIO_free(cb);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0)
        return cmd_create(argc, argv);
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage();
        return 0;
    }
    return usage();
}
