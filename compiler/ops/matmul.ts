// Batched matrix product over the last two dims, with the batch dims broadcast (NumPy) and either
// operand read transposed (transA: a is [..., K, M]; transB: b is [..., N, K]).

import { matmul } from '../ir/build.ts';
import { ShapeError, broadcastShapes, shapeStr } from '../ir/node.ts';
import type { CpuKernel, KernelSig, KernelSource, OpDef } from './types.ts';
import { numel } from '../../runtime/shapes.ts';
import { MAIN, boxOffsets, broadcastStrides, wgslBroadcastIndex } from './elementwise.ts';

/**
 * Each WGSL invocation computes a ROWS×COLS output tile in registers (COLS/4 vec4 accumulators per
 * row), without workgroup memory: on SwiftShader, shared memory and barriers ran ~10x slower, and
 * 8×8 tiles ran about twice as fast as 4×4 ones (half the loads per multiply-add). A tile's columns
 * are strided, j0 + c·tn (tn threads across a row), so that neighbouring threads, which SwiftShader
 * runs as the lanes of one SIMD instruction, read neighbouring floats of b and store neighbouring
 * floats: one vector access instead of one per lane (the MNIST MLP's first layer ran 1.6× faster
 * than with each tile's columns side by side).
 *
 * The variant for adapters with subgroups of four (SwiftShader's `subgroups`): 16×8 tiles, where
 * the four neighbouring threads of a subgroup, which compute tiles of the same rows (`quads`), each
 * load a quarter of those rows of a and pass them round with subgroupBroadcast: 12 loads per 128
 * multiply-adds instead of 16 per 64 (on SwiftShader every load whose index is not a constant is a
 * gather of four lanes). The MNIST MLP's training step ran 1.15× faster, its inference 1.3×
 * (an 8×8 tile so shared gained nothing).
 */
const ROWS = 8, COLS = 8, SUBGROUP_ROWS = 16;

/** Whether the four threads of each subgroup compute tiles of the same rows (the variant's premise):
 *  when the tiles across a row are a multiple of four, known from a static n. */
export const quads = (n: number | string): boolean => typeof n === 'number' && Math.ceil(n / COLS) % 4 === 0;
const seq = (n: number): number[] => Array.from({ length: n }, (_, q) => q);

// i-k-j order, four rows of the output at a time: each load from a row of b feeds four
// accumulator rows (a scratch; past row m they repeat the last row and are dropped). The inner
// loop runs along contiguous rows of b, so a transposed b is first packed into [K, N].
export const matmulCpu: CpuKernel = ([a, b], attrs, out, ctx) => {
  const r = out.shape.length;
  const [m, n] = [out.shape[r - 2], out.shape[r - 1]];
  const k = a.shape[a.shape.length - (attrs.transA ? 2 : 1)];
  const [si, sk] = attrs.transA ? [1, m] : [k, 1];
  const batch = out.shape.slice(0, -2);
  const offsets = (shape: number[], block: number) => boxOffsets(batch, broadcastStrides(shape.slice(0, -2), batch).map((s) => s * block));
  const [aOff, bOff] = [offsets(a.shape, m * k), offsets(b.shape, k * n)];
  const res = new ctx.float(numel(out.shape));
  const acc = new ctx.float(4 * n);
  const packed = attrs.transB ? new ctx.float(k * n) : undefined;
  const A = a.data;
  for (let t = 0; t < aOff.length; t++) {
    let [B, bo] = [b.data, bOff[t]];
    if (packed) {
      for (let p = 0; p < k; p++) for (let j = 0; j < n; j++) packed[p * n + j] = B[bo + j * k + p];
      [B, bo] = [packed, 0];
    }
    for (let i = 0; i < m; i += 4) {
      const [r0, r1, r2, r3] = [0, 1, 2, 3].map((q) => aOff[t] + Math.min(i + q, m - 1) * si);
      acc.fill(0);
      for (let p = 0; p < k; p++) {
        const [a0, a1, a2, a3] = [A[r0 + p * sk], A[r1 + p * sk], A[r2 + p * sk], A[r3 + p * sk]];
        const row = bo + p * n;
        for (let j = 0; j < n; j++) {
          const v = B[row + j];
          acc[j] += a0 * v;
          acc[n + j] += a1 * v;
          acc[2 * n + j] += a2 * v;
          acc[3 * n + j] += a3 * v;
        }
      }
      res.set(acc.subarray(0, Math.min(4, m - i) * n), (t * m + i) * n);
    }
  }
  return res;
};

export const matmulOps = {
  matmul: {
    shape([a, b], attrs) {
      const what = () => `matmul of ${shapeStr(a.shape)}${attrs.transA ? 'ᵀ' : ''} and ${shapeStr(b.shape)}${attrs.transB ? 'ᵀ' : ''}`;
      if (a.dtype !== 'f32' || b.dtype !== 'f32') throw new ShapeError(`${what()}: operands must be f32`);
      if (a.shape.length < 2 || b.shape.length < 2) throw new ShapeError(`${what()}: operands need rank >= 2`);
      const [ra, rb] = [a.shape.length, b.shape.length];
      const [m, ka] = attrs.transA ? [a.shape[ra - 1], a.shape[ra - 2]] : [a.shape[ra - 2], a.shape[ra - 1]];
      const [kb, n] = attrs.transB ? [b.shape[rb - 1], b.shape[rb - 2]] : [b.shape[rb - 2], b.shape[rb - 1]];
      if (ka !== kb) throw new ShapeError(`${what()}: inner dimensions ${ka} and ${kb} differ`);
      const batch = broadcastShapes([a.shape.slice(0, -2), b.shape.slice(0, -2)]);
      return { shape: [...batch, m, n], dtype: 'f32' };
    },

    // C = op(A) op(B): d op(A) = ct op(B)ᵀ and d op(B) = op(A)ᵀ ct, each transposed back when the
    // operand was read transposed. Autodiff sums the broadcast batch dims.
    vjp(node, ct) {
      const [a, b] = node.inputs;
      const { transA, transB } = node.attrs as { transA: boolean; transB: boolean };
      const da = transA ? matmul(b, ct, transB, true) : matmul(ct, b, false, !transB);
      const db = transB ? matmul(ct, a, true, transA) : matmul(a, ct, !transA, false);
      return [da, db];
    },

    cpu: matmulCpu,

    wgsl: (sig) => matmulWgsl(sig, sig.attrs.transA === true, sig.attrs.transB === true),
  },
} satisfies Record<string, OpDef>;

