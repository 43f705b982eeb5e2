// The control socket server: see include/vigil/ctl/server.hpp for the rules it enforces.
#include "vigil/ctl/server.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59 // Linux 4.13; older libc headers lack the name
#endif

namespace vigil::ctl {

namespace {

// One read. libuv reads up to 32 times per wake-up and connection, so this also bounds what
// one client can make the loop parse in one go (512 KiB).
constexpr std::size_t read_chunk = 16 * 1024;
// Connections the kernel queues while vigild has not accepted them yet. A Unix socket's
// connect() fails with EAGAIN once the queue is full: a burst of clients while vigild is not
// scheduled (a hostile flood, or many vigilctl at once on a loaded machine) would lock root out
// until vigild runs again. So the backlog is as large as Linux allows by default (SOMAXCONN,
// 4096); the kernel clamps it to net.core.somaxconn itself. Queued connections cost kernel
// memory, not vigild's: accepted, they meet the caps below like any other.
constexpr int listen_backlog = 4096;
// A write buffer kept after a large answer is given back above this size.
constexpr std::size_t keep_buffer = 256 * 1024;
// At most this much (or one longer line) is handed to one uv_write(): what waits behind it
// stays in the session's queue, where it can still be dropped. So a client dropped for
// reading too slowly gets the error line that says why after at most this much more.
constexpr std::size_t write_chunk = 64 * 1024;
// How long a client dropped for not reading has to take the rest of the write in flight and
// the error line, before the connection is closed without them.
constexpr std::uint64_t abandon_grace_ms = 2000;

std::string errno_text(int err) {
    return std::strerror(err);
}

std::uint64_t ms_of(Duration d) {
    return d.count() > 0 ? static_cast<std::uint64_t>(d.count()) : 0;
}

std::string octal_mode(mode_t m) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
    return buf;
}

// Checks an existing socket folder: whoever controls it controls the socket inside. It must
// be a folder (lstat: a symbolic link could point anywhere), owned by vigild's euid and not
// writable by its group or by others. Its group may be anything: it grants at most read and
// search, as in the --socket-group setup (0750, owned by the group).
int check_socket_dir(const std::string &dir, std::string &what) {
    struct stat st {};
    if (lstat(dir.c_str(), &st) != 0) {
        int e = errno;
        what = dir + ": " + errno_text(e);
        return -e;
    }
    if (S_ISLNK(st.st_mode)) {
        what = "its folder " + dir +
               " is a symbolic link; remove it (vigild makes the folder itself) or choose "
               "another --socket";
        return -EPERM;
    }
    if (!S_ISDIR(st.st_mode)) {
        what = dir + " is not a directory";
        return -ENOTDIR;
    }
    if (st.st_uid != geteuid()) {
        what = "its folder " + dir + " is owned by uid " + std::to_string(st.st_uid) +
               ", not by vigild's user (uid " + std::to_string(geteuid()) +
               "): whoever made it could replace the socket; remove it (vigild makes it "
               "itself) or choose another --socket";
        return -EPERM;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        what = "its folder " + dir + " has mode " + octal_mode(st.st_mode) + ", writable by " +
               ((st.st_mode & S_IWOTH) ? "others" : "its group") +
               ", who could replace the socket; chmod go-w " + dir +
               " (0700, or 0750 with --socket-group)";
        return -EPERM;
    }
    return 0;
}

// Makes `dir` (and missing parents) for the socket, or checks the one that exists. Only the
// last level gets the tight mode; parents that had to be made are 0755 so that they do not
// hide an existing setup.
int prepare_socket_dir(const std::string &dir, std::optional<gid_t> group, std::string &what) {
    if (mkdir(dir.c_str(), 0700) != 0) {
        if (errno == EEXIST) return check_socket_dir(dir, what);
        if (errno != ENOENT) {
            int e = errno;
            what = "cannot create " + dir + ": " + errno_text(e);
            return -e;
        }
        auto slash = dir.rfind('/');
        if (slash == std::string::npos || slash == 0) {
            what = "cannot create " + dir + ": " + errno_text(ENOENT);
            return -ENOENT;
        }
        std::string parent = dir.substr(0, slash);
        if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
            std::string ignored;
            if (int r = prepare_socket_dir(parent, std::nullopt, what); r != 0) return r;
        }
        chmod(parent.c_str(), 0755);
        return prepare_socket_dir(dir, group, what);
    }
    // New and ours: set the mode exactly (mkdir applied the umask). Group members must be
    // able to reach the socket inside: 0750 owned by the group.
    if (group) {
        if (chown(dir.c_str(), static_cast<uid_t>(-1), *group) != 0 ||
            chmod(dir.c_str(), 0750) != 0) {
            int e = errno;
            what =
                "cannot give " + dir + " to group " + std::to_string(*group) + ": " + errno_text(e);
            return -e;
        }
    } else if (chmod(dir.c_str(), 0700) != 0) {
        int e = errno;
        what = "chmod 0700 " + dir + ": " + errno_text(e);
        return -e;
    }
    return 0;
}

// Is the peer a member of `g` through its supplementary groups? SO_PEERGROUPS gives the
// groups the peer had when it connected, without a racy lookup by uid.
bool peer_in_group(int fd, gid_t g) {
    std::vector<gid_t> groups(64);
    for (int attempt = 0; attempt < 2; ++attempt) {
        auto len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
            groups.resize(len / sizeof(gid_t));
            return std::find(groups.begin(), groups.end(), g) != groups.end();
        }
        if (errno != ERANGE) return false;
        groups.resize(len / sizeof(gid_t) + 1);
    }
    return false;
}

} // namespace

// ---------------------------------------------------------------------------------- Session

