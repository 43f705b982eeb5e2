// The control protocol codec: request lines in, answer lines out (pure; no sockets).
#include <doctest/doctest.h>

#include <csignal>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "vigil/ctl/protocol.hpp"

using namespace vigil::ctl;

namespace {

Request ok(std::string_view line) {
    ParseResult r = parse_request(line);
    if (auto *e = std::get_if<RequestError>(&r)) FAIL("unexpected error: " << e->message);
    return std::get<Request>(r);
}

RequestError bad(std::string_view line) {
    ParseResult r = parse_request(line);
    REQUIRE_MESSAGE(std::holds_alternative<RequestError>(r), "accepted: " << line);
    return std::get<RequestError>(r);
}

Json parsed(const std::string &line) {
    REQUIRE(!line.empty());
    CHECK(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1); // exactly one line
    return Json::parse(line);
}

} // namespace

TEST_SUITE("ctl") {

    TEST_CASE("a status request with an integer id and unit patterns") {
        Request r = ok(R"({"id":7,"cmd":"status","args":{"units":["web-*","db"]}})");
        CHECK(r.id == 7);
        CHECK(r.cmd == Cmd::Status);
        CHECK(r.units == std::vector<std::string>{"web-*", "db"});
        CHECK_FALSE(r.detail);
        CHECK(ok(R"({"cmd":"status","args":{"units":["web"],"detail":true}})").detail);
        CHECK_FALSE(r.brief);
        CHECK(ok(R"({"cmd":"status","args":{"brief":true}})").brief);
    }

    TEST_CASE("ids may be strings, absent (null) or null; other types are refused") {
        CHECK(ok(R"({"id":"a-1","cmd":"version"})").id == "a-1");
        CHECK(ok(R"({"cmd":"version"})").id.is_null());
        CHECK(ok(R"({"id":null,"cmd":"version"})").id.is_null());
        CHECK(ok(R"({"id":-3,"cmd":"version"})").id == -3);
        for (auto line : {R"({"id":1.5,"cmd":"version"})", R"({"id":[1],"cmd":"version"})",
                          R"({"id":{},"cmd":"version"})", R"({"id":true,"cmd":"version"})"}) {
            RequestError e = bad(line);
            CHECK(e.code == ErrorCode::BadRequest);
            CHECK(e.id.is_null());
        }
    }

    TEST_CASE("invalid JSON is bad_json with the parser's position") {
        for (auto line : {"{", "not json", R"({"id":1,"cmd":"status")", "\xff\xfe", ""}) {
            RequestError e = bad(line);
            CHECK(e.code == ErrorCode::BadJson);
            CHECK(e.message.find("invalid JSON") == 0);
        }
        CHECK(bad("{\"cmd\":").message.find("column") != std::string::npos);
        // Words for people, not the library's exception ids.
        const RequestError big = bad(R"({"id":1,"cmd":"status","args":{"lines":1e999}})");
        CHECK(big.code == ErrorCode::BadJson);
        CHECK(big.message == "invalid JSON: number out of range: '1e999' does not fit in a double");
        CHECK(bad("{").message.find("json.exception") == std::string::npos);
    }

    TEST_CASE("a request must be an object with a string cmd and only known keys") {
        CHECK(bad("[1,2]").code == ErrorCode::BadRequest);
        CHECK(bad("42").code == ErrorCode::BadRequest);
        CHECK(bad(R"({"id":1})").code == ErrorCode::BadRequest);
        CHECK(bad(R"({"id":1,"cmd":5})").code == ErrorCode::BadRequest);
        RequestError extra = bad(R"({"id":2,"cmd":"status","verbose":true})");
        CHECK(extra.code == ErrorCode::BadRequest);
        CHECK(extra.id == 2); // the id is echoed once it could be read
        CHECK(extra.message.find("verbose") != std::string::npos);
    }

    TEST_CASE("an unknown command is unknown_command and keeps the id") {
        RequestError e = bad(R"({"id":"x","cmd":"frobnicate"})");
        CHECK(e.code == ErrorCode::UnknownCommand);
        CHECK(e.id == "x");
        CHECK(e.message.find("frobnicate") != std::string::npos);
    }

    TEST_CASE("arguments of the wrong type are bad_request naming the argument") {
        struct Case {
            const char *line;
            const char *needle;
        };
        for (auto c : {
                 Case{R"({"cmd":"status","args":[]})", "args"},
                 Case{R"({"cmd":"status","args":{"units":"web"}})", "units"},
                 Case{R"({"cmd":"status","args":{"units":[1]}})", "units"},
                 Case{R"({"cmd":"status","args":{"units":[""]}})", "units"},
                 Case{R"({"cmd":"status","args":{"detail":1}})", "detail"},
                 Case{R"({"cmd":"status","args":{"brief":"yes"}})", "brief"},
                 Case{R"({"cmd":"checks","args":{"brief":true}})", "brief"},
                 Case{R"({"cmd":"start","args":{}})", "units"},
                 Case{R"({"cmd":"stop","args":{"units":[]}})", "units"},
                 Case{R"({"cmd":"restart"})", "units"},
                 Case{R"({"cmd":"signal","args":{"units":["a"]}})", "signal"},
                 Case{R"({"cmd":"signal","args":{"units":["a"],"signal":true}})", "signal"},
                 Case{R"({"cmd":"logs","args":{"unit":""}})", "unit"},
                 Case{R"({"cmd":"logs","args":{"unit":"a","lines":-1}})", "lines"},
                 Case{R"({"cmd":"logs","args":{"unit":"a","lines":"10"}})", "lines"},
                 Case{R"({"cmd":"logs","args":{"unit":"a","lines":4294967296}})", "lines"},
                 Case{R"({"cmd":"logs","args":{"unit":"a","follow":1}})", "follow"},
                 Case{R"({"cmd":"logs","args":{"unit":"a","reopen":"yes"}})", "reopen"},
                 Case{R"({"cmd":"events","args":{"unit":7}})", "unit"},
                 Case{R"({"cmd":"events","args":{"reopen":true}})", "reopen"},
                 Case{R"({"cmd":"reload","args":{"force":true}})", "force"},
                 Case{R"({"cmd":"version","args":{"x":1}})", "x"},
             }) {
            CAPTURE(c.line);
            RequestError e = bad(c.line);
            CHECK(e.code == ErrorCode::BadRequest);
            CHECK(e.message.find(c.needle) != std::string::npos);
        }
    }

    TEST_CASE("restart --rolling: one unit, max_unavailable only with rolling, bounded") {
        Request r = ok(R"({"cmd":"restart","args":{"units":["web"],"rolling":true}})");
        CHECK(r.rolling);
        CHECK_FALSE(r.max_unavailable);
        r = ok(R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":2}})");
        CHECK(r.max_unavailable == 2u);
        CHECK_FALSE(ok(R"({"cmd":"restart","args":{"units":["web"]}})").rolling);
        for (
            const char *line : {
                R"({"cmd":"restart","args":{"units":["web"],"max_unavailable":2}})",
                R"({"cmd":"restart","args":{"units":["a","b"],"rolling":true}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":1}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":0}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":-1}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":10001}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":"2"}})",
                R"({"cmd":"restart","args":{"units":["web"],"rolling":true,"max_unavailable":1.5}})",
                R"({"cmd":"start","args":{"units":["web"],"rolling":true}})",
            }) {
            CAPTURE(line);
            CHECK(bad(line).code == ErrorCode::BadRequest);
        }
    }

    TEST_CASE("start, stop and restart take units; signal takes a name or a number") {
        CHECK(ok(R"({"cmd":"start","args":{"units":["a","b"]}})").units.size() == 2);
        CHECK(ok(R"({"cmd":"stop","args":{"units":["app"]}})").cmd == Cmd::Stop);
        CHECK(ok(R"({"cmd":"restart","args":{"units":["x"]}})").cmd == Cmd::Restart);
        CHECK(ok(R"({"cmd":"signal","args":{"units":["a"],"signal":"TERM"}})").signal == SIGTERM);
        CHECK(ok(R"({"cmd":"signal","args":{"units":["a"],"signal":"sighup"}})").signal == SIGHUP);
        CHECK(ok(R"({"cmd":"signal","args":{"units":["a"],"signal":9}})").signal == 9);
        RequestError e = bad(R"({"id":1,"cmd":"signal","args":{"units":["a"],"signal":"BOGUS"}})");
        CHECK(e.code == ErrorCode::Invalid);
        CHECK(e.id == 1);
        CHECK(bad(R"({"cmd":"signal","args":{"units":["a"],"signal":0}})").code ==
              ErrorCode::Invalid);
        CHECK(bad(R"({"cmd":"signal","args":{"units":["a"],"signal":65}})").code ==
              ErrorCode::Invalid);
    }

    TEST_CASE("logs and events arguments") {
        Request l =
            ok(R"({"cmd":"logs","args":{"unit":"web","lines":50,"follow":true,"reopen":true}})");
        CHECK(l.unit == "web");
        CHECK(l.lines == 50u);
        CHECK(l.follow);
        CHECK(l.reopen);
        Request e = ok(R"({"cmd":"events"})");
        CHECK(e.unit.empty());
        CHECK(!e.lines);
        CHECK(!e.follow);
        CHECK(ok(R"({"cmd":"events","args":{"unit":"db","lines":0}})").lines == 0u);
        CHECK(ok(R"({"cmd":"events","args":null})").args.is_object());
        // Several units, none (every unit), and since.
        Request m = ok(R"({"cmd":"logs","args":{"unit":"a","units":["b*","c"],"since":5}})");
        CHECK(m.units == std::vector<std::string>{"a", "b*", "c"});
        CHECK(m.unit == "a");
        CHECK(m.since == 5);
        Request u = ok(R"({"cmd":"events","args":{"units":["x"]}})");
        CHECK(u.unit == "x");
        CHECK(ok(R"({"cmd":"logs"})").units.empty());
        CHECK(!ok(R"({"cmd":"logs"})").since);
        for (auto line :
             {R"({"cmd":"logs","args":{"since":-1}})", R"({"cmd":"logs","args":{"since":"10m"}})",
              R"({"cmd":"events","args":{"since":9007199254740993}})",
              R"({"cmd":"events","args":{"units":"web"}})",
              R"({"cmd":"logs","args":{"units":[""]}})"}) {
            CAPTURE(line);
            CHECK(bad(line).code == ErrorCode::BadRequest);
        }
    }

    TEST_CASE("read-only requests: status, tree, events, version, and logs without reopen") {
        for (auto line : {R"({"cmd":"status"})", R"({"cmd":"tree"})", R"({"cmd":"events"})",
                          R"({"cmd":"checks","args":{"units":["web"]}})", R"({"cmd":"version"})",
                          R"({"cmd":"logs","args":{"unit":"a"}})",
                          R"({"cmd":"logs","args":{"unit":"a","follow":true,"reopen":false}})"}) {
            CAPTURE(line);
            CHECK(is_read_only(ok(line)));
        }
        // logs --reopen makes vigild reopen a file: it changes something.
        for (auto line : {R"({"cmd":"logs","args":{"unit":"a","reopen":true}})",
                          R"({"cmd":"start","args":{"units":["a"]}})",
                          R"({"cmd":"stop","args":{"units":["a"]}})",
                          R"({"cmd":"restart","args":{"units":["a"]}})",
                          R"({"cmd":"signal","args":{"units":["a"],"signal":1}})",
                          R"({"cmd":"reload"})", R"({"cmd":"shutdown"})",
                          R"({"cmd":"check","args":{"unit":"a","probe":"liveness","run":true}})"}) {
            CAPTURE(line);
            CHECK_FALSE(is_read_only(ok(line)));
        }
    }

    TEST_CASE("check: unit, probe and run:true are required; nothing else is taken") {
        Request r = ok(R"({"cmd":"check","args":{"unit":"web","probe":"liveness","run":true}})");
        CHECK(r.cmd == Cmd::Check);
        CHECK(r.unit == "web");
        CHECK(r.probe == "liveness");
        CHECK(r.run);
        for (auto line :
             {R"({"cmd":"check","args":{"unit":"web","probe":"liveness"}})",
              R"({"cmd":"check","args":{"unit":"web","probe":"liveness","run":false}})",
              R"({"cmd":"check","args":{"unit":"web","run":true}})",
              R"({"cmd":"check","args":{"probe":"liveness","run":true}})",
              R"({"cmd":"check","args":{"unit":"web","probe":"","run":true}})",
              R"({"cmd":"check","args":{"unit":"web","probe":"l","run":true,"x":1}})"}) {
            CAPTURE(line);
            auto res = parse_request(line);
            REQUIRE(std::holds_alternative<RequestError>(res));
            CHECK(std::get<RequestError>(res).code == ErrorCode::BadRequest);
        }
        CHECK(ok(R"({"cmd":"checks"})").units.empty());
    }

    TEST_CASE("command and error code names round-trip") {
        for (int i = 0; i <= static_cast<int>(Cmd::Check); ++i) {
            auto c = static_cast<Cmd>(i);
            CHECK(cmd_from_string(to_string(c)) == c);
        }
        for (int i = 0; i <= static_cast<int>(ErrorCode::Internal); ++i) {
            auto c = static_cast<ErrorCode>(i);
            CHECK(error_code_from_string(to_string(c)) == c);
        }
        CHECK(!cmd_from_string("Status"));
        CHECK(std::string(to_string(ErrorCode::TooLong)) == "too_long");
    }

    TEST_CASE("answer lines have the documented shapes") {
        Json h = parsed(make_hello("1.2.3"));
        CHECK(h == Json{{"hello", "vigil"}, {"version", protocol_version}, {"server", "1.2.3"}});

        Json r = parsed(make_reply(7, Json{{"units", Json::array()}}));
        CHECK(r["id"] == 7);
        CHECK(r["ok"] == true);
        CHECK(r["result"]["units"].is_array());

        Json e = parsed(make_error("x", ErrorCode::NotFound, "no unit named 'q'"));
        CHECK(e["id"] == "x");
        CHECK(e["ok"] == false);
        CHECK(e["error"] == Json{{"code", "not_found"}, {"message", "no unit named 'q'"}});

        Json d = parsed(make_error(nullptr, ErrorCode::Invalid, "broken",
                                   Json{{"diagnostics", {"a.json:1:1: x"}}}));
        CHECK(d["id"].is_null());
        CHECK(d["error"]["code"] == "invalid");
        CHECK(d["error"]["diagnostics"][0] == "a.json:1:1: x");

        Json s = parsed(make_stream_item(3, Json{{"line", "hello"}}));
        CHECK(s == Json{{"id", 3}, {"stream", {{"line", "hello"}}}});
        Json end = parsed(make_end(3));
        CHECK(end == Json{{"id", 3}, {"ok", true}, {"end", true}});
    }

    TEST_CASE("invalid UTF-8 in an answer is replaced, never thrown") {
        std::string line;
        CHECK_NOTHROW(line = make_stream_item(1, Json{{"line", std::string("a\xff\xfe"
                                                                           "b")}}));
        Json s = parsed(line);
        CHECK(s["stream"]["line"] == "a\xEF\xBF\xBD\xEF\xBF\xBD"
                                     "b");
        // A newline inside a string is escaped, so the framing holds.
        CHECK(parsed(make_reply(1, "two\nlines"))["result"] == "two\nlines");
    }

    TEST_CASE("an item encoded once makes the same line as make_stream_item and make_reply") {
        const Json items[] = {Json{{"line", "hello"}, {"seq", 7}, {"stream", "stderr"}},
                              Json{{"line", std::string("a\xff\n\"b")}},
                              Json::array({1, "two", nullptr}),
                              Json(5),
                              Json(nullptr),
                              Json::object()};
        const Json ids[] = {Json(3), Json("x\"y"), Json(nullptr), Json(-1), Json("\xff")};
        for (const Json &id : ids)
            for (const Json &item : items) {
                CHECK(make_stream_line(id, encode_item(item)) == make_stream_item(id, item));
                CHECK(make_reply_line(id, encode_item(item)) == make_reply(id, item));
            }
        CHECK(make_stream_item(3, Json{{"line", "hello"}}) ==
              R"({"id":3,"stream":{"line":"hello"}})"
              "\n");
    }

    TEST_CASE("client side: make_request and parse_server_message agree with the server side") {
        Request r = ok(make_request(5, Cmd::Logs, Json{{"unit", "web"}, {"lines", 3}}));
        CHECK(r.id == 5);
        CHECK(r.unit == "web");
        CHECK(r.lines == 3u);
        CHECK(make_request(1, Cmd::Version, Json::object()).find("args") == std::string::npos);

        std::string err;
        auto hello = parse_server_message(make_hello("0.1.0"), &err);
        REQUIRE(hello);
        CHECK(hello->kind == ServerMessage::Kind::Hello);
        CHECK(hello->version == protocol_version);

        auto reply = parse_server_message(make_reply(2, Json{{"a", 1}}), &err);
        REQUIRE(reply);
        CHECK(reply->kind == ServerMessage::Kind::Reply);
        CHECK(reply->id == 2);
        CHECK(reply->body["a"] == 1);

        auto error = parse_server_message(make_error(2, ErrorCode::Forbidden, "no"), &err);
        REQUIRE(error);
        CHECK(error->kind == ServerMessage::Kind::Error);
        CHECK(error->code == "forbidden");
        CHECK(error->message == "no");

        auto item = parse_server_message(make_stream_item(2, 5), &err);
        REQUIRE(item);
        CHECK(item->kind == ServerMessage::Kind::StreamItem);
        CHECK(item->body == 5);

        auto end = parse_server_message(make_end(2), &err);
        REQUIRE(end);
        CHECK(end->kind == ServerMessage::Kind::End);

        CHECK(!parse_server_message("garbage", &err));
        CHECK(!err.empty());
        CHECK(!parse_server_message(R"({"id":1})", &err));
        CHECK(!parse_server_message(R"({"hello":"other","version":1})", &err));
    }

    TEST_CASE("signal requests: names and numbers are read by core::parse_signal, bounded") {
        auto sig = [](const std::string &v) {
            return parse_request(R"({"cmd":"signal","args":{"units":["a"],"signal":)" + v + "}}");
        };
        CHECK(std::get<Request>(sig(R"("TERM")")).signal == SIGTERM);
        CHECK(std::get<Request>(sig(R"("SIGRTMIN+2")")).signal == SIGRTMIN + 2);
        CHECK(std::get<Request>(sig("9")).signal == SIGKILL);
        for (const char *bad : {"0", "32", "65", "-1", "4294967311", "18446744073709551615",
                                R"("RTMIN+2147483647")", R"("NOPE")"}) {
            CAPTURE(bad);
            auto r = sig(bad);
            REQUIRE(std::holds_alternative<RequestError>(r));
            CHECK(std::get<RequestError>(r).code == ErrorCode::Invalid);
        }
    }

    TEST_CASE("nesting deeper than max_request_depth is refused before the JSON is parsed") {
        auto nest = [](int depth) {
            return std::string(static_cast<std::size_t>(depth), '[') + "0" +
                   std::string(static_cast<std::size_t>(depth), ']');
        };
        // The request object is level 1, "x"'s array level 2.
        std::string at_limit =
            R"({"cmd":"status","x":)" + nest(static_cast<int>(max_request_depth) - 1) + "}";
        CHECK(bad(at_limit).message.find("unknown key") != std::string::npos); // parsed
        std::string over =
            R"({"cmd":"status","x":)" + nest(static_cast<int>(max_request_depth)) + "}";
        RequestError e = bad(over);
        CHECK(e.code == ErrorCode::BadRequest);
        CHECK(e.message.find("nested deeper than 16") != std::string::npos);
        // Brackets, braces and commas inside strings (escaped quotes too) are not structure.
        std::string in_string = R"({"id":"\"[{[{[{[{[{[{[{[{[{,,,","cmd":"version"})";
        CHECK(ok(in_string).id == "\"[{[{[{[{[{[{[{[{[{,,,");
    }

    TEST_CASE("more than max_request_values values are refused before the JSON is parsed") {
        auto zeros = [](std::size_t n) {
            std::string s = "[0";
            for (std::size_t i = 1; i < n; ++i)
                s += ",0";
            return s + "]";
        };
        // The request's own members count: cmd, x and x's elements.
        RequestError near = bad(R"({"cmd":"status","x":)" + zeros(max_request_values - 2) + "}");
        CHECK(near.message.find("unknown key") != std::string::npos); // parsed
        RequestError over = bad(R"({"cmd":"status","x":)" + zeros(max_request_values) + "}");
        CHECK(over.code == ErrorCode::BadRequest);
        CHECK(over.message.find("more than 10000 values") != std::string::npos);
    }

    TEST_CASE("every value has a bound: ids, unit lists, names, lines") {
        std::string long_id(max_id_length + 1, 'i');
        RequestError e = bad(R"({"id":")" + long_id + R"(","cmd":"version"})");
        CHECK(e.code == ErrorCode::BadRequest);
        CHECK(e.id.is_null()); // a long id is not echoed
        CHECK(ok(R"({"id":")" + long_id.substr(1) + R"(","cmd":"version"})")
                  .id.get<std::string>()
                  .size() == max_id_length);
        CHECK(ok(R"({"id":-9223372036854775808,"cmd":"version"})").id ==
              std::numeric_limits<std::int64_t>::min());
        CHECK(ok(R"({"id":18446744073709551615,"cmd":"version"})").id ==
              std::numeric_limits<std::uint64_t>::max());
        // A larger number is a float to the parser: not an integer id.
        CHECK(bad(R"({"id":18446744073709551616,"cmd":"version"})").code == ErrorCode::BadRequest);

        auto units = [](std::size_t n, std::size_t len) {
            Json a = Json::array();
            for (std::size_t i = 0; i < n; ++i)
                a.push_back(std::string(len, 'u'));
            return Json{{"cmd", "stop"}, {"args", {{"units", a}}}}.dump();
        };
        CHECK(ok(units(max_units_per_request, 8)).units.size() == max_units_per_request);
        RequestError many = bad(units(max_units_per_request + 1, 8));
        CHECK(many.code == ErrorCode::BadRequest);
        CHECK(many.message.find("at most 1024") != std::string::npos);
        CHECK(ok(units(1, max_unit_name)).units[0].size() == max_unit_name);
        RequestError longname = bad(units(1, max_unit_name + 1));
        CHECK(longname.message.find("255 bytes") != std::string::npos);
        std::string unit(max_unit_name + 1, 'n');
        CHECK(bad(R"({"cmd":"logs","args":{"unit":")" + unit + R"("}})").code ==
              ErrorCode::BadRequest);
        CHECK(bad(R"({"cmd":"events","args":{"unit":")" + unit + R"("}})").code ==
              ErrorCode::BadRequest);

        CHECK(ok(R"({"cmd":"logs","args":{"unit":"a","lines":1000000}})").lines == max_lines);
        RequestError lines = bad(R"({"cmd":"events","args":{"lines":1000001}})");
        CHECK(lines.message.find("from 0 to 1000000") != std::string::npos);
    }

    TEST_CASE("error messages quote at most a bounded piece of what the client sent") {
        std::string cmd(10000, 'c');
        RequestError e = bad(R"({"id":1,"cmd":")" + cmd + R"("})");
        CHECK(e.code == ErrorCode::UnknownCommand);
        CHECK(e.message.size() < 200);
        std::string key(10000, 'k');
        CHECK(bad(R"({"cmd":"version",")" + key + R"(":1})").message.size() < 200);
        RequestError json = bad(R"({"cmd":")" + std::string(10000, 's')); // unterminated
        CHECK(json.code == ErrorCode::BadJson);
        CHECK(json.message.size() < 200);
    }

    TEST_CASE("a deeply nested request is refused without exhausting the stack") {
        // A line of brackets is the worst a client can send within the line limit.
        std::string deep(max_request_line / 2 - 32, '[');
        deep += std::string(max_request_line / 2 - 32, ']');
        CHECK(bad(deep).code == ErrorCode::BadRequest);
        std::string obj = R"({"cmd":"status","args":{"units":)" + deep + "}}";
        CHECK(obj.size() <= max_request_line);
        CHECK(bad(obj).code == ErrorCode::BadRequest);
        // A longer line is too_long before anything else looks at it.
        CHECK(bad(std::string(max_request_line + 1, ' ')).code == ErrorCode::TooLong);
    }

} // TEST_SUITE

