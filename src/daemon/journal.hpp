// vigild's own output: one line per event on stderr, e.g.
//   2026-11-26T10:00:00.123Z web[1234]: exited with status 1; restart in 412ms (backoff)
// Routine records (starting, started, stopping...) are "info"; a crash or a restart is "warn";
// giving up, start-up failure and exit are "error". --log-level hides what is below it.
#pragma once

#include <string>
#include <string_view>

#include "options.hpp"
#include "vigil/core/action.hpp"

namespace vigil::daemon {

// Wall-clock time now as RFC 3339 UTC with milliseconds ("2026-11-26T10:00:00.123Z").
std::string rfc3339_now();

LogLevel level_of(const core::Record &r);

class Journal {
public:
    explicit Journal(LogLevel level) : level_(level) {}
    void record(const core::Record &r, int pid);
    // Messages of vigild itself (not about one child).
    void say(LogLevel level, std::string_view message);
    LogLevel level() const { return level_; }

private:
    LogLevel level_;
};

} // namespace vigil::daemon
