/* harness.c -- building blocks of the clvd integration tests (see harness.h). */
#define _GNU_SOURCE /* vasprintf, open_memstream */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

const char *const h_input_topics[] = {H_T_PURCHASES, H_T_LOGINS, H_T_VISITS, NULL};
const char *const h_output_topics[] = {H_T_STAGE,  H_T_CHURN, H_T_WINBACK, H_T_TIER,
                                       H_T_ALERTS, H_T_DEAD,  NULL};

static int verbose(void)
{
    const char *v = getenv("CLVD_IT_VERBOSE");
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;

    if (!verbose())
        return;
    va_start(ap, fmt);
    fputs("[harness] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- misc ---------------------------------------------------------------- */

int64_t h_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t h_mono_ms(void)
{
    return rp_mono_ms();
}

void h_sleep_ms(int ms)
{
    rp_sleep_ms(ms);
}

int64_t h_ts(const char *s)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, ms = 0, n = 0;
    const char *p;

    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        goto bad;
    p = s + n;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0)
        goto bad;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (int64_t)timegm(&tm) * 1000 + ms;
bad:
    fprintf(stderr, "h_ts: malformed timestamp literal \"%s\"\n", s);
    abort();
}

char *h_fmt_ts(int64_t ms, char *buf, size_t buflen)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int frac = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(buf, buflen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    return buf;
}

int h_tmpdir_create(char *out, size_t outlen, char *err, size_t errlen)
{
    const char *base = getenv("TMPDIR");

    if (base == NULL || *base == '\0')
        base = "/tmp";
    if ((size_t)snprintf(out, outlen, "%s/clvd-it.XXXXXX", base) >= outlen) {
        rp_seterr(err, errlen, "temp dir name too long");
        return -1;
    }
    if (mkdtemp(out) == NULL) {
        rp_seterr(err, errlen, "mkdtemp %s: %s", out, strerror(errno));
        out[0] = '\0';
        return -1;
    }
    return 0;
}

void h_tmpdir_remove(const char *dir)
{
    const char *keep = getenv("CLVD_IT_KEEP");

    if (dir == NULL || dir[0] == '\0')
        return;
    if (keep != NULL && *keep != '\0' && strcmp(keep, "0") != 0) {
        fprintf(stderr, "[harness] keeping %s\n", dir);
        return;
    }
    rp_rmtree(dir);
}

