/* What every source of sfu._rtp_native shares: the Python headers, the datagram buffer sizes,
 * the clocks (the statistics, the tap, the sender and the ingress read them per packet, so they
 * are inline here) and the names interned once at import (module.c).
 *
 * The extension is built with -fvisibility=hidden: the functions and type objects the sources
 * share are not exported from the .so; only PyInit__rtp_native is (PyMODINIT_FUNC). */

#ifndef OPENVISIT_NATIVE_COMMON_H
#define OPENVISIT_NATIVE_COMMON_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <time.h>

#define BUFFER_SIZE 2048     /* a datagram (<= 1500 bytes) and its SRTP trailer */
#define SRTP_MAX_TRAILER 144 /* SRTP_MAX_TRAILER_LEN in libsrtp 2 */
#define VP8_PAYLOAD_MAX 1296 /* bytes of frame per packet, after the 4-byte descriptor (as aiortc) */

/* Attribute names looked up per packet and the key 1 (ICE's nominated pair), made at import. */
extern PyObject *str_sequence_number, *str_timestamp, *int_one;
/* aiortc's private state, read through accessors the adapter's contract module hands over
 * (sfu/aiortc_adapter/contract.py: bind_accessors at import); no aiortc name is spelled in C. */
extern PyObject *get_dtls_state, *get_tx_srtp, *get_receiver_enabled;
int accessors_bound(void);

/* A sequence number kept as -1 until known: None until then, as in aiortc. */
static inline PyObject *optional_long(long value) {
    if (value < 0)
        Py_RETURN_NONE;
    return PyLong_FromLong(value);
}

static inline double wall_clock(void) { /* as time.time() */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

static inline double monotonic_clock(void) { /* as time.monotonic() */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

/* The NTP time now, as aiortc.clock.current_ntp_time (with the adapter's fast clock). */
static inline unsigned long long ntp_now(void) {
    double now = wall_clock() + 2208988800.0;
    unsigned long long seconds = (unsigned long long)now;
    return seconds << 32 | (unsigned long long)((now - (double)seconds) * 4294967296.0);
}

/* The NTP time now in milliseconds, as aiortc.clock.current_ms (a packet's arrival time). */
static inline long long current_ms(void) { return (long long)((wall_clock() + 2208988800.0) * 1000.0); }

#endif
