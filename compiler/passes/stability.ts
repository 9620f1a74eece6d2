// Numerical-stability rewrites: forms that overflow or lose everything in float32 become the
// stable forms a careful person writes (the library's own softmax and logsumexp already are, and
// are left alone):
//   log(exp(z))                  → z
//   log(exp(z) / s)              → z - log(s)                         (log of a softmax: log-softmax)
//   log(sum(exp(z)))             → log(sum(exp(z - m))) + m, m = max(z)  (logsumexp)
//   exp(z) / sum(exp(z))         → exp(z - m) / sum(exp(z - m))        (softmax with max subtraction)
// m is taken as 0 where the max is not finite (all -inf), as logsumexp implementations do.

import * as b from '../ir/build.ts';
import { sameShape, type Node } from '../ir/node.ts';
import { rewriteGraph, rule, type Rule } from './rewrite.ts';
import type { Pass } from './pipeline.ts';

/** What a reshape reshapes (reductions without kept dims are reshapes of ones with them). */
const unshaped = (n: Node): Node => (n.op === 'reshape' ? n.inputs[0] : n);

/** Does `z` already subtract a max of what it shifts (z = x - f(max(x)))? */
function maxShifted(z: Node): boolean {
  if (z.op !== 'sub') return false;
  const x = z.inputs[0];
  const stack: [Node, number][] = [[z.inputs[1], 0]];
  while (stack.length) {
    const [n, depth] = stack.pop()!;
    if (n.op === 'reduce_max' && n.inputs[0] === x) return true;
    if (depth < 4) for (const i of n.inputs) stack.push([i, depth + 1]);
  }
  return false;
}

/** max(z) over `axes` with kept dims, 0 where it is not finite. */
function safeMax(z: Node, axes: readonly number[]): Node {
  const m = b.reduce('reduce_max', z, axes, true);
  return b.select(b.binary('eq', b.sub(m, m), b.constant(0)), m, b.constant(0));
}

/** `s` is sum(e) over some axes, with kept dims (directly, or reshaped/broadcast back): those axes. */
function sumOf(s: Node, e: Node): number[] | undefined {
  let n = s;
  while (n.op === 'broadcast' || n.op === 'reshape') n = n.inputs[0];
  if (n.op !== 'sum' || n.inputs[0] !== e) return undefined;
  const axes = n.attrs.axes as number[];
  if (n.attrs.keepdims || s.op === 'reshape' || s.op === 'broadcast') {
    // the kept-dims shape must line up with e's (no axis moved)
    const kept = e.shape.map((d, k) => (axes.includes(k) ? 1 : d));
    let t = s;
    while (t.op === 'broadcast') t = t.inputs[0];
    if (!sameShape(t.shape, kept)) return undefined;
    return axes;
  }
  return undefined;
}

export const stabilityRules: Rule<any>[] = [
  rule('log-exp', (n) => n.op === 'log' && n.inputs[0].op === 'exp', (n) => n.inputs[0].inputs[0]),
  rule('log-softmax', (n) => n.op === 'log' && n.inputs[0].op === 'div' && n.inputs[0].inputs[0].op === 'exp', (n) => {
    const [e, s] = n.inputs[0].inputs;
    const r = b.sub(e.inputs[0], b.log(s));
    return sameShape(r.shape, n.shape) ? r : b.broadcast(r, n.shape);
  }),
  rule('logsumexp', (n) => {
    if (n.op !== 'log') return false;
    const s = unshaped(n.inputs[0]);
    return s.op === 'sum' && s.inputs[0].op === 'exp' && !maxShifted(s.inputs[0].inputs[0]);
  }, (n) => {
    const s = unshaped(n.inputs[0]);
    const z = s.inputs[0].inputs[0];
    const axes = s.attrs.axes as number[];
    const m = safeMax(z, axes);
    const lse = b.log(b.sum(b.exp(b.sub(z, m)), axes, s.attrs.keepdims as boolean));
    const r = b.add(lse, sameShape(m.shape, lse.shape) ? m : b.reshape(m, lse.shape));
    return sameShape(r.shape, n.shape) ? r : b.reshape(r, n.shape);
  }),
  {
    name: 'softmax-max-shift',
    match(n: Node) {
      if (n.op !== 'div' || n.inputs[0].op !== 'exp') return undefined;
      const [e, s] = n.inputs;
      if (maxShifted(e.inputs[0])) return undefined;
      return sumOf(s, e);
    },
    rewrite(axes: number[], n: Node) {
      const z = n.inputs[0].inputs[0];
      const e = b.exp(b.sub(z, safeMax(z, axes)));
      const r = b.div(e, b.sum(e, axes, true));
      return sameShape(r.shape, n.shape) ? r : b.broadcast(r, n.shape);
    },
  },
];

export const stability: Pass = {
  name: 'stability',
  description: 'log-softmax, logsumexp and softmax with max subtraction, log(exp(x)) = x',
  run: (g) => rewriteGraph(g, stabilityRules),
};
