/*
 * benchtool: the small, timing-critical pieces of the vigil benchmark harness (bench/run).
 *
 * Python drives the benchmarks; whatever must be fast or precise lives here, in one C file that
 * bench/run compiles on the fly with `cc -O2` (no meson involvement):
 *
 *   init -- CMD...             PID 1 of a benchmark's PID namespace: runs CMD, reaps every orphan,
 *                              and when CMD ends SIGKILLs whatever is left, so no trial leaks.
 *   writer BYTES STAMP         writes BYTES/100 numbered 100-byte lines ("#%016llu x...x\n") to
 *                              stdout in 64 KiB writes, records start/end CLOCK_MONOTONIC ns in
 *                              STAMP, then pauses forever (so no supervisor restarts it).
 *   check COUNT FILE...        verifies that the concatenated FILEs hold lines #0..#COUNT-1 exactly
 *                              once (a prefix before '#' is allowed); prints one JSON object.
 *   stamp FILE                 appends CLOCK_MONOTONIC ns to FILE and exits 1: a crash-loop service
 *                              whose every spawn is timed exactly (an `sh -c 'exit 1'` that tells).
 *   waitcount N PATTERN DEADLINE_S [STATIC_PPID]
 *                              polls /proc until N live processes have the command line PATTERN
 *                              (argv joined by spaces, argv[0] reduced to its basename); prints the
 *                              CLOCK_MONOTONIC ns at which that was first seen, the count and the
 *                              most seen at once (on a timeout: how far the start got, even when
 *                              the services went away again). Children of STATIC_PPID (runsvdir,
 *                              s6-svscan) are remembered as non-matching.
 *   waitgone DEADLINE_S [PID...]
 *                              polls /proc until no live (non-zombie) process is left besides PID 1,
 *                              itself, its ancestors and the PIDs given; prints the ns time.
 *   restart PATTERN DEADLINE_S SAMPLE_US
 *                              SIGKILLs the one process matching PATTERN and polls /proc every
 *                              SAMPLE_US for its replacement (another pid, same command line, so it
 *                              has exec'd); prints the latency in ns.
 *   timeexec RUNS MAX_S -- CMD...
 *                              runs CMD RUNS times (posix_spawnp, output to /dev/null), or fewer
 *                              once MAX_S seconds have passed (at least 3 runs), and prints each
 *                              wall time in ns and exit status, one "ns status" a line.
 *
 * Exit status: 0 on success, 2 on usage errors, 3 on timeouts (after printing what was seen).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int usage(void) {
    fprintf(stderr, "usage: benchtool init|writer|check|stamp|waitcount|waitgone|restart|timeexec "
                    "... (see the header of benchtool.c)\n");
    return 2;
}

/* ---------------------------------------------------------------- init */

static volatile pid_t init_child = -1;

static void init_forward(int sig) {
    if (init_child > 0) kill(init_child, sig);
}

static int cmd_init(int argc, char **argv) {
    if (argc < 1) return usage();
    /* PID 1 gets no default signal actions: install forwarding handlers so that the harness can
     * still stop a trial politely with SIGTERM/SIGINT. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = init_forward;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("benchtool init: fork");
        return 1;
    }
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "benchtool init: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    init_child = pid;
    int result = 1;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (r == pid) {
            result = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
    }
    /* The driver is done: nothing in this namespace may outlive it. */
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0 || errno == EINTR) {
    }
    return result;
}

/* -------------------------------------------------------------- writer */

