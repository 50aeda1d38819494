/* cluster.c -- slot map, node table and the pure parts of Redis Cluster
 * routing; see cluster.h.  store.c does the I/O. */
#include "cluster.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the node table and the slot map ----------------------------------------- */

void cluster_map_init(struct clv_cluster_map *m)
{
    memset(m, 0, sizeof(*m));
    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        m->slot[s] = -1;
}

int cluster_node_find(const struct clv_cluster_map *m, const char *host, int port)
{
    for (int i = 0; i < m->nnodes; i++)
        if (m->node[i].host[0] != '\0' && m->node[i].port == port &&
            strcmp(m->node[i].host, host) == 0)
            return i;
    return -1;
}

int cluster_node_add(struct clv_cluster_map *m, const char *host, int port)
{
    int i = cluster_node_find(m, host, port);

    if (i >= 0)
        return i;
    if (host[0] == '\0' || strlen(host) >= CLV_CLUSTER_HOST_MAX)
        return -1;
    for (i = 0; i < m->nnodes && m->node[i].host[0] != '\0'; i++)
        ;
    if (i == CLV_CLUSTER_MAX_NODES)
        return -1;
    memset(&m->node[i], 0, sizeof(m->node[i]));
    strcpy(m->node[i].host, host);
    m->node[i].port = port;
    if (i == m->nnodes)
        m->nnodes++;
    return i;
}

int cluster_node_slots(const struct clv_cluster_map *m, int i)
{
    int n = 0;

    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        n += m->slot[s] == i;
    return n;
}

void cluster_node_forget(struct clv_cluster_map *m, int i)
{
    if (i < 0 || i >= m->nnodes)
        return;
    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        if (m->slot[s] == i)
            m->slot[s] = -1;
    memset(&m->node[i], 0, sizeof(m->node[i]));
    while (m->nnodes > 0 && m->node[m->nnodes - 1].host[0] == '\0')
        m->nnodes--;
}

int cluster_slot_node(const struct clv_cluster_map *m, unsigned slot)
{
    return slot < CLV_CLUSTER_SLOTS ? m->slot[slot] : -1;
}

void cluster_set_slot(struct clv_cluster_map *m, unsigned slot, int node)
{
    if (slot < CLV_CLUSTER_SLOTS)
        m->slot[slot] = (int16_t)node;
}

int cluster_any_node(const struct clv_cluster_map *m)
{
    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        if (m->slot[s] >= 0)
            return m->slot[s];
    return -1;
}

/* ---- CLUSTER SLOTS ------------------------------------------------------------- */

/* One range [start, end, [host, port, ...], ...]; its master's address. */
static int parse_range(const redisReply *e, long long *start, long long *end, const char **host,
                       long long *port)
{
    const redisReply *n;

    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    n = e->element[2];
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
        n->element[0]->type != REDIS_REPLY_STRING || n->element[1]->type != REDIS_REPLY_INTEGER)
        return -1;
    *start = e->element[0]->integer;
    *end = e->element[1]->integer;
    *host = n->element[0]->str;
    *port = n->element[1]->integer;
    if (*start < 0 || *end < *start || *end >= CLV_CLUSTER_SLOTS || *port <= 0 || *port > 65535 ||
        strlen(*host) >= CLV_CLUSTER_HOST_MAX)
        return -1;
    return 0;
}

/* A node that does not know its own address announces "" or "?": it is
 * the one that answered. */
static const char *known_host(const char *host, const char *asked_host)
{
    return host[0] == '\0' || strcmp(host, "?") == 0 ? asked_host : host;
}

static int check_slots(const redisReply *r, char *err, size_t errlen)
{
    long long start, end, port;
    const char *host;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        clv_seterr(err, errlen, "CLUSTER SLOTS: %s",
                   r && r->type == REDIS_REPLY_ERROR ? r->str : "not an array");
        return -1;
    }
    if (r->elements == 0) {
        clv_seterr(err, errlen, "CLUSTER SLOTS: no slot is served (cluster not set up?)");
        return -1;
    }
    for (size_t i = 0; i < r->elements; i++)
        if (parse_range(r->element[i], &start, &end, &host, &port) != 0) {
            clv_seterr(err, errlen, "CLUSTER SLOTS: malformed entry %zu", i);
            return -1;
        }
    return 0;
}

