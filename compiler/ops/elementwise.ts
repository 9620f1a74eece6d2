// Elementwise ops: unary math, binary arithmetic and comparisons with NumPy broadcasting, and
// select. One table row per op holds its typing, its CPU scalar function, its WGSL expression and
// its VJP; the shape rule, the CPU kernel and the WGSL kernel are written once for all rows.
//
// Integer semantics (i32, matching WGSL): + - * wrap around (two's complement); `div` truncates
// toward zero and x / 0 = x (WGSL's rule); `pow` with an exponent < 0 is 1 / a^|b| truncated (so 0
// unless a is 1 or -1); max/min/abs/sign/neg as usual. Booleans are i32 0/1.
// Float `pow` follows Math.pow in WGSL too: x^0 = 1, a negative base with an integer exponent keeps
// its sign by the exponent's parity, and a negative base with a fractional exponent gives NaN.

import * as b from '../ir/build.ts';
import { ShapeError, broadcastShapes, typeStr, type Attrs, type DType, type Node, type Shape } from '../ir/node.ts';
import type { UnaryKind, BinaryKind } from './registry.ts';
import type { CpuCtx, CpuKernel, KernelSig, KernelSource, OpDef, Tensor, TypedArray } from './types.ts';
import { numel } from '../../runtime/shapes.ts';

// ---------------------------------------------------------------------------------------------
// Shared helpers (reduce, leaf and random use them too)

/** Called with three arguments whatever the arity (unused ones are junk): wrap variadic functions
 *  such as Math.max. */
type Scalar = (a: number, b: number, c: number) => number;

/** A fresh zeroed output array: `ctx.float` for f32, Int32Array for i32 and bool (or ctx.alloc's). */
export function alloc(dtype: DType, n: number, ctx: CpuCtx): TypedArray {
  if (ctx.alloc) return ctx.alloc(n, dtype !== 'f32');
  return dtype === 'f32' ? new ctx.float(n) : new Int32Array(n);
}

/** `o` with `f` applied to each value. (Tables built with it are marked pure, so that one nothing
 *  uses leaves a bundle.) */
export function mapValues<K extends string, V, W>(o: Readonly<Record<K, V>>, f: (v: V, k: K) => W): Record<K, W> {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, f(v as V, k as K)])) as Record<K, W>;
}

/** Strides for reading a tensor of `shape` at the multi-indices of the broadcast shape `full`:
 *  0 on stretched (size-1) and missing leading axes. */
export function broadcastStrides(shape: readonly number[], full: readonly number[]): number[] {
  const st = new Array<number>(full.length).fill(0);
  for (let k = shape.length - 1, s = 1; k >= 0; k--) {
    if (shape[k] !== 1) st[k + full.length - shape.length] = s;
    s *= shape[k];
  }
  return st;
}

/** Flat offsets (under `strides`) of every multi-index of `dims`, in row-major order. */
export function boxOffsets(dims: readonly number[], strides: readonly number[]): Int32Array {
  let offs = new Int32Array([0]);
  dims.forEach((d, k) => {
    const next = new Int32Array(offs.length * d);
    for (let i = 0; i < offs.length; i++) for (let j = 0; j < d; j++) next[i * d + j] = offs[i] + j * strides[k];
    offs = next;
  });
  return offs;
}

/** WGSL has no literals for infinities and NaN (and rejects them in constant expressions): they are
 *  made from their bits at run time by this function, which a kernel using them must include. */
export const WGSL_BITS = 'fn bits_f32(b: u32) -> f32 { return bitcast<f32>(b); }';

/** A WGSL literal of `dtype`; infinities and NaN call `bits_f32` (WGSL_BITS). */
/* @__NO_SIDE_EFFECTS__ */ export function wgslLiteral(v: number, dtype: DType): string {
  if (dtype !== 'f32') return `i32(${Number.isNaN(v) ? 0 : Math.max(-2147483648, Math.min(2147483647, Math.trunc(v)))})`;
  if (Number.isNaN(v)) return 'bits_f32(0x7fc00000u)';
  if (!Number.isFinite(v)) return `bits_f32(${v > 0 ? '0x7f800000u' : '0xff800000u'})`;
  const s = String(Math.fround(v));
  return /[.e]/.test(s) ? `f32(${s})` : `${s}.0`;
}