enum { line_len = 100, digits = 16 };

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_digits(char *p, unsigned long long v) {
    for (int i = digits - 1; i >= 0; --i) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

static int cmd_writer(int argc, char **argv) {
    if (argc != 2) return usage();
    unsigned long long bytes = strtoull(argv[0], NULL, 10);
    unsigned long long lines = bytes / line_len;
    int sfd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (sfd < 0) {
        perror("benchtool writer: stamp");
        return 1;
    }
    dprintf(sfd, "%llu\n", (unsigned long long)now_ns());
    enum { per_chunk = 655 };
    static char buf[per_chunk * line_len];
    for (int i = 0; i < per_chunk; ++i) {
        char *l = buf + i * line_len;
        l[0] = '#';
        l[1 + digits] = ' ';
        memset(l + 2 + digits, 'x', line_len - 3 - digits);
        l[line_len - 1] = '\n';
    }
    /* The sequence number is kept as decimal text and incremented in place: 16 divisions per
     * line would cap the writer near 1 GB/s, below what a pipe carries. */
    char cur[digits];
    put_digits(cur, 0);
    unsigned long long seq = 0;
    while (seq < lines) {
        unsigned long long n = lines - seq < per_chunk ? lines - seq : per_chunk;
        for (unsigned long long i = 0; i < n; ++i) {
            memcpy(buf + i * line_len + 1, cur, digits);
            for (int d = digits - 1; d >= 0 && ++cur[d] > '9'; --d) cur[d] = '0';
        }
        if (write_all(1, buf, n * line_len) < 0) {
            perror("benchtool writer: write");
            return 1;
        }
        seq += n;
    }
    dprintf(sfd, "%llu\n", (unsigned long long)now_ns());
    close(sfd);
    for (;;) pause();
}

/* --------------------------------------------------------------- check */

static int cmd_check(int argc, char **argv) {
    if (argc < 2) return usage();
    unsigned long long count = strtoull(argv[0], NULL, 10);
    unsigned char *seen = calloc(count / 8 + 1, 1);
    if (!seen) return 1;
    unsigned long long lines = 0, unique = 0, dup = 0, bad = 0, out_of_order = 0, bytes = 0;
    long long last = -1;
    size_t cap = 1 << 20;
    char *buf = malloc(cap + 4096);
    char carry[4096];
    size_t carry_len = 0;
    for (int f = 1; f < argc; ++f) {
        int fd = open(argv[f], O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "benchtool check: %s: %s\n", argv[f], strerror(errno));
            return 1;
        }
        for (;;) {
            memcpy(buf, carry, carry_len);
            ssize_t r = read(fd, buf + carry_len, cap);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break;
            bytes += (unsigned long long)r;
            size_t len = carry_len + (size_t)r, start = 0;
            for (;;) {
                char *nl = memchr(buf + start, '\n', len - start);
                if (!nl) break;
                size_t end = (size_t)(nl - buf);
                char *hash = memchr(buf + start, '#', end - start);
                ++lines;
                if (!hash || (size_t)(hash - buf) + 1 + digits > end) {
                    ++bad;
                } else {
                    unsigned long long v = 0;
                    int ok = 1;
                    for (int i = 1; i <= digits; ++i) {
                        char c = hash[i];
                        if (c < '0' || c > '9') ok = 0;
                        v = v * 10 + (unsigned long long)(c - '0');
                    }
                    if (!ok || v >= count) {
                        ++bad;
                    } else {
                        if (seen[v / 8] & (1u << (v % 8))) {
                            ++dup;
                        } else {
                            seen[v / 8] |= (unsigned char)(1u << (v % 8));
                            ++unique;
                        }
                        if ((long long)v != last + 1) ++out_of_order;
                        last = (long long)v;
                    }
                }
                start = end + 1;
            }
            carry_len = len - start;
            if (carry_len > sizeof carry) {
                ++bad; /* a line longer than 4 KiB: not ours */
                carry_len = 0;
            } else {
                memmove(carry, buf + start, carry_len);
            }
        }
        close(fd);
    }
    printf("{\"bytes\": %llu, \"lines\": %llu, \"unique\": %llu, \"missing\": %llu, \"dup\": %llu, "
           "\"bad\": %llu, \"out_of_order\": %llu, \"partial_tail\": %zu}\n",
           bytes, lines, unique, count - unique, dup, bad, out_of_order, carry_len);
    free(buf);
    free(seen);
    return 0;
}

