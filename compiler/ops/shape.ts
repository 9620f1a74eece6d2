// Data movement: reshape, transpose, broadcast, slice, concat, and stop_gradient (an alias like
// reshape). Each output element is one input element at an affine index of the output
// coordinates: the CPU kernels gather through `boxOffsets` and the WGSL templates through `flatWgsl`.

import { broadcast, concat, constant, reshape, slice, transpose } from '../ir/build.ts';
import { ShapeError, normAxis, shapeStr, type DType, type Dim, type Node, type Shape } from '../ir/node.ts';
import type { CpuCtx, CpuKernel, KernelSource, OpDef, TypedArray } from './types.ts';
import { numel, strides } from '../../runtime/shapes.ts';
import { MAIN, alloc, boxOffsets, broadcastStrides, wgslBroadcastIndex, wgslCoords } from './elementwise.ts';

// ---------------------------------------------------------------- kernel helpers

/** out[j] = src[offset + idx[j]]. */
function gather(src: TypedArray, idx: Int32Array, offset: number, dtype: DType, ctx: CpuCtx): TypedArray {
  const out = alloc(dtype, idx.length, ctx);
  for (let j = 0; j < idx.length; j++) out[j] = src[offset + idx[j]];
  return out;
}

/** The flat row-major index of `coords` (WGSL expressions) into the dims at `M(base + k)`. */
function flatWgsl(coords: readonly string[], base: string): string {
  return coords.reduce((acc, c, k) => (k === 0 ? c : `(${acc}) * M(${base} + ${k}u) + ${c}`), '0u');
}

/** One invocation per output element; `body` assigns `out[i]` from the coordinates `c0..`. */
function perElement(rank: number, body: string): KernelSource {
  const code = `
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  ${wgslCoords(rank)}
  ${body}
}`;
  return { code, grid: { kind: 'elements' } };
}

const range = (n: number): number[] => Array.from({ length: n }, (_, k) => k);

/** maxStorageBuffersPerShaderStage in WebGPU's default limits: concat binds an input per buffer. */
const MAX_STORAGE_BUFFERS = 8;

// ---------------------------------------------------------------- shape-rule helpers

function splitCount(shape: Shape): { n: number; syms: string } {
  let n = 1;
  const syms: string[] = [];
  for (const d of shape) typeof d === 'number' ? (n *= d) : syms.push(d);
  return { n, syms: JSON.stringify(syms.sort()) };
}

function checkDims(shape: readonly unknown[], what: string): Shape {
  for (const d of shape)
    if (!((typeof d === 'number' && Number.isInteger(d) && d > 0) || (typeof d === 'string' && d !== '')))
      throw new ShapeError(`${what}: dimension ${JSON.stringify(d)} is not a positive integer or a symbol`);
  return shape as Shape;
}

const nums = (v: unknown): number[] => v as number[];

/** Output dim of a slice along one axis, or a ShapeError. */
function sliceDim(d: Dim, begin: number, end: Dim, step: number, axis: number): Dim {
  const where = `slice axis ${axis} (size ${d}) [${begin}:${end}:${step}]`;
  if (!Number.isInteger(step) || step < 1) throw new ShapeError(`${where}: step must be a positive integer`);
  if (typeof end === 'string' || typeof d === 'string') {
    if (end !== d || begin !== 0 || step !== 1) throw new ShapeError(`${where}: a symbolic axis can only be taken whole`);
    return d;
  }
  if (!Number.isInteger(begin) || !Number.isInteger(end) || begin < 0 || end > d || begin >= end)
    throw new ShapeError(`${where}: needs 0 <= begin < end <= size`);
  return Math.ceil((end - begin) / step);
}

const zeros = (shape: Shape): Node => broadcast(constant(0), shape);
const withDim = (shape: Shape, axis: number, d: Dim): Dim[] => shape.map((e, k) => (k === axis ? d : e));

/**
 * The cotangent of a slice along one axis: puts `g` (the sliced extent) back at positions
 * begin, begin+step, ... of an axis of size `size`, zeros elsewhere. A step > 1 interleaves zeros by
 * concatenating along a new unit axis and merging it: [m] → [m, 1] ++ [m, step-1] → [m*step].
 */
