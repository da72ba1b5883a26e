/* bench_child.c: runs a measurement in a forked child process.
 *
 * Each device is measured in its own process so that its peak resident
 * memory is its own, and so that a crash or a hang of one device cannot take
 * the bench down: the parent reads fixed-size messages from a pipe and
 * kills the child when its time is up, keeping the last message received. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench_internal.h"

double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

bool bench_child_send(int fd, const void *msg, size_t size) {
    const char *p = msg;
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        size -= (size_t)w;
    }
    return true;
}

static void child_main(int fd, child_fn fn, void *arg) {
    /* A parent that is gone must not kill us with SIGPIPE mid-measurement. */
    signal(SIGPIPE, SIG_IGN);
    fn(fd, arg);
    close(fd);
    /* _exit: the stdio buffers inherited from the parent must not be
     * flushed twice. */
    _exit(0);
}

typedef struct reader {
    char *buf;
    size_t size, have;
    child_msg_fn on_msg;
    void *arg;
} reader;

/* Reads what is available; returns false at end of file. */
static bool read_some(int fd, reader *rd) {
    ssize_t r = read(fd, rd->buf + rd->have, rd->size - rd->have);
    if (r < 0) return errno == EINTR || errno == EAGAIN;
    if (r == 0) return false;
    rd->have += (size_t)r;
    if (rd->have == rd->size) {
        if (rd->on_msg) rd->on_msg(rd->buf, rd->arg);
        rd->have = 0;
    }
    return true;
}

/* Reads messages until end of file (true) or the deadline (false). */
static bool read_until(int fd, reader *rd, double deadline_ms) {
    for (;;) {
        double left = deadline_ms - bench_now_ms();
        if (left <= 0) return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, left > 1e6 ? 1000000 : (int)left + 1);
        if (n < 0 && errno != EINTR) return true;
        if (n > 0 && !read_some(fd, rd)) return true;
    }
}

static child_end reap(pid_t pid, bool timed_out, int *code) {
    int status = 0;
    if (timed_out) kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    *code = 0;
    if (timed_out) return CHILD_TIMEOUT;
    if (WIFSIGNALED(status)) {
        *code = WTERMSIG(status);
        return CHILD_CRASHED;
    }
    *code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return CHILD_EXITED;
}

child_end bench_child_run(child_fn fn, void *arg, size_t msg_size, double timeout_s,
                          child_msg_fn on_msg, void *msg_arg, int *code) {
    int fds[2];
    *code = 0;
    char *buf = malloc(msg_size);
    if (!buf || pipe(fds) != 0) {
        free(buf);
        return CHILD_NOSTART;
    }
    fflush(NULL);
    double deadline = bench_now_ms() + timeout_s * 1e3;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        free(buf);
        return CHILD_NOSTART;
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], fn, arg);
    }
    close(fds[1]);
    reader rd = {.buf = buf, .size = msg_size, .on_msg = on_msg, .arg = msg_arg};
    bool eof = read_until(fds[0], &rd, deadline);
    close(fds[0]);
    free(buf);
    return reap(pid, !eof, code);
}
