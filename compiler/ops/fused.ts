// A fused elementwise kernel: one node that computes a small SSA program of elementwise ops over
// its inputs, per output element, with NumPy broadcasting. The fusion pass (passes/fuse.ts) makes
// these from chains and trees of elementwise ops after autodiff, so there is no VJP.
//
// attrs:
//   code   the SSA lines, separated by `; `, each `OP OPERAND...`; line k defines `rk`. OP is a row of the
//          elementwise table (ops/elementwise.ts), `cast.T` (T a dtype) or `size.D*D*...` (the
//          product of dims, symbolic ones bound at run time, as an f32; no operands), `iota.A` (the
//          output coordinate along axis A, an i32: a one-hot's index ramp). An operand is
//          `iK` (input K read at the output coordinates, broadcast), `rK` (an earlier line), or a
//          literal `T:V` (dtype T, value V as JavaScript prints it: `f32:0.001`, `bool:1`).
//          A line `R.A,B.. iK` (R a reduction: sum, mean, reduce_max, reduce_min, or argmax over
//          one axis) is input K reduced over its axes A, B..: what is left of its shape is the
//          output's (leading 1s aside), so each output element folds its own values of input K (a
//          bias gradient's column sum feeding the optimizer's update runs in the update's thread;
//          the predicted class feeding an accuracy's mean, in the mean's loop).
//   shape  the output shape; every input broadcasts to it. The last line is the result.
//   reduce, axes (optional)  a reduction (sum, mean, reduce_max, reduce_min) of the program's
//          values over `axes` of `shape`, with kept dims: the output is `shape` with those axes 1.
//          The elementwise producers of a reduction are then computed in its loads.
//   matmul (optional)  `nn`, `nt`, `tn` or `tt`: the program is the epilogue of a matrix product
//          of the first two inputs (the second letter `t`: input 0 read transposed, as matmul's
//          transA; the third: input 1, transB). Operand `i0` is then the product at the output
//          coordinates and `iK` (K >= 1) is input K + 1; `shape` is the product's shape. A bias
//          add and an activation run in the matmul kernel's epilogue instead of a kernel of their
//          own that reads the product back.
//   conv2d (optional)  true: the same for the convolution of image input 0 by filter input 1,
//          with conv2d's own attributes (strides, padding, dilations, groups) beside it.
//   results (WGSL only)  the registers a kernel stores into `out`, `out1`, ... (default: the
//          last line's): codegen/merge.ts gives a kernel that computes several nodes one program.
//
// The CPU kernel runs the program line by line over whole arrays with the table's own CPU kernels
// (so fused and unfused programs agree bit for bit on the CPU; lines that only read size-1 inputs
// run once): short code for bundles, and no eval (the wasm path, runtime/wasm.ts, is the fast one).
// The WGSL kernel is one `let` per line with the table's expression templates; the lines that are
// the same for the whole dispatch run once per thread, in its prologue.

import { ShapeError, broadcastShapes, sameShape, shapeStr, type Attrs, type DType, type Dim, type Node, type Shape } from '../ir/node.ts';
import type { CpuCtx, CpuKernel, KernelSig, OpDef, Tensor, TypedArray } from './types.ts';
import {
  MAIN, WGSL_BITS, alloc, elementKernel, rowKernel, elementwiseRows, resultType, scalarRows, valueType, wgslCoordIndex, wgslCoords, wgslElementIndex, wgslLiteral,
  type ScalarRow,
} from './elementwise.ts';
import { reduceCpu, reduceRows } from './reduce.ts';
import { matmulOps, matmulWgsl } from './matmul.ts';
import { convOps, convWgsl } from './conv.ts';
import { iotaCpu } from './leaf.ts';
import { takeCpu } from './gather.ts';
import { numel } from '../../runtime/shapes.ts';
import { wgslType } from '../codegen/wgsl.ts';

/** The most storage buffers a kernel binds: WebGPU guarantees 8 per stage. A fused node binds its
 *  inputs and its output. */
export const MAX_BINDINGS = 8;
export const MAX_FUSED_INPUTS = MAX_BINDINGS - 1;

