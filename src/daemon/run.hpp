// run.hpp: vigild's supervision mode: the descriptor limit, the real OS (uv_os.hpp) and the
// shell (shell.hpp), run until the tree has stopped.
#pragma once

#include <functional>
#include <optional>

#include "options.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

// Runs the supervision tree until it stops; returns vigild's exit status. `load` reads the
// units (nullopt: they have problems, already reported; vigild exits 1). It runs once the
// spawner helper is forked, so that the helper, a copy of vigild, does not keep a private copy
// of every unit after vigild has moved them into the shell (bench/README.md, PSS).
int run_shell(Options opts, const std::function<std::optional<unit::LoadResult>()> &load);

} // namespace vigil::daemon
