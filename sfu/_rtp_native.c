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
#include <math.h>
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

/* The fields of one decrypted RTP packet; the payload points into the packet's buffer. */
typedef struct {
    int payload_type, marker;
    long sequence;
    uint32_t timestamp, ssrc;
    const uint8_t *payload;
    Py_ssize_t payload_size;
    int padding;
    long abs_send_time; /* -1: absent */
} RtpFields;

/* RFC 3550 fixed header, CSRCs skipped, RFC 8285 one-byte extensions searched for abs-send-time
 * (abs_id < 0: not negotiated), padding removed (parse_rtp in Python). -1 if malformed. */
static int parse_rtp_fields(const uint8_t *data, int length, long abs_id, RtpFields *out) {
    if (length < 12)
        return -1;
    uint8_t first = data[0], second = data[1];
    if (first >> 6 != 2)
        return -1;
    Py_ssize_t pos = 12 + 4 * (first & 0x0F);
    if (pos > length) /* more CSRCs than the packet holds */
        return -1;
    long abs_send_time = -1;
    if (first & 0x10) {
        if (length < pos + 4)
            return -1;
        unsigned profile = (unsigned)data[pos] << 8 | data[pos + 1];
        Py_ssize_t end = pos + 4 + 4 * ((Py_ssize_t)data[pos + 2] << 8 | data[pos + 3]);
        pos += 4;
        if (length < end)
            return -1;
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
            return -1;
    }
    out->payload_type = second & 0x7F;
    out->marker = second >> 7;
    out->sequence = (long)data[2] << 8 | data[3];
    out->timestamp = (uint32_t)data[4] << 24 | (uint32_t)data[5] << 16 | (uint32_t)data[6] << 8 | data[7];
    out->ssrc = (uint32_t)data[8] << 24 | (uint32_t)data[9] << 16 | (uint32_t)data[10] << 8 | data[11];
    out->payload = data + pos;
    out->payload_size = length - padding - pos;
    out->padding = padding;
    out->abs_send_time = abs_send_time;
    return 0;
}

/* Decrypt a copy of `datagram` into `buffer` and parse it: -1 if SRTP refuses it or it is not
 * well-formed RTP. */
