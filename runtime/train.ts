// The training loop: epochs of shuffled batches, per-epoch loss and metrics, evaluation.

import type { Dataset } from './dataset.ts';
import { batches } from './dataset.ts';
import type { Model } from './model.ts';
import { permutation, rng } from './random.ts';

export interface EpochStats {
  epoch: number;
  /** Mean loss and metrics over the epoch's batches, weighted by batch size. */
  train: Record<string, number>;
  ms: number;
}

export interface FitOptions {
  epochs: number;
  batch: number;
  shuffle: boolean;
  /** Seeds the order of examples. */
  seed: number;
  onBatch?(done: number, total: number, stats: Record<string, number>): void;
  onEpoch?(stats: EpochStats): void;
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

export async function fit(model: Model, data: Dataset, opts: FitOptions): Promise<EpochStats[]> {
  const next = rng(opts.seed);
  const history: EpochStats[] = [];
  const steps = Math.ceil(data.size / opts.batch);
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    const start = performance.now();
    const order = opts.shuffle ? permutation(data.size, next) : Int32Array.from({ length: data.size }, (_, i) => i);
    const means = new Means();
    model.epoch = epoch - 1;
    let done = 0;
    for (const b of batches(data, opts.batch, order)) {
      const r = await model.trainStep(b);
      means.add(r, size(b));
      opts.onBatch?.(++done, steps, r);
    }
    const stats = { epoch, train: means.get(), ms: performance.now() - start };
    history.push(stats);
    opts.onEpoch?.(stats);
  }
  return history;
}

/** Loss and metrics over a whole dataset (inference graph). */
export async function evaluate(model: Model, data: Dataset, batch = 500): Promise<Record<string, number>> {
  const means = new Means();
  const order = Int32Array.from({ length: data.size }, (_, i) => i);
  for (const b of batches(data, batch, order)) means.add(await model.evaluate(b), size(b));
  return means.get();
}
