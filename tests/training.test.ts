// The training loop: exact resume (a run continued from a checkpoint computes bit for bit what an
// uninterrupted one does, dropout and all), validation splits, early stopping (minimized and
// maximized values, the best epoch restored), reduce_on_plateau, and `dlc train`'s --save,
// --resume, --val-split, --curves, --plot and --compare end to end.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Dataset } from '../runtime/dataset.ts';
import type { Manifest } from '../runtime/program.ts';
import { rng } from '../runtime/random.ts';
import { checkOutputPath, readCheckpointFile, removeStaleTemps, trainExtra, writeFileAtomic } from '../cli/checkpoint.ts';
import { plotKind } from '../cli/plot.ts';
import { epochOrder, fit, lowerIsBetter, parseWatch, splitValidation, type EpochStats, type FitOptions, type FitState } from '../runtime/train.ts';
import { dlc, type Run } from './support/cli.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const tmp = mkdtempSync(join(tmpdir(), 'dlc-training-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Compiles `text` as a model file in the temporary folder. */
function manifestOf(name: string, text: string): Manifest {
  const file = join(tmp, `${name}.dlm`);
  writeFileSync(file, text);
  const r = compile(file);
  expect(r.diagnostics.map((d) => format(d, r.sources)).join('\n')).toBe('');
  return r.manifest!;
}

// ---------------------------------------------------------------- models and data

/** A small classifier with dropout, so the random stream matters, and adam, so slots matter. */
const CLASSIFIER = (train: string) => `
model drop {
  input x: f32[B, 4]
  input y: i32[B]
  h = x |> dense(16) |> relu
  logits = dense(dropout(h, 0.3), 3)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)
  train {
    optimizer adam(lr: 0.02)
    ${train}
    batch 16
    seed 5
  }
}`;

/** Three classes by the sign pattern of two features; a fraction `noise` of labels random. */
function classes(n: number, seed: number, noise = 0): Dataset {
  const next = rng(seed);
  const x = new Float32Array(n * 4);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 4; k++) x[i * 4 + k] = 2 * next() - 1;
    y[i] = next() < noise ? Math.floor(next() * 3) : x[i * 4] > 0.3 ? 2 : x[i * 4 + 1] > 0 ? 1 : 0;
  }
  return { size: n, columns: { x: { data: x, shape: [n, 4] }, y: { data: y, shape: [n] } } };
}

/** A linear model; `score` is a maximized metric (its name is not loss-like). */
const LINEAR = (train: string) => `
model lin {
  input x: f32[B, 2]
  input t: f32[B, 1]
  yhat = dense(x, 1, init: zeros)
  loss = mse(yhat, t)
  metric score = 0.0 - mean(abs(yhat - t))
  train {
    optimizer sgd(lr: 0.1)
    ${train}
    batch 10
    seed 1
  }
}`;

/** t = sign · (x0 - 2 x1): a validation set with sign -1 only gets worse as training fits +1. */
function line(n: number, seed: number, sign = 1): Dataset {
  const next = rng(seed);
  const x = new Float32Array(n * 2);
  const t = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i * 2] = 2 * next() - 1;
    x[i * 2 + 1] = 2 * next() - 1;
    t[i] = sign * (x[i * 2] - 2 * x[i * 2 + 1]);
  }
  return { size: n, columns: { x: { data: x, shape: [n, 2] }, t: { data: t, shape: [n, 1] } } };
}

const bytesEqual = (a: Uint8Array, b: Uint8Array) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
const withoutMs = (h: EpochStats[]) => h.map(({ ms, ...e }) => e);

/** What a checkpoint keeps of the loop: through JSON, as on disk (NaN comes back as null). */
interface Saved {
  bytes: Uint8Array;
  history: EpochStats[];
  state: FitState;
  best?: Uint8Array;
}

async function trainRun(m: Manifest, data: Dataset, opts: Omit<FitOptions, 'onEpoch'>, from?: Saved) {
  const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
  if (from) model.restore(from.bytes);
  const saved: Saved[] = [];
  const result = await fit(model, data, {
    ...opts,
    ...(from ? { resume: { history: from.history, state: from.state, best: from.best } } : {}),
    onEpoch: async (_s, snap) => {
      const json = JSON.parse(JSON.stringify({ history: snap.history, state: snap.state }));
      saved.push({ bytes: await model.save({ epoch: _s.epoch }), ...json, ...(snap.best ? { best: snap.best.slice() } : {}) });
    },
  });
  const final = await model.save();
  const params = await model.getParams();
  model.dispose();
  return { result, saved, final, params };
}

