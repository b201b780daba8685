// pubsub: a publisher and a subscriber that waits in a poll() loop, in C++.
//
//   pubsub BUS sub TOPIC       prints every message on TOPIC until "bye"
//   pubsub BUS pub TOPIC N     publishes N messages on TOPIC, then "bye"
//
// The publisher waits up to 10 s for a subscriber to be in its directory
// before it publishes, so the two start in either order. (A ttl would also
// hold messages until a match joins, but they wait inside the sender's
// process: one that exits right after sending would take them along.)
#include "busbar.hpp"

#include <iostream>
#include <string>
#include <thread>

#include <poll.h>

using namespace std::chrono_literals;

static int subscribe(busbar::Receiver &rx) {
    for (;;) {
        // Take what is here, then sleep in poll() until more may have come:
        // the receiver's descriptor fits any event loop.
        while (std::optional<busbar::Message> m = rx.try_recv()) {
            if (m->text() == "bye") {
                return 0;
            }
            std::cout << m->text() << std::endl;
        }
        pollfd p{rx.fd(), POLLIN, 0};
        if (poll(&p, 1, -1) < 0) {
            return 1;
        }
    }
}

static bool has_subscriber(const busbar::Sender &tx, const std::string &topic) {
    for (const busbar::EndpointInfo &e : tx.endpoints()) {
        if (("," + e.label + ",").find("," + topic + ",") != std::string::npos) {
            return true;
        }
    }
    return false;
}

static int publish(busbar::Sender &tx, const std::string &topic, int n) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!has_subscriber(tx, topic)) {
        if (std::chrono::steady_clock::now() > deadline) {
            std::cerr << "pubsub: nobody subscribed to " << topic << std::endl;
            return 1;
        }
        std::this_thread::sleep_for(1ms);
    }
    busbar::Selector to = busbar::Selector::multicast(topic);
    to.require_receiver(); // a multicast nobody gets fails instead of vanishing
    for (int i = 0; i <= n; i++) {
        busbar::Message m(to, i < n ? "news " + std::to_string(i) : std::string("bye"));
        tx.send(m);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        std::cerr << "usage: pubsub BUS sub TOPIC | pubsub BUS pub TOPIC N" << std::endl;
        return 2;
    }
    std::string bus = argv[1], role = argv[2], topic = argv[3];
    try {
        if (role == "sub") {
            busbar::Endpoint me = busbar::join(bus, topic);
            return subscribe(me.receiver);
        }
        if (role == "pub" && argc == 5) {
            busbar::Endpoint me = busbar::join(bus, "publisher");
            return publish(me.sender, topic, std::stoi(argv[4]));
        }
    } catch (const busbar::Error &e) {
        std::cerr << "pubsub: " << e.name() << ": " << e.what() << std::endl;
        return 1;
    }
    std::cerr << "usage: pubsub BUS sub TOPIC | pubsub BUS pub TOPIC N" << std::endl;
    return 2;
}
