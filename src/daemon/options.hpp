// vigild's command line (CLI11). Parsing is separate from main() so tests can drive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace vigil::daemon {

enum class LogLevel { Error, Warn, Info, Debug };

struct Options {
    std::string units = "/etc/vigil/units";
    std::string socket;                      // empty: the default for this uid
    std::optional<std::string> socket_group; // 0660 and read-only access for its members
    std::optional<std::string> http;         // "127.0.0.1:9100"
    bool check = false;                      // validate, print the tree, exit
    bool cgroups = true; // a cgroup v2 per service where vigild can make one (--no-cgroups)
    LogLevel log_level = LogLevel::Info;
    bool quiet_restarts = false; // --log-level=warn hides routine restarts
    // Not an option: the descriptor limit services get (vigild's own before it raised it).
    std::optional<std::pair<std::uint64_t, std::uint64_t>> service_nofile;
    // Not options: what a re-exec (vigilctl reexec) runs again: the binary (its path when
    // vigild started, so a newer file there is what runs), the arguments, and the service
    // manager's variables vigild took out of its environment (run.cpp).
    std::string exe;
    std::vector<std::string> argv;
    std::vector<std::string> manager_env;
    // The state format this binary reads (handover.hpp); a test build reads another.
    std::uint32_t handover_version = 1;
    // Wrapper mode: everything after "--".
    std::vector<std::string> command;
    bool wrapper = false;
    bool group = false; // wrapper: forward signals to the child's process group
};

struct ParseOutcome {
    std::optional<Options> options; // nullopt: exit with `status` (help, version, usage error)
    int status = 0;
};

ParseOutcome parse_options(int argc, char **argv);

// The default control socket: /run/vigil/control.sock for root, else
// $XDG_RUNTIME_DIR/vigil/control.sock (or /tmp/vigil-<uid>/control.sock without XDG).
std::string default_socket_path();

} // namespace vigil::daemon
