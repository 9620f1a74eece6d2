// Full-batch L-BFGS on the host, driven by the gradient program (Model.gradient).
//
// Every trainable parameter (those the gradient program has a `grad:<name>` output for; frozen
// ones have none and are left alone) is flattened into one Float64 vector x. The objective is the
// mean loss over the WHOLE dataset: the data are run through Model.gradient in consecutive batches
// and each batch's loss and gradient (means over that batch) are summed weighted by its size, so
// the result is the mean loss of every example and its exact gradient, whatever the batch size.
// One such pass is one "evaluation" (loss and gradient always come together).
//
// The direction is Nocedal & Wright's Algorithm 7.4 (two-loop recursion over the last `history`
// pairs s = x_{k+1} - x_k, y = g_{k+1} - g_k, with H0 = (s·y / y·y) I from the newest pair). The step
// length comes from a line search for the STRONG Wolfe conditions (N&W Algorithms 3.5 and 3.6:
// bracketing, then zoom with safeguarded cubic interpolation; c1 = 1e-4, c2 = 0.9). If its
// evaluation budget runs out first, the best point found that satisfies the sufficient-decrease
// (Armijo) condition is taken; a pair whose curvature s·y is not positive is then skipped. Every
// accepted point satisfies Armijo, so the full-batch loss decreases strictly from step to step.
//
// Step length: the first iteration (and any after a reset) tries lr * min(1, 1/|g|) along -g; the
// others try lr (1 is the natural quasi-Newton step). A failed line search along the quasi-Newton
// direction clears the memory and retries once along -g; if that fails too the point is a
// minimum to the precision of the float32 loss and step() reports `converged`.
//
// Each iteration adds 1 to model.step. A gradient program that reads the random key (dropout) sees
// one fixed key per iteration, model.step + 1: the line search's objective is deterministic.
//
// Parameters live on the model in float32: every point the search evaluates is rounded to float32
// first, and x holds those rounded values, so s and y describe exactly the points evaluated.

import type { Tensor } from '../compiler/ops/types.ts';
import type { Dataset } from './dataset.ts';
import { batches } from './dataset.ts';
import type { Model } from './model.ts';

/** The built-in optimizer's hyperparameters (the manifest's `optimizer.hypers` for `lbfgs`; a
 *  missing one takes the compiler's default: history 10, lr 1, iterations 1). */
export type LbfgsHypers = {
  /** Pairs (s, y) kept: the memory of the Hessian approximation. */
  history: number;
  /** Trial step length: lr * min(1, 1/|g|) on the first iteration, lr afterwards. */
  lr: number;
  /** Iterations per lbfgsEpoch call. */
  iterations: number;
};

type Hypers = Readonly<Partial<LbfgsHypers> & Record<string, number>>;
const DEFAULTS: LbfgsHypers = { history: 10, lr: 1, iterations: 1 };
const hyper = (h: Hypers, name: keyof LbfgsHypers): number => (Number.isFinite(h[name]) ? h[name]! : DEFAULTS[name]);

export interface LbfgsOptions {
  /** Rows per Model.gradient call when summing the full-batch loss (default max(train.batch, 256)). */
  batch?: number;
  /** Stop when |g| (Euclidean norm of the full-batch gradient) is at or below this (default 1e-7). */
  gradTol?: number;
  /** Evaluations one line search may take (default 20). */
  maxLineSearch?: number;
}

export interface LbfgsStep {
  /** Full-batch loss at the point the iteration ended on. */
  loss: number;
  /** Full-batch evaluations (loss + gradient) this call made, line search included. */
  evaluations: number;
  /** |g| at the point the iteration ended on. */
  gradNorm: number;
  /** The step length taken (0 when nothing moved). */
  step: number;
  /** Nothing more to do: |g| <= gradTol, or no step along -g decreases the loss. */
  converged: boolean;
}

interface Point {
  x: Float64Array;
  f: number;
  g: Float64Array;
}

const C1 = 1e-4;
const C2 = 0.9;

const dot = (a: Float64Array, b: Float64Array): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
};

/** The minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), clamped to [lo, hi]; the
 *  midpoint when the cubic has no minimum. */
