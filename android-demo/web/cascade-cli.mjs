#!/usr/bin/env node
// node cascade-cli.mjs CASCADE_DIR LOGITS.jsonl
// For each line of the fast model's {"logits": [...]}, whether the cascade's ONNX rule sends the text to its
// accurate model ({"escalate": true|false, "confidence": c}): the JavaScript side of tests/test_cascade.py.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { activate, confidence, escalates } from "./classifier.js";

const [directory, logitsFile] = process.argv.slice(2);
if (!directory || !logitsFile) {
  console.error("usage: node cascade-cli.mjs CASCADE_DIR LOGITS.jsonl");
  process.exit(2);
}
const rule = JSON.parse(await readFile(join(directory, "cascade.json"), "utf8")).runtimes.onnxruntime;
const fast = JSON.parse(await readFile(join(directory, rule.fast.split("/")[0], "bundle.json"), "utf8"));
const decision = fast.output.decision === "argmax" ? "argmax" : "threshold";
const lines = (await readFile(logitsFile, "utf8")).split("\n").filter((line) => line.trim());
const out = lines.map((line) => {
  const probs = activate(JSON.parse(line).logits, fast.output.activation);
  return JSON.stringify({ escalate: escalates(probs, fast, rule), confidence: confidence(probs, fast.thresholds,
                                                                                          decision) });
});
process.stdout.write(out.join("\n") + "\n");
