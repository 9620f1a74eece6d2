// Reductions over a sorted set of axes (sum, mean, reduce_max, reduce_min) and argmax over one axis.
// One row per op holds its CPU fold, its WGSL accumulator and its VJP. The CPU and WGSL kernels
// have the same structure: for each output element, fold the input over the reduced positions.

import * as b from '../ir/build.ts';
import { ShapeError, sameShape, staticSize, typeStr, type Attrs, type DType, type Node, type Shape } from '../ir/node.ts';
import type { ReduceKind } from './registry.ts';
import type { CpuKernel, OpDef, TypedArray } from './types.ts';
import { MAIN, WGSL_BITS, alloc, boxOffsets, mapValues, wgslLiteral } from './elementwise.ts';

/** CPU: folds the values X[base + offs[q]] that make one output element. */
type Fold = (X: TypedArray, base: number, offs: Int32Array) => number;

export interface Row {
  /** The dtypes the input may have; the output has the input's (argmax: i32). */
  takes: readonly DType[];
  /** WGSL: declares `acc`, updates it with the value `v` at reduced position `q`, and gives the
   *  result (`cnt` is the number of reduced positions). */
  init(t: DType): string;
  step: string;
  result: string;
  /** The cotangent of `x` (shape of x) given `ct` of `y`. */
  vjp?(x: Node, y: Node, ct: Node, axes: number[]): Node;
}

function total(X: TypedArray, base: number, offs: Int32Array): number {
  let a = 0;
  for (let q = 0; q < offs.length; q++) a += X[base + offs[q]];
  return a;
}

/** max/min: fold with `pick` from its identity `init`. */
const extreme = /* @__NO_SIDE_EFFECTS__ */ (pick: (a: number, v: number) => number, init: number): Fold => (X, base, offs) => {
  let a = init;
  for (let q = 0; q < offs.length; q++) a = pick(a, X[base + offs[q]]);
  return a;
};

/** The CPU half of the table, apart from the WGSL and VJP half below so that a bundle's CPU
 *  kernels carry no compiler code. */
const folds: Record<ReduceKind | 'argmax', Fold> = {
  sum: total,
  mean: (X, base, offs) => total(X, base, offs) / offs.length,
  reduce_max: extreme(Math.max, -Infinity),
  reduce_min: extreme(Math.min, Infinity),
  // The first position of the maximum.
  argmax(X, base, offs) {
    let best = 0;
    for (let q = 1; q < offs.length; q++) if (X[base + offs[q]] > X[base + offs[best]]) best = q;
    return best;
  },
};

/** An extreme's WGSL accumulator, from its identity. */
const extremeInit = /* @__NO_SIDE_EFFECTS__ */ (init: number) => (t: DType) => `var acc = ${wgslLiteral(init, t)};`;

/** `v` (of y's shape) with the reduced axes kept as 1s. */
function keep(x: Node, axes: number[], v: Node): Node {
  const shape = x.shape.map((d, k) => (axes.includes(k) ? 1 : d));
  return sameShape(v.shape, shape) ? v : b.reshape(v, shape);
}

const spread = (x: Node, v: Node): Node => (sameShape(v.shape, x.shape) ? v : b.broadcast(v, x.shape));

/** The number of reduced positions: a constant, or `size` when a dim is symbolic. */
function count(x: Node, axes: number[]): Node {
  const dims = axes.map((k) => x.shape[k]);
  const n = staticSize(dims);
  return n === undefined ? b.size(dims) : b.constant(n);
}

/** max/min: the cotangent goes to the positions equal to the result, split evenly among ties. */
function routeToExtremes(x: Node, y: Node, ct: Node, axes: number[]): Node {
  const hit = b.cast(b.binary('eq', x, keep(x, axes, y)), 'f32');
  return b.mul(b.div(hit, b.sum(hit, axes, true)), keep(x, axes, ct));
}

const NUM: readonly DType[] = ['f32', 'i32'];

const rows: Record<ReduceKind | 'argmax', Row> = {
  sum: {
    takes: NUM, init: (t) => `var acc = ${wgslLiteral(0, t)};`, step: 'acc += v;', result: 'acc',
    vjp: (x, _, ct, axes) => spread(x, keep(x, axes, ct)),
  },
  mean: {
    takes: ['f32'], init: () => 'var acc = 0.0;', step: 'acc += v;', result: 'acc / f32(cnt)',
    vjp: (x, _, ct, axes) => spread(x, b.div(keep(x, axes, ct), count(x, axes))),
  },
  reduce_max: { takes: NUM, init: extremeInit(-Infinity), step: 'acc = max(acc, v);', result: 'acc', vjp: routeToExtremes },
  reduce_min: { takes: NUM, init: extremeInit(Infinity), step: 'acc = min(acc, v);', result: 'acc', vjp: routeToExtremes },
  argmax: {
    takes: NUM,
    init: (t) => `var acc = ${wgslLiteral(-Infinity, t)}; var at = 0u;`,
    step: 'if (v > acc) { acc = v; at = q; }',
    result: 'i32(at)',
  },
};

