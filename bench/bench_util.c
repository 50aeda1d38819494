/* bench_util.c -- processes, redis-server, INFO, HTTP scraping and /proc
 * readers for the benchmark; see bench.h. */
#define _XOPEN_SOURCE 700
#define _GNU_SOURCE
#include "bench.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void b_rmtree(const char *dir)
{
    if (dir[0] == '\0')
        return;
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    rmdir(dir); /* again, should a file have gone away after the walk */
}

void b_tail(const char *path, size_t bytes, const char *title)
{
    FILE *f = fopen(path, "r");
    char buf[4096];
    long size;
    size_t n;

    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, size > (long)bytes ? size - (long)bytes : 0, SEEK_SET);
    fprintf(stderr, "---- %s (%s, last %zu bytes) ----\n", title, path, bytes);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- end of %s ----\n", title);
    fclose(f);
}

/* ---- processes ------------------------------------------------------------------ */

int b_spawn(char *const argv[], const char *log, pid_t *pid, char *err, size_t errlen)
{
    pid_t parent = getpid(), p = fork();

    if (p < 0) {
        clv_seterr(err, errlen, "fork: %s", strerror(errno));
        return -1;
    }
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    *pid = p;
    return 0;
}

int b_alive(pid_t pid)
{
    int status;

    if (pid <= 0)
        return 0;
    return waitpid(pid, &status, WNOHANG) == 0;
}

static int exit_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return -1;
}

int b_stop(pid_t pid, double grace)
{
    double deadline = b_mono() + grace;
    int status;
    pid_t w;

    if (pid <= 0)
        return -1;
    if (kill(pid, SIGTERM) != 0 && errno == ESRCH) {
        w = waitpid(pid, &status, WNOHANG);
        return w == pid ? exit_code(status) : -1;
    }
    while (b_mono() < deadline) {
        w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            return exit_code(status);
        if (w < 0)
            return -1;
        b_sleep(0.02);
    }
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) == pid)
        return exit_code(status);
    return -1;
}

