// Leaves (arg, const, iota, size) and rand: shape rules, exact values on every backend, WGSL
// against the CPU, and the random stream's determinism, range and uniformity.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, make, type Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { randomBits } from '../compiler/ops/random.ts';
import { arbShape, evalCpu, evalWebGPU, expectClose, gpuDevice, t } from './support/harness.ts';

const gpu = await gpuDevice();
const ti = (data: number[], shape: number[]): Tensor => ({ data: Int32Array.from(data), shape });

/** Every backend (f64 and f32 CPU, WebGPU when present) gives exactly `want`. */
async function check(outs: Node[], feeds: Map<Node, Tensor>, want: Tensor[]) {
  const runs = [evalCpu(outs, feeds, 'f64'), evalCpu(outs, feeds, 'f32')];
  if (gpu) runs.push(await evalWebGPU(outs, feeds));
  for (const r of runs) r.forEach((got, i) => expectClose(got, want[i], { rtol: 0, atol: 0 }));
}

describe('leaves', () => {
  it('arg and const take shape and dtype from their attributes', () => {
    expect(b.arg('input', 'x', ['B', 3], 'i32')).toMatchObject({ shape: ['B', 3], dtype: 'i32' });
    expect(b.literal([1, 2, 3, 4, 5, 6], [2, 3])).toMatchObject({ shape: [2, 3], dtype: 'f32' });
    expect(b.constant(1, 'bool')).toMatchObject({ shape: [], dtype: 'bool' });
    expect(make('const', [], { value: 2, dtype: 'f32', shape: [2, 2] }).shape).toEqual([2, 2]); // a filled tensor
    expect(() => b.literal([1, 2, 3], [2, 2])).toThrow(ShapeError);
    expect(() => make('const', [], { value: 1, dtype: 'f32', shape: ['B'] })).toThrow(ShapeError);
    expect(() => b.arg('input', 'y', [2], 'f64' as 'f32')).toThrow(ShapeError);
    expect(() => b.arg('input', 'y', [-1], 'f32')).toThrow(ShapeError);
  });

  it('const values reach every backend', () =>
    check([b.add(b.literal([1, 2, 3, 4], [2, 2]), make('const', [], { value: 0.5, dtype: 'f32', shape: [2, 2] }))], new Map(), [t([1.5, 2.5, 3.5, 4.5], [2, 2])]));

  it('iota counts along its axis', () =>
    check(
      [b.iota([2, 3], 0), b.iota([2, 3], 1), b.iota([2, 3], -1), b.iota([4], 0), b.iota([2, 1, 2], 2)],
      new Map(),
      [ti([0, 0, 0, 1, 1, 1], [2, 3]), ti([0, 1, 2, 0, 1, 2], [2, 3]), ti([0, 1, 2, 0, 1, 2], [2, 3]), ti([0, 1, 2, 3], [4]), ti([0, 1, 0, 1], [2, 1, 2])],
    ));

  it('iota shape rules', () => {
    expect(b.iota(['B', 4], 1)).toMatchObject({ shape: ['B', 4], dtype: 'i32' });
    expect(() => b.iota([2, 3], 2)).toThrow(ShapeError);
  });

  it('size multiplies static and symbolic dims (bound at run time)', () => {
    const x = b.arg('input', 'x', ['B', 'T'], 'f32');
    const n = b.size(['B', 3, 'T']);
    expect(n).toMatchObject({ shape: [], dtype: 'f32' });
    // x is an output too, so that the program binds B and T.
    return check([n, b.size([2, 5]), b.size([]), x], new Map([[x, t(new Array(10).fill(0), [5, 2])]]), [t([30], []), t([10], []), t([1], []), t(new Array(10).fill(0), [5, 2])]);
  });

  it.skipIf(!gpu)('iota WGSL matches the CPU on random shapes and axes', async () => {
    const cases = fc.sample(arbShape({ minRank: 1, maxRank: 4, maxDim: 6 }).chain((s) => fc.tuple(fc.constant(s), fc.integer({ min: 0, max: s.length - 1 }))), { seed: 3, numRuns: 8 });
    const outs = [...cases.map(([s, axis]) => b.iota(s, axis)), b.iota([70, 3], 0)];
    const want = evalCpu(outs, new Map(), 'f32');
    (await evalWebGPU(outs, new Map())).forEach((g, i) => expectClose(g, want[i], { rtol: 0, atol: 0 }));
  });
});

