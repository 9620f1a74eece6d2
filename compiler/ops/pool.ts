// 2-D max and average pooling, channels last, with their backward forms as primitives:
//   max_pool2d(x)                 x [B, H, W, C] → y [B, OH, OW, C], the max of each window
//   max_pool2d_backprop(x, dy)    dy [B, OH, OW, C] → dx [B, H, W, C]: each dy goes to its
//                                 window's argmax (the first maximum in row-major window order)
//   max_pool2d_gather(x, v)       v [B, H, W, C] → [B, OH, OW, C]: v at each window's argmax of x
//                                 (the adjoint of max_pool2d_backprop in dy, so its VJP)
//   avg_pool2d(x)                 the mean of each window's real cells (padding is not counted)
//   avg_pool2d_backprop(dy)       dy / count spread over each window's real cells (attr inputSize)
// Attributes: window [kh, kw], strides [sh, sw], padding [top, bottom, left, right], each pad
// smaller than the window along its axis, so every window holds at least one real cell (padded
// cells never win a max and never count in a mean). OH = ⌊(H + pt + pb − kh) / sh⌋ + 1.
//
// The argmax is a function of x alone and piecewise constant, so the max family is linear in dy/v
// with no gradient in x: max_pool2d = gather(x, x) in value, and its VJP is backprop(x, ct); the
// VJP of backprop(x, ·) is gather(x, ·) and vice versa, to any order.
//
// WGSL: one invocation per output element; the backward kernels run per INPUT element and visit
// the windows that contain it (no atomics, no workgroup memory), in the same order as the CPU
// scatter, so the sums agree; max_pool2d_backprop over windows that never overlap runs per row.

import { avgPool2d, avgPool2dBackprop, maxPool2dBackprop, maxPool2dGather } from '../ir/build.ts';
import { ShapeError, shapeStr, type Attrs, type Dim, type Node, type Shape } from '../ir/node.ts';
import type { CpuCtx, CpuKernel, KernelSig, KernelSource, OpDef, TypedArray } from './types.ts';
import { MAIN, alloc, wgslCoords } from './elementwise.ts';
import { convOutSize } from './conv.ts';
import { numel } from '../../runtime/shapes.ts';

// ---------------------------------------------------------------- attributes and shapes

/** What a builder takes: strides default to the window (non-overlapping), padding to none. */
export interface PoolOpts {
  window: readonly number[];
  strides?: readonly number[];
  padding?: readonly number[];
}

interface PoolAttrs {
  window: [number, number];
  strides: [number, number];
  padding: [number, number, number, number];
}

/** The canonical attributes of a pooling op. */
export function poolAttrs({ window, strides = window, padding = [0, 0, 0, 0] }: PoolOpts): Attrs {
  return { window: [...window], strides: [...strides], padding: [...padding] };
}

const isInts = (v: unknown, n: number, min: number): v is number[] =>
  Array.isArray(v) && v.length === n && v.every((e) => Number.isInteger(e) && e >= min);

function checkAttrs(op: string, a: Attrs): PoolAttrs {
  if (!isInts(a.window, 2, 1)) throw new ShapeError(`${op}: window must be two positive integers, got ${JSON.stringify(a.window)}`);
  if (!isInts(a.strides, 2, 1)) throw new ShapeError(`${op}: strides must be two positive integers, got ${JSON.stringify(a.strides)}`);
  if (!isInts(a.padding, 4, 0)) throw new ShapeError(`${op}: padding must be four integers >= 0 [top, bottom, left, right], got ${JSON.stringify(a.padding)}`);
  const [kh, kw] = a.window, [pt, pb, pl, pr] = a.padding;
  if (pt >= kh || pb >= kh || pl >= kw || pr >= kw)
    throw new ShapeError(`${op}: padding [${a.padding}] must be smaller than the window [${a.window}] (a window of padding only has no value)`);
  return a as unknown as PoolAttrs;
}

