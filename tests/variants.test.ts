// Kernel variants picked by adapter (runtime/variants.ts): on an adapter with subgroups of four
// (SwiftShader), matrix products whose four neighbouring threads share a tile's rows run as 16×8
// tiles that share their loads of a through subgroupBroadcast (ops/matmul.ts). They compute what
// the CPU computes on random sizes, transposes, batches and epilogues; a model trains with them to
// the bits it gets without them; a device without subgroups keeps the kernels; a bundle carries
// the variants as variants.js. Skipped only where there is no WebGPU adapter outside CI.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { compile } from '../compiler/compile.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import type { Manifest, ProgramJSON } from '../runtime/program.ts';
import { forDevice } from '../runtime/variants.ts';
import { evalCpu, expectClose, feedsOf, gpuDevice, programOf, randomTensor, withExecutor } from './support/harness.ts';

const gpu = await gpuDevice();
const quads = !!gpu && gpu.features.has('subgroups') && gpu.adapterInfo?.subgroupMinSize === 4 && gpu.adapterInfo.subgroupMaxSize === 4;
/** `p` with the variants for the test device in place. */
const onDevice = (p: ProgramJSON): ProgramJSON => forDevice(gpu!, { programs: { train: p } } as unknown as Manifest).programs.train;
const mnist = compile('examples/mnist_mlp.dlm').manifest!;

describe.skipIf(!quads)('kernel variants for subgroups of four', () => {
  it('compute what the CPU computes: random m and k, n a multiple of 32, transposes, batches, epilogues', async () => {
    const arb = fc.record({
      m: fc.integer({ min: 1, max: 70 }),
      k: fc.integer({ min: 1, max: 40 }),
      n: fc.constantFrom(32, 64, 96),
      batch: fc.constantFrom([], [2]),
      transA: fc.boolean(),
      transB: fc.boolean(),
      epilogue: fc.boolean(),
      seed: fc.integer({ min: 1, max: 1000 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ m, k, n, batch, transA, transB, epilogue, seed }) => {
        const x = b.arg('input', 'x', [...batch, ...(transA ? [k, m] : [m, k])], 'f32');
        const w = b.arg('input', 'w', transB ? [n, k] : [k, n], 'f32');
        const bias = b.arg('input', 'bias', [n], 'f32');
        const out = epilogue ? b.fusedMatmul(x, w, transA, transB, [bias], ['add i0 i1', 'max r0 f32:0'], [...batch, m, n]) : b.matmul(x, w, transA, transB);
        const feeds = new Map([x, w, bias].map((a, i) => [a, randomTensor(a.shape as number[], seed + i)]));
        const p = onDevice(programOf([out]));
        expect(p.kernels.map((q) => q.grid)).toContainEqual({ kind: 'tiles', rows: 16, cols: 8 });
        const got = await withExecutor(async (ex) => (await ex.run(p, feedsOf(feeds))).out0);
        expectClose(got, evalCpu([out], feeds, 'f32')[0], { rtol: 1e-4, atol: 1e-4 });
      }),
      { numRuns: 25 },
    );
  });

  it('are left out where the four threads would not share rows (n of 10 or 120)', () => {
    for (const n of [10, 120]) {
      const [x, w] = [b.arg('input', 'x', ['B', 16], 'f32'), b.arg('input', 'w', [16, n], 'f32')];
      expect(programOf([b.matmul(x, w)]).kernels.map((q) => q.sub)).toEqual([undefined]);
    }
  });

  it('train the MLP to the same bits as the kernels without them', async () => {
    const params = async (variants: boolean) => {
      const table = variants ? cpuKernels : Object.fromEntries(Object.entries(cpuKernels).filter(([name]) => name !== 'variants'));
      const model = await Model.create(mnist, table, { backend: 'webgpu', device: gpu!, seed: 4, startOnCpu: false });
      expect(model.manifest.programs.train.kernels.some((q) => q.grid.kind === 'tiles' && q.grid.rows === 16)).toBe(variants);
      for (let step = 0; step < 3; step++) {
        const x = randomTensor([64, 784], step, { min: 0, max: 1 });
        await model.trainStep({ x, y: Int32Array.from({ length: 64 }, (_, i) => (i * 3 + step) % 10) });
      }
      const out = await model.getParams();
      model.dispose();
      return out;
    };
    const [plain, sub] = [await params(false), await params(true)];
    // (compared as the count of differing values: a diff of 200k floats prints for minutes)
    for (const [name, t] of Object.entries(plain)) expect(t.data.filter((v, i) => !Object.is(v, sub[name].data[i])).length, name).toBe(0);
  });

  it('are not used on a device without subgroups', async () => {
    const { create } = await import('webgpu');
    const plain = await (await create([]).requestAdapter())!.requestDevice();
    expect(forDevice(plain, mnist)).toBe(mnist);
    expect(forDevice(gpu!, mnist)).not.toBe(mnist);
    plain.destroy();
  });

  it('ship in a bundle as variants.js, loaded on such a device (and without it, the kernels run)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dlc-variants-'));
    try {
      expect(await writeBundle(mnist, dir)).toContain('variants.js');
      const rows = async () => {
        const { createModel } = await import(/* @vite-ignore */ `${pathToFileURL(join(dir, 'model.js')).href}?${Math.random()}`);
        const model = await createModel({ backend: 'webgpu', device: gpu, startOnCpu: false });
        const x = randomTensor([8, 784], 1, { min: 0, max: 1 });
        expect(Number.isFinite((await model.trainStep({ x, y: new Int32Array(8) })).loss)).toBe(true);
        const r = model.manifest.programs.train.kernels.map((q: { grid: { rows?: number } }) => q.grid.rows ?? 0);
        model.dispose();
        return Math.max(...r);
      };
      expect(await rows()).toBe(16);
      rmSync(join(dir, 'variants.js'));
      expect(await rows()).toBe(8);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
