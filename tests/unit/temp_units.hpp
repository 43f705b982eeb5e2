// tests/unit/temp_units.hpp: a private unit directory for tests that build their units in code
// (bounds, file types, sizes), removed when the test ends.
#pragma once

#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <fstream>
#include <string>

#include "vigil/unit/unit.hpp"

namespace vigil::unit::test {

class TempUnits {
public:
    TempUnits() {
        const char *tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-unit-test.XXXXXX";
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        root_ = templ;
        dir_ = root_ / "units";
        std::filesystem::create_directory(dir_);
    }
    ~TempUnits() {
        std::error_code ec;
        std::filesystem::remove_all(root_, ec);
    }
    TempUnits(const TempUnits &) = delete;
    TempUnits &operator=(const TempUnits &) = delete;

    const std::filesystem::path &dir() const { return dir_; }
    // A place outside the units directory (for symlink targets).
    const std::filesystem::path &outside() const { return root_; }

    void write(const std::string &file, const std::string &text) const {
        std::ofstream(dir_ / file, std::ios::binary) << text;
    }
    void remove(const std::string &file) const { std::filesystem::remove(dir_ / file); }
    LoadResult load() const { return load_dir(dir_); }

private:
    std::filesystem::path root_, dir_;
};

// Every diagnostic, formatted, one a line (as vigild --check prints them).
inline std::string diagnostics_text(const LoadResult &r) {
    std::string out;
    for (const auto &d : r.diagnostics)
        out += format(d) + "\n";
    return out;
}

} // namespace vigil::unit::test
