// Metrics rendering, routing and response formatting (pure).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "vigil/http/metrics.hpp"
#include "vigil/http/server.hpp"

using namespace vigil::http;

namespace {

Snapshot sample() {
    Snapshot s;
    s.daemon.version = "0.1.0";
    s.daemon.rss_bytes = 4096 * 100;
    s.daemon.open_fds = 12;
    UnitFigures db;
    db.name = "db";
    db.state = "running";
    db.goal_up = db.up = db.ready = true;
    db.uptime_seconds = 12.5;
    UnitFigures web;
    web.name = "web";
    web.state = "backoff";
    web.goal_up = true;
    web.restarts_total = 3;
    web.last_exit_code = 137;
    web.probe_failures_total = 9;
    s.units = {db, web};
    return s;
}

} // namespace

TEST_SUITE("http") {
    TEST_CASE("metrics: families, types and samples") {
        std::string m = render_metrics(sample());
        CHECK(m.find("# TYPE vigil_build_info gauge\nvigil_build_info{version=\"0.1.0\"} 1\n") !=
              std::string::npos);
        CHECK(m.find("process_resident_memory_bytes 409600\n") != std::string::npos);
        CHECK(m.find("process_open_fds 12\n") != std::string::npos);
        CHECK(m.find("vigil_units{state=\"running\"} 1\nvigil_units{state=\"stopping\"} 0\n"
                     "vigil_units{state=\"backoff\"} 1\n") != std::string::npos);
        CHECK(m.find("vigil_unit_up{unit=\"db\"} 1\nvigil_unit_up{unit=\"web\"} 0\n") !=
              std::string::npos);
        CHECK(m.find("# TYPE vigil_unit_restarts_total counter\n") != std::string::npos);
        CHECK(m.find("vigil_unit_restarts_total{unit=\"web\"} 3\n") != std::string::npos);
        // Only units that exited have a last exit code.
        CHECK(m.find("vigil_unit_last_exit_code{unit=\"web\"} 137\n") != std::string::npos);
        CHECK(m.find("vigil_unit_last_exit_code{unit=\"db\"}") == std::string::npos);
        CHECK(m.find("vigil_unit_probe_failures_total{unit=\"web\"} 9\n") != std::string::npos);
        CHECK(m.find("vigil_unit_uptime_seconds{unit=\"db\"} 12.5\n") != std::string::npos);
        CHECK(m.find("vigil_unit_state{unit=\"web\",state=\"backoff\"} 1\n") != std::string::npos);
        CHECK(m.find("vigil_unit_state{unit=\"web\",state=\"running\"} 0\n") != std::string::npos);
        CHECK(m.back() == '\n');
    }

    TEST_CASE("metrics: every family has HELP then TYPE, and its samples are contiguous") {
        std::string m = render_metrics(sample());
        std::vector<std::string> seen;
        std::string current;
        std::size_t pos = 0;
        while (pos < m.size()) {
            auto nl = m.find('\n', pos);
            REQUIRE(nl != std::string::npos);
            std::string line = m.substr(pos, nl - pos);
            pos = nl + 1;
            if (line.rfind("# HELP ", 0) == 0) {
                current = line.substr(7, line.find(' ', 7) - 7);
                CHECK(std::find(seen.begin(), seen.end(), current) == seen.end());
                seen.push_back(current);
                continue;
            }
            if (line.rfind("# TYPE " + current + " ", 0) == 0) continue;
            auto name = line.substr(0, line.find_first_of("{ "));
            CHECK_MESSAGE(name == current, line);
        }
        CHECK(seen.size() == 11);
    }

    TEST_CASE("metrics: an unknown state is reported too; no units still renders") {
        Snapshot s;
        s.daemon.version = "x";
        UnitFigures u;
        u.name = "odd";
        u.state = "weird";
        s.units = {u};
        std::string m = render_metrics(s);
        CHECK(m.find("vigil_units{state=\"weird\"} 1\n") != std::string::npos);
        CHECK(m.find("vigil_unit_state{unit=\"odd\",state=\"weird\"} 1\n") != std::string::npos);
        std::string empty = render_metrics(Snapshot{});
        CHECK(empty.find("vigil_units{state=\"running\"} 0\n") != std::string::npos);
        CHECK(empty.find("process_open_fds") == std::string::npos); // unknown: not reported
    }

    TEST_CASE("label escaping") {
        CHECK(escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
        CHECK(escape_label("web@1") == "web@1");
    }

    TEST_CASE("readyz: 503 naming the units that should run but are not ready, then 200") {
        Snapshot s = sample();
        Handlers h{[&] { return s; }, {}};
        Response r = route("GET", "/readyz", h);
        CHECK(r.status == 503);
        CHECK(r.content_type == "application/json");
        auto j = nlohmann::json::parse(r.body);
        CHECK(j["ready"] == false);
        CHECK(j["not_ready"] == nlohmann::json::array({"web"}));
        // Stopped on purpose (goal down) does not count.
        s.units[1].goal_up = false;
        r = route("GET", "/readyz?verbose=1", h);
        CHECK(r.status == 200);
        CHECK(nlohmann::json::parse(r.body)["not_ready"].empty());
        // Running but not ready counts.
        s.units[0].ready = false;
        CHECK(route("HEAD", "/readyz", h).status == 503);
    }

    TEST_CASE("routes: healthz, status, metrics content type, 404, 405") {
        Handlers h{[] { return Snapshot{}; }, [] { return std::string("{\"units\":[]}\n"); }};
        Response r = route("GET", "/healthz", h);
        CHECK(r.status == 200);
        CHECK(r.body == "ok\n");
        r = route("GET", "/status", h);
        CHECK(r.body == "{\"units\":[]}\n");
        CHECK(r.content_type == "application/json");
        CHECK(route("GET", "/metrics", h).content_type ==
              "text/plain; version=0.0.4; charset=utf-8");
        CHECK(route("GET", "/", h).status == 404);
        CHECK(route("GET", "/healthz/x", h).status == 404);
        r = route("POST", "/healthz", h);
        CHECK(r.status == 405);
        CHECK(r.allow == "GET, HEAD");
    }

    TEST_CASE("response bytes") {
        Response r;
        r.body = "ok\n";
        CHECK(render_response(r, false, true) ==
              "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
              "Cache-Control: no-store\r\nConnection: keep-alive\r\n\r\nok\n");
        r.status = 503;
        std::string head = render_response(r, true, false);
        CHECK(head.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
        CHECK(head.find("Content-Length: 3\r\n") != std::string::npos);
        CHECK(head.find("Connection: close\r\n\r\n") == head.size() - 21);
    }

    TEST_CASE("listen addresses") {
        using P = std::pair<std::string, int>;
        CHECK(parse_listen_address("127.0.0.1:9100") == P{"127.0.0.1", 9100});
        CHECK(parse_listen_address("[::1]:80") == P{"::1", 80});
        CHECK(parse_listen_address(":9100") == P{"0.0.0.0", 9100});
        CHECK(parse_listen_address("localhost:0") == P{"localhost", 0});
        CHECK_FALSE(parse_listen_address("127.0.0.1"));
        CHECK_FALSE(parse_listen_address("127.0.0.1:65536"));
        CHECK_FALSE(parse_listen_address("127.0.0.1:9x"));
        CHECK_FALSE(parse_listen_address("::1:80"));
        CHECK_FALSE(parse_listen_address("[::1]80"));
    }

    TEST_CASE("statm parsing") {
        CHECK(parse_statm_resident("1000 250 30 1 0 100 0\n") == 250u);
        CHECK_FALSE(parse_statm_resident("garbage"));
    }
}
