// run.hpp: vigild's supervision mode: the descriptor limit, the real OS (uv_os.hpp) and the
// shell (shell.hpp), run until the tree has stopped.
#pragma once

#include "options.hpp"
#include "vigil/unit/unit.hpp"

namespace vigil::daemon {

// Runs the supervision tree until it stops; returns vigild's exit status.
int run_shell(Options opts, unit::LoadResult loaded);

} // namespace vigil::daemon
