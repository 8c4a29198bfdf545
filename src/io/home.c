/* home.c - files in the user's Parley home directory (home.h). */
#include "home.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

bool pl_home_resolve(const char *explicit_dir, char *out, size_t cap)
{
    const char *h = explicit_dir ? explicit_dir : getenv("PARLEY_HOME");
    if (h && *h) {
        snprintf(out, cap, "%s", h);
        return true;
    }
    const char *user = getenv("HOME");
    if (!user || !*user) return false;
    snprintf(out, cap, "%s/.parley", user);
    return true;
}

void pl_home_path(const char *dir, const char *file, char *out, size_t cap) { snprintf(out, cap, "%s/%s", dir, file); }

bool pl_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char tmp[PL_HOME_PATH_MAX + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) return false;
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        done += (size_t)n;
    }
    /* What these files hold (a certificate registration bought, the host
     * cache) must be durable before it replaces the old file. */
    bool ok = done == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (ok) ok = rename(tmp, path) == 0;
    if (!ok) unlink(tmp);
    return ok;
}

long pl_file_read(const char *path, uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t got = 0;
    for (;;) {
        if (got == cap) {
            close(fd);
            return -1; /* larger than anything we write */
        }
        ssize_t n = read(fd, buf + got, cap - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    return (long)got;
}

const char *pl_passphrase_read(const char *file, char *buf, size_t cap, bool *bad)
{
    *bad = false;
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f || !fgets(buf, (int)cap, f)) {
            if (f) fclose(f);
            *bad = true;
            return NULL;
        }
        fclose(f);
        buf[strcspn(buf, "\r\n")] = 0;
        return buf;
    }
    const char *env = getenv("PARLEY_PASSPHRASE");
    return env && *env ? env : NULL;
}

void pl_home_read_pin(const char *dir, pl_home_pin *pin)
{
    char path[PL_HOME_PATH_MAX + 8], buf[512];
    memset(pin, 0, sizeof *pin);
    pl_home_path(dir, "ca", path, sizeof path);
    long n = pl_file_read(path, (uint8_t *)buf, sizeof buf - 1);
    if (n < 0) return;
    buf[n] = 0;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "key ", 4) == 0) pin->have_key = pl_hex_decode(line + 4, pin->key, 32);
        else if (strncmp(line, "addr ", 5) == 0 && strlen(line + 5) < sizeof pin->addr) {
            snprintf(pin->addr, sizeof pin->addr, "%s", line + 5);
            pin->have_addr = true;
        }
    }
}

bool pl_home_write_pin(const char *dir, const pl_home_pin *pin)
{
    char path[PL_HOME_PATH_MAX + 8], buf[512], hex[65];
    pl_home_path(dir, "ca", path, sizeof path);
    pl_hex_encode(pin->key, 32, hex);
    int n = snprintf(buf, sizeof buf, "key %s\naddr %s\n", hex, pin->addr);
    return pl_file_write_atomic(path, buf, (size_t)n, 0600);
}