function cubicMin(x1: number, f1: number, g1: number, x2: number, f2: number, g2: number, lo: number, hi: number): number {
  const d1 = g1 + g2 - (3 * (f1 - f2)) / (x1 - x2);
  const sq = d1 * d1 - g1 * g2;
  if (sq >= 0 && Number.isFinite(sq)) {
    const d2 = Math.sqrt(sq) * Math.sign(x2 - x1 || 1);
    const m = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2));
    if (Number.isFinite(m)) return Math.min(Math.max(m, lo), hi);
  }
  return (lo + hi) / 2;
}

export class Lbfgs {
  /** Full-batch evaluations made so far, over every step. */
  evaluations = 0;
  /** Parameter names in x's order, with their offsets and sizes. */
  readonly layout: { name: string; offset: number; size: number; shape: number[] }[];
  readonly size: number;
  private readonly batch: number;
  private readonly gradTol: number;
  private readonly maxLs: number;
  /** Whether the gradient program reads the step's random key or t (dropout): then the objective
   *  changes with model.step and the cached point must be re-evaluated when it does. */
  private readonly stepDependent: boolean;
  private cur?: Point & { step: number };
  private s: Float64Array[] = [];
  private y: Float64Array[] = [];
  /** The vector last written to the model (to skip writing it again). */
  private written?: Float64Array;
  /** The point where no step along -g decreased the loss. */
  private stalled?: Point;

  /** `hypers` is read at every step, so passing `model.hypers` makes run-time changes apply. */
  constructor(
    readonly model: Model,
    readonly data: Dataset,
    readonly hypers: Hypers,
    opts: LbfgsOptions | number = {},
  ) {
    const o = typeof opts === 'number' ? { batch: opts } : opts;
    const p = model.manifest.programs.gradient;
    if (!p) throw new Error(`model '${model.manifest.model}' was compiled without its gradient program (compile with { gradient: true })`);
    if (data.size === 0) throw new Error('L-BFGS needs at least one example');
    const trainable = new Set(p.outputs.filter((out) => out.name.startsWith('grad:')).map((out) => out.name.slice(5)));
    let offset = 0;
    this.layout = model.manifest.params
      .filter((spec) => trainable.has(spec.name))
      .map((spec) => {
        const shape = spec.shape.map((d) => {
          if (typeof d !== 'number') throw new Error(`parameter '${spec.name}' has a run-time dimension`);
          return d;
        });
        const size = shape.reduce((a, b) => a * b, 1);
        const e = { name: spec.name, offset, size, shape };
        offset += size;
        return e;
      });
    this.size = offset;
    this.batch = Math.max(1, Math.min(data.size, o.batch ?? Math.max(model.manifest.train.batch, 256)));
    this.gradTol = o.gradTol ?? 1e-7;
    this.maxLs = Math.max(2, o.maxLineSearch ?? 20);
    this.stepDependent = p.args.some((a) => a.role === 'hyper' && (a.name === 'key' || a.name === 't'));
  }

  /** The current full-batch loss and gradient norm (evaluating them if nothing is cached). */
  async current(): Promise<{ loss: number; gradNorm: number }> {
    const c = await this.sync();
    return { loss: c.f, gradNorm: Math.sqrt(dot(c.g, c.g)) };
  }

  /** Forget the curvature pairs (e.g. after the data changed). */
  reset(): void {
    this.s = [];
    this.y = [];
    this.cur = undefined;
  }

