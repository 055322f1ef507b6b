/* Forwarding latency (frame complete -> last datagram sent), in microseconds, every frame a
 * Sender sent since the last reset: one histogram for the process, read through
 * sfu._rtp_native.forwarding_latency() (benchmarks/forwarding.py reports it). */

#include "forwarding_latency.h"

#include <string.h>

#define LATENCY_BUCKETS 20001 /* 0..20000 us; the last bucket holds everything later */
static uint32_t latency_us[LATENCY_BUCKETS];

void record_latency(double since) {
    double us = (monotonic_clock() - since) * 1e6;
    long bucket = us < 0 ? 0 : us >= LATENCY_BUCKETS - 1 ? LATENCY_BUCKETS - 1 : (long)us;
    latency_us[bucket] += 1;
}

PyObject *forwarding_latency(PyObject *self, PyObject *args) {
    int reset = 0;
    if (!PyArg_ParseTuple(args, "|p", &reset))
        return NULL;
    PyObject *result = PyList_New(0);
    if (result == NULL)
        return NULL;
    for (long i = 0; i < LATENCY_BUCKETS; i++) {
        if (!latency_us[i])
            continue;
        PyObject *item = Py_BuildValue("(lI)", i, latency_us[i]);
        if (item == NULL || PyList_Append(result, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(result);
            return NULL;
        }
        Py_DECREF(item);
    }
    if (reset)
        memset(latency_us, 0, sizeof latency_us);
    return result;
}