/** A scalar hyperparameter takes no binding: kernels read it from the program's hyper uniform
 *  (runtime/program.ts hyperSlots). */
export const unbound = (x: { op: string; attrs: Readonly<Record<string, unknown>>; shape: readonly unknown[] }): boolean => x.op === 'arg' && x.attrs.role === 'hyper' && !x.shape.length;

const DTYPES: readonly DType[] = ['f32', 'i32', 'bool'];

export type Operand = { kind: 'in'; k: number } | { kind: 'reg'; k: number } | { kind: 'lit'; value: number; dtype: DType };

export interface Line {
  /** A row of the elementwise table, or 'size'. */
  op: string;
  /** The CPU half of the op's row (the WGSL half is elementwiseRows[op]). */
  row?: ScalarRow;
  /** cast's target dtype. */
  to?: DType;
  /** size's dims. */
  dims?: Dim[];
  /** A reduction line's axes (of its input). */
  axes?: number[];
  /** iota's axis. */
  axis?: number;
  /** A take line: input args[0] read at the entry args[1] of its last axis. */
  gather?: true;
  args: Operand[];
  dtype: DType;
}

export interface FusedProgram {
  lines: Line[];
  dtype: DType;
}

// ---------------------------------------------------------------- the text form

/** `value` as an SSA literal operand. */
export function literalOperand(value: number, dtype: DType): string {
  return `${dtype}:${Object.is(value, -0) ? '-0' : String(value)}`;
}

export function sizeOp(dims: readonly Dim[]): string {
  return `size.${dims.join('*')}`;
}

function parseOperand(s: string, nIn: number, nLines: number): Operand {
  const m = /^([ir])(\d+)$/.exec(s);
  if (m) {
    const k = Number(m[2]);
    if (m[1] === 'i') {
      if (k >= nIn) throw new ShapeError(`fused: operand ${s} but only ${nIn} input(s)`);
      return { kind: 'in', k };
    }
    if (k >= nLines) throw new ShapeError(`fused: operand ${s} is used before it is defined`);
    return { kind: 'reg', k };
  }
  const colon = s.indexOf(':');
  const dtype = s.slice(0, colon) as DType;
  const value = Number(s.slice(colon + 1));
  if (colon < 0 || !DTYPES.includes(dtype) || (Number.isNaN(value) && s.slice(colon + 1) !== 'NaN')) throw new ShapeError(`fused: bad operand '${s}'`);
  return { kind: 'lit', value, dtype };
}

/** A line's dtype from its row, its operands' dtypes and cast's target. */
type LineType = (op: string, row: ScalarRow, ts: readonly DType[], to: DType | undefined) => DType;

/** Checked as the unfused op's shape rule would (throws ShapeError). */
const checkedType: LineType = (op, row, ts, to) =>
  resultType(op, row.typing, ts.map((dtype) => ({ dtype, shape: [] }) as unknown as Node), op === 'cast' ? { to: to! } : {});

/** Without checks, for CPU kernels, which see i32 and bool inputs alike (Int32Array) and only need
 *  to know f32 from integers. Apart from checkedType so that a bundle's CPU kernels carry no shape
 *  rules. */
const looseType: LineType = (_, row, ts, to) => {
  switch (row.typing) {
    case 'float':
      return 'f32';
    case 'num':
      return ts[0];
    case 'cmp':
    case 'logic':
      return 'bool';
    case 'select':
      return ts[1];
    case 'cast':
      return to!;
  }
};

/** Parses and type-checks `code` over inputs of `dtypes`; throws ShapeError. Cached. */
export const fusedProgram = (code: readonly string[], dtypes: readonly DType[]): FusedProgram => parse(code, dtypes, checkedType, checkedCache);
const checkedCache = new Map<string, FusedProgram>();

/** fusedProgram without type checks, inputs' i32 standing for i32 or bool (CPU kernels). */
const cpuProgram = (code: readonly string[], dtypes: readonly DType[]): FusedProgram => parse(code, dtypes, looseType, cpuCache);
const cpuCache = new Map<string, FusedProgram>();

