// Test helpers shared by the op and runtime tests: evaluate IR on the CPU (f64 or f32) and on
// WebGPU, check gradients against finite differences, and generate shapes and tensors.

import fc from 'fast-check';
import { arg, type ArgRole } from '../../compiler/ir/build.ts';
import { toProgram } from '../../compiler/ir/graph.ts';
import type { Node, Shape } from '../../compiler/ir/node.ts';
import type { Tensor } from '../../compiler/ops/types.ts';
import { attachKernels } from '../../compiler/codegen/kernels.ts';
import { vjp } from '../../compiler/autodiff/vjp.ts';
import type { ProgramJSON } from '../../runtime/program.ts';
import { runCpu } from '../../runtime/cpu.ts';
import { cpuKernels } from '../../runtime/cpu_kernels.ts';
import { argKey } from '../../runtime/shapes.ts';
import { WebGPUExecutor, requestDevice } from '../../runtime/webgpu.ts';

// ---------------------------------------------------------------- evaluation

/** An f32 tensor from plain numbers. */
export const t = (data: number[], shape: number[]): Tensor => ({ data: Float32Array.from(data), shape });

/** An f32 input argument of the graph under test. */
export const input = (name: string, shape: (number | string)[]): Node => arg('input', name, shape, 'f32');

/** The program computing `outputs` as `out0`, `out1`, ... (WGSL kernels attached for WebGPU). */
export function programOf(outputs: readonly Node[], kernels = true): ProgramJSON {
  const p = toProgram({ outputs: outputs.map((node, i) => ({ name: `out${i}`, node })), updates: [] });
  return kernels ? attachKernels(p) : p;
}

/** Feeds keyed by `argKey`, from arg nodes. */
export function feedsOf(feeds: ReadonlyMap<Node, Tensor>): Record<string, Tensor> {
  return Object.fromEntries([...feeds].map(([n, t]) => [argKey({ role: n.attrs.role as ArgRole, name: n.attrs.name as string }), t]));
}

export function evalCpu(outputs: readonly Node[], feeds: ReadonlyMap<Node, Tensor>, float: 'f64' | 'f32'): Tensor[] {
  const r = runCpu(programOf(outputs, false), cpuKernels, feedsOf(feeds), float === 'f64' ? Float64Array : Float32Array);
  return outputs.map((_, i) => r.outputs[`out${i}`]);
}

let device: Promise<GPUDevice | null> | undefined;
/** Dawn lives as long as the object `create` returns: keep it. */
let navigatorGpu: GPU | undefined;
/** Validation and other errors the device reported outside an error scope. */
const gpuErrors: string[] = [];

/**
 * The shared Dawn device, or null when there is no adapter. In CI (CI=true) a missing adapter
 * throws: WebGPU tests never skip there. Use `describe.skipIf(!(await gpuDevice()))`.
 */
export function gpuDevice(): Promise<GPUDevice | null> {
  device ??= (async () => {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    navigatorGpu = create([]);
    const adapter = await navigatorGpu.requestAdapter();
    if (!adapter) {
      if (process.env.CI === 'true') throw new Error('no WebGPU adapter in CI: set VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json');
      return null;
    }
    // as apps get it: with the adapter's storage limits and subgroups (kernel variants)
    const d = await requestDevice(adapter);
    d.addEventListener('uncapturederror', (e) => gpuErrors.push((e as GPUUncapturedErrorEvent).error.message));
    return d;
  })();
  return device;
}

/** Runs `fn` with a fresh executor on the shared device; throws on any device error. */
export async function withExecutor<T>(fn: (ex: WebGPUExecutor) => Promise<T>): Promise<T> {
  const d = await gpuDevice();
  if (!d) throw new Error('no WebGPU adapter');
  const ex = new WebGPUExecutor(d);
  gpuErrors.length = 0;
  try {
    const r = await fn(ex);
    await d.queue.onSubmittedWorkDone();
    if (gpuErrors.length) throw new Error(`WebGPU errors:\n${gpuErrors.join('\n')}`);
    return r;
  } finally {
    ex.dispose();
  }
}

