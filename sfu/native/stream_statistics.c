/* StreamStatistics: aiortc.rtcrtpreceiver.StreamStatistics in C (RFC 3550 receiver statistics
 * for the receiver reports aiortc sends), the same attributes and the same numbers. It sits in
 * the receiver's statistics table, where aiortc's RTCP and getStats() read it.
 * tests/sfu/native/test_stream_statistics.py compares it with aiortc's. */

#include "stream_statistics.h"

#define PACKETS_LOST_MIN (-(1LL << 23))
#define PACKETS_LOST_MAX ((1LL << 23) - 1)

struct Stats {
    PyObject_HEAD
    long long clockrate;
    long base_seq, max_seq; /* -1: not yet */
    long long cycles, packets_received, jitter_q4;
    long long last_arrival, last_timestamp; /* valid once have_last */
    int have_last;
    long long expected_prior, received_prior;
};

static int uint16_gt(long a, long b) { /* aiortc.utils.uint16_gt */
    return (a < b && b - a > 0x8000) || (a > b && a - b < 0x8000);
}

/* Count one received packet at wall-clock time `now` (StreamStatistics.add). */
void stats_add_packet(Stats *self, long seq, long long timestamp, double now) {
    int in_order = self->max_seq < 0 || uint16_gt(seq, self->max_seq);
    self->packets_received += 1;
    if (self->base_seq < 0)
        self->base_seq = seq;
    if (in_order) {
        long long arrival = (long long)(now * (double)self->clockrate);
        if (self->max_seq >= 0 && seq < self->max_seq)
            self->cycles += 1 << 16;
        self->max_seq = seq;
        if (self->have_last && timestamp != self->last_timestamp && self->packets_received > 1) {
            long long diff = (arrival - self->last_arrival) - (timestamp - self->last_timestamp);
            if (diff < 0)
                diff = -diff;
            self->jitter_q4 += diff - ((self->jitter_q4 + 8) >> 4);
        }
        self->last_arrival = arrival;
        self->last_timestamp = timestamp;
        self->have_last = 1;
    }
}

/* add(packet, now=None): now is time.time() unless given (tests give it). */
static PyObject *stats_add(Stats *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "add(packet, now=None)");
        return NULL;
    }
    PyObject *number = PyObject_GetAttr(args[0], str_sequence_number);
    if (number == NULL)
        return NULL;
    long seq = PyLong_AsLong(number);
    Py_DECREF(number);
    PyObject *stamp = PyObject_GetAttr(args[0], str_timestamp);
    if (stamp == NULL)
        return NULL;
    long long timestamp = PyLong_AsLongLong(stamp);
    Py_DECREF(stamp);
    if (PyErr_Occurred())
        return NULL;
    double now;
    if (nargs == 2 && args[1] != Py_None) {
        now = PyFloat_AsDouble(args[1]);
        if (now == -1.0 && PyErr_Occurred())
            return NULL;
    } else {
        now = wall_clock();
    }
    stats_add_packet(self, seq, timestamp, now);
    Py_RETURN_NONE;
}

static long long stats_expected(Stats *self) {
    return self->cycles + self->max_seq - self->base_seq + 1;
}

static int stats_started(Stats *self) {
    if (self->max_seq < 0) {
        PyErr_SetString(PyExc_TypeError, "no packet yet");
        return 0;
    }
    return 1;
}

static PyObject *stats_get_fraction_lost(Stats *self, void *closure) {
    if (!stats_started(self))
        return NULL;
    long long expected = stats_expected(self);
    long long expected_interval = expected - self->expected_prior;
    self->expected_prior = expected;
    long long received_interval = self->packets_received - self->received_prior;
    self->received_prior = self->packets_received;
    long long lost_interval = expected_interval - received_interval;
    if (expected_interval == 0 || lost_interval <= 0)
        return PyLong_FromLong(0);
    /* Python's // floors; both operands are positive here */
    return PyLong_FromLongLong((lost_interval << 8) / expected_interval);
}

static PyObject *stats_get_packets_expected(Stats *self, void *closure) {
    return stats_started(self) ? PyLong_FromLongLong(stats_expected(self)) : NULL;
}

static PyObject *stats_get_packets_lost(Stats *self, void *closure) {
    if (!stats_started(self))
        return NULL;
    long long lost = stats_expected(self) - self->packets_received;
    lost = lost < PACKETS_LOST_MIN ? PACKETS_LOST_MIN : lost > PACKETS_LOST_MAX ? PACKETS_LOST_MAX : lost;
    return PyLong_FromLongLong(lost);
}

static PyObject *stats_get_jitter(Stats *self, void *closure) { return PyLong_FromLongLong(self->jitter_q4 >> 4); }

static PyObject *stats_get_base_seq(Stats *self, void *closure) { return optional_long(self->base_seq); }
static PyObject *stats_get_max_seq(Stats *self, void *closure) { return optional_long(self->max_seq); }
static PyObject *stats_get_cycles(Stats *self, void *closure) { return PyLong_FromLongLong(self->cycles); }
static PyObject *stats_get_received(Stats *self, void *closure) {
    return PyLong_FromLongLong(self->packets_received);
}

static int stats_init(Stats *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"clockrate", NULL};
    long long clockrate;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "L", keywords, &clockrate))
        return -1;
    self->clockrate = clockrate;
    self->base_seq = self->max_seq = -1;
    self->cycles = self->packets_received = self->jitter_q4 = 0;
    self->have_last = 0;
    self->expected_prior = self->received_prior = 0;
    return 0;
}

static PyMethodDef stats_methods[] = {
    {"add", (PyCFunction)(void (*)(void))stats_add, METH_FASTCALL, "Count one received packet."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stats_getset[] = {
    {"fraction_lost", (getter)stats_get_fraction_lost, NULL, "lost since the last call, in 1/256 (RFC 3550)", NULL},
    {"packets_expected", (getter)stats_get_packets_expected, NULL, NULL, NULL},
    {"packets_lost", (getter)stats_get_packets_lost, NULL, "cumulative, clamped to 24 bits", NULL},
    {"jitter", (getter)stats_get_jitter, NULL, "interarrival jitter, in clock-rate units", NULL},
    {"base_seq", (getter)stats_get_base_seq, NULL, NULL, NULL},
    {"max_seq", (getter)stats_get_max_seq, NULL, NULL, NULL},
    {"cycles", (getter)stats_get_cycles, NULL, NULL, NULL},
    {"packets_received", (getter)stats_get_received, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject StatsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.StreamStatistics",
    .tp_basicsize = sizeof(Stats),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's StreamStatistics in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)stats_init,
    .tp_methods = stats_methods,
    .tp_getset = stats_getset,
};
