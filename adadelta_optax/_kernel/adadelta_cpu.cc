// The whole Adadelta step of every leaf of one dtype in one pass over memory, as one XLA FFI call.
//
// Reads each leaf's gradient, parameter and both accumulators once and writes the parameter (or
// the update) and both accumulators once, in place (the Python side aliases inputs to outputs):
// 28 bytes per float32 parameter, the memory-traffic floor (one more read of the gradient for a
// leaf with per-leaf norm clipping, whose norm is needed first). All leaves go through a single
// call, so a tree of thousands of leaves costs one dispatch. The arithmetic is that of
// adadelta_optax/core/_rule.py's adadelta_step with the options of adadelta() folded in, in the
// order of adadelta_optax/core/_step.py's leaf_step_jax:
//
//   g <- clip(g, -clipvalue, clipvalue)            (flag kClipValue)
//   g <- g * scale   (flag kScale: sign flip, global norm clipping; with kNormClip also the
//                     leaf's own c / max(||g||, c), the norm of the value-clipped g)
//   g <- g + wd_coupled * x                        (flag kCoupled)
//   A <- rho * A + (1 - rho) * g^2
//   u <- sqrt(D + eps) / sqrt(A + eps) * g      (as the NumPy reference and torch round it)
//   D <- rho * D + (1 - rho) * u^2
//   u <- u + wd_decoupled * x                      (flag kDecoupled)
//   x <- x + (-lr) * u        (apply handlers)     or     out <- (-lr) * u   (update handlers)
//
// A leaf with kNormClip | kNormFirst clips in tf.keras 1.x's order instead: the norm is that of
// the raw gradient, and the first two lines swap:
//
//   g <- g * scale                                 (scale includes c / max(||g||, c))
//   g <- clip(g, -clipvalue, clipvalue)            (flag kClipValue)
//
// The work runs on XLA's intra-op thread pool (the FFI's ThreadPool), the calling thread
// included, and inline where XLA gives the handler no pool or a pool of one thread. Results do
// not depend on the number of threads: every element is computed alone, and norms are summed in
// fixed blocks whose sums are added in order.
//
// Built with -ffp-contract=off so every machine rounds the same way; the loop is compiled for
// AVX-512, AVX2 and baseline x86-64 (or the host's default elsewhere) and chosen at run time.
//
// benchmarks/floor_cpu.cc includes this file, with ADADELTA_CPU_NO_HANDLERS defined, to build
// the benchmarks' floor on the same partitioning, thread pool and per-ISA dispatch.
#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Flags : int32_t {
  kClipValue = 1,
  kScale = 2,
  kCoupled = 4,
  kDecoupled = 8,
  kApply = 16,  // set by the handler (apply mode), never by the caller
  kNormClip = 32,  // per leaf: multiply the scale by clipnorm / max(||g||, clipnorm) first
  kNormFirst = 64,  // with kNormClip: norm of the raw g, scaled before the value clip (tf.keras 1.x)
};

// The flags a caller may give a leaf.
constexpr int32_t kLeafFlags = kClipValue | kScale | kCoupled | kDecoupled | kNormClip | kNormFirst;

// Layout of the hyperparameter vector. The flags above and these slots are the Python side's
// (adadelta_optax/core/_kernel.py: CLIP_VALUE, ..., HYPER_FIELDS); AdadeltaLayout below reports
// them, and the Python side registers no handler unless they match.
enum Hyper {
  kRho,
  kOneMinusRho,
  kEps,
  kNegLr,
  kGradScale,
  kClip,
  kClipNorm,
  kWdCoupled,
  kWdDecoupled,
  kNumHyper
};

template <typename T>
inline __attribute__((always_inline)) T ClipToValue(T v, T clip) {
  // Comparisons (not fmin/fmax) so that NaN propagates, as XLA's min/max do.
  v = v < -clip ? -clip : v;
  return v > clip ? clip : v;
}

