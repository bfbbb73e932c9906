#!/usr/bin/env node
// node tools/browser-check.mjs PAGE_URL CASES.json OUT_DIR
//
// Opens the demo page in headless Debian Chromium (playwright-core, phone viewport 390x844), and for each model
// in CASES.json ({"models": ["name in the model switcher", ...], "texts": ["headline", ...]}) selects it, types
// each text, presses Classify and reads the labels the page shows (and, for a cascade, which of its models
// answered: "answered_by" is "fast" or "accurate", null for a plain bundle; for an early-exit bundle the layer the
// text left at, "exit_layer"). Prints JSON
// {"results": {model: [{"text", "labels", "probs", "below", "answered_by", ...}]}, "info": {model: "model line"},
// "screenshots": [...], "console": [...]} and saves OUT_DIR/<model>.png. Used by tests/test_web_demo.py; also
// handy by hand against `python3 -m http.server`.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const [pageUrl, casesFile, outDir] = process.argv.slice(2);
if (!pageUrl || !casesFile || !outDir) {
  console.error("usage: node tools/browser-check.mjs PAGE_URL CASES.json OUT_DIR");
  process.exit(2);
}
const cases = JSON.parse(readFileSync(casesFile, "utf8"));
mkdirSync(outDir, { recursive: true });
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "mobclf-chromium-"));

const context = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
  viewport: { width: 390, height: 844 },
  deviceScaleFactor: 2,
  isMobile: true,
  hasTouch: true,
});
const messages = [];
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (message) => messages.push(`${message.type()}: ${message.text()}`));
  page.on("pageerror", (error) => messages.push(`pageerror: ${error.message}`));
  page.on("requestfailed", (request) => messages.push(`requestfailed: ${request.url()}`));
  await page.goto(pageUrl);

  const results = {};
  const info = {};
  const screenshots = [];
  for (const model of cases.models) {
    await page.waitForSelector("body[data-model]:not([data-model=''])", { timeout: 60_000 }); // first model loaded
    if (await page.getAttribute("body", "data-model") !== model) await page.selectOption("#model", { label: model });
    await page.waitForSelector(`body[data-model="${model}"]`, { timeout: 60_000 });
    info[model] = await page.textContent("#model-info");
    results[model] = [];
    for (const text of cases.texts) {
      await page.fill("#text", text);
      await page.evaluate(() => { document.getElementById("result").dataset.state = "idle"; });
      await page.tap("#classify");
      await page.waitForSelector('#result[data-state="done"], #result[data-state="error"]', { timeout: 30_000 });
      results[model].push(await page.evaluate(() => {
        const read = (id) => [...document.querySelectorAll(`#${id} li`)]
          .map((li) => ({ label: li.dataset.label, prob: Number(li.dataset.prob) }));
        const predicted = read("predicted");
        const result = document.getElementById("result").dataset;
        const note = document.getElementById("answered-by");
        return {
          text: document.getElementById("text").value,
          state: result.state,
          error: document.getElementById("error").textContent,
          labels: predicted.map((entry) => entry.label),
          probs: predicted.map((entry) => entry.prob),
          below: read("below"),
          inference_ms: Number(result.inferenceMs),
          timing: document.getElementById("timing").textContent,
          answered_by: result.answeredBy ?? null,
          fast_confidence: result.fastConfidence === undefined ? null : Number(result.fastConfidence),
          exit_layer: result.exitLayer === undefined ? null : Number(result.exitLayer),
          answer_note: note.hidden ? null : note.textContent,
        };
      }));
    }
    const screenshot = join(outDir, `${model.replace(/[^\w.-]+/g, "_")}.png`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    screenshots.push(screenshot);
  }
  process.stdout.write(JSON.stringify({ results, info, screenshots, console: messages }) + "\n");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
