/* RTP packets on the wire. In: a received datagram decrypted with libsrtp and parsed (RFC 3550
 * header, RFC 8285 abs-send-time, padding); parse_rtp in the Python adapter is the reference
 * (tests/sfu/native/test_rtp_packet.py). Out: one packet of a frame built for the Sender, which
 * encrypts it with srtp_protect_fn (tests/sfu/native/test_sender.py).
 *
 * libsrtp is not linked here: pylibsrtp's binding already carries it, and hands us the
 * addresses of srtp_protect / srtp_unprotect and of each session's context (set_srtp). */

#include "rtp_packet.h"

#include <string.h>

srtp_call srtp_protect_fn = NULL;
static srtp_call srtp_unprotect_fn = NULL;

PyObject *set_srtp(PyObject *self, PyObject *args) {
    unsigned long long protect, unprotect;
    if (!PyArg_ParseTuple(args, "KK", &protect, &unprotect))
        return NULL;
    srtp_protect_fn = (srtp_call)(uintptr_t)protect;
    srtp_unprotect_fn = (srtp_call)(uintptr_t)unprotect;
    Py_RETURN_NONE;
}

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
int unprotect_into(uintptr_t context, const char *datagram, Py_ssize_t size, long abs_id, uint8_t *buffer,
                   RtpFields *out) {
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
PyObject *unprotect_rtp(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
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

/* One RTP packet of a frame into `buffer`: fixed header, the extension block as given, the VP8
 * descriptor when picture_id >= 0 (RFC 7741: X, I with a 15-bit picture id, S on a frame's first
 * packet), then the payload slice. Returns its length, before SRTP. */
int build_packet(uint8_t *buffer, int first_byte, int payload_type, int marker, long sequence, uint32_t timestamp,
                 uint32_t ssrc, const uint8_t *ext, Py_ssize_t ext_size, long picture_id, int first_of_frame,
                 const uint8_t *payload, Py_ssize_t size) {
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
