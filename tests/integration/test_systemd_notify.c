/* test_systemd_notify.c -- clvd under a stand-in for systemd (SPEC section 12).
 *
 * The test plays systemd's part of the sd_notify protocol: it binds a unix
 * datagram socket, starts clvd with NOTIFY_SOCKET pointing at it and
 * WATCHDOG_USEC=1000000 (WATCHDOG_PID unset), with `kafka.brokers: embedded`
 * and a private redis-server on a unix socket, and checks:
 *
 *   - READY=1 arrives, after the first partition assignment;
 *   - STATUS= lines arrive;
 *   - WATCHDOG=1 arrives at least every 500 ms (plus slack: never a gap that
 *     would make systemd, with WatchdogSec=1s, kill the service);
 *   - every notification comes from clvd's own pid (NotifyAccess=main);
 *   - with redis-server stopped, WATCHDOG=1 keeps arriving for several
 *     seconds and clvd keeps running: a Redis outage must not get clvd
 *     restarted; STATUS reports Redis down and, when the metrics endpoint is
 *     served, /healthz answers 503;
 *   - SIGTERM: STOPPING=1, exit status 0.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE). */
#define _GNU_SOURCE /* struct ucred */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include "harness.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif

#define WATCHDOG_USEC 1000000
#define WATCHDOG_MAX_GAP_MS 900 /* 500 ms expected; 1000 ms would be a kill */
#define READY_TIMEOUT_MS 60000
#define HEALTHY_WINDOW_MS 3500
#define OUTAGE_WINDOW_MS 6500 /* >= 3 s of pings, and one 5 s STATUS period */
#define STOP_TIMEOUT_MS 10000

/* ---- the notify socket ------------------------------------------------------------- */

struct note {
    int64_t mono;   /* when it was received */
    pid_t pid;      /* sender, from SCM_CREDENTIALS; 0 if none came */
    char line[256]; /* one line of a datagram */
};

struct notify {
    int fd;
    char path[H_PATHLEN + 32];
    struct note *v;
    size_t n, cap;
};

