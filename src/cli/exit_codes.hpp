// src/cli/exit_codes.hpp: vigilctl's exit statuses, the one table (vigilctl(1), EXIT STATUS).
//
// Small numbers in the LSB init-script tradition: 3 is LSB's "program is not running" for
// status, 4 "unknown" (here: no such unit). 7 stands apart so that scripts can tell "vigild is
// not there" from "vigild said no"; 6 says that something else, run by another user, answers
// on vigild's socket. The commands that wait for their change (start, stop, restart, reload,
// shutdown) exit 1 when a unit failed while waited for, or the change was not done within
// --timeout (LSB's generic failure, as systemctl does), and 130 (128 + SIGINT, the shell's
// spelling of an interrupted command) when Ctrl-C stopped the wait.
#pragma once

#include <array>

namespace vigil::cli {

enum class Exit : int {
    Ok = 0,            // the command succeeded
    Error = 1,         // vigild refused or failed the command, a unit failed or was not done in
                       // time while waited for (the message is on stderr)
    Usage = 2,         // bad command line
    NotRunning = 3,    // status: a named unit is not running
    NotFound = 4,      // a unit name or pattern matched nothing
    Untrusted = 6,     // the socket's server runs as another user: not believed
    Unreachable = 7,   // cannot connect to vigild, or no answer within --timeout
    Interrupted = 130, // Ctrl-C (SIGINT) stopped the wait; vigild goes on with the change
};

struct ExitInfo {
    Exit code;
    const char *meaning;
};

inline constexpr std::array<ExitInfo, 8> exit_table{{
    {Exit::Ok, "success"},
    {Exit::Error, "vigild refused or failed the command, or a unit it changed failed or was not "
                  "done within --timeout; the reason is on stderr"},
    {Exit::Usage, "usage error: unknown command or option, missing argument"},
    {Exit::NotRunning, "status: at least one named unit is not running"},
    {Exit::NotFound, "no unit matches a name or pattern"},
    {Exit::Untrusted, "the server on the socket runs as neither root nor the caller: not vigild"},
    {Exit::Unreachable, "cannot connect to vigild, the connection broke, or no answer in time"},
    {Exit::Interrupted, "interrupted (SIGINT) while waiting; vigild goes on with the change"},
}};

inline constexpr int code(Exit e) {
    return static_cast<int>(e);
}

} // namespace vigil::cli