export function evalWebGPU(outputs: readonly Node[], feeds: ReadonlyMap<Node, Tensor>): Promise<Tensor[]> {
  return withExecutor(async (ex) => {
    const r = await ex.run(programOf(outputs), feedsOf(feeds));
    return outputs.map((_, i) => r[`out${i}`]);
  });
}

/** Throws unless `actual` and `expected` have the same shape and |a - e| <= atol + rtol |e| everywhere. */
export function expectClose(actual: Tensor, expected: Tensor, { rtol = 1e-5, atol = 1e-6 } = {}): void {
  if (actual.shape.join() !== expected.shape.join()) throw new Error(`shape [${actual.shape}] vs expected [${expected.shape}]`);
  if (actual.data.length !== expected.data.length) throw new Error(`${actual.data.length} values vs expected ${expected.data.length}`);
  for (let i = 0; i < actual.data.length; i++) {
    const a = actual.data[i], e = expected.data[i];
    if (Object.is(a, e) || Math.abs(a - e) <= atol + rtol * Math.abs(e)) continue;
    throw new Error(`element ${i} of [${actual.shape}]: ${a} vs expected ${e} (rtol ${rtol}, atol ${atol})`);
  }
}

// ---------------------------------------------------------------- gradient check

import { rng } from '../../runtime/random.ts';
export { rng };

/** A seeded f32 tensor, uniform in [min, max). */
export function randomTensor(shape: readonly number[], seed: number, { min = -1, max = 1 } = {}): Tensor {
  const r = rng(seed);
  const n = shape.reduce((p, d) => p * d, 1);
  return { data: Float32Array.from({ length: n }, () => min + (max - min) * r()), shape: [...shape] };
}

export interface GradcheckResult {
  /** (|a - b| less the difference's rounding error) / max(Σ|vjp_j t_j|, |b|, 1e-8): see gradcheck. */
  rel: number;
  /** ⟨vjp(ct), t⟩ */
  a: number;
  /** ⟨ct, (f(x + εt) - f(x - εt)) / 2ε⟩ */
  b: number;
}

/**
 * Checks the symbolic VJP of `build` at `inputs` against a centered difference, in float64 on the
 * CPU. Float inputs become f32 args `x0, x1, ...` and are differentiated; Int32Array inputs become
 * i32 args and are held fixed. With a random cotangent ct and random directions t (uniform [-1, 1),
 * seeded), a = ⟨vjp(ct), t⟩ and b = ⟨ct, (f(x + εt) - f(x - εt)) / 2ε⟩, ε = eps · max(1, max|x|).
 * The error is relative to Σ|vjp_j t_j| (the scale of the terms of a, so cancellation in the sum
 * does not inflate it) or |b| if larger, with a floor of 1e-8 (gradients that small are noise).
 * What float64 rounding of f alone can put into b is not counted: see gradError.
 */
export function gradcheck(build: (args: Node[]) => Node, inputs: readonly Tensor[], { seed = 1, eps = 1e-6 } = {}): GradcheckResult {
  const r = rng(seed);
  const random = (n: number) => Float64Array.from({ length: n }, () => 2 * r() - 1);
  const isFloat = (t: Tensor) => !(t.data instanceof Int32Array);
  const args = inputs.map((t, i) => arg('input', `x${i}`, t.shape, isFloat(t) ? 'f32' : 'i32'));
  const y = build(args);
  if (y.dtype !== 'f32' || !y.shape.every((d) => typeof d === 'number')) throw new Error(`gradcheck needs a static f32 output, got ${y.dtype}[${y.shape}]`);
  const ct: Tensor = { data: random(y.shape.reduce<number>((p, d) => p * (d as number), 1)), shape: y.shape as number[] };
  const ctArg = arg('input', 'ct', y.shape, 'f32');
  const wrt = args.filter((_, i) => isFloat(inputs[i]));
  const ts = new Map(wrt.map((w) => [w, random(inputs[args.indexOf(w)].data.length)]));

  const feeds = new Map<Node, Tensor>(args.map((a, i) => [a, inputs[i]]));
  const grads = evalCpu(vjp(y, ctArg, wrt), new Map([...feeds, [ctArg, ct]]), 'f64');
  let a = 0, scale = 0;
  grads.forEach((g, k) => {
    const t = ts.get(wrt[k])!;
    for (let j = 0; j < t.length; j++) {
      a += g.data[j] * t[j];
      scale += Math.abs(g.data[j] * t[j]);
    }
  });

  let xmax = 1;
  for (const w of wrt) for (const v of feeds.get(w)!.data) xmax = Math.max(xmax, Math.abs(v));
  const h = eps * xmax;
  let size = 0; // Σ|f_j ct_j| over both evaluations
  const shifted = (sign: number) => {
    const moved = new Map(feeds);
    for (const [w, t] of ts) {
      const x = feeds.get(w)!;
      moved.set(w, { data: Float64Array.from(x.data, (v, j) => v + sign * h * t[j]), shape: x.shape });
    }
    const [f] = evalCpu([y], moved, 'f64');
    let dot = 0;
    for (let j = 0; j < f.data.length; j++) (dot += f.data[j] * ct.data[j]), (size += Math.abs(f.data[j] * ct.data[j]));
    return dot;
  };
  const b = (shifted(1) - shifted(-1)) / (2 * h);
  return { rel: gradError(a, b, scale, size, h), a, b };
}

