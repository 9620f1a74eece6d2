// stop_gradient(x): x in value, no gradient to autodiff. Checked in value and gradient (through the
// IR and through .dlm), in the library's stable softmax/logsumexp (the same gradients as when
// autodiff went through the max, and fewer kernels), after the passes (no node, no dispatch), on
// ONNX Runtime (a program compiled without passes), and for a wrong call.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { STDLIB_DIR, compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';
import * as b from '../compiler/ir/build.ts';
import { vjp } from '../compiler/autodiff/vjp.ts';
import { runPipeline } from '../compiler/passes/pipeline.ts';
import { topo } from '../compiler/ir/graph.ts';
import { exportOnnx } from '../compiler/export/onnx.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { initialWeights } from '../cli/export.ts';
import { runCpu } from '../runtime/cpu.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Manifest, ProgramJSON } from '../runtime/program.ts';
import { argKey } from '../runtime/shapes.ts';
import { evalCpu, randomTensor } from './support/harness.ts';
import { libraryFn } from './support/dlm.ts';

const f64 = (t: Tensor): Tensor => ({ data: Float64Array.from(t.data), shape: t.shape });
const MODEL = resolve('tests/virtual/stop_gradient.dlm');
const ACTIVATIONS = resolve(STDLIB_DIR, 'activations.dlm');

/** Compiles `src` (the stdlib from disk; `withoutStop`: activations.dlm's stop_gradient calls taken
 *  out, the library as it was before them). */
function compileSrc(src: string, { withoutStop = false, passes }: { withoutStop?: boolean; passes?: [] } = {}): Manifest {
  const read = (p: string) => {
    if (p === MODEL) return src;
    const text = readFileSync(p, 'utf8');
    return withoutStop && p === ACTIVATIONS ? text.replaceAll('stop_gradient(', '(') : text;
  };
  const r = compile(MODEL, read, { gradient: true, ...(passes ? { passes } : {}) });
  if (!r.manifest) throw new Error(r.diagnostics.map((d) => format(d, r.sources)).join('\n'));
  return r.manifest;
}

const kernels = (p: ProgramJSON) => p.nodes.filter((n) => n.kernel !== undefined).length;
const ops = (p: ProgramJSON) => p.nodes.map((n) => n.op);
const withoutSrc = (p: ProgramJSON) => ({ ...p, nodes: p.nodes.map(({ src: _, ...n }) => n) });

/** Random parameters (seeded) for a manifest, by argKey. */
function randomParams(m: Manifest, seed: number): Record<string, Tensor> {
  return Object.fromEntries(m.params.map((p, k) => [argKey({ role: 'param', name: p.name }), f64(randomTensor(p.shape as number[], seed + k))]));
}

/** The gradient program's outputs (loss and grad:NAME) in float64. */
const gradients = (m: Manifest, feeds: Record<string, Tensor>) => runCpu(m.programs.gradient!, cpuKernels, feeds, Float64Array).outputs;

