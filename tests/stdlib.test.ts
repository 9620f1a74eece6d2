// The .dlm standard library against values derived by hand from each definition.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';

const FILE = resolve('tests/virtual/stdlib.dlm');

async function model(src: string, seed = 1) {
  const r = compile(FILE, (p) => (p === FILE ? src : readFileSync(p, 'utf8')));
  expect(r.diagnostics.map((d) => format(d, r.sources)).join('')).toBe('');
  return Model.create(r.manifest!, cpuKernels, { backend: 'cpu', seed });
}

const xs = [-3, -0.5, 0, 0.25, 2, 40, -40, 1];

describe('activations and losses', () => {
  it('compute their definitions', async () => {
    const m = await model(`
model acts {
  input x: f32[B, 4]
  input y: i32[B]
  z = dense(x, 4)
  output s = sigmoid(x)
  output t = tanh(x)
  output r = relu(x)
  output sm = softmax(x)
  output ls = log_softmax(x)
  output ce = softmax_cross_entropy(x, y)
  output sq = mse(x, 0.5)
  loss = mean(z)
}`);
    const x = Float32Array.from(xs);
    const y = Int32Array.from([1, 3]);
    const out = await m.predict({ x, y });
    const close = (got: ArrayLike<number>, want: number[]) => want.forEach((w, i) => expect(got[i]).toBeCloseTo(w, 5));
    close(out.s.data, xs.map((v) => 1 / (1 + Math.exp(-v))));
    close(out.t.data, xs.map(Math.tanh));
    close(out.r.data, xs.map((v) => Math.max(v, 0)));
    const rows = [xs.slice(0, 4), xs.slice(4)];
    const lse = rows.map((r) => Math.max(...r) + Math.log(r.reduce((s, v) => s + Math.exp(v - Math.max(...r)), 0)));
    close(out.sm.data, rows.flatMap((r, i) => r.map((v) => Math.exp(v - lse[i]))));
    close(out.ls.data, rows.flatMap((r, i) => r.map((v) => v - lse[i])));
    close(out.ce.data, [(lse[0] - rows[0][1] + lse[1] - rows[1][3]) / 2]);
    close(out.sq.data, [xs.reduce((s, v) => s + (v - 0.5) ** 2, 0) / 8]);
    for (const v of out.sm.data) expect(Number.isFinite(v)).toBe(true);
  });

  it('one-hot labels give the same cross-entropy as integer labels', async () => {
    const m = await model(`
model ce {
  input x: f32[B, 4]
  input y: i32[B]
  input t: f32[B, 4]
  z = dense(x, 4)
  output a = softmax_cross_entropy(z, y)
  output b = softmax_cross_entropy(z, t)
  loss = mean(z)
}`);
    const out = await m.predict({ x: Float32Array.from(xs), y: Int32Array.from([2, 0]), t: Float32Array.from([0, 0, 1, 0, 1, 0, 0, 0]) });
    expect(out.a.data[0]).toBeCloseTo(out.b.data[0], 6);
  });
});

describe('dropout', () => {
  const src = `
model drop {
  input x: f32[B, 1000]
  w = dense(x, 1)
  d = dropout(x, 0.25)
  metric zeros = mean(d == 0)
  metric scale = sum(d) / sum(x)
  output kept = d
  loss = mean(w) + 0 * mean(d)
}`;

  it('drops at the rate and scales the kept units in training, and is the identity in inference', async () => {
    const m = await model(src);
    const x = new Float32Array(4000).fill(1);
    const r = await m.trainStep({ x });
    expect(r.zeros).toBeGreaterThan(0.22);
    expect(r.zeros).toBeLessThan(0.28);
    expect(r.scale).toBeGreaterThan(0.95);
    expect(r.scale).toBeLessThan(1.05);
    const e = await m.evaluate({ x });
    expect(e.zeros).toBe(0);
    expect(e.scale).toBeCloseTo(1, 6);
    const p = await m.predict({ x });
    expect(Array.from(p.kept.data).every((v) => v === 1)).toBe(true);
  });

  it('draws a new mask each step, the same for the same seed', async () => {
    const x = new Float32Array(1000).fill(1);
    const [a, b] = [await model(src, 5), await model(src, 5)];
    const ra = [await a.trainStep({ x }), await a.trainStep({ x })];
    const rb = [await b.trainStep({ x }), await b.trainStep({ x })];
    expect(ra).toEqual(rb);
    expect(ra[0].zeros).not.toBe(ra[1].zeros);
  });
});

