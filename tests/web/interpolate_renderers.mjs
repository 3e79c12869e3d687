// Real-frontend check of the KandinskyInterpolate extension in one renderer (classic canvas or Nodes 2.0 / Vue):
// usage: node interpolate_renderers.mjs SERVER_URL classic|vue   (KANDINSKY_PLAYWRIGHT: a folder whose
// node_modules has playwright-core; CHROMIUM: the browser). Exits 1 with the failed checks, 0 when all hold.
import { createRequire } from "node:module";

const require = createRequire(`${process.env.KANDINSKY_PLAYWRIGHT}/package.json`);
const { chromium } = require("playwright-core");
const [url, renderer] = process.argv.slice(2);
const vue = renderer === "vue";
const failures = [];
const check = (ok, what) => { if (!ok) failures.push(what); };

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
await page.goto(url);
await page.waitForFunction(() => window.app?.graph && window.LiteGraph, null, { timeout: 120000 });
await page.waitForTimeout(2000);
await page.evaluate(async (vue) => window.app.extensionManager.setting.set("Comfy.VueNodes.Enabled", vue), vue);
await page.waitForTimeout(1000);

// three embeds connected (pair 3 is re-added by the extension), then weight_2 = 0.5 and weight_3 = 0.25
const built = await page.evaluate(async () => {
  const app = window.app, LG = window.LiteGraph, pause = (ms) => new Promise((r) => setTimeout(r, ms));
  app.graph.clear();
  const interp = LG.createNode("KandinskyInterpolate");
  interp.pos = [500, 100];
  app.graph.add(interp);
  for (let k = 0; k < 3; k++) {
    const source = LG.createNode("KandinskyImageEmbed");
    source.pos = [50, 50 + 150 * k];
    app.graph.add(source);
    source.connect(0, interp, interp.inputs.findIndex((i) => i.name === `embeds_${k + 1}`));
    await pause(300);
  }
  for (const [name, value] of [["weight_2", 0.5], ["weight_3", 0.25]]) {
    const w = interp.widgets.find((x) => x.name === name);
    w.value = value;
    w.callback?.(value);
  }
  app.graph.setDirtyCanvas(true, true);
  await pause(800);
  return { id: interp.id };
});

async function state(id) {
  return page.evaluate(async (id) => {
    const node = window.app.graph.getNodeById(id);
    const sent = (await window.app.graphToPrompt()).output[String(id)].inputs;
    return { sent, labels: node.widgets.filter((w) => w.name.startsWith("weight_")).map((w) => w.label || "") };
  }, id);
}

async function expectShown(id, when) {
  const s = await state(id);
  check(s.sent.weight_3 === 0.25 && s.sent.weight_2 === 0.5, `${when}: sent weights ${JSON.stringify(s.sent)}`);
  check(s.labels.slice(0, 3).every((l) => /\(\d+(\.\d)?%\)/.test(l)), `${when}: share labels ${JSON.stringify(s.labels)}`);
  if (vue) {  // what the Vue widgets display must be what is sent, and the labels must be on screen
    await page.waitForTimeout(800);
    const node = page.locator(`[data-node-id="${id}"]`).first();
    const shown = await node.locator("input").evaluateAll((els) => els.map((e) => e.value));
    const same = [1, 2, 3].every((i) => Math.abs(parseFloat(shown[i - 1]) - s.sent[`weight_${i}`]) < 0.005);
    check(same, `${when}: Vue inputs show ${JSON.stringify(shown)}, sent ${JSON.stringify(s.sent)}`);
    check(/%\)/.test(await node.innerText()), `${when}: no share label in the Vue node`);
  }
}

if (vue && (await page.locator(`[data-node-id="${built.id}"]`).count()) === 0) {  // frontends before Nodes 2.0
  console.log("SKIP: this frontend has no Nodes 2.0 (Vue) renderer");
  await browser.close();
  process.exit(3);
}
await expectShown(built.id, "after connecting");
const reloaded = await page.evaluate(async () => {  // save and load the workflow
  const app = window.app;
  await app.loadGraphData(app.graph.serialize());
  await new Promise((r) => setTimeout(r, 1000));
  return app.graph.nodes.find((n) => n.type === "KandinskyInterpolate").id;
});
await expectShown(reloaded, "after save and load");
await browser.close();
if (failures.length) {
  console.log(`${renderer}: ${failures.length} failed check(s):\n` + failures.join("\n"));
  process.exit(1);
}
console.log(`${renderer}: all checks hold`);
