/* tools/kafka-mock/kafka-mock.c - `vigil-kafka-mock`: a Kafka protocol peer on loopback for
 * tests and trials, built on librdkafka's mock cluster (rdkafka_mock.h).
 *
 *     vigil-kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]...
 *
 * Prints the cluster's bootstrap servers ("127.0.0.1:PORT,...") as the first line of stdout,
 * then serves producers and consumers (kcat, vigil's kafka sink) until SIGTERM or SIGINT.
 * SIGUSR1 takes every broker down (connections closed, new ones refused), SIGUSR2 brings
 * them up again; each change is confirmed by a "brokers down" / "brokers up" line on stdout
 * once done, so a test can wait for it. Messages live in memory and survive down/up.
 *
 * librdkafka wants an rd_kafka_t for its bookkeeping: a producer that never produces. The
 * mock brokers listen on 127.0.0.1 with ports picked by the kernel. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

static void usage(FILE *f)
{
    fprintf(f, "usage: vigil-kafka-mock [--brokers N] [--topic NAME[:PARTITIONS]]...\n"
               "Prints the bootstrap servers on the first line; SIGUSR1 takes the brokers down,\n"
               "SIGUSR2 brings them up, SIGTERM stops.\n");
}

int main(int argc, char **argv)
{
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk;
    char errstr[512];
    int brokers = 1, i, sig;
    sigset_t set;

    /* blocked before librdkafka starts its threads, which inherit the mask: only sigwait() below sees them */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            brokers = atoi(argv[++i]);
            if (brokers < 1 || brokers > 16) {
                fprintf(stderr, "vigil-kafka-mock: --brokers: 1 to 16\n");
                return 2;
            }
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            i++; /* created once the cluster exists */
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "vigil-kafka-mock: %s\n", errstr);
        return 1;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "vigil-kafka-mock: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (mc == NULL) {
        fprintf(stderr, "vigil-kafka-mock: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (i = 1; i < argc; i++) {
        char name[256], *colon;
        int parts = 4;
        rd_kafka_resp_err_t e;

        if (strcmp(argv[i], "--topic") != 0)
            continue;
        snprintf(name, sizeof(name), "%s", argv[++i]);
        colon = strchr(name, ':');
        if (colon != NULL) {
            *colon = '\0';
            parts = atoi(colon + 1);
        }
        if (name[0] == '\0' || parts < 1) {
            fprintf(stderr, "vigil-kafka-mock: --topic %s: want NAME[:PARTITIONS]\n", argv[i]);
            goto out;
        }
        e = rd_kafka_mock_topic_create(mc, name, parts, brokers < 3 ? brokers : 3);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "vigil-kafka-mock: topic %s: %s\n", name, rd_kafka_err2str(e));
            goto out;
        }
    }

    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGUSR1) {
            rd_kafka_mock_broker_set_down(mc, -1);
            printf("brokers down\n");
            fflush(stdout);
        } else if (sig == SIGUSR2) {
            rd_kafka_mock_broker_set_up(mc, -1);
            printf("brokers up\n");
            fflush(stdout);
        } else {
            break;
        }
    }

out:
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
