// A checkpoint file truncated after it was opened (another process rewriting it while a layer loads): the weights
// are read with pread, so loading is an IoError naming the file, never a SIGBUS from the memory map. The file is
// truncated between opening and loading, deterministically.
#include <gtest/gtest.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "io/io_test_util.h"
#include "layer/weights.h"
#include "moefuse/error.h"
#include "moefuse/io.h"
#include "moefuse/layer.h"
#include "util/configs.h"

namespace moefuse {
namespace {

using testing::TempDirectory;

MoeConfig small(QuantMode quant) { return testing::tiny_config(DType::bf16, quant, 4, 2); }

LayerOptions one_thread() { return testing::with_threads(1); }

void expect_shrank(const std::function<void()>& f, const std::string& file) {
  try {
    f();
    ADD_FAILURE() << "no error";
  } catch (const IoError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(file + ": tensor \"", 0), 0u) << m;
    EXPECT_NE(m.find("it shrank after it was opened"), std::string::npos) << m;
  }
}

TEST(CheckpointShrink, LoadingATruncatedCheckpointIsAnIoError) {
  TempDirectory dir;
  // A float checkpoint (rows converted on load) and an int8 one (rows copied as they are).
  for (QuantMode quant : {QuantMode::none, QuantMode::w8a8}) {
    SCOPED_TRACE(int(quant));
    const MoeConfig c = small(quant);
    const MoeLayer source = MoeLayer::with_random_weights(c, 7, one_thread());
    const std::string file = dir.file(quant == QuantMode::none ? "float.safetensors" : "int8.safetensors");
    write_safetensors(file, layer::checkpoint_tensors(c, source.weights(), 0));
    const Checkpoint ck(file);
    ASSERT_EQ(::truncate(file.c_str(), 4096), 0);  // inside the header: every tensor's data is gone
    expect_shrank([&] { MoeLayer::from_checkpoint(c, ck, 0, one_thread()); }, file);
  }
}

TEST(CheckpointShrink, ReadAndReadBytesUsePread) {
  TempDirectory dir;
  const std::string file = dir.file("t.safetensors");
  Tensor t = Tensor::zeros(DType::f32, {64, 64});
  write_safetensors(file, {{"a", t}, {"b", t}});
  const SafetensorsFile f(file);
  float row[64];
  f.read_bytes("b", 63 * 256, row, sizeof row);
  EXPECT_THROW(f.read_bytes("b", 63 * 256, row, sizeof row + 1), ValueError);
  EXPECT_EQ(f.read("a").numel(), 64 * 64);
  ASSERT_EQ(::truncate(file.c_str(), 20000), 0);
  expect_shrank([&] { f.read("b"); }, file);
  expect_shrank([&] { f.read_bytes("b", 63 * 256, row, sizeof row); }, file);  // b ends past the new end
}

}  // namespace
}  // namespace moefuse
