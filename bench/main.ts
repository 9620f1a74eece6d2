/**
 * dlc vs. TensorFlow.js (cpu, wasm, webgpu) and jax-js (wasm, webgpu) on the MNIST MLP and
 * LeNet-5: training step, inference, first-step latency, peak memory. Prints a "does it train"
 * line per run, the loss curves, a table of every measure for every engine, the same as factors
 * over jax-js on the same kind of device, and the issue's targets; writes bench/results/bench.json.
 *
 *   npm run bench            (npx tsx bench/main.ts)
 *
 * Options: --only=a,b / --skip=a,b (engine names)  --workloads=mlp,lenet  --warmup=3  --iters=20
 *          --budget-ms=10000 (cap on the timed ms of each timing loop)
 *          --timeout-s=150 (per engine and workload)  --out=PATH
 *          --check: only check that the CPU engines compute the same function (bench/agree.ts),
 *          which every run does first; exits with 1 if they do not
 *
 * Every engine runs each workload in a fresh process of its own (this file, `--child=JOB`), so
 * first steps are cold, peak memory is the engine's alone, and a crash or a hang costs one cell.
 * dlc's workloads are compiled to bundles first; dlc is timed through `createModel()` of the
 * bundle, as an app runs it, and its first step from the .dlm is measured in one more process.
 * An engine that fails shows "n/a (reason)" in the table and the run goes on.
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import {
  type Engine,
  type MemoryKind,
  type Params,
  type TimingResult,
  WORKLOADS,
  type Workload,
  type WorkloadName,
  failedResult,
  initParams,
  randomBatch,
  timeEngine,
} from "./engine.ts";
import { trackWasmMemory } from "./memory.ts";
import { describeAdapter, ensureNodeWebGPU } from "./peers/node_webgpu.ts";
import { MEMORY_NOTES, Report, type Result, fmtMs } from "./report.ts";

interface EngineSpec {
  name: string;
  webgpu: boolean;
  memory: MemoryKind;
  /** Untimed preparation (imports); resolves to the timed factory. */
  load(w: Workload, params: Params, job: Job): Promise<() => Promise<Engine>>;
}

const dlc = (backend: "cpu" | "webgpu"): EngineSpec["load"] => async (w, params, job) => {
  if (job.mode === "source") {
    const { fromSource } = await import("./dlc_source.ts");
    return () => fromSource(backend, w, params);
  }
  const { fromBundle, importBundle } = await import("./dlc.ts");
  const t0 = performance.now();
  const bundle = await importBundle(job.modelJs!);
  console.log(`dlc-${backend} ${w.name}: import model.js ${(performance.now() - t0).toFixed(0)} ms (not in the first step)`);
  return () => fromBundle(bundle, backend, w, params, job.mode !== "gpu-first");
};
const tfjs = (backend: "cpu" | "wasm" | "webgpu"): EngineSpec["load"] => async (w, params) => {
  const { tfjsEngine } = await import("./peers/tfjs.ts");
  return () => tfjsEngine(backend, w, params);
};
const jax = (device: "wasm" | "webgpu"): EngineSpec["load"] => async (w, params) => {
  const { jaxEngine } = await import("./peers/jaxjs.ts");
  return () => jaxEngine(device, w, params);
};

export const ENGINES: EngineSpec[] = [
  { name: "dlc-cpu", webgpu: false, memory: "heap", load: dlc("cpu") },
  { name: "tfjs-cpu", webgpu: false, memory: "tf", load: tfjs("cpu") },
  { name: "tfjs-wasm", webgpu: false, memory: "wasm", load: tfjs("wasm") },
  { name: "jax-js-wasm", webgpu: false, memory: "wasm", load: jax("wasm") },
  { name: "dlc-webgpu", webgpu: true, memory: "gpu", load: dlc("webgpu") },
  { name: "tfjs-webgpu", webgpu: true, memory: "gpu", load: tfjs("webgpu") },
  { name: "jax-js-webgpu", webgpu: true, memory: "gpu", load: jax("webgpu") },
];

interface Job {
  engine: string;
  workload: WorkloadName;
  /** run: time the engine; source: dlc's first step from the .dlm only; gpu-first: dlc-webgpu's
   *  first step from the bundle with its WebGPU pipelines compiled first (startOnCpu: false). */
  mode: "run" | "source" | "gpu-first";
  modelJs?: string;
  warmup: number;
  iters: number;
  budgetMs: number;
}

type ChildReply = { result: TimingResult } | { firstStepMs: number } | { error: string };