function parse(code: readonly string[], dtypes: readonly DType[], lineType: LineType, cache: Map<string, FusedProgram>): FusedProgram {
  const key = `${dtypes.join(',')}|${code.join('; ')}`;
  let p = cache.get(key);
  if (p) return p;
  if (!code.length) throw new ShapeError('fused: empty program');
  const lines: Line[] = [];
  const typeOf = (a: Operand): DType => (a.kind === 'in' ? dtypes[a.k] : a.kind === 'reg' ? lines[a.k].dtype : a.dtype);
  for (const text of code) {
    const [head, ...rest] = String(text).trim().split(/\s+/);
    const dot = head.indexOf('.');
    const op = dot < 0 ? head : head.slice(0, dot);
    const param = dot < 0 ? undefined : head.slice(dot + 1);
    const args = rest.map((s) => parseOperand(s, dtypes.length, lines.length));
    if (op === 'size') {
      if (args.length || !param) throw new ShapeError(`fused: bad line '${text}'`);
      const dims = param.split('*').map((d) => (/^\d+$/.test(d) ? Number(d) : d));
      lines.push({ op, dims, args, dtype: 'f32' });
      continue;
    }
    if (op === 'iota') {
      if (args.length || !param || !/^\d+$/.test(param)) throw new ShapeError(`fused: bad line '${text}'`);
      lines.push({ op, axis: Number(param), args, dtype: 'i32' });
      continue;
    }
    if (REDUCTIONS.includes(op as FusedReduction) || op === 'argmax') {
      const t = args.length === 1 && args[0].kind === 'in' ? typeOf(args[0]) : undefined;
      const one = op !== 'argmax' || /^\d+$/.test(param ?? '');
      if (!t || !param || !/^\d+(,\d+)*$/.test(param) || !one || t === 'bool' || (op === 'mean' && t !== 'f32')) throw new ShapeError(`fused: bad line '${text}'`);
      lines.push({ op, axes: param.split(',').map(Number), args, dtype: op === 'argmax' ? 'i32' : t });
      continue;
    }
    if (op === 'take') {
      if (param || args.length !== 2 || args[0].kind !== 'in' || typeOf(args[0]) !== 'f32' || typeOf(args[1]) !== 'i32') throw new ShapeError(`fused: bad line '${text}'`);
      lines.push({ op, gather: true, args, dtype: 'f32' });
      continue;
    }
    const row = Object.hasOwn(scalarRows, op) ? scalarRows[op as keyof typeof scalarRows] : undefined;
    if (!row) throw new ShapeError(`fused: unknown op '${op}' in '${text}'`);
    if (args.length !== row.arity) throw new ShapeError(`fused: ${op} takes ${row.arity} operand(s) in '${text}'`);
    if ((op === 'cast') !== (param !== undefined)) throw new ShapeError(`fused: bad line '${text}'`);
    const dtype = lineType(op, row, args.map(typeOf), param as DType | undefined);
    lines.push({ op, row, ...(op === 'cast' ? { to: param as DType } : {}), args, dtype });
  }
  p = { lines, dtype: lines[lines.length - 1].dtype };
  cache.set(key, p);
  return p;
}

/** The program's inputs read at the output coordinates (`direct`: a line's operand, a take's
 *  index) and those a reduction or take line reads along its rows (`reduced`); an input can be
 *  both. */
export function inputUse(p: FusedProgram): { direct: Set<number>; reduced: Set<number> } {
  const [direct, reduced] = [new Set<number>(), new Set<number>()];
  for (const l of p.lines) l.args.forEach((a, j) => a.kind === 'in' && (l.axes || (l.gather && !j) ? reduced : direct).add(a.k));
  return { direct, reduced };
}

/** The lines of a fused node's `code` (a string: an array of strings would read as symbolic
 *  dimensions to `symbolsOf`). */
export const codeLines = (attrs: Attrs): string[] => {
  const c = attrs.code;
  if (typeof c !== 'string') throw new ShapeError('fused: attribute code is not a string');
  return c.split(';').map((l) => l.trim());
};

