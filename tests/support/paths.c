#define _GNU_SOURCE
#include "support/paths.h"

#include <errno.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *test_source_dir(void) {
    const char *s = getenv("ELM_SOURCE_DIR");
    return s && *s ? s : ".";
}

const char *test_shared_dir(void) {
    const char *s = getenv("ELM_SHARED_DIR");
    if (s && *s) return s;
    static _Thread_local char buf[4096];
    snprintf(buf, sizeof buf, "%s/../shared", test_source_dir());
    return buf;
}

bool test_shared_path(const char *rel, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/%s", test_shared_dir(), rel);
    struct stat st;
    return stat(buf, &st) == 0;
}

const char *test_cli(void) {
    const char *s = getenv("ELM_CLI");
    return s && *s ? s : NULL;
}

static char tmp_dir[256];
static pid_t tmp_owner;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Only the process that made the directory removes it (Criterion forks). */
static void remove_tmp_dir(void) {
    if (tmp_dir[0] && tmp_owner == getpid()) nftw(tmp_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *test_tmp_dir(void) {
    if (!tmp_dir[0] || tmp_owner != getpid()) {
        snprintf(tmp_dir, sizeof tmp_dir, "/tmp/edgelm-test-%d-XXXXXX", (int)getpid());
        if (!mkdtemp(tmp_dir)) {
            snprintf(tmp_dir, sizeof tmp_dir, "/tmp");
            return tmp_dir;
        }
        if (tmp_owner == 0) atexit(remove_tmp_dir);
        tmp_owner = getpid();
    }
    return tmp_dir;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static void append(char **buf, size_t *len, size_t *cap, const char *data, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 4096);
        while (nc < *len + n + 1) nc *= 2;
        *buf = realloc(*buf, nc);
        *cap = nc;
    }
    memcpy(*buf + *len, data, n);
    *len += n;
    (*buf)[*len] = 0;
}

int test_run(const char *const *argv, const char *input, size_t input_len, char **out,
             char **err) {
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr)) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        close(pin[1]); close(pout[0]); close(perr[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pin[0]); close(pout[1]); close(perr[1]);
    char *ob = NULL, *eb = NULL;
    size_t ol = 0, oc = 0, el = 0, ec = 0, written = 0;
    append(&ob, &ol, &oc, "", 0);
    append(&eb, &el, &ec, "", 0);
    if (!input) { close(pin[1]); pin[1] = -1; }
    int open_fds = 2;
    while (open_fds > 0) {
        struct pollfd fds[3] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}, {pin[1], POLLOUT, 0}};
        int nf = pin[1] >= 0 ? 3 : 2;
        if (poll(fds, nf, -1) < 0) { if (errno == EINTR) continue; break; }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
            char tmp[65536];
            ssize_t r = read(fds[i].fd, tmp, sizeof tmp);
            if (r <= 0) { close(fds[i].fd); if (i == 0) pout[0] = -1; else perr[0] = -1; open_fds--; continue; }
            if (i == 0) append(&ob, &ol, &oc, tmp, (size_t)r);
            else append(&eb, &el, &ec, tmp, (size_t)r);
        }
        if (nf == 3 && (fds[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            if (written < input_len && !(fds[2].revents & (POLLERR | POLLHUP))) {
                ssize_t w = write(pin[1], input + written, input_len - written);
                if (w > 0) written += (size_t)w; else written = input_len;
            }
            if (written >= input_len) { close(pin[1]); pin[1] = -1; }
        }
        if (pout[0] < 0 && perr[0] < 0) break;
    }
    if (pin[1] >= 0) close(pin[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (out) *out = ob; else free(ob);
    if (err) *err = eb; else free(eb);
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return -1;
}

