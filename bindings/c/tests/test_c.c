/* The C binding's cross-process tests (run by scripts/test-c.sh).
 *
 *   test_c <busbar-peer> <bus prefix>
 *
 * The other processes: the Rust peer `busbar-peer bytes` (see
 * crates/busbar-tests/src/bin/busbar-peer/bytes.rs for what it answers to
 * each format tag) and copies of this program in the role `--c-echo`, a C
 * receiver. Every test uses its own bus. Prints `ok <test>` per test and
 * `N passed, 0 failed` at the end; exits 1 at the first failure, with the
 * line and busbar_last_error(). */
#define _GNU_SOURCE
#include "busbar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define WAIT_MS 30000 /* a hang guard, never a measure */

static const char *peer_path;
static const char *self_path;
static char bus_prefix[128];
static int passed;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "FAIL %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    busbar_last_error());                                                  \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

#define OK(call)                                                                          \
    do {                                                                                  \
        busbar_status st_ = (call);                                                       \
        if (st_ != BUSBAR_OK) {                                                           \
            fprintf(stderr, "FAIL %s:%d: %s gave %s: %s\n", __FILE__, __LINE__, #call,    \
                    busbar_status_str(st_), busbar_last_error());                         \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static void bus_name(char *out, size_t cap, const char *test) {
    snprintf(out, cap, "%s.%s", bus_prefix, test);
}

static int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

/* A child process with its stdout on a pipe. */
typedef struct {
    pid_t pid;
    FILE *out;
} child;

/* Children still running, killed if this process fails half-way. */
static pid_t children[16];

static void kill_children(void) {
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
        }
    }
}

static child spawn(char *const argv[]) {
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    child c;
    int rc = posix_spawn(&c.pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    CHECK(rc == 0);
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++) {
        if (children[i] == 0) {
            children[i] = c.pid;
            break;
        }
    }
    close(p[1]);
    c.out = fdopen(p[0], "r");
    CHECK(c.out != NULL);
    return c;
}

/* Reads the child's next line into buf (without the newline); 0 at EOF. */
static int next_line(child *c, char *buf, size_t cap) {
    if (fgets(buf, (int)cap, c->out) == NULL) {
        return 0;
    }
    buf[strcspn(buf, "\n")] = 0;
    return 1;
}

static void expect_prefix(child *c, const char *prefix) {
    char line[512];
    for (;;) {
        CHECK(next_line(c, line, sizeof line));
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            return;
        }
        CHECK(strncmp(line, "FAIL", 4) != 0);
    }
}

