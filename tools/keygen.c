/* tools/keygen.c - vigil-keygen: key pairs for decrypt roles, and the token key ring.
 *
 *   vigil-keygen role NAME [--out DIR]   new X25519 key pair for role NAME: the secret key goes
 *                                        to DIR/NAME.key (mode 0600, never overwritten; DIR
 *                                        defaults to .), and the roles.json entry with the
 *                                        public key is printed on stdout
 *   vigil-keygen public KEYFILE          prints the public key of an existing role key file
 *   vigil-keygen token-key DIR           opens (creating on first use) the token key ring in
 *                                        DIR (DATA_DIR/keys) and prints the current key id
 *   vigil-keygen token-key DIR --rotate  adds a new token key and makes it current; tokens
 *                                        made under older keys stay verifiable
 *
 * Exit status: 0 done, 1 failure (message on stderr), 2 usage. */
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "redact/redact.h"

static int usage(void)
{
    fprintf(stderr, "usage: vigil-keygen role NAME [--out DIR]\n"
                    "       vigil-keygen public KEYFILE\n"
                    "       vigil-keygen token-key DIR [--rotate]\n");
    return 2;
}

static void print_b64(const uint8_t pk[REDACT_ROLE_KEY_BYTES], char out[64])
{
    sodium_bin2base64(out, 64, pk, REDACT_ROLE_KEY_BYTES, sodium_base64_VARIANT_ORIGINAL);
}

static int valid_name(const char *s)
{
    size_t n = 0;

    for (; *s; s++, n++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' || *s == '.'))
            return 0;
    return n > 0 && n <= 64;
}

static int cmd_role(int argc, char **argv)
{
    const char *name, *dir = ".";
    char path[PATH_MAX], err[512], b64[64];
    uint8_t pk[REDACT_ROLE_KEY_BYTES];

    if (argc != 3 && !(argc == 5 && strcmp(argv[3], "--out") == 0))
        return usage();
    name = argv[2];
    if (argc == 5)
        dir = argv[4];
    if (!valid_name(name) || name[0] == '.') {
        fprintf(stderr, "vigil-keygen: role names are 1-64 characters of [a-z0-9_.-]\n");
        return 2;
    }
    if (snprintf(path, sizeof(path), "%s/%s.key", dir, name) >= (int)sizeof(path)) {
        fprintf(stderr, "vigil-keygen: path too long\n");
        return 1;
    }
    if (redact_role_key_create(path, pk, err, sizeof(err)) == -1) {
        fprintf(stderr, "vigil-keygen: %s\n", err);
        return 1;
    }
    print_b64(pk, b64);
    fprintf(stderr, "vigil-keygen: secret key written to %s (mode 0600); give it only to the %s role's holders\n",
            path, name);
    printf("{\"name\": \"%s\", \"public_key\": \"%s\", \"reveal\": []}\n", name, b64);
    return 0;
}

static int cmd_public(int argc, char **argv)
{
    uint8_t pk[REDACT_ROLE_KEY_BYTES], sk[REDACT_ROLE_KEY_BYTES];
    char err[512], b64[64];

    if (argc != 3)
        return usage();
    if (redact_role_key_load(argv[2], pk, sk, err, sizeof(err)) == -1) {
        fprintf(stderr, "vigil-keygen: %s\n", err);
        return 1;
    }
    sodium_memzero(sk, sizeof(sk));
    print_b64(pk, b64);
    printf("%s\n", b64);
    return 0;
}

static int cmd_token_key(int argc, char **argv)
{
    struct redact_keyring *kr;
    char err[512];
    int rotate = argc == 4 && strcmp(argv[3], "--rotate") == 0;

    if (argc != 3 && !rotate)
        return usage();
    kr = redact_keyring_open(argv[2], err, sizeof(err));
    if (kr == NULL) {
        fprintf(stderr, "vigil-keygen: %s\n", err);
        return 1;
    }
    if (rotate && redact_keyring_rotate(kr, err, sizeof(err)) == -1) {
        fprintf(stderr, "vigil-keygen: %s\n", err);
        redact_keyring_free(kr);
        return 1;
    }
    printf("%s\n", redact_keyring_current(kr));
    fprintf(stderr, "vigil-keygen: %zu token key(s) in %s; current %s%s\n", redact_keyring_count(kr), argv[2],
            redact_keyring_current(kr), rotate ? " (restart or reload vigil to use it)" : "");
    redact_keyring_free(kr);
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() == -1) {
        fprintf(stderr, "vigil-keygen: libsodium failed to initialize\n");
        return 1;
    }
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "role") == 0)
        return cmd_role(argc, argv);
    if (strcmp(argv[1], "public") == 0)
        return cmd_public(argc, argv);
    if (strcmp(argv[1], "token-key") == 0)
        return cmd_token_key(argc, argv);
    return usage();
}