int h_write_file(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "wb");

    if (f == NULL) {
        rp_seterr(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    if (fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        rp_seterr(err, errlen, "write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void h_dump_file(const char *path, const char *title, size_t tail_bytes, FILE *out)
{
    rp_dump_file(path, title, tail_bytes, out);
}

/* ---- redis-server ---------------------------------------------------------- */

/* $var, or dflt when it is unset or empty (REDIS_SERVER, REDIS_CLI). */
static const char *bin_from_env(const char *var, const char *dflt)
{
    const char *b = getenv(var);

    return b != NULL && *b != '\0' ? b : dflt;
}

static redisContext *redis_connect(const struct h_redis *r, char *err, size_t errlen)
{
    return rp_connect(r->socket, 0, 2000, err, errlen);
}

static int redis_spawn(struct h_redis *r, char *err, size_t errlen)
{
    char *argv[] = {(char *)bin_from_env("REDIS_SERVER", "redis-server"),
                    "--port",
                    "0",
                    "--bind",
                    "127.0.0.1",
                    "--unixsocket",
                    r->socket,
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    r->persist ? "yes" : "no",
                    "--appendfsync",
                    "always",
                    "--dir",
                    r->dir,
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "notice",
                    NULL};

    unlink(r->socket);
    if (rp_redis_spawn(argv, r->log, r->socket, 0, &r->pid, err, errlen) != 0)
        return -1;
    say("redis-server pid %d on %s", (int)r->pid, r->socket);
    return 0;
}

static int cluster_start(struct h_redis *r, char *err, size_t errlen);
static void cluster_kill(struct h_redis *r);
static int cluster_command(const struct h_redis *r, int argc, const char **argv, char *reply,
                           size_t replylen, char *err, size_t errlen);

int h_redis_start(struct h_redis *r, char *err, size_t errlen)
{
    if (r->dir[0] == '\0' && h_tmpdir_create(r->dir, sizeof(r->dir), err, errlen) != 0)
        return -1;
    if (r->masters > 0)
        return cluster_start(r, err, errlen);
    /* A unix socket path holds at most 107 bytes. */
    if (strlen(r->dir) > 90 ||
        snprintf(r->socket, sizeof(r->socket), "%s/redis.sock", r->dir) >= (int)sizeof(r->socket) ||
        snprintf(r->log, sizeof(r->log), "%s/redis.log", r->dir) >= (int)sizeof(r->log)) {
        rp_seterr(err, errlen, "directory name too long for a unix socket: %s", r->dir);
        return -1;
    }
    return redis_spawn(r, err, errlen);
}

static void redis_kill(struct h_redis *r, int sig)
{
    rp_stop(r->pid, sig, 5000);
    r->pid = 0;
}

void h_redis_stop(struct h_redis *r)
{
    redis_kill(r, SIGTERM);
    cluster_kill(r);
    if (r->dir[0] != '\0') {
        h_tmpdir_remove(r->dir);
        r->dir[0] = '\0';
    }
}

int h_redis_restart(struct h_redis *r, int hard, char *err, size_t errlen)
{
    return h_redis_restart_after(r, hard, 0, err, errlen);
}

int h_redis_restart_after(struct h_redis *r, int hard, int down_ms, char *err, size_t errlen)
{
    if (r->dir[0] == '\0') {
        rp_seterr(err, errlen, "redis was never started");
        return -1;
    }
    if (r->masters > 0) {
        rp_seterr(err, errlen, "restarting a cluster is not supported");
        return -1;
    }
    redis_kill(r, hard ? SIGKILL : SIGTERM);
    unlink(r->socket);
    say("redis-server down for %d ms", down_ms);
    if (down_ms > 0)
        h_sleep_ms(down_ms);
    return redis_spawn(r, err, errlen);
}

int h_redis_command(const struct h_redis *r, const char *cmd, char *reply, size_t replylen,
                    char *err, size_t errlen)
{
    char copy[1024], *save = NULL, *tok;
    const char *argv[32];
    int argc = 0, rc = -1;
    redisContext *c;
    redisReply *rep;

    if (reply != NULL && replylen > 0)
        reply[0] = '\0';
    snprintf(copy, sizeof(copy), "%s", cmd);
    for (tok = strtok_r(copy, " ", &save); tok != NULL && argc < 32;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    if (argc == 0) {
        rp_seterr(err, errlen, "empty redis command");
        return -1;
    }
    if (r->masters > 0)
        return cluster_command(r, argc, argv, reply, replylen, err, errlen);
    c = redis_connect(r, err, errlen);
    if (c == NULL)
        return -1;
    rep = redisCommandArgv(c, argc, argv, NULL);
    if (rep == NULL) {
        rp_seterr(err, errlen, "redis %s: %s", argv[0], c->errstr);
        goto out;
    }
    switch (rep->type) {
    case REDIS_REPLY_ERROR:
        rp_seterr(err, errlen, "redis %s: %s", argv[0], rep->str);
        goto out;
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_STRING:
        if (reply != NULL)
            snprintf(reply, replylen, "%s", rep->str);
        break;
    case REDIS_REPLY_INTEGER:
        if (reply != NULL)
            snprintf(reply, replylen, "%lld", rep->integer);
        break;
    default:
        break;
    }
    rc = 0;
out:
    if (rep != NULL)
        freeReplyObject(rep);
    redisFree(c);
    return rc;
}

/* ---- Redis Cluster ------------------------------------------------------------ */

/* 0 if `bin` (a path, or a name looked up in PATH) is executable. */
static int executable(const char *bin)
{
    const char *path = getenv("PATH");
    char buf[1024];

    if (strchr(bin, '/') != NULL)
        return access(bin, X_OK);
    for (const char *p = path ? path : "/usr/bin:/bin"; *p != '\0';) {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        if ((size_t)snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, bin) < sizeof(buf) &&
            access(buf, X_OK) == 0)
            return 0;
        p += n + (colon != NULL);
    }
    return -1;
}

int h_redis_cluster_tools(char *err, size_t errlen)
{
    const char *server = bin_from_env("REDIS_SERVER", "redis-server");
    const char *cli = bin_from_env("REDIS_CLI", "redis-cli");

    if (executable(server) != 0 || executable(cli) != 0) {
        rp_seterr(err, errlen, "%s not found (a Redis Cluster needs redis-server and redis-cli)",
                  executable(server) != 0 ? server : cli);
        return -1;
    }
    return 0;
}

int h_redis_cluster_env(void)
{
    const char *v = getenv("CLVD_IT_REDIS_CLUSTER");
    char *end;
    long n;

    if (v == NULL || *v == '\0')
        return 0;
    n = strtol(v, &end, 10);
    if (*end != '\0' || n < 3 || n > H_CLUSTER_MAX) {
        fprintf(stderr, "CLVD_IT_REDIS_CLUSTER=%s: want a number of masters, 3 .. %d\n", v,
                H_CLUSTER_MAX);
        return -1;
    }
    return (int)n;
}

int h_redis_cluster_skip(int masters)
{
    char err[H_ERRLEN];

    if (masters < 0)
        return 1;
    if (masters > 0 && h_redis_cluster_tools(err, sizeof(err)) != 0) {
        fprintf(stderr, "skipped: %s\n", err);
        return H_SKIP;
    }
    return 0;
}

int h_redis_nodes(const struct h_redis *r)
{
    return r->masters > 0 ? r->masters : 1;
}

_Static_assert(H_CLUSTER_MAX <= RP_CLUSTER_MAX, "more masters than support/redis_procs.c starts");

/* The support library's view of r's masters (support/redis_procs.h). */
static struct rp_cluster cluster_view(struct h_redis *r)
{
    struct rp_cluster c = {bin_from_env("REDIS_SERVER", "redis-server"),
                           bin_from_env("REDIS_CLI", "redis-cli"), r->dir, r->masters, r->node};

    return c;
}

static redisContext *node_connect(const struct h_redis *r, int i, char *err, size_t errlen)
{
    return rp_connect(NULL, r->node[i].port, 5000, err, errlen);
}

redisContext *h_redis_connect_node(const struct h_redis *r, int i, char *err, size_t errlen)
{
    if (r->masters > 0)
        return i >= 0 && i < r->masters ? node_connect(r, i, err, errlen) : NULL;
    return i == 0 ? redis_connect(r, err, errlen) : NULL;
}

static int is_redirect(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR &&
           (strncmp(rep->str, "MOVED ", 6) == 0 || strncmp(rep->str, "ASK ", 4) == 0);
}

static int cluster_command(const struct h_redis *r, int argc, const char **argv, char *reply,
                           size_t replylen, char *err, size_t errlen)
{
    long long sum = 0;
    int integers = 0, answered = 0;

    for (int i = 0; i < r->masters; i++) {
        redisContext *c = node_connect(r, i, err, errlen);
        redisReply *rep;
        if (c == NULL)
            return -1;
        rep = redisCommandArgv(c, argc, argv, NULL);
        if (rep == NULL) {
            rp_seterr(err, errlen, "redis %s on 127.0.0.1:%d: %s", argv[0], r->node[i].port,
                      c->errstr);
            redisFree(c);
            return -1;
        }
        redisFree(c);
        if (rep->type == REDIS_REPLY_ERROR && !is_redirect(rep)) {
            rp_seterr(err, errlen, "redis %s on 127.0.0.1:%d: %s", argv[0], r->node[i].port,
                      rep->str);
            freeReplyObject(rep);
            return -1;
        }
        if (rep->type == REDIS_REPLY_INTEGER) {
            sum += rep->integer;
            integers = 1;
        } else if (!is_redirect(rep) && !answered && reply != NULL &&
                   (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_STRING)) {
            snprintf(reply, replylen, "%s", rep->str);
        }
        answered |= !is_redirect(rep);
        freeReplyObject(rep);
    }
    if (integers && reply != NULL)
        snprintf(reply, replylen, "%lld", sum);
    return 0;
}

redisReply *h_redis_key_command(const struct h_redis *r, const char *fmt, ...)
{
    va_list ap;
    char *cmd = NULL;
    int len;

    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    for (int i = 0; i < h_redis_nodes(r); i++) {
        redisContext *c = h_redis_connect_node(r, i, NULL, 0);
        void *rep = NULL;
        if (c == NULL)
            continue;
        if (redisAppendFormattedCommand(c, cmd, (size_t)len) != REDIS_OK ||
            redisGetReply(c, &rep) != REDIS_OK)
            rep = NULL;
        redisFree(c);
        if (rep != NULL && !is_redirect(rep)) {
            free(cmd);
            return rep;
        }
        if (rep != NULL)
            freeReplyObject(rep);
    }
    free(cmd);
    return NULL;
}

static int scan_node(redisContext *c, h_key_fn fn, void *opaque, char *err, size_t errlen)
{
    char cursor[32] = "0";

    do {
        redisReply *rep = redisCommand(c, "SCAN %s COUNT 1000", cursor);
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
            rp_seterr(err, errlen, "SCAN: %s",
                      rep == NULL                      ? c->errstr
                      : rep->type == REDIS_REPLY_ERROR ? rep->str
                                                       : "unexpected reply");
            if (rep)
                freeReplyObject(rep);
            return -1;
        }
        snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
        for (size_t i = 0; i < rep->element[1]->elements; i++) {
            redisReply *k = rep->element[1]->element[i];
            if (fn(c, k->str, k->len, opaque) != 0) {
                rp_seterr(err, errlen, "reading key %.*s failed", (int)k->len, k->str);
                freeReplyObject(rep);
                return -1;
            }
        }
        freeReplyObject(rep);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

int h_redis_scan(const struct h_redis *r, h_key_fn fn, void *opaque, char *err, size_t errlen)
{
    for (int i = 0; i < h_redis_nodes(r); i++) {
        redisContext *c = h_redis_connect_node(r, i, err, errlen);
        int rc;
        if (c == NULL)
            return -1;
        rc = scan_node(c, fn, opaque, err, errlen);
        redisFree(c);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void cluster_kill(struct h_redis *r)
{
    for (int i = 0; i < H_CLUSTER_MAX; i++)
        rp_node_stop(&r->node[i]);
}

static int cluster_start(struct h_redis *r, char *err, size_t errlen)
{
    struct rp_cluster c = cluster_view(r);

    if (r->masters < 1 || r->masters > H_CLUSTER_MAX) {
        rp_seterr(err, errlen, "a cluster of %d masters: want 1 .. %d", r->masters, H_CLUSTER_MAX);
        return -1;
    }
    r->socket[0] = '\0';
    if (rp_cluster_start(&c, err, errlen) != 0)
        return -1;
    snprintf(r->log, sizeof(r->log), "%s", r->node[0].log);
    say("redis cluster of %d masters on 127.0.0.1:%d..%d", r->masters, r->node[0].port,
        r->node[r->masters - 1].port);
    return 0;
}

int h_redis_cluster_reshard(struct h_redis *r, int from, int to, int slots, char *err,
                            size_t errlen)
{
    struct rp_cluster c = cluster_view(r);

    if (r->masters <= 0) {
        rp_seterr(err, errlen, "reshard: not a cluster");
        return -1;
    }
    return rp_cluster_reshard(&c, from, to, slots, err, errlen);
}

int h_redis_cluster_pause(struct h_redis *r, int i, int ms, char *err, size_t errlen)
{
    if (i < 0 || i >= r->masters || r->node[i].pid <= 0) {
        rp_seterr(err, errlen, "no running master %d", i);
        return -1;
    }
    kill(r->node[i].pid, SIGSTOP);
    h_sleep_ms(ms);
    kill(r->node[i].pid, SIGCONT);
    return 0;
}

int h_redis_cluster_owner(const struct h_redis *r, const char *key)
{
    redisReply *slot = rp_node_command(&r->node[0], "CLUSTER KEYSLOT %s", key);
    redisReply *map = rp_node_command(&r->node[0], "CLUSTER SLOTS");
    int owner = -1;

    if (slot && map && slot->type == REDIS_REPLY_INTEGER && map->type == REDIS_REPLY_ARRAY)
        for (size_t k = 0; k < map->elements && owner < 0; k++) {
            redisReply *e = map->element[k];
            if (e->elements < 3 || slot->integer < e->element[0]->integer ||
                slot->integer > e->element[1]->integer)
                continue;
            for (int i = 0; i < r->masters; i++)
                if (e->element[2]->element[1]->integer == r->node[i].port)
                    owner = i;
        }
    if (slot)
        freeReplyObject(slot);
    if (map)
        freeReplyObject(map);
    return owner;
}

int h_redis_cluster_slot_count(const struct h_redis *r, int i)
{
    redisReply *map = rp_node_command(&r->node[i], "CLUSTER SLOTS");
    int n = -1;

    if (map && map->type == REDIS_REPLY_ARRAY) {
        n = 0;
        for (size_t k = 0; k < map->elements; k++) {
            redisReply *e = map->element[k];
            if (e->elements >= 3 && e->element[2]->element[1]->integer == r->node[i].port)
                n += (int)(e->element[1]->integer - e->element[0]->integer + 1);
        }
    }
    if (map)
        freeReplyObject(map);
    return n;
}

/* ---- mock Kafka cluster ---------------------------------------------------- */

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
    char kerr[256];

    if (rd_kafka_conf_set(conf, k, v, kerr, sizeof(kerr)) != RD_KAFKA_CONF_OK) {
        rp_seterr(err, errlen, "rdkafka config %s=%s: %s", k, v, kerr);
        return -1;
    }
    return 0;
}

#define DR_SYNC_MAGIC 0x53594e43
#define DR_ASYNC_MAGIC 0x4153594e

struct dr_state {
    int magic; /* DR_SYNC_MAGIC */
    int done;
    rd_kafka_resp_err_t err;
    int64_t offset;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct dr_state *st = m->_private;

    (void)rk;
    (void)opaque;
    if (st == NULL)
        return;
    if (st->magic == DR_ASYNC_MAGIC) {
        struct h_async_dr *a = m->_private;
        a->pending--;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && a->failed++ == 0)
            a->first_err = m->err;
        return;
    }
    st->err = m->err;
    st->offset = m->offset;
    st->done = 1;
}

int h_kafka_start(struct h_kafka *k, int brokers, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf;
    char kerr[256];

    memset(k, 0, sizeof(*k));
    conf = rd_kafka_conf_new();
    if (conf_set(conf, "client.id", "clvd-it-mock", err, errlen) != 0 ||
        conf_set(conf, "log_level", "3", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    k->host = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (k->host == NULL) {
        rd_kafka_conf_destroy(conf);
        rp_seterr(err, errlen, "rd_kafka_new (mock host): %s", kerr);
        return -1;
    }
    k->mcluster = rd_kafka_mock_cluster_new(k->host, brokers);
    if (k->mcluster == NULL) {
        rp_seterr(err, errlen, "rd_kafka_mock_cluster_new failed");
        goto fail;
    }
    snprintf(k->bootstraps, sizeof(k->bootstraps), "%s",
             rd_kafka_mock_cluster_bootstraps(k->mcluster));

    conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", k->bootstraps, err, errlen) != 0 ||
        conf_set(conf, "client.id", "clvd-it-producer", err, errlen) != 0 ||
        conf_set(conf, "linger.ms", "0", err, errlen) != 0 ||
        /* small record batches: a fetch returns at least one whole batch,
         * whatever max.partition.fetch.bytes says, so big batches would
         * defeat a consumer's throttling (scenario.h) */
        conf_set(conf, "batch.num.messages", "32", err, errlen) != 0 ||
        conf_set(conf, "message.max.bytes", "2000000", err, errlen) != 0 ||
        conf_set(conf, "log_level", "3", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
    k->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, kerr, sizeof(kerr));
    if (k->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        rp_seterr(err, errlen, "rd_kafka_new (producer): %s", kerr);
        goto fail;
    }
    say("mock cluster with %d broker(s) at %s", brokers, k->bootstraps);
    return 0;
fail:
    h_kafka_stop(k);
    return -1;
}

void h_kafka_stop(struct h_kafka *k)
{
    if (k->producer != NULL) {
        rd_kafka_flush(k->producer, 2000);
        rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->producer, 0);
        rd_kafka_destroy(k->producer);
        k->producer = NULL;
    }
    if (k->mcluster != NULL) {
        rd_kafka_mock_cluster_destroy(k->mcluster);
        k->mcluster = NULL;
    }
    if (k->host != NULL) {
        rd_kafka_destroy(k->host);
        k->host = NULL;
    }
    k->bootstraps[0] = '\0';
}

int h_kafka_create_topic(struct h_kafka *k, const char *topic, int partitions, char *err,
                         size_t errlen)
{
    rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(k->mcluster, topic, partitions, 1);

    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "create topic %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int h_kafka_create_default_topics(struct h_kafka *k, int in_partitions, int out_partitions,
                                  char *err, size_t errlen)
{
    for (int i = 0; h_input_topics[i] != NULL; i++)
        if (h_kafka_create_topic(k, h_input_topics[i], in_partitions, err, errlen) != 0)
            return -1;
    for (int i = 0; h_output_topics[i] != NULL; i++)
        if (h_kafka_create_topic(k, h_output_topics[i], out_partitions, err, errlen) != 0)
            return -1;
    return 0;
}

int h_produce(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
              const void *value, size_t len, int64_t *offset, char *err, size_t errlen)
{
    struct dr_state st = {DR_SYNC_MAGIC, 0, RD_KAFKA_RESP_ERR_NO_ERROR, -1};
    size_t keylen = key != NULL ? strlen(key) : 0;
    rd_kafka_resp_err_t e;
    int64_t deadline;

    e = rd_kafka_producev(k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&st),
                          RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "produce to %s [%d]: %s", topic, (int)partition,
                  rd_kafka_err2str(e));
        return -1;
    }
    deadline = h_mono_ms() + 10000;
    while (!st.done && h_mono_ms() < deadline)
        rd_kafka_poll(k->producer, 50);
    if (!st.done) {
        /* The delivery report must not outlive `st`: purge and collect it. */
        rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (!st.done)
            rd_kafka_poll(k->producer, 50);
        rp_seterr(err, errlen, "produce to %s [%d]: no delivery report within 10 s", topic,
                  (int)partition);
        return -1;
    }
    if (st.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "produce to %s [%d]: %s", topic, (int)partition,
                  rd_kafka_err2str(st.err));
        return -1;
    }
    if (offset != NULL)
        *offset = st.offset;
    return 0;
}

int h_produce_str(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
                  const char *value, int64_t *offset, char *err, size_t errlen)
{
    return h_produce(k, topic, partition, key, value, strlen(value), offset, err, errlen);
}

int h_produce_async(struct h_kafka *k, const char *topic, int32_t partition, const char *key,
                    const void *value, size_t len, char *err, size_t errlen)
{
    size_t keylen = key != NULL ? strlen(key) : 0;
    rd_kafka_resp_err_t e;

    k->async.magic = DR_ASYNC_MAGIC;
    for (;;) {
        e = rd_kafka_producev(k->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                              RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE(&k->async), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(k->producer, 10);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "produce to %s [%d]: %s", topic, (int)partition,
                  rd_kafka_err2str(e));
        return -1;
    }
    k->async.pending++;
    rd_kafka_poll(k->producer, 0);
    return 0;
}

int h_produce_wait(struct h_kafka *k, int timeout_ms, char *err, size_t errlen)
{
    int64_t deadline = h_mono_ms() + timeout_ms;

    while (k->async.pending > 0 && h_mono_ms() < deadline)
        rd_kafka_poll(k->producer, 50);
    if (k->async.pending > 0) {
        /* No delivery report may outlive the wait unaccounted: purge. */
        rd_kafka_purge(k->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (k->async.pending > 0)
            rd_kafka_poll(k->producer, 50);
        rp_seterr(err, errlen, "%ld message(s) without a delivery report within %d ms",
                  k->async.failed, timeout_ms);
        k->async.failed = 0;
        return -1;
    }
    if (k->async.failed > 0) {
        rp_seterr(err, errlen, "%ld message(s) not delivered, first: %s", k->async.failed,
                  rd_kafka_err2str(k->async.first_err));
        k->async.failed = 0;
        return -1;
    }
    return 0;
}

/* ---- consuming outputs ----------------------------------------------------- */

static char *memdup0(const void *p, size_t len)
{
    char *s = malloc(len + 1);

    if (s == NULL)
        return NULL;
    if (len > 0)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static int records_add(struct h_records *rs, const rd_kafka_message_t *m)
{
    struct h_record *r;
    json_error_t jerr;

    if (rs->n == rs->cap) {
        size_t cap = rs->cap ? rs->cap * 2 : 64;
        struct h_record *nr = realloc(rs->r, cap * sizeof(*nr));
        if (nr == NULL)
            return -1;
        rs->r = nr;
        rs->cap = cap;
    }
    r = &rs->r[rs->n];
    memset(r, 0, sizeof(*r));
    r->topic = strdup(rd_kafka_topic_name(m->rkt));
    r->partition = m->partition;
    r->offset = m->offset;
    if (m->key != NULL) {
        r->key = memdup0(m->key, m->key_len);
        r->key_len = m->key_len;
    }
    r->value = memdup0(m->payload, m->payload != NULL ? m->len : 0);
    r->value_len = m->payload != NULL ? m->len : 0;
    if (r->topic == NULL || r->value == NULL || (m->key != NULL && r->key == NULL)) {
        free(r->topic);
        free(r->key);
        free(r->value);
        return -1;
    }
    r->json = json_loadb(r->value, r->value_len, 0, &jerr);
    if (r->json != NULL && !json_is_object(r->json)) {
        json_decref(r->json);
        r->json = NULL;
    }
    rs->n++;
    return 0;
}

void h_records_free(struct h_records *rs)
{
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].topic);
        free(rs->r[i].key);
        free(rs->r[i].value);
        if (rs->r[i].json != NULL)
            json_decref(rs->r[i].json);
    }
    free(rs->r);
    memset(rs, 0, sizeof(*rs));
}

size_t h_records_count(const struct h_records *rs, const char *topic)
{
    size_t n = 0;

    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].topic, topic) == 0)
            n++;
    return n;
}

