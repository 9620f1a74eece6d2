// `dlc gradcheck`: the numerical gradient check as a user tool. The model is compiled with its
// gradient program and run on the CPU in float64 (runCpu with Float64Array, not the float32 Model):
// at a few random points (parameters from the init program under different seeds) and a small
// batch, each trainable parameter tensor's analytic gradient is compared with centered finite
// differences of the same program's loss, along one random unit direction and on a few random
// coordinates. The worst relative error |a - n| / max(|a|, |n|) is put in CS231n's bands.
//
// - The numerical derivative is Richardson's extrapolation of centered differences with steps h
//   and h/2 (error O(h^4)), so h can be 1e-4 and float64 rounding stays far below the bands.
// - A difference within the rounding of the finite difference itself (about eps·|f| / h) counts
//   as agreement: a coordinate whose gradient is ~0 would otherwise look "wrong".
// - Kinks (relu, max, abs at a tie): a smooth function's second difference f(h) - 2f(0) + f(-h)
//   shrinks 4x when h halves; one crossing a kink shrinks 2x (kink at the point) or collapses (kink
//   between h/2 and h). There the finite difference itself is unreliable: the verdict is capped at
//   "suspicious" and marked (kink).

import { readFileSync } from 'node:fs';
import { compile } from '../compiler/compile.ts';
import { format, hasErrors } from '../compiler/diagnostics.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { runCpu } from '../runtime/cpu.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rows, type Dataset } from '../runtime/dataset.ts';
import type { Manifest } from '../runtime/program.ts';
import { permutation, rng } from '../runtime/random.ts';
import { numel } from '../runtime/shapes.ts';
import { DataError, loadFile, mnist } from './data.ts';

export type Verdict = 'good' | 'ok' | 'suspicious' | 'wrong';
const ORDER: Verdict[] = ['good', 'ok', 'suspicious', 'wrong'];

/** The finite-difference step (a coordinate's is scaled by max(1, |value|)). */
const H = 1e-4;

/** CS231n's bands for a relative error: < 1e-7 good, < 1e-5 ok, < 1e-2 suspicious, else wrong
 *  (NaN too). */
export function band(err: number): Verdict {
  if (!(err < 1e-2)) return 'wrong';
  if (err < 1e-7) return 'good';
  if (err < 1e-5) return 'ok';
  return 'suspicious';
}

/** The worse of the verdicts ('good' for none). */
export function worst(verdicts: Iterable<Verdict>): Verdict {
  let w = 0;
  for (const v of verdicts) w = Math.max(w, ORDER.indexOf(v));
  return ORDER[w];
}

/** |a - n| / max(|a|, |n|); 0 when both are 0, NaN when either is not finite. */
export function relativeError(analytic: number, numeric: number): number {
  if (!Number.isFinite(analytic) || !Number.isFinite(numeric)) return NaN;
  const d = Math.abs(analytic - numeric);
  return d === 0 ? 0 : d / Math.max(Math.abs(analytic), Math.abs(numeric));
}

export interface Check {
  analytic: number;
  numeric: number;
  error: number;
  /** The finite difference crossed a kink: the verdict is capped at 'suspicious'. */
  kink: boolean;
  verdict: Verdict;
}

/** Float64 rounding of a computed loss, as a multiple of eps·|f|. */
const ROUNDING = 8 * Number.EPSILON;

/** Checks `analytic` = φ'(0) for φ(t) = the loss at the point moved by t along some direction;
 *  `f0` = φ(0). The numerical derivative is Richardson's extrapolation of the centered differences
 *  with steps h and h/2, (4·D(h/2) - D(h)) / 3, whose error is O(h^4). */