static int finish(child *c) {
    char line[512];
    while (next_line(c, line, sizeof line)) {
        if (strncmp(line, "FAIL", 4) == 0) {
            fprintf(stderr, "child said: %s\n", line);
        }
    }
    fclose(c->out);
    int status = 0;
    CHECK(waitpid(c->pid, &status, 0) == c->pid);
    for (size_t i = 0; i < sizeof children / sizeof children[0]; i++) {
        if (children[i] == c->pid) {
            children[i] = 0;
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The Rust peer `busbar-peer bytes` on `bus` with `label`, joined. */
static child rust_peer(const char *bus, const char *label, const char *token) {
    char *argv[] = {(char *)peer_path, "bytes", "--bus", (char *)bus, "--label", (char *)label,
                    "--token", (char *)token, NULL};
    child c = spawn(argv);
    expect_prefix(&c, "READY");
    return c;
}

/* A C receiver: this program as `--c-echo bus label`, joined. */
static child c_peer(const char *bus, const char *label) {
    char *argv[] = {(char *)self_path, "--c-echo", (char *)bus, (char *)label, NULL};
    child c = spawn(argv);
    expect_prefix(&c, "READY");
    return c;
}

/* Waits until the sender's directory lists `n` endpoints (the peer's join
 * reaches us a moment after it printed READY). */
static void wait_endpoints(busbar_sender *s, size_t n) {
    for (int i = 0; busbar_endpoint_count(s) < n; i++) {
        CHECK(i < WAIT_MS);
        usleep(1000);
    }
}

static void send_text(busbar_sender *s, const char *to, int multicast, uint16_t format,
                      const char *text) {
    OK(busbar_send_bytes(s, to, multicast, format, text, strlen(text)));
}

/* Receives one message and checks its format and text. */
static void expect_text(busbar_receiver *r, uint16_t format, const char *want) {
    busbar_message *m = NULL;
    OK(busbar_recv(r, WAIT_MS, &m));
    size_t len = 0;
    const uint8_t *data = busbar_message_data(m, &len);
    if (busbar_message_format(m) != format || len != strlen(want) || memcmp(data, want, len) != 0) {
        fprintf(stderr, "FAIL: wanted format %u %s, got format %u %.*s\n", format, want,
                busbar_message_format(m), (int)len, (const char *)data);
        exit(1);
    }
    busbar_message_free(m);
}

/* Receives one message and returns its text (the caller frees it). */
static char *recv_text(busbar_receiver *r, uint16_t *format) {
    busbar_message *m = NULL;
    OK(busbar_recv(r, WAIT_MS, &m));
    size_t len = 0;
    const uint8_t *data = busbar_message_data(m, &len);
    char *text = malloc(len + 1);
    CHECK(text != NULL);
    memcpy(text, data, len);
    text[len] = 0;
    if (format) {
        *format = busbar_message_format(m);
    }
    busbar_message_free(m);
    return text;
}

static void stop_peer(busbar_sender *s, const char *label, child *c) {
    send_text(s, label, 0, 9, "END");
    CHECK(finish(c) == 0);
}

/* ---- the C echo role -------------------------------------------------- */

/* Answers format 1 with `c:<data>` to the sender; format 5 messages (with a
 * descriptor and a region each) are checked and dropped; format 6 marks the
 * descriptor count (answering `marked`), format 7 compares it (`fdcheck <before> <after>`); exits
 * at format 9. */
static int c_echo(const char *bus, const char *label) {
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, label, "busbar", WAIT_MS, &s, &r));
    printf("READY %llu\n", (unsigned long long)busbar_sender_id(s));
    fflush(stdout);
    int mark = -1;
    for (;;) {
        busbar_message *m = NULL;
        OK(busbar_recv(r, -1, &m));
        uint16_t format = busbar_message_format(m);
        size_t len = 0;
        const uint8_t *data = busbar_message_data(m, &len);
        busbar_selector *back = NULL;
        OK(busbar_selector_endpoint(busbar_message_source(m), &back));
        char answer[256];
        answer[0] = 0;
        if (format == 1) {
            snprintf(answer, sizeof answer, "c:%.*s", (int)len, (const char *)data);
        } else if (format == 5) {
            CHECK(busbar_message_fd_count(m) == 1 && busbar_message_region_count(m) == 1);
            int fd = busbar_message_take_fd(m, 0);
            CHECK(fd >= 0 && busbar_message_fd(m, 0) == -1);
            close(fd);
            size_t rlen = 0;
            uint8_t *bytes = busbar_message_map_region(m, 0, &rlen);
            CHECK(bytes != NULL && rlen == 64 && bytes[0] == 0x5a);
        } else if (format == 6) {
            mark = fd_count();
            snprintf(answer, sizeof answer, "marked");
        } else if (format == 7) {
            snprintf(answer, sizeof answer, "fdcheck %d %d", mark, fd_count());
        } else if (format == 9) {
            busbar_selector_free(back);
            busbar_message_free(m);
            break;
        }
        if (answer[0]) {
            busbar_message *out = NULL;
            OK(busbar_message_new(back, format, answer, strlen(answer), &out));
            OK(busbar_send(s, &out));
            CHECK(out == NULL);
        }
        busbar_selector_free(back);
        busbar_message_free(m);
    }
    busbar_receiver_free(r);
    busbar_sender_free(s);
    return 0;
}

/* ---- tests ------------------------------------------------------------ */

static void test_null_arguments_and_names(void) {
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    CHECK(busbar_join(NULL, "a", "t", 0, &s, &r) == BUSBAR_INVALID_ARGUMENT);
    CHECK(strstr(busbar_last_error(), "bus is NULL") != NULL);
    CHECK(busbar_join("b", "a", "t", 0, NULL, &r) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_send_bytes(NULL, "x", 0, 0, "x", 1) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_recv(NULL, 0, NULL) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_send(NULL, NULL) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_message_data(NULL, NULL) == NULL);
    CHECK(busbar_message_format(NULL) == 0);
    CHECK(busbar_message_fd(NULL, 0) == -1);
    CHECK(busbar_receiver_fd(NULL) == -1);
    CHECK(busbar_receiver_close(NULL) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_region_new(16, NULL) == BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_label_op_and(NULL, NULL, NULL) == BUSBAR_INVALID_ARGUMENT);
    busbar_message_free(NULL);
    busbar_sender_free(NULL);
    busbar_receiver_free(NULL);
    busbar_region_free(NULL);
    CHECK(strcmp(busbar_status_str(BUSBAR_OK), "OK") == 0);
    CHECK(strcmp(busbar_status_str(BUSBAR_TIMEOUT), "TIMEOUT") == 0);
    CHECK(strcmp(busbar_status_str(BUSBAR_TOKEN_MISMATCH), "TOKEN_MISMATCH") == 0);
    CHECK(strcmp(busbar_status_str(12345), "UNKNOWN") == 0);
    CHECK(strlen(busbar_version()) > 0);
    passed++;
    printf("ok null_arguments_and_names\n");
}

static void test_label_expressions(void) {
    busbar_selector *sel = NULL;
    CHECK(busbar_selector_parse("a & (b", 0, &sel) == BUSBAR_PARSE);
    CHECK(sel == NULL);
    CHECK(strchr(busbar_last_error(), '^') != NULL); /* the caret under the bad spot */
    busbar_label_op *a = NULL, *b = NULL, *not_b = NULL, *both = NULL;
    OK(busbar_label_op_leaf("renderer", &a));
    OK(busbar_label_op_parse("gpu", &b));
    OK(busbar_label_op_not(&b, &not_b));
    CHECK(b == NULL);
    OK(busbar_label_op_and(&a, &not_b, &both));
    CHECK(a == NULL && not_b == NULL);
    char *text = busbar_label_op_to_string(both);
    CHECK(text != NULL && strcmp(text, "renderer & !gpu") == 0);
    busbar_string_free(text);
    OK(busbar_selector_multicast(&both, &sel));
    OK(busbar_selector_set_ttl(sel, 1000));
    OK(busbar_selector_set_backpressure(sel, BUSBAR_BACKPRESSURE_FAIL_FAST));
    CHECK(busbar_selector_set_backpressure(sel, 42) == BUSBAR_INVALID_ARGUMENT);
    OK(busbar_selector_require_receiver(sel));
    text = busbar_selector_to_string(sel);
    CHECK(text != NULL && strstr(text, "renderer & !gpu") != NULL);
    busbar_string_free(text);
    busbar_selector_free(sel);
    passed++;
    printf("ok label_expressions\n");
}

static void test_timeout_and_failed_send_keeps_the_message(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "timeout");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "alone", "busbar", WAIT_MS, &s, &r));
    busbar_message *m = NULL;
    CHECK(busbar_recv(r, 20, &m) == BUSBAR_TIMEOUT);
    CHECK(m == NULL && strlen(busbar_last_error()) > 0);
    CHECK(busbar_try_recv(r, &m) == BUSBAR_EMPTY);

    /* A unicast nobody takes fails, and the message (bytes and descriptor) stays usable. */
    int p[2];
    CHECK(pipe(p) == 0);
    busbar_selector *nobody = NULL;
    OK(busbar_selector_parse("nobody", 0, &nobody));
    OK(busbar_message_new(nobody, 7, "kept", 4, &m));
    OK(busbar_message_add_fd(m, p[1]));
    CHECK(busbar_message_add_fd(m, -5) == BUSBAR_INVALID_ARGUMENT);
    int before = fd_count();
    CHECK(busbar_send(s, &m) == BUSBAR_NO_ROUTE);
    CHECK(strstr(busbar_last_error(), "nobody") != NULL);
    CHECK(busbar_try_send(s, &m) == BUSBAR_NO_ROUTE);
    CHECK(busbar_send_timeout(s, &m, 10) == BUSBAR_NO_ROUTE);
    CHECK(m != NULL && fd_count() == before);
    size_t len = 0;
    const uint8_t *data = busbar_message_data(m, &len);
    CHECK(len == 4 && memcmp(data, "kept", 4) == 0 && busbar_message_format(m) == 7);
    CHECK(busbar_message_fd_count(m) == 1 && busbar_message_fd(m, 0) == p[1]);
    CHECK(write(busbar_message_fd(m, 0), "x", 1) == 1);
    char c = 0;
    CHECK(read(p[0], &c, 1) == 1 && c == 'x');
    busbar_message_free(m); /* closes the write end */
    CHECK(read(p[0], &c, 1) == 0);
    close(p[0]);
    busbar_selector_free(nobody);

    /* A message to ourselves. */
    send_text(s, "alone", 0, 3, "to me");
    expect_text(r, 3, "to me");
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok timeout_and_failed_send_keeps_the_message\n");
}