const REDUCTIONS = ['sum', 'mean', 'reduce_max', 'reduce_min'] as const;
export type FusedReduction = (typeof REDUCTIONS)[number];
/** What a reduction line computes: a reduction, or argmax (over one axis). */
type LineReduction = FusedReduction | 'argmax';

/** The reduction a fused node ends in, if any. */
export function reduction(attrs: Attrs): { op: FusedReduction; axes: number[] } | undefined {
  if (attrs.reduce === undefined) return undefined;
  if (!REDUCTIONS.includes(attrs.reduce as FusedReduction)) throw new ShapeError(`fused: unknown reduction ${String(attrs.reduce)}`);
  if (!Array.isArray(attrs.axes)) throw new ShapeError('fused: a reduction needs axes');
  return { op: attrs.reduce as FusedReduction, axes: attrs.axes as number[] };
}

/** The op whose product of inputs 0 and 1 a fused node's program is the epilogue of, if any. */
export const source = (attrs: Attrs): 'matmul' | 'conv2d' | undefined => (attrs.conv2d === true ? 'conv2d' : attrs.matmul !== undefined ? 'matmul' : undefined);

/** The matrix product a fused node's program is the epilogue of, if any. */
export function product(attrs: Attrs): { transA: boolean; transB: boolean } | undefined {
  const m = attrs.matmul;
  if (m === undefined) return undefined;
  if (m !== 'nn' && m !== 'nt' && m !== 'tn' && m !== 'tt') throw new ShapeError(`fused: bad matmul '${String(m)}'`);
  return { transA: m[0] === 't', transB: m[1] === 't' };
}

// ---------------------------------------------------------------- CPU

export function fusedCpu(ins: Tensor[], attrs: Attrs, out: { shape: number[]; dtype: DType }, ctx: CpuCtx): TypedArray {
  const mm = product(attrs);
  if (mm || attrs.conv2d) {
    // the product (by the executor's kernel), then the program over it and the other inputs
    const data = (ctx.kernels![mm ? 'matmul' : 'conv2d'] as CpuKernel)(ins.slice(0, 2), mm ?? attrs, { shape: out.shape, dtype: 'f32' }, ctx);
    return runFused([{ data, shape: out.shape }, ...ins.slice(2)], attrs, out, ctx);
  }
  const red = reduction(attrs);
  if (!red) return runFused(ins, attrs, out, ctx);
  // the values over the whole domain, then the reduction's own kernel
  const domain = (attrs.shape as Dim[]).map((d) => (typeof d === 'number' ? d : ctx.syms[d]));
  const values = runFused(ins, attrs, { shape: domain, dtype: out.dtype }, ctx);
  return reduceCpu[red.op]([{ data: values, shape: domain }], { axes: red.axes, keepdims: true }, out, ctx);
}

/** `t` at every position of `shape` (a single value repeated). */
function full(t: Tensor, shape: number[], ctx: CpuCtx): Tensor {
  const n = numel(shape);
  return t.data.length === n ? t : { data: alloc('i32', n, ctx).fill(t.data[0]), shape };
}

/** A reduction line: input `x` reduced over the line's axes, kept as 1s (the output's shape, or its
 *  rows' shape, which later lines broadcast). */
function reduced(l: Line, x: Tensor, ctx: CpuCtx): Tensor {
  const shape = x.shape.map((d, a) => (l.axes!.includes(a) ? 1 : d));
  return { data: reduceCpu[l.op as LineReduction]([x], { axes: l.axes! }, { shape, dtype: l.dtype }, ctx), shape };
}

/** Runs the program line by line, each line over the whole output with its row's own CPU kernel, so
 *  that fused and unfused programs agree bit for bit (every value stored, and rounded, as its
 *  unfused node's would be); a line that reads only single values runs once. */
