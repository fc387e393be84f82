/*
** kern_scalar.c: the portable CPU path, one lane wide: kern_body.h over the
** scalar mapping of kern_simd.h, whose definitions (plain C operators, fmaf) say
** what each vector operation means on every path. Used where neither AVX2 nor
** AVX-512 is available, and by the tests as the path the others must equal.
*/
#define KERN_SCALAR
#include "kern_body.h"