/* --------------------------------------------------------------- stamp */

static int cmd_stamp(int argc, char **argv) {
    if (argc != 1) return usage();
    int fd = open(argv[0], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dprintf(fd, "%llu\n", (unsigned long long)now_ns());
        close(fd);
    }
    return 1;
}

/* ------------------------------------------------------- /proc scanning */

/* Reads /proc/PID/cmdline into "basename(argv0) argv1 argv2..."; returns length or -1. A zombie
 * or a kernel thread has an empty cmdline and never matches. */
static int read_cmdline(int pid, char *out, size_t cap) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char raw[512];
    ssize_t n = read(fd, raw, sizeof raw - 1);
    close(fd);
    if (n <= 0) return -1;
    if (raw[n - 1] == '\0') --n;
    raw[n] = '\0';
    const char *a0 = raw, *slash = strrchr(raw, '/');
    if (slash) a0 = slash + 1;
    size_t skip = (size_t)(a0 - raw), len = (size_t)n - skip;
    if (len >= cap) len = cap - 1;
    memcpy(out, a0, len);
    out[len] = '\0';
    for (size_t i = 0; i < len; ++i)
        if (out[i] == '\0') out[i] = ' ';
    return (int)len;
}

/* Returns the state letter and parent pid from /proc/PID/stat, or 0 when the pid is gone. */
static char read_stat(int pid, int *ppid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    if (!rp) return 0;
    char state = 0;
    int pp = 0;
    if (sscanf(rp + 2, "%c %d", &state, &pp) != 2) return 0;
    if (ppid) *ppid = pp;
    return state;
}

static int pid_max(void) {
    int v = 4194304;
    FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
    if (f) {
        if (fscanf(f, "%d", &v) != 1) v = 4194304;
        fclose(f);
    }
    return v + 1;
}

static int cmd_waitcount(int argc, char **argv) {
    if (argc < 3) return usage();
    long want = strtol(argv[0], NULL, 10);
    const char *pattern = argv[1];
    uint64_t deadline = now_ns() + (uint64_t)(atof(argv[2]) * 1e9);
    int static_ppid = argc > 3 ? atoi(argv[3]) : -1;
    int pmax = pid_max();
    unsigned char *matched = calloc((size_t)pmax, 1); /* 1 = match, 2 = never matches */
    char cl[512];
    long count = 0, most = 0;
    for (;;) {
        count = 0;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
            int pid = atoi(e->d_name);
            if (pid <= 0 || pid >= pmax) continue;
            if (matched[pid] == 1) {
                ++count;
                continue;
            }
            if (matched[pid] == 2) continue;
            if (read_cmdline(pid, cl, sizeof cl) >= 0 && strcmp(cl, pattern) == 0) {
                matched[pid] = 1;
                ++count;
            } else if (static_ppid > 0) {
                int pp = 0;
                if (read_stat(pid, &pp) && pp == static_ppid) matched[pid] = 2;
            }
        }
        closedir(d);
        uint64_t t = now_ns();
        if (count > most) most = count;
        if (count >= want || t > deadline) {
            printf("%llu %ld %ld\n", (unsigned long long)t, count, most);
            free(matched);
            return count >= want ? 0 : 3;
        }
        sleep_us(1000);
    }
}

