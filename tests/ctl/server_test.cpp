// The control server over real Unix sockets: a libuv loop runs on a thread with a fake
// daemon handler, and the test thread plays the clients with the blocking ctl::Client.
// Every wait is bounded (scaled by VIGIL_TEST_TIMEOUT_MULTIPLIER).
#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <future>
#include <grp.h>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "loop_thread.hpp"
#include "vigil/ctl/client.hpp"
#include "vigil/ctl/server.hpp"

using namespace vigil;
using namespace vigil::ctl;
using vigil::test::LoopThread;
using vigil::test::scaled;
using namespace std::chrono_literals;

namespace {

std::string make_temp_dir() {
    char tmpl[] = "/tmp/vigil-ctl-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return tmpl;
}

void remove_tree(const std::string &dir) {
    std::string cmd = "rm -rf '" + dir + "'";
    CHECK(std::system(cmd.c_str()) == 0);
}

// The fake daemon: answers a few commands the way vigild will.
struct FakeDaemon {
    Server *server = nullptr;
    std::vector<ResponderPtr> flood;   // sessions receiving a flood of stream items
    std::vector<ResponderPtr> streams; // quiet follow streams
    std::size_t max_queued = 0;        // the most unsent output the server held while flooding
    std::atomic<int> closed{0};        // on_close callbacks run
    std::atomic<int> handled{0};
    uv_timer_t pusher{};
    bool pusher_on = false;
    ResponderPtr kept; // a session kept after it closed

    void handle(const ResponderPtr &s, const Request &r) {
        ++handled;
        switch (r.cmd) {
        case Cmd::Version:
            s->reply(r.id, Json{{"server", "test"}, {"uid", s->uid()}});
            return;
        case Cmd::Status:
            if (r.units == std::vector<std::string>{"big"}) {
                s->reply(r.id, Json{{"blob", std::string(std::size_t{1} << 20, 'b')}});
                return;
            }
            s->reply(r.id, Json{{"units", r.units}, {"read_only", s->read_only()}});
            return;
        case Cmd::Stop:
            s->reply(r.id, Json{{"stopped", r.units}});
            return;
        case Cmd::Logs:
            if (r.unit == "int") throw 42;
            throw std::runtime_error("boom");
        case Cmd::Events:
            s->on_close([this] { ++closed; });
            kept = s;
            if (!r.follow) {
                s->stream(r.id, Json{{"n", 1}});
                s->end(r.id);
            } else if (r.unit == "flood") {
                flood.push_back(s);
                start_pusher(r.id);
            } else {
                streams.push_back(s);
                s->stream(r.id, Json{{"n", 0}});
            }
            return;
        case Cmd::Start:
        case Cmd::Restart:
        case Cmd::Signal:
        case Cmd::Reload:
        case Cmd::Tree:
        case Cmd::Shutdown:
        case Cmd::Checks:
        case Cmd::Check:
        case Cmd::Reexec:
            s->error(r.id, ErrorCode::Invalid, "not in this test");
            return;
        }
    }

    // Every millisecond, queue 256 KiB of items to each flooded session that is still open.
    void start_pusher(const Json &id) {
        if (pusher_on) return;
        pusher_on = true;
        pusher.data = this;
        flood_id = id;
        uv_timer_start(
            &pusher,
            [](uv_timer_t *t) {
                auto *d = static_cast<FakeDaemon *>(t->data);
                Json item{{"line", std::string(4096, 'x')}};
                for (auto &s : d->flood) {
                    for (int i = 0; i < 64 && s->open(); ++i) {
                        s->stream(d->flood_id, item);
                        d->max_queued = std::max(d->max_queued, d->server->queued_output());
                    }
                }
                std::erase_if(d->flood, [](const ResponderPtr &s) { return !s->open(); });
                if (d->flood.empty()) {
                    uv_timer_stop(t);
                    d->pusher_on = false;
                }
            },
            1, 1);
    }
    Json flood_id;
};

struct Fixture {
    std::string dir = make_temp_dir();
    std::string path = dir + "/sub/control.sock";
    LoopThread lt;
    FakeDaemon daemon;
    std::mutex log_mu;
    std::vector<std::string> log_lines;
    std::unique_ptr<Server> server;

    explicit Fixture(ServerOptions o = {}) {
        o.path = path;
        o.log = [this](std::string_view l) {
            std::lock_guard lock(log_mu);
            log_lines.emplace_back(l);
        };
        uv_timer_init(lt.loop(), &daemon.pusher);
        server = std::make_unique<Server>(
            lt.loop(), std::move(o),
            [this](const ResponderPtr &s, const Request &r) { daemon.handle(s, r); });
        daemon.server = server.get();
    }
    void listen_and_start() {
        std::string msg;
        int r = server->listen(&msg);
        REQUIRE_MESSAGE(r == 0, msg);
        lt.start();
    }
    ~Fixture() {
        lt.stop([this](std::function<void()> close_wake) {
            uv_close(reinterpret_cast<uv_handle_t *>(&daemon.pusher), nullptr);
            daemon.flood.clear();
            daemon.streams.clear();
            server->close(close_wake);
        });
        if (daemon.kept) CHECK_FALSE(daemon.kept->reply(1, 1)); // stale handle: a no-op
        server.reset();
        remove_tree(dir);
    }
    bool logged(std::string_view needle) {
        std::lock_guard lock(log_mu);
        for (auto &l : log_lines)
            if (l.find(needle) != std::string::npos) return true;
        return false;
    }
    Client connect() {
        Client c;
        REQUIRE(c.connect(path, scaled(2000)) == 0);
        return c;
    }
};

Json next(Client &c, int timeout_ms = 3000) {
    std::string line;
    int r = c.read_line(line, scaled(timeout_ms));
    REQUIRE_MESSAGE(r == 0, "read_line: " << std::strerror(-r));
    Json j = Json::parse(line, nullptr, false);
    REQUIRE(!j.is_discarded());
    return j;
}

// Reads and checks the hello.
void hello(Client &c) {
    Json h = next(c);
    CHECK(h["hello"] == "vigil");
    CHECK(h["version"] == protocol_version);
}

void send(Client &c, std::string_view s) {
    REQUIRE(c.send_all(s, scaled(2000)) == 0);
}

// Waits (bounded) for the server to close the connection; returns how long it took.
std::chrono::milliseconds wait_closed(Client &c, int timeout_ms) {
    auto t0 = std::chrono::steady_clock::now();
    std::string line;
    for (;;) {
        int r = c.read_line(line, scaled(timeout_ms));
        if (r == -ECONNRESET) break;
        REQUIRE_MESSAGE(r == 0, "expected the server to close; read_line: " << std::strerror(-r));
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                 t0);
}

template <class Pred> bool wait_until(Pred pred, int timeout_ms) {
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(scaled(timeout_ms));
    while (std::chrono::steady_clock::now() < end) {
        if (pred()) return true;
        std::this_thread::sleep_for(5ms);
    }
    return pred();
}

} // namespace