export function checkDirection(phi: (t: number) => number, f0: number, analytic: number, h: number): Check {
  const fp = phi(h);
  const fm = phi(-h);
  const fp2 = phi(h / 2);
  const fm2 = phi(-h / 2);
  const d1 = (fp - fm) / (2 * h);
  const d2 = (fp2 - fm2) / h;
  const numeric = (4 * d2 - d1) / 3;
  const delta = ROUNDING * Math.max(Math.abs(f0), Math.abs(fp), Math.abs(fm), Math.abs(fp2), Math.abs(fm2));
  let error = relativeError(analytic, numeric);
  // A difference within the rounding of the finite difference itself is agreement.
  let verdict: Verdict = Math.abs(analytic - numeric) <= (3 * delta) / h ? 'good' : band(error);
  let kink = false;
  if ((verdict === 'suspicious' || verdict === 'wrong') && Number.isFinite(numeric)) {
    // Second differences: a smooth φ gives s1 = 4·s2 (to O(h^4)); a kink does not.
    const s1 = fp - 2 * f0 + fm;
    const s2 = fp2 - 2 * f0 + fm2;
    kink = Math.abs(s1 - 4 * s2) > 0.1 * Math.abs(s1) + 40 * delta;
    if (kink) {
      error = Math.min(error, relativeError(analytic, d1), relativeError(analytic, d2));
      verdict = band(error) === 'wrong' ? 'suspicious' : band(error);
    }
  }
  return { analytic, numeric, error, kink: kink && (verdict === 'suspicious' || verdict === 'wrong'), verdict };
}

/** The loss (and gradients by parameter name) at a point: parameters by name, in float64. */
export type Objective = (params: Readonly<Record<string, Float64Array>>) => { loss: number; grads: Record<string, Float64Array> };

export interface TensorResult {
  name: string;
  shape: number[];
  /** Worst relative error along a random direction, over the points. */
  direction: number;
  /** Worst relative error over the random coordinates, over the points. */
  coordinates: number;
  error: number;
  kink: boolean;
  verdict: Verdict;
}

/** Checks every tensor of `params` (those `fn` returns a gradient for) at one point. */
export function checkPoint(fn: Objective, params: Readonly<Record<string, Float64Array>>, shapes: Record<string, number[]>, o: { coords: number; next: () => number; h?: number }): TensorResult[] {
  const h = o.h ?? H;
  const at = fn(params);
  const f0 = at.loss;
  const gauss = () => Math.sqrt(-2 * Math.log(1 - o.next())) * Math.cos(2 * Math.PI * o.next());
  return Object.keys(at.grads).map((name) => {
    const theta = params[name];
    const g = at.grads[name];
    const n = theta.length;
    const moved = (change: (x: Float64Array, t: number) => void) => (t: number) => {
      const x = Float64Array.from(theta);
      change(x, t);
      return fn({ ...params, [name]: x }).loss;
    };
    const checks: { check: Check; kind: 'direction' | 'coordinate' }[] = [];
    // One random unit direction.
    const v = Float64Array.from({ length: n }, gauss);
    const norm = Math.sqrt(v.reduce((s, a) => s + a * a, 0)) || 1;
    for (let i = 0; i < n; i++) v[i] /= norm;
    let gv = 0;
    for (let i = 0; i < n; i++) gv += g[i] * v[i];
    const along = moved((x, t) => {
      for (let i = 0; i < n; i++) x[i] += t * v[i];
    });
    checks.push({ check: checkDirection(along, f0, gv, h), kind: 'direction' });
    // A few random coordinates (distinct when the tensor has enough of them).
    const picks = n <= o.coords ? Array.from({ length: n }, (_, i) => i) : [...permutation(n, o.next).subarray(0, o.coords)];
    for (const i of picks) {
      const hi = h * Math.max(1, Math.abs(theta[i]));
      const one = moved((x, t) => {
        x[i] += t;
      });
      checks.push({ check: checkDirection(one, f0, g[i], hi), kind: 'coordinate' });
    }
    const maxOf = (kind: string) => Math.max(0, ...checks.filter((c) => c.kind === kind).map((c) => (Number.isNaN(c.check.error) ? Infinity : c.check.error)));
    return {
      name,
      shape: shapes[name] ?? [n],
      direction: maxOf('direction'),
      coordinates: maxOf('coordinate'),
      error: Math.max(maxOf('direction'), maxOf('coordinate')),
      kink: checks.some((c) => c.check.kink),
      verdict: worst(checks.map((c) => c.check.verdict)),
    };
  });
}

