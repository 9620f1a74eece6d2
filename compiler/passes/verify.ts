// The IR verifier, run after every pass in tests (and by `runPipeline(g, { verify: true })`):
// every node's shape and dtype are what its op's shape rule gives on its inputs, every input is a
// node, the graph is acyclic, outputs and updates are present with distinct names, and an update
// has the shape and dtype of the argument it replaces.

import { sameShape, typeStr, type Node } from '../ir/node.ts';
import { roots, topo, type Graph } from '../ir/graph.ts';
import { ops } from '../ops/registry.ts';

export class VerifyError extends Error {}

/** The problems found in `g` (empty when it is well formed). */
export function verifyProblems(g: Graph): string[] {
  const problems: string[] = [];
  const say = (n: Node | undefined, msg: string) => problems.push(n ? `node #${n.id} (${n.op}): ${msg}` : msg);

  if (!g.outputs.length && !g.updates.length) say(undefined, 'the graph has no outputs and no updates');
  const names = new Set<string>();
  for (const o of g.outputs) {
    if (!o.node) say(undefined, `output '${o.name}' has no node`);
    if (names.has(o.name)) say(undefined, `output '${o.name}' appears twice`);
    names.add(o.name);
  }
  const keys = new Set<string>();
  for (const u of g.updates) {
    if (!u.node) say(undefined, `update of ${u.role} '${u.name}' has no node`);
    const key = `${u.role}:${u.name}`;
    if (keys.has(key)) say(undefined, `${u.role} '${u.name}' is updated twice`);
    keys.add(key);
  }
  if (problems.length) return problems;

  for (const r of roots(g)) {
    const stack: Node[] = [r];
    // dangling inputs (anything that is not a node) before the walks below trip over them
    const seen = new Set<Node>();
    while (stack.length) {
      const n = stack.pop()!;
      if (seen.has(n)) continue;
      seen.add(n);
      n.inputs.forEach((i, k) => {
        if (!i || typeof i !== 'object' || !('op' in i)) say(n, `input ${k} is not a node`);
        else stack.push(i);
      });
    }
  }
  if (problems.length) return problems;

  const order = topo(roots(g));
  const position = new Map(order.map((n, i) => [n, i]));
  const args = new Map<string, Node>();
  for (const n of order) {
    if (!Object.isFrozen(n)) say(n, 'is not frozen (nodes are immutable)');
    for (const i of n.inputs) if (position.get(i)! >= position.get(n)!) say(n, `input #${i.id} does not come before it (a cycle)`);
    const def = ops()[n.op];
    if (!def) {
      say(n, 'unknown op');
      continue;
    }
    try {
      const want = def.shape(n.inputs, n.attrs);
      if (want.dtype !== n.dtype || !sameShape(want.shape, n.shape)) say(n, `is ${typeStr(n)} but its shape rule gives ${typeStr(want)}`);
    } catch (e) {
      say(n, `its shape rule rejects it: ${(e as Error).message}`);
    }
    if (n.op === 'arg') args.set(`${n.attrs.role}:${n.attrs.name}`, n);
  }
  for (const u of g.updates) {
    const a = args.get(`${u.role}:${u.name}`);
    if (a && (a.dtype !== u.node.dtype || !sameShape(a.shape, u.node.shape)))
      say(u.node, `updates ${u.role} '${u.name}' of ${typeStr(a)} with ${typeStr(u.node)}`);
  }
  return problems;
}

/** Throws a VerifyError listing the problems of `g`, after `pass` if given. */
export function verify(g: Graph, pass?: string): void {
  const problems = verifyProblems(g);
  if (problems.length) throw new VerifyError(`${pass ? `after pass '${pass}': ` : ''}invalid IR:\n  ${problems.slice(0, 20).join('\n  ')}`);
}
