/* kern_avx2.c: the AVX2+FMA path, built with -mavx2 -mfma; see kern_body.h. */
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#define KNAME(f) f##_avx2
#include "kern_body.h"
const rnn_kernels rnn_kernels_avx2 = {"avx2", gemv_t_avx2, sigmoid_avx2, tanh_avx2};
#else
const rnn_kernels rnn_kernels_avx2 = {"avx2", 0, 0, 0};
#endif