function runFused(ins: Tensor[], attrs: Attrs, out: { shape: number[]; dtype: DType }, ctx: CpuCtx): TypedArray {
  const p = cpuProgram(codeLines(attrs), ins.map((t) => (t.data instanceof Int32Array ? 'i32' : 'f32')));
  const one = (dtype: DType, v: number): Tensor => {
    const data = alloc(dtype, 1, ctx);
    data[0] = v;
    return { data, shape: [] };
  };
  const regs: Tensor[] = [];
  for (const l of p.lines) {
    const args = l.args.map((a) => (a.kind === 'in' ? ins[a.k] : a.kind === 'reg' ? regs[a.k] : one(a.dtype, a.value)));
    const shape = args.some((t) => t.data.length !== 1) ? out.shape : [];
    regs.push(
      l.axis !== undefined
        ? { data: iotaCpu([], { axis: l.axis }, { shape: out.shape, dtype: 'i32' }, ctx), shape: out.shape }
        : l.axes
        ? reduced(l, args[0], ctx)
        : l.gather
        ? { data: takeCpu([args[0], full(args[1], out.shape, ctx)], {}, { shape: out.shape, dtype: 'f32' }, ctx), shape: out.shape }
        : l.row
          ? { data: rowKernel(l.row)(args, {}, { shape, dtype: l.dtype }, ctx), shape }
          : one('f32', l.dims!.reduce<number>((n, d) => n * (typeof d === 'number' ? d : ctx.syms[d]), 1)),
    );
  }
  const last = regs[regs.length - 1].data;
  const n = numel(out.shape);
  return last.length === n ? last : alloc(out.dtype, n, ctx).fill(last[0]);
}

// ---------------------------------------------------------------- WGSL

