// The bundle's API as an app sees it: examples/mnist_mlp.dlm compiled with trained weights
// (`writeBundle(..., weights)`, what `dlc compile --checkpoint` does), then a plain Node script in
// the bundle's folder imports ./model.js and checks, on the CPU and on WebGPU (SwiftShader):
// the sibling weights.bin loads by default and from bytes, a path and a URL; bad weights throw
// DlcInputError without touching a model; fit trains, reports and cancels by AbortSignal; wrong
// inputs throw DlcInputError and leave the model usable; predict takes any batch size; dispose
// destroys every GPU buffer it made (createBuffer/destroy counted) and later calls throw.
// The script prints one JSON line per backend; the assertions are here.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { mnist } from '../cli/data.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { BUNDLE_SCRIPT_PRELUDE } from './support/bundle_script.ts';

const SCRIPT = String.raw`
${BUNDLE_SCRIPT_PRELUDE}const X = read('x.f32', Float32Array), Y = read('y.i32', Int32Array);
const N = Y.length, D = 784;
const backend = process.argv[2];

let device, live = 0, made = 0;
if (backend === 'webgpu') {
  const { create, globals } = await import(meta.webgpu);
  Object.assign(globalThis, globals);
  globalThis.keepGpu = create([]);
  const adapter = await globalThis.keepGpu.requestAdapter();
  device = await adapter.requestDevice({ requiredLimits: { maxStorageBuffersPerShaderStage: adapter.limits.maxStorageBuffersPerShaderStage } });
  // Count the buffers made and not yet destroyed.
  const createBuffer = device.createBuffer.bind(device);
  device.createBuffer = (d) => {
    const b = createBuffer(d);
    const destroy = b.destroy.bind(b);
    let gone = false;
    live++, made++;
    b.destroy = () => { if (!gone) { gone = true; live--; } destroy(); };
    return b;
  };
}
// on WebGPU, every call runs there (not on the CPU while the pipelines compile: startOnCpu)
const opts = (more = {}) => ({ backend, device, startOnCpu: false, ...more });
async function thrown(fn) {
  try { await fn(); return null; } catch (e) { return { name: e?.name, isDlcInputError: e instanceof DlcInputError, message: String(e?.message) }; }
}
const close = (a, b) => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]) <= 1e-5 * (1 + Math.abs(b[i])));
const probs = async (m, n = 100) => (await m.predict({ x: X.subarray(0, n * D) })).probs.data;

const r = { backend };
const trained = read('expected.f32', Float32Array);

// weights: the sibling file by default, and from bytes, a path and a URL
const m = await createModel(opts());
r.backendUsed = m.backend;
r.defaultWeights = close(await probs(m), trained);
r.stepFromWeights = m.step;
const bytes = readFileSync(here('weights.bin'));
const models = [m];
const make = async (o) => { const x = await createModel(opts(o)); models.push(x); return x; };
r.fromArrayBuffer = close(await probs(await make({ weights: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) })), trained);
r.fromPath = close(await probs(await make({ weights: decodeURIComponent(here('weights.bin').pathname) })), trained);
r.fromUrl = close(await probs(await make({ weights: here('weights.bin') })), trained);
const fresh = await make({ weights: null });
r.noWeights = fresh.step === 0 && !close(await probs(fresh), trained);

// bad weights: a clear error, and no model half-loaded
const damaged = new Uint8Array(bytes); damaged[damaged.length - 5] ^= 1;
r.badWeights = {
  damaged: await thrown(() => createModel(opts({ weights: damaged }))),
  missing: await thrown(() => createModel(opts({ weights: here('nope.bin') }))),
  otherModel: await thrown(() => createModel(opts({ weights: readFileSync(here('other.bin')) }))),
};

// predict on any batch size
r.batchSizes = [];
for (const n of [1, 7, 64, 100]) r.batchSizes.push((await m.predict({ x: X.subarray(0, n * D) })).probs.shape);

// wrong inputs: DlcInputError naming the input; the model stays usable
const before = m.step;
r.badInputs = {
  ragged: await thrown(() => m.trainStep({ x: X.subarray(0, D + 3), y: Y.subarray(0, 1) })),
  wrongDtype: await thrown(() => m.predict({ x: new Int32Array(2 * D) })),
  wrongShape: await thrown(() => m.evaluate({ x: { data: X.subarray(0, 2 * D), shape: [2, 28, 28] }, y: Y.subarray(0, 2) })),
  labelsAsFloats: await thrown(() => m.trainStep({ x: X.subarray(0, 2 * D), y: new Float32Array(2) })),
  fitMismatch: await thrown(() => m.fit({ x: X.subarray(0, 4 * D), y: Y.subarray(0, 3) })),
};
r.stepAfterBadInputs = m.step - before;
r.usableAfterBadInputs = Number.isFinite((await m.trainStep({ x: X.subarray(0, 64 * D), y: Y.subarray(0, 64) })).loss);

// fit: epochs, onStep, onEpoch, val
const f = await make({ seed: 3, weights: null });
const steps = [], epochs = [];
const res = await f.fit({ x: X, y: Y }, { epochs: 2, batch: 64, val: { x: X.subarray(0, 100 * D), y: Y.subarray(0, 100) }, onStep: (s) => steps.push(s), onEpoch: (e) => epochs.push(e) });
r.fit = { history: res.history.length, steps: steps.length, stepShape: Object.keys(steps[0]).sort(), epochs: epochs.map((e) => e.epoch), modelEpoch: f.epoch, modelStep: f.step,
  firstLoss: epochs[0].train.loss, lastLoss: epochs[1].train.loss, val: epochs[1].val };

// cancel: the step in flight finishes, fit rejects with the reason, the model stays usable
const ac = new AbortController();
let seen = 0;
const aborted = await thrown(() => f.fit({ x: X, y: Y }, { epochs: 1, batch: 64, signal: ac.signal, onStep: () => { if (++seen === 3) ac.abort(); } }));
r.abort = { error: aborted, stepsTaken: f.step - r.fit.modelStep, usable: Number.isFinite((await f.evaluate({ x: X.subarray(0, 64 * D), y: Y.subarray(0, 64) })).loss) };
r.preAborted = await thrown(() => f.fit({ x: X, y: Y }, { signal: AbortSignal.abort() }));

// dispose: every buffer destroyed, later calls throw
for (const x of models) x.dispose();
r.afterDispose = { predict: await thrown(() => m.predict({ x: X.subarray(0, D) })), save: await thrown(() => m.save()), fit: await thrown(() => f.fit({ x: X, y: Y })) };
r.buffers = { made, live };
console.log(JSON.stringify(r));
process.exit(0);
`;