async function child(job: Job): Promise<ChildReply> {
  trackWasmMemory();
  const spec = ENGINES.find((e) => e.name === job.engine)!;
  const w = WORKLOADS[job.workload];
  const params = initParams(w);
  try {
    if (spec.webgpu) await ensureNodeWebGPU();
    const make = await spec.load(w, params, job);
    if (job.mode !== "run") {
      const { x, y } = randomBatch(w.batch, 1);
      const t0 = performance.now();
      const engine = await make();
      const loss = await engine.step(x, y);
      const ms = performance.now() - t0;
      console.log(`${job.engine} ${w.name}: ${job.mode === "source" ? ".dlm" : "createModel, pipelines first,"} -> first loss ${ms.toFixed(0)} ms (loss ${loss.toFixed(4)})`);
      await engine.dispose();
      return { firstStepMs: ms };
    }
    const result = await timeEngine(make, w, { ...job, memory: spec.memory, log: console.log });
    return { result };
  } catch (e) {
    return { error: (e instanceof Error ? e.message : String(e)).split("\n")[0] };
  }
}

const HERE = fileURLToPath(import.meta.url);

/** Run one job in a fresh process; a crash, or running past `timeoutS`, is an error reply. */
function runChild(job: Job, timeoutS: number): Promise<ChildReply> {
  return new Promise((done) => {
    // --expose-gc: the "heap" meter collects garbage before its baseline.
    const p: ChildProcess = fork(HERE, [`--child=${JSON.stringify(job)}`], {
      execArgv: [...process.execArgv, "--expose-gc"],
      serialization: "advanced", // keeps NaN
      stdio: "inherit",
    });
    let reply: ChildReply | undefined;
    const timer = setTimeout(() => {
      reply ??= { error: `timed out after ${timeoutS} s` };
      p.kill("SIGKILL");
    }, timeoutS * 1000);
    p.on("message", (m) => (reply ??= m as ChildReply));
    p.on("exit", (code, signal) => {
      clearTimeout(timer);
      done(reply ?? { error: `the process exited (${signal ?? `code ${code}`}) without a result` });
    });
  });
}

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const a of argv) {
    const m = /^--([^=]+)(?:=(.*))?$/.exec(a);
    if (m) out[m[1]] = m[2] ?? "true";
  }
  return out;
}

const list = (s?: string) => (s ? s.split(",").map((x) => x.trim()).filter(Boolean) : null);

