// src/cli/exit_codes.hpp: vigilctl's exit statuses, the one table (vigilctl(1), EXIT STATUS).
//
// Small numbers in the LSB init-script tradition: 3 is LSB's "program is not running" for
// status, 4 "unknown" (here: no such unit). 7 stands apart so that scripts can tell "vigild is
// not there" from "vigild said no"; 6 says that something else, run by another user, answers
// on vigild's socket.
#pragma once

#include <array>

namespace vigil::cli {

enum class Exit : int {
    Ok = 0,          // the command succeeded
    Error = 1,       // vigild refused or failed the command (the message is on stderr)
    Usage = 2,       // bad command line
    NotRunning = 3,  // status: a named unit is not running
    NotFound = 4,    // a unit name or pattern matched nothing
    Untrusted = 6,   // the socket's server runs as another user: not believed
    Unreachable = 7, // cannot connect to vigild, or no answer within --timeout
};

struct ExitInfo {
    Exit code;
    const char *meaning;
};

inline constexpr std::array<ExitInfo, 7> exit_table{{
    {Exit::Ok, "success"},
    {Exit::Error, "vigild refused or failed the command; the reason is on stderr"},
    {Exit::Usage, "usage error: unknown command or option, missing argument"},
    {Exit::NotRunning, "status: at least one named unit is not running"},
    {Exit::NotFound, "no unit matches a name or pattern"},
    {Exit::Untrusted, "the server on the socket runs as neither root nor the caller: not vigild"},
    {Exit::Unreachable, "cannot connect to vigild, the connection broke, or no answer in time"},
}};

inline constexpr int code(Exit e) {
    return static_cast<int>(e);
}

} // namespace vigil::cli
