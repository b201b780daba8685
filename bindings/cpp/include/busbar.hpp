// busbar.hpp: header-only C++17/C++20 wrapper over the busbar C API
// (busbar.h, libbusbar). Move-only RAII handles, errors as busbar::Error,
// std::chrono durations, std::optional for "nothing came", and payloads as
// std::span<const std::byte> under C++20 (busbar::Bytes, pointer + size,
// under C++17). See bindings/cpp/README.md.
//
// Thread safety follows the C API: a Sender may be used from any number of
// threads at once; a Receiver serves one call at a time (another thread's
// call meanwhile throws Error with BUSBAR_BUSY), except close(), which any
// thread may call to end a recv() blocked in another one.
#ifndef BUSBAR_HPP
#define BUSBAR_HPP

#include "busbar.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

#if __cplusplus >= 202002L && defined(__has_include)
#if __has_include(<span>)
#include <span>
#define BUSBAR_HPP_SPAN 1
#endif
#endif

namespace busbar {

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A failed call: the C status (BUSBAR_TIMEOUT, BUSBAR_NO_ROUTE, ...) and
/// busbar_last_error()'s message, which what() returns.
class Error : public std::runtime_error {
public:
    Error(busbar_status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}

    /// The status code, one of the BUSBAR_* constants.
    busbar_status status() const noexcept { return status_; }

    /// The status's name: "TIMEOUT", "NO_ROUTE", ...
    const char *name() const noexcept { return busbar_status_str(status_); }

private:
    busbar_status status_;
};

namespace detail {

inline void check(busbar_status status) {
    if (status != BUSBAR_OK) {
        throw Error(status, busbar_last_error());
    }
}

template <class Rep, class Period>
int64_t millis(std::chrono::duration<Rep, Period> d) {
    return static_cast<int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}

/// A move-only owner of a C handle, freed with F.
template <class T, void (*F)(T *)>
class Handle {
public:
    Handle() noexcept = default;
    explicit Handle(T *p) noexcept : p_(p) {}
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    Handle(Handle &&other) noexcept : p_(std::exchange(other.p_, nullptr)) {}
    Handle &operator=(Handle &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.p_, nullptr));
        }
        return *this;
    }
    ~Handle() { reset(); }

    T *get() const noexcept { return p_; }
    /// The slot for C calls that take the handle (and set it to NULL).
    T **slot() noexcept { return &p_; }
    T *release() noexcept { return std::exchange(p_, nullptr); }
    void reset(T *p = nullptr) noexcept {
        if (p_ != nullptr) {
            F(p_);
        }
        p_ = p;
    }
    explicit operator bool() const noexcept { return p_ != nullptr; }

private:
    T *p_ = nullptr;
};

} // namespace detail

// ---------------------------------------------------------------------------
// Bytes
// ---------------------------------------------------------------------------

#ifdef BUSBAR_HPP_SPAN
/// A payload: bytes borrowed from the caller (or from a message).
using Bytes = std::span<const std::byte>;
/// Writable bytes (a region's, a loan's).
using MutableBytes = std::span<std::byte>;
#else
/// A payload: bytes borrowed from the caller (or from a message). Under
/// C++20 this is std::span<const std::byte>.
class Bytes {
public:
    constexpr Bytes() noexcept = default;
    constexpr Bytes(const std::byte *data, std::size_t size) noexcept : data_(data), size_(size) {}
    constexpr const std::byte *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr const std::byte *begin() const noexcept { return data_; }
    constexpr const std::byte *end() const noexcept { return data_ + size_; }
    constexpr const std::byte &operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    const std::byte *data_ = nullptr;
    std::size_t size_ = 0;
};

/// Writable bytes (a region's, a loan's). Under C++20 std::span<std::byte>.
class MutableBytes {
public:
    constexpr MutableBytes() noexcept = default;
    constexpr MutableBytes(std::byte *data, std::size_t size) noexcept : data_(data), size_(size) {}
    constexpr std::byte *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr std::byte *begin() const noexcept { return data_; }
    constexpr std::byte *end() const noexcept { return data_ + size_; }
    constexpr std::byte &operator[](std::size_t i) const noexcept { return data_[i]; }

private:
    std::byte *data_ = nullptr;
    std::size_t size_ = 0;
};
#endif