/** Results of several points merged per tensor: worst error and verdict. */
export function merge(points: TensorResult[][]): TensorResult[] {
  const out = new Map<string, TensorResult>();
  for (const results of points) {
    for (const r of results) {
      const p = out.get(r.name);
      if (!p) out.set(r.name, { ...r });
      else {
        p.direction = Math.max(p.direction, r.direction);
        p.coordinates = Math.max(p.coordinates, r.coordinates);
        p.error = Math.max(p.error, r.error);
        p.kink ||= r.kink;
        p.verdict = worst([p.verdict, r.verdict]);
      }
    }
  }
  return [...out.values()];
}

export interface GradcheckOptions {
  seed: number;
  points: number;
  batch: number;
  coords: number;
  /** Rows to draw each point's batch from; random inputs when absent. */
  data?: Dataset;
}

export interface GradcheckReport {
  model: string;
  seed: number;
  points: number;
  batch: number;
  coordinates: number;
  h: number;
  params: TensorResult[];
  verdict: Verdict;
}


/** The gradient check of a manifest compiled with its gradient program. */
export function gradcheck(manifest: Manifest, o: GradcheckOptions): GradcheckReport {
  const program = manifest.programs.gradient;
  if (!program) throw new Error(`model '${manifest.model}' was compiled without its gradient program`);
  const shapes = Object.fromEntries(manifest.params.map((p) => [p.name, p.shape.map(Number)]));
  const results: TensorResult[][] = [];
  for (let k = 0; k < o.points; k++) {
    const seed = o.seed + k;
    const next = rng(seed * 7919 + 17);
    const init = runCpu(manifest.programs.init, cpuKernels, { 'hyper:key': { data: new Int32Array([seed, 0]), shape: [2] } }, Float64Array).updates;
    const fixed: Record<string, Tensor> = { ...init, ...batchFeeds(manifest, o, next) };
    fixed['hyper:key'] = { data: new Int32Array([seed, 1]), shape: [2] };
    fixed['hyper:t'] = { data: new Float64Array([1]), shape: [] };
    for (const [name, v] of Object.entries(manifest.optimizer.hypers)) fixed[`hyper:${name}`] ??= { data: new Float64Array([v]), shape: [] };
    const trainable = program.outputs.filter((out) => out.name.startsWith('grad:')).map((out) => out.name.slice(5));
    const params = Object.fromEntries(trainable.map((name) => [name, Float64Array.from(init[`param:${name}`].data)]));
    const fn: Objective = (p) => {
      const feeds = { ...fixed };
      for (const [name, data] of Object.entries(p)) feeds[`param:${name}`] = { data, shape: shapes[name] };
      const r = runCpu(program, cpuKernels, feeds, Float64Array).outputs;
      const grads: Record<string, Float64Array> = {};
      for (const name of trainable) {
        const d = r[`grad:${name}`].data;
        grads[name] = d instanceof Float64Array ? d : Float64Array.from(d);
      }
      return { loss: r.loss.data[0], grads };
    };
    results.push(checkPoint(fn, params, shapes, { coords: o.coords, next, h: H }));
  }
  const params = merge(results);
  return { model: manifest.model, seed: o.seed, points: o.points, batch: o.batch, coordinates: o.coords, h: H, params, verdict: worst(params.map((p) => p.verdict)) };
}

/** The model's inputs for one point: `batch` random rows of the data, or random values (f32 in
 *  [-1, 1], i32 and bool in {0, 1}; every run-time dimension is `batch`). */
