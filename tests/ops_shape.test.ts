// reshape, transpose, broadcast, slice, concat: gradient checks on random shapes (float64), WGSL
// against the float32 CPU kernels, hand-derived values, symbolic dims and shape errors.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, broadcastShapes, type DType, type Dim, type Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { arbBroadcastShapes, arbShape, arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, programOf, t } from './support/harness.ts';

const gpu = await gpuDevice();
const RUNS = 100;
const seed = fc.integer({ min: 1, max: 2 ** 30 });
const range = (n: number) => Array.from({ length: n }, (_, k) => k);

// ---------------------------------------------------------------- random cases

/** A shape and a reshape target: its dims shuffled, then a run of them merged into one. */
const arbReshape = arbShape({ maxRank: 4 }).chain((s) =>
  fc.tuple(fc.constant(s), fc.shuffledSubarray(s, { minLength: s.length, maxLength: s.length }), fc.nat(s.length), fc.nat(s.length)).map(([s, u, i, j]) => {
    const [lo, hi] = [Math.min(i, j), Math.max(i, j)];
    return [s, [...u.slice(0, lo), ...(hi > lo ? [u.slice(lo, hi).reduce((p, d) => p * d, 1)] : []), ...u.slice(hi)]];
  }),
);

/** A shape and a permutation of its axes. */
const arbTranspose = arbShape({ maxRank: 4 }).chain((s) => fc.tuple(fc.constant(s), fc.shuffledSubarray(range(s.length), { minLength: s.length, maxLength: s.length })));

/** A shape and one it broadcasts to. */
const arbBroadcast = arbBroadcastShapes().map(([s, u]) => [s, broadcastShapes([s, u]) as number[]]);

/** A shape and, per axis, begin < end <= dim and a step in 1..3. */
const arbSlice = arbShape({ minRank: 1, maxRank: 4, maxDim: 7 }).chain((s) =>
  fc.tuple(
    fc.constant(s),
    fc.tuple(...s.map((d) => fc.tuple(fc.integer({ min: 0, max: d - 1 }), fc.integer({ min: 1, max: d }), fc.integer({ min: 1, max: 3 })))),
  ).map(([s, axes]) => {
    const bounds = axes.map(([p, q, st]) => [Math.min(p, q - 1), Math.max(p + 1, q), st]);
    return { shape: s, begin: bounds.map((x) => x[0]), end: bounds.map((x) => x[1]), step: bounds.map((x) => x[2]) };
  }),
);

/** Shapes of 1..4 pieces that concat along `axis` (their sizes along it vary). */
const arbConcat = fc
  .tuple(arbShape({ minRank: 1, maxRank: 4 }), fc.nat(), fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 4 }))
  .map(([s, a, sizes]) => {
    const axis = a % s.length;
    return { axis, shapes: sizes.map((d) => s.map((e, k) => (k === axis ? d : e))) };
  });

// ---------------------------------------------------------------- gradients

describe('shape op gradients (float64, centered differences)', () => {
  const check = (build: (xs: Node[]) => Node, inputs: Tensor[], s: number) => {
    expect(gradcheck(build, inputs, { seed: s }).rel).toBeLessThan(1e-6);
  };
  const opts = { numRuns: RUNS };

  it('reshape', () =>
    fc.assert(fc.property(arbReshape.chain(([s, u]) => fc.tuple(arbTensor(s), fc.constant(u), seed)), ([x, u, s]) => check(([p]) => b.reshape(p, u), [x], s)), opts));

  it('transpose (random permutations)', () =>
    fc.assert(fc.property(arbTranspose.chain(([s, perm]) => fc.tuple(arbTensor(s), fc.constant(perm), seed)), ([x, perm, s]) => check(([p]) => b.transpose(p, perm), [x], s)), opts));

  it('broadcast', () =>
    fc.assert(fc.property(arbBroadcast.chain(([s, u]) => fc.tuple(arbTensor(s), fc.constant(u), seed)), ([x, u, s]) => check(([p]) => b.broadcast(p, u), [x], s)), opts));

  it('slice (random ranges and steps)', () =>
    fc.assert(
      fc.property(arbSlice.chain((c) => fc.tuple(arbTensor(c.shape), fc.constant(c), seed)), ([x, c, s]) => check(([p]) => b.slice(p, c.begin, c.end, c.step), [x], s)),
      opts,
    ));

  it('concat (random splits)', () =>
    fc.assert(
      fc.property(arbConcat.chain((c) => fc.tuple(fc.tuple(...c.shapes.map((s) => arbTensor(s))), fc.constant(c.axis), seed)), ([xs, axis, s]) =>
        check((ps) => b.concat(ps, axis), xs, s),
      ),
      opts,
    ));
});

// ---------------------------------------------------------------- values

/** `y` on the f64 and f32 CPU and on WebGPU: exactly `want` (these ops only move values). */
async function expectValues(y: Node, feeds: Map<Node, Tensor>, want: number[], shape: number[]) {
  const results = [...evalCpu([y], feeds, 'f64'), ...evalCpu([y], feeds, 'f32'), ...(gpu ? await evalWebGPU([y], feeds) : [])];
  for (const r of results) {
    expect(r.shape).toEqual(shape);
    expect([...r.data]).toEqual(want);
  }
}