export async function main(argv: string[] = process.argv.slice(2)): Promise<Result[]> {
  const args = parseArgs(argv);
  const only = list(args.only);
  const skip = list(args.skip) ?? [];
  for (const n of [...(only ?? []), ...skip]) {
    if (!ENGINES.some((e) => e.name === n)) throw new Error(`unknown engine '${n}' (engines: ${ENGINES.map((e) => e.name).join(", ")})`);
  }
  const specs = ENGINES.filter((s) => (!only || only.includes(s.name)) && !skip.includes(s.name));
  const workloads = (list(args.workloads) ?? ["mlp", "lenet"]).map((n) => {
    if (!(n in WORKLOADS)) throw new Error(`unknown workload '${n}' (workloads: ${Object.keys(WORKLOADS).join(", ")})`);
    return WORKLOADS[n as WorkloadName];
  });
  const warmup = Number(args.warmup ?? 3);
  const iters = Number(args.iters ?? 20);
  const budgetMs = Number(args["budget-ms"] ?? 10000);
  const timeoutS = Number(args["timeout-s"] ?? 150);
  const outPath = resolve(args.out ?? join(dirname(HERE), "results", "bench.json"));

  // Imported here, not at the top: the child processes load only their own engine.
  const { TOLERANCE, agreement, agreementLine } = await import("./agree.ts");
  if (args.check) {
    const agreements = await agreement(workloads);
    for (const a of agreements) console.log(agreementLine(a));
    process.exitCode = agreements.every((a) => a.maxDiff <= TOLERANCE) ? 0 : 1;
    return [];
  }

  const adapter = specs.some((s) => s.webgpu) ? await describeAdapter().catch(() => null) : null;
  const load0 = loadavg();
  console.log(
    `${workloads.map((w) => w.title).join("; ")}; Adam; train batch 64, MLP inference batch 256; ` +
      `warmup ${warmup}, iters ${iters}; node ${process.versions.node}, ${cpus().length} CPU(s), ` +
      `load average ${load0.map((l) => l.toFixed(2)).join(" ")}` +
      (specs.some((s) => s.webgpu) ? `; WebGPU adapter: ${adapter ?? "none"}` : ""),
  );
  if (load0[0] > cpus().length * 0.5) console.log(`warning: the machine is busy; timings will be noisy`);

  const t0 = performance.now();
  const agreements = await agreement(workloads);
  const dispatches: Partial<Record<WorkloadName, number>> = {};
  const bundles: Partial<Record<WorkloadName, string | Error>> = {};
  const tmp = mkdtempSync(join(tmpdir(), "dlc-bench-"));
  try {
    if (specs.some((s) => s.name.startsWith("dlc-"))) {
      const { buildBundle } = await import("./dlc_source.ts");
      for (const w of workloads) {
        try {
          const b = await buildBundle(w, tmp);
          dispatches[w.name] = b.dispatches;
          bundles[w.name] = b.modelJs ?? new Error(b.error);
        } catch (e) {
          bundles[w.name] = e instanceof Error ? e : new Error(String(e));
        }
      }
    }

    const results: Result[] = [];
    for (const spec of specs) {
      for (const w of workloads) {
        console.log(`== ${spec.name} ${w.name}`);
        const bundle = bundles[w.name];
        const job: Job = { engine: spec.name, workload: w.name, mode: "run", warmup, iters, budgetMs };
        if (typeof bundle === "string") job.modelJs = bundle;
        const reply = bundle instanceof Error && spec.name.startsWith("dlc-") ? { error: bundle.message } : await runChild(job, timeoutS);
        const r: Result = "result" in reply ? reply.result : failedResult(spec.name, w.name, spec.memory, "error" in reply ? reply.error : "?");
        if (r.error) console.log(`   n/a: ${r.error}`);
        else console.log(`   step ${fmtMs(r.stepMedianMs)} ms (median of ${r.stepIters}), first step ${fmtMs(r.firstStepMs)} ms`);
        if (spec.name.startsWith("dlc-")) {
          const s = await runChild({ ...job, mode: "source" }, timeoutS);
          if ("firstStepMs" in s) r.sourceFirstStepMs = s.firstStepMs;
          else r.sourceError = "error" in s ? s.error : "?";
        }
        if (spec.name === "dlc-webgpu" && job.modelJs) {
          const s = await runChild({ ...job, mode: "gpu-first" }, timeoutS);
          if ("firstStepMs" in s) r.gpuFirstStepMs = s.firstStepMs;
          else r.gpuFirstError = "error" in s ? s.error : "?";
        }
        results.push(r);
      }
    }
    const totalS = (performance.now() - t0) / 1000;

    const report = new Report(results, specs.map((s) => s.name));
    console.log("\nSanity: the same function (predictions at the shared initial weights, batch 8):");
    for (const a of agreements) console.log("  " + agreementLine(a));
    console.log("and training (loss on one fixed random batch, mean of the first 3 vs the last 3 of 20 steps):");
    for (const l of report.sanity()) console.log("  " + l);
    for (const w of workloads) {
      const note = w.name === "lenet" ? " (dropout: each engine draws its own masks, compare trends only)" : "";
      console.log(`\nLoss curves, ${w.title}, same initial weights and batch${note}:\n${report.curves(w.name)}`);
    }
    console.log("\n" + report.table());
    console.log(
      "first step: engine creation -> first loss on the host, cold process (dlc: createModel of the compiled bundle;" +
        " dlc-webgpu's first steps run on the CPU while its pipelines compile); pipelines first: dlc-webgpu with" +
        " startOnCpu: false, its first step on the GPU; from .dlm: dlc's compile -> Model.create -> first loss",
    );
    console.log("peak memory: " + [...new Set(specs.map((s) => s.memory))].map((k) => `${specs.filter((s) => s.memory === k).map((s) => s.name).join(", ")}: ${MEMORY_NOTES[k]}`).join(";\n  "));
    const failures = report.failures();
    if (failures.length) console.log("n/a:\n  " + failures.join("\n  "));
    console.log("\n" + report.ratios());
    console.log("(jax-js's time or bytes / the engine's: > 1 = faster or smaller than jax-js on the same device kind)");

    const targets = report.targets(dispatches);
    console.log("\nTargets (issue 5):");
    const tw = Math.max(...targets.map((t) => t.target.length));
    for (const t of targets) console.log(`  ${t.target.padEnd(tw)}  ${t.measured.padStart(9)}  ${t.holds === null ? "n/a" : t.holds ? "holds" : "NOT MET"}`);
    if (Object.keys(dispatches).length) {
      console.log(`dlc dispatches per training step (compiler/codegen/stats.ts, batch 64): ${Object.entries(dispatches).map(([k, v]) => `${k} ${v}`).join(", ")}`);
    }
    console.log(`\ntotal ${totalS.toFixed(0)} s; load average at the end ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);

    mkdirSync(dirname(outPath), { recursive: true });
    const json = {
      benchmark: "dlc-vs-peers",
      date: new Date().toISOString(),
      workloads: Object.fromEntries(workloads.map((w) => [w.name, { title: w.title, dlm: w.dlm, batch: w.batch, predictBatch: w.predictBatch }])),
      env: {
        node: process.versions.node,
        platform: `${process.platform}-${process.arch}`,
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model,
        webgpuAdapter: adapter,
        loadAvgStart: load0,
        loadAvgEnd: loadavg(),
      },
      config: { warmup, iters, budgetMs, timeoutS },
      memory: Object.fromEntries(specs.map((s) => [s.name, MEMORY_NOTES[s.memory]])),
      dispatches,
      agreements,
      targets,
      results,
    };
    writeFileSync(outPath, JSON.stringify(json, null, 2) + "\n");
    console.log(`wrote ${outPath}`);
    return results;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === HERE) {
  const job = parseArgs(process.argv.slice(2)).child;
  if (job) {
    const reply = await child(JSON.parse(job) as Job);
    process.send!(reply, () => process.exit(0));
  } else {
    await main();
  }
}