static void test_wrong_token(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "token");
    child peer = rust_peer(bus, "rust", "right");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    CHECK(busbar_join(bus, "c", "wrong", WAIT_MS, &s, &r) == BUSBAR_TOKEN_MISMATCH);
    CHECK(s == NULL && r == NULL && strstr(busbar_last_error(), "token") != NULL);
    busbar_options *o = NULL;
    OK(busbar_options_new(bus, "c", "right", &o));
    OK(busbar_options_set_controller_affinity(o, 0));
    busbar_limits limits;
    OK(busbar_options_get_limits(o, &limits));
    CHECK(limits.max_payload == 64u << 20);
    limits.max_payload = 1 << 20;
    OK(busbar_options_set_limits(o, &limits));
    OK(busbar_options_set_backpressure(o, BUSBAR_BACKPRESSURE_BLOCK));
    OK(busbar_options_set_access(o, BUSBAR_ACCESS_SAME_USER, NULL, 0, NULL, 0));
    OK(busbar_join_with(o, WAIT_MS, &s, &r));
    busbar_options_free(o);
    CHECK(!busbar_sender_is_controller(s));
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok wrong_token\n");
}

static void *blocked_recv(void *arg) {
    busbar_receiver *r = arg;
    busbar_message *m = NULL;
    static busbar_status status;
    /* The main thread's try_recv may hold the receiver for a moment. */
    while ((status = busbar_recv(r, -1, &m)) == BUSBAR_BUSY) {
        usleep(1000);
    }
    return &status;
}