// In update mode `out` is the gradient's own buffer (the Python side aliases them): element i
// of g is read before element i of out is written, and no other element of either is touched.
template <typename T, int F>
inline __attribute__((always_inline)) void Body(int64_t lo, int64_t hi, const T* __restrict__ g,
                                                T* __restrict__ x, T* __restrict__ a,
                                                T* __restrict__ d, T* __restrict__ out,
                                                const T* __restrict__ h) {
  const T rho = h[kRho], one_minus_rho = h[kOneMinusRho], eps = h[kEps], neg_lr = h[kNegLr];
  const T scale = h[kGradScale], clip = h[kClip];
  const T wd_coupled = h[kWdCoupled], wd_decoupled = h[kWdDecoupled];
  for (int64_t i = lo; i < hi; ++i) {
    T gi = g[i];
    if (F & kNormFirst) {
      if (F & kScale) gi = gi * scale;
      if (F & kClipValue) gi = ClipToValue(gi, clip);
    } else {
      if (F & kClipValue) gi = ClipToValue(gi, clip);
      if (F & kScale) gi = gi * scale;
    }
    T xi = (F & (kCoupled | kDecoupled | kApply)) ? x[i] : T(0);
    if (F & kCoupled) gi = gi + wd_coupled * xi;
    const T ai = rho * a[i] + one_minus_rho * (gi * gi);
    T ui = std::sqrt(d[i] + eps) / std::sqrt(ai + eps) * gi;
    const T di = rho * d[i] + one_minus_rho * (ui * ui);
    if (F & kDecoupled) ui = ui + wd_decoupled * xi;
    const T step = neg_lr * ui;
    if (F & kApply) {
      x[i] = xi + step;
    } else {
      out[i] = step;
    }
    a[i] = ai;
    d[i] = di;
  }
}

#define ADADELTA_ISA_LOOP(NAME, TARGET)                                                       \
  template <typename T, int F>                                                                \
  TARGET void NAME(int64_t lo, int64_t hi, const T* __restrict__ g, T* __restrict__ x,       \
                   T* __restrict__ a, T* __restrict__ d, T* __restrict__ out,                 \
                   const T* __restrict__ h) {                                                 \
    Body<T, F>(lo, hi, g, x, a, d, out, h);                                                   \
  }

#if defined(__x86_64__) && defined(__GNUC__)
ADADELTA_ISA_LOOP(LoopAvx512, __attribute__((target("avx512f"))))
ADADELTA_ISA_LOOP(LoopAvx2, __attribute__((target("avx2"))))
#endif
ADADELTA_ISA_LOOP(LoopBase, )

#if defined(__x86_64__) && defined(__GNUC__)
// 2: AVX-512F, 1: AVX2, 0: baseline x86-64; read once.
inline int IsaLevel() {
  static const int level = __builtin_cpu_supports("avx512f") ? 2
                           : __builtin_cpu_supports("avx2") ? 1
                                                            : 0;
  return level;
}
#endif

template <typename T, int F>
void Loop(int64_t lo, int64_t hi, const T* g, T* x, T* a, T* d, T* out, const T* h) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (IsaLevel() == 2) return LoopAvx512<T, F>(lo, hi, g, x, a, d, out, h);
  if (IsaLevel() == 1) return LoopAvx2<T, F>(lo, hi, g, x, a, d, out, h);
#endif
  LoopBase<T, F>(lo, hi, g, x, a, d, out, h);
}

using LoopFn = void (*)(int64_t, int64_t, const void*, void*, void*, void*, void*, const void*);

template <typename T, int F>
void ErasedLoop(int64_t lo, int64_t hi, const void* g, void* x, void* a, void* d, void* out,
                const void* h) {
  Loop<T, F>(lo, hi, static_cast<const T*>(g), static_cast<T*>(x), static_cast<T*>(a),
             static_cast<T*>(d), static_cast<T*>(out), static_cast<const T*>(h));
}

// The loops are indexed by their own flags (kClipValue to kApply) plus one bit for kNormFirst,
// which changes only a loop that both clips and scales (the others are shared, not compiled twice).
constexpr int kLoopBits = 6;
constexpr int32_t kOrderBit = 1 << (kLoopBits - 1);

constexpr int LoopFlags(int index) {
  const int flags = index & (kOrderBit - 1);
  const bool ordered = (index & kOrderBit) && (flags & kClipValue) && (flags & kScale);
  return ordered ? flags | kNormFirst : flags;
}

template <typename T, int... Is>
constexpr std::array<LoopFn, sizeof...(Is)> MakeTable(std::integer_sequence<int, Is...>) {
  return {&ErasedLoop<T, LoopFlags(Is)>...};
}