function wgslFused(sig: KernelSig) {
  const mm = source(sig.attrs);
  // the program's inputs: the product (`x0` in the epilogue), then inputs 2..
  const progIns = mm ? [{ dtype: 'f32' as DType, rank: sig.output.rank, shape: sig.output.shape }, ...sig.inputs.slice(2)] : sig.inputs;
  const p = fusedProgram(codeLines(sig.attrs), progIns.map((i) => i.dtype));
  const red = reduction(sig.attrs);
  const R = red ? (sig.attrs.shape as Dim[]).length : sig.output.rank;
  const fns = new Set<string>();
  let bits = false;
  const ref = (a: Operand): string => {
    if (a.kind === 'in') return `x${a.k}`;
    if (a.kind === 'reg') return `r${a.k}`;
    if (a.dtype === 'f32' && !Number.isFinite(a.value)) bits = true;
    return wgslLiteral(a.value, a.dtype);
  };
  const typeOf = (a: Operand): DType => (a.kind === 'in' ? progIns[a.k].dtype : a.kind === 'reg' ? p.lines[a.k].dtype : a.dtype);
  // Values the same for the whole dispatch (hyperparameters, single values, sizes, and what only
  // they make: Adam's 1 - beta^t) are computed once per thread, before its elements (a matmul
  // epilogue has 64), into private variables that `prologue()` sets.
  const onceIn = progIns.map((x, k) => !(mm && !k) && (x.hyper !== undefined || x.shape.every((d) => d === 1)));
  const once: boolean[] = [];
  p.lines.forEach((l, k) => (once[k] = !l.axes && !l.gather && l.axis === undefined && l.args.every((a) => a.kind === 'lit' || (a.kind === 'in' ? onceIn[a.k] : once[a.k]))));
  const domain = red || mm ? (sig.attrs.shape as Dim[]) : sig.output.shape;
  // where each reduction line's input's kept axes are among the output coordinates
  const keptAt = p.lines.map((l) => {
    if (!l.axes) return undefined;
    const x = progIns[(l.args[0] as { k: number }).k];
    return keptCoord(l.axes, x.rank, R, sameShape(x.shape, domain));
  });
  const lines: Def[] = p.lines.map((l, k) => {
    const def = (e: string): Def => ({ v: `r${k}`, t: l.dtype, e, once: once[k] });
    if (l.axes) {
      bits = true; // max and min start from infinities
      return reductionLine(l, k, progIns[(l.args[0] as { k: number }).k], keptAt[k]!.at);
    }
    if (l.axis !== undefined) return def(`i32(c${l.axis})`);
    if (l.gather) {
      // the entry j of input K's row at this position (its flat index: the thread's, or in a
      // reduction's loop, its coordinates'); out of range reads 0, as take does
      const K = (l.args[0] as { k: number }).k;
      const n = `i32(M(IN${K} + ${progIns[K].rank - 1}u))`;
      const at = red ? wgslCoordIndex(domain, domain, (a) => `d${a}`) : 'i';
      const j = ref(l.args[1]);
      return def(`select(0.0, in${K}[(${at}) * u32(${n}) + u32(clamp(${j}, 0, ${n} - 1))], ${j} >= 0 && ${j} < ${n})`);
    }
    if (!l.row) return def(l.dims!.map((d) => (typeof d === 'number' ? `${d}.0` : `f32(M(SYM_${d}))`)).join(' * ') || '1.0');
    const row = elementwiseRows[l.op as keyof typeof elementwiseRows];
    const t = valueType(row, l.args.map(typeOf));
    if (row.fns) fns.add(row.fns(t));
    return def(row.wgsl(l.args.map(ref), t, l.dtype));
  });
  // inputs read at the output coordinates (not only reduced), each indexed as cheaply as its shape
  // allows: by the output element (elementwise kernels) or by the coordinates (the others)
  const { direct } = inputUse(p);
  const index = (shape: Shape) =>
    red ? wgslCoordIndex(shape, domain, (a) => `d${a}`) : mm ? wgslCoordIndex(shape, domain, (a) => `M(OUT + ${a}u)`) : wgslElementIndex(shape, domain);
  const load = (inp: KernelSig['inputs'][number], k: number) =>
    inp.hyper === undefined ? `in${mm ? k + 1 : k}[${index(inp.shape)}]` : `bitcast<${wgslType[inp.dtype]}>(H(${inp.hyper}u))`;
  const defs = [...progIns.flatMap((inp, k): Def[] => (!direct.has(k) || (mm && !k) ? [] : [{ v: `x${k}`, t: inp.dtype, e: load(inp, k), once: onceIn[k] }])), ...lines];
  const hoisted = defs.filter((d): d is Exclude<Def, string> => typeof d !== 'string' && d.once);
  // the statements of each element
  const body = defs.flatMap((d) => (typeof d === 'string' ? [d] : d.once ? [] : [`let ${d.v} = ${d.e};`]));
  // the output coordinates that iota and reduction lines read, from the outermost one in
  const from = Math.min(R, ...p.lines.map((l, k) => keptAt[k]?.outer ?? l.axis ?? R));
  const last = `r${p.lines.length - 1}`;
  // the registers stored into out, out1, ...: the last line's, or those a merged kernel names
  const results = typeof sig.attrs.results === 'string' ? sig.attrs.results.split(' ') : [last];
  let pre = [...fns].join('\n');
  if ((bits || red) && !pre.includes('fn bits_f32')) pre = `${WGSL_BITS}\n${pre}`;
  if (hoisted.length)
    pre += `
${hoisted.map((d) => `var<private> ${d.v}: ${wgslType[d.t]};`).join('\n')}
fn prologue() {
  ${hoisted.map((d) => `${d.v} = ${d.e};`).join('\n  ')}
}`;
  if (mm) {
    // the epilogue of each element of the product's tile, at its output coordinates
    const epilogue = { fns: pre, body: [...body, ...results.map((r, k) => `out${k || ''}[o] = ${r};`)].join('\n        '), prologue: hoisted.length > 0 };
    const t = product(sig.attrs);
    return t ? matmulWgsl(sig, t.transA, t.transB, epilogue) : convWgsl(sig, epilogue);
  }
  if (!red) return elementKernel(pre, [...(from < R ? [wgslCoords(R, from)] : []), ...body], results, p.lines.some((l) => l.axes), hoisted.length > 0);
  // One invocation per output element: its kept coordinates from the thread id, then a loop over
  // the reduced positions evaluating the program at each.
  const row = reduceRows[red.op];
  const dims = (sig.attrs.shape as Dim[]).map((d, k) => `let d${k} = ${typeof d === 'number' ? `${d}u` : `M(SYM_${d})`};`);
  const axes = Array.from({ length: R }, (_, k) => k);
  // the outermost coordinate of a walk is what is left (below the count of the walked positions)
  const walk = (ks: number[], v: string) => [...ks].reverse().map((k, j) => (j < ks.length - 1 ? `c${k} = ${v} % d${k}; ${v} = ${v} / d${k};` : `c${k} = ${v};`)).join(' ');
  const kept = axes.filter((k) => !red.axes.includes(k));
  // one accumulator per result (a merged kernel's siblings: codegen/merge.ts), each its row's
  // statements over its own names
  const own = (stmt: string, j: number) => stmt.replace(/\b(acc|at|v)\b/g, `$1${j}`);
  const code = `${pre}
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  ${hoisted.length ? 'prologue();' : ''}
  ${dims.join(' ')}
  ${axes.map((k) => `var c${k} = 0u;`).join(' ')}
  var rem = i;
  ${walk(kept, 'rem')}
  let cnt = ${red.axes.map((k) => `d${k}`).join(' * ') || '1u'};
  ${results.map((r, j) => own(row.init(p.lines[Number(r.slice(1))].dtype), j)).join(' ')}
  for (var q = 0u; q < cnt; q++) {
    var s = q;
    ${walk(red.axes, 's')}
    ${body.join('\n    ')}
    ${results.map((r, j) => `let v${j} = ${r};`).join(' ')}
    ${results.map((_, j) => own(row.step, j)).join(' ')}
  }
  ${results.map((_, j) => `out${j || ''}[i] = ${own(row.result, j)};`).join('\n  ')}
}`;
  return { code, grid: { kind: 'elements' as const } };
}

