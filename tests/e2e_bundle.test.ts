// End to end: a compiled bundle is all an app needs. examples/mnist_mlp.dlm is compiled with
// writeBundle into a temp dir, and a plain Node script there (no tsx, nothing of dlc's sources:
// it imports only './model.js' and node: built-ins) trains it on MNIST digits for one epoch on
// the CPU, then checks save → fresh model → restore, damaged checkpoints and DlcInputError.
// The script prints its findings as one JSON line; the assertions are here.

import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { mnist } from '../cli/data.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { BUNDLE_SCRIPT_PRELUDE } from './support/bundle_script.ts';

const SCRIPT = String.raw`
${BUNDLE_SCRIPT_PRELUDE}const trainX = read('train_x.f32', Float32Array), trainY = read('train_y.i32', Int32Array);
const testX = read('test_x.f32', Float32Array), testY = read('test_y.i32', Int32Array);
const D = 784, BATCH = 64;

async function probsOf(model) {
  const out = new Float32Array(meta.test * 10);
  for (let s = 0; s < meta.test; s += 500) {
    const e = Math.min(meta.test, s + 500);
    const { probs } = await model.predict({ x: testX.subarray(s * D, e * D) });
    if (probs.shape.join() !== [e - s, 10].join()) throw new Error('probs has shape ' + probs.shape);
    out.set(probs.data, s * 10);
  }
  return out;
}
function accuracy(probs) {
  let right = 0;
  for (let i = 0; i < meta.test; i++) {
    let best = 0;
    for (let k = 1; k < 10; k++) if (probs[i * 10 + k] > probs[i * 10 + best]) best = k;
    if (best === testY[i]) right++;
  }
  return right / meta.test;
}
const sameBits = (a, b) => a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
/** What calling fn throws: its class and message, or null when it does not throw. */
async function thrown(fn) {
  try {
    await fn();
    return null;
  } catch (e) {
    return { name: e?.name, isDlcInputError: e instanceof DlcInputError, message: String(e?.message) };
  }
}

const r = {};
const model = await createModel({ backend: 'cpu' });
r.backend = model.backend;
r.before = accuracy(await probsOf(model));

const t0 = performance.now();
const losses = [];
for (let s = 0; s + BATCH <= meta.train; s += BATCH) {
  const stats = await model.trainStep({ x: trainX.subarray(s * D, (s + BATCH) * D), y: trainY.subarray(s, s + BATCH) });
  losses.push(stats.loss);
}
r.trainMs = performance.now() - t0;
r.steps = model.step;
r.firstLosses = losses.slice(0, 5);
r.lastLosses = losses.slice(-5);
const trained = await probsOf(model);
r.after = accuracy(trained);

// save → a fresh model (another seed, so it starts elsewhere) → restore: the very same predictions.
const bytes = await model.save({ epoch: 1, note: 'e2e' });
r.checkpointBytes = bytes.length;
const fresh = await createModel({ backend: 'cpu', seed: 12345 });
const freshProbs = await probsOf(fresh);
r.freshDiffers = !sameBits(freshProbs, trained);
r.extra = fresh.restore(bytes);
r.restoredStep = fresh.step;
r.restoredIdentical = sameBits(await probsOf(fresh), trained);
const pa = await model.getParams(), pb = await fresh.getParams();
r.paramsIdentical = Object.keys(pa).every((k) => sameBits(pa[k].data, pb[k].data));

// Damaged checkpoints throw, and leave the model as it was and usable.
const other = await createModel({ backend: 'cpu', seed: 999 });
const otherProbs = await probsOf(other);
const flipped = bytes.slice();
flipped[bytes.length - 1000] ^= 0x40;
const garbage = new Uint8Array(4096).map((_, i) => (i * 7919) & 255);
r.damaged = {
  truncated: await thrown(() => other.restore(bytes.subarray(0, bytes.length - 1000))),
  truncatedHeader: await thrown(() => other.restore(bytes.subarray(0, 40))),
  flipped: await thrown(() => other.restore(flipped)),
  garbage: await thrown(() => other.restore(garbage)),
  empty: await thrown(() => other.restore(new Uint8Array(0))),
};
r.damagedLeftUnchanged = sameBits(await probsOf(other), otherProbs) && other.step === 0;
const after = await other.trainStep({ x: trainX.subarray(0, BATCH * D), y: trainY.subarray(0, BATCH) });
r.damagedThenTrains = Number.isFinite(after.loss) && other.step === 1;

// A wrong input is a DlcInputError that names the input.
r.badInputs = {
  ragged: await thrown(() => model.predict({ x: new Float32Array(D + 1) })),
  wrongShape: await thrown(() => model.predict({ x: { data: new Float32Array(2 * D), shape: [2, 28, 28] } })),
  wrongDtype: await thrown(() => model.predict({ x: new Int32Array(2 * D) })),
  missingLabels: await thrown(() => model.trainStep({ x: trainX.subarray(0, 2 * D) })),
  batchMismatch: await thrown(() => model.trainStep({ x: trainX.subarray(0, 4 * D), y: trainY.subarray(0, 3) })),
};
r.stepAfterBadInputs = model.step;
r.stillPredicts = sameBits(await probsOf(model), trained);

for (const m of [model, fresh, other]) m.dispose();
console.log(JSON.stringify(r));
`;

