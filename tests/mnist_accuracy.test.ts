// examples/mnist_mlp.dlm, its own recipe (784-256-128-10, relu, Adam 1e-3, batch 64, 3 epochs) on
// --data mnist's 8,000 / 2,000 split: at least 93% test accuracy on the CPU and on WebGPU.
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { mnist } from '../cli/data.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import { evaluate, fit } from '../runtime/train.ts';
import { gpuDevice } from './support/harness.ts';

const manifest = compile('examples/mnist_mlp.dlm').manifest!;
const { train, test } = mnist(manifest.inputs, manifest.train.seed);
const gpu = await gpuDevice();

async function testAccuracy(backend: 'cpu' | 'webgpu'): Promise<number> {
  const model = await Model.create(manifest, cpuKernels, { backend, device: gpu ?? undefined, startOnCpu: false });
  const t = manifest.train;
  await fit(model, train, { epochs: t.epochs, batch: t.batch, shuffle: t.shuffle, seed: t.seed });
  const { accuracy } = await evaluate(model, test);
  model.dispose();
  return accuracy;
}

describe('the MNIST perceptron', () => {
  it('reaches 93% test accuracy in 3 epochs on the CPU', async () => {
    expect(await testAccuracy('cpu')).toBeGreaterThanOrEqual(0.93);
  });
  it.skipIf(!gpu)('reaches 93% test accuracy in 3 epochs on WebGPU', async () => {
    expect(await testAccuracy('webgpu')).toBeGreaterThanOrEqual(0.93);
  });
});