/** The output coordinate of kept axis `a` of a reduction line's input (of `rank`): the kept axes
 *  are the output's last ones, or, for an input of the output's shape (`row`: each element's thread
 *  reduces its row), each its own; below 0 for a leading kept 1 past the output's rank (its
 *  coordinate is 0). `outer` is the outermost one read. */
const keptCoord = (axes: readonly number[], rank: number, R: number, row: boolean): { at: (a: number) => number; outer: number } => {
  const kept = Array.from({ length: rank }, (_, a) => a).filter((a) => !axes.includes(a));
  const at = (a: number): number => (row ? a : R - kept.length + kept.indexOf(a));
  return { at, outer: kept.map(at).find((c) => c >= 0) ?? R };
};

/** A value of the program: `let v: t = e`, or a reduction line's statements. */
type Def = { v: string; t: DType; e: string; once: boolean } | string;

/** Line k, the reduction of input K (of `rank` and `dtype`) over `axes`: a loop over the reduced
 *  positions, the other coordinates the output's (`at`: which one). */
function reductionLine(l: Line, k: number, { rank, dtype }: { rank: number; dtype: DType }, at: (a: number) => number): string {
  const K = (l.args[0] as { k: number }).k;
  const row = reduceRows[l.op as LineReduction];
  const axes = l.axes!;
  const d = (a: number) => `M(IN${K} + ${a}u)`;
  const coord = (a: number) => (axes.includes(a) ? `u${a}` : at(a) < 0 ? '0u' : `c${at(a)}`);
  let index = '0u';
  for (let a = 0; a < rank; a++) index = a ? `(${index}) * ${d(a)} + ${coord(a)}` : coord(a);
  return `var r${k}: ${wgslType[l.dtype]};
  {
    let cnt = ${axes.map(d).join(' * ')};
    ${row.init(dtype)}
    for (var q = 0u; q < cnt; q++) {
      var s = q;
      ${[...axes].reverse().map((a, j) => (j < axes.length - 1 ? `let u${a} = s % ${d(a)}; s = s / ${d(a)};` : `let u${a} = s;`)).join(' ')}
      let v = in${K}[${index}];
      ${row.step}
    }
    r${k} = ${row.result};
  }`;
}

// ---------------------------------------------------------------- the op

