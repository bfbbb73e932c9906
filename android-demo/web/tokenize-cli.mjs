#!/usr/bin/env node
// node tokenize-cli.mjs TOKENIZER_DIR TEXTS.jsonl
// Prints the ids of each text ({"text": ...} per line) as one line of space-separated numbers, in order:
// the JavaScript side of tests/test_device_tokenizers.py's parity checks.
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { loadTokenizer } from "./tokenizers.js";

const [directory, textsFile] = process.argv.slice(2);
if (!directory || !textsFile) {
  console.error("usage: node tokenize-cli.mjs TOKENIZER_DIR TEXTS.jsonl");
  process.exit(2);
}
const tokenizer = await loadTokenizer((name) => readFile(join(directory, name), "utf8"));
const lines = (await readFile(textsFile, "utf8")).split("\n").filter((line) => line.trim());
const out = lines.map((line) => tokenizer.encode(JSON.parse(line).text).join(" "));
process.stdout.write(out.join("\n") + "\n");