/** The pooled shape of an image x [B, H, W, C] (H, W static). */
function pooled(op: string, a: PoolAttrs, x: Node | Shape, what = 'the image'): Shape {
  const shape = 'shape' in x ? x.shape : x;
  if ('dtype' in x && x.dtype !== 'f32') throw new ShapeError(`${op}: ${what} must be f32, got ${x.dtype}${shapeStr(shape)}`);
  if (shape.length !== 4) throw new ShapeError(`${op}: ${what} must have rank 4 [B, H, W, C], got ${shapeStr(shape)}`);
  const [B, H, W, C] = shape;
  if (typeof H !== 'number' || typeof W !== 'number') throw new ShapeError(`${op}: ${what} ${shapeStr(shape)} must have static height and width`);
  const [OH, OW] = [convOutSize(H, a.window[0], a.strides[0], 1, a.padding[0], a.padding[1]), convOutSize(W, a.window[1], a.strides[1], 1, a.padding[2], a.padding[3])];
  if (OH < 1 || OW < 1) throw new ShapeError(`${op}: the window [${a.window}] does not fit in ${what} ${shapeStr(shape)} padded by [${a.padding}]`);
  return [B, OH, OW, C];
}

function expectShape(op: string, what: string, n: Node, want: Shape): void {
  if (n.dtype !== 'f32') throw new ShapeError(`${op}: ${what} must be f32, got ${n.dtype}${shapeStr(n.shape)}`);
  if (!(n.shape.length === want.length && n.shape.every((d: Dim, i) => d === want[i])))
    throw new ShapeError(`${op}: ${what} is ${shapeStr(n.shape)}, expected ${shapeStr(want)}`);
}

const operands = (op: string, inputs: readonly Node[], n: number): Node[] => {
  if (inputs.length !== n) throw new ShapeError(`${op} takes ${n} operand(s), got ${inputs.length}`);
  return [...inputs];
};

// ---------------------------------------------------------------- CPU

interface Geom {
  B: number; H: number; W: number; C: number; OH: number; OW: number;
  KH: number; KW: number; sh: number; sw: number; pt: number; pl: number;
}

function geom(x: readonly number[], y: readonly number[], attrs: Attrs): Geom {
  const a = attrs as unknown as PoolAttrs;
  const [B, H, W, C] = x, [, OH, OW] = y;
  return { B, H, W, C, OH, OW, KH: a.window[0], KW: a.window[1], sh: a.strides[0], sw: a.strides[1], pt: a.padding[0], pl: a.padding[2] };
}

/**
 * Calls `visit(o, b, h0, h1, w0, w1)` for each output pixel o (row-major b, oh, ow) with its
 * window's real rows [h0, h1) and columns [w0, w1), never empty.
 */
function forEachWindow(g: Geom, visit: (o: number, b: number, h0: number, h1: number, w0: number, w1: number) => void): void {
  for (let b = 0, o = 0; b < g.B; b++)
    for (let oh = 0; oh < g.OH; oh++) {
      const top = oh * g.sh - g.pt;
      const [h0, h1] = [Math.max(top, 0), Math.min(top + g.KH, g.H)];
      for (let ow = 0; ow < g.OW; ow++, o++) {
        const left = ow * g.sw - g.pl;
        visit(o, b, h0, h1, Math.max(left, 0), Math.min(left + g.KW, g.W));
      }
    }
}

/**
 * Runs `each(o, at)` with, for each output pixel o, `at[c]` = the flat index in x of channel c's
 * first maximum in the window (strictly greater values replace it, so ties keep the first).
 */
function forEachArgmax(g: Geom, X: TypedArray, ctx: CpuCtx, each: (o: number, at: Int32Array) => void): void {
  const { C, H, W } = g;
  const best = new ctx.float(C);
  const at = new Int32Array(C);
  forEachWindow(g, (o, b, h0, h1, w0, w1) => {
    const first = ((b * H + h0) * W + w0) * C;
    for (let c = 0; c < C; c++) {
      best[c] = X[first + c];
      at[c] = first + c;
    }
    for (let ih = h0; ih < h1; ih++)
      for (let iw = ih === h0 ? w0 + 1 : w0; iw < w1; iw++) {
        const xb = ((b * H + ih) * W + iw) * C;
        for (let c = 0; c < C; c++) {
          const v = X[xb + c];
          if (v > best[c]) {
            best[c] = v;
            at[c] = xb + c;
          }
        }
      }
    each(o, at);
  });
}

// ---------------------------------------------------------------- WGSL

