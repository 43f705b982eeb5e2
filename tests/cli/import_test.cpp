// `vigilctl import`'s stages one by one (src/cli/import.hpp): Python's string handling against
// vectors taken from CPython 3.11, the ini reader, the conversion of each setting, the include
// tree and its bounds, and the writing of the files. Deterministic: an explicit Environment,
// temporary folders, no processes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

#include "files.hpp"
#include "import.hpp"

using namespace vigil::cli::import;
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

using vigil::test::slurp;

namespace {

using Strings = std::vector<std::string>;
using Pairs = std::vector<std::pair<std::string, std::string>>;

std::optional<Strings> split(const std::string &s) {
    std::string error;
    return shlex_split(s, error);
}

std::optional<Pairs> pairs(const std::string &s) {
    std::string error;
    return key_value_pairs(s, error);
}

std::optional<std::string> fmt(const std::string &s) {
    Expansions e{
        {"a", std::string("xy")}, {"n", 7LL}, {"neg", -3LL}, {"u", std::string("h\xc3\xa9llo")}};
    std::string error;
    return expand(s, Scope{{&e}}, error);
}

Environment test_env() {
    Environment e;
    e.vars = {{"HOME", "/home/ops"}, {"APP_ROOT", "/srv/app"}};
    e.host_node_name = "box";
    e.cwd = "/work";
    return e;
}

// One configuration text, parsed as /etc/supervisor/supervisord.conf.
struct Parsed {
    Ini ini;
    std::vector<Finding> findings;
    bool ok = false;
};

Parsed parse(const std::string &text) {
    Parsed p;
    p.ini.defaults.name = "DEFAULT";
    p.ini.files.push_back({"/etc/supervisor/supervisord.conf", "/etc/supervisor", true});
    p.ok = parse_ini(text, 0, p.ini, p.findings);
    return p;
}

std::string value_of(const Parsed &p, const std::string &section, const std::string &key) {
    const IniSection *s = p.ini.find(section);
    REQUIRE(s != nullptr);
    auto it = s->keys.find(key);
    REQUIRE(it != s->keys.end());
    return it->second.text;
}

// A conversion and its findings, formatted.
struct Converted {
    std::optional<Conversion> c;
    std::vector<Finding> findings;

