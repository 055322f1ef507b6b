/* StreamStatistics: RFC 3550 receiver statistics of one SSRC (stream_statistics.c), kept by the
 * Tap in the receiver's statistics table. */

#ifndef OPENVISIT_NATIVE_STREAM_STATISTICS_H
#define OPENVISIT_NATIVE_STREAM_STATISTICS_H

#include "common.h"

typedef struct Stats Stats;

extern PyTypeObject StatsType; /* sfu._rtp_native.StreamStatistics */

/* Count one received packet at wall-clock time `now` (StreamStatistics.add). */
void stats_add_packet(Stats *self, long seq, long long timestamp, double now);

#endif