static void test_close_wakes_a_blocked_recv(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "close");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c", "busbar", WAIT_MS, &s, &r));
    pthread_t t;
    CHECK(pthread_create(&t, NULL, blocked_recv, r) == 0);
    /* Wait until the other thread is inside busbar_recv: a second call says BUSY. */
    busbar_message *m = NULL;
    busbar_status st;
    while ((st = busbar_try_recv(r, &m)) != BUSBAR_BUSY) {
        CHECK(st == BUSBAR_EMPTY);
        usleep(1000);
    }
    OK(busbar_receiver_close(r));
    void *ret = NULL;
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(*(busbar_status *)ret == BUSBAR_CLOSED);
    CHECK(busbar_recv(r, 0, &m) == BUSBAR_CLOSED);
    CHECK(busbar_receiver_fd(r) == -1);
    OK(busbar_receiver_close(r));
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok close_wakes_a_blocked_recv\n");
}

static void test_bytes_both_ways_and_requests(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "bytes");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child peer = rust_peer(bus, "rust", "busbar");
    wait_endpoints(s, 2);
    /* C -> Rust -> C, unicast by label. */
    send_text(s, "rust", 0, 1, "hello from C");
    expect_text(r, 1, "rust:hello from C");
    /* Binary bytes, 1 MiB (through a region underneath). */
    size_t big = 1 << 20;
    uint8_t *buf = malloc(big);
    CHECK(buf != NULL);
    for (size_t i = 0; i < big; i++) {
        buf[i] = (uint8_t)(i * 7);
    }
    OK(busbar_send_bytes(s, "rust", 0, 1, buf, big));
    busbar_message *m = NULL;
    OK(busbar_recv(r, WAIT_MS, &m));
    size_t len = 0;
    const uint8_t *data = busbar_message_data(m, &len);
    CHECK(len == big + 5 && memcmp(data, "rust:", 5) == 0 && memcmp(data + 5, buf, big) == 0);
    CHECK(busbar_message_source(m) != 0);
    busbar_message_free(m);
    free(buf);
    /* Rust -> C: the peer sends three. */
    send_text(s, "rust", 0, 4, "send 3 c-main");
    expect_text(r, 4, "rust 0");
    expect_text(r, 4, "rust 1");
    expect_text(r, 4, "rust 2");
    expect_text(r, 4, "sent 3");
    /* A request answered by Rust. */
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("rust", 0, &to));
    OK(busbar_message_new(to, 1, "question", 8, &m));
    busbar_message *answer = NULL;
    OK(busbar_request(s, &m, WAIT_MS, &answer));
    CHECK(m == NULL);
    data = busbar_message_data(answer, &len);
    CHECK(len == 15 && memcmp(data, "answer:question", 15) == 0);
    busbar_message_free(answer);
    /* A request to a multicast selector is refused, and the message kept. */
    busbar_selector *all = NULL;
    OK(busbar_selector_parse("rust", 1, &all));
    OK(busbar_message_new(all, 1, "q", 1, &m));
    CHECK(busbar_request(s, &m, WAIT_MS, &answer) == BUSBAR_INVALID_SELECTOR && m != NULL);
    busbar_message_free(m);
    busbar_selector_free(all);
    /* Rust requests from C: C answers with busbar_reply. */
    CHECK(busbar_reply(s, NULL, 0, NULL, 0) == BUSBAR_INVALID_ARGUMENT);
    send_text(s, "rust", 0, 8, "ask me");
    OK(busbar_recv(r, WAIT_MS, &m));
    CHECK(busbar_message_is_request(m));
    data = busbar_message_data(m, &len);
    CHECK(len == 4 && memcmp(data, "ping", 4) == 0);
    OK(busbar_reply(s, m, 8, "pong", 4));
    busbar_message_free(m);
    expect_text(r, 8, "requested pong");
    CHECK(busbar_recv(r, 0, &m) == BUSBAR_TIMEOUT);
    /* The directory lists both. */
    busbar_directory *dir = NULL;
    OK(busbar_endpoints(s, &dir));
    CHECK(busbar_directory_len(dir) == 2 && busbar_endpoint_count(s) == 2);
    int saw_rust = 0;
    for (size_t i = 0; i < busbar_directory_len(dir); i++) {
        busbar_endpoint_info info;
        OK(busbar_directory_get(dir, i, &info));
        if (strcmp(info.label, "rust") == 0) {
            saw_rust = 1;
            CHECK(info.pid == (uint32_t)peer.pid);
        }
    }
    busbar_endpoint_info info;
    CHECK(busbar_directory_get(dir, 2, &info) == BUSBAR_INVALID_ARGUMENT);
    CHECK(saw_rust);
    busbar_directory_free(dir);
    busbar_selector_free(to);
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok bytes_both_ways_and_requests\n");
}

