// Every bound of bounds.hpp, just below (the unit loads) and just above (one diagnostic at the
// value, naming the bound and what was given), on units built in code.
#include <doctest/doctest.h>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "temp_units.hpp"
#include "vigil/unit/bounds.hpp"
#include "vigil/unit/unit.hpp"

using namespace vigil;
using namespace vigil::unit;
using nlohmann::json;
using vigil::unit::test::diagnostics_text;
using vigil::unit::test::TempUnits;

namespace {

std::string str(std::size_t n, char c = 'a') {
    return std::string(n, c);
}

json strings(std::size_t n) {
    return json(std::vector<std::string>(n, "x"));
}

json members(std::size_t n) {
    json o = json::object();
    for (std::size_t i = 0; i < n; ++i)
        o["V" + std::to_string(i)] = "";
    return o;
}

json patterns(std::size_t n) {
    json a = json::array();
    for (std::size_t i = 0; i < n; ++i)
        a.push_back({{"match", "x" + std::to_string(i)}});
    return a;
}

const json service = {{"command", {"true"}}};
const json supervisor = {{"kind", "supervisor"}};

json with(json base, const char *key, json value) {
    base[key] = std::move(value);
    return base;
}

struct Row {
    json base;       // a valid unit
    std::string ptr; // the field the row sets
    json below;      // at the bound: valid
    json above;      // past it: one diagnostic ...
    std::string at;  // ... at this field (empty: ptr)
    std::string message;
};

const std::vector<Row> &rows() {
    const json probe = {{"tcp", {{"port", 1}}}};
    const json http = {{"http", {{"port", 1}}}};
    const json backoff = {{"max", "1d"}};
    static const std::vector<Row> all{
        // durations: every field at most 1d, a pattern's window 365d
        {service, "/watchdog", "1d", "1d1ms", "", R"(must be at most 1d; got "1d1ms")"},
        {service, "/watchdog", "24h", "50000000000d", "",
         R"(must be at most 1d; got "50000000000d")"},
        {service, "/stop/timeout", "24h", "24h1ms", "", R"(must be at most 1d; got "24h1ms")"},
        {with(service, "backoff", backoff), "/backoff/initial", "1d", "1d1s", "",
         R"(must be at most 1d; got "1d1s")"},
        {service, "/backoff/max", "1d", "25h", "", R"(must be at most 1d; got "25h")"},
        {service, "/backoff/reset_after", "1d", "2d", "", R"(must be at most 1d; got "2d")"},
        {with(service, "ready", {{"notify", true}}), "/ready/timeout", "86400000ms", "86400001ms",
         "", R"(must be at most 1d; got "86400001ms")"},
        {with(service, "liveness", probe), "/liveness/initial_delay", "1d", "1d1ms", "",
         R"(must be at most 1d; got "1d1ms")"},
        {with(service, "liveness", probe), "/liveness/period", "1d", "1d1ms", "",
         R"(must be at most 1d; got "1d1ms")"},
        {with(service, "liveness", probe), "/liveness/timeout", "1440m", "1440m1ms", "",
         R"(must be at most 1d; got "1440m1ms")"},
        {supervisor, "/period", "1d", "1d1ms", "", R"(must be at most 1d; got "1d1ms")"},
        {with(service, "patterns", patterns(1)), "/patterns/0/within", "365d", "365d1ms", "",
         R"(must be at most 365d; got "365d1ms")"},
        {with(service, "patterns", patterns(1)), "/patterns/0/within", "365d",
         "99999999999999999999d", "", R"(must be at most 365d; got "99999999999999999999d")"},
        // sizes
        {service, "/logs/ring", "64MiB", 67108865, "", "must be at most 64MiB; got 67108865"},
        {service, "/logs/ring", 0, "1TiB", "", R"(must be at most 64MiB; got "1TiB")"},
        {service, "/logs/max_line", "1MiB", "1025KiB", "",
         R"(must be at most 1MiB; got "1025KiB")"},
        {service, "/logs/max_line", "1M", "4GiB", "", R"(must be at most 1MiB; got "4GiB")"},
        {service, "/logs/max_size", "1TiB", "1025GiB", "",
         R"(must be at most 1TiB; got "1025GiB")"},
        {service, "/logs/max_size", 4096, "18446744073709551616", "",
         R"(must be at most 1TiB; got "18446744073709551616")"},
        // counts and numbers
        {service, "/logs/keep", 1000, 1001, "", "must be at most 1000; got 1001"},
        {service, "/instances", 10000, 10001, "", "must be at most 10000; got 10001"},
        {supervisor, "/intensity", 1000000, 1000001, "", "must be at most 1000000; got 1000001"},
        {with(service, "liveness", probe), "/liveness/failure_threshold", 1000000, 1000001, "",
         "must be at most 1000000; got 1000001"},
        {with(service, "readiness", probe), "/readiness/success_threshold", 1000000, 1000001, "",
         "must be at most 1000000; got 1000001"},
        {with(service, "patterns", patterns(1)), "/patterns/0/count", 10000, 10001, "",
         "must be at most 10000; got 10001"},
        {service, "/backoff/factor", 100, 100.5, "", "must be between 1.0 and 100.0; got 100.5"},
        {service, "/backoff/jitter", 1, 1.01, "", "must be between 0.0 and 1.0; got 1.01"},
        {service, "/umask", "0777", "1000", "",
         R"(expected an octal string like "0022"; got "1000")"},
        {with(service, "ready", json::object()), "/ready/fd", 1023, 1024, "",
         "must be at most 1023; got 1024"},
        {with(service, "liveness", probe), "/liveness/tcp/port", 65535, 65536, "",
         "must be at most 65535; got 65536"},
        {service,
         "/limits/core",
         {{"soft", 5}, {"hard", 5}},
         {{"soft", 6}, {"hard", 5}},
         "/limits/core/soft",
         R"(must not exceed "hard")"},
        // arrays, objects and their strings
        {service, "/command", strings(4096), strings(4097), "",
         "must have at most 4096 items; got 4097"},
        {service, "/command/0", str(131071), str(131072), "",
         "must be at most 131071 bytes long; got 131072 bytes"},
        {service,
         "/command",
         {str(131071), str(131071)},
         {str(131071), str(131071), ""},
         "",
         "the command and env make 262145 bytes of execve arguments; at most 262144 are "
         "allowed (pass large data in a file instead)"},
        {with(service, "liveness", json::object()),
         "/liveness/exec",
         {str(131071), str(131071)},
         {str(131071), str(131071), ""},
         "",
         "makes 262145 bytes of execve arguments; at most 262144 are allowed (pass large data "
         "in a file instead)"},
        {service, "/env", members(4096), members(4097), "",
         "must have at most 4096 members; got 4097"},
        {service, "/env/A", str(131069), str(131070), "",
         "NAME=value must be at most 131071 bytes long (execve's limit for one string); got "
         "131072 bytes"},
        {service, "/patterns", patterns(64), patterns(65), "",
         "must have at most 64 items; got 65"},
        {with(service, "liveness", http), "/liveness/http/headers", members(64), members(65), "",
         "must have at most 64 members; got 65"},
        {with(service, "liveness", http),
         "/liveness/http/headers",
         {{str(256), "v"}},
         {{str(257), "v"}},
         "/liveness/http/headers/" + str(257),
         "the name must be at most 256 bytes long; got 257 bytes"},
        {with(service, "liveness", http), "/liveness/http/headers/X", str(4096), str(4097), "",
         "must be at most 4096 bytes long; got 4097 bytes"},
        {with(service, "liveness", http), "/liveness/http/path", "/" + str(4095), "/" + str(4096),
         "", "must be at most 4096 bytes long; got 4097 bytes"},
        {with(service, "liveness", probe), "/liveness/tcp/host", str(255), str(256), "",
         "must be at most 255 bytes long; got 256 bytes"},
        {service, "/cwd", "/" + str(4094), "/" + str(4095), "",
         "must be at most 4095 bytes long; got 4096 bytes"},
        {service, "/logs/file", "/" + str(4094), "/" + str(4095), "",
         "must be at most 4095 bytes long; got 4096 bytes"},
        {service, "/env_file", "-/" + str(4094), "-/" + str(4095), "",
         "must be at most 4095 bytes long; got 4096 bytes"},
        {service, "/description", str(1024), str(1025), "",
         "must be at most 1024 bytes long; got 1025 bytes"},
        {with(service, "ready", json::object()), "/ready/log", str(4096), str(4097), "",
         "must be at most 4096 bytes long; got 4097 bytes"},
        {with(service, "patterns", patterns(1)), "/patterns/0/match", str(4096), str(4097), "",
         "must be at most 4096 bytes long; got 4097 bytes"},
        {service, "/$schema", str(4096), str(4097), "",
         "must be at most 4096 bytes long; got 4097 bytes"},
        // what C and HTTP cannot carry
        {service, "/command/0", "ab", std::string("a\0b", 3), "",
         R"(must not contain a NUL character (\u0000))"},
        {service,
         "/env",
         {{"A", "b"}},
         {{std::string("A\0", 2), "b"}},
         "/env/" + std::string("A\0", 2),
         R"(the name must not contain a NUL character (\u0000))"},
        {with(service, "liveness", http),
         "/liveness/http/headers",
         {{"X-Y", "v"}},
         {{"X Y", "v"}},
         "/liveness/http/headers/X Y",
         R"(a header name is a token: letters, digits and !#$%&'*+-.^_`|~; got "X Y")"},
        {with(service, "liveness", http), "/liveness/http/headers/X", "a\tb", "a\r\nb", "",
         "must not contain control characters (CR or LF would end the header)"},
        {with(service, "liveness", http), "/liveness/http/path", "/a%20b", "/a b", "",
         R"(must not contain spaces or control characters (percent-encode them); got "/a b")"},
    };
    return all;
}

LoadResult load_one(const TempUnits &t, const json &unit) {
    t.write("web.json", unit.dump());
    return t.load();
}

} // namespace