/// The bytes of a string (no terminating NUL).
inline Bytes as_bytes(std::string_view text) noexcept {
    return Bytes(reinterpret_cast<const std::byte *>(text.data()), text.size());
}

/// The bytes of a contiguous container of trivially copyable values
/// (std::vector<uint8_t>, std::array<float, N>, ...).
template <class C, class = decltype(std::declval<const C &>().data())>
Bytes as_bytes(const C &container) noexcept {
    using T = std::remove_cv_t<std::remove_pointer_t<decltype(container.data())>>;
    static_assert(std::is_trivially_copyable_v<T>, "only plain data can be sent as bytes");
    return Bytes(reinterpret_cast<const std::byte *>(container.data()), container.size() * sizeof(T));
}

/// Bytes as text (for payloads that are text).
inline std::string_view as_text(Bytes bytes) noexcept {
    return std::string_view(reinterpret_cast<const char *>(bytes.data()), bytes.size());
}

// ---------------------------------------------------------------------------
// File descriptors and regions
// ---------------------------------------------------------------------------

/// An owned file descriptor, closed when it goes (unless released).
class UniqueFd {
public:
    UniqueFd() noexcept = default;
    explicit UniqueFd(int fd) noexcept : fd_(fd) {}
    UniqueFd(const UniqueFd &) = delete;
    UniqueFd &operator=(const UniqueFd &) = delete;
    UniqueFd(UniqueFd &&other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    UniqueFd &operator=(UniqueFd &&other) noexcept {
        if (this != &other) {
            reset(std::exchange(other.fd_, -1));
        }
        return *this;
    }
    ~UniqueFd() { reset(); }

    /// The descriptor, still owned here (-1 when empty).
    int get() const noexcept { return fd_; }
    /// Gives up ownership: the caller closes it.
    int release() noexcept { return std::exchange(fd_, -1); }
    /// Closes the descriptor held (if any) and holds `fd` instead.
    void reset(int fd = -1) noexcept {
        if (fd_ >= 0) {
            ::close(fd_);
        }
        fd_ = fd;
    }
    explicit operator bool() const noexcept { return fd_ >= 0; }

private:
    int fd_ = -1;
};

/// A shared-memory region (memfd) with a count of its holders across
/// processes; the handle is freed (the count dropped) when it goes.
class Region {
public:
    /// A new zeroed region of `size` bytes.
    static Region create(std::size_t size) {
        Region r;
        detail::check(busbar_region_new(size, r.h_.slot()));
        return r;
    }

    Region() noexcept = default;
    explicit Region(busbar_region *r) noexcept : h_(r) {}

    /// Another handle to the same memory (the count goes up).
    Region clone() const {
        Region r;
        detail::check(busbar_region_clone(h_.get(), r.h_.slot()));
        return r;
    }

    /// The bytes, mapped read-write (shared with every holder, no
    /// synchronisation); mapped on first use, valid while this handle lives.
    MutableBytes bytes() {
        uint8_t *data = nullptr;
        std::size_t len = 0;
        detail::check(busbar_region_map(h_.get(), &data, &len));
        return MutableBytes(reinterpret_cast<std::byte *>(data), len);
    }