function unslice(g: Node, axis: number, begin: number, step: number, size: number): Node {
  if (step > 1) {
    const m = g.shape[axis] as number;
    const split = [...g.shape.slice(0, axis + 1), 1, ...g.shape.slice(axis + 1)];
    const spread = concat([reshape(g, split), zeros(withDim(split, axis + 1, step - 1))], axis + 1);
    g = reshape(spread, withDim(g.shape, axis, m * step));
  }
  if (begin + (g.shape[axis] as number) > size) g = slice(g, g.shape.map(() => 0), withDim(g.shape, axis, size - begin), g.shape.map(() => 1));
  const tail = size - begin - (g.shape[axis] as number);
  const parts = [
    ...(begin > 0 ? [zeros(withDim(g.shape, axis, begin))] : []),
    g,
    ...(tail > 0 ? [zeros(withDim(g.shape, axis, tail))] : []),
  ];
  return parts.length === 1 ? g : concat(parts, axis);
}

// ---------------------------------------------------------------- the ops

export const broadcastCpu: CpuKernel = ([x], _attrs, out, ctx) => gather(x.data, boxOffsets(out.shape, broadcastStrides(x.shape, out.shape)), 0, out.dtype, ctx);

export const transposeCpu: CpuKernel = ([x], attrs, out, ctx) => {
  const s = strides(x.shape);
  return gather(x.data, boxOffsets(out.shape, nums(attrs.perm).map((p) => s[p])), 0, out.dtype, ctx);
};

export const sliceCpu: CpuKernel = ([x], attrs, out, ctx) => {
  const s = strides(x.shape);
  const [begin, step] = [nums(attrs.begin), nums(attrs.step)];
  const offset = begin.reduce((acc, b, k) => acc + b * s[k], 0);
  return gather(x.data, boxOffsets(out.shape, step.map((t, k) => t * s[k])), offset, out.dtype, ctx);
};

export const concatCpu: CpuKernel = (xs, attrs, out, ctx) => {
  const axis = normAxis(attrs.axis as number, out.shape.length);
  const s = strides(out.shape);
  const res = alloc(out.dtype, numel(out.shape), ctx);
  let offset = 0;
  for (const x of xs) {
    const pos = boxOffsets(x.shape, s);
    const at = offset * s[axis];
    for (let j = 0; j < pos.length; j++) res[at + pos[j]] = x.data[j];
    offset += x.shape[axis];
  }
  return res;
};

