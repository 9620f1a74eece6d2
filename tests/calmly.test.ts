// In Node, while dlc awaits its device (pipelines, a run's results), the global setImmediate is a
// 1 ms timer: dawn.node ticks the device from a setImmediate loop that would otherwise keep a core
// busy (runtime/webgpu.ts calmly). It is put back once nothing of dlc's is pending, also after a
// failure, and overlapping waits put back the app's own function, not the timer.

import { describe, expect, it } from 'vitest';
import { calmly } from '../runtime/webgpu.ts';
import { compile } from '../compiler/compile.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import { fileURLToPath } from 'node:url';
import { gpuDevice } from './support/harness.ts';

const gpu = await gpuDevice();

describe('calmly', () => {
  it('swaps setImmediate for a timer while pending, and puts the app\'s back after overlapping waits and a failure', async () => {
    const own = globalThis.setImmediate;
    let release!: () => void;
    const a = calmly(() => new Promise<void>((r) => (release = r)));
    expect(globalThis.setImmediate).not.toBe(own);
    // the swapped one still calls back, later
    const order: string[] = [];
    await new Promise<void>((r) => globalThis.setImmediate(() => (order.push('called'), r())));
    expect(order).toEqual(['called']);
    const b = calmly(() => Promise.reject(new Error('lost device')));
    await expect(b).rejects.toThrow('lost device');
    expect(globalThis.setImmediate).not.toBe(own); // `a` is still pending
    release();
    await a;
    expect(globalThis.setImmediate).toBe(own);
  });

  it.skipIf(!gpu)('is what a WebGPU training step waits in', async () => {
    const own = globalThis.setImmediate;
    const manifest = compile(fileURLToPath(new URL('../examples/mnist_mlp.dlm', import.meta.url))).manifest!;
    const model = await Model.create(manifest, cpuKernels, { backend: 'webgpu', device: gpu!, startOnCpu: false });
    const x = { data: new Float32Array(8 * 784).fill(0.5), shape: [8, 784] };
    const step = model.trainStep({ x, y: new Int32Array(8) });
    expect(globalThis.setImmediate).not.toBe(own);
    expect(Number.isFinite((await step).loss)).toBe(true);
    expect(globalThis.setImmediate).toBe(own);
    model.dispose();
  });
});
