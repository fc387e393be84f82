/*
** cells.h: the recurrent cells as pure C (no SQLite types), so they can be unit
** tested and benchmarked alone. The model loader (model.c) fills an rnn_net; the
** SQL layers drive it through rnn_state.
**
** Formulas are PyTorch's (nn.RNN, nn.LSTM, nn.GRU docs), gate order as PyTorch
** stores them: LSTM i,f,g,o; GRU r,z,n. The tutorial ("seed") cell computes
**   hidden_t = act_h(i2h(cat(x_t, h_{t-1}))),  output_t = i2o(cat(x_t, h_{t-1})).
*/
#ifndef RNN_CELLS_H
#define RNN_CELLS_H
#include <stddef.h>
#include <stdint.h>

enum { CELL_RNN_TANH, CELL_RNN_RELU, CELL_LSTM, CELL_GRU, CELL_SEED };
enum { ACT_NONE, ACT_SIGMOID, ACT_TANH, ACT_SOFTMAX, ACT_LOG_SOFTMAX, ACT_RELU };
/* What the head reads after a whole sequence (metadata `readout`). They differ
** only for bidirectional models: PyTorch's output[T-1] = cat(forward_{T-1},
** backward_{T-1}), or h_n = cat(forward_{T-1}, backward_0), i.e.
** fc(torch.cat((h_n[-2], h_n[-1]), 1)). */
enum { READOUT_LAST_OUTPUT, READOUT_FINAL_STATES };

/* Weight matrices are stored transposed, [in][ld] with ld a multiple of RNN_LANES
** and zero padding, so the hot loop is a contiguous vector FMA over outputs and
** every output sums its terms in the same order on every CPU path. */
#define RNN_LANES 16

typedef struct rnn_dir {
  const float *wih;   /* [in][ldg]  W_ih^T (seed: i2h.weight^T, in = I+H); whh follows
                      ** it in memory, so [W_ih; W_hh]^T is one [in+hin][ldg] block */
  const float *whh;   /* [hin][ldg] W_hh^T, hin = proj ? proj : H (seed: unused) */
  const float *bih;   /* [ldg] b_ih, zeros when the model has no bias */
  const float *bhh;   /* [ldg] b_hh, zeros when the model has no bias */
  const float *bsum;  /* [ldg] b_ih + b_hh (RNN, LSTM: one accumulator for both products) */
  const float *whr;   /* [H][ldp] LSTM projection W_hr^T, NULL without proj_size */
} rnn_dir;

typedef struct rnn_layer {
  int in;             /* input width: I for layer 0, else dirs * hout */
  rnn_dir dir[2];     /* [1] used only by bidirectional models */
} rnn_layer;

struct rnn_kernels;

typedef struct rnn_net {
  int cell;           /* CELL_* */
  int layers;         /* 1..RNN_MAX_LAYERS */
  int dirs;           /* 1 or 2 */
  int n_in;           /* I: features per step */
  int hidden;         /* H */
  int proj;           /* LSTM proj_size, 0 if none */
  int hout;           /* width of h: proj ? proj : H */
  int gates;          /* G: 1 RNN, 3 GRU, 4 LSTM, 1 seed */
  int ldg;            /* G*H rounded up to RNN_LANES */
  int ldp;            /* proj rounded up to RNN_LANES */
  int n_out;          /* O: outputs per step */
  int ldo;            /* O rounded up to RNN_LANES */
  int hidden_act;     /* seed cell: ACT_NONE/TANH/RELU/SIGMOID */
  int out_act;        /* ACT_* applied to the head output */
  int readout;        /* READOUT_*: bidirectional models only */
  rnn_layer *layer;   /* [layers] */
  const float *head_w;   /* [hout*dirs][ldo] head Linear weight^T, or NULL (output = h) */
  const float *head_b;   /* [ldo] zeros if no bias */
  const float *seed_o;   /* seed: [I+H][ldo] i2o.weight^T */
  const float *seed_ob;  /* seed: [ldo] i2o.bias or zeros */
  const float *in_mean, *in_std;    /* [I] or NULL */
  const float *out_mean, *out_std;  /* [O] or NULL */
  const struct rnn_kernels *k;      /* chosen CPU path, see rnn_kernels_pick */
} rnn_net;