TEST_SUITE("ctl") {

    TEST_CASE(
        "listen creates a 0700 folder and a 0600 socket, and a client gets hello and replies") {
        Fixture f;
        f.listen_and_start();
        struct stat st {};
        REQUIRE(stat((f.dir + "/sub").c_str(), &st) == 0);
        CHECK((st.st_mode & 07777) == 0700);
        REQUIRE(stat(f.path.c_str(), &st) == 0);
        CHECK(S_ISSOCK(st.st_mode));
        CHECK((st.st_mode & 07777) == 0600);

        Client c = f.connect();
        CHECK(c.server_pid() == getpid()); // SO_PEERCRED: the server runs in this process
        hello(c);
        send(c, R"({"id":1,"cmd":"version"})"
                "\n");
        Json r = next(c);
        CHECK(r["id"] == 1);
        CHECK(r["ok"] == true);
        CHECK(r["result"]["server"] == "test");
        CHECK(r["result"]["uid"] == geteuid());

        // Two requests in one write, answered in order; "\r\n" and blank lines are fine.
        send(c, "{\"id\":\"a\",\"cmd\":\"status\",\"args\":{\"units\":[\"x\"]}}\r\n\n"
                "{\"id\":\"b\",\"cmd\":\"stop\",\"args\":{\"units\":[\"y\"]}}\n");
        Json a = next(c), b = next(c);
        CHECK(a["id"] == "a");
        CHECK(a["result"]["units"] == Json{"x"});
        CHECK(a["result"]["read_only"] == false);
        CHECK(b["id"] == "b");
        CHECK(b["result"]["stopped"] == Json{"y"});
    }

    TEST_CASE("a request split across writes is reassembled") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":9,"cm)");
        std::this_thread::sleep_for(20ms);
        send(c, R"(d":"version"})");
        std::this_thread::sleep_for(20ms);
        send(c, "\n");
        CHECK(next(c)["id"] == 9);
    }

    TEST_CASE(
        "bad JSON, bad requests and unknown commands get errors; the connection stays usable") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, "this is not json\n");
        Json e = next(c);
        CHECK(e["ok"] == false);
        CHECK(e["id"].is_null());
        CHECK(e["error"]["code"] == "bad_json");
        send(c, R"({"id":2,"cmd":"start","args":{"units":"web"}})"
                "\n");
        e = next(c);
        CHECK(e["id"] == 2);
        CHECK(e["error"]["code"] == "bad_request");
        send(c, R"({"id":3,"cmd":"launch"})"
                "\n");
        e = next(c);
        CHECK(e["id"] == 3);
        CHECK(e["error"]["code"] == "unknown_command");
        send(c, R"({"id":4,"cmd":"version"})"
                "\n");
        CHECK(next(c)["result"]["server"] == "test");
        CHECK(f.daemon.handled == 1); // only the valid request reached the daemon
    }

    TEST_CASE("an exception in the handler becomes an internal error reply") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":5,"cmd":"logs","args":{"unit":"web"}})"
                "\n");
        Json e = next(c);
        CHECK(e["id"] == 5);
        CHECK(e["error"]["code"] == "internal");
        CHECK(e["error"]["message"].get<std::string>().find("boom") != std::string::npos);
        send(c, R"({"id":6,"cmd":"version"})"
                "\n");
        CHECK(next(c)["id"] == 6);
    }

    TEST_CASE("a line over max_request_line gets too_long and a disconnect; others are served") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        std::string chunk(64 * 1024, 'x');
        // Send until the server has seen more than the limit; it may close while we send.
        for (std::size_t sent = 0; sent <= max_request_line + chunk.size(); sent += chunk.size())
            if (c.send_all(chunk, scaled(2000)) != 0) break;
        Json e = next(c);
        CHECK(e["error"]["code"] == "too_long");
        wait_closed(c, 2000);
        CHECK(f.logged("too long"));

        Client d = f.connect();
        hello(d);
        send(d, R"({"id":1,"cmd":"version"})"
                "\n");
        CHECK(next(d)["id"] == 1);
    }

    TEST_CASE("a client that never writes is disconnected after the idle timeout") {
        ServerOptions o;
        o.idle_timeout = Duration{200};
        Fixture f(o);
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        auto took = wait_closed(c, 3000);
        CHECK(took >= 150ms);
        CHECK(f.logged("no request for 200 ms"));

        // A request resets the timer; an open stream keeps the connection alive past it.
        Client s = f.connect();
        hello(s);
        send(s, R"({"id":1,"cmd":"events","args":{"follow":true}})"
                "\n");
        CHECK(next(s)["stream"]["n"] == 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        CHECK(f.lt.call([&] { return f.server->session_count(); }) == 1);
        f.lt.call([&] {
            for (auto &x : f.daemon.streams)
                x->stream(1, Json{{"n", 2}});
        });
        CHECK(next(s)["stream"]["n"] == 2);
    }

    TEST_CASE("a client that stops reading a stream is disconnected; memory stays bounded") {
        ServerOptions o;
        o.max_output = 256 * 1024;
        Fixture f(o);
        f.listen_and_start();
        Client slow = f.connect();
        Client other = f.connect();
        hello(other);
        send(slow, R"({"id":1,"cmd":"events","args":{"follow":true,"unit":"flood"}})"
                   "\n");
        // The slow client reads nothing. Meanwhile another client keeps getting prompt answers.
        for (int i = 0; i < 20; ++i) {
            auto t0 = std::chrono::steady_clock::now();
            send(other, R"({"id":2,"cmd":"version"})"
                        "\n");
            CHECK(next(other)["id"] == 2);
            CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(scaled(500)));
        }
        REQUIRE(wait_until([&] { return f.daemon.closed.load() == 1; }, 5000));
        CHECK(f.logged("stopped reading"));
        std::size_t max_queued = f.lt.call([&] { return f.daemon.max_queued; });
        CHECK(max_queued <= o.max_output);
        CHECK(max_queued > 0);
        // The slow client finds its connection closed once it reads what the socket held.
        std::string line;
        int r = 0;
        for (int i = 0; i < 100000 && (r = slow.read_line(line, scaled(2000))) == 0; ++i) {
        }
        CHECK(r == -ECONNRESET);
        CHECK(f.lt.call([&] { return f.server->session_count(); }) == 1);
    }

    TEST_CASE("a follower that reads too slowly is told why, then disconnected") {
        // The flood comes at 256 KiB a millisecond; the client reads, but slower. Past
        // max_output unread the server drops what waits, and the client, after the rest of the
        // write in flight, reads an error line that says why (with "unread"), then the close.
        ServerOptions o;
        o.max_output = 256 * 1024;
        Fixture f(o);
        f.listen_and_start();
        Client slow = f.connect();
        hello(slow);
        send(slow, R"({"id":1,"cmd":"events","args":{"follow":true,"unit":"flood"}})"
                   "\n");
        std::string line;
        int r = 0, items = 0;
        Json last;
        while ((r = slow.read_line(line, scaled(3000))) == 0) {
            last = Json::parse(line, nullptr, false);
            REQUIRE(!last.is_discarded()); // dropping output never cuts a line
            if (!last.contains("stream")) break;
            if (++items % 8 == 0) std::this_thread::sleep_for(1ms);
        }
        REQUIRE_MESSAGE(r == 0, "closed without a word after " << items << " items");
        CHECK(items > 0);
        CHECK(last["id"].is_null());
        CHECK(last["error"]["code"] == "internal");
        CHECK(last["error"]["unread"].get<std::size_t>() > o.max_output);
        CHECK(last["error"]["message"].get<std::string>().find("waited unread") !=
              std::string::npos);
        wait_closed(slow, 3000);
        CHECK(f.logged("reads too slowly"));
        REQUIRE(wait_until([&] { return f.daemon.closed.load() == 1; }, 3000));
        CHECK(f.lt.call([&] { return f.server->queued_output(); }) == 0);
    }

    TEST_CASE("one answer larger than the output cap still reaches a client that reads") {
        ServerOptions o;
        o.max_output = 64 * 1024;
        Fixture f(o);
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":1,"cmd":"status","args":{"units":["big"]}})"
                "\n");
        Json r = next(c);
        CHECK(r["id"] == 1);
        CHECK(r["result"]["blob"].get<std::string>().size() == (std::size_t{1} << 20));
        send(c, R"({"id":2,"cmd":"version"})"
                "\n");
        CHECK(next(c)["id"] == 2);
    }

    TEST_CASE("on_close runs when the client goes away; a kept session becomes a no-op") {
        Fixture f;
        f.listen_and_start();
        {
            Client c = f.connect();
            hello(c);
            send(c, R"({"id":1,"cmd":"events","args":{"follow":true}})"
                    "\n");
            CHECK(next(c)["stream"]["n"] == 0);
        }
        REQUIRE(wait_until([&] { return f.daemon.closed.load() == 1; }, 3000));
        f.lt.call([&] {
            REQUIRE(f.daemon.kept);
            CHECK_FALSE(f.daemon.kept->open());
            CHECK_FALSE(f.daemon.kept->stream(1, 1));
            CHECK_FALSE(f.daemon.kept->on_close([] {}));
        });
    }

    TEST_CASE("a client that half-closes after its request still gets the answers") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        send(c, R"({"id":1,"cmd":"events"})"
                "\n");
        REQUIRE(shutdown(c.fd(), SHUT_WR) == 0);
        hello(c);
        CHECK(next(c)["stream"]["n"] == 1);
        CHECK(next(c)["end"] == true);
        wait_closed(c, 2000);
    }

    TEST_CASE("at max_sessions the session idle the longest makes room for a newcomer") {
        ServerOptions o;
        o.max_sessions = 2;
        Fixture f(o);
        f.listen_and_start();
        Client a = f.connect();
        hello(a);
        std::this_thread::sleep_for(20ms);
        Client b = f.connect();
        hello(b);
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":1,"cmd":"version"})"
                "\n");
        CHECK(next(c)["id"] == 1);
        // The oldest idle one was told why, then closed.
        Json e = next(a);
        CHECK(e["error"]["code"] == "internal");
        CHECK(e["error"]["message"].get<std::string>().find("make room") != std::string::npos);
        wait_closed(a, 2000);
        send(b, R"({"id":2,"cmd":"version"})"
                "\n");
        CHECK(next(b)["id"] == 2);
        CHECK(f.lt.call([&] { return f.server->evicted_total(); }) == 1);
        CHECK(f.logged("evicting uid"));
    }

    TEST_CASE("the unsent output of all sessions together is capped") {
        // 20 followers that never read, each below its own cap: together they would hold
        // 20 MiB; the server keeps them under max_total_output by dropping the largest.
        ServerOptions o;
        o.max_output = 1 << 20;
        o.max_total_output = 4 << 20;
        Fixture f(o);
        f.listen_and_start();
        std::vector<Client> followers;
        for (int i = 0; i < 20; ++i) {
            followers.push_back(f.connect());
            send(followers.back(),
                 R"({"id":1,"cmd":"events","args":{"follow":true,"unit":"flood"}})"
                 "\n");
        }
        Client other = f.connect();
        hello(other);
        for (int i = 0; i < 10; ++i) {
            send(other, R"({"id":2,"cmd":"version"})"
                        "\n");
            CHECK(next(other)["id"] == 2);
        }
        REQUIRE(wait_until([&] { return f.daemon.closed.load() == 20; }, 10000));
        std::size_t max_queued = f.lt.call([&] { return f.daemon.max_queued; });
        MESSAGE("the most unsent output the server held: " << max_queued << " bytes");
        CHECK(max_queued <= o.max_total_output);
        CHECK(f.logged("all clients together hold more than 4194304 bytes"));
        CHECK(f.lt.call([&] { return f.server->queued_output(); }) == 0);
        send(other, R"({"id":3,"cmd":"version"})"
                    "\n");
        CHECK(next(other)["id"] == 3);
    }

    TEST_CASE("deadlines: bytes trickling in extend neither a request line nor an idle wait") {
        SUBCASE("a request line must be complete within request_timeout, stream or not") {
            ServerOptions o;
            o.request_timeout = Duration{300};
            o.idle_timeout = Duration{10'000};
            Fixture f(o);
            f.listen_and_start();
            Client c = f.connect();
            hello(c);
            send(c, R"({"id":1,"cmd":"events","args":{"follow":true}})"
                    "\n");
            CHECK(next(c)["stream"]["n"] == 0); // a stream is open: the session is busy
            auto t0 = std::chrono::steady_clock::now();
            std::string partial = R"({"id":2,"cmd":"version")";
            std::string line;
            int r = 0;
            for (std::size_t i = 0; i < 200; ++i) {
                if (c.send_all(std::string_view(&partial[i % partial.size()], 1), 1000) != 0) {
                    r = c.read_line(line, 1000); // closed since the last read: see it
                    break;
                }
                if ((r = c.read_line(line, 50)) != -ETIMEDOUT) break;
            }
            auto took = std::chrono::steady_clock::now() - t0;
            CHECK(r == -ECONNRESET);
            CHECK(took >= 250ms);
            CHECK(took < std::chrono::milliseconds(scaled(1500)));
            CHECK(f.logged("request line not complete within 300 ms"));
        }
        SUBCASE("an idle connection goes after idle_timeout, whatever bytes it sends") {
            ServerOptions o;
            o.request_timeout = Duration{10'000};
            o.idle_timeout = Duration{300};
            Fixture f(o);
            f.listen_and_start();
            Client c = f.connect();
            hello(c);
            auto t0 = std::chrono::steady_clock::now();
            std::string line;
            int r = 0;
            for (int i = 0; i < 200; ++i) {
                if (c.send_all(i % 8 == 7 ? "\n" : " ", 1000) != 0) { // blank lines
                    r = c.read_line(line, 1000); // closed since the last read: see it
                    break;
                }
                if ((r = c.read_line(line, 50)) != -ETIMEDOUT) break;
            }
            auto took = std::chrono::steady_clock::now() - t0;
            CHECK(r == -ECONNRESET);
            CHECK(took >= 250ms);
            CHECK(took < std::chrono::milliseconds(scaled(1500)));
            CHECK(f.logged("no request for 300 ms"));
        }
    }

    TEST_CASE("a handler throwing anything gets an internal error; the connection goes on") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":5,"cmd":"logs","args":{"unit":"int"}})"
                "\n");
        Json e = next(c);
        CHECK(e["id"] == 5);
        CHECK(e["error"]["code"] == "internal");
        send(c, R"({"id":6,"cmd":"version"})"
                "\n");
        CHECK(next(c)["id"] == 6);
        CHECK(f.logged("logs failed"));
    }

    TEST_CASE("destroying the server without close() leaves nothing dangling") {
        std::string dir = make_temp_dir();
        LoopThread lt; // not started: the loop runs here
        ResponderPtr kept;
        ServerOptions o;
        o.path = dir + "/control.sock";
        auto srv =
            std::make_unique<Server>(lt.loop(), o, [&](const ResponderPtr &s, const Request &r) {
                kept = s;
                s->stream(r.id, Json{{"n", 0}});
            });
        REQUIRE(srv->listen() == 0);
        Client c;
        REQUIRE(c.connect(o.path, scaled(2000)) == 0);
        send(c, R"({"id":1,"cmd":"events","args":{"follow":true}})"
                "\n");
        for (int i = 0; i < 100 && !kept; ++i) {
            uv_run(lt.loop(), UV_RUN_NOWAIT);
            std::this_thread::sleep_for(1ms);
        }
        REQUIRE(kept);
        bool called = false;
        kept->on_close([&] { called = true; });
        srv.reset(); // no close(), no loop run: the destructor must cope
        CHECK_FALSE(kept->stream(1, Json{{"n", 1}}));
        lt.stop(); // runs the loop until every handle is closed; uv_loop_close() must be 0
        CHECK_FALSE(called); // on_close callbacks are dropped with the server
        CHECK_FALSE(kept->open());
        kept.reset();
        remove_tree(dir);
    }

    TEST_CASE("the server's own log lines are throttled, and what was dropped is counted") {
        ServerOptions o;
        o.log_per_second = 3;
        Fixture f(o);
        f.listen_and_start();
        std::string big(max_request_line + 10, 'x');
        for (int i = 0; i < 10; ++i) {
            Client c = f.connect();
            c.send_all(big, scaled(2000)); // may fail once the server hangs up
            hello(c);
            CHECK(next(c)["error"]["code"] == "too_long");
            wait_closed(c, 2000);
        }
        REQUIRE(wait_until([&] { return f.logged("more log lines suppressed"); }, 3000));
        std::lock_guard lock(f.log_mu);
        int too_long = 0;
        for (auto &l : f.log_lines)
            if (l.find("too long") != std::string::npos) ++too_long;
        CHECK(too_long == 3);
        CHECK(f.log_lines.size() == 4); // three lines, then the count of the seven dropped
        CHECK(f.log_lines.back() == "control: 7 more log lines suppressed (at most 3 a second)");
    }

    TEST_CASE("listen: a stale socket is replaced, a live one is not, a non-socket is refused") {
        std::string dir = make_temp_dir();
        std::string path = dir + "/control.sock";
        // A leftover socket file with nobody listening.
        {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::strcpy(sa.sun_path, path.c_str());
            REQUIRE(bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
            close(fd);
        }
        LoopThread lt;
        ServerOptions o;
        o.path = path;
        Server first(lt.loop(), o, [](const ResponderPtr &, const Request &) {});
        std::string msg;
        REQUIRE_MESSAGE(first.listen(&msg) == 0, msg);

        Server second(lt.loop(), o, [](const ResponderPtr &, const Request &) {});
        CHECK(second.listen(&msg) == -EADDRINUSE);
        CHECK(msg.find("another vigild") != std::string::npos);
        second.close();

        ServerOptions plain = o;
        plain.path = dir + "/plain";
        REQUIRE(std::system(("touch '" + plain.path + "'").c_str()) == 0);
        Server third(lt.loop(), plain, [](const ResponderPtr &, const Request &) {});
        CHECK(third.listen(&msg) == -EEXIST);
        CHECK(msg.find("not a socket") != std::string::npos);
        third.close();

        ServerOptions longp = o;
        longp.path = "/tmp/" + std::string(200, 'a');
        Server fourth(lt.loop(), longp, [](const ResponderPtr &, const Request &) {});
        CHECK(fourth.listen(&msg) == -ENAMETOOLONG);
        fourth.close();

        bool done = false;
        lt.stop([&](std::function<void()> close_wake) {
            first.close([&, close_wake] {
                done = true;
                close_wake();
            });
        });
        CHECK(done);
        struct stat st {};
        CHECK(stat(path.c_str(), &st) != 0); // close() removed our socket file
        remove_tree(dir);
    }

    TEST_CASE("listen: the socket file appears only once it listens, by a rename") {
        std::string dir = make_temp_dir();
        std::string path = dir + "/control.sock";
        // A staging socket left by a vigild that died between bind and rename.
        {
            int fd = socket(AF_UNIX, SOCK_STREAM, 0);
            sockaddr_un sa{};
            sa.sun_family = AF_UNIX;
            std::strcpy(sa.sun_path, (path + ".new").c_str());
            REQUIRE(bind(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
            close(fd);
        }
        // inotify shows how the name came to be: created in place (a client may then connect
        // between bind and listen and be refused) or moved there once listening.
        int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        REQUIRE(in >= 0);
        REQUIRE(inotify_add_watch(in, dir.c_str(), IN_CREATE | IN_MOVED_TO) >= 0);
        LoopThread lt;
        ServerOptions o;
        o.path = path;
        Server server(lt.loop(), o, [](const ResponderPtr &, const Request &) {});
        std::string msg;
        REQUIRE_MESSAGE(server.listen(&msg) == 0, msg);
        std::vector<std::pair<std::uint32_t, std::string>> seen;
        alignas(inotify_event) char buf[4096];
        for (ssize_t n; (n = read(in, buf, sizeof buf)) > 0;)
            for (char *p = buf; p < buf + n;) {
                auto *ev = reinterpret_cast<inotify_event *>(p);
                seen.emplace_back(ev->mask & (IN_CREATE | IN_MOVED_TO),
                                  ev->len ? std::string(ev->name) : std::string());
                p += sizeof(inotify_event) + ev->len;
            }
        close(in);
        bool created_in_place = false, moved_in = false;
        for (auto &[mask, name] : seen) {
            if (name == "control.sock" && mask == IN_CREATE) created_in_place = true;
            if (name == "control.sock" && mask == IN_MOVED_TO) moved_in = true;
        }
        CHECK_FALSE(created_in_place);
        CHECK(moved_in);
        struct stat st {};
        CHECK(lstat((path + ".new").c_str(), &st) != 0); // the staging name is gone
        int c = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::strcpy(sa.sun_path, path.c_str());
        CHECK(connect(c, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0);
        close(c);

        // A staging name that is not a socket is somebody else's file: refused, not removed.
        ServerOptions other = o;
        other.path = dir + "/other.sock";
        REQUIRE(std::system(("touch '" + other.path + ".new'").c_str()) == 0);
        Server refused(lt.loop(), other, [](const ResponderPtr &, const Request &) {});
        CHECK(refused.listen(&msg) == -EEXIST);
        CHECK(msg.find("not a socket") != std::string::npos);
        refused.close();

        lt.stop([&](std::function<void()> close_wake) { server.close(close_wake); });
        remove_tree(dir);
    }

    TEST_CASE("peer credentials: other uids are refused, group members are read-only") {
        if (geteuid() != 0) {
            MESSAGE("skipped: needs root to run a client as uid 65534");
            return;
        }
        // The client side runs in a forked child that drops to uid/gid 65534. It is forked before
        // the loop thread starts, and reports what it saw through its exit status.
        auto run_child = [](const std::string &path, const char *mode) -> pid_t {
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid != 0) return pid;
            int code = 0;
            gid_t g = 65534;
            if (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 || setresuid(65534, 65534, 65534))
                _exit(10);
            Client c;
            if (c.connect(path, 5000) != 0) _exit(11);
            std::string line;
            auto read = [&]() -> Json {
                if (c.read_line(line, 5000) != 0) _exit(12);
                return Json::parse(line, nullptr, false);
            };
            if (read()["hello"] != "vigil") _exit(13);
            if (std::string(mode) == "denied") {
                c.send_all(R"({"id":1,"cmd":"version"})"
                           "\n",
                           5000);
                Json e = read();
                if (e["id"] != 1 || e["error"]["code"] != "forbidden") _exit(14);
                if (c.read_line(line, 5000) != -ECONNRESET) _exit(15); // then disconnected
            } else {
                c.send_all(R"({"id":1,"cmd":"status"})"
                           "\n",
                           5000);
                Json s = read();
                if (s["ok"] != true || s["result"]["read_only"] != true) _exit(16);
                c.send_all(R"({"id":2,"cmd":"stop","args":{"units":["web"]}})"
                           "\n",
                           5000);
                Json e = read();
                if (e["id"] != 2 || e["error"]["code"] != "forbidden") _exit(17);
                c.send_all(R"({"id":3,"cmd":"version"})"
                           "\n",
                           5000);
                if (read()["id"] != 3) _exit(18); // the connection stays usable
                // logs reopens a file with reopen: not read-only. Without, it reaches the
                // daemon (whose fake throws: an internal error).
                c.send_all(R"({"id":4,"cmd":"logs","args":{"unit":"web","reopen":true}})"
                           "\n",
                           5000);
                e = read();
                if (e["id"] != 4 || e["error"]["code"] != "forbidden") _exit(19);
                c.send_all(R"({"id":5,"cmd":"logs","args":{"unit":"web"}})"
                           "\n",
                           5000);
                e = read();
                if (e["id"] != 5 || e["error"]["code"] != "internal") _exit(20);
            }
            _exit(code);
        };
        auto wait_child = [](pid_t pid) {
            int status = 0;
            for (int i = 0; i < scaled(1000); ++i) {
                if (waitpid(pid, &status, WNOHANG) == pid)
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
                std::this_thread::sleep_for(10ms);
            }
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 101;
        };

        SUBCASE("not root, not our uid, not in the group: forbidden, then disconnected") {
            Fixture f;
            std::string msg;
            REQUIRE_MESSAGE(f.server->listen(&msg) == 0, msg);
            // Loosen the file modes as a careless administrator might: the credential check
            // must still refuse.
            REQUIRE(chmod(f.dir.c_str(), 0755) == 0);
            REQUIRE(chmod((f.dir + "/sub").c_str(), 0755) == 0);
            REQUIRE(chmod(f.path.c_str(), 0666) == 0);
            pid_t pid = run_child(f.path, "denied");
            f.lt.start();
            CHECK(wait_child(pid) == 0);
            CHECK(f.logged("refused uid 65534"));
            CHECK(f.daemon.handled == 0);
        }
        SUBCASE("a member of the socket group may run read-only commands only") {
            ServerOptions o;
            o.socket_group = 65534;
            Fixture f(o);
            std::string msg;
            REQUIRE_MESSAGE(f.server->listen(&msg) == 0, msg);
            struct stat st {};
            REQUIRE(stat(f.path.c_str(), &st) == 0);
            CHECK((st.st_mode & 07777) == 0660);
            CHECK(st.st_gid == 65534);
            REQUIRE(stat((f.dir + "/sub").c_str(), &st) == 0);
            CHECK((st.st_mode & 07777) == 0750);
            CHECK(st.st_gid == 65534);
            REQUIRE(chmod(f.dir.c_str(), 0755) == 0); // the mkdtemp folder above ours
            pid_t pid = run_child(f.path, "group");
            f.lt.start();
            CHECK(wait_child(pid) == 0);
            CHECK(f.logged("stop needs root"));
            CHECK(f.logged("logs with reopen needs root"));
            CHECK(f.daemon.handled == 3);
        }
    }

    TEST_CASE("at the descriptor limit, waiting clients cost no CPU; root gets in afterwards") {
        // The server runs in a forked child whose descriptor table is full: RLIMIT_NOFILE
        // lowered, then filled with dup()s. SIGUSR1 frees them. The child writes its log lines
        // to a file, so the test can see how much it logged.
        std::string dir = make_temp_dir();
        std::string path = dir + "/control.sock";
        std::string log_path = dir + "/log";
        int ready[2];
        REQUIRE(pipe(ready) == 0);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(ready[0]);
            uv_loop_t loop;
            uv_loop_init(&loop);
            FILE *log = std::fopen(log_path.c_str(), "w");
            ServerOptions o;
            o.path = path;
            o.log = [log](std::string_view l) {
                std::fprintf(log, "%.*s\n", static_cast<int>(l.size()), l.data());
                std::fflush(log);
            };
            Server srv(&loop, o, [](const auto &s, const Request &r) {
                s->reply(r.id, Json{{"server", "child"}});
            });
            if (srv.listen() != 0) _exit(20);
            static std::vector<int> filler;
            uv_signal_t usr1;
            uv_signal_init(&loop, &usr1);
            uv_signal_start(
                &usr1,
                [](uv_signal_t *, int) {
                    for (int fd : filler)
                        close(fd);
                    filler.clear();
                },
                SIGUSR1);
            rlimit lim{64, 64};
            if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(21);
            for (int fd; (fd = dup(0)) >= 0;)
                filler.push_back(fd);
            if (errno != EMFILE) _exit(22);
            if (write(ready[1], "r", 1) != 1) _exit(23);
            uv_run(&loop, UV_RUN_DEFAULT);
            _exit(0);
        }
        close(ready[1]);
        char c = 0;
        pollfd p{ready[0], POLLIN, 0};
        REQUIRE(poll(&p, 1, scaled(5000)) == 1);
        REQUIRE(read(ready[0], &c, 1) == 1);
        close(ready[0]);

        auto cpu_ms = [pid] {
            std::FILE *f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
            REQUIRE(f != nullptr);
            char buf[1024] = {};
            std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
            std::fclose(f);
            std::string st(buf, n);
            // Fields after the command name (in parentheses): state is 3rd, utime 14th, stime 15th.
            std::string rest = st.substr(st.rfind(')') + 2);
            std::vector<std::string> fields;
            for (std::size_t at = 0, sp; at < rest.size(); at = sp + 1) {
                sp = rest.find(' ', at);
                if (sp == std::string::npos) sp = rest.size();
                fields.push_back(rest.substr(at, sp - at));
            }
            long ticks = std::stol(fields[11]) + std::stol(fields[12]);
            return ticks * 1000 / sysconf(_SC_CLK_TCK);
        };
        std::vector<Client> waiting(40);
        for (auto &w : waiting)
            REQUIRE(w.connect(path, scaled(2000)) == 0);
        long before = cpu_ms();
        std::this_thread::sleep_for(1s);
        long used = cpu_ms() - before;
        MESSAGE("CPU used by the server at the descriptor limit over 1 s: " << used << " ms");
        CHECK(used < 200);

        REQUIRE(kill(pid, SIGUSR1) == 0);
        bool answered = false;
        for (int attempt = 0; attempt < 50 && !answered; ++attempt) {
            Client root;
            if (root.connect(path, scaled(2000)) == 0 && root.send_all(R"({"id":1,"cmd":"version"})"
                                                                       "\n",
                                                                       scaled(2000)) == 0) {
                std::string line;
                while (root.read_line(line, scaled(2000)) == 0) {
                    if (line.find("\"child\"") != std::string::npos) {
                        answered = true;
                        break;
                    }
                }
            }
            if (!answered) std::this_thread::sleep_for(20ms);
        }
        CHECK(answered);
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        struct stat st {};
        REQUIRE(stat(log_path.c_str(), &st) == 0);
        MESSAGE("the server logged " << st.st_size << " bytes");
        CHECK(st.st_size < 4096);
        remove_tree(dir);
    }

    TEST_CASE("a burst of connections while the loop does not run is queued, not refused") {
        // 600 clients connect while the server's loop does not run (vigild not scheduled). A
        // Unix socket refuses connect() with EAGAIN beyond the listen backlog, so with a short
        // one most of them, and root's vigilctl after them, would be turned away. All are
        // queued; once the loop runs, root gets its answer.
        Fixture f;
        std::string msg;
        REQUIRE_MESSAGE(f.server->listen(&msg) == 0, msg);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        std::memcpy(sa.sun_path, f.path.data(), f.path.size());
        std::vector<int> fds;
        int refused = 0;
        for (int i = 0; i < 600; ++i) {
            int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            REQUIRE(fd >= 0);
            if (connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof sa) == 0) {
                fds.push_back(fd);
            } else {
                CHECK(errno == EAGAIN);
                ++refused;
                close(fd);
            }
        }
        CHECK(refused == 0);
        f.lt.start();
        Client c = f.connect();
        hello(c);
        send(c, R"({"id":1,"cmd":"version"})"
                "\n");
        Json j = next(c);
        CHECK(j["id"] == 1);
        CHECK(j["result"]["server"] == "test");
        for (int fd : fds)
            close(fd);
    }

    TEST_CASE("listen refuses a socket folder that another user could control") {
        std::string dir = make_temp_dir();
        std::string sub = dir + "/s";
        auto try_listen = [&](std::optional<gid_t> group, std::string &msg) {
            LoopThread lt;
            ServerOptions o;
            o.path = sub + "/control.sock";
            o.socket_group = group;
            Server srv(lt.loop(), o, [](const auto &, const Request &) {});
            int r = srv.listen(&msg);
            lt.stop([&](std::function<void()> close_wake) { srv.close(close_wake); });
            return r;
        };
        std::string msg;
        SUBCASE("ours, 0700 or 0755: accepted") {
            REQUIRE(mkdir(sub.c_str(), 0700) == 0);
            CHECK(try_listen(std::nullopt, msg) == 0);
            REQUIRE(chmod(sub.c_str(), 0755) == 0);
            CHECK(try_listen(std::nullopt, msg) == 0);
        }
        SUBCASE("writable by group or others: refused, naming the mode") {
            REQUIRE(mkdir(sub.c_str(), 0700) == 0);
            for (mode_t m : {0770, 0707, 01777}) {
                REQUIRE(chmod(sub.c_str(), m) == 0);
                CHECK(try_listen(std::nullopt, msg) == -EPERM);
                CHECK(msg.find("writable by") != std::string::npos);
            }
        }
        SUBCASE("a symbolic link: refused") {
            REQUIRE(mkdir((dir + "/real").c_str(), 0700) == 0);
            REQUIRE(symlink((dir + "/real").c_str(), sub.c_str()) == 0);
            CHECK(try_listen(std::nullopt, msg) == -EPERM);
            CHECK(msg.find("symbolic link") != std::string::npos);
        }
        SUBCASE("owned by another user: refused, naming the owner") {
            if (geteuid() != 0) {
                MESSAGE("skipped: needs root to give a folder to uid 65534");
                return;
            }
            REQUIRE(mkdir(sub.c_str(), 0700) == 0);
            REQUIRE(chown(sub.c_str(), 65534, 65534) == 0);
            CHECK(try_listen(std::nullopt, msg) == -EPERM);
            CHECK(msg.find("owned by uid 65534") != std::string::npos);
            CHECK(msg.find("remove it") != std::string::npos);
        }
        SUBCASE("the --socket-group setup: ours, 0750, owned by the group: accepted") {
            if (geteuid() != 0) {
                MESSAGE("skipped: needs root to give a folder to group 65534");
                return;
            }
            REQUIRE(mkdir(sub.c_str(), 0750) == 0);
            REQUIRE(chown(sub.c_str(), 0, 65534) == 0);
            CHECK(try_listen(gid_t{65534}, msg) == 0);
            REQUIRE(chmod(sub.c_str(), 0770) == 0); // group members could replace the socket
            CHECK(try_listen(gid_t{65534}, msg) == -EPERM);
        }
        remove_tree(dir);
    }

    TEST_CASE("connection caps: per uid, then eviction; root always gets in") {
        if (geteuid() != 0) {
            MESSAGE("skipped: needs root to run clients as uid 65534");
            return;
        }
        // The clients of uid 65534 (a socket-group member) run in a forked child, forked
        // before the loop thread starts. It reports through its exit status; `ready` and `go`
        // order its steps against the test's own (root) clients.
        int ready[2], go[2];
        REQUIRE(pipe(ready) == 0);
        REQUIRE(pipe(go) == 0);
        auto as_nobody = [&](const std::function<int()> &body) -> pid_t {
            pid_t pid = fork();
            REQUIRE(pid >= 0);
            if (pid != 0) {
                close(ready[1]);
                close(go[0]);
                return pid;
            }
            close(ready[0]);
            close(go[1]);
            gid_t g = 65534;
            if (setgroups(1, &g) != 0 || setresgid(g, g, g) != 0 || setresuid(65534, 65534, 65534))
                _exit(10);
            _exit(body());
        };
        auto child_ready = [&] { return write(ready[1], "r", 1) == 1; };
        auto child_wait_go = [&] {
            pollfd p{go[0], POLLIN, 0};
            char c = 0;
            return poll(&p, 1, 10000) == 1 && read(go[0], &c, 1) == 1;
        };
        auto wait_ready = [&] {
            pollfd p{ready[0], POLLIN, 0};
            char c = 0;
            REQUIRE(poll(&p, 1, scaled(10000)) == 1);
            REQUIRE(read(ready[0], &c, 1) == 1);
        };
        auto wait_child = [](pid_t pid) {
            int status = 0;
            for (int i = 0; i < scaled(1000); ++i) {
                if (waitpid(pid, &status, WNOHANG) == pid)
                    return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
                std::this_thread::sleep_for(10ms);
            }
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return 101;
        };
        // Child-side helpers: a line, or an exit status.
        auto line_of = [](Client &c) -> Json {
            std::string line;
            if (c.read_line(line, 5000) != 0) return nullptr;
            return Json::parse(line, nullptr, false);
        };
        auto told = [&](Client &c, const char *needle) {
            Json e = line_of(c);
            std::string line;
            return e.is_object() && e["error"]["code"] == "internal" &&
                   e["error"]["message"].get<std::string>().find(needle) != std::string::npos &&
                   c.read_line(line, 5000) == -ECONNRESET;
        };
        auto version = [&](Client &c) {
            c.send_all(R"({"id":1,"cmd":"version"})"
                       "\n",
                       5000);
        };

        SUBCASE("idle sessions make room: the uid's own first, then anyone's for root") {
            ServerOptions o;
            o.max_sessions = 6;
            o.max_sessions_per_uid = 4;
            o.socket_group = 65534;
            Fixture f(o);
            REQUIRE(f.server->listen() == 0);
            REQUIRE(chmod(f.dir.c_str(), 0755) == 0);
            pid_t pid = as_nobody([&] {
                std::vector<Client> c(6);
                for (auto &x : c) {
                    if (x.connect(f.path, 5000) != 0) return 11;
                    if (line_of(x)["hello"] != "vigil") return 12;
                    std::this_thread::sleep_for(5ms);
                }
                // The 5th and 6th connection evicted the 1st and 2nd: idle, same uid.
                for (int i = 0; i < 2; ++i)
                    if (!told(c[i], "same user")) return 13 + i;
                for (int i = 2; i < 6; ++i) {
                    version(c[i]);
                    if (line_of(c[i])["id"] != 1) return 15;
                }
                if (!child_ready() || !child_wait_go()) return 16;
                // The server was full when root's third connection came: the session idle the
                // longest (c[2], answered first) made room.
                if (!told(c[2], "too many connections")) return 17;
                version(c[3]);
                if (line_of(c[3])["id"] != 1) return 18;
                return 0;
            });
            f.lt.start();
            wait_ready();
            Client r1 = f.connect(), r2 = f.connect();
            hello(r1);
            hello(r2);
            Client r3 = f.connect();
            hello(r3);
            send(r3, R"({"id":3,"cmd":"version"})"
                     "\n");
            CHECK(next(r3)["id"] == 3);
            REQUIRE(write(go[1], "g", 1) == 1);
            CHECK(wait_child(pid) == 0);
            CHECK(f.lt.call([&] { return f.server->evicted_total(); }) == 3);
            CHECK(f.lt.call([&] { return f.server->refused_total(); }) == 0);
            CHECK(f.logged("evicting uid 65534"));
        }
        SUBCASE("busy sessions: a uid at its cap is refused; root evicts a follower") {
            ServerOptions o;
            o.max_sessions = 3;
            o.max_sessions_per_uid = 2;
            o.socket_group = 65534;
            Fixture f(o);
            REQUIRE(f.server->listen() == 0);
            REQUIRE(chmod(f.dir.c_str(), 0755) == 0);
            pid_t pid = as_nobody([&] {
                std::vector<Client> c(3);
                for (int i = 0; i < 2; ++i) {
                    if (c[i].connect(f.path, 5000) != 0) return 11;
                    c[i].send_all(R"({"id":1,"cmd":"events","args":{"follow":true}})"
                                  "\n",
                                  5000);
                    if (line_of(c[i])["hello"] != "vigil") return 12;
                    if (line_of(c[i])["stream"]["n"] != 0) return 13;
                }
                // Both of the uid's sessions are busy: the third is turned away.
                if (c[2].connect(f.path, 5000) != 0) return 14;
                if (line_of(c[2])["hello"] != "vigil") return 15;
                if (!told(c[2], "already has 2 connections")) return 16;
                if (!child_ready() || !child_wait_go()) return 17;
                // Root's connection found nobody idle: the follower connected first went.
                if (!told(c[0], "too many connections")) return 18;
                return 0;
            });
            f.lt.start();
            wait_ready();
            Client r1 = f.connect();
            send(r1, R"({"id":1,"cmd":"events","args":{"follow":true}})"
                     "\n");
            hello(r1);
            CHECK(next(r1)["stream"]["n"] == 0);
            Client r2 = f.connect();
            hello(r2);
            send(r2, R"({"id":2,"cmd":"version"})"
                     "\n");
            CHECK(next(r2)["id"] == 2);
            REQUIRE(write(go[1], "g", 1) == 1);
            CHECK(wait_child(pid) == 0);
            CHECK(f.lt.call([&] { return f.server->evicted_total(); }) == 1);
            CHECK(f.lt.call([&] { return f.server->refused_total(); }) == 1);
            CHECK(f.logged("(busy)"));
            CHECK(f.logged("refusing uid 65534"));
        }
        close(ready[0]);
        close(go[1]);
    }

    // A re-exec's stand-in (src/daemon/uv_standin.cpp) holds what it does not answer; the
    // next vigild takes the listener and the connection and answers the held request first.
    TEST_CASE("stand-in: a held request and what follows it go, unanswered, to the next server") {
        ServerOptions o;
        o.hold = [](const Request &r) { return r.cmd == Cmd::Stop; };
        Fixture f(std::move(o));
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        send(c, "{\"id\":1,\"cmd\":\"status\",\"args\":{\"units\":[\"x\"]}}\n"
                "{\"id\":2,\"cmd\":\"stop\",\"args\":{\"units\":[\"y\"]}}\n"
                "{\"id\":3,\"cmd\":\"status\",\"args\":{\"units\":[\"z\"]}}\n{\"id\":4,");
        CHECK(next(c)["id"] == 1);
        const std::string held = "{\"id\":2,\"cmd\":\"stop\",\"args\":{\"units\":[\"y\"]}}\n";
        std::vector<Server::CarriedSession> carried;
        CHECK(wait_until(
            [&] {
                carried = f.lt.call([&] { return f.server->carriable_sessions(); });
                return carried.size() == 1 && carried[0].pending.rfind(held, 0) == 0;
            },
            2000));
        REQUIRE(carried.size() == 1);
        CHECK(f.daemon.handled == 1); // the status only: the stop and the rest wait, unread

        FakeDaemon next_daemon;
        ServerOptions no;
        no.path = f.path;
        Server next_server(
            f.lt.loop(), std::move(no),
            [&](const ResponderPtr &s, const Request &r) { next_daemon.handle(s, r); });
        next_daemon.server = &next_server;
        f.lt.call([&] {
            // As an exec carries them: the listener and the connection, each a descriptor of
            // the same socket.
            REQUIRE(next_server.adopt(::dup(f.server->fd())) == 0);
            next_server.adopt_session(::dup(carried[0].fd), carried[0].pending);
            CHECK(f.server->hand_over() == 0);
        });
        Json stopped = next(c);
        CHECK(stopped["id"] == 2);
        CHECK(stopped["result"]["stopped"] == Json{"y"});
        CHECK(next(c)["id"] == 3);
        send(c, "\"cmd\":\"version\"}\n");
        CHECK(next(c)["id"] == 4);
        CHECK(f.daemon.handled == 1);
        CHECK(next_daemon.handled == 3);
        // The socket file stays (the next server listens on it), and new clients reach it.
        struct stat st {};
        CHECK(stat(f.path.c_str(), &st) == 0);
        Client c2 = f.connect();
        hello(c2);
        send(c2, "{\"id\":5,\"cmd\":\"version\"}\n");
        CHECK(next(c2)["id"] == 5);
        CHECK(next_daemon.handled == 4);
        std::atomic<bool> closed{false};
        f.lt.call([&] { next_server.close([&] { closed = true; }); });
        CHECK(wait_until([&] { return closed.load(); }, 2000));
    }

    TEST_CASE("stand-in: a request held behind an unread answer, or when nobody takes it, is "
              "answered: send it again") {
        ServerOptions o;
        o.hold = [](const Request &r) { return r.cmd == Cmd::Stop; };
        Fixture f(std::move(o));
        f.listen_and_start();
        // Behind a 1 MiB answer the client has not read: not carriable; the stand-in finishes
        // the answer, then says what became of the held request, then closes.
        Client c = f.connect();
        hello(c);
        send(c, "{\"id\":1,\"cmd\":\"status\",\"args\":{\"units\":[\"big\"]}}\n"
                "{\"id\":2,\"cmd\":\"stop\",\"args\":{\"units\":[\"y\"]}}\n");
        // Nothing else is held, so it is the only session left to write.
        CHECK(wait_until([&] { return f.daemon.handled == 1; }, 2000));
        CHECK(f.lt.call([&] { return f.server->carriable_sessions().size(); }) == 0);
        // A client that only stopped: held, and carriable until nobody takes it.
        Client idle = f.connect();
        hello(idle);
        send(idle, "{\"id\":7,\"cmd\":\"stop\",\"args\":{\"units\":[\"y\"]}}\n");
        CHECK(wait_until(
            [&] { return f.lt.call([&] { return f.server->carriable_sessions().size(); }) == 1; },
            2000));
        // Left to finish: the big answer (the idle client's error went out at once).
        CHECK(f.lt.call([&] { return f.server->hand_over(true); }) == 1);
        Json big = next(c, 10000);
        CHECK(big["id"] == 1);
        Json e = next(c);
        CHECK(e["id"] == 2);
        CHECK(e["error"]["code"] == "internal");
        CHECK(e["error"]["message"].get<std::string>().find("send it again") != std::string::npos);
        wait_closed(c, 3000);
        Json e7 = next(idle);
        CHECK(e7["id"] == 7);
        CHECK(e7["error"]["message"].get<std::string>().find("did not come to an end in time") !=
              std::string::npos);
        wait_closed(idle, 3000);
        CHECK(f.daemon.handled == 1);
    }

    TEST_CASE("lookup_group accepts names and numbers") {
        std::string err;
        CHECK(lookup_group("0", &err) == gid_t{0});
        CHECK(lookup_group("root", &err) == gid_t{0});
        CHECK(!lookup_group("no-such-group-vigil", &err));
        CHECK(err.find("no-such-group-vigil") != std::string::npos);
    }

} // TEST_SUITE
