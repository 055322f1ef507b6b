/* Tap: what aiortc's RTCRtpReceiver does for the publisher's sake with each packet (PythonFrameTap
 * in the Python adapter is the reference): receiver statistics, NACKs, RTX unwrapped, frames
 * assembled, keyframe requests after a loss, the REMB estimator's per-frame sample, each SSRC
 * noted once a second. A complete frame goes to Python (on_frame) or, once the producer routes
 * the tap (Tap.route, from sfu/router/producer.py), straight to its consumers' Senders while
 * every one of them can send. tests/sfu/native/test_tap.py runs it against PythonFrameTap. */

#include "tap.h"

#include "bitrate_estimator.h"
#include "frame_assembler.h"
#include "nack_generator.h"
#include "sender.h"
#include "stream_statistics.h"

#define CODECS_MAX 16
#define NOTED_MAX 8

typedef struct {
    int payload_type, clock_rate, rtx, apt, vp8;
} Codec;

struct Tap {
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
};

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

/* PythonFrameTap._deliver: a complete frame. `frame` is a bytes object (a new reference is taken
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

/* PythonFrameTap.handle for one decrypted packet. 0, or -1 with an exception set. */
int tap_handle(Tap *self, RtpFields *f, long long arrival_ms) {
    if (!accessors_bound())
        return -1;
    PyObject *enabled = PyObject_CallOneArg(get_receiver_enabled, self->receiver);
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
    long frames_lost = assembler_frames_lost(self->assembler);
    if (frames_lost != self->frames_lost) { /* a retransmission never came */
        self->frames_lost = frames_lost;
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

PyTypeObject TapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.Tap",
    .tp_basicsize = sizeof(Tap),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "sfu.aiortc_adapter.PythonFrameTap in C, with a route straight to Senders",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)tap_init,
    .tp_traverse = (traverseproc)tap_traverse,
    .tp_clear = (inquiry)tap_clear,
    .tp_dealloc = (destructor)tap_dealloc,
    .tp_methods = tap_methods,
    .tp_members = tap_members,
    .tp_getset = tap_getset,
};
