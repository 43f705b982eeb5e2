// Prometheus rendering and /proc/self figures: see vigil/http/metrics.hpp.
#include "vigil/http/metrics.hpp"

#include <algorithm>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

namespace vigil::http {

namespace {

// 15 significant digits (a double's exact decimal digits) in C's format: vigild never sets a
// locale. Not std::to_chars: its double overload brings in libm's rounding-mode functions, and
// vigild would need libm only for that.
std::string number(double v) {
    char buf[64];
    const int n = std::snprintf(buf, sizeof buf, "%.15g", v);
    if (n <= 0 || static_cast<std::size_t>(n) >= sizeof buf) return "NaN";
    return std::string(buf, static_cast<std::size_t>(n));
}

class Writer {
public:
    void family(const char *name, const char *type, const char *help) {
        out_ += "# HELP ";
        out_ += name;
        out_ += ' ';
        out_ += help;
        out_ += "\n# TYPE ";
        out_ += name;
        out_ += ' ';
        out_ += type;
        out_ += '\n';
    }
    // labels: already rendered `a="b",c="d"` or empty.
    void sample(const char *name, const std::string &labels, const std::string &value) {
        out_ += name;
        if (!labels.empty()) {
            out_ += '{';
            out_ += labels;
            out_ += '}';
        }
        out_ += ' ';
        out_ += value;
        out_ += '\n';
    }
    std::string take() { return std::move(out_); }

private:
    std::string out_;
};

std::string unit_label(const UnitFigures &u) {
    return "unit=\"" + escape_label(u.name) + "\"";
}

} // namespace

std::string escape_label(const std::string &v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

std::string render_metrics(const Snapshot &s) {
    Writer w;
    w.family("vigil_build_info", "gauge", "vigild build information; always 1.");
    w.sample("vigil_build_info", "version=\"" + escape_label(s.daemon.version) + "\"", "1");
    if (s.daemon.rss_bytes) {
        w.family("process_resident_memory_bytes", "gauge",
                 "Resident memory size of vigild in bytes.");
        w.sample("process_resident_memory_bytes", "", std::to_string(*s.daemon.rss_bytes));
    }
    if (s.daemon.open_fds) {
        w.family("process_open_fds", "gauge", "Number of open file descriptors of vigild.");
        w.sample("process_open_fds", "", std::to_string(*s.daemon.open_fds));
    }

    // Every known state, also at 0, so the series set is stable; then any unexpected state.
    std::vector<std::string> states = unit_states();
    for (const auto &u : s.units)
        if (std::find(states.begin(), states.end(), u.state) == states.end())
            states.push_back(u.state);
    std::map<std::string, std::uint64_t> counts;
    for (const auto &u : s.units)
        ++counts[u.state];
    w.family("vigil_units", "gauge", "Number of units in each state.");
    for (const auto &st : states)
        w.sample("vigil_units", "state=\"" + escape_label(st) + "\"", std::to_string(counts[st]));

    w.family("vigil_unit_up", "gauge", "1 when the unit is running.");
    for (const auto &u : s.units)
        w.sample("vigil_unit_up", unit_label(u), u.up ? "1" : "0");
    w.family("vigil_unit_ready", "gauge", "1 when the unit is running and ready.");
    for (const auto &u : s.units)
        w.sample("vigil_unit_ready", unit_label(u), u.ready ? "1" : "0");
    w.family("vigil_unit_restarts_total", "counter",
             "Restarts decided by the supervisor for the unit.");
    for (const auto &u : s.units)
        w.sample("vigil_unit_restarts_total", unit_label(u), std::to_string(u.restarts_total));
    w.family("vigil_unit_last_exit_code", "gauge",
             "Exit status of the unit's last run; 128+N when killed by signal N.");
    for (const auto &u : s.units)
        if (u.last_exit_code)
            w.sample("vigil_unit_last_exit_code", unit_label(u), std::to_string(*u.last_exit_code));
    w.family("vigil_unit_probe_failures_total", "counter", "Failed health probe checks.");
    for (const auto &u : s.units)
        w.sample("vigil_unit_probe_failures_total", unit_label(u),
                 std::to_string(u.probe_failures_total));
    w.family("vigil_unit_uptime_seconds", "gauge",
             "Seconds since the unit's current run started; 0 when not running.");
    for (const auto &u : s.units)
        w.sample("vigil_unit_uptime_seconds", unit_label(u), number(u.uptime_seconds));
    w.family("vigil_unit_state", "gauge", "1 for the unit's current state, 0 for the others.");
    for (const auto &u : s.units)
        for (const auto &st : states)
            w.sample("vigil_unit_state", unit_label(u) + ",state=\"" + escape_label(st) + "\"",
                     st == u.state ? "1" : "0");
    return w.take();
}

std::vector<std::string> not_ready(const Snapshot &s) {
    std::vector<std::string> out;
    for (const auto &u : s.units)
        if (u.goal_up && !(u.up && u.ready)) out.push_back(u.name);
    return out;
}

std::optional<std::uint64_t> parse_statm_resident(const std::string &text) {
    std::istringstream in(text);
    std::uint64_t size = 0, resident = 0;
    if (!(in >> size >> resident)) return std::nullopt;
    return resident;
}

std::optional<std::uint64_t> self_rss_bytes() {
    std::ifstream f("/proc/self/statm");
    if (!f) return std::nullopt;
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto pages = parse_statm_resident(text);
    long page = ::sysconf(_SC_PAGESIZE);
    if (!pages || page <= 0) return std::nullopt;
    return *pages * static_cast<std::uint64_t>(page);
}

std::optional<std::uint64_t> self_open_fds() {
    DIR *d = ::opendir("/proc/self/fd");
    if (!d) return std::nullopt;
    std::uint64_t n = 0;
    while (const dirent *e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    // The directory stream's own fd is listed too; it is not vigild's.
    return n > 0 ? n - 1 : 0;
}

} // namespace vigil::http