TEST_SUITE("ctl") {

    TEST_CASE("random and mutated lines never crash the codec (seeded, deterministic)") {
        // splitmix64: the same sequence on every run and every standard library.
        std::uint64_t state = 0x5eed;
        auto next = [&] {
            std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            return z ^ (z >> 31);
        };
        const std::vector<std::string> seeds{
            R"({"id":1,"cmd":"status","args":{"units":["web-*"]}})",
            R"({"id":"x","cmd":"signal","args":{"signal":"TERM","units":["a","b"]}})",
            R"({"cmd":"logs","args":{"unit":"web","lines":10,"follow":true}})",
        };
        int requests = 0, errors = 0;
        for (int i = 0; i < 20000; ++i) {
            std::string line = seeds[next() % seeds.size()];
            int edits = 1 + static_cast<int>(next() % 4);
            for (int k = 0; k < edits && !line.empty(); ++k) {
                std::size_t at = next() % line.size();
                switch (next() % 3) {
                case 0:
                    line[at] = static_cast<char>(next() & 0xff);
                    break;
                case 1:
                    line.erase(at, 1);
                    break;
                default:
                    line.insert(at, 1, "{}[]\",:0\\"[next() % 9]);
                    break;
                }
            }
            ParseResult r = parse_request(line);
            if (std::holds_alternative<Request>(r)) {
                ++requests;
            } else {
                ++errors;
                const auto &e = std::get<RequestError>(r);
                CHECK(!e.message.empty());
                CHECK((e.id.is_null() || e.id.is_string() || e.id.is_number_integer()));
                // The error reply for it is one well-formed line.
                std::string reply = make_error(e.id, e.code, e.message);
                CHECK(reply.find('\n') == reply.size() - 1);
            }
        }
        CHECK(requests > 0);
        CHECK(errors > 0);
    }

} // TEST_SUITE
