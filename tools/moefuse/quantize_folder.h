// `moefuse quantize --weights DIR --out OUTDIR`: a whole model folder (quantize_folder.cpp).
#pragma once

#include <string>

namespace moefuse::cli {

struct QuantizeFolderArgs {
  std::string weights;  // the model folder
  std::string out;      // the output folder
  std::string mode;     // w8a8 | w8a8c8 (empty: w8a8)
  std::string layers;   // "3,5-7" (empty: every MoE layer)
  int threads = 0;
  bool json = false;
};

/// Quantises the folder (moefuse::quantize_model) with a progress bar on a terminal and prints what was written;
/// returns the exit status.
int quantize_folder(const QuantizeFolderArgs& a);

}  // namespace moefuse::cli
