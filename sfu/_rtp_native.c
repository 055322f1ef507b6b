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

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

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

PyMODINIT_FUNC PyInit__rtp_native(void) { return PyModule_Create(&module); }
