/* FrameAssembler: RTP payloads in, whole frames out (frame_assembler.c). The Tap feeds one per
 * video receiver. */

#ifndef OPENVISIT_NATIVE_FRAME_ASSEMBLER_H
#define OPENVISIT_NATIVE_FRAME_ASSEMBLER_H

#include "common.h"

typedef struct Assembler Assembler;

extern PyTypeObject AssemblerType; /* sfu._rtp_native.FrameAssembler */

/* Store one VP8 payload that still starts with its descriptor; the frames it completed as a list
 * of (timestamp, bytes), or None (new references), or NULL with an exception set. */
PyObject *assembler_push_vp8(Assembler *self, long sequence, uint32_t timestamp, int marker, const uint8_t *data,
                             Py_ssize_t size);

/* Frames given up so far (the Tap asks for a keyframe when this grows). */
long assembler_frames_lost(const Assembler *self);

#endif
