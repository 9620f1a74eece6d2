// Reductions: gradient checks (properties, float64), WGSL against the float32 CPU kernels, and
// hand-derived values, ties and symbolic dims.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, type DType, type Node } from '../compiler/ir/node.ts';
import type { ReduceKind } from '../compiler/ops/registry.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { numel } from '../runtime/shapes.ts';
import { arbShape, arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, t } from './support/harness.ts';

const gpu = await gpuDevice();
const REDUCE: ReduceKind[] = ['sum', 'mean', 'reduce_max', 'reduce_min'];

const ti = (data: number[], shape: number[]): Tensor => ({ data: Int32Array.from(data), shape });

/** A shape, a sorted subset of its axes and keepdims. */
const arbReduction = arbShape({ maxRank: 4, maxDim: 4 }).chain((shape) =>
  fc.tuple(
    fc.constant(shape),
    fc.array(fc.boolean(), { minLength: shape.length, maxLength: shape.length }).map((m) => m.flatMap((on, k) => (on ? [k] : []))),
    fc.boolean(),
  ),
);

/** Distinct values (at least 0.25 apart): max and min have no ties. */
const distinct = (shape: number[]): fc.Arbitrary<Tensor> =>
  fc.uniqueArray(fc.integer({ min: -400, max: 400 }), { minLength: numel(shape), maxLength: numel(shape) }).map((v) => t(v.map((k) => k / 4), shape));

