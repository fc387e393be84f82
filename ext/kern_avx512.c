/*
** kern_avx512.c: the AVX-512 path, 16 lanes: kern_body.h over the AVX-512
** mapping of kern_simd.h. Only this file is built with -mavx512f -mfma; cells.c
** picks it at run time when the CPU has both, so the .so still runs on any x86-64.
*/
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__FMA__)
#define KERN_AVX512
#include "kern_body.h"
#else
const rnn_kernels rnn_kernels_avx512 = {"avx512", 0, 0, 0, 0, 0, 0, 0};
#endif
