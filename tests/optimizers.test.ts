// The library's optimizers (stdlib/optimizers.dlm) on one small problem — linear regression with
// mse: each one reduces the loss, and the first updates of each per-parameter rule match a plain
// TypeScript transcription of its defining formula (CS231n / Goodfellow et al. ch. 8 forms, as
// the comments of stdlib/optimizers.dlm state them), with the gradient computed analytically.
// L-BFGS is built into the runtime (runtime/lbfgs.ts) and checked here only for reducing the loss.

import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Dataset } from '../runtime/dataset.ts';
import { Model } from '../runtime/model.ts';
import { rng } from '../runtime/random.ts';
import { compileModel } from './support/dlm.ts';

// ---------------------------------------------------------------- the problem

const N = 32, D = 3, K = 2;
const next = rng(42);
const W_TRUE = [1.5, -2, 0.5, 1, -1, 3]; // [3, 2]
const B_TRUE = [0.3, -0.7];
const X = Float32Array.from({ length: N * D }, () => 4 * next() - 2);
const Y = Float32Array.from({ length: N * K }, (_, k) => {
  const i = Math.floor(k / K), j = k % K;
  let v = B_TRUE[j] + 0.05 * (next() - 0.5);
  for (let d = 0; d < D; d++) v += X[i * D + d] * W_TRUE[d * K + j];
  return v;
});
const BATCH = 8;
/** Batch s of a fixed cycle through the data. */
const batch = (s: number) => {
  const o = (s % (N / BATCH)) * BATCH;
  return { x: X.subarray(o * D, (o + BATCH) * D), y: Y.subarray(o * K, (o + BATCH) * K) };
};
const full = { x: X, y: Y };

const source = (optimizer: string) => `
model reg {
  input x: f32[B, ${D}]
  input y: f32[B, ${K}]
  pred = dense(x, ${K}, init: xavier_uniform)
  loss = mse(pred, y)
  train {
    optimizer ${optimizer}
  }
}`;

async function modelWith(optimizer: string, opts: { gradient?: boolean } = {}) {
  const m = await Model.create(compileModel(source(optimizer), opts), cpuKernels, { backend: 'cpu', seed: 3 });
  return m;
}

/** Parameters flattened as [w (3×2), b (2)]: every rule here is elementwise, so one vector will do. */
async function flat(m: Model): Promise<Float64Array> {
  const p = await m.getParams();
  return Float64Array.from([...p['pred.w'].data, ...p['pred.b'].data]);
}

/** d mse / d [w, b] on a batch, for a linear model: d/dpred = 2 (pred - y) / (rows · K). */
function gradient(p: Float64Array, x: Float32Array, y: Float32Array): Float64Array {
  const rows = x.length / D;
  const g = new Float64Array(D * K + K);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < K; j++) {
      let pred = p[D * K + j];
      for (let d = 0; d < D; d++) pred += x[i * D + d] * p[d * K + j];
      const e = (2 * (pred - y[i * K + j])) / (rows * K);
      g[D * K + j] += e;
      for (let d = 0; d < D; d++) g[d * K + j] += x[i * D + d] * e;
    }
  }
  return g;
}

// ---------------------------------------------------------------- the rules, transcribed

/** One update of p in place at step t (from 1), with the rule's own slots. */
type Rule = (p: Float64Array, g: Float64Array, t: number) => void;

