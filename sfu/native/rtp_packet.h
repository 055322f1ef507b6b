/* RTP packets on the wire: a received datagram decrypted (libsrtp) and parsed into its fields, a
 * frame's packet built for the sender to encrypt. See rtp_packet.c. */

#ifndef OPENVISIT_NATIVE_RTP_PACKET_H
#define OPENVISIT_NATIVE_RTP_PACKET_H

#include "common.h"

typedef int (*srtp_call)(void *context, void *packet, int *length);

/* libsrtp's srtp_protect, as set_srtp() was given it (NULL before). */
extern srtp_call srtp_protect_fn;

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

int unprotect_into(uintptr_t context, const char *datagram, Py_ssize_t size, long abs_id, uint8_t *buffer,
                   RtpFields *out);
int build_packet(uint8_t *buffer, int first_byte, int payload_type, int marker, long sequence, uint32_t timestamp,
                 uint32_t ssrc, const uint8_t *ext, Py_ssize_t ext_size, long picture_id, int first_of_frame,
                 const uint8_t *payload, Py_ssize_t size);

/* Module functions: set_srtp(protect, unprotect), unprotect_rtp(context, datagram, abs_send_time_id). */
PyObject *set_srtp(PyObject *self, PyObject *args);
PyObject *unprotect_rtp(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

#endif