function batchFeeds(manifest: Manifest, o: GradcheckOptions, next: () => number): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  if (o.data) {
    const n = Math.min(o.batch, o.data.size);
    const picked = rows(o.data, permutation(o.data.size, next).subarray(0, n));
    for (const spec of manifest.inputs) {
      const t = picked[spec.name];
      if (!t) throw new DataError(`the data has no column for input '${spec.name}'`);
      out[`input:${spec.name}`] = spec.dtype === 'f32' ? { data: Float64Array.from(t.data), shape: t.shape } : t;
    }
    return out;
  }
  for (const spec of manifest.inputs) {
    const shape = spec.shape.map((d) => (typeof d === 'number' ? d : o.batch));
    const size = numel(shape);
    out[`input:${spec.name}`] = spec.dtype === 'f32'
      ? { data: Float64Array.from({ length: size }, () => 2 * next() - 1), shape }
      : { data: Int32Array.from({ length: size }, () => (next() < 0.5 ? 0 : 1)), shape };
  }
  return out;
}

const exp = (v: number) => (v === 0 ? '0' : Number.isFinite(v) ? v.toExponential(1) : String(v));

/** The report as a table. */
export function formatReport(r: GradcheckReport): string {
  const head = ['parameter', 'shape', 'direction', 'coordinates', 'verdict'];
  const body = r.params.map((p) => [p.name, `[${p.shape.join(', ')}]`, exp(p.direction), exp(p.coordinates), p.verdict + (p.kink ? ' (kink)' : '')]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (row: string[]) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ');
  const lines = [
    `${r.model}: gradient check in float64, ${r.points} point${r.points === 1 ? '' : 's'} (seed ${r.seed}${r.points > 1 ? `..${r.seed + r.points - 1}` : ''}), batch ${r.batch}, ` +
      `one random direction and ${r.coordinates} coordinate${r.coordinates === 1 ? '' : 's'} per tensor, h = ${r.h}`,
    line(head),
    ...body.map(line),
    `relative error |a - n| / max(|a|, |n|): good < 1e-7 <= ok < 1e-5 <= suspicious < 1e-2 <= wrong`,
  ];
  if (r.params.some((p) => p.kink)) lines.push('(kink): the finite difference crossed a non-differentiable point (relu, max, abs at a tie); capped at suspicious');
  if (!r.params.length) lines.push('no trainable parameters: nothing to check');
  lines.push(`overall: ${r.verdict}`);
  return lines.join('\n');
}

export interface GradcheckCli {
  data?: string;
  seed?: number;
  points: number;
  batch: number;
  coords: number;
  json?: boolean;
}

/** `dlc gradcheck FILE`: prints the table (or one JSON object); returns the exit code (1 when a
 *  tensor is 'wrong' or the model does not compile). */
export function gradcheckCommand(file: string, o: GradcheckCli): number {
  const r = compile(file, (p) => readFileSync(p, 'utf8'), { gradient: true });
  for (const d of r.diagnostics) process.stderr.write(format(d, r.sources) + '\n');
  if (hasErrors(r.diagnostics) || !r.manifest) {
    const n = r.diagnostics.filter((d) => d.severity === 'error').length;
    process.stderr.write(`${n} error${n === 1 ? '' : 's'}\n`);
    return 1;
  }
  const manifest = r.manifest;
  if (o.points < 1) throw new DataError('--points must be at least 1');
  if (o.batch < 1) throw new DataError('--batch must be at least 1');
  const seed = o.seed ?? manifest.train.seed;
  let data: Dataset | undefined;
  if (o.data === 'mnist') data = mnist(manifest.inputs, seed).train;
  else if (o.data) data = loadFile(o.data, manifest.inputs);
  if (data && data.size === 0) throw new DataError(`'${o.data}' holds no examples`);
  const report = gradcheck(manifest, { seed, points: o.points, batch: o.batch, coords: o.coords, data });
  if (o.json) console.log(JSON.stringify(report));
  else console.log(formatReport(report));
  return report.verdict === 'wrong' ? 1 : 0;
}
