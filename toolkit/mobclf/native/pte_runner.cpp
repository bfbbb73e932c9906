// mobclf's native runner: one .pte classifier in the ExecuTorch C++ runtime, as a phone app runs it.
//
//   pte_runner MODEL.pte INPUTS [--threads N] [--warmup N] [--etdump FILE] [--exits RULE]
//
// INPUTS holds one text per line, already tokenized as the bundle's tokenizer does it: the input ids, a tab, the
// attention mask (both space-separated, as long as the text's own tokens). The runner loads the program (memory-
// mapped), runs the first text (its "first inference"), then `--warmup` texts, then every text once, timed, and
// prints one JSON object: load and first-inference time, each text's time and logits (exact: 9 significant digits
// round-trip a float32), and the process's peak RSS (VmHWM: counts this program only, not the process that
// started it). With --etdump the runtime records every operator's time into FILE for ExecuTorch's Inspector
// (timings are then the traced ones: measure and profile in separate runs).
//
// With --exits, MODEL.pte is an early-exit program (mobclf/export/early_exit.py) and RULE a text file of three
// lines: the confidence kind ("margin" or "threshold_distance") and the threshold; the methods in order; the
// per-label thresholds. Each text runs the methods in turn, each passing its states on, until an exit's confidence
// reaches the threshold (the rule of mobclf/models/early_exit.py and of the app's DeviceBundle.leavesAt), and its
// record gets "exit_layer" (1-based).
//
// Built by mobclf.native from the executorch wheel's headers and libraries (see that module for the flags).

#include <executorch/devtools/etdump/etdump_flatcc.h>
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
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

struct ExitRule {
  bool margin = false;  // the top-two margin (single-label), else the least distance of a label from its threshold
  double threshold = 0;
  std::vector<std::string> methods;
  std::vector<double> label_thresholds;
};

struct Answer {
  std::vector<float> logits;
  int exit_layer = 0;  // 0 for a plain classifier
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

static ExitRule read_rule(const char* path) {
  std::ifstream file(path);
  if (!file) fail(std::string("cannot read ") + path);
  ExitRule rule;
  std::string kind, line;
  file >> kind >> rule.threshold;
  rule.margin = kind == "margin";
  std::getline(file, line);  // the rest of the first line
  std::getline(file, line);
  std::istringstream methods(line);
  for (std::string method; methods >> method;) rule.methods.push_back(method);
  std::getline(file, line);
  std::istringstream thresholds(line);
  for (double value; thresholds >> value;) rule.label_thresholds.push_back(value);
  if ((!rule.margin && kind != "threshold_distance") || rule.methods.empty())
    fail(std::string(path) + ": expected a confidence kind and threshold, the methods, the label thresholds");
  return rule;
}

// An exit's confidence, as DeviceBundle.confidence: float probabilities (sigmoid in double, rounded to float),
// the margin or the distance in double.
static double confidence(const ExitRule& rule, const std::vector<float>& logits) {
  std::vector<float> probabilities;
  for (float logit : logits) probabilities.push_back(static_cast<float>(1.0 / (1.0 + std::exp(-(double)logit))));
  if (rule.margin) {
    if (probabilities.size() < 2) return 1.0;
    double first = -INFINITY, second = -INFINITY;
    for (float probability : probabilities) {
      if (probability > first) second = first, first = probability;
      else if (probability > second) second = probability;
    }
    return first - second;
  }
  double nearest = INFINITY;
  for (size_t i = 0; i < probabilities.size() && i < rule.label_thresholds.size(); ++i)
    nearest = std::min(nearest, std::fabs((double)probabilities[i] - rule.label_thresholds[i]));
  return nearest;
}

static double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

static std::vector<float> floats(const EValue& value) {
  const auto& tensor = value.toTensor();
  const float* data = tensor.const_data_ptr<float>();
  return std::vector<float>(data, data + tensor.numel());
}

// The text's logits from `forward`, or with an exit rule from the first exit sure enough (its methods chained).
static Answer answer(Module& module, Text& text, const ExitRule* rule) {
  const auto length = static_cast<executorch::aten::SizesType>(text.ids.size());
  auto ids = executorch::extension::make_tensor_ptr({1, length}, text.ids.data(), executorch::aten::ScalarType::Long);
  auto mask = executorch::extension::make_tensor_ptr({1, length}, text.mask.data(), executorch::aten::ScalarType::Long);
  std::vector<EValue> inputs = {EValue(*ids), EValue(*mask)};
  const std::vector<std::string> methods = rule ? rule->methods : std::vector<std::string>{"forward"};
  for (size_t number = 1; number <= methods.size(); ++number) {
    const auto outputs = module.execute(methods[number - 1], inputs);
    if (!outputs.ok())
      fail(methods[number - 1] + " failed with error " + std::to_string(static_cast<int>(outputs.error())));
    if (number == methods.size()) return {floats(outputs->at(0)), rule ? static_cast<int>(number) : 0};
    std::vector<float> logits = floats(outputs->at(1));
    if (confidence(*rule, logits) >= rule->threshold) return {logits, static_cast<int>(number)};
    inputs[0] = outputs->at(0);  // this layer's states, for the next method
  }
  return {};
}

static long peak_rss_kb() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int main(int argc, char** argv) {
  if (argc < 3) fail("usage: pte_runner MODEL.pte INPUTS [--threads N] [--warmup N] [--etdump FILE] [--exits RULE]");
  int threads = 1, warmup = 0;
  const char* etdump_path = nullptr;
  std::unique_ptr<ExitRule> rule;
  for (int i = 3; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--warmup")) warmup = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--etdump")) etdump_path = argv[i + 1];
    else if (!std::strcmp(argv[i], "--exits")) rule = std::make_unique<ExitRule>(read_rule(argv[i + 1]));
    else fail(std::string("unknown option ") + argv[i]);
  }
  std::vector<Text> texts = read_inputs(argv[2]);
  executorch::extension::threadpool::get_threadpool()->_unsafe_reset_threadpool(threads);

  auto start = Clock::now();
  std::unique_ptr<executorch::runtime::EventTracer> tracer;
  if (etdump_path) tracer = std::make_unique<executorch::etdump::ETDumpGen>();
  Module module(argv[1], Module::LoadMode::Mmap, std::move(tracer));
  for (const std::string& method : rule ? rule->methods : std::vector<std::string>{"forward"})
    if (module.load_method(method) != executorch::runtime::Error::Ok)
      fail(std::string("cannot load ") + argv[1] + " (method " + method + ")");
  const double load_ms = ms_since(start);
  start = Clock::now();
  answer(module, texts[0], rule.get());
  const double first_ms = ms_since(start);
  for (int i = 0; i < warmup; ++i) answer(module, texts[i % texts.size()], rule.get());

  std::string out = "{\"load_ms\": " + std::to_string(load_ms) + ", \"first_inference_ms\": " +
                    std::to_string(first_ms) + ", \"texts\": [";
  char number[32];
  for (size_t i = 0; i < texts.size(); ++i) {
    start = Clock::now();
    const Answer text = answer(module, texts[i], rule.get());
    out += std::string(i ? ", " : "") + "{\"ms\": " + std::to_string(ms_since(start));
    if (text.exit_layer) out += ", \"exit_layer\": " + std::to_string(text.exit_layer);
    out += ", \"logits\": [";
    for (size_t j = 0; j < text.logits.size(); ++j) {
      std::snprintf(number, sizeof number, "%s%.9g", j ? ", " : "", text.logits[j]);
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
