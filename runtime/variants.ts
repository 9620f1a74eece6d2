// Kernel variants picked by adapter. The compiler gives a kernel a variant where one runs faster on
// some adapters (KernelJSON `sub`: ops/matmul.ts's matrix products for subgroups of four, which
// SwiftShader has); a model on such an adapter runs its programs with the variants in place of the
// kernels. A bundle keeps the variants in variants.js beside model.js, loaded only then.

import type { KernelJSON, Manifest } from './program.ts';

type Variant = NonNullable<KernelJSON['sub']>;

/** Whether `device` runs the subgroup variants: it has the feature, and subgroups of exactly four
 *  invocations (the variant's threads share a tile's rows four by four). */
const quads = (device: GPUDevice): boolean => {
  const info = (device as { adapterInfo?: { subgroupMinSize?: number; subgroupMaxSize?: number } }).adapterInfo;
  return device.features.has('subgroups') && info?.subgroupMinSize === 4 && info.subgroupMaxSize === 4;
};

/** `m` for `device`: each kernel with a variant for it (its own `sub`, or by name in `subs`)
 *  replaced by that variant; `m` itself where the device runs none. */
export function forDevice(device: GPUDevice, m: Manifest, subs: Readonly<Record<string, Variant>> = {}): Manifest {
  if (!quads(device)) return m;
  const programs = Object.entries(m.programs).map(([name, p]) => [name, p && { ...p, kernels: p.kernels.map((k) => ({ ...k, ...(k.sub ?? subs[k.name]) })) }]);
  return { ...m, programs: Object.fromEntries(programs) };
}
