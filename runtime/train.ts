// The training loop: epochs of shuffled batches, per-epoch loss and metrics, validation, early
// stopping, reduce-on-plateau, evaluation.
//
// Resuming is exact: an epoch's data order is a pure function of (seed, epoch), dropout is keyed
// by (seed, step), and the model's step, epoch and hyperparameters travel in its checkpoint, so a
// run that stops after epoch k and resumes from its checkpoint computes the same numbers as one
// that never stopped. The little state of the loop itself (early stopping, plateau counters, the
// best parameters) is `FitState`, handed to `onEpoch` for the checkpoint and back via `resume`.

import type { Dataset } from './dataset.ts';
import { batches, subset } from './dataset.ts';
import type { Model } from './model.ts';
import { lbfgsEpoch } from './lbfgs.ts';
import { permutation, rng } from './random.ts';

export interface EpochStats {
  epoch: number;
  /** Mean loss and metrics over the epoch's batches, weighted by batch size. */
  train: Record<string, number>;
  /** Loss and metrics on the validation set after the epoch (inference graph), if there is one. */
  val?: Record<string, number>;
  /** The learning rate of the epoch's first step (the schedule's value, when there is one). */
  lr?: number;
  ms: number;
}

/** A watched number: `val.loss`, `val.accuracy`, `train.loss`, ... */
export interface Watch {
  split: 'train' | 'val';
  name: string;
  /** Loss-like values are minimized, everything else (accuracy, ...) maximized. */
  minimize: boolean;
}

/** The loop's own state, saved in checkpoints so a resumed run stops and decays as the first would. */
export interface FitState {
  early?: { best: number; bestEpoch: number; wait: number };
  plateau?: { best: number; wait: number };
}

export interface FitOptions {
  /** The last epoch to train (counting from 1, across resumes). */
  epochs: number;
  batch: number;
  shuffle: boolean;
  /** Seeds the order of examples: epoch e's order is a function of (seed, e) alone. */
  seed: number;
  /** Held-out examples evaluated after every epoch. */
  val?: Dataset;
  /** Stop when the watched value has not improved for `patience` epochs, then restore the best epoch. */
  earlyStop?: { patience: number; on: Watch };
  /** Multiply `model.hypers.lr` by `factor` (not below `minLr`) when the watched value has not
   *  improved for `patience` epochs. */
  plateau?: { factor: number; patience: number; minLr: number; on: Watch };
  /** Continue a run: the epochs done so far, the loop's state, and the best epoch's checkpoint.
   *  Without it the run continues from the model's own epoch count. */
  resume?: { history: EpochStats[]; state: FitState; best?: Uint8Array };
  /** Cancels the run: the step in flight finishes (the model keeps every update made so far and
   *  stays usable), then fit rejects with the signal's reason. */
  signal?: AbortSignal;
  onBatch?(done: number, total: number, stats: Record<string, number>): void;
  /** After each epoch, with everything a checkpoint needs; awaited. */
  onEpoch?(stats: EpochStats, snapshot: Snapshot): void | Promise<void>;
  /** The watched value plateaued and the learning rate changed. */
  onReduceLr?(info: { epoch: number; from: number; to: number; on: Watch }): void;
}

export interface Snapshot {
  history: EpochStats[];
  state: FitState;
  /** The best epoch's `model.save()` bytes when early stopping watches and it is not this epoch. */
  best?: Uint8Array;
}

export interface FitResult {
  history: EpochStats[];
  /** Set when early stopping ended the run before `epochs`. */
  stopped?: { epoch: number; reason: string };
  /** Set when the best epoch's parameters were restored at the end (early stopping). */
  restored?: { epoch: number; value: number };
}

/** Weighted running means of named numbers. */
class Means {
  private sums: Record<string, number> = {};
  private n = 0;
  add(values: Record<string, number>, weight: number): void {
    for (const [k, v] of Object.entries(values)) this.sums[k] = (this.sums[k] ?? 0) + v * weight;
    this.n += weight;
  }
  get(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.sums).map(([k, s]) => [k, s / this.n]));
  }
}

const size = (b: Record<string, { shape: number[] }>) => Object.values(b)[0].shape[0];

/** murmur3's finalizer: a well-mixed 32-bit hash. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A seed derived from (seed, a, b), independent streams for different (a, b). */
export function deriveSeed(seed: number, a: number, b = 0): number {
  return fmix32(fmix32(fmix32(seed >>> 0) ^ Math.imul(a + 1, 0x9e3779b1)) ^ Math.imul(b + 1, 0x85ebca77));
}