export const MAIN = '@compute @workgroup_size(WG) fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>)';

/** A kernel over the output's elements: `fns`, then `body` (WGSL statements over the flat output
 *  index `i`) and the values `results` there, stored into `out`, `out1`, ... (`prologue`: each
 *  thread first calls `prologue()`, which `fns` defines). Cheap elements go four
 *  consecutive ones per thread, so each thread's own work (its id, the bounds, single-value loads)
 *  is shared by four (about 1.8× faster on SwiftShader than one per thread); elements that loop (a
 *  folded reduction over many values) one per thread, which keeps few outputs spread over threads. */
export function elementKernel(fns: string, body: readonly string[], results: readonly string[], loops = false, prologue = false): KernelSource {
  const element = `${fns}
fn element(i: u32) {
  ${[...body, ...results.map((r, k) => `out${k || ''}[i] = ${r};`)].join('\n  ')}
}
${MAIN} {${prologue ? '\n  prologue();' : ''}`;
  if (loops) return { code: `${element}
  let i = thread_id(gid, nwg);
  if (i < M(0u)) { element(i); }
}`, grid: { kind: 'elements' } };
  // 1×4 tiles are at least ceil(n / 4) threads (a few more where a row's last quad is partial:
  // they find no elements), thread t computing elements 4t.. of the flat output
  const code = `${element}
  let i = thread_id(gid, nwg) * 4u;
  let n = M(0u);
  if (i + 4u <= n) {
    element(i); element(i + 1u); element(i + 2u); element(i + 3u);
  } else {
    for (var j = i; j < n; j++) { element(j); }
  }
}`;
  return { code, grid: { kind: 'tiles', rows: 1, cols: 4 } };
}

/** WGSL statements that split the thread id `i` into output coordinates c{rank-1} down to c{from}
 *  (the walk stops at the outermost coordinate a kernel reads). */
export function wgslCoords(rank: number, from = 0): string {
  if (rank === 0) return '';
  const lines = ['var rem = i;'];
  for (let k = rank - 1; k > from; k--) lines.push(`let c${k} = rem % M(OUT + ${k}u); rem = rem / M(OUT + ${k}u);`);
  lines.push(from ? `let c${from} = rem % M(OUT + ${from}u);` : 'let c0 = rem;');
  return lines.join('\n  ');
}

/** WGSL index into input `k` (of `rank`) at the output coordinates, broadcasting its size-1 and
 *  missing leading dims (read from meta). */
export function wgslBroadcastIndex(k: number, rank: number, outRank: number): string {
  let e = '0u';
  for (let a = 0; a < rank; a++) {
    const d = `M(IN${k} + ${a}u)`;
    const c = `c${a + outRank - rank} % ${d}`;
    e = a === 0 ? c : `(${e}) * ${d} + ${c}`;
  }
  return e;
}

/** The output's axes as runs of neighbours that an input of `shape` either reads along (`keep`:
 *  its dim is the output's) or is broadcast along (its dim is 1 or missing); axes of size 1 in the
 *  output are left out, as are the broadcast axes outside the outermost kept one (`outer` says
 *  there were any). Known from the IR's shapes (a symbolic dim equals only itself). */
function broadcastRuns(shape: Shape, out: Shape): { runs: { keep: boolean; axes: number[] }[]; outer: boolean } {
  const runs: { keep: boolean; axes: number[] }[] = [];
  out.forEach((d, a) => {
    if (d === 1) return;
    const keep = (shape[a - out.length + shape.length] ?? 1) !== 1;
    if (runs.length && runs[runs.length - 1].keep === keep) runs[runs.length - 1].axes.push(a);
    else runs.push({ keep, axes: [a] });
  });
  const outer = runs.length > 0 && !runs[0].keep;
  return { runs: outer ? runs.slice(1) : runs, outer };
}

const product = (xs: string[]) => (xs.length > 1 ? `(${xs.join(' * ')})` : xs[0]);

/**
 * WGSL index into an input of `shape` at output element `i` (of `out`, NumPy broadcasting), with
 * as little index math as the shapes allow (a run-time division is scalar and slow on some GPUs,
 * SwiftShader's among them): an input of the output's shape reads `i`, a single value `0u`, one
 * broadcast along leading axes (a bias [N] of [B, N]) `i % N`; otherwise each run of kept axes
 * (broadcastRuns) takes its part of `i` by a division and a modulo.
 */
