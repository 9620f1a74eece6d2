// The bundle: manifest.json, kernels/*.wgsl, and model.js + model.d.ts — the runtime and this
// model's manifest in one self-contained ES module, with typings for its inputs and outputs.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type OnResolveArgs, type PluginBuild } from 'esbuild';
import type { KernelJSON, Manifest, TensorSpec } from '../../runtime/program.ts';
import { packManifest } from '../../runtime/packed.ts';
import { source } from '../ops/fused.ts';
import { wasmOps } from '../../runtime/wasm.ts';

const ENTRY = fileURLToPath(new URL('../../runtime/bundle_entry.ts', import.meta.url));
const KERNELS = fileURLToPath(new URL('../../runtime/cpu_kernels.ts', import.meta.url));
const WASM = fileURLToPath(new URL('../../runtime/wasm.ts', import.meta.url));
const THREADS = fileURLToPath(new URL('../../runtime/threads.ts', import.meta.url));
const VARIANTS = fileURLToPath(new URL('../../runtime/variants.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The ops whose CPU kernels `m`'s programs run (leaves have none). */
export function kernelOps(m: Manifest): string[] {
  // a fused node runs its product's kernel too (ops/fused.ts)
  const used = new Set(Object.values(m.programs).flatMap((p) => p.nodes.flatMap((n) => [n.op, source(n.attrs) ?? n.op])));
  return [...used].filter((op) => op !== 'arg' && op !== 'const').sort();
}

/** The trained weights' file in a bundle compiled with them. */
export const WEIGHTS = 'weights.bin';

/**
 * model.js as text: esbuild bundles the runtime with two modules made here, `dlc:manifest` (the
 * manifest packed: runtime/packed.ts) and `dlc:kernels` (the table of the CPU kernels of the ops
 * the programs use, imported by name from runtime/cpu_kernels.ts: a plain object, shorter than a
 * module namespace). dlc's sources have no side effects at load time, which lets
 * esbuild drop every module and statement the entry does not reach. L-BFGS, which the training
 * loop calls for models that use it, is left out of the others. `weights`: the file createModel
 * loads by default.
 */
export async function bundleJs(manifest: Manifest, minify = false, weights?: string): Promise<string> {
  const ops = kernelOps(manifest), drivers = ops.filter((op) => op in wasmOps);
  // kernel variants (runtime/variants.ts) come from variants.js, if the model has any
  const variants = Object.keys(subs(manifest)).length ? `, variants: (d, m) => import('./variants.js').then((v) => v.default(d, m), () => m)` : '';
  const virtual: Record<string, { contents: string; loader: 'json' | 'js' }> = {
    manifest: { contents: JSON.stringify(packManifest(manifest, weights)), loader: 'json' },
    // the CPU kernels, the wasm drivers of those ops, where the wasm SIMD kernels are (kernels.wasm
    // beside model.js: runtime/wasm.ts) and what instantiates them (threads.js beside it, imported
    // as a module: an app's bundler makes it a chunk of its own)
    kernels: {
      contents: `import { ${ops.join(', ')} } from ${JSON.stringify(KERNELS)}; import { bundledWasm as wasm${drivers.map((op) => `, ${op} as wasm_${op}`).join('')} } from ${JSON.stringify(WASM)}; export default { ${[...ops, 'wasm'].join(', ')}, wasmOps: { ${drivers.map((op) => `${op}: wasm_${op}`).join(', ')} }, instantiate: (n) => import('./threads.js').then((t) => t.threaded(n))${variants} };`,
      loader: 'js',
    },
    'no-lbfgs': { contents: 'export function lbfgsEpoch() { throw new Error("not an L-BFGS model"); }', loader: 'js' },
  };
  const lbfgs = manifest.optimizer.name === 'lbfgs';
  const r = await build({
    ...ESBUILD,
    entryPoints: [ENTRY],
    minify,
    plugins: [
      {
        name: 'dlc-virtual',
        setup(b) {
          b.onResolve({ filter: /^dlc:/ }, (a) => ({ path: a.path.slice(4), namespace: 'dlc' }));
          b.onResolve({ filter: /^\.\/(threads|variants)\.js$/ }, (a) => ({ path: a.path, external: true }));
          b.onLoad({ filter: /.*/, namespace: 'dlc' }, (a) => ({ ...virtual[a.path], resolveDir: ROOT }));
          b.onResolve({ filter: /\.ts$/ }, (a) => (!lbfgs && a.path === './lbfgs.ts' ? { path: 'no-lbfgs', namespace: 'dlc' } : pure(a)));
        },
      },
    ],
  });
  return r.outputFiles[0].text;
}

const ESBUILD = {
  bundle: true,
  format: 'esm',
  platform: 'neutral',
  target: 'es2022',
  write: false,
  legalComments: 'none',
  // fields assigned in constructors, not also declared (define semantics): fewer bytes
  tsconfigRaw: { compilerOptions: { useDefineForClassFields: false } },
} as const;

/** dlc's sources have no side effects at load time: esbuild may drop whatever nothing reaches. */
const pure = (a: OnResolveArgs) => ({ path: resolve(a.resolveDir, a.path), sideEffects: false });

/** A module of the runtime built on its own, minified: `entry`, or `contents` importing from it. */
async function part(entry: string, contents?: string): Promise<string> {
  const input = contents === undefined ? { entryPoints: [entry] } : { stdin: { contents, resolveDir: ROOT, loader: 'js' as const } };
  const plugin = { name: 'pure', setup: (b: PluginBuild) => b.onResolve({ filter: /\.ts$/ }, pure) };
  return (await build({ ...ESBUILD, ...input, minify: true, plugins: [plugin] })).outputFiles[0].text;
}

/** The kernel variants of `m`'s programs, by kernel name. */
function subs(m: Manifest): Record<string, NonNullable<KernelJSON['sub']>> {
  return Object.fromEntries(Object.values(m.programs).flatMap((p) => p.kernels.flatMap((k) => (k.sub ? [[k.name, k.sub]] : []))));
}

const arrayType = (s: TensorSpec) => (s.dtype === 'f32' ? 'Float32Array' : 'Int32Array');
const shapeDoc = (s: TensorSpec) => `${s.dtype}[${s.shape.join(', ')}]`;

export function typings(m: Manifest, weights?: string): string {
  const field = (s: TensorSpec, t: string) => `  /** ${shapeDoc(s)} */\n  ${JSON.stringify(s.name)}: ${t};`;
  const trainInputs = new Set(m.programs.train.args.filter((a) => a.role === 'input').map((a) => a.name));
  return `// Types of the compiled model '${m.model}'. docs/embedding.md in dlc describes the API.
export interface Tensor<A = Float32Array | Int32Array> { data: A; shape: number[] }

/** A batch: each input a flat array (its batch dim inferred) or a Tensor. */
export interface Inputs {
${m.inputs.map((s) => field(s, `${arrayType(s)} | Tensor<${arrayType(s)}>`)).join('\n')}
}

/** What predict needs: ${m.inputs.filter((s) => m.programs.predict.args.some((a) => a.role === 'input' && a.name === s.name)).map((s) => s.name).join(', ') || 'nothing'}. */
export type PredictInputs = Pick<Inputs, ${m.programs.predict.args.filter((a) => a.role === 'input').map((a) => JSON.stringify(a.name)).join(' | ') || 'never'}> & Partial<Inputs>;

export interface Outputs {
${m.outputs.map((s) => field(s, `Tensor<${arrayType(s)}>`)).join('\n')}
}

/** loss and the model's metrics: ${['loss', ...m.metrics].join(', ')} */
export type Stats = { ${['loss', ...m.metrics].map((k) => `${JSON.stringify(k)}: number`).join('; ')} };

export interface ModelOptions {
  /** 'auto' (default): WebGPU when \`device\` is given or navigator.gpu has an adapter, else the CPU. */
  backend?: 'auto' | 'webgpu' | 'cpu';
  device?: GPUDevice;
  /** Seed of the initial parameters and dropout (default ${m.train.seed}). */
  seed?: number;
  /** Trained weights (what save() or \`dlc compile --checkpoint\` wrote): the bytes, or a URL (in Node
   *  also a file path) to load them from; null: none. ${weights ? `Default: ./${weights} beside model.js.` : 'Default: none, the initial parameters from the seed.'} */
  weights?: ArrayBuffer | ArrayBufferView | URL | string | null;
  /** On WebGPU, run on the CPU until the training step's pipelines are compiled, then move to the
   *  GPU (default true): the first steps do not wait for the pipelines. See \`runsOn\`. */
  startOnCpu?: boolean;
  /** On the CPU: threads for the wasm kernels' matrix products, where the host allows worker
   *  threads and shared memory (Node, or a cross-origin isolated page); by default its cores if it
   *  has four or more, else one. */
  threads?: number;
}

export interface EpochStats {
  epoch: number;
  /** Mean loss and metrics over the epoch's steps. */
  train: Stats;
  /** On \`val\` after the epoch, if given. */
  val?: Stats;
  /** The learning rate of the epoch's first step. */
  lr?: number;
  ms: number;
}

export interface FitOptions {
  /** Epochs to train (default ${m.train.epochs}), counting on from the model's epoch. */
  epochs?: number;
  /** Examples per step (default ${m.train.batch}). */
  batch?: number;
  /** Shuffle the examples every epoch (default ${m.train.shuffle}). */
  shuffle?: boolean;
  /** Examples evaluated after each epoch. */
  val?: Pick<Inputs, ${[...trainInputs].map((n) => JSON.stringify(n)).join(' | ') || 'never'}>;
  /** After each epoch; awaited. */
  onEpoch?(stats: EpochStats): void | Promise<void>;
  /** After each step (\`step\` counts from 1 to \`steps\` in the epoch). */
  onStep?(stats: Stats & { epoch: number; step: number; steps: number }): void;
  /** Cancels training: the step in flight finishes, the model keeps its updates and stays usable,
   *  and fit rejects with the signal's reason (an AbortError unless another was given). */
  signal?: AbortSignal;
}

export interface Model {
  readonly backend: 'webgpu' | 'cpu';
  /** Where the next call runs: 'cpu' while a WebGPU model's pipelines compile (startOnCpu). */
  readonly runsOn: 'webgpu' | 'cpu';
  /** Updates taken so far. */
  step: number;
  /** Epochs trained so far (fit counts on from here). */
  epoch: number;
  /** Optimizer hyperparameters (${Object.keys(m.optimizer.hypers).join(', ')}), changeable at run time. */
  readonly hypers: Record<string, number>;
  /** One optimizer step on the batch. Throws DlcInputError for a wrong input (nothing changes), and
   *  DlcNumericError (the step undone) when the loss is not finite. */
  trainStep(batch: Inputs): Promise<Stats>;
  /** Loss and metrics on the batch, nothing updated. */
  evaluate(batch: Inputs): Promise<Stats>;
  /** The outputs, for any batch size. */
  predict(inputs: PredictInputs): Promise<Outputs>;
  /** Trains on whole arrays (the first dim the example) for some epochs; resolves with each epoch's
   *  stats. */
  fit(data: Pick<Inputs, ${[...trainInputs].map((n) => JSON.stringify(n)).join(' | ') || 'never'}>, opts?: FitOptions): Promise<{ history: EpochStats[] }>;
  /** Parameters, state, optimizer slots and step, as bytes (\`extra\` is kept alongside). */
  save(extra?: Record<string, unknown>): Promise<Uint8Array>;
  /** Loads what save() wrote; checks everything first (DlcInputError), then replaces. Returns \`extra\`. */
  restore(bytes: Uint8Array): Record<string, unknown>;
  getParams(): Promise<Record<string, Tensor<Float32Array>>>;
  setParams(byName: Record<string, Float32Array | Tensor<Float32Array>>): void;
  /** Frees every buffer (GPU ones included); any later call throws. */
  dispose(): void;
}

/** A wrong input, option or weights file: the message names it and says what was expected. */
export declare class DlcInputError extends Error {}
/** Training produced a NaN or an infinity: the step was undone; \`op\` and \`src\` say where. */
export declare class DlcNumericError extends Error {
  readonly step: number;
  readonly op?: string;
  readonly src?: string;
}
export declare function createModel(opts?: ModelOptions): Promise<Model>;
`;
}

/** Writes the bundle into `dir`, with the trained `weights` (Model.save bytes) if given; returns
 *  the files written. */
export async function writeBundle(manifest: Manifest, dir: string, weights?: Uint8Array): Promise<string[]> {
  mkdirSync(join(dir, 'kernels'), { recursive: true });
  const file = weights && WEIGHTS;
  const variants = subs(manifest);
  const files: [string, string | Uint8Array][] = [
    ['manifest.json', JSON.stringify(manifest, null, 1)],
    ['model.js', await bundleJs(manifest, false, file)],
    ['model.d.ts', typings(manifest, file)],
    ['package.json', JSON.stringify({ name: manifest.model, type: 'module', main: 'model.js', types: 'model.d.ts' }, null, 2)],
    ...(weights ? [[WEIGHTS, weights] as [string, Uint8Array]] : []),
    // binaryen is large: loaded only when a bundle is written, not by every dlc command
    ['kernels.wasm', (await import('./wasm.ts')).cpuWasm(manifest)],
    // threads.js: how model.js instantiates kernels.wasm, on one thread or several
    ['threads.js', await part(THREADS)],
    // variants.js: the kernels' variants for some adapters, and which adapters
    ...(Object.keys(variants).length ? [['variants.js', await part(VARIANTS, `import { forDevice } from ${JSON.stringify(VARIANTS)}; const subs = ${JSON.stringify(variants)}; export default (d, m) => forDevice(d, m, subs);`)] as [string, string]] : []),
  ];
  const seen = new Set<string>();
  for (const p of Object.values(manifest.programs)) {
    for (const k of p.kernels) {
      if (seen.has(k.name)) continue;
      seen.add(k.name);
      files.push([join('kernels', `${k.name}.wgsl`), k.wgsl]);
    }
  }
  for (const [name, data] of files) writeFileSync(join(dir, name), data);
  return files.map(([name]) => name);
}