static void test_unicast_and_multicast_to_c_and_rust(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "mixed");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child rust = rust_peer(bus, "rx,rust", "busbar");
    child c = c_peer(bus, "rx,c-child");
    /* Both are in our directory before we send (a unicast picks among matches). */
    wait_endpoints(s, 3);
    send_text(s, "rx", 1, 1, "to all");
    int rust_got = 0, c_got = 0;
    for (int i = 0; i < 2; i++) {
        char *t = recv_text(r, NULL);
        rust_got += strcmp(t, "rust:to all") == 0;
        c_got += strcmp(t, "c:to all") == 0;
        free(t);
    }
    CHECK(rust_got == 1 && c_got == 1);
    /* Two unicasts: one answer each, nothing twice; the multicast fence
     * comes back from both after everything before it. */
    send_text(s, "rx", 0, 1, "u1");
    send_text(s, "rx", 0, 1, "u2");
    send_text(s, "rx", 1, 1, "fence");
    int unicast_answers = 0, fences = 0;
    while (fences < 2) {
        char *t = recv_text(r, NULL);
        if (strstr(t, "fence")) {
            fences++;
        } else {
            CHECK(strstr(t, ":u1") || strstr(t, ":u2"));
            unicast_answers++;
        }
        free(t);
    }
    CHECK(unicast_answers == 2);
    /* A label expression that picks the C receiver only. */
    send_text(s, "rx & !rust", 0, 1, "c only");
    expect_text(r, 1, "c:c only");
    send_text(s, "c-child", 0, 9, "END");
    CHECK(finish(&c) == 0);
    stop_peer(s, "rust", &rust);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok unicast_and_multicast_to_c_and_rust\n");
}