/** Baked attributes, the window of an output pixel, and the argmax of a window of in0. */
function wgslCommon(attrs: Attrs): string {
  const a = attrs as unknown as PoolAttrs;
  return `const KH: i32 = ${a.window[0]}; const KW: i32 = ${a.window[1]};
const SH: i32 = ${a.strides[0]}; const SW: i32 = ${a.strides[1]}; const PT: i32 = ${a.padding[0]}; const PL: i32 = ${a.padding[2]};
// the real rows [r.x, r.y) and columns [r.z, r.w) of window (oh, ow) of an H×W image
fn pool_window(oh: i32, ow: i32, H: i32, W: i32) -> vec4<i32> {
  let h0 = oh * SH - PT;
  let w0 = ow * SW - PL;
  return vec4<i32>(max(h0, 0), min(h0 + KH, H), max(w0, 0), min(w0 + KW, W));
}
// the range [lo, hi] of windows along an axis that contain position p (padded coordinate)
fn windows_over(p: i32, k: i32, s: i32, n: i32) -> vec2<i32> {
  return vec2<i32>(select(0, (p - k + s) / s, p >= k), min(p / s, n - 1));
}`;
}

/** The flat index in in0 (x [B, H, W, C]) of channel c's first maximum in window (oh, ow). */
const WGSL_ARGMAX = `
fn argmax_at(bi: u32, oh: i32, ow: i32, c: u32) -> u32 {
  let H = i32(M(IN0 + 1u)); let W = i32(M(IN0 + 2u)); let C = M(IN0 + 3u);
  let r = pool_window(oh, ow, H, W);
  var at = ((bi * u32(H) + u32(r.x)) * u32(W) + u32(r.z)) * C + c;
  var best = in0[at];
  for (var ih = r.x; ih < r.y; ih++) {
    for (var iw = r.z; iw < r.w; iw++) {
      let j = ((bi * u32(H) + u32(ih)) * u32(W) + u32(iw)) * C + c;
      let v = in0[j];
      if (v > best) { best = v; at = j; }
    }
  }
  return at;
}`;

/** One invocation per output element, coordinates c0..c3 (b, row, column, channel). */
function perElement(attrs: Attrs, fns: string, body: string): KernelSource {
  const code = `
${wgslCommon(attrs)}
${fns}
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  ${wgslCoords(4)}
  ${body}
}`;
  return { code, grid: { kind: 'elements' } };
}

/**
 * A backward kernel's body, per input element (c0, c1, c2, c3): `acc` sums `term` over the windows
 * (oh, ow) that contain the element, in row-major order; the pooled dims come from input `pooledIn`.
 */
const overWindows = (pooledIn: number, term: string) => `
  let OH = i32(M(IN${pooledIn} + 1u)); let OW = i32(M(IN${pooledIn} + 2u)); let C = M(OUT + 3u);
  let H = i32(M(OUT + 1u)); let W = i32(M(OUT + 2u));
  let rh = windows_over(i32(c1) + PT, KH, SH, OH);
  let rw = windows_over(i32(c2) + PL, KW, SW, OW);
  var acc = 0.0;
  for (var oh = rh.x; oh <= rh.y; oh++) {
    for (var ow = rw.x; ow <= rw.y; ow++) {
      let o = ((c0 * u32(OH) + u32(oh)) * u32(OW) + u32(ow)) * C + c3;
      ${term}
    }
  }
  out[i] = acc;`;

/** Windows that never overlap (strides >= window): each input cell is in one window at most. */
const disjoint = (attrs: Attrs): boolean => {
  const a = attrs as unknown as PoolAttrs;
  return a.strides[0] >= a.window[0] && a.strides[1] >= a.window[1];
};

/**
 * max_pool2d_backprop over disjoint windows, one invocation per channel of a row of dx: along the
 * row, for each window it finds the argmax and writes that window's block of cells, the SW from
 * its corner (from the row's start for the first, to its end for the last), dy at the argmax and
 * 0 elsewhere (rows in no window get 0). Neighbouring invocations take neighbouring channels, so
 * their loads and stores are neighbouring floats (SwiftShader runs four as the lanes of one SIMD
 * access); and they are few: on SwiftShader even an invocation that returns at once costs time.
 * One invocation per window over a dx-sized grid (three in four idle) ran LeNet-5's 28×28×6 pool
 * gradient about 1.5× slower.
 */
