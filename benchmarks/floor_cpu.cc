// The benchmarks' floor: an XLA FFI handler that moves exactly the bytes of an Adadelta apply step
// (read g, x, a, d; write x, a, d: 28 bytes per float32 parameter) with one add per array and no
// other arithmetic. benchmarks/_floor.py compiles it on demand with setup.py's flags.
//
// It includes the library's kernel source (without its handlers) so that it runs on the very same
// partitioning, XLA intra-op thread pool and per-ISA dispatch as the step it is compared with.
#define ADADELTA_CPU_NO_HANDLERS
#include "../adadelta_optax/_kernel/adadelta_cpu.cc"

namespace {

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

// Arguments g..., x..., a..., d...; results x..., a..., d..., aliased to the x, a and d arguments.
template <ffi::DataType DT>
ffi::Error FloorImpl(ffi::ThreadPool pool, ffi::RemainingArgs args, ffi::RemainingRets rets) {
  using T = ffi::NativeType<DT>;
  const size_t n_leaves = rets.size() / 3;
  if (args.size() != 4 * n_leaves || rets.size() != 3 * n_leaves) {
    return ffi::Error::InvalidArgument("adadelta floor: wrong number of buffers");
  }
  std::vector<Leaf> leaves(n_leaves);
  for (size_t i = 0; i < n_leaves; ++i) {
    auto g = args.get<ffi::AnyBuffer>(i);
    auto x = rets.get<ffi::AnyBuffer>(i);
    auto a = rets.get<ffi::AnyBuffer>(n_leaves + i);
    auto d = rets.get<ffi::AnyBuffer>(2 * n_leaves + i);
    if (g.has_error() || x.has_error() || a.has_error() || d.has_error()) {
      return ffi::Error::InvalidArgument("adadelta floor: could not decode a buffer");
    }
    leaves[i] = {static_cast<int64_t>(g->element_count()), 0, 0, g->untyped_data(), (*x)->untyped_data(),
                 (*a)->untyped_data(), (*d)->untyped_data(), nullptr, 0};
  }
  ForEachPiece(pool, leaves, [&](const Piece& p) {
    const Leaf& leaf = leaves[p.leaf];
    FloorLoop<T>(p.lo, p.hi, static_cast<const T*>(leaf.g), static_cast<T*>(leaf.x),
                 static_cast<T*>(leaf.a), static_cast<T*>(leaf.d));
  });
  return ffi::Error::Success();
}

}  // namespace

#define ADADELTA_BIND_FLOOR ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().RemainingArgs().RemainingRets()

XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFloorF32, FloorImpl<ffi::F32>, ADADELTA_BIND_FLOOR);
XLA_FFI_DEFINE_HANDLER_SYMBOL(AdadeltaFloorF64, FloorImpl<ffi::F64>, ADADELTA_BIND_FLOOR);