// One client connection: a uv_pipe_t and one deadline timer. The session keeps itself alive
// (self_) while libuv holds its handles, so neither the daemon dropping its ResponderPtr nor
// the Server going away can free memory libuv still points at.
//
// Output: what uv_try_write() does not take at once is queued in out_, a list of blocks of
// whole lines, each at most write_chunk bytes (or one longer line). One uv_write() is in
// flight at a time, of one block (inflight_, taken from out_ without a copy); out_ gathers
// what comes meanwhile. Every line ends with "\n" (a line cut by uv_try_write() queues its
// rest, which does too), so out_ always starts at a line: dropping it never cuts one.
// counted_ is this session's share of the server's queued_ (the blocks of out_ plus the whole
// inflight_ buffer).
//
// A client whose unsent output passes a cap is abandoned (abandon()): the unsent queue is
// dropped, an `internal` error line saying why is queued behind the write in flight, and the
// connection closes once it is written, or after abandon_grace_ms.
class Session final : public Responder, public std::enable_shared_from_this<Session> {
public:
    Session(Server *server, std::uint64_t id) : server_(server), id_(id) {}

    bool reply(const Json &id, const Json &result) override {
        return answer([&] { return make_reply(id, result); }, true);
    }
    bool reply_encoded(const Json &id, std::string_view result_json) override {
        return answer([&] { return make_reply_line(id, result_json); }, true);
    }
    bool error(const Json &id, ErrorCode code, std::string_view message,
               const Json &extra) override {
        return answer([&] { return make_error(id, code, message, extra); }, true);
    }
    bool stream_encoded(const Json &id, std::string_view item_json) override {
        return answer([&] { return make_stream_line(id, item_json); }, false);
    }
    bool end(const Json &id) override {
        return answer([&] { return make_end(id); }, true);
    }
    bool on_close(std::function<void()> cb) override {
        if (callbacks_fired_) return false;
        try {
            on_close_.push_back(std::move(cb));
        } catch (...) {
            return false;
        }
        return true;
    }
    bool open() const override { return state_ == State::Open; }
    int fd() const override {
        uv_os_fd_t fd = -1;
        if (state_ != State::Open ||
            uv_fileno(reinterpret_cast<const uv_handle_t *>(&pipe_), &fd) != 0)
            return -1;
        return fd;
    }
    std::string who() const override {
        return "uid " + std::to_string(uid_) + " pid " + std::to_string(pid_);
    }
    uid_t uid() const override { return uid_; }
    bool read_only() const override { return read_only_; }
    void close() override {
        if (state_ == State::Open) drain_then_close();
    }

private:
    friend class Server;
    enum class State : std::uint8_t { Open, Draining, Closed };

    uv_stream_t *stream_handle() { return reinterpret_cast<uv_stream_t *>(&pipe_); }
    std::uint64_t now() const { return uv_now(pipe_.loop); }
    bool privileged() const { return uid_ == 0 || uid_ == geteuid(); }
    bool idle() const { return state_ == State::Open && outstanding_ == 0; }

    // Builds the line and queues it; never throws (a failure closes the session).
    template <class Build> bool answer(Build build, bool finishes) noexcept {
        if (state_ != State::Open) return false;
        try {
            return send(build(), finishes);
        } catch (...) {
            fail("cannot queue an answer (out of memory?)");
            return false;
        }
    }

    // Queues one line; `finishes`: it ends a request.
    bool send(std::string_view line, bool finishes) {
        if (state_ == State::Closed) return false;
        if (finishes && outstanding_ > 0 && --outstanding_ == 0) {
            idle_since_ = now();
            rearm();
        }
        // The cap is on output the client has not taken: a single large answer to a client
        // that keeps up (a status of 10k units is megabytes) is always queued.
        if (counted_ > 0 && counted_ + line.size() > server_->options_.max_output) {
            std::size_t unread = counted_ + line.size();
            server_->log("control: disconnecting " + who() + ": " + std::to_string(unread) +
                         " bytes of answers unread (the client stopped reading, or reads too "
                         "slowly)");
            abandon(unread, "more than the " + std::to_string(server_->options_.max_output) +
                                " a client may leave");
            return false;
        }
        if (!writing_ && line.size() <= static_cast<std::size_t>(INT32_MAX)) {
            uv_buf_t b =
                uv_buf_init(const_cast<char *>(line.data()), static_cast<unsigned>(line.size()));
            int n = uv_try_write(stream_handle(), &b, 1);
            if (n == static_cast<int>(line.size())) {
                maybe_finish(); // may close a half-closed client: the line went out all the same
                return true;
            }
            if (n < 0 && n != UV_EAGAIN) {
                close_now(); // EPIPE, ECONNRESET: the client is gone
                return false;
            }
            if (n > 0) line.remove_prefix(static_cast<std::size_t>(n));
        }
        if (out_.empty() ||
            (!out_.back().empty() && out_.back().size() + line.size() > write_chunk))
            out_.emplace_back();
        out_.back().append(line);
        counted_ += line.size();
        server_->queued_ += line.size();
        if (!writing_) flush();
        if (state_ != State::Closed) server_->enforce_total_output();
        // Abandoned by the total cap (enforce_total_output): the line was dropped with the rest.
        return state_ == State::Open;
    }

    // Hands the next block of out_ to one uv_write().
    void flush() {
        if (out_.empty() || writing_ || state_ == State::Closed) return;
        inflight_.swap(out_.front());
        out_.pop_front();
        write_req_.data = this;
        uv_buf_t b = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
        if (int r = uv_write(&write_req_, stream_handle(), &b, 1, &Session::on_written); r != 0) {
            close_now();
            return;
        }
        writing_ = true;
    }

    static void on_written(uv_write_t *req, int status) {
        auto *s = static_cast<Session *>(req->data);
        s->writing_ = false;
        if (s->state_ == State::Closed) { // cancelled by the close: nothing is counted any more
            std::string().swap(s->inflight_);
            return;
        }
        s->uncount(s->inflight_.size());
        if (s->inflight_.capacity() > keep_buffer)
            std::string().swap(s->inflight_); // give memory back after a large answer
        else
            s->inflight_.clear();
        if (status < 0) {
            s->close_now();
            return;
        }
        try {
            if (!s->out_.empty())
                s->flush();
            else
                s->maybe_finish();
        } catch (...) {
            s->fail("write failed");
        }
    }