void h_records_dump(const struct h_records *rs, FILE *out)
{
    fprintf(out, "==== %zu output record(s):\n", rs->n);
    for (size_t i = 0; i < rs->n; i++) {
        const struct h_record *r = &rs->r[i];
        fprintf(out, "%s[%d]@%lld key=%s ", r->topic, (int)r->partition, (long long)r->offset,
                r->key != NULL ? r->key : "(null)");
        if (r->value_len > 600)
            fprintf(out, "%.600s... (%zu bytes)\n", r->value, r->value_len);
        else
            fprintf(out, "%s\n", r->value);
    }
    fprintf(out, "==== end of records\n");
}

/* Partitions of each topic, from the cluster's metadata. */
static rd_kafka_topic_partition_list_t *assignment_for(rd_kafka_t *rk, const char *const *topics,
                                                       char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(32);
    int64_t deadline = h_mono_ms() + 10000;

    for (int t = 0; topics[t] != NULL; t++) {
        int found = 0;
        for (;;) {
            rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topics[t], NULL);
            rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 5000);
            rd_kafka_topic_destroy(rkt);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
                md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
                md->topics[0].partition_cnt > 0) {
                for (int p = 0; p < md->topics[0].partition_cnt; p++)
                    rd_kafka_topic_partition_list_add(parts, topics[t],
                                                      md->topics[0].partitions[p].id)
                        ->offset = RD_KAFKA_OFFSET_BEGINNING;
                found = 1;
            }
            if (md != NULL) {
                rd_kafka_metadata_destroy(md);
                md = NULL;
            }
            if (found)
                break;
            if (h_mono_ms() >= deadline) {
                rp_seterr(err, errlen, "no metadata for topic %s: %s", topics[t],
                          rd_kafka_err2str(e));
                rd_kafka_topic_partition_list_destroy(parts);
                return NULL;
            }
            h_sleep_ms(100);
        }
    }
    return parts;
}

