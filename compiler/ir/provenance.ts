// Where each node came from: the source position of the expression that built it, or "gradient
// of ..." for the backward graph. Kept beside the hash-consed nodes (a node made twice keeps its
// first origin), and written into programs so run-time errors can point at source.

import type { Node } from './node.ts';

const origin = new WeakMap<Node, string>();

/** Label `root` and every node it depends on that has no label yet (arguments keep none: their
 *  name says where they come from). */
export function mark(root: Node, label: string): void {
  const stack = [root];
  while (stack.length) {
    const n = stack.pop()!;
    if (origin.has(n) || n.op === 'arg') continue;
    origin.set(n, label);
    stack.push(...n.inputs);
  }
}

export function provenance(n: Node): string | undefined {
  return origin.get(n);
}
