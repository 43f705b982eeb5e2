// RFC 3339 timestamps with milliseconds, UTC; the one record format built on them.
#include <doctest/doctest.h>

#include <string>

#include "vigil/log/line.hpp"

using vigil::log::RecordWriter;
using vigil::log::timestamp_len;
using vigil::log::TimestampFormatter;

namespace {
std::string fmt(TimestampFormatter &f, vigil::log::WallMs t) {
    std::string s(timestamp_len, '?');
    f.format(t, s.data());
    return s;
}
} // namespace

TEST_SUITE("log") {

    TEST_CASE("timestamps are RFC 3339, UTC, with milliseconds") {
        TimestampFormatter f;
        CHECK(fmt(f, 0) == "1970-01-01T00:00:00.000Z");
        CHECK(fmt(f, 1'764'149'889'123) == "2025-11-26T09:38:09.123Z");
        CHECK(fmt(f, 1'764'149'889'999) == "2025-11-26T09:38:09.999Z"); // same second: cached
        CHECK(fmt(f, 1'764'149'890'001) == "2025-11-26T09:38:10.001Z");
        CHECK(fmt(f, 951'782'400'000) == "2000-02-29T00:00:00.000Z");
        CHECK(fmt(f, -1) == "1969-12-31T23:59:59.999Z");
    }

    TEST_CASE("one record format: [prefix] [timestamp ' '] text ['\\'] '\\n'") {
        RecordWriter w;
        std::string out = "kept|";
        w.append(out, {}, std::nullopt, "plain", false);
        w.append(out, "web | ", std::nullopt, "forwarded", false);
        w.append(out, {}, 1'764'149'889'123, "stamped", true);
        w.append(out, "db ! ", 0, "", false);
        CHECK(out == "kept|plain\n"
                     "web | forwarded\n"
                     "2025-11-26T09:38:09.123Z stamped\\\n"
                     "db ! 1970-01-01T00:00:00.000Z \n");
        CHECK(RecordWriter::size(6, false, 9, false) == std::string("web | forwarded\n").size());
        CHECK(RecordWriter::size(0, true, 7, true) ==
              std::string("2025-11-26T09:38:09.123Z stamped\\\n").size());
    }

} // TEST_SUITE
