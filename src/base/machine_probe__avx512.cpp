// The zmm peak loops (machine_probe.h): fp32 vfmadd231ps (AVX-512 F) and int8 vpdpbusd (AVX-512 VNNI; a lane does 4
// multiply-adds). Both are asm, so this file's flags only document what they need; int8_peak_loop() offers vpdpbusd
// only where the CPU has it.
#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"

namespace moefuse::probe {
namespace {

void fma_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vfmadd231ps ", "zmm"); }
void vpdpbusd_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vpdpbusd ", "zmm"); }

}  // namespace

const PeakLoop kFmaZmm{"vfmadd231ps_zmm", fma_zmm_loop, 12 * 16 * 2};
const PeakLoop kDpbusdZmm{"vpdpbusd_zmm", vpdpbusd_zmm_loop, 12 * 64 * 2};

}  // namespace moefuse::probe