template <typename T>
LoopFn Select(int32_t flags) {
  static constexpr auto table = MakeTable<T>(std::make_integer_sequence<int, 1 << kLoopBits>{});
  return table[(flags & (kOrderBit - 1)) | ((flags & kNormFirst) ? kOrderBit : 0)];
}

// --- Work on XLA's intra-op thread pool ----------------------------------------------------------

// Below this many elements one thread is faster than waking another.
constexpr int64_t kMinParallel = int64_t(1) << 18;

// How many threads `elements` elements are worth on `pool`: 1 (run inline) without a pool or on
// a pool of one thread.
int64_t Threads(ffi::ThreadPool& pool, int64_t elements) {
  return std::max<int64_t>(1, std::min<int64_t>(pool.num_threads(), elements / kMinParallel));
}

// Items 0 .. items - 1, each claimed and run by exactly one thread, and a count of those not yet
// finished. Co-owned by the caller and its tasks, so a task that starts late still finds it.
struct WorkQueue {
  WorkQueue(int64_t items, void (*run)(void*, int64_t), void* fn)
      : items(items), run(run), fn(fn), unfinished(items) {}

  // Claims and runs items until none is left to claim.
  void Drain() {
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < items;) {
      run(fn, i);
      if (unfinished.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex);
        done.notify_all();
      }
    }
  }

  const int64_t items;
  void (*const run)(void*, int64_t);
  void* const fn;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> unfinished;
  std::mutex mutex;
  std::condition_variable done;
};

// Runs fn(0), ..., fn(items - 1) on `threads` threads: the calling thread and threads - 1 tasks
// on the pool, each claiming the next unclaimed item until none is left. The caller then waits
// only for items already claimed, which are running: never for a task the pool has not started,
// so a busy pool, or a caller that is itself one of the pool's threads, cannot deadlock it. A task
// that starts after every item is claimed touches only the queue it co-owns, never `fn`.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t threads, int64_t items, F& fn) {
  if (threads <= 1 || items <= 1) {
    for (int64_t i = 0; i < items; ++i) fn(i);
    return;
  }
  auto queue = std::make_shared<WorkQueue>(
      items, [](void* f, int64_t i) { (*static_cast<F*>(f))(i); }, static_cast<void*>(&fn));
  for (int64_t t = 1; t < std::min(threads, items); ++t) pool.Schedule([queue] { queue->Drain(); });
  queue->Drain();
  std::unique_lock<std::mutex> lock(queue->mutex);
  queue->done.wait(lock, [&] { return queue->unfinished.load(std::memory_order_acquire) == 0; });
}

struct Leaf {
  int64_t n;
  int64_t segment;  // elements per segment: each segment has its own hyperparameter row
  // Elements of a and d skipped between segments: 0 per leaf, and in the flat layout (one buffer
  // of `segments` rows) the rest of a row, so element j of segment s is a[j + s * accum_gap].
  int64_t accum_gap;
  const void* g;
  void* x;
  void* a;
  void* d;
  void* out;
  int32_t flags;
};

struct Piece {
  size_t leaf;
  int64_t lo, hi;
};

// Cuts the concatenation of all leaves into `threads` contiguous ranges, one per thread.
std::vector<std::vector<Piece>> Partition(const std::vector<Leaf>& leaves, int64_t threads) {
  int64_t total = 0;
  for (const Leaf& leaf : leaves) total += leaf.n;
  // Multiples of 64 elements keep every thread's stores on cache lines of its own.
  const int64_t chunk = std::max<int64_t>(64, ((total + threads - 1) / threads + 63) & ~int64_t(63));
  std::vector<std::vector<Piece>> work(threads);
  int64_t start = 0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    int64_t lo = 0;
    while (lo < leaves[i].n) {
      const int64_t t = std::min<int64_t>((start + lo) / chunk, threads - 1);
      const int64_t end = t == threads - 1 ? leaves[i].n : std::min(leaves[i].n, (t + 1) * chunk - start);
      work[t].push_back({i, lo, end});
      lo = end;
    }
    start += leaves[i].n;
  }
  return work;
}

