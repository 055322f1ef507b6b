/* The SFU's per-packet work in C: decrypt and parse a received RTP packet; packetise, encrypt
 * and send a frame. Python does the same in sfu/aiortc_adapter.py (parse_rtp, vp8_payloads,
 * DirectRtpSender) and stays the reference: tests/sfu/test_rtp_native.py checks both give the
 * same bytes. Why C: in the live SFU each datagram is handled shortly after the CPU woke up,
 * when the interpreter's caches and branch predictors are cold; these few hundred instructions
 * replace a few thousand bytecodes there.
 *
 * libsrtp is not linked here: pylibsrtp's binding already carries it, and hands us the
 * addresses of srtp_protect / srtp_unprotect and of each session's context (set_srtp). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

typedef int (*srtp_call)(void *context, void *packet, int *length);

#define BUFFER_SIZE 2048     /* a datagram (<= 1500 bytes) and its SRTP trailer */
#define SRTP_MAX_TRAILER 144 /* SRTP_MAX_TRAILER_LEN in libsrtp 2 */
#define VP8_PAYLOAD_MAX 1296 /* bytes of frame per packet, after the 4-byte descriptor (as aiortc) */

static srtp_call srtp_protect_fn = NULL;
static srtp_call srtp_unprotect_fn = NULL;

static PyObject *set_srtp(PyObject *self, PyObject *args) {
    unsigned long long protect, unprotect;
    if (!PyArg_ParseTuple(args, "KK", &protect, &unprotect))
        return NULL;
    srtp_protect_fn = (srtp_call)(uintptr_t)protect;
    srtp_unprotect_fn = (srtp_call)(uintptr_t)unprotect;
    Py_RETURN_NONE;
}

/* unprotect_rtp(context, datagram, abs_send_time_id) -> (payload_type, marker, sequence_number,
 * timestamp, ssrc, payload, padding_size, abs_send_time | None), or None if SRTP refuses the
 * packet or it is not well-formed RTP. abs_send_time_id < 0: not negotiated. */
static PyObject *unprotect_rtp(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "unprotect_rtp(context, datagram, abs_send_time_id)");
        return NULL;
    }
    uintptr_t context = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    long abs_id = PyLong_AsLong(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (!PyBytes_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "datagram must be bytes");
        return NULL;
    }
    if (srtp_unprotect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_srtp() was not called");
        return NULL;
    }
    Py_ssize_t size = PyBytes_GET_SIZE(args[1]);
    if (size > BUFFER_SIZE)
        Py_RETURN_NONE;
    uint8_t data[BUFFER_SIZE];
    memcpy(data, PyBytes_AS_STRING(args[1]), (size_t)size);
    int length = (int)size;
    if (srtp_unprotect_fn((void *)context, data, &length) != 0 || length < 12)
        Py_RETURN_NONE;

    uint8_t first = data[0], second = data[1];
    if (first >> 6 != 2)
        Py_RETURN_NONE;
    Py_ssize_t pos = 12 + 4 * (first & 0x0F);
    if (pos > length) /* more CSRCs than the packet holds */
        Py_RETURN_NONE;
    long abs_send_time = -1;
    if (first & 0x10) {
        if (length < pos + 4)
            Py_RETURN_NONE;
        unsigned profile = (unsigned)data[pos] << 8 | data[pos + 1];
        Py_ssize_t end = pos + 4 + 4 * ((Py_ssize_t)data[pos + 2] << 8 | data[pos + 3]);
        pos += 4;
        if (length < end)
            Py_RETURN_NONE;
        if (profile == 0xBEDE && abs_id >= 0) { /* RFC 8285 one-byte elements */
            Py_ssize_t i = pos;
            while (i < end) {
                uint8_t element = data[i];
                if (element == 0) { /* padding */
                    i += 1;
                    continue;
                }
                int id = element >> 4, element_size = (element & 0x0F) + 1;
                if (id == 15)
                    break;
                if (id == abs_id && element_size == 3) {
                    if (i + 4 <= length)
                        abs_send_time = (long)data[i + 1] << 16 | (long)data[i + 2] << 8 | data[i + 3];
                    break;
                }
                i += 1 + element_size;
            }
        }
        pos = end;
    }
    int padding = 0;
    if (first & 0x20) {
        padding = data[length - 1];
        if (padding == 0 || padding > length - pos)
            Py_RETURN_NONE;
    }
    unsigned sequence = (unsigned)data[2] << 8 | data[3];
    uint32_t timestamp = (uint32_t)data[4] << 24 | (uint32_t)data[5] << 16 | (uint32_t)data[6] << 8 | data[7];
    uint32_t ssrc = (uint32_t)data[8] << 24 | (uint32_t)data[9] << 16 | (uint32_t)data[10] << 8 | data[11];
    PyObject *abs_object;
    if (abs_send_time < 0) {
        abs_object = Py_None;
        Py_INCREF(Py_None);
    } else {
        abs_object = PyLong_FromLong(abs_send_time);
    }
    return Py_BuildValue("(iiIkky#iN)", second & 0x7F, second >> 7, sequence, (unsigned long)timestamp,
                         (unsigned long)ssrc, (const char *)data + pos, (Py_ssize_t)(length - padding - pos),
                         padding, abs_object);
}

