// Max and average pooling and their backward forms: gradient checks of each op (so of pooling to
// any order) over random windows, strides and paddings in float64, a double-backward check,
// hand-derived values on a known 4×4, first-max ties, values against TensorFlow.js, shape errors,
// and WGSL against the float32 CPU kernels.

import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import type { Node } from '../compiler/ir/node.ts';
import { topo } from '../compiler/ir/graph.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { convOutSize, convPadding } from '../compiler/ops/conv.ts';
import type { PoolOpts } from '../compiler/ops/pool.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { numel } from '../runtime/shapes.ts';
import { arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, input, randomTensor, t } from './support/harness.ts';

const gpu = await gpuDevice();
await tf.setBackend('cpu');


interface Geometry {
  x: number[];
  y: number[];
  opts: Required<PoolOpts>;
}

function geometry(x: number[], window: number[], strides = window, padding = [0, 0, 0, 0]): Geometry {
  const y = [x[0], convOutSize(x[1], window[0], strides[0], 1, padding[0], padding[1]), convOutSize(x[2], window[1], strides[1], 1, padding[2], padding[3]), x[3]];
  return { x, y, opts: { window, strides, padding } };
}

/** Random windows 1–3, strides 1–3, paddings 0–2 (asymmetric, each below the window). */
const arbGeometry: fc.Arbitrary<Geometry> = fc
  .record({
    B: fc.integer({ min: 1, max: 2 }),
    C: fc.integer({ min: 1, max: 3 }),
    k: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    s: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    p: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
    extra: fc.tuple(fc.integer({ min: 0, max: 5 }), fc.integer({ min: 0, max: 5 })),
  })
  .map(({ B, C, k, s, p, extra }) => {
    const pad = p.map((v, i) => Math.min(v, k[i >> 1] - 1));
    const fit = (q: number) => Math.max(1, k[q] - pad[2 * q] - pad[2 * q + 1]) + extra[q];
    return geometry([B, fit(0), fit(1), C], k, s, pad);
  });

/** Distinct values at least 0.25 apart: max pooling has no ties, so no kinks within ε. */
const distinct = (shape: number[]): fc.Arbitrary<Tensor> =>
  fc.uniqueArray(fc.integer({ min: -400, max: 400 }), { minLength: numel(shape), maxLength: numel(shape) }).map((v) => t(v.map((k) => k / 4), shape));
const values = (shape: number[]) => arbTensor(shape, { min: -3, max: 3 });
const seed = fc.integer({ min: 1, max: 2 ** 30 });
const RUNS = 100;

