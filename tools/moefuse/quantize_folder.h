// `moefuse quantize --weights DIR --out OUTDIR`: a whole model folder (quantize_folder.cpp).
#pragma once

#include <cstdint>
#include <string>

#include "moefuse/config.h"

namespace moefuse::cli {

struct QuantizeFolderArgs {
  std::string weights;  // the model folder
  std::string out;      // the output folder
  std::string mode;     // w8a8 | w8a8c8 | w4a16 | w4a8 (empty: w8a8)
  int64_t group_size = 0;  // w4a16, w4a8 (0: 128)
  bool asymmetric = false; // w4a16, w4a8
  std::string layers;   // "3,5-7" (empty: every MoE layer)
  int threads = 0;
  bool json = false;
};

/// Refuses --group-size / --asymmetric (given when group_size != 0 / asymmetric) with a mode that has no int4 groups.
void check_int4_flags(int64_t group_size, bool asymmetric, QuantMode mode);

/// Quantises the folder (moefuse::quantize_model) with a progress bar on a terminal and prints what was written;
/// returns the exit status.
int quantize_folder(const QuantizeFolderArgs& a);

}  // namespace moefuse::cli
