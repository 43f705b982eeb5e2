#include "journal.hpp"

namespace vigil::daemon {

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

void Journal::emit(std::string line) {
    char ts[log::timestamp_len];
    ts_.format(wall_(), ts);
    line.insert(0, std::string_view(ts, log::timestamp_len));
    if (sink_) sink_(line);
}

void Journal::record(const core::Record &r, int pid) {
    if (level_of(r) > level_) return;
    std::string line = " " + r.unit;
    if (pid > 0) line += '[' + std::to_string(pid) + ']';
    line += ": ";
    line += r.message;
    emit(std::move(line));
}

void Journal::say(LogLevel level, std::string_view message) {
    if (level > level_) return;
    std::string line = " vigild: ";
    line += message;
    emit(std::move(line));
}

void Journal::limited(std::string_view topic, LogLevel level, std::string_view message,
                      TimePoint now) {
    if (level > level_) return;
    auto it = budgets_.find(topic);
    if (it == budgets_.end()) {
        // Topics are a fixed vocabulary of the shell's, but bound the map anyway.
        if (budgets_.size() >= 256) budgets_.clear();
        it = budgets_.emplace(std::string(topic), Budget{0, now, 0}).first;
    }
    Budget &b = it->second;
    if (now - b.window >= interval) {
        b.window = now;
        b.used = 0;
    }
    if (b.used >= burst) {
        ++b.suppressed;
        return;
    }
    ++b.used;
    std::string line(message);
    if (b.suppressed > 0) {
        line += " (" + std::to_string(b.suppressed) + " similar lines suppressed)";
        b.suppressed = 0;
    }
    say(level, line);
}

} // namespace vigil::daemon
