/**
 * What every benchmark engine (dlc and its peers: TensorFlow.js, jax-js) implements, the two
 * workloads, the weights and batches they all share, and `timeEngine`, which measures one engine
 * on one workload.
 *
 * - mlp: MLP 784-256-128-10 (examples/mnist_mlp.dlm), ReLU, softmax cross-entropy (mean over the
 *   batch), Adam; training batch 64, inference batch 256.
 * - lenet: LeNet-5 (examples/lenet5.dlm): conv 5x5x6 "same" + ReLU + 2x2 max pool, conv 5x5x16
 *   "valid" + ReLU + 2x2 max pool, flatten (h, w, c order) -> dropout 0.25 -> dense 120 + ReLU ->
 *   dense 84 + ReLU -> dense 10; softmax cross-entropy (mean) + 1e-4 * sum(w^2) over every weight
 *   (not the biases); Adam; training batch 64.
 *
 * Adam everywhere: lr 1e-3, beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected.
 */
import { heapBytes, wasmBytes } from "./memory.ts";
import { gpuBytes, resetGpuPeak } from "./peers/node_webgpu.ts";
import { rng } from "../runtime/random.ts";

export interface Engine {
  name: string;
  /**
   * One training step on a batch: forward + backward + Adam update of every parameter. `x` is
   * the batch's 784 pixels per example, row-major (for LeNet: [batch, 28, 28, 1]); `y` holds
   * class indices 0..9. Resolves with the loss (L2 penalty included) once it has been read back
   * to the host and the updates are done.
   */
  step(x: Float32Array, y: Int32Array): Promise<number>;
  /** Forward pass to class probabilities, [batch, 10] row-major (workloads with inference). */
  predict?(x: Float32Array, batch: number): Promise<Float32Array>;
  /** Untimed, after the first step: until the engine runs as its timed steps will (dlc-webgpu:
   *  until a model that started on the CPU runs on the GPU). */
  settle?(): Promise<void>;
  /** Peak bytes by the engine's own bookkeeping over one more training step (tfjs: tf.profile). */
  peakBytes?(x: Float32Array, y: Int32Array): Promise<number>;
  dispose(): Promise<void>;
}

export const ADAM = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 } as const;

export const MLP = { sizes: [784, 256, 128, 10] as const, batch: 64, predictBatch: 256 } as const;

export const LENET = { batch: 64, dropout: 0.25, l2: 1e-4 } as const;

export const CLASSES = 10;
/** Pixels per example, for both workloads. */
export const PIXELS = 784;

export type WorkloadName = "mlp" | "lenet";

export interface Workload {
  name: WorkloadName;
  title: string;
  /** The .dlm file of the same model, relative to the repository root. */
  dlm: string;
  /** One example's shape (784 pixels either way). */
  input: number[];
  batch: number;
  /** Inference batch; 0: no inference timing. */
  predictBatch: number;
  /** The parameters in the order of the .dlm's declarations, in dlc's layout (dense [in, out],
   *  conv [kh, kw, cin, cout], LeNet's flatten in (h, w, c) order). */
  params: { name: string; shape: number[] }[];
}

/** Dense layer k's weight fkw [in, out] and bias fkb (both workloads have f1..f3). */
const dense = (k: number, i: number, o: number) => [
  { name: `f${k}w`, shape: [i, o] },
  { name: `f${k}b`, shape: [o] },
];

export const WORKLOADS: Record<WorkloadName, Workload> = {
  mlp: {
    name: "mlp",
    title: "MNIST MLP 784-256-128-10",
    dlm: "examples/mnist_mlp.dlm",
    input: [784],
    batch: MLP.batch,
    predictBatch: MLP.predictBatch,
    params: [...dense(1, 784, 256), ...dense(2, 256, 128), ...dense(3, 128, 10)],
  },
  lenet: {
    name: "lenet",
    title: "LeNet-5 (conv 6, conv 16, dense 120-84-10, dropout, L2)",
    dlm: "examples/lenet5.dlm",
    input: [28, 28, 1],
    batch: LENET.batch,
    predictBatch: 0,
    params: [
      { name: "c1w", shape: [5, 5, 1, 6] },
      { name: "c1b", shape: [6] },
      { name: "c2w", shape: [5, 5, 6, 16] },
      { name: "c2b", shape: [16] },
      ...dense(1, 400, 120),
      ...dense(2, 120, 84),
      ...dense(3, 84, 10),
    ],
  },
};

