// vigil/notify/message.hpp: the sd_notify(3) datagram, parsed (pure).
//
// A notification is newline-separated KEY=VALUE assignments (systemd's sd_notify protocol).
// vigil parses READY=1, RELOADING=1, STOPPING=1, STATUS=..., MAINPID=N, WATCHDOG=1,
// WATCHDOG=trigger, WATCHDOG_USEC=N, ERRNO=N and BARRIER=1 (vigild acts on all but RELOADING=1
// and ERRNO=, which it ignores: vigil.unit(5) says what each does). Other keys (FDSTORE=1,
// EXTEND_TIMEOUT_USEC=, MONOTONIC_USEC=, ...) are accepted and ignored, as systemd ignores keys it
// does not know; malformed values are reported in `errors` and the rest of the message stands.
// When a key repeats, the last assignment wins.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vigil::notify {

struct Message {
    bool ready = false;                // READY=1
    bool reloading = false;            // RELOADING=1
    bool stopping = false;             // STOPPING=1
    bool watchdog = false;             // WATCHDOG=1: a keep-alive ping
    bool watchdog_trigger = false;     // WATCHDOG=trigger: the service asks to be treated as hung
    bool barrier = false;              // BARRIER=1 (the sender waits for its fd to be closed)
    std::optional<std::string> status; // STATUS=free text
    std::optional<int> main_pid;       // MAINPID=
    std::optional<std::uint64_t> watchdog_usec; // WATCHDOG_USEC= (0 disables the watchdog)
    std::optional<int> errno_value;             // ERRNO=
    std::vector<std::string> errors;            // "MAINPID=abc: not a pid"
    std::vector<std::string> ignored;           // keys vigil does not act on

    // True when the message asks for something (READY=1, STATUS=, MAINPID=, ...). BARRIER=1
    // and ignored keys alone ask for nothing: refusing such a message changes nothing, so a
    // sender that cannot be attributed (systemd-notify's barrier after it exited) is dropped
    // without a warning.
    bool acts() const noexcept;
};

Message parse_message(std::string_view datagram);

// The ids of a process as /proc/<pid>/stat reports them.
struct ProcIds {
    int pid = 0, ppid = 0, pgrp = 0, session = 0;
    char state = 0; // 'R', 'S', ... 'Z' for a zombie (exited, not yet reaped by its parent)
    // Field 52 (Linux 3.5+): a zombie's wait status, as waitpid(2) would return it to its
    // parent. Shown only to a reader allowed to ptrace the process (root, or the same user).
    std::optional<int> exit_code;
};
// Parses the text of /proc/<pid>/stat (pure). The command name may contain spaces and ')', so
// the fields are located after the *last* ')'.
std::optional<ProcIds> parse_proc_stat(std::string_view text);

} // namespace vigil::notify
