// The whole Adadelta step of every leaf of one dtype in one pass over memory, as one XLA FFI call.
//
// Reads each leaf's gradient, parameter and both accumulators once and writes the parameter (or
// the update) and both accumulators once, in place (the Python side aliases inputs to outputs):
// 28 bytes per float32 parameter, the memory-traffic floor (one more read of the gradient for a
// leaf with per-leaf norm clipping, whose norm is needed first). All leaves go through a single
// call, so a tree of thousands of leaves costs one dispatch. The arithmetic is that of
// adadelta_optax._core.adadelta_step with the options of adadelta() folded in:
//
//   g <- clip(g, -clipvalue, clipvalue)            (flag kClipValue)
//   g <- g * scale   (flag kScale: sign flip, global norm clipping; with kNormClip also the
//                     leaf's own c / max(||g||, c))
//   g <- g + wd_coupled * x                        (flag kCoupled)
//   A <- rho * A + (1 - rho) * g^2
//   u <- sqrt(D + eps) / sqrt(A + eps) * g      (as the NumPy reference and torch round it)
//   D <- rho * D + (1 - rho) * u^2
//   u <- u + wd_decoupled * x                      (flag kDecoupled)
//   x <- x + (-lr) * u        (apply handlers)     or     out <- (-lr) * u   (update handlers)
//
// Built with -ffp-contract=off so every machine rounds the same way; the loop is compiled for
// AVX-512, AVX2 and baseline x86-64 (or the host's default elsewhere) and chosen at run time.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
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
  kApply = 16,
  kAllFlags = 31,
  kNormClip = 32,  // per leaf: multiply the scale by clipnorm / max(||clip(g)||, clipnorm) first
};

// Layout of the hyperparameter vector, shared with adadelta_optax/_fast.py.
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
    if (F & kClipValue) {
      // Comparisons (not fmin/fmax) so that NaN propagates, as XLA's min/max do.
      gi = gi < -clip ? -clip : gi;
      gi = gi > clip ? clip : gi;
    }
    if (F & kScale) gi = gi * scale;
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

template <typename T, int... Fs>
constexpr std::array<LoopFn, sizeof...(Fs)> MakeTable(std::integer_sequence<int, Fs...>) {
  return {&ErasedLoop<T, Fs>...};
}

template <typename T>
LoopFn Select(int32_t flags) {
  static constexpr auto table = MakeTable<T>(std::make_integer_sequence<int, kAllFlags + 1>{});
  return table[flags & kAllFlags];
}

// Below this many elements one thread is faster than starting another.
constexpr int64_t kMinParallel = int64_t(1) << 18;