interface Thrown {
  name: string;
  isDlcInputError: boolean;
  message: string;
}

const dir = mkdtempSync(join(tmpdir(), 'dlc-bundle-api-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const raw = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function run(backend: string): Promise<Record<string, any>> {
  return new Promise((done, fail) =>
    execFile(process.execPath, ['app.mjs', backend], { cwd: dir, timeout: 400_000, maxBuffer: 16 << 20, env: { ...process.env } }, (err, out, errOut) =>
      err ? fail(new Error(`app.mjs ${backend} failed (${err.code}):\n${errOut}\n${out}`)) : done(JSON.parse(out.trim().split('\n').pop()!)),
    ),
  );
}

beforeAll(async () => {
  const c = compile(fileURLToPath(new URL('../examples/mnist_mlp.dlm', import.meta.url)));
  if (!c.manifest) throw new Error(c.diagnostics.map((d) => d.message).join('; '));
  const { train } = mnist(c.manifest.inputs, c.manifest.train.seed);
  const n = 640;
  const x = { data: train.columns.x.data.subarray(0, n * 784), shape: [n, 784] };
  const y = { data: train.columns.y.data.subarray(0, n), shape: [n] };
  // A few steps of training on the compiler's side: the weights the bundle ships.
  const model = await Model.create(c.manifest, cpuKernels, { backend: 'cpu' });
  for (let s = 0; s < 5; s++) await model.trainStep({ x: { data: x.data.subarray(s * 64 * 784, (s + 1) * 64 * 784), shape: [64, 784] }, y: { data: y.data.subarray(s * 64, (s + 1) * 64), shape: [64] } });
  const weights = await model.save();
  const expected = (await model.predict({ x: { data: x.data.subarray(0, 100 * 784), shape: [100, 784] } })).probs;
  const files = await writeBundle(c.manifest, dir, weights);
  expect(files).toContain('weights.bin');

  const other = compile(fileURLToPath(new URL('../examples/mnist_mlp_bn.dlm', import.meta.url))).manifest!;
  writeFileSync(join(dir, 'other.bin'), await (await Model.create(other, cpuKernels, { backend: 'cpu' })).save());
  writeFileSync(join(dir, 'x.f32'), raw(x));
  writeFileSync(join(dir, 'y.i32'), raw(y));
  writeFileSync(join(dir, 'expected.f32'), raw(expected));
  const webgpu = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  writeFileSync(join(dir, 'data.json'), JSON.stringify({ webgpu }));
  writeFileSync(join(dir, 'app.mjs'), SCRIPT);
}, 300_000);

describe.each(['cpu', 'webgpu'])('the bundle API on %s', (backend) => {
  let r: Record<string, any>;
  beforeAll(async () => {
    r = await run(backend);
  }, 400_000);

  it('loads the sibling weights.bin by default, and weights from bytes, a path and a URL', () => {
    expect(r.backendUsed).toBe(backend);
    expect(r.defaultWeights).toBe(true);
    expect(r.stepFromWeights).toBe(5);
    expect(r.fromArrayBuffer).toBe(true);
    expect(r.fromPath).toBe(true);
    expect(r.fromUrl).toBe(true);
    expect(r.noWeights).toBe(true);
  });

  it('bad weights throw DlcInputError saying why', () => {
    const { damaged, missing, otherModel } = r.badWeights as Record<string, Thrown>;
    for (const e of [damaged, missing, otherModel]) expect(e?.isDlcInputError, JSON.stringify(e)).toBe(true);
    expect(damaged.message).toMatch(/checksum|damaged/);
    expect(missing.message).toMatch(/cannot load the weights from .*nope\.bin/);
    expect(otherModel.message).toMatch(/mnist_mlp_bn/);
  });

  it('predict takes any batch size', () => {
    expect(r.batchSizes).toEqual([[1, 10], [7, 10], [64, 10], [100, 10]]);
  });

  it('wrong inputs throw DlcInputError naming the input, expected and actual, and change nothing', () => {
    const e = r.badInputs as Record<string, Thrown>;
    for (const [how, t] of Object.entries(e)) expect(t?.isDlcInputError, `${how}: ${JSON.stringify(t)}`).toBe(true);
    expect(e.ragged.message).toMatch(/'x'.*784/);
    expect(e.wrongDtype.message).toMatch(/'x'.*Float32Array.*Int32Array/);
    expect(e.wrongShape.message).toContain('[2, 28, 28]');
    expect(e.labelsAsFloats.message).toMatch(/'y'.*Int32Array/);
    expect(e.fitMismatch.message).toMatch(/'[xy]'/);
    expect(r.stepAfterBadInputs).toBe(0);
    expect(r.usableAfterBadInputs).toBe(true);
  });

  it('fit trains for the epochs asked, reporting every step and epoch', () => {
    const f = r.fit;
    expect(f.history).toBe(2);
    expect(f.steps).toBe(20);
    expect(f.stepShape).toEqual(['accuracy', 'epoch', 'loss', 'step', 'steps']);
    expect(f.epochs).toEqual([1, 2]);
    expect(f.modelEpoch).toBe(2);
    expect(f.modelStep).toBe(20);
    expect(f.lastLoss).toBeLessThan(f.firstLoss);
    expect(Object.keys(f.val).sort()).toEqual(['accuracy', 'loss']);
  });

  it('an AbortSignal stops fit after the step in flight; the model stays usable', () => {
    expect(r.abort.error.name).toBe('AbortError');
    expect(r.abort.stepsTaken).toBe(3);
    expect(r.abort.usable).toBe(true);
    expect(r.preAborted.name).toBe('AbortError');
  });

  it('dispose frees every GPU buffer; later calls throw a clear error', () => {
    for (const e of Object.values(r.afterDispose) as Thrown[]) expect(e?.message).toMatch(/disposed/);
    if (backend === 'webgpu') {
      expect(r.buffers.made).toBeGreaterThan(0);
      expect(r.buffers.live).toBe(0);
    }
  });
});