static int notify_open(struct notify *nt, const char *dir, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    int one = 1;

    memset(nt, 0, sizeof(*nt));
    nt->fd = -1;
    snprintf(nt->path, sizeof(nt->path), "%s/notify.sock", dir);
    if (strlen(nt->path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "notify socket path too long: %s", nt->path);
        return -1;
    }
    nt->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (nt->fd < 0) {
        snprintf(err, errlen, "socket(AF_UNIX, SOCK_DGRAM): %s", strerror(errno));
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, nt->path, strlen(nt->path) + 1);
    if (bind(nt->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        setsockopt(nt->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
        snprintf(err, errlen, "notify socket %s: %s", nt->path, strerror(errno));
        close(nt->fd);
        nt->fd = -1;
        return -1;
    }
    return 0;
}

static void notify_close(struct notify *nt)
{
    if (nt->fd >= 0) {
        close(nt->fd);
        unlink(nt->path);
    }
    nt->fd = -1;
    free(nt->v);
    nt->v = NULL;
    nt->n = nt->cap = 0;
}

static void add_note(struct notify *nt, int64_t mono, pid_t pid, const char *line, size_t len)
{
    if (nt->n == nt->cap) {
        size_t ncap = nt->cap ? nt->cap * 2 : 256;
        struct note *v = realloc(nt->v, sizeof(*v) * ncap);
        assert_non_null(v);
        nt->v = v;
        nt->cap = ncap;
    }
    nt->v[nt->n].mono = mono;
    nt->v[nt->n].pid = pid;
    snprintf(nt->v[nt->n].line, sizeof(nt->v[0].line), "%.*s", (int)len, line);
    nt->n++;
}

/* Read every datagram waiting, for at most wait_ms for the first one. */
static void notify_read(struct notify *nt, int wait_ms)
{
    struct pollfd pfd = {nt->fd, POLLIN, 0};

    if (poll(&pfd, 1, wait_ms) <= 0)
        return;
    for (;;) {
        char buf[4096], cbuf[CMSG_SPACE(sizeof(struct ucred))];
        struct iovec iov = {buf, sizeof(buf) - 1};
        struct msghdr mh;
        struct cmsghdr *c;
        pid_t pid = 0;
        ssize_t n;
        char *p;

        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf;
        mh.msg_controllen = sizeof(cbuf);
        n = recvmsg(nt->fd, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0)
            return; /* EAGAIN: drained */
        for (c = CMSG_FIRSTHDR(&mh); c != NULL; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred uc;
                memcpy(&uc, CMSG_DATA(c), sizeof(uc));
                pid = uc.pid;
            }
        buf[n] = '\0';
        for (p = buf; *p;) {
            size_t len = strcspn(p, "\n");
            if (len > 0)
                add_note(nt, h_mono_ms(), pid, p, len);
            p += len;
            if (*p == '\n')
                p++;
        }
    }
}

/* Collect notifications for `ms` milliseconds. */
static void notify_pump(struct notify *nt, int ms)
{
    int64_t end = h_mono_ms() + ms;

    for (int64_t now = h_mono_ms(); now < end; now = h_mono_ms())
        notify_read(nt, (int)(end - now));
}

/* Index of the first note at or after `from` starting with `prefix`, -1. */
static long note_find(const struct notify *nt, size_t from, const char *prefix)
{
    for (size_t i = from; i < nt->n; i++)
        if (strncmp(nt->v[i].line, prefix, strlen(prefix)) == 0)
            return (long)i;
    return -1;
}

/* Wait up to timeout_ms for a note starting with `prefix`; its index or -1. */
static long notify_wait(struct notify *nt, const char *prefix, int timeout_ms)
{
    int64_t end = h_mono_ms() + timeout_ms;
    size_t from = 0;
    long i;

    for (;;) {
        i = note_find(nt, from, prefix);
        if (i >= 0 || h_mono_ms() >= end)
            return i;
        from = nt->n;
        notify_read(nt, 100);
    }
}

static void dump_notes(const struct notify *nt, FILE *out)
{
    int64_t t0 = nt->n ? nt->v[0].mono : 0;

    fprintf(out, "---- %zu notification line(s) ----\n", nt->n);
    for (size_t i = 0; i < nt->n; i++)
        fprintf(out, "+%6lld ms pid %d  %s\n", (long long)(nt->v[i].mono - t0), (int)nt->v[i].pid,
                nt->v[i].line);
}

/* WATCHDOG=1 pings in [from, to] (monotonic ms): at least `min_count`, and no
 * gap (counting from `from` and up to `to`) above WATCHDOG_MAX_GAP_MS. */
static void check_watchdog(const struct notify *nt, int64_t from, int64_t to, int min_count,
                           const char *phase)
{
    int64_t last = from, worst = 0;
    int count = 0;

    for (size_t i = 0; i < nt->n; i++) {
        const struct note *n = &nt->v[i];
        if (n->mono < from || n->mono > to || strcmp(n->line, "WATCHDOG=1") != 0)
            continue;
        if (n->mono - last > worst)
            worst = n->mono - last;
        last = n->mono;
        count++;
    }
    if (to - last > worst)
        worst = to - last;
    print_message("%s: %d WATCHDOG=1 in %lld ms, longest gap %lld ms\n", phase, count,
                  (long long)(to - from), (long long)worst);
    if (count < min_count || worst > WATCHDOG_MAX_GAP_MS) {
        dump_notes(nt, stderr);
        fail_msg("%s: %d WATCHDOG=1 pings (want >= %d), longest gap %lld ms (max %d)", phase, count,
                 min_count, (long long)worst, WATCHDOG_MAX_GAP_MS);
    }
}

/* ---- /healthz ------------------------------------------------------------------------ */

/* A free TCP port on 127.0.0.1 (bound, read back, released). */
static int free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

    assert_true(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    close(fd);
    assert_true(port > 0);
    return port;
}

/* GET path on 127.0.0.1:port; the HTTP status, or -1 when nothing listens
 * (or the reply is not HTTP).  The body's first line goes to `body`. */
static int http_get(int port, const char *path, char *body, size_t bodylen)
{
    struct sockaddr_in sa;
    struct timeval tv = {3, 0};
    char req[256], buf[8192], *b;
    size_t len = 0;
    int fd, status = -1;

    body[0] = '\0';
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    b = strstr(buf, "\r\n\r\n");
    if (b != NULL)
        snprintf(body, bodylen, "%.*s", (int)strcspn(b + 4, "\r\n"), b + 4);
    return status;
}

/* ---- the test ------------------------------------------------------------------------ */

struct fixture {
    char dir[H_PATHLEN];
    struct h_redis redis;
    struct notify nt;
    struct h_clvd clvd;
    int passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    f->nt.fd = -1;
    if (access(CLVD_BINARY, X_OK) != 0) {
        fprintf(stderr, "clvd binary %s is missing: build the clvd target first\n", CLVD_BINARY);
        free(f);
        return -1;
    }
    if (h_tmpdir_create(f->dir, sizeof(f->dir), err, sizeof(err)) != 0 ||
        h_redis_start(&f->redis, err, sizeof(err)) != 0 ||
        notify_open(&f->nt, f->dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "setup: %s\n", err);
        h_redis_stop(&f->redis);
        h_tmpdir_remove(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (!f->passed) {
        if (f->clvd.log[0] != '\0')
            h_dump_file(f->clvd.log, "clvd log", 32 * 1024, stderr);
        dump_notes(&f->nt, stderr);
    }
    h_clvd_kill9(&f->clvd);
    h_redis_stop(&f->redis);
    notify_close(&f->nt);
    h_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static void start_clvd(struct fixture *f, int metrics_port)
{
    char cfgpath[H_PATHLEN + 32], logpath[H_PATHLEN + 32], listen[64], wd[32];
    char err[H_ERRLEN];
    struct h_config cfg;
    int rc;

    snprintf(cfgpath, sizeof(cfgpath), "%s/clvd.yaml", f->dir);
    snprintf(logpath, sizeof(logpath), "%s/clvd.log", f->dir);
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", metrics_port);
    assert_int_equal(h_config_init(&cfg, "embedded", "clvd-it-notify", f->redis.socket), 0);
    assert_int_equal(h_config_set_str(&cfg, "metrics.listen", listen), 0);
    assert_int_equal(h_config_set(&cfg, "log.level", "info"), 0);
    rc = h_config_write(&cfg, cfgpath, err, sizeof(err));
    h_config_free(&cfg);
    if (rc != 0)
        fail_msg("%s", err);

    /* what systemd puts in the service's environment (redis-server, started
     * before, must not see it) */
    snprintf(wd, sizeof(wd), "%d", WATCHDOG_USEC);
    setenv("NOTIFY_SOCKET", f->nt.path, 1);
    setenv("WATCHDOG_USEC", wd, 1);
    unsetenv("WATCHDOG_PID");
    unsetenv("JOURNAL_STREAM");
    rc = h_clvd_start(&f->clvd, CLVD_BINARY, cfgpath, logpath, err, sizeof(err));
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    if (rc != 0)
        fail_msg("%s", err);
}

static void test_notify_protocol(void **state)
{
    struct fixture *f = *state;
    int port = free_port(), wired, status = 0, saw_503 = 0;
    int64_t t_ready, t_down, t_end;
    long ready, i;
    char body[256], err[H_ERRLEN];
    pid_t pid;

    start_clvd(f, port);
    pid = f->clvd.pid;

    /* READY=1, only once the consumer has its partitions */
    ready = notify_wait(&f->nt, "READY=1", READY_TIMEOUT_MS);
    if (ready < 0)
        fail_msg("no READY=1 within %d ms (clvd %s)", READY_TIMEOUT_MS,
                 h_clvd_running(&f->clvd) ? "running" : "exited");
    t_ready = f->nt.v[ready].mono;
    if (h_clvd_wait_log(&f->clvd, "kafka: assigned", 0) != 0)
        fail_msg("READY=1 before the log says the partitions were assigned");
    print_message("READY=1 after the assignment\n");

    /* a healthy stretch */
    notify_pump(&f->nt, HEALTHY_WINDOW_MS);
    check_watchdog(&f->nt, t_ready, h_mono_ms(), HEALTHY_WINDOW_MS / 750, "healthy");
    if (note_find(&f->nt, 0, "STATUS=") < 0)
        fail_msg("no STATUS= line");
    for (size_t k = 0; k < f->nt.n; k++)
        if (f->nt.v[k].pid != pid)
            fail_msg("\"%s\" came from pid %d, not clvd's %d (NotifyAccess=main)", f->nt.v[k].line,
                     (int)f->nt.v[k].pid, (int)pid);

    status = http_get(port, "/healthz", body, sizeof(body));
    wired = status != -1;
    if (wired) {
        if (status != 200)
            fail_msg("/healthz answered %d \"%s\" with Redis up and partitions assigned", status,
                     body);
        print_message("/healthz 200 while healthy\n");
    } else {
        print_message("metrics endpoint not served (not wired yet?): /healthz not checked\n");
    }

    /* Redis goes away: clvd must keep pinging the watchdog, not get restarted */
    h_redis_stop(&f->redis);
    t_down = h_mono_ms();
    i = (long)f->nt.n;
    for (int64_t end = t_down + OUTAGE_WINDOW_MS; h_mono_ms() < end;) {
        notify_pump(&f->nt, 250);
        if (!h_clvd_running(&f->clvd))
            fail_msg("clvd exited while Redis was down (wait status 0x%x)", f->clvd.status);
        if (wired && !saw_503) {
            status = http_get(port, "/healthz", body, sizeof(body));
            saw_503 = status == 503;
            if (saw_503)
                print_message("/healthz 503 \"%s\" %lld ms into the outage\n", body,
                              (long long)(h_mono_ms() - t_down));
        }
    }
    t_end = h_mono_ms();
    check_watchdog(&f->nt, t_down, t_end, OUTAGE_WINDOW_MS / 750, "redis down");
    for (; i < (long)f->nt.n; i++)
        if (strncmp(f->nt.v[i].line, "STATUS=", 7) == 0 && strstr(f->nt.v[i].line, "redis down"))
            break;
    if (i == (long)f->nt.n)
        fail_msg("no STATUS= saying Redis is down within %d ms of the outage", OUTAGE_WINDOW_MS);
    if (wired && !saw_503)
        fail_msg("/healthz did not answer 503 during the Redis outage (last: %d \"%s\")", status,
                 body);

    /* SIGTERM: STOPPING=1 and exit 0 */
    if (h_clvd_stop(&f->clvd, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
        fail_msg("SIGTERM: %s", err);
    notify_read(&f->nt, 200); /* datagrams sent before the exit are still queued */
    if (note_find(&f->nt, (size_t)ready, "STOPPING=1") < 0)
        fail_msg("no STOPPING=1 after SIGTERM");
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_notify_protocol, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
