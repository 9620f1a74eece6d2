/**
 * Do the engines compute the same function? From the shared initial weights, each CPU/wasm
 * engine predicts one random batch; the largest difference from dlc-cpu's probabilities must be
 * float noise. This checks each peer's model and weight layout (jax-js's converted kernels and
 * flatten order, tfjs's NHWC) against the .dlm; the WebGPU variants run the same model code.
 * Dropout is off in prediction, so LeNet is compared exactly too.
 */
import { fromSource } from "./dlc_source.ts";
import { type Engine, type Workload, initParams, randomBatch } from "./engine.ts";
import { jaxEngine } from "./peers/jaxjs.ts";
import { tfjsEngine } from "./peers/tfjs.ts";

const BATCH = 8;
export const TOLERANCE = 1e-4;

export interface Agreement {
  workload: string;
  engine: string;
  /** Largest |p - p(dlc-cpu)| over the batch's probabilities; NaN with `error`. */
  maxDiff: number;
  error?: string;
}

/** One workload at a time: tfjs's backend is process-wide. */
export async function agreement(workloads: Workload[]): Promise<Agreement[]> {
  const out: Agreement[] = [];
  for (const w of workloads) out.push(...(await agree(w)));
  return out;
}

async function agree(w: Workload): Promise<Agreement[]> {
  const params = initParams(w);
  const x = randomBatch(BATCH, 3).x;
  const probs = async (make: () => Promise<Engine>) => {
    const e = await make();
    try {
      return await e.predict!(x, BATCH);
    } finally {
      await e.dispose();
    }
  };
  const ref = await probs(() => fromSource("cpu", w, params));
  const peers: [string, () => Promise<Engine>][] = [
    ["tfjs-cpu", () => tfjsEngine("cpu", w, params)],
    ["tfjs-wasm", () => tfjsEngine("wasm", w, params)],
    ["jax-js-wasm", () => jaxEngine("wasm", w, params)],
  ];
  const out: Agreement[] = [];
  for (const [engine, make] of peers) {
    try {
      const p = await probs(make);
      let d = p.length === ref.length ? 0 : Infinity;
      for (let i = 0; i < ref.length; i++) d = Math.max(d, Math.abs(p[i] - ref[i]));
      out.push({ workload: w.name, engine, maxDiff: d });
    } catch (e) {
      out.push({ workload: w.name, engine, maxDiff: NaN, error: (e instanceof Error ? e.message : String(e)).split("\n")[0] });
    }
  }
  return out;
}

export function agreementLine(a: Agreement): string {
  const name = `${a.engine} ${a.workload}`;
  if (a.error) return `${name}: n/a (${a.error})`;
  return `${name}: predictions within ${a.maxDiff.toExponential(1)} of dlc-cpu's ${a.maxDiff <= TOLERANCE ? "(same function: OK)" : "(DIFFERENT: FAIL)"}`;
}