export function wgslElementIndex(shape: Shape, out: Shape): string {
  const { runs, outer } = broadcastRuns(shape, out);
  const terms: string[] = [];
  const below: string[] = []; // the dims inside the current run
  const stride: string[] = []; // the kept ones among them
  for (let j = runs.length - 1; j >= 0; j--) {
    const dims = runs[j].axes.map((a) => `M(OUT + ${a}u)`);
    if (runs[j].keep) {
      const q = below.length ? `i / ${product(below)}` : 'i';
      // the outermost axes' part needs no modulo
      const c = j === 0 && !outer ? q : `${below.length ? `(${q})` : q} % ${product(dims)}`;
      terms.unshift(stride.length ? `(${c}) * ${product(stride)}` : c);
      stride.push(...dims);
    }
    below.push(...dims);
  }
  return terms.join(' + ') || '0u';
}

/** WGSL index into an input of `shape` at output coordinates c0.. (of `out`, broadcasting), the
 *  output's dim `a` being `dim(a)`: its kept axes' coordinates in Horner form, no modulo. */
export function wgslCoordIndex(shape: Shape, out: Shape, dim: (a: number) => string): string {
  let e = '';
  out.forEach((d, a) => {
    if (d === 1 || (shape[a - out.length + shape.length] ?? 1) === 1) return;
    e = e ? `(${e}) * ${dim(a)} + c${a}` : `c${a}`;
  });
  return e || '0u';
}

