// Positions of JSON values and keys, duplicate keys and syntax errors (json_positions.cpp).
#include <string>

#include <doctest/doctest.h>

#include "vigil/unit/json_positions.hpp"

using namespace vigil::unit;

namespace {
std::string at(const std::map<std::string, Pos> &m, const std::string &ptr) {
    auto it = m.find(ptr);
    if (it == m.end()) return "missing";
    return std::to_string(it->second.line) + ":" + std::to_string(it->second.column);
}
} // namespace

TEST_SUITE("unit") {

    TEST_CASE("every value and key gets its start position") {
        const char *text = "{\n"
                           "  \"restart\": \"sometimes\",\n"
                           "  \"command\": [\"sh\", \"-c\",\n"
                           "      \"echo hi\"],\n"
                           "  \"stop\": {\"timeout\": 10, \"signal\": null},\n"
                           "  \"n\": -1.5e3, \"t\": true, \"f\": false,\n"
                           "  \"a/b~c\": {}\n"
                           "}\n";
        auto r = parse_positioned(text);
        REQUIRE(r.syntax_ok);
        CHECK(r.problems.empty());
        CHECK(at(r.value_pos, "") == "1:1");
        CHECK(at(r.value_pos, "/restart") == "2:14");
        CHECK(at(r.key_pos, "/restart") == "2:3");
        CHECK(at(r.value_pos, "/command") == "3:14");
        CHECK(at(r.value_pos, "/command/0") == "3:15");
        CHECK(at(r.value_pos, "/command/1") == "3:21");
        CHECK(at(r.value_pos, "/command/2") == "4:7");
        CHECK(at(r.value_pos, "/stop") == "5:11");
        CHECK(at(r.value_pos, "/stop/timeout") == "5:23");
        CHECK(at(r.key_pos, "/stop/signal") == "5:27");
        CHECK(at(r.value_pos, "/stop/signal") == "5:37");
        CHECK(at(r.value_pos, "/n") == "6:8");
        CHECK(at(r.value_pos, "/t") == "6:21");
        CHECK(at(r.value_pos, "/f") == "6:32");
        CHECK(at(r.value_pos, "/a~1b~0c") == "7:12");
        CHECK(r.value["command"][2] == "echo hi");
        CHECK(r.value["n"] == -1500.0);
    }

    TEST_CASE("escapes inside strings do not confuse the token scanner") {
        auto r = parse_positioned(R"({"a": "x\"y\\", "b": "\u00e9]}", "c": 1})");
        REQUIRE(r.syntax_ok);
        CHECK(at(r.value_pos, "/a") == "1:7");
        CHECK(at(r.value_pos, "/b") == "1:22");
        CHECK(at(r.value_pos, "/c") == "1:39");
    }

    TEST_CASE("columns count code points, not bytes") {
        auto r = parse_positioned("{\"d\": \"h\xC3\xA9llo\", \"x\": 1}");
        REQUIRE(r.syntax_ok);
        CHECK(at(r.value_pos, "/x") == "1:21");
    }

    TEST_CASE("a UTF-8 byte order mark is skipped") {
        auto r = parse_positioned("\xEF\xBB\xBF{\"a\": 1}");
        REQUIRE(r.syntax_ok);
        CHECK(at(r.value_pos, "/a") == "1:7"); // editors do not count the BOM as a column
    }

    TEST_CASE("duplicate keys are reported at the second key, nested ones too") {
        auto r =
            parse_positioned("{\"a\": 1,\n \"env\": {\"X\": \"1\", \"X\": \"2\"},\n \"a\": 2}");
        REQUIRE(r.syntax_ok);
        REQUIRE(r.problems.size() == 2);
        CHECK(r.problems[0].pointer == "/env/X");
        CHECK(r.problems[0].pos.line == 2);
        CHECK(r.problems[0].pos.column == 20);
        CHECK(r.problems[0].message == "duplicate key \"X\" (first at line 2, column 10)");
        CHECK(r.problems[1].pointer == "/a");
        CHECK(r.problems[1].pos.line == 3);
        CHECK(r.problems[1].pos.column == 2);
        CHECK(r.problems[1].message == "duplicate key \"a\" (first at line 1, column 2)");
    }

    TEST_CASE("syntax errors carry the position of the offending character") {
        SUBCASE("trailing comma") {
            auto r = parse_positioned("{\n  \"a\": 1,\n}\n");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].pos.line == 3);
            CHECK(r.problems[0].pos.column == 1);
            CHECK(r.problems[0].message.find("JSON syntax error") == 0);
        }
        SUBCASE("unterminated string") {
            auto r = parse_positioned("{\"a\": \"abc");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].pos.line == 1);
            CHECK(r.problems[0].pos.column == 11);
        }
        SUBCASE("empty input") {
            auto r = parse_positioned("");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].pos.line == 1);
            CHECK(r.problems[0].pos.column == 1);
        }
        SUBCASE("garbage after the value") {
            auto r = parse_positioned("{}\n{}");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].pos.line == 2);
            CHECK(r.problems[0].pos.column == 1);
        }
        SUBCASE("comments are not JSON") {
            auto r = parse_positioned("{\n  // no\n}");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].pos.line == 2);
        }
        SUBCASE("a number past a double's range, in words without the library's ids") {
            auto r = parse_positioned("{\"timeout\": 1e999}");
            CHECK_FALSE(r.syntax_ok);
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].message ==
                  "JSON number out of range: '1e999' does not fit in a double");
        }
    }

    TEST_CASE("pointer_append escapes ~ and /") {
        CHECK(pointer_append("", "a") == "/a");
        CHECK(pointer_append("/x", "a/b") == "/x/a~1b");
        CHECK(pointer_append("/x", "~") == "/x/~0");
        CHECK(pointer_append("/x", "") == "/x/");
    }

    // Regression (tests/fuzz/fuzz_unit on hand-made deep inputs): 10,000 nested arrays (20 KB)
    // took 13 s and 100,000 levels ran out of 2 GiB, because every value's JSON pointer spells
    // its whole path; deeper still, nlohmann::json's recursive copy (the fingerprint) would
    // overflow the stack.
    TEST_CASE("nesting deeper than max_json_depth is one problem, found quickly") {
        auto nest = [](std::size_t depth, const char *open, const char *close) {
            std::string s;
            for (std::size_t i = 0; i < depth; ++i)
                s += open;
            s += "1";
            for (std::size_t i = 0; i < depth; ++i)
                s += close;
            return s;
        };
        auto r = parse_positioned(nest(max_json_depth, "[", "]"));
        CHECK(r.syntax_ok);
        CHECK(r.problems.empty());

        r = parse_positioned(nest(max_json_depth + 1, "[", "]"));
        CHECK_FALSE(r.syntax_ok);
        CHECK(r.value.is_null());
        REQUIRE(r.problems.size() == 1);
        CHECK(r.problems[0].message == "JSON nested deeper than 64 levels");
        CHECK(at(r.value_pos, "/0") == "1:2");
        CHECK(r.problems[0].pos.line == 1);
        CHECK(r.problems[0].pos.column == static_cast<int>(max_json_depth) + 1);

        r = parse_positioned("{\"env\": " + nest(20'000, "{\"a\":", "}") + "}");
        CHECK_FALSE(r.syntax_ok);
        REQUIRE(r.problems.size() == 1);
        CHECK(r.problems[0].pointer.size() < 2 * max_json_depth + 8);
        CHECK(r.value_pos.size() <= max_json_depth);
    }

    // Regression: depth bounded the pointers' length but not their total, so a 1 MiB unit file
    // of one 400 KB key over an array of zeros made vigild --check take over 4 GiB. Here a 20 KB
    // key over 1,000 values: 20 MB of pointers, past max_pointer_bytes.
    TEST_CASE("the pointers of all positions together are bounded") {
        const std::string key(20'000, 'k');
        auto text = [&](std::size_t values) {
            std::string s = "{\"" + key + "\": [0";
            for (std::size_t i = 1; i < values; ++i)
                s += ",0";
            return s + "]}";
        };
        auto r = parse_positioned(text(1'000));
        CHECK_FALSE(r.syntax_ok);
        CHECK(r.value.is_null());
        REQUIRE(r.problems.size() == 1);
        CHECK(r.problems[0].message ==
              "JSON too costly to index: the paths of its values would take more than 16 MiB "
              "(long keys repeat in the path of every value under them)");
        CHECK(r.problems[0].pos.line == 1);
        std::size_t recorded = 0;
        for (const auto &[ptr, pos] : r.value_pos)
            recorded += ptr.size();
        CHECK(recorded <= max_pointer_bytes);
        // Under the bound the same shape parses.
        auto ok = parse_positioned(text(100));
        CHECK(ok.syntax_ok);
        CHECK(ok.problems.empty());
    }

    TEST_CASE("a duplicate key's message shows a long key shortened") {
        const std::string key(1'000, 'k');
        auto r = parse_positioned("{\"" + key + "\": 1, \"" + key + "\": 2}");
        REQUIRE(r.problems.size() == 1);
        CHECK(r.problems[0].message ==
              "duplicate key \"" + std::string(57, 'k') + "...\" (first at line 1, column 2)");
    }

    // Regression (tests/fuzz/fuzz_unit on a hand-made input): every position was counted from
    // its line's start, so a 200 KB unit file on one line took over a minute.
    TEST_CASE("a long line costs linear time, and its columns count code points") {
        constexpr int n = 100'000;
        std::string text = "{\"a\":[";
        for (int i = 0; i < n; ++i)
            text += i ? ",\"\u00e9\"" : "\"\u00e9\"";
        text += "],\n \"b\": 1}";
        auto r = parse_positioned(text);
        REQUIRE(r.syntax_ok);
        CHECK(at(r.value_pos, "/a") == "1:6");
        CHECK(at(r.value_pos, "/a/0") == "1:7");
        // `"é",` is 5 bytes but 4 columns.
        CHECK(at(r.value_pos, "/a/" + std::to_string(n - 1)) ==
              "1:" + std::to_string(7 + 4 * (n - 1)));
        CHECK(at(r.key_pos, "/b") == "2:2");
        CHECK(at(r.value_pos, "/b") == "2:7");
    }

    // Found by tests/fuzz/fuzz_unit: nlohmann's lexer ends the input at a NUL byte, so a file
    // with anything after a NUL behind its value loaded.
    TEST_CASE("a NUL byte anywhere is a syntax problem at its position") {
        using namespace std::string_literals;
        for (const std::string &text : {"{\"a\": 1}\n\0 garbage [["s, "{\"a\":\0 1}"s, "\0"s}) {
            CAPTURE(text);
            auto r = parse_positioned(text);
            CHECK_FALSE(r.syntax_ok);
            CHECK(r.value.is_null());
            REQUIRE(r.problems.size() == 1);
            CHECK(r.problems[0].message == "JSON text must not contain a NUL byte");
        }
        auto r = parse_positioned("{\"a\": 1}\n\0"s);
        REQUIRE(r.problems.size() == 1);
        CHECK(r.problems[0].pos.line == 2);
        CHECK(r.problems[0].pos.column == 1);
        CHECK(parse_positioned(R"({"a": "\u0000"})").syntax_ok); // an escaped NUL is fine
    }

} // TEST_SUITE

TEST_SUITE("unit") {

    // Every prefix of a real unit file is either valid or exactly one syntax error, and never
    // trips the scanner/handler alignment (run under ASan in CI).
    TEST_CASE("every truncation of a unit file yields one syntax error, never a crash") {
        const std::string text = R"({
  "command": ["python3", "-m", "http.server", "8080"],
  "env": {"A": "1", "B": "x\"y"},
  "backoff": {"factor": 1.5, "jitter": 0, "initial": "250ms"},
  "ready": {"notify": true, "fd": null, "log": "^Serving \\d+"},
  "patterns": [{"match": "OOM", "count": -3, "within": "1m"}]
})";
        REQUIRE(parse_positioned(text).syntax_ok);
        for (std::size_t n = 0; n < text.size(); ++n) {
            CAPTURE(n);
            auto r = parse_positioned(std::string_view(text).substr(0, n));
            CHECK_FALSE(r.syntax_ok);
            CHECK(r.problems.size() == 1);
            CHECK(r.value.is_null());
            if (!r.problems.empty()) {
                CHECK(r.problems[0].pos.line >= 1);
                CHECK(r.problems[0].pos.column >= 1);
            }
        }
    }

} // TEST_SUITE
