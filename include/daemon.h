/* daemon.h -- the clvd process: wiring and the main loop.
 *
 * One thread runs the loop: fetch a batch of input messages, parse them
 * (rejects go to the dead-letter topic), apply the batch to Redis, publish
 * its outputs, mark its offsets done; then sweep due customers, serve
 * delivery reports, trim and drain outboxes, ping the watchdog.  The only
 * global state is the pair of signal flags. */
#ifndef CLVD_DAEMON_H
#define CLVD_DAEMON_H

#include "config.h"

struct clvd_options {
    const char *config_path;
    /* Stop by itself once every input partition has been idle for this long
     * and nothing is pending (demo, tests); 0 = run until signalled. */
    clv_ms exit_when_idle;
};

/* Run the daemon until SIGTERM/SIGINT; returns the process exit status. */
int clvd_run(const struct clvd_options *opt);

/* Ask a running clvd_run to stop or reload (async-signal-safe). */
void clvd_request_stop(void);
void clvd_request_reload(void);

#endif