TEST_SUITE("unit") {

    TEST_CASE("every bound: the value at the bound loads, one past it is one diagnostic") {
        TempUnits t;
        for (const Row &row : rows()) {
            std::string above = row.above.dump();
            CAPTURE(row.ptr);
            CAPTURE(above.substr(0, 80));
            json unit = row.base;
            unit[json::json_pointer(row.ptr)] = row.below;
            LoadResult ok = load_one(t, unit);
            CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
            unit = row.base;
            unit[json::json_pointer(row.ptr)] = row.above;
            LoadResult bad = load_one(t, unit);
            CHECK_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
            if (bad.diagnostics.size() != 1) continue;
            const Diagnostic &d = bad.diagnostics[0];
            CHECK(d.file == (t.dir() / "web.json").string());
            CHECK(d.line == 1); // dump() writes one line
            CHECK(d.column > 1);
            CHECK(d.field == (row.at.empty() ? row.ptr : row.at));
            CHECK(d.message == row.message);
        }
    }

    TEST_CASE("after: at most 1024 names") {
        TempUnits t;
        json after = json::array();
        for (int i = 0; i < 1025; ++i) {
            std::string name = "p" + std::to_string(i);
            t.write(name + ".json", R"({"command": ["true"]})");
            after.push_back(name);
        }
        json unit = service;
        unit["after"] = after;
        LoadResult bad = load_one(t, unit);
        REQUIRE_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
        CHECK(bad.diagnostics[0].field == "/after");
        CHECK(bad.diagnostics[0].message == "must have at most 1024 items; got 1025");
        unit["after"].erase(1024);
        LoadResult ok = load_one(t, unit);
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
    }

    TEST_CASE("a user or group name: at most 256 bytes") {
        TempUnits t;
        for (const char *key : {"user", "group"}) {
            CAPTURE(key);
            LoadResult bad = load_one(t, with(service, key, str(257)));
            REQUIRE_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
            CHECK(bad.diagnostics[0].field == std::string("/") + key);
            CHECK(bad.diagnostics[0].message == "must be at most 256 bytes long; got 257 bytes");
            // 256 bytes pass the length check (and then name no user or group on this system).
            LoadResult longest = load_one(t, with(service, key, str(256)));
            CHECK(diagnostics_text(longest).find("bytes long") == std::string::npos);
        }
    }

    TEST_CASE("at most 1000 diagnostics are kept; one more says how many were not") {
        TempUnits t;
        json unit = service;
        for (int i = 0; i < 1000; ++i)
            unit["unknown" + std::to_string(i)] = 1;
        LoadResult at = load_one(t, unit);
        CHECK(at.diagnostics.size() == 1000);
        CHECK(at.problems == 1000);
        unit["unknown1000"] = 1;
        LoadResult past = load_one(t, unit);
        REQUIRE(past.diagnostics.size() == 1001);
        CHECK(past.problems == 1001); // the count says all of them, not the lines shown
        CHECK(count_problems(past.problems) == "1001 problems");
        CHECK(count_problems(1) == "1 problem");
        CHECK(format(past.diagnostics.back()) ==
              "1 more problem not shown (the first 1000 are): fix these and check again");
        CHECK(past.diagnostics[999].file == (t.dir() / "web.json").string());
    }

    TEST_CASE("input strings in messages are escaped and shortened") {
        TempUnits t;
        json unit = service;
        unit[str(200'000, 'x')] = 1; // no "did you mean" table of 200,000 x 16 per field
        unit["\x1b[31mred"] = 1;     // no escape sequence reaches a terminal
        LoadResult r = load_one(t, unit);
        REQUIRE(r.diagnostics.size() == 2);
        CHECK(r.diagnostics[0].message == "unknown field \"\\u001b[31mred\"");
        CHECK(r.diagnostics[1].message == "unknown field \"" + str(56, 'x') + "...");
    }

    TEST_CASE("unit names: at most 64 bytes") {
        TempUnits t;
        t.write(str(64) + ".json", R"({"command": ["true"]})");
        LoadResult ok = t.load();
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
        t.write(str(65) + ".json", R"({"command": ["true"]})");
        LoadResult bad = t.load();
        REQUIRE(bad.diagnostics.size() == 1);
        CHECK(format(bad.diagnostics[0]) ==
              (t.dir() / (str(65) + ".json")).string() + ": unit name \"" + str(56) +
                  "... (the file name without .json) is 65 bytes long; at most 64 are allowed");
    }

    TEST_CASE("the tree: at most 20000 children with instances expanded") {
        TempUnits t;
        t.write("a.json", R"({"command": ["true"], "instances": 10000})");
        t.write("b.json", R"({"command": ["true"], "instances": 9999})");
        t.write("c.json", R"({"command": ["true"]})");
        LoadResult ok = t.load();
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
        CHECK(ok.tree.nodes.size() == 20001); // and the root
        t.write("b.json", R"({"command": ["true"], "instances": 10000})");
        LoadResult bad = t.load();
        REQUIRE_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
        CHECK(bad.diagnostics[0].file == (t.dir() / "a.json").string()); // the largest, first
        CHECK(bad.diagnostics[0].field == "/instances");
        CHECK(bad.diagnostics[0].line == 1);
        CHECK(bad.diagnostics[0].message == "with instances expanded the tree would have 20001 "
                                            "children; at most 20000 are allowed");
    }

    TEST_CASE("the tree: at most 256MiB of unit text with instances expanded") {
        // 10000 copies of a file of 26843 bytes are 268430000 bytes, of 26844 268440000: the
        // bound, 268435456, lies between.
        TempUnits t;
        auto unit = [](std::size_t bytes) {
            std::string head = R"({"command": ["true"], "instances": 10000})";
            return head + std::string(bytes - head.size() - 1, ' ') + "\n";
        };
        t.write("big.json", unit(26843));
        LoadResult ok = t.load();
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
        t.write("big.json", unit(26844));
        LoadResult bad = t.load();
        REQUIRE_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
        CHECK(bad.diagnostics[0].field == "/instances");
        CHECK(bad.diagnostics[0].message ==
              "with instances expanded the units would take 268440000 bytes of unit text (10000 "
              "copies of this file's 26844); at most 256MiB are allowed (fewer instances, or a "
              "smaller file)");
    }

    TEST_CASE("the tree: at most 1000000 after edges with instances expanded") {
        TempUnits t;
        t.write("a.json", R"({"command": ["true"], "instances": 1000})");
        t.write("b.json", R"({"command": ["true"], "instances": 1000, "after": ["a"]})");
        LoadResult ok = t.load();
        CHECK_MESSAGE(ok.ok(), diagnostics_text(ok));
        t.write("b.json", R"({"command": ["true"], "instances": 1001, "after": ["a"]})");
        LoadResult bad = t.load();
        REQUIRE_MESSAGE(bad.diagnostics.size() == 1, diagnostics_text(bad));
        CHECK(bad.diagnostics[0].file == (t.dir() / "b.json").string());
        CHECK(bad.diagnostics[0].field == "/after");
        CHECK(bad.diagnostics[0].message ==
              "with instances expanded the tree would have 1001000 \"after\" edges (1001000 from "
              "this unit); at most 1000000 are allowed");
    }

} // TEST_SUITE
