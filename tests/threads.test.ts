// The CPU executor's worker threads (runtime/threads.ts): gemm split into bands between the calling
// thread and the workers gives the single thread's results to the bit, on sizes that are not
// multiples of the panels, split by rows and by columns; a CPU model trains the same with them; a
// bundle carries them as threads.js; one thread asked for (or by default on fewer than four cores,
// or a host without workers) is no worker.

import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { cpuWasm } from '../compiler/codegen/wasm.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import { CONTROL, READY, SLOT, alone, threaded } from '../runtime/threads.ts';
import { FIRST, type Exports } from '../runtime/wasm.ts';
import { randomTensor } from './support/harness.ts';

const manifest = compile('examples/mnist_mlp.dlm').manifest!;
const bytes = await cpuWasm(manifest);
const { exp, log, sin, cos, sign, pow } = Math;
const env = { exp, log, sin, cos, sign, pow };

/** Packed operands (random floats) at FIRST, gemm into c; the result read back. */
function product(e: Exports, memory: WebAssembly.Memory, m: number, n: number, k: number, seed: number): Float32Array {
  const mem = new Float32Array(memory.buffer);
  const a = FIRST, b = a + 4 * (m + 4) * k, c = b + 4 * (n + 8) * k;
  mem.set(randomTensor([(m + 4) * k], seed).data, a / 4);
  mem.set(randomTensor([(n + 8) * k], seed + 1).data, b / 4);
  mem.fill(0, c / 4, c / 4 + m * n);
  e.gemm(a, b, c, m, n, k, n, 0);
  return new Float32Array(memory.buffer).slice(c / 4, c / 4 + m * n);
}

describe('worker threads', () => {
  it('split gemm by rows and by columns, with the single thread\'s results to the bit', async () => {
    const one = await alone(bytes, env);
    const two = await (await threaded(2))(bytes, env);
    try {
      expect(two.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
      const control = new Int32Array(two.memory.buffer);
      await vi.waitFor(() => expect(Atomics.load(control, CONTROL / 4 + READY)).toBe(1), { timeout: 10_000, interval: 5 });
      // rows (m ≥ n), columns (n > m, few rows), edges of both panels, and one under the threshold
      for (const [m, n, k] of [[203, 37, 91], [9, 301, 77], [64, 128, 784], [130, 10, 64], [4, 4, 4]]) {
        expect(product(two.exports, two.memory, m, n, k, m + n), `${m}×${n}×${k}`).toEqual(product(one.exports, one.memory, m, n, k, m + n));
      }
    } finally {
      (two.exports as { close?(): void }).close?.();
    }
  });

  it('are none when one thread is asked for, and by default on hosts of fewer than four cores', async () => {
    expect(await threaded(1)).toBe(alone);
    // (two threads did not pay on a 2-core VM: runtime/threads.ts cores)
    expect((await threaded()) === alone).toBe(availableParallelism() < 4);
  });

  it('train a CPU model to the same losses as one thread', async () => {
    const losses = async (threads: number) => {
      const model = await Model.create(manifest, cpuKernels, { backend: 'cpu', seed: 2, threads });
      const out: number[] = [];
      for (let step = 0; step < 6; step++) {
        // the first steps run before the worker is ready, the later ones with it
        if (step === 3) await new Promise((r) => setTimeout(r, 300));
        const x = randomTensor([64, 784], step, { min: 0, max: 1 });
        out.push((await model.trainStep({ x, y: Int32Array.from({ length: 64 }, (_, i) => (i * 7 + step) % 10) })).loss);
      }
      model.dispose();
      return out;
    };
    expect(await losses(2)).toEqual(await losses(1));
  });

  it('ship in a bundle as threads.js, which model.js loads for its CPU kernels', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dlc-threads-'));
    try {
      expect(await writeBundle(manifest, dir)).toContain('threads.js');
      const { threaded: bundled } = await import(/* @vite-ignore */ pathToFileURL(join(dir, 'threads.js')).href);
      const two = await (await bundled(2))(bytes, env);
      const control = new Int32Array(two.memory.buffer);
      await vi.waitFor(() => expect(Atomics.load(control, CONTROL / 4 + READY)).toBe(1), { timeout: 10_000, interval: 5 });
      expect(Atomics.load(control, CONTROL / 4 + SLOT + READY)).toBe(0); // one worker only
      const one = await alone(bytes, env);
      expect(product(two.exports, two.memory, 120, 40, 33, 1)).toEqual(product(one.exports, one.memory, 120, 40, 33, 1));
      two.exports.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