const RULES: Record<string, { call: string; make: () => Rule }> = {
  sgd: {
    call: 'sgd(lr: 0.05)',
    make: () => (p, g) => p.forEach((_, i) => (p[i] -= 0.05 * g[i])),
  },
  // v = mu v - lr g; p += v
  momentum: {
    call: 'momentum(lr: 0.02, mu: 0.8)',
    make: () => {
      const v = new Float64Array(8);
      return (p, g) => p.forEach((_, i) => ((v[i] = 0.8 * v[i] - 0.02 * g[i]), (p[i] += v[i])));
    },
  },
  // CS231n: v_prev = v; v = mu v - lr g; p += -mu v_prev + (1 + mu) v
  nesterov: {
    call: 'nesterov(lr: 0.02, mu: 0.85)',
    make: () => {
      const v = new Float64Array(8);
      return (p, g) =>
        p.forEach((_, i) => {
          const prev = v[i];
          v[i] = 0.85 * v[i] - 0.02 * g[i];
          p[i] += -0.85 * prev + (1 + 0.85) * v[i];
        });
    },
  },
  // cache += g²; p -= lr g / (√cache + eps)
  adagrad: {
    call: 'adagrad(lr: 0.3, eps: 1e-6)',
    make: () => {
      const cache = new Float64Array(8);
      return (p, g) => p.forEach((_, i) => ((cache[i] += g[i] * g[i]), (p[i] -= (0.3 * g[i]) / (Math.sqrt(cache[i]) + 1e-6))));
    },
  },
  // cache = decay cache + (1 - decay) g²; p -= lr g / (√cache + eps)
  rmsprop: {
    call: 'rmsprop(lr: 0.05, decay: 0.95, eps: 1e-6)',
    make: () => {
      const cache = new Float64Array(8);
      return (p, g) =>
        p.forEach((_, i) => {
          cache[i] = 0.95 * cache[i] + 0.05 * g[i] * g[i];
          p[i] -= (0.05 * g[i]) / (Math.sqrt(cache[i]) + 1e-6);
        });
    },
  },
  // Kingma & Ba: m, v moving averages of g and g², bias-corrected by 1 - beta^t
  adam: {
    call: 'adam(lr: 0.05, beta1: 0.8, beta2: 0.99, eps: 1e-7)',
    make: () => {
      const m = new Float64Array(8), v = new Float64Array(8);
      return (p, g, t) =>
        p.forEach((_, i) => {
          m[i] = 0.8 * m[i] + 0.2 * g[i];
          v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
          const mHat = m[i] / (1 - 0.8 ** t), vHat = v[i] / (1 - 0.99 ** t);
          p[i] -= (0.05 * mHat) / (Math.sqrt(vHat) + 1e-7);
        });
    },
  },
  // Loshchilov & Hutter: Adam's step plus lr · weight_decay · p (the p before the update), for the
  // weights only: the bias (parameters 6, 7; @no_decay) is not decayed
  adamw: {
    call: 'adamw(lr: 0.05, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.1)',
    make: () => {
      const m = new Float64Array(8), v = new Float64Array(8);
      return (p, g, t) =>
        p.forEach((_, i) => {
          m[i] = 0.9 * m[i] + 0.1 * g[i];
          v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
          const mHat = m[i] / (1 - 0.9 ** t), vHat = v[i] / (1 - 0.999 ** t);
          p[i] -= 0.05 * (mHat / (Math.sqrt(vHat) + 1e-8) + (i < 6 ? 0.1 * p[i] : 0));
        });
    },
  },
};

// ---------------------------------------------------------------- tests

