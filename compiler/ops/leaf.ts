// Leaves: graph arguments, constants, index ramps (iota) and run-time sizes (size). `arg` and
// `const` have no kernel: executors bind an argument's value and upload a constant's.

import { ShapeError, normAxis, staticSize, type Attrs, type DType, type Dim, type Shape } from '../ir/node.ts';
import type { CpuKernel, OpDef } from './types.ts';
import { MAIN, alloc, wgslCoords } from './elementwise.ts';
import { numel } from '../../runtime/shapes.ts';

const DTYPES: readonly DType[] = ['f32', 'i32', 'bool'];

function attrShape(attrs: Attrs): Shape {
  const s = attrs.shape;
  if (!Array.isArray(s) || !s.every((d) => typeof d === 'string' || (Number.isInteger(d) && d >= 0)))
    throw new ShapeError(`bad shape attribute ${JSON.stringify(s)}`);
  return s as Dim[];
}

function attrDType(attrs: Attrs): DType {
  if (!DTYPES.includes(attrs.dtype as DType)) throw new ShapeError(`unknown dtype ${String(attrs.dtype)}`);
  return attrs.dtype as DType;
}

const elements = { kind: 'elements' } as const;

export const iotaCpu: CpuKernel = (_, attrs, out, ctx) => {
  const axis = normAxis(attrs.axis as number, out.shape.length);
  const inner = numel(out.shape.slice(axis + 1));
  const d = out.shape[axis];
  const data = alloc('i32', numel(out.shape), ctx);
  for (let i = 0; i < data.length; i++) data[i] = Math.floor(i / inner) % d;
  return data;
};

export const sizeCpu: CpuKernel = (_, attrs, __, ctx) => {
  const value = (attrs.dims as Dim[]).reduce<number>((p, d) => {
    if (typeof d === 'number') return p * d;
    const v = ctx.syms[d];
    if (v === undefined) throw new Error(`symbol ${d} is not bound`);
    return p * v;
  }, 1);
  return new ctx.float([value]);
};

export const leafOps: Record<'arg' | 'const' | 'iota' | 'size', OpDef> = {
  /** A graph input; attrs role, name, shape, dtype. */
  arg: {
    shape: (_, attrs) => ({ shape: attrShape(attrs), dtype: attrDType(attrs) }),
  },

  /** A constant: `value` is one number (filling `shape`) or row-major values of a static `shape`. */
  const: {
    shape(_, attrs) {
      const shape = attrShape(attrs);
      const n = staticSize(shape);
      const v = attrs.value;
      if (n === undefined) throw new ShapeError(`a constant needs a static shape, got [${shape}]`);
      if (Array.isArray(v) ? v.length !== n || !v.every((x) => typeof x === 'number') : typeof v !== 'number')
        throw new ShapeError(`constant value does not fill shape [${shape}]`);
      return { shape, dtype: attrDType(attrs) };
    },
  },

  /** i32 tensor of `shape` holding each element's index along `axis`. */
  iota: {
    shape(_, attrs) {
      const shape = attrShape(attrs);
      normAxis(attrs.axis as number, shape.length);
      return { shape, dtype: 'i32' };
    },
    cpu: iotaCpu,
    wgsl(sig) {
      const axis = normAxis(sig.attrs.axis as number, sig.output.rank);
      const code = `${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  ${wgslCoords(sig.output.rank)}
  out[i] = i32(c${axis});
}`;
      return { code, grid: elements };
    },
  },

  /** The product of `dims` (symbolic ones bound at run time) as an f32 scalar. */
  size: {
    shape(_, attrs) {
      const dims = attrs.dims;
      if (!Array.isArray(dims) || !dims.every((d) => typeof d === 'string' || (Number.isInteger(d) && d >= 0)))
        throw new ShapeError(`bad dims for size: ${JSON.stringify(dims)}`);
      return { shape: [], dtype: 'f32' };
    },
    cpu: sizeCpu,
    wgsl(sig) {
      const factors = (sig.attrs.dims as Dim[]).map((d) => (typeof d === 'number' ? `${d}.0` : `f32(M(SYM_${d}))`));
      const code = `${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  out[i] = ${factors.join(' * ') || '1.0'};
}`;
      return { code, grid: elements };
    },
  },
};
