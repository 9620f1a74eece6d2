// The rewrite engine shared by the rule-table passes (fold, simplify, stability). A rule is
// `{ name, match, rewrite }`: `match` looks at one node and returns what it captured (or undefined);
// `rewrite` builds the replacement, of the same shape and dtype, from the captures with the IR
// builders. Tables are plain arrays, so they concatenate.
//
// The walk is bottom-up over the graph in topological order: each node is rebuilt on its inputs'
// rewritten forms (hash-consing merges nodes that became equal), then the rules run on it until
// none matches. The nodes a replacement introduces are rewritten the same way before the rules look
// at the replacement itself.

import { make, typeStr, type Node } from '../ir/node.ts';
import { roots, topo, type Graph } from '../ir/graph.ts';
import { mark, provenance } from '../ir/provenance.ts';

export interface Rule<M = unknown> {
  name: string;
  /** What the rule needs from `n`, or undefined when it does not apply. */
  match(n: Node): M | undefined;
  /** The replacement of `n`: same shape and dtype. */
  rewrite(m: M, n: Node): Node;
}

/** A rule whose match is a condition and whose rewrite reads the node. */
export const rule = (name: string, when: (n: Node) => boolean, rewrite: (n: Node) => Node): Rule<Node> => ({
  name,
  match: (n) => (when(n) ? n : undefined),
  rewrite: (n) => rewrite(n),
});

/** Bounds a chain of rewrites of one node (each rule must make progress; this catches one that
 *  does not). */
const MAX_STEPS = 64;

/** Applies `rules` everywhere in `g`; returns the new graph. */
export function rewriteGraph(g: Graph, rules: readonly Rule<any>[]): Graph {
  const done = new Map<Node, Node>();
  /** Forms of the node being rewritten: a replacement may contain them, unrewritten. */
  const active = new Set<Node>();

  const rebuild = (n: Node): Node => {
    const ins = n.inputs.map((i) => done.get(i) ?? i);
    return ins.every((x, k) => x === n.inputs[k]) ? n : make(n.op, ins, n.attrs);
  };

  const visit = (order: readonly Node[]): void => {
    for (const n of order) {
      if (done.has(n) || active.has(n)) continue;
      const r = fix(rebuild(n));
      if (r !== n) {
        const where = provenance(n);
        if (where) mark(r, where);
      }
      done.set(n, r);
      done.set(r, r);
    }
  };

  /** The first rule's replacement of `n`, or undefined. */
  const step = (n: Node): Node | undefined => {
    for (const r of rules) {
      const m = r.match(n);
      if (m === undefined) continue;
      const out = r.rewrite(m, n);
      if (out === n) continue;
      if (out.dtype !== n.dtype || out.shape.length !== n.shape.length || out.shape.some((d, k) => d !== n.shape[k]))
        throw new Error(`rewrite rule '${r.name}' turned ${n.op}: ${typeStr(n)} into ${out.op}: ${typeStr(out)}`);
      return out;
    }
    return undefined;
  };

  const fix = (n0: Node): Node => {
    let n = n0;
    const mine: Node[] = [];
    try {
      for (let k = 0; k < MAX_STEPS; k++) {
        const next = step(n);
        if (!next) return n;
        // The replacement's new nodes get the rules too, inputs first (not the forms of n it
        // may contain).
        mine.push(n);
        active.add(n);
        visit(topo([next]).slice(0, -1));
        n = rebuild(next);
      }
      throw new Error(`rewrite rules did not settle on ${n.op}: ${typeStr(n)}`);
    } finally {
      for (const m of mine) active.delete(m);
    }
  };

  visit(topo(roots(g)));
  const get = (n: Node) => done.get(n)!;
  return {
    outputs: g.outputs.map((o) => ({ name: o.name, node: get(o.node) })),
    updates: g.updates.map((u) => ({ ...u, node: get(u.node) })),
  };
}