/**
 * The WGSL of C = op(A)·op(B) (inputs 0 and 1), with an epilogue from a fused node (ops/fused.ts):
 * `fns` (module-scope declarations) and `body`, statements run for each product element `x0` at
 * its output coordinates c0.. and index `o` that store the outputs instead of the product
 * (`prologue`: each thread first calls `prologue()`, which `fns` defines).
 */
export function matmulWgsl(sig: KernelSig, transA: boolean, transB: boolean, epilogue?: { fns: string; body: string; prologue: boolean }): KernelSource {
  const [ra, rb, r] = [sig.inputs[0].rank, sig.inputs[1].rank, sig.output.rank];
  const lead = seq(r - 2);
  // the batch entry's coordinates c0.., then each operand's batch offset (broadcast)
  const coords = [...lead].reverse().map((q) => (q ? `let c${q} = bt % M(OUT + ${q}u); bt = bt / M(OUT + ${q}u);` : 'let c0 = bt;'));
  const batchCount = lead.map((q) => `M(OUT + ${q}u)`).join(' * ') || '1u';
  // a[row, p] and b[p, col] at clamped rows/cols (reads stay in bounds; writes are checked)
  // (named apart from an epilogue's registers r0.. and loads x0..)
  const A = (q: number) => (transA ? `in0[aBase + p * m + ar${q}]` : `in0[aBase + ar${q} * k + p]`);
  const B = (c: number) => (transB ? `in1[bBase + bc${c} * k + p]` : `in1[bBase + p * n + bc${c}]`);
  const R = sig.subgroups ? SUBGROUP_ROWS : ROWS;
  const [rows, cols, vecs] = [seq(R), seq(COLS), seq(COLS / 4)];
  // the variant: lane l of the four loads rows l, l + 4, ... and shares them
  const shared = seq(R / 4);
  const code = `${epilogue?.fns ?? ''}
${MAIN} {
  let i = thread_id(gid, nwg);
  let m = M(OUT + ${r - 2}u);
  let n = M(OUT + ${r - 1}u);
  let k = M(IN0 + ${transA ? ra - 2 : ra - 1}u);
  let tm = (m + ${R - 1}u) / ${R}u;
  let tn = (n + ${COLS - 1}u) / ${COLS}u;
  if (i >= ${batchCount} * tm * tn) { return; }${epilogue?.prologue ? '\n  prologue();' : ''}
  let i0 = (i / tn) % tm * ${R}u;
  let j0 = i % tn;
  let batch = i / (tm * tn);
  var bt = batch;
  ${coords.join('\n  ')}
  let aBase = (${wgslBroadcastIndex(0, ra - 2, r - 2)}) * m * k;
  let bBase = (${wgslBroadcastIndex(1, rb - 2, r - 2)}) * k * n;
  ${sig.subgroups ? shared.map((h) => `let ar${h} = min(i0 + ${4 * h}u + i % 4u, m - 1u);`).join(' ') : rows.map((q) => `let ar${q} = min(i0 + ${q}u, m - 1u);`).join(' ')}
  ${cols.map((c) => `let bc${c} = min(j0 + ${c}u * tn, n - 1u);`).join(' ')}
  ${rows.flatMap((q) => vecs.map((v) => `var acc${q}_${v} = vec4f();`)).join(' ')}
  for (var p = 0u; p < k; p++) {
    ${vecs.map((v) => `let b${v} = vec4<f32>(${seq(4).map((c) => B(4 * v + c)).join(', ')});`).join('\n    ')}
    ${sig.subgroups ? `${shared.map((h) => `let l${h} = ${A(h)};`).join(' ')}
    ${rows.map((q) => `let a${q} = subgroupBroadcast(l${q >> 2}, ${q % 4}u);`).join(' ')}` : rows.map((q) => `let a${q} = ${A(q)};`).join(' ')}
    ${rows.flatMap((q) => vecs.map((v) => `acc${q}_${v} += a${q} * b${v};`)).join('\n    ')}
  }
  // stored by a loop (one copy of the epilogue, not one per element: shaders compile faster; the
  // epilogue inline, not a function called 64 times: SwiftShader does not inline it)
  var tile = array<vec4<f32>, ${R * COLS / 4}>(${rows.flatMap((q) => vecs.map((v) => `acc${q}_${v}`)).join(', ')});
  for (var q = 0u; q < ${R}u; q++) {
    let row = i0 + q;
    for (var c = 0u; c < ${COLS}u; c++) {
      let col = j0 + c * tn;
      if (row < m && col < n) {
        let x0 = tile[q * ${COLS / 4}u + c / 4u][c % 4u];
        let o = (batch * m + row) * n + col;
        ${epilogue ? `let c${r - 2} = row; let c${r - 1} = col;
        ${epilogue.body}` : 'out[o] = x0;'}
      }
    }
  }
}`;
  return { code, grid: { kind: 'tiles', rows: R, cols: COLS } };
}
