// The CPU kernel table of every op, for runCpu. It imports the op records (and so part of the
// compiler) until codegen emits the kernels a bundle needs on their own.

import { ops } from '../compiler/ops/registry.ts';
import type { OpDef } from '../compiler/ops/types.ts';
import type { CpuKernels } from './cpu.ts';

export const cpuKernels: CpuKernels = Object.fromEntries(
  Object.entries(ops() as Record<string, OpDef>).flatMap(([op, d]): [string, CpuKernels[string]][] =>
    d.alias ? [[op, 'alias']] : d.cpu ? [[op, d.cpu]] : [],
  ),
);