struct Leaf {
  int64_t n;
  int64_t segment;  // elements per segment: each segment has its own hyperparameter row
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

// Cuts the concatenation of all leaves into one contiguous range per thread.
std::vector<std::vector<Piece>> Partition(const std::vector<Leaf>& leaves) {
  int64_t total = 0;
  for (const Leaf& leaf : leaves) total += leaf.n;
  const int64_t threads = std::max<int64_t>(
      1, std::min<int64_t>(std::thread::hardware_concurrency(), total / kMinParallel));
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

template <typename F>
void Parallel(const std::vector<std::vector<Piece>>& work, F&& fn) {
  std::vector<std::thread> workers;
  for (size_t t = 1; t < work.size(); ++t) {
    if (!work[t].empty()) workers.emplace_back([&fn, &work, t] { for (const Piece& p : work[t]) fn(p); });
  }
  for (const Piece& p : work[0]) fn(p);
  for (auto& w : workers) w.join();
}

template <typename T>
T ClipToValue(T v, T clip) {
  v = v < -clip ? -clip : v;
  return v > clip ? clip : v;
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
void RunTree(const std::vector<Leaf>& leaves, const T* hyper, int64_t segments, bool apply) {
  const auto work = Partition(leaves);
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
    // One row of partial sums per thread, added in thread order: the result does not depend on
    // timing.
    std::vector<std::vector<double>> partial(work.size());
    auto norm_pass = [&](size_t t) {
      partial[t].assign(rows, 0.0);
      for (const Piece& p : work[t]) {
        const Leaf& leaf = leaves[p.leaf];
        if (!(leaf.flags & kNormClip)) continue;
        const T* g = static_cast<const T*>(leaf.g);
        const bool clip_value = leaf.flags & kClipValue;
        ForSegments(leaf, p.lo, p.hi, [&](int64_t s, int64_t lo, int64_t hi) {
          const T clip = hyper[s * kNumHyper + kClip];
          double sum = 0.0;
          for (int64_t i = lo; i < hi; ++i) {
            const T v = clip_value ? ClipToValue(g[i], clip) : g[i];
            sum += double(v) * double(v);
          }
          partial[t][p.leaf * segments + s] += sum;
        });
      }
    };
    std::vector<std::thread> workers;
    for (size_t t = 1; t < work.size(); ++t) workers.emplace_back(norm_pass, t);
    norm_pass(0);
    for (auto& w : workers) w.join();
    for (size_t i = 0; i < leaves.size(); ++i) {
      if (!(leaves[i].flags & kNormClip)) continue;
      for (int64_t s = 0; s < segments; ++s) {
        const size_t row = i * segments + s;
        double squared = 0.0;
        for (size_t t = 0; t < work.size(); ++t) squared += partial[t][row];
        // tf.clip_by_norm: g * c / max(||g||, c); the sign flip is already in the scale.
        const T norm = T(std::sqrt(squared));
        const T c = hyper[s * kNumHyper + kClipNorm];
        leaf_hyper[row][kGradScale] = hyper[s * kNumHyper + kGradScale] * (c / (norm > c ? norm : c));
      }
    }
  }
  Parallel(work, [&](const Piece& p) {
    const Leaf& leaf = leaves[p.leaf];
    int32_t flags = leaf.flags & (kClipValue | kScale | kCoupled | kDecoupled);
    if (leaf.flags & kNormClip) flags |= kScale;
    if (apply) flags |= kApply;
    const LoopFn loop = Select<T>(flags);
    ForSegments(leaf, p.lo, p.hi, [&](int64_t s, int64_t lo, int64_t hi) {
      loop(lo, hi, leaf.g, leaf.x, leaf.a, leaf.d, leaf.out, leaf_hyper[p.leaf * segments + s].data());
    });
  });
}

template <ffi::DataType DT>
ffi::Error TreeImpl(ffi::Buffer<DT> hyper, ffi::Buffer<ffi::S32> flags, ffi::RemainingArgs args,
                    ffi::RemainingRets rets, int32_t mode) {
  using T = ffi::NativeType<DT>;
  const bool apply = mode & 1, has_params = mode & 2;
  const size_t n_leaves = flags.element_count();
  const size_t per_leaf_args = has_params ? 4 : 3;
  const int64_t segments = static_cast<int64_t>(hyper.element_count() / kNumHyper);
  if (segments == 0 || hyper.element_count() % kNumHyper != 0) {
    return ffi::Error::InvalidArgument("adadelta kernel: hyperparameter rows have wrong length");
  }
  if (args.size() != per_leaf_args * n_leaves || rets.size() != 3 * n_leaves || (apply && !has_params)) {
    return ffi::Error::InvalidArgument("adadelta kernel: wrong number of buffers");
  }
  std::vector<Leaf> leaves(n_leaves);
  for (size_t i = 0; i < n_leaves; ++i) {
    auto g = args.get<ffi::AnyBuffer>(i);
    auto a = args.get<ffi::AnyBuffer>((per_leaf_args - 2) * n_leaves + i);
    auto d = args.get<ffi::AnyBuffer>((per_leaf_args - 1) * n_leaves + i);
    auto out = rets.get<ffi::AnyBuffer>(i);
    auto a_out = rets.get<ffi::AnyBuffer>(n_leaves + i);
    auto d_out = rets.get<ffi::AnyBuffer>(2 * n_leaves + i);
    if (g.has_error() || a.has_error() || d.has_error() || out.has_error() || a_out.has_error() ||
        d_out.has_error()) {
      return ffi::Error::InvalidArgument("adadelta kernel: could not decode a buffer");
    }
    const size_t n = g->element_count();
    if (a->element_count() != n || d->element_count() != n || (*out)->element_count() != n ||
        g->element_type() != DT || a->element_type() != DT || d->element_type() != DT) {
      return ffi::Error::InvalidArgument("adadelta kernel: leaf shapes or dtypes differ");
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
    for (auto [src, dst] : {std::pair{*a, *a_out}, std::pair{*d, *d_out}}) {
      if (dst->untyped_data() != src.untyped_data()) {
        std::memcpy(dst->untyped_data(), src.untyped_data(), n * sizeof(T));
      }
    }
    leaves[i] = {static_cast<int64_t>(n), static_cast<int64_t>(n) / segments, g->untyped_data(), x, (*a_out)->untyped_data(), (*d_out)->untyped_data(),
                 apply ? nullptr : (*out)->untyped_data(), flags.typed_data()[i]};
  }
  RunTree<T>(leaves, hyper.typed_data(), segments, apply);
  return ffi::Error::Success();
}

// The floor's loop, compiled and chosen per ISA exactly like the step's, so that the benchmark
// compares like with like.
template <typename T>
inline __attribute__((always_inline)) void FloorBody(int64_t lo, int64_t hi,
                                                     const T* __restrict__ g, T* __restrict__ x,
                                                     T* __restrict__ a, T* __restrict__ d) {
  // Loads and stores in the step's order (g, a, d, x in; x, a, d out), chained through the values
  // so the compiler keeps that order: issuing x's store before a and d are loaded measured up to
  // 15% slower, and a floor slower than the step would not be a floor.
  for (int64_t i = lo; i < hi; ++i) {
    const T gi = g[i];
    const T ai = a[i] + gi;
    const T di = d[i] + ai;
    x[i] = x[i] + di;
    a[i] = ai;
    d[i] = di;
  }
}

#define ADADELTA_FLOOR_LOOP(NAME, TARGET)                                                   \
  template <typename T>                                                                     \
  TARGET void NAME(int64_t lo, int64_t hi, const T* __restrict__ g, T* __restrict__ x,     \
                   T* __restrict__ a, T* __restrict__ d) {                                  \
    FloorBody<T>(lo, hi, g, x, a, d);                                                       \
  }

#if defined(__x86_64__) && defined(__GNUC__)
ADADELTA_FLOOR_LOOP(FloorAvx512, __attribute__((target("avx512f"))))
ADADELTA_FLOOR_LOOP(FloorAvx2, __attribute__((target("avx2"))))
#endif
ADADELTA_FLOOR_LOOP(FloorBase, )

template <typename T>
void FloorLoop(int64_t lo, int64_t hi, const T* g, T* x, T* a, T* d) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (IsaLevel() == 2) return FloorAvx512<T>(lo, hi, g, x, a, d);
  if (IsaLevel() == 1) return FloorAvx2<T>(lo, hi, g, x, a, d);
#endif
  FloorBase<T>(lo, hi, g, x, a, d);
}

// The floor the benchmarks compare with: the same bytes as an apply step (read g, x, a, d; write
// x, a, d), no arithmetic beyond one add per array, with the same partitioning and threads.
template <ffi::DataType DT>
ffi::Error FloorImpl(ffi::RemainingArgs args, ffi::RemainingRets rets) {
  using T = ffi::NativeType<DT>;
  const size_t n_leaves = rets.size() / 3;
  std::vector<Leaf> leaves(n_leaves);
  for (size_t i = 0; i < n_leaves; ++i) {
    auto g = args.get<ffi::AnyBuffer>(i);
    auto x = rets.get<ffi::AnyBuffer>(i);
    auto a = rets.get<ffi::AnyBuffer>(n_leaves + i);
    auto d = rets.get<ffi::AnyBuffer>(2 * n_leaves + i);
    if (g.has_error() || x.has_error() || a.has_error() || d.has_error()) {
      return ffi::Error::InvalidArgument("adadelta floor: could not decode a buffer");
    }
    leaves[i] = {static_cast<int64_t>(g->element_count()), 0, g->untyped_data(), (*x)->untyped_data(),
                 (*a)->untyped_data(), (*d)->untyped_data(), nullptr, 0};
  }
  Parallel(Partition(leaves), [&](const Piece& p) {
    const Leaf& leaf = leaves[p.leaf];
    FloorLoop<T>(p.lo, p.hi, static_cast<const T*>(leaf.g), static_cast<T*>(leaf.x),
                 static_cast<T*>(leaf.a), static_cast<T*>(leaf.d));
  });
  return ffi::Error::Success();
}

}  // namespace

#define ADADELTA_BIND_TREE(DT)            \
  ffi::Ffi::Bind()                        \
      .Arg<ffi::Buffer<DT>>()             \
      .Arg<ffi::Buffer<ffi::S32>>()       \
      .RemainingArgs()                    \
      .RemainingRets()                    \
      .Attr<int32_t>("mode")

#define ADADELTA_BIND_FLOOR(DT) ffi::Ffi::Bind().RemainingArgs().RemainingRets()

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaTreeF32, TreeImpl<ffi::F32>, ADADELTA_BIND_TREE(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaTreeF64, TreeImpl<ffi::F64>, ADADELTA_BIND_TREE(ffi::F64));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFloorF32, FloorImpl<ffi::F32>, ADADELTA_BIND_FLOOR(ffi::F32));
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFloorF64, FloorImpl<ffi::F64>, ADADELTA_BIND_FLOOR(ffi::F64));

// The XLA FFI API version of the headers this library was compiled against (the version every
// handler above reports when it is registered). XLA refuses a handler newer than the running
// jaxlib's API and, once that check has failed, cannot start its CPU backend at all, so the Python
// side (adadelta_optax/_fast.py) reads this first and registers nothing when jaxlib is too old.
extern "C" __attribute__((visibility("default"))) void AdadeltaFfiApiVersion(int32_t* major,
                                                                            int32_t* minor) {
  *major = XLA_FFI_API_MAJOR;
  *minor = XLA_FFI_API_MINOR;
}