describe('shape op values', () => {
  const x = b.arg('input', 'x', [2, 3], 'f32');
  const feeds = new Map([[x, t([1, 2, 3, 4, 5, 6], [2, 3])]]);

  it('transpose of [[1,2,3],[4,5,6]]', () => expectValues(b.transpose(x, [1, 0]), feeds, [1, 4, 2, 5, 3, 6], [3, 2]));
  it('reshape keeps row-major order', () => expectValues(b.transpose(b.reshape(x, [3, 2]), [1, 0]), feeds, [1, 3, 5, 2, 4, 6], [2, 3]));
  it('broadcast adds and stretches axes', () =>
    expectValues(b.broadcast(b.reshape(x, [2, 1, 3]), [2, 2, 2, 3]), feeds, [1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6, 1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6], [2, 2, 2, 3]));
  it('slice with steps', () => expectValues(b.slice(x, [0, 0], [2, 3], [1, 2]), feeds, [1, 3, 4, 6], [2, 2]));
  it('slice of an inner range', () => expectValues(b.slice(x, [1, 1], [2, 3], [1, 1]), feeds, [5, 6], [1, 2]));
  it('concat along each axis, negative axis', async () => {
    await expectValues(b.concat([x, x], 0), feeds, [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6], [4, 3]);
    await expectValues(b.concat([x, b.slice(x, [0, 2], [2, 3], [1, 1])], -1), feeds, [1, 2, 3, 3, 4, 5, 6, 6], [2, 4]);
  });
  it('i32 and bool tensors move too', async () => {
    const i = b.arg('input', 'i', [2, 2], 'i32');
    const f = new Map([[i, { data: Int32Array.from([1, 2, 3, 4]), shape: [2, 2] }]]);
    await expectValues(b.concat([b.transpose(i, [1, 0]), b.slice(i, [1, 0], [2, 2], [1, 1])], 0), f, [1, 3, 2, 4, 3, 4], [3, 2]);
    await expectValues(b.cast(b.broadcast(b.binary('gt', i, b.constant(2, 'i32')), [2, 2, 2]), 'i32'), f, [0, 0, 1, 1, 0, 0, 1, 1], [2, 2, 2]);
  });
  it('the slice gradient puts the cotangent back in place', () => {
    const ct = b.arg('input', 'ct', [1, 2], 'f32');
    const [g] = vjp(b.slice(x, [1, 0], [2, 3], [1, 2]), ct, [x]);
    expect([...evalCpu([g], new Map([...feeds, [ct, t([7, 8], [1, 2])]]), 'f64')[0].data]).toEqual([0, 0, 0, 7, 0, 8]);
  });
});

// ---------------------------------------------------------------- WGSL vs CPU float32

/** Each case's output on WebGPU equals the float32 CPU's (one program for all the cases). */
async function agree(cases: [(xs: Node[]) => Node, Tensor[]][], dtype: DType = 'f32') {
  const feeds = new Map<Node, Tensor>();
  const outs = cases.map(([build, ins], c) => {
    const args = ins.map((x, k) => b.arg('input', `c${c}_${k}`, x.shape, dtype));
    args.forEach((p, k) => feeds.set(p, ins[k]));
    return build(args);
  });
  const want = evalCpu(outs, feeds, 'f32');
  (await evalWebGPU(outs, feeds)).forEach((g, i) => expectClose(g, want[i], { rtol: 0, atol: 0 }));
}

/** `n` samples of `arb`, fixed by `seed`, then the extra cases. */
const samples = <T,>(arb: fc.Arbitrary<T>, seed: number, extra: T[] = [], n = 6): T[] => [...fc.sample(arb, { seed, numRuns: n }), ...extra];
const data = (shape: number[], k: number, dtype: DType = 'f32'): Tensor => fc.sample(arbTensor(shape, { dtype: dtype === 'f32' ? 'f32' : 'i32' }), { seed: k, numRuns: 1 })[0];

describe.skipIf(!gpu)('shape op WGSL matches the float32 CPU kernels', () => {
  it('transpose', () =>
    agree(samples(arbTranspose, 1, [[[70, 33], [1, 0]], [[3, 4, 5, 6], [3, 1, 0, 2]]]).map(([s, perm], k) => [([x]) => b.transpose(x, perm), [data(s, k)]])));
  it('transpose i32', () => agree(samples(arbTranspose, 2).map(([s, perm], k) => [([x]) => b.transpose(x, perm), [data(s, k, 'i32')]]), 'i32'));
  it('broadcast', () => agree(samples(arbBroadcast, 3, [[[1, 65], [3, 40, 65]], [[], [2, 3]]]).map(([s, u], k) => [([x]) => b.broadcast(x, u), [data(s, k)]])));
  it('broadcast bool', () => agree(samples(arbBroadcast, 4).map(([s, u], k) => [([x]) => b.broadcast(x, u), [data(s, k, 'i32')]]), 'bool'));
  it('slice', () =>
    agree(
      samples(arbSlice, 5, [{ shape: [50, 40], begin: [3, 0], end: [50, 39], step: [2, 1] }]).map((c, k) => [([x]) => b.slice(x, c.begin, c.end, c.step), [data(c.shape, k)]]),
    ));
  it('concat', () =>
    agree(
      samples(arbConcat, 6, [{ axis: 1, shapes: [[30, 20], [30, 1], [30, 45]] }, { axis: 0, shapes: range(7).map(() => [3, 2]) }]).map((c, k) => [
        (xs) => b.concat(xs, c.axis),
        c.shapes.map((s, j) => data(s, 10 * k + j)),
      ]),
    ));
});

