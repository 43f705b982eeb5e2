// Durations, sizes, limit names, "did you mean" (src/unit/values.cpp), and the one duration
// spelling (core::format_duration) read back by the loader.
#include <csignal>
#include <cstdint>
#include <doctest/doctest.h>
#include <limits>
#include <set>
#include <sys/resource.h>

#include "vigil/core/names.hpp"
#include "vigil/unit/unit.hpp"
#include "vigil/unit/values.hpp"

using namespace vigil;
using namespace vigil::unit;
using namespace std::chrono_literals;

TEST_SUITE("unit") {

    TEST_CASE("parse_duration accepts units, fractions and compounds") {
        CHECK(parse_duration("250ms") == Duration{250});
        CHECK(parse_duration("10s") == Duration{10'000});
        CHECK(parse_duration("5m") == Duration{300'000});
        CHECK(parse_duration("1h") == Duration{3'600'000});
        CHECK(parse_duration("2d") == Duration{172'800'000});
        CHECK(parse_duration("1m30s") == Duration{90'000});
        CHECK(parse_duration("1h2m3s4ms") == Duration{3'723'004});
        CHECK(parse_duration("1.5s") == Duration{1'500});
        CHECK(parse_duration("0.25m") == Duration{15'000});
        CHECK(parse_duration("0") == Duration{0});
        CHECK(parse_duration("0s") == Duration{0});
        CHECK(parse_duration("0ms") == Duration{0});
    }

    TEST_CASE("parse_duration rejects what it cannot read exactly") {
        for (const char *bad :
             {"",      "10",   "s",    "10 s",  " 10s",     "10s ",
              "-1s",   "1.s",  ".5s",  "1.5ms", "0.0001s",  "10x",
              "10sec", "1s1m", "1s1s", "1m1h",  "infinity", "99999999999999999999999h",
              "1e3s",  "+1s"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_duration(bad).has_value());
        }
    }

    TEST_CASE("parse_duration stops at 365d, and scan_duration says why it refused") {
        CHECK(parse_duration("365d") == bounds::max_duration);
        CHECK(parse_duration("8760h") == bounds::max_duration);
        CHECK_FALSE(parse_duration("365d1ms").has_value());
        // Once parsed, a duration converts to microseconds and nanoseconds without overflow.
        CHECK(bounds::max_duration.count() <= std::numeric_limits<std::int64_t>::max() / 1'000'000);
        for (const char *big : {"365d1ms", "366d", "50000000000d", "99999999999999999999d",
                                "99999999999999999999d23h59m59s999ms", "31536000001ms"}) {
            CAPTURE(big);
            ScannedDuration d = scan_duration(big);
            CHECK_FALSE(d.value.has_value());
            CHECK(d.too_large);
        }
        for (const char *bad : {"", "10", "1s1m", "999999999999999999999d", "1.0000000001s"}) {
            CAPTURE(bad);
            ScannedDuration d = scan_duration(bad);
            CHECK_FALSE(d.value.has_value());
            CHECK_FALSE(d.too_large);
        }
        CHECK(scan_duration("1d").value == Duration{86'400'000});
        CHECK_FALSE(scan_duration("1d").too_large);
    }

    TEST_CASE("core::format_duration is parse_duration's inverse") {
        using core::format_duration;
        CHECK(format_duration(Duration{0}) == "0s");
        CHECK(format_duration(Duration{250}) == "250ms");
        CHECK(format_duration(Duration{10'000}) == "10s");
        CHECK(format_duration(Duration{90'000}) == "1m30s");
        CHECK(format_duration(Duration{3'723'004}) == "1h2m3s4ms");
        CHECK(format_duration(Duration{86'400'000}) == "1d");
        for (std::int64_t ms : {1LL, 999LL, 1000LL, 61'001LL, 7'200'000LL, 90'061'001LL}) {
            CAPTURE(ms);
            CHECK(parse_duration(format_duration(Duration{ms})) == Duration{ms});
        }
    }

    TEST_CASE("parse_size: bytes, binary and decimal units") {
        CHECK(parse_size("0") == 0u);
        CHECK(parse_size("512") == 512u);
        CHECK(parse_size("512B") == 512u);
        CHECK(parse_size("64KiB") == 65'536u);
        CHECK(parse_size("64K") == 65'536u);
        CHECK(parse_size("1KB") == 1'000u);
        CHECK(parse_size("10MiB") == 10u * 1024 * 1024);
        CHECK(parse_size("10MB") == 10'000'000u);
        CHECK(parse_size("1G") == 1024u * 1024 * 1024);
        CHECK(parse_size("1GiB") == 1024u * 1024 * 1024);
        CHECK(parse_size("2TiB") == 2ull << 40);
        CHECK(parse_size("1.5KiB") == 1'536u);
        CHECK(parse_size("16EiB") == std::nullopt); // no exbibytes
        for (const char *bad : {"", "K", "10 MiB", "-1", "1.5", "0.1KiB", "10kib", "10mb", "1e3",
                                "99999999999999999999", "16777216TiB", "10MiBs"}) {
            CAPTURE(bad);
            CHECK_FALSE(parse_size(bad).has_value());
        }
        CHECK(parse_size("18446744073709551615") == 18'446'744'073'709'551'615ull);
    }

    TEST_CASE("scan_size tells a size above 2^64-1 from text that is not a size") {
        CHECK(scan_size("18446744073709551615").value == 18'446'744'073'709'551'615ull);
        for (const char *big : {"18446744073709551616", "99999999999999999999", "16777216TiB",
                                "16EB" /* not a unit */}) {
            CAPTURE(big);
            ScannedSize n = scan_size(big);
            CHECK_FALSE(n.value.has_value());
            CHECK(n.too_large == (std::string_view(big) != "16EB"));
        }
        ScannedSize bad = scan_size("999999999999999999999"); // 21 digits: not read at all
        CHECK_FALSE(bad.value.has_value());
        CHECK_FALSE(bad.too_large);
    }

    TEST_CASE("format_size prefers exact binary units") {
        CHECK(format_size(0) == "0");
        CHECK(format_size(1000) == "1000");
        CHECK(format_size(1024) == "1KiB");
        CHECK(format_size(10ull << 20) == "10MiB");
        CHECK(format_size(3ull << 30) == "3GiB");
        CHECK(format_size(1536) == "1536");
    }

    TEST_CASE("every rlimit name maps to a distinct resource") {
        CHECK(rlimit_names().size() == RLIMIT_NLIMITS);
        CHECK(rlimit_resource("nofile") == RLIMIT_NOFILE);
        CHECK(rlimit_resource("core") == RLIMIT_CORE);
        CHECK(rlimit_resource("nice") == RLIMIT_NICE);
        CHECK_FALSE(rlimit_resource("NOFILE").has_value());
        CHECK_FALSE(rlimit_resource("files").has_value());
        std::set<int> seen;
        for (auto n : rlimit_names())
            seen.insert(*rlimit_resource(n));
        CHECK(seen.size() == rlimit_names().size());
    }

    TEST_CASE("edit distance and suggestions") {
        CHECK(edit_distance("", "") == 0);
        CHECK(edit_distance("abc", "") == 3);
        CHECK(edit_distance("comand", "command") == 1);
        CHECK(edit_distance("evn", "env") == 1); // a transposition is one edit
        CHECK(edit_distance("kitten", "sitting") == 3);
        std::vector<std::string_view> fields{"command", "cwd", "env", "restart", "strategy"};
        CHECK(closest("comand", fields) == "command");
        CHECK(closest("evn", fields) == "env");
        CHECK(closest("restrat", fields) == "restart");
        CHECK(closest("xyzzy", fields).empty());
        CHECK(closest("a", fields).empty()); // one letter away from nothing useful
    }

} // TEST_SUITE