int cluster_apply_slots(struct clv_cluster_map *m, const redisReply *r, const char *asked_host,
                        char *err, size_t errlen)
{
    int16_t *slot;
    int masters = 0, seen[CLV_CLUSTER_MAX_NODES] = {0};

    if (check_slots(r, err, errlen) != 0)
        return -1;
    slot = malloc(sizeof(m->slot));
    if (slot == NULL) {
        clv_seterr(err, errlen, "CLUSTER SLOTS: out of memory");
        return -1;
    }
    for (int s = 0; s < CLV_CLUSTER_SLOTS; s++)
        slot[s] = -1;
    for (size_t i = 0; i < r->elements; i++) {
        long long start, end, port;
        const char *host;
        int node;
        parse_range(r->element[i], &start, &end, &host, &port);
        node = cluster_node_add(m, known_host(host, asked_host), (int)port);
        if (node < 0) {
            clv_seterr(err, errlen, "CLUSTER SLOTS: more than %d nodes", CLV_CLUSTER_MAX_NODES);
            free(slot);
            return -1;
        }
        masters += !seen[node];
        seen[node] = 1;
        for (long long s = start; s <= end; s++)
            slot[s] = (int16_t)node;
    }
    memcpy(m->slot, slot, sizeof(m->slot));
    free(slot);
    return masters;
}

/* ---- addresses and redirections -------------------------------------------------- */

static int parse_port(const char *s, size_t len, int *port)
{
    long v = 0;

    if (len == 0 || len > 5)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0 || v > 65535)
        return -1;
    *port = (int)v;
    return 0;
}

/* As cluster_parse_hostport, but an empty host is allowed (redirections
 * from a node that does not know its address). */
