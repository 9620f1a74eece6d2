// Lowering: .dlm source to graphs and a running model — names, user-defined optimizers and
// schedules against plain TypeScript, and the diagnostics a user sees.
import { resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rng } from '../runtime/random.ts';

const FILE = resolve('tests/virtual/model.dlm');

/** Compile `src` as if it were a file (the stdlib is read from disk). */
function build(src: string) {
  const r = compile(FILE, (p) => (p === FILE ? src : readFileSync(p, 'utf8')));
  const text = r.diagnostics.map((d) => format(d, r.sources)).join('\n');
  return { ...r, text };
}

const regression = (body: string, train = '') => `
model reg {
  input x: f32[B, 3]
  input y: f32[B, 2]
  ${body}
  train {
    ${train}
  }
}`;

describe('lowering', () => {
  it('names parameters after their binding', () => {
    const r = build(regression(`
  h = x |> dense(4) |> relu |> dense(5)
  pred = dense(h, 2)
  z = dense(x, 2, name: "head")
  loss = mse(pred + z, y)`));
    expect(r.text).toBe('');
    expect(r.manifest!.params.map((p) => `${p.name}[${p.shape}]`)).toEqual([
      'h.dense_0.w[3,4]', 'h.dense_0.b[4]', 'h.dense_1.w[4,5]', 'h.dense_1.b[5]', 'pred.w[5,2]', 'pred.b[2]', 'head.w[3,2]', 'head.b[2]',
    ]);
    expect(r.manifest!.params.find((p) => p.name === 'pred.b')!.tags).toEqual(['no_decay']);
  });

  it('reports a shape mismatch with both shapes and where each came from', () => {
    const r = build(regression(`
  h = dense(x, 5)
  loss = mse(h, y)`));
    expect(r.manifest).toBeUndefined();
    expect(r.text).toContain('E0201');
    expect(r.text).toMatch(/\[B, 5\]/);
    expect(r.text).toMatch(/\[B, 2\]/);
    expect(r.text).toContain('note:');
  });

  it('suggests the closest name and keeps going', () => {
    const r = build(regression(`
  h = x |> dense(4) |> rleu
  loss = mse(dense(h, 2), y)`, 'optimizer adma(lr: 0.1)'));
    expect(r.text).toContain("unknown name 'rleu'");
    expect(r.text).toContain("did you mean 'relu'?");
    expect(r.text).toContain("unknown optimizer 'adma'");
    expect(r.text).toContain("did you mean 'adam'?");
  });

  it('checks typed formals of layers', () => {
    const r = build(`
layer two(x: f32[..., 2]) {
  param w: f32[2, 2] = ones
  return x @ w
}
${regression('loss = mse(two(x), y)')}`);
    expect(r.text).toContain("two: 'x' expects f32[..., 2], found f32[B, 3]");
  });

  it('warns when a declaration shadows the library', () => {
    const r = build(`fn relu(x) = max(x, 0.0)\n${regression('loss = mse(relu(dense(x, 2)), y)')}`);
    expect(r.manifest).toBeDefined();
    expect(r.text).toContain('W0001');
  });

  it('requires a constraint to keep its parameter\'s shape', () => {
    const r = build(`constraint squash() { project(w) = sum(w, axis: 0) }\n${regression('loss = mse(dense(x, 2), y)', 'constrain squash() on weights')}`);
    expect(r.text).toContain("constraint 'squash' must give a tensor of its parameter's shape");
  });

  it('requires a scalar loss', () => {
    const r = build(regression('loss = dense(x, 2) - y'));
    expect(r.text).toContain('E0401');
  });
});

describe('a user-defined optimizer and schedule', () => {
  const lion = `
optimizer lion(lr = 1e-3, beta1 = 0.9, beta2 = 0.99) {
  state m = zeros
  step(p, g, t) {
    c = beta1 * m + (1 - beta1) * g
    p <- p - lr * sign(c)
    m <- beta2 * m + (1 - beta2) * g
  }
}
schedule halve(every = 2) { lr(lr0, epoch, step) = lr0 * 0.5 ^ floor(step / every) }
`;
  const src = lion + regression('pred = dense(x, 2, init: xavier_uniform)\n  loss = mse(pred, y)', 'optimizer lion(lr: 0.01)\n    schedule halve(every: 3)');

  it('matches a plain TypeScript transcription over 20 steps', async () => {
    const r = build(src);
    expect(r.text).toBe('');
    const model = await Model.create(r.manifest!, cpuKernels, { backend: 'cpu', seed: 3 });
    const start = await model.getParams();
    const w = Float64Array.from(start['pred.w'].data);
    const b = Float64Array.from(start['pred.b'].data);
    const mw = new Float64Array(6);
    const mb = new Float64Array(2);
    const next = rng(1);
    for (let step = 0; step < 20; step++) {
      const x = Float32Array.from({ length: 12 }, () => next() * 2 - 1);
      const y = Float32Array.from({ length: 8 }, () => next() * 2 - 1);
      await model.trainStep({ x, y });
      // mse over [4, 2]: d/dpred = 2 (pred - y) / 8
      const gw = new Float64Array(6);
      const gb = new Float64Array(2);
      for (let i = 0; i < 4; i++) {
        for (let j = 0; j < 2; j++) {
          let pred = b[j];
          for (let k = 0; k < 3; k++) pred += x[i * 3 + k] * w[k * 2 + j];
          const d = (2 * (pred - y[i * 2 + j])) / 8;
          gb[j] += d;
          for (let k = 0; k < 3; k++) gw[k * 2 + j] += x[i * 3 + k] * d;
        }
      }
      const lr = 0.01 * 0.5 ** Math.floor(step / 3);
      const update = (p: Float64Array, g: Float64Array, m: Float64Array) => {
        for (let i = 0; i < p.length; i++) {
          p[i] -= lr * Math.sign(0.9 * m[i] + 0.1 * g[i]);
          m[i] = 0.99 * m[i] + 0.01 * g[i];
        }
      };
      update(w, gw, mw);
      update(b, gb, mb);
    }
    const end = await model.getParams();
    end['pred.w'].data.forEach((v, i) => expect(Math.abs(v - w[i])).toBeLessThan(1e-6));
    end['pred.b'].data.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(1e-6));
    model.dispose();
  });

  it('takes new schedule and optimizer hyperparameters without recompiling', async () => {
    const r = build(src);
    expect(r.manifest!.schedule).toEqual({ name: 'halve', hypers: { every: 3 } });
    const a = await Model.create(r.manifest!, cpuKernels, { backend: 'cpu', seed: 3 });
    const b = await Model.create(r.manifest!, cpuKernels, { backend: 'cpu', seed: 3 });
    b.schedule.every = 1;
    const x = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i));
    const y = Float32Array.from({ length: 8 }, (_, i) => Math.cos(i));
    const w0 = (await a.getParams())['pred.b'].data[0];
    for (let i = 0; i < 2; i++) await a.trainStep({ x, y }), await b.trainStep({ x, y });
    // Lion moves each weight by exactly lr per step: 0.01 + 0.01 with every = 3, 0.01 + 0.005 with every = 1.
    expect(Math.abs((await a.getParams())['pred.b'].data[0] - w0)).toBeCloseTo(0.02, 6);
    expect(Math.abs((await b.getParams())['pred.b'].data[0] - w0)).toBeCloseTo(0.015, 6);
  });
});