const ORDER = 1;
const SPLIT = 2;

/** The order of the examples in epoch `epoch` (from 1): a pure function of (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number, shuffle = true): Int32Array {
  return shuffle ? permutation(n, rng(deriveSeed(seed, ORDER, epoch))) : Int32Array.from({ length: n }, (_, i) => i);
}

/** Holds out round(fraction · size) examples, chosen by a seeded shuffle of the whole set. */
export function splitValidation(data: Dataset, fraction: number, seed: number): { train: Dataset; val: Dataset } {
  if (!(fraction > 0 && fraction < 1)) throw new RangeError(`the validation fraction must be between 0 and 1, not ${fraction}`);
  const k = Math.round(fraction * data.size);
  if (k < 1 || k >= data.size) throw new RangeError(`a validation fraction of ${fraction} of ${data.size} examples leaves ${k < 1 ? 'no validation' : 'no training'} examples`);
  const order = permutation(data.size, rng(deriveSeed(seed, SPLIT)));
  return { val: subset(data, order.subarray(0, k)), train: subset(data, order.subarray(k)) };
}

const LOSS_LIKE = new Set(['loss', 'error', 'err', 'mse', 'mae', 'rmse', 'mape', 'nll', 'perplexity', 'ppl', 'distance', 'dist']);

/** Minimized when the name, split at `_`, has a part like `loss`, `error`, `mse`, `mae`, `rmse`,
 *  `nll`, `perplexity` (e.g. `loss`, `val_error`, `top5_err`); otherwise (accuracy, precision, ...)
 *  maximized. */
export function lowerIsBetter(name: string): boolean {
  return name.toLowerCase().split('_').some((p) => LOSS_LIKE.has(p));
}

/** Parses `val.loss`, `val.accuracy`, `train.loss`, or a bare name (meaning `val.NAME`), checking
 *  the name against the model's loss and metrics. Throws a RangeError with a message for the user. */
export function parseWatch(on: string, metrics: readonly string[]): Watch {
  const m = /^(?:(train|val)\.)?([A-Za-z_][A-Za-z0-9_]*)$/.exec(on);
  const names = ['loss', ...metrics];
  if (!m) throw new RangeError(`cannot watch '${on}': write val.NAME or train.NAME, with NAME one of ${names.join(', ')}`);
  const [, split = 'val', name] = m;
  if (!names.includes(name)) throw new RangeError(`cannot watch '${on}': the model has no metric '${name}' (it has ${names.join(', ')})`);
  return { split: split as Watch['split'], name, minimize: lowerIsBetter(name) };
}

export const watchName = (w: Watch) => `${w.split}.${w.name}`;

const valueOf = (s: EpochStats, w: Watch): number => (w.split === 'val' ? s.val?.[w.name] : s.train[w.name]) ?? NaN;

/** Strictly better; NaN never is. */
function improves(v: number, best: number, w: Watch): boolean {
  if (Number.isNaN(v)) return false;
  if (Number.isNaN(best)) return true;
  return w.minimize ? v < best : v > best;
}

/** A copy of a saved state; JSON writes NaN as null, and null is read back as NaN. */
function revive(s: FitState): FitState {
  const num = (v: unknown) => (typeof v === 'number' ? v : NaN);
  return {
    ...(s.early ? { early: { best: num(s.early.best), bestEpoch: s.early.bestEpoch, wait: s.early.wait } } : {}),
    ...(s.plateau ? { plateau: { best: num(s.plateau.best), wait: s.plateau.wait } } : {}),
  };
}

/** What the plain loop of epochs needs (Model.fit runs it alone; fit adds early stopping,
 *  reduce-on-plateau and resuming, which bundles then leave out). */
export type EpochsOptions = Pick<FitOptions, 'epochs' | 'batch' | 'shuffle' | 'seed' | 'val' | 'signal' | 'onBatch'>;

/** Trains epochs `from + 1` to `opts.epochs`; `after` gets each epoch's stats (awaited) and returns
 *  true to stop there. */