static int split_hostport(const char *s, size_t len, char *host, size_t hostlen, int *port)
{
    const char *h = s, *colon;
    size_t hl;

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (close == NULL || close + 1 >= s + len || close[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = NULL;
        for (size_t i = len; i > 0; i--)
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl >= hostlen || memchr(h, '\0', hl) != NULL)
        return -1;
    if (parse_port(colon + 1, len - (size_t)(colon + 1 - s), port) != 0)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    return 0;
}

int cluster_parse_hostport(const char *s, size_t len, char *host, size_t hostlen, int *port)
{
    if (split_hostport(s, len, host, hostlen, port) != 0 || host[0] == '\0')
        return -1;
    return 0;
}

int cluster_parse_redirect(const char *msg, size_t len, unsigned *slot, char *host, size_t hostlen,
                           int *port)
{
    int kind;
    size_t i, n;
    unsigned long v = 0;

    if (len >= 6 && memcmp(msg, "MOVED ", 6) == 0)
        kind = CLV_REDIRECT_MOVED, i = 6;
    else if (len >= 4 && memcmp(msg, "ASK ", 4) == 0)
        kind = CLV_REDIRECT_ASK, i = 4;
    else
        return CLV_REDIRECT_NONE;
    for (n = 0; i < len && isdigit((unsigned char)msg[i]) && n < 6; i++, n++)
        v = v * 10 + (unsigned long)(msg[i] - '0');
    if (n == 0 || v >= CLV_CLUSTER_SLOTS || i >= len || msg[i] != ' ')
        return -1;
    i++;
    for (n = i; n < len && msg[n] != ' ' && msg[n] != '\r' && msg[n] != '\n'; n++)
        ;
    if (n != len || split_hostport(msg + i, n - i, host, hostlen, port) != 0)
        return -1;
    *slot = (unsigned)v;
    return kind;
}

int cluster_is_error(const redisReply *r, const char *word)
{
    size_t n = strlen(word);

    return r != NULL && r->type == REDIS_REPLY_ERROR && r->len >= n &&
           memcmp(r->str, word, n) == 0 && (r->len == n || r->str[n] == ' ');
}

/* ---- routing keys ------------------------------------------------------------------ */

static int arg_is(const char *arg, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(arg, name, len) == 0;
}

static int is_script_call(const char *cmd, size_t len)
{
    static const char *const names[] = {"EVAL",  "EVALSHA",  "EVAL_RO",
                                        "FCALL", "FCALL_RO", "EVALSHA_RO"};

    for (size_t i = 0; i < CLV_ARRAY_LEN(names); i++)
        if (arg_is(cmd, len, names[i]))
            return 1;
    return 0;
}

/* Commands that address a node, not a key. */
static int is_node_command(const char *cmd, size_t len)
{
    static const char *const names[] = {
        "PING",     "AUTH",     "SCRIPT",    "CLUSTER",  "INFO",   "ASKING",    "SELECT",
        "FLUSHALL", "FLUSHDB",  "DBSIZE",    "CLIENT",   "CONFIG", "HELLO",     "TIME",
        "ECHO",     "READONLY", "READWRITE", "COMMAND",  "MULTI",  "EXEC",      "DISCARD",
        "SCAN",     "KEYS",     "WAIT",      "FUNCTION", "QUIT",   "RANDOMKEY", "LASTSAVE"};

    for (size_t i = 0; i < CLV_ARRAY_LEN(names); i++)
        if (arg_is(cmd, len, names[i]))
            return 1;
    return 0;
}

int cluster_routing_key(int argc, const char **argv, const size_t *argvlen, const char **key,
                        size_t *keylen)
{
#define ARGLEN(i) (argvlen ? argvlen[i] : strlen(argv[i]))
    if (argc < 2 || is_node_command(argv[0], ARGLEN(0)))
        return -1;
    if (is_script_call(argv[0], ARGLEN(0))) {
        char nk[16];
        size_t n = ARGLEN(2);
        if (argc < 4 || n == 0 || n >= sizeof(nk))
            return -1;
        memcpy(nk, argv[2], n);
        nk[n] = '\0';
        if (strtol(nk, NULL, 10) <= 0)
            return -1;
        *key = argv[3];
        *keylen = ARGLEN(3);
        return 0;
    }
    *key = argv[1];
    *keylen = ARGLEN(1);
    return 0;
#undef ARGLEN
}

/* ---- RESP ------------------------------------------------------------------------------- */

/* "<c><digits>\r\n" at buf[*pos]; the number, or -1. */
static long long resp_header(const char *buf, size_t len, size_t *pos, char c)
{
    size_t i = *pos;
    long long v = 0;
    int digits = 0;

    if (i >= len || buf[i] != c)
        return -1;
    for (i++; i < len && isdigit((unsigned char)buf[i]) && digits < 18; i++, digits++)
        v = v * 10 + (buf[i] - '0');
    if (digits == 0 || i + 1 >= len || buf[i] != '\r' || buf[i + 1] != '\n')
        return -1;
    *pos = i + 2;
    return v;
}

int cluster_resp_argv(const char *buf, size_t len, int max, const char **argv, size_t *argvlen)
{
    size_t pos = 0;
    long long n = resp_header(buf, len, &pos, '*');

    if (n < 0 || n > max)
        return -1;
    for (long long i = 0; i < n; i++) {
        long long l = resp_header(buf, len, &pos, '$');
        if (l < 0 || (unsigned long long)l > len - pos || len - pos - (size_t)l < 2 ||
            buf[pos + (size_t)l] != '\r' || buf[pos + (size_t)l + 1] != '\n')
            return -1;
        argv[i] = buf + pos;
        argvlen[i] = (size_t)l;
        pos += (size_t)l + 2;
    }
    return pos == len ? (int)n : -1;
}

static void append_header(struct clv_sbuf *b, char c, size_t v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);

    tmp[--i] = '\n';
    tmp[--i] = '\r';
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    tmp[--i] = c;
    sbuf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void cluster_format_argv(struct clv_sbuf *b, int argc, const char **argv, const size_t *argvlen)
{
    append_header(b, '*', (size_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
        append_header(b, '$', n);
        sbuf_append(b, argv[i], n);
        sbuf_append(b, "\r\n", 2);
    }
}