/* sockaddr(host, port) -> bytes: the address sendto() needs, for an IPv4 or IPv6 literal. */
static PyObject *make_sockaddr(PyObject *self, PyObject *args) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "si", &host, &port))
        return NULL;
    struct sockaddr_in v4;
    struct sockaddr_in6 v6;
    memset(&v4, 0, sizeof v4);
    memset(&v6, 0, sizeof v6);
    if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
        v4.sin_family = AF_INET;
        v4.sin_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v4, sizeof v4);
    }
    if (inet_pton(AF_INET6, host, &v6.sin6_addr) == 1) {
        v6.sin6_family = AF_INET6;
        v6.sin6_port = htons((uint16_t)port);
        return PyBytes_FromStringAndSize((const char *)&v6, sizeof v6);
    }
    PyErr_Format(PyExc_ValueError, "not an IP address: %s", host);
    return NULL;
}

/* send_frame(context, fd, sockaddr, first_byte, payload_type, sequence_number, timestamp, ssrc,
 *            extensions, frame, picture_id, history, history_sequences)
 *   -> (packets, payload_octets, next_sequence_number, send_failures)
 * picture_id < 0: an audio frame, one packet, marker set. Otherwise a VP8 frame in RFC 7741
 * packets (4-byte descriptor with a 15-bit picture id, S on the first, marker on the last), each
 * protected packet kept in the history lists (ring indexed by sequence number) for NACKs.
 * A datagram the socket refuses (full buffer) is counted, not retried: UDP, like a router. */