    std::size_t size() const noexcept { return busbar_region_size(h_.get()); }
    /// How many handles exist, in all processes, messages in flight included.
    uint32_t ref_count() const noexcept { return busbar_region_ref_count(h_.get()); }
    busbar_region *get() const noexcept { return h_.get(); }
    busbar_region *release() noexcept { return h_.release(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    detail::Handle<busbar_region, busbar_region_free> h_;
};

/// A pool of regions that reuses those nobody holds any more.
class Registry {
public:
    Registry() { detail::check(busbar_registry_new(h_.slot())); }

    /// A region of `size` bytes: a free one with the same tag, or a new one.
    Region alloc(std::size_t size, const char *tag = nullptr) {
        busbar_region *r = nullptr;
        detail::check(busbar_registry_alloc(h_.get(), size, tag, &r));
        return Region(r);
    }

    /// Like alloc(), and calls `on_free` once the region is free again
    /// (nobody in any process holds it), on the thread that finds so: a
    /// later alloc(), maintain(), or the registry's destruction. `on_free`
    /// must not throw (it is called from C; an exception ends the process).
    Region alloc(std::size_t size, const char *tag, std::function<void()> on_free) {
        auto *ctx = new std::function<void()>(std::move(on_free));
        busbar_region *r = nullptr;
        busbar_status status = busbar_registry_alloc_with_free(h_.get(), size, tag, &call_free, ctx, &r);
        if (status != BUSBAR_OK) {
            delete ctx;
            detail::check(status);
        }
        return Region(r);
    }

    /// Lets idle memory go (and calls the on_free of regions free again).
    void maintain() { detail::check(busbar_registry_maintain(h_.get())); }
    std::size_t size() const noexcept { return busbar_registry_len(h_.get()); }

private:
    static void call_free(void *ctx) noexcept {
        std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()> *>(ctx));
        if (*f) {
            (*f)();
        }
    }
    detail::Handle<busbar_registry, busbar_registry_free> h_;
};

// ---------------------------------------------------------------------------
// Label expressions and selectors
// ---------------------------------------------------------------------------

/// A label expression, parsed (`renderer & !gpu`) or built with & | !.
class LabelOp {
public:
    /// Parses `expr` (throws Error with BUSBAR_PARSE, pointing at the bad spot).
    static LabelOp parse(const std::string &expr) {
        LabelOp op;
        detail::check(busbar_label_op_parse(expr.c_str(), op.h_.slot()));
        return op;
    }
    /// Matches endpoints whose label holds `name`.
    static LabelOp leaf(const std::string &name) {
        LabelOp op;
        detail::check(busbar_label_op_leaf(name.c_str(), op.h_.slot()));
        return op;
    }

    friend LabelOp operator&(LabelOp a, LabelOp b) {
        LabelOp op;
        detail::check(busbar_label_op_and(a.h_.slot(), b.h_.slot(), op.h_.slot()));
        return op;
    }
    friend LabelOp operator|(LabelOp a, LabelOp b) {
        LabelOp op;
        detail::check(busbar_label_op_or(a.h_.slot(), b.h_.slot(), op.h_.slot()));
        return op;
    }
    friend LabelOp operator!(LabelOp a) {
        LabelOp op;
        detail::check(busbar_label_op_not(a.h_.slot(), op.h_.slot()));
        return op;
    }

    /// The expression in the syntax parse() reads.
    std::string str() const {
        char *s = busbar_label_op_to_string(h_.get());
        if (s == nullptr) {
            throw Error(BUSBAR_INVALID_ARGUMENT, busbar_last_error());
        }
        std::string out(s);
        busbar_string_free(s);
        return out;
    }

private:
    friend class Selector;
    LabelOp() = default;
    detail::Handle<busbar_label_op, busbar_label_op_free> h_;
};

/// Where a message goes.
class Selector {
public:
    /// Exactly one endpoint matching the label expression `expr`.
    static Selector unicast(const std::string &expr) { return parse(expr, 0); }
    /// Every endpoint matching `expr`.
    static Selector multicast(const std::string &expr) { return parse(expr, 1); }
    static Selector unicast(LabelOp op) {
        Selector s;
        detail::check(busbar_selector_unicast(op.h_.slot(), s.h_.slot()));
        return s;
    }
    static Selector multicast(LabelOp op) {
        Selector s;
        detail::check(busbar_selector_multicast(op.h_.slot(), s.h_.slot()));
        return s;
    }
    /// Exactly the endpoint with this id.
    static Selector endpoint(uint64_t id) {
        Selector s;
        detail::check(busbar_selector_endpoint(id, s.h_.slot()));
        return s;
    }

    /// Waits up to `ttl` for a match to join, when nobody matches yet.
    template <class Rep, class Period>
    Selector &ttl(std::chrono::duration<Rep, Period> ttl) {
        detail::check(busbar_selector_set_ttl(h_.get(), static_cast<uint64_t>(detail::millis(ttl))));
        return *this;
    }
    /// BUSBAR_BACKPRESSURE_BLOCK, _DROP_NEWEST or _FAIL_FAST for these messages.
    Selector &backpressure(int policy) {
        detail::check(busbar_selector_set_backpressure(h_.get(), policy));
        return *this;
    }
    /// A multicast nobody matches fails with BUSBAR_NO_ROUTE.
    Selector &require_receiver() {
        detail::check(busbar_selector_require_receiver(h_.get()));
        return *this;
    }

