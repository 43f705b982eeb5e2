// tests/fuzz/fuzz_unit.cpp: libFuzzer target for the unit loader.
//
// Two parts per input:
//  1. parse_positioned() on the whole input, checked against nlohmann's own parser: it accepts
//     exactly the texts nlohmann accepts (except those nested deeper than max_json_depth, with
//     a NUL byte, or whose positions' pointers would pass max_pointer_bytes), and when it
//     reports no problem (no duplicate key) it builds the same value; every recorded position is
//     1-based.
//  2. the full check: the input is split at "\n%%\n" into up to four unit files (web.json,
//     root.json, db.json, grp.json, in that order) written to a private temporary directory, and
//     load_dir() loads them: parents, "after" edges, cycles and the fingerprints all run. A
//     successful load must give aligned tree.nodes and units, and render_tree() must work;
//     every diagnostic must format.
// load_dir() is the loader's only entry point that takes unit text (the per-file checks are
// internal to load.cpp), hence the files; they live in $TMPDIR and are removed at exit.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "vigil/unit/json_positions.hpp"
#include "vigil/unit/unit.hpp"

namespace {

namespace fs = std::filesystem;

fs::path &work_dir() {
    static fs::path dir;
    return dir;
}

void remove_work_dir() {
    std::error_code ec;
    if (!work_dir().empty()) fs::remove_all(work_dir(), ec);
}

void check(bool ok, const char *what) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_unit: invariant broken: %s\n", what);
    std::abort();
}

// How deeply arrays and objects nest in valid JSON text (a loop, not a recursion over the
// value: deep inputs are the point).
std::size_t depth(std::string_view text) {
    std::size_t d = 0, max = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\')
                ++i;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            max = std::max(max, ++d);
        } else if (c == ']' || c == '}') {
            --d;
        }
    }
    return max;
}

void check_positioned(std::string_view text) {
    auto pj = vigil::unit::parse_positioned(text);
    auto ref = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    // parse_positioned refuses what nests deeper than max_json_depth, any NUL byte (nlohmann
    // takes a NUL for the end of the input) and texts whose pointers pass max_pointer_bytes
    // (one problem that says so); nlohmann does not.
    const bool deep = !ref.is_discarded() && depth(text) > vigil::unit::max_json_depth;
    const bool nul = text.find('\0') != std::string_view::npos;
    const bool costly = !pj.syntax_ok && pj.problems.size() == 1 &&
                        pj.problems[0].message.starts_with("JSON too costly to index");
    check(pj.syntax_ok == (!ref.is_discarded() && !deep && !nul && !costly),
          "parse_positioned accepts what nlohmann accepts, unless too deep, too costly or with "
          "a NUL");
    if (!pj.syntax_ok) {
        check(!pj.problems.empty(), "a syntax error is reported");
        return;
    }
    if (pj.problems.empty()) check(pj.value == ref, "the same value as nlohmann's");
    for (const auto &[ptr, pos] : pj.value_pos)
        check(pos.line >= 1 && pos.column >= 1, "value positions are 1-based");
    for (const auto &[ptr, pos] : pj.key_pos)
        check(pos.line >= 1 && pos.column >= 1, "key positions are 1-based");
    check(pj.value_pos.count("") == 1, "the root value has a position");
}

void check_load(std::string_view text) {
    static const char *const names[] = {"web.json", "root.json", "db.json", "grp.json"};
    const fs::path &dir = work_dir();
    for (const char *n : names)
        fs::remove(dir / n);
    constexpr std::string_view sep = "\n%%\n";
    for (const char *n : names) {
        auto cut = text.find(sep);
        std::string_view part = text.substr(0, cut);
        std::ofstream(dir / n, std::ios::binary)
            .write(part.data(), static_cast<std::streamsize>(part.size()));
        if (cut == std::string_view::npos) break;
        text.remove_prefix(cut + sep.size());
    }
    auto r = vigil::unit::load_dir(dir);
    for (const auto &d : r.diagnostics)
        check(!vigil::unit::format(d).empty(), "a diagnostic formats");
    if (r.ok()) {
        check(!r.tree.nodes.empty(), "a loaded tree has a root");
        check(r.tree.nodes.size() == r.units.size(), "tree.nodes and units are aligned");
        check(!vigil::unit::render_tree(r).empty(), "render_tree renders");
    }
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***) {
    const char *tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-fuzz-unit.XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
        std::perror("fuzz_unit: mkdtemp");
        std::abort();
    }
    work_dir() = templ;
    std::atexit(remove_work_dir);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char *>(data), size);
    check_positioned(text);
    check_load(text);
    return 0;
}
