// Kernel selection: one WGSL module per dispatch, shared between dispatches whose module text is
// the same (the shaderKey). A dispatch is a node that needs a kernel, or a group of them that
// codegen/merge.ts computes together.

import { hyperSlots, kernelName, type KernelJSON, type NodeJSON, type ProgramJSON } from '../../runtime/program.ts';
import { ops, type OpKind } from '../ops/registry.ts';
import type { KernelSig, OpDef } from '../ops/types.ts';
import { kernelModule, shaderKey } from './wgsl.ts';
import { mergeGroups } from './merge.ts';

export function attachKernels(p: ProgramJSON): ProgramJSON {
  const kernels: KernelJSON[] = [];
  const byKey = new Map<string, number>();
  const slot = new Map(hyperSlots(p).map((n, s) => [n, s]));
  const merged = mergeGroups(p);
  const by = new Map<number, number>();
  for (const [d, g] of merged) for (const m of g.members) if (m !== d) by.set(m, d);

  const nodes = p.nodes.map((n): NodeJSON => {
    const def: OpDef = ops()[n.op as OpKind];
    if (def.alias || (!def.cpu && !def.wgsl)) return n; // aliases and leaves run no kernel
    if (by.has(n.id)) return { ...n, by: by.get(n.id)! };
    if (!def.wgsl) throw new Error(`op '${n.op}' has a CPU kernel but no WGSL template`);
    const g = merged.get(n.id);
    const [op, attrs, inputs] = g ? ['fused', g.attrs, g.inputs] : [n.op, n.attrs, n.inputs];
    // only fused kernels read scalar hyperparameters from the uniform
    const hyper = (j: number) => (op === 'fused' ? slot.get(j) : undefined);
    const sig: KernelSig = {
      op,
      attrs,
      inputs: inputs.map((j) => ({ dtype: p.nodes[j].dtype, rank: p.nodes[j].shape.length, shape: p.nodes[j].shape, hyper: hyper(j) })),
      output: { dtype: n.dtype, rank: n.shape.length, shape: n.shape },
      ...(g && g.written.length > 1 ? { writes: g.written.slice(1).map((w) => ({ dtype: p.nodes[w].dtype })) } : {}),
      symbols: p.symbols,
    };
    const src = (g ? ops().fused : def).wgsl!(sig);
    const wgsl = kernelModule(sig, src);
    const key = shaderKey(wgsl + JSON.stringify(src.grid));
    let k = byKey.get(key);
    if (k === undefined) {
      k = kernels.length;
      byKey.set(key, k);
      kernels.push({ name: kernelName(n.op, wgsl, src.grid), wgsl, grid: src.grid, ...(sig.inputs.some((i) => i.hyper !== undefined) ? { hypers: true as const } : {}) });
    }
    // the buffers it binds: its inputs (a merged kernel's), but for the hyperparameters it reads
    // from the uniform
    const reads = inputs.filter((j) => hyper(j) === undefined);
    const same = reads.length === n.inputs.length && reads.every((j, i) => j === n.inputs[i]);
    return { ...n, kernel: k, ...(same ? {} : { reads }), ...(g && g.written.length > 1 ? { writes: g.written.slice(1) } : {}) };
  });
  return { ...p, nodes, kernels };
}