    void uncount(std::size_t n) {
        counted_ -= n;
        if (server_) server_->queued_ -= n;
    }

    // Closes the connection once nothing is left to do: draining and flushed, or the client
    // half-closed and every request it sent has been answered.
    void maybe_finish() {
        if (state_ == State::Closed || counted_ > 0) return;
        if (state_ == State::Draining || (read_eof_ && outstanding_ == 0)) close_now();
    }

    void drain_then_close() {
        if (state_ != State::Open) return;
        state_ = State::Draining;
        drain_until_ = now() + ms_of(server_ ? server_->options_.idle_timeout : Duration{0});
        stop_reading();
        rearm();
        maybe_finish();
    }

    // Gives up on a client that does not take its output (see the class comment): `unread`
    // bytes waited for it, `limit` says which cap that passed. The error line carries
    // {"unread": N}, by which vigilctl knows to suggest reading faster or asking for less.
    void abandon(std::size_t unread, const std::string &limit) noexcept {
        if (state_ != State::Open) {
            close_now(); // already draining (its last words are not being read either)
            return;
        }
        uncount(counted_ - inflight_.size());
        out_.clear();
        std::size_t size = 0;
        try {
            out_.push_back(make_error(nullptr, ErrorCode::Internal,
                                      "vigild closed this connection: " + std::to_string(unread) +
                                          " bytes of answers waited unread, " + limit,
                                      Json{{"unread", unread}}));
            size = out_.back().size();
        } catch (...) {
            close_now();
            return;
        }
        counted_ += size;
        if (server_) server_->queued_ += size;
        state_ = State::Draining;
        std::uint64_t grace = server_ ? ms_of(server_->options_.idle_timeout) : 0;
        drain_until_ = now() + std::min(grace, abandon_grace_ms);
        stop_reading();
        try {
            if (!writing_) flush(); // normally a write is in flight: the line goes after it
        } catch (...) {
            close_now();
            return;
        }
        rearm();
    }

    // Closes at once, without a word more; what was queued is dropped.
    void close_now() noexcept {
        if (state_ == State::Closed) return;
        state_ = State::Closed;
        uncount(counted_);
        out_.clear();
        std::string().swap(inbuf_);
        if (handles_open_ == 0) return; // never got its handles
        // Cancels the write in flight (its callback runs first, with UV_ECANCELED).
        uv_close(reinterpret_cast<uv_handle_t *>(&pipe_), &Session::on_handle_closed);
        uv_close(reinterpret_cast<uv_handle_t *>(&timer_), &Session::on_handle_closed);
    }

    // Logs why, then closes: for failures inside callbacks, where nothing may be thrown.
    void fail(const char *why) noexcept {
        if (server_) {
            try {
                server_->log("control: disconnecting " + who() + ": " + why);
            } catch (...) {
            }
        }
        close_now();
    }

    // Closes now with a last error line, written only if the socket takes it at once: for
    // evictions, where the seat is needed now.
    void evict(const std::string &message) noexcept {
        if (state_ == State::Closed) return;
        if (!writing_) {
            try {
                std::string line = make_error(nullptr, ErrorCode::Internal, message);
                uv_buf_t b = uv_buf_init(line.data(), static_cast<unsigned>(line.size()));
                uv_try_write(stream_handle(), &b, 1);
            } catch (...) {
            }
        }
        close_now();
    }

    static void on_handle_closed(uv_handle_t *h) {
        auto *s = static_cast<Session *>(h->data);
        if (--s->handles_open_ > 0) return;
        std::shared_ptr<Session> keep = std::move(s->self_); // may be the last reference
        if (s->server_) s->server_->session_closed(s);
    }

    // The deadline that applies now (see server.hpp): set from timestamps, so that bytes
    // arriving never move it.
    void rearm() noexcept {
        if (state_ == State::Closed || handles_open_ == 0 || !server_) return;
        const ServerOptions &o = server_->options_;
        std::uint64_t at = UINT64_MAX;
        if (state_ == State::Draining) {
            at = drain_until_; // a client that never reads its last words
        } else {
            if (outstanding_ == 0) at = idle_since_ + ms_of(o.idle_timeout);
            if (!inbuf_.empty()) at = std::min(at, line_since_ + ms_of(o.request_timeout));
        }
        if (at == UINT64_MAX) {
            uv_timer_stop(&timer_);
            return;
        }
        std::uint64_t t = now();
        uv_timer_start(&timer_, &Session::on_deadline, at > t ? at - t : 0, 0);
    }

    static void on_deadline(uv_timer_t *t) {
        auto *s = static_cast<Session *>(t->data);
        if (s->state_ == State::Closed || !s->server_) return;
        if (!s->replay_.empty()) {
            s->replay();
            return;
        }
        try {
            const ServerOptions &o = s->server_->options_;
            if (s->state_ == State::Draining)
                s->server_->log("control: disconnecting " + s->who() +
                                ": answers not read in time");
            else if (!s->inbuf_.empty() && s->now() >= s->line_since_ + ms_of(o.request_timeout))
                s->server_->log("control: disconnecting " + s->who() +
                                ": request line not complete within " +
                                std::to_string(o.request_timeout.count()) + " ms");
            else
                s->server_->log("control: disconnecting " + s->who() + ": no request for " +
                                std::to_string(o.idle_timeout.count()) + " ms");
        } catch (...) {
        }
        s->close_now();
    }

    void start_reading() {
        if (state_ != State::Open || read_eof_) return;
        int r = uv_read_start(
            stream_handle(),
            [](uv_handle_t *h, size_t, uv_buf_t *b) {
                auto *s = static_cast<Session *>(h->data);
                if (s->server_ && s->state_ == State::Open)
                    *b = uv_buf_init(s->server_->readbuf_.get(), read_chunk);
                else
                    *b = uv_buf_init(nullptr, 0); // read_cb gets UV_ENOBUFS
            },
            &Session::on_read);
        if (r != 0) close_now();
    }