/* The per-sequence state: one allocation of rnn_state_floats() floats, carved by
** rnn_state_init. Holds h and c for every layer (forward direction), the seed
** cell's last output and the scratch the step needs, so a step never allocates. */
typedef struct rnn_state {
  float *h;           /* [layers][hout] */
  float *c;           /* [layers][H] (LSTM) */
  float *y;           /* [ldo] seed: last i2o output */
  float *x;           /* standardised input; for the seed cell cat(x, h) */
  float *xh;          /* cat(layer input, h) for the fused product of RNN and LSTM */
  float *gi, *gh;     /* [ldg] gate pre-activations */
  float *hn;          /* [max(hout, H)] new h before it is copied back */
  int64_t steps;      /* steps taken since reset */
} rnn_state;

size_t rnn_state_floats(const rnn_net *net);
void rnn_state_init(const rnn_net *net, rnn_state *st, float *mem);
void rnn_state_reset(const rnn_net *net, rnn_state *st);
/* Advance by one step with raw (unstandardised) features x[0..I). */
void rnn_step(const rnn_net *net, rnn_state *st, const float *x);
/* Model output after the steps taken: activation(head(h)) * std + mean, into
** out[0..O). scratch holds at least ldo floats. Undefined before the first step. */
void rnn_output(const rnn_net *net, const rnn_state *st, float *out, float *scratch);
/* The state as bytes (rnn_state(), rnn_step(), rnn_output(); layout in README
** "Scoring as rows arrive" and docs/DESIGN.md), little-endian whatever the host:
**   0  4 bytes  magic "RNNS"
**   4  uint32   layout version, RNN_STATE_VERSION
**   8  uint64   content hash of the model BLOB (rnn_model_hash)
**  16  int64    steps taken
**  24  float32  h[layers][hout], then c[layers][H] for LSTM, then the seed
**               cell's last i2o output y[O] (it is that cell's output)
** Unidirectional models only: a bidirectional state depends on later rows. */
#define RNN_STATE_MAGIC "RNNS"
#define RNN_STATE_VERSION 1u
#define RNN_STATE_HEADER 24
size_t rnn_state_blob_bytes(const rnn_net *net);
void rnn_state_save(const rnn_net *net, const rnn_state *st, uint64_t model_hash, unsigned char *out);
/* Fill st from a BLOB of rnn_state_blob_bytes(net) bytes whose header the caller checked. */
void rnn_state_load(const rnn_net *net, rnn_state *st, const unsigned char *in);
/* 64-bit FNV-1a over p[0..n): the model hash kept in a state. */
uint64_t rnn_model_hash(const unsigned char *p, size_t n);
/* 64-bit FNV-1a: h carried over p[0..n), so a hash can be built piece by piece
** from RNN_FNV_BASIS (rnn_model_hash; rnn_train's hash of its rows). */
#define RNN_FNV_BASIS 0xcbf29ce484222325u
uint64_t rnn_fnv1a64(uint64_t h, const void *p, size_t n);

/* Bidirectional models, step by step. Every output needs the backward
** direction from the sequence's end, so rnn_bidir_begin first runs all of that
** work: the layers below the last over the whole sequence (kept, [T][2*hout]),
** then the last layer's backward direction, every step (keeping O(sqrt(T))
** states from which the forward steps recompute it segment by segment), or with
** last_only just its first step (t = T-1), which is all the last output needs. Each
** rnn_bidir_next then takes one forward step of the last layer and sets cat to
** PyTorch's output[t] = cat(forward_t, backward_t) (with last_only, only at
** t = T-1); rnn_bidir_output applies the head to it, or after the last step with
** READOUT_FINAL_STATES to h_n = cat(forward_{T-1}, backward_0) (with last_only
** the backward pass then runs over every step, keeping only its state).
** The sequence-sized part of the work area is rnn_bidir_seq_floats: none for one
** layer with last_only, O(sqrt(T)) states without. tick (may be NULL) runs after every cell step; a
** non-zero return (poll.c's: the SQLite code that stopped the call, e.g.
** SQLITE_INTERRUPT) stops the pass, and rnn_bidir_begin returns it; else 0. */
#define RNN_MAX_BIDIR_FLOATS (1u << 26) /* sequence-sized floats of one pass: 256 MiB */
typedef int (*rnn_tick)(void *arg);
typedef struct rnn_bidir {
  const float *xs;    /* [T][I] raw features (borrowed) */
  int64_t T, t;       /* sequence length, the next forward step */
  int last_only;
  float *low;         /* [T][2*hout] output of the layer below the last; NULL for one layer */
  float *tmp;         /* [T][hout] backward h of a middle layer (3+ layers) */
  int64_t seg;        /* K: steps per segment of the last layer's backward h */
  int64_t cached;     /* the segment whose backward h is in bwd, -1 for none */
  float *bwd;         /* [K][hout] backward h of the last layer, [1][hout] with last_only */
  float *ckpt;        /* [ceil(T/K)][hout + H] backward state entering each segment; NULL with last_only */
  float *h, *c;       /* [hout], [H] forward state of the last layer */
  float *bh, *bc;     /* [hout], [H] backward state while a segment is recomputed */
  float *cat;         /* [2*hout] cat(forward_t, backward_t) */
  float *fin;         /* [2*hout] h_n for READOUT_FINAL_STATES */
  float *hn;          /* [hout] backward h after step 0, once the whole backward pass ran */
  float *scratch;     /* [ldo] */
  rnn_state st;       /* step scratch */
} rnn_bidir;

