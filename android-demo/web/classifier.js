// A mobclf device bundle in the browser: bundle.json + tokenizer/ + model.onnx, run with onnxruntime-web.
// No DOM here: `ort` is passed in, so the same code runs under Node with onnxruntime-web or onnxruntime-node.
// An early-exit bundle (bundle.json's `early_exit`) needs nothing more: its graph stops at the first exit sure
// enough and also returns `exit_layer`, which `classify` passes on.

import { loadTokenizer } from "./tokenizers.js";

async function fetchOk(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response;
}

/** The probabilities of the bundle's activation ("sigmoid": independent labels, "softmax": one label). */
export function activate(logits, activation) {
  if (activation === "softmax") {
    const top = Math.max(...logits);
    const exps = logits.map((value) => Math.exp(value - top));
    const sum = exps.reduce((a, b) => a + b, 0);
    return exps.map((value) => value / sum);
  }
  if (activation !== "sigmoid") throw new Error(`unknown output activation ${JSON.stringify(activation)}`);
  return logits.map((value) => 1 / (1 + Math.exp(-value)));
}

/**
 * mobclf's decision rule (train/thresholds.py predict_labels): single-label bundles ("argmax") take the most
 * probable label; multi-label bundles every label with probability >= its threshold, or the most probable one
 * when none passes (a news item always has a topic). Returns the indices of the predicted labels and whether
 * the fallback was used.
 */
export function decide(probs, thresholds, decision) {
  let top = 0;
  probs.forEach((p, i) => { if (p > probs[top]) top = i; }); // the first maximum, as numpy's argmax
  if (decision === "argmax") return { predicted: [top], fallback: false };
  const predicted = probs.map((p, i) => i).filter((i) => probs[i] >= thresholds[i]);
  return predicted.length ? { predicted, fallback: false } : { predicted: [top], fallback: true };
}

/**
 * How far a model's probabilities are from changing its decision (toolkit/mobclf/cascade.py confidence): for
 * "argmax" bundles the margin between the two most probable labels, else the least distance of a label from its
 * threshold. The probabilities are rounded to float32 first, as Python and Java hold them.
 */
export function confidence(probs, thresholds, decision) {
  const held = probs.map(Math.fround);
  if (decision === "argmax") {
    if (held.length < 2) return 1;
    const [first, second] = [...held].sort((a, b) => b - a);
    return first - second;
  }
  return Math.min(...held.map((p, i) => Math.abs(p - thresholds[i])));
}

/** Whether a cascade (cascade.json's rule for one runtime) sends a text to its accurate model. */
export function escalates(fastProbs, fastBundle, rule) {
  const decision = fastBundle.output.decision === "argmax" ? "argmax" : "threshold";
  return confidence(fastProbs, fastBundle.thresholds, decision) < rule.threshold;
}

export class BundleClassifier {
  /** Load the bundle directory at `baseUrl` (ending in "/"). */
  static async load(ort, baseUrl) {
    const bundle = await (await fetchOk(new URL("bundle.json", baseUrl))).json();
    const tokenizerUrl = new URL(`${bundle.tokenizer.directory ?? "tokenizer"}/`, baseUrl);
    const tokenizer = await loadTokenizer(async (name) => (await fetchOk(new URL(name, tokenizerUrl))).text());
    const onnx = bundle.model.files.onnx;
    if (!onnx) throw new Error(`${baseUrl}bundle.json has no .onnx model; export with --target web`);
    const modelBytes = new Uint8Array(await (await fetchOk(new URL(onnx.file, baseUrl))).arrayBuffer());
    const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["wasm"] });
    return new BundleClassifier(ort, bundle, tokenizer, session, modelBytes.byteLength);
  }

  constructor(ort, bundle, tokenizer, session, modelBytes) {
    Object.assign(this, { ort, bundle, tokenizer, session, modelBytes });
    this.labels = bundle.labels;
    this.thresholds = bundle.thresholds;
  }

  /** Ids and attention mask of one text, padded with pad_id / mask 0 up to the bundle's min_length. */
  inputs(text) {
    const ids = this.tokenizer.encode(text);
    const length = Math.max(ids.length, this.bundle.inputs.min_length);
    const inputIds = new BigInt64Array(length).fill(BigInt(this.bundle.inputs.pad_id));
    const mask = new BigInt64Array(length);
    ids.forEach((id, i) => {
      inputIds[i] = BigInt(id);
      mask[i] = 1n;
    });
    return { ids, inputIds, mask, length };
  }

  /**
   * Classify one text: probabilities per label, the predicted label indices, timings in ms, and for an early-exit
   * bundle the layer the text left at (`exitLayer`, 1-based).
   */
  async classify(text) {
    const started = performance.now();
    const { ids, inputIds, mask, length } = this.inputs(text);
    const tokenized = performance.now();
    const feeds = {
      input_ids: new this.ort.Tensor("int64", inputIds, [1, length]),
      attention_mask: new this.ort.Tensor("int64", mask, [1, length]),
    };
    const output = await this.session.run(feeds);
    const finished = performance.now();
    const logits = Array.from(output[this.bundle.output.name ?? "logits"].data, Number);
    const probs = activate(logits, this.bundle.output.activation);
    const decision = this.bundle.output.decision === "argmax" ? "argmax" : "threshold";
    return {
      ids, probs, ...decide(probs, this.thresholds, decision),
      tokenizeMs: tokenized - started, inferenceMs: finished - tokenized,
      ...(this.bundle.early_exit ? { exitLayer: Number(output.exit_layer.data[0]) } : {}),
    };
  }
}

/** A cascade made by `mobclf cascade`: the fast bundle answers, the accurate bundle when the fast one is unsure. */
export class CascadeClassifier {
  /** Load the cascade directory at `baseUrl` (ending in "/"): cascade.json and its two bundles' ONNX models. */
  static async load(ort, baseUrl) {
    const rule = (await (await fetchOk(new URL("cascade.json", baseUrl))).json()).runtimes.onnxruntime;
    if (!rule) throw new Error(`${baseUrl}cascade.json has no ONNX models; cascade bundles exported with --target web`);
    const folder = (file) => new URL(`${file.split("/")[0]}/`, baseUrl);
    const [fast, accurate] = await Promise.all([BundleClassifier.load(ort, folder(rule.fast)),
                                                BundleClassifier.load(ort, folder(rule.accurate))]);
    return new CascadeClassifier(rule, fast, accurate);
  }

  constructor(rule, fast, accurate) {
    Object.assign(this, { rule, fast, accurate });
    this.labels = fast.labels;
    this.modelBytes = fast.modelBytes + accurate.modelBytes;
  }

  /**
   * Classify one text as the fast model, or as the accurate one when the rule escalates it; says which answered
   * (`answeredBy`) and keeps the fast model's own answer (`fastAnswer`: its confidence and time are shown too).
   */
  async classify(text) {
    const fast = await this.fast.classify(text);
    if (!escalates(fast.probs, this.fast.bundle, this.rule)) return { ...fast, answeredBy: "fast", fastAnswer: fast };
    const accurate = await this.accurate.classify(text);
    return { ...accurate, answeredBy: "accurate", fastAnswer: fast, tokenizeMs: fast.tokenizeMs + accurate.tokenizeMs,
             inferenceMs: fast.inferenceMs + accurate.inferenceMs };
  }
}