describe('stop_gradient', () => {
  it('is the identity in value', () => {
    const x = b.arg('input', 'sg_x', [2, 3], 'f32');
    const v = f64(randomTensor([2, 3], 1, { min: -5, max: 5 }));
    const [y] = evalCpu([libraryFn('stop_gradient')([x])], new Map([[x, v]]), 'f64');
    expect(y.shape).toEqual([2, 3]);
    expect(Array.from(y.data)).toEqual(Array.from(v.data));
  });

  it('sends no gradient: d/dx sum(x * stop_gradient(x)) is x, not 2x', () => {
    const x = b.arg('input', 'sg_g', [3, 4], 'f32');
    const y = b.sum(b.mul(x, libraryFn('stop_gradient')([x])));
    const v = f64(randomTensor([3, 4], 2, { min: -3, max: 3 }));
    const [g] = evalCpu(vjp(y, b.constant(1), [x]), new Map([[x, v]]), 'f64');
    expect(Array.from(g.data)).toEqual(Array.from(v.data));
    // The value's own derivative is 2x (centered difference along one coordinate): the gradient
    // above is not the value's, by design.
    const at = (d: number) => evalCpu([y], new Map([[x, { data: v.data.map((e, j) => (j === 5 ? e + d : e)), shape: v.shape }]]), 'f64')[0].data[0];
    expect((at(1e-4) - at(-1e-4)) / 2e-4).toBeCloseTo(2 * v.data[5], 6);
    // Nothing reaches x through stop_gradient alone: zeros.
    const [z] = evalCpu(vjp(b.sum(b.stopGradient(x)), b.constant(1), [x]), new Map([[x, v]]), 'f64');
    expect(Array.from(z.data)).toEqual(new Array(12).fill(0));
  });

  it('in a model: a straight-through estimator, and a loss whose gradient it halves', () => {
    const model = (loss: string) => `model sg {
  input x: f32[B, 4]
  z = dense(x, 3)
  loss = ${loss}
}`;
    const feeds = (m: Manifest) => ({ ...randomParams(m, 10), 'input:x': f64(randomTensor([5, 4], 3, { min: -2, max: 2 })) });
    // round-to-floor forward, identity backward: the value of floor(z), the gradient of z
    const ste = compileSrc(model('mean(z + stop_gradient(floor(z) - z))'));
    const plain = compileSrc(model('mean(z)'));
    const floorOnly = compileSrc(model('mean(floor(z))'));
    const [s, p, f] = [ste, plain, floorOnly].map((m) => gradients(m, feeds(m)));
    expect(s.loss.data[0]).toBeCloseTo(f.loss.data[0], 12);
    expect(s.loss.data[0]).not.toBeCloseTo(p.loss.data[0], 3);
    for (const w of ['z.w', 'z.b']) expect(Array.from(s[`grad:${w}`].data)).toEqual(Array.from(p[`grad:${w}`].data));

    // z * stop_gradient(z): the value of z², half its gradient
    const half = compileSrc(model('mean(z * stop_gradient(z))'));
    const square = compileSrc(model('mean(z * z)'));
    const [h, q] = [half, square].map((m) => gradients(m, feeds(m)));
    expect(h.loss.data[0]).toBeCloseTo(q.loss.data[0], 12);
    for (const w of ['z.w', 'z.b']) Array.from(q[`grad:${w}`].data).forEach((g, j) => expect(h[`grad:${w}`].data[j] * 2).toBeCloseTo(g, 12));
    for (const m of [ste, half]) for (const [name, p] of Object.entries(m.programs)) expect(ops(p!), name).not.toContain('stop_gradient');
  });

  it('the passes remove it: no node and no kernel of its own', () => {
    const x = b.arg('input', 'sg_p', ['B', 3], 'f32');
    const y = b.exp(b.stopGradient(b.mul(x, x)));
    const g = runPipeline({ outputs: [{ name: 'y', node: y }], updates: [] }, { verify: true });
    expect(topo([g.outputs[0].node]).map((n) => n.op)).not.toContain('stop_gradient');
    expect(g.outputs[0].node).toBe(runPipeline({ outputs: [{ name: 'y', node: b.exp(b.mul(x, x)) }], updates: [] }).outputs[0].node);
  });
});

