// Kernel selection: one WGSL module per dispatch, shared between dispatches whose module text is
// the same (the shaderKey). A dispatch is a node that needs a kernel, or a group of them that
// codegen/merge.ts computes together, or two such that run side by side (`besidePairs`).

import { binds, hyperSlots, kernelName, type KernelJSON, type NodeJSON, type ProgramJSON } from '../../runtime/program.ts';
import { ops, type OpKind } from '../ops/registry.ts';
import { quads } from '../ops/matmul.ts';
import { source } from '../ops/fused.ts';
import type { KernelSig, KernelSource, OpDef } from '../ops/types.ts';
import { besideModule, kernelModule, shaderKey } from './wgsl.ts';
import { besidePairs, inPlace, mergeGroups, type Dispatch } from './merge.ts';

export function attachKernels(p: ProgramJSON): ProgramJSON {
  const slot = new Map(hyperSlots(p).map((n, s) => [n, s]));
  const merged = mergeGroups(p);
  const by = new Map<number, number>();
  for (const [d, g] of merged) for (const m of g.members) if (m !== d) by.set(m, d);

  // each dispatch's kernel, on its own
  type Kernel = { sig: KernelSig; src: KernelSource };
  // (`sub`: its variant for adapters with subgroups of four)
  const dispatches: (Dispatch & Kernel & { sub?: Kernel })[] = [];
  const updatesIn = inPlace(p, (j) => by.get(j) ?? j);
  for (const n of p.nodes) {
    const def: OpDef = ops()[n.op as OpKind];
    if (def.alias || (!def.cpu && !def.wgsl) || by.has(n.id)) continue; // aliases and leaves run no kernel
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
    const [members, stored] = g ? [g.members, g.written] : [[n.id], [n.id]];
    // updates computed in their argument's buffer write it through its input's binding
    const into = op === 'fused' ? updatesIn(members, stored) : new Map<number, number>();
    if (into.size) sig.into = stored.map((s) => (into.has(s) ? inputs.indexOf(into.get(s)!) : -1));
    // the buffers it binds: its inputs (a merged kernel's), but for the hyperparameters it reads
    // from the uniform
    const reads = inputs.filter((j) => hyper(j) === undefined);
    const wgsl = (g ? ops().fused : def).wgsl!;
    // a matrix product's variant for adapters with subgroups of four, where it applies
    const product = op === 'matmul' || (op === 'fused' && source(attrs) === 'matmul');
    const variant = { ...sig, subgroups: true };
    const sub = product && quads(n.shape[n.shape.length - 1]) ? { sig: variant, src: wgsl(variant) } : undefined;
    dispatches.push({ node: n.id, reads, stored, members, into, sig, src: wgsl(sig), sub });
  }

  const kernels: KernelJSON[] = [];
  const byKey = new Map<string, number>();
  type Variant = { wgsl: string; src: KernelSource; first?: KernelSource };
  const kernel = (op: string, wgsl: string, src: KernelSource, hypers: boolean, first?: KernelSource, v?: Variant): number => {
    // (dispatches of one text where only some can run the variant keep apart)
    const key = shaderKey(wgsl + JSON.stringify(src.grid) + (v ? v.wgsl : ''));
    let k = byKey.get(key);
    if (k === undefined) {
      k = kernels.length;
      byKey.set(key, k);
      const sub = v && { name: kernelName(op, v.wgsl, v.src.grid), wgsl: v.wgsl, grid: v.src.grid, ...(v.first ? { first: v.first.grid } : {}) };
      kernels.push({ name: kernelName(op, wgsl, src.grid), wgsl, grid: src.grid, ...(first ? { first: first.grid } : {}), ...(hypers ? { hypers: true as const } : {}), ...(sub ? { sub } : {}) });
    }
    return k;
  };
  const fields = new Map<number, Partial<NodeJSON>>();
  const own = (d: Dispatch): Partial<NodeJSON> => {
    const n = p.nodes[d.node];
    const same = d.reads.length === n.inputs.length && d.reads.every((j, i) => j === n.inputs[i]);
    return { ...(same ? {} : { reads: d.reads }), ...(d.stored.length > 1 ? { writes: d.stored.slice(1) } : {}), ...(d.into.has(d.node) ? { into: d.into.get(d.node) } : {}) };
  };
  const hypers = (d: { sig: KernelSig }) => d.sig.inputs.some((i) => i.hyper !== undefined);
  const pairs = besidePairs(p, dispatches);
  const firsts = new Set(pairs.values());
  const byNode = new Map(dispatches.map((d) => [d.node, d]));
  for (const d of dispatches) {
    if (firsts.has(d.node)) continue; // it runs beside the next dispatch
    const first = pairs.get(d.node);
    for (const m of d.members) if (m !== d.node) fields.set(m, { by: d.node, ...(d.into.has(m) ? { into: d.into.get(m) } : {}) });
    if (first === undefined) {
      const v = d.sub && { wgsl: kernelModule(d.sub.sig, d.sub.src), src: d.sub.src };
      fields.set(d.node, { kernel: kernel(p.nodes[d.node].op, kernelModule(d.sig, d.src), d.src, hypers(d), undefined, v), ...own(d) });
      continue;
    }
    // `first` and `d` in one dispatch, at d: first's nodes are computed by it and stored by it
    const a = byNode.get(first)!;
    for (const m of a.members) fields.set(m, { by: d.node, ...(a.into.has(m) ? { into: a.into.get(m) } : {}) });
    fields.set(a.node, { by: d.node, ...own(a) });
    const mine = { ...own(d), writes: [...d.stored.slice(1), ...a.stored], beside: a.node };
    const bound = binds({ ...p.nodes[d.node], ...mine }, { ...p.nodes[a.node], ...own(a) });
    // the outputs bound after the inputs (not those written in place of an input)
    const outs = [d.node, ...mine.writes].filter((s) => !d.into.has(s) && !a.into.has(s));
    // the first kernel's reads are the first bindings, as they are on its own
    const part = (x: typeof d, at: (r: number) => number, { sig, src }: Kernel = x) => {
      let r = 0;
      const ins = x.sig.inputs.map((i) => (i.hyper === undefined ? at(r++) : -1));
      return { sig, src, ins, outs: x.stored.map((s) => (x.into.has(s) ? ins[x.sig.into![x.stored.indexOf(s)]] : bound.length + outs.indexOf(s))) };
    };
    const [atA, atD] = [(r: number) => r, (r: number) => bound.indexOf(d.reads[r])];
    const parts = [part(a, atA), part(d, atD)] as const;
    const written = new Set(parts.flatMap((q) => q.outs));
    const layout = [...bound, ...outs].map((j, b) => ({ dtype: p.nodes[j].dtype, write: written.has(b) }));
    const wgsl = besideModule(parts, layout);
    const v = (a.sub || d.sub) && { wgsl: besideModule([part(a, atA, a.sub), part(d, atD, d.sub)], layout), src: (d.sub ?? d).src, first: (a.sub ?? a).src };
    fields.set(d.node, { kernel: kernel(p.nodes[d.node].op, wgsl, d.src, hypers(a) || hypers(d), a.src, v), ...mine });
  }
  return { ...p, nodes: p.nodes.map((n) => ({ ...n, ...fields.get(n.id) })), kernels };
}