describe('each optimizer reduces the loss of a linear regression in 50 steps', () => {
  for (const [name, { call }] of Object.entries(RULES)) {
    it(name, async () => {
      const m = await modelWith(call);
      const before = (await m.evaluate(full)).loss;
      const losses: number[] = [];
      for (let s = 0; s < 50; s++) losses.push((await m.trainStep(batch(s))).loss);
      const after = (await m.evaluate(full)).loss;
      expect(after).toBeLessThan(0.25 * before);
      expect(losses.slice(-4).reduce((a, v) => a + v, 0)).toBeLessThan(losses.slice(0, 4).reduce((a, v) => a + v, 0));
      m.dispose();
    });
  }

  // The built-in L-BFGS is driven by the host from the gradient program (Model.gradient).
  const LBFGS = new URL('../runtime/lbfgs.ts', import.meta.url);
  it.skipIf(!existsSync(LBFGS))('lbfgs (full batch, runtime/lbfgs.ts)', async () => {
    const { Lbfgs } = (await import(LBFGS.href)) as typeof import('../runtime/lbfgs.ts');
    const m = await modelWith('lbfgs(history: 5)', { gradient: true });
    expect(m.manifest.optimizer).toEqual({ name: 'lbfgs', hypers: { history: 5, lr: 1, iterations: 1 } });
    const data: Dataset = { size: N, columns: { x: { data: X, shape: [N, D] }, y: { data: Y, shape: [N, K] } } };
    const before = (await m.evaluate(full)).loss;
    const opt = new Lbfgs(m, data, m.hypers);
    let last = before;
    for (let s = 0; s < 20; s++) {
      const r = await opt.step();
      expect(r.loss).toBeLessThanOrEqual(last);
      last = r.loss;
      if (r.converged) break;
    }
    // a quadratic in 8 unknowns: L-BFGS gets to the noise floor (≈ 0.05² / 12) quickly
    expect((await m.evaluate(full)).loss).toBeLessThan(1e-3 * before);
    m.dispose();
  });
});

describe('the first 10 updates match the defining formulas (float64 transcription, 1e-6)', () => {
  for (const [name, { call, make }] of Object.entries(RULES)) {
    it(name, async () => {
      const m = await modelWith(call);
      const p = await flat(m);
      const rule = make();
      for (let s = 0; s < 10; s++) {
        const { x, y } = batch(s);
        rule(p, gradient(p, x, y), s + 1);
        await m.trainStep({ x, y });
        const got = await flat(m);
        got.forEach((v, i) => expect(Math.abs(v - p[i]), `${name}: step ${s + 1}, parameter ${i}`).toBeLessThan(1e-6));
      }
      m.dispose();
    });
  }

  it('the defaults are the library declarations', () => {
    const hypers = (opt: string) => compileModel(source(opt)).optimizer.hypers;
    expect(hypers('sgd')).toEqual({ lr: 0.01 });
    expect(hypers('momentum')).toEqual({ lr: 0.01, mu: 0.9 });
    expect(hypers('nesterov')).toEqual({ lr: 0.01, mu: 0.9 });
    expect(hypers('adagrad')).toEqual({ lr: 0.01, eps: 1e-8 });
    expect(hypers('rmsprop')).toEqual({ lr: 1e-3, decay: 0.9, eps: 1e-8 });
    expect(hypers('adam')).toEqual({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 });
    expect(hypers('adamw')).toEqual({ lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 });
  });

  it("a step's fourth name is 1 for the weights, 0 for the others; a fifth is an error", async () => {
    // pure decay: the weights shrink by lr, the bias (@no_decay, rank 1) stays
    const decl = (params: string) => `optimizer wd(lr = 0.25) {\n  step(${params}) {\n    p <- p - lr * w * p\n  }\n}\n`;
    const m = await Model.create(compileModel(decl('p, g, t, w') + source('wd()')), cpuKernels, { backend: 'cpu', seed: 3 });
    const before = await m.getParams();
    await m.trainStep(batch(0));
    const after = await m.getParams();
    after['pred.w'].data.forEach((v, i) => expect(v).toBeCloseTo(0.75 * before['pred.w'].data[i], 6));
    expect([...after['pred.b'].data]).toEqual([...before['pred.b'].data]);
    m.dispose();
    expect(() => compileModel(decl('p, g, t, w, extra') + source('wd()'))).toThrow(/step takes \(p, g, t\) and optionally w, but it names 5 parameters/);
  });

  it('hyperparameters are run-time values: a changed lr takes effect at the next step', async () => {
    const m = await modelWith(RULES.sgd.call);
    const p = await flat(m);
    m.hypers.lr = 0.2;
    const { x, y } = batch(0);
    const g = gradient(p, x, y);
    await m.trainStep({ x, y });
    (await flat(m)).forEach((v, i) => expect(Math.abs(v - (p[i] - 0.2 * g[i]))).toBeLessThan(1e-6));
    m.dispose();
  });
});