static PyObject *send_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "send_frame takes 13 arguments");
        return NULL;
    }
    uintptr_t context = (uintptr_t)PyLong_AsUnsignedLongLong(args[0]);
    int fd = (int)PyLong_AsLong(args[1]);
    int first_byte = (int)PyLong_AsLong(args[3]);
    int payload_type = (int)PyLong_AsLong(args[4]);
    long sequence = PyLong_AsLong(args[5]);
    uint32_t timestamp = (uint32_t)PyLong_AsUnsignedLong(args[6]);
    uint32_t ssrc = (uint32_t)PyLong_AsUnsignedLong(args[7]);
    long picture_id = PyLong_AsLong(args[10]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *address = args[2], *extensions = args[8], *frame = args[9];
    PyObject *history = args[11], *history_sequences = args[12];
    if (!PyBytes_Check(address) || !PyBytes_Check(extensions) || !PyBytes_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "sockaddr, extensions and frame must be bytes");
        return NULL;
    }
    Py_ssize_t slots = 0;
    if (history != Py_None) {
        if (!PyList_Check(history) || !PyList_Check(history_sequences) ||
            PyList_GET_SIZE(history) != PyList_GET_SIZE(history_sequences) || PyList_GET_SIZE(history) == 0) {
            PyErr_SetString(PyExc_TypeError, "history lists must be lists of one size");
            return NULL;
        }
        slots = PyList_GET_SIZE(history);
    }
    if (srtp_protect_fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_srtp() was not called");
        return NULL;
    }
    const uint8_t *frame_data = (const uint8_t *)PyBytes_AS_STRING(frame);
    Py_ssize_t frame_size = PyBytes_GET_SIZE(frame);
    Py_ssize_t ext_size = PyBytes_GET_SIZE(extensions);
    int video = picture_id >= 0;
    Py_ssize_t chunk = video ? VP8_PAYLOAD_MAX : frame_size;
    Py_ssize_t packets = video ? (frame_size + VP8_PAYLOAD_MAX - 1) / VP8_PAYLOAD_MAX : 1;
    if (packets == 0)
        packets = 1; /* an empty VP8 frame still makes one packet: the descriptor alone */
    if (12 + ext_size + (video ? 4 : 0) + (chunk > 0 ? chunk : 0) > BUFFER_SIZE - SRTP_MAX_TRAILER) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return NULL;
    }
    const struct sockaddr *sa = (const struct sockaddr *)PyBytes_AS_STRING(address);
    socklen_t sa_size = (socklen_t)PyBytes_GET_SIZE(address);

    uint8_t buffer[BUFFER_SIZE];
    long octets = 0, failures = 0;
    for (Py_ssize_t index = 0; index < packets; index++) {
        Py_ssize_t offset = index * chunk;
        Py_ssize_t size = frame_size - offset < chunk ? frame_size - offset : chunk;
        if (size < 0)
            size = 0;
        uint8_t *p = buffer;
        p[0] = (uint8_t)first_byte;
        p[1] = (uint8_t)(payload_type | (index == packets - 1 ? 0x80 : 0));
        p[2] = (uint8_t)(sequence >> 8);
        p[3] = (uint8_t)sequence;
        p[4] = (uint8_t)(timestamp >> 24);
        p[5] = (uint8_t)(timestamp >> 16);
        p[6] = (uint8_t)(timestamp >> 8);
        p[7] = (uint8_t)timestamp;
        p[8] = (uint8_t)(ssrc >> 24);
        p[9] = (uint8_t)(ssrc >> 16);
        p[10] = (uint8_t)(ssrc >> 8);
        p[11] = (uint8_t)ssrc;
        p += 12;
        memcpy(p, PyBytes_AS_STRING(extensions), (size_t)ext_size);
        p += ext_size;
        if (video) {
            p[0] = index == 0 ? 0x90 : 0x80; /* X, S on the first packet, PID 0 */
            p[1] = 0x80;                     /* I: picture id present */
            p[2] = (uint8_t)(0x80 | ((picture_id >> 8) & 0x7F));
            p[3] = (uint8_t)picture_id;
            p += 4;
            octets += 4;
        }
        memcpy(p, frame_data + offset, (size_t)size);
        p += size;
        octets += (long)size;
        int length = (int)(p - buffer);
        int status = srtp_protect_fn((void *)context, buffer, &length);
        if (status != 0) {
            PyErr_Format(PyExc_RuntimeError, "libsrtp protect failed (error %d)", status);
            return NULL;
        }
        if (sendto(fd, buffer, (size_t)length, 0, sa, sa_size) < 0)
            failures += 1;
        if (slots) {
            PyObject *packet = PyBytes_FromStringAndSize((const char *)buffer, length);
            PyObject *number = PyLong_FromLong(sequence);
            if (packet == NULL || number == NULL) {
                Py_XDECREF(packet);
                Py_XDECREF(number);
                return NULL;
            }
            Py_ssize_t slot = sequence % slots;
            PyList_SetItem(history, slot, packet); /* steals the references */
            PyList_SetItem(history_sequences, slot, number);
        }
        sequence = (sequence + 1) & 0xFFFF;
    }
    return Py_BuildValue("(nlll)", packets, octets, sequence, failures);
}


