// End to end: the `dlc` command as a user runs it (`node bin/dlc.js ...` in a subprocess).
// Diagnostics with file:line:col, source line and caret; shape errors naming both shapes and where
// each came from; "did you mean"; one-line errors for usage and data mistakes (never a stack
// trace); the bundle `dlc compile` writes; and `dlc train --json` on .json and .csv data.

import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { rng } from '../runtime/random.ts';
import { dlc, type Run } from './support/cli.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const fixture = (name: string) => join(ROOT, 'tests', 'fixtures', name);


/** No JavaScript stack trace or raw exception in what the user sees. */
function expectNoStackTrace(text: string): void {
  expect(text).not.toMatch(/^\s+at /m);
  expect(text).not.toMatch(/\b[A-Za-z]*Error:/);
  expect(text).not.toMatch(/node:internal|Node\.js v\d/);
}

/** A user mistake outside any .dlm source: exactly one line, `dlc: ...`. */
function expectOneLineError(r: Run, ...mentions: string[]): void {
  expect(r.code).toBe(1);
  expectNoStackTrace(r.stderr);
  const lines = r.stderr.trim().split('\n');
  expect(lines, r.stderr).toHaveLength(1);
  for (const m of mentions) expect(lines[0]).toContain(m);
}

interface Located {
  file: string;
  line: number;
  col: number;
  message: string;
  /** The source line the excerpt shows, and the caret line under it. */
  source: string;
  caret: string;
}

/**
 * Parses `file:line:col: <kind>: message` headers and the excerpt after each:
 *   ` |` / `N | source` / ` | ^^^`. Checks the excerpt's line number matches the header.
 */
function located(stderr: string, kind: RegExp): Located[] {
  const lines = stderr.split('\n');
  const out: Located[] = [];
  lines.forEach((l, i) => {
    const m = /^(.+?):(\d+):(\d+): (.+?): (.*)$/.exec(l);
    if (!m || !kind.test(m[4])) return;
    const src = /^(\d+) \| (.*)$/.exec(lines[i + 2] ?? '');
    const car = /^ +\| (.*)$/.exec(lines[i + 3] ?? '');
    expect(lines[i + 1], `excerpt gutter after ${l}`).toMatch(/^ +\|$/);
    expect(src, `source line after ${l}`).not.toBeNull();
    expect(car, `caret line after ${l}`).not.toBeNull();
    expect(Number(src![1])).toBe(Number(m[2]));
    out.push({ file: m[1], line: Number(m[2]), col: Number(m[3]), message: m[5], source: src![2], caret: car![1] });
  });
  return out;
}

/** The caret starts exactly under column `col` of the shown line, and that is the file's real line. */
function expectCaretAt(d: Located): void {
  const text = readFileSync(d.file, 'utf8').split('\n')[d.line - 1];
  expect(d.source).toBe(text);
  expect(d.caret.indexOf('^')).toBe(d.col - 1);
  expect(d.caret.slice(0, d.col - 1).trim()).toBe('');
  expect(d.caret.slice(d.col - 1)).toMatch(/^\^+$/);
}

