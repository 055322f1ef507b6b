/* FrameAssembler: sfu/frame_assembler.py in C, the same API and the same results (the Python
 * class is the reference; tests/sfu/native/test_frame_assembler.py runs against both, plus a
 * randomised comparison). Read the Python module for the why of each rule. */

#include "frame_assembler.h"

#include <stdlib.h>
#include <string.h>

#define RING 512          /* slots; a power of two dividing 2**16 */
#define RING_MASK (RING - 1)
#define MAX_SPAN 448      /* packets from the origin */
#define MAX_MISORDER 100  /* further back than this: a restarted stream */

typedef struct {
    PyObject *payload; /* NULL: empty slot */
    uint32_t timestamp;
    int marker;
} Slot;

struct Assembler {
    PyObject_HEAD
    Slot slots[RING];
    long origin;          /* -1: none (next packet starts the stream) */
    long long skip;       /* -1: none; else drop the rest of the frame with this timestamp */
    long frames_waiting;
    long max_frames_waiting;
    long frames_lost;
};

static void assembler_clear(Assembler *self) {
    for (int i = 0; i < RING; i++) {
        Py_CLEAR(self->slots[i].payload);
    }
}

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void assembler_give_up(Assembler *self, uint32_t timestamp) {
    uint32_t held[RING];
    int count = 0;
    for (int i = 0; i < RING; i++) {
        if (self->slots[i].payload != NULL)
            held[count++] = self->slots[i].timestamp;
    }
    long distinct = 0;
    if (count) {
        qsort(held, (size_t)count, sizeof held[0], compare_u32);
        distinct = 1;
        for (int i = 1; i < count; i++)
            distinct += held[i] != held[i - 1];
    }
    self->frames_lost += distinct > 1 ? distinct : 1;
    assembler_clear(self);
    self->origin = -1;
    self->frames_waiting = 0;
    self->skip = timestamp;
}

/* The frames complete from the origin on, as a list of (timestamp, bytes), or None. */
static PyObject *assembler_release(Assembler *self) {
    PyObject *frames = NULL;
    for (;;) {
        Slot *first = &self->slots[self->origin & RING_MASK];
        if (first->payload == NULL)
            break;
        uint32_t frame_timestamp = first->timestamp;
        long count = 0;
        Py_ssize_t size = 0;
        int whole = 0;
        for (;;) {
            Slot *slot = &self->slots[(self->origin + count) & RING_MASK];
            if (slot->payload == NULL)
                break; /* incomplete: wait for the rest */
            if (slot->timestamp != frame_timestamp) {
                whole = 1; /* the next frame has begun: this one is whole without a marker */
                break;
            }
            size += PyBytes_GET_SIZE(slot->payload);
            count += 1;
            if (slot->marker) {
                whole = 1;
                break;
            }
        }
        if (!whole)
            break;
        PyObject *data;
        if (count == 1) {
            data = first->payload;
            Py_INCREF(data);
        } else {
            data = PyBytes_FromStringAndSize(NULL, size);
            if (data == NULL)
                goto error;
            char *out = PyBytes_AS_STRING(data);
            for (long k = 0; k < count; k++) {
                PyObject *part = self->slots[(self->origin + k) & RING_MASK].payload;
                memcpy(out, PyBytes_AS_STRING(part), (size_t)PyBytes_GET_SIZE(part));
                out += PyBytes_GET_SIZE(part);
            }
        }
        for (long k = 0; k < count; k++)
            Py_CLEAR(self->slots[(self->origin + k) & RING_MASK].payload);
        self->origin = (self->origin + count) & 0xFFFF;
        PyObject *frame = Py_BuildValue("(kN)", (unsigned long)frame_timestamp, data);
        if (frame == NULL)
            goto error;
        if (frames == NULL && (frames = PyList_New(0)) == NULL) {
            Py_DECREF(frame);
            goto error;
        }
        int failed = PyList_Append(frames, frame);
        Py_DECREF(frame);
        if (failed)
            goto error;
    }
    if (frames == NULL)
        Py_RETURN_NONE;
    return frames;
error:
    Py_XDECREF(frames);
    return NULL;
}

/* Store one packet (a new reference to `payload` is taken); the frames it completed as a list
 * of (timestamp, bytes), or None (both new references), or NULL with an exception set. */
static PyObject *assembler_push(Assembler *self, long sequence, uint32_t timestamp, int marker, PyObject *payload) {
    sequence &= 0xFFFF;
    if (self->origin < 0) {
        if (self->skip >= 0 && (uint32_t)self->skip == timestamp)
            Py_RETURN_NONE;
        self->skip = -1;
        self->origin = sequence;
    }
    long ahead = (sequence - self->origin) & 0xFFFF;
    if (ahead >= 0x8000) { /* behind the origin */
        if (0x10000 - ahead > MAX_MISORDER)
            assembler_give_up(self, timestamp);
        Py_RETURN_NONE;
    }
    if (ahead >= MAX_SPAN) {
        assembler_give_up(self, timestamp);
        Py_RETURN_NONE;
    }
    Slot *slot = &self->slots[sequence & RING_MASK];
    Py_INCREF(payload);
    Py_XSETREF(slot->payload, payload);
    slot->timestamp = timestamp;
    slot->marker = marker;
    PyObject *frames = assembler_release(self);
    if (frames == NULL)
        return NULL;
    if (frames != Py_None) {
        self->frames_waiting = 0;
    } else if (marker && ahead) { /* a complete frame, held behind a hole */
        self->frames_waiting += 1;
        if (self->frames_waiting > self->max_frames_waiting)
            assembler_give_up(self, timestamp);
    }
    return frames;
}

