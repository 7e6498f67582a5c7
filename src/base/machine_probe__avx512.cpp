// The fp32 peak loop on zmm registers (machine_probe.h).
#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"

namespace moefuse::probe {
namespace {

void fma_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vfmadd231ps ", "zmm"); }

}  // namespace

const PeakLoop kFmaZmm{"vfmadd231ps_zmm", fma_zmm_loop, 12 * 16 * 2};

}  // namespace moefuse::probe
