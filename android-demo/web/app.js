// The demo page: pick a bundle, type or tap a headline, see the labels. See README.md for serving it.
//
//   index.html?bundle=bundles/tinybert/     one bundle directory (relative to the page, or an absolute URL)
//   index.html                              the bundles listed in bundles.json next to the page:
//                                           {"bundles": [{"name": "TinyBERT", "path": "bundles/tinybert/"}, ...],
//                                            "samples": ["optional headlines", ...]}
//
// A directory may also be a cascade (`mobclf cascade`, its manifest.json says so): the page then shows which of
// its two models answered each text.

import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";

import { BundleClassifier, CascadeClassifier, confidence } from "./classifier.js";

// onnxruntime-web fetches its .wasm from here; it must be an absolute URL. One thread: a plain static server
// sends no COOP/COEP headers, so the page cannot use SharedArrayBuffer.
ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
ort.env.wasm.numThreads = 1;

const DEFAULT_SAMPLES = [
  "央行宣布下调金融机构存款准备金率0.5个百分点",
  "勇士120:110击败凯尔特人 库里砍下40分",
  "华为发布新一代5G折叠屏手机 售价9999元起",
  "教育部:2024年高考报名人数达1342万",
  "Oil prices rise as OPEC agrees to extend output cuts",
  "Apple reports record quarterly revenue on iPhone sales",
];
const BELOW_SHOWN = 3;

const $ = (id) => document.getElementById(id);
const state = { classifier: null, bundles: [], loading: null };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function readConfig() {
  const params = new URLSearchParams(location.search);
  const single = params.get("bundle");
  if (single) {
    const path = single.endsWith("/") ? single : `${single}/`;
    return { bundles: [{ name: path.replace(/\/$/, "").split("/").pop() || path, path }], samples: null };
  }
  const response = await fetch("bundles.json");
  if (!response.ok) {
    throw new Error("no bundle given: open index.html?bundle=bundles/NAME/ or list bundles in bundles.json "
      + "(see README.md)");
  }
  const config = await response.json();
  if (!config.bundles?.length) throw new Error("bundles.json lists no bundles");
  return config;
}

function renderSamples(samples) {
  const list = $("samples");
  list.replaceChildren(...samples.map((sample) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sample";
    button.textContent = sample;
    button.addEventListener("click", () => {
      $("text").value = sample;
      classify();
    });
    item.append(button);
    return item;
  }));
}

/** The confidence rule's name for a bundle's decision (classifier.js `confidence`). */
const decisionOf = (bundle) => (bundle.output.decision === "argmax" ? "argmax" : "threshold");

function labelItem(classifier, index, prob, kind) {
  const item = document.createElement("li");
  item.className = `label ${kind}`;
  item.dataset.label = classifier.labels[index];
  item.dataset.prob = prob.toFixed(6);
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = classifier.labels[index];
  const value = document.createElement("span");
  value.className = "prob";
  value.textContent = `${(prob * 100).toFixed(1)}%`;
  const bar = document.createElement("span");
  bar.className = "bar";
  const fill = document.createElement("span");
  fill.style.width = `${(prob * 100).toFixed(1)}%`;
  bar.append(fill);
  if (classifier.bundle.output.decision !== "argmax") {
    const mark = document.createElement("span"); // the label's threshold on the bar
    mark.className = "threshold";
    mark.style.left = `${(classifier.thresholds[index] * 100).toFixed(1)}%`;
    mark.title = `threshold ${classifier.thresholds[index]}`;
    bar.append(mark);
  }
  const threshold = document.createElement("span");
  threshold.className = "thr";
  threshold.textContent = classifier.bundle.output.decision === "argmax" ? "" : `≥ ${classifier.thresholds[index]}`;
  item.append(name, value, bar, threshold);
  return item;
}

/**
 * For a cascade: which model answered and the fast model's confidence against the threshold, shown and on #result
 * as data-answered-by and data-fast-confidence; for an early-exit bundle the layer the text left at
 * (data-exit-layer). A plain bundle hides and clears them.
 */
function showAnswerer(classifier, { answeredBy, fastAnswer, exitLayer }) {
  const result = $("result");
  const note = $("answered-by");
  note.hidden = !answeredBy && !exitLayer;
  delete result.dataset.answeredBy;
  delete result.dataset.fastConfidence;
  delete result.dataset.exitLayer;
  if (exitLayer) {
    const { depth, threshold } = classifier.bundle.early_exit;
    note.textContent = exitLayer < depth
      ? `left after layer ${exitLayer} of ${depth}: its exit's confidence reached ${threshold.toPrecision(3)}`
      : `ran all ${depth} layers: no earlier exit reached confidence ${threshold.toPrecision(3)}`;
    result.dataset.exitLayer = String(exitLayer);
  }
  if (!answeredBy) return;
  const { fast, accurate, rule } = classifier;
  const sure = confidence(fastAnswer.probs, fast.thresholds, decisionOf(fast.bundle));
  const [shown, threshold] = [sure.toPrecision(3), rule.threshold.toPrecision(3)];
  note.textContent = answeredBy === "fast"
    ? `answered by the fast model (${fast.bundle.model.architecture}): confidence ${shown} ≥ threshold ${threshold}`
    : `escalated to the accurate model (${accurate.bundle.model.architecture}): the fast model's confidence `
      + `${shown} < threshold ${threshold}`;
  result.dataset.answeredBy = answeredBy;
  result.dataset.fastConfidence = String(sure);
}

