// Elementwise ops: gradient checks (properties, float64), WGSL against the float32 CPU kernels, and
// hand-derived values.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, broadcastShapes, type DType, type Node } from '../compiler/ir/node.ts';
import type { BinaryKind, UnaryKind } from '../compiler/ops/registry.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { arbBroadcastShapes, arbShape, arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, gradError, t } from './support/harness.ts';

const gpu = await gpuDevice();
const RUNS = 100;

// ---------------------------------------------------------------- value domains

/** f32 values in [min, max], then moved by `nudge` (away from kinks, ties and domain edges). */
interface Dom {
  min: number;
  max: number;
  nudge?: (v: number) => number;
  dtype?: 'f32' | 'i32';
}
const any: Dom = { min: -10, max: 10 };
const positive: Dom = { min: 0.1, max: 10 };
const awayFromZero: Dom = { min: -10, max: 10, nudge: (v) => (v < 0 ? v - 0.1 : v + 0.1) };
const awayFromInt: Dom = { min: -10, max: 10, nudge: (v) => Math.floor(v) + 0.5 };
// Operands of max/min differ by at least 0.5: no ties.
const quarter: Dom = { min: -10, max: 10, nudge: (v) => Math.round(v) + 0.25 };
const threeQuarter: Dom = { min: -10, max: 10, nudge: (v) => Math.round(v) - 0.25 };

function vals(shape: number[], d: Dom): fc.Arbitrary<Tensor> {
  return arbTensor(shape, { min: d.min, max: d.max, dtype: d.dtype ?? 'f32' }).map((t) =>
    d.nudge ? { data: Float32Array.from(t.data, d.nudge), shape: t.shape } : t,
  );
}

// ---------------------------------------------------------------- gradient checks

const unaryGrad: [UnaryKind, Dom][] = [
  ['neg', any],
  ['exp', { min: -5, max: 5 }],
  ['log', positive],
  ['sqrt', positive],
  ['abs', awayFromZero],
  ['sin', { min: -5, max: 5 }],
  ['cos', { min: 0.3, max: 2.8 }], // away from the zeros of its gradient, where relative error is noise
  ['floor', awayFromInt], // zero gradient
  ['sign', awayFromZero], // zero gradient
];

const binaryGrad: [BinaryKind, Dom, Dom][] = [
  ['add', any, any],
  ['sub', any, any],
  ['mul', any, any],
  ['div', any, awayFromZero],
  ['pow', { min: 0.5, max: 3 }, { min: -2, max: 2 }],
  ['max', quarter, threeQuarter],
  ['min', quarter, threeQuarter],
];

const seed = fc.integer({ min: 1, max: 2 ** 30 });

