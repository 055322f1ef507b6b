/* BitrateEstimator: aiortc's receive-side bandwidth estimate, the REMB the SFU sends a publisher
 * (bitrate_estimator.c). The Tap feeds it one sample per video frame. */

#ifndef OPENVISIT_NATIVE_BITRATE_ESTIMATOR_H
#define OPENVISIT_NATIVE_BITRATE_ESTIMATOR_H

#include "common.h"

typedef struct Estimator Estimator;

extern PyTypeObject EstimatorType; /* sfu._rtp_native.BitrateEstimator */

/* RemoteBitrateEstimator.add: the new estimate (bits/s), or -1 for none. */
long long estimator_add(Estimator *s, long long arrival_time_ms, long abs_send_time, long long payload_size,
                        uint32_t ssrc);

/* The SSRCs seen so far, as a new list (the REMB's). */
PyObject *estimator_ssrcs(Estimator *s);

#endif
