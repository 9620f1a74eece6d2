// End to end: the WebGPU and CPU backends train the MNIST examples (the perceptron, LeNet-5, and
// the perceptron with batch norm's running statistics, max-norm and clipping: on WebGPU every
// update is computed in its argument's buffer) identically. Same seed,
// same MNIST batches: the loss of each of the first 20 steps agrees to 1e-4 relative, and so do
// the predictions afterwards. Skipped only where there is no WebGPU adapter outside CI
// (gpuDevice throws in CI without one).

import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { mnist } from '../cli/data.ts';
import { batches, rows, type Dataset } from '../runtime/dataset.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import { permutation, rng } from '../runtime/random.ts';
import type { Manifest } from '../runtime/program.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { gpuDevice } from './support/harness.ts';

const gpu = await gpuDevice();

const STEPS = 20;
const BATCH = 64;
const SEED = 7;

describe.skipIf(!gpu).each(['mnist_mlp', 'lenet5', 'mnist_mlp_bn'])('WebGPU and CPU backends agree on examples/%s.dlm', (example) => {
  let manifest: Manifest;
  let train: Dataset;
  let test: Dataset;
  let cpu: Model;
  let webgpu: Model;
  const losses: { cpu: number[]; webgpu: number[] } = { cpu: [], webgpu: [] };

  beforeAll(async () => {
    const r = compile(fileURLToPath(new URL(`../examples/${example}.dlm`, import.meta.url)));
    if (!r.manifest) throw new Error(`examples/${example}.dlm does not compile: ${r.diagnostics.map((d) => d.message).join('; ')}`);
    manifest = r.manifest;
    ({ train, test } = mnist(manifest.inputs, SEED));
    cpu = await Model.create(manifest, cpuKernels, { backend: 'cpu', seed: SEED });
    webgpu = await Model.create(manifest, cpuKernels, { backend: 'webgpu', device: gpu!, seed: SEED, startOnCpu: false });
    return () => {
      cpu.dispose();
      webgpu.dispose();
    };
  });

  it('start from the same parameters', async () => {
    expect(cpu.backend).toBe('cpu');
    expect(webgpu.backend).toBe('webgpu');
    const [a, b] = await Promise.all([cpu.getParams(), webgpu.getParams()]);
    expect(Object.keys(b)).toEqual(Object.keys(a));
    for (const k of Object.keys(a)) expect(b[k].data, k).toEqual(a[k].data);
  });

  it(`give the same loss, to 1e-4 relative, at each of the first ${STEPS} steps`, async () => {
    const order = permutation(train.size, rng(SEED));
    let step = 0;
    for (const b of batches(train, BATCH, order)) {
      if (step++ === STEPS) break;
      const c = await cpu.trainStep(b);
      const g = await webgpu.trainStep(b);
      expect(Object.keys(g).sort()).toEqual(Object.keys(c).sort());
      losses.cpu.push(c.loss);
      losses.webgpu.push(g.loss);
      const rel = Math.abs(g.loss - c.loss) / Math.abs(c.loss);
      expect(rel, `step ${step}: webgpu loss ${g.loss} vs cpu ${c.loss}`).toBeLessThanOrEqual(1e-4);
      expect(Math.abs(g.accuracy - c.accuracy), `step ${step}: accuracy`).toBeLessThanOrEqual(1 / BATCH + 1e-6);
    }
    expect(losses.cpu).toHaveLength(STEPS);
    expect(cpu.step).toBe(STEPS);
    expect(webgpu.step).toBe(STEPS);
    // It is really training: the loss moved well down from ln(10) ≈ 2.30.
    expect(losses.cpu[0]).toBeGreaterThan(1.5);
    expect(Math.min(...losses.cpu.slice(-5))).toBeLessThan(losses.cpu[0] * 0.7);
  });

  // After training, the two models' parameters differ slightly: Adam divides by sqrt(v), which
  // turns rounding differences in near-zero gradients (sums that cancel) into steps of order lr.
  // So: the independently trained models predict nearly the same, and the predict programs agree
  // to 1e-4 when both hold the same trained model.
  it(`predict the same on both after ${STEPS} steps`, async () => {
    expect(cpu.step).toBe(STEPS); // runs after the training test
    const n = 256;
    const idx = Int32Array.from({ length: n }, (_, i) => i);
    const { x, y: labels } = rows(test, idx);
    const compare = async () => {
      const [c, g] = await Promise.all([cpu.predict({ x }), webgpu.predict({ x })]);
      const cp = c.probs as Tensor, gp = g.probs as Tensor;
      expect(gp.shape).toEqual([n, 10]);
      expect(cp.shape).toEqual([n, 10]);
      expect(g.pred.shape).toEqual([n]);
      let worst = 0;
      for (let i = 0; i < cp.data.length; i++) worst = Math.max(worst, Math.abs(gp.data[i] - cp.data[i]));
      // The same class, except where the top two probabilities are too close to call.
      let differ = 0;
      for (let i = 0; i < n; i++) {
        const row = Array.from(cp.data.subarray(i * 10, i * 10 + 10)).sort((a, b) => b - a);
        if (g.pred.data[i] !== c.pred.data[i] && row[0] - row[1] > 1e-2) differ++;
      }
      return { worst, differ, pred: c.pred.data };
    };

    const trained = await compare();
    expect(trained.worst).toBeLessThanOrEqual(5e-3);
    expect(trained.differ).toBe(0);
    // The model is better than chance on held-out digits.
    let right = 0;
    for (let i = 0; i < n; i++) if (trained.pred[i] === labels.data[i]) right++;
    expect(right / n).toBeGreaterThan(0.5);

    // The same trained model on both (the GPU's checkpoint restored on the CPU: parameters and
    // layer state, such as batch norm's running statistics): the predict programs agree.
    cpu.restore(await webgpu.save());
    const same = await compare();
    expect(same.worst).toBeLessThanOrEqual(1e-4);
    expect(same.differ).toBe(0);
  });
});
