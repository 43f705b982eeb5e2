// sd_notify message parsing: see vigil/notify/message.hpp.
#include "vigil/notify/message.hpp"

#include <charconv>

namespace vigil::notify {

namespace {

template <class T> std::optional<T> parse_number(std::string_view s) {
    T v{};
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

} // namespace

Message parse_message(std::string_view d) {
    Message m;
    while (!d.empty()) {
        auto nl = d.find('\n');
        std::string_view line = d.substr(0, nl);
        d = nl == std::string_view::npos ? std::string_view{} : d.substr(nl + 1);
        if (line.empty()) continue;
        auto eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            m.errors.push_back(std::string(line) + ": expected KEY=VALUE");
            continue;
        }
        std::string_view key = line.substr(0, eq), value = line.substr(eq + 1);
        auto bad = [&](const char *what) { m.errors.push_back(std::string(line) + ": " + what); };
        if (key == "READY") {
            if (value == "1")
                m.ready = true;
            else
                bad("expected 1");
        } else if (key == "RELOADING") {
            if (value == "1")
                m.reloading = true;
            else
                bad("expected 1");
        } else if (key == "STOPPING") {
            if (value == "1")
                m.stopping = true;
            else
                bad("expected 1");
        } else if (key == "BARRIER") {
            if (value == "1")
                m.barrier = true;
            else
                bad("expected 1");
        } else if (key == "WATCHDOG") {
            if (value == "1")
                m.watchdog = true;
            else if (value == "trigger")
                m.watchdog_trigger = true;
            else
                bad("expected 1 or trigger");
        } else if (key == "STATUS") {
            m.status = std::string(value);
        } else if (key == "MAINPID") {
            auto v = parse_number<int>(value);
            if (v && *v > 0)
                m.main_pid = *v;
            else
                bad("not a pid");
        } else if (key == "WATCHDOG_USEC") {
            auto v = parse_number<std::uint64_t>(value);
            if (v)
                m.watchdog_usec = *v;
            else
                bad("not a number of microseconds");
        } else if (key == "ERRNO") {
            auto v = parse_number<int>(value);
            if (v && *v >= 0)
                m.errno_value = *v;
            else
                bad("not an errno");
        } else {
            m.ignored.emplace_back(key);
        }
    }
    return m;
}

bool Message::acts() const noexcept {
    return ready || reloading || stopping || watchdog || watchdog_trigger || status || main_pid ||
           watchdog_usec || errno_value;
}

std::optional<ProcIds> parse_proc_stat(std::string_view text) {
    // "pid (comm) state ppid pgrp session ... exit_code" (exit_code is field 52)
    auto open = text.find(" (");
    auto close = text.rfind(')');
    if (open == std::string_view::npos || close == std::string_view::npos || close < open)
        return std::nullopt;
    ProcIds ids;
    auto pid = parse_number<int>(text.substr(0, open));
    if (!pid) return std::nullopt;
    ids.pid = *pid;
    std::string_view rest = text.substr(close + 1);
    // Fields after the command name, counted from 3 (the state).
    constexpr int exit_code_field = 52;
    int fields[4] = {0, 0, 0, 0}; // state (skipped), ppid, pgrp, session
    for (int field = 3; field <= exit_code_field; ++field) {
        while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\n'))
            rest.remove_prefix(1);
        auto sp = rest.find_first_of(" \n");
        std::string_view tok = rest.substr(0, sp);
        rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
        if (field <= 6) {
            if (tok.empty()) return std::nullopt;
            if (field == 3) {
                ids.state = tok.front();
                continue;
            }
            auto v = parse_number<int>(tok);
            if (!v) return std::nullopt;
            fields[field - 3] = *v;
        } else if (tok.empty()) {
            break; // an older kernel (or a test's excerpt) stops early
        } else if (field == exit_code_field) {
            ids.exit_code = parse_number<int>(tok);
        }
    }
    ids.ppid = fields[1];
    ids.pgrp = fields[2];
    ids.session = fields[3];
    return ids;
}

} // namespace vigil::notify
