// The C++ binding's cross-process tests (run by scripts/test-c.sh, built as
// C++17 and as C++20): busbar.hpp against the `busbar` command as the other
// side (`busbar listen`, `busbar send`, `busbar request`).
//
//   test_cpp <path of the busbar command> <bus name>
//
// Prints `ok <test>` per test and `N passed, 0 failed`; exits 1 at the first failure.
#include "busbar.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace std::chrono_literals;

namespace {

int passed = 0;
std::string cli;
std::string bus;

#define CHECK(cond)                                                                         \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            std::cerr << "FAIL " << __FILE__ << ":" << __LINE__ << ": " #cond << std::endl; \
            std::exit(1);                                                                   \
        }                                                                                   \
    } while (0)

void ok(const char *name) {
    passed++;
    std::cout << "ok " << name << std::endl;
}

// Runs a shell command and gives its stdout, line by line.
class Command {
public:
    explicit Command(const std::string &cmd) : f_(popen(cmd.c_str(), "r")) { CHECK(f_ != nullptr); }
    Command(const Command &) = delete;
    Command &operator=(const Command &) = delete;
    ~Command() {
        if (f_ != nullptr) {
            pclose(f_);
        }
    }
    std::string line() {
        std::array<char, 4096> buf{};
        CHECK(std::fgets(buf.data(), static_cast<int>(buf.size()), f_) != nullptr);
        std::string s(buf.data());
        if (!s.empty() && s.back() == '\n') {
            s.pop_back();
        }
        return s;
    }
    int wait() {
        int status = pclose(std::exchange(f_, nullptr));
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    FILE *f_;
};

std::string quote(const std::string &s) { return "'" + s + "'"; }

void cli_listen_gets_what_cpp_sends(busbar::Endpoint &me) {
    Command listen(cli + " listen --bus " + quote(bus) + " --label cpp-listen --count 3 --timeout 60");
    // The listener joins when it joins: the ttl lets the messages wait for it.
    auto to = busbar::Selector::unicast("cpp-listen");
    to.ttl(30s);
    busbar::Message hello(to, "hello from c++");
    me.sender.send(hello);
    CHECK(!hello); // consumed by a successful send
    CHECK(listen.line() == "hello from c++");
    me.sender.send("cpp-listen", "second, by label");
    me.sender.multicast("cpp-listen", "third, by multicast");
    CHECK(listen.line() == "second, by label");
    CHECK(listen.line() == "third, by multicast");
    CHECK(listen.wait() == 0);
    ok("cli_listen_gets_what_cpp_sends");
}

void loans_and_pooled_regions(busbar::Endpoint &me) {
    // A loan filled in place and sent to another process (`busbar listen`
    // prints the payload it got), then to ourselves, 256 KiB long.
    Command listen(cli + " listen --bus " + quote(bus) + " --label cpp-loans --count 1 --timeout 60");
    std::string text = "hello through a loan";
    busbar::Loan loan = me.sender.loan(text.size(), 5);
    busbar::MutableBytes into = loan.bytes();
    CHECK(into.size() == text.size());
    std::memcpy(into.data(), text.data(), text.size());
    auto to = busbar::Selector::unicast("cpp-loans");
    to.ttl(30s);
    me.sender.send_loan(to, loan);
    CHECK(!loan); // consumed
    CHECK(listen.line() == text);
    CHECK(listen.wait() == 0);

    busbar::Loan big = me.sender.loan(256 << 10, 6);
    busbar::MutableBytes b = big.bytes();
    for (std::size_t i = 0; i < b.size(); i++) {
        b[i] = std::byte(i % 251);
    }
    me.sender.send_loan(busbar::Selector::unicast("cpp-main"), std::move(big));
    busbar::Message got = me.receiver.recv();
    busbar::Bytes d = got.data();
    CHECK(got.format() == 6 && d.size() == (256u << 10));
    bool same = true;
    for (std::size_t i = 0; i < d.size(); i++) {
        same = same && d[i] == std::byte(i % 251);
    }
    CHECK(same);
    // A loan to nobody: the error, and the loan is gone all the same.
    busbar::Loan lost = me.sender.loan(16);
    try {
        me.sender.send_loan(busbar::Selector::unicast("nobody-has-this-label"), lost);
        CHECK(false);
    } catch (const busbar::Error &e) {
        CHECK(e.status() == BUSBAR_NO_ROUTE);
    }
    CHECK(!lost);

    // A pooled region's on_free runs once nobody holds it, and its memory is reused.
    busbar::Registry registry;
    int freed = 0;
    busbar::Region r = registry.alloc(4096, "frames", [&freed] { freed++; });
    busbar::Message m(busbar::Selector::unicast("cpp-main"), "with a pooled region");
    m.add_region(r.clone());
    me.sender.send(m);
    busbar::Message with = me.receiver.recv();
    CHECK(with.region_count() == 1);
    registry.maintain();
    CHECK(freed == 0); // held by us (twice: r, and the received message)
    r = busbar::Region();
    registry.maintain();
    CHECK(freed == 0); // the received message still holds it
    with = busbar::Message(nullptr);
    registry.maintain();
    CHECK(freed == 1);
    busbar::Region again = registry.alloc(4096, "frames");
    CHECK(registry.size() == 1 && again.size() == 4096);
    ok("loans_and_pooled_regions");
}

void cpp_gets_what_cli_sends(busbar::Endpoint &me) {
    std::string cmd = cli + " send --bus " + quote(bus) + " --to cpp-main --format 7 'hello from the cli'";
    CHECK(std::system(cmd.c_str()) == 0);
    std::optional<busbar::Message> m = me.receiver.recv(30s);
    CHECK(m.has_value());
    CHECK(m->text() == "hello from the cli");
    CHECK(m->format() == 7);
    CHECK(m->source() != 0 && m->source() != me.sender.id());
    // A request from the command, answered here.
    Command request(cli + " request --bus " + quote(bus) + " --to cpp-main --timeout 30 'what time is it'");
    busbar::Message q = me.receiver.recv();
    CHECK(q.is_request() && q.text() == "what time is it");
    me.sender.reply(q, "time to test");
    CHECK(request.line() == "time to test");
    CHECK(request.wait() == 0);
    ok("cpp_gets_what_cli_sends");
}

void errors_are_exceptions(busbar::Endpoint &me) {
    CHECK(!me.receiver.recv(10ms).has_value()); // a timeout is no error
    CHECK(!me.receiver.try_recv().has_value());
    busbar::Message m(busbar::Selector::unicast("nobody"), "kept");
    try {
        me.sender.send(m);
        CHECK(false);
    } catch (const busbar::Error &e) {
        CHECK(e.status() == BUSBAR_NO_ROUTE);
        CHECK(std::string(e.name()) == "NO_ROUTE");
        CHECK(std::string(e.what()).find("nobody") != std::string::npos);
    }
    CHECK(m && m.text() == "kept"); // still ours
    try {
        busbar::LabelOp::parse("a & (b");
        CHECK(false);
    } catch (const busbar::Error &e) {
        CHECK(e.status() == BUSBAR_PARSE);
    }
    try {
        busbar::join(bus, "x", "wrong token", 5s);
        CHECK(false);
    } catch (const busbar::Error &e) {
        CHECK(e.status() == BUSBAR_TOKEN_MISMATCH);
    }
    ok("errors_are_exceptions");
}

void fds_regions_and_lending(busbar::Endpoint &me) {
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0);
    busbar::UniqueFd reader(p[0]);
    busbar::Region region = busbar::Region::create(64);
    busbar::MutableBytes bytes = region.bytes();
    bytes[0] = std::byte{42};
    busbar::LabelOp expr = busbar::LabelOp::leaf("cpp-main") & !busbar::LabelOp::leaf("gpu");
    CHECK(expr.str() == "cpp-main & !gpu");
    busbar::Message m(busbar::Selector::unicast(std::move(expr)), "with attachments", 3);
    m.add_fd(busbar::UniqueFd(p[1])).add_region(region.clone());
    CHECK(m.fd_count() == 1 && m.region_count() == 1);
    me.sender.send(m); // to ourselves
    busbar::Message got = me.receiver.recv();
    CHECK(got.text() == "with attachments" && got.format() == 3);
    busbar::UniqueFd writer = got.take_fd(0);
    CHECK(writer && got.fd(0) == -1);
    CHECK(write(writer.get(), "!", 1) == 1);
    writer.reset();
    char c = 0;
    CHECK(read(reader.get(), &c, 1) == 1 && c == '!');
    CHECK(got.region_bytes(0)[0] == std::byte{42});
    busbar::Region theirs = got.take_region(0);
    CHECK(theirs.ref_count() == 2 && region.ref_count() == 2);
    theirs.bytes()[1] = std::byte{7};
    CHECK(bytes[1] == std::byte{7});

