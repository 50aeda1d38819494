/* test_replay_stats.c -- clvctl replay, stats and customer end to end (SPEC
 * section 14): a real redis-server, librdkafka's mock cluster, clvd in
 * event-clock mode, and the clvctl binary run as a child process.
 *
 * 1. `clvctl replay --format cdnow` produces the CDNOW sample (shared/data,
 *    1997-1998: far in the past, so no future_timestamp) into the purchases
 *    topic; it must exit 0 after every delivery report.
 * 2. clvd has applied everything once the group's committed offsets on the
 *    input topics reach the number of lines produced (an offset is committed
 *    only after its state is durable in Redis); meanwhile `clvctl stats
 *    --json` is polled and shown.
 * 3. `clvctl stats --json`: the per-stage counts add up to the number of
 *    distinct customers in the file (counted here from the file itself),
 *    and so do `customers` and `buyers` (every CDNOW customer bought).
 * 4. `clvctl customer cdnow-00004` and the customer with the most lines:
 *    `purchases` is their number of lines, `revenue` the sum of their
 *    amounts, `purchase_days` their distinct dates.
 * 5. A CSV and a JSONL history (new customers, after the CDNOW period) are
 *    replayed and found with `clvctl customer`.
 * 6. Failures: `clvctl customer` of an unknown id exits 1 with a message; a
 *    JSONL line without "type" makes `clvctl replay` exit 1 naming
 *    FILE:LINE, before producing anything.
 *
 * Environment: see harness.h (CLVD_IT_KEEP, CLVD_IT_VERBOSE). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

#ifndef CLVD_BINARY
#error "CLVD_BINARY (path of the clvd executable) must be defined"
#endif
#ifndef CLVCTL_BINARY
#error "CLVCTL_BINARY (path of the clvctl executable) must be defined"
#endif
#ifndef CLVD_SOURCE_DIR
#error "CLVD_SOURCE_DIR (the repository root) must be defined"
#endif

#define CDNOW_FILE CLVD_SOURCE_DIR "/../shared/data/cdnow_sample/CDNOW_sample.txt"
#define RUN_TIMEOUT_MS 60000
#define APPLY_TIMEOUT_MS 60000
#define STOP_TIMEOUT_MS 10000
#define IN_PARTITIONS 4
#define OUT_PARTITIONS 4 /* the mock keeps ~5 MB per partition: outputs are many */
#define MAX_IDS 8192

/* ---- fixture ------------------------------------------------------------------ */

struct fixture {
    char dir[H_PATHLEN];
    struct h_redis redis;
    struct h_kafka kafka;
    struct h_clvd clvd;
    char group[96];
    int runs; /* clvctl runs: names of their stderr files */
    int passed;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[H_ERRLEN];

    if (f == NULL)
        return -1;
    *state = f;
    if (access(CLVD_BINARY, X_OK) != 0 || access(CLVCTL_BINARY, X_OK) != 0) {
        fprintf(stderr, "%s or %s is missing: build clvd and clvctl first\n", CLVD_BINARY,
                CLVCTL_BINARY);
        return -1;
    }
    if (h_tmpdir_create(f->dir, sizeof(f->dir), err, sizeof(err)) != 0 ||
        h_redis_start(&f->redis, err, sizeof(err)) != 0 ||
        h_kafka_start(&f->kafka, 1, err, sizeof(err)) != 0 ||
        h_kafka_create_default_topics(&f->kafka, IN_PARTITIONS, OUT_PARTITIONS, err, sizeof(err)) !=
            0) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    snprintf(f->group, sizeof(f->group), "clvd-it-replay-%d", (int)getpid());
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    if (f == NULL)
        return 0;
    if (!f->passed && f->clvd.log[0] != '\0')
        h_dump_file(f->clvd.log, "clvd log", 32 * 1024, stderr);
    h_clvd_kill9(&f->clvd);
    h_kafka_stop(&f->kafka);
    h_redis_stop(&f->redis);
    if (f->dir[0] != '\0')
        h_tmpdir_remove(f->dir);
    free(f);
    return 0;
}

