// matmul: gradient checks over batch broadcasting and the four transpose combinations (float64),
// WGSL against the float32 CPU kernel, hand-derived values and shape errors.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, type Node } from '../compiler/ir/node.ts';
import { topo } from '../compiler/ir/graph.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { arbBroadcastShapes, arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, randomTensor, t } from './support/harness.ts';

const gpu = await gpuDevice();

/** Operand shapes for a [...batch, m, n] product over k, each read as stored (transposed or not). */
const operands = (sa: number[], sb: number[], [m, k, n]: number[], transA: boolean, transB: boolean) => [
  [...sa, ...(transA ? [k, m] : [m, k])],
  [...sb, ...(transB ? [n, k] : [k, n])],
];

describe('matmul gradient (float64, centered differences)', () => {
  it('random sizes, broadcast batch dims, all four transpose combinations', () => {
    const dims = fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 3, maxLength: 3 });
    const arb = fc
      .tuple(arbBroadcastShapes({ maxRank: 2, maxDim: 3 }), dims, fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 2 ** 30 }))
      .chain(([[sa, sb], mkn, tA, tB, seed]) => {
        const [x, y] = operands(sa, sb, mkn, tA, tB);
        return fc.tuple(arbTensor(x, { min: -3, max: 3 }), arbTensor(y, { min: -3, max: 3 }), fc.constant([tA, tB, seed] as const));
      });
    fc.assert(
      fc.property(arb, ([x, y, [tA, tB, seed]]) => {
        expect(gradcheck(([p, q]) => b.matmul(p, q, tA, tB), [x, y], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: 100 },
    );
  });

  it('is built from matmuls with transpose flags, no transpose nodes', () => {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const [sa, sb] = operands([2], [], [3, 4, 5], tA, tB);
      const [x, y] = [b.arg('input', 'x', sa, 'f32'), b.arg('input', 'y', sb, 'f32')];
      const z = b.matmul(x, y, tA, tB);
      const ops = new Set(topo(vjp(z, b.arg('input', 'ct', z.shape, 'f32'), [x, y])).map((n) => n.op));
      expect(ops.has('matmul') && !ops.has('transpose')).toBe(true);
    }
  });

  it('sums over a symbolic batch: dW = xᵀ ct', () => {
    const x = b.arg('input', 'x', ['B', 3], 'f32');
    const w = b.arg('input', 'w', [3, 2], 'f32');
    const ct = b.arg('input', 'ct', ['B', 2], 'f32');
    const [dw] = vjp(b.matmul(x, w), ct, [w]);
    expect(dw.shape).toEqual([3, 2]);
    const feeds = new Map([
      [x, t([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [4, 3])],
      [w, t([0, 0, 0, 0, 0, 0], [3, 2])],
      [ct, t([1, 0, 0, 1, 1, 1, 2, -1], [4, 2])],
    ]);
    // xᵀ ct by hand: column j of ct picks and weights the rows of x
    expect([...evalCpu([dw], feeds, 'f64')[0].data]).toEqual([1 + 7 + 20, 4 + 7 - 10, 2 + 8 + 22, 5 + 8 - 11, 3 + 9 + 24, 6 + 9 - 12]);
  });
});

