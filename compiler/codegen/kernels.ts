// Kernel selection: one WGSL module per node that needs a kernel, shared between nodes whose
// module text is the same (the shaderKey).

import { kernelName, type KernelJSON, type ProgramJSON } from '../../runtime/program.ts';
import { ops, type OpKind } from '../ops/registry.ts';
import type { OpDef } from '../ops/types.ts';
import { kernelModule, shaderKey } from './wgsl.ts';

export function attachKernels(p: ProgramJSON): ProgramJSON {
  const kernels: KernelJSON[] = [];
  const byKey = new Map<string, number>();
  const nodes = p.nodes.map((n) => {
    const def: OpDef = ops()[n.op as OpKind];
    if (def.alias || (!def.cpu && !def.wgsl)) return n; // aliases and leaves run no kernel
    if (!def.wgsl) throw new Error(`op '${n.op}' has a CPU kernel but no WGSL template`);
    const sig = {
      op: n.op,
      attrs: n.attrs,
      inputs: n.inputs.map((i) => ({ dtype: p.nodes[i].dtype, rank: p.nodes[i].shape.length, shape: p.nodes[i].shape })),
      output: { dtype: n.dtype, rank: n.shape.length, shape: n.shape },
      symbols: p.symbols,
    };
    const src = def.wgsl(sig);
    const wgsl = kernelModule(sig, src);
    const key = shaderKey(wgsl + JSON.stringify(src.grid));
    let k = byKey.get(key);
    if (k === undefined) {
      k = kernels.length;
      byKey.set(key, k);
      kernels.push({ name: kernelName(n.op, wgsl, src.grid), wgsl, grid: src.grid });
    }
    return { ...n, kernel: k };
  });
  return { ...p, nodes, kernels };
}