/* Sends `count` pipe write ends to the Rust peer and reads back what it wrote. */
static void send_pipes(busbar_sender *s, busbar_receiver *r, int count) {
    int *readers = calloc((size_t)count, sizeof(int));
    CHECK(readers != NULL);
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("rust", 0, &to));
    busbar_message *m = NULL;
    OK(busbar_message_new(to, 2, "fds", 3, &m));
    for (int i = 0; i < count; i++) {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        readers[i] = p[0];
        OK(busbar_message_add_fd(m, p[1]));
    }
    OK(busbar_send(s, &m));
    CHECK(m == NULL);
    char want[32];
    snprintf(want, sizeof want, "fds %d", count);
    expect_text(r, 2, want);
    for (int i = 0; i < count; i++) {
        char got[32] = {0};
        char expected[32];
        snprintf(expected, sizeof expected, "rust %d\n", i);
        ssize_t n = read(readers[i], got, sizeof got - 1);
        CHECK(n == (ssize_t)strlen(expected) && strcmp(got, expected) == 0);
        CHECK(read(readers[i], got, 1) == 0); /* every write end is closed */
        close(readers[i]);
    }
    free(readers);
    busbar_selector_free(to);
}

static void test_descriptors(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "fds");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child peer = rust_peer(bus, "rust", "busbar");
    wait_endpoints(s, 2);
    send_pipes(s, r, 1); /* the link to the peer is up: count from here */
    int before = fd_count();
    send_pipes(s, r, 253);
    /* 254 are refused at send, and the message keeps them all. */
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("rust", 0, &to));
    busbar_message *m = NULL;
    OK(busbar_message_new(to, 2, "fds", 3, &m));
    for (int i = 0; i < 254; i++) {
        int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        OK(busbar_message_add_fd(m, fd));
    }
    CHECK(busbar_send(s, &m) == BUSBAR_TOO_MANY_OBJECTS);
    CHECK(m != NULL && busbar_message_fd_count(m) == 254);
    int taken = busbar_message_take_fd(m, 3);
    CHECK(taken >= 0 && busbar_message_fd(m, 3) == -1 && busbar_message_take_fd(m, 3) == -1);
    close(taken);
    busbar_message_free(m);
    busbar_selector_free(to);
    CHECK(fd_count() == before);
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok descriptors\n");
}

/* A region view borrowed from a message stays valid while more regions are
 * added to it (ASan reports a use after free if the view moved). */
static void test_region_view_survives_adding_regions(void) {
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("nobody", 0, &to));
    busbar_message *m = NULL;
    OK(busbar_message_new(to, 0, "x", 1, &m));
    busbar_region *first = NULL;
    OK(busbar_region_new(4096, &first));
    OK(busbar_message_add_region(m, &first));
    const busbar_region_view *view = busbar_message_region(m, 0);
    CHECK(view != NULL);
    for (int i = 0; i < 16; i++) {
        busbar_region *more = NULL;
        OK(busbar_region_new(8192, &more));
        OK(busbar_message_add_region(m, &more));
    }
    CHECK(busbar_message_region_count(m) == 17);
    CHECK(busbar_message_region(m, 0) == view);
    CHECK(busbar_region_view_size(view) == 4096);
    busbar_message_free(m);
    busbar_selector_free(to);
    passed++;
}

