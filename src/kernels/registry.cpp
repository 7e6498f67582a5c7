#include "kernels/registry.h"

namespace moefuse::kernels {

std::span<const KernelInfo> registry() {
  static const std::vector<KernelInfo> all = [] {
    std::vector<KernelInfo> v;
    for (auto family : {gemm_registry(), rows_registry()}) v.insert(v.end(), family.begin(), family.end());
    return v;
  }();
  return all;
}

const KernelInfo* find(Op op, DType in, const Dispatch& d) {
  const KernelInfo* best = nullptr;
  for (const KernelInfo& k : registry())
    if (k.op == op && k.in == in && k.applies(d)) best = &k;
  return best;
}

std::vector<Dispatch> available_dispatches() {
  std::vector<Dispatch> out;
  for (Isa i : gemm::available_isas()) out.push_back(Dispatch{i, false});
  if (gemm::vnni_available()) out.push_back(Dispatch{Isa::avx512, true});
  const std::vector<Isa> isas = gemm::available_isas();
  if (isas.back() >= Isa::amx) out.push_back(Dispatch{Isa::amx, gemm::vnni_available(), Numerics::native});
  return out;
}

bool runs_here(const KernelInfo& k) {
  for (const Dispatch& d : available_dispatches())
    if (k.applies(d)) return true;
  return false;
}

bool runs_here_portable(const KernelInfo& k) {
  for (const Dispatch& d : available_dispatches())
    if (d.numerics == Numerics::portable && k.applies(d)) return true;
  return false;
}

bool avx512_with_vnni(const Dispatch& d) { return d.isa >= Isa::avx512 && d.vnni; }

bool amx_native(const Dispatch& d) { return d.isa >= Isa::amx && d.numerics == Numerics::native; }

bool avx512_bf16_dot(const Dispatch& d) { return *bf16_dot_unusable_reason(d.isa) == '\0'; }

}  // namespace moefuse::kernels
