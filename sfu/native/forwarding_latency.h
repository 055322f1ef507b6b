/* Forwarding latency: how long each frame took from complete to sent (forwarding_latency.c). */

#ifndef OPENVISIT_NATIVE_FORWARDING_LATENCY_H
#define OPENVISIT_NATIVE_FORWARDING_LATENCY_H

#include "common.h"

/* One frame sent now, complete at monotonic time `since` (the Sender calls this per frame). */
void record_latency(double since);

/* Module function forwarding_latency(reset=False) -> [(microseconds, frames)]. */
PyObject *forwarding_latency(PyObject *self, PyObject *args);

#endif
