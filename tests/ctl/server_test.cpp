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
    std::vector<SessionPtr> flood;   // sessions receiving a flood of stream items
    std::vector<SessionPtr> streams; // quiet follow streams
    std::size_t max_pending = 0;     // the most unsent output any flooded session had
    std::atomic<int> closed{0};      // on_close callbacks run
    std::atomic<int> handled{0};
    uv_timer_t pusher{};
    bool pusher_on = false;
    SessionPtr kept; // a session kept after it closed

    void handle(const SessionPtr &s, const Request &r) {
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
                        d->max_pending = std::max(d->max_pending, s->pending_output());
                    }
                }
                std::erase_if(d->flood, [](const SessionPtr &s) { return !s->open(); });
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
            [this](const SessionPtr &s, const Request &r) { daemon.handle(s, r); });
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

    TEST_CASE("a line over 1 MiB gets too_long and a disconnect; others are served meanwhile") {
        Fixture f;
        f.listen_and_start();
        Client c = f.connect();
        hello(c);
        std::string chunk(64 * 1024, 'x');
        // Send until the server has seen more than 1 MiB; it may close while we are sending.
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
        std::size_t max_pending = f.lt.call([&] { return f.daemon.max_pending; });
        CHECK(max_pending <= o.max_output);
        CHECK(max_pending > 0);
        // The slow client finds its connection closed once it reads what the socket held.
        std::string line;
        int r = 0;
        for (int i = 0; i < 100000 && (r = slow.read_line(line, scaled(2000))) == 0; ++i) {
        }
        CHECK(r == -ECONNRESET);
        CHECK(f.lt.call([&] { return f.server->session_count(); }) == 1);
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

    TEST_CASE("connections over max_sessions are refused with an error") {
        ServerOptions o;
        o.max_sessions = 2;
        Fixture f(o);
        f.listen_and_start();
        Client a = f.connect(), b = f.connect();
        hello(a);
        hello(b);
        Client c = f.connect();
        hello(c);
        Json e = next(c);
        CHECK(e["error"]["code"] == "internal");
        CHECK(e["error"]["message"].get<std::string>().find("too many") != std::string::npos);
        wait_closed(c, 2000);
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
        Server first(lt.loop(), o, [](const SessionPtr &, const Request &) {});
        std::string msg;
        REQUIRE_MESSAGE(first.listen(&msg) == 0, msg);

        Server second(lt.loop(), o, [](const SessionPtr &, const Request &) {});
        CHECK(second.listen(&msg) == -EADDRINUSE);
        CHECK(msg.find("another vigild") != std::string::npos);
        second.close();

        ServerOptions plain = o;
        plain.path = dir + "/plain";
        REQUIRE(std::system(("touch '" + plain.path + "'").c_str()) == 0);
        Server third(lt.loop(), plain, [](const SessionPtr &, const Request &) {});
        CHECK(third.listen(&msg) == -EEXIST);
        CHECK(msg.find("not a socket") != std::string::npos);
        third.close();

        ServerOptions longp = o;
        longp.path = "/tmp/" + std::string(200, 'a');
        Server fourth(lt.loop(), longp, [](const SessionPtr &, const Request &) {});
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
            CHECK(f.daemon.handled == 2);
        }
    }

    TEST_CASE("lookup_group accepts names and numbers") {
        std::string err;
        CHECK(lookup_group("0", &err) == gid_t{0});
        CHECK(lookup_group("root", &err) == gid_t{0});
        CHECK(!lookup_group("no-such-group-vigil", &err));
        CHECK(err.find("no-such-group-vigil") != std::string::npos);
    }

} // TEST_SUITE