describe('matmul values', () => {
  it('a 2x3 @ 3x2 product, read plain and transposed', async () => {
    const want = [58, 64, 139, 154]; // [[1,2,3],[4,5,6]] @ [[7,8],[9,10],[11,12]]
    const a = t([1, 2, 3, 4, 5, 6], [2, 3]), aT = t([1, 4, 2, 5, 3, 6], [3, 2]);
    const c = t([7, 8, 9, 10, 11, 12], [3, 2]), cT = t([7, 9, 11, 8, 10, 12], [2, 3]);
    for (const [x, y, tA, tB] of [[a, c, false, false], [aT, c, true, false], [a, cT, false, true], [aT, cT, true, true]] as const) {
      const [p, q] = [b.arg('input', 'p', x.shape, 'f32'), b.arg('input', 'q', y.shape, 'f32')];
      const z = b.matmul(p, q, tA, tB);
      const feeds = new Map([[p, x], [q, y]]);
      const results = [...evalCpu([z], feeds, 'f64'), ...evalCpu([z], feeds, 'f32'), ...(gpu ? await evalWebGPU([z], feeds) : [])];
      for (const r of results) {
        expect(r.shape).toEqual([2, 2]);
        expect([...r.data]).toEqual(want);
      }
    }
  });

  it('broadcasts batch dims', () => {
    const [x, y] = [b.arg('input', 'x', [2, 1, 1, 2], 'f32'), b.arg('input', 'y', [3, 2, 1], 'f32')];
    const z = b.matmul(x, y);
    expect(z.shape).toEqual([2, 3, 1, 1]);
    const r = evalCpu([z], new Map([[x, t([1, 2, 3, 4], [2, 1, 1, 2])], [y, t([1, 0, 0, 1, 1, 1], [3, 2, 1])]]), 'f64')[0];
    expect([...r.data]).toEqual([1, 2, 3, 3, 4, 7]);
  });
});

describe('matmul shape rule', () => {
  const f = (s: (number | string)[], dtype: 'f32' | 'i32' = 'f32') => b.arg('input', `s${s.join('_')}${dtype}`, s, dtype);
  it('gives [...batch, M, N]', () => {
    expect(b.matmul(f(['B', 784]), f([784, 256])).shape).toEqual(['B', 256]);
    expect(b.matmul(f([5, 1, 3, 4]), f([6, 2, 4]), false, true).shape).toEqual([5, 6, 3, 2]);
    expect(b.matmul(f([4, 3]), f([2, 4]), true, true).shape).toEqual([3, 2]);
  });
  it('rejects bad operands', () => {
    expect(() => b.matmul(f([2, 3]), f([4, 2]))).toThrow(ShapeError);
    expect(() => b.matmul(f([2, 3]), f([2, 3]), false, true)).not.toThrow();
    expect(() => b.matmul(f([3]), f([3, 2]))).toThrow(/rank/);
    expect(() => b.matmul(f([2, 3], 'i32'), f([3, 2]))).toThrow(/f32/);
    expect(() => b.matmul(f([2, 2, 3]), f([3, 3, 2]))).toThrow(/broadcast/);
    expect(() => b.matmul(f(['B', 3]), f(['C', 2]), true)).toThrow(/inner/);
  });
});

describe.skipIf(!gpu)('matmul WGSL matches the float32 CPU kernel', () => {
  // [batch of a, batch of b, [m, k, n], transA, transB]
  const cases: [number[], number[], number[], boolean, boolean][] = [
    [[], [], [2, 3, 2], false, false],
    [[], [], [1, 1, 1], false, false],
    [[], [], [5, 7, 3], true, false],
    [[], [], [13, 17, 9], false, true],
    [[], [], [6, 5, 11], true, true],
    [[2, 1], [3], [5, 6, 7], false, false],
    [[4], [], [9, 2, 5], true, true],
    [[], [3], [4, 8, 1], false, true],
    [[2, 3], [2, 1], [3, 4, 6], true, false],
    [[], [], [64, 784, 256], false, false],
  ];
  for (const [sa, sb, mkn, tA, tB] of cases) {
    it(`[${sa}] @ [${sb}], m,k,n = ${mkn}${tA ? ', transA' : ''}${tB ? ', transB' : ''}`, async () => {
      const [xs, ys] = operands(sa, sb, mkn, tA, tB);
      const [x, y] = [b.arg('input', 'x', xs, 'f32'), b.arg('input', 'y', ys, 'f32')];
      const z: Node = b.matmul(x, y, tA, tB);
      const feeds = new Map([[x, randomTensor(xs, 1)], [y, randomTensor(ys, 2)]]);
      const [want] = evalCpu([z], feeds, 'f32');
      const [got] = await evalWebGPU([z], feeds);
      // the same summation order over k; only fused multiply-adds may round differently
      expectClose(got, want, { rtol: 1e-5, atol: 1e-5 });
    });
  }
});