// ---------------------------------------------------------------- in process

describe('exact resume (CPU, in process)', () => {
  it('2 epochs, a checkpoint, then 2 more: bit for bit the uninterrupted 4-epoch run (dropout, adam, a partial last batch)', async () => {
    const m = manifestOf('drop', CLASSIFIER('epochs 4'));
    const data = classes(100, 1);
    const opts = { epochs: 4, batch: 16, shuffle: true, seed: 5 };
    const whole = await trainRun(m, data, opts);
    const first = await trainRun(m, data, { ...opts, epochs: 2 });
    expect(first.saved).toHaveLength(2);
    const rest = await trainRun(m, data, opts, first.saved[1]);
    expect(withoutMs(rest.result.history)).toEqual(withoutMs(whole.result.history));
    expect(bytesEqual(rest.final, whole.final)).toBe(true);
    for (const [name, t] of Object.entries(whole.params)) expect(Buffer.from(rest.params[name].data.buffer).equals(Buffer.from(t.data.buffer)), name).toBe(true);
    // Dropout matters: the same checkpoint continued under another seed (dropout key) ends elsewhere.
    const other = await Model.create(m, cpuKernels, { backend: 'cpu', seed: 6 });
    other.restore(first.saved[1].bytes);
    await fit(other, data, { ...opts, resume: { history: first.saved[1].history, state: {} } });
    expect([...(await other.getParams())['logits.w'].data]).not.toEqual([...whole.params['logits.w'].data]);
    other.dispose();
  });

  it('with early stopping and reduce_on_plateau: resuming from any epoch stops, decays and restores exactly as the whole run', async () => {
    const m = manifestOf('drop_es', CLASSIFIER('schedule reduce_on_plateau(factor: 0.5, patience: 1)\n    early_stop patience: 3, on: val.accuracy\n    epochs 30'));
    const data = classes(96, 2);
    const val = classes(48, 3, 0.8); // mostly random labels: accuracy wanders, so the run stops
    const accuracy = parseWatch('val.accuracy', m.metrics);
    const opts = { epochs: 30, batch: 16, shuffle: true, seed: 5, val, earlyStop: { patience: 3, on: accuracy }, plateau: { factor: 0.5, patience: 1, minLr: 0, on: accuracy } };
    const whole = await trainRun(m, data, opts);
    const { stopped, restored, history } = whole.result;
    expect(stopped).toBeDefined();
    expect(restored).toBeDefined();
    expect(stopped!.epoch).toBeLessThan(30);
    expect(restored!.epoch).toBe(stopped!.epoch - 3);
    expect(new Set(history.map((e) => e.lr)).size).toBeGreaterThan(1); // the lr was reduced
    for (const k of whole.saved.keys()) {
      const rest = await trainRun(m, data, opts, whole.saved[k]);
      expect(withoutMs(rest.result.history), `resumed after epoch ${k + 1}`).toEqual(withoutMs(history));
      expect(rest.result.stopped).toEqual(stopped);
      expect(rest.result.restored).toEqual(restored);
      expect(bytesEqual(rest.final, whole.final), `resumed after epoch ${k + 1}`).toBe(true);
    }
  });
});

describe('data order and validation split', () => {
  it("an epoch's order is a pure function of (seed, epoch)", () => {
    const a = epochOrder(50, 7, 3);
    expect(epochOrder(50, 7, 3)).toEqual(a);
    expect(epochOrder(50, 7, 4)).not.toEqual(a);
    expect(epochOrder(50, 8, 3)).not.toEqual(a);
    expect([...a].sort((p, q) => p - q)).toEqual([...Array(50).keys()]);
    expect([...epochOrder(5, 7, 3, false)]).toEqual([0, 1, 2, 3, 4]);
  });

  it('--val-split holds out round(f·n) examples of a seeded shuffle, disjoint from training', () => {
    const n = 101;
    const data: Dataset = { size: n, columns: { id: { data: Float32Array.from({ length: n }, (_, i) => i), shape: [n] } } };
    const { train, val } = splitValidation(data, 0.2, 3);
    expect(val.size).toBe(20);
    expect(train.size).toBe(81);
    const ids = (d: Dataset) => [...d.columns.id.data];
    expect(new Set([...ids(train), ...ids(val)]).size).toBe(n);
    expect(ids(val)).not.toEqual([...Array(20).keys()]); // shuffled, not the first rows
    expect(ids(splitValidation(data, 0.2, 3).val)).toEqual(ids(val));
    expect(ids(splitValidation(data, 0.2, 4).val)).not.toEqual(ids(val));
    expect(() => splitValidation(data, 0.001, 3)).toThrow(/no validation/);
  });
});