/** Applies `f` elementwise over `ins` broadcast to `shape`, writing `out`. */
function mapBroadcast(f: Scalar, ins: readonly Tensor[], shape: readonly number[], out: TypedArray): void {
  const n = out.length;
  const [A, B = A, C = A] = ins.map((t) => t.data);
  if (ins.every((t) => t.data.length === n || t.data.length === 1)) {
    // Same layout as the output, or a single value: no index math.
    if (ins.length === 1) for (let i = 0; i < n; i++) out[i] = f(A[i], 0, 0);
    else {
      const [ka, kb = 0, kc = 0] = ins.map((t) => (t.data.length === n ? 1 : 0));
      for (let i = 0; i < n; i++) out[i] = f(A[i * ka], B[i * kb], C[i * kc]);
    }
    return;
  }
  // Row by row over the last axis, with an odometer over the others.
  const R = shape.length;
  const st = ins.map((t) => broadcastStrides(t.shape, shape));
  const [sa, sb = 0, sc = 0] = st.map((s) => s[R - 1]);
  const [ta, tb = ta, tc = ta] = st;
  const len = shape[R - 1];
  const idx = new Array<number>(R).fill(0);
  let pa = 0, pb = 0, pc = 0;
  for (let o = 0; o < n; o += len) {
    for (let j = 0; j < len; j++) out[o + j] = f(A[pa + j * sa], B[pb + j * sb], C[pc + j * sc]);
    for (let k = R - 2; k >= 0; k--) {
      pa += ta[k]; pb += tb[k]; pc += tc[k];
      if (++idx[k] < shape[k]) break;
      pa -= ta[k] * shape[k]; pb -= tb[k] * shape[k]; pc -= tc[k] * shape[k];
      idx[k] = 0;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The table

/** What an op takes and gives: float f32→f32; num f32|i32→same; cmp equal dtypes→bool;
 *  logic bool→bool; select (bool, T, T)→T; cast any→attrs.to. */
type Typing = 'float' | 'num' | 'cmp' | 'logic' | 'select' | 'cast';

type Kind = UnaryKind | BinaryKind | 'select';

/** The CPU half of a row: all that CPU kernels (this file's and fused ones) need. */
export interface ScalarRow {
  arity: 1 | 2 | 3;
  typing: Typing;
  /** The scalar function for operands of dtype `t` (the value operands') giving dtype `to`. */
  cpu(t: DType, to: DType): Scalar;
}

export interface Row extends ScalarRow {
  /** The WGSL expression over operand expressions `x`. */
  wgsl(x: string[], t: DType, to: DType): string;
  /** WGSL functions the expression calls, at operands of type `t`. */
  fns?: (t: DType) => string;
  /** Cotangents of the inputs `x` of `y` from `ct`, built from IR ops; null: no gradient (or zero). */
  vjp(x: readonly Node[], y: Node, ct: Node): (Node | null)[];
}

/** The same scalar function for every dtype, or an override for i32 operands. */
const fn = /* @__NO_SIDE_EFFECTS__ */ (f: Scalar, int: Scalar = f) => (t: DType) => (t === 'i32' ? int : f);
const none = (x: readonly Node[]) => x.map(() => null);
const zero = () => b.constant(0);
const ge = (p: Node, q: Node) => b.binary('ge', p, q);
const le = (p: Node, q: Node) => b.binary('le', p, q);

function ipow(a: number, e: number): number {
  if (e < 0) return a === 1 ? 1 : a === -1 ? (e & 1 ? -1 : 1) : 0;
  let r = 1;
  for (; e > 0; e >>= 1) {
    if (e & 1) r = Math.imul(r, a);
    a = Math.imul(a, a);
  }
  return r;
}

// Built by a call marked pure (a template literal with substitutions is not), so bundles drop it.
const FPOW = /* @__PURE__ */ [WGSL_BITS, `fn fpow(a: f32, e: f32) -> f32 {
  if (e == 0.0) { return 1.0; }
  if (a >= 0.0) { return pow(a, e); }
  if (floor(e) != e) { return ${wgslLiteral(NaN, 'f32')}; }
  let m = pow(-a, e);
  return select(m, -m, abs(e) % 2.0 == 1.0);
}`].join('\n');
const IPOW = `fn ipow(a0: i32, e0: i32) -> i32 {
  if (e0 < 0) { return select(select(0, select(1, -1, (e0 & 1) != 0), a0 == -1), 1, a0 == 1); }
  var r = 1; var a = a0; var e = e0;
  while (e > 0) { if ((e & 1) != 0) { r = r * a; } a = a * a; e = e >> 1u; }
  return r;
}`;

const castTo: Record<DType, Scalar> = {
  f32: (a) => a,
  i32: (a) => (a !== a ? 0 : Math.min(2147483647, Math.max(-2147483648, Math.trunc(a)))),
  bool: (a) => (a !== 0 ? 1 : 0),
};

const s1 = /* @__NO_SIDE_EFFECTS__ */ (typing: Typing, cpu: ScalarRow['cpu']): ScalarRow => ({ arity: 1, typing, cpu });
const s2 = /* @__NO_SIDE_EFFECTS__ */ (typing: Typing, cpu: ScalarRow['cpu']): ScalarRow => ({ arity: 2, typing, cpu });
const cmp = /* @__NO_SIDE_EFFECTS__ */ (f: (a: number, b: number) => boolean) => s2('cmp', () => (a, c) => (f(a, c) ? 1 : 0));

/** The CPU half of the table, apart from the WGSL and VJP half below so that a bundle's CPU
 *  kernels carry no compiler code (IR builders, WGSL templates). */
export const scalarRows: Readonly<Record<Kind, ScalarRow>> = {
  neg: s1('num', fn((a) => -a)),
  exp: s1('float', fn(Math.exp)),
  log: s1('float', fn(Math.log)),
  sqrt: s1('float', fn(Math.sqrt)),
  abs: s1('num', fn(Math.abs)),
  sin: s1('float', fn(Math.sin)),
  cos: s1('float', fn(Math.cos)),
  floor: s1('float', fn(Math.floor)),
  sign: s1('num', fn(Math.sign)),
  not: s1('logic', fn((a) => a ^ 1)),
  cast: s1('cast', (_, to) => castTo[to]),

  add: s2('num', fn((a, c) => a + c)),
  sub: s2('num', fn((a, c) => a - c)),
  mul: s2('num', fn((a, c) => a * c, Math.imul)),
  div: s2('num', fn((a, c) => a / c, (a, c) => (c === 0 ? a : Math.trunc(a / c)))),
  pow: s2('num', fn(Math.pow, ipow)),
  max: s2('num', fn((a, c) => Math.max(a, c))),
  min: s2('num', fn((a, c) => Math.min(a, c))),

  eq: cmp((a, c) => a === c),
  ne: cmp((a, c) => a !== c),
  lt: cmp((a, c) => a < c),
  le: cmp((a, c) => a <= c),
  gt: cmp((a, c) => a > c),
  ge: cmp((a, c) => a >= c),
  and: s2('logic', fn((a, c) => a & c)),
  or: s2('logic', fn((a, c) => a | c)),

  select: { arity: 3, typing: 'select', cpu: () => (c, p, q) => (c !== 0 ? p : q) },
};

const row = /* @__NO_SIDE_EFFECTS__ */ (op: Kind, wgsl: Row['wgsl'], vjp: Row['vjp'], fns?: Row['fns']): Row => ({ ...scalarRows[op], wgsl, vjp, fns });
const unary = /* @__NO_SIDE_EFFECTS__ */ (op: Kind, wgsl: (a: string, t: DType, to: DType) => string, vjp: Row['vjp'], fns?: Row['fns']): Row =>
  row(op, ([a], t, to) => wgsl(a, t, to), vjp, fns);
const binary = /* @__NO_SIDE_EFFECTS__ */ (op: Kind, wgsl: (a: string, b: string, t: DType) => string, vjp: Row['vjp'], fns?: Row['fns']): Row =>
  row(op, ([a, c], t) => wgsl(a, c, t), vjp, fns);
const compare = /* @__NO_SIDE_EFFECTS__ */ (op: Kind, sym: string): Row => binary(op, (a, c) => `i32(${a} ${sym} ${c})`, none);

const rows: Record<Kind, Row> = {
  neg: unary('neg', (a) => `-(${a})`, (_, __, ct) => [b.neg(ct)]),
  exp: unary('exp', (a) => `exp(${a})`, (_, y, ct) => [b.mul(ct, y)]),
  log: unary('log', (a) => `log(${a})`, ([x], _, ct) => [b.div(ct, x)]),
  sqrt: unary('sqrt', (a) => `sqrt(${a})`, (_, y, ct) => [b.div(ct, b.mul(b.constant(2), y))]),
  abs: unary('abs', (a) => `abs(${a})`, ([x], _, ct) => [b.mul(ct, b.sign(x))]),
  sin: unary('sin', (a) => `sin(${a})`, ([x], _, ct) => [b.mul(ct, b.cos(x))]),
  cos: unary('cos', (a) => `cos(${a})`, ([x], _, ct) => [b.neg(b.mul(ct, b.sin(x)))]),
  floor: unary('floor', (a) => `floor(${a})`, none), // zero gradient almost everywhere
  sign: unary('sign', (a) => `sign(${a})`, none), // zero gradient almost everywhere
  not: unary('not', (a) => `(${a} ^ 1)`, none),
  cast: unary('cast', (a, t, to) => (to === 'bool' ? `i32(${a} != ${wgslLiteral(0, t)})` : `${to}(${a})`),
    ([x], y, ct) => [x.dtype === 'f32' && y.dtype === 'f32' ? ct : null]), // only f32 → f32 (which `cast` never builds) has one

  add: binary('add', (a, c) => `${a} + ${c}`, (_, __, ct) => [ct, ct]),
  sub: binary('sub', (a, c) => `${a} - ${c}`, (_, __, ct) => [ct, b.neg(ct)]),
  mul: binary('mul', (a, c) => `${a} * ${c}`, ([p, q], _, ct) => [b.mul(ct, q), b.mul(ct, p)]),
  div: binary('div', (a, c) => `${a} / ${c}`, ([, q], y, ct) => [b.div(ct, q), b.neg(b.mul(ct, b.div(y, q)))]),
  pow: binary('pow', (a, c, t) => `${t === 'i32' ? 'ipow' : 'fpow'}(${a}, ${c})`,
    ([p, q], y, ct) => [
      b.mul(ct, b.mul(q, b.pow(p, b.sub(q, b.constant(1))))),
      b.mul(ct, b.mul(y, b.select(b.binary('gt', p, zero()), b.log(p), zero()))),
    ], (t) => (t === 'i32' ? IPOW : FPOW)),
  // Ties send the whole cotangent to the first operand.
  max: binary('max', (a, c) => `max(${a}, ${c})`, ([p, q], _, ct) => [b.select(ge(p, q), ct, zero()), b.select(ge(p, q), zero(), ct)]),
  min: binary('min', (a, c) => `min(${a}, ${c})`, ([p, q], _, ct) => [b.select(le(p, q), ct, zero()), b.select(le(p, q), zero(), ct)]),

  eq: compare('eq', '=='),
  ne: compare('ne', '!='),
  lt: compare('lt', '<'),
  le: compare('le', '<='),
  gt: compare('gt', '>'),
  ge: compare('ge', '>='),
  and: binary('and', (a, c) => `${a} & ${c}`, none),
  or: binary('or', (a, c) => `${a} | ${c}`, none),

  select: row('select', ([c, p, q]) => `select(${q}, ${p}, ${c} != 0)`, ([c], _, ct) => [null, b.select(c, ct, zero()), b.select(c, zero(), ct)]),
};

// ---------------------------------------------------------------------------------------------
// The shape rule, CPU kernel and WGSL kernel shared by every row

const isNum = (t: DType) => t === 'f32' || t === 'i32';
const DTYPES: readonly DType[] = ['f32', 'i32', 'bool'];

export function resultType(op: string, typing: Typing, x: readonly Node[], attrs: Attrs): DType {
  const t = x.map((n) => n.dtype);
  const bad = (want: string) => new ShapeError(`${op} expects ${want}, got ${x.map(typeStr).join(', ')}`);
  const same = t.every((d) => d === t[0]);
  switch (typing) {
    case 'float':
      if (t[0] !== 'f32') throw bad('f32');
      return 'f32';
    case 'num':
      if (!same || !isNum(t[0])) throw bad('operands of one dtype, f32 or i32');
      return t[0];
    case 'cmp':
      if (!same) throw bad('operands of one dtype');
      return 'bool';
    case 'logic':
      if (!t.every((d) => d === 'bool')) throw bad('bool operands');
      return 'bool';
    case 'select':
      if (t[0] !== 'bool' || t[1] !== t[2]) throw bad('a bool condition and two branches of one dtype');
      return t[1];
    case 'cast':
      if (!DTYPES.includes(attrs.to as DType)) throw new ShapeError(`cast to unknown dtype ${String(attrs.to)}`);
      return attrs.to as DType;
  }
}

/** The value operands' dtype (select's branches, otherwise the first operand). */
export const valueType = (row: ScalarRow, dts: readonly DType[]): DType => dts[row.typing === 'select' ? 1 : 0];

/** The CPU kernel of a row (fused programs run theirs line by line). */
export const rowKernel = (row: ScalarRow): CpuKernel => (ins, _attrs, out, ctx) => {
  const data = alloc(out.dtype, numel(out.shape), ctx);
  mapBroadcast(row.cpu(valueType(row, ins.map((t) => (t.data instanceof Int32Array ? 'i32' : 'f32'))), out.dtype), ins, out.shape, data);
  return data;
};

/** Each op's CPU kernel (runtime/cpu_kernels.ts exports them one by one). */
export const elementwiseCpu = /* @__PURE__ */ mapValues(scalarRows, rowKernel);

function define(op: Kind, row: Row): OpDef {
  return {
    shape(inputs, attrs) {
      if (inputs.length !== row.arity) throw new ShapeError(`${op} takes ${row.arity} operand(s), got ${inputs.length}`);
      return { shape: broadcastShapes(inputs.map((n) => n.shape)), dtype: resultType(op, row.typing, inputs, attrs) };
    },
    vjp: (node, ct) => row.vjp(node.inputs, node, ct),
    cpu: elementwiseCpu[op],
    wgsl(sig: KernelSig) {
      const loads = sig.inputs.map((inp, k) => `let x${k} = in${k}[${wgslElementIndex(inp.shape, sig.output.shape)}];`);
      const t = valueType(row, sig.inputs.map((i) => i.dtype));
      return elementKernel(row.fns?.(t) ?? '', loads, [row.wgsl(sig.inputs.map((_, k) => `x${k}`), t, sig.output.dtype)]);
    },
  };
}

/** The whole table: fused kernels (ops/fused.ts) use its rows' WGSL expressions line by line (and
 *  scalarRows' functions on the CPU). */
export const elementwiseRows: Readonly<Record<Kind, Row>> = rows;

export const elementwiseOps = /* @__PURE__ */ mapValues(rows, (row, op) => define(op, row));
