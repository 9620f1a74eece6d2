// 2-D convolution, channels last, and its two backward forms as primitives with their own kernels:
//   conv2d(x, w)                 x [B, H, W, C] ⊛ w [KH, KW, C/G, F] → y [B, OH, OW, F]
//   conv2d_backprop_input(dy, w) dy [B, OH, OW, F], w → dx [B, H, W, C]        (attr inputSize [H, W])
//   conv2d_backprop_filter(x, dy) x, dy → dw [KH, KW, C/G, F]                   (attr filterSize [KH, KW])
// with y[b, oh, ow, f] = Σ_{kh, kw, c'} x[b, oh·sh − pt + kh·dh, ow·sw − pl + kw·dw, g·C/G + c'] · w[kh, kw, c', f]
// (g = f / (F/G), the group of f; cells outside the image read 0). Attributes: strides [sh, sw],
// padding [top, bottom, left, right], dilations [dh, dw], groups G.
//
// conv2d_backprop_filter's optional attribute `splits` S > 1 splits the sum over the batch
// ("split-K"): dw is then [S, KH, KW, C/G, F], entry s the filter gradient over the images
// ⌊s·B/S⌋ ≤ b < ⌊(s+1)·B/S⌋ (contiguous chunks whose sizes differ by at most one; empty, so
// zeros, when B < S), and its sum over axis 0 the ordinary dw. Its output is tiny while the sum
// is long (LeNet-5: 25 to 50 invocations, each over 64·28·28 terms), so a kernel of S times the
// invocations spreads it over the cores; the split form is made after autodiff (passes/split.ts).
//
// The three are the partial derivatives of one trilinear form T(x, w, dy) = ⟨conv2d(x, w), dy⟩:
// conv2d = ∂T/∂dy, backprop_input = ∂T/∂x, backprop_filter = ∂T/∂w. So each one's VJP is another
// of the three with its arguments permuted, and gradients of any order stay inside the family.
//
// Kernels: the CPU loops keep a channel dim innermost (contiguous in NHWC and in w's last axis)
// and allocate nothing inside them. The WGSL kernels compute register tiles (see below).

import { conv2d, conv2dBackpropFilter, conv2dBackpropInput } from '../ir/build.ts';
import { ShapeError, shapeStr, type Attrs, type Dim, type Node, type Shape } from '../ir/node.ts';
import type { CpuKernel, KernelSig, KernelSource, OpDef } from './types.ts';
import { MAIN } from './elementwise.ts';
import { numel } from '../../runtime/shapes.ts';

// ---------------------------------------------------------------- attributes

/** What a builder takes; absent fields default to stride 1, no padding, no dilation, one group. */
export interface ConvOpts {
  strides?: readonly number[];
  padding?: readonly number[];
  dilations?: readonly number[];
  groups?: number;
}

interface ConvAttrs {
  strides: [number, number];
  padding: [number, number, number, number];
  dilations: [number, number];
  groups: number;
}

/** The canonical attributes of a convolution (same nodes whatever defaults the caller spelled out). */
export function convAttrs({ strides = [1, 1], padding = [0, 0, 0, 0], dilations = [1, 1], groups = 1 }: ConvOpts): Attrs {
  return { strides: [...strides], padding: [...padding], dilations: [...dilations], groups };
}

/** Output size along one axis: ⌊(n + p0 + p1 − d·(k − 1) − 1) / s⌋ + 1 (≤ 0: no output). */
export function convOutSize(n: number, k: number, s: number, d: number, p0: number, p1: number): number {
  return Math.floor((n + p0 + p1 - d * (k - 1) - 1) / s) + 1;
}

/**
 * Explicit padding [top, bottom, left, right] for TensorFlow's 'same' (output ⌈n / s⌉, the total
 * padding max((out − 1)·s + d·(k − 1) + 1 − n, 0) split with the extra cell at the bottom/right)
 * or 'valid' (none). Pooling uses it with dilations 1.
 */
