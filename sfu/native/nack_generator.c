/* NackGenerator: aiortc.rtcrtpreceiver.NackGenerator in C, the same API (add(packet) -> bool,
 * max_seq, missing) and the same results. aiortc keeps at most the 128 sequence numbers behind
 * the newest as missing (RTP_HISTORY_SIZE, its truncate()), so a 128-bit window replaces its set:
 * bit k-1 set = sequence number max_seq - k is missing, k in 1..128.
 * tests/sfu/native/test_nack_generator.py compares it with aiortc's. */

#include "nack_generator.h"

#define NACK_WINDOW 128

struct Nacks {
    PyObject_HEAD
    long max_seq; /* -1: nothing seen yet */
    unsigned __int128 window;
};

/* Mark sequence number `seq` received: 1 if it revealed missing ones. */
int nacks_add_seq(Nacks *self, long seq) {
    seq &= 0xFFFF;
    if (self->max_seq < 0) {
        self->max_seq = seq;
        return 0;
    }
    long ahead = (seq - self->max_seq) & 0xFFFF;
    if (ahead > 0 && ahead < 0x8000) { /* newer: the ones in between are missing */
        unsigned __int128 window = ahead >= NACK_WINDOW ? 0 : self->window << ahead;
        long gap = ahead - 1; /* sequence numbers skipped: k = 1 .. gap behind the new newest */
        if (gap >= NACK_WINDOW)
            window = ~(unsigned __int128)0;
        else if (gap > 0)
            window |= ((unsigned __int128)1 << gap) - 1;
        self->window = window;
        self->max_seq = seq;
        return gap > 0;
    }
    long behind = (self->max_seq - seq) & 0xFFFF; /* a late or retransmitted packet arrived */
    if (behind >= 1 && behind <= NACK_WINDOW)
        self->window &= ~((unsigned __int128)1 << (behind - 1));
    return 0;
}

static PyObject *nacks_add(Nacks *self, PyObject *packet) {
    PyObject *number = PyObject_GetAttr(packet, str_sequence_number);
    if (number == NULL)
        return NULL;
    long seq = PyLong_AsLong(number);
    Py_DECREF(number);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    return PyBool_FromLong(nacks_add_seq(self, seq));
}

static PyObject *nacks_get_missing(Nacks *self, void *closure) {
    PyObject *missing = PySet_New(NULL);
    if (missing == NULL || self->max_seq < 0)
        return missing;
    for (int k = 1; k <= NACK_WINDOW; k++) {
        if (self->window & ((unsigned __int128)1 << (k - 1))) {
            PyObject *number = PyLong_FromLong((self->max_seq - k) & 0xFFFF);
            if (number == NULL || PySet_Add(missing, number) < 0) {
                Py_XDECREF(number);
                Py_DECREF(missing);
                return NULL;
            }
            Py_DECREF(number);
        }
    }
    return missing;
}

static PyObject *nacks_get_max_seq(Nacks *self, void *closure) { return optional_long(self->max_seq); }

static int nacks_init(Nacks *self, PyObject *args, PyObject *kwargs) {
    if (!PyArg_ParseTuple(args, ":NackGenerator"))
        return -1;
    self->max_seq = -1;
    self->window = 0;
    return 0;
}

static PyMethodDef nacks_methods[] = {
    {"add", (PyCFunction)nacks_add, METH_O, "Mark a packet received; True if it revealed missing ones."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef nacks_getset[] = {
    {"missing", (getter)nacks_get_missing, NULL, "sequence numbers missing (a new set)", NULL},
    {"max_seq", (getter)nacks_get_max_seq, NULL, "the newest sequence number, or None", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject NacksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.NackGenerator",
    .tp_basicsize = sizeof(Nacks),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's NackGenerator in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)nacks_init,
    .tp_methods = nacks_methods,
    .tp_getset = nacks_getset,
};
