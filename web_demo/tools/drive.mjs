// Drives the page in headless Chromium (puppeteer-core, the system's browser: no download) as a person would,
// for tests/test_web_demo.py: one browser for every page of the job. For each page: open it, wait for the model,
// give it each image through the file picker (or drop it on the drop zone), read the result the page shows
// (its result region's data attributes), optionally the contract's q, then a screenshot and what a screen
// reader would find. Usage: node drive.mjs JOB.json  (prints one JSON object on stdout)
//
// JOB: {"chromium": "/usr/bin/chromium", "pages": [{"url": ..., "images": [paths], "drop": [paths],
//       "q_for": [paths], "viewport": {"width", "height"}, "screenshot": path}]}
import { readFileSync } from "node:fs";
import { basename } from "node:path";

import puppeteer from "puppeteer-core";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const TIMEOUT = 120_000;

async function result(page, seq) {
  await page.waitForFunction((s) => {
    const r = document.getElementById("result");
    return Number(r.dataset.seq) === s && (r.dataset.state === "done" || r.dataset.state === "error");
  }, { timeout: TIMEOUT }, seq);
  return page.evaluate(() => {
    const r = document.getElementById("result");
    const error = document.getElementById("error");
    return { ...r.dataset, text: r.innerText, errorText: error.hidden ? "" : error.innerText };
  });
}

async function dropFile(page, path) {
  const data = readFileSync(path).toString("base64");
  await page.evaluate((name, b64) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], name));
    const zone = document.getElementById("drop");
    for (const type of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
    }
  }, basename(path), data);
}

async function runPage(browser, spec) {
  const page = await browser.newPage();
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e.message).split("\n")[0]));
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text().split("\n")[0]); });
  if (spec.viewport) await page.setViewport(spec.viewport);
  await page.goto(spec.url, { waitUntil: "load", timeout: TIMEOUT });
  await page.waitForFunction(() => document.body.dataset.ready, { timeout: TIMEOUT });
  const ready = await page.evaluate(() => window.melkitDemo.ready);
  const out = { url: spec.url, ready, results: [], consoleErrors };
  let seq = 0;
  if (!ready.error) {
    const qFor = new Set(spec.q_for || []);
    for (const path of spec.images || []) {
      const input = await page.$("#file");
      await input.uploadFile(path);
      const r = await result(page, ++seq);
      r.path = path;
      if (qFor.has(path) && r.state === "done") {
        r.q = await page.evaluate(() => window.melkitDemo.lastQ());
        r.decoded = await page.evaluate(() => window.melkitDemo.lastSize());
      }
      out.results.push(r);
    }
    for (const path of spec.drop || []) {
      await dropFile(page, path);
      const r = await result(page, ++seq);
      r.path = path;
      r.dropped = true;
      out.results.push(r);
    }
  }
  out.page = await page.evaluate(() => ({
    status: document.getElementById("model-status").innerText,
    notice: document.getElementById("notice").innerText,
    modelInfo: document.getElementById("model-info").hidden ? "" : document.getElementById("model-info").innerText,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    live: document.getElementById("result").getAttribute("aria-live"),
    role: document.getElementById("result").getAttribute("role"),
    capture: document.getElementById("camera").getAttribute("capture"),
  }));
  const tree = await page.accessibility.snapshot({ interestingOnly: true });
  const names = [];
  const walk = (n) => {
    if (n.name) names.push(`${n.role}: ${n.name}`);
    (n.children || []).forEach(walk);
  };
  walk(tree);
  out.accessible = names;
  if (spec.screenshot) await page.screenshot({ path: spec.screenshot, fullPage: true });
  await page.close();
  return out;
}

const browser = await puppeteer.launch({
  executablePath: job.chromium || "/usr/bin/chromium",
  headless: true,
  // As root in CI there is no sandbox; the rest keeps Chromium off the network this machine does not have.
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
});
try {
  const pages = [];
  for (const spec of job.pages) pages.push(await runPage(browser, spec));
  process.stdout.write(JSON.stringify({ browser: await browser.version(), pages }));
} finally {
  await browser.close();
}
