// Writes the fuzzers' seed corpus: make_fuzz_corpus DIR creates DIR/config, DIR/safetensors and DIR/npy holding
// small valid files made with the library's own writers (plus a few hand-made variants the writers never produce).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "moefuse/config.h"
#include "moefuse/io.h"

namespace {

using namespace moefuse;
namespace fs = std::filesystem;

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << text;
}

std::string safetensors_image(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return s + header + data;
}

std::string npy_image(const std::string& dict, const std::string& data, char major) {
  std::string s = "\x93NUMPY";
  s += major;
  s += '\0';
  size_t len_bytes = major == 1 ? 2 : 4;
  for (size_t i = 0; i < len_bytes; ++i) s += char((dict.size() >> (8 * i)) & 0xff);
  return s + dict + data;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_fuzz_corpus DIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  for (const char* sub : {"config", "safetensors", "npy"}) fs::create_directories(dir / sub);

  // Configs: every preset, its to_yaml form, and a flow-style variant with anchors and comments.
  for (const std::string& name : preset_names()) {
    write_text(dir / "config" / (name + ".yaml"), std::string(preset_text(name)));
    write_text(dir / "config" / (name + ".to_yaml.yaml"), to_yaml(load_preset(name)));
  }
  write_text(
      dir / "config" / "flow.yaml",
      "exe_mode: graph  # alias\nmodel_config: {model_type: qwen2_moe, num_experts: &e 60, num_experts_per_tok: 4,"
      " hidden_size: 2048, moe_intermediate_size: 1408, shared_expert_intermediate_size: 5632,"
      " scoring_func: 'softmax', norm_topk_prob: false, n_group: 1, topk_group: 1, dtype: \"f16\"}\n");

  // safetensors: every dtype with metadata, strided/empty/scalar tensors, no tensors, and hand-made images with a
  // misaligned tensor and the non-readable dtypes.
  Tensor f32 = Tensor::full(DType::f32, {2, 3}, 1.5);
  write_safetensors((dir / "safetensors" / "every_dtype.safetensors").string(),
                    {{"f32", f32},
                     {"f16", Tensor::full(DType::f16, {3}, -2)},
                     {"bf16", Tensor::full(DType::bf16, {2, 2}, 0.25)},
                     {"i8", Tensor::full(DType::i8, {4}, -7)},
                     {"u8", Tensor::full(DType::u8, {1, 1}, 200)},
                     {"i32", Tensor::full(DType::i32, {2}, 123456)},
                     {"i64", Tensor::full(DType::i64, {1}, -9)},
                     {"bool", Tensor::full(DType::boolean, {3}, 1)}},
                    {{"format", "pt"}});
  write_safetensors((dir / "safetensors" / "shapes.safetensors").string(),
                    {{"t", f32.transpose(0, 1)},
                     {"empty", Tensor::zeros(DType::f32, {0, 4})},
                     {"scalar", Tensor::full(DType::i64, {}, 5)}});
  write_safetensors((dir / "safetensors" / "none.safetensors").string(), {});
  write_text(dir / "safetensors" / "misaligned.safetensors",
             safetensors_image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                               R"("b":{"dtype":"F32","shape":[1],"data_offsets":[1,5]}})",
                               std::string("\x01\x00\x00\xc0\x3f", 5)));
  write_text(dir / "safetensors" / "other_dtypes.safetensors",
             safetensors_image(R"({"__metadata__":{"k":"v"},"d":{"dtype":"F64","shape":[1],"data_offsets":[0,8]},)"
                               R"("q":{"dtype":"F4","shape":[2,2],"data_offsets":[8,10]},)"
                               R"("r":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[10,11]}})",
                               std::string(11, '\0')));
  // Large headers (far above the 8192 bytes of the small seeds; run.sh gives this target a max_len that holds
  // them): 50,000 one-byte tensors, one entry with a 200,000-extent shape, and 1 MiB of whitespace around one entry.
  // A parser that is quadratic in the number of entries times out on the first (it once took about 30 s).
  {
    std::string h = "{", data;
    char buf[96];
    for (int i = 0; i < 50000; ++i) {
      std::snprintf(buf, sizeof buf, "%s\"t%05d\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[%d,%d]}",
                    i ? "," : "", i, i, i + 1);
      h += buf;
      data += char(i & 0x7f);
    }
    write_text(dir / "safetensors" / "large_header_entries.safetensors", safetensors_image(h + "}", data));
    std::string shape = "1";
    for (int i = 1; i < 200000; ++i) shape += ",1";
    write_text(dir / "safetensors" / "large_header_shape.safetensors",
               safetensors_image(R"({"s":{"dtype":"U8","shape":[)" + shape + R"(],"data_offsets":[0,1]}})", "x"));
    const std::string space(1 << 19, ' ');
    write_text(dir / "safetensors" / "large_header_space.safetensors",
               safetensors_image("{" + space + R"("a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]})" + space + "}",
                                 "\x01\x02"));
  }

  // .npy: every dtype, 0-D and empty arrays, and hand-made versions 2.0/3.0 and Fortran order.
  write_npy((dir / "npy" / "f32.npy").string(), f32);
  write_npy((dir / "npy" / "f16.npy").string(), Tensor::full(DType::f16, {3}, 0.5));
  write_npy((dir / "npy" / "i8.npy").string(), Tensor::full(DType::i8, {2, 2}, -1));
  write_npy((dir / "npy" / "u8.npy").string(), Tensor::full(DType::u8, {}, 7));
  write_npy((dir / "npy" / "i32.npy").string(), Tensor::full(DType::i32, {1, 2, 1}, 3));
  write_npy((dir / "npy" / "i64.npy").string(), Tensor::zeros(DType::i64, {0, 2}));
  write_npy((dir / "npy" / "bool.npy").string(), Tensor::full(DType::boolean, {2}, 1));
  write_text(dir / "npy" / "v2.npy",
             npy_image("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }\n", std::string(8, '\1'), 2));
  write_text(dir / "npy" / "v3_fortran.npy",
             npy_image("{\"descr\": \"|u1\", \"fortran_order\": True, \"shape\": (2, 3L)}\n", "abcdef", 3));
  return 0;
}