describe('pooling gradients (float64, centered differences)', () => {
  const check = (arb: fc.Arbitrary<[Geometry, Tensor[], number]>, build: (g: Geometry) => (args: Node[]) => Node) =>
    fc.assert(
      fc.property(arb, ([g, ins, s]) => {
        expect(gradcheck(build(g), ins, { seed: s }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  const given = (f: (g: Geometry) => fc.Arbitrary<Tensor>[]) => arbGeometry.chain((g) => fc.tuple(fc.constant(g), fc.tuple(...f(g)), seed));

  it('max_pool2d', () => check(given((g) => [distinct(g.x)]), (g) => ([x]) => b.maxPool2d(x, g.opts)));
  it('max_pool2d_backprop (linear in dy, none in x)', () =>
    check(given((g) => [distinct(g.x), values(g.y)]), (g) => ([x, dy]) => b.maxPool2dBackprop(x, dy, g.opts)));
  it('max_pool2d_gather (linear in v, none in x)', () =>
    check(given((g) => [distinct(g.x), values(g.x)]), (g) => ([x, v]) => b.maxPool2dGather(x, v, g.opts)));
  it('avg_pool2d', () => check(given((g) => [values(g.x)]), (g) => ([x]) => b.avgPool2d(x, g.opts)));
  it('avg_pool2d_backprop', () => check(given((g) => [values(g.y)]), (g) => ([dy]) => b.avgPool2dBackprop(dy, g.opts, g.x.slice(1, 3))));

  // f(x) = x ⊙ ∇ₓ ½‖pool(x)‖²: its VJP goes through the backprop's own VJP (a Hessian-vector product)
  const secondOrder = (pool: (x: Node, o: PoolOpts) => Node) => (g: Geometry) => ([x]: Node[]) => {
    const y = pool(x, g.opts);
    const [gx] = vjp(y, y, [x]);
    return b.mul(gx, x);
  };
  it('second order through max_pool2d', () => check(given((g) => [distinct(g.x)]), secondOrder(b.maxPool2d)));
  it('second order through avg_pool2d', () => check(given((g) => [values(g.x)]), secondOrder(b.avgPool2d)));

  it('the gradients are the backward primitives, and theirs stay in the family', () => {
    const x = input('fx', [2, 6, 6, 3]);
    const o = { window: [2, 2], strides: [2, 2] };
    const mp = b.maxPool2d(x, o), ap = b.avgPool2d(x, o);
    const [gm] = vjp(mp, mp, [x]), [ga] = vjp(ap, ap, [x]);
    expect([gm.op, ga.op]).toEqual(['max_pool2d_backprop', 'avg_pool2d_backprop']);
    const ops = new Set(topo(vjp(b.add(b.sum(b.mul(gm, gm)), b.sum(b.mul(ga, ga))), b.constant(1), [x])).map((n) => n.op));
    for (const op of ['max_pool2d_gather', 'max_pool2d_backprop', 'avg_pool2d', 'avg_pool2d_backprop']) expect(ops.has(op as Node['op'])).toBe(true);
  });
});

describe('pooling values', () => {
  // 4×4, one channel:  1  2  3  4 /  5  6  7  8 /  9 10 11 12 / 13 14 15 16, with 16 and 1 swapped
  // in places to move the maxima off the bottom-right corners
  const X = t([1, 9, 3, 4, 5, 6, 16, 8, 12, 10, 11, 2, 13, 14, 15, 7], [1, 4, 4, 1]);
  const x = input('x4', [1, 4, 4, 1]);
  const feeds = new Map([[x, X]]);

  async function expectAll(ns: Node[], want: [number[], number[]][], fs = feeds) {
    const runs = [evalCpu(ns, fs, 'f64'), evalCpu(ns, fs, 'f32'), ...(gpu ? [await evalWebGPU(ns, fs)] : [])];
    for (const rs of runs)
      rs.forEach((r, i) => expectClose(r, t(want[i][1], want[i][0]), { rtol: 1e-6, atol: 0 })); // f32 rounds 46/6
  }

  it('max and average of a known 4×4, 2×2 windows, stride 2', async () => {
    const o = { window: [2, 2] };
    await expectAll([b.maxPool2d(x, o), b.avgPool2d(x, o)], [
      [[1, 2, 2, 1], [9, 16, 14, 15]],
      [[1, 2, 2, 1], [(1 + 9 + 5 + 6) / 4, (3 + 4 + 16 + 8) / 4, (12 + 10 + 13 + 14) / 4, (11 + 2 + 15 + 7) / 4]],
    ]);
  });

  it('3×3 windows, stride 2, padding 1: padded cells never win and are not counted', async () => {
    const o = { window: [3, 3], strides: [2, 2], padding: [1, 1, 1, 1] };
    // windows: rows {0,1} or {1,2,3}, cols {0,1} or {1,2,3}
    await expectAll([b.maxPool2d(x, o), b.avgPool2d(x, o)], [
      [[1, 2, 2, 1], [9, 16, 14, 16]],
      [[1, 2, 2, 1], [(1 + 9 + 5 + 6) / 4, (9 + 3 + 4 + 6 + 16 + 8) / 6, (5 + 6 + 12 + 10 + 13 + 14) / 6, (6 + 16 + 8 + 10 + 11 + 2 + 14 + 15 + 7) / 9]],
    ]);
    // negative values: a padded zero must not beat them
    const neg = input('xn', [1, 4, 4, 1]);
    const r = evalCpu([b.maxPool2d(neg, o)], new Map([[neg, t(Array.from(X.data, (v) => -v), [1, 4, 4, 1])]]), 'f64')[0];
    expect([...r.data]).toEqual([-1, -3, -5, -2]);
  });

  it('gradients by hand: max routes to the argmax, average spreads over real cells', async () => {
    const o = { window: [3, 3], strides: [2, 2], padding: [1, 1, 1, 1] };
    const ct = t([1, 2, 3, 4], [1, 2, 2, 1]);
    const c = input('c', [1, 2, 2, 1]);
    const [gm] = vjp(b.maxPool2d(x, o), c, [x]), [ga] = vjp(b.avgPool2d(x, o), c, [x]);
    // maxima: 9 at (0,1) ← window 0; 16 at (1,2) ← windows 1 and 3; 14 at (3,1) ← window 2
    const wantMax = [0, 1, 0, 0, 0, 0, 2 + 4, 0, 0, 0, 0, 0, 0, 3, 0, 0];
    // each cell sums ct/count over the windows holding it (counts 4, 6, 6, 9)
    const a = [1 / 4, 2 / 6, 3 / 6, 4 / 9];
    const wantAvg = [
      a[0], a[0] + a[1], a[1], a[1],
      a[0] + a[2], a[0] + a[1] + a[2] + a[3], a[1] + a[3], a[1] + a[3],
      a[2], a[2] + a[3], a[3], a[3],
      a[2], a[2] + a[3], a[3], a[3],
    ];
    const fs = new Map([[x, X], [c, ct]]);
    const [m64, a64] = evalCpu([gm, ga], fs, 'f64');
    expect([...m64.data]).toEqual(wantMax);
    expectClose(a64, { data: Float64Array.from(wantAvg), shape: [1, 4, 4, 1] }, { rtol: 1e-12, atol: 0 });
    if (gpu) {
      const [mg, ag] = await evalWebGPU([gm, ga], fs);
      expect([...mg.data]).toEqual(wantMax);
      expectClose(ag, t(wantAvg, [1, 4, 4, 1]), { rtol: 1e-6, atol: 1e-7 });
    }
  });

  it('ties: the first maximum in row-major window order takes the gradient', async () => {
    const xt = input('xt', [1, 2, 2, 2]);
    const c = input('ct1', [1, 1, 1, 2]);
    const o = { window: [2, 2] };
    const [g] = vjp(b.maxPool2d(xt, o), c, [xt]);
    // channel 0: all equal → (0,0); channel 1: 3 at (0,1) and (1,0) → (0,1)
    const fs = new Map([[xt, t([5, 1, 5, 3, 5, 3, 5, 2], [1, 2, 2, 2])], [c, t([10, 20], [1, 1, 1, 2])]]);
    await expectAll([g], [[[1, 2, 2, 2], [10, 0, 0, 20, 0, 0, 0, 0]]], fs);
  });

  it("matches TensorFlow.js with 'same' and 'valid' padding", async () => {
    const cases: [number[], number[], number[], 'same' | 'valid'][] = [
      [[2, 7, 6, 3], [3, 3], [2, 2], 'same'],
      [[1, 8, 9, 2], [2, 3], [2, 1], 'same'],
      [[1, 8, 9, 2], [2, 3], [3, 2], 'valid'],
      [[3, 5, 5, 4], [4, 2], [1, 3], 'same'],
      [[1, 28, 28, 1], [2, 2], [2, 2], 'same'],
    ];
    for (const [i, [xs, k, s, mode]] of cases.entries()) {
      const g = geometry(xs, k, s, convPadding(mode, xs[1], xs[2], k[0], k[1], s));
      const xv = randomTensor(g.x, 30 + i);
      const p = input('tx', g.x);
      const got = evalCpu([b.maxPool2d(p, g.opts), b.avgPool2d(p, g.opts)], new Map([[p, xv]]), 'f64');
      const xt = tf.tensor4d(xv.data as Float32Array, g.x as [number, number, number, number]);
      const refs = [tf.maxPool(xt, k as [number, number], s as [number, number], mode), tf.avgPool(xt, k as [number, number], s as [number, number], mode)];
      for (const [j, ref] of refs.entries()) expectClose(got[j], { data: await ref.data<'float32'>(), shape: ref.shape }, { rtol: 1e-6, atol: 1e-6 });
    }
  });
});

describe('pooling shape rules', () => {
  it('keeps a symbolic batch and symbolic channels', () => {
    const x = input('sx', ['B', 24, 24, 'C']);
    expect(b.maxPool2d(x, { window: [2, 2] }).shape).toEqual(['B', 12, 12, 'C']);
    expect(b.avgPool2d(x, { window: [3, 3], strides: [2, 2], padding: [1, 1, 1, 1] }).shape).toEqual(['B', 12, 12, 'C']);
    expect(b.maxPool2d(x, { window: [5, 5], strides: [3, 1] }).shape).toEqual(['B', 7, 20, 'C']);
    const [g] = vjp(b.avgPool2d(x, { window: [2, 2] }), input('sct', ['B', 12, 12, 'C']), [x]);
    expect(g.shape).toEqual(['B', 24, 24, 'C']);
  });

  it('rejects bad operands and attributes', () => {
    const x = input('ex', [2, 5, 5, 3]);
    expect(() => b.maxPool2d(x, { window: [6, 2] })).toThrow(/does not fit/);
    expect(() => b.maxPool2d(x, { window: [2, 2], padding: [2, 0, 0, 0] })).toThrow(/smaller than the window/);
    expect(() => b.avgPool2d(x, { window: [2, 0] })).toThrow(/window/);
    expect(() => b.avgPool2d(x, { window: [2, 2], strides: [1] })).toThrow(/strides/);
    expect(() => b.maxPool2d(input('e3', [5, 5, 3]), { window: [2, 2] })).toThrow(/rank 4/);
    expect(() => b.maxPool2d(input('eH', [2, 'H', 5, 3]), { window: [2, 2] })).toThrow(/static/);
    expect(() => b.maxPool2dBackprop(x, input('edy', [2, 3, 2, 3]), { window: [2, 2] })).toThrow(/output gradient/);
    expect(() => b.maxPool2dGather(x, input('ev', [2, 5, 4, 3]), { window: [2, 2] })).toThrow(/gathered/);
    expect(() => b.avgPool2dBackprop(input('edy2', [2, 2, 2, 3]), { window: [2, 2] }, [6, 5])).toThrow(/output gradient/);
  });
});

describe.skipIf(!gpu)('pooling WGSL matches the float32 CPU kernels', () => {
  // [image, window, strides, padding]
  const cases: [number[], number[], number[], number[]][] = [
    [[1, 4, 4, 1], [2, 2], [2, 2], [0, 0, 0, 0]],
    [[2, 7, 5, 3], [3, 3], [2, 2], [1, 1, 1, 1]],
    [[1, 6, 9, 5], [3, 2], [1, 3], [2, 0, 0, 1]],
    [[3, 5, 5, 2], [1, 1], [2, 2], [0, 0, 0, 0]],
    [[2, 8, 8, 4], [3, 3], [1, 1], [1, 1, 1, 1]],
    [[1, 9, 4, 3], [2, 3], [3, 1], [1, 1, 2, 2]],
    [[64, 24, 24, 6], [2, 2], [2, 2], [0, 0, 0, 0]], // LeNet-5, first pooling
    // disjoint windows (max_pool2d_backprop's per-window kernel): cells past the last window,
    // gaps between windows, padding before the first
    [[1, 5, 7, 2], [2, 2], [2, 2], [0, 0, 0, 0]],
    [[2, 7, 8, 3], [2, 3], [3, 3], [1, 0, 2, 0]],
    [[2, 9, 7, 2], [3, 2], [3, 2], [1, 1, 1, 0]],
  ];
  const run = async (g: Geometry, xv: Tensor) => {
    const [x, dy, v] = [input('x', g.x), input('dy', g.y), input('v', g.x)];
    const outs = [
      b.maxPool2d(x, g.opts),
      b.maxPool2dBackprop(x, dy, g.opts),
      b.maxPool2dGather(x, v, g.opts),
      b.avgPool2d(x, g.opts),
      b.avgPool2dBackprop(dy, g.opts, g.x.slice(1, 3)),
    ];
    const feeds = new Map([[x, xv], [dy, randomTensor(g.y, 3)], [v, randomTensor(g.x, 4)]]);
    return [evalCpu(outs, feeds, 'f32'), await evalWebGPU(outs, feeds)];
  };
  for (const [xs, k, s, p] of cases) {
    it(`[${xs}] window [${k}] strides [${s}] padding [${p}]: all five ops`, async () => {
      const g = geometry(xs, k, s, p);
      const [want, got] = await run(g, randomTensor(g.x, 1));
      // max: the same argmax and sum order, so equal; avg: the division may round differently
      for (const i of [0, 1, 2]) expectClose(got[i], want[i], { rtol: 0, atol: 0 });
      for (const i of [3, 4]) expectClose(got[i], want[i], { rtol: 1e-5, atol: 1e-6 });
    });
  }

  it('many ties (values 0–2) pick the same argmax', async () => {
    const g = geometry([2, 9, 9, 3], [3, 3], [2, 2], [1, 1, 1, 1]);
    const xv = randomTensor(g.x, 5, { min: 0, max: 3 });
    const [want, got] = await run(g, { data: xv.data.map(Math.floor), shape: xv.shape });
    for (const i of [0, 1, 2]) expectClose(got[i], want[i], { rtol: 0, atol: 0 });
  });
});
