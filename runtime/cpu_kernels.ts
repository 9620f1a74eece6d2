// Every op's CPU kernel, each its own export named after the op ('alias' for ops whose output is
// their input's data). A bundle imports only the kernels its programs run (codegen/bundle.ts
// generates that import), so esbuild leaves out the others, and with them everything else the op
// files hold (shape and VJP rules, WGSL templates, IR builders). `cpuKernels` is the whole table,
// from the op registry, for the compiler's side (CLI, tests); tests check that the two agree.

import { ops } from '../compiler/ops/registry.ts';
import type { CpuKernel, OpDef } from '../compiler/ops/types.ts';
import { elementwiseCpu } from '../compiler/ops/elementwise.ts';
import { reduceCpu } from '../compiler/ops/reduce.ts';
import type { CpuKernels } from './cpu.ts';
import type { Manifest } from './program.ts';
import { wasmOps } from './wasm.ts';
import { forDevice } from './variants.ts';

export { iotaCpu as iota, sizeCpu as size } from '../compiler/ops/leaf.ts';
export { matmulCpu as matmul } from '../compiler/ops/matmul.ts';
export { broadcastCpu as broadcast, concatCpu as concat, sliceCpu as slice, transposeCpu as transpose } from '../compiler/ops/shape.ts';
export { takeCpu as take } from '../compiler/ops/gather.ts';
export { randCpu as rand } from '../compiler/ops/random.ts';
export { conv2dBackpropFilterCpu as conv2d_backprop_filter, conv2dBackpropInputCpu as conv2d_backprop_input, conv2dCpu as conv2d } from '../compiler/ops/conv.ts';
export {
  avgPool2dBackpropCpu as avg_pool2d_backprop, avgPool2dCpu as avg_pool2d, maxPool2dBackpropCpu as max_pool2d_backprop, maxPool2dCpu as max_pool2d,
  maxPool2dGatherCpu as max_pool2d_gather,
} from '../compiler/ops/pool.ts';
export { fusedCpu as fused } from '../compiler/ops/fused.ts';
export const reshape = 'alias', stop_gradient = 'alias';

/** `table[op]` by a call marked pure: a bundle keeps only the ones it imports (esbuild keeps a whole
 *  destructuring). */
const pick = /* @__NO_SIDE_EFFECTS__ */ <K extends string>(table: Readonly<Record<K, CpuKernel>>, op: K): CpuKernel => table[op];
const e = elementwiseCpu;
export const neg = pick(e, 'neg'), exp = pick(e, 'exp'), log = pick(e, 'log'), sqrt = pick(e, 'sqrt'), abs = pick(e, 'abs'), sin = pick(e, 'sin');
export const cos = pick(e, 'cos'), floor = pick(e, 'floor'), sign = pick(e, 'sign'), not = pick(e, 'not'), cast = pick(e, 'cast');
export const add = pick(e, 'add'), sub = pick(e, 'sub'), mul = pick(e, 'mul'), div = pick(e, 'div'), pow = pick(e, 'pow'), max = pick(e, 'max');
export const min = pick(e, 'min'), eq = pick(e, 'eq'), ne = pick(e, 'ne'), lt = pick(e, 'lt'), le = pick(e, 'le'), gt = pick(e, 'gt'), ge = pick(e, 'ge');
export const and = pick(e, 'and'), or = pick(e, 'or'), select = pick(e, 'select');
export const sum = pick(reduceCpu, 'sum'), mean = pick(reduceCpu, 'mean'), reduce_max = pick(reduceCpu, 'reduce_max');
export const reduce_min = pick(reduceCpu, 'reduce_min'), argmax = pick(reduceCpu, 'argmax');

export const cpuKernels: CpuKernels = /* @__PURE__ */ (() =>
  Object.assign(
    Object.fromEntries(
      Object.entries(ops() as Record<string, OpDef>).flatMap(([op, d]): [string, CpuKernels[string]][] =>
        d.alias ? [[op, 'alias']] : d.cpu ? [[op, d.cpu]] : [],
      ),
    ),
    // The wasm SIMD kernels (runtime/wasm.ts), generated on first use. A computed specifier, so
    // that bundlers do not follow it: binaryen must stay out of bundles.
    {
      wasm: async (m: Manifest) => ((await import(/* @vite-ignore */ new URL('../compiler/codegen/wasm.ts', import.meta.url).href)) as typeof import('../compiler/codegen/wasm.ts')).cpuWasm(m),
      wasmOps,
      // the kernels' variants for a device, from the manifest's own (runtime/variants.ts)
      variants: async (device: GPUDevice, m: Manifest) => forDevice(device, m),
      instantiate: async (n?: number) => ((await import(/* @vite-ignore */ new URL('./threads.ts', import.meta.url).href)) as typeof import('./threads.ts')).threaded(n),
    },
  ))();
