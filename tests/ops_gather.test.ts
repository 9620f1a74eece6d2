// take(x, idx): gradient checks (float64), WGSL against the float32 CPU kernel, hand-derived values
// (labels, out-of-range indices) and shape errors.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, type Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { arbShape, arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, t } from './support/harness.ts';

const gpu = await gpuDevice();
const ti = (data: number[], shape: number[]): Tensor => ({ data: Int32Array.from(data), shape });

/** Values [...s, n] and indices [...s] in [-1, n]: mostly in range, sometimes just outside. */
const arbTake = (opts = {}) =>
  fc.tuple(arbShape({ maxRank: 3, ...opts }), fc.integer({ min: 1, max: 6 })).chain(([s, n]) =>
    fc.tuple(arbTensor([...s, n]), arbTensor(s, { min: -1, max: n, dtype: 'i32' })),
  );

describe('take gradient (float64, centered differences)', () => {
  it('random shapes and indices', () => {
    fc.assert(
      fc.property(arbTake(), fc.integer({ min: 1, max: 2 ** 30 }), ([x, idx], seed) => {
        expect(gradcheck(([p, q]) => b.take(p, q), [x, idx], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: 100 },
    );
  });
});

describe('take values', () => {
  const x = b.arg('input', 'probs', [3, 3], 'f32');
  const labels = b.arg('input', 'labels', [3], 'i32');
  const probs = t([0.1, 0.2, 0.7, 0.3, 0.3, 0.4, 0.5, 0.25, 0.25], [3, 3]);

  async function expectTake(idx: number[], want: number[]) {
    const feeds = new Map([[x, probs], [labels, ti(idx, [3])]]);
    const y = b.take(x, labels);
    const results = [...evalCpu([y], feeds, 'f64'), ...evalCpu([y], feeds, 'f32'), ...(gpu ? await evalWebGPU([y], feeds) : [])];
    for (const r of results) {
      expect(r.shape).toEqual([3]);
      expect([...r.data]).toEqual(want.map(Math.fround));
    }
  }

  it('picks each row’s label', () => expectTake([2, 0, 1], [0.7, 0.3, 0.25]));
  it('reads 0 for an index outside [0, N)', () => expectTake([-1, 3, 0], [0, 0, 0.5]));

  it('its gradient is the cotangent at the label, zero elsewhere and for bad indices', () => {
    const ct = b.arg('input', 'ct', [3], 'f32');
    const [g] = vjp(b.take(x, labels), ct, [x]);
    const feeds = new Map([[x, probs], [labels, ti([2, 0, 5], [3])], [ct, t([1, 2, 3], [3])]]);
    expect([...evalCpu([g], feeds, 'f64')[0].data]).toEqual([0, 0, 1, 2, 0, 0, 0, 0, 0]);
  });

  it('works on a symbolic batch', () => {
    const xb = b.arg('input', 'xb', ['B', 4], 'f32');
    const lb = b.arg('input', 'lb', ['B'], 'i32');
    expect(b.take(xb, lb).shape).toEqual(['B']);
    const r = evalCpu([b.take(xb, lb)], new Map([[xb, t([1, 2, 3, 4, 5, 6, 7, 8], [2, 4])], [lb, ti([3, 1], [2])]]), 'f64')[0];
    expect([...r.data]).toEqual([4, 6]);
  });
});

describe('take shape rule', () => {
  const a = (shape: (number | string)[], dtype: 'f32' | 'i32', name: string) => b.arg('input', name, shape, dtype);
  it('needs f32 values and i32 indices of the leading shape', () => {
    expect(b.take(a([5], 'f32', 'v'), a([], 'i32', 'i')).shape).toEqual([]);
    expect(() => b.take(a([2, 5], 'f32', 'v'), a([5], 'i32', 'i'))).toThrow(ShapeError);
    expect(() => b.take(a([2, 5], 'f32', 'v'), a([2, 1], 'i32', 'i'))).toThrow(/indices of shape \[2\]/);
    expect(() => b.take(a([2, 5], 'i32', 'v'), a([2], 'i32', 'i'))).toThrow(/f32 values/);
    expect(() => b.take(a([2, 5], 'f32', 'v'), a([2], 'f32', 'i'))).toThrow(/i32 indices/);
    expect(() => b.take(a([], 'f32', 'v'), a([], 'i32', 'i'))).toThrow(ShapeError);
  });
});

describe.skipIf(!gpu)('take WGSL matches the float32 CPU kernel', () => {
  it('random shapes, a batch of MNIST labels, several workgroups', async () => {
    const cases = [
      ...fc.sample(arbTake({ maxDim: 4 }), { seed: 3, numRuns: 6 }),
      ...fc.sample(arbTake({ minRank: 1, maxRank: 1, minDim: 64, maxDim: 64 }), { seed: 4, numRuns: 1 }),
      ...fc.sample(arbTake({ minRank: 2, maxRank: 2, minDim: 30, maxDim: 40 }), { seed: 5, numRuns: 1 }),
    ];
    const feeds = new Map<Node, Tensor>();
    const outs = cases.map(([x, idx], c) => {
      const [p, q] = [b.arg('input', `x${c}`, x.shape, 'f32'), b.arg('input', `i${c}`, idx.shape, 'i32')];
      feeds.set(p, x).set(q, idx);
      return b.take(p, q);
    });
    const want = evalCpu(outs, feeds, 'f32');
    (await evalWebGPU(outs, feeds)).forEach((g, i) => expectClose(g, want[i], { rtol: 0, atol: 0 }));
  });
});
