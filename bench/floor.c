/*
 * floor: the least work that starts and stops N processes, for bench/run's "floor" column.
 *
 *   floor [--setsid] [--cgroup DIR] N -- CMD [ARGS...]
 *
 * posix_spawn()s N copies of CMD one after the other, with nothing around them: no pipes, no
 * new session or process group, no supervision, no reaping while they run (stdin, stdout and
 * stderr are the floor's own; the only attribute is an empty signal mask, because the floor
 * itself blocks SIGTERM). Then it waits for SIGTERM, sends SIGTERM to each of the N pids and
 * waits until every one has been reaped, and exits 0.
 *
 * Two options add what a supervisor gives each service, to measure what each costs (bench/run
 * uses neither): --setsid starts each process in a session of its own (POSIX_SPAWN_SETSID);
 * --cgroup DIR makes a cgroup DIR/floorI for each process (DIR: a folder of a cgroup2 mount
 * that does not exist yet), moves the process into it right after its spawn (by its pid, from
 * the floor: it may run an instant in the floor's cgroup first), and after the stop removes
 * them all and DIR.
 *
 * bench/run times it exactly as it times the supervisors: start from the exec of `floor` until
 * benchtool waitcount sees N processes with the command line CMD in /proc, stop from the SIGTERM
 * to `floor` until no process of the trial is left. So vigil/floor is what a supervisor costs
 * over fork+exec and kill+wait alone.
 *
 * Exit status: 0 after a clean stop, 1 when a spawn fails (the ones already started are killed
 * and reaped first), 2 on usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Every pid kept for the stop; 1,000,000 processes is far beyond any pid_max in use here. */
enum { max_processes = 1000000 };

static void stop_all(const pid_t *pids, long started) {
    for (long i = 0; i < started; ++i)
        kill(pids[i], SIGTERM);
    /* Reap everything: the N services (and nothing else, the floor has no other child). */
    for (;;) {
        pid_t r = waitpid(-1, NULL, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break; /* ECHILD: all reaped */
    }
}

/* --cgroup: DIR/floorI for process I (I from 0); 0 on success, else errno. */
static int cgroup_path(char *out, size_t size, const char *dir, long i, const char *file) {
    int len = snprintf(out, size, "%s/floor%ld%s%s", dir, i, file ? "/" : "", file ? file : "");
    return len < 0 || (size_t)len >= size ? ENAMETOOLONG : 0;
}

static int join_cgroup(const char *dir, long i, pid_t pid) {
    char path[4096];
    int err = cgroup_path(path, sizeof path, dir, i, NULL);
    if (err == 0 && mkdir(path, 0755) != 0) err = errno;
    if (err == 0) err = cgroup_path(path, sizeof path, dir, i, "cgroup.procs");
    if (err != 0) return err;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    char digits[24];
    int len = snprintf(digits, sizeof digits, "%d", (int)pid);
    ssize_t written = write(fd, digits, (size_t)len);
    if (written < 0)
        err = errno;
    else if (written != len)
        err = EIO;
    close(fd);
    return err;
}

static void remove_cgroups(const char *dir, long made) {
    char path[4096];
    for (long i = 0; i < made; ++i)
        if (cgroup_path(path, sizeof path, dir, i, NULL) == 0) rmdir(path);
    rmdir(dir);
}

int main(int argc, char **argv) {
    int setsid_flag = 0;
    const char *cgroup_dir = NULL;
    int a = 1;
    for (; a < argc; ++a) {
        if (strcmp(argv[a], "--setsid") == 0) {
            setsid_flag = POSIX_SPAWN_SETSID;
        } else if (strcmp(argv[a], "--cgroup") == 0 && a + 1 < argc) {
            cgroup_dir = argv[++a];
        } else {
            break;
        }
    }
    if (argc - a < 3 || strcmp(argv[a + 1], "--") != 0) {
        fprintf(stderr, "usage: floor [--setsid] [--cgroup DIR] N -- CMD [ARGS...]\n");
        return 2;
    }
    char *end = NULL;
    long n = strtol(argv[a], &end, 10);
    if (end == argv[a] || *end != '\0' || n < 1 || n > max_processes) {
        fprintf(stderr, "floor: N must be a number from 1 to %d\n", max_processes);
        return 2;
    }
    char **cmd = argv + a + 2;
    if (cgroup_dir && mkdir(cgroup_dir, 0755) != 0) {
        fprintf(stderr, "floor: mkdir %s: %s\n", cgroup_dir, strerror(errno));
        return 1;
    }
    pid_t *pids = calloc((size_t)n, sizeof *pids);
    if (pids == NULL) {
        perror("floor: calloc");
        return 1;
    }

    /* SIGTERM stays pending until sigwait() takes it, however early it comes. */
    sigset_t term, none;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigemptyset(&none);
    if (sigprocmask(SIG_BLOCK, &term, NULL) != 0) {
        perror("floor: sigprocmask");
        return 1;
    }
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, (short)(POSIX_SPAWN_SETSIGMASK | setsid_flag));

    long started = 0;
    for (; started < n; ++started) {
        int err = posix_spawnp(&pids[started], cmd[0], NULL, &attr, cmd, environ);
        if (err != 0) {
            fprintf(stderr, "floor: spawn %s (#%ld): %s\n", cmd[0], started + 1, strerror(err));
            stop_all(pids, started);
            if (cgroup_dir) remove_cgroups(cgroup_dir, started);
            return 1;
        }
        if (cgroup_dir && (err = join_cgroup(cgroup_dir, started, pids[started])) != 0) {
            fprintf(stderr, "floor: cgroup of #%ld: %s\n", started + 1, strerror(err));
            stop_all(pids, started + 1);
            remove_cgroups(cgroup_dir, started + 1);
            return 1;
        }
    }

    int sig = 0;
    while (sigwait(&term, &sig) != 0) {
    }
    stop_all(pids, started);
    if (cgroup_dir) remove_cgroups(cgroup_dir, started);
    posix_spawnattr_destroy(&attr);
    free(pids);
    return 0;
}
