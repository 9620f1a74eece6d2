// The bundle: manifest.json, kernels/*.wgsl, and model.js + model.d.ts — the runtime and this
// model's manifest in one self-contained ES module, with typings for its inputs and outputs.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Manifest, TensorSpec } from '../../runtime/program.ts';

const ENTRY = fileURLToPath(new URL('../../runtime/bundle_entry.ts', import.meta.url));
const KERNELS = fileURLToPath(new URL('../../runtime/cpu_kernels.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The ops whose CPU kernels `m`'s programs run (leaves have none). */
export function kernelOps(m: Manifest): string[] {
  const used = new Set(Object.values(m.programs).flatMap((p) => p.nodes.map((n) => n.op)));
  return [...used].filter((op) => op !== 'arg' && op !== 'const').sort();
}

/** How model.js carries the manifest (runtime/bundle_entry.ts unpacks it): every WGSL text and
 *  source position once, in a string table `s`, referred to by index (programs share kernels, and
 *  many nodes one position); node ids, which are their positions, left out; and no kernels for
 *  the programs that only ever run on the CPU (init, schedule). */
export interface PackedManifest {
  s: string[];
  m: Manifest;
}

const CPU_ONLY = new Set(['init', 'schedule']);

export function packManifest(m: Manifest): PackedManifest {
  const s: string[] = [];
  const at = new Map<string, number>();
  const ref = (text: string) => at.get(text) ?? (at.set(text, s.length), s.push(text) - 1);
  const programs = Object.fromEntries(
    Object.entries(m.programs).map(([name, p]) => [
      name,
      {
        ...p,
        nodes: p.nodes.map(({ id, src, ...n }, i) => ({ ...n, ...(id !== i && { id }), ...(src !== undefined && { src: ref(src) }) })),
        kernels: CPU_ONLY.has(name) ? [] : p.kernels.map((k) => ({ ...k, wgsl: ref(k.wgsl) })),
      },
    ]),
  );
  return { s, m: { ...m, programs } as unknown as Manifest };
}

/**
 * model.js as text: esbuild bundles the runtime with two modules made here, `dlc:manifest` (the
 * packed manifest) and `dlc:kernels` (the CPU kernels of the ops the programs use, re-exported by name
 * from runtime/cpu_kernels.ts). dlc's sources have no side effects at load time, which lets
 * esbuild drop every module and statement the entry does not reach.
 */
export async function bundleJs(manifest: Manifest, minify = false): Promise<string> {
  const virtual: Record<string, { contents: string; loader: 'json' | 'js' }> = {
    manifest: { contents: JSON.stringify(packManifest(manifest)), loader: 'json' },
    kernels: { contents: `export { ${kernelOps(manifest).join(', ')} } from ${JSON.stringify(KERNELS)};`, loader: 'js' },
  };
  const r = await build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    minify,
    write: false,
    legalComments: 'none',
    plugins: [
      {
        name: 'dlc-virtual',
        setup(b) {
          b.onResolve({ filter: /^dlc:/ }, (a) => ({ path: a.path.slice(4), namespace: 'dlc' }));
          b.onLoad({ filter: /.*/, namespace: 'dlc' }, (a) => ({ ...virtual[a.path], resolveDir: ROOT }));
          b.onResolve({ filter: /\.ts$/ }, (a) => ({ path: resolve(a.resolveDir, a.path), sideEffects: false }));
        },
      },
    ],
  });
  return r.outputFiles[0].text;
}

const arrayType = (s: TensorSpec) => (s.dtype === 'f32' ? 'Float32Array' : 'Int32Array');
const shapeDoc = (s: TensorSpec) => `${s.dtype}[${s.shape.join(', ')}]`;

export function typings(m: Manifest): string {
  const field = (s: TensorSpec, t: string) => `  /** ${shapeDoc(s)} */\n  ${JSON.stringify(s.name)}: ${t};`;
  return `// Types of the compiled model '${m.model}'.
export interface Tensor<A = Float32Array | Int32Array> { data: A; shape: number[] }

export interface Inputs {
${m.inputs.map((s) => field(s, `${arrayType(s)} | Tensor<${arrayType(s)}>`)).join('\n')}
}

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
}

export interface Model {
  readonly backend: 'webgpu' | 'cpu';
  /** Updates taken so far. */
  step: number;
  /** Optimizer hyperparameters (${Object.keys(m.optimizer.hypers).join(', ')}), changeable at run time. */
  readonly hypers: Record<string, number>;
  trainStep(batch: Inputs): Promise<Stats>;
  evaluate(batch: Inputs): Promise<Stats>;
  predict(inputs: Partial<Inputs>): Promise<Outputs>;
  /** Parameters, state, optimizer slots and step. */
  save(extra?: Record<string, unknown>): Promise<Uint8Array>;
  restore(bytes: Uint8Array): Record<string, unknown>;
  getParams(): Promise<Record<string, Tensor<Float32Array>>>;
  setParams(byName: Record<string, Float32Array | Tensor<Float32Array>>): void;
  dispose(): void;
}

export declare class DlcInputError extends Error {}
export declare function createModel(opts?: ModelOptions): Promise<Model>;
`;
}

/** Writes the bundle into `dir`; returns the files written. */
export async function writeBundle(manifest: Manifest, dir: string): Promise<string[]> {
  mkdirSync(join(dir, 'kernels'), { recursive: true });
  const files: [string, string][] = [
    ['manifest.json', JSON.stringify(manifest, null, 1)],
    ['model.js', await bundleJs(manifest)],
    ['model.d.ts', typings(manifest)],
    ['package.json', JSON.stringify({ name: manifest.model, type: 'module', main: 'model.js', types: 'model.d.ts' }, null, 2)],
  ];
  const seen = new Set<string>();
  for (const p of Object.values(manifest.programs)) {
    for (const k of p.kernels) {
      if (seen.has(k.name)) continue;
      seen.add(k.name);
      files.push([join('kernels', `${k.name}.wgsl`), k.wgsl]);
    }
  }
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return files.map(([name]) => name);
}