    // Lent in place.
    me.sender.send("cpp-main", "lent");
    std::string seen;
    CHECK(me.receiver.recv_with(5s, [&](busbar::Borrowed &b) { seen = std::string(b.text()); }));
    CHECK(seen == "lent");
    CHECK(!me.receiver.recv_with(0ms, [&](busbar::Borrowed &) {}));
    me.sender.send("cpp-main", "throws");
    bool caught = false;
    try {
        me.receiver.recv_with(5s, [](busbar::Borrowed &) { throw std::runtime_error("from the callback"); });
    } catch (const std::runtime_error &e) {
        caught = std::string(e.what()) == "from the callback";
    }
    CHECK(caught);

    // A poll loop.
    CHECK(!me.receiver.try_recv());
    me.sender.send("cpp-main", "polled");
    pollfd pfd{me.receiver.fd(), POLLIN, 0};
    std::optional<busbar::Message> polled;
    while (!polled) {
        CHECK(poll(&pfd, 1, 30000) == 1);
        polled = me.receiver.try_recv();
    }
    CHECK(polled->text() == "polled");

    busbar::Registry registry;
    busbar::Region pooled = registry.alloc(100, "tag");
    CHECK(pooled.size() == 100 && registry.size() == 1);
    std::vector<busbar::EndpointInfo> dir = me.sender.endpoints();
    CHECK(!dir.empty() && dir[0].label.size() > 0);
    ok("fds_regions_and_lending");
}