interface Thrown {
  name: string;
  isDlcInputError: boolean;
  message: string;
}

interface Result {
  backend: string;
  before: number;
  after: number;
  trainMs: number;
  steps: number;
  firstLosses: number[];
  lastLosses: number[];
  checkpointBytes: number;
  freshDiffers: boolean;
  extra: Record<string, unknown>;
  restoredStep: number;
  restoredIdentical: boolean;
  paramsIdentical: boolean;
  damaged: Record<string, Thrown | null>;
  damagedLeftUnchanged: boolean;
  damagedThenTrains: boolean;
  badInputs: Record<string, Thrown | null>;
  stepAfterBadInputs: number;
  stillPredicts: boolean;
}

const dir = mkdtempSync(join(tmpdir(), 'dlc-e2e-bundle-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const raw = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Module specifiers the script imports, statically or dynamically, and whether it uses require. */
function specifiers(src: string): string[] {
  const found = [...src.matchAll(/\bimport\s*(?:[\w*{}\s,]+\s*from\s*)?['"]([^'"]+)['"]/g)].map((m) => m[1]);
  const dynamic = [...src.matchAll(/\bimport\s*\(/g)].length;
  const required = [...src.matchAll(/\brequire\s*\(/g)].length;
  return [...found, ...Array(dynamic).fill('<dynamic import>'), ...Array(required).fill('<require>')];
}

describe('a compiled bundle, used from plain Node', () => {
  let result: Result;
  let trainSize: number;

  beforeAll(async () => {
    const c = compile(fileURLToPath(new URL('../examples/mnist_mlp.dlm', import.meta.url)));
    if (!c.manifest) throw new Error(`examples/mnist_mlp.dlm does not compile: ${c.diagnostics.map((d) => d.message).join('; ')}`);
    const files = await writeBundle(c.manifest, dir);
    expect(files).toEqual(expect.arrayContaining(['manifest.json', 'model.js', 'model.d.ts', 'package.json']));

    const { train, test } = mnist(c.manifest.inputs, c.manifest.train.seed);
    trainSize = train.size;
    writeFileSync(join(dir, 'train_x.f32'), raw(train.columns.x));
    writeFileSync(join(dir, 'train_y.i32'), raw(train.columns.y));
    writeFileSync(join(dir, 'test_x.f32'), raw(test.columns.x));
    writeFileSync(join(dir, 'test_y.i32'), raw(test.columns.y));
    writeFileSync(join(dir, 'data.json'), JSON.stringify({ train: train.size, test: test.size }));
    writeFileSync(join(dir, 'app.mjs'), SCRIPT);

    const stdout = await new Promise<string>((done, fail) => {
      // Plain node, run from the temp dir: no tsx loader, no dlc node_modules to fall back on.
      execFile(process.execPath, ['app.mjs'], { cwd: dir, timeout: 240_000, maxBuffer: 16 << 20, env: { PATH: process.env.PATH ?? '' } }, (err, out, errOut) =>
        err ? fail(new Error(`app.mjs failed (${err.code}):\n${errOut}\n${out}`)) : done(out),
      );
    });
    result = JSON.parse(stdout.trim().split('\n').pop()!);
  }, 300_000);

  it('the app imports nothing but ./model.js and node: built-ins, and model.js nothing but its own files', () => {
    const used = specifiers(SCRIPT);
    expect(used).toContain('./model.js');
    expect(used.filter((s) => s !== './model.js' && !s.startsWith('node:'))).toEqual([]);
    const js = readFileSync(join(dir, 'model.js'), 'utf8');
    expect(js).not.toMatch(/\bfrom\s*['"]/);
    // the bundle's own modules beside it, when they are needed (runtime/threads.ts, runtime/variants.ts)
    expect([...js.matchAll(/\bimport\s*\(\s*['"]([^'"]*)['"]/g)].map((m) => m[1]).sort()).toEqual(['./threads.js', './variants.js']);
    expect(js).not.toMatch(/\brequire\s*\(/);
  });

  it('trains one epoch on the CPU: test accuracy goes from chance to > 0.85', () => {
    expect(result.backend).toBe('cpu');
    expect(result.before).toBeLessThan(0.25);
    expect(result.steps).toBe(Math.floor(trainSize / 64));
    expect(result.after).toBeGreaterThan(0.85);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(mean(result.lastLosses)).toBeLessThan(mean(result.firstLosses) / 3);
  });

  it('save → fresh model → restore gives bitwise-identical predictions, step and extra', () => {
    expect(result.checkpointBytes).toBeGreaterThan(4 * 3 * (784 * 256 + 256 * 128 + 128 * 10)); // params + Adam m, v
    expect(result.freshDiffers).toBe(true);
    expect(result.restoredIdentical).toBe(true);
    expect(result.paramsIdentical).toBe(true);
    expect(result.restoredStep).toBe(result.steps);
    expect(result.extra).toEqual({ epoch: 1, note: 'e2e' });
  });

  it('a damaged checkpoint throws and leaves the model unchanged and usable', () => {
    for (const [how, e] of Object.entries(result.damaged)) {
      expect(e, `restore of a ${how} checkpoint should throw`).not.toBeNull();
      expect(e!.isDlcInputError, `${how}: ${e!.name}: ${e!.message}`).toBe(true);
      expect(e!.message, how).toContain('mnist_mlp');
    }
    expect(result.damaged.truncated!.message).toMatch(/truncated|damaged|checksum/);
    expect(result.damaged.flipped!.message).toMatch(/damaged|checksum/);
    expect(result.damagedLeftUnchanged).toBe(true);
    expect(result.damagedThenTrains).toBe(true);
  });

  it('a wrong input throws DlcInputError naming the input', () => {
    const { ragged, wrongShape, wrongDtype, missingLabels, batchMismatch } = result.badInputs;
    for (const [how, e] of Object.entries(result.badInputs)) {
      expect(e, `${how} should throw`).not.toBeNull();
      expect(e!.isDlcInputError, `${how}: ${e!.name}: ${e!.message}`).toBe(true);
      expect(e!.name).toBe('DlcInputError');
    }
    for (const e of [ragged, wrongShape, wrongDtype]) {
      expect(e!.message).toContain("'x'");
      expect(e!.message).toContain('784');
    }
    expect(wrongShape!.message).toContain('[2, 28, 28]');
    expect(wrongDtype!.message).toMatch(/Float32Array|f32/);
    expect(missingLabels!.message).toContain("'y'");
    expect(batchMismatch!.message).toMatch(/'[xy]'/);
    // Nothing ran: no step was taken, and the model predicts as before.
    expect(result.stepAfterBadInputs).toBe(result.steps);
    expect(result.stillPredicts).toBe(true);
  });
});
