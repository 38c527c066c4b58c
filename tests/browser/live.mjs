// The live dashboard in a real browser: starts a real training run with `incubator run --serve`,
// opens the page in headless Chromium, and checks that the run appears and its curves grow
// while it trains. Screenshots go to $ARTEFACTS (default target/browser-test).
//
// usage: node tests/browser/live.mjs path/to/incubator
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const binary = process.argv[2] ?? "target/release/incubator";
const artefacts = process.env.ARTEFACTS ?? "target/browser-test";
mkdirSync(artefacts, { recursive: true });
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exitCode = 1; };

// A run long enough to watch: the tests' tiny model, more epochs.
const dir = mkdtempSync(join(tmpdir(), "incubator-browser-"));
writeFileSync(join(dir, "config.toml"), `
seed = 1
[model]
embed_dim = 32
depth = 4
num_heads = 2
[split]
divided_depths = [1, 1, 1, 1]
[data]
train_limit = 1024
test_limit = 256
[optim]
batch_size = 32
[meta]
epochs = 6
[incubate]
epochs = 3
[finetune]
epochs = 3
[e2e]
epochs = 20
`);
const run = spawn(binary, ["run", "-c", join(dir, "config.toml"), "-d", join(dir, "run"),
  "--no-progress", "--serve", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
let stderr = "";
run.stderr.on("data", (d) => { stderr += d; });
const url = await new Promise((resolve, reject) => {
  let out = "";
  run.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/live dashboard: (http:\/\/\S+)/);
    if (m) resolve(m[1]);
  });
  run.on("exit", (code) => reject(new Error(`incubator exited (${code}) before serving:\n${stderr}`)));
  setTimeout(() => reject(new Error("no URL printed within 60 s")), 60000);
});
console.log(`serving at ${url}`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-quic",
    "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url);
  const state = () => page.evaluate(() => (window.dashboardState ? window.dashboardState() : {}));
  const steps = (s) => (s.runs ?? []).flatMap((r) => Object.values(r.stages)).reduce((n, st) => n + st.steps, 0);

  // the run appears
  await page.waitForFunction(() => window.dashboardState && (window.dashboardState().runs ?? []).some((r) => r.records > 0),
    null, { timeout: 120000 });
  const first = await state();
  await page.screenshot({ path: join(artefacts, "live-1.png") });
  // and grows while it trains
  await page.waitForTimeout(4000);
  const second = await state();
  await page.screenshot({ path: join(artefacts, "live-2.png") });
  console.log(`steps seen: ${steps(first)} then ${steps(second)}; stages: ${Object.keys(second.runs[0].stages).join(", ")}`);
  if (second.panicked) fail("the app panicked");
  if (!(steps(second) > steps(first))) fail("the curves did not grow");
  if (second.runs.length !== 1) fail(`expected one run, got ${second.runs.length}`);
  // the pipeline view, once everything has finished
  await page.waitForFunction(() => {
    const s = window.dashboardState();
    return s.runs && ["meta", "incubate-3", "assemble", "e2e"].every((k) => s.runs[0].stages[k]?.status === "finished");
  }, null, { timeout: 300000 });
  await page.mouse.click(130, 15); // the "Pipeline" tab
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(artefacts, "pipeline.png") });
  await page.mouse.click(275, 15); // "Compare"
  await page.waitForTimeout(1000);
  await page.screenshot({ path: join(artefacts, "compare.png") });
  if (errors.length) fail(`page errors:\n${errors.join("\n")}`);
} finally {
  await browser.close();
  run.kill();
}
console.log(process.exitCode ? "browser test failed" : `browser test passed; screenshots in ${artefacts}`);
