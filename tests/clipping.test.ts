// Gradient clipping from the train block: `clip value(c)` clamps each component, `clip
// global_norm(c)` rescales all gradients together when their joint norm exceeds c.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rng } from '../runtime/random.ts';

const FILE = resolve('tests/virtual/clip.dlm');

async function step(clip: string) {
  const src = `
model clip {
  input x: f32[B, 4]
  input y: f32[B, 3]
  loss = mse(dense(x, 3, init: xavier_uniform), y)
  train {
    optimizer sgd(lr: 1.0)
    ${clip}
  }
}`;
  const r = compile(FILE, (p) => (p === FILE ? src : readFileSync(p, 'utf8')), { gradient: true });
  const model = await Model.create(r.manifest!, cpuKernels, { backend: 'cpu', seed: 4 });
  const next = rng(8);
  const batch = { x: Float32Array.from({ length: 32 }, () => next() * 10 - 5), y: Float32Array.from({ length: 24 }, () => next() * 10) };
  const before = await model.getParams();
  const { grads } = await model.gradient(batch);
  await model.trainStep(batch);
  const after = await model.getParams();
  // With sgd at lr 1, the update is minus the (clipped) gradient.
  const applied = Object.fromEntries(Object.keys(before).map((k) => [k, Array.from(before[k].data, (v, i) => v - after[k].data[i])]));
  return { grads, applied };
}

describe('gradient clipping', () => {
  it('by value clamps each component to [-c, c]', async () => {
    const { grads, applied } = await step('clip value(0.5)');
    let clamped = 0;
    for (const [k, g] of Object.entries(grads)) {
      g.data.forEach((v, i) => {
        const want = Math.max(-0.5, Math.min(0.5, v));
        if (want !== v) clamped++;
        expect(applied[k][i]).toBeCloseTo(want, 5);
      });
    }
    expect(clamped).toBeGreaterThan(0);
  });

  it('by global norm rescales every gradient by c / ||g|| when ||g|| > c', async () => {
    const { grads, applied } = await step('clip global_norm(1.0)');
    const norm = Math.sqrt(Object.values(grads).reduce((s, g) => s + Array.from(g.data).reduce((a, v) => a + v * v, 0), 0));
    expect(norm).toBeGreaterThan(1);
    for (const [k, g] of Object.entries(grads)) g.data.forEach((v, i) => expect(applied[k][i]).toBeCloseTo(v / norm, 5));
  });

  it('by global norm leaves small gradients alone', async () => {
    const { grads, applied } = await step('clip global_norm(1e6)');
    for (const [k, g] of Object.entries(grads)) g.data.forEach((v, i) => expect(applied[k][i]).toBeCloseTo(v, 4));
  });
});
