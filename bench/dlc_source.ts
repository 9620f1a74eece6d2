/**
 * dlc from the .dlm, with the compiler in the process:
 *
 * - `buildBundle`: compile a workload to the bundle that bench/dlc.ts times, and count its
 *   training step's dispatches.
 * - `fromSource`: what `dlc train` does: compile, then `Model.create` from the runtime. The bench
 *   measures only its first step ("compile -> first loss").
 */
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { compile } from "../compiler/compile.ts";
import { writeBundle } from "../compiler/codegen/bundle.ts";
import { programStats } from "../compiler/codegen/stats.ts";
import { cpuKernels } from "../runtime/cpu_kernels.ts";
import { Model } from "../runtime/model.ts";
import type { Manifest } from "../runtime/program.ts";
import { type DlcBackend, dlcEngine } from "./dlc.ts";
import { type Engine, type Params, type Workload } from "./engine.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

function compileOrThrow(w: Workload): Manifest {
  const { manifest, diagnostics } = compile(resolve(ROOT, w.dlm));
  if (!manifest) throw new Error(`compiling ${w.dlm} failed: ${diagnostics.map((d) => d.message).join("; ")}`);
  return manifest;
}

/**
 * Compile the workload's .dlm into a bundle under `dir`: model.js's path, or why there is none,
 * and the train program's dispatches at the workload's batch (compiler/codegen/stats.ts).
 */
export async function buildBundle(w: Workload, dir: string): Promise<{ dispatches: number; modelJs?: string; error?: string }> {
  const manifest = compileOrThrow(w);
  const dispatches = programStats(manifest.programs.train, { B: w.batch }).dispatches;
  const out = join(dir, w.name);
  mkdirSync(out, { recursive: true });
  try {
    await writeBundle(manifest, out);
    return { dispatches, modelJs: join(out, "model.js") };
  } catch (e) {
    // esbuild's message is "Build failed with 1 error:"; its errors say what went wrong.
    const why = (e as { errors?: { text: string }[] }).errors?.[0]?.text ?? (e instanceof Error ? e.message : String(e));
    return { dispatches, error: `no bundle: ${why.split("\n")[0]}` };
  }
}

/** Compile, then the runtime's Model, as `dlc train` does (cli/main.ts: on WebGPU from the start). */
export async function fromSource(backend: DlcBackend, w: Workload, params: Params): Promise<Engine> {
  const manifest = compileOrThrow(w);
  return dlcEngine(await Model.create(manifest, cpuKernels, { backend, startOnCpu: false }), manifest.params, backend, w, params);
}
