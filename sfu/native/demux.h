/* Demux and Ingress: one ICE connection's datagrams, routed RTP handled in C (demux.c). */

#ifndef OPENVISIT_NATIVE_DEMUX_H
#define OPENVISIT_NATIVE_DEMUX_H

#include "common.h"

extern PyTypeObject DemuxType;   /* sfu._rtp_native.Demux */
extern PyTypeObject IngressType; /* made by Demux.ingress(), not a module attribute */

#endif