    void stop_reading() { uv_read_stop(stream_handle()); }

    static void on_read(uv_stream_t *h, ssize_t n, const uv_buf_t *buf) {
        auto *s = static_cast<Session *>(h->data);
        if (s->state_ != State::Open) return;
        std::shared_ptr<Session> self = s->self_; // the handler may drop every other reference
        try {
            s->read(n, buf->base);
        } catch (...) {
            s->fail("out of memory while reading a request");
        }
    }

    void read(ssize_t n, const char *data) {
        if (n == 0) return; // EAGAIN
        if (n == UV_EOF) {
            // A client that is gone entirely (POLLHUP: both directions shut) is closed at
            // once, so a killed `vigilctl logs -f` ends its subscription now. One that only
            // half-closed (`socat`, `nc -N`) still gets its answers, then the close.
            uv_os_fd_t fd = -1;
            if (uv_fileno(reinterpret_cast<uv_handle_t *>(&pipe_), &fd) == 0) {
                pollfd p{fd, POLLOUT, 0};
                if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
                    close_now();
                    return;
                }
            }
            read_eof_ = true;
            stop_reading();
            std::string().swap(inbuf_); // a last line without "\n" is not a request
            rearm();
            maybe_finish();
            return;
        }
        if (n < 0) {
            close_now();
            return;
        }
        std::string_view bytes(data, static_cast<std::size_t>(n));
        while (state_ == State::Open && !bytes.empty()) {
            auto nl = bytes.find('\n');
            std::string_view part = bytes.substr(0, nl);
            if (inbuf_.size() + part.size() > max_request_line) {
                send(make_error(nullptr, ErrorCode::TooLong,
                                "request line longer than " + std::to_string(max_request_line) +
                                    " bytes"),
                     false);
                server_->log("control: disconnecting " + who() + ": request line too long");
                std::string().swap(inbuf_);
                drain_then_close();
                return;
            }
            if (nl == std::string_view::npos) {
                if (inbuf_.empty()) {
                    // The first byte of a line: its deadline starts now and is not moved by
                    // the bytes that follow.
                    line_since_ = now();
                    inbuf_.append(part);
                    rearm();
                } else {
                    inbuf_.append(part);
                }
                break;
            }
            bytes.remove_prefix(nl + 1);
            if (inbuf_.empty()) {
                handle_line(part);
            } else {
                inbuf_.append(part);
                std::string line = std::move(inbuf_);
                inbuf_.clear();
                handle_line(line);
            }
            if (held_) { // what followed the held request waits with it, unread
                held_bytes_.append(bytes);
                return;
            }
        }
    }

    // An adopted connection's whole request lines (Server::adopt_session), answered as if
    // just read; then the socket is read again.
    void replay() noexcept {
        std::string bytes = std::move(replay_);
        replay_.clear();
        std::shared_ptr<Session> self = self_; // the handler may drop every other reference
        try {
            read(static_cast<ssize_t>(bytes.size()), bytes.data());
        } catch (...) {
            fail("out of memory while reading a request");
            return;
        }
        rearm();
        start_reading();
    }

    // What a re-exec can carry (Server::carriable_sessions): open, every request answered,
    // nothing queued to write, no stream, the client still sending.
    bool carriable() const {
        return state_ == State::Open && outstanding_ == 0 && !writing_ && out_.empty() &&
               !read_eof_ && !denied_;
    }

    void handle_line(std::string_view line) {
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find_first_not_of(" \t") == std::string_view::npos) {
            rearm();
            return; // blank lines are allowed, and are not activity
        }
        idle_since_ = now();
        ParseResult parsed = parse_request(line);
        if (auto *bad = std::get_if<RequestError>(&parsed)) {
            send(make_error(bad->id, bad->code, bad->message), false);
            if (denied_) drain_then_close();
            rearm();
            return;
        }
        const Request &req = std::get<Request>(parsed);
        if (denied_) {
            std::string why =
                "uid " + std::to_string(uid_) + " may not use this socket (only root, uid " +
                std::to_string(geteuid()) +
                (server_->options_.socket_group
                     ? ", and group " + std::to_string(*server_->options_.socket_group) +
                           " for read-only requests"
                     : std::string()) +
                ")";
            server_->log("control: refused " + who() + ": " + to_string(req.cmd) + ": " + why);
            send(make_error(req.id, ErrorCode::Forbidden, why), false);
            drain_then_close();
            return;
        }
        if (read_only_ && !is_read_only(req)) {
            std::string what = req.cmd == Cmd::Logs ? std::string("logs with reopen")
                                                    : std::string(to_string(req.cmd));
            std::string why = what + " needs root or uid " + std::to_string(geteuid()) + "; uid " +
                              std::to_string(uid_) +
                              " may only run status, tree, events, logs (without reopen) and "
                              "version";
            server_->log("control: refused " + who() + ": " + why);
            send(make_error(req.id, ErrorCode::Forbidden, why), false);
            rearm();
            return;
        }
        if (server_->options_.hold && server_->options_.hold(req)) {
            // A stand-in keeps it for the next vigild: nothing more is read here.
            held_ = true;
            held_id_ = req.id;
            held_bytes_.assign(line);
            held_bytes_ += '\n';
            stop_reading();
            rearm();
            return;
        }
        ++outstanding_;
        rearm();
        ResponderPtr self = shared_from_this();
        try {
            server_->handler_(self, req);
        } catch (const std::exception &e) {
            server_->log(std::string("control: ") + to_string(req.cmd) + " failed: " + e.what());
            error(req.id, ErrorCode::Internal, std::string("internal error: ") + e.what(), nullptr);
        } catch (...) {
            server_->log(std::string("control: ") + to_string(req.cmd) +
                         " failed: an unknown exception");
            error(req.id, ErrorCode::Internal, "internal error", nullptr);
        }
    }

    Server *server_; // null once the server is done with the session (or gone)
    std::uint64_t id_;
    std::shared_ptr<Session> self_; // set while handles are open
    uv_pipe_t pipe_{};
    uv_timer_t timer_{};
    uv_write_t write_req_{};
    int handles_open_ = 0;
    State state_ = State::Open;
    uid_t uid_ = static_cast<uid_t>(-1);
    gid_t gid_ = static_cast<gid_t>(-1);
    pid_t pid_ = 0;
    bool read_only_ = false;
    bool denied_ = false;   // no access at all: first request refused, then closed
    bool read_eof_ = false; // the client shut down its sending side
    bool writing_ = false;  // a uv_write() is in flight
    bool callbacks_fired_ = false;
    bool held_ = false;             // keeps a request for the next vigild (ServerOptions::hold)
    Json held_id_;                  // that request's id
    std::string held_bytes_;        // that request's line, "\n", and whatever followed it
    std::string replay_;            // an adopted connection's whole lines, not yet answered
    std::size_t outstanding_ = 0;   // requests handed to the handler and not finished
    std::uint64_t idle_since_ = 0;  // uv_now(): connected, or last request finished/handled
    std::uint64_t line_since_ = 0;  // uv_now(): first byte of the line in inbuf_
    std::uint64_t drain_until_ = 0; // uv_now(): draining ends, written or not
    std::string inbuf_;             // bytes of an incomplete request line
    std::deque<std::string> out_;   // queued blocks, not yet handed to uv_write()
    std::string inflight_;          // the buffer of the uv_write() in flight
    std::size_t counted_ = 0;       // out_ + inflight_: this session's part of queued_
    std::vector<std::function<void()>> on_close_;
};