int64_t TotalElements(const std::vector<Leaf>& leaves) {
  int64_t total = 0;
  for (const Leaf& leaf : leaves) total += leaf.n;
  return total;
}

// Runs fn(piece) for every piece of every leaf, one contiguous range of elements per thread.
template <typename F>
void ForEachPiece(ffi::ThreadPool& pool, const std::vector<Leaf>& leaves, F&& fn) {
  const auto work = Partition(leaves, Threads(pool, TotalElements(leaves)));
  auto range = [&](int64_t t) {
    for (const Piece& p : work[t]) fn(p);
  };
  ParallelFor(pool, static_cast<int64_t>(work.size()), static_cast<int64_t>(work.size()), range);
}

#ifndef ADADELTA_CPU_NO_HANDLERS

// Norms are summed over blocks of at most this many elements of one segment of one leaf, each
// block's sum in double into a slot of its own, and the slots are added in order: the same
// norm whichever thread takes which block, and however many threads there are.
constexpr int64_t kNormBlock = int64_t(1) << 16;

struct NormBlock {
  size_t leaf;
  int64_t segment;
  int64_t lo, hi;
};

// The squared norms (in double) of every leaf with kNormClip, per segment: row leaf * segments + s.
// The norm is that of the value-clipped gradient, or with kNormFirst of the raw one.
template <typename T>
std::vector<double> SquaredNorms(ffi::ThreadPool& pool, const std::vector<Leaf>& leaves,
                                 const T* hyper, int64_t segments) {
  std::vector<NormBlock> blocks;
  int64_t elements = 0;
  for (size_t i = 0; i < leaves.size(); ++i) {
    if (!(leaves[i].flags & kNormClip)) continue;
    for (int64_t s = 0; s < segments; ++s) {
      const int64_t end = (s + 1) * leaves[i].segment;
      for (int64_t lo = s * leaves[i].segment; lo < end; lo += kNormBlock) {
        blocks.push_back({i, s, lo, std::min(end, lo + kNormBlock)});
      }
    }
    elements += leaves[i].n;
  }
  std::vector<double> sums(blocks.size());
  auto block_sum = [&](int64_t b) {
    const NormBlock& block = blocks[b];
    const Leaf& leaf = leaves[block.leaf];
    const T* g = static_cast<const T*>(leaf.g);
    const bool clip_value = (leaf.flags & kClipValue) && !(leaf.flags & kNormFirst);
    const T clip = hyper[block.segment * kNumHyper + kClip];
    double sum = 0.0;
    for (int64_t i = block.lo; i < block.hi; ++i) {
      const T v = clip_value ? ClipToValue(g[i], clip) : g[i];
      sum += double(v) * double(v);
    }
    sums[b] = sum;
  };
  ParallelFor(pool, Threads(pool, elements), static_cast<int64_t>(blocks.size()), block_sum);
  std::vector<double> squared(leaves.size() * segments, 0.0);
  for (size_t b = 0; b < blocks.size(); ++b) {
    squared[blocks[b].leaf * segments + blocks[b].segment] += sums[b];
  }
  return squared;
}

// Calls fn(segment, lo, hi) for the parts of [lo, hi) of `leaf` in each of its segments.
template <typename F>
void ForSegments(const Leaf& leaf, int64_t lo, int64_t hi, F&& fn) {
  while (lo < hi) {
    const int64_t s = lo / leaf.segment;
    const int64_t end = std::min(hi, (s + 1) * leaf.segment);
    fn(s, lo, end);
    lo = end;
  }
}

