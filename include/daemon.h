/* daemon.h -- the clvd process: wiring and the main loop.
 *
 * The main thread runs the loop: fetch input messages, parse them (rejects
 * go to the dead-letter topic) and hand each event to the worker owning its
 * customer's shard (worker.h, processing.workers threads, each with its own
 * Redis connection), which applies its batch while the next one fills;
 * publish the outputs of every batch a worker hands back and mark its
 * offsets done; sweep due customers (handed to their workers too), serve
 * delivery reports, trim and drain outboxes, ping the watchdog.  Kafka, the
 * producer, the metrics and reloads stay on the main thread.  The only
 * global state is the pair of signal flags. */
#ifndef CLVD_DAEMON_H
#define CLVD_DAEMON_H

#include "config.h"

struct clvd_options {
    const char *config_path;
    /* Stop by itself once the input has been idle for this long, every
     * input partition is read to its end and nothing is pending (demo,
     * tests); 0 = run until signalled. */
    clv_ms exit_when_idle;
};

/* Run the daemon until SIGTERM/SIGINT; returns the process exit status. */
int clvd_run(const struct clvd_options *opt);

/* Ask a running clvd_run to stop or reload (async-signal-safe). */
void clvd_request_stop(void);
void clvd_request_reload(void);

#endif