    std::string str() const {
        char *s = busbar_selector_to_string(h_.get());
        if (s == nullptr) {
            throw Error(BUSBAR_INVALID_ARGUMENT, busbar_last_error());
        }
        std::string out(s);
        busbar_string_free(s);
        return out;
    }
    const busbar_selector *get() const noexcept { return h_.get(); }

private:
    Selector() = default;
    static Selector parse(const std::string &expr, int multicast) {
        Selector s;
        detail::check(busbar_selector_parse(expr.c_str(), multicast, s.h_.slot()));
        return s;
    }
    detail::Handle<busbar_selector, busbar_selector_free> h_;
};

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A message: selector, format tag, bytes, descriptors and regions; for a
/// received one its source and whether it is a request.
class Message {
public:
    /// A message to `to` with `data` (copied) and format tag `format`.
    Message(const Selector &to, Bytes data, uint16_t format = 0) {
        detail::check(busbar_message_new(to.get(), format, data.data(), data.size(), h_.slot()));
    }
    Message(const Selector &to, std::string_view text, uint16_t format = 0)
        : Message(to, as_bytes(text), format) {}
    /// Takes ownership of a C message.
    explicit Message(busbar_message *m) noexcept : h_(m) {}

    /// The bytes, borrowed from the message.
    Bytes data() const noexcept {
        std::size_t len = 0;
        const uint8_t *p = busbar_message_data(h_.get(), &len);
        return Bytes(reinterpret_cast<const std::byte *>(p), len);
    }
    std::string_view text() const noexcept { return as_text(data()); }
    uint16_t format() const noexcept { return busbar_message_format(h_.get()); }
    /// The endpoint that sent it (0 for a message made here).
    uint64_t source() const noexcept { return busbar_message_source(h_.get()); }
    bool is_request() const noexcept { return busbar_message_is_request(h_.get()) != 0; }

    /// Attaches a descriptor; the message owns it from then on.
    Message &add_fd(UniqueFd fd) {
        detail::check(busbar_message_add_fd(h_.get(), fd.get()));
        fd.release();
        return *this;
    }
    std::size_t fd_count() const noexcept { return busbar_message_fd_count(h_.get()); }
    /// Descriptor `i`, borrowed (-1 when taken or out of range).
    int fd(std::size_t i) const noexcept { return busbar_message_fd(h_.get(), i); }
    /// Takes descriptor `i` out of the message.
    UniqueFd take_fd(std::size_t i) noexcept { return UniqueFd(busbar_message_take_fd(h_.get(), i)); }

    /// Attaches a region (the message holds this handle from then on).
    Message &add_region(Region region) {
        busbar_region *r = region.release();
        busbar_status s = busbar_message_add_region(h_.get(), &r);
        if (s != BUSBAR_OK) {
            busbar_region_free(r);
            detail::check(s);
        }
        return *this;
    }
    std::size_t region_count() const noexcept { return busbar_message_region_count(h_.get()); }
    /// Takes region `i` out of the message.
    Region take_region(std::size_t i) {
        busbar_region *r = nullptr;
        detail::check(busbar_message_take_region(h_.get(), i, &r));
        return Region(r);
    }
    /// Region `i`'s bytes, mapped in place (valid while the message holds it).
    MutableBytes region_bytes(std::size_t i) {
        std::size_t len = 0;
        uint8_t *p = busbar_message_map_region(h_.get(), i, &len);
        if (p == nullptr) {
            throw Error(BUSBAR_INVALID_ARGUMENT, busbar_last_error());
        }
        return MutableBytes(reinterpret_cast<std::byte *>(p), len);
    }

