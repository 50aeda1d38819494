#!/usr/bin/env python3
"""Calls of apply.lua as clvd sends them, in Redis's protocol, for
bench/script_cost.sh: `customers` customers written once (the set-up), then
`rounds` rounds in which each is updated once, in calls of `per_call`
customers of random shards (the half-rate shape: about 1.4 customers per
shard group).  Updates carry an outbox entry and two counter moves at the
rate `outbox` and move the due entry at the rate `due`; the rest are the
short form (see the header of daemon/lua/apply.lua).

usage: script_calls.py SCRIPT OUT CUSTOMERS ROUNDS [PER_CALL OUTBOX DUE]"""
import hashlib
import random
import sys


def resp(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def state(c, version):
    # 150 bytes, as in the benchmark, varied throughout like clvd's states
    # (their de-duplication ring is hashes): Lua 5.1 hashes a long string
    # from every fifth byte only, and states alike there would all collide
    # in Lua's string table, which no real stream does
    seed = hashlib.sha256(b"%d:%d" % (c, version)).digest()
    return b"%08d" % version + (seed * 5)[:142]


def customer_args(c, version, rnd, r, outbox, due_share, payload):
    old = state(c, version)[:8] if version else b""
    args = [old, state(c, version + 1)]
    has_out = version == 0 or r < outbox
    moves_due = version == 0 or outbox <= r < outbox + due_share
    if not has_out and not moves_due:
        return args + [""]
    args += ["+", "cust%d" % c, str(1700000000000 + c) if moves_due else "-"]
    if has_out:
        return args + ["1", "o:%d:%d" % (c, rnd), payload, "2", "active", "-1", "loyal", "1"]
    return args + ["0", "0"]


def main():
    script = open(sys.argv[1]).read()
    customers, rounds = int(sys.argv[3]), int(sys.argv[4])
    per_call = int(sys.argv[5]) if len(sys.argv) > 5 else 50
    outbox = float(sys.argv[6]) if len(sys.argv) > 6 else 0.18
    due_share = float(sys.argv[7]) if len(sys.argv) > 7 else 0.068
    sha = hashlib.sha1(script.encode()).hexdigest()
    rng = random.Random(1)
    versions = [0] * customers
    payload = "p" * 600
    with open(sys.argv[2], "wb") as out:
        out.write(resp(["SCRIPT", "LOAD", script]))
        for rnd in range(1 + rounds):
            order = list(range(customers))
            rng.shuffle(order)
            for first in range(0, customers, per_call):
                groups = {}
                for c in sorted(order[first:first + per_call], key=lambda c: c % 1024):
                    groups.setdefault(c % 1024, []).append(c)
                keys, group_keys, argv = [], [], [str(len(order[first:first + per_call]))]
                for shard, members in groups.items():
                    keys += ["clv:{s%d}:c:cust%d" % (shard, c) for c in members]
                    argv.append(str(len(members)))
                    full = False
                    for c in members:
                        args = customer_args(c, versions[c], rnd, rng.random(), outbox,
                                             due_share, payload)
                        full = full or args[2] == "+"
                        argv += args
                        versions[c] += 1
                    if full:
                        group_keys += ["clv:{s%d}:due" % shard, "clv:{s%d}:out" % shard,
                                       "clv:{s%d}:stats" % shard]
                keys += group_keys
                out.write(resp(["EVALSHA", sha, str(len(keys))] + keys + argv))


if __name__ == "__main__":
    main()