// ---------------------------------------------------------------- symbolic dims and errors

describe('shape rules', () => {
  const a = (shape: Dim[], name = 'a') => b.arg('input', name, shape, 'f32');

  it('reshape: counts must match; symbols must match as a multiset', () => {
    expect(b.reshape(a(['B', 6]), ['B', 2, 3]).shape).toEqual(['B', 2, 3]);
    expect(b.reshape(a(['B', 'T', 6]), [3, 'T', 2, 'B']).shape).toEqual([3, 'T', 2, 'B']);
    expect(() => b.reshape(a([2, 3]), [7])).toThrow(ShapeError);
    expect(() => b.reshape(a(['B', 6]), ['C', 6])).toThrow(/element counts/);
    expect(() => b.reshape(a(['B', 6]), ['B', 4])).toThrow(/element counts/);
    expect(() => b.reshape(a([2, 3]), [6, 0])).toThrow(/positive/);
  });
  it('transpose needs a permutation', () => {
    expect(b.transpose(a(['B', 3, 4]), [2, 0, 1]).shape).toEqual([4, 'B', 3]);
    expect(() => b.transpose(a([2, 3]), [0, 0])).toThrow(/permutation/);
    expect(() => b.transpose(a([2, 3]), [1, 0, 2])).toThrow(/permutation/);
  });
  it('broadcast follows NumPy, one way', () => {
    expect(b.broadcast(a([3]), ['B', 2, 3]).shape).toEqual(['B', 2, 3]);
    expect(() => b.broadcast(a([2, 3]), [3])).toThrow(/cannot broadcast/);
    expect(() => b.broadcast(a([2, 3]), [4, 3])).toThrow(/cannot broadcast/);
    expect(() => b.broadcast(a([1, 3]), ['B', 1])).toThrow(/cannot broadcast/);
  });
  it('slice: in-range bounds; symbolic axes only whole', () => {
    expect(b.slice(a(['B', 10]), [0, 1], ['B', 10], [1, 3]).shape).toEqual(['B', 3]);
    expect(b.slice(a([10]), [2], [9], [3]).shape).toEqual([3]);
    expect(() => b.slice(a(['B', 10]), [1, 0], ['B', 10], [1, 1])).toThrow(/symbolic/);
    expect(() => b.slice(a([10]), [0], ['B'], [1])).toThrow(/symbolic/);
    expect(() => b.slice(a([10]), [3], [3], [1])).toThrow(/begin < end/);
    expect(() => b.slice(a([10]), [0], [11], [1])).toThrow(/begin < end/);
    expect(() => b.slice(a([10]), [0], [10], [0])).toThrow(/step/);
    expect(() => b.slice(a([10, 2]), [0], [10], [1])).toThrow(/rank-2/);
  });
  it('concat: other dims equal, a static axis', () => {
    expect(b.concat([a(['B', 2]), a(['B', 3], 'c')], 1).shape).toEqual(['B', 5]);
    expect(() => b.concat([a(['B', 2]), a(['B', 2], 'c')], 0)).toThrow(/symbolic/);
    expect(() => b.concat([a([2, 2]), a([3, 3], 'c')], 0)).toThrow(/cannot concat/);
    expect(() => b.concat([a([2, 2]), a([2], 'c')], 0)).toThrow(/cannot concat/);
    expect(() => b.concat([], 0)).toThrow(/at least one/);
  });
  it('concat of more inputs than WebGPU binds per stage is a clear error', () => {
    const xs = range(8).map((k) => a([2], `p${k}`));
    expect(() => programOf([b.concat(xs.slice(0, 7), 0)])).not.toThrow();
    expect(() => programOf([b.concat(xs, 0)])).toThrow(/9 storage buffers/);
  });
  it('runs with a symbolic batch on every backend', () => {
    const x = a(['B', 3], 'xb');
    const y = b.concat([b.slice(x, [0, 1], ['B', 3], [1, 1]), b.transpose(b.reshape(x, [3, 'B']), [1, 0])], 1);
    expect(y.shape).toEqual(['B', 5]);
    return expectValues(b.broadcast(y, [2, 'B', 5]), new Map([[x, t([1, 2, 3, 4, 5, 6], [2, 3])]]), [2, 3, 1, 3, 5, 5, 6, 2, 4, 6, 2, 3, 1, 3, 5, 5, 6, 2, 4, 6], [2, 2, 5]);
  });
});