/** Parameters by name, in the workload's order. */
export type Params = Record<string, { shape: number[]; data: Float32Array }>;

export { rng };

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Whether a parameter is a weight (L2 applies): dlc's rule, rank >= 2. */
export const isWeight = (shape: readonly number[]) => shape.length >= 2;

/** He-uniform weights (fan-in: all but the last axis), zero biases, deterministic in `seed`. */
export function initParams(w: Workload, seed = 0): Params {
  const r = rng(seed + 1);
  const out: Params = {};
  for (const { name, shape } of w.params) {
    const data = new Float32Array(numel(shape));
    if (isWeight(shape)) {
      const lim = Math.sqrt(6 / (data.length / shape[shape.length - 1]));
      for (let i = 0; i < data.length; i++) data[i] = (2 * r() - 1) * lim;
    }
    out[name] = { shape, data };
  }
  return out;
}

/** A random MNIST-shaped batch: pixels in [0,1), labels 0..9. */
export function randomBatch(batch: number, seed = 1): { x: Float32Array; y: Int32Array } {
  const r = rng(seed);
  const x = new Float32Array(batch * PIXELS);
  for (let i = 0; i < x.length; i++) x[i] = r();
  const y = new Int32Array(batch);
  for (let i = 0; i < batch; i++) y[i] = Math.floor(r() * CLASSES);
  return { x, y };
}

/**
 * How an engine's peak memory is measured: the GPU buffers of its device(s) ("gpu"), tfjs's
 * tensor bookkeeping over a profiled step ("tf"), its wasm memories ("wasm"), or the process's
 * heap + ArrayBuffers + wasm memories sampled after every call ("heap").
 */
export type MemoryKind = "gpu" | "tf" | "wasm" | "heap";

export interface TimeOptions {
  /** Untimed steps after the first one (the first step is always untimed). */
  warmup: number;
  /** Timed training steps (and predict calls). */
  iters: number;
  /** Training steps to record in `losses` for the sanity check, budget permitting (default 20). */
  minSteps?: number;
  /** Stop a loop (warmup, timing, sanity steps, inference) once this many ms have been spent in
   *  it: after 1 warmup step, 3 timed steps or calls, 6 steps in all at least. */
  budgetMs?: number;
  memory: MemoryKind;
  log?: (msg: string) => void;
}

