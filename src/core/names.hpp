// names.hpp: human-readable text for history messages (signal names, durations, statuses).
//
// The core includes no OS header, so it cannot use strsignal(3); Linux signal numbers 1..31 are
// stable ABI on x86-64 and arm64, and a table of names is all a message needs.
#pragma once

#include <string>

#include "vigil/core/event.hpp"
#include "vigil/time.hpp"

namespace vigil::core {

// "SIGTERM" for 15, "signal 40" for numbers outside the table.
std::string signal_name(int signal);
// "412ms", "10s", "2m", "infinity" style renderings.
std::string format_duration(Duration d);
// "exited with status 1" or "killed by SIGKILL".
std::string describe_exit(ExitStatus status);

} // namespace vigil::core
