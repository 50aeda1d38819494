/* demo.h -- `clvd demo`: a synthetic shop on embedded Kafka and a private
 * Redis, a simulated year in under a minute, transitions shown live. */
#ifndef CLVD_DEMO_H
#define CLVD_DEMO_H

int demo_run(int argc, char **argv);

#endif