    const UnitFile *find(const std::string &file) const {
        for (const auto &u : c->units)
            if (u.file_name() == file) return &u;
        return nullptr;
    }
    const ojson &unit(const std::string &file) const {
        const UnitFile *u = find(file);
        INFO("no unit file " << file << "; files: " << files());
        REQUIRE(u != nullptr);
        return u->json;
    }
    std::string files() const {
        std::string r;
        for (const auto &u : c->units)
            r += u.file_name() + " ";
        return r;
    }
    std::string lines(Finding::Kind kind) const {
        std::string r;
        for (const auto &f : findings)
            if (f.kind == kind) r += format(f) + "\n";
        return r;
    }
    std::string lost() const { return lines(Finding::Kind::Lost); }
    std::string notes() const { return lines(Finding::Kind::Note); }
};

Converted convert_text(const std::string &text, const Environment &env = test_env()) {
    Parsed p = parse(text);
    REQUIRE(p.ok);
    Converted r;
    r.c = convert(p.ini, env, r.findings);
    REQUIRE(r.c.has_value());
    return r;
}

bool has(const std::string &text, const std::string &part) {
    return text.find(part) != std::string::npos;
}

// A private folder, removed at the end.
class TempDir {
public:
    TempDir() {
        const char *tmp = std::getenv("TMPDIR");
        std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/vigil-import-test.XXXXXX";
        REQUIRE(mkdtemp(templ.data()) != nullptr);
        path_ = templ;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    TempDir(const TempDir &) = delete;
    TempDir &operator=(const TempDir &) = delete;
    const fs::path &path() const { return path_; }
    std::string write(const std::string &name, const std::string &text) const {
        fs::path p = path_ / name;
        fs::create_directories(p.parent_path());
        std::ofstream(p, std::ios::binary) << text;
        return p.string();
    }

private:
    fs::path path_;
};

} // namespace

TEST_SUITE("import: Python's string handling (vectors from CPython 3.11)") {

    TEST_CASE("shlex.split") {
        CHECK(split("a b  c") == Strings{"a", "b", "c"});
        CHECK(split("\"a b\" 'c d'") == Strings{"a b", "c d"});
        CHECK(split("a\\ b") == Strings{"a b"});
        CHECK(split("\"a\\\"b\"") == Strings{"a\"b"});
        CHECK(split("\"a\\b\"") == Strings{"a\\b"}); // kept: \b is not an escape in quotes
        CHECK(split("'a\\'") == Strings{"a\\"});     // nothing is escaped in single quotes
        CHECK(split("a''") == Strings{"a"});
        CHECK(split("''") == Strings{""});
        CHECK(split("x \"\" y") == Strings{"x", "", "y"});
        CHECK(split("sh -c 'echo $HOME; exit 1'") == Strings{"sh", "-c", "echo $HOME; exit 1"});
        CHECK(split("a#b #c") == Strings{"a#b", "#c"}); // no comments
        CHECK(split("a\"b c\"d") == Strings{"ab cd"});
        CHECK(split("\\\\") == Strings{"\\"});
        CHECK(split("") == Strings{});
        CHECK(split("  ") == Strings{});
        CHECK_FALSE(split("\"abc"));
        CHECK_FALSE(split("abc\\"));
    }

    TEST_CASE("supervisord's environment= lexer") {
        CHECK(pairs("A=\"1\",B=2") == Pairs{{"A", "1"}, {"B", "2"}});
        CHECK(pairs("A=x,A=y") == Pairs{{"A", "y"}});
        CHECK(pairs("KEY=\"a,b\",PATH=/usr/bin:/bin") ==
              Pairs{{"KEY", "a,b"}, {"PATH", "/usr/bin:/bin"}});
        CHECK(pairs("A=b c") == Pairs{{"A", "b"}}); // "c" is taken as the separator
        CHECK(pairs("A=1 ,B=2") == Pairs{{"A", "1"}, {"B", "2"}});
        CHECK(pairs("A=1;B=2") == Pairs{{"A", "1"}, {"B", "2"}}); // any one token separates
        CHECK(pairs("URL=http://x?y=1") == Pairs{{"URL", "http://x"}, {"y", "1"}});
        CHECK(pairs("A=\xc3\xa9") == Pairs{{"A", "\xc3\xa9"}});
        CHECK(pairs("A=x#c\n,B=1") == Pairs{{"A", "x"}, {"B", "1"}});
        CHECK(pairs("a.b=1") == Pairs{{"a.b", "1"}});
        CHECK(pairs("\"K\"=v") == Pairs{{"\"K\"", "v"}}); // keys keep their quotes
        CHECK(pairs("") == Pairs{});
        CHECK_FALSE(pairs("A"));
        CHECK_FALSE(pairs("A="));
        CHECK_FALSE(pairs("A=\"x"));
        CHECK_FALSE(pairs("A='q'\""));
    }

    TEST_CASE("%-expansion") {
        CHECK(fmt("%(a)s") == "xy");
        CHECK(fmt("%%(a)s") == "%(a)s");
        CHECK(fmt("%(n)02d") == "07");
        CHECK(fmt("%(n)s") == "7");
        CHECK(fmt("%(u).2s") == "h\xc3\xa9"); // precision counts characters, not bytes
        CHECK(fmt("%(a)5s") == "   xy");
        CHECK(fmt("%(a)-5s|") == "xy   |");
        CHECK(fmt("%(neg)05d") == "-0003");
        CHECK(fmt("%(n)#x") == "0x7");
        CHECK(fmt("%(n)+d") == "+7");
        CHECK(fmt("%(n).3d") == "007");
        CHECK(fmt("%(n)5.3d") == "  007");
        CHECK(fmt("x%(n)dy%(a)sz") == "x7yxyz");
        CHECK_FALSE(fmt("%(a)d"));      // text given to %d
        CHECK_FALSE(fmt("%(b)s"));      // no such name
        CHECK_FALSE(fmt("100%"));       // a lone %
        CHECK_FALSE(fmt("%(a)"));       // no conversion
        CHECK_FALSE(fmt("%s"));         // Python would print the whole mapping: refused here
        CHECK_FALSE(fmt("%(a)r"));      // repr is not read here (Python: 'xy')
        CHECK_FALSE(fmt("%(a)99999s")); // past max_format_width
    }

    TEST_CASE("a missing ENV_ name says where the variable would come from") {
        Expansions none;
        std::string error;
        CHECK_FALSE(expand("%(ENV_DB_URL)s", Scope{{&none}}, error));
        CHECK(has(error, "DB_URL is set neither in vigilctl's environment"));
    }

    TEST_CASE("an expansion is bounded") {
        Expansions e{{"big", std::string(4000, 'x')}};
        std::string text, error;
        for (int k = 0; k < 100; ++k)
            text += "%(big)s";
        CHECK_FALSE(expand(text, Scope{{&e}}, error));
        CHECK(has(error, "bytes once expanded"));
    }
}

TEST_SUITE("import: the ini reader") {

    TEST_CASE("comments: full lines, and inline ones only after white space") {
        Parsed p = parse("; top\n# top\n[s]\na = b ; c\nd = e;f\ng = h#i\nj = k #l\n  ; x\n");
        REQUIRE(p.ok);
        CHECK(value_of(p, "s", "a") == "b");
        CHECK(value_of(p, "s", "d") == "e;f");
        CHECK(value_of(p, "s", "g") == "h#i");
        CHECK(value_of(p, "s", "j") == "k");
    }

    TEST_CASE("continuation lines, an empty line inside a value, trailing ones dropped") {
        Parsed p = parse("[include]\nfiles = a.conf\n  b.conf\n\n  c.conf\n\n\nx = 1\n");
        REQUIRE(p.ok);
        CHECK(value_of(p, "include", "files") == "a.conf\nb.conf\n\nc.conf");
        CHECK(value_of(p, "include", "x") == "1");
    }

    TEST_CASE("keys are lower-cased, ':' delimits too, sections and keys merge, later wins") {
        Parsed p = parse("[program:x]\nCommand: a\nuser=u1\n[program:y]\n[program:x]\nuser=u2\n");
        REQUIRE(p.ok);
        CHECK(value_of(p, "program:x", "command") == "a");
        CHECK(value_of(p, "program:x", "user") == "u2");
        REQUIRE(p.ini.sections.size() == 2);
        CHECK(p.ini.sections[0].name == "program:x");
        CHECK(p.ini.sections[0].line == 1);
        CHECK(p.ini.find("program:x")->keys.at("user").line == 6);
    }

    TEST_CASE("section names are case-sensitive; [DEFAULT] is apart") {
        Parsed p = parse("[DEFAULT]\nautostart=false\n[Program:x]\ncommand=a\n");
        REQUIRE(p.ok);
        CHECK(p.ini.find("Program:x") != nullptr);
        CHECK(p.ini.find("DEFAULT") == nullptr);
        CHECK(p.ini.defaults.keys.at("autostart").text == "false");
    }

    TEST_CASE("\\r\\n and \\r end lines; a UTF-8 byte order mark is skipped") {
        Parsed p = parse("\xef\xbb\xbf[s]\r\na=1\rb=2\r\n");
        REQUIRE(p.ok);
        CHECK(value_of(p, "s", "a") == "1");
        CHECK(value_of(p, "s", "b") == "2");
    }

    TEST_CASE("malformed lines are errors with their line numbers") {
        Parsed p = parse("[s]\na=1\njunk\n=v\nb=2\n");
        CHECK_FALSE(p.ok);
        REQUIRE(p.findings.size() == 2);
        CHECK(format(p.findings[0]) ==
              "/etc/supervisor/supervisord.conf:3: error: neither a [section] header nor a key "
              "= value line: \"junk\"");
        CHECK(p.findings[1].line == 4);
    }

    TEST_CASE("a key before any section ends the file") {
        Parsed p = parse("a=1\n[s]\nb=2\n");
        CHECK_FALSE(p.ok);
        REQUIRE(p.findings.size() == 1);
        CHECK(p.findings[0].line == 1);
        CHECK(p.ini.sections.empty());
    }

    TEST_CASE("binary, non-UTF-8 and over-long lines are refused") {
        CHECK_FALSE(parse(std::string("[s]\na=\0\n", 8)).ok);
        CHECK_FALSE(parse("[s]\na=\xff\n").ok);
        Parsed p = parse("[s]\na=" + std::string(max_line_bytes, 'x') + "\n");
        CHECK_FALSE(p.ok);
        REQUIRE(p.findings.size() == 1);
        CHECK(p.findings[0].line == 2);
    }
}

TEST_SUITE("import: conversion") {

    TEST_CASE("a program: command, cwd, env, user, umask, restart, stop, backoff") {
        auto r = convert_text(R"ini([supervisord]
environment=LANG="C.UTF-8",APP_ENV=prod

[program:web]
command=%(ENV_APP_ROOT)s/bin/gunicorn "app:make()" --bind 127.0.0.1:8000
directory=/srv/app
environment=APP_ENV="staging",TOKEN="a,b"
user=www-data
umask=022
autorestart=true
stopsignal=quit
stopwaitsecs=90
startsecs=5
)ini");
        const ojson &u = r.unit("web.json");
        CHECK(u["command"] ==
              ojson({"/srv/app/bin/gunicorn", "app:make()", "--bind", "127.0.0.1:8000"}));
        CHECK(u["cwd"] == "/srv/app");
        CHECK(u["env"].dump() == R"({"LANG":"C.UTF-8","APP_ENV":"staging","TOKEN":"a,b"})");
        CHECK(u["user"] == "www-data");
        CHECK(u["umask"] == "0022");
        CHECK(u["restart"] == "permanent");
        CHECK(u["stop"].dump() == R"({"signal":"SIGQUIT","timeout":"1m30s"})");
        CHECK(u["backoff"].dump() == R"({"initial":"1s","reset_after":"5s"})");
        CHECK_FALSE(u.contains("logs")); // AUTO logs: vigil's defaults
        CHECK(u["description"] == "[program:web] from /etc/supervisor/supervisord.conf:4");
        CHECK(r.lost().empty());
    }

    TEST_CASE("autorestart: true, false and unexpected; exitcodes only matter with unexpected") {
        auto r = convert_text(R"ini([program:a]
command=a
autorestart=true
exitcodes=0,2
[program:b]
command=b
autorestart=false
[program:c]
command=c
[program:d]
command=d
autorestart=unexpected
exitcodes=0,3
[program:e]
command=e
exitcodes=0
)ini");
        CHECK(r.unit("a.json")["restart"] == "permanent");
        CHECK(r.unit("b.json")["restart"] == "temporary");
        CHECK(r.unit("c.json")["restart"] == "transient");
        CHECK(r.unit("d.json")["restart"] == "transient");
        CHECK(r.unit("e.json")["restart"] == "transient");
        CHECK(r.lost() ==
              "/etc/supervisor/supervisord.conf:13: [program:d] exitcodes: not converted: "
              "vigil's \"transient\" restarts after every non-zero exit status, so the expected "
              "codes cannot be told apart (0 is the only one vigil expects)\n");
    }

    TEST_CASE("priority orders siblings: each one is after those of the next lower priority") {
        auto r = convert_text(R"ini([program:db]
command=db
priority=1
[program:cache]
command=cache
priority=1
[program:api]
command=api
priority=5
[program:web]
command=web
[program:off]
command=off
priority=2
autostart=false
)ini");
        CHECK_FALSE(r.unit("db.json").contains("after"));
        CHECK_FALSE(r.unit("cache.json").contains("after"));
        CHECK(r.unit("api.json")["after"] == ojson({"cache", "db"}));
        CHECK(r.unit("web.json")["after"] == ojson({"api"})); // 999 comes after 5
        // A disabled unit is not loaded: nobody waits for it, and it waits for nobody.
        CHECK_FALSE(r.unit("off.json.disabled").contains("after"));
        CHECK(has(r.lost(), "[program:off] autostart: not converted: vigil starts every unit it "
                            "loads: written as off.json.disabled"));
    }

    TEST_CASE("a group is a parallel supervisor; its priority orders it among the top level") {
        auto r = convert_text(R"ini([group:backend]
programs=api, worker
priority=100
[program:api]
command=api
priority=2
[program:worker]
command=worker
priority=1
[program:proxy]
command=nginx
priority=50
)ini");
        const ojson &g = r.unit("backend.json");
        CHECK(g["kind"] == "supervisor");
        CHECK(g["parallel"] == true);
        CHECK(g["after"] == ojson({"proxy"}));
        CHECK(r.unit("api.json")["parent"] == "backend");
        CHECK(r.unit("api.json")["after"] == ojson({"worker"}));
        CHECK(r.unit("worker.json")["parent"] == "backend");
        CHECK_FALSE(r.unit("proxy.json").contains("parent"));
        CHECK(r.lost().empty());
    }

    TEST_CASE("a group naming what is not a program") {
        auto r = convert_text(R"ini([group:g]
programs=a,missing,,f
[program:a]
command=a
[fcgi-program:f]
command=f
socket=unix:///tmp/f.sock
)ini");
        CHECK(r.unit("a.json")["parent"] == "g");
        CHECK(has(r.lost(), "[group:g] programs: not converted: names missing, which has no "
                            "[program:missing] section"));
        CHECK(has(r.lost(), "[group:g] programs: not converted: an empty program name"));
        CHECK(has(r.lost(), "f is an fcgi-program, which is not converted"));
        CHECK(has(r.lost(), "[fcgi-program:f]: not converted: vigil does not open sockets"));
    }

    TEST_CASE("numprocs with the same command for all: instances") {
        auto r = convert_text(R"ini([program:worker]
command=/usr/bin/worker --queue jobs
process_name=%(program_name)s_%(process_num)02d
numprocs=4
)ini");
        const ojson &u = r.unit("worker.json");
        CHECK(u["instances"] == 4);
        CHECK(r.c->units.size() == 2); // and root.json
        CHECK(r.lost().empty());
    }

    TEST_CASE("numprocs whose processes differ: one unit each, under a supervisor") {
        auto r = convert_text(R"ini([program:celery]
command=celery worker -n w%(process_num)d@%%h
process_name=%(program_name)s_%(process_num)02d
numprocs=2
numprocs_start=1
priority=20
)ini");
        const ojson &s = r.unit("celery.json");
        CHECK(s["kind"] == "supervisor");
        CHECK(s["parallel"] == true);
        CHECK(r.unit("celery-01.json")["parent"] == "celery");
        CHECK(r.unit("celery-01.json")["command"] == ojson({"celery", "worker", "-n", "w1@%h"}));
        CHECK(r.unit("celery-02.json")["command"] == ojson({"celery", "worker", "-n", "w2@%h"}));
        CHECK(r.unit("celery-02.json")["description"] ==
              "[program:celery] process celery_02 from /etc/supervisor/supervisord.conf:1");
    }

    TEST_CASE("numprocs in a group: the processes are the group's children") {
        auto r = convert_text(R"ini([group:pool]
programs=w
[program:w]
command=w --port 80%(process_num)02d
process_name=w%(process_num)d
numprocs=2
)ini");
        CHECK(r.unit("w0.json")["parent"] == "pool");
        CHECK(r.unit("w1.json")["command"] == ojson({"w", "--port", "8001"}));
        CHECK(r.find("w.json") == nullptr);
    }

    TEST_CASE("numprocs > 1 without %(process_num) in process_name: refused, as supervisord") {
        auto r = convert_text("[program:w]\ncommand=w\nnumprocs=2\n");
        CHECK(r.find("w.json") == nullptr);
        CHECK(has(r.lost(), "[program:w] process_name: not converted: numprocs > 1 needs"));
    }

    TEST_CASE("startretries and startsecs: the supervisors' intensity and period") {
        auto r = convert_text(R"ini([program:a]
command=a
[program:b]
command=b
startretries=10
startsecs=0
[program:c]
command=c
autorestart=false
startretries=50
[group:g]
programs=d
[program:d]
command=d
startretries=0
startsecs=20
)ini");
        // root: b's 10 retries; period = 1.2 x (1+2+4+8+16+30x5 s), rounded up, + 0 + 1 s.
        const ojson &root = r.unit("root.json");
        CHECK(root["intensity"] == 10);
        CHECK(root["period"] == "3m39s");
        CHECK(r.unit("b.json")["backoff"]["reset_after"] == "1ms");
        // A group whose only program may not retry still allows one restart.
        CHECK(r.unit("g.json")["intensity"] == 1);
        CHECK(r.unit("g.json")["period"] == "21s");
        // c never restarts: its 50 do not count.
        CHECK(r.unit("c.json")["restart"] == "temporary");
    }

    TEST_CASE("logs: one file, its size and backups; redirect_stderr; forwarding") {
        auto r = convert_text(R"ini([program:a]
command=a
redirect_stderr=true
stdout_logfile=/var/log/a.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=3
[program:b]
command=b
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=/dev/stderr
[program:c]
command=c
stdout_logfile=NONE
stderr_logfile=none
[program:d]
command=d
stdout_logfile=/var/log/d.out
stderr_logfile=/var/log/d.err
stderr_logfile_maxbytes=1KB
[program:e]
command=e
stderr_logfile=~/e.err
stderr_logfile_maxbytes=0
stderr_logfile_backups=5000
)ini");
        CHECK(
            r.unit("a.json")["logs"].dump() ==
            R"({"forward":false,"stderr":"stdout","file":"/var/log/a.log","max_size":"20MiB","keep":3})");
        CHECK(!has(r.notes(), "redirect_stderr"));      // converted: one pipe, as supervisord has
        CHECK_FALSE(r.unit("b.json").contains("logs")); // forwarded, which vigil does anyway
        CHECK(r.unit("c.json")["logs"].dump() == R"({"forward":false})");
        CHECK(r.unit("d.json")["logs"].dump() ==
              R"({"forward":false,"file":"/var/log/d.out","max_size":"50MiB","keep":10})");
        CHECK(has(r.lost(), "[program:d] stderr_logfile: not converted: vigil writes a "
                            "service's stdout and stderr to one file: stderr goes to "
                            "/var/log/d.out too"));
        CHECK(r.unit("e.json")["logs"].dump() ==
              R"({"forward":false,"file":"/home/ops/e.err","max_size":"1TiB","keep":1000})");
        CHECK(has(r.notes(), "[program:e] stderr_logfile_maxbytes: note: 0 (never rotate)"));
        CHECK(has(r.notes(), "[program:e] stderr_logfile_backups: note: vigil keeps at most 1000"));
    }

    TEST_CASE("logs vigil cannot write: syslog, devices, relative paths") {
        auto r = convert_text(R"ini([program:a]
command=a
stdout_logfile=syslog
stderr_syslog=true
[program:b]
command=b
stdout_logfile=/dev/console
stderr_logfile=logs/b.err
stdout_events_enabled=true
stdout_capture_maxbytes=1MB
)ini");
        std::string lost = r.lost();
        CHECK(
            has(lost, "[program:a] stdout_logfile: not converted: vigil does not write to syslog"));
        CHECK(has(lost, "[program:a] stderr_syslog: not converted"));
        CHECK(has(lost, "[program:b] stdout_logfile: not converted: a device"));
        CHECK(has(lost, "[program:b] stderr_logfile: not converted: a relative path"));
        CHECK(has(lost, "[program:b] stdout_events_enabled: not converted"));
        CHECK(has(lost, "[program:b] stdout_capture_maxbytes: not converted"));
    }

    TEST_CASE("%(here)s is the folder of the file that set the value") {
        auto r = convert_text("[program:a]\ncommand=%(here)s/run.sh --name %(program_name)s\n");
        CHECK(r.unit("a.json")["command"] == ojson({"/etc/supervisor/run.sh", "--name", "a"}));
    }

    TEST_CASE("a value that cannot be expanded or split: the program is not converted") {
        auto r = convert_text(R"ini([program:a]
command=run --db %(ENV_DB_URL)s
[program:b]
command=run "unclosed
[program:c]
command=date +%s
[program:d]
directory=/x
)ini");
        CHECK(r.c->units.size() == 1); // root.json alone
        std::string lost = r.lost();
        CHECK(has(lost, "[program:a] command: not converted: %(ENV_DB_URL)s: DB_URL is set "
                        "neither"));
        CHECK(has(lost, "[program:b] command: not converted: no closing quotation"));
        CHECK(has(lost, "[program:c] command: not converted: a % that is not followed by (name)"));
        CHECK(has(lost, "[program:d]: not converted: no command"));
    }

    TEST_CASE("names: made valid, kept unique, and root is the root supervisor's") {
        auto r = convert_text(R"ini([program:Web_App]
command=a
[program:web-app]
command=b
[program:root]
command=c
[program:_x]
command=d
)ini");
        CHECK(r.unit("web-app.json")["command"] == ojson({"a"}));
        CHECK(r.unit("web-app-2.json")["command"] == ojson({"b"}));
        CHECK(r.unit("root-2.json")["command"] == ojson({"c"}));
        CHECK(r.unit("x.json")["command"] == ojson({"d"}));
        CHECK(has(r.notes(), "[program:root]: note: named root-2: root is taken by vigil's root "
                             "supervisor"));
        CHECK(r.lost().empty());
    }

    TEST_CASE("[supervisord] user, directory and umask reach the programs (daemon mode only)") {
        auto daemon = convert_text(R"ini([supervisord]
user=app
directory=/srv
umask=027
[program:a]
command=a
[program:b]
command=b
user=other
directory=/opt
umask=002
)ini");
        CHECK(daemon.unit("a.json")["user"] == "app");
        CHECK(daemon.unit("a.json")["cwd"] == "/srv");
        CHECK(daemon.unit("a.json")["umask"] == "0027");
        CHECK(daemon.unit("b.json")["user"] == "other");
        CHECK(daemon.unit("b.json")["cwd"] == "/opt");
        CHECK(daemon.unit("b.json")["umask"] == "0002");
        auto foreground = convert_text("[supervisord]\nnodaemon=true\ndirectory=/srv\n"
                                       "[program:a]\ncommand=a\n");
        CHECK_FALSE(foreground.unit("a.json").contains("cwd"));
        CHECK(has(foreground.notes(), "[supervisord] directory: note: supervisord applies it "
                                      "only when it runs as a daemon"));
    }

    TEST_CASE("a umask past 0777 keeps its last three octal digits, in [supervisord] too") {
        auto r = convert_text("[supervisord]\numask=5022\n[program:a]\ncommand=a\n"
                              "[program:b]\ncommand=b\numask=1777\n");
        CHECK(r.unit("a.json")["umask"] == "0022");
        CHECK(r.unit("b.json")["umask"] == "0777");
        CHECK(has(r.notes(), "[supervisord] umask: note: only its last three octal digits count"));
    }

    TEST_CASE("what has no counterpart: listeners, plugins, limits, strip_ansi, serverurl") {
        auto r = convert_text(R"ini([supervisord]
minfds=100000
strip_ansi=true
logfile=/var/log/supervisord.log
[inet_http_server]
port=127.0.0.1:9001
[eventlistener:memmon]
command=memmon -a 200MB
events=TICK_60
[rpcinterface:twiddler]
supervisor.rpcinterface_factory = supervisor_twiddler.rpcinterface:make_twiddler_rpcinterface
[ctlplugin:quick]
supervisor.ctl_factory = supervisor_quick:make_quick_controllerplugin
[program:a]
command=a
serverurl=http://127.0.0.1:9001
typo=1
[frobnicate]
x=1
)ini");
        std::string lost = r.lost(), notes = r.notes();
        CHECK(has(lost, "[supervisord] minfds: not converted"));
        CHECK(has(lost, "[supervisord] strip_ansi: not converted"));
        CHECK(has(lost, "[eventlistener:memmon]: not converted: event listeners"));
        CHECK(has(lost, "[rpcinterface:twiddler]: not converted"));
        CHECK(has(lost, "[ctlplugin:quick]: not converted"));
        CHECK(has(lost, "[program:a] serverurl: not converted"));
        CHECK(has(notes, "[supervisord] logfile: note"));
        CHECK(has(notes, "[inet_http_server]: note: supervisord's XML-RPC and web interface"));
        CHECK(has(notes, "[program:a] typo: note: unknown key; supervisord ignores it too"));
        CHECK(has(notes, "[frobnicate]: note: unknown section"));
        CHECK(r.find("a.json") != nullptr);
    }

    TEST_CASE("[DEFAULT] values apply to every program") {
        auto r = convert_text("[DEFAULT]\nautorestart=true\n[program:a]\ncommand=a\n"
                              "[program:b]\ncommand=b\nautorestart=false\n");
        CHECK(r.unit("a.json")["restart"] == "permanent");
        CHECK(r.unit("b.json")["restart"] == "temporary");
    }

    TEST_CASE("findings name the file, the line, the section and the key") {
        auto r = convert_text("[program:a]\ncommand=a\n\nstartsecs=soon\n");
        REQUIRE(r.findings.size() == 1);
        CHECK(format(r.findings[0]) ==
              "/etc/supervisor/supervisord.conf:4: [program:a] startsecs: not converted: "
              "expected an integer, got \"soon\" (supervisord refuses it); taken as 1");
    }

    TEST_CASE("a problem met by every process of a pool is reported once") {
        auto r = convert_text("[program:w]\ncommand=w\nprocess_name=w%(process_num)d\n"
                              "numprocs=50\nstopsignal=NOPE\n");
        std::string lost = r.lost();
        CHECK(std::count(lost.begin(), lost.end(), '\n') == 1); // not 50
        CHECK(has(r.notes(), "[program:w] numprocs: note: the processes are alike: 50 instances"));
        CHECK(r.unit("w.json")["instances"] == 50);
    }

    TEST_CASE("numprocs past vigil's instances bound") {
        auto r = convert_text("[program:w]\ncommand=w\nprocess_name=w%(process_num)d\n"
                              "numprocs=10001\n");
        CHECK(r.find("w.json") == nullptr);
        CHECK(has(r.lost(), "vigil runs at most 10000 instances"));
    }

    TEST_CASE("an environment past vigil's 4096 variables: the program is not converted") {
        std::string env;
        for (int k = 0; k <= 4096; ++k)
            env += (k ? ",V" : "V") + std::to_string(k) + "=1";
        auto r = convert_text("[program:a]\ncommand=a\nenvironment=" + env + "\n");
        CHECK(r.find("a.json") == nullptr);
        CHECK(has(r.lost(), "[program:a] environment: not converted: more than 4096 variables"));
    }

    TEST_CASE("pools that would pass the loader's bound on unit files: an Error, no units") {
        std::string text;
        for (int k = 0; k < 3; ++k)
            text += "[program:p" + std::to_string(k) +
                    "]\ncommand=w %(process_num)d\nprocess_name=p" + std::to_string(k) +
                    "-%(process_num)d\nnumprocs=8000\n";
        Parsed p = parse(text);
        REQUIRE(p.ok);
        std::vector<Finding> findings;
        CHECK_FALSE(convert(p.ini, test_env(), findings));
        REQUIRE_FALSE(findings.empty());
        CHECK(findings.back().kind == Finding::Kind::Error);
        CHECK(has(format(findings.back()), "more than 20000 units"));
    }
}

TEST_SUITE("import: reading files and includes") {

    TEST_CASE("includes are relative to the including file's folder, depth first, sorted") {
        TempDir d;
        std::string main = d.write("etc/supervisord.conf", "[include]\nfiles=conf.d/*.conf\n");
        d.write("etc/conf.d/b.conf", "[program:b]\ncommand=b\n[include]\nfiles=more/*.ini\n");
        d.write("etc/conf.d/a.conf", "[program:a]\ncommand=a %(here)s\n");
        d.write("etc/conf.d/more/c.ini", "[program:c]\ncommand=c\n");
        d.write("etc/conf.d/skipped.txt", "[program:x]\ncommand=x\n");
        Environment env = test_env();
        env.cwd = d.path().string();
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config("etc/supervisord.conf", env, ini, out));
        REQUIRE(ini.files.size() == 4);
        CHECK(ini.files[0].path == "etc/supervisord.conf");
        CHECK(ini.files[1].path == "etc/conf.d/a.conf");
        CHECK(ini.files[2].path == "etc/conf.d/b.conf");
        CHECK(ini.files[3].path == "etc/conf.d/more/c.ini");
        CHECK(ini.files[1].dir == (d.path() / "etc/conf.d").string());
        CHECK(ini.find("program:x") == nullptr);
        // supervisord would not follow b.conf's [include]: said, and followed.
        REQUIRE(out.size() == 1);
        CHECK(has(format(out[0]), "etc/conf.d/b.conf:4: [include] files: note: supervisord "
                                  "reads [include] in its main file only"));
        std::vector<Finding> findings;
        auto c = convert(ini, env, findings);
        REQUIRE(c);
        (void)main;
    }

