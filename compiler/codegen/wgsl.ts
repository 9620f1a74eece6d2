// WGSL generation: the one dtype map, the binding and `meta` layout shared by every kernel, and the
// shaderKey. Op templates (in compiler/ops/*) write only their body against these helpers.
//
// Bindings: inputs are `in0`, `in1`, ... (read-only storage; an input with a `hyper` slot is not
// bound: it is read from the program's hyper uniform with `H(slot)`), the output is `out` (more
// outputs `out1`, ...), then `meta`, a uniform of u32s read with `M(i)`:
//   M(0)                    number of output elements
//   M(OUT + k)              output dim k
//   M(IN0 + k), M(IN1 + k)  dims of input 0, 1, ...
//   M(SYM_<name>)           value of a symbolic dimension
// and last, if the kernel reads any, `hypers`. Threads are numbered by `thread_id(gid, nwg)`; a
// kernel returns early past its grid.

import type { DType } from '../ir/node.ts';
import type { KernelSig, KernelSource } from '../ops/types.ts';
import { WORKGROUP } from '../../runtime/program.ts';

export const wgslType: Record<DType, string> = { f32: 'f32', i32: 'i32', bool: 'i32' };

export function metaLength(sig: Pick<KernelSig, 'inputs' | 'output' | 'symbols'>): number {
  return 1 + sig.output.rank + sig.inputs.reduce((s, i) => s + i.rank, 0) + sig.symbols.length;
}

/** The full module: bindings, meta accessors and offsets, then the op's body. */
export function kernelModule(sig: KernelSig, src: KernelSource): string {
  const lines: string[] = [];
  let binding = 0;
  sig.inputs.forEach((inp, i) => {
    if (inp.hyper === undefined) lines.push(`@group(0) @binding(${binding++}) var<storage, read> in${i}: array<${wgslType[inp.dtype]}>;`);
  });
  [sig.output, ...(sig.writes ?? [])].forEach((o, k) => lines.push(`@group(0) @binding(${binding++}) var<storage, read_write> out${k || ''}: array<${wgslType[o.dtype]}>;`));
  const words = Math.max(1, Math.ceil(metaLength(sig) / 4));
  lines.push(`@group(0) @binding(${binding++}) var<uniform> metadata: array<vec4<u32>, ${words}>;`);
  lines.push(`fn M(i: u32) -> u32 { return metadata[i / 4u][i % 4u]; }`);
  const slots = sig.inputs.flatMap((i) => (i.hyper === undefined ? [] : [i.hyper]));
  if (slots.length) {
    lines.push(`@group(0) @binding(${binding}) var<uniform> hypers: array<vec4<u32>, ${Math.ceil((Math.max(...slots) + 1) / 4)}>;`);
    lines.push(`fn H(i: u32) -> u32 { return hypers[i / 4u][i % 4u]; }`);
  }
  let offset = 1;
  lines.push(`const OUT: u32 = ${offset}u;`);
  offset += sig.output.rank;
  sig.inputs.forEach((inp, i) => {
    lines.push(`const IN${i}: u32 = ${offset}u;`);
    offset += inp.rank;
  });
  for (const s of sig.symbols) lines.push(`const SYM_${s}: u32 = ${offset++}u;`);
  lines.push(`const WG: u32 = ${WORKGROUP}u;`);
  lines.push(`fn thread_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }`);
  // one statement or declaration per line, unindented: the text ships in every bundle
  const body = src.code.split('\n').map((l) => l.trim()).filter(Boolean);
  return `${[...lines, ...body].join('\n')}\n`;
}

// Pipelines are cached by this key: kernels with the same text share one (bundles derive kernel
// names with it, so it lives in the runtime).
export { shaderKey } from '../../runtime/program.ts';