// `hyper` holds `segments` rows of kNumHyper values: element i of a leaf of n elements uses row
// i / (n / segments). One row is the plain step; under jax.vmap the Python side passes one row
// per batch element, so a batch of B problems is one call over leaves B times larger. Leaves
// with per-leaf norm clipping first take their squared norms per segment, in double.
template <typename T>
void RunTree(ffi::ThreadPool& pool, const std::vector<Leaf>& leaves, const T* hyper,
             int64_t segments, bool apply) {
  const size_t rows = leaves.size() * segments;
  bool any_norm = false;
  for (const Leaf& leaf : leaves) any_norm |= (leaf.flags & kNormClip) != 0;
  std::vector<std::array<T, kNumHyper>> leaf_hyper(rows);
  for (size_t i = 0; i < leaves.size(); ++i) {
    for (int64_t s = 0; s < segments; ++s) {
      std::copy(hyper + s * kNumHyper, hyper + (s + 1) * kNumHyper, leaf_hyper[i * segments + s].begin());
    }
  }
  if (any_norm) {
    const std::vector<double> squared = SquaredNorms(pool, leaves, hyper, segments);
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (!(leaves[i].flags & kNormClip)) continue;
      for (int64_t s = 0; s < segments; ++s) {
        const size_t row = i * segments + s;
        // tf.clip_by_norm: g * c / max(||g||, c); the sign flip is already in the scale. The
        // max propagates a NaN norm, as jnp.maximum and tf.maximum do (a NaN in the leaf makes
        // the whole leaf NaN on every path): !(norm <= c) is true for NaN, norm > c is not.
        const T norm = T(std::sqrt(squared[row]));
        const T c = hyper[s * kNumHyper + kClipNorm];
        const T larger = !(norm <= c) ? norm : c;
        leaf_hyper[row][kGradScale] = hyper[s * kNumHyper + kGradScale] * (c / larger);
      }
    }
  }
  ForEachPiece(pool, leaves, [&](const Piece& p) {
    const Leaf& leaf = leaves[p.leaf];
    int32_t flags = leaf.flags & (kClipValue | kScale | kCoupled | kDecoupled);
    if (leaf.flags & kNormClip) flags |= kScale | (leaf.flags & kNormFirst);
    if (apply) flags |= kApply;
    const LoopFn loop = Select<T>(flags);
    ForSegments(leaf, p.lo, p.hi, [&](int64_t s, int64_t lo, int64_t hi) {
      T* a = static_cast<T*>(leaf.a) + s * leaf.accum_gap;
      T* d = static_cast<T*>(leaf.d) + s * leaf.accum_gap;
      loop(lo, hi, leaf.g, leaf.x, a, d, leaf.out, leaf_hyper[p.leaf * segments + s].data());
    });
  });
}

