// The .dlm standard library, entry by entry: property gradient checks (float64, centered
// differences, random shapes and hyperparameters; layers with respect to the input AND every
// parameter) of everything differentiable, then values derived by hand from each definition —
// activations, losses, layers, regularizers and constraints, initializers and schedules.
//
// Entries with kinks (relu, abs, max, hinge, ...) are checked on inputs kept away from them, so the
// centered difference never straddles one.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import type { Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { convOutSize } from '../compiler/ops/conv.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { numel } from '../runtime/shapes.ts';
import { arbShape, arbTensor, evalCpu, gradcheck, rng } from './support/harness.ts';
import { compileModel, float, libraryFn, libraryLayer, libraryMethod, modelGradcheck, scheduleLr, type Hyper, type InputSpec } from './support/dlm.ts';

/** LG_SCALE=20 multiplies the runs, for a soak test of the properties. */
const SCALE = Number(process.env.LG_SCALE ?? 1);
const RUNS = 200 * SCALE; // cheap entries
const HEAVY = 100 * SCALE; // layers with several parameters, convolutions, pooling
const TOL = 1e-6; // the harness's rule (gradError): |a - b| less rounding, / max(Σ|vjp_j t_j|, |b|, 1e-8), ε = 1e-6 · max(1, max|x|)

/** Seeds of gradcheck whose first 16 draws (the cotangent, then the directions) are at least 0.05
 *  from 0: with one or two elements a tiny ⟨ct, t⟩ would leave the derivative under the roundoff of
 *  f(x ± h), which does not shrink with it. Larger cases average over many draws. */
const seed = fc.integer({ min: 1, max: 2 ** 30 }).filter((s) => {
  const r = rng(s);
  for (let i = 0; i < 16; i++) if (Math.abs(2 * r() - 1) < 0.05) return false;
  return true;
});
const f64 = (data: ArrayLike<number>, shape: number[]): Tensor => ({ data: Float64Array.from(data), shape });
const i32 = (data: number[], shape: number[]): Tensor => ({ data: Int32Array.from(data), shape });

// ---------------------------------------------------------------- value domains

/** f32 values in [min, max], then moved by `nudge` (away from kinks and ties). */
interface Dom {
  min: number;
  max: number;
  nudge?: (v: number) => number;
}
const any: Dom = { min: -10, max: 10 };
const small: Dom = { min: -3, max: 3 };
const awayFromZero: Dom = { min: -5, max: 5, nudge: (v) => (v < 0 ? v - 0.05 : v + 0.05) };
/** Distinct multiples of 1/4 in random order: no ties at all (max pooling). */
const distinct = (shape: number[]): fc.Arbitrary<Tensor> =>
  fc.uniqueArray(fc.integer({ min: -400, max: 400 }), { minLength: numel(shape), maxLength: numel(shape) }).map((v) => f64(v.map((k) => k / 4), shape));

function vals(shape: number[], d: Dom = any): fc.Arbitrary<Tensor> {
  return arbTensor(shape, { min: d.min, max: d.max }).map((t) => (d.nudge ? f64(Array.from(t.data, d.nudge), t.shape) : t));
}
const ints = (shape: number[], lo: number, hi: number) => arbTensor(shape, { min: lo, max: hi, dtype: 'i32' });
const hyper = (lo: number, hi: number) => fc.double({ min: lo, max: hi, noNaN: true }).map((v) => float(v));

/** A shape and an axis in it (negative half the time). */
const shapeAxis = arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) => fc.tuple(fc.constant(s), fc.integer({ min: -s.length, max: s.length - 1 })));

/** Asserts the property over `arb`: gradcheck of `build(case)` at `inputs(case)` within TOL. */
function property<T>(arb: fc.Arbitrary<T>, check: (c: T, s: number) => { build: (args: Node[]) => Node; inputs: Tensor[] }, numRuns = RUNS) {
  fc.assert(
    fc.property(arb, seed, (c, s) => {
      const { build, inputs } = check(c, s);
      const r = gradcheck(build, inputs, { seed: s });
      expect(r.rel, `a=${r.a} b=${r.b}`).toBeLessThan(TOL);
    }),
    { numRuns },
  );
}

/** A layer's gradcheck case: its inputs, then random parameter values. */
function layerCase(name: string, inputs: Tensor[], named: Record<string, Hyper>, s: number, opts: { withState?: boolean; training?: boolean; paramDom?: Dom } = {}) {
  const specs: InputSpec[] = inputs.map((t) => ({ shape: t.shape, dtype: t.data instanceof Int32Array ? 'i32' : 'f32' }));
  const layer = libraryLayer(name, specs, named, opts);
  const next = rng(s ^ 0x5eed);
  const d = opts.paramDom ?? { min: -2, max: 2 };
  const random = (shape: number[]) => f64(Array.from({ length: numel(shape) }, () => d.min + (d.max - d.min) * next()), shape);
  const params = layer.params.map((p) => random(p.shape));
  // state: a running mean anywhere, a running variance that is positive
  const state = opts.withState ? layer.state.map((st) => (st.name.endsWith('var') ? f64(random(st.shape).data.map((v) => 0.5 + Math.abs(v)), st.shape) : random(st.shape))) : [];
  return { build: layer.build, inputs: [...inputs, ...params, ...state] };
}

// ================================================================ gradient checks

describe('activations: gradients (float64, centered differences)', () => {
  const elementwise = (name: string, dom: Dom, named: fc.Arbitrary<Record<string, Hyper>> = fc.constant({})) =>
    it(name, () =>
      property(arbShape({ maxRank: 3 }).chain((s) => fc.tuple(vals(s, dom), named)), ([x, h]) => ({ build: libraryFn(name, h), inputs: [x] })),
    );
  elementwise('identity', any);
  elementwise('relu', awayFromZero);
  elementwise('leaky_relu', awayFromZero, hyper(0.01, 0.5).map((alpha) => ({ alpha })));
  elementwise('elu', awayFromZero, hyper(0.1, 2).map((alpha) => ({ alpha })));
  elementwise('sigmoid', { min: -5, max: 5 }); // like exp: far out 1 + e^-|x| rounds away the derivative
  elementwise('tanh', small);
  // log(1 + e^x) rounds 1 + e^x: far left its difference quotient is roundoff (as for the old form)
  elementwise('softplus', { min: -3, max: 10 });
  elementwise('swish', any);

  for (const name of ['softmax', 'log_softmax', 'logsumexp']) {
    it(`${name} over a random axis`, () =>
      // small values: outputs near 1 with derivatives near e^-20 leave the difference in roundoff
      property(shapeAxis.chain(([s, axis]) => fc.tuple(vals(s, small), fc.constant(axis))), ([x, axis]) => ({ build: libraryFn(name, { axis }), inputs: [x] })));
  }

  it('prelu (input and slope)', () =>
    property(arbShape({ minRank: 1, maxRank: 3, maxDim: 4 }).chain((s) => vals(s, awayFromZero)), (x, s) => layerCase('prelu', [x], {}, s)));
});

