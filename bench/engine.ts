/**
 * Common interface and timing/reporting helpers for the MNIST MLP training-step
 * benchmark. Every engine (dlc and its peers: TensorFlow.js, jax-js) implements
 * `Engine`; `timeEngine` measures it, `printTable` compares named results
 * against a chosen baseline.
 *
 * The model: MLP 784-256-128-10, ReLU, softmax cross-entropy (mean over the
 * batch), Adam (lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected),
 * training batch 64, inference batch 256.
 */

export interface Engine {
  name: string;
  /**
   * One training step on a batch: forward + backward + Adam update of all six
   * parameter tensors. `x` is [batch, 784] row-major, `y` holds class indices
   * 0..9. Resolves with the loss once it has been read back to the host, so the
   * step's work is complete when the promise settles.
   */
  step(x: Float32Array, y: Int32Array): Promise<number>;
  /** Forward pass to class probabilities: returns [batch, 10] row-major. */
  predict(x: Float32Array, batch: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Sizes and hyper-parameters shared by every engine. */
export const MLP = {
  sizes: [784, 256, 128, 10] as const,
  inputs: 784,
  classes: 10,
  batch: 64,
  predictBatch: 256,
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
} as const;

/** Initial parameters, row-major: w1 [784,256], b1 [256], w2 [256,128], ... */
export interface MlpParams {
  w1: Float32Array;
  b1: Float32Array;
  w2: Float32Array;
  b2: Float32Array;
  w3: Float32Array;
  b3: Float32Array;
}

/** Options every peer factory accepts. */
export interface EngineOptions {
  /** Initial weights (defaults to `initParams(0)`), so all engines start equal. */
  params?: MlpParams;
}

import { rng } from '../runtime/random.ts';
export { rng };

/** He-uniform weights, zero biases, deterministic in `seed`. */
export function initParams(seed = 0): MlpParams {
  const r = rng(seed + 1);
  const [d0, d1, d2, d3] = MLP.sizes;
  const w = (fanIn: number, fanOut: number) => {
    const lim = Math.sqrt(6 / fanIn);
    const a = new Float32Array(fanIn * fanOut);
    for (let i = 0; i < a.length; i++) a[i] = (2 * r() - 1) * lim;
    return a;
  };
  return {
    w1: w(d0, d1),
    b1: new Float32Array(d1),
    w2: w(d1, d2),
    b2: new Float32Array(d2),
    w3: w(d2, d3),
    b3: new Float32Array(d3),
  };
}

/** A random MNIST-shaped batch: pixels in [0,1), labels 0..9. */
export function randomBatch(batch: number, seed = 1): { x: Float32Array; y: Int32Array } {
  const r = rng(seed);
  const x = new Float32Array(batch * MLP.inputs);
  for (let i = 0; i < x.length; i++) x[i] = r();
  const y = new Int32Array(batch);
  for (let i = 0; i < batch; i++) y[i] = Math.floor(r() * MLP.classes);
  return { x, y };
}

export interface TimeOptions {
  /** Untimed steps after the first one (the first step is always untimed). */
  warmup: number;
  /** Timed training steps. */
  iters: number;
  /** Timed predict calls (default: `iters`); 0 skips inference timing. */
  predictIters?: number;
  /** Untimed predict calls before timing (default 2). */
  predictWarmup?: number;
  /** Training batch (default 64) and inference batch (default 256). */
  batch?: number;
  predictBatch?: number;
  /** Minimum number of training steps recorded in `losses` (default 20). */
  minSteps?: number;
  /** Stop timing once this many ms have been spent in timed steps (optional). */
  budgetMs?: number;
  /** When timing an existing engine, `performance.now()` taken before it was created. */
  createdAt?: number;
  log?: (msg: string) => void;
}

export interface TimingResult {
  name: string;
  /** Time to create the engine (ms); NaN when an existing engine was passed without `createdAt`. */
  initMs: number;
  /** From engine creation (or the call, if unknown) to the first loss on the host (ms). */
  firstStepMs: number;
  /** Median / min / max ms per training step over the timed iterations. */
  stepMedianMs: number;
  stepMinMs: number;
  stepMaxMs: number;
  stepIters: number;
  /** Median ms per inference call at `predictBatch` (NaN when skipped). */
  predictMedianMs: number;
  predictIters: number;
  batch: number;
  predictBatch: number;
  /** Losses of every training step run, in order, on the same fixed batch. */
  losses: number[];
  /** Whether the loss went down over the first `minSteps` steps. */
  trains: boolean;
  /** Sum of the first predicted row (should be ~1). */
  probRowSum: number;
  error?: string;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * Time an engine. Pass a factory to include creation in `firstStepMs`
 * (engine creation -> first loss on the host), or an engine plus
 * `opts.createdAt`. Training uses one fixed random batch so the recorded
 * losses double as a "does it train" check. The engine is disposed at the end
 * when it was created here.
 */
export async function timeEngine(
  engineOrFactory: Engine | (() => Promise<Engine>),
  opts: TimeOptions,
): Promise<TimingResult> {
  const log = opts.log ?? (() => {});
  const batch = opts.batch ?? MLP.batch;
  const predictBatch = opts.predictBatch ?? MLP.predictBatch;
  const minSteps = opts.minSteps ?? 20;
  const { x, y } = randomBatch(batch, 1);
  const xp = randomBatch(predictBatch, 2).x;

  let t0 = opts.createdAt ?? performance.now();
  let initMs = NaN;
  let engine: Engine;
  const owned = typeof engineOrFactory === "function";
  if (typeof engineOrFactory === "function") {
    t0 = performance.now();
    engine = await engineOrFactory();
    initMs = performance.now() - t0;
  } else {
    engine = engineOrFactory;
  }

  try {
    const losses: number[] = [];
    losses.push(await engine.step(x, y));
    const firstStepMs = performance.now() - t0;
    log(`${engine.name}: first step ${firstStepMs.toFixed(0)} ms (loss ${losses[0].toFixed(4)})`);

    for (let i = 0; i < opts.warmup; i++) losses.push(await engine.step(x, y));

    const times: number[] = [];
    let spent = 0;
    for (let i = 0; i < opts.iters; i++) {
      const s = performance.now();
      losses.push(await engine.step(x, y));
      const dt = performance.now() - s;
      times.push(dt);
      spent += dt;
      if (opts.budgetMs !== undefined && spent > opts.budgetMs && times.length >= 3) break;
    }
    while (losses.length < minSteps) losses.push(await engine.step(x, y));

    const n = Math.min(minSteps, losses.length);
    const trains = Number.isFinite(losses[n - 1]) && losses[n - 1] < losses[0];

    let predictMedianMs = NaN;
    let probRowSum = NaN;
    const pIters = opts.predictIters ?? opts.iters;
    const ptimes: number[] = [];
    if (pIters > 0) {
      for (let i = 0; i < (opts.predictWarmup ?? 2); i++) await engine.predict(xp, predictBatch);
      let pspent = 0;
      for (let i = 0; i < pIters; i++) {
        const s = performance.now();
        const p = await engine.predict(xp, predictBatch);
        const dt = performance.now() - s;
        ptimes.push(dt);
        pspent += dt;
        if (i === 0) {
          if (p.length !== predictBatch * MLP.classes) {
            throw new Error(`predict returned ${p.length} values, expected ${predictBatch * MLP.classes}`);
          }
          probRowSum = 0;
          for (let c = 0; c < MLP.classes; c++) probRowSum += p[c];
        }
        if (opts.budgetMs !== undefined && pspent > opts.budgetMs && ptimes.length >= 3) break;
      }
      predictMedianMs = median(ptimes);
    }

    return {
      name: engine.name,
      initMs,
      firstStepMs,
      stepMedianMs: median(times),
      stepMinMs: Math.min(...times),
      stepMaxMs: Math.max(...times),
      stepIters: times.length,
      predictMedianMs,
      predictIters: ptimes.length,
      batch,
      predictBatch,
      losses,
      trains,
      probRowSum,
    };
  } finally {
    if (owned) await engine.dispose();
  }
}

/** A result row for an engine that could not be created or run. */
export function failedResult(name: string, err: unknown): TimingResult {
  const msg = err instanceof Error ? err.message : String(err);
  return {
    name,
    initMs: NaN,
    firstStepMs: NaN,
    stepMedianMs: NaN,
    stepMinMs: NaN,
    stepMaxMs: NaN,
    stepIters: 0,
    predictMedianMs: NaN,
    predictIters: 0,
    batch: MLP.batch,
    predictBatch: MLP.predictBatch,
    losses: [],
    trains: false,
    probRowSum: NaN,
    error: msg.split("\n")[0],
  };
}

/** One-line "does it train" summary for a result. */
export function sanityLine(r: TimingResult, steps = 20): string {
  if (r.error) return `${r.name}: FAILED (${r.error})`;
  const n = Math.min(steps, r.losses.length);
  const a = r.losses[0];
  const b = r.losses[n - 1];
  return (
    `${r.name}: loss ${a.toFixed(4)} -> ${b.toFixed(4)} over ${n} steps on a fixed batch ` +
    `${r.trains ? "(decreasing: OK)" : "(NOT decreasing: FAIL)"}` +
    (Number.isFinite(r.probRowSum) ? `, prob row sum ${r.probRowSum.toFixed(4)}` : "")
  );
}

function fmtMs(v: number): string {
  if (!Number.isFinite(v)) return "-";
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function fmtRatio(v: number, base: number): string {
  if (!Number.isFinite(v) || !Number.isFinite(base) || base <= 0) return "-";
  return `${(v / base).toFixed(2)}x`;
}

/**
 * The baseline row of each result: one name for every row, or a function of
 * the row's name (e.g. dlc-cpu for CPU/wasm engines, dlc-webgpu for WebGPU
 * ones).
 */
export type Baseline = string | ((name: string) => string);

const baselineOf = (baseline: Baseline, name: string) =>
  typeof baseline === "string" ? baseline : baseline(name);

/**
 * Print a table of results with times and ratios to each row's baseline row
 * (ratio = engine time / baseline time, so > 1 means slower than the
 * baseline). When a baseline is absent or failed, its ratios print as "-".
 */
export function formatTable(results: TimingResult[], baseline: Baseline,
  label = typeof baseline === "string" ? baseline : "baseline",
): string {
  const ok = (name: string) => results.find((r) => r.name === name && !r.error);
  const bases = new Set(results.map((r) => baselineOf(baseline, r.name)));
  const header = [
    "engine",
    "step ms (median)",
    "vs " + label,
    "min..max",
    "first step ms",
    `predict ms (b=${results[0]?.predictBatch ?? MLP.predictBatch})`,
    "vs " + label,
    "trains",
  ];
  const rows = results.map((r) => {
    if (r.error) return [r.name, "FAILED: " + r.error, "", "", "", "", "", ""];
    const base = ok(baselineOf(baseline, r.name));
    return [
      r.name + (bases.has(r.name) ? " *" : ""),
      fmtMs(r.stepMedianMs) + ` (n=${r.stepIters})`,
      fmtRatio(r.stepMedianMs, base?.stepMedianMs ?? NaN),
      `${fmtMs(r.stepMinMs)}..${fmtMs(r.stepMaxMs)}`,
      fmtMs(r.firstStepMs),
      fmtMs(r.predictMedianMs) + ` (n=${r.predictIters})`,
      fmtRatio(r.predictMedianMs, base?.predictMedianMs ?? NaN),
      r.trains ? "yes" : "NO",
    ];
  });
  const widths = header.map((h, i) =>
    Math.max(h.length, ...rows.map((row) => (row[i].startsWith("FAILED") ? 0 : row[i].length))),
  );
  const line = (cells: string[]) =>
    cells[1]?.startsWith("FAILED")
      ? `${cells[0].padEnd(widths[0])} | ${cells[1]}`
      : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join(" | ");
  const out = [line(header), widths.map((w) => "-".repeat(w)).join("-|-"), ...rows.map(line)];
  const missing = [...bases].filter((b) => !ok(b));
  if (missing.length) out.push(`(baseline ${missing.join(", ")} not present or failed: no ratios for its rows)`);
  out.push(`(* baseline; ratio = time / baseline time, >1 = slower than the baseline)`);
  return out.join("\n");
}

/**
 * The loss curves side by side (steps 1, 2, 5, 10, 15, 20 on the fixed batch)
 * and each engine's largest deviation from its baseline's curve.
 */
export function formatCurves(results: TimingResult[], baseline: Baseline, steps = 20): string {
  const at = [1, 2, 5, 10, 15, 20].filter((s) => s <= steps);
  const ran = results.filter((r) => !r.error);
  const w = Math.max(6, ...ran.map((r) => r.name.length));
  const out = [`${"step".padEnd(w)} ${at.map((s) => String(s).padStart(7)).join("")}   max|d| vs baseline`];
  for (const r of ran) {
    const base = ran.find((b) => b.name === baselineOf(baseline, r.name));
    const n = Math.min(steps, r.losses.length, base?.losses.length ?? 0);
    let dev = 0;
    for (let i = 0; i < n; i++) dev = Math.max(dev, Math.abs(r.losses[i] - base!.losses[i]));
    const cells = at.map((s) => (s <= r.losses.length ? r.losses[s - 1].toFixed(4) : "-").padStart(7)).join("");
    const d = !base ? "-" : base === r ? "(baseline)" : `${dev.toExponential(1)} vs ${base.name}`;
    out.push(`${r.name.padEnd(w)} ${cells}   ${d}`);
  }
  return out.join("\n");
}

export function printTable(results: TimingResult[], baseline: Baseline): void {
  console.log(formatTable(results, baseline));
}
