/* SPDX-License-Identifier: Apache-2.0
 * A static multi-tool for integration tests (in the spirit of crun's tests/init.c):
 * what busybox cannot do inside a container.
 *   accept-fd3           accept connections on the inherited listening socket fd 3 and answer
 *                        "LISTEN_FDS=<v> LISTEN_FDNAMES=<v> LISTEN_PID=<v> PID=<getpid()>\n"
 *   notify SECONDS MSG   sleep, then send MSG (e.g. READY=1) to $NOTIFY_SOCKET, then pause
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static const char *env(const char *name) {
    const char *v = getenv(name);
    return v ? v : "";
}

static int accept_fd3(void) {
    for (;;) {
        int conn = accept(3, NULL, NULL);
        if (conn < 0) {
            if (errno == EINTR)
                continue;
            perror("accept fd 3");
            return 1;
        }
        dprintf(conn, "LISTEN_FDS=%s LISTEN_FDNAMES=%s LISTEN_PID=%s PID=%d\n", env("LISTEN_FDS"),
                env("LISTEN_FDNAMES"), env("LISTEN_PID"), (int)getpid());
        close(conn);
    }
}

static int notify(int seconds, const char *msg) {
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int fd;

    sleep((unsigned)seconds);
    if (!path || !*path || strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "no usable NOTIFY_SOCKET\n");
        return 1;
    }
    strcpy(addr.sun_path, path);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = 0;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        perror("sd_notify");
        return 1;
    }
    printf("notified %s\n", msg);
    fflush(stdout);
    for (;;)
        pause();
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv) {
    /* As a pid namespace's init, SIGTERM would be ignored without a handler: stop promptly. */
    signal(SIGTERM, on_term);
    if (argc >= 2 && strcmp(argv[1], "accept-fd3") == 0)
        return accept_fd3();
    if (argc >= 4 && strcmp(argv[1], "notify") == 0)
        return notify(atoi(argv[2]), argv[3]);
    fprintf(stderr, "usage: %s accept-fd3 | notify SECONDS MSG\n", argv[0]);
    return 2;
}