static int cmd_waitgone(int argc, char **argv) {
    if (argc < 1) return usage();
    uint64_t deadline = now_ns() + (uint64_t)(atof(argv[0]) * 1e9);
    int keep[64], nkeep = 0;
    for (int i = 1; i < argc && nkeep < 60; ++i) keep[nkeep++] = atoi(argv[i]);
    /* Ancestors of this process (the driver, the namespace init) are not part of the trial. */
    int p = getpid();
    while (p > 1 && nkeep < 64) {
        keep[nkeep++] = p;
        int pp = 0;
        if (!read_stat(p, &pp)) break;
        p = pp;
    }
    for (;;) {
        long left = 0;
        int example = 0;
        DIR *d = opendir("/proc");
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
            int pid = atoi(e->d_name);
            if (pid == 1) continue;
            int k = 0;
            for (int i = 0; i < nkeep; ++i) k |= keep[i] == pid;
            if (k) continue;
            char st = read_stat(pid, NULL);
            if (st == 0 || st == 'Z' || st == 'X') continue;
            ++left;
            example = pid;
        }
        closedir(d);
        uint64_t t = now_ns();
        if (left == 0) {
            printf("%llu 0\n", (unsigned long long)t);
            return 0;
        }
        if (t > deadline) {
            printf("%llu %ld %d\n", (unsigned long long)t, left, example);
            return 3;
        }
        sleep_us(1000);
    }
}

static int find_match(const char *pattern, int exclude) {
    char cl[512];
    DIR *d = opendir("/proc");
    struct dirent *e;
    int found = -1;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        int pid = atoi(e->d_name);
        if (pid == exclude) continue;
        if (read_cmdline(pid, cl, sizeof cl) >= 0 && strcmp(cl, pattern) == 0) {
            found = pid;
            break;
        }
    }
    closedir(d);
    return found;
}

static int cmd_restart(int argc, char **argv) {
    if (argc != 3) return usage();
    const char *pattern = argv[0];
    double limit = atof(argv[1]);
    long sample_us = atol(argv[2]);
    int old = find_match(pattern, -1);
    if (old < 0) {
        fprintf(stderr, "benchtool restart: no process matches '%s'\n", pattern);
        return 1;
    }
    uint64_t t0 = now_ns();
    kill(old, SIGKILL);
    uint64_t deadline = t0 + (uint64_t)(limit * 1e9);
    for (;;) {
        int pid = find_match(pattern, old);
        uint64_t t = now_ns();
        if (pid > 0) {
            printf("%llu %d %d\n", (unsigned long long)(t - t0), old, pid);
            return 0;
        }
        if (t > deadline) {
            printf("-1 %d -1\n", old);
            return 3;
        }
        sleep_us(sample_us);
    }
}

static int cmd_timeexec(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) return usage();
    int runs = atoi(argv[0]);
    uint64_t budget_end = now_ns() + (uint64_t)(atof(argv[1]) * 1e9);
    char **cmd = argv + 3;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    for (int i = 0; i < runs; ++i) {
        pid_t pid;
        uint64_t t0 = now_ns();
        int rc = posix_spawnp(&pid, cmd[0], &fa, NULL, cmd, environ);
        if (rc != 0) {
            fprintf(stderr, "benchtool timeexec: %s: %s\n", cmd[0], strerror(rc));
            return 1;
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        uint64_t t1 = now_ns();
        printf("%llu %d\n", (unsigned long long)(t1 - t0),
               WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        if (i >= 2 && t1 > budget_end) break;
    }
    posix_spawn_file_actions_destroy(&fa);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return usage();
    const char *c = argv[1];
    int n = argc - 2;
    char **a = argv + 2;
    if (strcmp(c, "init") == 0) {
        if (n > 0 && strcmp(a[0], "--") == 0) {
            --n;
            ++a;
        }
        return cmd_init(n, a);
    }
    if (strcmp(c, "writer") == 0) return cmd_writer(n, a);
    if (strcmp(c, "check") == 0) return cmd_check(n, a);
    if (strcmp(c, "stamp") == 0) return cmd_stamp(n, a);
    if (strcmp(c, "waitcount") == 0) return cmd_waitcount(n, a);
    if (strcmp(c, "waitgone") == 0) return cmd_waitgone(n, a);
    if (strcmp(c, "restart") == 0) return cmd_restart(n, a);
    if (strcmp(c, "timeexec") == 0) return cmd_timeexec(n, a);
    return usage();
}