int64_t h_kafka_committed(const char *bootstraps, const char *group, const char *const *topics,
                          char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts = NULL;
    rd_kafka_resp_err_t e;
    char kerr[256];
    int64_t sum = -1;
    rd_kafka_t *rk;

    if (conf_set(conf, "bootstrap.servers", bootstraps, err, errlen) != 0 ||
        conf_set(conf, "group.id", group, err, errlen) != 0 ||
        conf_set(conf, "enable.auto.commit", "false", err, errlen) != 0 ||
        conf_set(conf, "log_level", "3", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        rp_seterr(err, errlen, "rd_kafka_new (consumer): %s", kerr);
        return -1;
    }
    parts = assignment_for(rk, topics, err, errlen);
    if (parts == NULL)
        goto out;
    e = rd_kafka_committed(rk, parts, 10000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "committed offsets of %s: %s", group, rd_kafka_err2str(e));
        goto out;
    }
    sum = 0;
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].offset > 0)
            sum += parts->elems[i].offset;
out:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return sum;
}

static int records_cb(const rd_kafka_message_t *m, void *opaque)
{
    return records_add(opaque, m);
}

int h_consume(const char *bootstraps, const char *const *topics, size_t expected, int quiet_ms,
              int timeout_ms, struct h_records *out, char *err, size_t errlen)
{
    return h_consume_each(bootstraps, topics, expected, quiet_ms, timeout_ms, records_cb, out, NULL,
                          err, errlen);
}