describe('early stopping and reduce_on_plateau', () => {
  it('loss-like names are minimized, the others maximized', () => {
    for (const n of ['loss', 'mse', 'mae', 'rmse', 'top5_error', 'val_err', 'nll', 'perplexity']) expect(lowerIsBetter(n), n).toBe(true);
    for (const n of ['accuracy', 'score', 'f1', 'auc', 'precision', 'lossless']) expect(lowerIsBetter(n), n).toBe(false);
    expect(parseWatch('val.loss', [])).toEqual({ split: 'val', name: 'loss', minimize: true });
    expect(parseWatch('train.accuracy', ['accuracy'])).toEqual({ split: 'train', name: 'accuracy', minimize: false });
    expect(parseWatch('accuracy', ['accuracy']).split).toBe('val');
    expect(() => parseWatch('val.acc', ['accuracy'])).toThrow(/no metric 'acc'.*loss, accuracy/);
    expect(() => parseWatch('test.loss', [])).toThrow(/val.NAME or train.NAME/);
  });

  it('stops when val.loss has not improved for `patience` epochs and restores the best epoch', async () => {
    const m = manifestOf('lin', LINEAR('epochs 20'));
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const byEpoch: Record<string, Float32Array>[] = [];
    const r = await fit(model, line(60, 1), {
      epochs: 20, batch: 10, shuffle: true, seed: 1, val: line(30, 2, -1),
      earlyStop: { patience: 3, on: parseWatch('val.loss', m.metrics) },
      onEpoch: async () => {
        byEpoch.push(Object.fromEntries(Object.entries(await model.getParams()).map(([k, t]) => [k, t.data as Float32Array])));
      },
    });
    // The validation targets are negated: every epoch after the first is worse.
    expect(r.history.map((e) => e.epoch)).toEqual([1, 2, 3, 4]);
    expect(r.stopped).toEqual({ epoch: 4, reason: 'val.loss has not improved for 3 epochs (patience 3)' });
    expect(r.restored).toEqual({ epoch: 1, value: r.history[0].val!.loss });
    const now = await model.getParams();
    for (const [k, v] of Object.entries(byEpoch[0])) expect([...now[k].data]).toEqual([...v]);
    expect([...now['yhat.w'].data]).not.toEqual([...byEpoch[3]['yhat.w']]);
    expect(model.step).toBe(6); // the best epoch's step, restored with it
    model.dispose();
  });

  it('a maximized metric: val.score falling counts as no improvement', async () => {
    const m = manifestOf('lin', LINEAR('epochs 20'));
    const run = async (sign: number) => {
      const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
      const r = await fit(model, line(60, 1), {
        epochs: 12, batch: 10, shuffle: true, seed: 1, val: line(30, 2, sign),
        earlyStop: { patience: 2, on: parseWatch('val.score', m.metrics) },
      });
      model.dispose();
      return r;
    };
    expect((await run(-1)).stopped?.epoch).toBe(3);
    const good = await run(1);
    expect(good.stopped).toBeUndefined();
    expect(good.history).toHaveLength(12);
  });

  it('reduce_on_plateau multiplies lr by factor after `patience` epochs without improvement, never below min_lr', async () => {
    const m = manifestOf('lin_plateau', LINEAR('schedule reduce_on_plateau(factor: 0.5, patience: 2, min_lr: 0.02)\n    epochs 10'));
    expect(m.schedule).toEqual({ name: 'reduce_on_plateau', hypers: { factor: 0.5, patience: 2, min_lr: 0.02 } });
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const reductions: [number, number, number][] = [];
    const r = await fit(model, line(60, 1), {
      epochs: 10, batch: 10, shuffle: true, seed: 1, val: line(30, 2, -1),
      plateau: { factor: model.schedule.factor, patience: model.schedule.patience, minLr: model.schedule.min_lr, on: parseWatch('val.loss', m.metrics) },
      onReduceLr: ({ epoch, from, to }) => reductions.push([epoch, from, to]),
    });
    expect(r.history.map((e) => e.lr)).toEqual([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02, 0.02]);
    expect(reductions).toEqual([[3, 0.1, 0.05], [5, 0.05, 0.025], [7, 0.025, 0.02]]);
    expect(model.hypers.lr).toBe(0.02);
    model.dispose();
  });
});

