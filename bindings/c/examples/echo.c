/* echo: a request/reply server and its client, in C.
 *
 *   echo BUS server           answers every request with its text in capitals, until "quit"
 *   echo BUS client TEXT...   asks the server for each TEXT, prints the answers, then sends "quit"
 *
 * Start them in either order: the client's selector has a ttl, so its first
 * request waits up to 10 s for a server to join. */
#define _POSIX_C_SOURCE 200809L
#include "busbar.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what, busbar_status status) {
    fprintf(stderr, "echo: %s: %s: %s\n", what, busbar_status_str(status), busbar_last_error());
    return 1;
}

static int server(busbar_sender *tx, busbar_receiver *rx) {
    for (;;) {
        busbar_message *m = NULL;
        busbar_status st = busbar_recv(rx, -1, &m); /* wait as long as it takes */
        if (st != BUSBAR_OK) {
            return fail("recv", st);
        }
        size_t len = 0;
        const uint8_t *data = busbar_message_data(m, &len); /* borrowed from m */
        if (len == 4 && memcmp(data, "quit", 4) == 0) {
            busbar_message_free(m);
            return 0;
        }
        if (busbar_message_is_request(m)) {
            char *upper = malloc(len + 1);
            if (upper == NULL) {
                busbar_message_free(m);
                return 1;
            }
            for (size_t i = 0; i < len; i++) {
                upper[i] = (char)toupper(data[i]);
            }
            st = busbar_reply(tx, m, 0, upper, len); /* the bytes are copied */
            free(upper);
            if (st != BUSBAR_OK) {
                busbar_message_free(m);
                return fail("reply", st);
            }
        }
        busbar_message_free(m);
    }
}

static int client(busbar_sender *tx, int n, char **texts) {
    busbar_selector *to = NULL;
    busbar_status st = busbar_selector_parse("echo-server", 0, &to);
    if (st != BUSBAR_OK) {
        return fail("selector", st);
    }
    busbar_selector_set_ttl(to, 10000);
    for (int i = 0; i < n; i++) {
        busbar_message *q = NULL, *answer = NULL;
        st = busbar_message_new(to, 0, texts[i], strlen(texts[i]), &q);
        if (st == BUSBAR_OK) {
            st = busbar_request(tx, &q, 10000, &answer); /* consumes q on success */
        }
        if (st != BUSBAR_OK) {
            busbar_message_free(q); /* still ours after a failure */
            busbar_selector_free(to);
            return fail("request", st);
        }
        size_t len = 0;
        const uint8_t *data = busbar_message_data(answer, &len);
        printf("%.*s\n", (int)len, (const char *)data);
        busbar_message_free(answer);
    }
    busbar_selector_free(to);
    st = busbar_send_bytes(tx, "echo-server", 0, 0, "quit", 4);
    return st == BUSBAR_OK ? 0 : fail("send", st);
}

int main(int argc, char **argv) {
    if (argc < 3 || (strcmp(argv[2], "server") != 0 && strcmp(argv[2], "client") != 0)) {
        fprintf(stderr, "usage: echo BUS server | echo BUS client TEXT...\n");
        return 2;
    }
    int is_server = strcmp(argv[2], "server") == 0;
    busbar_sender *tx = NULL;
    busbar_receiver *rx = NULL;
    busbar_status st = busbar_join(argv[1], is_server ? "echo-server" : "echo-client", "busbar", 5000, &tx, &rx);
    if (st != BUSBAR_OK) {
        return fail("join", st);
    }
    int rc = is_server ? server(tx, rx) : client(tx, argc - 3, argv + 3);
    busbar_receiver_free(rx);
    busbar_sender_free(tx);
    return rc;
}
