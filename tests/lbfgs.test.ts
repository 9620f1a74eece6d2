// Full-batch L-BFGS (runtime/lbfgs.ts) on logistic regression: it beats full-batch gradient
// descent at its best learning rate for the same number of loss+gradient evaluations (line-search
// evaluations included), its loss decreases monotonically, it converges to a tiny gradient on this
// convex problem, it leaves frozen parameters alone, and lbfgsEpoch keeps its memory across epochs.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compile, type CompileOptions } from '../compiler/compile.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Dataset } from '../runtime/dataset.ts';
import { Lbfgs, lbfgsEpoch } from '../runtime/lbfgs.ts';
import { Model } from '../runtime/model.ts';
import type { Manifest } from '../runtime/program.ts';
import { rng } from '../runtime/random.ts';
import { fit } from '../runtime/train.ts';

const FILE = join(fileURLToPath(new URL('.', import.meta.url)), 'fixtures', 'lbfgs_logreg.dlm');

function manifest(opts: CompileOptions = {}, edit = (s: string) => s): Manifest {
  const r = compile(FILE, (p) => (p === FILE ? edit(readFileSync(p, 'utf8')) : readFileSync(p, 'utf8')), opts);
  if (!r.manifest) throw new Error(r.diagnostics.map((d) => d.message).join('\n'));
  return r.manifest;
}

/** 300 points, 6 features on scales from 0.25 to 4 (ill-conditioned), labels drawn from a logistic
 *  model: overlapping classes, so the minimum is finite and unique up to the softmax's symmetry. */
function dataset(seed = 11): Dataset {
  const N = 300;
  const D = 6;
  const next = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());
  const scale = [1, 4, 0.25, 2, 0.5, 1];
  const w = [1.5, -0.5, 3, 0.8, -2, 0.5];
  const x = new Float32Array(N * D);
  const y = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    let z = 0.3;
    for (let j = 0; j < D; j++) {
      const v = gauss() * scale[j];
      x[i * D + j] = v;
      z += v * w[j];
    }
    y[i] = next() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
  }
  return { size: N, columns: { x: { data: x, shape: [N, D] }, y: { data: y, shape: [N] } } };
}

const data = dataset();
const full = { x: data.columns.x, y: data.columns.y };
const cpu = (m: Manifest) => Model.create(m, cpuKernels, { backend: 'cpu' });