uint64_t rnn_bidir_seq_floats(const rnn_net *net, int64_t T, int last_only);
size_t rnn_bidir_floats(const rnn_net *net, int64_t T, int last_only);
int rnn_bidir_begin(const rnn_net *net, rnn_bidir *b, const float *xs, int64_t T, int last_only, float *work,
                    rnn_tick tick, void *arg);
/* Step b->t (then b->t++); b->cat holds its hidden state. */
void rnn_bidir_next(const rnn_net *net, rnn_bidir *b);
/* The model output out[0..O) from b->cat. */
void rnn_bidir_output(const rnn_net *net, rnn_bidir *b, float *out);
/* begin with last_only and every next: the output after the whole sequence into
** out[0..O). Work: rnn_bidir_floats(net, T, 1). 0, or the tick's non-zero
** return if it stopped the pass. */
int rnn_bidir_last(const rnn_net *net, const float *xs, int64_t T, float *out, float *work, rnn_tick tick, void *arg);
/* The last layer's hidden state (hout floats). */
const float *rnn_last_hidden(const rnn_net *net, const rnn_state *st);

/* CPU paths, each kern_body.h compiled for one instruction set. Every path
** computes bit-identical results, NaN and infinities included: same operations,
** same order, FMA exactly where kern_body.h says VFMA. */
typedef struct rnn_kernels {
  const char *name;
  /* y[0..m) += sum_k w[k*ld + j] * x[k], k ascending; m a multiple of RNN_LANES */
  void (*gemv_t)(float *y, const float *w, int ld, const float *x, int n, int m);
  /* gemv_t for `rows` inputs at once: row r of y (at y + r*ldy) gets exactly
  ** the bits gemv_t gives for x row r (at x + r*ldx); for batched sequences */
  void (*gemm_t)(float *y, int ldy, const float *w, int ld, const float *x, int ldx, int n, int m, int rows);
  /* gemm_t for rnn_scan, whose input rows are the series' states (read in
  ** place, by pointer) and whose outputs start from a bias: row r of y (at
  ** y + r*ldy) becomes b (or y's row when b is NULL) + sum_{k<n1} w[k] x1[r][k]
  ** + sum_{k<n2} w[n1+k] x2[r][k], each output summing in that order, i.e. the
  ** bits of copying b into the row, then gemm_t over cat(x1[r], x2[r]). x2 may
  ** be NULL when n2 is 0. */
  void (*gemm_rows)(float *y, int ldy, const float *b, const float *w, int ld, const float *const *x1, int n1,
                    const float *const *x2, int n2, int m, int rows);
  void (*sigmoid)(float *y, int n);
  void (*tanh)(float *y, int n);
  /* LSTM pointwise step: g[4H] gate pre-activations (i, f, g, o); c[H] updated;
  ** out[H] = o * tanh(c) (before any projection). */
  void (*lstm)(const float *g, float *c, float *out, int H);
  /* GRU pointwise step: gi[3H] = W_i x + b_i, gh[3H] = W_h h + b_h; h[H] updated. */
  void (*gru)(const float *gi, const float *gh, float *h, int H);
} rnn_kernels;

/* The fastest path this CPU supports, or the one named by the environment
** variable SQLITE_RNN_KERNEL (scalar, avx2, avx512) when it is supported. */
const rnn_kernels *rnn_kernels_pick(void);
const rnn_kernels *rnn_kernels_named(const char *name);  /* NULL if unsupported */

extern const rnn_kernels rnn_kernels_scalar;
extern const rnn_kernels rnn_kernels_avx2;
extern const rnn_kernels rnn_kernels_avx512;
#endif