static int unprotect_into(uintptr_t context, const char *datagram, Py_ssize_t size, long abs_id,
                          uint8_t *buffer, RtpFields *out) {
    if (size > BUFFER_SIZE)
        return -1;
    memcpy(buffer, datagram, (size_t)size);
    int length = (int)size;
    if (srtp_unprotect_fn((void *)context, buffer, &length) != 0)
        return -1;
    return parse_rtp_fields(buffer, length, abs_id, out);
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
    uint8_t data[BUFFER_SIZE];
    RtpFields f;
    if (unprotect_into(context, PyBytes_AS_STRING(args[1]), PyBytes_GET_SIZE(args[1]), abs_id, data, &f) < 0)
        Py_RETURN_NONE;
    PyObject *abs_object;
    if (f.abs_send_time < 0) {
        abs_object = Py_None;
        Py_INCREF(Py_None);
    } else {
        abs_object = PyLong_FromLong(f.abs_send_time);
    }
    return Py_BuildValue("(iilkky#iN)", f.payload_type, f.marker, f.sequence, (unsigned long)f.timestamp,
                         (unsigned long)f.ssrc, (const char *)f.payload, f.payload_size, f.padding, abs_object);
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

/* One RTP packet of a frame into `buffer`: fixed header, the extension block as given, the VP8
 * descriptor when picture_id >= 0 (RFC 7741: X, I with a 15-bit picture id, S on a frame's first
 * packet), then the payload slice. Returns its length, before SRTP. */
static int build_packet(uint8_t *buffer, int first_byte, int payload_type, int marker, long sequence,
                        uint32_t timestamp, uint32_t ssrc, const uint8_t *ext, Py_ssize_t ext_size, long picture_id,
                        int first_of_frame, const uint8_t *payload, Py_ssize_t size) {
    uint8_t *p = buffer;
    p[0] = (uint8_t)first_byte;
    p[1] = (uint8_t)(payload_type | (marker ? 0x80 : 0));
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
    memcpy(p, ext, (size_t)ext_size);
    p += ext_size;
    if (picture_id >= 0) {
        p[0] = first_of_frame ? 0x90 : 0x80; /* X, S on the first packet, PID 0 */
        p[1] = 0x80;                         /* I: picture id present */
        p[2] = (uint8_t)(0x80 | ((picture_id >> 8) & 0x7F));
        p[3] = (uint8_t)picture_id;
        p += 4;
    }
    memcpy(p, payload, (size_t)size);
    p += size;
    return (int)(p - buffer);
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
static PyObject *assembler_push_vp8(Assembler *self, long sequence, uint32_t timestamp, int marker,
                                    const uint8_t *data, Py_ssize_t size) {
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

/* Mark sequence number `seq` received: 1 if it revealed missing ones. */
static int nacks_add_seq(Nacks *self, long seq) {
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

static double wall_clock(void) { /* as time.time() */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

static double monotonic_clock(void) { /* as time.monotonic() */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

/* Count one received packet at wall-clock time `now` (StreamStatistics.add). */
static void stats_add_packet(Stats *self, long seq, long long timestamp, double now) {
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

/* ------------------------------------------------------------------------------------------
 * BitrateEstimator: aiortc.rate.RemoteBitrateEstimator in C (InterArrival, OveruseEstimator,
 * OveruseDetector, AimdRateControl, RateCounter), the same arithmetic in the same order, so the
 * same REMBs (tests/sfu/test_aiortc_adapter.py compares it with the stock estimator). Python's
 * round() rounds half to even: rint() in the default rounding mode does too. */

#define RATE_WINDOW 1000
#define FRAME_PERIODS 60 /* MIN_FRAME_PERIOD_HISTORY_LENGTH */
#define ESTIMATOR_SSRCS 8
#define TIMESTAMP_TO_MS (1000.0 / (double)(1 << 26))
#define GROUP_LENGTH ((5LL << 26) / 1000)
enum { USAGE_NORMAL, USAGE_UNDERUSING, USAGE_OVERUSING };
enum { RATE_HOLD, RATE_INCREASE, RATE_DECREASE };

typedef struct {
    int have; /* 0: no group yet */
    uint32_t first_timestamp, last_timestamp;
    long long arrival_time, size;
} TimestampGroup;

typedef struct {
    PyObject_HEAD
    /* RateCounter(1000, 8000) */
    long long rate_count[RATE_WINDOW], rate_value[RATE_WINDOW], rate_total_count, rate_total_value;
    int rate_origin_index, rate_has_origin;
    long long rate_origin_ms;
    int incoming_bitrate_initialized;
    /* InterArrival */
    TimestampGroup current, previous;
    /* OveruseEstimator */
    double e[2][2], offset, previous_offset, slope, avg_noise, var_noise;
    int num_of_deltas;
    double periods[FRAME_PERIODS];
    int period_count, period_start;
    /* OveruseDetector */
    int hypothesis;
    int has_detector_update;
    long long detector_last_update_ms;
    int overuse_counter, has_overuse_time;
    double overuse_time, detector_previous_offset, threshold;
    /* AimdRateControl */
    int has_avg_max;
    double avg_max_bitrate_kbps, var_max_bitrate_kbps;
    long long current_bitrate, latest_estimated_throughput;
    int current_bitrate_initialized, has_first_throughput_time, has_last_change, near_max, state;
    long long first_estimated_throughput_time, last_change_ms;
    /* RemoteBitrateEstimator */
    int has_last_update;
    long long last_update_ms;
    uint32_t ssrcs[ESTIMATOR_SSRCS];
    int ssrc_count;
} Estimator;

static uint32_t u32_add(uint32_t a, uint32_t b) { return a + b; }
static int u32_gt(uint32_t a, uint32_t b) {
    return (a < b && b - a > 0x80000000u) || (a > b && a - b < 0x80000000u);
}
static long long py_round(double x) { return (long long)rint(x); }

static void rate_reset(Estimator *s) {
    memset(s->rate_count, 0, sizeof s->rate_count);
    memset(s->rate_value, 0, sizeof s->rate_value);
    s->rate_total_count = s->rate_total_value = 0;
    s->rate_origin_index = 0;
    s->rate_has_origin = 0;
}

static void rate_erase_old(Estimator *s, long long now_ms) {
    long long steps = now_ms - RATE_WINDOW + 1 - s->rate_origin_ms;
    if (steps <= 0)
        return;
    if (steps >= RATE_WINDOW) {
        memset(s->rate_count, 0, sizeof s->rate_count);
        memset(s->rate_value, 0, sizeof s->rate_value);
        s->rate_total_count = s->rate_total_value = 0;
    } else {
        for (long long k = 0; k < steps; k++) {
            int i = (int)((s->rate_origin_index + k) % RATE_WINDOW);
            s->rate_total_count -= s->rate_count[i];
            s->rate_total_value -= s->rate_value[i];
            s->rate_count[i] = s->rate_value[i] = 0;
        }
    }
    s->rate_origin_index = (int)((s->rate_origin_index + steps) % RATE_WINDOW);
    s->rate_origin_ms += steps;
}

static void rate_add(Estimator *s, long long value, long long now_ms) {
    if (!s->rate_has_origin) {
        s->rate_has_origin = 1;
        s->rate_origin_ms = now_ms;
    } else {
        rate_erase_old(s, now_ms);
    }
    long long index = ((s->rate_origin_index + now_ms - s->rate_origin_ms) % RATE_WINDOW + RATE_WINDOW) % RATE_WINDOW;
    s->rate_count[index] += 1;
    s->rate_value[index] += value;
    s->rate_total_count += 1;
    s->rate_total_value += value;
}

/* -1: None */
static long long rate_rate(Estimator *s, long long now_ms) {
    if (s->rate_has_origin) {
        rate_erase_old(s, now_ms);
        long long active = now_ms - s->rate_origin_ms + 1;
        if (s->rate_total_count > 0 && active > 1)
            return py_round((double)(8000 * s->rate_total_value) / (double)active);
    }
    return -1;
}

/* InterArrival.compute_deltas: 1 and the deltas if a group completed. */
static int compute_deltas(Estimator *s, uint32_t timestamp, long long arrival_time, long long size,
                          uint32_t *d_timestamp, long long *d_arrival, long long *d_size) {
    int have = 0;
    TimestampGroup *cur = &s->current;
    if (!cur->have) {
        cur->have = 1;
        cur->first_timestamp = cur->last_timestamp = timestamp;
        cur->size = 0;
    } else if (u32_add(timestamp, -cur->first_timestamp) >= 0x80000000u) { /* out of order */
        return 0;
    } else {
        uint32_t ts_delta = u32_add(timestamp, -cur->last_timestamp);
        long long ts_delta_ms = py_round(TIMESTAMP_TO_MS * (double)ts_delta);
        long long arrival_delta = arrival_time - cur->arrival_time;
        int burst = ts_delta_ms == 0 || (arrival_delta - ts_delta_ms < 0 && arrival_delta <= 5);
        if (!burst && u32_add(timestamp, -cur->first_timestamp) > GROUP_LENGTH) { /* a new group */
            if (s->previous.have) {
                *d_timestamp = u32_add(cur->last_timestamp, -s->previous.last_timestamp);
                *d_arrival = cur->arrival_time - s->previous.arrival_time;
                *d_size = cur->size - s->previous.size;
                have = 1;
            }
            s->previous = *cur;
            cur->first_timestamp = cur->last_timestamp = timestamp;
            cur->size = 0;
        } else if (u32_gt(timestamp, cur->last_timestamp)) {
            cur->last_timestamp = timestamp;
        }
    }
    cur->size += size;
    cur->arrival_time = arrival_time;
    return have;
}

static void update_noise_estimate(Estimator *s, double residual, double ts_delta) {
    double alpha = s->num_of_deltas > 10 * 30 ? 0.002 : 0.01;
    double beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0);
    s->avg_noise = beta * s->avg_noise + (1 - beta) * residual;
    s->var_noise = beta * s->var_noise + (1 - beta) * (s->avg_noise - residual) * (s->avg_noise - residual);
    if (s->var_noise < 1)
        s->var_noise = 1;
}

static void estimator_update(Estimator *s, long long time_delta_ms, double timestamp_delta_ms, long long size_delta,
                             int hypothesis) {
    double min_frame_period = timestamp_delta_ms; /* update_min_frame_period */
    if (s->period_count >= FRAME_PERIODS) {
        s->period_start = (s->period_start + 1) % FRAME_PERIODS;
        s->period_count--;
    }
    for (int k = 0; k < s->period_count; k++) {
        double old = s->periods[(s->period_start + k) % FRAME_PERIODS];
        if (old < min_frame_period)
            min_frame_period = old;
    }
    s->periods[(s->period_start + s->period_count) % FRAME_PERIODS] = timestamp_delta_ms;
    s->period_count++;
    double t_ts_delta = (double)time_delta_ms - timestamp_delta_ms;
    double fs_delta = (double)size_delta;
    s->num_of_deltas = s->num_of_deltas + 1 < 1000 ? s->num_of_deltas + 1 : 1000;
    s->e[0][0] += 1e-13;
    s->e[1][1] += 1e-3;
    if ((hypothesis == USAGE_OVERUSING && s->offset < s->previous_offset) ||
        (hypothesis == USAGE_UNDERUSING && s->offset > s->previous_offset))
        s->e[1][1] += 10 * 1e-3;
    double h0 = fs_delta, h1 = 1.0;
    double eh0 = s->e[0][0] * h0 + s->e[0][1] * h1, eh1 = s->e[1][0] * h0 + s->e[1][1] * h1;
    double residual = t_ts_delta - s->slope * h0 - s->offset;
    if (hypothesis == USAGE_NORMAL) {
        double max_residual = 3.0 * sqrt(s->var_noise);
        if (fabs(residual) < max_residual)
            update_noise_estimate(s, residual, min_frame_period);
        else
            update_noise_estimate(s, residual < 0 ? -max_residual : max_residual, min_frame_period);
    }
    double denom = s->var_noise + h0 * eh0 + h1 * eh1;
    double k0 = eh0 / denom, k1 = eh1 / denom;
    double ikh00 = 1.0 - k0 * h0, ikh01 = -k0 * h1, ikh10 = -k1 * h0, ikh11 = 1.0 - k1 * h1;
    double e00 = s->e[0][0], e01 = s->e[0][1];
    s->e[0][0] = e00 * ikh00 + s->e[1][0] * ikh01;
    s->e[0][1] = e01 * ikh00 + s->e[1][1] * ikh01;
    s->e[1][0] = e00 * ikh10 + s->e[1][0] * ikh11;
    s->e[1][1] = e01 * ikh10 + s->e[1][1] * ikh11;
    s->previous_offset = s->offset;
    s->slope += k0 * residual;
    s->offset += k1 * residual;
}

static void detector_update_threshold(Estimator *s, double modified_offset, long long now_ms) {
    if (!s->has_detector_update) {
        s->has_detector_update = 1;
        s->detector_last_update_ms = now_ms;
    }
    if (fabs(modified_offset) > s->threshold + 15) {
        s->detector_last_update_ms = now_ms;
        return;
    }
    double k = fabs(modified_offset) < s->threshold ? 0.039 : 0.0087;
    long long time_delta_ms = now_ms - s->detector_last_update_ms;
    if (time_delta_ms > 100)
        time_delta_ms = 100;
    s->threshold += k * (fabs(modified_offset) - s->threshold) * (double)time_delta_ms;
    s->threshold = s->threshold < 6 ? 6 : s->threshold > 600 ? 600 : s->threshold;
    s->detector_last_update_ms = now_ms;
}

static void detector_detect(Estimator *s, double offset, double timestamp_delta_ms, int num_of_deltas,
                            long long now_ms) {
    if (num_of_deltas < 2)
        return; /* NORMAL returned, nothing changed */
    double t = (num_of_deltas < 60 ? num_of_deltas : 60) * offset;
    if (t > s->threshold) {
        if (!s->has_overuse_time) {
            s->has_overuse_time = 1;
            s->overuse_time = timestamp_delta_ms / 2;
        } else {
            s->overuse_time += timestamp_delta_ms;
        }
        s->overuse_counter += 1;
        if (s->overuse_time > 10 && s->overuse_counter > 1 && offset >= s->detector_previous_offset) {
            s->overuse_counter = 0;
            s->overuse_time = 0;
            s->hypothesis = USAGE_OVERUSING;
        }
    } else if (t < -s->threshold) {
        s->overuse_counter = 0;
        s->has_overuse_time = 0;
        s->hypothesis = USAGE_UNDERUSING;
    } else {
        s->overuse_counter = 0;
        s->has_overuse_time = 0;
        s->hypothesis = USAGE_NORMAL;
    }
    s->detector_previous_offset = offset;
    detector_update_threshold(s, t, now_ms);
}

static long long clamp_bitrate(Estimator *s, long long new_bitrate, long long estimated_throughput) {
    long long max_bitrate = (long long)(1.5 * (double)estimated_throughput) + 10000;
    if (s->current_bitrate > max_bitrate)
        max_bitrate = s->current_bitrate;
    return new_bitrate < max_bitrate ? new_bitrate : max_bitrate;
}

static void update_max_throughput_estimate(Estimator *s, double kbps) {
    double alpha = 0.05;
    if (!s->has_avg_max) {
        s->has_avg_max = 1;
        s->avg_max_bitrate_kbps = kbps;
    } else {
        s->avg_max_bitrate_kbps = (1 - alpha) * s->avg_max_bitrate_kbps + alpha * kbps;
    }
    double norm = s->avg_max_bitrate_kbps > 1 ? s->avg_max_bitrate_kbps : 1;
    s->var_max_bitrate_kbps = (1 - alpha) * s->var_max_bitrate_kbps +
                              alpha * ((s->avg_max_bitrate_kbps - kbps) * (s->avg_max_bitrate_kbps - kbps)) / norm;
    s->var_max_bitrate_kbps = s->var_max_bitrate_kbps < 0.4 ? 0.4 : s->var_max_bitrate_kbps > 2.5 ? 2.5
                                                                                                    : s->var_max_bitrate_kbps;
}

/* AimdRateControl.update: -1 for None. estimated_throughput -1: None. */
static long long rate_control_update(Estimator *s, int usage, long long estimated_throughput, long long now_ms) {
    if (!s->current_bitrate_initialized && estimated_throughput >= 0) {
        if (!s->has_first_throughput_time) {
            s->has_first_throughput_time = 1;
            s->first_estimated_throughput_time = now_ms;
        } else if (now_ms - s->first_estimated_throughput_time > 3000) {
            s->current_bitrate = estimated_throughput;
            s->current_bitrate_initialized = 1;
        }
    }
    if (!s->current_bitrate_initialized && usage != USAGE_OVERUSING)
        return -1;
    if (usage == USAGE_NORMAL && s->state == RATE_HOLD) {
        s->last_change_ms = now_ms;
        s->has_last_change = 1;
        s->state = RATE_INCREASE;
    } else if (usage == USAGE_OVERUSING) {
        s->state = RATE_DECREASE;
    } else if (usage == USAGE_UNDERUSING) {
        s->state = RATE_HOLD;
    }
    long long new_bitrate = s->current_bitrate;
    if (estimated_throughput >= 0)
        s->latest_estimated_throughput = estimated_throughput;
    else
        estimated_throughput = s->latest_estimated_throughput;
    double kbps = (double)estimated_throughput / 1000;
    if (s->state == RATE_INCREASE) {
        if (s->has_avg_max) {
            double sigma = sqrt(s->var_max_bitrate_kbps * s->avg_max_bitrate_kbps);
            if (kbps >= s->avg_max_bitrate_kbps + 3 * sigma) {
                s->near_max = 0;
                s->has_avg_max = 0;
            }
        }
        if (s->near_max) { /* additive */
            double bits_per_frame = (double)s->current_bitrate / 30;
            double packets_per_frame = ceil(bits_per_frame / (8 * 1200));
            double avg_packet_size_bits = bits_per_frame / packets_per_frame;
            long long response_time = 200 + 100;
            long long increase = (long long)((avg_packet_size_bits * 1000) / (double)response_time);
            if (increase < 4000)
                increase = 4000;
            new_bitrate += (long long)((double)(now_ms - s->last_change_ms) * (double)increase / 1000);
        } else { /* multiplicative */
            double alpha = 1.08;
            if (s->has_last_change) {
                long long elapsed = now_ms - s->last_change_ms < 1000 ? now_ms - s->last_change_ms : 1000;
                alpha = pow(alpha, (double)elapsed / 1000);
            }
            double increase = (alpha - 1) * (double)new_bitrate;
            new_bitrate += (long long)(increase > 1000 ? increase : 1000);
        }
        s->last_change_ms = now_ms;
        s->has_last_change = 1;
    } else if (s->state == RATE_DECREASE) {
        if (s->has_avg_max) {
            double sigma = sqrt(s->var_max_bitrate_kbps * s->avg_max_bitrate_kbps);
            if (kbps < s->avg_max_bitrate_kbps - 3 * sigma)
                s->has_avg_max = 0;
        }
        update_max_throughput_estimate(s, kbps);
        s->near_max = 1;
        new_bitrate = py_round(0.85 * (double)estimated_throughput);
        s->last_change_ms = now_ms;
        s->has_last_change = 1;
        s->state = RATE_HOLD;
    }
    s->current_bitrate = clamp_bitrate(s, new_bitrate, estimated_throughput);
    return s->current_bitrate;
}

/* RemoteBitrateEstimator.add: the new estimate (bits/s), or -1 for none. */
static long long estimator_add(Estimator *s, long long arrival_time_ms, long abs_send_time, long long payload_size,
                               uint32_t ssrc) {
    uint32_t timestamp = (uint32_t)abs_send_time << 8;
    int known = 0;
    for (int i = 0; i < s->ssrc_count; i++)
        known |= s->ssrcs[i] == ssrc;
    if (!known && s->ssrc_count < ESTIMATOR_SSRCS)
        s->ssrcs[s->ssrc_count++] = ssrc;
    if (rate_rate(s, arrival_time_ms) >= 0) {
        s->incoming_bitrate_initialized = 1;
    } else if (s->incoming_bitrate_initialized) {
        rate_reset(s);
        s->incoming_bitrate_initialized = 0;
    }
    rate_add(s, payload_size, arrival_time_ms);
    uint32_t d_timestamp;
    long long d_arrival, d_size;
    if (compute_deltas(s, timestamp, arrival_time_ms, payload_size, &d_timestamp, &d_arrival, &d_size)) {
        double timestamp_delta_ms = (double)d_timestamp * TIMESTAMP_TO_MS;
        estimator_update(s, d_arrival, timestamp_delta_ms, d_size, s->hypothesis);
        detector_detect(s, s->offset, timestamp_delta_ms, s->num_of_deltas, arrival_time_ms);
    }
    int update = !s->has_last_update || arrival_time_ms - s->last_update_ms > 500 ||
                 s->hypothesis == USAGE_OVERUSING;
    if (update) {
        long long target = rate_control_update(s, s->hypothesis, rate_rate(s, arrival_time_ms), arrival_time_ms);
        if (target >= 0) {
            s->has_last_update = 1;
            s->last_update_ms = arrival_time_ms;
            return target;
        }
    }
    return -1;
}

static PyObject *estimator_ssrcs(Estimator *s) {
    PyObject *list = PyList_New(s->ssrc_count);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < s->ssrc_count; i++) {
        PyObject *number = PyLong_FromUnsignedLong(s->ssrcs[i]);
        if (number == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, number);
    }
    return list;
}

static int estimator_init(Estimator *s, PyObject *args, PyObject *kwargs) {
    if (!PyArg_ParseTuple(args, ":BitrateEstimator"))
        return -1;
    memset((char *)s + sizeof(PyObject), 0, sizeof(Estimator) - sizeof(PyObject));
    s->incoming_bitrate_initialized = 1;
    s->e[0][0] = 100.0;
    s->e[1][1] = 0.1;
    s->slope = 1.0 / 64;
    s->var_noise = 50.0;
    s->threshold = 12.5;
    s->var_max_bitrate_kbps = 0.4;
    s->current_bitrate = s->latest_estimated_throughput = 30000000;
    return 0;
}

/* add(arrival_time_ms, abs_send_time, payload_size, ssrc) -> (bitrate, ssrcs) or None, as aiortc's. */
static PyObject *estimator_add_method(Estimator *s, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"arrival_time_ms", "abs_send_time", "payload_size", "ssrc", NULL};
    long long arrival, size;
    long abs_send_time;
    unsigned long ssrc;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LlLk", keywords, &arrival, &abs_send_time, &size, &ssrc))
        return NULL;
    long long bitrate = estimator_add(s, arrival, abs_send_time, size, (uint32_t)ssrc);
    if (bitrate < 0)
        Py_RETURN_NONE;
    PyObject *ssrcs = estimator_ssrcs(s);
    return ssrcs == NULL ? NULL : Py_BuildValue("(LN)", bitrate, ssrcs);
}

static PyMethodDef estimator_methods[] = {
    {"add", (PyCFunction)(void (*)(void))estimator_add_method, METH_VARARGS | METH_KEYWORDS,
     "One sample; a new REMB estimate (bitrate, ssrcs) or None."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.BitrateEstimator",
    .tp_basicsize = sizeof(Estimator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's RemoteBitrateEstimator in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)estimator_init,
    .tp_methods = estimator_methods,
};


/* ------------------------------------------------------------------------------------------
 * The forwarding path below Python. In steady state (every consumer of a producer can take
 * every frame, nothing waits for a keyframe) a datagram is decrypted, parsed, assembled into a
 * frame and sent to each consumer's sender in this one call, without entering the interpreter:
 *
 *   Ingress.datagram_received (aioice's socket callback) -> Demux route (SSRC, payload type)
 *   -> Tap (what RTCRtpReceiver does for the publisher's sake; _FrameTap in Python)
 *   -> Sender x consumers (DirectRtpSender in Python)
 *
 * Python decides everything else: which packets are ours (Demux routes are added by the Python
 * path after aiortc's own router chose the receiver), when a producer may bypass Python
 * (Tap.route, from sfu/router/producer.py), and what happens on every rare event (NACK, PLI,
 * the estimator's per-frame sample, an SSRC seen, a sender that cannot send). */

/* Forwarding latency (frame complete -> last datagram sent), in microseconds, every frame a
 * Sender sent since the last reset. */
#define LATENCY_BUCKETS 20001 /* 0..20000 us; the last bucket holds everything later */
static uint32_t latency_us[LATENCY_BUCKETS];

static void record_latency(double since) {
    double us = (monotonic_clock() - since) * 1e6;
    long bucket = us < 0 ? 0 : us >= LATENCY_BUCKETS - 1 ? LATENCY_BUCKETS - 1 : (long)us;
    latency_us[bucket] += 1;
}

static PyObject *forwarding_latency(PyObject *self, PyObject *args) {
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

static PyObject *str_state = NULL, *str_tx_srtp = NULL, *str_enabled = NULL, *int_one = NULL;

/* The NTP time now, as aiortc.clock.current_ntp_time (with the adapter's fast clock). */
static unsigned long long ntp_now(void) {
    double now = wall_clock() + 2208988800.0;
    unsigned long long seconds = (unsigned long long)now;
    return seconds << 32 | (unsigned long long)((now - (double)seconds) * 4294967296.0);
}

static long long current_ms(void) { return (long long)((wall_clock() + 2208988800.0) * 1000.0); }

/* ---------------------------------------------------------------- Sender */

#define HISTORY 512 /* packets kept for retransmission, as DirectRtpSender's _HISTORY */
#define EXT_MAX 64

typedef struct {
    PyObject_HEAD
    int video;
    int payload_type;
    uint32_t ssrc;
    uint8_t ext_head[EXT_MAX], ext_tail[EXT_MAX]; /* the abs-send-time bytes go between them */
    int ext_head_size, ext_tail_size, has_abs;
    long sequence, picture_id;
    uint32_t timestamp_origin, last_timestamp;
    int have_last, rebase;
    double last_frame_at;
    unsigned long long last_ntp;
    long long packets_sent, octets_sent, send_failures, frames_sent;
    /* the path (set_path): the SRTP context and socket, and what must still hold to use them */
    uintptr_t context;
    int fd;
    struct sockaddr_storage address;
    socklen_t address_size;
    PyObject *session, *dtls, *connected, *nominated, *pair;
    PyObject *history[HISTORY];
    long history_seq[HISTORY];
} Sender;

static void sender_clear_path(Sender *self) {
    self->context = 0;
    Py_CLEAR(self->session);
    Py_CLEAR(self->dtls);
    Py_CLEAR(self->connected);
    Py_CLEAR(self->nominated);
    Py_CLEAR(self->pair);
}

/* 1 if the path set last still carries media: the DTLS transport connected with the same SRTP
 * session and ICE still nominating the same pair. 0 if not, -1 on error. */
static int sender_ready(Sender *self) {
    if (!self->context || self->fd < 0) /* no socket of its own: only Python can send for it */
        return 0;
    if (self->nominated != NULL) {
        PyObject *pair = PyDict_GetItemWithError(self->nominated, int_one); /* borrowed */
        if (pair != self->pair)
            return PyErr_Occurred() ? -1 : 0;
    }
    if (self->dtls != NULL) {
        PyObject *state = PyObject_GetAttr(self->dtls, str_state);
        if (state == NULL)
            return -1;
        int same = state == self->connected;
        Py_DECREF(state);
        if (!same)
            return 0;
        PyObject *session = PyObject_GetAttr(self->dtls, str_tx_srtp);
        if (session == NULL)
            return -1;
        same = session == self->session;
        Py_DECREF(session);
        if (!same)
            return 0;
    }
    return 1;
}

/* Send one frame (timestamp: the producer's count from 0, in clock_rate units). Without a socket
 * (fd < 0: a transport that is not one, in tests) the datagrams are appended to `collect`
 * instead. 0, or -1 with an exception set. */
static int sender_send(Sender *self, const uint8_t *frame, Py_ssize_t frame_size, long long timestamp,
                       long clock_rate, double received_at, PyObject *collect) {
    if (!self->context) {
        PyErr_SetString(PyExc_RuntimeError, "Sender has no path (set_path)");
        return -1;
    }
    if (self->rebase) { /* another producer feeds us now: its stream carries on ours */
        self->rebase = 0;
        if (self->have_last) {
            long long elapsed = (long long)((received_at - self->last_frame_at) * (double)clock_rate);
            if (elapsed < 1)
                elapsed = 1;
            self->timestamp_origin = (uint32_t)(((long long)self->last_timestamp + elapsed - timestamp) & 0xFFFFFFFF);
        }
    }
    uint32_t rtp_timestamp = (uint32_t)(((long long)self->timestamp_origin + timestamp) & 0xFFFFFFFF);
    unsigned long long ntp = ntp_now();
    uint8_t ext[2 * EXT_MAX + 3];
    Py_ssize_t ext_size = 0;
    memcpy(ext, self->ext_head, (size_t)self->ext_head_size);
    ext_size += self->ext_head_size;
    if (self->has_abs) {
        unsigned long abs = (unsigned long)((ntp >> 14) & 0xFFFFFF);
        ext[ext_size++] = (uint8_t)(abs >> 16);
        ext[ext_size++] = (uint8_t)(abs >> 8);
        ext[ext_size++] = (uint8_t)abs;
    }
    memcpy(ext + ext_size, self->ext_tail, (size_t)self->ext_tail_size);
    ext_size += self->ext_tail_size;
    int first_byte = ext_size ? 0x90 : 0x80;
    Py_ssize_t chunk = self->video ? VP8_PAYLOAD_MAX : frame_size;
    Py_ssize_t packets = self->video ? (frame_size + VP8_PAYLOAD_MAX - 1) / VP8_PAYLOAD_MAX : 1;
    if (packets == 0)
        packets = 1;
    if (12 + ext_size + (self->video ? 4 : 0) + chunk > BUFFER_SIZE - SRTP_MAX_TRAILER) {
        PyErr_SetString(PyExc_ValueError, "packet is too long");
        return -1;
    }
    uint8_t buffer[BUFFER_SIZE];
    long long octets = 0;
    long sequence = self->sequence;
    for (Py_ssize_t index = 0; index < packets; index++) {
        Py_ssize_t offset = index * chunk;
        Py_ssize_t size = frame_size - offset < chunk ? frame_size - offset : chunk;
        if (size < 0)
            size = 0;
        int length = build_packet(buffer, first_byte, self->payload_type, index == packets - 1, sequence, rtp_timestamp,
                                  self->ssrc, ext, ext_size, self->video ? self->picture_id : -1, index == 0,
                                  frame + offset, size);
        octets += size + (self->video ? 4 : 0);
        int status = srtp_protect_fn((void *)self->context, buffer, &length);
        if (status != 0) {
            PyErr_Format(PyExc_RuntimeError, "libsrtp protect failed (error %d)", status);
            return -1;
        }
        if (self->fd < 0) {
            PyObject *datagram = collect != NULL ? PyBytes_FromStringAndSize((const char *)buffer, length) : NULL;
            int failed = datagram == NULL || PyList_Append(collect, datagram) < 0;
            Py_XDECREF(datagram);
            if (failed) {
                if (!PyErr_Occurred())
                    PyErr_SetString(PyExc_RuntimeError, "Sender has no socket");
                return -1;
            }
        } else if (sendto(self->fd, buffer, (size_t)length, 0, (const struct sockaddr *)&self->address,
                          self->address_size) < 0) {
            self->send_failures += 1;
        }
        if (self->video) { /* audio is not retransmitted (as aiortc) */
            PyObject *packet = PyBytes_FromStringAndSize((const char *)buffer, length);
            if (packet == NULL)
                return -1;
            Py_XSETREF(self->history[sequence % HISTORY], packet);
            self->history_seq[sequence % HISTORY] = sequence;
        }
        sequence = (sequence + 1) & 0xFFFF;
    }
    if (self->video)
        self->picture_id = (self->picture_id + 1) & 0x7FFF;
    self->sequence = sequence;
    self->last_timestamp = rtp_timestamp;
    self->last_frame_at = received_at;
    self->have_last = 1;
    self->last_ntp = ntp;
    self->packets_sent += packets;
    self->octets_sent += octets;
    self->frames_sent += 1;
    record_latency(received_at);
    return 0;
}

static int sender_init(Sender *self, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"video", "sequence", "timestamp_origin", "picture_id", NULL};
    int video;
    long sequence, picture_id;
    unsigned long origin;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "plkl", keywords, &video, &sequence, &origin, &picture_id))
        return -1;
    self->video = video;
    self->fd = -1;
    self->sequence = sequence & 0xFFFF;
    self->timestamp_origin = (uint32_t)origin;
    self->picture_id = picture_id & 0x7FFF;
    for (int i = 0; i < HISTORY; i++)
        self->history_seq[i] = -1;
    return 0;
}

/* The path refers to aiortc's objects, which refer back to us (RTCRtpSender._openvisit_native):
 * the collector must see those references to free a closed connection. */
static int sender_traverse(Sender *self, visitproc visit, void *arg) {
    Py_VISIT(self->session);
    Py_VISIT(self->dtls);
    Py_VISIT(self->connected);
    Py_VISIT(self->nominated);
    Py_VISIT(self->pair);
    return 0;
}

static int sender_clear(Sender *self) {
    sender_clear_path(self);
    return 0;
}

static void sender_dealloc(Sender *self) {
    PyObject_GC_UnTrack(self);
    sender_clear_path(self);
    for (int i = 0; i < HISTORY; i++)
        Py_CLEAR(self->history[i]);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* configure(payload_type, ssrc, ext_head, ext_tail, has_abs_send_time) */
static PyObject *sender_configure(Sender *self, PyObject *args) {
    int payload_type, has_abs;
    unsigned long ssrc;
    const char *head, *tail;
    Py_ssize_t head_size, tail_size;
    if (!PyArg_ParseTuple(args, "iky#y#p", &payload_type, &ssrc, &head, &head_size, &tail, &tail_size, &has_abs))
        return NULL;
    if (head_size > EXT_MAX || tail_size > EXT_MAX) {
        PyErr_SetString(PyExc_ValueError, "header extensions too long");
        return NULL;
    }
    self->payload_type = payload_type & 0x7F;
    self->ssrc = (uint32_t)ssrc;
    memcpy(self->ext_head, head, (size_t)head_size);
    memcpy(self->ext_tail, tail, (size_t)tail_size);
    self->ext_head_size = (int)head_size;
    self->ext_tail_size = (int)tail_size;
    self->has_abs = has_abs;
    Py_RETURN_NONE;
}

/* set_path(context, session, fd, sockaddr, dtls, connected_state, nominated, pair): the last four
 * may be None (no check). */
static PyObject *sender_set_path(Sender *self, PyObject *args) {
    unsigned long long context;
    int fd;
    PyObject *session, *dtls, *connected, *nominated, *pair;
    const char *address;
    Py_ssize_t address_size;
    if (!PyArg_ParseTuple(args, "KOiy#OOOO", &context, &session, &fd, &address, &address_size, &dtls, &connected,
                          &nominated, &pair))
        return NULL;
    if (address_size > (Py_ssize_t)sizeof self->address) {
        PyErr_SetString(PyExc_ValueError, "sockaddr too long");
        return NULL;
    }
    if (nominated != Py_None && !PyDict_Check(nominated)) {
        PyErr_SetString(PyExc_TypeError, "nominated must be a dict or None");
        return NULL;
    }
    sender_clear_path(self);
    self->context = (uintptr_t)context;
    self->fd = fd;
    memcpy(&self->address, address, (size_t)address_size);
    self->address_size = (socklen_t)address_size;
    self->session = Py_NewRef(session);
    if (dtls != Py_None) {
        self->dtls = Py_NewRef(dtls);
        self->connected = Py_NewRef(connected);
    }
    if (nominated != Py_None) {
        self->nominated = Py_NewRef(nominated);
        self->pair = Py_NewRef(pair);
    }
    Py_RETURN_NONE;
}

static PyObject *sender_clear_path_method(Sender *self, PyObject *unused) {
    sender_clear_path(self);
    Py_RETURN_NONE;
}

static PyObject *sender_ready_method(Sender *self, PyObject *unused) {
    int ready = sender_ready(self);
    return ready < 0 ? NULL : PyBool_FromLong(ready);
}

/* send(data, timestamp, clock_rate, received_at): one frame on the path set last. Returns None,
 * or without a socket (fd < 0) the list of datagrams for the caller to send. */
static PyObject *sender_send_method(Sender *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "send(data: bytes, timestamp, clock_rate, received_at)");
        return NULL;
    }
    long long timestamp = PyLong_AsLongLong(args[1]);
    long clock_rate = PyLong_AsLong(args[2]);
    double received_at = PyFloat_AsDouble(args[3]);
    if (PyErr_Occurred())
        return NULL;
    PyObject *collect = NULL;
    if (self->fd < 0 && (collect = PyList_New(0)) == NULL)
        return NULL;
    if (sender_send(self, (const uint8_t *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), timestamp,
                    clock_rate, received_at, collect) < 0) {
        Py_XDECREF(collect);
        return NULL;
    }
    if (collect != NULL)
        return collect;
    Py_RETURN_NONE;
}

static PyObject *sender_source_changed(Sender *self, PyObject *unused) {
    self->rebase = 1;
    Py_RETURN_NONE;
}

/* sent_packet(sequence_number) -> the protected datagram sent with it, or None (for a NACK). */
static PyObject *sender_sent_packet(Sender *self, PyObject *arg) {
    long sequence = PyLong_AsLong(arg);
    if (sequence == -1 && PyErr_Occurred())
        return NULL;
    long slot = (sequence & 0xFFFF) % HISTORY;
    if (self->history[slot] == NULL || self->history_seq[slot] != (sequence & 0xFFFF))
        Py_RETURN_NONE;
    return Py_NewRef(self->history[slot]);
}

static PyObject *sender_get_last_timestamp(Sender *self, void *c) {
    return PyLong_FromUnsignedLong(self->last_timestamp);
}
static PyObject *sender_get_last_ntp(Sender *self, void *c) { return PyLong_FromUnsignedLongLong(self->last_ntp); }

static PyMethodDef sender_methods[] = {
    {"configure", (PyCFunction)sender_configure, METH_VARARGS, "The negotiated payload type, SSRC, extensions."},
    {"set_path", (PyCFunction)sender_set_path, METH_VARARGS, "The SRTP context and socket to send on."},
    {"clear_path", (PyCFunction)sender_clear_path_method, METH_NOARGS, "Forget the path (connection gone)."},
    {"ready", (PyCFunction)sender_ready_method, METH_NOARGS, "Whether the path set last still carries media."},
    {"send", (PyCFunction)(void (*)(void))sender_send_method, METH_FASTCALL, "Send one frame."},
    {"source_changed", (PyCFunction)sender_source_changed, METH_NOARGS,
     "Another producer feeds this sender now: carry its RTP clock on."},
    {"sent_packet", (PyCFunction)sender_sent_packet, METH_O, "The datagram sent with a sequence number, or None."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef sender_members[] = {
    {"packets_sent", T_LONGLONG, offsetof(Sender, packets_sent), READONLY, NULL},
    {"octets_sent", T_LONGLONG, offsetof(Sender, octets_sent), READONLY, "payload octets (RTCP sender reports)"},
    {"send_failures", T_LONGLONG, offsetof(Sender, send_failures), READONLY, "datagrams the socket refused"},
    {"frames_sent", T_LONGLONG, offsetof(Sender, frames_sent), READONLY, NULL},
    {"picture_id", T_LONG, offsetof(Sender, picture_id), READONLY, "the next VP8 picture id"},
    {NULL, 0, 0, 0, NULL},
};

static PyObject *sender_get_sequence(Sender *self, void *c) { return PyLong_FromLong(self->sequence); }

static int sender_set_sequence(Sender *self, PyObject *value, void *c) {
    long sequence = value == NULL ? -1 : PyLong_AsLong(value);
    if (sequence < 0 || sequence > 0xFFFF) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "sequence must be 0..65535");
        return -1;
    }
    self->sequence = sequence;
    return 0;
}

static PyGetSetDef sender_getset[] = {
    {"sequence", (getter)sender_get_sequence, (setter)sender_set_sequence,
     "the next sequence number (settable, as DirectRtpSender's)", NULL},
    {"last_timestamp", (getter)sender_get_last_timestamp, NULL, "RTP timestamp of the last frame sent", NULL},
    {"last_ntp", (getter)sender_get_last_ntp, NULL, "NTP time the last frame was sent", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)sender_traverse,
    .tp_clear = (inquiry)sender_clear,
    .tp_doc = "DirectRtpSender's packetise + SRTP + sendto, with its stream state and history, in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sender_init,
    .tp_dealloc = (destructor)sender_dealloc,
    .tp_methods = sender_methods,
    .tp_members = sender_members,
    .tp_getset = sender_getset,
};

/* ---------------------------------------------------------------- Tap */

#define CODECS_MAX 16
#define NOTED_MAX 8

typedef struct {
    int payload_type, clock_rate, rtx, apt, vp8;
} Codec;

typedef struct {
    PyObject_HEAD
    int video;
    PyObject *receiver, *streams, *rtx_ssrc; /* the receiver and two of its tables */
    Nacks *nacks;                            /* NULL: no NACKs (audio) */
    Assembler *assembler;                    /* video */
    Codec codecs[CODECS_MAX];
    int codec_count;
    PyObject *frame_type, *kind, *on_frame, *on_nack, *on_pli, *on_ssrc, *on_remb;
    Estimator *estimator; /* NULL: no REMB (audio) */
    long frames_lost;
    int waiting_for_keyframe;
    long late;             /* _TimestampUnwrapper */
    int have_last_timestamp;
    uint32_t last_timestamp;
    long long mapped;
    uint32_t noted_ssrc[NOTED_MAX];
    long long noted_at[NOTED_MAX];
    int noted_count;
    int sample_open; /* the estimator's sample of the current frame */
    uint32_t sample_timestamp, sample_ssrc;
    long long sample_bytes, sample_send_time, sample_arrival_ms;
    PyObject *outputs; /* tuple of Sender: frames go straight to them; NULL: every frame to on_frame */
    long long fast_frames, fast_bytes;
    double window_start;
    long long window_bytes, incoming_bitrate; /* -1: not yet */
} Tap;

static Codec *tap_codec(Tap *self, int payload_type) {
    for (int i = 0; i < self->codec_count; i++)
        if (self->codecs[i].payload_type == payload_type)
            return &self->codecs[i];
    return NULL;
}

static int call_with_ssrc(PyObject *callable, uint32_t ssrc) {
    PyObject *number = PyLong_FromUnsignedLong(ssrc);
    if (number == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(callable, number);
    Py_DECREF(number);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

static int tap_feed_estimator(Tap *self) {
    int status = 0;
    if (self->sample_bytes) {
        long long bitrate = estimator_add(self->estimator, self->sample_arrival_ms, (long)self->sample_send_time,
                                          self->sample_bytes, self->sample_ssrc);
        if (bitrate >= 0) { /* a REMB to send */
            PyObject *ssrcs = estimator_ssrcs(self->estimator);
            PyObject *result = ssrcs == NULL ? NULL : PyObject_CallFunction(self->on_remb, "LN", bitrate, ssrcs);
            if (result == NULL)
                status = -1;
            Py_XDECREF(result);
        }
    }
    self->sample_bytes = 0;
    self->sample_open = 0;
    return status;
}

/* The frame to the consumers' senders, if the producer lets us and every one of them can send
 * now: 1 if sent, 0 if Python must deliver it, -1 on error. */
static int tap_forward(Tap *self, const uint8_t *data, Py_ssize_t size, long long timestamp, long clock_rate,
                       double received_at) {
    PyObject *outputs = self->outputs;
    if (outputs == NULL)
        return 0;
    Py_ssize_t count = PyTuple_GET_SIZE(outputs);
    for (Py_ssize_t i = 0; i < count; i++) {
        int ready = sender_ready((Sender *)PyTuple_GET_ITEM(outputs, i));
        if (ready < 0)
            return -1;
        if (!ready) { /* back to Python, which knows what to do with a sender that cannot send */
            Py_CLEAR(self->outputs);
            return 0;
        }
    }
    Py_INCREF(outputs);
    for (Py_ssize_t i = 0; i < count; i++) {
        if (sender_send((Sender *)PyTuple_GET_ITEM(outputs, i), data, size, timestamp, clock_rate, received_at,
                        NULL) < 0) {
            Py_DECREF(outputs);
            return -1;
        }
    }
    Py_DECREF(outputs);
    self->fast_frames += 1;
    self->fast_bytes += size;
    return 1;
}

/* _FrameTap._deliver: a complete frame. `frame` is a bytes object (a new reference is taken
 * only if Python gets it). */
static int tap_deliver(Tap *self, Codec *codec, PyObject *frame, uint32_t rtp_timestamp) {
    long long timestamp;
    if (!self->have_last_timestamp) { /* _TimestampUnwrapper.map */
        self->have_last_timestamp = 1;
        self->last_timestamp = rtp_timestamp;
        timestamp = 0;
    } else {
        uint32_t delta = rtp_timestamp - self->last_timestamp;
        if (delta >= 0x80000000u) { /* behind the newest */
            if (0x100000000LL - delta <= self->late)
                return 0; /* late */
            delta = 1;    /* the sender started over */
        }
        self->last_timestamp = rtp_timestamp;
        self->mapped += delta;
        timestamp = self->mapped;
    }
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(frame);
    Py_ssize_t size = PyBytes_GET_SIZE(frame);
    int keyframe = self->video ? size > 0 && (data[0] & 0x01) == 0 : 1;
    if (self->waiting_for_keyframe) {
        if (!keyframe)
            return 0;
        self->waiting_for_keyframe = 0;
    }
    double received_at = monotonic_clock();
    double elapsed = received_at - self->window_start; /* Producer.publish's bitrate window */
    if (elapsed >= 2.0) {
        if (self->window_start != 0.0)
            self->incoming_bitrate = (long long)((double)(self->window_bytes * 8) / elapsed);
        self->window_start = received_at;
        self->window_bytes = 0;
    }
    self->window_bytes += size;
    int forwarded = tap_forward(self, data, size, timestamp, codec->clock_rate, received_at);
    if (forwarded != 0)
        return forwarded < 0 ? -1 : 0;
    PyObject *args[6] = {self->kind, frame, NULL, NULL, keyframe ? Py_True : Py_False, NULL};
    args[2] = PyLong_FromLongLong(timestamp);
    args[3] = PyLong_FromLong(codec->clock_rate);
    args[5] = PyFloat_FromDouble(received_at);
    PyObject *encoded = NULL;
    if (args[2] != NULL && args[3] != NULL && args[5] != NULL)
        encoded = PyObject_Vectorcall(self->frame_type, args, 6, NULL);
    Py_XDECREF(args[2]);
    Py_XDECREF(args[3]);
    Py_XDECREF(args[5]);
    if (encoded == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(self->on_frame, encoded);
    Py_DECREF(encoded);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* _FrameTap.handle for one decrypted packet. 0, or -1 with an exception set. */
static int tap_handle(Tap *self, RtpFields *f, long long arrival_ms) {
    PyObject *enabled = PyObject_GetAttr(self->receiver, str_enabled);
    if (enabled == NULL)
        return -1;
    int on = PyObject_IsTrue(enabled);
    Py_DECREF(enabled);
    if (on <= 0)
        return on;
    if (self->estimator != NULL && f->abs_send_time >= 0) {
        if (!self->sample_open || f->timestamp != self->sample_timestamp) {
            if (tap_feed_estimator(self) < 0)
                return -1;
            self->sample_timestamp = f->timestamp;
            self->sample_open = 1;
        }
        self->sample_bytes += f->payload_size + f->padding;
        self->sample_send_time = f->abs_send_time;
        self->sample_arrival_ms = arrival_ms;
        self->sample_ssrc = f->ssrc;
        if (f->marker && tap_feed_estimator(self) < 0)
            return -1;
    }
    int noted = 0; /* getSynchronizationSources(): each SSRC once a second */
    while (noted < self->noted_count && self->noted_ssrc[noted] != f->ssrc)
        noted++;
    long long noted_at = noted < self->noted_count ? self->noted_at[noted] : -10000;
    if (arrival_ms - noted_at >= 1000) {
        if (noted == self->noted_count && noted < NOTED_MAX) {
            self->noted_ssrc[noted] = f->ssrc;
            self->noted_count++;
        }
        if (noted < NOTED_MAX)
            self->noted_at[noted] = arrival_ms;
        if (call_with_ssrc(self->on_ssrc, f->ssrc) < 0)
            return -1;
    }
    Codec *codec = tap_codec(self, f->payload_type);
    if (codec == NULL)
        return 0;
    PyObject *ssrc_key = PyLong_FromUnsignedLong(f->ssrc);
    if (ssrc_key == NULL)
        return -1;
    PyObject *stats = PyDict_GetItemWithError(self->streams, ssrc_key); /* borrowed */
    if (stats == NULL && PyErr_Occurred()) {
        Py_DECREF(ssrc_key);
        return -1;
    }
    if (stats == NULL || !PyObject_TypeCheck(stats, &StatsType)) { /* none yet, or aiortc's own (before the tap) */
        if ((stats = PyObject_CallFunction((PyObject *)&StatsType, "i", codec->clock_rate)) == NULL) {
            Py_DECREF(ssrc_key);
            return -1;
        }
        int failed = PyDict_SetItem(self->streams, ssrc_key, stats);
        Py_DECREF(stats); /* the table holds it */
        if (failed) {
            Py_DECREF(ssrc_key);
            return -1;
        }
    }
    stats_add_packet((Stats *)stats, f->sequence, (long long)f->timestamp, wall_clock());
    long sequence = f->sequence;
    uint32_t ssrc = f->ssrc;
    const uint8_t *payload = f->payload;
    Py_ssize_t payload_size = f->payload_size;
    if (codec->rtx) { /* RFC 4588: the original sequence number, then the original payload */
        PyObject *original = PyDict_GetItemWithError(self->rtx_ssrc, ssrc_key);
        Py_DECREF(ssrc_key);
        Codec *inner = codec->apt >= 0 ? tap_codec(self, codec->apt) : NULL;
        if (original == NULL || payload_size < 2 || inner == NULL)
            return PyErr_Occurred() ? -1 : 0;
        ssrc = (uint32_t)PyLong_AsUnsignedLong(original);
        if (PyErr_Occurred())
            return -1;
        sequence = (long)payload[0] << 8 | payload[1];
        payload += 2;
        payload_size -= 2;
        codec = inner;
    } else {
        Py_DECREF(ssrc_key);
    }
    if (self->nacks != NULL && nacks_add_seq(self->nacks, sequence) && call_with_ssrc(self->on_nack, ssrc) < 0)
        return -1;
    if (self->assembler == NULL) { /* audio: one packet, one frame */
        if (payload_size == 0)
            return 0;
        PyObject *frame = PyBytes_FromStringAndSize((const char *)payload, payload_size);
        if (frame == NULL)
            return -1;
        int status = tap_deliver(self, codec, frame, f->timestamp);
        Py_DECREF(frame);
        return status;
    }
    if (!codec->vp8)
        return 0; /* the room negotiates VP8 only */
    PyObject *frames = assembler_push_vp8(self->assembler, sequence, f->timestamp, f->marker, payload, payload_size);
    if (frames == NULL)
        return -1;
    if (self->assembler->frames_lost != self->frames_lost) { /* a retransmission never came */
        self->frames_lost = self->assembler->frames_lost;
        self->waiting_for_keyframe = 1;
        if (call_with_ssrc(self->on_pli, ssrc) < 0) {
            Py_DECREF(frames);
            return -1;
        }
    }
    int status = 0;
    if (frames != Py_None) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(frames) && status == 0; i++) {
            PyObject *item = PyList_GET_ITEM(frames, i);
            uint32_t timestamp = (uint32_t)PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 0));
            status = tap_deliver(self, codec, PyTuple_GET_ITEM(item, 1), timestamp);
        }
    }
    Py_DECREF(frames);
    return status;
}

/* Tap(video, receiver, streams, rtx_ssrc, nacks, codecs, frame_type, kind, on_frame, on_nack,
 *     on_pli, on_ssrc, estimator, on_remb): codecs is a list of (payload_type, clock_rate, is_rtx,
 *     apt | -1, is_vp8); nacks a NackGenerator or None; estimator a BitrateEstimator (fed one
 *     sample per frame) or None; on_remb(bitrate, ssrcs) sends what it estimates. */
static int tap_init(Tap *self, PyObject *args, PyObject *kwargs) {
    int video;
    PyObject *receiver, *streams, *rtx_ssrc, *nacks, *codecs, *frame_type, *kind, *on_frame, *on_nack, *on_pli,
        *on_ssrc, *estimator, *on_remb;
    if (!PyArg_ParseTuple(args, "pOO!O!OO!OOOOOOOO", &video, &receiver, &PyDict_Type, &streams, &PyDict_Type,
                          &rtx_ssrc, &nacks, &PyList_Type, &codecs, &frame_type, &kind, &on_frame, &on_nack, &on_pli,
                          &on_ssrc, &estimator, &on_remb))
        return -1;
    if (estimator != Py_None && !PyObject_TypeCheck(estimator, &EstimatorType)) {
        PyErr_SetString(PyExc_TypeError, "estimator must be a sfu._rtp_native.BitrateEstimator or None");
        return -1;
    }
    if (nacks != Py_None && !PyObject_TypeCheck(nacks, &NacksType)) {
        PyErr_SetString(PyExc_TypeError, "nacks must be a sfu._rtp_native.NackGenerator or None");
        return -1;
    }
    if (PyList_GET_SIZE(codecs) > CODECS_MAX) {
        PyErr_SetString(PyExc_ValueError, "too many codecs");
        return -1;
    }
    self->codec_count = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(codecs); i++) {
        Codec *c = &self->codecs[self->codec_count];
        if (!PyArg_ParseTuple(PyList_GET_ITEM(codecs, i), "iipip", &c->payload_type, &c->clock_rate, &c->rtx,
                              &c->apt, &c->vp8))
            return -1;
        self->codec_count++;
    }
    self->video = video;
    Py_XSETREF(self->receiver, Py_NewRef(receiver));
    Py_XSETREF(self->streams, Py_NewRef(streams));
    Py_XSETREF(self->rtx_ssrc, Py_NewRef(rtx_ssrc));
    Py_XSETREF(self->nacks, nacks == Py_None ? NULL : (Nacks *)Py_NewRef(nacks));
    Py_CLEAR(self->assembler);
    if (video && (self->assembler = (Assembler *)PyObject_CallNoArgs((PyObject *)&AssemblerType)) == NULL)
        return -1;
    Py_XSETREF(self->frame_type, Py_NewRef(frame_type));
    Py_XSETREF(self->kind, Py_NewRef(kind));
    Py_XSETREF(self->on_frame, Py_NewRef(on_frame));
    Py_XSETREF(self->on_nack, Py_NewRef(on_nack));
    Py_XSETREF(self->on_pli, Py_NewRef(on_pli));
    Py_XSETREF(self->on_ssrc, Py_NewRef(on_ssrc));
    Py_XSETREF(self->estimator, estimator == Py_None ? NULL : (Estimator *)Py_NewRef(estimator));
    Py_XSETREF(self->on_remb, Py_NewRef(on_remb));
    self->late = video ? 90000 / 2 : 48000 / 2;
    self->incoming_bitrate = -1;
    return 0;
}

static int tap_traverse(Tap *self, visitproc visit, void *arg) {
    Py_VISIT(self->receiver);
    Py_VISIT(self->streams);
    Py_VISIT(self->rtx_ssrc);
    Py_VISIT(self->on_frame);
    Py_VISIT(self->on_nack);
    Py_VISIT(self->on_pli);
    Py_VISIT(self->on_ssrc);
    Py_VISIT(self->on_remb);
    Py_VISIT(self->outputs);
    return 0;
}

static int tap_clear(Tap *self) {
    Py_CLEAR(self->receiver);
    Py_CLEAR(self->streams);
    Py_CLEAR(self->rtx_ssrc);
    Py_CLEAR(self->nacks);
    Py_CLEAR(self->assembler);
    Py_CLEAR(self->frame_type);
    Py_CLEAR(self->kind);
    Py_CLEAR(self->on_frame);
    Py_CLEAR(self->on_nack);
    Py_CLEAR(self->on_pli);
    Py_CLEAR(self->on_ssrc);
    Py_CLEAR(self->estimator);
    Py_CLEAR(self->on_remb);
    Py_CLEAR(self->outputs);
    return 0;
}

static void tap_dealloc(Tap *self) {
    PyObject_GC_UnTrack(self);
    tap_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* handle(payload_type, marker, sequence_number, timestamp, ssrc, payload, padding_size,
 *        abs_send_time | None, arrival_ms): one decrypted packet (the Python path's entry). */
static PyObject *tap_handle_method(Tap *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9 || !PyBytes_Check(args[5])) {
        PyErr_SetString(PyExc_TypeError, "handle(payload_type, marker, sequence_number, timestamp, ssrc, "
                                         "payload: bytes, padding_size, abs_send_time, arrival_ms)");
        return NULL;
    }
    RtpFields f;
    f.payload_type = (int)PyLong_AsLong(args[0]);
    f.marker = PyObject_IsTrue(args[1]);
    f.sequence = PyLong_AsLong(args[2]) & 0xFFFF;
    f.timestamp = (uint32_t)PyLong_AsUnsignedLong(args[3]);
    f.ssrc = (uint32_t)PyLong_AsUnsignedLong(args[4]);
    f.payload = (const uint8_t *)PyBytes_AS_STRING(args[5]);
    f.payload_size = PyBytes_GET_SIZE(args[5]);
    f.padding = (int)PyLong_AsLong(args[6]);
    f.abs_send_time = args[7] == Py_None ? -1 : PyLong_AsLong(args[7]);
    long long arrival_ms = PyLong_AsLongLong(args[8]);
    if (PyErr_Occurred())
        return NULL;
    if (tap_handle(self, &f, arrival_ms) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* route(outputs | None): frames go straight to these Senders from now on (None: to on_frame). */
static PyObject *tap_route(Tap *self, PyObject *outputs) {
    if (outputs == Py_None) {
        Py_CLEAR(self->outputs);
        Py_RETURN_NONE;
    }
    if (!PyTuple_Check(outputs)) {
        PyErr_SetString(PyExc_TypeError, "outputs must be a tuple of Sender or None");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(outputs); i++) {
        if (!PyObject_TypeCheck(PyTuple_GET_ITEM(outputs, i), &SenderType)) {
            PyErr_SetString(PyExc_TypeError, "outputs must be a tuple of Sender or None");
            return NULL;
        }
    }
    Py_XSETREF(self->outputs, Py_NewRef(outputs));
    Py_RETURN_NONE;
}

static PyObject *tap_get_routed(Tap *self, void *c) { return PyBool_FromLong(self->outputs != NULL); }
static PyObject *tap_get_incoming_bitrate(Tap *self, void *c) {
    if (self->incoming_bitrate < 0)
        Py_RETURN_NONE;
    return PyLong_FromLongLong(self->incoming_bitrate);
}
static PyObject *tap_get_frames_lost(Tap *self, void *c) { return PyLong_FromLong(self->frames_lost); }
static PyObject *tap_get_waiting(Tap *self, void *c) { return PyBool_FromLong(self->waiting_for_keyframe); }

static PyMethodDef tap_methods[] = {
    {"handle", (PyCFunction)(void (*)(void))tap_handle_method, METH_FASTCALL, "Handle one decrypted RTP packet."},
    {"route", (PyCFunction)tap_route, METH_O, "Send frames straight to these Senders (None: to on_frame)."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef tap_members[] = {
    {"fast_frames", T_LONGLONG, offsetof(Tap, fast_frames), READONLY, "frames sent without entering Python"},
    {"fast_bytes", T_LONGLONG, offsetof(Tap, fast_bytes), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef tap_getset[] = {
    {"routed", (getter)tap_get_routed, NULL, "whether frames go straight to Senders now", NULL},
    {"incoming_bitrate", (getter)tap_get_incoming_bitrate, NULL, "bits/s over the last ~2 s window, or None", NULL},
    {"frames_lost", (getter)tap_get_frames_lost, NULL, "frames the assembler gave up", NULL},
    {"waiting_for_keyframe", (getter)tap_get_waiting, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "sfu.aiortc_adapter._FrameTap in C, with a route straight to Senders",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tap_init,
    .tp_traverse = (traverseproc)tap_traverse,
    .tp_clear = (inquiry)tap_clear,
    .tp_dealloc = (destructor)tap_dealloc,
    .tp_methods = tap_methods,
    .tp_members = tap_members,
    .tp_getset = tap_getset,
};

/* ---------------------------------------------------------------- Demux and Ingress */

#define ROUTES_MAX 16

typedef struct {
    PyObject_HEAD
    uintptr_t context;
    PyObject *session; /* keeps the receiving SRTP context alive */
    long abs_send_time_id;
    uint32_t route_ssrc[ROUTES_MAX];
    int route_type[ROUTES_MAX];
    PyObject *route_tap[ROUTES_MAX];
    int route_count;
} Demux;

static int demux_init(Demux *self, PyObject *args, PyObject *kwargs) {
    if (!PyArg_ParseTuple(args, ":Demux"))
        return -1;
    self->abs_send_time_id = -1;
    return 0;
}

static int demux_traverse(Demux *self, visitproc visit, void *arg) {
    for (int i = 0; i < self->route_count; i++)
        Py_VISIT(self->route_tap[i]);
    return 0;
}

static int demux_clear(Demux *self) {
    for (int i = 0; i < self->route_count; i++)
        Py_CLEAR(self->route_tap[i]);
    self->route_count = 0;
    Py_CLEAR(self->session);
    self->context = 0;
    return 0;
}

static void demux_dealloc(Demux *self) {
    PyObject_GC_UnTrack(self);
    demux_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* set_srtp(context, session, abs_send_time_id): the receiving SRTP session (the session object is
 * kept alive) and the negotiated abs-send-time id (< 0: none). */
static PyObject *demux_set_srtp(Demux *self, PyObject *args) {
    unsigned long long context;
    PyObject *session;
    long abs_id;
    if (!PyArg_ParseTuple(args, "KOl", &context, &session, &abs_id))
        return NULL;
    Py_XSETREF(self->session, Py_NewRef(session));
    self->context = (uintptr_t)context;
    self->abs_send_time_id = abs_id;
    Py_RETURN_NONE;
}

/* route(ssrc, payload_type, tap): packets of this SSRC and payload type are the tap's. */
static PyObject *demux_route(Demux *self, PyObject *args) {
    unsigned long ssrc;
    int payload_type;
    PyObject *tap;
    if (!PyArg_ParseTuple(args, "kiO!", &ssrc, &payload_type, &TapType, &tap))
        return NULL;
    for (int i = 0; i < self->route_count; i++) {
        if (self->route_ssrc[i] == (uint32_t)ssrc && self->route_type[i] == payload_type) {
            Py_XSETREF(self->route_tap[i], Py_NewRef(tap));
            Py_RETURN_NONE;
        }
    }
    if (self->route_count == ROUTES_MAX) /* unusual: the rest keep the Python path */
        Py_RETURN_FALSE;
    self->route_ssrc[self->route_count] = (uint32_t)ssrc;
    self->route_type[self->route_count] = payload_type;
    self->route_tap[self->route_count] = Py_NewRef(tap);
    self->route_count++;
    Py_RETURN_TRUE;
}

/* unroute(tap): forget every route to it (its receiver stopped). */
static PyObject *demux_unroute(Demux *self, PyObject *tap) {
    int kept = 0;
    for (int i = 0; i < self->route_count; i++) {
        if (self->route_tap[i] == tap) {
            Py_CLEAR(self->route_tap[i]);
            continue;
        }
        self->route_ssrc[kept] = self->route_ssrc[i];
        self->route_type[kept] = self->route_type[i];
        self->route_tap[kept] = self->route_tap[i];
        kept++;
    }
    self->route_count = kept;
    Py_RETURN_NONE;
}

static PyObject *demux_get_routes(Demux *self, void *c) { return PyLong_FromLong(self->route_count); }

typedef struct {
    PyObject_HEAD
    Demux *demux;
    PyObject *fallback; /* the socket protocol's own datagram_received */
} Ingress;

static PyTypeObject IngressType;

/* ingress(fallback) -> an Ingress: its datagram_received stands in for `fallback`. */
static PyObject *demux_ingress(Demux *self, PyObject *fallback) {
    Ingress *ingress = PyObject_GC_New(Ingress, &IngressType);
    if (ingress == NULL)
        return NULL;
    ingress->demux = (Demux *)Py_NewRef(self);
    ingress->fallback = Py_NewRef(fallback);
    PyObject_GC_Track(ingress);
    return (PyObject *)ingress;
}

static PyMethodDef demux_methods[] = {
    {"set_srtp", (PyCFunction)demux_set_srtp, METH_VARARGS, "The receiving SRTP session and abs-send-time id."},
    {"route", (PyCFunction)demux_route, METH_VARARGS, "Packets of (ssrc, payload_type) go to a Tap."},
    {"unroute", (PyCFunction)demux_unroute, METH_O, "Forget every route to a Tap."},
    {"ingress", (PyCFunction)demux_ingress, METH_O, "A datagram_received standing in for a socket's own."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef demux_getset[] = {
    {"routes", (getter)demux_get_routes, NULL, "how many (ssrc, payload type) routes there are", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DemuxType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Demux",
    .tp_basicsize = sizeof(Demux),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "One ICE connection's RTP, routed by (SSRC, payload type) to Taps in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)demux_init,
    .tp_traverse = (traverseproc)demux_traverse,
    .tp_clear = (inquiry)demux_clear,
    .tp_dealloc = (destructor)demux_dealloc,
    .tp_methods = demux_methods,
    .tp_getset = demux_getset,
};

static PyObject *ingress_fallback(Ingress *self, PyObject *const *args, Py_ssize_t nargs) {
    return PyObject_Vectorcall(self->fallback, args, (size_t)nargs, NULL);
}

/* datagram_received(data, addr): SRTP of a routed (SSRC, payload type) is handled here; anything
 * else (STUN, DTLS, RTCP, RTP not routed yet) goes to the Python path. */
static PyObject *ingress_datagram_received(Ingress *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyBytes_Check(args[0]))
        return ingress_fallback(self, args, nargs);
    Demux *demux = self->demux;
    const uint8_t *data = (const uint8_t *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (!demux->context || size < 12 || data[0] < 128 || data[0] > 191 || (data[1] > 191 && data[1] < 209))
        return ingress_fallback(self, args, nargs);
    uint32_t ssrc = (uint32_t)data[8] << 24 | (uint32_t)data[9] << 16 | (uint32_t)data[10] << 8 | data[11];
    int payload_type = data[1] & 0x7F;
    PyObject *tap = NULL;
    for (int i = 0; i < demux->route_count; i++) {
        if (demux->route_ssrc[i] == ssrc && demux->route_type[i] == payload_type) {
            tap = demux->route_tap[i];
            break;
        }
    }
    if (tap == NULL)
        return ingress_fallback(self, args, nargs);
    uint8_t buffer[BUFFER_SIZE];
    RtpFields f;
    if (unprotect_into(demux->context, (const char *)data, size, demux->abs_send_time_id, buffer, &f) < 0)
        Py_RETURN_NONE; /* refused by SRTP or malformed: dropped, as the Python path does */
    Py_INCREF(tap); /* a callback may unroute it */
    int status = tap_handle((Tap *)tap, &f, current_ms());
    Py_DECREF(tap);
    if (status < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int ingress_traverse(Ingress *self, visitproc visit, void *arg) {
    Py_VISIT(self->demux);
    Py_VISIT(self->fallback);
    return 0;
}

static int ingress_clear(Ingress *self) {
    Py_CLEAR(self->demux);
    Py_CLEAR(self->fallback);
    return 0;
}

static void ingress_dealloc(Ingress *self) {
    PyObject_GC_UnTrack(self);
    ingress_clear(self);
    PyObject_GC_Del(self);
}

static PyMethodDef ingress_methods[] = {
    {"datagram_received", (PyCFunction)(void (*)(void))ingress_datagram_received, METH_FASTCALL,
     "A datagram from the socket: routed RTP handled in C, the rest to the Python path."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject IngressType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Ingress",
    .tp_basicsize = sizeof(Ingress),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "A socket's datagram_received in C (made by Demux.ingress)",
    .tp_traverse = (traverseproc)ingress_traverse,
    .tp_clear = (inquiry)ingress_clear,
    .tp_dealloc = (destructor)ingress_dealloc,
    .tp_methods = ingress_methods,
};

static PyMethodDef methods[] = {
    {"set_srtp", set_srtp, METH_VARARGS, "Addresses of libsrtp's srtp_protect and srtp_unprotect."},
    {"unprotect_rtp", (PyCFunction)(void (*)(void))unprotect_rtp, METH_FASTCALL,
     "Decrypt and parse one SRTP packet; None if refused or malformed."},
    {"sockaddr", make_sockaddr, METH_VARARGS, "The sockaddr bytes for an IP literal and port."},
    {"forwarding_latency", forwarding_latency, METH_VARARGS,
     "forwarding_latency(reset=False) -> [(microseconds, frames)]: frame complete to sent, every frame sent."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "sfu._rtp_native", NULL, -1, methods};

PyMODINIT_FUNC PyInit__rtp_native(void) {
    if (PyType_Ready(&AssemblerType) < 0 || PyType_Ready(&NacksType) < 0 || PyType_Ready(&StatsType) < 0 ||
        PyType_Ready(&SenderType) < 0 || PyType_Ready(&TapType) < 0 || PyType_Ready(&DemuxType) < 0 ||
        PyType_Ready(&IngressType) < 0 || PyType_Ready(&EstimatorType) < 0)
        return NULL;
    if ((str_state = PyUnicode_InternFromString("_state")) == NULL ||
        (str_tx_srtp = PyUnicode_InternFromString("_tx_srtp")) == NULL ||
        (str_enabled = PyUnicode_InternFromString("_enabled")) == NULL || (int_one = PyLong_FromLong(1)) == NULL)
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
        PyModule_AddObjectRef(m, "StreamStatistics", (PyObject *)&StatsType) < 0 ||
        PyModule_AddObjectRef(m, "Sender", (PyObject *)&SenderType) < 0 ||
        PyModule_AddObjectRef(m, "Tap", (PyObject *)&TapType) < 0 ||
        PyModule_AddObjectRef(m, "Demux", (PyObject *)&DemuxType) < 0 ||
        PyModule_AddObjectRef(m, "BitrateEstimator", (PyObject *)&EstimatorType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