  /** One L-BFGS iteration: direction, line search, update of the memory, parameters written back. */
  async step(): Promise<LbfgsStep> {
    const before = this.evaluations;
    const c = await this.sync();
    const gnorm = Math.sqrt(dot(c.g, c.g));
    const done = (step: number, converged: boolean): LbfgsStep => {
      const p = this.cur!;
      return { loss: p.f, evaluations: this.evaluations - before, gradNorm: Math.sqrt(dot(p.g, p.g)), step, converged };
    };
    if (!(gnorm > this.gradTol) || this.stalled === c) return done(0, true);

    let quasiNewton = this.s.length > 0;
    for (;;) {
      const d = quasiNewton ? this.direction(c.g) : c.g.map((v) => -v);
      const dg = dot(c.g, d);
      // Not a descent direction (rounding in the memory): no search, start over along -g.
      if (dg < 0) {
        const lr = hyper(this.hypers, 'lr');
        const t0 = quasiNewton ? lr : lr * Math.min(1, 1 / gnorm);
        const found = await this.lineSearch(c, d, dg, t0);
        if (found) {
          await this.write(found.p.x);
          const s = found.p.x.map((v, i) => v - c.x[i]);
          const y = found.p.g.map((v, i) => v - c.g[i]);
          const sy = dot(s, y);
          if (sy > 1e-10 * dot(y, y) && sy > 0) {
            this.s.push(s);
            this.y.push(y);
          }
          const keep = Math.max(1, Math.floor(hyper(this.hypers, 'history')));
          while (this.s.length > keep) {
            this.s.shift();
            this.y.shift();
          }
          this.cur = { ...found.p, step: this.model.step };
          this.model.step++;
          if (this.stepDependent) this.cur.step = -1; // the next objective has a new random key
          return done(found.t, false);
        }
        // Nothing along d decreases the loss: the parameters back, then as for no descent.
        await this.write(c.x);
      }
      // Retry along -g once, then give up (until the point or the objective changes).
      if (!quasiNewton) {
        this.stalled = c;
        return done(0, true);
      }
      quasiNewton = false;
      this.s = [];
      this.y = [];
    }
  }

  /** Parameters from the model; (re)evaluates the loss and gradient unless the cached point is
   *  still the model's. Parameters set from outside (setParams, restore) clear the memory. */
  private async sync(): Promise<Point> {
    const params = await this.model.getParams();
    const x = new Float64Array(this.size);
    for (const e of this.layout) x.set(params[e.name].data, e.offset);
    const c = this.cur;
    const same = c !== undefined && c.x.every((v, i) => v === x[i]);
    if (!same) {
      this.s = [];
      this.y = [];
    }
    if (same && (!this.stepDependent || c.step === this.model.step)) return c;
    const p = await this.evaluate(x);
    this.cur = { ...p, step: this.model.step };
    return this.cur;
  }

  /** Two-loop recursion (N&W Algorithm 7.4): -H g. */
  private direction(g: Float64Array): Float64Array {
    const m = this.s.length;
    const q = Float64Array.from(g);
    const alpha = new Float64Array(m);
    const rho = this.s.map((s, i) => 1 / dot(s, this.y[i]));
    for (let i = m - 1; i >= 0; i--) {
      alpha[i] = rho[i] * dot(this.s[i], q);
      const y = this.y[i];
      for (let j = 0; j < q.length; j++) q[j] -= alpha[i] * y[j];
    }
    const sl = this.s[m - 1];
    const yl = this.y[m - 1];
    const gamma = dot(sl, yl) / dot(yl, yl);
    for (let j = 0; j < q.length; j++) q[j] *= gamma;
    for (let i = 0; i < m; i++) {
      const beta = rho[i] * dot(this.y[i], q);
      const s = this.s[i];
      for (let j = 0; j < q.length; j++) q[j] += s[j] * (alpha[i] - beta);
    }
    for (let j = 0; j < q.length; j++) q[j] = -q[j];
    return q;
  }

