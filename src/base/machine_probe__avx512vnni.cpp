// The int8 peak loop: vpdpbusd on zmm registers (machine_probe.h). A vpdpbusd lane does 4 multiply-adds.
#include "base/machine_probe.h"
#include "base/machine_probe_asm.h"

namespace moefuse::probe {
namespace {

void vpdpbusd_zmm_loop(int64_t iters) { MOEFUSE_PROBE_LOOP(iters, "vpdpbusd ", "zmm"); }

}  // namespace

const PeakLoop kDpbusdZmm{"vpdpbusd_zmm", vpdpbusd_zmm_loop, 12 * 64 * 2};

}  // namespace moefuse::probe