describe('elementwise gradients (float64, centered differences)', () => {
  for (const [op, dom] of unaryGrad) {
    it(`${op}`, () => {
      fc.assert(
        fc.property(arbShape().chain((s) => fc.tuple(vals(s, dom), seed)), ([x, s]) => {
          expect(gradcheck(([p]) => b.unary(op, p), [x], { seed: s }).rel).toBeLessThan(1e-6);
        }),
        { numRuns: RUNS },
      );
    });
  }

  for (const [op, da, db] of binaryGrad) {
    it(`${op} (broadcasting)`, () => {
      fc.assert(
        fc.property(arbBroadcastShapes().chain(([s, t]) => fc.tuple(vals(s, da), vals(t, db), seed)), ([x, y, s]) => {
          expect(gradcheck(([p, q]) => b.binary(op, p, q), [x, y], { seed: s }).rel).toBeLessThan(1e-6);
        }),
        { numRuns: RUNS },
      );
    });
  }

  it('select (broadcasting)', () => {
    const shapes = fc.tuple(arbBroadcastShapes(), fc.integer({ min: 0, max: 2 })).map(([[s, t], k]) => [s, t, [s, t, broadcastShapes([s, t]) as number[]][k]]);
    fc.assert(
      fc.property(shapes.chain(([s, t, u]) => fc.tuple(arbTensor(s, { min: 0, max: 1, dtype: 'i32' }), vals(t, any), vals(u, any), seed)), ([c, x, y, s]) => {
        expect(gradcheck(([k, p, q]) => b.select(b.cast(k, 'bool'), p, q), [c, x, y], { seed: s }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('the gradient check', () => {
  it('forgives rounding noise of a small derivative of a large function (pow with exponent 0, CI seed -445245882)', () => {
    const x = { data: Float32Array.from([0.5, 0.5, 0.5254679322242737, 0.5102102160453796, 0.5089510083198547]), shape: [5, 1, 1] };
    const r = gradcheck(([p, q]) => b.pow(p, q), [x, { data: Float32Array.from([0]), shape: [] }], { seed: 1073741813 });
    expect(r.a).not.toBe(r.b);
    expect(r.rel).toBeLessThan(1e-6);
  });

  it('still fails a gradient wrong by one part in 10^4, and counts only what rounding cannot explain', () => {
    expect(gradError(1e-4 * (1 + 1e-4), 1e-4, 1e-4, 5, 1e-6)).toBeGreaterThan(1e-6);
    expect(gradError(1, 1 + 1e-4, 1, 5, 1e-6)).toBeCloseTo((1e-4 - 5 * Number.EPSILON * 1e6) / (1 + 1e-4), 15);
    expect(gradError(1, 1, 1, 5, 1e-6)).toBe(0);
  });
});

describe('elementwise gradient rules', () => {
  const x = b.arg('input', 'x', [3], 'f32');
  const y = b.arg('input', 'y', [3], 'f32');
  const grads = (f: Node, at: number[][]) =>
    evalCpu(vjp(f, b.broadcast(b.constant(1), f.shape), [x, y]), new Map([[x, t(at[0], [3])], [y, t(at[1], [3])]]), 'f64').map((g) => [...g.data]);

  it('pow: b-gradient is 0 (not NaN) where the base is <= 0; x^2 of negatives is smooth', () => {
    const [ga, gb] = grads(b.pow(x, y), [[-2, 0, 3], [2, 2, 2]]);
    expect(ga).toEqual([-4, 0, 6]);
    expect(gb[0]).toBe(0);
    expect(gb[1]).toBe(0);
    expect(gb[2]).toBeCloseTo(9 * Math.log(3), 12);
  });

  it('max and min send ties to the first operand', () => {
    expect(grads(b.max(x, y), [[1, 2, 3], [1, 5, 0]])).toEqual([[1, 0, 1], [0, 1, 0]]);
    expect(grads(b.min(x, y), [[1, 2, 3], [1, 5, 0]])).toEqual([[1, 1, 0], [0, 0, 1]]);
  });

  it('comparisons, logic, floor, sign and cast give no gradient', () => {
    const none = (n: Node) => expect(grads(n, [[1, 2, 3], [3, 2, 1]])).toEqual([[0, 0, 0], [0, 0, 0]]);
    none(b.select(b.binary('lt', x, y), b.floor(y), b.sign(x)));
    none(b.cast(b.cast(x, 'i32'), 'f32'));
    none(b.cast(b.binary('and', b.binary('ge', x, y), b.not(b.binary('eq', x, y))), 'f32'));
  });
});

// ---------------------------------------------------------------- WGSL vs CPU float32

const ti = (data: number[], shape: number[]): Tensor => ({ data: Int32Array.from(data), shape });

/** Shapes for the kernel comparisons: random broadcasting pairs, scalars, several workgroups. */
const shapeCases: [number[], number[]][] = [
  ...fc.sample(arbBroadcastShapes({ maxRank: 4, maxDim: 4 }), { seed: 7, numRuns: 5 }),
  [[], []],
  [[3, 1, 70], [5, 1]],
];

/**
 * Runs `build` on every case on WebGPU and on the float32 CPU (one program each) and compares.
 * Inputs of case c are args `c<c>_<k>` of dtype `dtypes[k]`.
 */
async function agree(build: (args: Node[]) => Node, dtypes: DType[], cases: Tensor[][], tol?: { rtol?: number; atol?: number }) {
  const feeds = new Map<Node, Tensor>();
  const outs = cases.map((ins, c) => {
    const args = ins.map((x, k) => b.arg('input', `c${c}_${k}`, x.shape, dtypes[k]));
    args.forEach((a, k) => feeds.set(a, ins[k]));
    return build(args);
  });
  const want = evalCpu(outs, feeds, 'f32');
  const got = await evalWebGPU(outs, feeds);
  got.forEach((g, i) => expectClose(g, want[i], tol ?? { rtol: 1e-6, atol: 1e-37 })); // GPUs may flush subnormals
}

const gen = <T,>(arb: fc.Arbitrary<T>, k: number): T => fc.sample(arb, { seed: 1000 + k, numRuns: 1 })[0];
const data = (shape: number[], d: Dom, k: number): Tensor => gen(vals(shape, d), k);
const bools = (shape: number[], k: number): Tensor => gen(arbTensor(shape, { min: 0, max: 1, dtype: 'i32' }), k);
const ints = (shape: number[], k: number, min = -20, max = 20): Tensor => gen(arbTensor(shape, { min, max, dtype: 'i32' }), k);
const unaryCases = (d: (s: number[], k: number) => Tensor) => shapeCases.map(([s], k) => [d(s, k)]);
const binaryCases = (da: (s: number[], k: number) => Tensor, db: (s: number[], k: number) => Tensor) =>
  shapeCases.map(([s, u], k) => [da(s, k), db(u, k + 100)]);

const f32 = (d: Dom) => (s: number[], k: number) => data(s, d, k);
const i32 = (min = -20, max = 20) => (s: number[], k: number) => ints(s, k, min, max);
const bool = (s: number[], k: number) => bools(s, k);
/** Exponents that are integers half the time (negative bases then have defined powers). */
const exponents: Dom = { min: -3, max: 3, nudge: (v) => (Math.abs(v * 4) % 2 < 1 ? Math.round(v) : v) };

describe.skipIf(!gpu)('elementwise WGSL matches the float32 CPU kernels', () => {
  const loose = { rtol: 2e-5, atol: 1e-6 };
  const unaryF32: [UnaryKind, Dom, { rtol?: number; atol?: number }?][] = [
    ['neg', any],
    ['exp', { min: -5, max: 5 }, loose],
    ['log', positive, loose],
    ['sqrt', positive, loose],
    ['abs', any],
    ['sin', { min: -5, max: 5 }, { rtol: 0, atol: 2e-4 }],
    ['cos', { min: -5, max: 5 }, { rtol: 0, atol: 2e-4 }],
    ['floor', any],
    ['sign', any],
  ];
  for (const [op, dom, tol] of unaryF32) it(`${op} f32`, () => agree(([x]) => b.unary(op, x), ['f32'], unaryCases(f32(dom)), tol));
  for (const op of ['neg', 'abs', 'sign'] as const) it(`${op} i32`, () => agree(([x]) => b.unary(op, x), ['i32'], unaryCases(i32())));
  it('not', () => agree(([x]) => b.not(x), ['bool'], unaryCases(bool)));

  const binaryF32: [BinaryKind, Dom, Dom, { rtol?: number; atol?: number }?][] = [
    ['add', any, any],
    ['sub', any, any],
    ['mul', any, any],
    ['div', any, awayFromZero],
    ['pow', { min: -3, max: 3 }, exponents, { rtol: 1e-4, atol: 1e-6 }],
    ['max', any, any],
    ['min', any, any],
  ];
  for (const [op, da, db, tol] of binaryF32) it(`${op} f32`, () => agree(([x, y]) => b.binary(op, x, y), ['f32', 'f32'], binaryCases(f32(da), f32(db)), tol));

  const binaryI32: [BinaryKind, (s: number[], k: number) => Tensor, (s: number[], k: number) => Tensor][] = [
    ['add', i32(), i32()],
    ['sub', i32(), i32()],
    ['mul', i32(-3000, 3000), i32(-3000, 3000)],
    ['div', i32(), i32(-4, 4)], // includes x / 0 = x
    ['pow', i32(-5, 5), i32(-3, 9)],
    ['max', i32(), i32()],
    ['min', i32(), i32()],
  ];
  for (const [op, da, db] of binaryI32) it(`${op} i32`, () => agree(([x, y]) => b.binary(op, x, y), ['i32', 'i32'], binaryCases(da, db)));

  // Small integers make ties common.
  const cmpInputs: [DType, (s: number[], k: number) => Tensor][] = [['f32', f32({ min: -2, max: 2, nudge: Math.round })], ['i32', i32(-2, 2)], ['bool', bool]];
  for (const op of ['eq', 'ne', 'lt', 'le', 'gt', 'ge'] as const)
    it(`${op}`, () =>
      Promise.all(cmpInputs.map(([dt, d]) => agree(([x, y]) => b.binary(op, x, y), [dt, dt], binaryCases(d, d)))));
  for (const op of ['and', 'or'] as const) it(`${op}`, () => agree(([x, y]) => b.binary(op, x, y), ['bool', 'bool'], binaryCases(bool, bool)));

  it('cast between every pair of dtypes', async () => {
    const from: [DType, (s: number[], k: number) => Tensor][] = [['f32', f32({ min: -1e4, max: 1e4 })], ['i32', i32(-1e6, 1e6)], ['bool', bool]];
    for (const [dt, d] of from) for (const to of ['f32', 'i32', 'bool'] as const) if (dt !== to) await agree(([x]) => b.cast(x, to), [dt], unaryCases(d));
  });

  it('select (three-way broadcasting)', async () => {
    const cases = shapeCases.map(([s, u], k) => [bools(s, k), data(u, any, k), data(broadcastShapes([s, u]) as number[], any, k + 7)]);
    await agree(([c, x, y]) => b.select(c, x, y), ['bool', 'f32', 'f32'], cases);
    const icases = shapeCases.map(([s, u], k) => [bools(u, k), ints(s, k), ints([], k)]);
    await agree(([c, x, y]) => b.select(c, x, y), ['bool', 'i32', 'i32'], icases);
  });
});

// ---------------------------------------------------------------- exact values

/** Evaluates `build` on the f64 and f32 CPU, which must give `want` exactly, and (when there is
 *  one) on WebGPU, which must come within 1e-6 (its transcendental functions are approximate). */
async function exact(build: (args: Node[]) => Node, ins: [Tensor, DType][], want: number[], shape: number[]) {
  const args = ins.map(([x, dt], k) => b.arg('input', `e${k}`, x.shape, dt));
  const feeds = new Map(args.map((a, k) => [a, ins[k][0]]));
  const y = build(args);
  for (const r of [evalCpu([y], feeds, 'f64')[0], evalCpu([y], feeds, 'f32')[0]]) {
    expect(r.shape).toEqual(shape);
    expect([...r.data]).toEqual(want);
  }
  if (gpu) expectClose((await evalWebGPU([y], feeds))[0], { data: Float64Array.from(want), shape }, { rtol: 1e-6, atol: 0 });
}

describe('elementwise values', () => {
  it('broadcast add of a column and a row', () =>
    exact(([x, y]) => b.add(x, y), [[t([1, 2], [2, 1]), 'f32'], [t([10, 20, 30], [3]), 'f32']], [11, 21, 31, 12, 22, 32], [2, 3]));

  it('i32 division truncates toward zero and x / 0 = x', () =>
    exact(([x, y]) => b.div(x, y), [[ti([-7, 7, -7, 7, 5], [5]), 'i32'], [ti([2, 2, -2, -2, 0], [5]), 'i32']], [-3, 3, 3, -3, 5], [5]));

  it('i32 arithmetic wraps', () =>
    exact(([x, y]) => b.mul(x, y), [[ti([65536, 2147483647], [2]), 'i32'], [ti([65536, 2], [2]), 'i32']], [0, -2], [2]));

  it('pow of negative bases follows Math.pow', () =>
    exact(([x, y]) => b.pow(x, y), [[t([-2, -2, -2, -2, 0, 4, -2], [7]), 'f32'], [t([2, 3, 0, 0.5, 2, 0.5, -1], [7]), 'f32']], [4, -8, 1, NaN, 0, 2, -0.5], [7]));

  it('i32 pow: repeated multiplication; negative exponents truncate', () =>
    exact(([x, y]) => b.pow(x, y), [[ti([3, -2, 2, 1, -1, -1, 0], [7]), 'i32'], [ti([4, 3, -1, -5, -3, -2, 0], [7]), 'i32']], [81, -8, 0, 1, -1, 1, 1], [7]));

  it('cast: bool→f32 is 0/1, f32→i32 truncates toward zero, →bool is != 0', async () => {
    await exact(([x]) => b.cast(x, 'i32'), [[t([-2.7, -0.5, 0.5, 2.7], [4]), 'f32']], [-2, 0, 0, 2], [4]);
    await exact(([x]) => b.cast(b.cast(x, 'bool'), 'f32'), [[t([-2.7, 0, 0.5, 2], [4]), 'f32']], [1, 0, 1, 1], [4]);
  });

  it('comparisons, logic and select', async () => {
    const x: [Tensor, DType] = [t([1, 2, 3], [3]), 'f32'];
    const y: [Tensor, DType] = [t([2], [1]), 'f32'];
    await exact(([p, q]) => b.binary('le', p, q), [x, y], [1, 1, 0], [3]);
    await exact(([p, q]) => b.binary('or', b.binary('lt', p, q), b.binary('gt', p, q)), [x, y], [1, 0, 1], [3]);
    await exact(([p, q]) => b.select(b.binary('ne', p, q), p, q), [x, y], [1, 2, 3], [3]);
    await exact(([p, q]) => b.select(b.binary('gt', p, q), p, b.neg(q)), [x, y], [-2, -2, 3], [3]);
  });
});

describe('elementwise shape rules', () => {
  const f = b.arg('input', 'f', [2, 3], 'f32');
  const i = b.arg('input', 'i', [3], 'i32');
  const c = b.arg('input', 'c', [2, 1], 'bool');

  it('broadcasts static and symbolic dims', () => {
    const u = b.arg('input', 'u', ['B', 1, 3], 'f32');
    expect(b.add(u, f).shape).toEqual(['B', 2, 3]);
    expect(b.select(c, f, b.constant(0)).shape).toEqual([2, 3]);
    expect(b.binary('lt', i, i).dtype).toBe('bool');
    expect(b.add(i, i).dtype).toBe('i32');
  });

  it('rejects mixed or wrong dtypes and incompatible shapes', () => {
    expect(() => b.add(f, i)).toThrow(ShapeError);
    expect(() => b.add(f, i)).toThrow('add expects operands of one dtype, f32 or i32, got f32[2, 3], i32[3]');
    expect(() => b.exp(i)).toThrow(ShapeError);
    expect(() => b.add(c, c)).toThrow(ShapeError);
    expect(() => b.binary('and', f, f)).toThrow(ShapeError);
    expect(() => b.select(f, f, f)).toThrow(ShapeError);
    expect(() => b.select(c, f, i)).toThrow(ShapeError);
    expect(() => b.add(f, b.arg('input', 'g', [4], 'f32'))).toThrow(ShapeError);
  });
});
