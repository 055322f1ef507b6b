/* NackGenerator: which sequence numbers are missing, for the NACKs the Tap asks Python to send
 * (nack_generator.c). */

#ifndef OPENVISIT_NATIVE_NACK_GENERATOR_H
#define OPENVISIT_NATIVE_NACK_GENERATOR_H

#include "common.h"

typedef struct Nacks Nacks;

extern PyTypeObject NacksType; /* sfu._rtp_native.NackGenerator */

/* Mark sequence number `seq` received: 1 if it revealed missing ones. */
int nacks_add_seq(Nacks *self, long seq);

#endif
