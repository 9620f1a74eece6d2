// Counter-based random numbers: the value at flat index i is a hash of (key, salt, i), so every
// backend gives bit-identical streams with no state. The hash is `mix` (Chris Wellons' lowbias32,
// a bijection with strong avalanche) applied in rounds that fold in i, salt, key[1] and key[0];
// the top 24 bits scaled by 2^-24 give a uniform float in [0, 1), exact in f32.

import { ShapeError, sameShape, typeStr, type Dim } from '../ir/node.ts';
import type { CpuKernel, OpDef } from './types.ts';
import { MAIN } from './elementwise.ts';
import { numel } from '../../runtime/shapes.ts';

const GOLDEN = 0x9e3779b9;

function mix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The 32-bit hash of element `i` of the stream (key0, key1, salt). */
export function randomBits(key0: number, key1: number, salt: number, i: number): number {
  return mix(mix(mix(mix(i ^ GOLDEN) ^ salt) ^ key1) ^ key0);
}

const WGSL_MIX = `
fn mix(x0: u32) -> u32 {
  var x = x0;
  x ^= x >> 16u; x *= 0x7feb352du;
  x ^= x >> 15u; x *= 0x846ca68bu;
  x ^= x >> 16u;
  return x;
}`;

export const randCpu: CpuKernel = ([key], attrs, out, ctx) => {
  const data = new ctx.float(numel(out.shape));
  const [k0, k1] = key.data;
  const salt = attrs.salt as number;
  for (let i = 0; i < data.length; i++) data[i] = (randomBits(k0, k1, salt, i) >>> 8) * 2 ** -24;
  return data;
};

export const randomOps: Record<'rand', OpDef> = {
  /** Uniform [0, 1) f32 of `shape` from an i32[2] key and a salt that tells streams apart. */
  rand: {
    shape([key, ...rest], attrs) {
      if (!key || rest.length || key.dtype !== 'i32' || !sameShape(key.shape, [2])) throw new ShapeError(`rand expects an i32[2] key, got ${key ? typeStr(key) : 'none'}`);
      if (!Number.isInteger(attrs.salt)) throw new ShapeError(`rand needs an integer salt`);
      return { shape: attrs.shape as Dim[], dtype: 'f32' };
    },
    vjp: () => [null],
    cpu: randCpu,
    wgsl(sig) {
      const salt = (sig.attrs.salt as number) >>> 0;
      const code = `${WGSL_MIX}
${MAIN} {
  let i = thread_id(gid, nwg);
  if (i >= M(0u)) { return; }
  let h = mix(mix(mix(mix(i ^ ${GOLDEN}u) ^ ${salt}u) ^ bitcast<u32>(in0[1])) ^ bitcast<u32>(in0[0]));
  out[i] = f32(h >> 8u) * ${2 ** -24};
}`;
      return { code, grid: { kind: 'elements' } };
    },
  },
};