// ----------------------------------------------------------------------------------- Server

Server::Server(uv_loop_t *loop, ServerOptions options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)),
      readbuf_(new char[read_chunk]) {}

Server::~Server() {
    // Normally close() has completed. If not, start it and leave the handles to free
    // themselves: the close callbacks see no Server any more.
    if (!closing_) close();
    done_ = nullptr;
    if (listener_) listener_->data = nullptr;
    if (log_timer_) log_timer_->data = nullptr;
    if (spare_) {
        if (spare_busy_)
            spare_->data = nullptr; // its close callback, still to come, frees it
        else
            delete spare_;
    }
    for (auto &s : sessions_) {
        s->server_ = nullptr;
        s->on_close_.clear(); // they would call into a daemon that may be gone too
        s->callbacks_fired_ = true;
    }
}

void Server::log(std::string_view line) noexcept {
    if (!options_.log) return;
    // At most log_per_second lines a second: a client (or a flood of them) must not be able
    // to fill vigild's log. What is dropped is counted and reported when the second is over.
    std::uint64_t now = uv_now(loop_);
    if (now - log_window_ >= 1000) {
        flush_suppressed();
        log_window_ = now;
        log_lines_ = 0;
    }
    if (log_lines_ >= options_.log_per_second) {
        if (log_suppressed_++ == 0 && log_timer_ && !closing_)
            uv_timer_start(
                log_timer_,
                [](uv_timer_t *t) {
                    if (auto *srv = static_cast<Server *>(t->data)) srv->flush_suppressed();
                },
                log_window_ + 1000 > now ? log_window_ + 1000 - now : 0, 0);
        return;
    }
    ++log_lines_;
    try {
        options_.log(line);
    } catch (...) {
    }
}

void Server::flush_suppressed() noexcept {
    if (log_suppressed_ == 0 || !options_.log) return;
    std::uint64_t n = log_suppressed_;
    log_suppressed_ = 0;
    log_window_ = uv_now(loop_);
    log_lines_ = 1;
    try {
        options_.log("control: " + std::to_string(n) + " more log lines suppressed (at most " +
                     std::to_string(options_.log_per_second) + " a second)");
    } catch (...) {
    }
}