void close_wakes_a_blocked_recv() {
    busbar::Endpoint me = busbar::join(bus + ".close", "closing", "busbar", 5s);
    std::atomic<busbar_status> status{BUSBAR_OK};
    std::thread t([&] {
        for (;;) {
            try {
                me.receiver.recv();
            } catch (const busbar::Error &e) {
                if (e.status() == BUSBAR_BUSY) {
                    continue; // the main thread's try_recv held it for a moment
                }
                status = e.status();
                return;
            }
        }
    });
    // Until the thread is inside recv(): then a second call is BUSY.
    for (;;) {
        try {
            me.receiver.try_recv();
        } catch (const busbar::Error &e) {
            CHECK(e.status() == BUSBAR_BUSY);
            break;
        }
        std::this_thread::sleep_for(1ms);
    }
    me.receiver.close();
    t.join();
    CHECK(status == BUSBAR_CLOSED);
    CHECK(me.receiver.fd() == -1);
    ok("close_wakes_a_blocked_recv");
}

} // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::cerr << "usage: test_cpp <busbar command> <bus>" << std::endl;
        return 2;
    }
    alarm(600); // a hang guard for the whole run
    cli = argv[1];
    bus = argv[2];
    busbar::Endpoint me = busbar::join(bus, "cpp-main", "busbar", 5s);
    CHECK(me.sender.is_controller()); // the command-line tools need a bus to join
    cli_listen_gets_what_cpp_sends(me);
    cpp_gets_what_cli_sends(me);
    errors_are_exceptions(me);
    fds_regions_and_lending(me);
    loans_and_pooled_regions(me);
    close_wakes_a_blocked_recv();
    std::cout << passed << " passed, 0 failed" << std::endl;
    return 0;
}