describe('rand', () => {
  const key = b.arg('input', 'key', [2], 'i32');
  const keyed = (k: [number, number]) => new Map([[key, ti(k, [2])]]);
  const draw = (shape: number[], salt: number, k: [number, number], float: 'f32' | 'f64' = 'f32') => evalCpu([b.rand(key, shape, salt)], keyed(k), float)[0].data;

  it('the stream is a pure function of (key, salt, index): fixed values, f64 = f32, shape-independent', () => {
    const v = draw([4], 3, [1, 2]);
    expect([...v]).toEqual([0, 1, 2, 3].map((i) => (randomBits(1, 2, 3, i) >>> 8) / 2 ** 24));
    expect([...v]).toEqual([...draw([4], 3, [1, 2], 'f64')]);
    expect([...draw([2, 2], 3, [1, 2])]).toEqual([...v]);
    expect([...draw([6], 3, [1, 2])].slice(0, 4)).toEqual([...v]);
  });

  it('pins the hash: changing it changes every saved random stream', () => {
    expect([0, 1, 2].map((i) => randomBits(7, 0, 0, i))).toMatchInlineSnapshot(`
      [
        2522012915,
        3966276147,
        4045617048,
      ]
    `);
  });

  it('stays in [0, 1), looks uniform and independent', () => {
    const n = 1 << 16;
    const v = draw([n], 0, [42, 0]);
    let sum = 0, lag = 0;
    const bins = new Array(16).fill(0);
    for (let i = 0; i < n; i++) {
      expect(v[i] >= 0 && v[i] < 1).toBe(true);
      sum += v[i];
      if (i) lag += (v[i] - 0.5) * (v[i - 1] - 0.5);
      bins[Math.floor(v[i] * 16)]++;
    }
    expect(Math.abs(sum / n - 0.5)).toBeLessThan(0.01); // sd of the mean: 0.0011
    expect(Math.abs(lag / n / (1 / 12))).toBeLessThan(0.02); // lag-1 correlation, sd 0.004
    const chi2 = bins.reduce((s, c) => s + (c - n / 16) ** 2 / (n / 16), 0);
    expect(chi2).toBeLessThan(37.7); // 15 degrees of freedom, p = 0.001
  });

  it('different salts and keys give uncorrelated streams', () => {
    const n = 1 << 14;
    const base = draw([n], 0, [1, 2]);
    for (const other of [draw([n], 1, [1, 2]), draw([n], 0, [1, 3]), draw([n], 0, [2, 2]), draw([n], 0, [2, 1])]) {
      let c = 0;
      for (let i = 0; i < n; i++) c += (base[i] - 0.5) * (other[i] - 0.5);
      expect(Math.abs(c / n / (1 / 12))).toBeLessThan(0.04); // sd 0.008
    }
  });

  it('shape rules', () => {
    expect(b.rand(key, ['B', 3], 1)).toMatchObject({ shape: ['B', 3], dtype: 'f32' });
    expect(() => b.rand(b.arg('input', 'k3', [3], 'i32'), [2], 0)).toThrow(ShapeError);
    expect(() => b.rand(b.arg('input', 'kf', [2], 'f32'), [2], 0)).toThrow(ShapeError);
  });

  it.skipIf(!gpu)('WGSL gives bit-identical streams', async () => {
    const outs = [b.rand(key, [1000], 0), b.rand(key, [3, 70], 12345), b.rand(key, [], 0xfffffff), b.rand(key, [5], -7)];
    for (const k of [[1, 2], [-1, 2147483647], [0, 0]] as [number, number][]) {
      const want = evalCpu(outs, keyed(k), 'f32');
      (await evalWebGPU(outs, keyed(k))).forEach((g, i) => expectClose(g, want[i], { rtol: 0, atol: 0 }));
    }
  });
});
