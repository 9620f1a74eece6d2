// batch_norm is written in .dlm (stdlib/layers.dlm) with `state`, `<-` and `if training`.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rng } from '../runtime/random.ts';

const FILE = resolve('tests/virtual/bn.dlm');
const SRC = `
model bn {
  input x: f32[B, 3]
  input y: f32[B, 1]
  h = x |> batch_norm(momentum: 0.5)
  output z = h
  metric center = mean(h)
  metric spread = mean(h ^ 2)
  loss = mse(dense(h, 1), y)
  train { optimizer sgd(lr: 0.0) }
}`;

async function create() {
  const r = compile(FILE, (p) => (p === FILE ? SRC : readFileSync(p, 'utf8')));
  expect(r.diagnostics.map((d) => format(d, r.sources)).join('')).toBe('');
  return { manifest: r.manifest!, model: await Model.create(r.manifest!, cpuKernels, { backend: 'cpu' }) };
}

describe('batch_norm in .dlm', () => {
  const next = rng(9);
  const batch = () => ({
    x: Float32Array.from({ length: 24 }, (_, i) => (i % 3) * 10 + 2 + next() * 4), // column means 4, 14, 24
    y: new Float32Array(8),
  });

  it('keeps running statistics in training and uses them in inference', async () => {
    const { manifest, model } = await create();
    expect(manifest.state.map((s) => s.name)).toEqual(['h.running_mean', 'h.running_var']);
    const b = batch();
    const mean = [0, 1, 2].map((c) => [...Array(8)].reduce((s, _, i) => s + b.x[i * 3 + c], 0) / 8);
    const vari = [0, 1, 2].map((c) => [...Array(8)].reduce((s, _, i) => s + (b.x[i * 3 + c] - mean[c]) ** 2, 0) / 8);
    // Training normalizes with the batch's own statistics: mean 0 and variance 1 per column.
    const step = await model.trainStep(b);
    expect(step.center).toBeCloseTo(0, 5);
    expect(step.spread).toBeCloseTo(1, 3);
    const bytes = await model.save();
    const saved = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + new DataView(bytes.buffer).getUint32(4, true))));
    expect(saved.tensors.map((t: { key: string }) => t.key)).toContain('state:h.running_mean');

    // Inference normalizes with running = 0.5 * initial + 0.5 * batch statistics.
    const rm = mean.map((m) => 0.5 * m);
    const rv = vari.map((v) => 0.5 + 0.5 * v);
    const out = await model.predict({ x: b.x });
    for (let i = 0; i < 8; i++)
      for (let c = 0; c < 3; c++) expect(out.z.data[i * 3 + c]).toBeCloseTo((b.x[i * 3 + c] - rm[c]) / Math.sqrt(rv[c] + 1e-5), 4);

    // Inference does not update the running statistics.
    expect((await model.predict({ x: b.x })).z.data).toEqual(out.z.data);

    // Restoring into a fresh model brings the running statistics back.
    const { model: fresh } = await create();
    const before = await fresh.predict({ x: b.x });
    expect(before.z.data).not.toEqual(out.z.data);
    fresh.restore(bytes);
    expect((await fresh.predict({ x: b.x })).z.data).toEqual(out.z.data);
  });
});
