// Reverse-mode autodiff over the IR: topological order, reverse walk, cotangent accumulation, one
// shared `unbroadcast`. The result is ordinary IR that goes through every pass.

import { add, constant, reshape, sum, broadcast } from '../ir/build.ts';
import { ShapeError, sameShape, type Node, type Shape } from '../ir/node.ts';
import { topo } from '../ir/graph.ts';
import { ops } from '../ops/registry.ts';
import { mark, provenance } from '../ir/provenance.ts';

/** Sum `ct` (of a broadcast shape) down to `shape`. */
export function unbroadcast(ct: Node, shape: Shape): Node {
  if (sameShape(ct.shape, shape)) return ct;
  const lead = ct.shape.length - shape.length;
  const axes: number[] = [];
  ct.shape.forEach((d, i) => {
    if (i < lead || (shape[i - lead] === 1 && d !== 1)) axes.push(i);
  });
  const summed = axes.length ? sum(ct, axes, true) : ct;
  return reshape(summed, shape);
}

/**
 * Cotangents of `wrt` for `y` seeded with `ct` (same shape as y). Inputs the output does not depend
 * on get zeros of their shape.
 */
export function vjp(y: Node, ct: Node, wrt: readonly Node[]): Node[] {
  if (!sameShape(y.shape, ct.shape)) throw new ShapeError(`cotangent shape [${ct.shape}] does not match [${y.shape}]`);
  const order = topo([y]);
  const cts = new Map<Node, Node>([[y, ct]]);
  for (let i = order.length - 1; i >= 0; i--) {
    const n = order[i];
    const g = cts.get(n);
    if (!g || n.inputs.length === 0) continue;
    const rule = ops()[n.op].vjp;
    if (!rule) continue;
    const parts = rule(n, g);
    const where = provenance(n);
    for (const part of parts) if (part) mark(part, `gradient of ${n.op}${where ? ` at ${where}` : ''}`);
    n.inputs.forEach((inp, k) => {
      const part = parts[k];
      if (!part || inp.dtype !== 'f32') return;
      const c = unbroadcast(part, inp.shape);
      const prev = cts.get(inp);
      cts.set(inp, prev ? add(prev, c) : c);
    });
  }
  return wrt.map((w) => cts.get(w) ?? broadcast(constant(0), w.shape));
}

/** Gradient of a scalar `loss` with respect to `wrt`. */
export function grad(loss: Node, wrt: readonly Node[]): Node[] {
  return vjp(loss, constant(1), wrt);
}
