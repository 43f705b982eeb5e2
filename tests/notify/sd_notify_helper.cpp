// A program linked with libsystemd that calls sd_notify(3), as real daemons do.
// Usage: sd_notify_helper "READY=1\nSTATUS=..."; exits 0 when sd_notify returned > 0.
#include <cstdio>
#include <systemd/sd-daemon.h>

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    int r = sd_notify(0, argv[1]);
    if (r <= 0) {
        std::fprintf(stderr, "sd_notify returned %d\n", r);
        return 1;
    }
    return 0;
}
