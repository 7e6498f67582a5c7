// moefuse/numerics.h — the two numerics tiers.
//
//   portable: every result is bitwise the same on every x86 CPU and equals the scalar reference (the contracts of
//             docs/operators.md and docs/layer.md): fp32 FMA, vdpbf16ps (after its self-test), VNNI and AMX-INT8
//             kernels, whose arithmetic the contracts define.
//   native:   the portable kernels, except that bf16 weights run on AMX-BF16 tiles at the amx level (moefuse/cpu.h).
//             TDPBF16PS rounds in a way no fp32 fma order reproduces, so its results differ
//             from the portable ones (within the tolerance docs/layer.md states); they are still deterministic on one
//             machine: the same bits for any thread count, batch, chunking or path, because the order of the sums
//             is fixed by the packing, never by the number of rows or threads. On a CPU without AMX-BF16, native
//             is portable.
//
// Which tier runs: a layer's LayerOptions::numerics, else its config's `numerics` key, else default_numerics() (the
// environment variable MOEFUSE_NUMERICS, else native); the operators (moefuse/ops.h) run default_numerics().
#pragma once

#include <string_view>

namespace moefuse {

enum class Numerics : int { native = 0, portable = 1 };

/// "native", "portable".
std::string_view numerics_name(Numerics numerics);

/// Parses "native" or "portable"; throws ValueError naming `source`, what was expected and what it got.
Numerics parse_numerics(std::string_view name, std::string_view source);

/// The process default tier: the environment variable MOEFUSE_NUMERICS (native | portable) read at the first call;
/// unset or empty = native. A bad value is a ValueError naming MOEFUSE_NUMERICS, what was expected and what it got,
/// thrown by every call (so by the first layer made or operator called). Thread-safe.
Numerics default_numerics();

/// Whether the native tier runs bf16 weights on AMX-BF16 where the amx level is in use: the environment variable
/// MOEFUSE_AMX_BF16 (on | off) read at the first call; unset or empty = off. Off by default because on the one AMX
/// machine measured (a Sapphire Rapids-class Xeon, 16 cores; docs/performance.md) the AMX-BF16 kernel made bf16
/// decode 1.6-1.75x slower than the fp32 FMA kernels (T = 1 and 8), while prefill was 1.6-2.2x faster (T = 512,
/// 2048): the native tier must use one kernel at every group size (a token's bits may not depend on its batch), and
/// decode matters most. A bad value is a ValueError naming MOEFUSE_AMX_BF16. Thread-safe.
bool native_amx_bf16();

}  // namespace moefuse
