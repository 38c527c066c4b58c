// The live dashboard in a real browser: starts a real training run with `incubator run --serve`,
// opens the page in headless Chromium, and checks that the run appears and its curves grow
// while it trains, that the timeline shows it live, that the URL follows the open view and a
// pasted link opens the same view; then trains a small sweep (`incubator sweep run`), serves
// the sweep directory and visits the curves grouped by configuration, the per-configuration
// comparison and accuracy against cost. Screenshots go to $ARTEFACTS (default
// target/browser-test).
//
// usage: node tests/browser/live.mjs path/to/incubator
import { chromium } from "playwright-core";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const binary = process.argv[2] ?? "target/release/incubator";
const artefacts = process.env.ARTEFACTS ?? "target/browser-test";
mkdirSync(artefacts, { recursive: true });
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exitCode = 1; };

// A run long enough to watch: the tests' tiny model, more epochs (the baseline trains for half a
// minute or more, so its bar is still running when the timeline is checked).
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
epochs = 80
`);
// with a token, as a server reachable from other machines has: the page carries it from its URL
const token = "browser-test-token-0123456789";
const run = spawn(binary, ["run", "-c", join(dir, "config.toml"), "-d", join(dir, "run"),
  "--no-progress", "--serve", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"],
  env: { ...process.env, INCUBATOR_TOKEN: token } });
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
if (!url.endsWith(`?token=${token}`)) fail(`the printed address does not carry the token: ${url}`);
{
  const base = new URL(url);
  base.search = "";
  const without = await fetch(new URL("api/runs", base));
  if (without.status !== 401) fail(`api/runs without the token: HTTP ${without.status}, expected 401`);
}

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
  // the timeline while it trains, opened by a link (the URL's fragment)
  await page.evaluate(() => { location.hash = "view=timeline"; });
  await page.waitForFunction(() => window.dashboardState().view === "timeline", null, { timeout: 10000 });
  await page.waitForTimeout(1500);
  const live = await state();
  await page.screenshot({ path: join(artefacts, "timeline-live.png") });
  console.log(`timeline while training: ${JSON.stringify(live.shows.lanes.map((l) => l.name))}`);
  if (!(live.shows.lanes.length >= 1)) fail("the timeline shows no process");
  if (!live.shows.lanes.some((l) => l.bars.some((b) => b.kind.ran?.ended === "running")))
    fail(`no running bar on the live timeline: ${JSON.stringify(live.shows)}`);
  // the pipeline view, once everything has finished
  await page.waitForFunction(() => {
    const s = window.dashboardState();
    return s.runs && ["meta", "incubate-3", "assemble", "e2e"].every((k) => s.runs[0].stages[k]?.status === "finished");
  }, null, { timeout: 300000 });
  await page.mouse.click(130, 15); // the first tab, "Pipeline": the address bar follows
  await page.waitForTimeout(1000);
  if (!page.url().includes("view=pipeline")) fail(`the URL does not name the open view: ${page.url()}`);
  await page.screenshot({ path: join(artefacts, "pipeline.png") });
  for (const view of ["timeline", "compare", "cost"]) {
    await page.evaluate((v) => { location.hash = `view=${v}`; }, view);
    await page.waitForFunction((v) => window.dashboardState().view === v, view, { timeout: 10000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: join(artefacts, `${view}.png`) });
  }
  const done = await state();
  if (done.shows.points?.length !== 2) fail(`accuracy vs cost: expected method and E2E points, got ${JSON.stringify(done.shows)}`);
  // a pasted link opens the same view with the same selections in a fresh page
  const linkUrl = new URL(url);
  linkUrl.hash = `view=cost&state=${encodeURIComponent(JSON.stringify({ x: "wall", log_x: true }))}`;
  const link = linkUrl.toString();
  const pasted = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await pasted.goto(link);
  await pasted.waitForFunction(() => window.dashboardState && window.dashboardState().view === "cost", null, { timeout: 60000 });
  const shown = await pasted.evaluate(() => window.dashboardState());
  if (shown.shows.x !== "wall") fail(`the pasted link's axis was not restored: ${JSON.stringify(shown.shows)}`);
  await pasted.close();
  if (errors.length) fail(`page errors:\n${errors.join("\n")}`);
} finally {
  run.kill();
}

