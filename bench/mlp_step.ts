/**
 * MNIST MLP training-step benchmark: runs every engine (dlc-cpu, dlc-webgpu,
 * then the peers) in this process in turn, prints a "does it train" sanity
 * line per engine, the loss curves side by side, a table (times and ratios to
 * dlc), and writes bench/results/mlp_step.json.
 *
 *   npm run bench        (= npx tsx bench/mlp_step.ts)
 *
 * Options: --only=a,b (engine names)  --skip=a,b  --warmup=3  --iters=20
 *          --predict-iters=N  --budget-ms=15000 (cap on timed ms per phase)
 *          --baseline=NAME (default: dlc on the same kind of device: dlc-webgpu
 *          for *-webgpu engines, dlc-cpu for the others)
 *          --out=PATH (default bench/results/mlp_step.json)
 *
 * An engine that fails to initialise (e.g. no WebGPU adapter) or to run is
 * reported as FAILED and the run goes on.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { dlcMlp } from "./dlc.ts";
import {
  type Baseline,
  type Engine,
  MLP,
  type TimingResult,
  failedResult,
  formatCurves,
  formatTable,
  sanityLine,
  timeEngine,
} from "./engine.ts";
import { jaxMlp } from "./peers/jaxjs.ts";
import { describeAdapter } from "./peers/node_webgpu.ts";
import { tfjsMlp } from "./peers/tfjs.ts";

export interface EngineSpec {
  name: string;
  make: () => Promise<Engine>;
  /** Per-engine override of the iteration counts (e.g. for very slow engines). */
  warmup?: number;
  iters?: number;
}

/** dlc itself: the baseline of the ratios. */
export const DLC: EngineSpec[] = [
  { name: "dlc-cpu", make: () => dlcMlp("cpu", { log: console.log }) },
  { name: "dlc-webgpu", make: () => dlcMlp("webgpu", { log: console.log }) },
];

/** The peers. */
export const PEERS: EngineSpec[] = [
  { name: "tfjs-cpu", make: () => tfjsMlp("cpu") },
  { name: "tfjs-wasm", make: () => tfjsMlp("wasm") },
  { name: "jax-js-wasm", make: () => jaxMlp("wasm") },
  { name: "tfjs-webgpu", make: () => tfjsMlp("webgpu") },
  { name: "jax-js-webgpu", make: () => jaxMlp("webgpu") },
];

export interface RunOptions {
  warmup: number;
  iters: number;
  predictIters?: number;
  budgetMs?: number;
  log?: (msg: string) => void;
}

export async function runEngines(specs: EngineSpec[], opts: RunOptions): Promise<TimingResult[]> {
  const log = opts.log ?? console.log;
  const results: TimingResult[] = [];
  for (const spec of specs) {
    log(`== ${spec.name}`);
    try {
      const r = await timeEngine(spec.make, {
        warmup: spec.warmup ?? opts.warmup,
        iters: spec.iters ?? opts.iters,
        predictIters: opts.predictIters,
        budgetMs: opts.budgetMs,
        log,
      });
      r.name = spec.name;
      results.push(r);
      log(
        `   step ${r.stepMedianMs.toFixed(2)} ms (median of ${r.stepIters}), ` +
          `predict b=${r.predictBatch} ${r.predictMedianMs.toFixed(2)} ms`,
      );
    } catch (e) {
      const r = failedResult(spec.name, e);
      results.push(r);
      log(`   FAILED: ${r.error}`);
    }
  }
  return results;
}

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (m) out[m[1]] = m[2] ?? "true";
  }
  return out;
}

/** Ratios compare each engine with dlc on the same kind of device. */
const dlcBaseline: Baseline = (name) => (name.endsWith("webgpu") ? "dlc-webgpu" : "dlc-cpu");

/**
 * Run the benchmark. `extraEngines` run first, then dlc and the peers; pass
 * `--baseline=NAME` to compare every engine with one of them instead of dlc.
 */
export async function main(
  extraEngines: EngineSpec[] = [],
  argv: string[] = process.argv.slice(2),
): Promise<TimingResult[]> {
  const args = parseArgs(argv);
  const list = (s?: string) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : null);
  const only = list(args.only);
  const skip = list(args.skip) ?? [];
  const specs = [...extraEngines, ...DLC, ...PEERS].filter((s) => (!only || only.includes(s.name)) && !skip.includes(s.name));
  const warmup = Number(args.warmup ?? 3);
  const iters = Number(args.iters ?? 20);
  const predictIters = args["predict-iters"] !== undefined ? Number(args["predict-iters"]) : undefined;
  const budgetMs = Number(args["budget-ms"] ?? 15000);
  const here = dirname(fileURLToPath(import.meta.url));
  const outPath = resolve(args.out ?? `${here}/results/mlp_step.json`);

  let adapter: string | null = null;
  if (specs.some((s) => s.name.includes("webgpu"))) {
    try {
      adapter = await describeAdapter();
    } catch (e) {
      adapter = null;
      console.log(`WebGPU setup failed: ${e instanceof Error ? e.message : e}`);
    }
  }
  console.log(
    `MNIST MLP ${MLP.sizes.join("-")}, Adam, train batch ${MLP.batch}, predict batch ${MLP.predictBatch}; ` +
      `warmup ${warmup}, iters ${iters}; node ${process.versions.node}, ${cpus().length} CPU(s)` +
      (specs.some((s) => s.name.includes("webgpu")) ? `; WebGPU adapter: ${adapter ?? "none"}` : ""),
  );

  const load0 = loadavg()[0];
  if (load0 > cpus().length * 0.5) {
    console.log(`warning: load average ${load0.toFixed(2)} on ${cpus().length} CPUs; timings will be noisy`);
  }
  const t0 = performance.now();
  const results = await runEngines(specs, { warmup, iters, predictIters, budgetMs });
  const totalS = (performance.now() - t0) / 1000;

  const baseline: Baseline = args.baseline ?? dlcBaseline;
  console.log("\nSanity (loss must decrease over 20 steps on one fixed random batch):");
  for (const r of results) console.log("  " + sanityLine(r));
  console.log("\nLoss curves (same initial weights and batch):\n" + formatCurves(results, baseline));
  console.log("\n" + formatTable(results, baseline, args.baseline ?? "dlc"));
  console.log(`\ntotal ${totalS.toFixed(1)} s`);

  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(
    outPath,
    JSON.stringify(
      {
        benchmark: "mnist-mlp-step",
        date: new Date().toISOString(),
        model: {
          sizes: MLP.sizes,
          activation: "relu",
          loss: "softmax cross-entropy (mean)",
          optimizer: { name: "adam", lr: MLP.lr, beta1: MLP.beta1, beta2: MLP.beta2, eps: MLP.eps },
          batch: MLP.batch,
          predictBatch: MLP.predictBatch,
        },
        env: {
          node: process.versions.node,
          platform: `${process.platform}-${process.arch}`,
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model,
          webgpuAdapter: adapter,
          vkIcd: process.env.VK_ICD_FILENAMES ?? null,
          loadAvgStart: load0,
          loadAvgEnd: loadavg()[0],
        },
        config: { warmup, iters, predictIters: predictIters ?? iters, budgetMs },
        baseline: args.baseline ?? "dlc-cpu (cpu/wasm engines), dlc-webgpu (webgpu engines)",
        results,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`wrote ${outPath}`);
  return results;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await main();
}