// Flat accumulators (FlatAdadeltaState): the last two arguments and results are each dtype's one
// accumulator buffer, of which this call's leaves hold the elements from `offset` on, in order;
// the other arguments and results are per leaf as above.
template <ffi::DataType DT, bool Flat>
ffi::Error StepImpl(ffi::ThreadPool pool, ffi::Buffer<DT> hyper, ffi::Buffer<ffi::S32> flags,
                    ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t mode,
                    int64_t offset) {
  using T = ffi::NativeType<DT>;
  const bool apply = mode & 1, has_params = mode & 2;
  const size_t n_leaves = flags.element_count();
  const size_t per_leaf_args = has_params ? 4 : 3;
  const size_t expected_args = Flat ? (per_leaf_args - 2) * n_leaves + 2 : per_leaf_args * n_leaves;
  const size_t expected_rets = Flat ? n_leaves + 2 : 3 * n_leaves;
  const int64_t segments = static_cast<int64_t>(hyper.element_count() / kNumHyper);
  if (segments == 0 || hyper.element_count() % kNumHyper != 0) {
    return ffi::Error::InvalidArgument("adadelta kernel: hyperparameter rows have wrong length");
  }
  if (args.size() != expected_args || rets.size() != expected_rets || (apply && !has_params)) {
    return ffi::Error::InvalidArgument("adadelta kernel: wrong number of buffers");
  }
  for (size_t i = 0; i < n_leaves; ++i) {
    const int32_t leaf_flags = flags.typed_data()[i];
    if ((leaf_flags & ~kLeafFlags) != 0 || ((leaf_flags & kNormFirst) && !(leaf_flags & kNormClip))) {
      return ffi::Error::InvalidArgument(
          "adadelta kernel: leaf flags " + std::to_string(leaf_flags) +
          " not allowed (bits 1, 2, 4, 8, 32 and 64; 64, kNormFirst, only with 32, kNormClip)");
    }
  }
  // Flat: the accumulator buffers, copied to the results first should XLA not alias them.
  T* a_flat = nullptr;
  T* d_flat = nullptr;
  int64_t row = 0;
  if (Flat) {
    const size_t first = (per_leaf_args - 2) * n_leaves;
    auto a = args.get<ffi::AnyBuffer>(first);
    auto d = args.get<ffi::AnyBuffer>(first + 1);
    auto a_out = rets.get<ffi::AnyBuffer>(n_leaves);
    auto d_out = rets.get<ffi::AnyBuffer>(n_leaves + 1);
    if (a.has_error() || d.has_error() || a_out.has_error() || d_out.has_error()) {
      return ffi::Error::InvalidArgument("adadelta kernel: could not decode a buffer");
    }
    const size_t total = a->element_count();
    if (d->element_count() != total || (*a_out)->element_count() != total ||
        (*d_out)->element_count() != total || a->element_type() != DT || d->element_type() != DT) {
      return ffi::Error::InvalidArgument("adadelta kernel: accumulator buffers differ");
    }
    for (auto [src, dst] : {std::pair{*a, *a_out}, std::pair{*d, *d_out}}) {
      if (dst->untyped_data() != src.untyped_data()) {
        std::memcpy(dst->untyped_data(), src.untyped_data(), total * sizeof(T));
      }
    }
    a_flat = static_cast<T*>((*a_out)->untyped_data());
    d_flat = static_cast<T*>((*d_out)->untyped_data());
    // Under vmap the buffers have one row per segment, each holding this call's leaves from
    // `offset` on (each leaf checked to fit as it is placed).
    row = static_cast<int64_t>(total) / segments;
    if (offset < 0 || static_cast<int64_t>(total) % segments != 0) {
      return ffi::Error::InvalidArgument("adadelta kernel: leaves do not fit the accumulator buffers");
    }
  }
  std::vector<Leaf> leaves(n_leaves);
  int64_t position = offset;
  for (size_t i = 0; i < n_leaves; ++i) {
    auto g = args.get<ffi::AnyBuffer>(i);
    auto out = rets.get<ffi::AnyBuffer>(i);
    if (g.has_error() || out.has_error()) {
      return ffi::Error::InvalidArgument("adadelta kernel: could not decode a buffer");
    }
    const size_t n = g->element_count();
    if ((*out)->element_count() != n || g->element_type() != DT) {
      return ffi::Error::InvalidArgument("adadelta kernel: leaf shapes or dtypes differ");
    }
    void* a_data = nullptr;
    void* d_data = nullptr;
    if (Flat) {
      if (position + static_cast<int64_t>(n) / segments > row) {
        return ffi::Error::InvalidArgument("adadelta kernel: leaves do not fit the accumulator buffers");
      }
      a_data = a_flat + position;
      d_data = d_flat + position;
      position += static_cast<int64_t>(n) / segments;
    } else {
      auto a = args.get<ffi::AnyBuffer>((per_leaf_args - 2) * n_leaves + i);
      auto d = args.get<ffi::AnyBuffer>((per_leaf_args - 1) * n_leaves + i);
      auto a_out = rets.get<ffi::AnyBuffer>(n_leaves + i);
      auto d_out = rets.get<ffi::AnyBuffer>(2 * n_leaves + i);
      if (a.has_error() || d.has_error() || a_out.has_error() || d_out.has_error()) {
        return ffi::Error::InvalidArgument("adadelta kernel: could not decode a buffer");
      }
      if (a->element_count() != n || d->element_count() != n || a->element_type() != DT ||
          d->element_type() != DT) {
        return ffi::Error::InvalidArgument("adadelta kernel: leaf shapes or dtypes differ");
      }
      for (auto [src, dst] : {std::pair{*a, *a_out}, std::pair{*d, *d_out}}) {
        if (dst->untyped_data() != src.untyped_data()) {
          std::memcpy(dst->untyped_data(), src.untyped_data(), n * sizeof(T));
        }
      }
      a_data = (*a_out)->untyped_data();
      d_data = (*d_out)->untyped_data();
    }
    if (n % segments != 0) {
      return ffi::Error::InvalidArgument("adadelta kernel: leaf size not a multiple of the segments");
    }
    void* x = nullptr;
    if (has_params) {
      auto x_in = args.get<ffi::AnyBuffer>(n_leaves + i);
      if (x_in.has_error() || x_in->element_count() != n || x_in->element_type() != DT) {
        return ffi::Error::InvalidArgument("adadelta kernel: param shape or dtype differs");
      }
      x = x_in->untyped_data();
      if (apply && (*out)->untyped_data() != x) {
        // The outputs alias the inputs; should XLA ever hand over distinct buffers, copy first.
        std::memcpy((*out)->untyped_data(), x, n * sizeof(T));
        x = (*out)->untyped_data();
      }
    }
    const int64_t segment = static_cast<int64_t>(n) / segments;
    leaves[i] = {static_cast<int64_t>(n), segment, Flat ? row - segment : 0, g->untyped_data(), x,
                 a_data, d_data, apply ? nullptr : (*out)->untyped_data(), flags.typed_data()[i]};
  }
  RunTree<T>(pool, leaves, hyper.typed_data(), segments, apply);
  return ffi::Error::Success();
}

