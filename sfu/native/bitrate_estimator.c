/* BitrateEstimator: aiortc.rate.RemoteBitrateEstimator in C (InterArrival, OveruseEstimator,
 * OveruseDetector, AimdRateControl, RateCounter), the same arithmetic in the same order, so the
 * same REMBs (tests/sfu/native/test_bitrate_estimator.py compares it with the stock estimator).
 * Python's round() rounds half to even: rint() in the default rounding mode does too. */

#include "bitrate_estimator.h"

#include <math.h>
#include <string.h>

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

struct Estimator {
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
};

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
long long estimator_add(Estimator *s, long long arrival_time_ms, long abs_send_time, long long payload_size,
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

PyObject *estimator_ssrcs(Estimator *s) {
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

PyTypeObject EstimatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "sfu._rtp_native.BitrateEstimator",
    .tp_basicsize = sizeof(Estimator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "aiortc's RemoteBitrateEstimator in C",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)estimator_init,
    .tp_methods = estimator_methods,
};