function perWindow(sig: KernelSig): KernelSource {
  const code = `
${wgslCommon(sig.attrs)}
${WGSL_ARGMAX}
${MAIN} {
  let i = thread_id(gid, nwg);
  let OH = i32(M(IN1 + 1u)); let OW = i32(M(IN1 + 2u)); let C = M(OUT + 3u);
  let H = i32(M(OUT + 1u)); let W = i32(M(OUT + 2u));
  if (i >= M(OUT + 0u) * u32(H) * C) { return; }
  let c = i % C; let ih = i32(i / C % u32(H)); let bi = i / C / u32(H);
  let oh = min((ih + PT) / SH, OH - 1);
  let inside = ih + PT - oh * SH < KH;
  let row = (bi * u32(H) + u32(ih)) * u32(W);
  for (var ow = 0; ow < OW; ow++) {
    let at = argmax_at(bi, oh, ow, c);
    let dy = select(0.0, in1[((bi * u32(OH) + u32(oh)) * u32(OW) + u32(ow)) * C + c], inside);
    let w1 = select(min((ow + 1) * SW - PL, W), W, ow + 1 == OW);
    for (var iw = select(ow * SW - PL, 0, ow == 0); iw < w1; iw++) {
      let j = (row + u32(iw)) * C + c;
      out[j] = select(0.0, dy, j == at);
    }
  }
}`;
  // one tile per row: the row's width is static (the shape rule requires it)
  return { code, grid: { kind: 'tiles', rows: sig.output.shape[2] as number, cols: 1 } };
}

// ---------------------------------------------------------------- the ops

const popts = (attrs: Attrs): PoolOpts => attrs as unknown as PoolOpts;
const dims = (n: Node): number[] => [n.shape[1] as number, n.shape[2] as number];

export const maxPool2dCpu: CpuKernel = ([x], attrs, out, ctx) => {
  const res = alloc('f32', numel(out.shape), ctx);
  const X = x.data, C = x.shape[3];
  forEachArgmax(geom(x.shape, out.shape, attrs), X, ctx, (o, at) => {
    for (let c = 0; c < C; c++) res[o * C + c] = X[at[c]];
  });
  return res;
};

export const maxPool2dBackpropCpu: CpuKernel = ([x, dy], attrs, out, ctx) => {
  const res = alloc('f32', numel(out.shape), ctx);
  const D = dy.data, C = x.shape[3];
  forEachArgmax(geom(x.shape, dy.shape, attrs), x.data, ctx, (o, at) => {
    for (let c = 0; c < C; c++) res[at[c]] += D[o * C + c];
  });
  return res;
};

export const maxPool2dGatherCpu: CpuKernel = ([x, v], attrs, out, ctx) => {
  const res = alloc('f32', numel(out.shape), ctx);
  const V = v.data, C = x.shape[3];
  forEachArgmax(geom(x.shape, out.shape, attrs), x.data, ctx, (o, at) => {
    for (let c = 0; c < C; c++) res[o * C + c] = V[at[c]];
  });
  return res;
};

export const avgPool2dCpu: CpuKernel = ([x], attrs, out, ctx) => {
  const g = geom(x.shape, out.shape, attrs);
  const res = alloc('f32', numel(out.shape), ctx);
  const X = x.data, { C, H, W } = g;
  forEachWindow(g, (o, b, h0, h1, w0, w1) => {
    const ob = o * C;
    for (let ih = h0; ih < h1; ih++)
      for (let iw = w0; iw < w1; iw++) {
        const xb = ((b * H + ih) * W + iw) * C;
        for (let c = 0; c < C; c++) res[ob + c] += X[xb + c];
      }
    const n = (h1 - h0) * (w1 - w0);
    for (let c = 0; c < C; c++) res[ob + c] /= n;
  });
  return res;
};

export const avgPool2dBackpropCpu: CpuKernel = ([dy], attrs, out, ctx) => {
  const g = geom(out.shape, dy.shape, attrs);
  const res = alloc('f32', numel(out.shape), ctx);
  const D = dy.data, { C, H, W } = g;
  forEachWindow(g, (o, b, h0, h1, w0, w1) => {
    const ob = o * C, n = (h1 - h0) * (w1 - w0);
    for (let ih = h0; ih < h1; ih++)
      for (let iw = w0; iw < w1; iw++) {
        const xb = ((b * H + ih) * W + iw) * C;
        for (let c = 0; c < C; c++) res[xb + c] += D[ob + c] / n;
      }
  });
  return res;
};