describe('the library\'s softmax, log_softmax, logsumexp and softmax_cross_entropy', () => {
  const LOSSES = `model losses {
  input x: f32[B, 6]
  input y: i32[B]
  z = dense(x, 5)
  loss = softmax_cross_entropy(z, y) + mean(softmax(z) * z) - 0.3 * mean(log_softmax(z, axis: 0)) + 0.1 * mean(logsumexp(z * z, axis: 0))
}`;

  it('give the gradients they gave when autodiff went through the max', () => {
    const [now, before] = [false, true].map((withoutStop) => compileSrc(LOSSES, { withoutStop }));
    for (let seed = 1; seed <= 4; seed++) {
      const feeds = {
        ...randomParams(now, 20 * seed),
        'input:x': f64(randomTensor([4, 6], seed, { min: -3, max: 3 })),
        'input:y': { data: Int32Array.from([0, 4, 2, seed % 5]), shape: [4] },
      };
      const [a, c] = [now, before].map((m) => gradients(m, feeds));
      expect(a.loss.data[0]).toBe(c.loss.data[0]);
      for (const w of ['z.w', 'z.b']) {
        const scale = Math.max(...Array.from(c[`grad:${w}`].data, Math.abs));
        Array.from(c[`grad:${w}`].data).forEach((g, j) => expect(Math.abs(a[`grad:${w}`].data[j] - g) / scale, `${w}[${j}] seed ${seed}`).toBeLessThan(1e-12));
      }
    }
  });

  it('cost the MNIST perceptron\'s training step fewer kernels, its inference none more', () => {
    const src = readFileSync('examples/mnist_mlp.dlm', 'utf8');
    const [now, before] = [false, true].map((withoutStop) => compileSrc(src, { withoutStop }));
    for (const [name, p] of Object.entries(now.programs)) expect(ops(p!), name).not.toContain('stop_gradient');
    // the row max's gradient (an eq mask, its row sum, and the row sum of the shifted exp's) is gone
    expect(now.programs.train.nodes.filter((n) => n.src?.startsWith('gradient of reduce_max at stdlib/activations.dlm'))).toEqual([]);
    expect(before.programs.train.nodes.filter((n) => n.src?.startsWith('gradient of reduce_max at stdlib/activations.dlm')).length).toBeGreaterThan(0);
    // fusion now absorbs that path into the same number of kernels, which compute less
    const work = (p: ProgramJSON) => p.nodes.reduce((s, n) => s + (n.op === 'fused' ? String(n.attrs.code).split(';').length : n.kernel !== undefined ? 1 : 0), 0);
    console.log(`mnist_mlp train dispatches: ${kernels(before.programs.train)} through the max, ${kernels(now.programs.train)} with stop_gradient; program lines ${work(before.programs.train)} -> ${work(now.programs.train)}`);
    expect(kernels(now.programs.train)).toBeLessThanOrEqual(kernels(before.programs.train));
    expect(work(now.programs.train)).toBeLessThan(work(before.programs.train) - 10);
    for (const name of ['predict', 'evaluate', 'init'] as const) expect(withoutSrc(now.programs[name]!)).toEqual(withoutSrc(before.programs[name]!));
  });
});

describe('a program compiled without passes', () => {
  it('keeps stop_gradient as an alias (no kernel) and exports it to ONNX as Identity', async () => {
    const m = compileSrc(readFileSync('examples/mnist_mlp.dlm', 'utf8'), { passes: [] });
    const p = m.programs.predict;
    const sg = p.nodes.filter((n) => n.op === 'stop_gradient');
    expect(sg.length).toBeGreaterThan(0);
    for (const n of sg) expect(n.kernel).toBeUndefined();
    const weights = initialWeights(m);
    const x = randomTensor([3, 784], 5, { min: 0, max: 1 });
    const want = runCpu(p, cpuKernels, { ...weights, 'input:x': x }, Float32Array).outputs.probs;
    const session = await ort.InferenceSession.create(exportOnnx(p, { name: 'mnist_mlp', weights }));
    try {
      const got = await session.run({ x: new ort.Tensor('float32', x.data as Float32Array, x.shape) });
      Array.from(want.data).forEach((v, j) => expect(Math.abs((got.probs.data as Float32Array)[j] - v)).toBeLessThan(1e-6));
    } finally {
      await session.release();
    }
  });
});

describe('a wrong call', () => {
  it('says what is wrong, where', () => {
    const src = 'model bad {\n  input x: f32[B, 4]\n  output y = stop_gradient()\n  output z = stop_gradient(x, x)\n  loss = mean(x)\n}\n';
    const r = compile(MODEL, (p) => (p === MODEL ? src : readFileSync(p, 'utf8')));
    expect(r.manifest).toBeUndefined();
    expect(r.diagnostics.map((d) => `${d.code} ${d.span.line}: ${d.message}`)).toEqual([
      "E0301 3: stop_gradient is missing its argument 'x'",
      'E0301 4: stop_gradient takes 1 argument, but more were given',
    ]);
  });
});
