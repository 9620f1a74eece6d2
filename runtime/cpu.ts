// The CPU executor: runs a program node by node with the ops' CPU kernels, in float64 (gradient
// checks) or float32 (to compare with WGSL). Intermediate arrays are dropped after their last use.

import type { CpuKernel, Tensor, TypedArray } from '../compiler/ops/types.ts';
import type { DType, NodeJSON, ProgramJSON } from './program.ts';
import { argKey, bindSymbols, nodeShapes, numel } from './shapes.ts';

export type FloatArrayType = Float32ArrayConstructor | Float64ArrayConstructor;

/** Each op's CPU kernel, or 'alias' for ops whose output is their input's data reshaped. */
export type CpuKernels = Readonly<Record<string, CpuKernel | 'alias'>>;

export interface RunResult {
  /** By output name. */
  outputs: Record<string, Tensor>;
  /** By `argKey` of the updated argument: merge into the feeds to run the next step. */
  updates: Record<string, Tensor>;
}

/** A const node's value (a scalar fills its shape): `float` for f32, Int32Array for i32 and bool. */
export function constData(n: NodeJSON, size: number, float: FloatArrayType): TypedArray {
  const v = n.attrs.value;
  const data = n.dtype === 'f32' ? new float(size) : new Int32Array(size);
  if (Array.isArray(v)) data.set(v.map(Number));
  else data.fill(Number(v));
  return data;
}

function checkFeed(what: string, t: Tensor, dtype: DType, float: FloatArrayType): TypedArray {
  if (t.data.length !== numel(t.shape)) throw new Error(`${what}: ${t.data.length} values for shape [${t.shape}]`);
  if (dtype !== 'f32') {
    if (!(t.data instanceof Int32Array)) throw new Error(`${what}: ${dtype} data must be an Int32Array`);
    return t.data;
  }
  if (t.data instanceof Int32Array) throw new Error(`${what}: f32 data must be a Float32Array or Float64Array`);
  return t.data instanceof float ? t.data : new float(t.data);
}

/** Runs `p` on `feeds`, keyed by `argKey` (`input:x`, `param:w`). `watch` sees every node's value
 *  as it is made (the NaN guard uses it to find the first non-finite one). */
export function runCpu(
  p: ProgramJSON,
  kernels: CpuKernels,
  feeds: Readonly<Record<string, Tensor>>,
  float: FloatArrayType,
  watch?: (node: number, value: TypedArray) => void,
): RunResult {
  const syms = bindSymbols(p, feeds);
  const shapes = nodeShapes(p, syms);
  const lastUse = p.nodes.map(() => -1);
  p.nodes.forEach((n, i) => n.inputs.forEach((j) => (lastUse[j] = i)));
  for (const r of [...p.outputs, ...p.updates]) lastUse[r.node] = Infinity;
  const argOf = new Map(p.args.map((a) => [a.node, a]));

  const values: (TypedArray | undefined)[] = [];
  p.nodes.forEach((n, i) => {
    const shape = shapes[i];
    const arg = argOf.get(i);
    const kernel = kernels[n.op];
    if (arg) values[i] = checkFeed(`${arg.role} '${arg.name}'`, feeds[argKey(arg)], n.dtype, float);
    else if (n.op === 'const') values[i] = constData(n, numel(shape), float);
    else if (kernel === 'alias') values[i] = values[n.inputs[0]];
    else if (!kernel) throw new Error(`no CPU kernel for op '${n.op}'`);
    else {
      const inputs = n.inputs.map((j) => ({ data: values[j]!, shape: shapes[j] }));
      const out = kernel(inputs, n.attrs, { shape, dtype: n.dtype }, { float, syms, kernels });
      if (out.length !== numel(shape)) throw new Error(`op '${n.op}' (node ${i}) gave ${out.length} values for shape [${shape}]`);
      values[i] = out;
    }
    watch?.(i, values[i]!);
    for (const j of n.inputs) if (lastUse[j] === i) values[j] = undefined;
  });

  const tensor = (i: number): Tensor => ({ data: values[i]!, shape: shapes[i] });
  return {
    outputs: Object.fromEntries(p.outputs.map((o) => [o.name, tensor(o.node)])),
    updates: Object.fromEntries(p.updates.map((u) => [argKey(u), tensor(u.node)])),
  };
}
