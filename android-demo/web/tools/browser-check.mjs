#!/usr/bin/env node
// node tools/browser-check.mjs PAGE_URL CASES.json OUT_DIR
//
// Opens the demo page in headless Debian Chromium (playwright-core, phone viewport 390x844), and for each model
// in CASES.json ({"models": ["name in the model switcher", ...], "texts": ["headline", ...]}) selects it, types
// each text, presses Classify and reads the labels the page shows. Prints JSON
// {"results": {model: [{"text", "labels", "probs", "below"}]}, "screenshots": [...], "console": [...]} and saves
// OUT_DIR/<model>.png. Used by tests/test_web_demo.py; also handy by hand against `python3 -m http.server`.
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
  const screenshots = [];
  for (const model of cases.models) {
    await page.waitForSelector("body[data-model]:not([data-model=''])", { timeout: 60_000 }); // first model loaded
    if (await page.getAttribute("body", "data-model") !== model) await page.selectOption("#model", { label: model });
    await page.waitForSelector(`body[data-model="${model}"]`, { timeout: 60_000 });
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
        return {
          text: document.getElementById("text").value,
          state: document.getElementById("result").dataset.state,
          error: document.getElementById("error").textContent,
          labels: predicted.map((entry) => entry.label),
          probs: predicted.map((entry) => entry.prob),
          below: read("below"),
          inference_ms: Number(document.getElementById("result").dataset.inferenceMs),
          timing: document.getElementById("timing").textContent,
        };
      }));
    }
    const screenshot = join(outDir, `${model.replace(/[^\w.-]+/g, "_")}.png`);
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: screenshot, fullPage: true });
    screenshots.push(screenshot);
  }
  process.stdout.write(JSON.stringify({ results, screenshots, console: messages }) + "\n");
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