export const poolOps = {
  max_pool2d: {
    shape(inputs, attrs) {
      const [x] = operands('max_pool2d', inputs, 1);
      return { shape: pooled('max_pool2d', checkAttrs('max_pool2d', attrs), x), dtype: 'f32' };
    },
    vjp: (node, ct) => [maxPool2dBackprop(node.inputs[0], ct, popts(node.attrs))],
    cpu: maxPool2dCpu,
    wgsl: (sig: KernelSig) => perElement(sig.attrs, WGSL_ARGMAX, 'out[i] = in0[argmax_at(c0, i32(c1), i32(c2), c3)];'),
  },

  max_pool2d_backprop: {
    shape(inputs, attrs) {
      const op = 'max_pool2d_backprop';
      const [x, dy] = operands(op, inputs, 2);
      expectShape(op, 'the output gradient', dy, pooled(op, checkAttrs(op, attrs), x));
      return { shape: x.shape, dtype: 'f32' };
    },
    // linear in dy, piecewise constant in x (no gradient)
    vjp: (node, ct) => [null, maxPool2dGather(node.inputs[0], ct, popts(node.attrs))],
    cpu: maxPool2dBackpropCpu,
    wgsl: (sig: KernelSig) => (disjoint(sig.attrs) ? perWindow(sig) : perElement(sig.attrs, WGSL_ARGMAX, overWindows(1, 'if (argmax_at(c0, oh, ow, c3) == i) { acc += in1[o]; }'))),
  },

  max_pool2d_gather: {
    shape(inputs, attrs) {
      const op = 'max_pool2d_gather';
      const [x, v] = operands(op, inputs, 2);
      const y = pooled(op, checkAttrs(op, attrs), x);
      expectShape(op, 'the gathered tensor', v, x.shape);
      return { shape: y, dtype: 'f32' };
    },
    // linear in v, piecewise constant in x (no gradient)
    vjp: (node, ct) => [null, maxPool2dBackprop(node.inputs[0], ct, popts(node.attrs))],
    cpu: maxPool2dGatherCpu,
    wgsl: (sig: KernelSig) => perElement(sig.attrs, WGSL_ARGMAX, 'out[i] = in1[argmax_at(c0, i32(c1), i32(c2), c3)];'),
  },

  avg_pool2d: {
    shape(inputs, attrs) {
      const [x] = operands('avg_pool2d', inputs, 1);
      return { shape: pooled('avg_pool2d', checkAttrs('avg_pool2d', attrs), x), dtype: 'f32' };
    },
    vjp: (node, ct) => [avgPool2dBackprop(ct, popts(node.attrs), dims(node.inputs[0]))],
    cpu: avgPool2dCpu,
    wgsl: (sig: KernelSig) =>
      perElement(
        sig.attrs,
        '',
        `let H = i32(M(IN0 + 1u)); let W = i32(M(IN0 + 2u)); let C = M(IN0 + 3u);
  let r = pool_window(i32(c1), i32(c2), H, W);
  var acc = 0.0;
  for (var ih = r.x; ih < r.y; ih++) {
    for (var iw = r.z; iw < r.w; iw++) {
      acc += in0[((c0 * u32(H) + u32(ih)) * u32(W) + u32(iw)) * C + c3];
    }
  }
  out[i] = acc / f32((r.y - r.x) * (r.w - r.z));`,
      ),
  },

  avg_pool2d_backprop: {
    shape(inputs, attrs) {
      const op = 'avg_pool2d_backprop';
      const [dy] = operands(op, inputs, 1);
      const a = checkAttrs(op, attrs);
      if (!isInts(attrs.inputSize, 2, 1)) throw new ShapeError(`${op}: inputSize must be two positive integers, got ${JSON.stringify(attrs.inputSize)}`);
      if (dy.shape.length !== 4) throw new ShapeError(`${op}: the output gradient must have rank 4, got ${shapeStr(dy.shape)}`);
      const x: Shape = [dy.shape[0], ...(attrs.inputSize as number[]), dy.shape[3]];
      expectShape(op, 'the output gradient', dy, pooled(op, a, x, 'the input'));
      return { shape: x, dtype: 'f32' };
    },
    // linear: ⟨backprop(dy), ct⟩ = ⟨dy, avg_pool2d(ct)⟩
    vjp: (node, ct) => [avgPool2d(ct, popts(node.attrs))],
    cpu: avgPool2dBackpropCpu,
    wgsl: (sig: KernelSig) =>
      perElement(
        sig.attrs,
        '',
        overWindows(0, `let r = pool_window(oh, ow, H, W);
      acc += in0[o] / f32((r.y - r.x) * (r.w - r.z));`),
      ),
  },
} satisfies Record<string, OpDef>;