    busbar_message *get() const noexcept { return h_.get(); }
    busbar_message **slot() noexcept { return h_.slot(); }
    /// False once a send consumed it.
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    detail::Handle<busbar_message, busbar_message_free> h_;
};

/// A message lent by Receiver::recv_with, valid only inside the callback.
class Borrowed {
public:
    explicit Borrowed(busbar_borrowed *m) noexcept : m_(m) {}
    /// The bytes where they lie (the sender's ring, a mapped region).
    Bytes data() const noexcept {
        std::size_t len = 0;
        const uint8_t *p = busbar_borrowed_data(m_, &len);
        return Bytes(reinterpret_cast<const std::byte *>(p), len);
    }
    std::string_view text() const noexcept { return as_text(data()); }
    uint16_t format() const noexcept { return busbar_borrowed_format(m_); }
    uint64_t source() const noexcept { return busbar_borrowed_source(m_); }
    bool is_request() const noexcept { return busbar_borrowed_is_request(m_) != 0; }
    std::size_t fd_count() const noexcept { return busbar_borrowed_fd_count(m_); }
    UniqueFd take_fd(std::size_t i) noexcept { return UniqueFd(busbar_borrowed_take_fd(m_, i)); }
    std::size_t region_count() const noexcept { return busbar_borrowed_region_count(m_); }
    Region take_region(std::size_t i) {
        busbar_region *r = nullptr;
        detail::check(busbar_borrowed_take_region(m_, i, &r));
        return Region(r);
    }

private:
    busbar_borrowed *m_;
};

/// One endpoint of the bus directory.
struct EndpointInfo {
    uint64_t id;
    uint32_t pid;
    uint32_t uid;
    bool is_controller;
    uint64_t queued_bytes;
    uint64_t dropped;
    uint64_t sent_per_sec;
    uint64_t received_per_sec;
    /// Comma-separated.
    std::string label;
};

// ---------------------------------------------------------------------------
// Sender and receiver
// ---------------------------------------------------------------------------

/// Shared memory lent by a sender's pool to be filled in place and sent
/// with Sender::send_loan (the zero-copy send): every receiver maps the
/// same memory. Made by Sender::loan; freed unsent, its memory goes back
/// to the pool.
class Loan {
public:
    Loan() noexcept = default;
    explicit Loan(busbar_loan *l) noexcept : h_(l) {}

    /// The memory to write the payload into (its whole length is sent).
    MutableBytes bytes() {
        std::size_t len = 0;
        uint8_t *data = busbar_loan_data(h_.get(), &len);
        return MutableBytes(reinterpret_cast<std::byte *>(data), data == nullptr ? 0 : len);
    }
    busbar_loan *get() const noexcept { return h_.get(); }
    /// The slot C calls that consume the loan take.
    busbar_loan **slot() noexcept { return h_.slot(); }
    explicit operator bool() const noexcept { return static_cast<bool>(h_); }

private:
    detail::Handle<busbar_loan, busbar_loan_free> h_;
};

/// The sending half of an endpoint; any number of threads may use it at once.
class Sender {
public:
    explicit Sender(busbar_sender *s) noexcept : h_(s) {}

    /// Sends `data` with `format` to one endpoint matching the label expression `to`.
    void send(const std::string &to, Bytes data, uint16_t format = 0) const {
        detail::check(busbar_send_bytes(h_.get(), to.c_str(), 0, format, data.data(), data.size()));
    }
    void send(const std::string &to, std::string_view text, uint16_t format = 0) const {
        send(to, as_bytes(text), format);
    }
    /// Sends `data` with `format` to every endpoint matching `to`.
    void multicast(const std::string &to, Bytes data, uint16_t format = 0) const {
        detail::check(busbar_send_bytes(h_.get(), to.c_str(), 1, format, data.data(), data.size()));
    }
    void multicast(const std::string &to, std::string_view text, uint16_t format = 0) const {
        multicast(to, as_bytes(text), format);
    }

    /// Sends `m` as its selector says. On success `m` is consumed (empty);
    /// when this throws, `m` is untouched and still yours.
    void send(Message &m) const { detail::check(busbar_send(h_.get(), m.slot())); }
    /// send() that waits at most `timeout` for a full receiver (then BUSBAR_FULL).
    template <class Rep, class Period>
    void send(Message &m, std::chrono::duration<Rep, Period> timeout) const {
        detail::check(busbar_send_timeout(h_.get(), m.slot(), detail::millis(timeout)));
    }
    /// send() that never waits: false (and `m` kept) when a receiver is full.
    bool try_send(Message &m) const {
        busbar_status s = busbar_try_send(h_.get(), m.slot());
        if (s == BUSBAR_FULL) {
            return false;
        }
        detail::check(s);
        return true;
    }

    /// `len` bytes of shared memory from this endpoint's pool, to fill with
    /// a payload of format `format` and send with send_loan().
    Loan loan(std::size_t len, uint16_t format = 0) const {
        Loan l;
        detail::check(busbar_loan_new(h_.get(), format, len, l.slot()));
        return l;
    }
    /// Sends `loan` to the endpoints `to` picks, without copying it. The
    /// loan is consumed whether or not this throws (on failure its memory
    /// goes back to the pool).
    void send_loan(const Selector &to, Loan &loan) const {
        detail::check(busbar_send_loan(h_.get(), to.get(), loan.slot()));
    }
    void send_loan(const Selector &to, Loan &&loan) const { send_loan(to, loan); }

