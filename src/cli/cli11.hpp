// src/cli/cli11.hpp: CLI11 for vigilctl, without the start-up cost of <iostream>.
//
// CLI11 includes <iostream>. With libstdc++ before GCC 13 that header puts a static
// std::ios_base::Init object in every file that includes it, and its constructor builds cin,
// cout, cerr, clog, their wide twins and the classic locale in every run: ~45 k instructions
// and 9 page faults, a third of what `vigilctl status NAME` spends before its first system
// call (callgrind; bench/README.md's target: status within 1.0 x `sv status`). Only CLI11 prints
// through those streams (help, --version, usage errors), and only the full parser runs CLI11.
//
// So here <iostream>'s include guard is set before CLI11 comes in, the eight stream objects
// are declared as <iostream> declares them, and the full parser constructs an Init itself
// (cli_streams()) before it builds CLI11's parser. GCC 13 and later initialise the streams in
// the library instead and no longer put the object in each file: there <iostream> is included
// as usual, and cli_streams() only adds a reference to the library's own set-up.
#pragma once

#include <cstddef> // defines __GLIBCXX__ and _GLIBCXX_RELEASE with libstdc++

#if defined(__GLIBCXX__) && defined(_GLIBCXX_RELEASE) && _GLIBCXX_RELEASE < 13 &&                  \
    !defined(_GLIBCXX_IOSTREAM)
#define _GLIBCXX_IOSTREAM 1
#include <istream>
#include <ostream>
namespace std {
extern istream cin;
extern ostream cout;
extern ostream cerr;
extern ostream clog;
extern wistream wcin;
extern wostream wcout;
extern wostream wcerr;
extern wostream wclog;
} // namespace std
#else
#include <iostream>
#endif

#include <CLI/CLI.hpp>

namespace vigil::cli {

// Sets up the standard streams once (what <iostream>'s static object would have done at
// start-up). Call before CLI11 may print.
inline void cli_streams() {
    static std::ios_base::Init init;
}

} // namespace vigil::cli