/**
 * The gradient check's error: |a - b| relative to max(scale, |b|, 1e-8), where b is a centered
 * difference of values whose magnitudes sum to `size`, taken with step h. Rounding each value to
 * float64 moves b by up to size · 2⁻⁵³ / 2h; four times that much of |a - b| is not counted, so a
 * small directional derivative of a large function (a gradient near 0, a direction t near 0) does
 * not fail on noise the difference cannot resolve.
 */
export function gradError(a: number, b: number, scale: number, size: number, h: number): number {
  const rounding = (size * Number.EPSILON) / h; // 4 · size · 2⁻⁵³ / 2h
  return Math.max(0, Math.abs(a - b) - rounding) / Math.max(scale, Math.abs(b), 1e-8);
}

// ---------------------------------------------------------------- fast-check arbitraries

export interface ShapeOpts {
  minRank?: number;
  maxRank?: number;
  minDim?: number;
  maxDim?: number;
}

export function arbShape({ minRank = 0, maxRank = 4, minDim = 1, maxDim = 5 }: ShapeOpts = {}): fc.Arbitrary<number[]> {
  return fc.array(fc.integer({ min: minDim, max: maxDim }), { minLength: minRank, maxLength: maxRank });
}

/**
 * Values exact in f32 (so f64, f32 and WGSL runs see the same inputs), without subnormals:
 * f32 tensors (Float32Array) in [min, max], or i32 tensors (Int32Array) of integers in [min, max].
 */
export function arbTensor(shape: Shape, { min = -10, max = 10, dtype = 'f32' as 'f32' | 'i32' } = {}): fc.Arbitrary<Tensor> {
  const dims = shape as number[];
  const n = dims.reduce((p, d) => p * d, 1);
  if (dtype === 'i32') return fc.array(fc.integer({ min, max }), { minLength: n, maxLength: n }).map((v) => ({ data: Int32Array.from(v), shape: [...dims] }));
  const elem = fc.float({ min: Math.fround(min), max: Math.fround(max), noNaN: true, noDefaultInfinity: true }).map((v) => (Math.abs(v) < 1e-30 ? 0 : v));
  return fc.array(elem, { minLength: n, maxLength: n }).map((v) => ({ data: Float32Array.from(v), shape: [...dims] }));
}

/** Two shapes that broadcast together: suffixes of one shape with some dims set to 1. */
export function arbBroadcastShapes(opts: ShapeOpts = {}): fc.Arbitrary<[number[], number[]]> {
  const derive = (base: number[]) =>
    fc
      .tuple(fc.integer({ min: 0, max: base.length }), fc.array(fc.boolean(), { minLength: base.length, maxLength: base.length }))
      .map(([drop, ones]) => base.slice(drop).map((d, k) => (ones[k + drop] ? 1 : d)));
  return arbShape(opts).chain((base) => fc.tuple(derive(base), derive(base)));
}
