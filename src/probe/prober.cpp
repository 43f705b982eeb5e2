// One health probe on the libuv loop: see vigil/probe/prober.hpp.
#include "vigil/probe/prober.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <string_view>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <http_parser.h>
#include <uv.h>

#include "vigil/proc/exit.hpp"

namespace vigil::probe {

namespace {

// libuv frees nothing: a handle's memory must live until its close callback.
template <class H> void close_and_delete(H *h) {
    uv_close(reinterpret_cast<uv_handle_t *>(h),
             [](uv_handle_t *p) { delete reinterpret_cast<H *>(p); });
}

// A spawn whose check was abandoned: the process must not run on unwatched. Its pid stays
// claimed in the registry until vigild reaps it.
void discard(proc::SpawnCompletion c, ExecRegistry &registry) {
    if (!c.result.ok) return;
    const proc::Spawned &s = *c.result.ok;
    if (!c.reaped_wstatus) {
        if (c.pidfd >= 0) proc::signal_pidfd(c.pidfd, SIGKILL);
        // Unreaped, so its group id is still its own.
        kill(-s.pid, SIGKILL);
        registry.add(s.pid, nullptr);
    }
    for (int fd : {s.stdout_fd, s.stderr_fd, c.pidfd})
        if (fd >= 0) ::close(fd);
}

bool iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

std::string host_port(const std::string &host, int port) {
    // An IPv6 literal needs brackets in "host:port" (RFC 3986), in messages and in Host:.
    if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
    return host + ":" + std::to_string(port);
}

std::string http_path(const std::string &path) {
    return (path.empty() || path[0] != '/') ? "/" + path : path;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// ExecRegistry

bool ExecRegistry::on_reaped(int pid, int wstatus) {
    auto it = pids_.find(pid);
    if (it == pids_.end()) return false;
    auto done = std::move(it->second);
    pids_.erase(it);
    if (done) done(wstatus);
    return true;
}

void ExecRegistry::add(int pid, std::function<void(int)> done) {
    pids_[pid] = std::move(done);
}

void ExecRegistry::forget(int pid) noexcept {
    auto it = pids_.find(pid);
    if (it != pids_.end()) it->second = nullptr;
}

// ---------------------------------------------------------------------------------------------
// NetCheck: one tcp connect or http GET in flight.
//
// Ownership: the Prober points at it through net_, and it points back through `owner`. When the
// check ends or is abandoned, `owner` becomes null and the NetCheck frees itself once libuv is
// done with it: in the tcp handle's close callback, or in the getaddrinfo callback when it
// never got as far as a socket (libuv always calls that callback, with UV_EAI_CANCELED if
// uv_cancel() won).
struct Prober::NetCheck {
    Prober *owner;
    bool http;
    std::string request;
    bool resolving = false;
    bool tcp_open = false;
    uv_getaddrinfo_t gai{};
    uv_tcp_t tcp{};
    uv_connect_t connect_req{};
    uv_write_t write_req{};
    http_parser parser{};
    http_parser_settings settings{};
    char buf[4096];
    int status = 0;
    bool headers_done = false;

    NetCheck(Prober *p, bool is_http) : owner(p), http(is_http) {}

    // Detaches from the owner and releases libuv resources; `this` may be deleted on return.
    void detach() {
        if (owner) {
            owner->net_ = nullptr;
            owner = nullptr;
        }
        if (tcp_open) {
            uv_close(reinterpret_cast<uv_handle_t *>(&tcp),
                     [](uv_handle_t *h) { delete static_cast<NetCheck *>(h->data); });
        } else if (resolving) {
            uv_cancel(reinterpret_cast<uv_req_t *>(&gai)); // callback frees us
        } else {
            delete this;
        }
    }

    // Reports to the owner (if still attached) and cleans up. `this` is gone on return.
    void finish(CheckResult r) {
        Prober *p = owner;
        detach();
        if (p) p->complete(std::move(r));
    }

    void begin(const std::string &host, int port) {
        sockaddr_storage ss{};
        auto *sa = reinterpret_cast<sockaddr *>(&ss);
        std::string literal = host == "localhost" ? std::string("127.0.0.1") : host;
        if (uv_ip4_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in *>(&ss)) == 0 ||
            uv_ip6_addr(literal.c_str(), port, reinterpret_cast<sockaddr_in6 *>(&ss)) == 0) {
            connect_to(sa);
            return;
        }
        // A host name: resolve on libuv's thread pool so the loop never blocks on DNS.
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        gai.data = this;
        std::string service = std::to_string(port);
        int rc =
            uv_getaddrinfo(owner->loop_, &gai, on_resolved, host.c_str(), service.c_str(), &hints);
        if (rc < 0) {
            finish({false, std::string("resolve ") + host + ": " + uv_strerror(rc)});
            return;
        }
        resolving = true;
    }

    static void on_resolved(uv_getaddrinfo_t *req, int status, addrinfo *res) {
        auto *self = static_cast<NetCheck *>(req->data);
        self->resolving = false;
        if (!self->owner) {
            uv_freeaddrinfo(res);
            delete self;
            return;
        }
        if (status < 0 || !res) {
            uv_freeaddrinfo(res);
            self->finish({false, std::string("resolve: ") + uv_strerror(status)});
            return;
        }
        sockaddr_storage ss{};
        std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
        uv_freeaddrinfo(res);
        self->connect_to(reinterpret_cast<sockaddr *>(&ss));
    }

    void connect_to(const sockaddr *sa) {
        int rc = uv_tcp_init(owner->loop_, &tcp);
        if (rc < 0) {
            finish({false, std::string("socket: ") + uv_strerror(rc)});
            return;
        }
        tcp.data = this;
        tcp_open = true;
        connect_req.data = this;
        rc = uv_tcp_connect(&connect_req, &tcp, sa, on_connected);
        if (rc < 0) finish({false, std::string("connect: ") + uv_strerror(rc)});
    }

    static void on_connected(uv_connect_t *req, int status) {
        auto *self = static_cast<NetCheck *>(req->data);
        if (!self->owner) return; // abandoned: status is UV_ECANCELED, the close callback frees us
        if (status < 0) {
            self->finish({false, std::string("connect: ") + uv_strerror(status)});
            return;
        }
        if (!self->http) {
            self->finish({true, "connected"});
            return;
        }
        self->start_http();
    }

    void start_http() {
        http_parser_init(&parser, HTTP_RESPONSE);
        parser.data = this;
        http_parser_settings_init(&settings);
        settings.on_headers_complete = [](http_parser *p) -> int {
            auto *self = static_cast<NetCheck *>(p->data);
            self->status = static_cast<int>(p->status_code);
            self->headers_done = true;
            return 1; // skip the body: the status line is the verdict
        };
        uv_buf_t b = uv_buf_init(request.data(), static_cast<unsigned>(request.size()));
        write_req.data = this;
        int rc = uv_write(&write_req, reinterpret_cast<uv_stream_t *>(&tcp), &b, 1,
                          [](uv_write_t *w, int st) {
                              auto *self = static_cast<NetCheck *>(w->data);
                              if (self->owner && st < 0)
                                  self->finish({false, std::string("write: ") + uv_strerror(st)});
                          });
        if (rc < 0) {
            finish({false, std::string("write: ") + uv_strerror(rc)});
            return;
        }
        rc = uv_read_start(
            reinterpret_cast<uv_stream_t *>(&tcp),
            [](uv_handle_t *h, size_t, uv_buf_t *out) {
                auto *self = static_cast<NetCheck *>(h->data);
                *out = uv_buf_init(self->buf, sizeof self->buf);
            },
            [](uv_stream_t *s, ssize_t n, const uv_buf_t *) {
                static_cast<NetCheck *>(s->data)->on_read(n);
            });
        if (rc < 0) finish({false, std::string("read: ") + uv_strerror(rc)});
    }

    void on_read(ssize_t n) {
        if (!owner || n == 0) return;
        if (n < 0 && n != UV_EOF) {
            finish({false, std::string("read: ") + uv_strerror(static_cast<int>(n))});
            return;
        }
        // At EOF, a zero-length execute tells the parser the stream ended.
        std::size_t len = n < 0 ? 0 : static_cast<std::size_t>(n);
        http_parser_execute(&parser, &settings, buf, len);
        if (headers_done) {
            bool ok = status >= 200 && status <= 399;
            finish({ok, "status " + std::to_string(status)});
            return;
        }
        auto err = static_cast<http_errno>(parser.http_errno);
        if (err != HPE_OK) {
            finish({false, std::string("malformed response: ") + http_errno_description(err)});
            return;
        }
        if (n < 0) finish({false, "connection closed before a response"});
    }
};

// ---------------------------------------------------------------------------------------------
// Prober

Prober::Prober(uv_loop_s *loop, ExecRegistry &registry, std::string role, unit::ProbeSpec spec,
               Callbacks callbacks, ExecSpawn exec)
    : loop_(loop), registry_(registry), role_(std::move(role)), spec_(std::move(spec)),
      cb_(std::move(callbacks)), exec_(std::move(exec)),
      thresholds_(spec_.failure_threshold, spec_.success_threshold) {}

Prober::~Prober() {
    *alive_ = false;
    stop();
    if (timer_) close_and_delete(reinterpret_cast<uv_timer_t *>(timer_));
}

std::string Prober::target() const {
    switch (spec_.kind) {
    case unit::ProbeKind::Exec: {
        std::string s = "exec";
        for (const auto &a : spec_.command)
            s += " " + a;
        return s;
    }
    case unit::ProbeKind::Tcp:
        return "tcp " + host_port(spec_.host, spec_.port);
    case unit::ProbeKind::Http:
        return "http " + host_port(spec_.host, spec_.port) + http_path(spec_.path);
    }
    return "?";
}

std::string Prober::failure_message(const std::string &role, const std::string &target,
                                    const std::string &last_detail, unsigned times) {
    std::string m = role + " " + target + ": " + last_detail;
    if (times == 1)
        m += ", once";
    else
        m += ", " + std::to_string(times) + " times";
    return m;
}

void Prober::arm(std::uint64_t ms) {
    if (!in_check_) next_due_ = uv_now(loop_) + ms;
    uv_timer_start(
        reinterpret_cast<uv_timer_t *>(timer_),
        [](uv_timer_t *t) { static_cast<Prober *>(t->data)->on_timer(); }, ms, 0);
}

void Prober::start() {
    if (running_) return;
    if (!timer_) {
        auto *t = new uv_timer_t;
        uv_timer_init(loop_, t);
        t->data = this;
        timer_ = reinterpret_cast<uv_timer_s *>(t);
    }
    running_ = true;
    thresholds_.reset();
    // Even with no initial delay the first check starts from the timer, so callbacks never run
    // inside start().
    arm(static_cast<std::uint64_t>(std::max<std::int64_t>(0, spec_.initial_delay.count())));
}

ProberState Prober::state() const noexcept {
    ProberState s;
    s.failures = thresholds_.consecutive_failures();
    s.successes = thresholds_.consecutive_successes();
    s.verdict = thresholds_.verdict();
    s.run = tally_.run();
    s.run_ok = tally_.run_ok();
    s.tally_successes = tally_.successes();
    s.tally_failures = tally_.failures();
    s.checks_total = checks_total_;
    s.failures_total = failures_total_;
    s.next_due_ms = in_check_ ? uv_now(loop_) : next_due_;
    return s;
}

void Prober::resume(const ProberState &s) {
    if (running_) return;
    start();
    thresholds_.restore(s.failures, s.successes, s.verdict);
    tally_.restore(s.run, s.run_ok, s.tally_successes, s.tally_failures);
    checks_total_ = s.checks_total;
    failures_total_ = s.failures_total;
    const std::uint64_t now = uv_now(loop_);
    arm(s.next_due_ms > now ? s.next_due_ms - now : 0);
}

void Prober::stop() {
    running_ = false;
    if (timer_) uv_timer_stop(reinterpret_cast<uv_timer_t *>(timer_));
    abandon_check();
    auto waiters = std::move(waiters_);
    waiters_.clear();
    for (auto &w : waiters)
        if (w) w({false, "cancelled: the " + role_ + " probe stopped"}, 0);
}

bool Prober::run_now(RunDone done) {
    if (!running_ || waiters_.size() >= max_run_waiters) return false;
    waiters_.push_back(std::move(done));
    // From the loop, so no callback runs inside this call; a check in flight is joined.
    if (!in_check_) arm(0);
    return true;
}

std::optional<std::uint64_t> Prober::next_ms() const noexcept {
    if (!running_) return std::nullopt;
    if (in_check_) return 0;
    const std::uint64_t now = uv_now(loop_);
    return next_due_ > now ? next_due_ - now : 0;
}

void Prober::on_timer() {
    if (!running_) return;
    if (in_check_) {
        abandon_check();
        complete({false, "timed out after " + std::to_string(spec_.timeout.count()) + "ms"});
        return;
    }
    begin_check();
}

void Prober::begin_check() {
    in_check_ = true;
    check_started_ = uv_now(loop_);
    arm(static_cast<std::uint64_t>(std::max<std::int64_t>(1, spec_.timeout.count())));
    switch (spec_.kind) {
    case unit::ProbeKind::Exec:
        begin_exec();
        return;
    case unit::ProbeKind::Tcp:
    case unit::ProbeKind::Http: {
        bool is_http = spec_.kind == unit::ProbeKind::Http;
        auto *nc = new NetCheck(this, is_http);
        net_ = nc;
        if (is_http) {
            std::string req = "GET " + http_path(spec_.path) + " HTTP/1.1\r\n";
            bool has_host = false;
            std::string extra;
            for (const auto &[k, v] : spec_.headers) {
                // A CR or LF would let a header value inject a second request.
                if (k.find_first_of("\r\n:") != std::string::npos ||
                    v.find_first_of("\r\n") != std::string::npos) {
                    nc->finish({false, "invalid header " + k});
                    return;
                }
                has_host = has_host || iequals(k, "host");
                extra += k + ": " + v + "\r\n";
            }
            if (!has_host) req += "Host: " + host_port(spec_.host, spec_.port) + "\r\n";
            req += "User-Agent: vigil-probe/" VIGIL_VERSION "\r\nAccept: */*\r\n"
                   "Connection: close\r\n" +
                   extra + "\r\n";
            nc->request = std::move(req);
        }
        nc->begin(spec_.host, spec_.port);
        return;
    }
    }
}

void Prober::begin_exec() {
    if (spec_.command.empty()) {
        complete({false, "exec: empty command"});
        return;
    }
    if (!exec_.spawn) {
        complete({false, "exec: no spawn function"});
        return;
    }
    proc::SpawnSpec spec = exec_.base;
    spec.argv = spec_.command;
    // One pipe for stdout and stderr, so a failure quotes what the command said in order. The
    // command leads its own session (new_session), so its group can be killed as a whole.
    proc::SpawnExtras extras;
    extras.merge_stderr = true;
    exec_spawning_ = true;
    std::uint64_t check = ++exec_check_;
    ExecRegistry *registry = &registry_;
    // The completion may come at once (from inside this call) or later from the loop; by
    // then this check may have been abandoned or the Prober destroyed.
    exec_.spawn(std::move(spec), std::move(extras),
                [this, alive = alive_, check, registry](proc::SpawnCompletion c) {
                    if (!*alive || !exec_spawning_ || check != exec_check_) {
                        discard(std::move(c), *registry);
                        return;
                    }
                    exec_spawning_ = false;
                    exec_spawned(std::move(c));
                });
}

void Prober::exec_spawned(proc::SpawnCompletion c) {
    if (!c.result.ok) {
        complete({false, c.result.error ? c.result.error->message() : std::string("spawn failed")});
        return;
    }
    const proc::Spawned &s = *c.result.ok;
    if (s.stderr_fd >= 0) ::close(s.stderr_fd); // merged: none expected
    exec_pid_ = s.pid;
    exec_pidfd_ = c.pidfd;
    exec_out_fd_ = s.stdout_fd;
    exec_output_.clear();
    if (exec_out_fd_ >= 0) {
        // Drained as output comes: a chatty check must never block on a full pipe.
        auto *p = new uv_poll_t;
        if (uv_poll_init(loop_, p, exec_out_fd_) == 0) {
            p->data = this;
            uv_poll_start(p, UV_READABLE, [](uv_poll_t *h, int status, int) {
                auto *self = static_cast<Prober *>(h->data);
                if (status < 0 || !self->read_exec_output()) self->close_exec_output();
            });
            exec_poll_ = reinterpret_cast<uv_poll_s *>(p);
        } else {
            delete p; // read once at the exit instead
        }
    }
    if (c.reaped_wstatus) {
        // It ended before its completion came (vigild reaped it meanwhile).
        exec_exited(*c.reaped_wstatus);
        return;
    }
    int pid = exec_pid_;
    registry_.add(pid, [this, alive = alive_, pid](int wstatus) {
        if (!*alive || exec_pid_ != pid) return;
        exec_exited(wstatus);
    });
}

void Prober::exec_exited(int wstatus) {
    int pid = std::exchange(exec_pid_, -1);
    // Leftovers of the check (it may have started background jobs) go with it. The group
    // still exists while any member lives, so its id cannot have been reused.
    kill(-pid, SIGKILL);
    if (exec_pidfd_ >= 0) ::close(std::exchange(exec_pidfd_, -1));
    // Whatever the command wrote before exiting is in the pipe by now.
    if (exec_out_fd_ >= 0) read_exec_output();
    close_exec_output();
    bool ok = WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
    std::string detail = proc::describe_wait_status(wstatus);
    std::string said = summarize_output(exec_output_);
    if (!said.empty()) detail += ": " + said;
    complete({ok, detail});
}

bool Prober::read_exec_output() {
    char buf[4096];
    for (;;) {
        ssize_t n = ::read(exec_out_fd_, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno == EAGAIN;
        if (n == 0) return false; // EOF: every writer is gone
        // Keep the beginning only; the rest is read and dropped.
        std::size_t room = exec_output_limit - std::min(exec_output_limit, exec_output_.size());
        exec_output_.append(buf, std::min(room, static_cast<std::size_t>(n)));
    }
}

void Prober::close_exec_output() {
    if (exec_poll_) {
        close_and_delete(reinterpret_cast<uv_poll_t *>(exec_poll_));
        exec_poll_ = nullptr;
    }
    if (exec_out_fd_ >= 0) {
        ::close(exec_out_fd_); // after uv_close: the poll is stopped by then
        exec_out_fd_ = -1;
    }
}

std::string Prober::summarize_output(const std::string &raw) {
    // One line for messages: control characters become spaces, runs of them collapse.
    std::string s;
    for (char c : raw) {
        bool space = static_cast<unsigned char>(c) < 0x20 || c == ' ' || c == 0x7f;
        if (space) {
            if (!s.empty() && s.back() != ' ') s += ' ';
        } else {
            s += c;
        }
    }
    while (!s.empty() && s.back() == ' ')
        s.pop_back();
    constexpr std::size_t max = 200;
    if (s.size() > max) s = s.substr(0, max) + "...";
    return s;
}

void Prober::abandon_check() {
    // A spawn in flight: its completion will find the check gone, and discard it.
    exec_spawning_ = false;
    ++exec_check_;
    if (exec_pid_ > 0) {
        // Through the pidfd for the command itself; the group for what it started. The leader
        // is not reaped yet (its pid is still claimed in the registry), so the group id is
        // still ours to signal.
        if (exec_pidfd_ >= 0) proc::signal_pidfd(exec_pidfd_, SIGKILL);
        kill(-exec_pid_, SIGKILL);
        registry_.forget(exec_pid_);
        exec_pid_ = -1;
    }
    if (exec_pidfd_ >= 0) ::close(std::exchange(exec_pidfd_, -1));
    close_exec_output();
    if (net_) net_->detach();
    in_check_ = false;
}

void Prober::complete(CheckResult r) {
    in_check_ = false;
    ++checks_total_;
    if (!r.ok) ++failures_total_;
    tally_.record(r.ok);
    auto alive = alive_;
    auto change = thresholds_.record(r.ok);
    if (!waiters_.empty()) {
        const std::uint64_t took = uv_now(loop_) - check_started_;
        auto waiters = std::move(waiters_);
        waiters_.clear();
        for (auto &w : waiters) {
            if (w) w(r, took);
            if (!*alive || !running_) return;
        }
    }
    if (cb_.checked) {
        auto cb = cb_.checked; // copies: a callback may destroy this Prober
        cb(r);
        if (!*alive || !running_) return;
    }
    if (change == Verdict::Failure && cb_.failed) {
        auto cb = cb_.failed;
        cb(failure_message(role_, target(), r.detail, thresholds_.consecutive_failures()));
        if (!*alive || !running_) return;
    }
    if (change == Verdict::Success && cb_.succeeded) {
        auto cb = cb_.succeeded;
        cb();
        if (!*alive || !running_) return;
    }
    std::uint64_t now = uv_now(loop_);
    std::uint64_t next = check_started_ + static_cast<std::uint64_t>(
                                              std::max<std::int64_t>(1, spec_.period.count()));
    arm(next > now ? next - now : 0);
}

} // namespace vigil::probe
