// A fresh app made the way the README says: `dlc compile` writes the bundle into model/, and an
// index.html + main.js that import './model/model.js' are built with `vite build`. The app's
// folder has no package.json and no node_modules: the bundle is its only dependency (vite runs
// from this repository). The built page trains in headless Chromium, on WebGPU in CI.

import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dlcIn, ROOT } from './support/cli.ts';
import { launch, openPage, requireWebGPU, serve } from './support/browser.ts';

const INDEX = `<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>app</title></head>
<body><pre id="result">running</pre><script type="module" src="./main.js"></script></body></html>
`;

// Ten classes of synthetic 784-pixel images: faint noise plus a bright band whose place is the
// class. Each step trains on a fresh batch, so a falling loss means learning, not memorizing.
const MAIN = `import { createModel } from './model/model.js';

let seed = 7;
const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
function batch(n) {
  const x = new Float32Array(n * 784), y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    y[i] = Math.floor(random() * 10);
    for (let p = 0; p < 784; p++) x[i * 784 + p] = p >= y[i] * 78 && p < (y[i] + 1) * 78 ? 1 : 0.2 * random();
  }
  return { x, y };
}

const out = document.getElementById('result');
try {
  const model = await createModel({ backend: 'auto' });
  const losses = [];
  for (let s = 0; s < 20; s++) losses.push((await model.trainStep(batch(32))).loss);
  const test = batch(100);
  const { probs } = await model.predict({ x: test.x });
  const { accuracy } = await model.evaluate(test);
  model.dispose();
  out.textContent = JSON.stringify({ backend: model.backend, losses, probsShape: probs.shape, accuracy });
} catch (e) {
  out.textContent = JSON.stringify({ error: String(e?.message ?? e) });
}
`;

/** `vite build` as a user runs it in the app's folder, with this repository's vite. */
function viteBuild(root: string): Promise<void> {
  return new Promise((done, fail) => {
    const vite = join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js');
    execFile(process.execPath, [vite, 'build', '--logLevel', 'warn'], { cwd: root, timeout: 60_000 }, (err, stdout, stderr) =>
      err ? fail(new Error(`vite build failed:\n${stderr}\n${stdout}`)) : done(),
    );
  });
}

interface Result {
  backend: string;
  losses: number[];
  probsShape: number[];
  accuracy: number;
  error?: string;
}

describe('a fresh Vite app that imports a compiled bundle', () => {
  const app = mkdtempSync(join(tmpdir(), 'dlc-vite-app-'));
  afterAll(() => rmSync(app, { recursive: true, force: true }));
  let result: Result;

  beforeAll(async () => {
    const compiled = await dlcIn(app, 'compile', join(ROOT, 'examples', 'mnist_mlp.dlm'), '-o', 'model');
    if (compiled.code !== 0) throw new Error(`dlc compile failed:\n${compiled.stderr}`);
    writeFileSync(join(app, 'index.html'), INDEX);
    writeFileSync(join(app, 'main.js'), MAIN);
    await viteBuild(app);

    const [server, browser] = await Promise.all([serve(join(app, 'dist')), launch()]);
    try {
      const { page, log } = await openPage(browser, server.url);
      await page.waitForFunction(() => document.getElementById('result')!.textContent !== 'running', null, { timeout: 60_000 }).catch(() => {
        throw new Error(`the app did not finish: ${log.join('\n') || 'no console output'}`);
      });
      result = JSON.parse((await page.textContent('#result'))!);
    } finally {
      await browser.close();
      await server.close();
    }
  }, 120_000);

  it('builds into one page and one script (and the bundle\'s kernels.wasm, threads.js, variants.js): the bundle needs nothing else', () => {
    expect(readdirSync(join(app, 'dist')).sort()).toEqual(['assets', 'index.html']);
    // model.js loads kernels.wasm (the CPU path's wasm SIMD kernels) by new URL(..., import.meta.url):
    // Vite copies it; it imports threads.js (which instantiates them) and variants.js (kernel
    // variants for some adapters) when it needs them: Vite makes each a chunk
    const assets = readdirSync(join(app, 'dist', 'assets'));
    expect(assets.filter((f) => !f.endsWith('.js'))).toEqual([expect.stringMatching(/^kernels-.*\.wasm$/)]);
    for (const part of ['threads', 'variants']) expect(assets.filter((f) => f.startsWith(`${part}-`) && f.endsWith('.js')), part).toHaveLength(1);
  });

  it('trains on WebGPU in the browser: the loss falls', () => {
    expect(result.error).toBeUndefined();
    requireWebGPU(result.backend, 'the Vite app');
    const { losses } = result;
    expect(losses).toHaveLength(20);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[0]).toBeGreaterThan(1.5); // about ln 10 at the start
    expect(losses.slice(-3).reduce((s, v) => s + v, 0) / 3).toBeLessThan(losses[0] / 4);
    expect(result.probsShape).toEqual([100, 10]);
    expect(result.accuracy).toBeGreaterThan(0.9);
  });
});