describe('losses: gradients', () => {
  const pair = (dom: Dom) => arbShape({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(vals(s, dom), vals(s, dom)));

  it('mse', () => property(pair(any), ([p, t]) => ({ build: libraryFn('mse'), inputs: [p, t] })));

  it('mae (residuals away from 0)', () =>
    property(arbShape({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(vals(s), vals(s, awayFromZero))), ([t, r]) => ({
      build: libraryFn('mae'),
      inputs: [f64(Array.from(t.data, (v, i) => v + r.data[i]), t.shape), t],
    })));

  it('huber (|r| away from delta)', () =>
    property(
      arbShape({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(vals(s, small), vals(s, small), fc.double({ min: 0.2, max: 3, noNaN: true }))),
      ([t, r, delta]) => {
        const away = Array.from(r.data, (v) => (Math.abs(Math.abs(v) - delta) < 0.05 ? v + 0.1 * Math.sign(v || 1) : v));
        return { build: libraryFn('huber', { delta: float(delta) }), inputs: [f64(Array.from(t.data, (v, i) => v + away[i]), t.shape), t] };
      },
    ));

  // Scores on a grid of 1/4 and a margin of k/4 + 1/8: s_j - s_y + margin is never within 1/8 of 0.
  it('hinge (away from margin ties)', () =>
    property(
      fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 5 }), fc.integer({ min: 0, max: 8 })).chain(([B, C, m]) =>
        fc.tuple(ints([B, C], -12, 12), ints([B], 0, C - 1), fc.constant(m / 4 + 1 / 8)),
      ),
      ([s, y, margin]) => ({ build: libraryFn('hinge', { margin: float(margin) }), inputs: [f64(Array.from(s.data, (v) => v / 4), s.shape), y] }),
    ));

  const logitsLabels = fc
    .tuple(arbShape({ minRank: 1, maxRank: 2, maxDim: 4 }), fc.integer({ min: 1, max: 5 }))
    .chain(([lead, C]) => fc.tuple(vals([...lead, C], small), ints(lead, 0, C - 1), fc.constant(C))); // small: see softmax

  it('softmax_cross_entropy with integer labels', () => property(logitsLabels, ([z, y]) => ({ build: libraryFn('softmax_cross_entropy'), inputs: [z, y] })));

  it('softmax_cross_entropy with one-hot labels (in the logits and the labels)', () =>
    property(logitsLabels, ([z, y, C]) => ({
      build: libraryFn('softmax_cross_entropy'),
      inputs: [z, f64(Array.from(y.data).flatMap((k) => Array.from({ length: C }, (_, j) => (j === k ? 1 : 0))), z.shape)],
    })));

  it('sigmoid_binary_cross_entropy (in the logits and the targets)', () =>
    property(arbShape({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(vals(s), vals(s, { min: 0, max: 1 }))), ([z, t]) => ({
      build: libraryFn('sigmoid_binary_cross_entropy'),
      inputs: [z, t],
    })));
});

describe('layers: gradients in the input and every parameter', () => {
  it('dense', () =>
    property(
      fc.tuple(arbShape({ minRank: 1, maxRank: 2, maxDim: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })).chain(([lead, n, units]) =>
        fc.tuple(vals([...lead, n], small), fc.constant(units)),
      ),
      ([x, units], s) => layerCase('dense', [x], { units }, s),
    ));

  /** conv2d with random kernel, strides, padding (a mode, one number, [h, w] or four), dilation and groups. */
  const arbConv = fc
    .record({
      B: fc.integer({ min: 1, max: 2 }),
      H: fc.integer({ min: 1, max: 6 }),
      W: fc.integer({ min: 1, max: 6 }),
      groups: fc.integer({ min: 1, max: 2 }),
      cg: fc.integer({ min: 1, max: 2 }),
      fg: fc.integer({ min: 1, max: 2 }),
      kernel: fc.integer({ min: 1, max: 3 }),
      strides: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }))),
      dilation: fc.oneof(fc.integer({ min: 1, max: 2 }), fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 }))),
      padding: fc.oneof(
        fc.constantFrom('valid', 'same'),
        fc.integer({ min: 0, max: 2 }),
        fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
        fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
      ),
    })
    .filter(({ H, W, kernel, strides, dilation, padding }) => {
      const two = (v: number | number[]) => (typeof v === 'number' ? [v, v] : v);
      const [sh, sw] = two(strides), [dh, dw] = two(dilation);
      if (typeof padding === 'string') return padding === 'same' || (convOutSize(H, kernel, sh, dh, 0, 0) >= 1 && convOutSize(W, kernel, sw, dw, 0, 0) >= 1);
      const p = typeof padding === 'number' ? [padding, padding, padding, padding] : padding.length === 2 ? [padding[0], padding[0], padding[1], padding[1]] : padding;
      return convOutSize(H, kernel, sh, dh, p[0], p[1]) >= 1 && convOutSize(W, kernel, sw, dw, p[2], p[3]) >= 1;
    });

  it('conv2d (random kernel, strides, padding, dilation, groups)', () =>
    property(
      arbConv.chain((g) => fc.tuple(fc.constant(g), vals([g.B, g.H, g.W, g.cg * g.groups], small))),
      ([g, x], s) => layerCase('conv2d', [x], { filters: g.fg * g.groups, kernel: g.kernel, strides: g.strides, padding: g.padding, dilation: g.dilation, groups: g.groups }, s),
      HEAVY,
    ));

  it('batch_norm in training mode (batch statistics)', () =>
    property(
      fc.tuple(arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }), fc.integer({ min: 1, max: 4 })).chain(([lead, c]) => vals([2, ...lead.slice(1), c], small)),
      (x, s) => layerCase('batch_norm', [x], {}, s),
      HEAVY,
    ));

  it('batch_norm in inference mode (in the running statistics too)', () =>
    property(
      fc.tuple(arbShape({ minRank: 1, maxRank: 3, maxDim: 3 }), fc.integer({ min: 1, max: 4 })).chain(([lead, c]) => vals([...lead, c], small)),
      (x, s) => layerCase('batch_norm', [x], {}, s, { training: false, withState: true }),
      HEAVY,
    ));

  it('layer_norm', () =>
    property(
      fc.tuple(arbShape({ minRank: 0, maxRank: 2, maxDim: 3 }), fc.integer({ min: 2, max: 5 })).chain(([lead, c]) => vals([...lead, c], small)),
      (x, s) => layerCase('layer_norm', [x], {}, s),
      HEAVY,
    ));

  it('embedding (in its table)', () =>
    property(
      fc.tuple(arbShape({ minRank: 1, maxRank: 2, maxDim: 4 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 })).chain(([s, vocab, dim]) =>
        fc.tuple(ints(s, 0, vocab - 1), fc.constant(vocab), fc.constant(dim)),
      ),
      ([ids, vocab, dim], s) => layerCase('embedding', [ids], { vocab, dim }, s),
    ));

  it('residual', () =>
    property(arbShape({ maxRank: 3 }).chain((s) => fc.tuple(vals(s), vals(s))), ([x, fx]) => ({ build: libraryFn('residual'), inputs: [x, fx] })));

  it('dropout in training mode (a fixed mask)', () =>
    property(arbShape({ minRank: 1, maxRank: 3 }).chain((s) => fc.tuple(vals(s), fc.double({ min: 0, max: 0.9, noNaN: true }))), ([x, rate]) => ({
      build: libraryFn('dropout', { rate: float(rate) }),
      inputs: [x],
    })));

  it('dense_dropconnect in training mode (a fixed mask on the weights)', () =>
    property(
      fc.tuple(arbShape({ minRank: 1, maxRank: 2, maxDim: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.double({ min: 0, max: 0.9, noNaN: true })).chain(
        ([lead, n, units, rate]) => fc.tuple(vals([...lead, n], small), fc.constant(units), fc.constant(rate)),
      ),
      ([x, units, rate], s) => layerCase('dense_dropconnect', [x], { units, rate: float(rate) }, s),
    ));

  const image = fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }));
  it('global_avg_pool', () => property(image.chain((s) => vals(s)), (x) => ({ build: libraryFn('global_avg_pool'), inputs: [x] })));
  it('global_max_pool (no ties)', () => property(image.chain((s) => distinct(s)), (x) => ({ build: libraryFn('global_max_pool'), inputs: [x] })));

  // The pooling builtins through the language's argument forms: window, strides, padding.
  const arbPool = fc
    .record({
      shape: image.map(([B, H, W, C]) => [B, H + 1, W + 1, C]),
      window: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 }))),
      strides: fc.option(fc.oneof(fc.integer({ min: 1, max: 3 }), fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })))),
      padding: fc.oneof(fc.constantFrom('valid', 'same'), fc.integer({ min: 0, max: 2 })),
    })
    .filter(({ shape, window, padding }) => {
      const [kh, kw] = typeof window === 'number' ? [window, window] : window;
      if (typeof padding === 'number') return padding < Math.min(kh, kw) && shape[1] + 2 * padding >= kh && shape[2] + 2 * padding >= kw;
      return padding === 'same' || (shape[1] >= kh && shape[2] >= kw);
    })
    .map(({ strides, ...r }) => ({ ...r, named: { window: r.window, padding: r.padding, ...(strides === null ? {} : { strides }) } as Record<string, Hyper> }));
  it('max_pool2d (no ties)', () => property(arbPool.chain((g) => fc.tuple(fc.constant(g), distinct(g.shape))), ([g, x]) => ({ build: libraryFn('max_pool2d', g.named), inputs: [x] }), HEAVY));
  it('avg_pool2d', () => property(arbPool.chain((g) => fc.tuple(fc.constant(g), vals(g.shape))), ([g, x]) => ({ build: libraryFn('avg_pool2d', g.named), inputs: [x] }), HEAVY));
});