/* ------------------------------------------------------------------------------------------
 * FrameAssembler: sfu/frame_assembler.py in C, the same API and the same results (the Python
 * class is the reference; tests/sfu/test_frame_assembler.py runs against both, plus a
 * randomised comparison). Read the Python module for the why of each rule. */

#define RING 512          /* slots; a power of two dividing 2**16 */
#define RING_MASK (RING - 1)
#define MAX_SPAN 448      /* packets from the origin */
#define MAX_MISORDER 100  /* further back than this: a restarted stream */

typedef struct {
    PyObject *payload; /* NULL: empty slot */
    uint32_t timestamp;
    int marker;
} Slot;

typedef struct {
    PyObject_HEAD
    Slot slots[RING];
    long origin;          /* -1: none (next packet starts the stream) */
    long long skip;       /* -1: none; else drop the rest of the frame with this timestamp */
    long frames_waiting;
    long max_frames_waiting;
    long frames_lost;
} Assembler;

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

/* add(sequence_number, timestamp, marker, payload) -> list of (timestamp, bytes) or None */
static PyObject *assembler_add(Assembler *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "add(sequence_number, timestamp, marker, payload)");
        return NULL;
    }
    long sequence = PyLong_AsLong(args[0]);
    uint32_t timestamp = (uint32_t)PyLong_AsUnsignedLong(args[1]);
    int marker = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred() || marker < 0)
        return NULL;
    if (!PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes");
        return NULL;
    }
    if (self->origin < 0) {
        if (self->skip >= 0 && (uint32_t)self->skip == timestamp)
            Py_RETURN_NONE;
        self->skip = -1;
        self->origin = sequence & 0xFFFF;
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
    Py_INCREF(args[3]);
    Py_XSETREF(slot->payload, args[3]);
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

/* add_vp8(sequence_number, timestamp, marker, payload): add() for a payload that still starts
 * with its RFC 7741 descriptor (vp8_frame_slice in Python); a malformed one is ignored (None). */
static PyObject *assembler_add_vp8(Assembler *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "add_vp8(sequence_number, timestamp, marker, payload: bytes)");
        return NULL;
    }
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(args[3]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[3]), pos = 1;
    if (size > 0) {
        if (data[0] & 0x80) { /* X: extension octet follows */
            if (size < 2)
                Py_RETURN_NONE;
            uint8_t extension = data[1];
            pos = 2;
            if (extension & 0x80) { /* I: picture id, 7 or 15 bits */
                if (size <= pos)
                    Py_RETURN_NONE;
                pos += data[pos] & 0x80 ? 2 : 1;
            }
            if (extension & 0x40) /* L: TL0PICIDX */
                pos += 1;
            if (extension & 0x30) /* T or K: one octet for both */
                pos += 1;
        }
        if (pos > size)
            Py_RETURN_NONE;
    } else {
        pos = 0;
    }
    PyObject *slice = PyBytes_FromStringAndSize((const char *)data + pos, size - pos);
    if (slice == NULL)
        return NULL;
    PyObject *add_args[4] = {args[0], args[1], args[2], slice};
    PyObject *frames = assembler_add(self, add_args, 4);
    Py_DECREF(slice);
    return frames;
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

