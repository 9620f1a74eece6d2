// Algebraic simplification: a table of rules, each exact in floating point (up to the sign of a
// zero: x + 0 is x here). Broadcasts move out of elementwise ops (which broadcast by themselves), so
// the materialized broadcasts of scalars (the optimizer's lr, beta1, ...) disappear, and identities
// (x*1, x+0, x-0, x/1, x^1, neg(neg x), reshape of reshape, casts and broadcasts to what x already
// is, stop_gradient once autodiff has run) fold away. The constant-folding rules run in the same
// walk, so what simplification exposes is folded too.

import * as b from '../ir/build.ts';
import { broadcastShapes, sameShape, staticSize, type Node } from '../ir/node.ts';
import { elementwiseRows } from '../ops/elementwise.ts';
import { foldRules } from './fold.ts';
import { rewriteGraph, rule, type Rule } from './rewrite.ts';
import type { Pass } from './pipeline.ts';

/** Elementwise ops (broadcasting, no attributes but cast's `to`). */
export const isElementwise = (n: Node): boolean => Object.hasOwn(elementwiseRows, n.op);

/** The scalar value of a constant (a number, or a tensor filled with one value), else undefined. */
export function constValue(n: Node): number | undefined {
  if (n.op === 'broadcast') return constValue(n.inputs[0]);
  if (n.op !== 'const') return undefined;
  const v = n.attrs.value;
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && v.length && v.every((x) => x === v[0])) return v[0] as number;
  return undefined;
}

const is = (n: Node, v: number) => constValue(n) === v;
/** `x` stands for `n` when it has n's shape and dtype. */
const fits = (x: Node, n: Node) => x.dtype === n.dtype && sameShape(x.shape, n.shape);

/** x op c → x, or c op x → x when `left`: identities of binary ops. */
function identity(name: string, op: string, c: number, sides: ('left' | 'right')[]): Rule<Node> {
  return {
    name,
    match(n) {
      if (n.op !== op) return undefined;
      const [p, q] = n.inputs;
      if (sides.includes('right') && is(q, c) && fits(p, n)) return p;
      if (sides.includes('left') && is(p, c) && fits(q, n)) return q;
      return undefined;
    },
    rewrite: (x) => x,
  };
}

const REDUCE = ['sum', 'mean', 'reduce_max', 'reduce_min'];

