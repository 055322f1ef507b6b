/* sfu._rtp_native: the SFU's per-packet work in C. Decrypt and parse a received RTP packet;
 * packetise, encrypt and send a frame. Python does the same in the adapter (sfu/aiortc_adapter/:
 * parse_rtp, PythonStreamWriter, PythonFrameTap) and stays the reference: the tests in
 * tests/sfu/native/ (one per source here) check both give the same bytes. Why C: in the live SFU
 * each datagram is handled shortly after the CPU woke up, when the interpreter's caches and
 * branch predictors are cold; these few hundred instructions replace a few thousand bytecodes
 * there.
 *
 * One mechanism per source, each with its header:
 *   rtp_packet.c          RTP parse and build, the libsrtp calls (set_srtp, unprotect_rtp)
 *   frame_assembler.c     FrameAssembler: payloads in, whole frames out
 *   nack_generator.c      NackGenerator: which sequence numbers are missing
 *   stream_statistics.c   StreamStatistics: RFC 3550 receiver statistics
 *   bitrate_estimator.c   BitrateEstimator: aiortc's REMB estimator (its five parts)
 *   sender.c              Sender: packetise, protect, sendto; sockaddr()
 *   forwarding_latency.c  forwarding_latency(): frame complete to sent
 *   tap.c                 Tap: the receiver's duties per packet, the route to Senders
 *   demux.c               Demux and Ingress: a connection's datagrams, routed RTP in C
 *   common.h              buffer sizes, clocks, the names interned below
 *   module.c              this file: the module, its functions and types
 *
 * The forwarding path below Python. In steady state (every consumer of a producer can take
 * every frame, nothing waits for a keyframe) a datagram is decrypted, parsed, assembled into a
 * frame and sent to each consumer's sender in this one call, without entering the interpreter:
 *
 *   Ingress.datagram_received (aioice's socket callback) -> Demux route (SSRC, payload type)
 *   -> Tap (what RTCRtpReceiver does for the publisher's sake; PythonFrameTap in Python)
 *   -> Sender x consumers (PythonStreamWriter in Python)
 *
 * Python decides everything else: which packets are ours (Demux routes are added by the Python
 * path after aiortc's own router chose the receiver), when a producer may bypass Python
 * (Tap.route, from sfu/router/producer.py as sfu/router/bypass.py decides), and what happens on
 * every rare event (NACK, PLI, the estimator's per-frame sample, an SSRC seen, a sender that
 * cannot send). */

#include "common.h"

#include "bitrate_estimator.h"
#include "demux.h"
#include "forwarding_latency.h"
#include "frame_assembler.h"
#include "nack_generator.h"
#include "rtp_packet.h"
#include "sender.h"
#include "stream_statistics.h"
#include "tap.h"

PyObject *str_sequence_number = NULL, *str_timestamp = NULL;
PyObject *int_one = NULL;
PyObject *get_dtls_state = NULL, *get_tx_srtp = NULL, *get_receiver_enabled = NULL;

int accessors_bound(void) {
    if (get_dtls_state && get_tx_srtp && get_receiver_enabled)
        return 1;
    PyErr_SetString(PyExc_RuntimeError, "sfu._rtp_native: bind_accessors() was not called "
                                        "(sfu.aiortc_adapter.native does it at import)");
    return 0;
}

/* bind_accessors(dtls_state, tx_srtp, receiver_enabled): callables taking the DTLS transport or
 * the receiver, from the contract module, the one place that names aiortc's private state. */
static PyObject *bind_accessors(PyObject *self, PyObject *args) {
    PyObject *state, *srtp, *enabled;
    if (!PyArg_ParseTuple(args, "OOO", &state, &srtp, &enabled))
        return NULL;
    if (!PyCallable_Check(state) || !PyCallable_Check(srtp) || !PyCallable_Check(enabled)) {
        PyErr_SetString(PyExc_TypeError, "bind_accessors takes three callables");
        return NULL;
    }
    Py_INCREF(state);
    Py_INCREF(srtp);
    Py_INCREF(enabled);
    Py_XSETREF(get_dtls_state, state);
    Py_XSETREF(get_tx_srtp, srtp);
    Py_XSETREF(get_receiver_enabled, enabled);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_srtp", set_srtp, METH_VARARGS, "Addresses of libsrtp's srtp_protect and srtp_unprotect."},
    {"bind_accessors", bind_accessors, METH_VARARGS,
     "bind_accessors(dtls_state, tx_srtp, receiver_enabled): how to read aiortc's private state."},
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
    if ((int_one = PyLong_FromLong(1)) == NULL)
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