describe('regularizers, constraints and norm: gradients', () => {
  const weights = (d: Dom) => arbShape({ minRank: 1, maxRank: 3 }).chain((s) => vals(s, d));
  it('l1 penalty (away from 0)', () =>
    property(fc.tuple(weights(awayFromZero), hyper(1e-4, 1)), ([w, lambda]) => ({ build: libraryMethod('regularizer', 'l1', { lambda }), inputs: [w] })));
  it('l2 penalty', () => property(fc.tuple(weights(any), hyper(1e-4, 1)), ([w, lambda]) => ({ build: libraryMethod('regularizer', 'l2', { lambda }), inputs: [w] })));
  it('elastic_net penalty (away from 0)', () =>
    property(fc.tuple(weights(awayFromZero), hyper(0, 1), hyper(0, 1)), ([w, l1, l2]) => ({ build: libraryMethod('regularizer', 'elastic_net', { l1, l2 }), inputs: [w] })));

  it('norm over a random axis (away from a zero norm)', () =>
    property(shapeAxis.chain(([s, axis]) => fc.tuple(vals(s, awayFromZero), fc.constant(axis))), ([x, axis]) => ({ build: libraryFn('norm', { axis }), inputs: [x] })));

  // c between two column norms, below all or above all, at least 5% from each.
  it('max_norm projection (column norms away from c)', () =>
    property(
      // two rows at least: a single row projects to ±c, flat but for the 1e-7, its gradient noise
      fc.tuple(fc.tuple(fc.integer({ min: 2, max: 4 }), arbShape({ maxRank: 2, maxDim: 3 })).chain(([r, rest]) => vals([r, ...rest], awayFromZero)), fc.nat()),
      ([w, pick]) => {
        const cols = numel(w.shape.slice(1));
        const norms = Array.from({ length: cols }, (_, j) => Math.sqrt(Array.from({ length: w.shape[0] }, (_, i) => w.data[i * cols + j] ** 2).reduce((a, v) => a + v, 0))).sort((a, c) => a - c);
        const cuts = [norms[0] / 2, ...norms.slice(1).map((v, i) => (v + norms[i]) / 2), norms[cols - 1] * 2];
        const c = cuts[pick % cuts.length];
        const safe = norms.every((v) => Math.abs(v - c) > 0.05 * c) ? c : norms[0] / 2;
        return { build: libraryMethod('constraint', 'max_norm', { c: float(safe) }), inputs: [w] };
      },
    ));

  it('non_neg projection (away from 0)', () => property(weights(awayFromZero), (w) => ({ build: libraryMethod('constraint', 'non_neg'), inputs: [w] })));

  it('dropconnect (a fixed mask)', () =>
    property(fc.tuple(weights(any), fc.double({ min: 0, max: 0.9, noNaN: true })), ([w, rate]) => ({ build: libraryFn('dropconnect', { rate: float(rate) }), inputs: [w] })));
});

describe('whole models: the gradient program against centered differences of the loss', () => {
  // Everything at once, through compile(..., { gradient: true }): the regularizers add to the loss;
  // dropout and DropConnect draw their masks from the fed key, the same in every evaluation.
  const manifest = compileModel(
    `
model everything {
  input x: f32[B, 4, 4, 2]
  input ids: i32[B]
  input y: i32[B]
  c = x |> conv2d(3, kernel: 2, padding: "same") |> batch_norm |> prelu |> max_pool2d(2, padding: "same")
  h = concat([flatten(c), embedding(ids, 5, 3)], axis: -1) |> dense(6) |> layer_norm |> swish
  z = residual(h, dense(h, 6) |> tanh) |> dropout(0.2) |> dense_dropconnect(3, rate: 0.3)
  loss = softmax_cross_entropy(z, y) + 0.1 * sigmoid_binary_cross_entropy(z, 0.5) + huber(z, 0.25)
  train {
    regularize l2(1e-2) on weights
    regularize l1(1e-3) on ["z.*"]
    regularize elastic_net(l1: 1e-3, l2: 1e-2) on "h.*"
  }
}`,
    { gradient: true },
  );

  it('agrees to 1e-6 at random points', async () => {
    const model = await Model.create(manifest, cpuKernels, { backend: 'cpu', seed: 3 });
    const start = await model.getParams();
    model.dispose();
    for (let s = 1; s <= 6; s++) {
      const next = rng(s);
      const B = 3;
      const params = Object.fromEntries(Object.entries(start).map(([k, t]) => [k, f64(Array.from(t.data, (v) => v + 0.3 * (next() - 0.5)), t.shape)]));
      const feeds = {
        'input:x': f64(Array.from({ length: B * 32 }, () => Math.round(8 * (next() - 0.5) * 64) / 64 + next() * 1e-3), [B, 4, 4, 2]),
        'input:ids': i32(Array.from({ length: B }, () => Math.floor(next() * 5)), [B]),
        'input:y': i32(Array.from({ length: B }, () => Math.floor(next() * 3)), [B]),
      };
      const r = modelGradcheck(manifest, feeds, params, { seed: s });
      expect(r.rel, `seed ${s}: a=${r.a} b=${r.b}`).toBeLessThan(TOL);
    }
  });
});

// ================================================================ values derived by hand