// ---------------------------------------------------------------- the command line


const events = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown> & { event: string });

function expectOneLineError(r: Run, ...mentions: (string | RegExp)[]): void {
  expect(r.code, r.stderr).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^dlc: /);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  for (const m of mentions) expect(lines[0]).toMatch(m);
}

const LINEAR_EXAMPLE = ['examples/linear_regression.dlm', '--data', 'examples/data/linear_train.csv', '--backend', 'cpu'];
const LOGISTIC_EXAMPLE = ['examples/logistic_regression.dlm', '--data', 'examples/data/logistic_train.csv', '--backend', 'cpu'];

/** A checkpoint file's parameters, step and hyperparameters, restored in process. */
async function checkpointOf(example: string, path: string) {
  const r = compile(resolve(ROOT, example));
  const model = await Model.create(r.manifest!, cpuKernels, { backend: 'cpu' });
  const extra = model.restore(new Uint8Array(readFileSync(path)));
  const out = { params: await model.getParams(), step: model.step, epoch: model.epoch, hypers: { ...model.hypers }, extra };
  model.dispose();
  return out;
}

describe.concurrent('dlc train: --save and --resume', () => {
  it('2 epochs with --save, then --resume to --epochs 4: the same parameters as 4 epochs in one go', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((n) => join(tmp, `resume_${n}.ckpt`));
    const args = [...LINEAR_EXAMPLE, '--val-split', '0.2', '--json'];
    const [first, whole] = await Promise.all([dlc('train', ...args, '--epochs', '2', '--save', a), dlc('train', ...args, '--epochs', '4', '--save', c)]);
    expect(first.code, first.stderr).toBe(0);
    expect(whole.code, whole.stderr).toBe(0);
    const rest = await dlc('train', ...args, '--epochs', '4', '--resume', a, '--save', b);
    expect(rest.code, rest.stderr).toBe(0);
    const evs = events(rest.stdout);
    expect(evs[0]).toEqual({ event: 'resume', epoch: 2, checkpoint: a });
    expect(evs.filter((e) => e.event === 'epoch').map((e) => e.epoch)).toEqual([3, 4]);
    // The resumed run's epochs and the uninterrupted run's epochs 3 and 4 are the same numbers.
    const strip = (e: Record<string, unknown>) => ({ ...e, ms: 0 });
    expect(evs.filter((e) => e.event === 'epoch').map(strip)).toEqual(events(whole.stdout).filter((e) => e.event === 'epoch').slice(2).map(strip));
    const [resumed, straight] = await Promise.all([checkpointOf(LINEAR_EXAMPLE[0], b), checkpointOf(LINEAR_EXAMPLE[0], c)]);
    expect(resumed.step).toBe(straight.step);
    expect(resumed.epoch).toBe(4);
    expect(resumed.hypers).toEqual(straight.hypers);
    for (const [k, t] of Object.entries(straight.params)) expect(Buffer.from(resumed.params[k].data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
    expect(resumed.extra).toMatchObject({ format: 'dlc-train/1', epoch: 4, settings: { epochs: 4, batch: 16, seed: 1, valSplit: 0.2, dataSize: 400, optimizer: 'sgd' } });
    expect((resumed.extra.history as unknown[]).length).toBe(4);
  });

  it("a damaged checkpoint, another model's, or one without training state: one line, exit 1", async () => {
    const m = compile(resolve(ROOT, LINEAR_EXAMPLE[0])).manifest!;
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const bytes = await model.save({ format: 'dlc-train/1' });
    model.dispose();
    const truncated = join(tmp, 'truncated.ckpt');
    writeFileSync(truncated, bytes.subarray(0, bytes.length - 7));
    const plain = join(tmp, 'plain.ckpt');
    writeFileSync(plain, bytes);
    const [r1, r2, r3] = await Promise.all([
      dlc('train', ...LINEAR_EXAMPLE, '--resume', truncated),
      dlc('train', ...LOGISTIC_EXAMPLE, '--resume', plain),
      dlc('train', ...LINEAR_EXAMPLE, '--resume', plain),
    ]);
    expectOneLineError(r1, truncated, /checksum mismatch/);
    expectOneLineError(r2, plain, /it belongs to model 'linear_regression'/);
    expectOneLineError(r3, plain, /not a training checkpoint/);
  });

  it('what --resume refuses before training, in process: a missing file, garbage, a flipped bit', async () => {
    expect(() => readCheckpointFile(join(tmp, 'missing.ckpt'))).toThrow(/cannot read checkpoint .*missing\.ckpt': no such file/);
    const m = compile(resolve(ROOT, LINEAR_EXAMPLE[0])).manifest!;
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const bytes = await model.save();
    const flipped = bytes.slice();
    flipped[flipped.length - 3] ^= 0x40;
    expect(() => model.restore(new TextEncoder().encode('not a checkpoint at all\n'))).toThrow(/bad magic number/);
    expect(() => model.restore(flipped)).toThrow(/checksum mismatch/);
    expect(() => trainExtra('x.ckpt', model.restore(bytes))).toThrow(/x\.ckpt: not a training checkpoint/);
    model.dispose();
  });

  it('checkpoint files are replaced atomically and stale temporary files of killed runs are removed', () => {
    const dir = mkdtempSync(join(tmp, 'atomic-'));
    const target = join(dir, 'run.ckpt');
    writeFileAtomic(target, new Uint8Array([1, 2, 3]));
    writeFileAtomic(target, new Uint8Array([4, 5]));
    expect([...readFileSync(target)]).toEqual([4, 5]);
    expect(readdirSync(dir)).toEqual(['run.ckpt']);
    // A temp file of a process that no longer exists is removed; one of a live process is kept.
    writeFileSync(join(dir, '.run.ckpt.tmp-999999999-abc'), 'partial');
    writeFileSync(join(dir, `.run.ckpt.tmp-${process.ppid}-def`), 'in flight');
    removeStaleTemps(target);
    expect(readdirSync(dir).sort()).toEqual([`.run.ckpt.tmp-${process.ppid}-def`, 'run.ckpt']);
    expect(() => writeFileAtomic(join(dir, 'no', 'such', 'dir.ckpt'), 'x')).toThrow(/no such directory/);
  });
});

describe.concurrent('dlc train: validation, early stopping, curves and plots', () => {
  it('the linear regression example: val stats per epoch, reduce_on_plateau, early stop, curves JSON and an SVG plot', async () => {
    const curves = join(tmp, 'linear_curves.json');
    const plot = join(tmp, 'linear.svg');
    const r = await dlc('train', ...LINEAR_EXAMPLE, '--test', 'examples/data/linear_test.csv', '--val-split', '0.2', '--curves', curves, '--plot', plot, '--json');
    expect(r.code, r.stderr).toBe(0);
    const evs = events(r.stdout);
    const epochs = evs.filter((e) => e.event === 'epoch') as unknown as EpochStats[];
    for (const e of epochs) {
      expect(Object.keys(e.val!).sort()).toEqual(['loss', 'mae']);
      expect(Object.keys(e.train).sort()).toEqual(['loss', 'mae']);
    }
    expect(epochs[epochs.length - 1].val!.loss).toBeLessThan(0.05);
    const reduce = evs.filter((e) => e.event === 'reduce_lr');
    expect(reduce.length).toBeGreaterThan(0);
    expect(reduce[0]).toMatchObject({ from: 0.05, to: 0.025, on: 'val.loss' });
    const stop = evs.find((e) => e.event === 'early_stop')!;
    expect(stop).toBeDefined();
    expect(stop.epoch).toBe(epochs.length);
    expect(epochs.length).toBeLessThan(40);
    const done = evs[evs.length - 1] as { event: string; best: { epoch: number; value: number }; test: Record<string, number> };
    expect(done.event).toBe('done');
    expect(done.best.epoch).toBe(epochs.length - 4);
    expect(done.best.value).toBe(Math.min(...epochs.map((e) => e.val!.loss)));
    expect(done.test.loss).toBeLessThan(0.05);

    const c = JSON.parse(readFileSync(curves, 'utf8'));
    expect(c.format).toBe('dlc-curves/1');
    expect(c.model).toBe('linear_regression');
    expect(c.runs).toHaveLength(1);
    expect(c.runs[0].label).toBe('sgd');
    expect(c.runs[0].epochs.map((e: EpochStats) => ({ ...e, ms: 0 }))).toEqual(epochs.map((e) => ({ ...e, event: undefined, ms: 0 })).map(({ event, ...e }) => e));
    const svg = readFileSync(plot, 'utf8');
    expect(svg).toMatch(/^<svg/);
    for (const text of ['loss', 'mae', 'train', 'val', 'epoch']) expect(svg).toContain(`>${text}</text>`);
    expect((svg.match(/<path[^>]*aria-roledescription="line mark"/g) ?? []).length).toBe(4); // train and val, in 2 panels
  });

  it('the logistic regression example: a maximized early-stop metric and a PNG plot', async () => {
    const plot = join(tmp, 'logistic.png');
    const r = await dlc('train', ...LOGISTIC_EXAMPLE, '--test', 'examples/data/logistic_test.csv', '--val-split', '0.2', '--plot', plot);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^epoch 1: loss \S+  accuracy \S+  \| val loss \S+  accuracy \S+/m);
    expect(r.stderr).toMatch(/^early stop after epoch \d+: val\.accuracy has not improved for 5 epochs \(patience 5\)$/m);
    expect(r.stderr).toMatch(/^restored the parameters of epoch \d+ \(best val\.accuracy \S+\)$/m);
    const acc = Number(/^test: loss \S+  accuracy (\S+)$/m.exec(r.stderr)?.[1]);
    expect(acc).toBeGreaterThan(0.9);
    const png = readFileSync(plot);
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.readUInt32BE(16)).toBeGreaterThan(600); // IHDR width
    expect(png.readUInt32BE(20)).toBeGreaterThan(300); // IHDR height
  });

  it('usage mistakes: --compare without --plot, an output in a missing folder; early_stop on val without a validation set is a note', async () => {
    expect(() => plotKind('x.gif')).toThrow(/\.svg or \.png/);
    expect(plotKind('x.PNG')).toBe('png');
    expect(() => checkOutputPath('--save', join(tmp, 'no', 'run.ckpt'))).toThrow(/--save .*no such directory/);
    const [noPlot, noVal] = await Promise.all([dlc('train', ...LINEAR_EXAMPLE, '--compare', 'adam,sgd'), dlc('train', ...LINEAR_EXAMPLE, '--epochs', '1', '--json')]);
    expectOneLineError(noPlot, /--compare .*--plot/);
    expect(noVal.code, noVal.stderr).toBe(0);
    expect(noVal.stderr).toMatch(/early_stop watches val\.loss, but there is no validation set/);
  });

  it('--compare adam,sgd,rmsprop: one run per optimizer, their curves on one chart', async () => {
    const curves = join(tmp, 'compare.json');
    const plot = join(tmp, 'compare.svg');
    const r = await dlc('train', ...LINEAR_EXAMPLE, '--epochs', '3', '--val-split', '0.2', '--compare', 'adam,sgd,rmsprop', '--curves', curves, '--plot', plot, '--json');
    expect(r.code, r.stderr).toBe(0);
    const evs = events(r.stdout);
    expect(evs.filter((e) => e.event === 'epoch').map((e) => `${e.run}:${e.epoch}`)).toEqual(['adam:1', 'adam:2', 'adam:3', 'sgd:1', 'sgd:2', 'sgd:3', 'rmsprop:1', 'rmsprop:2', 'rmsprop:3']);
    const c = JSON.parse(readFileSync(curves, 'utf8'));
    expect(c.runs.map((x: { label: string }) => x.label)).toEqual(['adam', 'sgd', 'rmsprop']);
    expect(c.runs[1].optimizer).toEqual({ name: 'sgd', hypers: { lr: 0.01 } });
    // The same seed and data: the first epoch's sgd loss differs from adam's only through the optimizer.
    expect(c.runs[0].epochs[0].train.loss).not.toBe(c.runs[1].epochs[0].train.loss);
    const svg = readFileSync(plot, 'utf8');
    for (const name of ['adam', 'sgd', 'rmsprop']) expect(svg).toContain(`>${name}</text>`);
    expect(existsSync(plot)).toBe(true);
  });
});
