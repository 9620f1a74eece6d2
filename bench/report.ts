/**
 * The bench's report: one table with a row per measure and a column per engine, the same table
 * as speed-ups over jax-js on the same kind of device, the targets with the measured
 * factors, and the loss curves.
 */
import type { MemoryKind, TimingResult, WorkloadName } from "./engine.ts";

/** A dlc result also carries what only dlc has. */
export interface Result extends TimingResult {
  /** dlc: compiling the .dlm in-process to the first loss (ms), cold, in a process of its own. */
  sourceFirstStepMs?: number;
  sourceError?: string;
  /** dlc-webgpu: createModel with startOnCpu: false to the first loss (ms), cold, in a process of its own. */
  gpuFirstStepMs?: number;
  gpuFirstError?: string;
}

export type DeviceKind = "cpu" | "webgpu";

/** jax-js is the yardstick: jax-js-wasm for the CPU/wasm engines, jax-js-webgpu for WebGPU ones. */
export const baselineOf = (engine: string) => (engine.endsWith("webgpu") ? "jax-js-webgpu" : "jax-js-wasm");

interface Measure {
  label: string;
  workload: WorkloadName;
  value: (r: Result) => number | undefined;
  /** Whether an error of the run hides this value (not for the dlc-only "from .dlm" rows). */
  error: (r: Result) => string | undefined;
  bytes?: boolean;
}

const run = (r: Result) => r.error;
const MEASURES: Measure[] = [
  { label: "MLP train step ms (b=64)", workload: "mlp", value: (r) => r.stepMedianMs, error: run },
  { label: "LeNet train step ms (b=64)", workload: "lenet", value: (r) => r.stepMedianMs, error: run },
  { label: "MLP inference ms (b=256)", workload: "mlp", value: (r) => r.predictMedianMs, error: run },
  { label: "MLP first step ms", workload: "mlp", value: (r) => r.firstStepMs, error: run },
  { label: "LeNet first step ms", workload: "lenet", value: (r) => r.firstStepMs, error: run },
  { label: "MLP first step, pipelines first ms", workload: "mlp", value: (r) => r.gpuFirstStepMs, error: (r) => r.gpuFirstError },
  { label: "LeNet first step, pipelines first ms", workload: "lenet", value: (r) => r.gpuFirstStepMs, error: (r) => r.gpuFirstError },
  { label: "MLP first step from .dlm ms", workload: "mlp", value: (r) => r.sourceFirstStepMs, error: (r) => r.sourceError },
  { label: "LeNet first step from .dlm ms", workload: "lenet", value: (r) => r.sourceFirstStepMs, error: (r) => r.sourceError },
  { label: "MLP peak memory", workload: "mlp", value: (r) => r.peakBytes, error: run, bytes: true },
  { label: "LeNet peak memory", workload: "lenet", value: (r) => r.peakBytes, error: run, bytes: true },
];