const tmp = mkdtempSync(join(tmpdir(), 'dlc-e2e-cli-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe.concurrent('dlc check: diagnostics', () => {
  it('reports all three syntax errors, each with file:line:col, the source line and a caret', async () => {
    const file = fixture('three_syntax_errors.dlm');
    const r = await dlc('check', file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expectNoStackTrace(r.stderr);
    const errors = located(r.stderr, /^error/);
    expect(errors.map((e) => e.file)).toEqual([file, file, file]);
    expect(errors.map((e) => e.line)).toEqual([4, 5, 6]);
    for (const e of errors) expectCaretAt(e);
    // The caret sits on the offending token: `)` after `3 +`, the second `,`, the extra `)`.
    expect(errors.map((e) => e.source[e.col - 1])).toEqual([')', ',', ')']);
    expect(errors[0].source.slice(0, errors[0].col - 1)).toMatch(/\+\s*$/);
    expect(errors[1].source.slice(0, errors[1].col - 1)).toMatch(/,\s*$/);
    expect(errors[2].source.slice(0, errors[2].col - 1)).toMatch(/\)$/);
    // Each says what was expected.
    for (const e of errors) expect(e.message).toMatch(/expected/);
    expect(r.stderr).toMatch(/^3 errors$/m);
  });

  it('a broadcast mismatch names both shapes and where each came from', async () => {
    const file = fixture('shape_broadcast.dlm');
    const r = await dlc('check', file);
    expect(r.code).toBe(1);
    expectNoStackTrace(r.stderr);
    const [e, ...more] = located(r.stderr, /^error/);
    expect(more).toEqual([]);
    expect(e.file).toBe(file);
    expect(e.line).toBe(5);
    expectCaretAt(e);
    expect(e.source.slice(e.col - 1)).toMatch(/^h \+ x/);
    expect(e.message).toContain('[B, 5]');
    expect(e.message).toContain('[B, 10]');
    // Related spans: one note per operand, each with its shape and its own excerpt.
    const notes = located(r.stderr, /^note$/);
    for (const n of notes) expectCaretAt(n);
    const of5 = notes.find((n) => n.message.includes('[B, 5]'));
    const of10 = notes.find((n) => n.message.includes('[B, 10]'));
    expect(of5, r.stderr).toBeDefined();
    expect(of10, r.stderr).toBeDefined();
    // x: f32[B, 10] comes from the input declaration on line 3 of the model's file.
    expect(of10!.file).toBe(file);
    expect(of10!.line).toBe(3);
    expect(of10!.source).toContain('input x');
    // [B, 5] comes from the dense layer (its body, or the call on line 4).
    expect(of5!.file === file ? of5!.line === 4 : /layers\.dlm$/.test(of5!.file)).toBe(true);
  });

  it('a matmul mismatch names both shapes and where each came from', async () => {
    const file = fixture('shape_matmul.dlm');
    const r = await dlc('check', file);
    expect(r.code).toBe(1);
    expectNoStackTrace(r.stderr);
    const [e, ...more] = located(r.stderr, /^error/);
    expect(more).toEqual([]);
    expect([e.file, e.line]).toEqual([file, 5]);
    expectCaretAt(e);
    expect(e.source.slice(e.col - 1)).toMatch(/^x @ w/);
    expect(e.message).toContain('[B, 10]');
    expect(e.message).toContain('[7, 5]');
    const notes = located(r.stderr, /^note$/);
    for (const n of notes) expectCaretAt(n);
    const where = (shape: string) => notes.find((n) => n.message.includes(shape));
    expect(where('[B, 10]')).toMatchObject({ file, line: 3 });
    expect(where('[7, 5]')).toMatchObject({ file, line: 4 });
  });

  it("suggests the closest known name: 'rleu' → did you mean 'relu'", async () => {
    const file = fixture('unknown_name.dlm');
    const r = await dlc('check', file);
    expect(r.code).toBe(1);
    expectNoStackTrace(r.stderr);
    const [e] = located(r.stderr, /^error/);
    expect([e.file, e.line]).toEqual([file, 4]);
    expectCaretAt(e);
    expect(e.source.slice(e.col - 1, e.col - 1 + 4)).toBe('rleu');
    expect(e.message).toContain("'rleu'");
    expect(r.stderr).toContain("did you mean 'relu'");
  });

  it('a good file: exit 0', async () => {
    const r = await dlc('check', fixture('logreg.dlm'));
    expect(r.code).toBe(0);
    expect(r.stderr.trim()).toBe('ok');
  });
});

describe.concurrent('dlc: usage and data mistakes are one plain line, exit 1', () => {
  it('check on a missing file', async () => {
    const missing = join(tmp, 'no_such_model.dlm');
    expectOneLineError(await dlc('check', missing), missing);
  });

  it('compile and train on a missing model file', async () => {
    const missing = join(tmp, 'no_such_model.dlm');
    expectOneLineError(await dlc('compile', missing, '-o', join(tmp, 'never')), missing);
    expect(existsSync(join(tmp, 'never'))).toBe(false);
    expectOneLineError(await dlc('train', missing, '--data', 'mnist', '--backend', 'cpu'), missing);
  });

  it('train with a missing --data file', async () => {
    const missing = join(tmp, 'no_such_data.json');
    expectOneLineError(await dlc('train', fixture('logreg.dlm'), '--data', missing, '--backend', 'cpu'), missing);
  });

  it('train with a bad --backend', async () => {
    expectOneLineError(await dlc('train', fixture('logreg.dlm'), '--data', 'mnist', '--backend', 'tpu'), "'tpu'", 'cpu');
  });
});

