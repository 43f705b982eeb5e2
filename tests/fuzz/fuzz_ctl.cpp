// tests/fuzz/fuzz_ctl.cpp: libFuzzer target for the control protocol codec.
//
// The input is one line as a client could send it, and also one line as a server could:
//  - parse_request() never throws; a Request it returns obeys the header's promises (id null,
//    integer or a short string; args an object; a signal number in 1..64; unit lists, names
//    and lines within their bounds), and the line make_request()
//    builds from it parses again to the same command, args and id;
//  - a RequestError, answered with make_error(), parses on the client side as an Error with
//    the code's name;
//  - parse_server_message() either returns a message or says why not;
//  - a signal name core::parse_signal() accepts names the same signal again via signal_name().
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "vigil/core/names.hpp"
#include "vigil/ctl/protocol.hpp"

namespace {

using namespace vigil::ctl;

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_ctl: invariant broken: %s\n", what);
    std::abort();
}

std::string_view without_newline(const std::string &line) {
    check(!line.empty() && line.back() == '\n', "a built line ends with a newline");
    return std::string_view(line).substr(0, line.size() - 1);
}

void check_request(std::string_view line) {
    ParseResult pr = parse_request(line);
    if (const auto *req = std::get_if<Request>(&pr)) {
        check(req->id.is_null() || req->id.is_string() || req->id.is_number_integer(),
              "a request id is null, an integer or a string");
        check(req->args.is_object(), "args is an object");
        if (req->cmd == Cmd::Signal) check(req->signal >= 1 && req->signal <= 64, "signal range");
        check(!req->id.is_string() ||
                  req->id.get_ref<const std::string &>().size() <= max_id_length,
              "a string id is short");
        check(req->units.size() <= max_units_per_request, "a bounded unit list");
        for (const auto &u : req->units)
            check(!u.empty() && u.size() <= max_unit_name, "unit patterns are bounded");
        check(req->unit.size() <= max_unit_name, "a unit name is bounded");
        check(!req->lines || *req->lines <= max_lines, "lines is bounded");
        check(line.size() <= max_request_line, "a request line is bounded");
        std::string again = make_request(req->id, req->cmd, req->args);
        ParseResult pr2 = parse_request(without_newline(again));
        const auto *req2 = std::get_if<Request>(&pr2);
        check(req2 != nullptr, "make_request's line parses");
        check(req2->cmd == req->cmd && req2->args == req->args && req2->id == req->id,
              "make_request's line parses to the same request");
        check(req2->units == req->units && req2->unit == req->unit && req2->lines == req->lines &&
                  req2->follow == req->follow && req2->reopen == req->reopen &&
                  req2->signal == req->signal,
              "make_request's line gives the same typed fields");
        return;
    }
    const auto &err = std::get<RequestError>(pr);
    check(!err.message.empty(), "an error says why");
    std::string answer = make_error(err.id, err.code, err.message);
    std::string why;
    auto m = parse_server_message(without_newline(answer), &why);
    check(m.has_value(), "make_error's line parses on the client side");
    check(m->kind == ServerMessage::Kind::Error, "make_error's line is an error");
    check(m->code == to_string(err.code), "the error code survives");
    check(error_code_from_string(m->code) == err.code, "the error code's name maps back");
    // Messages quote the input, which may not be UTF-8: make_error() replaces what is not.
    const std::string sent = Json(err.message).dump(-1, ' ', false, Json::error_handler_t::replace);
    check(m->message == Json::parse(sent).get<std::string>(), "the error message survives");
    check(m->id == err.id, "the id survives");
}

void check_server_message(std::string_view line) {
    std::string why;
    auto m = parse_server_message(line, &why);
    if (!m) check(!why.empty(), "a rejected server line says why");
}

void check_signal(std::string_view s) {
    auto n = vigil::core::parse_signal(s);
    if (!n) return;
    check(vigil::core::valid_signal(*n), "a parsed signal is a valid signal");
    std::string name = vigil::core::signal_name(*n);
    check(vigil::core::parse_signal(name) == n, "signal_name's name maps back to the signal");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view line(reinterpret_cast<const char *>(data), size);
    check_request(line);
    check_server_message(line);
    if (size <= 32) check_signal(line);
    return 0;
}