const XS = [-3, -1, -0.5, 0, 0.25, 1, 2, 40];
/** A library fn of one tensor, evaluated in float64 on `data`. */
function apply(name: string, data: number[], named: Record<string, Hyper> = {}, shape = [data.length]): number[] {
  const x = b.arg('input', `hand_${shape.join('x')}`, shape, 'f32');
  return Array.from(evalCpu([libraryFn(name, named)([x])], new Map([[x, f64(data, shape)]]), 'f64')[0].data);
}
/** Any builder at tensors, in float64. */
function run(build: (args: Node[]) => Node, inputs: Tensor[]): Tensor {
  const args = inputs.map((t, i) => b.arg('input', `hand${i}_${t.shape.join('x')}`, t.shape, t.data instanceof Int32Array ? 'i32' : 'f32'));
  return evalCpu([build(args)], new Map(args.map((a, i) => [a, inputs[i]])), 'f64')[0];
}
/** d/dx of sum(f(x)) at each point. */
function derivative(name: string, data: number[], named: Record<string, Hyper> = {}): number[] {
  const x = b.arg('input', `grad_x${data.length}`, [data.length], 'f32');
  const [g] = vjp(b.sum(libraryFn(name, named)([x])), b.constant(1), [x]);
  return Array.from(evalCpu([g], new Map([[x, f64(data, [data.length])]]), 'f64')[0].data);
}
const close = (got: ArrayLike<number>, want: readonly number[], digits = 12) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(got[i], `element ${i}`).toBeCloseTo(w, digits));
};
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

describe('activations: values by hand', () => {
  it('relu, leaky_relu, elu, identity', () => {
    close(apply('relu', XS), XS.map((v) => Math.max(v, 0)));
    close(apply('identity', XS), XS);
    close(apply('leaky_relu', XS), XS.map((v) => (v > 0 ? v : 0.01 * v)));
    close(apply('leaky_relu', XS, { alpha: float(0.2) }), XS.map((v) => (v > 0 ? v : 0.2 * v)));
    close(apply('elu', [-1]), [Math.exp(-1) - 1]);
    close(apply('elu', XS), XS.map((v) => (v > 0 ? v : Math.exp(v) - 1)));
    close(apply('elu', XS, { alpha: float(0.5) }), XS.map((v) => (v > 0 ? v : 0.5 * (Math.exp(v) - 1))));
  });

  it('sigmoid, tanh, softplus, swish — and they stay finite far out', () => {
    const far = [...XS, -1000, 1000, -88, 89];
    close(apply('sigmoid', far), far.map(sigmoid));
    close(apply('tanh', far), far.map(Math.tanh));
    close(apply('softplus', far), far.map((v) => Math.max(v, 0) + Math.log1p(Math.exp(-Math.abs(v)))));
    close(apply('softplus', [0, 1]), [Math.log(2), Math.log(1 + Math.E)]);
    close(apply('swish', far), far.map((v) => v * sigmoid(v)));
    for (const name of ['sigmoid', 'tanh', 'softplus', 'swish']) expect(derivative(name, [-1000, 1000]).every(Number.isFinite), name).toBe(true);
  });

  // Regression: -|x| was written abs(x), whose derivative at 0 is 0, so sigmoid'(0) came out 0
  // (and tanh'(0) = 0, softplus'(0) = 1, and the binary cross-entropy's gradient at logit 0 was 1 - y).
  it('derivatives at 0 and nearby: sigmoid 1/4, tanh 1, softplus 1/2, swish 1/2', () => {
    const at = [0, 1e-9, -1e-9, 0.5, -2];
    close(derivative('sigmoid', at), at.map((v) => sigmoid(v) * (1 - sigmoid(v))));
    close(derivative('tanh', at), at.map((v) => 1 - Math.tanh(v) ** 2));
    close(derivative('softplus', at), at.map(sigmoid));
    close(derivative('swish', at), at.map((v) => sigmoid(v) + v * sigmoid(v) * (1 - sigmoid(v))));
    close(derivative('elu', [-1, 2]), [Math.exp(-1), 1]);
    close(derivative('leaky_relu', [-1, 2]), [0.01, 1]);
    // at the kinks (docs/activations.md): relu 1, leaky_relu alpha, elu alpha
    close(derivative('relu', [0, -1]), [1, 0]);
    close(derivative('leaky_relu', [0], { alpha: float(0.2) }), [0.2]);
    close(derivative('elu', [0], { alpha: float(0.5) }), [0.5]);
  });

  it('softmax, log_softmax and logsumexp over each axis, stable at large values', () => {
    const m = [1, 2, 3, 1000, 1000, 999]; // [2, 3]
    const rows = [m.slice(0, 3), m.slice(3)];
    const lse = (r: number[]) => Math.max(...r) + Math.log(r.reduce((s, v) => s + Math.exp(v - Math.max(...r)), 0));
    close(apply('logsumexp', m, {}, [2, 3]), rows.map(lse));
    close(apply('logsumexp', [1000, 1000], {}, [2]), [1000 + Math.log(2)]);
    close(apply('softmax', m, {}, [2, 3]), rows.flatMap((r) => r.map((v) => Math.exp(v - lse(r)))));
    close(apply('log_softmax', m, {}, [2, 3]), rows.flatMap((r) => r.map((v) => v - lse(r))));
    // axis 0: columns
    const cols = [0, 1, 2].map((j) => [m[j], m[3 + j]]);
    close(apply('logsumexp', m, { axis: 0 }, [2, 3]), cols.map(lse));
    close(apply('softmax', m, { axis: 0 }, [2, 3]), [0, 1].flatMap((i) => cols.map((c) => Math.exp(c[i] - lse(c)))));
    close(apply('log_softmax', m, { axis: -2 }, [2, 3]), [0, 1].flatMap((i) => cols.map((c) => c[i] - lse(c))));
  });

  it('prelu: x where positive, a x elsewhere, a learned per channel from 0.25', () => {
    const layer = libraryLayer('prelu', [{ shape: [2, 3] }]);
    expect(layer.params).toEqual([{ name: 'prelu_0.a', shape: [3] }]);
    close(layer.initParams()[0].data, [0.25, 0.25, 0.25]);
    const x = [-2, 3, -4, 1, -1, 0];
    const a = [0.1, 0.5, 2];
    close(run(layer.build, [f64(x, [2, 3]), f64(a, [3])]).data, x.map((v, i) => (v > 0 ? v : a[i % 3] * v)));
    close(libraryLayer('prelu', [{ shape: [3] }], { alpha: float(0.1) }).initParams()[0].data, [0.1, 0.1, 0.1]);
  });
});

