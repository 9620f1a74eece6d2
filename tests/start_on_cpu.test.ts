// A WebGPU model runs on the CPU until its training step's pipelines are compiled (startOnCpu,
// the default), then moves its parameters, layer state and optimizer slots to the GPU and trains
// on there. The batch-norm perceptron has all three kinds. Skipped only where there is no WebGPU
// adapter outside CI (gpuDevice throws in CI without one).

import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { mnist } from '../cli/data.ts';
import { batches, rows } from '../runtime/dataset.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import { permutation, rng } from '../runtime/random.ts';
import { gpuDevice } from './support/harness.ts';

const gpu = await gpuDevice();
const SEED = 3;
const manifest = compile(fileURLToPath(new URL('../examples/mnist_mlp_bn.dlm', import.meta.url))).manifest!;
const { train, test } = mnist(manifest.inputs, SEED);

describe.skipIf(!gpu)('a WebGPU model that starts on the CPU', () => {
  it('takes its first step on the CPU, as a CPU model does, then moves everything to the GPU and trains on', async () => {
    const cpu = await Model.create(manifest, cpuKernels, { backend: 'cpu', seed: SEED });
    const model = await Model.create(manifest, cpuKernels, { backend: 'webgpu', device: gpu!, seed: SEED });
    expect(model.backend).toBe('webgpu');
    expect(model.runsOn).toBe('cpu'); // its pipelines take a few hundred ms to compile here
    const order = batches(train, 64, permutation(train.size, rng(SEED)));
    const next = () => order.next().value!;

    // The first step runs on the CPU: the CPU model's loss, to the bit.
    const first = next();
    expect((await model.trainStep(first)).loss).toBe((await cpu.trainStep(first)).loss);

    await vi.waitFor(() => expect(model.runsOn).toBe('webgpu'), { timeout: 60_000, interval: 10 });
    // Then on the GPU, from the moved parameters, running statistics and Adam slots: the same
    // losses to 1e-4 relative (a slot or statistic left behind would change the updates).
    for (let s = 2; s <= 8; s++) {
      const b = next();
      const [c, g] = [await cpu.trainStep(b), await model.trainStep(b)];
      expect(Math.abs(g.loss - c.loss) / c.loss, `step ${s}`).toBeLessThanOrEqual(1e-4);
    }
    expect(model.step).toBe(8);
    // It ran them: the GPU executor planned the training step (a measuring peek at private state).
    const target = (model as unknown as { target: { programs: Map<unknown, { plans: Map<string, unknown> }> } }).target;
    expect(target.programs.get(model.manifest.programs.train)?.plans.size).toBe(1);

    // Inference reads the running statistics, moved and updated on the GPU.
    const { x } = rows(test, Int32Array.from({ length: 128 }, (_, i) => i));
    const [c, g] = [(await cpu.predict({ x })).probs.data, (await model.predict({ x })).probs.data];
    let worst = 0;
    for (let i = 0; i < c.length; i++) worst = Math.max(worst, Math.abs(c[i] - g[i]));
    expect(worst).toBeLessThanOrEqual(5e-3);
    cpu.dispose();
    model.dispose();
  });

  it('runs on the GPU from the start with startOnCpu: false', async () => {
    const model = await Model.create(manifest, cpuKernels, { backend: 'webgpu', device: gpu!, seed: SEED, startOnCpu: false });
    expect(model.runsOn).toBe('webgpu');
    model.dispose();
  });
});
