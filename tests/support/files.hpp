// tests/support/files.hpp: small file and descriptor helpers shared by the tests.
#pragma once

#include <doctest/doctest.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <unistd.h>

namespace vigil::test {

// The whole of a file's bytes ("" when it cannot be read).
inline std::string slurp(const std::filesystem::path &p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// Writes all of `s` to `fd` (a test fails if a write does).
inline void write_all(int fd, std::string_view s) {
    while (!s.empty()) {
        const ssize_t n = ::write(fd, s.data(), s.size());
        if (n < 0 && errno == EINTR) continue;
        REQUIRE(n > 0);
        s.remove_prefix(static_cast<std::size_t>(n));
    }
}

} // namespace vigil::test