// A sweep: one configuration x two seeds on the tiny model, trained for real, then served.
const sweepFile = join(dir, "sweep.toml");
writeFileSync(sweepFile, `
[sweep]
title = "browser"
configs = ["${process.cwd()}/examples/tiny.toml"]
seeds = [0, 1]
[sweep.set]
"data.train_limit" = 256
"data.test_limit" = 128
"meta.epochs" = 1
"meta.warmup_epochs" = 0
"incubate.epochs" = 1
"incubate.warmup_epochs" = 0
"finetune.epochs" = 1
"e2e.epochs" = 2
"e2e.warmup_epochs" = 0
[grid]
"optim.base_lr" = [0.032, 0.064]
`);
const swept = spawnSync(binary, ["sweep", "run", sweepFile, "-d", join(dir, "sweep"), "--jobs", "2"], { encoding: "utf8" });
if (swept.status !== 0) fail(`incubator sweep run failed:\n${swept.stdout}\n${swept.stderr}`);
const server = spawn(binary, ["serve", join(dir, "sweep"), "--addr", "127.0.0.1:0"], { stdio: ["ignore", "pipe", "pipe"] });
try {
  const sweepUrl = await new Promise((resolve, reject) => {
    let out = "";
    server.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/ at (http:\/\/\S+)/);
      if (m) resolve(m[1]);
    });
    server.on("exit", (code) => reject(new Error(`incubator serve exited (${code})`)));
    setTimeout(() => reject(new Error("no URL printed within 30 s")), 30000);
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  const bands = encodeURIComponent(JSON.stringify({ by_configuration: true, metrics: ["Loss", "TestTop1"], smoothing: 0.6 }));
  await page.goto(`${sweepUrl.replace(/\/$/, "")}/#view=curves&state=${bands}`);
  const finished = () => {
    const s = window.dashboardState && window.dashboardState();
    return s && s.runs && s.runs.length === 4 && s.runs.every((r) => r.stages.assemble?.status === "finished");
  };
  await page.waitForFunction(finished, null, { timeout: 120000 });
  await page.waitForTimeout(1500);
  const curves = await page.evaluate(() => window.dashboardState());
  await page.screenshot({ path: join(artefacts, "sweep-curves.png") });
  console.log(`sweep curves: ${JSON.stringify(curves.shows)}`);
  if (!curves.shows.by_configuration || !curves.shows.lines.some((l) => l.includes("(2 runs)")))
    fail(`the sweep's curves are not grouped by configuration: ${JSON.stringify(curves.shows)}`);
  for (const view of ["compare", "cost"]) {
    await page.evaluate((v) => { location.hash = `view=${v}`; }, view);
    await page.waitForFunction((v) => window.dashboardState().view === v, view, { timeout: 10000 });
    await page.waitForTimeout(1000);
    await page.screenshot({ path: join(artefacts, `sweep-${view}.png`) });
    const s = await page.evaluate(() => window.dashboardState());
    console.log(`sweep ${view}: ${JSON.stringify(s.shows)}`);
    if (view === "compare" && !(s.shows.configurations.length === 2 && s.shows.configurations.every((c) => c.seeds === 2 && c.diff_top1?.n === 2)))
      fail(`per-configuration comparison: ${JSON.stringify(s.shows)}`);
    if (view === "cost" && !(s.shows.points.length === 4 && s.shows.points.every((p) => p.seeds === 2)))
      fail(`accuracy vs cost of the sweep: ${JSON.stringify(s.shows)}`);
    if (view === "cost") {
      // the pointer on a point: its tooltip (configuration, numbers, what sets it apart)
      const mark = s.shows.drawn.find((d) => !d.e2e);
      await page.mouse.move(mark.at[0], mark.at[1]);
      await page.waitForTimeout(800);
      await page.screenshot({ path: join(artefacts, "sweep-cost-hover.png") });
      const hovered = (await page.evaluate(() => window.dashboardState())).shows.hovered;
      if (!hovered || hovered[0] !== mark.configuration) fail(`no tooltip for ${mark.configuration}: ${JSON.stringify(hovered)}`);
    }
  }
  if (errors.length) fail(`page errors:\n${errors.join("\n")}`);
} finally {
  server.kill();
  await browser.close();
}
if (process.exitCode) {
  console.log(`browser test failed; its runs are kept in ${dir}`);
} else {
  // the runs it trained (about 20 MiB) would stay in the temporary folder after every suite
  rmSync(dir, { recursive: true, force: true });
  console.log(`browser test passed; screenshots in ${artefacts}`);
}
