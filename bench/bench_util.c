/* bench_util.c -- processes, redis-server, INFO, HTTP scraping and /proc
 * readers for the benchmark; see bench.h. */
#define _XOPEN_SOURCE 700
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

const char *const b_input_topics[B_NINPUT] = {"purchases", "logins", "visits"};
const char *const b_output_topics[B_NOUTPUT] = {"customer.stage-changes",
                                                "customer.churn-warnings",
                                                "customer.win-back",
                                                "customer.tier-changes",
                                                "clvd.alerts",
                                                "clvd.dead-letter"};

/* ---- time ------------------------------------------------------------------- */

double b_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t b_wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void b_sleep(double seconds)
{
    struct timespec ts;

    if (seconds <= 0)
        return;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- files -------------------------------------------------------------------- */

int b_tmpdir(const char *parent, char *out, size_t outlen, char *err, size_t errlen)
{
    if ((size_t)snprintf(out, outlen, "%s/clvd-bench.XXXXXX", parent) >= outlen) {
        clv_seterr(err, errlen, "temp dir: path too long");
        return -1;
    }
    if (mkdtemp(out) == NULL) {
        clv_seterr(err, errlen, "mkdtemp %s: %s", out, strerror(errno));
        return -1;
    }
    return 0;
}

void b_rmtree(const char *dir)
{
    rp_rmtree(dir);
}

void b_tail(const char *path, size_t bytes, const char *title)
{
    rp_dump_file(path, title, bytes, stderr);
}

/* ---- processes ------------------------------------------------------------------ */

int b_spawn(char *const argv[], const char *log, pid_t *pid, char *err, size_t errlen)
{
    return rp_spawn(argv, log, pid, err, errlen);
}

int b_alive(pid_t pid)
{
    int status;

    if (pid <= 0)
        return 0;
    return waitpid(pid, &status, WNOHANG) == 0;
}

int b_stop(pid_t pid, double grace)
{
    int status = rp_stop(pid, SIGTERM, (int)(grace * 1000));

    if (status < 0)
        return -1;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

/* The one piece of global state: set by a signal handler. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

void b_catch_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; /* a second signal: the default action */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int b_interrupted(void)
{
    return interrupted != 0;
}

double b_proc_cpu(pid_t pid)
{
    char path[64], buf[2048], *p;
    unsigned long utime = 0, stime = 0;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* fields after the command name, which may hold blanks: from the last ')' */
    p = strrchr(buf, ')');
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

long b_proc_status_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    size_t flen = strlen(field);
    long v = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, flen) == 0) {
            v = strtol(line + flen, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

double b_self_cpu(void)
{
    struct rusage ru;

    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

double b_system_busy(void)
{
    unsigned long long v[10] = {0};
    FILE *f = fopen("/proc/stat", "r");
    double busy = 0;

    if (f == NULL)
        return 0;
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
               &v[5], &v[6], &v[7]) == 8)
        /* user nice system [idle iowait] irq softirq steal */
        busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
    fclose(f);
    return busy / (double)sysconf(_SC_CLK_TCK);
}

/* ---- redis-server ------------------------------------------------------------------- */

redisContext *b_redis_connect(const struct b_redis *r, char *err, size_t errlen)
{
    return rp_connect(r->socket, 0, 10000, err, errlen);
}

int b_redis_configure(redisContext *c, const struct b_opts *o, char *err, size_t errlen)
{
    for (int i = 0; i < o->nredis_config; i++) {
        redisReply *r =
            redisCommand(c, "CONFIG SET %s %s", o->redis_config[i][0], o->redis_config[i][1]);
        int ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (!ok)
            clv_seterr(err, errlen, "redis CONFIG SET %s %s: %s", o->redis_config[i][0],
                       o->redis_config[i][1],
                       r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply");
        if (r)
            freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

int b_redis_start(struct b_redis *r, const char *bin, const char *dir, char *err, size_t errlen)
{
    /* r->socket and r->dir are filled in below, before the spawn */
    char *argv[] = {(char *)bin, "--port",           "0",   "--unixsocket",
                    r->socket,   "--unixsocketperm", "700", "--save",
                    "",          "--appendonly",     "no",  "--dir",
                    r->dir,      "--daemonize",      "no",  NULL};

    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    snprintf(r->socket, sizeof(r->socket), "%s/redis.sock", dir);
    snprintf(r->log, sizeof(r->log), "%s/redis.log", dir);
    return rp_redis_spawn(argv, r->log, r->socket, 0, &r->pid, err, errlen);
}

void b_redis_stop(struct b_redis *r)
{
    rp_stop(r->pid, SIGTERM, 5000);
    r->pid = 0;
    for (int i = 0; i < B_CLUSTER_MAX; i++)
        rp_node_stop(&r->node[i]);
}

int b_redis_nodes(const struct b_redis *r)
{
    return r->masters > 0 ? r->masters : 1;
}

pid_t b_redis_pid(const struct b_redis *r, int i)
{
    if (r->masters > 0)
        return i >= 0 && i < r->masters ? r->node[i].pid : 0;
    return i == 0 ? r->pid : 0;
}

double b_redis_cpu(const struct b_redis *r)
{
    double sum = 0;

    for (int i = 0; i < b_redis_nodes(r); i++) {
        double c = b_proc_cpu(b_redis_pid(r, i));
        sum += c > 0 ? c : 0;
    }
    return sum;
}

redisContext *b_redis_connect_node(const struct b_redis *r, int i, char *err, size_t errlen)
{
    if (r->masters > 0) {
        if (i < 0 || i >= r->masters) {
            clv_seterr(err, errlen, "no master %d", i);
            return NULL;
        }
        return rp_connect(NULL, r->node[i].port, 10000, err, errlen);
    }
    if (i != 0) {
        clv_seterr(err, errlen, "no redis node %d", i);
        return NULL;
    }
    return b_redis_connect(r, err, errlen);
}

/* ---- Redis Cluster ---------------------------------------------------------------------- */

int b_redis_cluster_start(struct b_redis *r, const char *server, const char *cli, int masters,
                          const char *dir, char *err, size_t errlen)
{
    struct rp_cluster c = {server, cli, r->dir, masters, r->node}; /* r's, filled below */

    memset(r, 0, sizeof(*r));
    if (masters < 1 || masters > B_CLUSTER_MAX) {
        clv_seterr(err, errlen, "a cluster of %d masters: want 1 .. %d", masters, B_CLUSTER_MAX);
        return -1;
    }
    r->masters = masters;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    if (rp_cluster_start(&c, err, errlen) != 0)
        return -1;
    snprintf(r->log, sizeof(r->log), "%s", r->node[0].log);
    return 0;
}

int b_info_u64(redisContext *c, const char *section, const char *field, uint64_t *out)
{
    redisReply *r = redisCommand(c, "INFO %s", section);
    size_t flen = strlen(field);
    int rc = -1;

    if (r == NULL)
        return -1;
    if (r->type == REDIS_REPLY_STRING) {
        const char *p = r->str;
        while (p && *p) {
            if (strncmp(p, field, flen) == 0 && p[flen] == ':') {
                *out = strtoull(p + flen + 1, NULL, 10);
                rc = 0;
                break;
            }
            p = strchr(p, '\n');
            if (p)
                p++;
        }
    }
    freeReplyObject(r);
    return rc;
}

int b_cmdstats_read(redisContext *c, struct b_cmdstats *cs)
{
    redisReply *r = redisCommand(c, "INFO commandstats");
    const char *p;

    memset(cs, 0, sizeof(*cs));
    if (r == NULL)
        return -1;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    /* cmdstat_get:calls=12,usec=34,usec_per_call=2.83,rejected_calls=0,failed_calls=0 */
    for (p = r->str; p && *p && cs->n < B_MAX_CMDS;) {
        if (strncmp(p, "cmdstat_", 8) == 0) {
            const char *colon = strchr(p, ':'), *calls, *usec;
            struct b_cmdstat *s = &cs->c[cs->n];
            size_t nlen = colon ? (size_t)(colon - (p + 8)) : 0;
            if (colon && nlen < sizeof(s->name)) {
                memcpy(s->name, p + 8, nlen);
                s->name[nlen] = '\0';
                calls = strstr(colon, "calls=");
                usec = strstr(colon, "usec=");
                s->calls = calls ? strtoull(calls + 6, NULL, 10) : 0;
                s->usec = usec ? strtod(usec + 5, NULL) : 0;
                cs->n++;
            }
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    freeReplyObject(r);
    return 0;
}

uint64_t b_cmdstats_calls(const struct b_cmdstats *cs, const char *name)
{
    for (int i = 0; i < cs->n; i++)
        if (strcmp(cs->c[i].name, name) == 0)
            return cs->c[i].calls;
    return 0;
}

void b_cmdstats_add(struct b_cmdstats *sum, const struct b_cmdstats *x)
{
    for (int i = 0; i < x->n; i++) {
        int j = 0;
        while (j < sum->n && strcmp(sum->c[j].name, x->c[i].name) != 0)
            j++;
        if (j == sum->n) {
            if (sum->n == B_MAX_CMDS)
                continue;
            sum->c[sum->n++] = x->c[i];
            continue;
        }
        sum->c[j].calls += x->c[i].calls;
        sum->c[j].usec += x->c[i].usec;
    }
}

static int by_calls_desc(const void *a, const void *b)
{
    const struct b_cmdstat *x = a, *y = b;

    return x->calls < y->calls ? 1 : x->calls > y->calls ? -1 : strcmp(x->name, y->name);
}

void b_cmdstats_delta(const struct b_cmdstats *before, const struct b_cmdstats *after,
                      struct b_cmdstats *out)
{
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < after->n; i++) {
        uint64_t was = 0;
        double was_usec = 0;
        for (int j = 0; j < before->n; j++)
            if (strcmp(before->c[j].name, after->c[i].name) == 0) {
                was = before->c[j].calls;
                was_usec = before->c[j].usec;
            }
        if (after->c[i].calls <= was)
            continue;
        out->c[out->n] = after->c[i];
        out->c[out->n].calls -= was;
        out->c[out->n].usec -= was_usec;
        out->n++;
    }
    qsort(out->c, (size_t)out->n, sizeof(out->c[0]), by_calls_desc);
}

/* ---- HTTP and Prometheus text ----------------------------------------------------------- */

int b_free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;

    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

int b_http_get(int port, const char *path, struct clv_sbuf *body)
{
    struct sockaddr_in a;
    struct timeval tv = {5, 0};
    char req[256], buf[16384], *hdr_end;
    int fd, status = -1, n;
    struct clv_sbuf raw;

    sbuf_reset(body);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    sbuf_init(&raw);
    while ((n = (int)read(fd, buf, sizeof(buf))) > 0)
        sbuf_append(&raw, buf, (size_t)n);
    close(fd);
    sbuf_append(&raw, "", 1);
    if (raw.len > 12 && strncmp(raw.buf, "HTTP/1.", 7) == 0)
        status = atoi(raw.buf + 9);
    hdr_end = raw.len ? strstr(raw.buf, "\r\n\r\n") : NULL;
    if (hdr_end)
        sbuf_append(body, hdr_end + 4, strlen(hdr_end + 4));
    sbuf_append(body, "", 1);
    body->len--; /* keep it NUL-terminated */
    sbuf_free(&raw);
    return status;
}

/* Calls fn for every sample line "name{labels} value" / "name value". */
static double metric_scan(const char *page, const char *name, const char *label, int *found)
{
    size_t nlen = strlen(name);
    const char *p = page;
    double sum = 0;

    *found = 0;
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (*p != '#' && len > nlen && strncmp(p, name, nlen) == 0 &&
            (p[nlen] == ' ' || p[nlen] == '{')) {
            const char *sp = memchr(p, ' ', len);
            /* the value is after the last blank of the line */
            const char *v = p + len;
            while (v > p && v[-1] != ' ')
                v--;
            if (sp && (label == NULL ||
                       (p[nlen] == '{' && strstr(p, label) != NULL && strstr(p, label) < sp))) {
                sum += strtod(v, NULL);
                *found = 1;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return sum;
}

double b_metric(const char *page, const char *name, const char *label)
{
    int found;

    return metric_scan(page, name, label, &found);
}

int b_metric_has(const char *page, const char *name)
{
    int found;

    metric_scan(page, name, NULL, &found);
    return found;
}

/* Add one bucket; a bound already seen (another instance's page) is summed. */
static int hist_add(double *le, double *cum, int n, int max, double bound, double count)
{
    for (int i = 0; i < n; i++)
        if (le[i] == bound) {
            cum[i] += count;
            return n;
        }
    if (n == max)
        return n;
    le[n] = bound;
    cum[n] = count;
    return n + 1;
}

/* The cumulative buckets of histogram `name` in a page; returns how many. */
static int hist_buckets(const char *page, const char *name, double *le, double *cum, int max)
{
    char bname[160];
    size_t blen;
    const char *p = page;
    int n = 0;

    snprintf(bname, sizeof(bname), "%s_bucket{le=\"", name);
    blen = strlen(bname);
    while (p && *p) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, bname, blen) == 0) {
            const char *v = eol ? eol : p + strlen(p);
            while (v > p && v[-1] != ' ')
                v--;
            if (v > p)
                n = hist_add(le, cum, n, max,
                             strncmp(p + blen, "+Inf", 4) == 0 ? INFINITY : strtod(p + blen, NULL),
                             strtod(v, NULL));
        }
        p = eol ? eol + 1 : NULL;
    }
    return n;
}

int b_hist_read(const char *page, const char *name, struct b_hist *h)
{
    memset(h, 0, sizeof(*h));
    if (page == NULL)
        return -1;
    h->n = hist_buckets(page, name, h->le, h->cum, B_HIST_MAX);
    return h->n > 0 ? 0 : -1;
}

void b_hist_sub(struct b_hist *h, const struct b_hist *before)
{
    if (before->n != h->n)
        return;
    for (int i = 0; i < h->n; i++)
        h->cum[i] -= before->cum[i];
}

uint64_t b_hist_count(const struct b_hist *h)
{
    return h->n ? (uint64_t)h->cum[h->n - 1] : 0;
}

double b_hist_quantile(const struct b_hist *h, double q)
{
    double rank, prev_le = 0, prev_cum = 0;

    if (h->n == 0 || h->cum[h->n - 1] <= 0)
        return -1;
    rank = q * h->cum[h->n - 1];
    for (int i = 0; i < h->n; i++) {
        if (h->cum[i] >= rank) {
            if (isinf(h->le[i]))
                return prev_le;
            if (h->cum[i] == prev_cum)
                return h->le[i];
            return prev_le + (h->le[i] - prev_le) * (rank - prev_cum) / (h->cum[i] - prev_cum);
        }
        prev_le = h->le[i];
        prev_cum = h->cum[i];
    }
    return prev_le;
}

double b_hist_share(const struct b_hist *h, double le)
{
    for (int i = 0; i < h->n; i++)
        if (fabs(h->le[i] - le) < 1e-12)
            return h->cum[h->n - 1] > 0 ? h->cum[i] / h->cum[h->n - 1] : -1;
    return -1;
}

double b_quantile_sorted(const double *v, size_t n, double q)
{
    size_t i;

    if (n == 0)
        return 0;
    /* nearest rank */
    i = (size_t)ceil(q * (double)n);
    if (i > 0)
        i--;
    if (i >= n)
        i = n - 1;
    return v[i];
}

/* TCP_NODELAY on every TCP socket of this process, the Kafka mock's
 * accepted connections among them.  A real broker (the JVM's) disables
 * Nagle's algorithm; the librdkafka 2.0.2 mock does not, and one of its
 * fetch responses in ~1 500 then waited for the consumer's delayed ACK:
 * 40-45 ms instead of well under one (librdkafka's debug log of clvd,
 * docs/performance.md, eighth session).  Returns the sockets set. */
int b_nodelay_sockets(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0, one = 1;

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = atoi(e->d_name), type = 0;
        socklen_t tl = sizeof(type);
        if (fd <= 2 || fd == dirfd(d) ||
            getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_STREAM ||
            getsockname(fd, (struct sockaddr *)&ss, &sl) != 0 ||
            (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
            continue;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0)
            n++;
    }
    closedir(d);
    return n;
}
