/* redis_procs.c -- child processes and throwaway Redis servers (see
 * redis_procs.h). */
#define _GNU_SOURCE /* pipe2, asprintf, strsignal, nftw */
#include "redis_procs.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

void rp_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int64_t rp_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void rp_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

void rp_dump_file(const char *path, const char *title, size_t tail_bytes, FILE *out)
{
    FILE *f;
    long size;
    char buf[4096];
    size_t n;

    if (path == NULL || path[0] == '\0')
        return;
    f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(out, "==== %s (%s): cannot open: %s\n", title, path, strerror(errno));
        return;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    if (size > (long)tail_bytes) {
        fseek(f, size - (long)tail_bytes, SEEK_SET);
        fprintf(out, "==== %s (%s), last %zu of %ld bytes:\n", title, path, tail_bytes, size);
    } else {
        fseek(f, 0, SEEK_SET);
        fprintf(out, "==== %s (%s):\n", title, path);
    }
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        fwrite(buf, 1, n, out);
    fprintf(out, "==== end of %s\n", title);
    fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void rp_rmtree(const char *dir)
{
    if (dir == NULL || dir[0] == '\0')
        return;
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    rmdir(dir); /* again, should a file have gone away during the walk */
}

/* ---- child processes ---------------------------------------------------------- */

/* In the child: never returns.  The exec error goes to the parent through
 * the close-on-exec pipe `efd`. */
static void child_exec(char *const argv[], const char *log, pid_t parent, int efd)
    __attribute__((noreturn));

static void child_exec(char *const argv[], const char *log, pid_t parent, int efd)
{
    int fd, child_errno;

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) /* the parent died before prctl */
        _exit(127);
    setpgid(0, 0);
    fd = open("/dev/null", O_RDONLY);
    if (fd >= 0) {
        dup2(fd, 0);
        close(fd);
    }
    fd = log ? open(log, O_WRONLY | O_CREAT | O_APPEND, 0644) : -1;
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        close(fd);
    }
    signal(SIGPIPE, SIG_DFL); /* an ignored SIGPIPE would survive the exec */
    execvp(argv[0], argv);
    child_errno = errno;
    if (write(efd, &child_errno, sizeof(child_errno)) < 0) {
        /* nothing more to do */
    }
    _exit(127);
}