    /// Sends `m` as a request and waits up to `timeout` for the answer.
    template <class Rep, class Period>
    Message request(Message &m, std::chrono::duration<Rep, Period> timeout) const {
        busbar_message *answer = nullptr;
        detail::check(busbar_request(h_.get(), m.slot(), detail::millis(timeout), &answer));
        return Message(answer);
    }
    /// Answers the request `request` with `data`.
    void reply(const Message &request, Bytes data, uint16_t format = 0) const {
        detail::check(busbar_reply(h_.get(), request.get(), format, data.data(), data.size()));
    }
    void reply(const Message &request, std::string_view text, uint16_t format = 0) const {
        reply(request, as_bytes(text), format);
    }

    /// The bus directory as this endpoint knows it now.
    std::vector<EndpointInfo> endpoints() const {
        busbar_directory *d = nullptr;
        detail::check(busbar_endpoints(h_.get(), &d));
        detail::Handle<busbar_directory, busbar_directory_free> dir(d);
        std::vector<EndpointInfo> out;
        for (std::size_t i = 0; i < busbar_directory_len(d); i++) {
            busbar_endpoint_info e;
            detail::check(busbar_directory_get(d, i, &e));
            out.push_back(EndpointInfo{e.id, e.pid, e.uid, e.is_controller != 0, e.queued_bytes,
                                       e.dropped, e.sent_per_sec, e.received_per_sec, e.label});
        }
        return out;
    }
    std::size_t endpoint_count() const noexcept { return busbar_endpoint_count(h_.get()); }
    uint64_t id() const noexcept { return busbar_sender_id(h_.get()); }
    bool is_controller() const noexcept { return busbar_sender_is_controller(h_.get()) != 0; }
    /// Another handle to the same sender.
    Sender clone() const {
        busbar_sender *s = nullptr;
        detail::check(busbar_sender_clone(h_.get(), &s));
        return Sender(s);
    }
    busbar_sender *get() const noexcept { return h_.get(); }

private:
    detail::Handle<busbar_sender, busbar_sender_free> h_;
};

/// The receiving half of an endpoint.
class Receiver {
public:
    explicit Receiver(busbar_receiver *r) noexcept : h_(r) {}

    /// Waits up to `timeout` for the next message; std::nullopt when none
    /// came. Throws Error (BUSBAR_CLOSED after close(), ...) otherwise.
    template <class Rep, class Period>
    std::optional<Message> recv(std::chrono::duration<Rep, Period> timeout) {
        return recv_ms(detail::millis(timeout));
    }
    /// Waits as long as it takes for the next message.
    Message recv() {
        std::optional<Message> m = recv_ms(-1);
        if (!m) {
            throw Error(BUSBAR_TIMEOUT, "recv without a timeout timed out");
        }
        return std::move(*m);
    }
    /// A message that is already here, or std::nullopt.
    std::optional<Message> try_recv() {
        busbar_message *m = nullptr;
        busbar_status s = busbar_try_recv(h_.get(), &m);
        if (s == BUSBAR_EMPTY) {
            return std::nullopt;
        }
        detail::check(s);
        return Message(m);
    }

    /// Waits up to `timeout`, then calls f(Borrowed&) with the message in
    /// place (no copy of its bytes); false when none came. An exception
    /// thrown by f comes out of recv_with.
    template <class Rep, class Period, class F>
    bool recv_with(std::chrono::duration<Rep, Period> timeout, F &&f) {
        struct Call {
            F *f;
            std::exception_ptr error;
        } call{&f, nullptr};
        busbar_status s = busbar_recv_with(
            h_.get(), detail::millis(timeout),
            [](void *ctx, busbar_borrowed *m) {
                Call *c = static_cast<Call *>(ctx);
                try {
                    Borrowed b(m);
                    (*c->f)(b);
                } catch (...) {
                    c->error = std::current_exception();
                }
            },
            &call);
        if (call.error) {
            std::rethrow_exception(call.error);
        }
        if (s == BUSBAR_TIMEOUT) {
            return false;
        }
        detail::check(s);
        return true;
    }