describe('L-BFGS', () => {
  it('reaches a lower full-batch loss than the best-tuned gradient descent with the same evaluations', async () => {
    const BUDGET = 20;
    const model = await cpu(manifest());
    const start = (await model.evaluate(full)).loss;
    const opt = new Lbfgs(model, data, model.hypers);
    while (opt.evaluations < BUDGET) if ((await opt.step()).converged) break;
    const evaluations = opt.evaluations;
    const lbfgs = (await model.evaluate(full)).loss;

    // Gradient descent: one full-batch gradient per step, the same number of them, best of a grid.
    const sgd = manifest({ optimizer: 'sgd' });
    const gd: Record<number, number> = {};
    for (const lr of [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1, 2]) {
      const m = await cpu(sgd);
      expect(await m.getParams()).toEqual(await (await cpu(manifest())).getParams()); // same start
      m.hypers.lr = lr;
      for (let i = 0; i < evaluations; i++) await m.trainStep(full);
      gd[lr] = (await m.evaluate(full)).loss;
    }
    const bestGd = Math.min(...Object.values(gd).filter(Number.isFinite));
    console.log(`start ${start.toFixed(5)}; after ${evaluations} evaluations: L-BFGS ${lbfgs.toFixed(5)}, best GD ${bestGd.toFixed(5)} (${JSON.stringify(gd)})`);
    expect(evaluations).toBeGreaterThanOrEqual(BUDGET);
    expect(lbfgs).toBeLessThan(bestGd - 0.01);
  });

  it('decreases the loss monotonically and converges to a tiny gradient', async () => {
    const model = await cpu(manifest());
    const opt = new Lbfgs(model, data, model.hypers);
    const first = await opt.current();
    const losses = [first.loss];
    let last = { loss: first.loss, gradNorm: first.gradNorm, converged: false };
    for (let i = 0; i < 60 && !last.converged; i++) {
      last = await opt.step();
      losses.push(last.loss);
    }
    for (let i = 1; i < losses.length; i++) expect(losses[i]).toBeLessThanOrEqual(losses[i - 1]);
    expect(losses.filter((l, i) => i > 0 && l < losses[i - 1]).length).toBeGreaterThan(10);
    expect(last.gradNorm).toBeLessThan(1e-4 * first.gradNorm);
    expect(last.converged).toBe(true);
    // The parameters on the model are the ones the last loss was computed at.
    expect((await model.evaluate(full)).loss).toBeCloseTo(losses[losses.length - 1], 6);
    // Once converged, asking again costs nothing.
    expect((await opt.step()).evaluations).toBe(0);
  });

  it('leaves frozen parameters alone', async () => {
    const model = await cpu(manifest({}, (s) => s.replace('seed 3', 'seed 3\n    freeze "logits.b"')));
    const before = await model.getParams();
    const opt = new Lbfgs(model, data, model.hypers);
    expect(opt.layout.map((e) => e.name)).toEqual(['logits.w']);
    const start = (await opt.current()).loss;
    for (let i = 0; i < 5; i++) await opt.step();
    const after = await model.getParams();
    expect(after['logits.b']).toEqual(before['logits.b']);
    expect(after['logits.w']).not.toEqual(before['logits.w']);
    expect((await opt.current()).loss).toBeLessThan(start);
  });

  it('lbfgsEpoch runs `iterations` steps per call and keeps its memory between calls', async () => {
    const model = await cpu(manifest());
    const hypers = { history: 5, lr: 1, iterations: 3 };
    const start = (await model.evaluate(full)).loss;
    const e1 = await lbfgsEpoch(model, data, hypers);
    expect(model.step).toBe(3);
    const e2 = await lbfgsEpoch(model, data, hypers);
    expect(model.step).toBe(6);
    expect(e1).toBeLessThan(start);
    expect(e2).toBeLessThan(e1);
    expect((await model.evaluate(full)).loss).toBeCloseTo(e2, 6);
    // The sum over batches of any size is the same full-batch objective.
    const a = new Lbfgs(model, data, hypers, { batch: 300 });
    const b = new Lbfgs(model, data, hypers, { batch: 7 });
    const [ca, cb] = [await a.current(), await b.current()];
    expect(cb.loss).toBeCloseTo(ca.loss, 5);
    expect(cb.gradNorm).toBeCloseTo(ca.gradNorm, 5);
  });

  it('refuses a model compiled without its gradient program', async () => {
    const model = await cpu(manifest({ optimizer: 'sgd' }));
    expect(() => new Lbfgs(model, data, { history: 10, lr: 1, iterations: 1 })).toThrow(/gradient program/);
  });

  it('is what fit() runs for `optimizer lbfgs(...)`: an epoch is `iterations` steps', async () => {
    const m = manifest({}, (src) => src.replace(/optimizer\s+\w+\([^)]*\)/, 'optimizer lbfgs(iterations: 4)'));
    expect(m.optimizer).toEqual({ name: 'lbfgs', hypers: { history: 10, lr: 1, iterations: 4 } });
    const model = await cpu(m);
    const start = (await model.evaluate(full)).loss;
    const { history } = await fit(model, data, { epochs: 2, batch: 64, shuffle: true, seed: 1 });
    expect(model.step).toBe(8);
    expect(history[0].train.loss).toBeLessThan(start);
    expect(history[1].train.loss).toBeLessThanOrEqual(history[0].train.loss);
  });
});