static void start_clvd(struct fixture *f)
{
    char cfgpath[H_PATHLEN + 32], logpath[H_PATHLEN + 32], err[H_ERRLEN];
    struct h_config cfg;

    snprintf(cfgpath, sizeof(cfgpath), "%s/clvd.yaml", f->dir);
    snprintf(logpath, sizeof(logpath), "%s/clvd.log", f->dir);
    assert_int_equal(h_config_init(&cfg, f->kafka.bootstraps, f->group, f->redis.socket), 0);
    assert_int_equal(h_config_set(&cfg, "log.level", "info"), 0);
    if (h_config_write(&cfg, cfgpath, err, sizeof(err)) != 0) {
        h_config_free(&cfg);
        fail_msg("%s", err);
    }
    h_config_free(&cfg);
    if (h_clvd_start(&f->clvd, CLVD_BINARY, cfgpath, logpath, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    if (h_clvd_wait_log(&f->clvd, "kafka: assigned", 30000) != 0)
        fail_msg("clvd got no partition assignment within 30 s");
}

/* ---- running clvctl ------------------------------------------------------------- */

struct run {
    int status; /* exit status; -1 when killed or not run */
    char *out;  /* stdout, NUL-terminated (malloc'd) */
    char *err;  /* stderr */
    long ms;    /* how long it took */
};

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof(*r));
}