export interface TimingResult {
  engine: string;
  workload: WorkloadName;
  /** Time to create the engine (ms). */
  initMs: number;
  /** From engine creation to the first loss on the host (ms). */
  firstStepMs: number;
  /** Median / min / max ms per training step over the timed iterations. */
  stepMedianMs: number;
  stepMinMs: number;
  stepMaxMs: number;
  stepIters: number;
  /** Median ms per inference call (NaN when the workload has none). */
  predictMedianMs: number;
  predictIters: number;
  /** Losses of every training step run, in order, on the same fixed batch. */
  losses: number[];
  /** Whether the loss went down over the first `minSteps` steps (see `decreases`). */
  trains: boolean;
  /** Sum of the first predicted row (should be ~1). */
  probRowSum: number;
  /** Peak bytes the engine held (see `memory`). */
  peakBytes: number;
  memory: MemoryKind;
  error?: string;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Dropout makes single losses noisy: compare the means of the first and last three. */
export function decreases(losses: number[], steps = 20): boolean {
  const l = losses.slice(0, steps);
  if (l.length < 6 || !l.every(Number.isFinite)) return false;
  const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
  return mean(l.slice(-3)) < mean(l.slice(0, 3));
}

/** The memory meter of one kind: `sample()` after every call, `peak()` at the end. */
function meter(kind: MemoryKind) {
  const now = () => (kind === "wasm" ? wasmBytes() : kind === "heap" ? heapBytes() + wasmBytes() : 0);
  if (kind === "gpu") resetGpuPeak();
  // Started with --expose-gc (bench/main.ts does), the heap baseline holds no garbage.
  if (kind === "heap") (globalThis as { gc?: () => void }).gc?.();
  const base = kind === "gpu" ? gpuBytes().live : now();
  let top = base;
  return {
    sample: () => void (top = Math.max(top, now())),
    peak: () => (kind === "gpu" ? gpuBytes().peak : top) - base,
  };
}

/**
 * Time one engine on one workload: creation to first loss, training steps on one fixed random
 * batch (so the losses double as a "does it train" check), inference calls when the workload has
 * them, and peak memory. The engine is disposed at the end.
 */
export async function timeEngine(make: () => Promise<Engine>, w: Workload, opts: TimeOptions): Promise<TimingResult> {
  const log = opts.log ?? (() => {});
  const minSteps = opts.minSteps ?? 20;
  const { x, y } = randomBatch(w.batch, 1);
  const xp = w.predictBatch ? randomBatch(w.predictBatch, 2).x : undefined;
  const mem = meter(opts.memory);

  const t0 = performance.now();
  const engine = await make();
  const initMs = performance.now() - t0;
  try {
    const losses = [await engine.step(x, y)];
    const firstStepMs = performance.now() - t0;
    mem.sample();
    log(`${engine.name}: first step ${firstStepMs.toFixed(0)} ms, of which creation ${initMs.toFixed(0)} ms (loss ${losses[0].toFixed(4)})`);

    // Runs f up to n times, or until the budget is spent and it has run `least` times.
    const timed = async (n: number, f: () => Promise<unknown>, least = 3) => {
      const times: number[] = [];
      let spent = 0;
      for (let i = 0; i < n; i++) {
        const s = performance.now();
        await f();
        const dt = performance.now() - s;
        mem.sample();
        times.push(dt);
        spent += dt;
        if (opts.budgetMs !== undefined && spent > opts.budgetMs && times.length >= least) break;
      }
      return times;
    };
    const train = async () => losses.push(await engine.step(x, y));
    await engine.settle?.();
    await timed(opts.warmup, train, 1);
    const times = await timed(opts.iters, train);
    // More steps for the sanity check, as the budget allows (6 at least: it compares 3 and 3).
    await timed(minSteps - losses.length, train, 6 - losses.length);

    let probRowSum = NaN;
    let ptimes: number[] = [];
    if (xp && engine.predict) {
      const p = await engine.predict(xp, w.predictBatch);
      if (p.length !== w.predictBatch * CLASSES) throw new Error(`predict returned ${p.length} values, expected ${w.predictBatch * CLASSES}`);
      probRowSum = p.slice(0, CLASSES).reduce((a, b) => a + b, 0);
      await engine.predict(xp, w.predictBatch);
      mem.sample();
      ptimes = await timed(opts.iters, async () => void (await engine.predict!(xp, w.predictBatch)));
    }

    let peakBytes = mem.peak();
    if (opts.memory === "tf") {
      if (!engine.peakBytes) throw new Error(`${engine.name} has no peakBytes() for memory kind "tf"`);
      peakBytes = await engine.peakBytes(x, y);
    }
    return {
      engine: engine.name,
      workload: w.name,
      initMs,
      firstStepMs,
      stepMedianMs: median(times),
      stepMinMs: Math.min(...times),
      stepMaxMs: Math.max(...times),
      stepIters: times.length,
      predictMedianMs: median(ptimes),
      predictIters: ptimes.length,
      losses,
      trains: decreases(losses, minSteps),
      probRowSum,
      peakBytes,
      memory: opts.memory,
    };
  } finally {
    await engine.dispose();
  }
}

/** A result for an engine that could not be created or run. */
export function failedResult(engine: string, workload: WorkloadName, memory: MemoryKind, err: unknown): TimingResult {
  const msg = err instanceof Error ? err.message : String(err);
  return {
    engine,
    workload,
    initMs: NaN,
    firstStepMs: NaN,
    stepMedianMs: NaN,
    stepMinMs: NaN,
    stepMaxMs: NaN,
    stepIters: 0,
    predictMedianMs: NaN,
    predictIters: 0,
    losses: [],
    trains: false,
    probRowSum: NaN,
    peakBytes: NaN,
    memory,
    error: msg.split("\n")[0],
  };
}