export const algebraRules: Rule<any>[] = [
  // op(broadcast x, ...) → op(x, ...), broadcast once afterwards if the result is still smaller:
  // elementwise ops broadcast by themselves, so the big broadcast is never materialized.
  {
    name: 'broadcast-out-of-elementwise',
    match: (n: Node) => (isElementwise(n) && n.inputs.some((i) => i.op === 'broadcast') ? n : undefined),
    rewrite(n: Node) {
      const ins = n.inputs.map((i) => (i.op === 'broadcast' ? i.inputs[0] : i));
      const inner = rebuildWith(n, ins);
      return sameShape(inner.shape, n.shape) ? inner : b.broadcast(inner, n.shape);
    },
  },
  identity('mul-one', 'mul', 1, ['left', 'right']),
  identity('add-zero', 'add', 0, ['left', 'right']),
  identity('sub-zero', 'sub', 0, ['right']),
  identity('div-one', 'div', 1, ['right']),
  identity('pow-one', 'pow', 1, ['right']),
  rule('zero-sub', (n) => n.op === 'sub' && is(n.inputs[0], 0) && fits(n.inputs[1], n) && n.dtype === 'f32', (n) => b.neg(n.inputs[1])),
  rule('mul-minus-one', (n) => n.op === 'mul' && is(n.inputs[1], -1) && fits(n.inputs[0], n), (n) => b.neg(n.inputs[0])),
  // x^2 → x*x: exact, where WGSL's pow(x, 2) is exp2(2 log2 x).
  rule('pow-two', (n) => n.op === 'pow' && is(n.inputs[1], 2) && fits(n.inputs[0], n), (n) => b.mul(n.inputs[0], n.inputs[0])),
  rule('neg-neg', (n) => n.op === 'neg' && n.inputs[0].op === 'neg', (n) => n.inputs[0].inputs[0]),
  rule('sub-neg', (n) => n.op === 'sub' && n.inputs[1].op === 'neg' && n.dtype === 'f32', (n) => b.add(n.inputs[0], n.inputs[1].inputs[0])),
  rule('add-neg', (n) => n.op === 'add' && n.inputs[1].op === 'neg' && n.dtype === 'f32', (n) => b.sub(n.inputs[0], n.inputs[1].inputs[0])),
  rule('select-same', (n) => n.op === 'select' && n.inputs[1] === n.inputs[2] && fits(n.inputs[1], n), (n) => n.inputs[1]),
  // Autodiff has run: stop_gradient is the identity now.
  rule('stop-gradient', (n) => n.op === 'stop_gradient', (n) => n.inputs[0]),
  rule('cast-same', (n) => n.op === 'cast' && n.inputs[0].dtype === n.dtype, (n) => n.inputs[0]),
  rule('reshape-same', (n) => n.op === 'reshape' && sameShape(n.inputs[0].shape, n.shape), (n) => n.inputs[0]),
  rule('reshape-reshape', (n) => n.op === 'reshape' && n.inputs[0].op === 'reshape', (n) => b.reshape(n.inputs[0].inputs[0], n.shape)),
  rule('broadcast-same', (n) => n.op === 'broadcast' && sameShape(n.inputs[0].shape, n.shape), (n) => n.inputs[0]),
  rule('broadcast-broadcast', (n) => n.op === 'broadcast' && n.inputs[0].op === 'broadcast', (n) => b.broadcast(n.inputs[0].inputs[0], n.shape)),
  rule('transpose-identity', (n) => n.op === 'transpose' && (n.attrs.perm as number[]).every((p, k) => p === k), (n) => n.inputs[0]),
  rule('transpose-transpose', (n) => n.op === 'transpose' && n.inputs[0].op === 'transpose', (n) => {
    const inner = n.inputs[0].attrs.perm as number[];
    return b.transpose(n.inputs[0].inputs[0], (n.attrs.perm as number[]).map((p) => inner[p]));
  }),
  // A reduction drops its axes by reshaping its kept-dims form (a free alias), so sum(x) and
  // sum(x, keepdims) are one node (autodiff and the library make both).
  rule('reduce-keepdims', (n) => REDUCE.includes(n.op) && !n.attrs.keepdims && (n.attrs.axes as number[]).length > 0,
    (n) => b.reshape(b.reduce(n.op as 'sum', n.inputs[0], n.attrs.axes as number[], true), n.shape)),
  // reshape(broadcast(scalar)) is a broadcast of the scalar, which elementwise users absorb.
  rule('reshape-broadcast-scalar', (n) => n.op === 'reshape' && n.inputs[0].op === 'broadcast' && staticSize(n.inputs[0].inputs[0].shape) === 1 && n.inputs[0].inputs[0].shape.length <= n.shape.length,
    (n) => b.broadcast(n.inputs[0].inputs[0], n.shape)),
  // Reducing over axes of size 1 only reshapes.
  rule('reduce-unit-axes', (n) => REDUCE.includes(n.op) && (n.attrs.axes as number[]).every((a) => n.inputs[0].shape[a] === 1),
    (n) => b.reshape(n.inputs[0], n.shape)),
];

/** `n`'s op on other inputs (same attributes). */
function rebuildWith(n: Node, ins: Node[]): Node {
  if (n.op === 'cast') return b.cast(ins[0], n.dtype);
  if (n.op === 'select') return b.select(ins[0], ins[1], ins[2]);
  if (ins.length === 1) return b.unary(n.op as Parameters<typeof b.unary>[0], ins[0]);
  // broadcastShapes checks that the stripped operands still broadcast together (they always do:
  // each broadcast to n's shape).
  broadcastShapes(ins.map((i) => i.shape));
  return b.binary(n.op as Parameters<typeof b.binary>[0], ins[0], ins[1]);
}

export const simplify: Pass = {
  name: 'simplify',
  description: 'algebraic identities, broadcasts moved out of elementwise ops, reshape/transpose chains; folds constants',
  run: (g) => rewriteGraph(g, [...algebraRules, ...foldRules]),
};