/* The length of the RFC 7741 descriptor at the start of a VP8 payload, or -1 if malformed. */
static Py_ssize_t vp8_descriptor_size(const uint8_t *data, Py_ssize_t size) {
    if (size <= 0)
        return 0;
    Py_ssize_t pos = 1;
    if (data[0] & 0x80) { /* X: extension octet follows */
        if (size < 2)
            return -1;
        uint8_t extension = data[1];
        pos = 2;
        if (extension & 0x80) { /* I: picture id, 7 or 15 bits */
            if (size <= pos)
                return -1;
            pos += data[pos] & 0x80 ? 2 : 1;
        }
        if (extension & 0x40) /* L: TL0PICIDX */
            pos += 1;
        if (extension & 0x30) /* T or K: one octet for both */
            pos += 1;
    }
    return pos > size ? -1 : pos;
}

/* assembler_push() for a VP8 payload that still starts with its descriptor. */
PyObject *assembler_push_vp8(Assembler *self, long sequence, uint32_t timestamp, int marker, const uint8_t *data,
                             Py_ssize_t size) {
    Py_ssize_t pos = vp8_descriptor_size(data, size);
    if (pos < 0)
        Py_RETURN_NONE;
    PyObject *slice = PyBytes_FromStringAndSize((const char *)data + pos, size - pos);
    if (slice == NULL)
        return NULL;
    PyObject *frames = assembler_push(self, sequence, timestamp, marker, slice);
    Py_DECREF(slice);
    return frames;
}

long assembler_frames_lost(const Assembler *self) { return self->frames_lost; }

static int parse_add_args(PyObject *const *args, Py_ssize_t nargs, const char *usage, long *sequence,
                          uint32_t *timestamp, int *marker) {
    if (nargs != 4 || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    *sequence = PyLong_AsLong(args[0]);
    *timestamp = (uint32_t)PyLong_AsUnsignedLong(args[1]);
    *marker = PyObject_IsTrue(args[2]);
    return PyErr_Occurred() || *marker < 0 ? -1 : 0;
}

/* add(sequence_number, timestamp, marker, payload) -> list of (timestamp, bytes) or None */
static PyObject *assembler_add(Assembler *self, PyObject *const *args, Py_ssize_t nargs) {
    long sequence;
    uint32_t timestamp;
    int marker;
    if (parse_add_args(args, nargs, "add(sequence_number, timestamp, marker, payload: bytes)", &sequence,
                       &timestamp, &marker) < 0)
        return NULL;
    return assembler_push(self, sequence, timestamp, marker, args[3]);
}

/* add_vp8(sequence_number, timestamp, marker, payload): add() for a payload that still starts
 * with its RFC 7741 descriptor (vp8_frame_slice in Python); a malformed one is ignored (None). */
static PyObject *assembler_add_vp8(Assembler *self, PyObject *const *args, Py_ssize_t nargs) {
    long sequence;
    uint32_t timestamp;
    int marker;
    if (parse_add_args(args, nargs, "add_vp8(sequence_number, timestamp, marker, payload: bytes)", &sequence,
                       &timestamp, &marker) < 0)
        return NULL;
    return assembler_push_vp8(self, sequence, timestamp, marker, (const uint8_t *)PyBytes_AS_STRING(args[3]),
                              PyBytes_GET_SIZE(args[3]));
}

static int assembler_init(Assembler *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"max_frames_waiting", NULL};
    long max_frames_waiting = 15;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|l", keywords, &max_frames_waiting))
        return -1;
    assembler_clear(self);
    self->max_frames_waiting = max_frames_waiting;
    self->origin = -1;
    self->skip = -1;
    self->frames_waiting = 0;
    self->frames_lost = 0;
    return 0;
}

static void assembler_dealloc(Assembler *self) {
    assembler_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef assembler_methods[] = {
    {"add", (PyCFunction)(void (*)(void))assembler_add, METH_FASTCALL,
     "Store one packet; return the frames it completed, oldest first, or None."},
    {"add_vp8", (PyCFunction)(void (*)(void))assembler_add_vp8, METH_FASTCALL,
     "add() for a payload that still starts with its VP8 descriptor; a malformed one is ignored."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef assembler_members[] = {
    {"frames_lost", T_LONG, offsetof(Assembler, frames_lost), READONLY, "frames given up so far"},
    {"max_frames_waiting", T_LONG, offsetof(Assembler, max_frames_waiting), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyTypeObject AssemblerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.FrameAssembler",
    .tp_basicsize = sizeof(Assembler),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "sfu.frame_assembler.FrameAssembler in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)assembler_init,
    .tp_dealloc = (destructor)assembler_dealloc,
    .tp_methods = assembler_methods,
    .tp_members = assembler_members,
};
