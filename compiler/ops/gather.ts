// take(x, idx): out[...] = x[..., idx[...]], one entry of x's last axis per position of idx (the
// probability of each example's label). An index outside [0, N) reads 0 on every backend, and its
// position gets no gradient.

import { binary, constant, iota, reshape, select } from '../ir/build.ts';
import { ShapeError, sameShape, shapeStr } from '../ir/node.ts';
import type { CpuKernel, OpDef } from './types.ts';
import { MAIN } from './elementwise.ts';

export const takeCpu: CpuKernel = ([x, idx], _attrs, out, ctx) => {
  const n = x.shape[x.shape.length - 1];
  const res = new ctx.float(idx.data.length);
  for (let p = 0; p < res.length; p++) {
    const j = idx.data[p];
    res[p] = j >= 0 && j < n ? x.data[p * n + j] : 0;
  }
  return res;
};

export const gatherOps = {
  take: {
    shape([x, idx]) {
      if (x.dtype !== 'f32' || idx.dtype !== 'i32') throw new ShapeError(`take needs f32 values and i32 indices, got ${x.dtype} and ${idx.dtype}`);
      if (x.shape.length < 1 || !sameShape(x.shape.slice(0, -1), idx.shape))
        throw new ShapeError(`take from ${shapeStr(x.shape)} needs indices of shape ${shapeStr(x.shape.slice(0, -1))}, got ${shapeStr(idx.shape)}`);
      return { shape: idx.shape, dtype: 'f32' };
    },
    // dx = ct[..., None] where iota(last axis) == idx[..., None], else 0
    vjp(node, ct) {
      const [x, idx] = node.inputs;
      const col = [...idx.shape, 1];
      const hit = binary('eq', iota(x.shape, x.shape.length - 1), reshape(idx, col));
      return [select(hit, reshape(ct, col), constant(0)), null];
    },
    cpu: takeCpu,
    wgsl(sig) {
      const code = `
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  let n = i32(M(IN0 + ${sig.inputs[0].rank - 1}u));
  let j = in1[i];
  out[i] = select(0.0, in0[i * u32(n) + u32(clamp(j, 0, n - 1))], j >= 0 && j < n);
}`;
      return { code, grid: { kind: 'elements' } };
    },
  },
} satisfies Record<string, OpDef>;