template <ffi::DataType DT>
ffi::Error TreeImpl(ffi::ThreadPool pool, ffi::Buffer<DT> hyper, ffi::Buffer<ffi::S32> flags,
                    ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t mode) {
  return StepImpl<DT, false>(pool, hyper, flags, args, rets, mode, 0);
}

template <ffi::DataType DT>
ffi::Error FlatImpl(ffi::ThreadPool pool, ffi::Buffer<DT> hyper, ffi::Buffer<ffi::S32> flags,
                    ffi::RemainingArgs args, ffi::RemainingRets rets, int32_t mode,
                    int64_t offset) {
  return StepImpl<DT, true>(pool, hyper, flags, args, rets, mode, offset);
}

#endif  // ADADELTA_CPU_NO_HANDLERS

}  // namespace

#ifndef ADADELTA_CPU_NO_HANDLERS

#define ADADELTA_BIND_TREE(DT)            \
  ffi::Ffi::Bind()                        \
      .Ctx<ffi::ThreadPool>()             \
      .Arg<ffi::Buffer<DT>>()             \
      .Arg<ffi::Buffer<ffi::S32>>()       \
      .RemainingArgs()                    \
      .RemainingRets()                    \
      .Attr<int32_t>("mode")

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaTreeF32, TreeImpl<ffi::F32>, ADADELTA_BIND_TREE(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaTreeF64, TreeImpl<ffi::F64>, ADADELTA_BIND_TREE(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFlatF32, FlatImpl<ffi::F32>,
                              ADADELTA_BIND_TREE(ffi::F32).Attr<int64_t>("offset"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFlatF64, FlatImpl<ffi::F64>,
                              ADADELTA_BIND_TREE(ffi::F64).Attr<int64_t>("offset"));

// The XLA FFI API version of the headers this library was compiled against (the version every
// handler above reports when it is registered). XLA refuses a handler newer than the running
// jaxlib's API and, once that check has failed, cannot start its CPU backend at all, so the Python
// side (adadelta_optax/core/_kernel.py) reads this first and registers nothing when jaxlib is too
// old.
extern "C" __attribute__((visibility("default"))) void AdadeltaFfiApiVersion(int32_t* major,
                                                                            int32_t* minor) {
  *major = XLA_FFI_API_MAJOR;
  *minor = XLA_FFI_API_MINOR;
}

// The calling convention this library was compiled with, for adadelta_optax/core/_kernel.py to
// compare with its own before registering any handler: the leaf flags kClipValue, kScale,
// kCoupled, kDecoupled, kNormClip, kNormFirst, then the slots of rho, 1 - rho, epsilon, -lr, the
// gradient scale, clipvalue, clipnorm and the coupled and decoupled weight decay, then kNumHyper.
// Writes at most n values to out and returns how many there are.
extern "C" __attribute__((visibility("default"))) int32_t AdadeltaLayout(int32_t* out, int32_t n) {
  const int32_t layout[] = {kClipValue, kScale,      kCoupled, kDecoupled, kNormClip,
                            kNormFirst, kRho,        kOneMinusRho, kEps,   kNegLr,
                            kGradScale, kClip,       kClipNorm, kWdCoupled, kWdDecoupled,
                            kNumHyper};
  constexpr int32_t size = sizeof(layout) / sizeof(layout[0]);
  for (int32_t i = 0; i < n && i < size; ++i) out[i] = layout[i];
  return size;
}

#endif  // ADADELTA_CPU_NO_HANDLERS