static void test_region_changed_by_rust(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "region");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child peer = rust_peer(bus, "rust", "busbar");
    wait_endpoints(s, 2);
    busbar_region *region = NULL;
    OK(busbar_region_new(4096, &region));
    uint8_t *bytes = NULL;
    size_t len = 0;
    OK(busbar_region_map(region, &bytes, &len));
    CHECK(len == 4096 && busbar_region_size(region) == 4096);
    strcpy((char *)bytes, "written by C");
    CHECK(busbar_region_ref_count(region) == 1);
    busbar_region *attached = NULL;
    OK(busbar_region_clone(region, &attached));
    CHECK(busbar_region_ref_count(region) == 2);
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("rust", 0, &to));
    busbar_message *m = NULL;
    OK(busbar_message_new(to, 3, "written by C", 12, &m));
    OK(busbar_message_add_region(m, &attached));
    CHECK(attached == NULL && busbar_message_region_count(m) == 1);
    const busbar_region_view *view = busbar_message_region(m, 0);
    CHECK(view != NULL && busbar_region_view_size(view) == 4096);
    OK(busbar_send(s, &m));
    /* Rust saw two handles (ours and its own), changed the bytes, let go.
     * busbar_send sends a duplicate of the message's region (so that a failed
     * send leaves the message whole) and frees the original after the send
     * returned: a receiver that counts before that sees one handle more. */
    {
        busbar_message *got = NULL;
        OK(busbar_recv(r, WAIT_MS, &got));
        size_t n = 0;
        const char *text = (const char *)busbar_message_data(got, &n);
        CHECK(busbar_message_format(got) == 3);
        CHECK((n == 8 && memcmp(text, "region 2", 8) == 0) || (n == 8 && memcmp(text, "region 3", 8) == 0));
        busbar_message_free(got);
    }
    CHECK(strcmp((const char *)bytes, "changed by rust") == 0);
    CHECK(busbar_region_ref_count(region) == 1);
    busbar_region_free(region);
    busbar_selector_free(to);

    /* A registry hands out regions and takes them back. */
    busbar_registry *reg = NULL;
    OK(busbar_registry_new(&reg));
    busbar_region *a = NULL;
    OK(busbar_registry_alloc(reg, 100, "frames", &a));
    CHECK(busbar_region_size(a) == 100 && busbar_registry_len(reg) == 1);
    busbar_region_free(a);
    OK(busbar_registry_alloc(reg, 100, "frames", &a));
    CHECK(busbar_registry_len(reg) == 1); /* reused */
    busbar_region_free(a);
    busbar_registry_free(reg);
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok region_changed_by_rust\n");
}

typedef struct {
    int calls;
    char text[64];
} lent_ctx;

static void on_lent(void *ctx, busbar_borrowed *m) {
    lent_ctx *c = ctx;
    size_t len = 0;
    const uint8_t *data = busbar_borrowed_data(m, &len);
    c->calls++;
    snprintf(c->text, sizeof c->text, "%u:%.*s", busbar_borrowed_format(m), (int)len,
             (const char *)data);
    CHECK(busbar_borrowed_fd_count(m) == 0 && busbar_borrowed_region_count(m) == 0);
    CHECK(!busbar_borrowed_is_request(m) && busbar_borrowed_source(m) != 0);
}

static void test_recv_with_and_poll(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "poll");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child peer = rust_peer(bus, "rust", "busbar");
    wait_endpoints(s, 2);
    send_text(s, "rust", 0, 4, "send 2 c-main");
    lent_ctx ctx = {0, {0}};
    OK(busbar_recv_with(r, WAIT_MS, on_lent, &ctx));
    CHECK(ctx.calls == 1 && strcmp(ctx.text, "4:rust 0") == 0);
    OK(busbar_recv_with(r, WAIT_MS, on_lent, &ctx));
    CHECK(ctx.calls == 2 && strcmp(ctx.text, "4:rust 1") == 0);
    expect_text(r, 4, "sent 2");
    CHECK(busbar_recv_with(r, 0, on_lent, &ctx) == BUSBAR_TIMEOUT && ctx.calls == 2);
    CHECK(busbar_recv_with(r, 0, NULL, &ctx) == BUSBAR_INVALID_ARGUMENT);

    /* A poll loop: try_recv until EMPTY, then poll the descriptor. */
    int fd = busbar_receiver_fd(r);
    CHECK(fd >= 0);
    busbar_message *m = NULL;
    CHECK(busbar_try_recv(r, &m) == BUSBAR_EMPTY);
    send_text(s, "rust", 0, 4, "send 20 c-main");
    int got = 0, answered = 0;
    while (!answered) {
        struct pollfd p = {fd, POLLIN, 0};
        CHECK(poll(&p, 1, WAIT_MS) == 1);
        busbar_status st;
        while ((st = busbar_try_recv(r, &m)) == BUSBAR_OK) {
            size_t len = 0;
            const uint8_t *data = busbar_message_data(m, &len);
            if (len == 7 && memcmp(data, "sent 20", 7) == 0) {
                answered = 1;
            } else {
                char want[16];
                snprintf(want, sizeof want, "rust %d", got);
                CHECK(len == strlen(want) && memcmp(data, want, len) == 0);
                got++;
            }
            busbar_message_free(m);
        }
        CHECK(st == BUSBAR_EMPTY);
    }
    CHECK(got == 20);
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok recv_with_and_poll\n");
}