int Server::listen(std::string *message) {
    const std::string &path = options_.path;
    auto fail = [&](int err, const std::string &what) {
        if (message) *message = "control socket " + path + ": " + what;
        return err;
    };
    if (listener_ || closing_) return fail(-EALREADY, "already listening");
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.empty()) return fail(-EINVAL, "no path given");
    // The socket is bound under a temporary name next to its own and renamed into place once
    // it listens, so a client that sees the file never meets ECONNREFUSED from a socket that
    // is bound but not yet listening.
    const std::string staging = path + ".new";
    if (staging.size() >= sizeof sa.sun_path)
        return fail(-ENAMETOOLONG, "path longer than " +
                                       std::to_string(sizeof sa.sun_path - 1 - 4) +
                                       " bytes; choose a shorter --socket");
    std::memcpy(sa.sun_path, path.data(), path.size());

    if (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
        std::string what;
        if (int r = prepare_socket_dir(path.substr(0, slash), options_.socket_group, what); r != 0)
            return fail(r, what);
    }

    // An old socket file: remove it only if nobody answers (a crashed vigild's leftover).
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(-EEXIST,
                        "exists and is not a socket; remove it or choose another --socket");
        // Non-blocking: a full backlog must give EAGAIN (somebody is there), not block vigild.
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (probe < 0) return fail(-errno, "socket: " + errno_text(errno));
        int r = connect(probe, reinterpret_cast<sockaddr *>(&sa), sizeof sa);
        int e = errno;
        ::close(probe);
        if (r == 0 || e == EAGAIN)
            return fail(-EADDRINUSE, "another vigild is listening on it; stop it or choose "
                                     "another --socket");
        if (e != ECONNREFUSED && e != ENOENT)
            return fail(-e, "cannot check the old socket: " + errno_text(e));
        if (unlink(path.c_str()) != 0 && errno != ENOENT)
            return fail(-errno, "cannot remove the old socket: " + errno_text(errno));
    }

    // A staging name left by a vigild that died between bind and rename.
    if (lstat(staging.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return fail(-EEXIST, staging + " exists and is not a socket; remove it");
        if (unlink(staging.c_str()) != 0 && errno != ENOENT)
            return fail(-errno, "cannot remove " + staging + ": " + errno_text(errno));
    }
    sockaddr_un bound{};
    bound.sun_family = AF_UNIX;
    std::memcpy(bound.sun_path, staging.data(), staging.size());

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return fail(-errno, "socket: " + errno_text(errno));
    // bind() creates the file with 0777 & ~umask: narrow the umask around it so there is no
    // moment at which the socket is more open than it will be. vigild is single-threaded here.
    mode_t old_mask = umask(0177);
    int r = bind(fd, reinterpret_cast<sockaddr *>(&bound), sizeof bound);
    int e = errno;
    umask(old_mask);
    if (r != 0) {
        ::close(fd);
        return fail(-e, "bind: " + errno_text(e));
    }
    auto undo = [&](int err, const std::string &what) {
        if (fd >= 0) ::close(fd);
        unlink(staging.c_str());
        return fail(-err, what);
    };
    if (options_.socket_group) {
        if (chown(staging.c_str(), static_cast<uid_t>(-1), *options_.socket_group) != 0)
            return undo(errno, "cannot give the socket to group " +
                                   std::to_string(*options_.socket_group) + ": " +
                                   errno_text(errno));
        if (chmod(staging.c_str(), 0660) != 0)
            return undo(errno, "chmod 0660: " + errno_text(errno));
    }
    if (stat(staging.c_str(), &st) == 0) {
        sock_dev_ = st.st_dev;
        sock_ino_ = st.st_ino;
    }

    int err = 0;
    std::string what;
    uv_pipe_t *pipe = listening_pipe(fd, err, what);
    fd = -1; // closed by listening_pipe on failure, the pipe's otherwise
    if (!pipe) return undo(-err, what);
    if (rename(staging.c_str(), path.c_str()) != 0) {
        int re = errno;
        uv_close(reinterpret_cast<uv_handle_t *>(pipe),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_pipe_t *>(h); });
        return undo(re, "cannot move " + staging + " into place: " + errno_text(re));
    }
    accept_on(pipe);
    return 0;
}

int Server::adopt(int fd, std::string *message) {
    if (listener_ || closing_) {
        ::close(fd);
        if (message) *message = "control socket " + options_.path + ": already listening";
        return -EALREADY;
    }
    struct stat st {};
    if (stat(options_.path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) {
        sock_dev_ = st.st_dev;
        sock_ino_ = st.st_ino;
    }
    int err = 0;
    std::string what;
    uv_pipe_t *pipe = listening_pipe(fd, err, what);
    if (!pipe) {
        if (message) *message = "control socket " + options_.path + ": " + what;
        return err;
    }
    accept_on(pipe);
    return 0;
}

int Server::fd() const noexcept {
    uv_os_fd_t fd = -1;
    if (!listener_ || uv_fileno(reinterpret_cast<const uv_handle_t *>(listener_), &fd) != 0)
        return -1;
    return fd;
}

// `fd` (a bound unix stream socket) as a libuv pipe that listens and hands connections to
// on_connection(). On failure the descriptor is closed and `err` (a negative errno) and `what`
// say why.
uv_pipe_t *Server::listening_pipe(int fd, int &err, std::string &what) {
    auto pipe = std::make_unique<uv_pipe_t>();
    if (!spare_) spare_ = new uv_pipe_t{};
    // uv_pipe_init also reserves the descriptor of libuv's EMFILE trick.
    if (int ur = uv_pipe_init(loop_, pipe.get(), 0); ur != 0) {
        ::close(fd);
        err = ur;
        what = std::string("uv_pipe_init: ") + uv_strerror(ur);
        return nullptr;
    }
    pipe->data = this;
    auto drop = [&](int ur, const char *where) -> uv_pipe_t * {
        uv_close(reinterpret_cast<uv_handle_t *>(pipe.release()),
                 [](uv_handle_t *h) { delete reinterpret_cast<uv_pipe_t *>(h); });
        err = ur;
        what = std::string(where) + uv_strerror(ur);
        return nullptr;
    };
    if (int ur = uv_pipe_open(pipe.get(), fd); ur != 0) {
        ::close(fd);
        return drop(ur, "uv_pipe_open: ");
    }
    int lr = uv_listen(reinterpret_cast<uv_stream_t *>(pipe.get()), listen_backlog,
                       [](uv_stream_t *l, int status) {
                           auto *srv = static_cast<Server *>(l->data);
                           if (!srv) return;
                           try {
                               srv->on_connection(status);
                           } catch (...) {
                               srv->log("control: cannot take a connection (out of memory?)");
                               srv->turn_away();
                           }
                       });
    if (lr != 0) return drop(lr, "listen: ");
    return pipe.release();
}

// The listener is in place: the log throttle's timer, and the handles to close.
void Server::accept_on(uv_pipe_t *pipe) {
    auto *timer = new uv_timer_t;
    uv_timer_init(loop_, timer);
    timer->data = this;
    listener_ = pipe;
    log_timer_ = timer;
    handles_open_ = 2;
}

// A connection libuv accepted and we could not take (an allocation failed): it must still be
// taken off the listener, which libuv stops watching until uv_accept() is called. The spare
// handle, allocated at listen(), takes it and is closed at once.
void Server::turn_away() noexcept {
    if (!listener_ || !spare_ || spare_busy_) return;
    spare_busy_ = true;
    uv_pipe_init(loop_, spare_, 0);
    spare_->data = this;
    uv_accept(reinterpret_cast<uv_stream_t *>(listener_), reinterpret_cast<uv_stream_t *>(spare_));
    uv_close(reinterpret_cast<uv_handle_t *>(spare_), [](uv_handle_t *h) {
        if (auto *srv = static_cast<Server *>(h->data))
            srv->spare_busy_ = false;
        else
            delete reinterpret_cast<uv_pipe_t *>(h); // the Server is gone
    });
}

void Server::on_connection(int status) {
    if (status < 0) {
        // EMFILE and ENFILE do not get here: libuv accepted and closed the connection.
        log(std::string("control: accept: ") + uv_strerror(status));
        return;
    }
    if (closing_) return;
    std::shared_ptr<Session> s = new_session();
    if (int r = uv_accept(reinterpret_cast<uv_stream_t *>(listener_), s->stream_handle()); r != 0) {
        log(std::string("control: accept: ") + uv_strerror(r));
        s->close_now();
        return;
    }
    s->idle_since_ = s->now();
    identify(*s);
    admit(s);
}

// A session with its handles, in sessions_, before its socket is known.
std::shared_ptr<Session> Server::new_session() {
    auto s = std::make_shared<Session>(this, next_id_++);
    sessions_.reserve(sessions_.size() + 1); // the last allocation: nothing below throws
    uv_pipe_init(loop_, &s->pipe_, 0);
    uv_timer_init(loop_, &s->timer_);
    s->pipe_.data = s.get();
    s->timer_.data = s.get();
    s->handles_open_ = 2;
    s->self_ = s;
    // From here on only close_now() ends the session; the close callback drops self_.
    sessions_.push_back(s);
    return s;
}

// Who is on the other end (SO_PEERCRED), and what it may do.
void Server::identify(Session &s) {
    uv_os_fd_t fd = -1;
    uv_fileno(reinterpret_cast<uv_handle_t *>(&s.pipe_), &fd);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
        s.uid_ = cred.uid;
        s.gid_ = cred.gid;
        s.pid_ = cred.pid;
        if (s.privileged()) {
            // full access
        } else if (options_.socket_group && (cred.gid == *options_.socket_group ||
                                             peer_in_group(fd, *options_.socket_group))) {
            s.read_only_ = true;
        } else {
            s.denied_ = true;
        }
    } else {
        s.denied_ = true;
    }
}

