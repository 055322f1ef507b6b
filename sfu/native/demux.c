/* Demux and Ingress: where the forwarding path below Python starts (the path is drawn in
 * module.c). An Ingress stands in for an ICE connection's socket callback (datagram_received):
 * SRTP whose (SSRC, payload type) the Demux routes to a Tap is decrypted, parsed and handed to
 * that Tap here, without entering the interpreter; anything else (STUN, DTLS, RTCP, RTP not
 * routed yet) goes to the socket protocol's own datagram_received. The Python path adds the
 * routes after aiortc's own router chose the receiver. tests/sfu/native/test_demux.py. */

#include "demux.h"

#include "rtp_packet.h"
#include "tap.h"

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

PyTypeObject DemuxType = {
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

PyTypeObject IngressType = {
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