describe.concurrent('dlc compile', () => {
  it('writes manifest.json, kernels/*.wgsl, model.js, model.d.ts and package.json', async () => {
    const out = join(tmp, 'bundle');
    const r = await dlc('compile', join(ROOT, 'examples', 'mnist_mlp.dlm'), '-o', out);
    expect(r.code, r.stderr).toBe(0);
    expectNoStackTrace(r.stderr);
    for (const f of ['manifest.json', 'model.js', 'model.d.ts', 'package.json']) expect(existsSync(join(out, f)), f).toBe(true);

    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m.model).toBe('mnist_mlp');
    expect(m.params.map((p: { name: string; shape: number[] }) => [p.name, p.shape])).toEqual([
      ['h.dense_0.w', [784, 256]],
      ['h.dense_0.b', [256]],
      ['h.dense_1.w', [256, 128]],
      ['h.dense_1.b', [128]],
      ['logits.w', [128, 10]],
      ['logits.b', [10]],
    ]);
    expect(m.inputs).toEqual([
      { name: 'x', dtype: 'f32', shape: ['B', 784] },
      { name: 'y', dtype: 'i32', shape: ['B'] },
    ]);
    expect(m.outputs.map((o: { name: string }) => o.name)).toEqual(['probs', 'pred']);
    expect(m.metrics).toEqual(['accuracy']);
    expect(Object.keys(m.programs)).toEqual(expect.arrayContaining(['init', 'train', 'evaluate', 'predict']));

    // Every kernel a program names is a .wgsl file with a compute entry point, and nothing else is.
    const named = new Set<string>();
    for (const p of Object.values(m.programs) as { kernels: { name: string; wgsl: string }[] }[]) for (const k of p.kernels) named.add(k.name);
    const files = readdirSync(join(out, 'kernels'));
    expect(files.length).toBeGreaterThan(0);
    expect(files.every((f) => f.endsWith('.wgsl'))).toBe(true);
    expect(new Set(files.map((f) => f.replace(/\.wgsl$/, '')))).toEqual(named);
    for (const f of files) expect(readFileSync(join(out, 'kernels', f), 'utf8')).toMatch(/@compute/);
    // The train program computes each dense layer's products in its kernels: matmuls (some merged
    // with their readers, codegen/merge.ts) and matmul epilogues.
    type N = { op: string; attrs: { matmul?: string }; kernel?: number; by?: number };
    const products = m.programs.train.nodes.filter((n: N) => n.op === 'matmul' || n.attrs.matmul);
    expect(products.length).toBeGreaterThanOrEqual(3);
    expect(products.every((n: N) => n.kernel !== undefined || n.by !== undefined)).toBe(true);

    const js = readFileSync(join(out, 'model.js'), 'utf8');
    expect(js).toMatch(/export\s*\{[^}]*createModel/);
    expect(js).not.toMatch(/from\s*['"][^'"]+['"]/); // self-contained: imports nothing
    const dts = readFileSync(join(out, 'model.d.ts'), 'utf8');
    expect(dts).toContain('createModel');
    expect(dts).toMatch(/"x": Float32Array/);
    expect(dts).toMatch(/"y": Int32Array/);
    expect(dts).toMatch(/"probs": Tensor<Float32Array>/);
    const pkg = JSON.parse(readFileSync(join(out, 'package.json'), 'utf8'));
    expect(pkg).toMatchObject({ name: 'mnist_mlp', type: 'module', main: 'model.js', types: 'model.d.ts' });
  });
});

// ---------------------------------------------------------------- dlc train --json


/** Two Gaussian-ish blobs, linearly separable with a margin: label = [x0 + 0.5 x1 > 0.3]. */
function blobs(n: number, seed: number): { x: number[][]; y: number[] } {
  const r = rng(seed);
  const x: number[][] = [];
  const y: number[] = [];
  while (y.length < n) {
    const a = 4 * r() - 2, b = 4 * r() - 2;
    const s = a + 0.5 * b - 0.3;
    if (Math.abs(s) < 0.2) continue;
    x.push([a, b]);
    y.push(s > 0 ? 1 : 0);
  }
  return { x, y };
}