int h_consume_each(const char *bootstraps, const char *const *topics, size_t expected, int quiet_ms,
                   int timeout_ms, h_message_cb cb, void *opaque, size_t *count, char *err,
                   size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    size_t nread = 0;
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *parts = NULL;
    char kerr[256], group[64];
    int rc = -1, *eof = NULL;
    int64_t start = h_mono_ms(), last = start;

    snprintf(group, sizeof(group), "clvd-it-reader-%d-%lld", (int)getpid(), (long long)h_mono_ms());
    if (conf_set(conf, "bootstrap.servers", bootstraps, err, errlen) != 0 ||
        conf_set(conf, "group.id", group, err, errlen) != 0 ||
        conf_set(conf, "enable.auto.commit", "false", err, errlen) != 0 ||
        conf_set(conf, "enable.partition.eof", "true", err, errlen) != 0 ||
        conf_set(conf, "fetch.wait.max.ms", "100", err, errlen) != 0 ||
        conf_set(conf, "log_level", "3", err, errlen) != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, kerr, sizeof(kerr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        rp_seterr(err, errlen, "rd_kafka_new (consumer): %s", kerr);
        return -1;
    }
    parts = assignment_for(rk, topics, err, errlen);
    if (parts == NULL)
        goto out;
    eof = calloc((size_t)parts->cnt, sizeof(*eof));
    if (eof == NULL || rd_kafka_assign(rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rp_seterr(err, errlen, "assign failed");
        goto out;
    }
    for (;;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        int64_t now = h_mono_ms();
        int all_eof = 1;

        if (m != NULL) {
            int idx = -1;
            for (int i = 0; i < parts->cnt && m->rkt != NULL; i++)
                if (parts->elems[i].partition == m->partition &&
                    strcmp(parts->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
                    idx = i;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (idx >= 0)
                    eof[idx] = 1;
            } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                say("consumer: %s", rd_kafka_message_errstr(m));
            } else {
                if (idx >= 0)
                    eof[idx] = 0;
                last = now;
                nread++;
                if (cb(m, opaque) != 0) {
                    rp_seterr(err, errlen, "reading %s [%d] @%lld: the message handler failed",
                              rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset);
                    rd_kafka_message_destroy(m);
                    goto out;
                }
            }
            rd_kafka_message_destroy(m);
        }
        for (int i = 0; i < parts->cnt; i++)
            all_eof &= eof[i];
        if (nread >= expected && all_eof && now - last >= quiet_ms) {
            rc = 0;
            break;
        }
        if (now - start >= timeout_ms) {
            rp_seterr(err, errlen, "timed out after %d ms with %zu of %zu expected message(s)",
                      timeout_ms, nread, expected);
            break;
        }
        if (nread > 0 && all_eof && now - last >= H_CONSUME_STALL_MS) {
            rp_seterr(err, errlen, "%zu of %zu expected message(s), none for %d ms", nread,
                      expected, H_CONSUME_STALL_MS);
            break;
        }
    }
out:
    if (count != NULL)
        *count = nread;
    free(eof);
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
}

const char *h_json_str(const json_t *obj, const char *field)
{
    json_t *v = obj != NULL ? json_object_get(obj, field) : NULL;

    return json_is_string(v) ? json_string_value(v) : NULL;
}

int h_json_is_null(const json_t *obj, const char *field)
{
    json_t *v = obj != NULL ? json_object_get(obj, field) : NULL;

    return json_is_null(v);
}

int h_json_has_number(const json_t *obj, const char *field, double *out)
{
    json_t *v = obj != NULL ? json_object_get(obj, field) : NULL;

    if (!json_is_number(v))
        return 0;
    if (out != NULL)
        *out = json_number_value(v);
    return 1;
}

/* ---- clvd config ---------------------------------------------------------- */

int h_config_init(struct h_config *c, const char *brokers, const char *group_id,
                  const char *redis_socket)
{
    static const char *const topic_keys[][2] = {
        {"kafka.topics.purchases", H_T_PURCHASES},  {"kafka.topics.logins", H_T_LOGINS},
        {"kafka.topics.visits", H_T_VISITS},        {"kafka.topics.stage_changes", H_T_STAGE},
        {"kafka.topics.churn_warnings", H_T_CHURN}, {"kafka.topics.win_back", H_T_WINBACK},
        {"kafka.topics.tier_changes", H_T_TIER},    {"kafka.topics.alerts", H_T_ALERTS},
        {"kafka.topics.dead_letter", H_T_DEAD},
    };
    int rc = 0;

    memset(c, 0, sizeof(*c));
    rc |= h_config_set_str(c, "kafka.brokers", brokers);
    rc |= h_config_set_str(c, "kafka.group_id", group_id);
    for (size_t i = 0; i < sizeof(topic_keys) / sizeof(topic_keys[0]); i++)
        rc |= h_config_set_str(c, topic_keys[i][0], topic_keys[i][1]);
    rc |= h_config_set_str(c, "redis.unix_socket", redis_socket);
    rc |= h_config_set(c, "redis.shards", "16");
    rc |= h_config_set(c, "clock.mode", "event");
    rc |= h_config_set(c, "clock.lateness", "1s");
    rc |= h_config_set(c, "clock.idle_after", "1s");
    rc |= h_config_set(c, "metrics.listen", "\"\"");
    rc |= h_config_set(c, "log.level", "debug");
    return rc != 0 ? -1 : 0;
}

int h_config_redis(struct h_config *c, const struct h_redis *r)
{
    char seeds[H_CLUSTER_MAX * 24 + 8];
    size_t n = 0;

    if (r->masters <= 0)
        return h_config_set_str(c, "redis.unix_socket", r->socket);
    n += (size_t)snprintf(seeds + n, sizeof(seeds) - n, "[");
    for (int i = 0; i < r->masters; i++)
        n += (size_t)snprintf(seeds + n, sizeof(seeds) - n, "%s\"127.0.0.1:%d\"", i ? ", " : "",
                              r->node[i].port);
    snprintf(seeds + n, sizeof(seeds) - n, "]");
    if (h_config_set_str(c, "redis.unix_socket", "") != 0 ||
        h_config_set(c, "redis.cluster", "true") != 0 ||
        h_config_set(c, "redis.seeds", "%s", seeds) != 0)
        return -1;
    return 0;
}

static int config_put(struct h_config *c, const char *key, char *value)
{
    for (int i = 0; i < c->n; i++) {
        if (strcmp(c->key[i], key) != 0)
            continue;
        free(c->value[i]);
        if (value != NULL) {
            c->value[i] = value;
            return 0;
        }
        free(c->key[i]);
        memmove(&c->key[i], &c->key[i + 1], (size_t)(c->n - i - 1) * sizeof(c->key[0]));
        memmove(&c->value[i], &c->value[i + 1], (size_t)(c->n - i - 1) * sizeof(c->value[0]));
        c->n--;
        return 0;
    }
    if (value == NULL)
        return 0;
    if (c->n == H_CONFIG_MAX) {
        free(value);
        return -1;
    }
    c->key[c->n] = strdup(key);
    if (c->key[c->n] == NULL) {
        free(value);
        return -1;
    }
    c->value[c->n++] = value;
    return 0;
}

int h_config_set(struct h_config *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    char *value = NULL;

    if (fmt != NULL) {
        va_start(ap, fmt);
        if (vasprintf(&value, fmt, ap) < 0)
            value = NULL;
        va_end(ap);
        if (value == NULL)
            return -1;
    }
    return config_put(c, key, value);
}

int h_config_set_str(struct h_config *c, const char *key, const char *s)
{
    size_t len = strlen(s), o = 0;
    char *q = malloc(len * 6 + 3);

    if (q == NULL)
        return -1;
    q[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            q[o++] = '\\';
            q[o++] = (char)*p;
        } else if (*p < 0x20) {
            o += (size_t)sprintf(q + o, "\\x%02x", *p);
        } else {
            q[o++] = (char)*p;
        }
    }
    q[o++] = '"';
    q[o] = '\0';
    return config_put(c, key, q);
}

/* Render the entries under `prefix` (a "a.b." string, "" for the root). */
static int config_render(const struct h_config *c, const char *prefix, int indent, FILE *f)
{
    size_t plen = strlen(prefix);

    for (int i = 0; i < c->n; i++) {
        const char *rest, *dot;
        size_t clen;
        int seen = 0;

        if (strncmp(c->key[i], prefix, plen) != 0)
            continue;
        rest = c->key[i] + plen;
        dot = strchr(rest, '.');
        clen = dot != NULL ? (size_t)(dot - rest) : strlen(rest);
        /* Each component once, at its first appearance. */
        for (int j = 0; j < i && !seen; j++)
            seen = strncmp(c->key[j], prefix, plen) == 0 &&
                   strncmp(c->key[j] + plen, rest, clen) == 0 &&
                   (c->key[j][plen + clen] == '.' || c->key[j][plen + clen] == '\0');
        if (seen)
            continue;
        if (dot == NULL) {
            fprintf(f, "%*s%s: %s\n", indent, "", rest, c->value[i]);
        } else {
            char sub[256];
            if (plen + clen + 2 > sizeof(sub))
                return -1;
            memcpy(sub, c->key[i], plen + clen);
            sub[plen + clen] = '.';
            sub[plen + clen + 1] = '\0';
            fprintf(f, "%*s%.*s:\n", indent, "", (int)clen, rest);
            if (config_render(c, sub, indent + 2, f) != 0)
                return -1;
        }
    }
    return 0;
}

int h_config_write(const struct h_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        rp_seterr(err, errlen, "open %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f, "# written by the clvd integration tests\n");
    if (config_render(c, "", 0, f) != 0) {
        fclose(f);
        rp_seterr(err, errlen, "config key too long");
        return -1;
    }
    if (fclose(f) != 0) {
        rp_seterr(err, errlen, "write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

void h_config_free(struct h_config *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->key[i]);
        free(c->value[i]);
    }
    c->n = 0;
}

/* ---- the clvd process ------------------------------------------------------- */

int h_clvd_start(struct h_clvd *d, const char *binary, const char *config, const char *log,
                 char *err, size_t errlen)
{
    return h_clvd_start_args(d, binary, config, log, NULL, err, errlen);
}

int h_clvd_start_args(struct h_clvd *d, const char *binary, const char *config, const char *log,
                      const char *const *extra, char *err, size_t errlen)
{
    char *argv[24] = {(char *)binary, "-c", (char *)config, NULL};
    int argc = 3;

    for (int i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (argc + 1 >= (int)(sizeof(argv) / sizeof(argv[0]))) {
            rp_seterr(err, errlen, "too many clvd arguments");
            return -1;
        }
        argv[argc++] = (char *)extra[i];
    }
    argv[argc] = NULL;
    d->pid = 0;
    d->status = 0;
    snprintf(d->log, sizeof(d->log), "%s", log);
    if (rp_spawn(argv, log, &d->pid, err, errlen) != 0)
        return -1;
    say("clvd pid %d, config %s, log %s", (int)d->pid, config, log);
    return 0;
}

int h_clvd_running(struct h_clvd *d)
{
    int status;

    if (d->pid <= 0)
        return 0;
    if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
        d->status = status;
        d->pid = 0;
        return 0;
    }
    return 1;
}

int h_clvd_stop(struct h_clvd *d, int timeout_ms, char *err, size_t errlen)
{
    char how[96];
    int status, killed = 0;
    int64_t t0 = h_mono_ms();

    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        if (!rp_wait(d->pid, timeout_ms, &status)) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
            killed = 1;
        }
        d->status = status;
        d->pid = 0;
    } else {
        say("clvd had already exited");
    }
    rp_describe_status(d->status, how, sizeof(how));
    say("clvd stopped after %lld ms: %s", (long long)(h_mono_ms() - t0), how);
    if (killed) {
        rp_seterr(err, errlen, "clvd did not exit within %d ms of SIGTERM (killed)", timeout_ms);
        return -1;
    }
    if (!WIFEXITED(d->status) || WEXITSTATUS(d->status) != 0) {
        rp_seterr(err, errlen, "clvd ended with %s", how);
        return -1;
    }
    return 0;
}