std::vector<Server::CarriedSession> Server::carriable_sessions() const {
    std::vector<CarriedSession> out;
    for (const auto &s : sessions_) {
        if (!s->carriable()) continue;
        if (const int fd = s->fd(); fd >= 0)
            out.push_back(CarriedSession{fd, s->held_ ? s->held_bytes_ : s->inbuf_});
    }
    return out;
}

void Server::close_carriable() {
    auto all = sessions_;
    for (auto &s : all)
        if (s->carriable()) s->close_now();
}

std::size_t Server::hand_over(bool given_up) {
    if (listener_ && !uv_is_closing(reinterpret_cast<uv_handle_t *>(listener_)))
        uv_close(reinterpret_cast<uv_handle_t *>(listener_), &Server::own_handle_closed);
    if (!given_up) close_carriable();
    std::size_t left = 0;
    auto all = sessions_;
    for (auto &s : all) {
        if (s->state_ == Session::State::Closed) continue;
        if (s->held_ && s->state_ == Session::State::Open) {
            s->held_ = false;
            s->error(s->held_id_, ErrorCode::Internal,
                     given_up ? "vigild's re-exec did not come to an end in time; send it again"
                              : "vigild re-executed while this request waited behind an answer "
                                "not yet read; send it again",
                     nullptr);
        }
        s->drain_then_close();
        left += s->state_ != Session::State::Closed;
    }
    return left;
}

void Server::adopt_session(int fd, std::string pending) {
    if (closing_ || !listener_) {
        ::close(fd);
        return;
    }
    std::shared_ptr<Session> s = new_session();
    if (uv_pipe_open(&s->pipe_, fd) != 0) {
        ::close(fd);
        s->close_now();
        return;
    }
    s->idle_since_ = s->now();
    identify(*s);
    if (pending.find('\n') != std::string::npos) {
        // A request a stand-in held: answered on the next turn (the daemon may not be ready
        // before the loop runs), then the socket is read again.
        if (pending.size() > max_request_line + read_chunk + 1) {
            s->close_now();
            return;
        }
        s->replay_ = std::move(pending);
        uv_timer_start(&s->timer_, &Session::on_deadline, 0, 0);
        return;
    }
    if (!pending.empty() && pending.size() <= max_request_line) {
        s->line_since_ = s->now();
        s->inbuf_ = std::move(pending);
    }
    s->rearm();
    s->start_reading();
}

// Makes room for the newcomer (see server.hpp), or refuses it.
void Server::admit(const std::shared_ptr<Session> &s) {
    std::size_t open = 0, same_uid = 0;
    for (const auto &x : sessions_) {
        if (x == s || x->state_ == Session::State::Closed) continue;
        ++open;
        if (x->uid_ == s->uid_) ++same_uid;
    }
    std::string refusal;
    if (!s->privileged() && same_uid >= options_.max_sessions_per_uid) {
        // Its own connection idle the longest makes room; else it has enough.
        Session *victim = nullptr;
        for (const auto &x : sessions_)
            if (x != s && x->uid_ == s->uid_ && x->idle() &&
                (!victim || x->idle_since_ < victim->idle_since_))
                victim = x.get();
        if (victim) {
            log("control: evicting " + victim->who() + " (idle) for a new connection of uid " +
                std::to_string(s->uid_) + ", which has " +
                std::to_string(options_.max_sessions_per_uid) + " open");
            ++evicted_;
            victim->evict("closed to make room for a newer connection of the same user");
            --open;
        } else {
            refusal = "uid " + std::to_string(s->uid_) + " already has " +
                      std::to_string(options_.max_sessions_per_uid) + " connections open";
        }
    }
    if (refusal.empty() && open >= options_.max_sessions) {
        if (Session *victim = pick_victim(*s)) {
            log("control: evicting " + victim->who() + (victim->idle() ? " (idle)" : " (busy)") +
                ": " + std::to_string(options_.max_sessions) + " connections open, " + s->who() +
                " is connecting");
            ++evicted_;
            victim->evict("closed to make room: too many connections to vigild");
        } else {
            refusal = std::to_string(options_.max_sessions) + " connections already open";
        }
    }
    s->send(make_hello(options_.server_version), false);
    if (!refusal.empty()) {
        log("control: refusing " + s->who() + ": " + refusal);
        ++refused_;
        s->send(make_error(nullptr, ErrorCode::Internal,
                           "too many connections to vigild (" + refusal + "); try again later"),
                false);
        s->drain_then_close();
        return;
    }
    s->rearm();
    s->start_reading();
}