/** t = x · [2, -1, 0.5] + 0.3 + small noise. */
function linear(n: number, seed: number): { x: number[][]; t: number[][] } {
  const r = rng(seed);
  const x = Array.from({ length: n }, () => [2 * r() - 1, 2 * r() - 1, 2 * r() - 1]);
  const t = x.map(([a, b, c]) => [2 * a - b + 0.5 * c + 0.3 + 0.01 * (r() - 0.5)]);
  return { x, t };
}

interface Epoch {
  event: 'epoch';
  epoch: number;
  train: Record<string, number>;
  ms: number;
}

function events(stdout: string): Record<string, unknown>[] {
  const lines = stdout.trim().split('\n');
  return lines.map((l) => {
    try {
      return JSON.parse(l);
    } catch {
      throw new Error(`stdout line is not JSON: ${l}`);
    }
  });
}

function expectEpochs(evs: Record<string, unknown>[], n: number, metrics: string[]): Epoch[] {
  const epochs = evs.slice(0, n) as unknown as Epoch[];
  epochs.forEach((e, i) => {
    expect(e.event).toBe('epoch');
    expect(e.epoch).toBe(i + 1);
    expect(Object.keys(e.train).sort()).toEqual(['loss', ...metrics].sort());
    for (const v of Object.values(e.train)) expect(Number.isFinite(v)).toBe(true);
    expect(typeof e.ms).toBe('number');
    expect(e.ms).toBeGreaterThanOrEqual(0);
  });
  for (let i = 1; i < n; i++) expect(epochs[i].train.loss, `loss of epoch ${i + 1}`).toBeLessThan(epochs[i - 1].train.loss);
  return epochs;
}

describe.concurrent('dlc train --json', () => {
  it('trains logistic regression from .json data with a .csv test split: epochs, then done', async () => {
    const train = blobs(256, 1);
    const test = blobs(64, 2);
    const trainFile = join(tmp, 'blobs_train.json');
    const testFile = join(tmp, 'blobs_test.csv');
    writeFileSync(trainFile, JSON.stringify(train));
    writeFileSync(testFile, ['x.0,x.1,y', ...test.x.map(([a, b], i) => `${a},${b},${test.y[i]}`)].join('\n') + '\n');

    const r = await dlc('train', fixture('logreg.dlm'), '--data', trainFile, '--test', testFile, '--backend', 'cpu', '--epochs', '3', '--json');
    expect(r.code, r.stderr).toBe(0);
    expectNoStackTrace(r.stderr);
    const evs = events(r.stdout);
    expect(evs).toHaveLength(4);
    const epochs = expectEpochs(evs, 3, ['accuracy']);
    const done = evs[3] as { event: string; backend: string; train: Record<string, number>; test: Record<string, number> };
    expect(done.event).toBe('done');
    expect(done.backend).toBe('cpu');
    expect(done.train).toEqual(epochs[2].train);
    expect(Object.keys(done.test).sort()).toEqual(['accuracy', 'loss']);
    expect(done.test.loss).toBeLessThan(Math.log(2)); // better than chance
    expect(done.test.accuracy).toBeGreaterThan(0.9);
  });

  it('trains linear regression (mse) from .csv data; no test split, no test stats', async () => {
    const data = linear(200, 3);
    const file = join(tmp, 'linear.csv');
    writeFileSync(file, ['t.0,x.0,x.1,x.2', ...data.x.map((x, i) => `${data.t[i][0]},${x.join(',')}`)].join('\n') + '\n');
    const r = await dlc('train', resolve(fixture('linreg.dlm')), '--data', file, '--backend', 'cpu', '--epochs', '3', '--json');
    expect(r.code, r.stderr).toBe(0);
    expectNoStackTrace(r.stderr);
    const evs = events(r.stdout);
    expect(evs).toHaveLength(4);
    const epochs = expectEpochs(evs, 3, ['mae']);
    expect(epochs[2].train.loss).toBeLessThan(epochs[0].train.loss / 2);
    expect(evs[3]).toEqual({ event: 'done', backend: 'cpu', train: epochs[2].train });
  });
});