static void exec_child(int out_fd, const char *err_path, char *const *argv)
{
    int fd = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (fd < 0 || dup2(out_fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
        _exit(127);
    execv(CLVCTL_BINARY, argv);
    _exit(127);
}

/* Read the child's stdout until it closes, or kill it at the deadline. */
static char *read_all(int fd, pid_t pid, int64_t deadline)
{
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    struct pollfd p = {.fd = fd, .events = POLLIN};

    assert_non_null(buf);
    for (;;) {
        int64_t left = deadline - h_mono_ms();
        ssize_t n;
        if (left <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        if (poll(&p, 1, (int)left) <= 0)
            continue;
        if (len + 4096 > cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = calloc(1, 1 << 20);
    size_t n = 0;

    assert_non_null(buf);
    if (fp != NULL) {
        n = fread(buf, 1, (1 << 20) - 1, fp);
        fclose(fp);
    }
    buf[n] = '\0';
    return buf;
}

/* clvctl ARGS... (NULL-terminated); the outputs in *r. */
static void clvctl(struct fixture *f, struct run *r, ...)
{
    char *argv[32], err_path[H_PATHLEN + 32];
    int pipefd[2], argc = 0, wstatus = 0;
    int64_t t0 = h_mono_ms();
    va_list ap;
    pid_t pid;

    argv[argc++] = (char *)"clvctl";
    va_start(ap, r);
    while (argc < 31 && (argv[argc] = va_arg(ap, char *)) != NULL)
        argc++;
    va_end(ap);
    argv[argc] = NULL;
    snprintf(err_path, sizeof(err_path), "%s/clvctl-%d.err", f->dir, ++f->runs);
    assert_int_equal(pipe(pipefd), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pipefd[0]);
        exec_child(pipefd[1], err_path, argv);
    }
    close(pipefd[1]);
    r->out = read_all(pipefd[0], pid, t0 + RUN_TIMEOUT_MS);
    close(pipefd[0]);
    while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    r->status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : -1;
    r->err = slurp(err_path);
    r->ms = (long)(h_mono_ms() - t0);
    if (getenv("CLVD_IT_VERBOSE"))
        fprintf(stderr, "[clvctl %s] exit %d in %ld ms\n%s", argv[1], r->status, r->ms, r->err);
}

/* clvctl ARGS... that must exit 0 and print one JSON object. */
static json_t *clvctl_json(struct fixture *f, const char *what, const char *a1, const char *a2,
                           const char *a3, const char *a4)
{
    struct run r = {0};
    json_error_t jerr;
    json_t *j;

    clvctl(f, &r, what, a1, a2, a3, a4, (char *)NULL);
    if (r.status != 0)
        fail_msg("clvctl %s exited %d: %s", what, r.status, r.err);
    j = json_loads(r.out, 0, &jerr);
    if (j == NULL || !json_is_object(j))
        fail_msg("clvctl %s printed no JSON object (%s): %s", what, jerr.text, r.out);
    run_free(&r);
    return j;
}

static json_t *stats_json(struct fixture *f)
{
    return clvctl_json(f, "stats", "--json", "--redis-socket", f->redis.socket, NULL);
}

static json_t *customer_json(struct fixture *f, const char *id)
{
    return clvctl_json(f, "customer", id, "--redis-socket", f->redis.socket, NULL);
}

static long long json_int(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);

    if (!json_is_integer(v))
        fail_msg("JSON field %s is not an integer", key);
    return json_integer_value(v);
}

/* ---- the CDNOW file, read here independently of clvctl ---------------------------- */

struct cdnow {
    long lines;
    char (*ids)[16]; /* distinct master ids, sorted */
    size_t nids;
};

struct one_customer {
    char id[16];
    long lines;
    double revenue;
    long days; /* distinct dates (the file is sorted by customer, then date) */
};

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Every row: " <master> <sample> <YYYYMMDD> <cds> <amount>\r\n". */
static int cdnow_row(const char *line, char *id, char *date, double *amount)
{
    return sscanf(line, "%15s %*s %15s %*s %lf", id, date, amount) == 3;
}

static void cdnow_read(struct cdnow *c)
{
    FILE *fp = fopen(CDNOW_FILE, "r");
    char line[256], id[16], date[16];
    double amount;
    size_t n = 0;

    if (fp == NULL)
        fail_msg("%s: %s", CDNOW_FILE, strerror(errno));
    c->ids = calloc(MAX_IDS, sizeof(*c->ids));
    assert_non_null(c->ids);
    c->lines = 0;
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (!cdnow_row(line, id, date, &amount))
            continue;
        c->lines++;
        if (n == 0 || strcmp(c->ids[n - 1], id) != 0) { /* rows are grouped by customer */
            assert_true(n < MAX_IDS);
            snprintf(c->ids[n++], sizeof(c->ids[0]), "%s", id);
        }
    }
    fclose(fp);
    qsort(c->ids, n, sizeof(c->ids[0]), cmp_id);
    c->nids = 0;
    for (size_t i = 0; i < n; i++) /* distinct, whatever the order */
        if (c->nids == 0 || strcmp(c->ids[c->nids - 1], c->ids[i]) != 0)
            memcpy(c->ids[c->nids++], c->ids[i], sizeof(c->ids[0]));
}

/* One customer's lines; an empty id picks the one with the most lines. */
static void cdnow_customer(struct one_customer *out, const char *want)
{
    FILE *fp = fopen(CDNOW_FILE, "r");
    char line[256], id[16], date[16], last_date[16] = "";
    struct one_customer cur = {0};
    double amount;

    assert_non_null(fp);
    memset(out, 0, sizeof(*out));
    while (fgets(line, sizeof(line), fp) != NULL) {
        if (!cdnow_row(line, id, date, &amount) || (want[0] && strcmp(id, want) != 0))
            continue;
        if (strcmp(cur.id, id) != 0) {
            memset(&cur, 0, sizeof(cur));
            snprintf(cur.id, sizeof(cur.id), "%s", id);
            last_date[0] = '\0';
        }
        cur.lines++;
        cur.revenue += amount;
        cur.days += strcmp(date, last_date) != 0;
        snprintf(last_date, sizeof(last_date), "%s", date);
        if (cur.lines > out->lines)
            *out = cur;
    }
    fclose(fp);
}

/* ---- steps ----------------------------------------------------------------------- */

/* Until the group has committed `expected` input offsets, i.e. clvd has
 * made every event durable; stats are shown along the way. */
static void wait_applied(struct fixture *f, int64_t expected)
{
    int64_t t0 = h_mono_ms(), done = -1;
    char err[H_ERRLEN];

    while (h_mono_ms() - t0 < APPLY_TIMEOUT_MS) {
        json_t *st = stats_json(f);
        done = h_kafka_committed(f->kafka.bootstraps, f->group, h_input_topics, err, sizeof(err));
        print_message("applied %lld of %lld input messages; clvctl stats: %lld customers\n",
                      (long long)done, (long long)expected, json_int(st, "customers"));
        json_decref(st);
        if (done == expected)
            return;
        if (!h_clvd_running(&f->clvd))
            fail_msg("clvd exited (wait status 0x%x)", f->clvd.status);
        h_sleep_ms(1000);
    }
    fail_msg("clvd applied %lld of %lld messages in %d s", (long long)done, (long long)expected,
             APPLY_TIMEOUT_MS / 1000);
}

static void replay_ok(struct fixture *f, const char *path, const char *format)
{
    struct run r = {0};

    clvctl(f, &r, "replay", path, "--format", format, "--brokers", f->kafka.bootstraps,
           (char *)NULL);
    if (r.status != 0)
        fail_msg("clvctl replay %s exited %d: %s", path, r.status, r.err);
    print_message("clvctl replay %s: %ld ms\n", format, r.ms);
    run_free(&r);
}

static void check_stats(struct fixture *f, const struct cdnow *c, long long extra)
{
    json_t *st = stats_json(f), *stages = json_object_get(st, "stages"), *v;
    long long sum = 0, want = (long long)c->nids + extra;
    const char *name;

    assert_true(json_is_object(stages));
    json_object_foreach(stages, name, v)
    {
        assert_true(json_is_integer(v));
        sum += json_integer_value(v);
    }
    print_message("stats: %lld customers in %zu stages (%lld distinct in the file)\n", sum,
                  json_object_size(stages), want);
    assert_int_equal(json_object_size(stages), 8);
    assert_int_equal(sum, want);
    assert_int_equal(json_int(st, "customers"), want);
    assert_int_equal(json_int(st, "buyers"), want);
    assert_true(json_int(st, "buyers_churned") <= want);
    assert_string_equal(h_json_str(st, "clock"), "event");
    json_decref(st);
}

static void check_customer(struct fixture *f, const char *id, long purchases, double revenue,
                           long days)
{
    json_t *c = customer_json(f, id);
    double got = NAN;

    h_json_has_number(c, "revenue", &got);
    print_message("customer %s: stage %s, %lld purchases, revenue %.2f\n", id,
                  h_json_str(c, "stage"), json_int(c, "purchases"), got);
    assert_string_equal(h_json_str(c, "customer_id"), id);
    assert_non_null(h_json_str(c, "stage"));
    assert_int_equal(json_int(c, "purchases"), purchases);
    if (days > 0)
        assert_int_equal(json_int(c, "purchase_days"), days);
    if (!h_json_has_number(c, "revenue", &got) || fabs(got - revenue) > 1e-6)
        fail_msg("customer %s: revenue %f, want %f", id, got, revenue);
    json_decref(c);
}

static void check_failures(struct fixture *f)
{
    char path[H_PATHLEN + 32], needle[H_PATHLEN + 64], err[H_ERRLEN];
    static const char bad[] =
        "{\"event_id\":\"b1\",\"customer_id\":\"bad-1\",\"type\":\"visit\","
        "\"ts\":\"1998-07-05T00:00:00Z\"}\n"
        "{\"event_id\":\"b2\",\"customer_id\":\"bad-1\",\"ts\":\"1998-07-05T00:00:00Z\"}\n";
    struct run r = {0};

    clvctl(f, &r, "customer", "no-such-customer", "--redis-socket", f->redis.socket, (char *)NULL);
    assert_int_equal(r.status, 1);
    if (strstr(r.err, "no customer 'no-such-customer'") == NULL)
        fail_msg("clvctl customer of an unknown id said: %s", r.err);
    run_free(&r);

    snprintf(path, sizeof(path), "%s/bad.jsonl", f->dir);
    assert_int_equal(h_write_file(path, bad, strlen(bad), err, sizeof(err)), 0);
    clvctl(f, &r, "replay", path, "--brokers", f->kafka.bootstraps, (char *)NULL);
    snprintf(needle, sizeof(needle), "%s:2: no \"type\" field", path);
    if (r.status != 1 || strstr(r.err, needle) == NULL)
        fail_msg("clvctl replay of a line without type: exit %d, said: %s", r.status, r.err);
    run_free(&r);
}

/* CSV and JSONL histories of new customers, after the CDNOW period. */
static int64_t replay_small(struct fixture *f)
{
    static const char csv[] = "customer_id,date,amount\n"
                              "csv-it-1,1998-07-01,10.25\n"
                              "csv-it-1,1998-07-02T12:00:00Z,5.5\n";
    static const char jsonl[] =
        "{\"event_id\":\"j1\",\"customer_id\":\"jsonl-it-1\",\"type\":\"visit\","
        "\"ts\":\"1998-07-03T09:00:00Z\",\"channel\":\"search\"}\n"
        "{\"event_id\":\"j2\",\"customer_id\":\"jsonl-it-1\",\"type\":\"purchase\","
        "\"ts\":\"1998-07-03T10:00:00Z\",\"amount\":42}\n";
    char path[H_PATHLEN + 32], err[H_ERRLEN];

    snprintf(path, sizeof(path), "%s/small.csv", f->dir);
    assert_int_equal(h_write_file(path, csv, strlen(csv), err, sizeof(err)), 0);
    replay_ok(f, path, "csv");
    snprintf(path, sizeof(path), "%s/small.jsonl", f->dir);
    assert_int_equal(h_write_file(path, jsonl, strlen(jsonl), err, sizeof(err)), 0);
    replay_ok(f, path, "jsonl");
    return 4;
}

/* ---- the test ----------------------------------------------------------------------- */

static void test_replay_stats_customer(void **state)
{
    struct fixture *f = *state;
    struct cdnow c = {0};
    struct one_customer first, most;
    char id[32], err[H_ERRLEN];
    int64_t t0 = h_mono_ms(), produced;
    json_t *j;

    cdnow_read(&c);
    cdnow_customer(&first, "00004");
    cdnow_customer(&most, "");
    print_message("%s: %ld lines, %zu customers; 00004 has %ld, %s the most (%ld)\n", CDNOW_FILE,
                  c.lines, c.nids, first.lines, most.id, most.lines);
    assert_true(c.nids > 0 && first.lines > 0);
    start_clvd(f);

    replay_ok(f, CDNOW_FILE, "cdnow");
    wait_applied(f, c.lines);
    check_stats(f, &c, 0);
    check_customer(f, "cdnow-00004", first.lines, first.revenue, first.days);
    snprintf(id, sizeof(id), "cdnow-%s", most.id);
    check_customer(f, id, most.lines, most.revenue, most.days);

    produced = c.lines + replay_small(f);
    wait_applied(f, produced);
    check_customer(f, "csv-it-1", 2, 15.75, 2);
    check_customer(f, "jsonl-it-1", 1, 42, 1);
    j = customer_json(f, "jsonl-it-1");
    assert_int_equal(json_int(j, "visits"), 1);
    assert_string_equal(h_json_str(j, "channel"), "search");
    json_decref(j);
    check_stats(f, &c, 2);

    check_failures(f);
    if (h_clvd_stop(&f->clvd, STOP_TIMEOUT_MS, err, sizeof(err)) != 0)
        fail_msg("clvd SIGTERM: %s", err);
    print_message("done in %lld ms\n", (long long)(h_mono_ms() - t0));
    free(c.ids);
    f->passed = 1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_stats_customer, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