export async function runEpochs(model: Model, data: Dataset, opts: EpochsOptions, from: number, after: (stats: EpochStats) => Promise<boolean>): Promise<void> {
  const steps = Math.ceil(data.size / opts.batch);
  for (let epoch = from + 1; epoch <= opts.epochs; epoch++) {
    const start = performance.now();
    const order = epochOrder(data.size, opts.seed, epoch, opts.shuffle);
    const means = new Means();
    model.epoch = epoch - 1;
    const lr = model.hypers.lr === undefined ? undefined : model.learningRate();
    let done = 0;
    if (model.manifest.optimizer.name === 'lbfgs') {
      opts.signal?.throwIfAborted();
      // Full batch: an epoch is `iterations` L-BFGS steps over the whole set.
      const loss = await lbfgsEpoch(model, data);
      means.add(await evaluate(model, data), data.size);
      opts.onBatch?.(1, 1, { loss });
    } else {
      for (const b of batches(data, opts.batch, order)) {
        opts.signal?.throwIfAborted();
        const r = await model.trainStep(b);
        means.add(r, size(b));
        opts.onBatch?.(++done, steps, r);
      }
    }
    model.epoch = epoch;
    const stats: EpochStats = { epoch, train: means.get(), ...(opts.val ? { val: await evaluate(model, opts.val) } : {}), ...(lr !== undefined ? { lr } : {}), ms: 0 };
    stats.ms = performance.now() - start;
    if (await after(stats)) return;
  }
}

export async function fit(model: Model, data: Dataset, opts: FitOptions): Promise<FitResult> {
  const history: EpochStats[] = [...(opts.resume?.history ?? [])];
  const state = revive(opts.resume?.state ?? {});
  let best = opts.resume?.best;
  const startEpoch = history.length ? history[history.length - 1].epoch : model.epoch;
  const es = opts.earlyStop;
  const pl = opts.plateau;
  if (es) state.early ??= { best: NaN, bestEpoch: 0, wait: 0 };
  if (pl) state.plateau ??= { best: NaN, wait: 0 };

  const stopReason = (): string | undefined =>
    es && state.early!.wait >= es.patience
      ? `${watchName(es.on)} has not improved for ${state.early!.wait} epoch${state.early!.wait === 1 ? '' : 's'} (patience ${es.patience})`
      : undefined;

  // Resumed right after the best epoch so far: the model itself is the best.
  if (es && !best && startEpoch > 0 && state.early!.bestEpoch === startEpoch) best = await model.save();

  let stopped: FitResult['stopped'];
  const reason = stopReason();
  if (reason) stopped = { epoch: startEpoch, reason };
  else
    await runEpochs(model, data, opts, startEpoch, async (stats) => {
      const epoch = stats.epoch;
      history.push(stats);
      if (es) {
        const e = state.early!;
        const v = valueOf(stats, es.on);
        if (improves(v, e.best, es.on)) {
          Object.assign(e, { best: v, bestEpoch: epoch, wait: 0 });
          best = undefined; // this epoch is the best: its own checkpoint holds it
        } else e.wait++;
      }
      let reduced: Parameters<NonNullable<FitOptions['onReduceLr']>>[0] | undefined;
      if (pl) {
        const p = state.plateau!;
        const v = valueOf(stats, pl.on);
        if (improves(v, p.best, pl.on)) Object.assign(p, { best: v, wait: 0 });
        else if (++p.wait >= pl.patience) {
          p.wait = 0;
          const from = model.hypers.lr;
          const to = Math.max(from * pl.factor, pl.minLr);
          if (to < from) {
            model.hypers.lr = to;
            reduced = { epoch, from, to, on: pl.on };
          }
        }
      }
      await opts.onEpoch?.(stats, { history, state, best });
      if (reduced) opts.onReduceLr?.(reduced);
      // Keep the best epoch's bytes, to hand to later checkpoints and to restore at the end.
      if (es && state.early!.bestEpoch === epoch) best = await model.save();
      const reason = stopReason();
      if (reason && epoch < opts.epochs) stopped = { epoch, reason };
      return stopped !== undefined;
    });

  // Early stopping leaves the best epoch's parameters in the model.
  let restored: FitResult['restored'];
  const last = history[history.length - 1]?.epoch ?? 0;
  if (es && state.early!.bestEpoch > 0 && state.early!.bestEpoch !== last && best) {
    model.restore(best);
    restored = { epoch: state.early!.bestEpoch, value: state.early!.best };
  }
  return { history, ...(stopped ? { stopped } : {}), ...(restored ? { restored } : {}) };
}

/** Loss and metrics over a whole dataset (inference graph). */
export async function evaluate(model: Model, data: Dataset, batch = 500): Promise<Record<string, number>> {
  const means = new Means();
  const order = Int32Array.from({ length: data.size }, (_, i) => i);
  for (const b of batches(data, batch, order)) means.add(await model.evaluate(b), size(b));
  return means.get();
}