describe('losses: values by hand', () => {
  const loss = (name: string, inputs: Tensor[], named: Record<string, Hyper> = {}) => run(libraryFn(name, named), inputs).data[0];
  const P = [0.5, -1, 2, 3, -0.25, 0];
  const T = [1, 1, -1, 3, 0.75, -4];
  const R = P.map((p, i) => p - T[i]); // -0.5, -2, 3, 0, -1, 4
  const mean = (v: number[]) => v.reduce((a, c) => a + c, 0) / v.length;

  it('mse and mae', () => {
    expect(loss('mse', [f64(P, [2, 3]), f64(T, [2, 3])])).toBeCloseTo(mean(R.map((r) => r * r)), 12);
    expect(loss('mae', [f64(P, [2, 3]), f64(T, [2, 3])])).toBeCloseTo(mean(R.map(Math.abs)), 12);
    expect(loss('mse', [f64(P, [6]), f64([0], [1])])).toBeCloseTo(mean(P.map((p) => p * p)), 12); // broadcast target
  });

  it('huber at residuals inside, on and beyond delta', () => {
    const h = (r: number, d: number) => (Math.abs(r) <= d ? 0.5 * r * r : d * (Math.abs(r) - 0.5 * d));
    expect(loss('huber', [f64(P, [6]), f64(T, [6])])).toBeCloseTo(mean(R.map((r) => h(r, 1))), 12);
    expect(loss('huber', [f64(P, [6]), f64(T, [6])], { delta: float(0.5) })).toBeCloseTo(mean(R.map((r) => h(r, 0.5))), 12);
    // one residual at a time: 0.5 r² up to delta, then linear with slope delta
    for (const [r, want] of [[0.5, 0.125], [-1, 0.5], [2, 1.5], [-4, 3.5]] as const) expect(loss('huber', [f64([r], [1]), f64([0], [1])])).toBeCloseTo(want, 12);
    expect(loss('huber', [f64([3], [1]), f64([0], [1])], { delta: 2 })).toBeCloseTo(2 * (3 - 1), 12);
  });

  it('hinge on a 2×3 score matrix (Weston–Watkins)', () => {
    const S = [[2, 1, -1], [0.5, 3, 2.8]];
    const y = [0, 2];
    // row 0, true 0: max(0, 1 - 2 + 1) + max(0, -1 - 2 + 1) = 0; row 1, true 2: max(0, 0.5 - 2.8 + 1) + max(0, 3 - 2.8 + 1) = 1.2
    const want = (margin: number) => mean(S.map((r, i) => r.reduce((a, s, j) => a + (j === y[i] ? 0 : Math.max(0, s - r[y[i]] + margin)), 0)));
    expect(want(1)).toBeCloseTo(0.6, 12);
    expect(loss('hinge', [f64(S.flat(), [2, 3]), i32(y, [2])])).toBeCloseTo(want(1), 12);
    expect(loss('hinge', [f64(S.flat(), [2, 3]), i32(y, [2])], { margin: float(2.5) })).toBeCloseTo(want(2.5), 12);
  });

  it('softmax_cross_entropy with integer and one-hot labels, stable at large logits', () => {
    const Z = [1, 2, 3, 1000, -1000, 999];
    const rows = [Z.slice(0, 3), Z.slice(3)];
    const lse = (r: number[]) => Math.max(...r) + Math.log(r.reduce((s, v) => s + Math.exp(v - Math.max(...r)), 0));
    const want = mean([lse(rows[0]) - rows[0][1], lse(rows[1]) - rows[1][2]]);
    expect(loss('softmax_cross_entropy', [f64(Z, [2, 3]), i32([1, 2], [2])])).toBeCloseTo(want, 10);
    expect(loss('softmax_cross_entropy', [f64(Z, [2, 3]), f64([0, 1, 0, 0, 0, 1], [2, 3])])).toBeCloseTo(want, 10);
    expect(Number.isFinite(want)).toBe(true);
  });

  it('sigmoid_binary_cross_entropy: -y log σ(z) - (1 - y) log(1 - σ(z)), finite at ±100, gradient σ(z) - y at z = 0', () => {
    const z = [0.5, -2, 0, 3];
    const t = [1, 0, 0.5, 0.25];
    const want = mean(z.map((v, i) => -t[i] * Math.log(sigmoid(v)) - (1 - t[i]) * Math.log(1 - sigmoid(v))));
    expect(loss('sigmoid_binary_cross_entropy', [f64(z, [4]), f64(t, [4])])).toBeCloseTo(want, 12);
    expect(loss('sigmoid_binary_cross_entropy', [f64([100, -100], [2]), f64([0, 1], [2])])).toBeCloseTo(100, 10);
    const zs = b.arg('input', 'bce_z', [3], 'f32'), ts = b.arg('input', 'bce_t', [3], 'f32');
    const [g] = vjp(libraryFn('sigmoid_binary_cross_entropy')([zs, ts]), b.constant(1), [zs]);
    const labels = [0, 1, 0.5];
    close(evalCpu([g], new Map([[zs, f64([0, 0, 0], [3])], [ts, f64(labels, [3])]]), 'f64')[0].data, labels.map((y) => (0.5 - y) / 3));
  });
});

