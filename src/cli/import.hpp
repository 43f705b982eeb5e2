// src/cli/import.hpp: `vigilctl import`, a supervisord configuration turned into unit files
// (vigilctl(1), IMPORTING FROM SUPERVISORD, says what maps to what and why).
//
// It runs without vigild. Three stages, each a function the tests call on its own:
//  1. read_config(): the file and its [include]s, parsed as supervisord parses them (Python's
//     RawConfigParser with supervisord's options: `;` and `#` comments, inline ones after
//     whitespace, indented continuation lines, keys lower-cased, a section or key given twice
//     merged with the later value winning). Every file is bounded (max_file_bytes,
//     max_line_bytes), and so are the include tree (max_include_depth, max_files) and the
//     bytes read in all; a file met again is not read again, so a cycle ends.
//  2. convert(): sections -> units. Values are expanded as supervisord expands them
//     (Python's `%(name)s` formatting: here, program_name, group_name, host_node_name,
//     process_num, numprocs, ENV_X), commands split as shlex.split() does, `environment`
//     read as supervisord's KEY="val",KEY2=val2 lexer reads it. Whatever cannot be expressed
//     is a Finding, never a silent change. The units it returns are valid by construction: it
//     checks every value against vigil/unit/bounds.hpp and the tree against the loader's tree
//     bounds, so that one odd program cannot make vigild refuse the whole directory. (Users
//     and groups are the exception: vigild looks them up when it loads, and so does
//     `vigild --check`; vigilctl, statically linked, has no name service.)
//  3. write_units(): every file or none when one exists already (--force replaces them, each
//     through a temporary file and a rename). Files are created with O_EXCL and O_NOFOLLOW,
//     mode 0644, or 0600 when an input file was not readable by others (an `environment`
//     may hold secrets).
//
// Findings are of three kinds. An Error means nothing is written (an unreadable or malformed
// main file, an output problem). Lost means a behaviour of the configuration that the units
// do not have: it is printed and makes the exit status 1. A Note records a change without a
// loss, or something supervisord ignores as well; it does not change the exit status. Each is
// one line on stderr: FILE:LINE: [SECTION] KEY: what and why.
//
// Input is hostile in the ordinary sense: a file a user names may be huge, binary, a FIFO or
// an include bomb. Nothing here runs as a service, so files are opened as the user, but no
// size, count or depth is unbounded and no open can block (O_NONBLOCK, regular files only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace vigil::cli::import {

// ---- bounds -------------------------------------------------------------------------------
inline constexpr std::uint64_t max_file_bytes = std::uint64_t{1} << 20;   // one input file
inline constexpr std::uint64_t max_total_bytes = std::uint64_t{16} << 20; // all input files
inline constexpr std::size_t max_line_bytes = 64 * 1024; // one line of an input file
inline constexpr int max_include_depth = 8;              // the main file is depth 0
inline constexpr std::size_t max_files = 256;            // input files, the main one included
// One value after %-expansion (a command, an environment): execve's limit for a unit's command
// and environment together (vigil/unit/bounds.hpp max_exec_bytes).
inline constexpr std::size_t max_value_bytes = 256 * 1024;
// A %-format's width or precision: past any real name.
inline constexpr long long max_format_width = 4096;

// ---- findings -----------------------------------------------------------------------------
struct Finding {
    enum class Kind { Error, Lost, Note };
    Kind kind = Kind::Note;
    std::string file; // empty for findings about no input file (the output folder)
    int line = 0;     // 0: the whole file
    std::string section;
    std::string key;
    std::string message;
};

// "FILE:LINE: [SECTION] KEY: not converted: MESSAGE" (Lost), "...: note: MESSAGE" (Note),
// "FILE:LINE: error: MESSAGE" (Error); parts that are empty are left out.
std::string format(const Finding &f);

// ---- Python's string handling, as supervisord uses it ---------------------------------------
// shlex.split(s): POSIX quoting and backslashes, no comments. Nothing with `error` set.
std::optional<std::vector<std::string>> shlex_split(std::string_view s, std::string &error);

// supervisord's dict_of_key_value_pairs(): shlex in non-POSIX mode, word characters
// [A-Za-z0-9_/.+\-():], tokens KEY = VALUE separated by one token (a comma), quotes stripped
// from values. The pairs in order, a later KEY replacing an earlier one in place.
std::optional<std::vector<std::pair<std::string, std::string>>> key_value_pairs(std::string_view s,
                                                                                std::string &error);

