// `dlc gradcheck` (cli/gradcheck.ts): the verdict logic on functions whose derivatives are known
// (bands, rounding, kinks, a deliberately wrong gradient), then the command as a user runs it: the
// MNIST MLP is all good, a model sitting on relu and abs kinks is at worst suspicious, and a model
// whose compiled gradient is really wrong at a tie fails with exit code 1.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { band, checkDirection, checkPoint, merge, relativeError, worst, type GradcheckReport, type Objective } from '../cli/gradcheck.ts';
import { rng } from '../runtime/random.ts';
import { dlc } from './support/cli.ts';



describe('verdict logic', () => {
  it('puts relative errors in the CS231n bands', () => {
    expect([0, 9e-8, 1e-7, 9e-6, 1e-5, 9e-3, 1e-2, 0.5, NaN, Infinity].map(band)).toEqual([
      'good', 'good', 'ok', 'ok', 'suspicious', 'suspicious', 'wrong', 'wrong', 'wrong', 'wrong',
    ]);
    expect(worst([])).toBe('good');
    expect(worst(['ok', 'good', 'suspicious'])).toBe('suspicious');
    expect(worst(['wrong', 'ok'])).toBe('wrong');
    expect(relativeError(0, 0)).toBe(0);
    expect(relativeError(1, 1.5)).toBeCloseTo(1 / 3, 12);
    expect(relativeError(-1, 1)).toBe(2);
    expect(relativeError(NaN, 1)).toBeNaN();
  });

  const smooth = (t: number) => Math.exp(t) + t * t; // f'(0) = 1

  it('grades an analytic derivative against the finite difference of a smooth function', () => {
    const h = 1e-4;
    const right = checkDirection(smooth, smooth(0), 1, h);
    expect(right.verdict).toBe('good');
    expect(right.error).toBeLessThan(1e-10);
    expect(checkDirection(smooth, smooth(0), 1 + 1e-6, h).verdict).toBe('ok');
    expect(checkDirection(smooth, smooth(0), 1.001, h).verdict).toBe('suspicious');
    const wrong = checkDirection(smooth, smooth(0), 2, h);
    expect(wrong).toMatchObject({ verdict: 'wrong', kink: false });
    expect(wrong.numeric).toBeCloseTo(1, 9);
    expect(checkDirection(smooth, smooth(0), NaN, h).verdict).toBe('wrong');
  });

  it('counts a difference at the rounding level of the loss as agreement', () => {
    // A tiny true derivative under a large loss: the finite difference is all rounding.
    const f = (t: number) => 1e3 + 1e-13 * t;
    expect(checkDirection(f, f(0), 1e-13, 1e-4).verdict).toBe('good');
    expect(checkDirection(f, f(0), 0, 1e-4).verdict).toBe('good');
  });

  it('caps a check across a kink at suspicious, and sees past a kink it can avoid', () => {
    const h = 1e-4;
    // relu at its kink: the analytic 1 (the tie's convention) vs the centered 0.5.
    const relu = (t: number) => Math.max(t, 0);
    expect(checkDirection(relu, 0, 1, h)).toMatchObject({ verdict: 'suspicious', kink: true });
    expect(checkDirection(relu, 0, 0, h)).toMatchObject({ verdict: 'suspicious', kink: true });
    // abs at 0 with sign(0) = 0: the centered difference agrees exactly.
    expect(checkDirection(Math.abs, 0, 0, h).verdict).toBe('good');
    // A kink between h/2 and h: the smaller step does not cross it.
    const near = (t: number) => Math.max(t - 0.7 * h, 0) + 3 * t;
    expect(checkDirection(near, near(0), 3, h).verdict).toBe('good');
    // A smooth function is never excused as a kink.
    expect(checkDirection(smooth, smooth(0), 0.5, h).kink).toBe(false);
  });

  it('finds the one wrong tensor of a fake objective', () => {
    // f = sum(w^2) + sum(sin(b)); the "gradient" of b is off by 1%, that of c off by 1e-6 relative.
    const fn: Objective = (p) => ({
      loss: p.w.reduce((s, v) => s + v * v, 0) + p.b.reduce((s, v) => s + Math.sin(v), 0) + p.c.reduce((s, v) => s + v * v * v, 0),
      grads: { w: p.w.map((v) => 2 * v), b: p.b.map((v) => Math.cos(v) * 1.01), c: p.c.map((v) => 3 * v * v * (1 + 1e-6)) },
    });
    const next = rng(4);
    const point = () => ({
      w: Float64Array.from({ length: 50 }, () => next() - 0.5),
      b: Float64Array.from({ length: 7 }, () => next() - 0.5),
      c: Float64Array.from({ length: 3 }, () => next() + 0.5),
    });
    const shapes = { w: [5, 10], b: [7], c: [3] };
    const results = merge([checkPoint(fn, point(), shapes, { coords: 3, next }), checkPoint(fn, point(), shapes, { coords: 3, next })]);
    const byName = Object.fromEntries(results.map((r) => [r.name, r]));
    expect(byName.w).toMatchObject({ verdict: 'good', shape: [5, 10], kink: false });
    expect(byName.b.verdict).toBe('suspicious');
    expect(byName.b.error).toBeCloseTo(0.01 / 1.01, 6);
    expect(byName.c.verdict).toBe('ok');
    expect(worst(results.map((r) => r.verdict))).toBe('suspicious');
    const broken: Objective = (p) => ({ ...fn(p), grads: { ...fn(p).grads, w: p.w.map((v) => -2 * v) } });
    expect(checkPoint(broken, point(), shapes, { coords: 2, next }).find((r) => r.name === 'w')!.verdict).toBe('wrong');
  });
});