static void test_loan(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "loan");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child peer = rust_peer(bus, "rust", "busbar");
    wait_endpoints(s, 2);
    busbar_loan *loan = NULL;
    OK(busbar_loan_new(s, 1, 5, &loan));
    size_t len = 0;
    uint8_t *data = busbar_loan_data(loan, &len);
    CHECK(data != NULL && len == 5);
    memcpy(data, "loan!", 5);
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("rust", 0, &to));
    OK(busbar_send_loan(s, to, &loan));
    CHECK(loan == NULL);
    expect_text(r, 1, "rust:loan!");
    busbar_selector_free(to);
    stop_peer(s, "rust", &peer);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok loan\n");
}

/* 10k messages with a descriptor and a region each, C to C; then neither
 * process has a descriptor more than before (and ASan's leak check at exit
 * finds nothing). */
static void test_no_leaks(void) {
    char bus[160];
    bus_name(bus, sizeof bus, "leaks");
    busbar_sender *s = NULL;
    busbar_receiver *r = NULL;
    OK(busbar_join(bus, "c-main", "busbar", WAIT_MS, &s, &r));
    child c = c_peer(bus, "c-child");
    wait_endpoints(s, 2);
    busbar_selector *to = NULL;
    OK(busbar_selector_parse("c-child", 0, &to));
    int before = 0;
    for (int i = 0; i < 10100; i++) {
        if (i == 100) {
            /* Links both ways are up: mark both sides' descriptor counts. */
            send_text(s, "c-child", 0, 1, "warm");
            expect_text(r, 1, "c:warm");
            /* Nothing more is sent until the child has counted: it would
             * read ahead messages (and their descriptors) after the mark. */
            send_text(s, "c-child", 0, 6, "mark");
            expect_text(r, 6, "marked");
            before = fd_count();
        }
        busbar_region *region = NULL;
        OK(busbar_region_new(64, &region));
        uint8_t *bytes = NULL;
        OK(busbar_region_map(region, &bytes, NULL));
        bytes[0] = 0x5a;
        busbar_message *m = NULL;
        OK(busbar_message_new(to, 5, "leak?", 5, &m));
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        OK(busbar_message_add_fd(m, fd));
        OK(busbar_message_add_region(m, &region));
        OK(busbar_send(s, &m));
    }
    send_text(s, "c-child", 0, 7, "check");
    char *t = recv_text(r, NULL);
    int child_before = -1, child_after = -2;
    CHECK(sscanf(t, "fdcheck %d %d", &child_before, &child_after) == 2);
    free(t);
    CHECK(child_before == child_after);
    CHECK(fd_count() == before);
    send_text(s, "c-child", 0, 9, "END");
    CHECK(finish(&c) == 0);
    busbar_selector_free(to);
    busbar_receiver_free(r);
    busbar_sender_free(s);
    passed++;
    printf("ok no_leaks (10000 messages, descriptors %d before and after, the receiver's %d)\n",
           before, child_after);
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--c-echo") == 0) {
        return c_echo(argv[2], argv[3]);
    }
    if (argc != 3) {
        fprintf(stderr, "usage: %s <busbar-peer> <bus prefix>\n", argv[0]);
        return 2;
    }
    alarm(600); /* a hang guard for the whole run */
    signal(SIGPIPE, SIG_IGN);
    atexit(kill_children);
    peer_path = argv[1];
    self_path = argv[0];
    snprintf(bus_prefix, sizeof bus_prefix, "%s", argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    test_null_arguments_and_names();
    test_label_expressions();
    test_timeout_and_failed_send_keeps_the_message();
    test_wrong_token();
    test_close_wakes_a_blocked_recv();
    test_bytes_both_ways_and_requests();
    test_unicast_and_multicast_to_c_and_rust();
    test_descriptors();
    test_region_view_survives_adding_regions();
    test_region_changed_by_rust();
    test_recv_with_and_poll();
    test_loan();
    test_no_leaks();
    printf("%d passed, 0 failed\n", passed);
    return 0;
}