    /// The descriptor to poll (POLLIN) in an event loop; then try_recv()
    /// until it gives nothing. -1 once closed.
    int fd() const noexcept { return busbar_receiver_fd(h_.get()); }
    /// Ends a recv() blocked in another thread (it throws BUSBAR_CLOSED) and
    /// every later one. Any thread, any time.
    void close() { detail::check(busbar_receiver_close(h_.get())); }
    uint64_t id() const noexcept { return busbar_receiver_id(h_.get()); }
    /// How long a receive spins before it sleeps (default 50 µs).
    template <class Rep, class Period>
    void set_spin(std::chrono::duration<Rep, Period> spin) {
        detail::check(busbar_receiver_set_spin(
            h_.get(),
            static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(spin).count())));
    }
    busbar_receiver *get() const noexcept { return h_.get(); }

private:
    std::optional<Message> recv_ms(int64_t ms) {
        busbar_message *m = nullptr;
        busbar_status s = busbar_recv(h_.get(), ms, &m);
        if (s == BUSBAR_TIMEOUT) {
            return std::nullopt;
        }
        detail::check(s);
        return Message(m);
    }
    detail::Handle<busbar_receiver, busbar_receiver_free> h_;
};

// ---------------------------------------------------------------------------
// Joining
// ---------------------------------------------------------------------------

/// How to join a bus beyond its name, label and token.
class Options {
public:
    Options(const std::string &bus, const std::string &labels, const std::string &token = "busbar") {
        detail::check(busbar_options_new(bus.c_str(), labels.c_str(), token.c_str(), h_.slot()));
    }
    /// Whether this endpoint may host the bus controller (default true).
    Options &controller_affinity(bool may_host) {
        detail::check(busbar_options_set_controller_affinity(h_.get(), may_host ? 1 : 0));
        return *this;
    }
    /// BUSBAR_BACKPRESSURE_BLOCK (default), _DROP_NEWEST or _FAIL_FAST.
    Options &backpressure(int policy) {
        detail::check(busbar_options_set_backpressure(h_.get(), policy));
        return *this;
    }
    /// BUSBAR_ACCESS_SAME_USER (default), _ANYONE, or _ALLOW with uids and gids.
    Options &access(int kind, const std::vector<uint32_t> &uids = {}, const std::vector<uint32_t> &gids = {}) {
        detail::check(busbar_options_set_access(h_.get(), kind, uids.data(), uids.size(), gids.data(),
                                                gids.size()));
        return *this;
    }
    /// Socket files in `dir` (empty: $XDG_RUNTIME_DIR/busbar/<bus>/) instead
    /// of the abstract namespace.
    Options &filesystem_namespace(const std::string &dir = "") {
        detail::check(busbar_options_set_namespace(h_.get(), BUSBAR_NAMESPACE_FILESYSTEM,
                                                   dir.empty() ? nullptr : dir.c_str()));
        return *this;
    }
    busbar_limits limits() const {
        busbar_limits l;
        detail::check(busbar_options_get_limits(h_.get(), &l));
        return l;
    }
    Options &limits(const busbar_limits &l) {
        detail::check(busbar_options_set_limits(h_.get(), &l));
        return *this;
    }
    const busbar_options *get() const noexcept { return h_.get(); }

private:
    detail::Handle<busbar_options, busbar_options_free> h_;
};

/// A joined endpoint: its sender and its receiver.
struct Endpoint {
    Sender sender;
    Receiver receiver;
};

/// Joins bus `bus` with the comma-separated label `labels`, waiting up to
/// `timeout` for the bus controller.
template <class Rep = int64_t, class Period = std::milli>
Endpoint join(const std::string &bus, const std::string &labels, const std::string &token = "busbar",
              std::chrono::duration<Rep, Period> timeout = std::chrono::seconds(5)) {
    busbar_sender *s = nullptr;
    busbar_receiver *r = nullptr;
    detail::check(busbar_join(bus.c_str(), labels.c_str(), token.c_str(), detail::millis(timeout), &s, &r));
    return Endpoint{Sender(s), Receiver(r)};
}

/// Joins with `options`.
template <class Rep = int64_t, class Period = std::milli>
Endpoint join(const Options &options, std::chrono::duration<Rep, Period> timeout = std::chrono::seconds(5)) {
    busbar_sender *s = nullptr;
    busbar_receiver *r = nullptr;
    detail::check(busbar_join_with(options.get(), detail::millis(timeout), &s, &r));
    return Endpoint{Sender(s), Receiver(r)};
}

} // namespace busbar

#endif // BUSBAR_HPP
