// Constant folding: an op whose inputs are all constants, with a small static result, becomes a
// constant. It is computed with the op's own CPU kernel in float64, then rounded to its dtype (f32
// values to the nearest float32), so a folded program computes what the unfolded one would, up to
// float32 rounding. Results that are not finite stay unfolded (manifest.json is JSON).

import { broadcast, constant, literal } from '../ir/build.ts';
import { staticSize, type DType, type Node } from '../ir/node.ts';
import { ops } from '../ops/registry.ts';
import type { Tensor } from '../ops/types.ts';
import { rewriteGraph, type Rule } from './rewrite.ts';
import type { Pass } from './pipeline.ts';

/** The largest constant folding makes (elements). */
export const FOLD_LIMIT = 256;

/** Ops that must not be folded although their inputs may be constants. */
const KEEP = new Set(['arg', 'const', 'fused']);

function constTensor(n: Node): Tensor {
  const shape = n.shape as number[];
  const size = staticSize(shape)!;
  const v = n.attrs.value;
  const data = n.dtype === 'f32' ? new Float64Array(size) : new Int32Array(size);
  if (Array.isArray(v)) data.set(v.map(Number));
  else data.fill(Number(v));
  return { data, shape: [...shape] };
}

const round = (v: number, dtype: DType): number => (dtype === 'f32' ? Math.fround(v) : v);

export const foldRules: Rule<Node>[] = [
  {
    name: 'fold-constant',
    match(n) {
      const def = ops()[n.op];
      if (KEEP.has(n.op) || !(def.cpu || def.alias)) return undefined;
      if (!n.inputs.every((i) => i.op === 'const')) return undefined;
      // broadcast(scalar) is how a uniform tensor is written (simplify strips it from operands).
      if (n.op === 'broadcast' && !n.inputs[0].shape.length) return undefined;
      const size = staticSize(n.shape);
      if (size === undefined || size > FOLD_LIMIT) return undefined;
      return n;
    },
    rewrite(n) {
      const def = ops()[n.op];
      const ins = n.inputs.map(constTensor);
      const shape = n.shape as number[];
      let values: number[];
      try {
        const data = def.alias ? ins[0].data : def.cpu!(ins, n.attrs, { shape, dtype: n.dtype }, { float: Float64Array, syms: {} });
        values = Array.from(data, (v) => round(v, n.dtype));
      } catch {
        return n; // e.g. the size of a symbolic dimension
      }
      if (!values.every(Number.isFinite)) return n;
      if (!shape.length) return constant(values[0], n.dtype);
      if (values.every((v) => Object.is(v, values[0]))) return broadcast(constant(values[0], n.dtype), shape);
      return literal(values, shape, n.dtype);
    },
  },
];

export const fold: Pass = {
  name: 'fold',
  description: 'constant folding: ops on constants become constants (small results only)',
  run: (g) => rewriteGraph(g, foldRules),
};
