// tests/fuzz/fuzz_notify.cpp: libFuzzer target for the sd_notify message and /proc/<pid>/stat
// parsers.
//  - parse_message() takes any datagram; what it keeps obeys the header (MAINPID > 0,
//    ERRNO >= 0) and every line it rejects is reported once in `errors`;
//  - parse_proc_stat() takes any text; and with the input as a process's command name (which may
//    hold spaces, parentheses and newlines) inside a well-formed stat line, it must find the
//    fields after the last ')' exactly.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "vigil/notify/message.hpp"

namespace {

using namespace vigil::notify;

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_notify: invariant broken: %s\n", what);
    std::abort();
}

void check_message(std::string_view datagram) {
    Message m = parse_message(datagram);
    if (m.main_pid) check(*m.main_pid > 0, "MAINPID is positive");
    if (m.errno_value) check(*m.errno_value >= 0, "ERRNO is not negative");
    std::size_t lines = 1;
    for (char c : datagram)
        lines += c == '\n';
    check(m.errors.size() + m.ignored.size() <= lines, "at most one report per line");
    if (m.status) check(m.status->find('\n') == std::string::npos, "STATUS is one line");
}

void check_proc_stat(std::string_view text) {
    (void)parse_proc_stat(text);
    std::string line = "4242 (";
    line.append(text);
    line += ") S 17 4242 99 34816 4242 4194560 159 0 0 0 0 0 0 0 20 0 1 0 123 4096 1\n";
    auto ids = parse_proc_stat(line);
    check(ids.has_value(), "a stat line with any command name parses");
    check(ids->pid == 4242 && ids->ppid == 17 && ids->pgrp == 4242 && ids->session == 99,
          "the fields after the last ')' are read");
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char *>(data), size);
    check_message(text);
    check_proc_stat(text);
    return 0;
}
