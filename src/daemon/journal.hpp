// journal.hpp: vigild's own output, one line per record or message, e.g.
//   2026-11-26T10:00:00.123Z web[1234]: exited with status 1; restart in 412ms (backoff)
// Routine records (starting, started, stopping...) are "info"; a crash or a restart is "warn";
// giving up, start-up failure and exit are "error". --log-level hides what is below it.
// Lines go to a sink the shell's Os provides (vigild's stderr through a non-blocking queue,
// vigil/log/forwarder.hpp), so a blocked stderr never blocks the loop and loses nothing silently.
//
// Lines vigild writes about what others did (a refused notification, a misbehaving control
// client) can be provoked at will, so they are rate-limited per topic (Journal::limited): at
// most `burst` lines per `interval`; the first line after some were suppressed says how many.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "options.hpp"
#include "vigil/core/action.hpp"
#include "vigil/log/line.hpp"
#include "vigil/time.hpp"

namespace vigil::daemon {

LogLevel level_of(const core::Record &r);

class Journal {
public:
    using Sink = std::function<void(std::string_view line)>;
    Journal(LogLevel level, Sink sink, log::WallClock wall = log::wall_now)
        : level_(level), sink_(std::move(sink)), wall_(wall) {}

    // A history record: "<time> <unit>[<pid>]: <message>".
    void record(const core::Record &r, int pid);
    // A message of vigild itself (not about one child): "<time> vigild: <message>".
    void say(LogLevel level, std::string_view message);
    // say(), at most `burst` lines of `topic` per `interval`; the next one says how many were
    // suppressed. `now` is the loop's time.
    void limited(std::string_view topic, LogLevel level, std::string_view message, TimePoint now);
    LogLevel level() const { return level_; }

    static constexpr int burst = 10;
    static constexpr Duration interval{10'000};

private:
    struct Budget {
        int used = 0;
        TimePoint window{};
        std::uint64_t suppressed = 0;
    };
    void emit(std::string line);

    LogLevel level_;
    Sink sink_;
    log::WallClock wall_;
    log::TimestampFormatter ts_;
    std::map<std::string, Budget, std::less<>> budgets_;
};

} // namespace vigil::daemon
