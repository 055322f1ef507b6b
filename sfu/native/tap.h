/* Tap: what aiortc's RTCRtpReceiver does with a publisher's packet, and the route of its frames
 * straight to Senders (tap.c). The Ingress hands it each routed, decrypted packet. */

#ifndef OPENVISIT_NATIVE_TAP_H
#define OPENVISIT_NATIVE_TAP_H

#include "common.h"
#include "rtp_packet.h"

typedef struct Tap Tap;

extern PyTypeObject TapType; /* sfu._rtp_native.Tap */

/* PythonFrameTap.handle for one decrypted packet (arrival_ms: as aiortc.clock.current_ms). 0, or -1
 * with an exception set. */
int tap_handle(Tap *self, RtpFields *f, long long arrival_ms);

#endif