describe('initializers', () => {
  it('he_normal and xavier_uniform have their variances; biases start at zero', async () => {
    const m = await model(`
model init {
  input x: f32[B, 400]
  a = dense(x, 300)
  b = dense(x, 300, init: xavier_uniform)
  loss = mean(a) + mean(b)
}`);
    const p = await m.getParams();
    const stats = (d: ArrayLike<number>) => {
      let s = 0, s2 = 0;
      for (let i = 0; i < d.length; i++) (s += d[i]), (s2 += d[i] * d[i]);
      return { mean: s / d.length, std: Math.sqrt(s2 / d.length - (s / d.length) ** 2), max: Math.max(...Array.from(d, Math.abs)) };
    };
    const he = stats(p['a.w'].data);
    expect(he.mean).toBeCloseTo(0, 2);
    expect(he.std / Math.sqrt(2 / 400)).toBeGreaterThan(0.97);
    expect(he.std / Math.sqrt(2 / 400)).toBeLessThan(1.03);
    const xu = stats(p['b.w'].data);
    const limit = Math.sqrt(6 / 700);
    expect(xu.max).toBeLessThanOrEqual(limit);
    expect(xu.std / (limit / Math.sqrt(3))).toBeGreaterThan(0.97);
    expect(xu.std / (limit / Math.sqrt(3))).toBeLessThan(1.03);
    expect(Array.from(p['a.b'].data).every((v) => v === 0)).toBe(true);
  });
});

describe('initializers with settings, given by name', () => {
  it('random_normal(std:) and random_uniform(limit:) are completed by the layer; a number is a constant', async () => {
    const m = await model(`
model init2 {
  input x: f32[B, 300]
  a = dense(x, 200, init: random_normal(std: 0.02))
  b = dense(x, 200, init: random_uniform(limit: 0.3))
  c = dense(x, 2, init: 0.5)
  loss = mean(a) + mean(b) + mean(c)
}`);
    const p = await m.getParams();
    const sd = (d: ArrayLike<number>) => Math.sqrt(Array.from(d).reduce((s, v) => s + v * v, 0) / d.length);
    expect(sd(p['a.w'].data)).toBeCloseTo(0.02, 3);
    const u = Array.from(p['b.w'].data);
    expect(Math.max(...u.map(Math.abs))).toBeLessThanOrEqual(0.3);
    expect(sd(u)).toBeCloseTo(0.3 / Math.sqrt(3), 2);
    expect(Array.from(p['c.w'].data).every((v) => v === 0.5)).toBe(true);
  });
});

describe('dropconnect', () => {
  it('drops weights in training only, scaling the kept ones', async () => {
    const m = await model(`
model dc {
  input x: f32[B, 1]
  h = dense_dropconnect(x, 2000, rate: 0.5, init: 1.0)
  output out = h
  metric dropped = mean(h == 0)
  loss = mean(h)
  train { optimizer sgd(lr: 0.0) }
}`);
    const x = new Float32Array([1]);
    const r = await m.trainStep({ x });
    expect(r.dropped).toBeGreaterThan(0.45);
    expect(r.dropped).toBeLessThan(0.55);
    expect(r.loss).toBeGreaterThan(0.9);
    expect(r.loss).toBeLessThan(1.1);
    const p = await m.predict({ x });
    expect(Array.from(p.out.data).every((v) => v === 1)).toBe(true);
  });
});