export const fusedOps = {
  fused: {
    shape(inputs, attrs) {
      const shape = attrs.shape;
      if (!Array.isArray(shape) || !shape.every((d) => typeof d === 'string' || (Number.isInteger(d) && d >= 0))) throw new ShapeError(`fused: bad shape ${JSON.stringify(shape)}`);
      const bound = inputs.filter((x) => !unbound(x)).length;
      if (bound > MAX_FUSED_INPUTS) throw new ShapeError(`fused: ${bound} bound inputs, at most ${MAX_FUSED_INPUTS}`);
      const mm = source(attrs);
      const red = reduction(attrs);
      if (mm) {
        if (red) throw new ShapeError(`fused: a reduction cannot follow a ${mm}`);
        const prod = (mm === 'matmul' ? matmulOps.matmul.shape(inputs.slice(0, 2), product(attrs)!) : convOps.conv2d.shape(inputs.slice(0, 2), attrs)).shape;
        if (!sameShape(prod, shape as Dim[])) throw new ShapeError(`fused: the product is ${shapeStr(prod)}, not ${shapeStr(shape as Dim[])}`);
      }
      const ins = mm ? inputs.slice(2) : inputs;
      const p = fusedProgram(codeLines(attrs), [...(mm ? ['f32' as DType] : []), ...ins.map((x) => x.dtype)]);
      const reduced = p.lines.filter((l) => l.axes || l.gather);
      if (p.lines.some((l) => l.axis !== undefined && l.axis >= shape.length)) throw new ShapeError(`fused: an iota axis past the rank of ${shapeStr(shape as Dim[])}`);
      if (reduced.length && mm) throw new ShapeError(`fused: reduction or take lines in a ${mm} epilogue`);
      const lead = (s: readonly Dim[]) => s.slice(s.findIndex((d) => d !== 1) < 0 ? s.length : s.findIndex((d) => d !== 1));
      for (const l of reduced) {
        const x = ins[(l.args[0] as { k: number }).k];
        const axes = l.axes ?? [x.shape.length - 1];
        if (axes.some((a, k) => a < 0 || a >= x.shape.length || (k > 0 && a <= axes[k - 1]))) throw new ShapeError(`fused: bad axes [${axes}] for ${shapeStr(x.shape)}`);
        const left = x.shape.filter((_, a) => !axes.includes(a));
        // what is left is the output's shape, or (a row reduced in each element's thread) the
        // input is the output's shape
        if (!sameShape(lead(left), lead(shape as Dim[])) && !sameShape(x.shape, shape as Dim[]))
          throw new ShapeError(`fused: ${shapeStr(x.shape)} reduced over [${axes}] is not ${shapeStr(shape as Dim[])}`);
        if (l.gather && !sameShape(left, shape as Dim[])) throw new ShapeError(`fused: take from ${shapeStr(x.shape)} at ${shapeStr(shape as Dim[])}`);
      }
      const direct = new Set([...inputUse(p).direct].map((k) => k - (mm ? 1 : 0)));
      ins.forEach((x, k) => {
        if ((direct.has(k) || !reduced.length) && !sameShape(broadcastShapes([x.shape, shape as Dim[]]), shape as Dim[]))
          throw new ShapeError(`fused: input ${shapeStr(x.shape)} does not broadcast to ${shapeStr(shape as Dim[])}`);
      });
      if (!red) return { shape: shape as Dim[], dtype: p.dtype };
      if (red.axes.some((a, k) => !Number.isInteger(a) || a < 0 || a >= shape.length || (k > 0 && a <= red.axes[k - 1])))
        throw new ShapeError(`fused: bad axes [${red.axes}] for ${shapeStr(shape as Dim[])}`);
      if (p.dtype === 'bool' || (red.op === 'mean' && p.dtype !== 'f32')) throw new ShapeError(`fused: ${red.op} of ${p.dtype} values`);
      return { shape: (shape as Dim[]).map((d, k) => (red.axes.includes(k) ? 1 : d)), dtype: p.dtype };
    },
    cpu: fusedCpu,
    wgsl: wgslFused,
  },
} satisfies Record<string, OpDef>;
