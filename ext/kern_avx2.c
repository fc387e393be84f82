/*
** kern_avx2.c: the AVX2+FMA path, 8 lanes: kern_body.h over the AVX2 mapping of
** kern_simd.h. Only this file is built with -mavx2 -mfma; cells.c picks it at
** run time when the CPU has both, so the .so still runs on any x86-64.
*/
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define KERN_AVX2
#include "kern_body.h"
#else
const rnn_kernels rnn_kernels_avx2 = {"avx2", 0, 0, 0, 0, 0, 0, 0};
#endif
