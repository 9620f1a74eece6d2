// An optimizer and a schedule written by the user in .dlm train MNIST as well as the library's adam.
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { evaluate, fit } from '../runtime/train.ts';
import { mnist } from '../cli/data.ts';

async function trainOneEpoch(file: string): Promise<number> {
  const r = compile(file);
  expect(r.diagnostics).toEqual([]);
  const m = r.manifest!;
  const { train, test } = mnist(m.inputs, 7);
  const model = await Model.create(m, cpuKernels, { backend: 'cpu', seed: 7 });
  await fit(model, train, { epochs: 1, batch: 64, shuffle: true, seed: 7 });
  const acc = (await evaluate(model, test)).accuracy;
  model.dispose();
  return acc;
}

describe('a user-defined optimizer', () => {
  it('Adamax with a warmup schedule, written in .dlm, trains MNIST as well as adam', async () => {
    const adam = await trainOneEpoch('examples/mnist_mlp.dlm');
    const adamax = await trainOneEpoch('examples/mnist_adamax.dlm');
    expect(adam).toBeGreaterThan(0.88);
    expect(adamax).toBeGreaterThan(adam - 0.02);
  });
});