int rp_spawn(char *const argv[], const char *log, pid_t *pid, char *err, size_t errlen)
{
    int pfd[2], child_errno = 0;
    pid_t parent = getpid(), p;
    ssize_t n;

    *pid = 0;
    if (pipe2(pfd, O_CLOEXEC) == -1) {
        rp_seterr(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL); /* nothing buffered twice, and the log in order */
    p = fork();
    if (p == 0)
        child_exec(argv, log, parent, pfd[1]);
    close(pfd[1]);
    if (p == -1) {
        rp_seterr(err, errlen, "fork: %s", strerror(errno));
        close(pfd[0]);
        return -1;
    }
    /* EOF: the exec closed the pipe; 4 bytes: it failed */
    do
        n = read(pfd[0], &child_errno, sizeof(child_errno));
    while (n == -1 && errno == EINTR);
    close(pfd[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        waitpid(p, NULL, 0);
        rp_seterr(err, errlen, "exec %s: %s", argv[0], strerror(child_errno));
        return -1;
    }
    *pid = p;
    return 0;
}

int rp_wait(pid_t pid, int timeout_ms, int *status)
{
    int64_t deadline = rp_mono_ms() + timeout_ms;

    for (;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 1;
        if (r == -1 && errno != EINTR) {
            *status = 0;
            return -1;
        }
        if (rp_mono_ms() >= deadline)
            return 0;
        rp_sleep_ms(20);
    }
}

int rp_stop(pid_t pid, int sig, int grace_ms)
{
    int status = 0, r;

    if (pid <= 0)
        return -1;
    kill(pid, sig);
    r = rp_wait(pid, grace_ms, &status);
    if (r != 0)
        return r == 1 ? status : -1;
    kill(pid, SIGKILL);
    return waitpid(pid, &status, 0) == pid ? status : -1;
}

void rp_describe_status(int status, char *buf, size_t len)
{
    if (WIFEXITED(status))
        snprintf(buf, len, "exit status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(buf, len, "wait status 0x%x", status);
}

int rp_run_tool(char *const argv[], const char *log, int timeout_ms, char *err, size_t errlen)
{
    int status = 0;
    char how[96];
    pid_t pid;

    if (rp_spawn(argv, log, &pid, err, errlen) != 0)
        return -1;
    if (rp_wait(pid, timeout_ms, &status) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        rp_seterr(err, errlen, "%s %s did not finish within %d ms; see %s", argv[0],
                  argv[1] ? argv[1] : "", timeout_ms, log ? log : "its output");
        return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    rp_describe_status(status, how, sizeof(how));
    rp_seterr(err, errlen, "%s %s %s: %s; see %s", argv[0], argv[1] ? argv[1] : "",
              argv[1] && argv[2] ? argv[2] : "", how, log ? log : "its output");
    return -1;
}

/* ---- redis-server --------------------------------------------------------------- */

redisContext *rp_connect(const char *socket, int port, int timeout_ms, char *err, size_t errlen)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = socket ? redisConnectUnixWithTimeout(socket, tv)
                             : redisConnectWithTimeout("127.0.0.1", port, tv);

    if (c == NULL || c->err) {
        if (socket)
            rp_seterr(err, errlen, "redis connect %s: %s", socket, c ? c->errstr : "out of memory");
        else
            rp_seterr(err, errlen, "redis connect 127.0.0.1:%d: %s", port,
                      c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    return c;
}

/* 0 if the server answers PING with PONG. */
static int ping(const char *socket, int port, char *err, size_t errlen)
{
    redisContext *c = rp_connect(socket, port, 2000, err, errlen);
    redisReply *rep;
    int ok;

    if (c == NULL)
        return -1;
    rep = redisCommand(c, "PING");
    ok = rep != NULL && rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "PONG") == 0;
    if (!ok) /* e.g. -LOADING while it reads its data */
        rp_seterr(err, errlen, "PING: %s", rep && rep->str ? rep->str : c->errstr);
    if (rep)
        freeReplyObject(rep);
    redisFree(c);
    return ok ? 0 : -1;
}

int rp_redis_spawn(char *const argv[], const char *log, const char *socket, int port, pid_t *pid,
                   char *err, size_t errlen)
{
    int64_t deadline = rp_mono_ms() + 10000;
    char where[RP_PATHLEN], why[RP_ERRLEN] = "", how[96];
    int status;

    if (socket)
        snprintf(where, sizeof(where), "%s", socket);
    else
        snprintf(where, sizeof(where), "127.0.0.1:%d", port);
    if (rp_spawn(argv, log, pid, err, errlen) != 0)
        return -1;
    for (;;) {
        if (ping(socket, port, why, sizeof(why)) == 0)
            return 0;
        if (waitpid(*pid, &status, WNOHANG) == *pid) {
            rp_describe_status(status, how, sizeof(how));
            rp_seterr(err, errlen, "redis-server on %s exited at start (%s); see %s", where, how,
                      log);
            break;
        }
        if (rp_mono_ms() >= deadline) {
            rp_seterr(err, errlen, "redis-server on %s did not answer PING within 10 s: %s", where,
                      why);
            kill(*pid, SIGKILL);
            waitpid(*pid, NULL, 0);
            break;
        }
        rp_sleep_ms(20);
    }
    *pid = 0;
    rp_dump_file(log, "redis-server log", 4096, stderr);
    return -1;
}

redisReply *rp_node_command(const struct rp_node *n, const char *fmt, ...)
{
    redisContext *c = rp_connect(NULL, n->port, 5000, NULL, 0);
    redisReply *rep;
    va_list ap;

    if (c == NULL)
        return NULL;
    va_start(ap, fmt);
    rep = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    return rep;
}

void rp_node_stop(struct rp_node *n)
{
    rp_stop(n->pid, SIGTERM, 5000);
    n->pid = 0;
}

/* ---- Redis Cluster -------------------------------------------------------------- */

/* Nobody listens on 127.0.0.1:port now (a race with another process
 * remains: rp_cluster_start tries other ports if a server cannot bind). */
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

/* n consecutive free ports in 20000..40000 whose bus ports (+10000) are free
 * too; random, so parallel tests and benches rarely collide. */
static int pick_ports(int n, int *base)
{
    unsigned seed = (unsigned)getpid() ^ (unsigned)rp_mono_ms();

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

static int node_spawn(const struct rp_cluster *c, int i, char *err, size_t errlen)
{
    struct rp_node *n = &c->node[i];
    char port[16], conf[64];
    char *argv[] = {(char *)c->server,
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf,
                    "--cluster-node-timeout",
                    "5000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    (char *)c->dir,
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "notice",
                    NULL};

    snprintf(port, sizeof(port), "%d", n->port);
    snprintf(conf, sizeof(conf), "nodes-%d.conf", n->port);
    if ((size_t)snprintf(n->log, sizeof(n->log), "%s/redis-%d.log", c->dir, n->port) >=
        sizeof(n->log)) {
        rp_seterr(err, errlen, "directory name too long: %s", c->dir);
        return -1;
    }
    return rp_redis_spawn(argv, n->log, NULL, n->port, &n->pid, err, errlen);
}

static int cluster_create(const struct rp_cluster *c, char *err, size_t errlen)
{
    char addr[RP_CLUSTER_MAX][32], log[RP_PATHLEN];
    char *argv[RP_CLUSTER_MAX + 8];
    int argc = 0;

    argv[argc++] = (char *)c->cli;
    argv[argc++] = "--cluster";
    argv[argc++] = "create";
    for (int i = 0; i < c->masters; i++) {
        snprintf(addr[i], sizeof(addr[i]), "127.0.0.1:%d", c->node[i].port);
        argv[argc++] = addr[i];
    }
    argv[argc++] = "--cluster-replicas";
    argv[argc++] = "0";
    argv[argc++] = "--cluster-yes";
    argv[argc] = NULL;
    snprintf(log, sizeof(log), "%s/cluster-create.log", c->dir);
    return rp_run_tool(argv, log, 60000, err, errlen);
}

static int cluster_ids(const struct rp_cluster *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->masters; i++) {
        struct rp_node *n = &c->node[i];
        redisReply *rep = rp_node_command(n, "CLUSTER MYID");
        int ok = rep != NULL && rep->type == REDIS_REPLY_STRING && rep->len < sizeof(n->id);
        if (ok)
            snprintf(n->id, sizeof(n->id), "%s", rep->str);
        if (rep)
            freeReplyObject(rep);
        if (!ok) {
            rp_seterr(err, errlen, "CLUSTER MYID on port %d failed", n->port);
            return -1;
        }
    }
    return 0;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Master i's view of the cluster: "<id> <slots>" of every master, sorted,
 * into buf; -1 unless it says cluster_state:ok and no slot is migrating. */
static int node_view(const struct rp_cluster *c, int i, char *buf, size_t len)
{
    redisReply *info = rp_node_command(&c->node[i], "CLUSTER INFO");
    redisReply *nodes = rp_node_command(&c->node[i], "CLUSTER NODES");
    char *lines[64], *save = NULL, *line;
    size_t n = 0, used = 0;
    int rc = -1;

    buf[0] = '\0';
    if (info == NULL || nodes == NULL || info->type != REDIS_REPLY_STRING ||
        nodes->type != REDIS_REPLY_STRING || strstr(info->str, "cluster_state:ok") == NULL ||
        strchr(nodes->str, '[') != NULL)
        goto out;
    for (line = strtok_r(nodes->str, "\n", &save); line != NULL && n < 64;
         line = strtok_r(NULL, "\n", &save)) {
        char id[64] = "", flags[128] = "";
        int slots = 0;
        if (sscanf(line, "%63s %*s %127s %*s %*s %*s %*s %*s %n", id, flags, &slots) < 2 ||
            strstr(flags, "master") == NULL)
            continue;
        /* id and slot ranges only: flags and ping times differ between views */
        if (asprintf(&lines[n], "%s %s", id, slots > 0 ? line + slots : "") < 0)
            break;
        n++;
    }
    qsort(lines, n, sizeof(*lines), cmp_line);
    for (size_t k = 0; k < n; k++) {
        used += (size_t)snprintf(buf + used, used < len ? len - used : 0, "%s\n", lines[k]);
        free(lines[k]);
    }
    rc = used < len && n == (size_t)c->masters ? 0 : -1;
out:
    if (info)
        freeReplyObject(info);
    if (nodes)
        freeReplyObject(nodes);
    return rc;
}

int rp_cluster_settle(const struct rp_cluster *c, int timeout_ms, char *err, size_t errlen)
{
    enum { VIEW = 16384 };
    char *first = malloc(VIEW), *other = malloc(VIEW);
    int64_t deadline = rp_mono_ms() + timeout_ms;
    int rc = -1;

    if (first == NULL || other == NULL)
        rp_seterr(err, errlen, "out of memory");
    while (first != NULL && other != NULL) {
        int ok = node_view(c, 0, first, VIEW) == 0;
        for (int i = 1; i < c->masters && ok; i++)
            ok = node_view(c, i, other, VIEW) == 0 && strcmp(first, other) == 0;
        if (ok) {
            rc = 0;
            break;
        }
        if (rp_mono_ms() >= deadline) {
            rp_seterr(err, errlen, "the cluster's masters do not agree on an ok state within %d ms",
                      timeout_ms);
            break;
        }
        rp_sleep_ms(100);
    }
    free(first);
    free(other);
    return rc;
}

static int cluster_start_once(const struct rp_cluster *c, char *err, size_t errlen)
{
    int base;

    if (pick_ports(c->masters, &base) != 0) {
        rp_seterr(err, errlen, "no free ports for a cluster of %d in 20000..40000", c->masters);
        return -1;
    }
    for (int i = 0; i < c->masters; i++) {
        c->node[i].port = base + i;
        if (node_spawn(c, i, err, errlen) != 0)
            return -1;
    }
    if (cluster_create(c, err, errlen) != 0 || rp_cluster_settle(c, 30000, err, errlen) != 0)
        return -1;
    return cluster_ids(c, err, errlen);
}

/* After a failed attempt: what the masters said, then a clean slate (a
 * nodes-PORT.conf left behind would make a new node rejoin the old one). */
static void cluster_discard(const struct rp_cluster *c)
{
    for (int i = 0; i < c->masters; i++) {
        char conf[RP_PATHLEN];
        if (c->node[i].pid > 0) /* a node that failed to start has shown its log */
            rp_dump_file(c->node[i].log, "redis-server log", 2048, stderr);
        rp_node_stop(&c->node[i]);
        snprintf(conf, sizeof(conf), "%s/nodes-%d.conf", c->dir, c->node[i].port);
        unlink(conf);
    }
}

int rp_cluster_start(const struct rp_cluster *c, char *err, size_t errlen)
{
    char why[RP_ERRLEN] = "";

    if (c->masters < 1 || c->masters > RP_CLUSTER_MAX) {
        rp_seterr(err, errlen, "a cluster of %d masters: want 1 .. %d", c->masters, RP_CLUSTER_MAX);
        return -1;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (cluster_start_once(c, why, sizeof(why)) == 0)
            return 0;
        fprintf(stderr, "starting a Redis Cluster of %d masters: %s%s\n", c->masters, why,
                attempt < 2 ? "; trying other ports" : "");
        cluster_discard(c);
    }
    rp_seterr(err, errlen, "%s", why);
    return -1;
}

void rp_cluster_stop(const struct rp_cluster *c)
{
    for (int i = 0; i < c->masters && i < RP_CLUSTER_MAX; i++)
        rp_node_stop(&c->node[i]);
}

static int reshard_run(const struct rp_cluster *c, int from, int to, int slots, char *err,
                       size_t errlen)
{
    char addr[32], n[16], log[RP_PATHLEN];
    char *argv[] = {
        (char *)c->cli, "--cluster",    "reshard",         addr, "--cluster-from", c->node[from].id,
        "--cluster-to", c->node[to].id, "--cluster-slots", n,    "--cluster-yes",  NULL};

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", c->node[from].port);
    snprintf(n, sizeof(n), "%d", slots);
    snprintf(log, sizeof(log), "%s/reshard.log", c->dir);
    return rp_run_tool(argv, log, 180000, err, errlen);
}

int rp_cluster_reshard(const struct rp_cluster *c, int from, int to, int slots, char *err,
                       size_t errlen)
{
    if (from < 0 || to < 0 || from >= c->masters || to >= c->masters) {
        rp_seterr(err, errlen, "reshard: no master %d / %d", from, to);
        return -1;
    }
    /* redis-cli refuses to reshard a cluster whose masters disagree */
    if (rp_cluster_settle(c, 30000, err, errlen) != 0 ||
        reshard_run(c, from, to, slots, err, errlen) != 0)
        return -1;
    return rp_cluster_settle(c, 30000, err, errlen);
}
