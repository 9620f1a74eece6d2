// A graph is the set of nodes reachable from named results. Here: topological order and the
// conversion to the runtime's JSON program.

import type { Node } from './node.ts';
import { provenance } from './provenance.ts';
import type { ArgJSON, NodeJSON, ProgramJSON } from '../../runtime/program.ts';

export interface Graph {
  outputs: readonly { name: string; node: Node }[];
  /** New values of arguments (parameters, slots, state) computed by this graph. */
  updates: readonly { role: ArgJSON['role']; name: string; node: Node }[];
}

export function roots(g: Graph): Node[] {
  return [...g.outputs.map((o) => o.node), ...g.updates.map((u) => u.node)];
}

/** Every node reachable from `nodes`, inputs before users (iterative: graphs can be deep). */
export function topo(nodes: readonly Node[]): Node[] {
  const seen = new Set<Node>();
  const order: Node[] = [];
  for (const root of nodes) {
    if (seen.has(root)) continue;
    const stack: [Node, number][] = [[root, 0]];
    seen.add(root);
    while (stack.length) {
      const top = stack[stack.length - 1];
      const [n, i] = top;
      if (i < n.inputs.length) {
        top[1]++;
        const c = n.inputs[i];
        if (!seen.has(c)) {
          seen.add(c);
          stack.push([c, 0]);
        }
      } else {
        stack.pop();
        order.push(n);
      }
    }
  }
  return order;
}

/** Symbolic dimension names used anywhere in the nodes (shapes and attributes), sorted. */
export function symbolsOf(nodes: readonly Node[]): string[] {
  const syms = new Set<string>();
  for (const n of nodes) {
    for (const d of n.shape) if (typeof d === 'string') syms.add(d);
    for (const v of Object.values(n.attrs)) if (Array.isArray(v)) for (const d of v) if (typeof d === 'string') syms.add(d);
  }
  return [...syms].sort();
}

/** The runtime program without kernels (codegen fills `kernels` and each node's `kernel`). */
export function toProgram(g: Graph): ProgramJSON {
  const order = topo(roots(g));
  const index = new Map(order.map((n, i) => [n, i]));
  const nodes: NodeJSON[] = order.map((n, i) => ({
    id: i,
    op: n.op,
    inputs: n.inputs.map((c) => index.get(c)!),
    attrs: { ...n.attrs },
    shape: [...n.shape],
    dtype: n.dtype,
    ...(provenance(n) ? { src: provenance(n) } : {}),
  }));
  const args: ArgJSON[] = order
    .filter((n) => n.op === 'arg')
    .map((n) => ({ role: n.attrs.role as ArgJSON['role'], name: n.attrs.name as string, node: index.get(n)! }));
  return {
    nodes,
    args,
    outputs: g.outputs.map((o) => ({ name: o.name, node: index.get(o.node)! })),
    updates: g.updates.map((u) => ({ role: u.role, name: u.name, node: index.get(u.node)! })),
    symbols: symbolsOf(order),
    kernels: [],
  };
}