/** The reduced axes: `axes` (sorted, distinct), or argmax's one `axis`. */
const axesOf = (attrs: Attrs): number[] => (attrs.axes ?? [attrs.axis]) as number[];

function rowMajor(shape: readonly number[]): number[] {
  const st = new Array<number>(shape.length);
  let s = 1;
  for (let k = shape.length - 1; k >= 0; k--) {
    st[k] = s;
    s *= shape[k];
  }
  return st;
}

const kernel = (fold: Fold): CpuKernel => ([x], attrs, out, ctx) => {
  const axes = axesOf(attrs);
  const st = rowMajor(x.shape);
  const kept = x.shape.map((_, k) => k).filter((k) => !axes.includes(k));
  const offs = boxOffsets(axes.map((k) => x.shape[k]), axes.map((k) => st[k]));
  const bases = boxOffsets(kept.map((k) => x.shape[k]), kept.map((k) => st[k]));
  const data = alloc(out.dtype, bases.length, ctx);
  for (let o = 0; o < bases.length; o++) data[o] = fold(x.data, bases[o], offs);
  return data;
};

/** Each op's CPU kernel (runtime/cpu_kernels.ts exports them one by one; fused reductions use them). */
export const reduceCpu = /* @__PURE__ */ mapValues(folds, kernel);

function define(op: ReduceKind | 'argmax', row: Row): OpDef {
  return {
    shape([x, ...rest], attrs) {
      if (!x || rest.length) throw new ShapeError(`${op} takes one operand`);
      const axes = axesOf(attrs);
      const ok = axes.every((a, i) => Number.isInteger(a) && a >= 0 && a < x.shape.length && (i === 0 || a > axes[i - 1]));
      if (!ok) throw new ShapeError(`${op}: bad axes [${axes}] for ${typeStr(x)}`);
      if (!row.takes.includes(x.dtype)) throw new ShapeError(`${op} expects ${row.takes.join(' or ')}, got ${typeStr(x)}`);
      const shape: Shape = attrs.keepdims ? x.shape.map((d, k) => (axes.includes(k) ? 1 : d)) : x.shape.filter((_, k) => !axes.includes(k));
      return { shape, dtype: op === 'argmax' ? 'i32' : x.dtype };
    },
    vjp: row.vjp && ((node, ct) => [row.vjp!(node.inputs[0], node, ct, axesOf(node.attrs))]),
    cpu: reduceCpu[op],
    wgsl(sig) {
      const axes = axesOf(sig.attrs);
      const n = sig.inputs[0].rank;
      const dims = Array.from({ length: n }, (_, k) => k);
      const kept = dims.filter((k) => !axes.includes(k));
      // a run of adjacent axes is one stride apart in memory: no division per reduced position
      // (integer division is scalar on CPU-backed adapters such as SwiftShader)
      const contiguous = axes.length > 0 && axes.every((a, k) => a === axes[0] + k);
      const walk = (ks: number[], idx: string, off: string) =>
        [...ks].reverse().map((k) => `${off} += (${idx} % d${k}) * t${k}; ${idx} = ${idx} / d${k};`).join('\n    ');
      const code = `${WGSL_BITS}
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  ${dims.map((k) => `let d${k} = M(IN0 + ${k}u);`).join(' ')}
  ${[...dims].reverse().map((k) => `let t${k} = ${k === n - 1 ? '1u' : `t${k + 1} * d${k + 1}`};`).join(' ')}
  var rem = i;
  var base = 0u;
  ${walk(kept, 'rem', 'base')}
  let cnt = ${axes.map((k) => `d${k}`).join(' * ') || '1u'};
  ${row.init(sig.inputs[0].dtype)}
  for (var q = 0u; q < cnt; q++) {
    ${contiguous ? `let v = in0[base + q * t${axes[axes.length - 1]}];` : `var s = q;
    var off = base;
    ${walk(axes, 's', 'off')}
    let v = in0[off];`}
    ${row.step}
  }
  out[i] = ${row.result};
}`;
      return { code, grid: { kind: 'elements' } };
    },
  };
}

/** The table: fused kernels (ops/fused.ts) fold their values with its rows' WGSL accumulators. */
export const reduceRows: Readonly<Record<ReduceKind | 'argmax', Row>> = rows;

export const reduceOps = /* @__PURE__ */ mapValues(rows, (row, op) => define(op, row));
