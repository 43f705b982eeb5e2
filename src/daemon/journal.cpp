#include "journal.hpp"

#include "vigil/log/line.hpp"

#include <unistd.h>

namespace vigil::daemon {

std::string rfc3339_now() {
    // The log module's formatter: one RFC 3339 rendering for vigild's lines and the services'.
    static log::TimestampFormatter formatter;
    std::string out(log::timestamp_len, ' ');
    formatter.format(log::wall_now(), out.data());
    return out;
}

LogLevel level_of(const core::Record &r) {
    using K = core::RecordKind;
    switch (r.kind) {
    case K::Notice:
        return r.cause == core::Cause::Pattern ? LogLevel::Warn : LogLevel::Info;
    case K::Starting:
    case K::Started:
    case K::Ready:
    case K::Stopping:
    case K::Stopped:
    case K::Command:
    case K::Reconfigured:
    case K::Removed:
        return LogLevel::Info;
    case K::NotReady:
    case K::Exited:
    case K::Killed:
    case K::SpawnFailed:
    case K::Unhealthy:
    case K::Restarting:
    case K::AutoShutdown:
        return LogLevel::Warn;
    case K::StartFailed:
    case K::GaveUp:
    case K::Exit:
        return LogLevel::Error;
    }
    return LogLevel::Info;
}

static void write_line(std::string line) {
    line += '\n';
    // One write per line, so lines from vigild never interleave mid-line with forwarded output
    // (stderr is unbuffered, and short writes to a pipe of < PIPE_BUF bytes are atomic).
    const char *p = line.data();
    size_t left = line.size();
    while (left > 0) {
        ssize_t n = ::write(STDERR_FILENO, p, left);
        if (n < 0) return; // stderr gone: nothing sensible to do
        p += n;
        left -= static_cast<size_t>(n);
    }
}

void Journal::record(const core::Record &r, int pid) {
    if (level_of(r) > level_) return;
    std::string line = rfc3339_now();
    line += ' ';
    line += r.unit;
    if (pid > 0) line += '[' + std::to_string(pid) + ']';
    line += ": ";
    line += r.message;
    write_line(std::move(line));
}

void Journal::say(LogLevel level, std::string_view message) {
    if (level > level_) return;
    std::string line = rfc3339_now();
    line += " vigild: ";
    line += message;
    write_line(std::move(line));
}

} // namespace vigil::daemon