int h_clvd_signal(struct h_clvd *d, int sig)
{
    if (!h_clvd_running(d))
        return -1;
    return kill(d->pid, sig);
}

int h_clvd_wait_exit(struct h_clvd *d, int timeout_ms, char *err, size_t errlen)
{
    char how[96];
    int status;

    if (d->pid > 0) {
        if (!rp_wait(d->pid, timeout_ms, &status)) {
            kill(d->pid, SIGKILL);
            waitpid(d->pid, &status, 0);
            d->status = status;
            d->pid = 0;
            rp_seterr(err, errlen, "clvd did not exit by itself within %d ms (killed)", timeout_ms);
            return -1;
        }
        d->status = status;
        d->pid = 0;
    }
    rp_describe_status(d->status, how, sizeof(how));
    say("clvd exited: %s", how);
    if (!WIFEXITED(d->status) || WEXITSTATUS(d->status) != 0) {
        rp_seterr(err, errlen, "clvd ended with %s", how);
        return -1;
    }
    return 0;
}

void h_clvd_kill9(struct h_clvd *d)
{
    int status;

    if (d->pid <= 0)
        return;
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &status, 0);
    d->status = status;
    d->pid = 0;
}

/* The whole file as a NUL-terminated string (malloc'ed), NULL if unreadable. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL, chunk[65536];
    size_t len = 0, n;
    FILE *mem;

    if (f == NULL)
        return NULL;
    mem = open_memstream(&buf, &len);
    if (mem == NULL) {
        fclose(f);
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    if (fclose(mem) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

int h_clvd_wait_log(const struct h_clvd *d, const char *needle, int timeout_ms)
{
    int64_t deadline = h_mono_ms() + timeout_ms;

    for (;;) {
        char *buf = slurp(d->log);
        int found = buf != NULL && strstr(buf, needle) != NULL;

        free(buf);
        if (found)
            return 0;
        if (h_mono_ms() >= deadline)
            return -1;
        h_sleep_ms(100);
    }
}

int h_file_count(const char *path, const char *needle)
{
    char *buf = slurp(path);
    int n = 0;
    size_t nl = strlen(needle);

    if (buf == NULL || nl == 0) {
        free(buf);
        return 0;
    }
    for (const char *p = strstr(buf, needle); p != NULL; p = strstr(p + nl, needle))
        n++;
    free(buf);
    return n;
}

int h_file_last_line(const char *path, const char *needle, char *out, size_t outlen)
{
    char *buf = slurp(path);
    const char *hit = NULL, *start, *end;
    int rc = -1;

    if (buf == NULL)
        return -1;
    for (const char *p = strstr(buf, needle); p != NULL; p = strstr(p + 1, needle))
        hit = p;
    if (hit != NULL) {
        for (start = hit; start > buf && start[-1] != '\n'; start--)
            ;
        end = strchr(hit, '\n');
        if (end == NULL)
            end = hit + strlen(hit);
        snprintf(out, outlen, "%.*s", (int)(end - start), start);
        rc = 0;
    }
    free(buf);
    return rc;
}

/* ---- a private world --------------------------------------------------------- */

int h_world_start(struct h_world *w, int in_partitions, char *err, size_t errlen)
{
    if (h_tmpdir_create(w->dir, sizeof(w->dir), err, errlen) != 0 ||
        h_redis_start(&w->redis, err, errlen) != 0 || h_kafka_start(&w->kafka, 1, err, errlen) != 0)
        return -1;
    return h_kafka_create_default_topics(&w->kafka, in_partitions, 1, err, errlen);
}

void h_world_stop(struct h_world *w)
{
    h_kafka_stop(&w->kafka);
    h_redis_stop(&w->redis);
    if (w->dir[0] != '\0')
        h_tmpdir_remove(w->dir);
    w->dir[0] = '\0';
}