    TEST_CASE("a cycle of includes ends, and says so") {
        TempDir d;
        std::string a = d.write("a.conf", "[include]\nfiles=b.conf\n[program:a]\ncommand=a\n");
        d.write("b.conf", "[include]\nfiles=a.conf\n[program:b]\ncommand=b\n");
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(a, test_env(), ini, out));
        CHECK(ini.files.size() == 2);
        CHECK(ini.find("program:a") != nullptr);
        CHECK(ini.find("program:b") != nullptr);
        bool cycle = false;
        for (const auto &f : out)
            cycle = cycle || has(f.message, "which is being read already (a cycle)");
        CHECK(cycle);
    }

    TEST_CASE("includes nested deeper than the bound are not read") {
        TempDir d;
        std::string first;
        for (int k = 0; k <= max_include_depth + 2; ++k) {
            std::string p = d.write("f" + std::to_string(k) + ".conf",
                                    "[include]\nfiles=f" + std::to_string(k + 1) + ".conf\n");
            if (k == 0) first = p;
        }
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(first, test_env(), ini, out));
        CHECK(ini.files.size() == static_cast<std::size_t>(max_include_depth) + 1);
        bool deep = false;
        for (const auto &f : out)
            deep = deep || (f.kind == Finding::Kind::Lost && has(f.message, "nested deeper"));
        CHECK(deep);
    }

    TEST_CASE("a glob that matches more files than the bound reads none of them") {
        TempDir d;
        std::string main = d.write("main.conf", "[include]\nfiles=many/*.conf\n");
        for (std::size_t k = 0; k <= max_files; ++k)
            d.write("many/" + std::to_string(k) + ".conf", "");
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(main, test_env(), ini, out));
        CHECK(ini.files.size() == 1);
        REQUIRE(out.size() == 1);
        CHECK(has(out[0].message, "matches more than 256 files"));
    }

    TEST_CASE("what cannot be read: a missing or odd main file is an Error") {
        TempDir d;
        Ini ini;
        std::vector<Finding> out;
        CHECK_FALSE(read_config((d.path() / "missing.conf").string(), test_env(), ini, out));
        CHECK(has(format(out.back()), "missing.conf: error: No such file or directory"));
        std::string fifo = (d.path() / "fifo.conf").string();
        REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
        CHECK_FALSE(read_config(fifo, test_env(), ini, out)); // and does not block
        CHECK(has(format(out.back()), "not a regular file"));
        CHECK_FALSE(read_config(d.path().string(), test_env(), ini, out));
        std::string big = d.write("big.conf", "[s]\n" + std::string(max_file_bytes, '#'));
        CHECK_FALSE(read_config(big, test_env(), ini, out));
        CHECK(has(format(out.back()), "larger than 1 MiB"));
    }

    TEST_CASE("an include that cannot be read is lost; one that matches nothing is a note") {
        TempDir d;
        std::string main = d.write("main.conf", "[include]\nfiles=sub nothing-*.conf\n");
        fs::create_directories(d.path() / "sub");
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(main, test_env(), ini, out));
        REQUIRE(out.size() == 2);
        CHECK(out[0].kind == Finding::Kind::Lost);
        CHECK(has(out[0].message, "not a regular file"));
        CHECK(out[1].kind == Finding::Kind::Note);
        CHECK(has(out[1].message, "no file matches"));
    }

    TEST_CASE("a file whose path is not UTF-8 is not read (it could not go into a unit file)") {
        TempDir d;
        std::string main = d.write("main.conf", "[include]\nfiles=conf*/*.conf\n");
        d.write("conf\xff/a.conf", "[program:a]\ncommand=%(here)s/a\n");
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(main, test_env(), ini, out));
        CHECK(ini.files.size() == 1);
        REQUIRE(out.size() == 1);
        CHECK(out[0].kind == Finding::Kind::Lost);
        CHECK(has(out[0].message, "is not UTF-8"));
        std::vector<Finding> findings;
        CHECK(convert(ini, test_env(), findings)); // and nothing throws
        Ini other;
        CHECK_FALSE(read_config(d.path().string() + "/conf\xff/a.conf", test_env(), other, out));
        CHECK(out.back().kind == Finding::Kind::Error);
    }

    TEST_CASE("a malformed included file stops the import") {
        TempDir d;
        std::string main = d.write("main.conf", "[include]\nfiles=bad.conf\n");
        d.write("bad.conf", "[program:a]\ncommand=a\nthis is not ini\n");
        Ini ini;
        std::vector<Finding> out;
        CHECK_FALSE(read_config(main, test_env(), ini, out));
        CHECK(has(format(out.back()), "bad.conf:3: error: neither a [section] header"));
    }

    TEST_CASE("a file not readable by others is remembered (the units will be 0600)") {
        TempDir d;
        std::string main = d.write("main.conf", "[program:a]\ncommand=a\n");
        REQUIRE(chmod(main.c_str(), 0640) == 0);
        Ini ini;
        std::vector<Finding> out;
        REQUIRE(read_config(main, test_env(), ini, out));
        CHECK_FALSE(ini.files[0].readable_by_others);
    }
}