int b_run_tool(char *const argv[], const char *log, double timeout, char *err, size_t errlen)
{
    double deadline = b_mono() + timeout;
    int status;
    pid_t pid, w;

    if (b_spawn(argv, log, &pid, err, errlen) != 0)
        return -1;
    while ((w = waitpid(pid, &status, WNOHANG)) == 0 && b_mono() < deadline)
        b_sleep(0.05);
    if (w == 0) {
        b_stop(pid, 1);
        clv_seterr(err, errlen, "%s %s did not finish within %.0f s (log: %s)", argv[0],
                   argv[1] ? argv[1] : "", timeout, log ? log : "-");
        return -1;
    }
    if (w == pid && exit_code(status) == 0)
        return 0;
    if (log)
        b_tail(log, 2000, argv[0]);
    clv_seterr(err, errlen, "%s %s failed (exit %d; log: %s)", argv[0], argv[1] ? argv[1] : "",
               w == pid ? exit_code(status) : -1, log ? log : "-");
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
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectUnixWithTimeout(r->socket, tv);

    if (c == NULL || c->err) {
        clv_seterr(err, errlen, "redis connect %s: %s", r->socket, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
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
    char *argv[20];
    int n = 0;
    double deadline;

    memset(r, 0, sizeof(*r));
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    snprintf(r->socket, sizeof(r->socket), "%s/redis.sock", dir);
    snprintf(r->log, sizeof(r->log), "%s/redis.log", dir);
    argv[n++] = (char *)bin;
    argv[n++] = "--port";
    argv[n++] = "0";
    argv[n++] = "--unixsocket";
    argv[n++] = r->socket;
    argv[n++] = "--unixsocketperm";
    argv[n++] = "700";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--logfile";
    argv[n++] = r->log;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n] = NULL;
    if (b_spawn(argv, NULL, &r->pid, err, errlen) != 0)
        return -1;
    deadline = b_mono() + 10;
    while (b_mono() < deadline) {
        char e[B_ERRLEN];
        redisContext *c;
        if (!b_alive(r->pid)) {
            r->pid = 0;
            b_tail(r->log, 2000, "redis log");
            clv_seterr(err, errlen, "redis-server (%s) exited at start", bin);
            return -1;
        }
        c = b_redis_connect(r, e, sizeof(e));
        if (c) {
            redisReply *rep = redisCommand(c, "PING");
            int ok = rep && rep->type == REDIS_REPLY_STATUS;
            if (rep)
                freeReplyObject(rep);
            redisFree(c);
            if (ok)
                return 0;
        }
        b_sleep(0.02);
    }
    b_redis_stop(r);
    clv_seterr(err, errlen, "redis-server did not answer PING within 10 s");
    return -1;
}

void b_redis_stop(struct b_redis *r)
{
    if (r->pid > 0)
        b_stop(r->pid, 5);
    r->pid = 0;
    for (int i = 0; i < B_CLUSTER_MAX; i++) {
        if (r->node[i].pid > 0)
            b_stop(r->node[i].pid, 5);
        r->node[i].pid = 0;
    }
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

static redisContext *tcp_connect(int port, char *err, size_t errlen)
{
    struct timeval tv = {10, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c == NULL || c->err) {
        clv_seterr(err, errlen, "redis connect 127.0.0.1:%d: %s", port,
                   c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

redisContext *b_redis_connect_node(const struct b_redis *r, int i, char *err, size_t errlen)
{
    if (r->masters > 0) {
        if (i < 0 || i >= r->masters) {
            clv_seterr(err, errlen, "no master %d", i);
            return NULL;
        }
        return tcp_connect(r->node[i].port, err, errlen);
    }
    if (i != 0) {
        clv_seterr(err, errlen, "no redis node %d", i);
        return NULL;
    }
    return b_redis_connect(r, err, errlen);
}

/* ---- Redis Cluster (the approach of tests/integration/harness.c) ------------------------ */

/* Nobody listens on 127.0.0.1:port now (a race remains: the start is
 * retried on other ports if a server cannot bind). */
static int port_free(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    if (fd < 0)
        return 0;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    close(fd);
    return ok;
}

/* n consecutive free ports in 20000..40000 whose bus ports (+10000) are free too. */
static int pick_ports(int n, int *base)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)(b_wall_us() & 0xffffffff);

    for (int attempt = 0; attempt < 200; attempt++) {
        int p = 20000 + (int)(rand_r(&seed) % (unsigned)(20000 - n)), ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = port_free(p + i) && port_free(p + i + 10000);
        if (ok) {
            *base = p;
            return 0;
        }
    }
    return -1;
}

/* One command's reply on master i (caller frees), or NULL. */
static redisReply *node_command(const struct b_redis *r, int i, const char *cmd)
{
    redisContext *c = b_redis_connect_node(r, i, NULL, 0);
    redisReply *rep;

    if (c == NULL)
        return NULL;
    rep = redisCommand(c, cmd);
    redisFree(c);
    return rep;
}

static int node_spawn(struct b_redis *r, int i, const char *bin, char *err, size_t errlen)
{
    char port[16], conf[64], *argv[24];
    int n = 0;
    double deadline = b_mono() + 10;

    snprintf(port, sizeof(port), "%d", r->node[i].port);
    snprintf(conf, sizeof(conf), "nodes-%d.conf", r->node[i].port);
    snprintf(r->node[i].log, sizeof(r->node[i].log), "%s/redis-%d.log", r->dir, r->node[i].port);
    argv[n++] = (char *)bin;
    argv[n++] = "--port";
    argv[n++] = port;
    argv[n++] = "--bind";
    argv[n++] = "127.0.0.1";
    argv[n++] = "--cluster-enabled";
    argv[n++] = "yes";
    argv[n++] = "--cluster-config-file";
    argv[n++] = conf;
    argv[n++] = "--cluster-node-timeout";
    argv[n++] = "5000";
    argv[n++] = "--save";
    argv[n++] = "";
    argv[n++] = "--appendonly";
    argv[n++] = "no";
    argv[n++] = "--dir";
    argv[n++] = r->dir;
    argv[n++] = "--logfile";
    argv[n++] = r->node[i].log;
    argv[n++] = "--daemonize";
    argv[n++] = "no";
    argv[n] = NULL;
    if (b_spawn(argv, NULL, &r->node[i].pid, err, errlen) != 0)
        return -1;
    while (b_mono() < deadline) {
        redisReply *rep = node_command(r, i, "PING");
        int ok = rep && rep->type == REDIS_REPLY_STATUS;
        if (rep)
            freeReplyObject(rep);
        if (ok)
            return 0;
        if (!b_alive(r->node[i].pid)) {
            r->node[i].pid = 0;
            clv_seterr(err, errlen, "redis-server on port %d exited at start (log: %s)",
                       r->node[i].port, r->node[i].log);
            return -1;
        }
        b_sleep(0.02);
    }
    clv_seterr(err, errlen, "redis-server on port %d did not answer PING within 10 s",
               r->node[i].port);
    return -1;
}

static int cluster_create(struct b_redis *r, const char *cli, char *err, size_t errlen)
{
    char addr[B_CLUSTER_MAX][32], log[B_PATHLEN + 32];
    char *argv[B_CLUSTER_MAX + 8];
    int argc = 0;

    argv[argc++] = (char *)cli;
    argv[argc++] = "--cluster";
    argv[argc++] = "create";
    for (int i = 0; i < r->masters; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", r->node[i].port);
        argv[argc++] = addr[i];
    }
    argv[argc++] = "--cluster-replicas";
    argv[argc++] = "0";
    argv[argc++] = "--cluster-yes";
    argv[argc] = NULL;
    snprintf(log, sizeof(log), "%s/cluster-create.log", r->dir);
    return b_run_tool(argv, log, 60, err, errlen);
}

/* A numeric field of a "field:value" text (CLUSTER INFO); -1 if absent. */
static long long info_field(const char *text, const char *field)
{
    const char *p = strstr(text, field);
    size_t n = strlen(field);

    return p && p[n] == ':' ? strtoll(p + n + 1, NULL, 10) : -1;
}

/* Every master: cluster_state:ok, every slot assigned, every master known. */
static int cluster_wait_ok(const struct b_redis *r, double timeout, char *err, size_t errlen)
{
    double deadline = b_mono() + timeout;

    while (b_mono() < deadline) {
        int ok = 1;
        for (int i = 0; i < r->masters && ok; i++) {
            redisReply *rep = node_command(r, i, "CLUSTER INFO");
            ok = rep && rep->type == REDIS_REPLY_STRING &&
                 strstr(rep->str, "cluster_state:ok") != NULL &&
                 info_field(rep->str, "cluster_slots_assigned") == 16384 &&
                 info_field(rep->str, "cluster_known_nodes") == r->masters;
            if (rep)
                freeReplyObject(rep);
        }
        if (ok)
            return 0;
        b_sleep(0.1);
    }
    clv_seterr(err, errlen, "the Redis Cluster did not reach cluster_state:ok within %.0f s",
               timeout);
    return -1;
}

static int cluster_start_once(struct b_redis *r, const char *server, const char *cli, char *err,
                              size_t errlen)
{
    int base;

    if (pick_ports(r->masters, &base) != 0) {
        clv_seterr(err, errlen, "no free ports for %d masters in 20000..40000", r->masters);
        return -1;
    }
    for (int i = 0; i < r->masters; i++) {
        r->node[i].port = base + i;
        if (node_spawn(r, i, server, err, errlen) != 0)
            return -1;
    }
    if (cluster_create(r, cli, err, errlen) != 0)
        return -1;
    return cluster_wait_ok(r, 30, err, errlen);
}

int b_redis_cluster_start(struct b_redis *r, const char *server, const char *cli, int masters,
                          const char *dir, char *err, size_t errlen)
{
    memset(r, 0, sizeof(*r));
    if (masters < 1 || masters > B_CLUSTER_MAX) {
        clv_seterr(err, errlen, "a cluster of %d masters: want 1 .. %d", masters, B_CLUSTER_MAX);
        return -1;
    }
    r->masters = masters;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    for (int attempt = 0; attempt < 3; attempt++) {
        /* a port taken between the check and the bind: again elsewhere */
        if (cluster_start_once(r, server, cli, err, errlen) == 0) {
            snprintf(r->log, sizeof(r->log), "%s", r->node[0].log);
            return 0;
        }
        fprintf(stderr, "bench: starting a Redis Cluster: %s%s\n", err,
                attempt < 2 ? "; trying other ports" : "");
        for (int i = 0; i < masters; i++) {
            char conf[B_PATHLEN + 32];
            if (r->node[i].pid > 0)
                b_stop(r->node[i].pid, 5);
            r->node[i].pid = 0;
            snprintf(conf, sizeof(conf), "%s/nodes-%d.conf", r->dir, r->node[i].port);
            unlink(conf);
        }
    }
    return -1;
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