export function convPadding(
  mode: 'same' | 'valid',
  inH: number,
  inW: number,
  kh: number,
  kw: number,
  strides: readonly number[] = [1, 1],
  dilations: readonly number[] = [1, 1],
): [number, number, number, number] {
  if (mode === 'valid') return [0, 0, 0, 0];
  const side = (n: number, k: number, s: number, d: number): [number, number] => {
    const total = Math.max((Math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  };
  return [...side(inH, kh, strides[0], dilations[0]), ...side(inW, kw, strides[1], dilations[1])];
}

const isInts = (v: unknown, n: number, min: number): v is number[] =>
  Array.isArray(v) && v.length === n && v.every((e) => Number.isInteger(e) && e >= min);

function checkAttrs(op: string, a: Attrs): ConvAttrs {
  if (!isInts(a.strides, 2, 1)) throw new ShapeError(`${op}: strides must be two positive integers, got ${JSON.stringify(a.strides)}`);
  if (!isInts(a.padding, 4, 0)) throw new ShapeError(`${op}: padding must be four integers >= 0 [top, bottom, left, right], got ${JSON.stringify(a.padding)}`);
  if (!isInts(a.dilations, 2, 1)) throw new ShapeError(`${op}: dilations must be two positive integers, got ${JSON.stringify(a.dilations)}`);
  if (!Number.isInteger(a.groups) || (a.groups as number) < 1) throw new ShapeError(`${op}: groups must be a positive integer, got ${JSON.stringify(a.groups)}`);
  return a as unknown as ConvAttrs;
}

// ---------------------------------------------------------------- shape rules

const isStatic = (d: Dim): d is number => typeof d === 'number';

function rank4(op: string, what: string, n: Node, staticFrom: number): void {
  if (n.dtype !== 'f32') throw new ShapeError(`${op}: ${what} must be f32, got ${n.dtype}${shapeStr(n.shape)}`);
  if (n.shape.length !== 4) throw new ShapeError(`${op}: ${what} must have rank 4, got ${shapeStr(n.shape)}`);
  if (!n.shape.slice(staticFrom).every(isStatic)) throw new ShapeError(`${op}: ${what} ${shapeStr(n.shape)} must have static dims after the batch`);
}

/** Checks the geometry of x [B, H, W, C], filter [KH, KW, Cg, F] and (if given) dy; gives dy's shape. */
function convShape(op: string, a: ConvAttrs, x: Shape, k: readonly number[], dy?: Shape): Shape {
  const [B, H, W, C] = x as [Dim, number, number, number];
  const [KH, KW, Cg, F] = k;
  const G = a.groups;
  const what = () => `${op} of ${shapeStr(x)} with a [${k}] filter (strides [${a.strides}], padding [${a.padding}], dilations [${a.dilations}], groups ${G})`;
  if (C % G !== 0 || F % G !== 0) throw new ShapeError(`${what()}: ${G} groups must divide the ${C} input and ${F} output channels`);
  if (![KH, KW, Cg, F].every((d) => Number.isInteger(d) && d >= 1)) throw new ShapeError(`${what()}: bad filter shape`);
  if (Cg * G !== C) throw new ShapeError(`${what()}: the filter takes ${Cg} channels per group, but the input has ${C} in ${G} group(s)`);
  const [sh, sw] = a.strides, [pt, pb, pl, pr] = a.padding, [dh, dw] = a.dilations;
  const [OH, OW] = [convOutSize(H, KH, sh, dh, pt, pb), convOutSize(W, KW, sw, dw, pl, pr)];
  if (OH < 1 || OW < 1) throw new ShapeError(`${what()}: the dilated filter does not fit in the padded image`);
  const y: Shape = [B, OH, OW, F];
  if (dy && !(dy.length === 4 && dy.every((d, i) => d === y[i]))) throw new ShapeError(`${what()}: the output gradient is ${shapeStr(dy)}, expected ${shapeStr(y)}`);
  return y;
}

/** conv2d_backprop_filter's number of batch chunks (1: not split). */
export const splitsOf = (attrs: Attrs): number => (attrs.splits as number | undefined) ?? 1;
/** The chunk of image b: the s with ⌊s·B/S⌋ ≤ b < ⌊(s+1)·B/S⌋. */
const chunkOf = (b: number, B: number, S: number): number => Math.floor(((b + 1) * S - 1) / B);

const size2 = (op: string, v: unknown, what: string): [number, number] => {
  if (!isInts(v, 2, 1)) throw new ShapeError(`${op}: ${what} must be two positive integers, got ${JSON.stringify(v)}`);
  return v as [number, number];
};

// ---------------------------------------------------------------- geometry for the kernels

interface Geom {
  B: number; H: number; W: number; C: number;
  OH: number; OW: number; F: number;
  KH: number; KW: number; Cg: number; Fg: number; G: number;
  sh: number; sw: number; pt: number; pl: number; dh: number; dw: number;
}

function geom(x: readonly number[], w: readonly number[], y: readonly number[], attrs: Attrs): Geom {
  const a = attrs as unknown as ConvAttrs;
  const [B, H, W, C] = x, [KH, KW, Cg, F] = w, [, OH, OW] = y;
  const G = a.groups;
  return {
    B, H, W, C, OH, OW, F, KH, KW, Cg, Fg: F / G, G,
    sh: a.strides[0], sw: a.strides[1], pt: a.padding[0], pl: a.padding[2], dh: a.dilations[0], dw: a.dilations[1],
  };
}

/**
 * The taps of each output position (oh, ow) whose input pixel is inside the image (the same for
 * every image of the batch): for t in [start[p], start[p + 1]) of position p = oh·OW + ow, x's
 * pixel is at offset xo[t] within an image (…·C) and the tap's weights at wo[t] ((kh·KW + kw)·Cg·F).
 * The kernels loop over it, so their inner loops do no bounds checks and call nothing.
 */
function tapTable(g: Geom): { start: Int32Array; xo: Int32Array; wo: Int32Array } {
  const { H, W, C, OH, OW, KH, KW, Cg, F, sh, sw, pt, pl, dh, dw } = g;
  const start = new Int32Array(OH * OW + 1);
  const xo = new Int32Array(OH * OW * KH * KW), wo = new Int32Array(OH * OW * KH * KW);
  let t = 0;
  for (let oh = 0, p = 0; oh < OH; oh++)
    for (let ow = 0; ow < OW; ow++, p++) {
      start[p] = t;
      for (let kh = 0; kh < KH; kh++) {
        const ih = oh * sh - pt + kh * dh;
        if (ih < 0 || ih >= H) continue;
        for (let kw = 0; kw < KW; kw++) {
          const iw = ow * sw - pl + kw * dw;
          if (iw < 0 || iw >= W) continue;
          xo[t] = (ih * W + iw) * C;
          wo[t++] = (kh * KW + kw) * Cg * F;
        }
      }
    }
  start[OH * OW] = t;
  return { start, xo, wo };
}

// ---------------------------------------------------------------- WGSL
//
// Each invocation computes a register tile, without workgroup memory. SwiftShader runs four
// neighbouring invocations as the lanes of one SIMD instruction: a load whose four addresses are
// neighbouring floats is one vector load, equal addresses one load, anything else four loads with
// their own bounds checks, so loads per multiply-add and their lanes set the pace.
// Forward and backprop_input take R positions of one output row × CH channels (see `tiling`):
// each weight read feeds R multiply-adds and each pixel read CH; with neighbouring threads on
// neighbouring channels (NC a multiple of 16) weight reads are vector loads and pixel reads shared;
// on neighbouring positions, pixel reads of a one-channel image are vector loads and weight reads
// shared. LeNet-5's first layer (6 channels of a 1-channel image) ran 1.5× faster than with 8 × 8
// tiles of contiguous positions and channels (a quarter of them past the 6 channels), its second
// (16 channels) 1.3×, backprop_input 1.3–1.5×.
// backprop_filter takes PIX input channels × CH output channels of one tap, vec4 accumulators.
// Reads past an edge are clamped in bounds and zeroed with `select` (the forward kernel: where padded).
const PIX = 8, QUADS = 2, CH = 4 * QUADS;
const seq = (n: number): number[] => Array.from({ length: n }, (_, k) => k);
const PX = seq(PIX), QS = seq(QUADS);

/** The filter's dims KH, KW, CG (input 1's first three) as constants where the IR knows them (a
 *  layer's filter always: only the batch is symbolic), so that a one-channel loop is no loop at all:
 *  SwiftShader neither unrolls nor drops it, and LeNet-5's first layer (one input channel) ran 2.2×
 *  faster without it. */
function filterDims(sig: KernelSig): { decl: string; channels: (body: string) => string } {
  const dims = sig.inputs[1].shape.slice(0, 3);
  const decl = ['KH', 'KW', 'CG'].map((d, k) => (typeof dims[k] === 'number' ? `const ${d} = ${dims[k]}u;` : `let ${d} = M(IN1 + ${k}u);`)).join(' ');
  return { decl, channels: (body) => (dims[2] === 1 ? `{ let c = 0u;\n${body}\n}` : `for (var c = 0u; c < CG; c++) {\n${body}\n}`) };
}

/** Attributes baked into a kernel as constants, and `tap_range`. */
function wgslCommon(a: ConvAttrs): string {
  const [sh, sw] = a.strides, [pt, , pl] = a.padding, [dh, dw] = a.dilations;
  return `const SH: i32 = ${sh}; const SW: i32 = ${sw}; const PT: i32 = ${pt}; const PL: i32 = ${pl}; const DH: i32 = ${dh}; const DW: i32 = ${dw}; const G: u32 = ${a.groups}u;
// the t in [0, m) with 0 <= t·s + o < n, as [lo, hi)
fn tap_range(o: i32, s: i32, n: i32, m: i32) -> vec2<u32> {
  let lo = (max(-o, 0) + s - 1) / s;
  let hi = select(0, min((n - 1 - o) / s + 1, m), n - 1 - o >= 0);
  return vec2<u32>(u32(lo), u32(max(hi, lo)));
}`;
}

/** The channels c0 + 4v .. c0 + 4v + 3 of quad v of a tile, clamped to the last one (reads stay in bounds). */
const QUAD = (v: number) => `let q${v} = min(vec4<u32>(c0 + ${4 * v}u) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(NC - 1u));`;
const gather4 = (buf: string, idx: string) => `vec4<f32>(${buf}[${idx}.x], ${buf}[${idx}.y], ${buf}[${idx}.z], ${buf}[${idx}.w])`;
const TILE = { kind: 'tiles', rows: PIX, cols: CH } as const;
const ACCS = PX.flatMap((r) => QS.map((v) => `var acc${r}_${v} = vec4f();`)).join(' ');
/** Stores the tile through a loop (one copy of the store: smaller WGSL, faster pipeline builds),
 *  the positions x0 + r below `n` and channels below NC; `base(r)` is position r's first channel. */
const storeTile = (n: string, base: string) => `var tile = array<vec4<f32>, ${PIX * QUADS}>(${PX.flatMap((r) => QS.map((v) => `acc${r}_${v}`)).join(', ')});
  for (var r = 0u; r < ${PIX}u; r++) {
    for (var c = 0u; c < ${CH}u; c++) {
      if (x0 + r < ${n} && c0 + c < NC) { out[${base} + c] = tile[r * ${QUADS}u + c / 4u][c % 4u]; }
    }
  }`;

/** Tile coordinates over the output's last two dims [n, NC] (n = `cols`): c0, the first of the
 *  PIX positions `x0`, and `p`, the index over the leading dims. */
const tileHead = (cols: string, lead: string) => `let tn = (NC + ${CH - 1}u) / ${CH}u;
  let tm = (${cols} + ${PIX - 1}u) / ${PIX}u;
  if (i >= ${lead} * tm * tn) { return; }
  let c0 = i % tn * ${CH}u;
  let x0 = i / tn % tm * ${PIX}u;
  let p = i / (tn * tm);`;

/**
 * The register tile of a kernel over an output [.., n, NC] (n positions along a row, NC channels):
 * R positions × CH channels per thread (at most 64), the row split evenly. Where NC splits into a
 * multiple of 4 tiles of channels, neighbouring threads take neighbouring channels (thread j of
 * the row's tn takes channels j + k·tn) and share their positions; otherwise neighbouring threads
 * take neighbouring positions (thread px of the row's tm takes positions px + r·tm) and share
 * their channels. `aligned`: tm a multiple of 4, so that the four lanes stay on one row (the
 * forward kernel's reads of a one-channel image are then one vector load; backprop_input reads
 * dy per lane anyway and gains more from longer tiles: 7 positions ran 1.6× faster than 4).
 */
interface Tiling { lanes: 'channels' | 'positions'; R: number; CH: number }
function tiling(n: number, NC: number, aligned: boolean): Tiling {
  const even = (n: number, most: number) => Math.ceil(n / Math.ceil(n / most));
  if (NC % 16 === 0) {
    const CH = NC % 32 === 0 ? 8 : 4;
    return { lanes: 'channels', R: even(n, 64 / CH), CH };
  }
  return { lanes: 'positions', R: aligned ? Math.ceil(n / (4 * Math.ceil(n / 32))) : even(n, 8), CH: even(NC, 8) };
}

/** Thread i's tile: its row p (over the leading dims), the positions ob + r·os and channels
 *  fb + k·fs, with tm tiles along the row (n positions) and tn across the NC channels. */
const tileIndex = (t: Tiling, n: string, lead: string) => `let tn = (NC + ${t.CH - 1}u) / ${t.CH}u;
  let tm = (${n} + ${t.R - 1}u) / ${t.R}u;
  if (i >= ${lead} * tm * tn) { return; }
  ${t.lanes === 'channels'
    ? 'let fb = i % tn; let fs = tn; let ob = i / tn % tm * ' + t.R + 'u; let os = 1u;'
    : 'let ob = i % tm; let os = tm; let fb = i / tm % tn * ' + t.CH + 'u; let fs = 1u;'}
  let p = i / (tn * tm);`;

const regs = (t: Tiling) => seq(t.R).flatMap((r) => seq(t.CH).map((k) => [r, k]));
/** Stores the tile through a loop (one copy of the store: smaller WGSL, faster pipeline builds):
 *  `out[o] = x0`, or `store`, statements over each value x0 at index o and position x, channel f. */
const storeRegs = (t: Tiling, n: string, store = 'out[o] = x0;') => `var tile = array<f32, ${t.R * t.CH}>(${regs(t).map(([r, k]) => `a${r}_${k}`).join(', ')});
  for (var r = 0u; r < ${t.R}u; r++) {
    for (var k = 0u; k < ${t.CH}u; k++) {
      let x = ob + r * os; let f = fb + k * fs;
      if (x < ${n} && f < NC) {
        let x0 = tile[r * ${t.CH}u + k]; let o = (p * ${n} + x) * NC + f;
        ${store}
      }
    }
  }`;

/**
 * The WGSL of conv2d (inputs 0 and 1), with an epilogue from a fused node (ops/fused.ts) as a
 * matmul's (ops/matmul.ts matmulWgsl): `fns` at module scope, and `body`, statements run for each
 * output element `x0` at its coordinates c0..c3 and index `o` that store the outputs instead
 * (`prologue`: each thread first calls `prologue()`). A bias add and an activation run as the
 * tile is stored instead of as a kernel that reads the convolution back.
 */
export function convWgsl(sig: KernelSig, epilogue?: { fns: string; body: string; prologue: boolean }): KernelSource {
  const a = sig.attrs as unknown as ConvAttrs;
  const grouped = a.groups > 1;
  const [, , OWs, NCs] = sig.output.shape as number[];
  const t = tiling(OWs, NCs, true);
  const [RS, KS] = [seq(t.R), seq(t.CH)];
  const dims = filterDims(sig);
  // Without padding every tap of an output position is inside the image: no bounds to check
  // (LeNet-5's second layer ran 1.2× faster). A tile's positions past the row's end read past
  // it, and their sums are not stored.
  const padded = a.padding.some((p) => p !== 0);
  const code = `${epilogue?.fns ?? ''}
${wgslCommon(a)}
${MAIN} {
  let i = thread_id(gid, nwg);
  let H = i32(M(IN0 + 1u)); let W = i32(M(IN0 + 2u)); let C = M(IN0 + 3u);
  ${dims.decl}
  let OH = M(OUT + 1u); let OW = M(OUT + 2u); let NC = M(OUT + 3u);
  ${tileIndex(t, 'OW', 'M(OUT + 0u) * OH')}${epilogue?.prologue ? '\n  prologue();' : ''}
  let oh = i32(p % OH); let bi = p / OH;
  ${KS.map((k) => `let f${k} = min(fb + ${k}u * fs, NC - 1u);`).join(' ')}
  ${grouped ? KS.map((k) => `let xc${k} = f${k} / (NC / G) * CG;`).join(' ') : ''}
  ${regs(t).map(([r, k]) => `var a${r}_${k} = 0.0;`).join(' ')}
  let rk = tap_range(oh * SH - PT, DH, H, i32(KH));
  for (var kh = rk.x; kh < rk.y; kh++) {
    let row = (bi * u32(H) + u32(oh * SH - PT + i32(kh) * DH)) * u32(W);
    for (var kw = 0u; kw < KW; kw++) {
      ${RS.map((r) =>
        padded
          ? `let iw${r} = i32(ob + ${r}u * os) * SW - PL + i32(kw) * DW; let ok${r} = iw${r} >= 0 && iw${r} < W; let xb${r} = (row + u32(clamp(iw${r}, 0, W - 1))) * C;`
          : `let xb${r} = (row + (ob + ${r}u * os) * u32(SW) + kw * u32(DW)) * C;`,
      ).join('\n      ')}
      var wr = (kh * KW + kw) * CG * NC;
      ${dims.channels(`${KS.map((k) => `let w${k} = in1[wr + f${k}];`).join(' ')}
        ${RS.map((r) =>
          grouped
            ? KS.map((k) => `a${r}_${k} += ${padded ? `select(0.0, in0[xc${k} + xb${r} + c], ok${r})` : `in0[xc${k} + xb${r} + c]`} * w${k};`).join(' ')
            : `let x${r} = ${padded ? `select(0.0, in0[xb${r} + c], ok${r})` : `in0[xb${r} + c]`}; ${KS.map((k) => `a${r}_${k} += x${r} * w${k};`).join(' ')}`,
        ).join('\n        ')}
        wr += NC;`)}
    }
  }
  ${storeRegs(t, 'OW', epilogue && `let c0 = bi; let c1 = u32(oh); let c2 = x; let c3 = f;\n        ${epilogue.body}`)}
}`;
  return { code, grid: { kind: 'tiles', rows: t.R, cols: t.CH } };
}

function wgslBackpropInput(sig: KernelSig): KernelSource {
  const a = sig.attrs as unknown as ConvAttrs;
  const grouped = a.groups > 1;
  const [, , Ws, NCs] = sig.output.shape as number[];
  const t = tiling(Ws, NCs, false);
  const [RS, KS] = [seq(t.R), seq(t.CH)];
  // channel q of dx is c' = q % Cg of group q / Cg, whose outputs are f in [g·Fg, (g+1)·Fg);
  // pixel (y, x) gets tap (kh, kw) from output (oh, ow) when y + pt − kh·dh = oh·sh (and for x)
  const code = `
${wgslCommon(a)}
${MAIN} {
  let i = thread_id(gid, nwg);
  let OH = i32(M(IN0 + 1u)); let OW = i32(M(IN0 + 2u)); let F = M(IN0 + 3u);
  ${filterDims(sig).decl}
  let H = M(OUT + 1u); let W = M(OUT + 2u); let NC = M(OUT + 3u);
  ${tileIndex(t, 'W', 'M(OUT + 0u) * H')}
  let y = i32(p % H); let bi = p / H;
  ${KS.map((k) => `let q${k} = min(fb + ${k}u * fs, NC - 1u);`).join(' ')}
  ${grouped ? `let FG = F / G; ${KS.map((k) => `let fb${k} = q${k} / CG * FG; let cq${k} = q${k} % CG * F + fb${k};`).join(' ')}` : KS.map((k) => `let cq${k} = q${k} * F;`).join(' ')}
  ${regs(t).map(([r, k]) => `var a${r}_${k} = 0.0;`).join(' ')}
  for (var kh = 0u; kh < KH; kh++) {
    let th = y + PT - i32(kh) * DH;
    if (th < 0 || th % SH != 0 || th / SH >= OH) { continue; }
    let row = (bi * u32(OH) + u32(th / SH)) * u32(OW);
    for (var kw = 0u; kw < KW; kw++) {
      ${RS.map((r) => `let tw${r} = i32(ob + ${r}u * os) + PL - i32(kw) * DW; let ok${r} = tw${r} >= 0 && tw${r} % SW == 0 && tw${r} / SW < OW; let db${r} = (row + u32(clamp(tw${r} / SW, 0, OW - 1))) * F;`).join('\n      ')}
      let wt = (kh * KW + kw) * CG * F;
      for (var f = 0u; f < ${grouped ? 'FG' : 'F'}; f++) {
        ${KS.map((k) => `let w${k} = in1[cq${k} + wt + f];`).join(' ')}
        ${RS.map((r) =>
          grouped
            ? KS.map((k) => `a${r}_${k} += select(0.0, in0[fb${k} + db${r} + f], ok${r}) * w${k};`).join(' ')
            : `let d${r} = select(0.0, in0[db${r} + f], ok${r}); ${KS.map((k) => `a${r}_${k} += d${r} * w${k};`).join(' ')}`,
        ).join('\n        ')}
      }
    }
  }
  ${storeRegs(t, 'W')}
}`;
  return { code, grid: { kind: 'tiles', rows: t.R, cols: t.CH } };
}

function wgslBackpropFilter(sig: KernelSig): KernelSource {
  const a = sig.attrs as unknown as ConvAttrs;
  const grouped = a.groups > 1;
  // dw[kh, kw, c', f] = Σ_{b, oh, ow} x[b, ih, iw, g(f)·Cg + c'] · dy[b, oh, ow, f]. The tile is
  // PIX filter channels c' (x0 ..) × CH outputs f (c0 ..) of one tap (kh, kw) of one chunk of the
  // batch, p = (s·KH + kh)·KW + kw: the chunk varies slowest, so neighbouring invocations keep
  // reading neighbouring pixels and the same dy; a tile with one channel left (every tile when
  // Cg = 1, the first layer) reads that channel alone.
  const split = splitsOf(sig.attrs) > 1, o = split ? 1 : 0;
  const xc = (r: string, v: number) => (grouped ? `q${v} / (NC / G) * CG + vec4<u32>(${r})` : r);
  const step = (r: number | null, c: string) =>
    QS.map((v) =>
      grouped
        ? `acc${r ?? 0}_${v} += ${gather4('in0', `(${xc(c, v)} + vec4<u32>(xb))`)} * d${v};`
        : `acc${r ?? 0}_${v} += x${r ?? ''} * d${v};`,
    ).join(' ');
  const read = (r: number | null, c: string) => (grouped ? '' : `let x${r ?? ''} = in0[xb + ${c}]; `);
  /** The loops over (b, oh, ow) around `body`, which reads x at row offset xb and dy as d0, d1. */
  const loops = (body: string) => `for (var bi = b0; bi < b1; bi++) {
      for (var oh = rh.x; oh < rh.y; oh++) {
        let xrow = (bi * u32(H) + u32(i32(oh) * SH - PT + kh * DH)) * u32(W);
        let drow = (bi * OH + oh) * OW;
        for (var ow = rw.x; ow < rw.y; ow++) {
          let xb = (xrow + u32(i32(ow) * SW - PL + kw * DW)) * C;
          ${QS.map((v) => `let d${v} = ${gather4('in1', `(q${v} + vec4<u32>((drow + ow) * NC))`)};`).join(' ')}
          ${body}
        }
      }
    }`;
  const several = `${PX.map((r) => `let cr${r} = min(x0 + ${r}u, CG - 1u);`).join(' ')}
    ${loops(PX.map((r) => read(r, `cr${r}`) + step(r, `cr${r}`)).join('\n          '))}`;
  const one = loops(read(null, 'x0') + step(null, 'x0'));
  // Only the tiles that start at the last channel (CG % PIX == 1) read one; with CG known, the
  // kernel has just the loops it runs (half the code for LeNet-5's layers: faster pipeline builds)
  const cg = sig.output.shape[o + 2];
  const both = `if (x0 + 1u < CG) {\n${several}\n  } else {\n${one}\n  }`;
  const channels = typeof cg !== 'number' || (cg > 1 && cg % PIX === 1) ? both : cg === 1 ? one : several;
  const code = `
${wgslCommon(a)}
${MAIN} {
  let i = thread_id(gid, nwg);
  let B = M(IN0 + 0u); let H = i32(M(IN0 + 1u)); let W = i32(M(IN0 + 2u)); let C = M(IN0 + 3u);
  let OH = M(IN1 + 1u); let OW = M(IN1 + 2u);
  let KH = M(OUT + ${o}u); let KW = M(OUT + ${o + 1}u); let CG = M(OUT + ${o + 2}u); let NC = M(OUT + ${o + 3}u);
  ${tileHead('CG', split ? 'M(OUT) * KH * KW' : 'KH * KW')}
  let kw = i32(p % KW); let kh = i32(p / KW % KH);
  ${split ? 'let S = M(OUT); let s = p / (KH * KW); let b0 = s * B / S; let b1 = (s + 1u) * B / S;' : 'let b0 = 0u; let b1 = B;'}
  ${QS.map(QUAD).join(' ')}
  let rh = tap_range(kh * DH - PT, SH, H, i32(OH));
  let rw = tap_range(kw * DW - PL, SW, W, i32(OW));
  ${ACCS}
  ${channels}
  ${storeTile('CG', '(p * CG + x0 + r) * NC + c0')}
}`;
  return { code, grid: TILE };
}

// ---------------------------------------------------------------- the ops

const opts = (attrs: Attrs): ConvOpts => attrs as ConvOpts;
/** An image's [H, W] and a filter's [KH, KW]. */
const imageSize = (x: Node): number[] => [x.shape[1] as number, x.shape[2] as number];
const filterSize = (w: Node): number[] => [w.shape[0] as number, w.shape[1] as number];

export const conv2dCpu: CpuKernel = ([x, w], attrs, out, ctx) => {
  const g = geom(x.shape, w.shape, out.shape, attrs);
  const { B, H, W, C, OH, OW, Cg, Fg, G, F } = g;
  const { start, xo, wo } = tapTable(g);
  const X = x.data, Wt = w.data;
  const res = new ctx.float(numel(out.shape));
  for (let b = 0, ob = 0; b < B; b++)
    for (let p = 0; p < OH * OW; p++, ob += F)
      for (let t = start[p]; t < start[p + 1]; t++) {
        const xb = b * H * W * C + xo[t], wb = wo[t];
        for (let gi = 0; gi < G; gi++)
          for (let c = 0; c < Cg; c++) {
            const xv = X[xb + gi * Cg + c];
            const wr = wb + c * F + gi * Fg, orow = ob + gi * Fg;
            for (let f = 0; f < Fg; f++) res[orow + f] += xv * Wt[wr + f];
          }
      }
  return res;
};

// Scatter: each (output pixel, tap) adds Σ_f dy·w to one row of dx.
export const conv2dBackpropInputCpu: CpuKernel = ([dy, w], attrs, out, ctx) => {
  const g = geom(out.shape, w.shape, dy.shape, attrs);
  const { B, H, W, C, OH, OW, Cg, Fg, G, F } = g;
  const { start, xo, wo } = tapTable(g);
  const D = dy.data, Wt = w.data;
  const res = new ctx.float(numel(out.shape));
  for (let b = 0, ob = 0; b < B; b++)
    for (let p = 0; p < OH * OW; p++, ob += F)
      for (let t = start[p]; t < start[p + 1]; t++) {
        const xb = b * H * W * C + xo[t], wb = wo[t];
        for (let gi = 0; gi < G; gi++)
          for (let c = 0; c < Cg; c++) {
            const wr = wb + c * F + gi * Fg, drow = ob + gi * Fg;
            let s = 0;
            for (let f = 0; f < Fg; f++) s += D[drow + f] * Wt[wr + f];
            res[xb + gi * Cg + c] += s;
          }
      }
  return res;
};

export const conv2dBackpropFilterCpu: CpuKernel = ([x, dy], attrs, out, ctx) => {
  const k = out.shape.slice(-4), S = splitsOf(attrs), part = numel(k);
  const g = geom(x.shape, k, dy.shape, attrs);
  const { B, H, W, C, OH, OW, Cg, Fg, G, F } = g;
  const { start, xo, wo } = tapTable(g);
  const X = x.data, D = dy.data;
  const res = new ctx.float(S * part);
  for (let b = 0, ob = 0; b < B; b++)
    for (let p = 0, s = chunkOf(b, B, S) * part; p < OH * OW; p++, ob += F)
      for (let t = start[p]; t < start[p + 1]; t++) {
        const xb = b * H * W * C + xo[t], wb = s + wo[t];
        for (let gi = 0; gi < G; gi++)
          for (let c = 0; c < Cg; c++) {
            const xv = X[xb + gi * Cg + c];
            const wr = wb + c * F + gi * Fg, drow = ob + gi * Fg;
            for (let f = 0; f < Fg; f++) res[wr + f] += xv * D[drow + f];
          }
      }
  return res;
};

export const convOps = {
  conv2d: {
    shape([x, w, ...rest], attrs) {
      const op = 'conv2d';
      if (!x || !w || rest.length) throw new ShapeError(`${op} takes an image and a filter`);
      const a = checkAttrs(op, attrs);
      rank4(op, 'the image', x, 1);
      rank4(op, 'the filter', w, 0);
      return { shape: convShape(op, a, x.shape, w.shape as number[]), dtype: 'f32' };
    },
    vjp(node, ct) {
      const [x, w] = node.inputs;
      const o = opts(node.attrs);
      return [conv2dBackpropInput(ct, w, o, imageSize(x)), conv2dBackpropFilter(x, ct, o, filterSize(w))];
    },
    cpu: conv2dCpu,
    wgsl: (sig) => convWgsl(sig),
  },

  conv2d_backprop_input: {
    shape([dy, w, ...rest], attrs) {
      const op = 'conv2d_backprop_input';
      if (!dy || !w || rest.length) throw new ShapeError(`${op} takes an output gradient and a filter`);
      const a = checkAttrs(op, attrs);
      const [H, W] = size2(op, attrs.inputSize, 'inputSize');
      rank4(op, 'the output gradient', dy, 1);
      rank4(op, 'the filter', w, 0);
      const x: Shape = [dy.shape[0], H, W, (w.shape[2] as number) * a.groups];
      convShape(op, a, x, w.shape as number[], dy.shape);
      return { shape: x, dtype: 'f32' };
    },
    // ⟨bi(dy, w), ct⟩ = T(ct, w, dy): linear in dy (conv2d) and in w (backprop_filter)
    vjp(node, ct) {
      const [dy, w] = node.inputs;
      const o = opts(node.attrs);
      return [conv2d(ct, w, o), conv2dBackpropFilter(ct, dy, o, filterSize(w))];
    },
    cpu: conv2dBackpropInputCpu,
    wgsl: wgslBackpropInput,
  },

  conv2d_backprop_filter: {
    shape([x, dy, ...rest], attrs) {
      const op = 'conv2d_backprop_filter';
      if (!x || !dy || rest.length) throw new ShapeError(`${op} takes an image and an output gradient`);
      const a = checkAttrs(op, attrs);
      const [KH, KW] = size2(op, attrs.filterSize, 'filterSize');
      rank4(op, 'the image', x, 1);
      rank4(op, 'the output gradient', dy, 1);
      const S = splitsOf(attrs);
      if (!Number.isInteger(S) || S < 1) throw new ShapeError(`${op}: splits must be a positive integer, got ${JSON.stringify(attrs.splits)}`);
      const k = [KH, KW, (x.shape[3] as number) / a.groups, dy.shape[3] as number];
      convShape(op, a, x.shape, k, dy.shape);
      return { shape: S > 1 ? [S, ...k] : k, dtype: 'f32' };
    },
    // ⟨bf(x, dy), ct⟩ = T(x, ct, dy): linear in x (backprop_input) and in dy (conv2d)
    vjp(node, ct) {
      // the split form is made after autodiff, so nothing differentiates it
      if (splitsOf(node.attrs) > 1) throw new Error('conv2d_backprop_filter with splits > 1 has no VJP (it is made after autodiff)');
      const [x, dy] = node.inputs;
      const o = opts(node.attrs);
      return [conv2dBackpropInput(dy, ct, o, imageSize(x)), conv2d(x, ct, o)];
    },
    cpu: conv2dBackpropFilterCpu,
    wgsl: wgslBackpropFilter,
  },
} satisfies Record<string, OpDef>;
