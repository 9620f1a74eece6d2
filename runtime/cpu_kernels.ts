// Every op's CPU kernel, each its own export named after the op ('alias' for ops whose output is
// their input's data). A bundle imports only the kernels its programs run (codegen/bundle.ts
// generates that import), so esbuild leaves out the others, and with them everything else the op
// files hold (shape and VJP rules, WGSL templates, IR builders). `cpuKernels` is the whole table,
// from the op registry, for the compiler's side (CLI, tests); tests check that the two agree.

import { ops } from '../compiler/ops/registry.ts';
import type { OpDef } from '../compiler/ops/types.ts';
import { elementwiseCpu } from '../compiler/ops/elementwise.ts';
import { reduceCpu } from '../compiler/ops/reduce.ts';
import type { CpuKernels } from './cpu.ts';
import type { Manifest } from './program.ts';

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
export const reshape = 'alias';
export const {
  neg, exp, log, sqrt, abs, sin, cos, floor, sign, not, cast,
  add, sub, mul, div, pow, max, min, eq, ne, lt, le, gt, ge, and, or, select,
} = elementwiseCpu;
export const { sum, mean, reduce_max, reduce_min, argmax } = reduceCpu;

export const cpuKernels: CpuKernels = /* @__PURE__ */ (() =>
  Object.assign(
    Object.fromEntries(
      Object.entries(ops() as Record<string, OpDef>).flatMap(([op, d]): [string, CpuKernels[string]][] =>
        d.alias ? [[op, 'alias']] : d.cpu ? [[op, d.cpu]] : [],
      ),
    ),
    // The wasm SIMD kernels (runtime/wasm.ts), generated on first use. A computed specifier, so
    // that bundlers do not follow it: binaryen must stay out of bundles.
    { wasm: async (m: Manifest) => ((await import(/* @vite-ignore */ new URL('../compiler/codegen/wasm.ts', import.meta.url).href)) as typeof import('../compiler/codegen/wasm.ts')).cpuWasm(m) },
  ))();