describe('layers: values by hand', () => {
  it('dense: x @ w + b, w [n, units] from he_normal, b [units] from zeros (@no_decay)', () => {
    const layer = libraryLayer('dense', [{ shape: [2, 3] }], { units: 2 });
    expect(layer.params).toEqual([{ name: 'dense_0.w', shape: [3, 2] }, { name: 'dense_0.b', shape: [2] }]);
    expect(Array.from(layer.initParams()[1].data)).toEqual([0, 0]);
    const x = [1, 2, 3, -1, 0, 2];
    const w = [1, -1, 0.5, 2, -2, 0];
    const bias = [0.25, -0.5];
    const want = [0, 1].flatMap((i) => [0, 1].map((j) => bias[j] + [0, 1, 2].reduce((a, k) => a + x[i * 3 + k] * w[k * 2 + j], 0)));
    close(run(layer.build, [f64(x, [2, 3]), f64(w, [3, 2]), f64(bias, [2])]).data, want);
  });

  it('batch_norm of a 4×2 batch: batch statistics and running averages in training, the running averages in inference', () => {
    const x = [1, 10, 2, 20, 3, 30, 6, 0]; // columns [1, 2, 3, 6] and [10, 20, 30, 0]
    const gamma = [2, 0.5], beta = [0.1, -1];
    const cols = [0, 1].map((j) => [0, 1, 2, 3].map((i) => x[i * 2 + j]));
    const mu = cols.map((c) => c.reduce((a, v) => a + v, 0) / 4); // 3, 15
    const v = cols.map((c, j) => c.reduce((a, e) => a + (e - mu[j]) ** 2, 0) / 4); // 3.5, 125 (biased)
    expect(mu).toEqual([3, 15]);
    expect(v).toEqual([3.5, 125]);
    const eps = 1e-5;
    const train = libraryLayer('batch_norm', [{ shape: [4, 2] }]);
    expect(train.params.map((p) => p.name)).toEqual(['batch_norm_0.gamma', 'batch_norm_0.beta']);
    expect(train.state.map((p) => p.name)).toEqual(['batch_norm_0.running_mean', 'batch_norm_0.running_var']);
    const ins = [f64(x, [4, 2]), f64(gamma, [2]), f64(beta, [2])];
    close(run(train.build, ins).data, x.map((e, k) => gamma[k % 2] * (e - mu[k % 2]) / Math.sqrt(v[k % 2] + eps) + beta[k % 2]));
    // running_mean <- 0.9 · 0 + 0.1 mu, running_var <- 0.9 · 1 + 0.1 var (from zeros and ones)
    const withState = [...ins, f64([0, 0], [2]), f64([1, 1], [2])];
    const sargs = withState.map((t, i) => b.arg('input', `bn_${i}`, t.shape, 'f32'));
    const feeds = new Map(sargs.map((a, i) => [a, withState[i]]));
    const ups = evalCpu(train.buildUpdates(sargs), feeds, 'f64');
    close(ups[0].data, mu.map((m) => 0.1 * m));
    close(ups[1].data, v.map((e) => 0.9 + 0.1 * e));
    const slow = libraryLayer('batch_norm', [{ shape: [4, 2] }], { momentum: float(0.5) });
    const ups2 = evalCpu(slow.buildUpdates(sargs), feeds, 'f64');
    close(ups2[1].data, v.map((e) => 0.5 + 0.5 * e));
    // inference: the running statistics, not the batch's
    const inf = libraryLayer('batch_norm', [{ shape: [4, 2] }], {}, { training: false, withState: true });
    const rm = [1, -2], rv = [4, 0.25];
    close(run(inf.build, [...ins, f64(rm, [2]), f64(rv, [2])]).data, x.map((e, k) => gamma[k % 2] * (e - rm[k % 2]) / Math.sqrt(rv[k % 2] + eps) + beta[k % 2]));
  });

  it('layer_norm of a row', () => {
    const row = [1, 2, 4, 9]; // mean 4, biased variance (9 + 4 + 0 + 25) / 4 = 9.5
    const gamma = [1, 2, 0.5, -1], beta = [0, 1, 0, 0.5];
    const layer = libraryLayer('layer_norm', [{ shape: [1, 4] }], { eps: float(1e-3) });
    close(run(layer.build, [f64(row, [1, 4]), f64(gamma, [4]), f64(beta, [4])]).data, row.map((v, i) => (gamma[i] * (v - 4)) / Math.sqrt(9.5 + 1e-3) + beta[i]));
    const init = libraryLayer('layer_norm', [{ shape: [4] }]).initParams();
    expect([Array.from(init[0].data), Array.from(init[1].data)]).toEqual([[1, 1, 1, 1], [0, 0, 0, 0]]);
  });

  it('embedding: rows of the table, a zero row for an id out of range', () => {
    const layer = libraryLayer('embedding', [{ shape: [2, 2], dtype: 'i32' }], { vocab: 3, dim: 2 });
    expect(layer.params).toEqual([{ name: 'embedding_0.table', shape: [3, 2] }]);
    const table = [1, 2, 3, 4, 5, 6];
    close(run(layer.build, [i32([2, 0, 1, 2], [2, 2]), f64(table, [3, 2])]).data, [5, 6, 1, 2, 3, 4, 5, 6]);
    close(run(layer.build, [i32([3, 1, -1, 0], [2, 2]), f64(table, [3, 2])]).data, [0, 0, 3, 4, 0, 0, 1, 2]);
  });

  it('residual, global_avg_pool, global_max_pool', () => {
    close(run(libraryFn('residual'), [f64([1, 2], [2]), f64([10, -5], [2])]).data, [11, -3]);
    const img = [1, -1, 2, 5, 3, 0, -4, 7]; // [1, 2, 2, 2]: pixels (1, -1) (2, 5) (3, 0) (-4, 7)
    close(run(libraryFn('global_avg_pool'), [f64(img, [1, 2, 2, 2])]).data, [(1 + 2 + 3 - 4) / 4, (-1 + 5 + 0 + 7) / 4]);
    close(run(libraryFn('global_max_pool'), [f64(img, [1, 2, 2, 2])]).data, [3, 7]);
  });

  it('conv2d of a 3×3 image with a 2×2 kernel, valid and same, strides and dilation', () => {
    const img = [1, 2, 3, 4, 5, 6, 7, 8, 9];
    const w = [1, 0, -1, 2]; // [2, 2, 1, 1]: w00 = 1, w01 = 0, w10 = -1, w11 = 2
    const at = (r: number, c: number) => (r >= 0 && r < 3 && c >= 0 && c < 3 ? img[r * 3 + c] : 0);
    const cell = (r: number, c: number, d = 1) => at(r, c) * w[0] + at(r, c + d) * w[1] + at(r + d, c) * w[2] + at(r + d, c + d) * w[3];
    const conv = (named: Record<string, Hyper>) => run(libraryLayer('conv2d', [{ shape: [1, 3, 3, 1] }], { filters: 1, kernel: 2, ...named }).build, [f64(img, [1, 3, 3, 1]), f64(w, [2, 2, 1, 1]), f64([0.5], [1])]);
    const valid = conv({});
    expect(valid.shape).toEqual([1, 2, 2, 1]);
    close(valid.data, [cell(0, 0), cell(0, 1), cell(1, 0), cell(1, 1)].map((v) => v + 0.5));
    // "same" with a 2×2 kernel pads one cell at the bottom and right
    close(conv({ padding: 'same' }).data, [0, 1, 2].flatMap((r) => [0, 1, 2].map((c) => cell(r, c) + 0.5)));
    close(conv({ padding: 'same', strides: 2 }).data, [cell(0, 0), cell(0, 2), cell(2, 0), cell(2, 2)].map((v) => v + 0.5));
    close(conv({ dilation: 2 }).data, [cell(0, 0, 2) + 0.5]);
    close(conv({ padding: 1 }).data, [-1, 0, 1, 2].flatMap((r) => [-1, 0, 1, 2].map((c) => cell(r, c) + 0.5)));
  });

  it('max_pool2d and avg_pool2d through the language', () => {
    const img = Array.from({ length: 16 }, (_, i) => (i * 7) % 16); // 0 7 14 5 / 12 3 10 1 / 8 15 6 13 / 4 11 2 9
    const x = f64(img, [1, 4, 4, 1]);
    close(run(libraryFn('max_pool2d'), [x]).data, [12, 14, 15, 13]);
    close(run(libraryFn('avg_pool2d', { window: 2 }), [x]).data, [(0 + 7 + 12 + 3) / 4, (14 + 5 + 10 + 1) / 4, (8 + 15 + 4 + 11) / 4, (6 + 13 + 2 + 9) / 4]);
    close(run(libraryFn('max_pool2d', { window: [1, 4] }), [x]).data, [14, 12, 15, 11]);
    expect(run(libraryFn('max_pool2d', { window: 3, strides: 1 }), [x]).shape).toEqual([1, 2, 2, 1]);
    // "same": 4 / 3 → 2 outputs per axis; padded cells are not counted in the mean
    const same = run(libraryFn('avg_pool2d', { window: 3, strides: 3, padding: 'same' }), [x]);
    expect(same.shape).toEqual([1, 2, 2, 1]);
    // (2 - 1) · 3 + 3 - 4 = 2 cells of padding per axis, one on each side: the first window holds 2×2 real cells
    expect(same.data[0]).toBeCloseTo((0 + 7 + 12 + 3) / 4, 12);
    expect(run(libraryFn('max_pool2d', { window: 3, strides: 3, padding: 'same' }), [x]).data[3]).toBe(13); // rows and columns 2, 3: 6 13 / 2 9
  });

  it('dropout: zeros or x / (1 - rate) in training, the identity in inference', () => {
    const x = Array.from({ length: 2000 }, (_, i) => 1 + (i % 7));
    const out = run(libraryFn('dropout', { rate: float(0.25) }), [f64(x, [2000])]).data;
    let dropped = 0;
    out.forEach((v, i) => (v === 0 ? dropped++ : expect(v).toBeCloseTo(x[i] / 0.75, 12)));
    expect(dropped / 2000).toBeGreaterThan(0.2);
    expect(dropped / 2000).toBeLessThan(0.3);
    close(run(libraryFn('dropout', { rate: float(0.25) }, { training: false }), [f64(x, [2000])]).data, x);
  });
});

