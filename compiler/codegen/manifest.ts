// The manifest: every program of the model as runtime JSON with its kernels, and the names,
// shapes and roles of everything an app feeds, reads, saves and restores.

import type { Manifest, TensorSpec } from '../../runtime/program.ts';
import type { Node } from '../ir/node.ts';
import { toProgram, type Graph } from '../ir/graph.ts';
import type { LoweredModel } from '../ir/lower.ts';
import { attachKernels } from './kernels.ts';
import { runPipeline, type Pass } from '../passes/pipeline.ts';

const spec = (name: string, n: Node): TensorSpec => ({ name, dtype: n.dtype, shape: [...n.shape] });

export interface ManifestOptions {
  /** Include the gradient program (loss and raw gradients), for gradient checks; L-BFGS always
   *  gets it. */
  gradient?: boolean;
  /** The optimizing passes run on every program (default: the whole pipeline; [] for none). */
  passes?: readonly Pass[];
}

export function buildManifest(m: LoweredModel, opts: ManifestOptions = {}): Manifest {
  const c = m.config;
  const program = (g: Graph) => attachKernels(toProgram(runPipeline(g, { passes: opts.passes })));
  return {
    format: 'dlc-bundle/1',
    model: m.name,
    inputs: m.inputs.map((n) => spec(n.attrs.name as string, n)),
    outputs: m.outputs.map((o) => spec(o.name, o.node)),
    metrics: m.metrics,
    params: m.params.map((p) => ({ ...spec(p.name, p.node), tags: p.tags })),
    state: m.state.map((s) => spec(s.name, s.node)),
    slots: m.slots.map((s) => spec(s.name, s.node)),
    optimizer: { name: c.optimizer.name, hypers: c.optimizer.hypers },
    ...(c.schedule ? { schedule: { name: c.schedule.decl.name.name, hypers: c.schedule.hypers } } : {}),
    train: { batch: c.batch, epochs: c.epochs, shuffle: c.shuffle, seed: c.seed, ...(c.earlyStop ? { earlyStop: c.earlyStop } : {}) },
    programs: {
      init: program(m.graphs.init),
      train: program(m.graphs.train),
      evaluate: program(m.graphs.evaluate),
      predict: program(m.graphs.predict),
      ...(opts.gradient || !c.optimizer.decl ? { gradient: program(m.graphs.gradient) } : {}),
      ...(m.graphs.schedule ? { schedule: program(m.graphs.schedule) } : {}),
    },
  };
}
