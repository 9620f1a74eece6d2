// Memory planning: which buffer each node of a program writes, at concrete shapes. A node's output
// takes a buffer whose previous tenant is dead (its last reader, counting through aliases, ran
// before this node), so a run needs about its peak of live tensors instead of one buffer per node.
// Constants (uploaded once per plan), outputs and updates (copied out after the run) keep buffers
// of their own; arguments are the executor's persistent tensors; an alias (reshape) is its input's
// buffer. A node's inputs are live until it has run, so no kernel reads the buffer it writes
// (WebGPU forbids binding one buffer as read-only and writable in one dispatch).

import type { NodeJSON, ProgramJSON } from './program.ts';
import { numel } from './shapes.ts';

export interface MemoryPlan {
  /** Each node's buffer (an index into `sizes`), -1 for arguments and their aliases, updates in
   *  place (their argument's) and nodes that only live inside another node's kernel. */
  buffer: number[];
  /** Bytes of each buffer. */
  sizes: number[];
}

/** The lifetimes of a program's values: each node's home (itself, or through aliases the node
 *  whose value it is) and, by home, the last node that reads it (-1: none; Infinity: an output or
 *  update, read after the run). The CPU executor shares it. */
export function lifetimes(p: ProgramJSON, isAlias: (n: NodeJSON) => boolean): { home: number[]; last: number[] } {
  const home = p.nodes.map((_, i) => i);
  const last = p.nodes.map(() => -1);
  p.nodes.forEach((n, i) => {
    if (isAlias(n)) home[i] = home[n.inputs[0]];
    // a node that another node's dispatch computes reads its inputs there (the executors that run
    // it on its own read them earlier: holding them longer is safe)
    for (const j of n.inputs) last[home[j]] = Math.max(last[home[j]], n.by ?? i);
  });
  for (const r of [...p.outputs, ...p.updates]) last[home[r.node]] = Infinity;
  return { home, last };
}

/** Whether a node of a program with kernels is an alias (a reshape): no kernel, and neither a leaf, a
 *  constant nor computed by another node's kernel. */
export const isAlias = (n: NodeJSON): boolean => n.kernel === undefined && n.by === undefined && n.op !== 'const' && n.op !== 'arg';

/** `shapes`: each node's concrete shape (`nodeShapes`). */
export function planMemory(p: ProgramJSON, shapes: readonly number[][]): MemoryPlan {
  const nodes = p.nodes;
  const { home, last } = lifetimes(p, isAlias);

  const buffer = new Array<number>(nodes.length).fill(-1);
  const sizes: number[] = [];
  const free: number[] = [];
  const dying: number[][] = nodes.map(() => []);
  const reuse = (size: number): number => {
    // the smallest free buffer that fits, else the largest free one, grown to fit
    const fits = free.filter((f) => sizes[f] >= size);
    const pick = (list: number[], better: (a: number, b: number) => boolean) => list.reduce((b, f) => (better(sizes[f], sizes[b]) ? f : b), list[0]);
    const b = fits.length ? pick(fits, (x, y) => x < y) : free.length ? pick(free, (x, y) => x > y) : -1;
    if (b >= 0) free.splice(free.indexOf(b), 1);
    return b;
  };
  /** Node `i`'s buffer, taken when the dispatch at `at` writes it. */
  const place = (i: number, at: number) => {
    const size = numel(shapes[i]) * 4;
    const own = nodes[i].op === 'const' || last[i] === Infinity;
    let b = own ? -1 : reuse(size);
    if (b < 0) b = sizes.push(0) - 1;
    sizes[b] = Math.max(sizes[b], size);
    buffer[i] = b;
    if (!own) dying[Math.max(last[i], at)].push(b); // unread: free right after it is made
  };
  nodes.forEach((n, i) => {
    // a node computed by a later dispatch gets its buffer there (if that dispatch stores it)
    // (an update in place is its argument's buffer)
    if (home[i] === i && n.op !== 'arg' && n.by === undefined) for (const w of [i, ...(n.writes ?? [])]) if (nodes[w].into === undefined) place(w, i);
    // buffers whose last reader is this node are free for the nodes after it
    free.push(...dying[i]);
  });
  // an alias is its home's buffer (which may be placed after the alias: a merged kernel's)
  nodes.forEach((_, i) => (buffer[i] = buffer[home[i]]));
  return { buffer, sizes };
}