/** "1.2 ms model + 0.3 ms tokenizer (12 tokens)"; for a cascade each model's time ("1.2 ms fast + 4.5 ms accurate"). */
function timing({ answeredBy, fastAnswer, inferenceMs, tokenizeMs, ids }) {
  let models = `${inferenceMs.toFixed(1)} ms`;
  if (answeredBy) {
    const fastMs = fastAnswer.inferenceMs;
    models = `${fastMs.toFixed(1)} ms fast`
      + (answeredBy === "accurate" ? ` + ${(inferenceMs - fastMs).toFixed(1)} ms accurate` : "");
  }
  return `${models} model + ${tokenizeMs.toFixed(1)} ms tokenizer (${ids.length} tokens)`;
}

async function classify() {
  const classifier = state.classifier;
  if (!classifier) return;
  const result = $("result");
  result.dataset.state = "running";
  try {
    const text = $("text").value;
    const answer = await classifier.classify(text);
    const { probs, predicted, fallback, inferenceMs } = answer;
    const model = answer.answeredBy ? classifier[answer.answeredBy] : classifier; // whose labels and thresholds
    const chosen = new Set(predicted);
    const ranked = probs.map((p, i) => i).sort((a, b) => probs[b] - probs[a]);
    $("predicted").replaceChildren(...ranked.filter((i) => chosen.has(i))
      .map((i) => labelItem(model, i, probs[i], fallback ? "predicted fallback" : "predicted")));
    $("below").replaceChildren(...ranked.filter((i) => !chosen.has(i)).slice(0, BELOW_SHOWN)
      .map((i) => labelItem(model, i, probs[i], "other")));
    $("fallback-note").hidden = !fallback;
    $("below-heading").textContent = model.bundle.output.decision === "argmax" ? "Next most probable"
      : "Top labels below threshold";
    showAnswerer(classifier, answer);
    $("timing").textContent = timing(answer);
    result.dataset.inferenceMs = inferenceMs.toFixed(3);
    result.dataset.state = "done";
    showError("");
  } catch (error) {
    result.dataset.state = "error";
    showError(`classification failed: ${error.message}`);
  }
}

/** "textcnn, int8 (dynamic), 0.05 MB": one bundle's model. */
function describeModel(classifier) {
  const onnx = classifier.bundle.model.files.onnx;
  return `${classifier.bundle.model.architecture}, ${onnx.precision}${onnx.scheme ? ` (${onnx.scheme})` : ""}, `
    + `${(classifier.modelBytes / 1024 / 1024).toFixed(2)} MB`;
}

function describe(classifier, name) {
  if (classifier instanceof CascadeClassifier) {
    const { fast, accurate, rule } = classifier;
    return `${name}: cascade of a fast ${describeModel(fast)} and an accurate ${describeModel(accurate)}; `
      + `escalates below confidence ${rule.threshold.toPrecision(3)} (${(100 * rule.val.escalation_rate).toFixed(1)}% `
      + `of val texts), ${classifier.labels.length} labels`;
  }
  const bundle = classifier.bundle;
  const rule = bundle.output.decision === "argmax" ? "argmax" : "per-label thresholds";
  const exits = bundle.early_exit ? `, early exit after any of ${bundle.early_exit.depth} layers at confidence `
    + `${bundle.early_exit.threshold.toPrecision(3)}` : "";
  return `${name}: ${describeModel(classifier)}, ${bundle.labels.length} labels, ${bundle.tokenizer.type} `
    + `tokenizer, ${rule}${exits}`;
}

/**
 * Whether the directory at `url` is a cascade: its manifest.json (every directory mobclf writes has one) says so.
 * A directory without one (bundle files copied by hand) is read as a plain bundle.
 */
async function isCascade(url) {
  const response = await fetch(new URL("manifest.json", url));
  return response.ok && (await response.json()).kind === "cascade";
}

async function selectBundle(index) {
  const { name, path } = state.bundles[index];
  const loading = (state.loading = Symbol(name));
  $("classify").disabled = true;
  $("model-info").textContent = `loading ${name}…`;
  document.body.dataset.model = "";
  try {
    const started = performance.now();
    const url = new URL(path, location.href);
    const classifier = await ((await isCascade(url)) ? CascadeClassifier : BundleClassifier).load(ort, url);
    if (state.loading !== loading) return; // another model was picked meanwhile
    state.classifier = classifier;
    $("model-info").textContent = `${describe(classifier, name)} · loaded in `
      + `${(performance.now() - started).toFixed(0)} ms`;
    document.body.dataset.model = name;
    $("classify").disabled = false;
    showError("");
    if ($("text").value.trim()) await classify();
  } catch (error) {
    $("model-info").textContent = `${name}: not loaded`;
    showError(`cannot load the bundle at ${path}: ${error.message}`);
  }
}

async function main() {
  try {
    const config = await readConfig();
    state.bundles = config.bundles;
    const select = $("model");
    select.replaceChildren(...config.bundles.map(({ name }, i) => new Option(name, String(i))));
    select.disabled = config.bundles.length < 2;
    select.addEventListener("change", () => selectBundle(Number(select.value)));
    const samples = config.samples?.length ? config.samples : DEFAULT_SAMPLES;
    renderSamples(samples);
    $("text").value = samples[0];
    $("classify").addEventListener("click", classify);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) classify();
    });
    await selectBundle(0);
  } catch (error) {
    showError(error.message);
    $("model-info").textContent = "no model";
  }
}

main();
