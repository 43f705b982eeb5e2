// sys_util.hpp: bounded waits and /proc readers for the proc sys tests.
//
// Every wait is bounded: wait_until() polls a predicate until a timeout scaled by
// VIGIL_TEST_TIMEOUT_MULTIPLIER (docs/house-style.md §7.8), and meson's `timeout:` is the backstop.
#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <optional>
#include <poll.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace vigil::proc::test {

inline std::chrono::milliseconds scaled(std::chrono::milliseconds ms) {
    const char *m = std::getenv("VIGIL_TEST_TIMEOUT_MULTIPLIER");
    long k = m ? std::atol(m) : 1;
    return ms * (k > 0 ? k : 1);
}

// Polls `pred` every millisecond until it is true or `timeout` passes.
inline bool wait_until(const std::function<bool()> &pred,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

// waitpid(pid) bounded by `timeout`; SIGKILLs and reaps the child on timeout (returns nullopt).
inline std::optional<int>
wait_exit(int pid, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    int st = 0;
    bool done = wait_until([&] { return waitpid(pid, &st, WNOHANG) == pid; }, timeout);
    if (done) return st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return std::nullopt;
}

// Reads fd until EOF, waiting at most `timeout` in total.
inline std::string read_all(int fd,
                            std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + scaled(timeout);
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) break;
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

inline std::string slurp(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// The value of "Key:" in /proc/<pid>/status, whitespace-trimmed.
inline std::string status_field(int pid, const std::string &key) {
    std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
    std::string line;
    while (std::getline(in, line)) {
        if (line.compare(0, key.size() + 1, key + ":") == 0) {
            std::string v = line.substr(key.size() + 1);
            auto b = v.find_first_not_of(" \t");
            auto e = v.find_last_not_of(" \t");
            return b == std::string::npos ? "" : v.substr(b, e - b + 1);
        }
    }
    return "";
}

struct ProcStat {
    char state = '?';
    int ppid = 0, pgrp = 0, session = 0;
};

// Fields of /proc/<pid>/stat after the command name (which may contain spaces and parens).
inline std::optional<ProcStat> proc_stat(int pid) {
    std::string s = slurp("/proc/" + std::to_string(pid) + "/stat");
    auto close = s.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream in(s.substr(close + 2));
    ProcStat st;
    in >> st.state >> st.ppid >> st.pgrp >> st.session;
    if (!in) return std::nullopt;
    return st;
}

inline bool process_exists(int pid) {
    return kill(pid, 0) == 0 || errno == EPERM;
}

} // namespace vigil::proc::test
