/* Sender: PythonStreamWriter (the adapter's stream writer) in C: packetise a frame (VP8 payload
 * descriptor, header extensions with abs-send-time), protect each packet with libsrtp and
 * sendto() it on the ICE connection's own socket, keeping the stream's sequence numbers, RTP
 * clock, counters and the history a NACK is answered from. The path it sends on (set_path) holds
 * only while aiortc's DTLS transport and ICE pair are the ones it was set with (sender_ready).
 * tests/sfu/native/test_sender.py compares its datagrams with the Python path's, byte for byte. */

#include "sender.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "forwarding_latency.h"
#include "rtp_packet.h"

#define HISTORY 512 /* packets kept for retransmission, as PythonStreamWriter's HISTORY */
#define EXT_MAX 64

struct Sender {
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
};

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
int sender_ready(Sender *self) {
    if (!self->context || self->fd < 0) /* no socket of its own: only Python can send for it */
        return 0;
    if (self->nominated != NULL) {
        PyObject *pair = PyDict_GetItemWithError(self->nominated, int_one); /* borrowed */
        if (pair != self->pair)
            return PyErr_Occurred() ? -1 : 0;
    }
    if (self->dtls != NULL) {
        if (!accessors_bound())
            return -1;
        PyObject *state = PyObject_CallOneArg(get_dtls_state, self->dtls);
        if (state == NULL)
            return -1;
        int same = state == self->connected;
        Py_DECREF(state);
        if (!same)
            return 0;
        PyObject *session = PyObject_CallOneArg(get_tx_srtp, self->dtls);
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
int sender_send(Sender *self, const uint8_t *frame, Py_ssize_t frame_size, long long timestamp, long clock_rate,
                double received_at, PyObject *collect) {
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
     "the next sequence number (settable, as PythonStreamWriter's)", NULL},
    {"last_timestamp", (getter)sender_get_last_timestamp, NULL, "RTP timestamp of the last frame sent", NULL},
    {"last_ntp", (getter)sender_get_last_ntp, NULL, "NTP time the last frame was sent", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject SenderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Sender",
    .tp_basicsize = sizeof(Sender),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)sender_traverse,
    .tp_clear = (inquiry)sender_clear,
    .tp_doc = "PythonStreamWriter's packetise + SRTP, plus sendto, with its stream state and history, in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)sender_init,
    .tp_dealloc = (destructor)sender_dealloc,
    .tp_methods = sender_methods,
    .tp_members = sender_members,
    .tp_getset = sender_getset,
};


/* sockaddr(host, port) -> bytes: the address sendto() needs, for an IPv4 or IPv6 literal. */
PyObject *make_sockaddr(PyObject *self, PyObject *args) {
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
