// conv2d and its two backward forms: gradient checks of each (so of conv2d to any order) over
// random geometries in float64, a double-backward check, hand-derived values, 'same' padding
// against TensorFlow's rule, values against TensorFlow.js, shape errors, and WGSL against the
// float32 CPU kernels.

import fc from 'fast-check';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { ShapeError, type Node } from '../compiler/ir/node.ts';
import { topo } from '../compiler/ir/graph.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { convOutSize, convPadding, type ConvOpts } from '../compiler/ops/conv.ts';
import { numel } from '../runtime/shapes.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { arbTensor, evalCpu, evalWebGPU, expectClose, gpuDevice, gradcheck, input, randomTensor, t } from './support/harness.ts';

const gpu = await gpuDevice();
await tf.setBackend('cpu');


/** A convolution's geometry: image [B, H, W, C], filter [KH, KW, C/G, F], and its attributes. */
interface Geometry {
  x: number[];
  w: number[];
  y: number[];
  opts: Required<ConvOpts>;
}

function geometry(x: number[], [KH, KW]: number[], F: number, o: ConvOpts = {}): Geometry {
  const opts = { strides: [1, 1], padding: [0, 0, 0, 0], dilations: [1, 1], groups: 1, ...o } as Required<ConvOpts>;
  const [sh, sw] = opts.strides, [pt, pb, pl, pr] = opts.padding, [dh, dw] = opts.dilations;
  const y = [x[0], convOutSize(x[1], KH, sh, dh, pt, pb), convOutSize(x[2], KW, sw, dw, pl, pr), F];
  return { x, w: [KH, KW, x[3] / opts.groups, F], y, opts };
}

/** Random small geometries: strides 1–3, paddings 0–2 (asymmetric), dilations 1–2, groups 1–2. */
const arbGeometry: fc.Arbitrary<Geometry> = fc
  .record({
    B: fc.integer({ min: 1, max: 2 }),
    G: fc.integer({ min: 1, max: 2 }),
    cg: fc.integer({ min: 1, max: 2 }),
    fg: fc.integer({ min: 1, max: 3 }),
    k: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    strides: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    padding: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
    dilations: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 })),
    extra: fc.tuple(fc.integer({ min: 0, max: 4 }), fc.integer({ min: 0, max: 4 })),
  })
  .map(({ B, G, cg, fg, k, strides, padding, dilations, extra }) => {
    // the smallest image the dilated filter fits in once padded, plus 0–4
    const fit = (q: number) => Math.max(1, dilations[q] * (k[q] - 1) + 1 - padding[2 * q] - padding[2 * q + 1]) + extra[q];
    return geometry([B, fit(0), fit(1), G * cg], k, G * fg, { strides, padding, dilations, groups: G });
  });

const withTensors = <T extends unknown[]>(f: (g: Geometry) => { [K in keyof T]: fc.Arbitrary<T[K]> }) =>
  arbGeometry.chain((g) => fc.tuple(fc.constant(g), ...f(g), fc.integer({ min: 1, max: 2 ** 30 })));

const RUNS = 100;
const values = (shape: number[]) => arbTensor(shape, { min: -3, max: 3 });
/** Values of magnitude 0.5–3: where every input is ~0 a 6th-degree form's gradient vanishes and
 *  the centered difference's O(ε²) remainder dominates the relative error. */
const away = (shape: number[]) => values(shape).map(({ data, shape: s }) => ({ data: data.map((v) => Math.sign(v || 1) * (0.5 + Math.abs(v) * 2.5 / 3)), shape: s }));