describe('dropconnect: values by hand', () => {
  it('dense_dropconnect: x @ w\' + b with each w\' 0 or w / (1 - rate) in training, dense in inference', () => {
    // x = the identity, so the output rows are the (dropped) weight rows plus b
    const n = 40, units = 50, rate = 0.3;
    const eye = f64(Array.from({ length: n * n }, (_, k) => (Math.floor(k / n) === k % n ? 1 : 0)), [n, n]);
    const next = rng(4);
    const w = Array.from({ length: n * units }, () => 1 + next());
    const bias = Array.from({ length: units }, (_, j) => j / 10);
    const layer = (training: boolean) => libraryLayer('dense_dropconnect', [{ shape: [n, n] }], { units, rate: float(rate) }, { training });
    expect(layer(true).params.map((p) => p.name)).toEqual(['dense_dropconnect_0.w', 'dense_dropconnect_0.b']);
    const ins = [eye, f64(w, [n, units]), f64(bias, [units])];
    const train = run(layer(true).build, ins).data;
    let dropped = 0;
    train.forEach((v, k) => {
      const e = v - bias[k % units];
      if (Math.abs(e) < 1e-12) dropped++;
      else expect(e).toBeCloseTo(w[k] / (1 - rate), 12);
    });
    expect(dropped / train.length).toBeGreaterThan(0.25);
    expect(dropped / train.length).toBeLessThan(0.35);
    close(run(layer(false).build, ins).data, w.map((v, k) => v + bias[k % units]));
    close(run(libraryFn('dropconnect', { rate: float(rate) }, { training: false }), [f64(w, [n, units])]).data, w);
  });
});

describe('regularizers and constraints: values by hand', () => {
  const W = [0.5, -2, 0, 3, -0.25, 1]; // [3, 2]: columns (0.5, 0, -0.25) and (-2, 3, 1)
  const w = f64(W, [3, 2]);
  const L1 = W.reduce((a, v) => a + Math.abs(v), 0); // 6.75
  const L2 = W.reduce((a, v) => a + v * v, 0); // 14.3125
  const penalty = (name: string, h: Record<string, Hyper>) => run(libraryMethod('regularizer', name, h), [w]).data[0];

  it('l1, l2 and elastic_net penalties', () => {
    expect(L1).toBe(6.75);
    expect(penalty('l1', { lambda: float(0.1) })).toBeCloseTo(0.1 * L1, 12);
    expect(penalty('l2', { lambda: float(0.01) })).toBeCloseTo(0.01 * L2, 12);
    expect(penalty('elastic_net', { l1: float(0.1), l2: float(0.01) })).toBeCloseTo(0.1 * L1 + 0.01 * L2, 12);
    expect(penalty('elastic_net', {})).toBe(0);
  });

  it('norm of each column, and over rows with axis -1', () => {
    close(run(libraryFn('norm'), [w]).data, [Math.hypot(0.5, 0, -0.25), Math.hypot(-2, 3, 1)]);
    close(run(libraryFn('norm', { axis: -1 }), [w]).data, [Math.hypot(0.5, -2), Math.hypot(0, 3), Math.hypot(-0.25, 1)]);
  });

  it('max_norm scales a column whose norm exceeds c down to c and leaves the others', () => {
    const c = 2;
    const n1 = Math.hypot(-2, 3, 1); // √14 > 2
    const got = run(libraryMethod('constraint', 'max_norm', { c: float(c) }), [w]).data;
    const scale = c / (n1 + 1e-7);
    close(got, W.map((v, i) => (i % 2 === 1 ? v * scale : v)));
    expect(Math.hypot(got[1], got[3], got[5])).toBeCloseTo(c, 6);
  });

  it('non_neg clamps at zero', () => {
    close(run(libraryMethod('constraint', 'non_neg'), [w]).data, W.map((v) => Math.max(v, 0)));
  });
});

// ---------------------------------------------------------------- initializers

describe('initializers: moments and bounds from their formulas, deterministic under a seed', () => {
  const INITS = ['he_normal', 'kaiming_normal', 'he_uniform', 'kaiming_uniform', 'lecun_normal', 'xavier_normal', 'glorot_normal', 'xavier_uniform', 'glorot_uniform'];
  // std from (fan_in, fan_out); uniform ones also their limit (std = limit / √3)
  const spec: Record<string, (fi: number, fo: number) => { std: number; limit?: number }> = {
    he_normal: (fi) => ({ std: Math.sqrt(2 / fi) }),
    he_uniform: (fi) => ({ std: Math.sqrt(6 / fi) / Math.sqrt(3), limit: Math.sqrt(6 / fi) }),
    lecun_normal: (fi) => ({ std: Math.sqrt(1 / fi) }),
    xavier_normal: (fi, fo) => ({ std: Math.sqrt(2 / (fi + fo)) }),
    xavier_uniform: (fi, fo) => ({ std: Math.sqrt(6 / (fi + fo)) / Math.sqrt(3), limit: Math.sqrt(6 / (fi + fo)) }),
  };
  spec.kaiming_normal = spec.he_normal;
  spec.kaiming_uniform = spec.he_uniform;
  spec.glorot_normal = spec.xavier_normal;
  spec.glorot_uniform = spec.xavier_uniform;

  // A dense [300, 200] weight (fan_in 300, fan_out 200) and a conv [3, 3, 16, 32] one
  // (fan_in 3·3·16 = 144, fan_out 3·3·32 = 288) per initializer.
  const src = `
model inits {
  input x: f32[B, 300]
  input img: f32[B, 5, 5, 16]
${INITS.map((n) => `  d_${n} = dense(x, 200, init: ${n})\n  c_${n} = conv2d(img, 32, kernel: 3, init: ${n})`).join('\n')}
  rn = dense(x, 200, init: random_normal(std: 0.02))
  ru = dense(x, 200, init: random_uniform(limit: 0.3))
  rd = dense(x, 200, init: random_normal)
  zero = dense(x, 2, init: zeros)
  one = dense(x, 2, init: ones)
  half = dense(x, 2, init: 0.5)
  loss = ${INITS.map((n) => `mean(d_${n}) + mean(c_${n})`).join(' + ')} + mean(rn) + mean(ru) + mean(rd) + mean(zero) + mean(one) + mean(half)
}`;
  const manifest = compileModel(src);
  const params = (seed: number) => Model.create(manifest, cpuKernels, { backend: 'cpu', seed }).then((m) => m.getParams());
  const stats = (d: ArrayLike<number>) => {
    let s = 0, s2 = 0, max = 0;
    for (let i = 0; i < d.length; i++) (s += d[i]), (s2 += d[i] * d[i]), (max = Math.max(max, Math.abs(d[i])));
    const mean = s / d.length;
    return { mean, std: Math.sqrt(s2 / d.length - mean * mean), max };
  };

  it('every initializer: mean 0, its std (3%), within its limit', async () => {
    const p = await params(1);
    for (const name of INITS) {
      for (const [key, fi, fo] of [[`d_${name}.w`, 300, 200], [`c_${name}.w`, 144, 288]] as const) {
        const want = spec[name](fi, fo);
        const got = stats(p[key].data);
        expect(Math.abs(got.mean), key).toBeLessThan(0.02 * want.std * 3);
        expect(got.std / want.std, key).toBeGreaterThan(0.97);
        expect(got.std / want.std, key).toBeLessThan(1.03);
        if (want.limit) {
          expect(got.max, key).toBeLessThanOrEqual(want.limit * (1 + 1e-6));
          expect(got.max, key).toBeGreaterThan(want.limit * 0.99);
        } else expect(got.max, key).toBeGreaterThan(3 * want.std); // normal tails, not a uniform
      }
    }
  });

  it('random_normal(std) and random_uniform(limit): their settings given by name, the layer completing the call', async () => {
    const p = await params(1);
    for (const [key, std, limit] of [['rn.w', 0.02], ['ru.w', 0.3 / Math.sqrt(3), 0.3], ['rd.w', 0.05]] as const) {
      const got = stats(p[key].data);
      expect(got.std / std, key).toBeGreaterThan(0.97);
      expect(got.std / std, key).toBeLessThan(1.03);
      expect(Math.abs(got.mean), key).toBeLessThan(0.05 * std);
      if (limit) expect(got.max, key).toBeLessThanOrEqual(limit * (1 + 1e-6));
    }
  });

  it('zeros, ones, a constant number; biases start at zero', async () => {
    const p = await params(1);
    expect(Array.from(p['zero.w'].data).every((v) => v === 0)).toBe(true);
    expect(Array.from(p['one.w'].data).every((v) => v === 1)).toBe(true);
    expect(Array.from(p['half.w'].data).every((v) => v === 0.5)).toBe(true);
    for (const name of INITS) expect(Array.from(p[`d_${name}.b`].data).every((v) => v === 0)).toBe(true);
  });

  it('the same seed gives the same values, another seed others', async () => {
    const [a, a2, c] = await Promise.all([params(5), params(5), params(6)]);
    for (const name of INITS) {
      expect(a[`d_${name}.w`].data, name).toEqual(a2[`d_${name}.w`].data);
      expect(a[`d_${name}.w`].data, name).not.toEqual(c[`d_${name}.w`].data);
    }
    // two calls in one model draw different streams
    expect(a['d_he_normal.w'].data).not.toEqual(a['d_kaiming_normal.w'].data);
  });

  it('exactly their formulas over the uniform stream: Box–Muller normals, scaled by sqrt(k / fan)', async () => {
    // The first draws of a model use the same streams whatever fn makes them, so the library's
    // initializers can be compared with a transcription over `uniform`.
    const one = (init: string, extra = '') =>
      Model.create(compileModel(`${extra}
model one {
  input x: f32[B, 30]
  h = dense(x, 20, init: ${init})
  loss = mean(h)
}`), cpuKernels, { backend: 'cpu', seed: 9 }).then(async (m) => Float64Array.from((await m.getParams())['h.w'].data));
    const u2 = await Model.create(compileModel(`
fn unit(shape, fan_in, fan_out) = uniform(shape)
layer two(x: f32[..., n]) {
  param u: f32[n, 20] = unit
  param v: f32[n, 20] = unit
  return x @ u + x @ v
}
model draws {
  input x: f32[B, 30]
  h = two(x)
  loss = mean(h)
}`), cpuKernels, { backend: 'cpu', seed: 9 }).then((m) => m.getParams());
    const u = Float64Array.from(u2['h.u'].data), v = Float64Array.from(u2['h.v'].data);
    const normal = u.map((a, i) => Math.sqrt(-2 * Math.log(1 - a)) * Math.cos(2 * Math.PI * v[i]));
    const near = (got: Float64Array, want: Float64Array) => got.forEach((g, i) => expect(Math.abs(g - want[i])).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(want[i]))));
    near(await one('he_normal'), normal.map((n) => n * Math.sqrt(2 / 30)));
    near(await one('lecun_normal'), normal.map((n) => n * Math.sqrt(1 / 30)));
    near(await one('xavier_normal'), normal.map((n) => n * Math.sqrt(2 / 50)));
    near(await one('he_uniform'), u.map((a) => (2 * a - 1) * Math.sqrt(6 / 30)));
    near(await one('xavier_uniform'), u.map((a) => (2 * a - 1) * Math.sqrt(6 / 50)));
    near(await one('glorot_uniform'), await one('xavier_uniform'));
    near(await one('kaiming_normal'), await one('he_normal'));
  });
});

