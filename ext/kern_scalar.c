/* kern_scalar.c: the portable path (any x86-64 or other CPU); see kern_body.h. */
#include "cells.h"
#define KNAME(f) f##_scalar
#include "kern_body.h"

const rnn_kernels rnn_kernels_scalar = {"scalar", gemv_t_scalar, sigmoid_scalar, tanh_scalar};