describe('conv2d gradients (float64, centered differences)', () => {
  it('conv2d in the image and the filter', () => {
    fc.assert(
      fc.property(withTensors((g) => [values(g.x), values(g.w)]), ([g, x, w, seed]) => {
        expect(gradcheck(([p, q]) => b.conv2d(p, q, g.opts), [x, w], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  });

  it('conv2d_backprop_input in the output gradient and the filter', () => {
    fc.assert(
      fc.property(withTensors((g) => [values(g.y), values(g.w)]), ([g, dy, w, seed]) => {
        const build = ([p, q]: Node[]) => b.conv2dBackpropInput(p, q, g.opts, g.x.slice(1, 3));
        expect(gradcheck(build, [dy, w], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  });

  it('conv2d_backprop_filter in the image and the output gradient', () => {
    fc.assert(
      fc.property(withTensors((g) => [values(g.x), values(g.y)]), ([g, x, dy, seed]) => {
        const build = ([p, q]: Node[]) => b.conv2dBackpropFilter(p, q, g.opts, g.w.slice(0, 2));
        expect(gradcheck(build, [x, dy], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  });

  it('second order: Hessian-vector products of ½‖conv2d(x, w)‖² through the backward primitives', () => {
    // the output is the gradient (∇ₓ, ∇_w) itself, so gradcheck's random cotangent makes its VJP a
    // Hessian-vector product (a scalar such as ‖∇‖² has a vanishing gradient wherever y = 0)
    fc.assert(
      fc.property(withTensors((g) => [away(g.x), away(g.w)]), ([g, x, w, seed]) => {
        const build = ([p, q]: Node[]) => {
          const y = b.conv2d(p, q, g.opts);
          const [gx, gw] = vjp(y, y, [p, q]);
          return b.concat([b.reshape(b.mul(gx, p), [numel(g.x)]), b.reshape(gw, [numel(g.w)])], 0);
        };
        expect(gradcheck(build, [x, w], { seed }).rel).toBeLessThan(1e-6);
      }),
      { numRuns: RUNS },
    );
  });

  it("conv2d's gradient uses the two backward primitives, and theirs stay in the family", () => {
    const g = geometry([2, 6, 6, 4], [3, 3], 4, { strides: [2, 2], padding: [1, 1, 1, 1], groups: 2 });
    const [x, w] = [input('x', g.x), input('w', g.w)];
    const y = b.conv2d(x, w, g.opts);
    const [gx, gw] = vjp(y, y, [x, w]);
    expect([gx.op, gw.op]).toEqual(['conv2d_backprop_input', 'conv2d_backprop_filter']);
    const second = vjp(b.add(b.sum(b.mul(gx, gx)), b.sum(b.mul(gw, gw))), b.constant(1), [x, w]);
    const ops = new Set(topo(second).map((n) => n.op));
    expect(ops.has('conv2d') && ops.has('conv2d_backprop_input') && ops.has('conv2d_backprop_filter')).toBe(true);
  });
});

/** The images of chunk s of a batch of B split S ways (compiler/ops/conv.ts). */
const chunk = (s: number, B: number, S: number): [number, number] => [Math.floor((s * B) / S), Math.floor(((s + 1) * B) / S)];
/** Images b0 .. b1 of a batch tensor. */
const images = (x: Tensor, b0: number, b1: number): Tensor => {
  const per = numel(x.shape.slice(1));
  return { data: x.data.slice(b0 * per, b1 * per), shape: [b1 - b0, ...x.shape.slice(1)] };
};

describe('conv2d_backprop_filter split over the batch (splits, float64)', () => {
  it('entry s is the filter gradient of chunk s, zeros when empty; the entries sum to dw', () => {
    // random geometries with batches 1–7 against 2–6 splits: uneven chunks, and B < S
    const arb = fc.tuple(arbGeometry, fc.integer({ min: 1, max: 7 }), fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 2 ** 30 }));
    fc.assert(
      fc.property(arb, ([g0, B, S, seed]) => {
        const g = geometry([B, ...g0.x.slice(1)], g0.w.slice(0, 2), g0.w[3], g0.opts);
        const [x, dy] = [input('sx', g.x), input('sdy', g.y)];
        const [xv, dyv] = [randomTensor(g.x, seed), randomTensor(g.y, seed + 1)];
        const k = g.w.slice(0, 2);
        const split = b.conv2dBackpropFilter(x, dy, g.opts, k, S);
        expect(split.shape).toEqual([S, ...g.w]);
        const [got, whole, summed] = evalCpu([split, b.conv2dBackpropFilter(x, dy, g.opts, k), b.sum(split, [0])], new Map([[x, xv], [dy, dyv]]), 'f64');
        expectClose(summed, whole, { rtol: 1e-12, atol: 1e-12 });
        const part = numel(g.w);
        for (let s = 0; s < S; s++) {
          const [b0, b1] = chunk(s, B, S);
          const entry = { data: got.data.slice(s * part, (s + 1) * part), shape: g.w };
          if (b0 === b1) expect([...entry.data].every((v) => v === 0)).toBe(true);
          else {
            const [cx, cdy] = [input('cx', [b1 - b0, ...g.x.slice(1)]), input('cdy', [b1 - b0, ...g.y.slice(1)])];
            const [want] = evalCpu([b.conv2dBackpropFilter(cx, cdy, g.opts, k)], new Map([[cx, images(xv, b0, b1)], [cdy, images(dyv, b0, b1)]]), 'f64');
            expectClose(entry, want, { rtol: 1e-12, atol: 1e-12 });
          }
        }
      }),
      { numRuns: 60 },
    );
  });

  it('splits 1 is the unsplit node; bad splits are shape errors; the split form has no VJP', () => {
    const [x, dy] = [input('px', ['B', 6, 6, 2]), input('pdy', ['B', 4, 4, 3])];
    expect(b.conv2dBackpropFilter(x, dy, {}, [3, 3], 1)).toBe(b.conv2dBackpropFilter(x, dy, {}, [3, 3]));
    expect(b.conv2dBackpropFilter(x, dy, {}, [3, 3], 4).shape).toEqual([4, 3, 3, 2, 3]);
    for (const bad of [0, -2, 1.5]) expect(() => b.conv2dBackpropFilter(x, dy, {}, [3, 3], bad)).toThrow(/splits must be a positive integer/);
    expect(() => vjp(b.sum(b.conv2dBackpropFilter(x, dy, {}, [3, 3], 4)), b.constant(1), [x])).toThrow(/splits > 1 has no VJP/);
  });
});

describe('conv2d values', () => {
  // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], w = [[1, 2], [3, 4]]
  const X = t([1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 3, 3, 1]);
  const K = t([1, 2, 3, 4], [2, 2, 1, 1]);
  const x = input('x3', [1, 3, 3, 1]), w = input('w2', [2, 2, 1, 1]);
  const feeds = new Map([[x, X], [w, K]]);

  async function expectAll(n: Node, shape: number[], want: number[]) {
    const results = [...evalCpu([n], feeds, 'f64'), ...evalCpu([n], feeds, 'f32'), ...(gpu ? await evalWebGPU([n], feeds) : [])];
    for (const r of results) {
      expect(r.shape).toEqual(shape);
      expect([...r.data]).toEqual(want);
    }
  }

  it('a 3×3 image with a 2×2 kernel, by hand', async () => {
    // y[i, j] = x[i, j]·1 + x[i, j+1]·2 + x[i+1, j]·3 + x[i+1, j+1]·4
    await expectAll(b.conv2d(x, w), [1, 2, 2, 1], [1 + 4 + 12 + 20, 2 + 6 + 15 + 24, 4 + 10 + 21 + 32, 5 + 12 + 24 + 36]);
    // padding 1 all round, stride 2: windows start at rows/cols −1 and 1
    await expectAll(b.conv2d(x, w, { strides: [2, 2], padding: [1, 1, 1, 1] }), [1, 2, 2, 1], [1 * 4, 2 * 3 + 3 * 4, 4 * 2 + 7 * 4, 5 * 1 + 6 * 2 + 8 * 3 + 9 * 4]);
    // dilation 2: the kernel's taps land on the corners
    await expectAll(b.conv2d(x, w, { dilations: [2, 2] }), [1, 1, 1, 1], [1 * 1 + 3 * 2 + 7 * 3 + 9 * 4]);
  });

  it('the gradients of the 3×3 example with a cotangent of ones, by hand', async () => {
    const y = b.conv2d(x, w);
    const [gx, gw] = vjp(y, b.broadcast(b.constant(1), y.shape), [x, w]);
    // dx: each pixel collects the weights of the taps that read it
    await expectAll(gx, [1, 3, 3, 1], [1, 1 + 2, 2, 1 + 3, 1 + 2 + 3 + 4, 2 + 4, 3, 3 + 4, 4]);
    // dw: each tap collects the pixels it reads
    await expectAll(gw, [2, 2, 1, 1], [1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9]);
  });

  it('groups convolve each channel group with its own filters', () => {
    // two channels, two groups, one output each: channel 0 × 1, channel 1 × 10 (1×1 kernel)
    const xs = input('xg', [1, 1, 2, 2]), ws = input('wg', [1, 1, 1, 2]);
    const r = evalCpu([b.conv2d(xs, ws, { groups: 2 })], new Map([[xs, t([1, 2, 3, 4], [1, 1, 2, 2])], [ws, t([1, 10], [1, 1, 1, 2])]]), 'f64')[0];
    expect([...r.data]).toEqual([1, 20, 3, 40]);
  });

  it('matches TensorFlow.js (explicit padding, strides, dilations)', async () => {
    const cases: [number[], number[], number, ConvOpts][] = [
      [[2, 7, 6, 3], [3, 3], 4, { strides: [2, 1], padding: [1, 0, 2, 1] }],
      [[1, 9, 8, 2], [3, 2], 5, { dilations: [2, 2], padding: [2, 2, 1, 1] }],
      [[3, 5, 5, 1], [5, 5], 6, { padding: [2, 2, 2, 2] }],
      [[1, 10, 11, 4], [4, 3], 3, { strides: [3, 2], padding: [0, 2, 1, 0] }],
    ];
    for (const [i, [xs, k, F, o]] of cases.entries()) {
      const g = geometry(xs, k, F, o);
      const [xv, wv] = [randomTensor(g.x, 10 + i), randomTensor(g.w, 20 + i)];
      const [p, q] = [input('tx', g.x), input('tw', g.w)];
      const [got] = evalCpu([b.conv2d(p, q, g.opts)], new Map([[p, xv], [q, wv]]), 'f64');
      const [pt, pb, pl, pr] = g.opts.padding;
      const ref = tf.conv2d(
        tf.tensor4d(xv.data as Float32Array, g.x as [number, number, number, number]),
        tf.tensor4d(wv.data as Float32Array, g.w as [number, number, number, number]),
        g.opts.strides as [number, number],
        [[0, 0], [pt, pb], [pl, pr], [0, 0]],
        'NHWC',
        g.opts.dilations as [number, number],
      );
      expectClose(got, { data: await ref.data<'float32'>(), shape: ref.shape }, { rtol: 1e-5, atol: 1e-5 });
    }
  });
});

describe("'same' and 'valid' padding", () => {
  it("follows TensorFlow's rule for odd and even kernels, strides and dilations", () => {
    for (const n of [1, 4, 5, 7, 8, 28])
      for (const k of [1, 2, 3, 4, 5])
        for (const s of [1, 2, 3])
          for (const d of [1, 2]) {
            const info = tf.backend_util.computeConv2DInfo([1, n, n + 1, 1], [k, k + 1, 1, 1], [s, s], [d, d], 'same');
            const p = convPadding('same', n, n + 1, k, k + 1, [s, s], [d, d]);
            expect(p).toEqual([info.padInfo.top, info.padInfo.bottom, info.padInfo.left, info.padInfo.right]);
            // and the output is ⌈n / s⌉
            expect([convOutSize(n, k, s, d, p[0], p[1]), convOutSize(n + 1, k + 1, s, d, p[2], p[3])]).toEqual([Math.ceil(n / s), Math.ceil((n + 1) / s)]);
          }
  });

  it('by hand: odd kernels pad evenly, even kernels put the extra cell after', () => {
    expect(convPadding('same', 28, 28, 5, 5)).toEqual([2, 2, 2, 2]);
    expect(convPadding('same', 28, 28, 4, 2)).toEqual([1, 2, 0, 1]);
    expect(convPadding('same', 28, 28, 3, 3, [2, 2])).toEqual([0, 1, 0, 1]); // out 14: 13·2 + 3 − 28 = 1
    expect(convPadding('same', 7, 7, 3, 3, [2, 2])).toEqual([1, 1, 1, 1]); // out 4: 3·2 + 3 − 7 = 2
    expect(convPadding('same', 5, 5, 3, 3, [1, 1], [2, 2])).toEqual([2, 2, 2, 2]); // dilated kernel spans 5
    expect(convPadding('valid', 28, 28, 5, 5, [2, 2])).toEqual([0, 0, 0, 0]);
  });
});

describe('conv2d shape rules', () => {
  it('keeps a symbolic batch and gives [B, OH, OW, F]', () => {
    const x = input('sx', ['B', 28, 28, 1]), w = input('sw', [5, 5, 1, 6]);
    expect(b.conv2d(x, w).shape).toEqual(['B', 24, 24, 6]);
    expect(b.conv2d(x, w, { padding: convPadding('same', 28, 28, 5, 5) }).shape).toEqual(['B', 28, 28, 6]);
    expect(b.conv2d(x, w, { strides: [2, 3], padding: [1, 0, 0, 2] }).shape).toEqual(['B', 13, 9, 6]); // ⌊(28 + 1 − 5) / 2⌋ + 1, ⌊(28 + 2 − 5) / 3⌋ + 1
    const [gx, gw] = vjp(b.conv2d(x, w), input('sct', ['B', 24, 24, 6]), [x, w]);
    expect([gx.shape, gw.shape]).toEqual([['B', 28, 28, 1], [5, 5, 1, 6]]);
  });

  it('builds the same node whatever defaults are spelled out', () => {
    const x = input('dx', [1, 5, 5, 2]), w = input('dw', [3, 3, 2, 4]);
    expect(b.conv2d(x, w)).toBe(b.conv2d(x, w, { strides: [1, 1], padding: [0, 0, 0, 0], dilations: [1, 1], groups: 1 }));
  });

  it('rejects bad operands and attributes', () => {
    const x = input('ex', [2, 5, 5, 4]);
    const f = (shape: number[]) => input(`ef${shape.join('_')}`, shape);
    expect(() => b.conv2d(x, f([3, 3, 3, 2]))).toThrow(/channels per group/);
    expect(() => b.conv2d(x, f([3, 3, 2, 3]), { groups: 2 })).toThrow(/groups must divide/);
    expect(() => b.conv2d(x, f([3, 3, 4, 2]), { groups: 3 })).toThrow(/groups must divide/);
    expect(() => b.conv2d(x, f([6, 3, 4, 2]))).toThrow(/does not fit/);
    expect(() => b.conv2d(x, f([3, 3, 4, 2]), { dilations: [3, 1] })).toThrow(/does not fit/);
    expect(() => b.conv2d(x, f([3, 3, 4, 2]), { strides: [0, 1] })).toThrow(/strides/);
    expect(() => b.conv2d(x, f([3, 3, 4, 2]), { padding: [1, 1] })).toThrow(/padding/);
    expect(() => b.conv2d(x, f([3, 3, 4, 2]), { groups: 0 })).toThrow(/groups/);
    expect(() => b.conv2d(input('e3', [5, 5, 4]), f([3, 3, 4, 2]))).toThrow(/rank 4/);
    expect(() => b.conv2d(input('eH', ['B', 'H', 5, 4]), f([3, 3, 4, 2]))).toThrow(/static/);
    expect(() => b.conv2d(b.arg('input', 'ei', [2, 5, 5, 4], 'i32'), f([3, 3, 4, 2]))).toThrow(ShapeError);
    expect(() => b.conv2dBackpropInput(input('edy', [2, 3, 3, 2]), f([3, 3, 4, 2]), {}, [6, 5])).toThrow(/output gradient/);
    expect(() => b.conv2dBackpropFilter(x, input('edy2', [2, 3, 2, 2]), {}, [3, 3])).toThrow(/output gradient/);
    expect(() => b.conv2dBackpropFilter(x, input('edy3', [2, 3, 3, 2]), {}, [3])).toThrow(/filterSize/);
  });
});

describe.skipIf(!gpu)('conv2d WGSL matches the float32 CPU kernels', () => {
  // [image, kernel, F, attributes]
  const cases: [number[], number[], number, ConvOpts][] = [
    [[1, 3, 3, 1], [2, 2], 1, {}],
    [[2, 7, 6, 3], [3, 3], 5, { strides: [2, 1], padding: [1, 0, 2, 1] }],
    [[1, 9, 9, 4], [3, 2], 6, { dilations: [2, 2], padding: [2, 2, 1, 1], groups: 2 }],
    [[2, 5, 8, 6], [1, 3], 9, { strides: [1, 3], groups: 3 }],
    [[3, 6, 7, 2], [3, 3], 4, { strides: [3, 3], padding: [0, 2, 2, 0], dilations: [1, 2] }],
    [[2, 10, 10, 8], [3, 3], 8, { padding: [1, 1, 1, 1], groups: 8 }],
    [[2, 2, 3, 3], [1, 2], 5, { padding: [0, 2, 1, 2] }], // windows wholly in the bottom/right padding
    [[1, 4, 5, 2], [3, 3], 3, { strides: [2, 2], padding: [2, 2, 2, 2], dilations: [2, 2] }],
    [[64, 28, 28, 1], [5, 5], 6, {}], // LeNet-5, first layer
    [[64, 12, 12, 6], [5, 5], 16, {}], // LeNet-5, second layer
    // 8×8 register tiles: several tiles with a remainder along the pixels, the input channels
    // (backprop_filter's rows) and the output channels
    [[2, 5, 19, 11], [2, 3], 13, { padding: [1, 0, 1, 1] }],
    [[1, 4, 17, 18], [1, 2], 10, { strides: [1, 2], groups: 2 }],
  ];
  for (const [xs, k, F, o] of cases) {
    it(`[${xs}] ⊛ [${k}]×${F} ${JSON.stringify(o)}: forward, backprop_input, backprop_filter`, async () => {
      const g = geometry(xs, k, F, o);
      const [x, w, dy] = [input('x', g.x), input('w', g.w), input('dy', g.y)];
      const outs = [b.conv2d(x, w, g.opts), b.conv2dBackpropInput(dy, w, g.opts, g.x.slice(1, 3)), b.conv2dBackpropFilter(x, dy, g.opts, g.w.slice(0, 2))];
      const feeds = new Map([[x, randomTensor(g.x, 1)], [w, randomTensor(g.w, 2)], [dy, randomTensor(g.y, 3)]]);
      const want = evalCpu(outs, feeds, 'f32');
      const got = await evalWebGPU(outs, feeds);
      // forward and backprop_filter sum in the CPU's order; backprop_input gathers what the CPU scatters
      got.forEach((r, i) => expectClose(r, want[i], { rtol: 1e-4, atol: 1e-4 }));
    });
  }

  it('random geometries (the gradient checks\' generator)', async () => {
    for (const [k, g] of fc.sample(arbGeometry, { seed: 7, numRuns: 6 }).entries()) {
      const [x, w, dy] = [input(`rx${k}`, g.x), input(`rw${k}`, g.w), input(`rdy${k}`, g.y)];
      const outs = [b.conv2d(x, w, g.opts), b.conv2dBackpropInput(dy, w, g.opts, g.x.slice(1, 3)), b.conv2dBackpropFilter(x, dy, g.opts, g.w.slice(0, 2))];
      const feeds = new Map([[x, randomTensor(g.x, 4 + k)], [w, randomTensor(g.w, 5 + k)], [dy, randomTensor(g.y, 6 + k)]]);
      const want = evalCpu(outs, feeds, 'f32');
      (await evalWebGPU(outs, feeds)).forEach((r, i) => expectClose(r, want[i], { rtol: 1e-5, atol: 1e-5 }));
    }
  });

  // [image, kernel, F, attributes, splits]: uneven chunks, B < S (empty chunks), groups
  const splitCases: [number[], number[], number, ConvOpts, number][] = [
    [[7, 6, 5, 3], [3, 2], 5, { strides: [2, 1], padding: [1, 0, 2, 1] }, 2],
    [[8, 9, 9, 4], [3, 2], 6, { dilations: [2, 2], padding: [2, 2, 1, 1], groups: 2 }, 3],
    [[3, 5, 8, 6], [1, 3], 9, { strides: [1, 3], groups: 3 }, 5],
    [[11, 5, 19, 11], [2, 3], 13, { padding: [1, 0, 1, 1] }, 5],
    [[13, 12, 12, 1], [5, 5], 6, { padding: [2, 2, 2, 2] }, 3], // LeNet-5's first layer's shape
  ];
  for (const [xs, k, F, o, S] of splitCases) {
    it(`backprop_filter of [${xs}] split ${S} ways ${JSON.stringify(o)}`, async () => {
      const g = geometry(xs, k, F, o);
      const [x, dy] = [input('x', g.x), input('dy', g.y)];
      const outs = [b.conv2dBackpropFilter(x, dy, g.opts, k, S)];
      const feeds = new Map([[x, randomTensor(g.x, 1)], [dy, randomTensor(g.y, 2)]]);
      const [got] = await evalWebGPU(outs, feeds);
      expect(got.shape).toEqual([S, ...g.w]);
      expectClose(got, evalCpu(outs, feeds, 'f32')[0], { rtol: 1e-5, atol: 1e-5 });
    });
  }

  it('backprop_filter split over a symbolic batch, bound to sizes above and below the splits', async () => {
    const o: ConvOpts = { strides: [1, 2], padding: [1, 1, 0, 1] };
    const [x, dy] = [input('sx', ['B', 7, 8, 3]), input('sdy', ['B', 7, 4, 5])];
    const outs = [b.conv2dBackpropFilter(x, dy, o, [3, 3], 4), b.conv2dBackpropFilter(x, dy, o, [3, 3])];
    for (const B of [2, 9]) {
      const feeds = new Map([[x, randomTensor([B, 7, 8, 3], B)], [dy, randomTensor([B, 7, 4, 5], B + 1)]]);
      const want = evalCpu(outs, feeds, 'f32');
      (await evalWebGPU(outs, feeds)).forEach((r, i) => expectClose(r, want[i], { rtol: 1e-5, atol: 1e-5 }));
    }
  });

  it('a symbolic batch: conv → relu → max pool → conv, and its gradients', async () => {
    const [x, w1, w2] = [input('bx', ['B', 12, 12, 2]), input('bw1', [3, 3, 2, 4]), input('bw2', [3, 3, 4, 5])];
    const h = b.maxPool2d(b.max(b.conv2d(x, w1, { padding: [1, 1, 1, 1] }), b.constant(0)), { window: [2, 2] });
    const y = b.conv2d(h, w2, { strides: [2, 2], padding: convPadding('same', 6, 6, 3, 3, [2, 2]) });
    expect(y.shape).toEqual(['B', 3, 3, 5]);
    const loss = b.sum(b.mul(y, y));
    const outs = [y, ...vjp(loss, b.constant(1), [x, w1, w2])];
    for (const B of [1, 3]) {
      const feeds = new Map([[x, randomTensor([B, 12, 12, 2], B)], [w1, randomTensor([3, 3, 2, 4], 8)], [w2, randomTensor([3, 3, 4, 5], 9)]]);
      const want = evalCpu(outs, feeds, 'f32');
      (await evalWebGPU(outs, feeds)).forEach((r, i) => expectClose(r, want[i], { rtol: 1e-4, atol: 1e-4 }));
    }
  });
});
