/* Sender: one consumer's outgoing stream; packetises, encrypts and sends a frame (sender.c). The
 * Tap sends routed frames straight to Senders. */

#ifndef OPENVISIT_NATIVE_SENDER_H
#define OPENVISIT_NATIVE_SENDER_H

#include "common.h"

typedef struct Sender Sender;

extern PyTypeObject SenderType; /* sfu._rtp_native.Sender */

/* 1 if the path set last still carries media, 0 if not, -1 on error. */
int sender_ready(Sender *self);

/* Send one frame (timestamp: the producer's count from 0, in clock_rate units); without a socket
 * the datagrams are appended to `collect`. 0, or -1 with an exception set. */
int sender_send(Sender *self, const uint8_t *frame, Py_ssize_t frame_size, long long timestamp, long clock_rate,
                double received_at, PyObject *collect);

/* Module function sockaddr(host, port) -> bytes, the address set_path() takes. */
PyObject *make_sockaddr(PyObject *self, PyObject *args);

#endif