// ---------------------------------------------------------------- schedules

describe('schedules: lr(lr0, epoch, step) at chosen points, as the runtime evaluates it', () => {
  const lrOf = (entry: string) =>
    scheduleLr(compileModel(`
model s {
  input x: f32[B, 2]
  loss = mean(dense(x, 1))
  train {
    optimizer sgd(lr: 0.1)
    schedule ${entry}
  }
}`));
  const at = (entry: string, points: [number, number, number][]) => {
    const lr = lrOf(entry);
    for (const [epoch, step, want] of points) expect(lr(0.1, epoch, step), `${entry} at epoch ${epoch}, step ${step}`).toBeCloseTo(want, 12);
  };

  it('constant', () => at('constant', [[0, 0, 0.1], [7, 1234, 0.1]]));

  it('step_decay: lr0 · factor^⌊epoch / every⌋', () => {
    at('step_decay(factor: 0.5, every: 3)', [[0, 0, 0.1], [2, 99, 0.1], [3, 0, 0.05], [5, 0, 0.05], [6, 0, 0.025], [9, 0, 0.0125]]);
    at('step_decay', [[9, 0, 0.1], [10, 0, 0.01], [25, 0, 0.001]]); // defaults 0.1 every 10
  });

  it('exponential_decay: max(lr0 · rate^epoch, min_lr)', () => {
    at('exponential_decay(rate: 0.5, min_lr: 0.01)', [[0, 0, 0.1], [1, 0, 0.05], [3, 0, 0.0125], [4, 0, 0.01], [20, 0, 0.01]]);
    at('exponential_decay', [[0, 0, 0.1], [2, 0, 0.1 * 0.96 ** 2], [100, 0, 0.1 * 0.96 ** 100]]);
  });

  it('linear_decay: from lr0 to final over tau steps, then final', () => {
    at('linear_decay(tau: 100, final: 0.01)', [[0, 0, 0.1], [0, 25, 0.75 * 0.1 + 0.25 * 0.01], [3, 50, 0.055], [0, 100, 0.01], [9, 250, 0.01]]);
    at('linear_decay', [[0, 500, 0.05], [0, 1000, 0], [0, 5000, 0]]);
  });

  it('cosine_restarts: lr0 at the start of a period, halfway at its middle, near min_lr at its end, then again', () => {
    const cos = (e: number) => 0.001 + 0.5 * (0.1 - 0.001) * (1 + Math.cos((Math.PI * (e % 10)) / 10));
    at('cosine_restarts(period: 10, min_lr: 0.001)', [[0, 0, 0.1], [5, 0, (0.1 + 0.001) / 2], [9, 0, cos(9)], [10, 0, 0.1], [15, 7, (0.1 + 0.001) / 2], [3, 0, cos(3)]]);
    expect(cos(9)).toBeLessThan(0.004);
  });

  it('warmup: lr0 (step + 1) / steps, then lr0', () => at('warmup(steps: 10)', [[0, 0, 0.01], [0, 4, 0.05], [0, 9, 0.1], [3, 50, 0.1]]));

  it('reduce_on_plateau leaves lr0 to the training loop', () => at('reduce_on_plateau(factor: 0.5)', [[0, 0, 0.1], [30, 999, 0.1]]));

  it('schedule hyperparameters are run-time values', () => {
    const m = compileModel(`
model s {
  input x: f32[B, 2]
  loss = mean(dense(x, 1))
  train { schedule step_decay(factor: 0.5, every: 3) }
}`);
    expect(m.schedule).toEqual({ name: 'step_decay', hypers: { factor: 0.5, every: 3 } });
    expect(scheduleLr(m, { every: 1 })(0.1, 2, 0)).toBeCloseTo(0.025, 12);
  });
});
