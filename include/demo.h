/* demo.h -- `clvd demo`: a synthetic shop on embedded Kafka and a private
 * Redis, a simulated year in under a minute, transitions shown live.
 *
 * One process: the main thread runs the shop (a Kafka producer writing
 * purchases, logins and visits in event-time order) and the screen (a
 * consumer of every output topic); a second thread runs clvd_run() on a
 * temporary config that points at the embedded Kafka and at a private
 * redis-server child.  When the year is done and the outputs have settled
 * it prints a summary and returns 0.
 *
 *   clvd demo [--customers N] [--seed S] [--fast] [--quiet]
 *
 * Exit status: 0 done, 1 failure (redis-server missing, the daemon stopped,
 * the outputs never settled), 2 bad option, 130 interrupted. */
#ifndef CLVD_DEMO_H
#define CLVD_DEMO_H

/* argv holds the demo's own arguments only (no program name). */
int demo_run(int argc, char **argv);

#endif
