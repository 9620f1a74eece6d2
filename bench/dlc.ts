/**
 * dlc itself as a benchmark engine (backends: cpu, webgpu), as an app runs it: the workload's
 * .dlm was compiled to a bundle beforehand (dlc_source.ts `buildBundle`, in the parent process);
 * the engine is `createModel()` of its model.js, so its first step is "createModel -> first
 * loss". This file imports nothing of the compiler or the runtime: the bundle carries its own.
 *
 * The shared initial weights are loaded with `setParams`, matching the manifest's parameters
 * (declaration order) to the workload's; dlc's layout is the workload's.
 */
import { pathToFileURL } from "node:url";

import type { Manifest, TensorSpec } from "../runtime/program.ts";
import { type Engine, type Params, type Workload } from "./engine.ts";

export type DlcBackend = "cpu" | "webgpu";

/** The part of dlc's Model (runtime or bundle) the bench uses. */
export interface DlcModel {
  trainStep(batch: Record<string, Float32Array | Int32Array | { data: Float32Array; shape: number[] }>): Promise<Record<string, number>>;
  predict(inputs: Record<string, { data: Float32Array; shape: number[] }>): Promise<Record<string, { data: ArrayLike<number> }>>;
  setParams(byName: Record<string, Float32Array>): void;
  /** Where the next step runs: "cpu" while a WebGPU model's pipelines compile (startOnCpu). */
  readonly runsOn: DlcBackend;
  dispose(): void;
}

/** A compiled bundle's model.js. */
export interface Bundle {
  spec: Manifest;
  createModel(opts: { backend: DlcBackend; startOnCpu?: boolean }): Promise<DlcModel>;
}

export async function importBundle(modelJs: string): Promise<Bundle> {
  return (await import(pathToFileURL(modelJs).href)) as Bundle;
}

/** The bundle's model, as an app creates it (`startOnCpu: false`: its first step waits for the
 *  WebGPU pipelines instead of running on the CPU meanwhile). */
export async function fromBundle(bundle: Bundle, backend: DlcBackend, w: Workload, params: Params, startOnCpu = true): Promise<Engine> {
  return dlcEngine(await bundle.createModel({ backend, startOnCpu }), bundle.spec.params, backend, w, params);
}

/** A dlc model as an engine, with the shared weights loaded. */
export function dlcEngine(model: DlcModel, specs: TensorSpec[], backend: DlcBackend, w: Workload, params: Params): Engine {
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
    async settle() {
      while (model.runsOn !== backend) await new Promise((r) => setTimeout(r, 5));
    },
    async predict(x, batch) {
      return (await model.predict({ x: { data: x, shape: [batch, ...w.input] } })).probs.data as Float32Array;
    },
    async dispose() {
      model.dispose();
    },
  };
}
