// mobclf's native runner: one .pte classifier in the ExecuTorch C++ runtime, as a phone app runs it.
//
//   pte_runner MODEL.pte INPUTS [--threads N] [--warmup N] [--etdump FILE]
//
// INPUTS holds one text per line, already tokenized as the bundle's tokenizer does it: the input ids, a tab, the
// attention mask (both space-separated, as long as the text's own tokens). The runner loads the program (memory-
// mapped), runs the first text (its "first inference"), then `--warmup` texts, then every text once, timed, and
// prints one JSON object: load and first-inference time, each text's time and logits (exact: 9 significant digits
// round-trip a float32), and the process's peak RSS (VmHWM: counts this program only, not the process that
// started it). With --etdump the runtime records every operator's time into FILE for ExecuTorch's Inspector
// (timings are then the traced ones: measure and profile in separate runs).
//
// Built by mobclf.native from the executorch wheel's headers and libraries (see that module for the flags).

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

// The wheel ships libexecutorch_threadpool.so but not threadpool.h (it includes pthreadpool.h, which it lacks):
// the two calls this runner makes, declared as the library defines them.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

using executorch::extension::Module;
using executorch::runtime::EValue;
using Clock = std::chrono::steady_clock;

struct Text {
  std::vector<int64_t> ids, mask;
};

static void fail(const std::string& message) {
  std::fprintf(stderr, "pte_runner: %s\n", message.c_str());
  std::exit(2);
}

static std::vector<int64_t> numbers(const std::string& field) {
  std::vector<int64_t> values;
  std::istringstream stream(field);
  for (int64_t value; stream >> value;) values.push_back(value);
  return values;
}

static std::vector<Text> read_inputs(const char* path) {
  std::ifstream file(path);
  if (!file) fail(std::string("cannot read ") + path);
  std::vector<Text> texts;
  std::string line;
  for (size_t number = 1; std::getline(file, line); ++number) {
    const size_t tab = line.find('\t');
    Text text;
    if (tab != std::string::npos) text = {numbers(line.substr(0, tab)), numbers(line.substr(tab + 1))};
    if (text.ids.empty() || text.ids.size() != text.mask.size())
      fail(std::string(path) + " line " + std::to_string(number) + ": expected ids, a tab, and as many mask values");
    texts.push_back(std::move(text));
  }
  if (texts.empty()) fail(std::string(path) + " holds no texts");
  return texts;
}

static double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

static std::vector<float> logits_of(Module& module, Text& text) {
  const auto length = static_cast<executorch::aten::SizesType>(text.ids.size());
  auto ids = executorch::extension::make_tensor_ptr({1, length}, text.ids.data(), executorch::aten::ScalarType::Long);
  auto mask = executorch::extension::make_tensor_ptr({1, length}, text.mask.data(), executorch::aten::ScalarType::Long);
  const auto outputs = module.forward({EValue(*ids), EValue(*mask)});
  if (!outputs.ok()) fail("forward failed with error " + std::to_string(static_cast<int>(outputs.error())));
  const auto& logits = outputs->at(0).toTensor();
  const float* data = logits.const_data_ptr<float>();
  return std::vector<float>(data, data + logits.numel());
}

static long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 3) fail("usage: pte_runner MODEL.pte INPUTS [--threads N] [--warmup N] [--etdump FILE]");
  int threads = 1, warmup = 0;
  const char* etdump_path = nullptr;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--etdump")) etdump_path = argv[i + 1];
    else fail(std::string("unknown option ") + argv[i]);
  }
  std::vector<Text> texts = read_inputs(argv[2]);
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);

  auto start = Clock::now();
  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  if (etdump_path) tracer = std::make_unique<executorch::etdump::ETDumpGen>();
  Module module(argv[1], Module::LoadMode::Mmap, std::move(tracer));
  if (module.load_forward() != executorch::runtime::Error::Ok) fail(std::string("cannot load ") + argv[1]);
  const double load_ms = ms_since(start);
  start = Clock::now();
  logits_of(module, texts[0]);
  const double first_ms = ms_since(start);
  for (int i = 0; i < warmup; ++i) logits_of(module, texts[i % texts.size()]);

  std::string out = "{\"load_ms\": " + std::to_string(load_ms) + ", \"first_inference_ms\": " +
                    std::to_string(first_ms) + ", \"texts\": [";
  char number[32];
  for (size_t i = 0; i < texts.size(); ++i) {
    start = Clock::now();
    const std::vector<float> logits = logits_of(module, texts[i]);
    out += std::string(i ? ", " : "") + "{\"ms\": " + std::to_string(ms_since(start)) + ", \"logits\": [";
    for (size_t j = 0; j < logits.size(); ++j) {
      std::snprintf(number, sizeof number, "%s%.9g", j ? ", " : "", logits[j]);
      out += number;
    }
    out += "]}";
  }
  out += "], \"peak_rss_kb\": " + std::to_string(peak_rss_kb()) + "}";
  std::cout << out << std::endl;

  if (etdump_path) {
    auto* etdump = static_cast<executorch::etdump::ETDumpGen*>(module.event_tracer());
    const auto dump = etdump->get_etdump_data();
    std::FILE* file = std::fopen(etdump_path, "wb");
    if (!file || std::fwrite(dump.buf, 1, dump.size, file) != dump.size)
      fail(std::string("cannot write ") + etdump_path);
    std::fclose(file);
    std::free(dump.buf);
  }
  return 0;
}
