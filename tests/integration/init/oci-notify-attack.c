/* SPDX-License-Identifier: Apache-2.0
 * A container program that abuses sd_notify, for the regression tests of issue 14 (items 4, 5):
 *   send MSG...      send each MSG as one datagram to $NOTIFY_SOCKET, then pause (SIGTERM ends it)
 *   flood DELAY SECS send READY=1, sleep DELAY, then STATUS=<n> as fast as possible for SECS, then pause
 *   extend           ignore SIGTERM; send READY=1, then EXTEND_TIMEOUT_USEC=20000000 every 100 ms
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int sock = -1;
static struct sockaddr_un addr = {.sun_family = AF_UNIX};

static void setup(void) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path || strlen(path) >= sizeof(addr.sun_path)) {
        fprintf(stderr, "no usable NOTIFY_SOCKET\n");
        exit(1);
    }
    strcpy(addr.sun_path, path);
    if (addr.sun_path[0] == '@')
        addr.sun_path[0] = 0;
    sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        perror("socket");
        exit(1);
    }
}

static int send_msg(const char *msg) {
    return (int)sendto(sock, msg, strlen(msg), 0, (struct sockaddr *)&addr, sizeof(addr));
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_term(int sig) {
    (void)sig;
    _exit(0);
}

int main(int argc, char **argv) {
    char buf[64];
    signal(SIGTERM, on_term);
    setup();
    if (argc >= 3 && strcmp(argv[1], "send") == 0) {
        for (int i = 2; i < argc; i++)
            if (send_msg(argv[i]) < 0)
                perror("sendto");
    } else if (argc == 4 && strcmp(argv[1], "flood") == 0) {
        double end;
        long n = 0;
        send_msg("READY=1");
        sleep((unsigned)atoi(argv[2]));
        end = now() + atof(argv[3]);
        while (now() < end) {
            snprintf(buf, sizeof(buf), "STATUS=flood %ld", n);
            if (send_msg(buf) >= 0)
                n++;
        }
        printf("flood sent %ld\n", n);
        fflush(stdout);
    } else if (argc == 2 && strcmp(argv[1], "extend") == 0) {
        signal(SIGTERM, SIG_IGN);
        send_msg("READY=1");
        for (;;) {
            send_msg("EXTEND_TIMEOUT_USEC=20000000");
            usleep(100000);
        }
    } else {
        fprintf(stderr, "usage: %s send MSG... | flood DELAY SECONDS | extend\n", argv[0]);
        return 2;
    }
    for (;;)
        pause();
}
