// Data for `dlc train`: the MNIST digits of the `mnist` package, or a .json / .csv file whose
// columns are named after the model's inputs.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { TensorSpec } from '../runtime/program.ts';
import type { Dataset } from '../runtime/dataset.ts';
import { subset } from '../runtime/dataset.ts';
import { permutation, rng } from '../runtime/random.ts';

/** A user's data problem: reported as a plain message, never a stack trace. */
export class DataError extends Error {}

const exampleShape = (spec: TensorSpec): number[] => spec.shape.slice(1).map((d) => {
  if (typeof d !== 'number') throw new DataError(`input '${spec.name}' has the run-time dimension ${d} after the first axis; data files can only fill a fixed shape`);
  return d;
});

/** All 10,000 digits of the `mnist` package, shuffled with `seed`, split 8,000 / 2,000. */
export function mnist(inputs: TensorSpec[], seed: number): { train: Dataset; test: Dataset } {
  const x = inputs.find((i) => i.name === 'x');
  const y = inputs.find((i) => i.name === 'y');
  if (!x || !y) throw new DataError(`--data mnist feeds inputs named 'x' (the images) and 'y' (the labels); this model has ${inputs.map((i) => i.name).join(', ')}`);
  const xs = exampleShape(x);
  if (x.dtype !== 'f32' || xs.reduce((a, b) => a * b, 1) !== 784)
    throw new DataError(`--data mnist needs x: f32[B, 784] or f32[B, 28, 28, 1], but x is ${x.dtype}[${x.shape.join(', ')}]`);
  const oneHot = y.dtype === 'f32';
  if (oneHot ? exampleShape(y).join() !== '10' : y.dtype !== 'i32' || y.shape.length !== 1)
    throw new DataError(`--data mnist needs y: i32[B] (labels) or f32[B, 10] (one-hot), but y is ${y.dtype}[${y.shape.join(', ')}]`);

  const dir = dirname(createRequire(import.meta.url).resolve('mnist/package.json'));
  const digits = Array.from({ length: 10 }, (_, d) => JSON.parse(readFileSync(join(dir, 'src', 'digits', `${d}.json`), 'utf8')).data as number[]);
  const n = digits.reduce((s, a) => s + a.length / 784, 0);
  const images = new Float32Array(n * 784);
  const labels = oneHot ? new Float32Array(n * 10) : new Int32Array(n);
  let k = 0;
  digits.forEach((raw, d) => {
    for (let i = 0; i < raw.length / 784; i++, k++) {
      images.set(raw.slice(i * 784, (i + 1) * 784), k * 784);
      if (oneHot) labels[k * 10 + d] = 1;
      else labels[k] = d;
    }
  });
  const all: Dataset = {
    size: n,
    columns: { x: { data: images, shape: [n, ...xs] }, y: { data: labels, shape: oneHot ? [n, 10] : [n] } },
  };
  const order = permutation(n, rng(seed));
  return { train: subset(all, order.subarray(0, 8000)), test: subset(all, order.subarray(8000, 10000)) };
}

function column(spec: TensorSpec, values: number[], n: number): Dataset['columns'][string] {
  const shape = [n, ...exampleShape(spec)];
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  if (values.length !== n * per) throw new DataError(`input '${spec.name}': expected ${n} examples of shape [${shape.slice(1).join(', ')}] (${n * per} numbers), found ${values.length}`);
  const data = spec.dtype === 'f32' ? Float32Array.from(values) : Int32Array.from(values);
  if (spec.dtype !== 'f32' && values.some((v) => !Number.isInteger(v))) throw new DataError(`input '${spec.name}' is ${spec.dtype} but the data has non-integer values`);
  return { data, shape };
}

/** A .json object mapping each input name to an array whose first axis is the example, or a .csv
 *  whose columns are `name` (an input of shape [B]) or `name.0` … `name.n-1` (shape [B, n]). */
export function loadFile(path: string, inputs: TensorSpec[]): Dataset {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    throw new DataError(`cannot read data file '${path}'`);
  }
  if (path.endsWith('.json')) {
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new DataError(`${path}: not valid JSON (${(e as Error).message})`);
    }
    const first = obj[inputs[0]?.name];
    if (!Array.isArray(first)) throw new DataError(`${path}: expected a key '${inputs[0]?.name}' holding an array of examples`);
    const n = first.length;
    const columns: Dataset['columns'] = {};
    for (const spec of inputs) {
      const v = obj[spec.name];
      if (!Array.isArray(v)) throw new DataError(`${path}: expected a key '${spec.name}' holding an array of examples`);
      if (v.length !== n) throw new DataError(`${path}: '${spec.name}' has ${v.length} examples but '${inputs[0].name}' has ${n}`);
      columns[spec.name] = column(spec, (v.flat(Infinity) as unknown[]).map(Number), n);
    }
    return { size: n, columns };
  }
  if (path.endsWith('.csv')) {
    const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
    const header = lines[0]?.split(',').map((h) => h.trim()) ?? [];
    const body = lines.slice(1).map((l, i) => {
      const cells = l.split(',').map(Number);
      if (cells.length !== header.length) throw new DataError(`${path}:${i + 2}: ${cells.length} cells, but the header has ${header.length}`);
      return cells;
    });
    const columns: Dataset['columns'] = {};
    for (const spec of inputs) {
      const per = exampleShape(spec).reduce((a, b) => a * b, 1);
      const names = spec.shape.length === 1 ? [spec.name] : Array.from({ length: per }, (_, k) => `${spec.name}.${k}`);
      const idx = names.map((c) => {
        const i = header.indexOf(c);
        if (i < 0) throw new DataError(`${path}: no column '${c}' for input '${spec.name}' (columns: ${header.join(', ')})`);
        return i;
      });
      columns[spec.name] = column(spec, body.flatMap((r) => idx.map((i) => r[i])), body.length);
    }
    return { size: body.length, columns };
  }
  throw new DataError(`data file '${path}' must end in .json or .csv`);
}
