// A dataset: one array per model input, the first axis being the example. Batches are gathered
// rows, so shuffling never copies the whole set.

import type { Tensor } from '../compiler/ops/types.ts';

export interface Dataset {
  size: number;
  /** By input name; shape[0] is the number of examples. */
  columns: Record<string, Tensor>;
}

/** Rows `idx` of every column. */
export function rows(ds: Dataset, idx: ArrayLike<number>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(ds.columns)) {
    const per = t.data.length / t.shape[0];
    const data = new (t.data.constructor as Float32ArrayConstructor | Int32ArrayConstructor)(idx.length * per);
    for (let i = 0; i < idx.length; i++) data.set(t.data.subarray(idx[i] * per, (idx[i] + 1) * per), i * per);
    out[name] = { data, shape: [idx.length, ...t.shape.slice(1)] };
  }
  return out;
}

export function subset(ds: Dataset, idx: ArrayLike<number>): Dataset {
  return { size: idx.length, columns: rows(ds, idx) };
}

/** Consecutive batches of `batch` rows in `order` (the last one may be smaller). */
export function* batches(ds: Dataset, batch: number, order: ArrayLike<number>): Generator<Record<string, Tensor>> {
  for (let s = 0; s < order.length; s += batch) {
    yield rows(ds, Array.prototype.slice.call(order, s, Math.min(order.length, s + batch)) as number[]);
  }
}
