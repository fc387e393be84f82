/* kern_avx512.c: the AVX-512 path, built with -mavx512f -mavx2 -mfma; see kern_body.h. */
#include "cells.h"
#if defined(__x86_64__) && defined(__AVX512F__) && defined(__FMA__)
#define KNAME(f) f##_avx512
#include "kern_body.h"
const rnn_kernels rnn_kernels_avx512 = {"avx512", gemv_t_avx512, sigmoid_avx512, tanh_avx512};
#else
const rnn_kernels rnn_kernels_avx512 = {"avx512", 0, 0, 0};
#endif
