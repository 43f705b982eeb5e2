// vigild: the supervisor daemon. main() only dispatches: wrapper mode (`vigild -- CMD`),
// `--check`, or the supervision shell. It is also the last line of defence: an exception that
// escapes is logged, never a silent abort (docs/house-style.md §7.7).
//
// Wrapper mode is decided first, by hand (parse_wrapper_fast), before any option parser is
// built: `vigild -- CMD` must start CMD as fast as catatonit does (wrapper.hpp). It is decided
// even before main(), in a constructor that runs ahead of the C++ run-time's own start-up:
// the static initialisers of <iostream> (included by CLI11) build the standard streams and
// the classic locale, which alone cost vigild more instructions and page faults than all of
// its wrapper mode (bench/README.md). Every other command line, wrapper mode with options the
// fast path does not know included, goes on to main() and CLI11 (parse_options).
#include <cstdio>
#include <exception>
#include <iostream>
#include <new>
#include <optional>
#include <string>
#include <unistd.h>

#include "handover.hpp"
#include "options.hpp"
#include "run.hpp"
#include "vigil/unit/unit.hpp"
#include "wrapper.hpp"

// The state format this binary reads across a re-exec (handover.hpp). The build makes a
// second binary, vigild-nextversion, that reads another one: what a newer vigild that cannot
// read this state does is tested with it.
#ifdef VIGIL_HANDOVER_NEXT
#define VIGIL_HANDOVER_VERSION (vigil::daemon::handover_payload_version + 1)
#else
#define VIGIL_HANDOVER_VERSION vigil::daemon::handover_payload_version
#endif

namespace {

// The binary that runs: a re-exec runs the file at this path again (a newer one after an
// upgrade). Read at start-up: once the package manager has replaced the file, /proc/self/exe
// names the old, deleted one.
std::string own_binary() {
    char buf[4096];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Priority 101, the first one open to programs, puts this ahead of every other initialiser in
// vigild (the C++ library's included: it is linked statically); libc, a shared library, is
// initialised before it. glibc passes argc, argv and envp to initialisers, as to main(). The
// wrapper needs nothing that a static initialiser sets up: C stdio, syscalls, constexpr
// tables. It ends the process itself, so no initialiser and no destructor of vigild's ever
// runs in wrapper mode.
[[gnu::constructor(101)]] void wrapper_fast_path(int argc, char **argv, char ** /*envp*/) {
    if (const auto call = vigil::daemon::parse_wrapper_fast(argc, argv)) {
        const int status = vigil::daemon::run_wrapper(call->options, call->command);
        std::fflush(stderr);
        _exit(status);
    }
}

} // namespace

int main(int argc, char **argv) {
    using namespace vigil;
    try {
        auto parsed = daemon::parse_options(argc, argv);
        if (!parsed.options) return parsed.status;
        daemon::Options &opts = *parsed.options;
        opts.exe = own_binary();
        opts.argv.assign(argv, argv + argc);
        opts.handover_version = VIGIL_HANDOVER_VERSION;

        if (opts.wrapper)
            return daemon::run_wrapper(
                daemon::WrapperOptions{opts.group, opts.log_level == daemon::LogLevel::Debug},
                opts.command);

        auto load = [&opts]() -> std::optional<unit::LoadResult> {
            unit::LoadResult loaded = unit::load_dir(opts.units);
            if (loaded.ok()) return loaded;
            for (const auto &d : loaded.diagnostics)
                std::cerr << unit::format(d) << '\n';
            std::cerr << "vigild: " << unit::count_problems(loaded.problems) << " in " << opts.units
                      << "; nothing was started. Fix the unit files, then check again with "
                         "`vigild --check --units "
                      << opts.units << "`\n";
            return std::nullopt;
        };
        if (opts.check) {
            const std::optional<unit::LoadResult> loaded = load();
            if (!loaded) return 1;
            std::cout << unit::render_tree(*loaded);
            return 0;
        }
        return daemon::run_shell(opts, load);
    } catch (const std::bad_alloc &) {
        std::cerr << "vigild: out of memory\n";
    } catch (const std::exception &e) {
        std::cerr << "vigild: fatal: " << e.what() << '\n';
    }
    return 1;
}