static PyTypeObject AssemblerType = {
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


/* ------------------------------------------------------------------------------------------
 * NackGenerator: aiortc.rtcrtpreceiver.NackGenerator in C, the same API (add(packet) -> bool,
 * max_seq, missing) and the same results. aiortc keeps at most the 128 sequence numbers behind
 * the newest as missing (RTP_HISTORY_SIZE, its truncate()), so a 128-bit window replaces its set:
 * bit k-1 set = sequence number max_seq - k is missing, k in 1..128. */

#define NACK_WINDOW 128

typedef struct {
    PyObject_HEAD
    long max_seq; /* -1: nothing seen yet */
    unsigned __int128 window;
} Nacks;

static PyObject *str_sequence_number = NULL;

/* A sequence number kept as -1 until known: None until then, as in aiortc. */
static PyObject *optional_long(long value) {
    if (value < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(value);
}

static PyObject *nacks_add(Nacks *self, PyObject *packet) {
    PyObject *number = PyObject_GetAttr(packet, str_sequence_number);
    if (number == NULL)
        return NULL;
    long seq = PyLong_AsLong(number);
    Py_DECREF(number);
    if (seq == -1 && PyErr_Occurred())
        return NULL;
    seq &= 0xFFFF;
    if (self->max_seq < 0) {
        self->max_seq = seq;
        Py_RETURN_FALSE;
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
        if (gap > 0)
            Py_RETURN_TRUE;
        Py_RETURN_FALSE;
    }
    long behind = (self->max_seq - seq) & 0xFFFF; /* a late or retransmitted packet arrived */
    if (behind >= 1 && behind <= NACK_WINDOW)
        self->window &= ~((unsigned __int128)1 << (behind - 1));
    Py_RETURN_FALSE;
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

static PyTypeObject NacksType = {
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


/* ------------------------------------------------------------------------------------------
 * StreamStatistics: aiortc.rtcrtpreceiver.StreamStatistics in C (RFC 3550 receiver statistics
 * for the receiver reports aiortc sends), the same attributes and the same numbers. It sits in
 * the receiver's statistics table, where aiortc's RTCP and getStats() read it. */

#define PACKETS_LOST_MIN (-(1LL << 23))
#define PACKETS_LOST_MAX ((1LL << 23) - 1)

typedef struct {
    PyObject_HEAD
    long long clockrate;
    long base_seq, max_seq; /* -1: not yet */
    long long cycles, packets_received, jitter_q4;
    long long last_arrival, last_timestamp; /* valid once have_last */
    int have_last;
    long long expected_prior, received_prior;
} Stats;

static PyObject *str_timestamp = NULL;

static int uint16_gt(long a, long b) { /* aiortc.utils.uint16_gt */
    return (a < b && b - a > 0x8000) || (a > b && a - b < 0x8000);
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
    int in_order = self->max_seq < 0 || uint16_gt(seq, self->max_seq);
    self->packets_received += 1;
    if (self->base_seq < 0)
        self->base_seq = seq;
    if (in_order) {
        double now;
        if (nargs == 2 && args[1] != Py_None) {
            now = PyFloat_AsDouble(args[1]);
            if (now == -1.0 && PyErr_Occurred())
                return NULL;
        } else {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            now = (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9; /* as time.time() */
        }
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

static PyTypeObject StatsType = {
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

static PyMethodDef methods[] = {
    {"set_srtp", set_srtp, METH_VARARGS, "Addresses of libsrtp's srtp_protect and srtp_unprotect."},
    {"unprotect_rtp", (PyCFunction)(void (*)(void))unprotect_rtp, METH_FASTCALL,
     "Decrypt and parse one SRTP packet; None if refused or malformed."},
    {"sockaddr", make_sockaddr, METH_VARARGS, "The sockaddr bytes for an IP literal and port."},
    {"send_frame", (PyCFunction)(void (*)(void))send_frame, METH_FASTCALL,
     "Packetise, protect and send one frame."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sfu._rtp_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rtp_native(void) {
    if (PyType_Ready(&AssemblerType) < 0 || PyType_Ready(&NacksType) < 0 || PyType_Ready(&StatsType) < 0)
        return NULL;
    if (str_sequence_number == NULL && (str_sequence_number = PyUnicode_InternFromString("sequence_number")) == NULL)
        return NULL;
    if (str_timestamp == NULL && (str_timestamp = PyUnicode_InternFromString("timestamp")) == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "FrameAssembler", (PyObject *)&AssemblerType) < 0 ||
        PyModule_AddObjectRef(m, "NackGenerator", (PyObject *)&NacksType) < 0 ||
        PyModule_AddObjectRef(m, "StreamStatistics", (PyObject *)&StatsType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