describe('dlc gradcheck', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlc-gradcheck-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const n = 20;
  const next = rng(9);
  const x = Array.from({ length: n }, () => [next() * 2 - 1, next() * 2 - 1]);
  writeFileSync(join(dir, 'd.json'), JSON.stringify({ x, y: x.map(([a, b]) => (a + b > 0 ? 1 : 0)) }));
  // The commands run side by side (most of each is starting node and the compiler).
  const runs = {
    mnist: dlc('gradcheck', 'examples/mnist_mlp.dlm', '--points', '1', '--json'),
    data: dlc('gradcheck', 'tests/fixtures/logreg.dlm', '--data', join(dir, 'd.json'), '--seed', '3', '--points', '3', '--batch', '5'),
    kink: dlc('gradcheck', 'tests/fixtures/gradcheck_kink.dlm', '--json'),
    tie: dlc('gradcheck', 'tests/fixtures/gradcheck_tie.dlm'),
    usage: dlc('gradcheck', 'tests/fixtures/logreg.dlm', '--points', '0'),
  };

  it('passes the MNIST MLP (235k parameters) in a few seconds', async () => {
    const r = await runs.mnist;
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as GradcheckReport;
    expect(report.params.map((p) => p.name)).toEqual(['h.dense_0.w', 'h.dense_0.b', 'h.dense_1.w', 'h.dense_1.b', 'logits.w', 'logits.b']);
    for (const p of report.params) expect(['good', 'ok'], `${p.name}: ${p.error}`).toContain(p.verdict);
    expect(['good', 'ok']).toContain(report.verdict);
  });

  it('prints a table per tensor and draws batches from --data', async () => {
    const r = await runs.data;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('logreg: gradient check in float64, 3 points (seed 3..5), batch 5');
    expect(r.stdout).toMatch(/^logits\.w\s+\[2, 2\]\s+\S+\s+\S+\s+good$/m);
    expect(r.stdout).toMatch(/^logits\.b\s+\[2\]\s+\S+\s+\S+\s+good$/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('overall: good');
  });

  it('does not call a relu or abs kink wrong', async () => {
    const r = await runs.kink;
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as GradcheckReport;
    expect(report.params.every((p) => p.verdict !== 'wrong')).toBe(true);
    // The first layer sits on relu's kink; its checks are marked, not failed.
    expect(report.params.find((p) => p.name === 'h.w')).toMatchObject({ verdict: 'suspicious', kink: true });
    expect(report.params.find((p) => p.name === 'out.b')!.verdict).toBe('good');
    expect(report.verdict).toBe('suspicious');
  });

  it('fails with exit 1 on a gradient that is wrong at a tie', async () => {
    // max(z, 0) + log(1 + e^-|z|) at z = 0: the tie conventions of max and abs give 1, not 0.5.
    const r = await runs.tie;
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^z\.b\s+\[1\]\s+\S+\s+\S+\s+wrong$/m);
    expect(r.stdout.trim().split('\n').at(-1)).toBe('overall: wrong');
    expect(r.stderr).toBe('');
  });

  it('reports usage mistakes in one line', async () => {
    const r = await runs.usage;
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('dlc: --points must be at least 1');
  });
});