// Python's `s % mapping` for the conversions supervisord's names take: %(name)s with flags,
// width and precision, %(name)d/i/u/x/X/o for numbers, %% for a literal %. A missing name, a
// string given to %d, an unkeyed conversion ("%s") or a result longer than max_value_bytes is
// an error.
using Expansion = std::variant<std::string, long long>;
using Expansions = std::map<std::string, Expansion, std::less<>>;
struct Scope {
    // Later maps win (supervisord's order: ENV_ of the process environment, of [supervisord]
    // environment, the program's names, ENV_ of the program's environment, here).
    std::vector<const Expansions *> maps;
    const Expansion *find(std::string_view name) const;
};
std::optional<std::string> expand(std::string_view s, const Scope &scope, std::string &error);

// ---- the configuration --------------------------------------------------------------------
struct IniValue {
    std::string text;     // lines joined with "\n", trailing whitespace removed
    std::size_t file = 0; // index into Ini::files
    int line = 0;         // the line of the key
};

struct IniSection {
    std::string name;
    std::size_t file = 0; // where the section first appeared
    int line = 0;
    std::map<std::string, IniValue> keys; // lower-cased keys
};

struct IniFile {
    std::string path; // as shown in findings: the argument, or the include's path
    std::string dir;  // its folder, absolute and normalised (supervisord's %(here)s)
    bool readable_by_others = true;
};

struct Ini {
    std::vector<IniFile> files;       // every file read, in reading order
    std::vector<IniSection> sections; // in order of first appearance; not DEFAULT
    IniSection defaults;              // [DEFAULT]: every section's fallback, as in Python
    // A section's place in `sections` by name (parse_ini keeps it): a file of 100,000 sections
    // must not cost 100,000 squared.
    std::map<std::string, std::size_t, std::less<>> index;
    const IniSection *find(std::string_view name) const;
};

// Parses `text` (the contents of ini.files[file]) into `ini`, merging sections and keys as
// Python does. Every malformed line is an Error in `out`; returns false when there was any
// (the caller then writes nothing, as supervisord would refuse to start). With `own_include`,
// the [include] files= of this text alone is stored there (a later file's [include] replaces
// it in the merged sections, as in supervisord, but each file's own is the one to follow).
bool parse_ini(std::string_view text, std::size_t file, Ini &ini, std::vector<Finding> &out,
               std::optional<IniValue> *own_include = nullptr);

// What the import takes from its own process: variables for %(ENV_X)s, the node name for
// %(host_node_name)s, HOME for ~ in log file paths and the working directory for relative
// paths. Tests give their own.
struct Environment {
    std::map<std::string, std::string> vars;
    std::string host_node_name;
    std::string cwd;
};
Environment environment_of_process();

// Reads `path` and, depth first, the files its [include] sections name. Returns false after an
// Error (nothing may be written); unreadable includes are Lost, no match is a Note.
bool read_config(const std::string &path, const Environment &env, Ini &ini,
                 std::vector<Finding> &out);

// ---- the units ----------------------------------------------------------------------------
struct UnitFile {
    std::string name;      // the unit's name ("root" for root.json)
    bool disabled = false; // autostart=false: written as NAME.json.disabled, not loaded
    nlohmann::ordered_json json;
    std::string origin; // "[program:web] (conf.d/web.conf:3)", for the summary
    std::string file_name() const { return name + (disabled ? ".json.disabled" : ".json"); }
};

struct Conversion {
    std::vector<UnitFile> units; // sorted by file name; root.json among them
    std::size_t programs = 0;    // [program:x] sections converted (wholly or in part)
};

// Returns nothing after an Error (the tree would break one of the loader's bounds).
std::optional<Conversion> convert(const Ini &ini, const Environment &env,
                                  std::vector<Finding> &out);

// Writes every unit into `dir` (created if missing, its parent must exist), or nothing if one
// of their files, or the other variant of a name (NAME.json for NAME.json.disabled and back),
// exists and `force` is false. `private_files`: mode 0600 instead of 0644. Returns false after
// an Error; the files written before a failed write stay, and `written` (when given) counts
// every file written.
bool write_units(const std::vector<UnitFile> &units, const std::string &dir, bool force,
                 bool private_files, std::vector<Finding> &out, std::size_t *written = nullptr);

// ---- the command --------------------------------------------------------------------------
struct Options {
    std::string config;
    std::string out = "units";
    bool force = false;
};

// At most this many findings are printed (then how many more there were), as vigild prints at
// most 1000 diagnostics.
inline constexpr std::size_t max_findings_shown = 1000;

// Reads, converts, writes; prints findings on stderr (sorted by file and line) and what was
// written on stdout. Returns vigilctl's exit status: 0 when everything was converted, 1 when
// something was not (Lost) or nothing could be written (Error).
int run(const Options &o, const Environment &env);

} // namespace vigil::cli::import
