#include "options.hpp"

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>
#include <unistd.h>

namespace vigil::daemon {

std::string default_socket_path() {
    if (::geteuid() == 0) return "/run/vigil/control.sock";
    if (const char *xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        return std::string(xdg) + "/vigil/control.sock";
    return "/tmp/vigil-" + std::to_string(::geteuid()) + "/control.sock";
}

ParseOutcome parse_options(int argc, char **argv) {
    Options o;
    // Everything after the first "--" is the wrapped command, passed on byte for byte: split it
    // off before CLI11 sees it, so no option parsing can ever touch the child's arguments.
    int own = argc;
    for (int i = 1; i < argc; ++i) {
        if (std::string_view(argv[i]) == "--") {
            own = i;
            o.wrapper = true;
            o.command.assign(argv + i + 1, argv + argc);
            break;
        }
    }

    CLI::App app{"vigild: process supervisor and watchdog (Erlang/OTP-style supervision trees)",
                 "vigild"};
    app.set_version_flag("--version", std::string("vigild ") + VIGIL_VERSION);
    app.add_option("-u,--units", o.units, "Directory of JSON unit files")->capture_default_str();
    app.add_option("-s,--socket", o.socket,
                   "Control socket path (default: " + default_socket_path() + "; env VIGIL_SOCKET)")
        ->envname("VIGIL_SOCKET");
    app.add_option("--socket-group", o.socket_group,
                   "Group whose members may use read-only control commands (socket mode 0660)");
    app.add_option("--http", o.http,
                   "Serve /healthz /readyz /metrics /status on HOST:PORT (off by default)");
    app.add_flag("--check", o.check, "Validate the units, print the resolved tree and exit");
    bool no_cgroups = false;
    app.add_flag("--no-cgroups", no_cgroups,
                 "Make no cgroup per service (a process that leaves its service's session then "
                 "escapes a stop; vigilctl status lists such processes)");
    std::string level = "info";
    app.add_option("--log-level", level, "error, warn, info (default) or debug")
        ->check(CLI::IsMember({"error", "warn", "info", "debug"}));
    app.add_flag("-g,--group", o.group,
                 "Wrapper mode: forward signals to the child's process group, not just the child");
    app.footer("Wrapper mode: vigild [OPTIONS] -- CMD [ARGS...] runs CMD as its only child, "
               "forwards signals, reaps zombies and exits with CMD's status (like tini).");
    try {
        app.parse(own, argv);
    } catch (const CLI::CallForHelp &e) {
        return {std::nullopt, app.exit(e)};
    } catch (const CLI::CallForVersion &e) {
        return {std::nullopt, app.exit(e)};
    } catch (const CLI::ParseError &e) {
        app.exit(e);
        return {std::nullopt, 2};
    }
    if (level == "error")
        o.log_level = LogLevel::Error;
    else if (level == "warn")
        o.log_level = LogLevel::Warn;
    else if (level == "debug")
        o.log_level = LogLevel::Debug;
    if (o.wrapper && o.command.empty()) {
        std::cerr << "vigild: nothing to run after '--': give a command, e.g. vigild -- sleep 10\n";
        return {std::nullopt, 2};
    }
    if (o.socket.empty()) o.socket = default_socket_path();
    o.cgroups = !no_cgroups;
    return {std::move(o), 0};
}

} // namespace vigil::daemon
