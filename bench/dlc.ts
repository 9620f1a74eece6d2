/**
 * dlc itself as a benchmark engine (backends: cpu, webgpu), through its public API only:
 *
 * - `fromBundle`: what an app does. The workload's .dlm was compiled to a bundle beforehand
 *   (`buildBundle`, in the parent process); the engine is `createModel()` of its model.js. This
 *   is the engine that is timed, and its first step is "createModel -> first loss".
 * - `fromSource`: what `dlc train` does: compile the .dlm in-process, `Model.create` from the
 *   runtime. Only its first step is measured ("compile -> first loss").
 *
 * Both load the shared initial weights with `setParams`, matching the manifest's parameters
 * (declaration order) to the workload's; dlc's layout is the workload's.
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

import { compile } from "../compiler/compile.ts";
import { writeBundle } from "../compiler/codegen/bundle.ts";
import { programStats } from "../compiler/codegen/stats.ts";
import { cpuKernels } from "../runtime/cpu_kernels.ts";
import { Model } from "../runtime/model.ts";
import type { Manifest, TensorSpec } from "../runtime/program.ts";
import { type Engine, type Params, type Workload } from "./engine.ts";

export type DlcBackend = "cpu" | "webgpu";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The part of dlc's Model (runtime or bundle) the bench uses. */
interface DlcModel {
  trainStep(batch: Record<string, Float32Array | Int32Array | { data: Float32Array; shape: number[] }>): Promise<Record<string, number>>;
  predict(inputs: Record<string, { data: Float32Array; shape: number[] }>): Promise<Record<string, { data: ArrayLike<number> }>>;
  setParams(byName: Record<string, Float32Array>): void;
  dispose(): void;
}

/** A compiled bundle's model.js. */
export interface Bundle {
  spec: Manifest;
  createModel(opts: { backend: DlcBackend }): Promise<DlcModel>;
}

function compileOrThrow(w: Workload): Manifest {
  const { manifest, diagnostics } = compile(resolve(ROOT, w.dlm));
  if (!manifest) throw new Error(`compiling ${w.dlm} failed: ${diagnostics.map((d) => d.message).join("; ")}`);
  return manifest;
}

/** Compile the workload's .dlm into a bundle under `dir`; returns model.js's path and the
 *  train program's dispatches at the workload's batch. */
export async function buildBundle(w: Workload, dir: string): Promise<{ modelJs: string; dispatches: number }> {
  const manifest = compileOrThrow(w);
  const out = join(dir, w.name);
  mkdirSync(out, { recursive: true });
  await writeBundle(manifest, out);
  return { modelJs: join(out, "model.js"), dispatches: programStats(manifest.programs.train, { B: w.batch }).dispatches };
}

export async function importBundle(modelJs: string): Promise<Bundle> {
  return (await import(pathToFileURL(modelJs).href)) as Bundle;
}

/** The bundle's model, as an app creates it. */
export async function fromBundle(bundle: Bundle, backend: DlcBackend, w: Workload, params: Params): Promise<Engine> {
  return engine(await bundle.createModel({ backend }), bundle.spec.params, backend, w, params);
}

/** Compile, then the runtime's Model, as `dlc train` does. */
export async function fromSource(backend: DlcBackend, w: Workload, params: Params): Promise<Engine> {
  const manifest = compileOrThrow(w);
  const model = await Model.create(manifest, cpuKernels, { backend });
  return engine(model, manifest.params, backend, w, params);
}

function engine(model: DlcModel, specs: TensorSpec[], backend: DlcBackend, w: Workload, params: Params): Engine {
  const mine = w.params;
  const same = specs.length === mine.length && specs.every((s, i) => s.shape.join() === mine[i].shape.join());
  if (!same) {
    const fmt = (ps: { shape: (number | string)[] }[]) => ps.map((p) => `[${p.shape.join(",")}]`).join(" ");
    throw new Error(`${w.dlm}'s parameters ${fmt(specs)} are not the bench's ${w.name} parameters ${fmt(mine)}`);
  }
  model.setParams(Object.fromEntries(specs.map((s, i) => [s.name, params[mine[i].name].data])));
  return {
    name: `dlc-${backend}`,
    async step(x, y) {
      return (await model.trainStep({ x: { data: x, shape: [y.length, ...w.input] }, y })).loss;
    },
    async predict(x, batch) {
      return (await model.predict({ x: { data: x, shape: [batch, ...w.input] } })).probs.data as Float32Array;
    },
    async dispose() {
      model.dispose();
    },
  };
}