export function fmtMs(v: number): string {
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

export function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

/** A failure, short enough for a table cell (the full message is printed under the table). */
export function shortReason(err: string): string {
  const kernel = /Kernel '(\w+)' not registered/.exec(err);
  if (kernel) return `no ${kernel[1]}`;
  return err.length > 32 ? err.slice(0, 31) + "…" : err;
}

function grid(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ");
  return [line(rows[0]), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.slice(1).map(line)].join("\n");
}

const finite = (v: number | undefined): v is number => v !== undefined && Number.isFinite(v);

export class Report {
  constructor(
    readonly results: Result[],
    readonly engines: string[],
  ) {}

  get(engine: string, workload: WorkloadName): Result | undefined {
    return this.results.find((r) => r.engine === engine && r.workload === workload);
  }

  private value(m: Measure, engine: string): number | undefined {
    const r = this.get(engine, m.workload);
    return r && !m.error(r) ? m.value(r) : undefined;
  }

  /** jax-js's value over the engine's: > 1 means the engine is faster (or smaller). */
  factor(m: Measure, engine: string): number | undefined {
    const a = this.value(m, engine);
    const b = this.value(m, baselineOf(engine));
    return finite(a) && finite(b) && a > 0 ? b / a : undefined;
  }

  private cell(m: Measure, engine: string, text: (v: number) => string): string {
    const r = this.get(engine, m.workload);
    if (!r) return "-";
    const err = m.error(r);
    if (err) return `n/a (${shortReason(err)})`;
    const v = m.value(r);
    return finite(v) ? text(v) : "-";
  }

  table(): string {
    const rows = [["", ...this.engines]];
    for (const m of MEASURES) rows.push([m.label, ...this.engines.map((e) => this.cell(m, e, m.bytes ? fmtBytes : fmtMs))]);
    return grid(rows);
  }

  ratios(): string {
    const rows = [["vs jax-js (same device kind)", ...this.engines]];
    for (const m of MEASURES) {
      if (m.label.includes("from .dlm")) continue;
      rows.push([
        m.label.replace(/ ms.*/, ""),
        ...this.engines.map((e) => {
          const f = this.factor(m, e);
          return f === undefined ? "-" : `${f.toFixed(2)}x`;
        }),
      ]);
    }
    return grid(rows);
  }

  /** The targets: measured factor (or value) and whether it holds. */
  targets(dispatches: Partial<Record<WorkloadName, number>>): { target: string; measured: string; holds: boolean | null }[] {
    const m = (label: string) => MEASURES.find((x) => x.label.startsWith(label))!;
    const speedup = (label: string, engine: string, min: number) => {
      const f = this.factor(m(label), engine);
      return {
        target: `${label.replace(/ ms.*/, "")}: ${engine} >= ${min}x faster than ${baselineOf(engine)}`,
        measured: f === undefined ? "n/a" : `${f.toFixed(2)}x`,
        holds: f === undefined ? null : f >= min,
      };
    };
    const firstStep = (w: WorkloadName, how = "") => {
      const name = w === "mlp" ? "MLP" : "LeNet";
      const v = this.value(m(`${name} first step${how} ms`), "dlc-webgpu");
      return {
        target: `${name} first step${how}, createModel -> first loss: dlc-webgpu < 500 ms`,
        measured: finite(v) ? `${fmtMs(v)} ms` : "n/a",
        holds: finite(v) ? v < 500 : null,
      };
    };
    return [
      speedup("MLP train step", "dlc-webgpu", 1.5),
      speedup("MLP train step", "dlc-cpu", 1.5),
      speedup("LeNet train step", "dlc-cpu", 5),
      speedup("LeNet train step", "dlc-webgpu", 3),
      speedup("MLP inference", "dlc-cpu", 1.5),
      speedup("MLP inference", "dlc-webgpu", 1.5),
      firstStep("mlp"),
      firstStep("lenet"),
      firstStep("mlp", ", pipelines first"),
      firstStep("lenet", ", pipelines first"),
      {
        target: "dispatches per MLP training step <= 12",
        measured: dispatches.mlp === undefined ? "n/a" : String(dispatches.mlp),
        holds: dispatches.mlp === undefined ? null : dispatches.mlp <= 12,
      },
    ];
  }

  /** Losses at a few steps on the fixed batch, per engine. */
  curves(workload: WorkloadName, steps = 20): string {
    const at = [1, 2, 5, 10, 15, 20].filter((s) => s <= steps);
    const rows = [["step", ...at.map(String)]];
    for (const e of this.engines) {
      const r = this.get(e, workload);
      if (!r || r.error) continue;
      rows.push([e, ...at.map((s) => (s <= r.losses.length ? r.losses[s - 1].toFixed(4) : "-"))]);
    }
    return grid(rows);
  }

  /** One "does it train" line per run. */
  sanity(): string[] {
    return this.results.map((r) => {
      const name = `${r.engine} ${r.workload}`;
      if (r.error) return `${name}: n/a (${r.error})`;
      const n = Math.min(20, r.losses.length);
      return (
        `${name}: loss ${r.losses[0].toFixed(4)} -> ${r.losses[n - 1].toFixed(4)} over ${n} steps ` +
        (r.trains ? "(falls: OK)" : "(does NOT fall: FAIL)") +
        (Number.isFinite(r.probRowSum) ? `, prob row sum ${r.probRowSum.toFixed(4)}` : "")
      );
    });
  }

  /** Full messages of the failures the table abbreviates. */
  failures(): string[] {
    const out: string[] = [];
    for (const r of this.results) {
      if (r.error) out.push(`${r.engine} ${r.workload}: ${r.error}`);
      if (r.sourceError) out.push(`${r.engine} ${r.workload} from .dlm: ${r.sourceError}`);
      if (r.gpuFirstError) out.push(`${r.engine} ${r.workload} pipelines first: ${r.gpuFirstError}`);
    }
    return out;
  }
}

export const MEMORY_NOTES: Record<MemoryKind, string> = {
  gpu: "peak bytes of live GPUBuffers (createBuffer .. destroy / device destroy / GC), all devices of the engine's process",
  tf: "tf.profile(one training step).peakBytes: the most tensor bytes tfjs had alive at once",
  wasm: "growth of the wasm memories' byteLength (never shrinks: the wasm allocator's high-water mark)",
  heap: "growth of V8 heap + ArrayBuffers (+ wasm memories), sampled after every call (includes uncollected garbage)",
};