  /** Strong Wolfe line search from `c` along `d` (dg = g·d < 0), first trial `t0`. Returns the
   *  accepted point, or undefined when no evaluated point satisfies sufficient decrease. */
  private async lineSearch(c: Point, d: Float64Array, dg: number, t0: number): Promise<{ t: number; p: Point } | undefined> {
    const f0 = c.f;
    let evals = 0;
    // The best point satisfying Armijo so far (the fallback when the budget runs out).
    let best: { t: number; p: Point } | undefined;
    const at = async (t: number) => {
      evals++;
      const x = new Float64Array(c.x.length);
      for (let i = 0; i < x.length; i++) x[i] = Math.fround(c.x[i] + t * d[i]);
      const p = await this.evaluate(x);
      const ok = Number.isFinite(p.f);
      const r = { t, p, f: ok ? p.f : Infinity, dg: ok ? dot(p.g, d) : NaN };
      if (ok && r.f <= f0 + C1 * t * dg && r.f < f0 && (!best || r.f < best.p.f)) best = { t, p };
      return r;
    };
    const wolfe = (r: { f: number; dg: number; t: number }) => r.f <= f0 + C1 * r.t * dg && r.f < f0 && Math.abs(r.dg) <= -C2 * dg;

    // Bracketing (N&W Algorithm 3.5).
    let prev = { t: 0, f: f0, dg };
    let t = t0;
    let lo: { t: number; f: number; dg: number };
    let hi: { t: number; f: number; dg: number };
    for (;;) {
      const r = await at(t);
      if (!Number.isFinite(r.f)) {
        // Overflow or NaN: shrink towards the last good point.
        if (evals >= this.maxLs) return best;
        t = prev.t + (t - prev.t) / 10;
        continue;
      }
      if (r.f > f0 + C1 * t * dg || (evals > 1 && r.f >= prev.f)) {
        lo = prev;
        hi = r;
        break;
      }
      if (wolfe(r)) return { t, p: r.p };
      if (r.dg >= 0) {
        lo = r;
        hi = prev;
        break;
      }
      if (evals >= this.maxLs) return best;
      const next = cubicMin(prev.t, prev.f, prev.dg, t, r.f, r.dg, t + 0.01 * (t - prev.t), t * 10);
      prev = r;
      t = next;
    }

    // Zoom (N&W Algorithm 3.6): lo satisfies Armijo and has the lower value; the minimizer lies
    // between lo and hi. An interval below float32's resolution of x has nothing left to find.
    const dn = Math.sqrt(dot(d, d));
    const xn = Math.sqrt(dot(c.x, c.x));
    while (evals < this.maxLs) {
      const a = Math.min(lo.t, hi.t);
      const b = Math.max(lo.t, hi.t);
      const w = b - a;
      if (w * dn < 1e-8 * (1 + xn)) break;
      let tz = Number.isFinite(hi.f) ? cubicMin(lo.t, lo.f, lo.dg, hi.t, hi.f, hi.dg, a, b) : (a + b) / 2;
      tz = Math.min(Math.max(tz, a + 0.1 * w), b - 0.1 * w); // stay clear of the ends
      const r = await at(tz);
      if (!Number.isFinite(r.f) || r.f > f0 + C1 * tz * dg || r.f >= lo.f) {
        hi = r;
      } else {
        if (wolfe(r)) return { t: tz, p: r.p };
        if (r.dg * (hi.t - lo.t) >= 0) hi = lo;
        lo = r;
      }
    }
    return best;
  }

  /** Full-batch loss and gradient at x (rounded to float32 by the model), x written to the model. */
  private async evaluate(x: Float64Array): Promise<Point> {
    await this.write(x);
    this.evaluations++;
    const n = this.data.size;
    const g = new Float64Array(this.size);
    let f = 0;
    const order = Int32Array.from({ length: n }, (_, i) => i);
    for (const b of batches(this.data, this.batch, order)) {
      const rows = Object.values(b)[0].shape[0];
      const w = rows / n;
      const r = await this.model.gradient(b);
      f += r.loss * w;
      for (const e of this.layout) {
        const gt = r.grads[e.name].data;
        for (let i = 0; i < e.size; i++) g[e.offset + i] += gt[i] * w;
      }
    }
    return { x, f, g };
  }

  private async write(x: Float64Array): Promise<void> {
    if (x === this.written) return;
    this.written = x;
    const byName: Record<string, Tensor> = {};
    for (const e of this.layout) byName[e.name] = { data: Float32Array.from(x.subarray(e.offset, e.offset + e.size)), shape: e.shape };
    this.model.setParams(byName);
  }
}

const running = new WeakMap<Model, Lbfgs>();

/**
 * One epoch of L-BFGS: `hypers.iterations` iterations on the whole of `data` (fewer once converged).
 * Returns the full-batch loss at the end. The memory of curvature pairs is kept between calls for
 * the same model and dataset (a new dataset, or parameters changed from outside, start afresh).
 */
export async function lbfgsEpoch(model: Model, data: Dataset, hypers: Hypers = model.hypers, opts: LbfgsOptions = {}): Promise<number> {
  let opt = running.get(model);
  if (!opt || opt.data !== data || opt.hypers !== hypers) {
    opt = new Lbfgs(model, data, hypers, opts);
    running.set(model, opt);
  }
  let loss = (await opt.current()).loss;
  for (let i = 0; i < Math.max(1, Math.floor(hyper(hypers, 'iterations'))); i++) {
    const r = await opt.step();
    loss = r.loss;
    if (r.converged) break;
  }
  return loss;
}
