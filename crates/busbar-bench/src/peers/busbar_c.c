/* The `busbar (C)` peer's calls, in C through libbusbar's C API (busbar.h),
 * exactly as a C program makes them: busbar_send_bytes to send,
 * busbar_recv + busbar_message_data + busbar_message_free to receive.
 * peers/busbar_c.rs drives them from the same harness as every peer. */
#include "busbar.h"

#include <stdio.h>
#include <string.h>

/* Joins `bus` as `me` with the bench's token; 0 or a busbar_status. */
int bench_c_join(const char *bus, const char *me, const char *token, busbar_sender **tx,
                 busbar_receiver **rx) {
    busbar_status st = busbar_join(bus, me, token, 10000, tx, rx);
    if (st != BUSBAR_OK) {
        fprintf(stderr, "busbar_join: %s: %s\n", busbar_status_str(st), busbar_last_error());
    }
    return st;
}

/* Sends `len` bytes to `to` (unicast, or multicast when non-zero). */
int bench_c_send(busbar_sender *tx, const char *to, int multicast, const uint8_t *data, size_t len) {
    busbar_status st = busbar_send_bytes(tx, to, multicast, 0, data, len);
    if (st != BUSBAR_OK) {
        fprintf(stderr, "busbar_send_bytes: %s: %s\n", busbar_status_str(st), busbar_last_error());
    }
    return st;
}

/* Waits up to `timeout_ms` for a message and hands its bytes to `on`:
 * 1 when one came, 0 on timeout, a negative busbar_status on error. */
int bench_c_recv(busbar_receiver *rx, int64_t timeout_ms,
                 void (*on)(void *ctx, const uint8_t *data, size_t len), void *ctx) {
    busbar_message *m = NULL;
    busbar_status st = busbar_recv(rx, timeout_ms, &m);
    if (st == BUSBAR_TIMEOUT) {
        return 0;
    }
    if (st != BUSBAR_OK) {
        fprintf(stderr, "busbar_recv: %s: %s\n", busbar_status_str(st), busbar_last_error());
        return st;
    }
    size_t len = 0;
    const uint8_t *data = busbar_message_data(m, &len);
    on(ctx, data, len);
    busbar_message_free(m);
    return 1;
}

/* How many endpoints in the directory have `label` in their label. */
size_t bench_c_count(busbar_sender *tx, const char *label) {
    busbar_directory *dir = NULL;
    if (busbar_endpoints(tx, &dir) != BUSBAR_OK) {
        return 0;
    }
    size_t n = 0;
    for (size_t i = 0; i < busbar_directory_len(dir); i++) {
        busbar_endpoint_info e;
        if (busbar_directory_get(dir, i, &e) == BUSBAR_OK && strcmp(e.label, label) == 0) {
            n++;
        }
    }
    busbar_directory_free(dir);
    return n;
}

void bench_c_leave(busbar_sender *tx, busbar_receiver *rx) {
    busbar_receiver_free(rx);
    busbar_sender_free(tx);
}