TEST_SUITE("import: writing") {

    std::vector<UnitFile> two_units() {
        return {{"a", false, ojson{{"command", {"a"}}}, ""},
                {"b", true, ojson{{"command", {"b"}}}, ""}};
    }

    TEST_CASE("every file, or none when one exists; --force replaces them") {
        TempDir d;
        std::string out_dir = (d.path() / "units").string();
        std::vector<Finding> out;
        REQUIRE(write_units(two_units(), out_dir, false, false, out));
        CHECK(slurp(d.path() / "units/a.json") == "{\n  \"command\": [\n    \"a\"\n  ]\n}\n");
        CHECK(fs::exists(d.path() / "units/b.json.disabled"));

        // b.json next to the new b.json.disabled would be loaded: it counts as a clash.
        fs::remove(d.path() / "units/a.json");
        fs::rename(d.path() / "units/b.json.disabled", d.path() / "units/b.json");
        CHECK_FALSE(write_units(two_units(), out_dir, false, false, out));
        CHECK(has(format(out.back()), "/units/b.json exists (--force replaces them"));
        CHECK_FALSE(fs::exists(d.path() / "units/a.json"));

        REQUIRE(write_units(two_units(), out_dir, true, false, out));
        CHECK(fs::exists(d.path() / "units/a.json"));
        CHECK(fs::exists(d.path() / "units/b.json.disabled"));
        CHECK_FALSE(fs::exists(d.path() / "units/b.json"));
    }

    TEST_CASE("a symbolic link in the way is replaced, never followed") {
        TempDir d;
        fs::create_directories(d.path() / "units");
        d.write("target", "keep me");
        fs::create_symlink(d.path() / "target", d.path() / "units/a.json");
        std::vector<Finding> out;
        std::vector<UnitFile> units{{"a", false, ojson{{"command", {"a"}}}, ""}};
        CHECK_FALSE(write_units(units, (d.path() / "units").string(), false, false, out));
        REQUIRE(write_units(units, (d.path() / "units").string(), true, false, out));
        CHECK(slurp(d.path() / "target") == "keep me");
        CHECK_FALSE(fs::is_symlink(d.path() / "units/a.json"));
    }

    TEST_CASE("private files: mode 0600") {
        TempDir d;
        std::vector<Finding> out;
        mode_t old = umask(022);
        REQUIRE(write_units(two_units(), (d.path() / "u").string(), false, true, out));
        REQUIRE(write_units(two_units(), (d.path() / "v").string(), false, false, out));
        umask(old);
        struct stat st {};
        REQUIRE(stat((d.path() / "u/a.json").c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0600);
        REQUIRE(stat((d.path() / "v/a.json").c_str(), &st) == 0);
        CHECK((st.st_mode & 0777) == 0644);
    }

    TEST_CASE("a failure midway says how many files were written before it") {
        TempDir d;
        fs::create_directories(d.path() / "units/b.json.disabled"); // a folder in the way
        std::vector<Finding> out;
        std::size_t written = 99;
        CHECK_FALSE(
            write_units(two_units(), (d.path() / "units").string(), true, false, out, &written));
        CHECK(written == 1);
        CHECK(fs::exists(d.path() / "units/a.json"));
        CHECK(has(format(out.back()), "b.json.disabled: Is a directory (the file before it was "
                                      "written)"));
        // and no temporary file is left behind
        std::size_t files = 0;
        for ([[maybe_unused]] const auto &e : fs::directory_iterator(d.path() / "units"))
            ++files;
        CHECK(files == 2);
    }

    TEST_CASE("an output folder whose parent is missing is an Error") {
        TempDir d;
        std::vector<Finding> out;
        CHECK_FALSE(write_units(two_units(), (d.path() / "no/such").string(), false, false, out));
        CHECK(has(format(out.back()), "its parent folder must exist"));
    }
}