describe('reduction gradients (float64, centered differences)', () => {
  for (const op of REDUCE) {
    it(op, () => {
      fc.assert(
        fc.property(arbReduction.chain(([s, axes, keep]) => fc.tuple(distinct(s), fc.constant(axes), fc.constant(keep), fc.integer({ min: 1, max: 2 ** 30 }))), ([x, axes, keep, seed]) => {
          expect(gradcheck(([p]) => b.reduce(op, p, axes, keep), [x], { seed }).rel).toBeLessThan(1e-6);
        }),
        { numRuns: 100 },
      );
    });
  }

  const x = b.arg('input', 'x', [2, 3], 'f32');
  const grad = (y: Node, xs: Tensor) => [...evalCpu(vjp(y, b.broadcast(b.constant(1), y.shape), [x]), new Map([[x, xs]]), 'f64')[0].data];

  it('max and min split the cotangent evenly among ties', () => {
    expect(grad(b.reduce('reduce_max', x, [1]), t([1, 3, 3, 2, 2, 2], [2, 3]))).toEqual([0, 0.5, 0.5, 1 / 3, 1 / 3, 1 / 3]);
    expect(grad(b.reduce('reduce_min', x, [0, 1]), t([1, 3, 1, 2, 1, 2], [2, 3]))).toEqual([1 / 3, 0, 1 / 3, 0, 1 / 3, 0]);
  });

  it('mean over a symbolic dim divides by its run-time size (CPU and WebGPU)', async () => {
    const xs = b.arg('input', 'xs', ['B', 3], 'f32');
    const y = b.mean(xs, [0]);
    expect(y.shape).toEqual([3]);
    const [g] = vjp(y, b.broadcast(b.constant(1), [3]), [xs]);
    const feeds = new Map([[xs, t([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [4, 3])]]);
    const want = [t([5.5, 6.5, 7.5], [3]), t(new Array(12).fill(0.25), [4, 3])];
    for (const float of ['f64', 'f32'] as const) evalCpu([y, g], feeds, float).forEach((r, i) => expectClose(r, want[i], { rtol: 0, atol: 0 }));
    if (gpu) (await evalWebGPU([y, g], feeds)).forEach((r, i) => expectClose(r, want[i], { rtol: 0, atol: 0 }));
  });
});

// ---------------------------------------------------------------- WGSL vs CPU float32

/** Quarter-grid values: sums are exact in f32, whatever the order. */
const grid = (shape: number[], seed: number, dtype: 'f32' | 'i32'): Tensor => {
  const [x] = fc.sample(arbTensor(shape, { min: -20, max: 20, dtype }), { seed, numRuns: 1 });
  return dtype === 'i32' ? x : t(Array.from(x.data, (v) => Math.round(v * 4) / 4), shape);
};

const cases: [number[], number[], boolean][] = [
  ...fc.sample(arbReduction, { seed: 11, numRuns: 6 }),
  [[3, 200], [1], false], // long reductions
  [[150, 3], [1], true], // several workgroups of outputs
  [[130], [0], false],
  [[4, 3, 5, 2], [0, 1, 2], false], // adjacent axes (one stride): a conv bias gradient
  [[2, 3, 4, 5], [1, 2], true], // adjacent axes in the middle
  [[3, 4, 5], [0, 2], false], // apart: the coordinate walk
];

async function agree(build: (x: Node, axes: number[], keep: boolean) => Node, dtype: 'f32' | 'i32', only = (_: number[]) => true) {
  const feeds = new Map<Node, Tensor>();
  const outs = cases.filter(([s]) => only(s)).map(([s, axes, keep], c) => {
    const x = b.arg('input', `c${c}`, s, dtype);
    feeds.set(x, grid(s, 100 + c, dtype));
    return build(x, axes, keep);
  });
  const want = evalCpu(outs, feeds, 'f32');
  const got = await evalWebGPU(outs, feeds);
  got.forEach((g, i) => expectClose(g, want[i], { rtol: 0, atol: 0 }));
}

describe.skipIf(!gpu)('reduction WGSL matches the float32 CPU kernels', () => {
  for (const op of REDUCE)
    for (const dtype of op === 'mean' ? (['f32'] as const) : (['f32', 'i32'] as const)) it(`${op} ${dtype}`, () => agree((x, axes, keep) => b.reduce(op, x, axes, keep), dtype));
  for (const dtype of ['f32', 'i32'] as const)
    it(`argmax ${dtype}`, () => agree((x, axes) => b.argmax(x, axes[0] ?? -1), dtype, (s) => s.length > 0));
});

// ---------------------------------------------------------------- exact values

describe('reduction values', () => {
  const x = b.arg('input', 'v', [2, 3, 2], 'f32');
  const v = t([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [2, 3, 2]);
  const xi = b.arg('input', 'vi', [2, 3], 'i32');
  const vi = ti([1, 3, 3, 2, 2, 1], [2, 3]);

  const check = async (outs: Node[], feeds: Map<Node, Tensor>, want: Tensor[]) => {
    const runs = [evalCpu(outs, feeds, 'f64'), evalCpu(outs, feeds, 'f32')];
    if (gpu) runs.push(await evalWebGPU(outs, feeds));
    for (const r of runs) r.forEach((got, i) => expectClose(got, want[i], { rtol: 0, atol: 0 }));
  };

  it('sum, mean, max and min over axes, with and without keepdims', () =>
    check(
      [b.sum(x, [0, 2]), b.sum(x, [0, 2], true), b.mean(x), b.reduce('reduce_max', x, [1]), b.reduce('reduce_min', x, [2], true), b.sum(x, [])],
      new Map([[x, v]]),
      [t([18, 26, 34], [3]), t([18, 26, 34], [1, 3, 1]), t([6.5], []), t([5, 6, 11, 12], [2, 2]), t([1, 3, 5, 7, 9, 11], [2, 3, 1]), v],
    ));

  it('argmax gives the first index of the maximum (f32 and i32, any axis)', () => {
    const xf = b.arg('input', 'vf', [2, 3], 'f32');
    return check(
      [b.argmax(xi, 1), b.argmax(xi, 0), b.argmax(xf, -1), b.reduce('sum', xi, [1])],
      new Map([[xi, vi], [xf, t([1, 3, 3, 2, 2, 1], [2, 3])]]),
      [ti([1, 0], [2]), ti([1, 0, 0], [3]), ti([1, 0], [2]), ti([7, 5], [2])],
    );
  });

  it('shape rules', () => {
    expect(b.sum(x, [-1]).shape).toEqual([2, 3]);
    expect(b.mean(b.arg('input', 's', ['B', 4], 'f32'), [1], true).shape).toEqual(['B', 1]);
    expect(b.argmax(x, 1).dtype).toBe('i32');
    expect(() => b.mean(xi)).toThrow(ShapeError);
    expect(() => b.sum(x, [3])).toThrow(ShapeError);
    expect(() => b.argmax(b.arg('input', 'bb', [2], 'bool' as DType), 0)).toThrow(ShapeError);
  });
});
