// The optimizing passes, as a flat named list run in order on each program's graph between
// lowering (with autodiff and the optimizer update) and codegen. A pass is a pure function from
// graph to graph: nodes are immutable and hash-consed, so a pass rebuilds what it changes with the
// IR builders, and common subexpressions merge as they are made (CSE is not a pass; nor is dead
// code elimination: a graph is what its outputs and updates reach).
//
//   fold       constant folding (passes/fold.ts)
//   simplify   algebraic identities and broadcasts moved out of elementwise ops (passes/simplify.ts)
//   stability  log-softmax, logsumexp, softmax with max subtraction (passes/stability.ts)
//   split      reductions of many values into few results in two stages (passes/split.ts)
//   fuse       elementwise fusion into `fused` kernels (passes/fuse.ts)
//
// Tests run the verifier (passes/verify.ts) after every pass; `dlc compile --dump PASS` prints a
// program after any of them (`lowered`: before the first).

import type { Graph } from '../ir/graph.ts';
import { fold } from './fold.ts';
import { simplify } from './simplify.ts';
import { stability } from './stability.ts';
import { split } from './split.ts';
import { fuse } from './fuse.ts';
import { verify as verifyGraph } from './verify.ts';

export interface Pass {
  name: string;
  /** One line for `--dump` help and the docs. */
  description: string;
  run(g: Graph): Graph;
}

export const passes: readonly Pass[] = [fold, simplify, stability, simplify, split, fuse];

/** The name `--dump` takes for the graph as lowered, before any pass. */
export const LOWERED = 'lowered';

export const passNames = (): string[] => [LOWERED, ...new Set(passes.map((p) => p.name))];

export interface PipelineOptions {
  /** The passes to run (default: all). */
  passes?: readonly Pass[];
  /** Stop after the last run of the pass of this name (or before any pass: 'lowered'). */
  until?: string;
  /** Run the verifier on the input and after every pass. */
  verify?: boolean;
  /** Sees the graph after each pass. */
  after?(pass: Pass, g: Graph): void;
}

export function runPipeline(g: Graph, o: PipelineOptions = {}): Graph {
  const list = o.passes ?? passes;
  let last = list.length;
  if (o.until !== undefined) {
    if (o.until === LOWERED) last = 0;
    else {
      last = list.map((p) => p.name).lastIndexOf(o.until) + 1;
      if (!last) throw new Error(`no pass named '${o.until}' (passes: ${[LOWERED, ...new Set(list.map((p) => p.name))].join(', ')})`);
    }
  }
  if (o.verify) verifyGraph(g, LOWERED);
  for (const pass of list.slice(0, last)) {
    g = pass.run(g);
    if (o.verify) verifyGraph(g, pass.name);
    o.after?.(pass, g);
  }
  return g;
}