// At max_sessions: the session idle the longest (non-privileged newcomers may take the seat
// of non-privileged sessions only); for root and vigild's euid, when nobody is idle, the
// non-privileged session connected first, busy or not (a follower).
Session *Server::pick_victim(const Session &newcomer) const {
    Session *idle = nullptr;
    Session *busy = nullptr;
    for (const auto &x : sessions_) {
        if (x.get() == &newcomer || x->state_ == Session::State::Closed) continue;
        if (!newcomer.privileged() && x->privileged()) continue;
        if (x->idle()) {
            if (!idle || x->idle_since_ < idle->idle_since_) idle = x.get();
        } else if (!x->privileged() && (!busy || x->id_ < busy->id_)) {
            busy = x.get();
        }
    }
    if (idle) return idle;
    return newcomer.privileged() ? busy : nullptr;
}

// All sessions together may hold max_total_output of unsent output: past it, the one that
// holds the most (a follower that stopped reading) goes.
void Server::enforce_total_output() {
    while (queued_ > options_.max_total_output) {
        Session *worst = nullptr;
        for (const auto &x : sessions_)
            if (x->state_ != Session::State::Closed && (!worst || x->counted_ > worst->counted_))
                worst = x.get();
        if (!worst || worst->counted_ == 0) return;
        // Abandoning drops its queue and keeps the write in flight and the error line: if
        // that still is too much, the next round closes it (or another) outright.
        log("control: disconnecting " + worst->who() + ": " + std::to_string(worst->counted_) +
            " bytes of answers unread, and all clients together hold more than " +
            std::to_string(options_.max_total_output) + " bytes");
        worst->abandon(worst->counted_, "and all clients together had more than " +
                                            std::to_string(options_.max_total_output) + " waiting");
    }
}

void Server::session_closed(Session *s) noexcept {
    auto it = std::find_if(sessions_.begin(), sessions_.end(),
                           [s](const auto &p) { return p.get() == s; });
    std::shared_ptr<Session> keep;
    if (it != sessions_.end()) {
        keep = std::move(*it);
        sessions_.erase(it);
    }
    s->callbacks_fired_ = true;
    auto cbs = std::move(s->on_close_);
    s->on_close_.clear();
    s->server_ = nullptr; // the session may outlive the server in the daemon's hands
    for (auto &cb : cbs) {
        try {
            if (cb) cb();
        } catch (const std::exception &e) {
            log(std::string("control: on_close callback failed: ") + e.what());
        } catch (...) {
            log("control: on_close callback failed");
        }
    }
    maybe_done();
}

void Server::own_handle_closed(uv_handle_t *h) {
    auto *srv = static_cast<Server *>(h->data);
    if (srv && h == reinterpret_cast<uv_handle_t *>(srv->listener_)) srv->listener_ = nullptr;
    if (srv && h == reinterpret_cast<uv_handle_t *>(srv->log_timer_)) srv->log_timer_ = nullptr;
    if (h->type == UV_NAMED_PIPE)
        delete reinterpret_cast<uv_pipe_t *>(h);
    else
        delete reinterpret_cast<uv_timer_t *>(h);
    if (srv && --srv->handles_open_ == 0) srv->maybe_done();
}

void Server::close(std::function<void()> done) {
    closing_ = true;
    if (done) done_ = std::move(done);
    auto closed = &Server::own_handle_closed;
    if (listener_ && !uv_is_closing(reinterpret_cast<uv_handle_t *>(listener_))) {
        uv_close(reinterpret_cast<uv_handle_t *>(listener_), closed);
        // Remove the socket file, but only if it is still the one we made (a new vigild may
        // have replaced it).
        struct stat st {};
        if (stat(options_.path.c_str(), &st) == 0 && st.st_dev == sock_dev_ &&
            st.st_ino == sock_ino_)
            unlink(options_.path.c_str());
    }
    if (log_timer_ && !uv_is_closing(reinterpret_cast<uv_handle_t *>(log_timer_))) {
        flush_suppressed();
        uv_close(reinterpret_cast<uv_handle_t *>(log_timer_), closed);
    }
    auto all = sessions_;
    for (auto &s : all)
        s->close_now();
    maybe_done();
}

void Server::maybe_done() noexcept {
    if (!closing_ || handles_open_ > 0 || !sessions_.empty() || !done_) return;
    auto d = std::move(done_);
    done_ = nullptr;
    try {
        d();
    } catch (...) {
    }
}

std::optional<gid_t> lookup_group(std::string_view name, std::string *error) {
    std::string n(name);
    if (!n.empty() && n.find_first_not_of("0123456789") == std::string::npos && n.size() < 10)
        return static_cast<gid_t>(std::stoul(n));
    std::vector<char> buf(16384);
    group gr{};
    group *res = nullptr;
    int r = getgrnam_r(n.c_str(), &gr, buf.data(), buf.size(), &res);
    if (r == 0 && res) return res->gr_gid;
    if (error)
        *error = r != 0 ? "cannot look up group '" + n + "': " + errno_text(r)
                        : "no group named '" + n + "'";
    return std::nullopt;
}

} // namespace vigil::ctl
