/*
 * floor: the least work that starts and stops N processes, for bench/run's "floor" column.
 *
 *   floor N -- CMD [ARGS...]
 *
 * posix_spawn()s N copies of CMD one after the other, with nothing around them: no pipes, no
 * new session or process group, no supervision, no reaping while they run (stdin, stdout and
 * stderr are the floor's own; the only attribute is an empty signal mask, because the floor
 * itself blocks SIGTERM). Then it waits for SIGTERM, sends SIGTERM to each of the N pids and
 * waits until every one has been reaped, and exits 0.
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
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

int main(int argc, char **argv) {
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "usage: floor N -- CMD [ARGS...]\n");
        return 2;
    }
    char *end = NULL;
    long n = strtol(argv[1], &end, 10);
    if (end == argv[1] || *end != '\0' || n < 1 || n > max_processes) {
        fprintf(stderr, "floor: N must be a number from 1 to %d\n", max_processes);
        return 2;
    }
    char **cmd = argv + 3;
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
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);

    long started = 0;
    for (; started < n; ++started) {
        int err = posix_spawnp(&pids[started], cmd[0], NULL, &attr, cmd, environ);
        if (err != 0) {
            fprintf(stderr, "floor: spawn %s (#%ld): %s\n", cmd[0], started + 1, strerror(err));
            stop_all(pids, started);
            return 1;
        }
    }

    int sig = 0;
    while (sigwait(&term, &sig) != 0) {
    }
    stop_all(pids, started);
    posix_spawnattr_destroy(&attr);
    free(pids);
    return 0;
}