export const shapeOps = {
  /** Same elements, new dims. Aliases its input's buffer: no kernel runs. */
  reshape: {
    shape([x], attrs) {
      const shape = checkDims(attrs.shape as Dim[], 'reshape');
      const [a, b] = [splitCount(x.shape), splitCount(shape)];
      if (a.n !== b.n || a.syms !== b.syms)
        throw new ShapeError(`cannot reshape ${shapeStr(x.shape)} to ${shapeStr(shape)}: element counts differ`);
      return { shape, dtype: x.dtype };
    },
    vjp: (node, ct) => [reshape(ct, node.inputs[0].shape)],
    cpu: ([x]) => x.data,
    alias: true,
  },

  /** x itself, with no gradient: the identity to autodiff's walk, which sends nothing through it
   *  (a target network's output, the max a stable softmax subtracts). Simplification removes it
   *  after autodiff; where it stays (no passes) it aliases its input like reshape. */
  stop_gradient: {
    shape: ([x]) => ({ shape: x.shape, dtype: x.dtype }),
    vjp: () => [null],
    alias: true,
  },

  /** out dim k = in dim perm[k]. */
  transpose: {
    shape([x], attrs) {
      const perm = nums(attrs.perm);
      const r = x.shape.length;
      if (perm.length !== r || !range(r).every((k) => perm.includes(k)))
        throw new ShapeError(`transpose of a rank-${r} tensor needs a permutation of 0..${r - 1}, got [${perm}]`);
      return { shape: perm.map((p) => x.shape[p]), dtype: x.dtype };
    },
    vjp(node, ct) {
      const perm = nums(node.attrs.perm);
      const inv = perm.map((_, k) => perm.indexOf(k));
      return [transpose(ct, inv)];
    },
    cpu: transposeCpu,
    wgsl(sig) {
      const perm = nums(sig.attrs.perm);
      const inCoords = range(perm.length).map((k) => `c${perm.indexOf(k)}`);
      return perElement(perm.length, `out[i] = in0[${flatWgsl(inCoords, 'IN0')}];`);
    },
  },

  /** NumPy broadcasting of x to `shape` (leading axes added, unit axes stretched). */
  broadcast: {
    shape([x], attrs) {
      const shape = checkDims(attrs.shape as Dim[], 'broadcast');
      const lead = shape.length - x.shape.length;
      if (lead < 0 || x.shape.some((d, k) => d !== 1 && d !== shape[lead + k]))
        throw new ShapeError(`cannot broadcast ${shapeStr(x.shape)} to ${shapeStr(shape)}`);
      return { shape, dtype: x.dtype };
    },
    // autodiff's unbroadcast sums the cotangent over the added and stretched axes
    vjp: (_node, ct) => [ct],
    cpu: broadcastCpu,
    wgsl: (sig) => perElement(sig.output.rank, `out[i] = in0[${wgslBroadcastIndex(0, sig.inputs[0].rank, sig.output.rank)}];`),
  },

  /** Per axis begin, end (exclusive; a symbol = the whole symbolic axis), step >= 1. */
  slice: {
    shape([x], attrs) {
      const [begin, end, step] = [nums(attrs.begin), attrs.end as Dim[], nums(attrs.step)];
      const r = x.shape.length;
      if (begin.length !== r || end.length !== r || step.length !== r)
        throw new ShapeError(`slice of a rank-${r} tensor needs ${r} begins, ends and steps`);
      return { shape: x.shape.map((d, k) => sliceDim(d, begin[k], end[k], step[k], k)), dtype: x.dtype };
    },
    vjp(node, ct) {
      const x = node.inputs[0];
      const [begin, step] = [nums(node.attrs.begin), nums(node.attrs.step)];
      let g = ct;
      x.shape.forEach((d, k) => {
        if (typeof d === 'number' && g.shape[k] !== d) g = unslice(g, k, begin[k], step[k], d);
      });
      return [g];
    },
    cpu: sliceCpu,
    wgsl(sig) {
      const [begin, step] = [nums(sig.attrs.begin), nums(sig.attrs.step)];
      const inCoords = begin.map((b, k) => `${b}u + c${k} * ${step[k]}u`);
      return perElement(begin.length, `out[i] = in0[${flatWgsl(inCoords, 'IN0')}];`);
    },
  },

  /** Joins inputs along `axis`; every other dim must agree. */
  concat: {
    shape(xs, attrs) {
      if (xs.length === 0) throw new ShapeError('concat needs at least one input');
      const r = xs[0].shape.length;
      const axis = normAxis(attrs.axis as number, r);
      let total = 0;
      for (const x of xs) {
        const d = x.shape[axis];
        if (x.dtype !== xs[0].dtype) throw new ShapeError(`concat of ${xs[0].dtype} with ${x.dtype}`);
        if (x.shape.length !== r || x.shape.some((e, k) => k !== axis && e !== xs[0].shape[k]))
          throw new ShapeError(`cannot concat ${xs.map((y) => shapeStr(y.shape)).join(', ')} along axis ${axis}`);
        if (typeof d !== 'number') throw new ShapeError(`concat along symbolic axis ${axis} (${d})`);
        total += d;
      }
      return { shape: withDim(xs[0].shape, axis, total), dtype: xs[0].dtype };
    },
    vjp(node, ct) {
      if (node.inputs.length === 1) return [ct];
      const axis = normAxis(node.attrs.axis as number, ct.shape.length);
      let offset = 0;
      return node.inputs.map((x) => {
        const begin = ct.shape.map((_, k) => (k === axis ? offset : 0));
        offset += x.shape[axis] as number;
        return slice(ct, begin, withDim(ct.shape, axis, offset), begin.map(() => 1));
      });
    },
    cpu: concatCpu,
    wgsl(sig) {
      const n = sig.inputs.length;
      if (n + 1 > MAX_STORAGE_BUFFERS)
        throw new Error(`concat of ${n} inputs needs ${n + 1} storage buffers; WebGPU guarantees ${MAX_STORAGE_BUFFERS} per stage`);
      const rank = sig.output.rank;
      const axis = normAxis(sig.attrs.axis as number, rank);
      const coords = range(rank).map((k) => (k === axis ? 'ca' : `c${k}`));
      const cases = range(n).map((t) => {
        const read = `out[i] = in${t}[${flatWgsl(coords, `IN${t}`)}];`;
        return t === n - 1 ? read : `if (ca < M(IN${t} + ${axis}u)) { ${read} return; }\n  ca = ca - M(IN${t} + ${axis}u);`;
      });
      return perElement(rank, `var ca = c${axis};\n  ${cases.join('\n  ')}`);
    },
  },
} satisfies Record<string, OpDef>;
