// The wasm SIMD kernels (compiler/codegen/wasm.ts, run by runtime/wasm.ts) against the JavaScript
// CPU kernels in float32: matmul in every transpose form with broadcast batches, conv2d and its two
// backward forms, on random sizes that are mostly not multiples of the SIMD width or the 4×8
// register tile; and MLP and LeNet-5 training on the fast CPU path against the JavaScript path.

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import type { Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { convOutSize, type ConvOpts } from '../compiler/ops/conv.ts';
import { compile } from '../compiler/compile.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { CpuKernels } from '../runtime/cpu.ts';
import { Model } from '../runtime/model.ts';
import { CpuExecutor } from '../runtime/wasm.ts';
import type { Manifest } from '../runtime/program.ts';
import { cpuWasm, fusedKey } from '../compiler/codegen/wasm.ts';
import { evalCpu, expectClose, feedsOf, input, programOf, randomTensor } from './support/harness.ts';

const wasm = await CpuExecutor.create(cpuKernels, compile('examples/mnist_mlp.dlm').manifest!);

async function evalWasm(outputs: readonly Node[], feeds: ReadonlyMap<Node, Tensor>): Promise<Tensor[]> {
  const r = await wasm.run(programOf(outputs, false), feedsOf(feeds));
  return outputs.map((_, i) => r[`out${i}`]);
}

/** Runs `outputs` both ways on random inputs of the args' shapes and compares. */
async function agree(outputs: Node[], args: Node[], shapes: number[][], seed: number): Promise<void> {
  const feeds = new Map(args.map((a, i) => [a, randomTensor(shapes[i], seed + i, { min: -2, max: 2 })]));
  const want = evalCpu(outputs, feeds, 'f32');
  const got = await evalWasm(outputs, feeds);
  got.forEach((g, i) => {
    expect(g.shape).toEqual(want[i].shape);
    expectClose(g, want[i], { rtol: 1e-4, atol: 1e-4 });
  });
}


describe('wasm matmul', () => {
  it('runs the wasm kernels here (Node 20 has SIMD)', () => expect(wasm.wasm).toBe(true));

  it('matches the JS kernel: random m, k, n, all four transpose forms, broadcast batch dims', async () => {
    const arb = fc.record({
      m: fc.integer({ min: 1, max: 19 }),
      k: fc.integer({ min: 1, max: 19 }),
      n: fc.integer({ min: 1, max: 19 }),
      tA: fc.boolean(),
      tB: fc.boolean(),
      batch: fc.constantFrom([[], []], [[2], [2]], [[3], []], [[2, 1], [3]]),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ m, k, n, tA, tB, batch: [ba, bb], seed }) => {
        const sa = [...ba, ...(tA ? [k, m] : [m, k])], sb = [...bb, ...(tB ? [n, k] : [k, n])];
        const [x, y] = [input('a', sa), input('b', sb)];
        await agree([b.matmul(x, y, tA, tB)], [x, y], [sa, sb], seed);
      }),
      { numRuns: 150 },
    );
  });

  it('matches on sizes of several panels and a long inner dimension', async () => {
    for (const [m, k, n, tA, tB] of [[67, 130, 35, false, false], [33, 301, 9, true, false], [5, 64, 70, false, true], [64, 784, 40, true, true]] as const) {
      const sa = tA ? [k, m] : [m, k], sb = tB ? [n, k] : [k, n];
      const [x, y] = [input('a', sa), input('b', sb)];
      await agree([b.matmul(x, y, tA, tB)], [x, y], [sa, sb], m + k + n);
    }
  });
});

describe('wasm conv2d and its backward forms', () => {
  const arb = fc.record({
    B: fc.integer({ min: 1, max: 3 }),
    C: fc.integer({ min: 1, max: 5 }),
    F: fc.integer({ min: 1, max: 11 }),
    k: fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 })),
    strides: fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 3 })),
    padding: fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })),
    dilations: fc.tuple(fc.integer({ min: 1, max: 2 }), fc.integer({ min: 1, max: 2 })),
    extra: fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 6 })),
    groups: fc.constantFrom(1, 1, 1, 2),
    seed: fc.integer({ min: 1, max: 2 ** 30 }),
  });

  it('forward, input gradient and filter gradient match the JS kernels (groups > 1 runs the JS kernel)', async () => {
    await fc.assert(
      fc.asyncProperty(arb, async ({ B, C, F, k, strides, padding, dilations, extra, groups, seed }) => {
        const fit = (q: number) => Math.max(1, dilations[q] * (k[q] - 1) + 1 - padding[2 * q] - padding[2 * q + 1]) + extra[q];
        const [H, W] = [fit(0), fit(1)];
        const o: ConvOpts = { strides, padding, dilations, groups };
        const xs = [B, H, W, C * groups], ws = [k[0], k[1], C, F * groups];
        const ys = [B, convOutSize(H, k[0], strides[0], dilations[0], padding[0], padding[1]), convOutSize(W, k[1], strides[1], dilations[1], padding[2], padding[3]), F * groups];
        const [x, w, dy] = [input('x', xs), input('w', ws), input('dy', ys)];
        const outs = [b.conv2d(x, w, o), b.conv2dBackpropInput(dy, w, o, [H, W]), b.conv2dBackpropFilter(x, dy, o, k)];
        await agree(outs, [x, w, dy], [xs, ws, ys], seed);
      }),
      { numRuns: 120 },
    );
  });

  it('matches on LeNet-5 sizes (batch 8)', async () => {
    for (const [xs, ws, pad] of [[[8, 28, 28, 1], [5, 5, 1, 6], 2], [[8, 14, 14, 6], [5, 5, 6, 16], 0]] as const) {
      const o: ConvOpts = { padding: [pad, pad, pad, pad] };
      const ys = [xs[0], xs[1] + 2 * pad - 4, xs[2] + 2 * pad - 4, ws[3]];
      const [x, w, dy] = [input('x', [...xs]), input('w', [...ws]), input('dy', ys)];
      await agree([b.conv2d(x, w, o), b.conv2dBackpropInput(dy, w, o, [xs[1], xs[2]]), b.conv2dBackpropFilter(x, dy, o, [5, 5])], [x, w, dy], [[...xs], [...ws], ys], 7);
    }
  });
});

describe('wasm conv2d_backprop_filter split over the batch', () => {
  it('matches the JS kernel: uneven chunks, more splits than images, LeNet-5 sizes', async () => {
    // [image, filter, padding, strides, splits]
    const cases: [number[], number[], number, number, number][] = [
      [[7, 6, 5, 3], [3, 2, 3, 5], 1, 2, 3],
      [[2, 5, 7, 2], [2, 3, 2, 4], 0, 1, 5],
      [[9, 28, 28, 1], [5, 5, 1, 6], 2, 1, 4],
      [[10, 14, 14, 6], [5, 5, 6, 16], 0, 1, 8],
    ];
    for (const [xs, ws, pad, st, S] of cases) {
      const o: ConvOpts = { padding: [pad, pad, pad, pad], strides: [st, st] };
      const ys = [xs[0], convOutSize(xs[1], ws[0], st, 1, pad, pad), convOutSize(xs[2], ws[1], st, 1, pad, pad), ws[3]];
      const [x, dy] = [input('x', xs), input('dy', ys)];
      await agree([b.conv2dBackpropFilter(x, dy, o, ws.slice(0, 2), S)], [x, dy], [xs, ys], S);
    }
  });
});

describe('wasm fused elementwise programs', () => {
  /** A random program over `k` inputs (u: one value, f: the output's size [rows, n], c: a row [n]),
   *  each line one of the ops the wasm kernels have; exp and pow on single values only (they run
   *  once, via Math). */
  const arb = fc
    .record({
      pattern: fc.array(fc.constantFrom('u', 'f', 'c'), { minLength: 1, maxLength: 4 }),
      rows: fc.integer({ min: 2, max: 5 }),
      n: fc.integer({ min: 1, max: 37 }),
      specs: fc.array(fc.tuple(fc.integer({ min: 0, max: 12 }), fc.nat(), fc.nat(), fc.nat()), { minLength: 1, maxLength: 8 }),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    })
    .map(({ pattern, rows, n, specs, seed }) => {
      const code: string[] = [];
      const f32: string[] = pattern.map((_, k) => `i${k}`);
      const uniform = pattern.flatMap((p, k) => (p === 'u' ? [`i${k}`] : []));
      const line = (text: string, isF32 = true) => {
        code.push(text);
        if (isF32) f32.push(`r${code.length - 1}`);
        return `r${code.length - 1}`;
      };
      const pick = (q: number) => f32[q % f32.length];
      const binary = ['add', 'sub', 'mul', 'div', 'max', 'min'];
      for (const [kind, a, c, d] of specs) {
        if (kind < 6) line(`${binary[kind]} ${pick(a)} ${kind === 3 && c % 3 === 0 ? 'f32:0.5' : pick(c)}`);
        else if (kind < 9) line(`${['neg', 'abs', 'floor'][kind - 6]} ${pick(a)}`);
        else if (kind === 9) line(`sqrt ${line(`abs ${pick(a)}`)}`);
        else if (kind === 10) {
          const cond = line(`${['lt', 'ge', 'eq', 'ne'][d % 4]} ${pick(a)} ${pick(c)}`, false);
          line(d % 2 ? `select ${cond} ${pick(a)} ${pick(d)}` : `cast.f32 ${cond}`);
        } else if (uniform.length) line(kind === 11 ? `exp ${uniform[a % uniform.length]}` : `pow ${uniform[a % uniform.length]} f32:${(c % 5) - 2}`);
      }
      if (!code.length) line(`add ${pick(0)} f32:1`);
      return { pattern, rows, n, code, seed };
    });

  it('give the bits of the JS kernel (every program here is one the wasm path runs)', async () => {
    await fc.assert(
      fc.asyncProperty(arb, async ({ pattern, rows, n, code, seed }) => {
        const xs = pattern.map((p, k) => input(`x${k}`, p === 'u' ? [] : p === 'c' ? [n] : [rows, n]));
        const y = b.fused(xs, code, [rows, n]);
        const program = programOf([y], false);
        const manifest = { programs: { p: program } } as unknown as Manifest;
        expect(WebAssembly.Module.exports(new WebAssembly.Module(cpuWasm(manifest))).map((x) => x.name)).toContain(fusedKey(pattern.map((p) => (p === 'c' && n === 1 ? 'u' : p)).join(''), code.join('; ')));
        const exec = await CpuExecutor.create(cpuKernels, manifest);
        const feeds = new Map(xs.map((x, k) => [x, randomTensor(x.shape as number[], seed + k, { min: -2, max: 2 })]));
        const want = evalCpu([y], feeds, 'f32')[0];
        const got = (await exec.run(program, feedsOf(feeds))).out0;
        expect(Array.from(got.data)).toEqual(Array.from(want.data));
      }),
      { numRuns: 60 },
    );
  }, 60_000);

  it('with sums over rows (k: [rows, n] for an output [n], a bias gradient) give the bits of the JS kernel', async () => {
    const arb = fc.record({
      pattern: fc.array(fc.constantFrom('u', 'f', 'k'), { minLength: 1, maxLength: 4 }).map((p) => [...p, 'k']),
      rows: fc.integer({ min: 1, max: 70 }),
      n: fc.integer({ min: 1, max: 37 }),
      ops: fc.array(fc.tuple(fc.constantFrom('add', 'sub', 'mul', 'div', 'max'), fc.nat(), fc.nat()), { maxLength: 5 }),
      seed: fc.integer({ min: 1, max: 2 ** 30 }),
    });
    await fc.assert(
      fc.asyncProperty(arb, async ({ pattern, rows, n, ops, seed }) => {
        // each k input summed, then lines over the sums and the other inputs
        const code = pattern.flatMap((p, k) => (p === 'k' ? [`sum.0 i${k}`] : []));
        const regs = [...code.map((_, r) => `r${r}`), ...pattern.flatMap((p, k) => (p === 'k' ? [] : [`i${k}`]))];
        for (const [op, a, c] of ops) code.push(`${op} ${regs[a % regs.length]} ${regs.concat(`r${code.length - 1}`)[c % (regs.length + 1)]}`);
        const xs = pattern.map((p, k) => input(`x${k}`, p === 'u' ? [] : p === 'f' ? [n] : [rows, n]));
        const y = b.fused(xs, code, [n]);
        const program = programOf([y], false);
        const manifest = { programs: { p: program } } as unknown as Manifest;
        const key = fusedKey(pattern.map((p) => (p === 'f' && n === 1 ? 'u' : p)).join(''), code.join('; '));
        if (rows > 1) expect(WebAssembly.Module.exports(new WebAssembly.Module(cpuWasm(manifest))).map((x) => x.name)).toContain(key);
        const exec = await CpuExecutor.create(cpuKernels, manifest);
        // the executor calls the wasm program (a measuring peek at its private exports)
        const own = exec as unknown as { e: Record<string, (...a: number[]) => void> };
        const fn = own.e[key];
        let calls = 0;
        if (fn) own.e = { ...own.e, [key]: (...a: number[]) => (calls++, fn(...a)) };
        const feeds = new Map(xs.map((x, k) => [x, randomTensor(x.shape as number[], seed + k, { min: -2, max: 2 })]));
        const want = evalCpu([y], feeds, 'f32')[0];
        const got = (await exec.run(program, feedsOf(feeds))).out0;
        expect(Array.from(got.data)).toEqual(Array.from(want.data));
        expect(calls).toBe(rows > 1 ? 1 : 0);
      }),
      { numRuns: 60 },
    );
  }, 60_000);
});

describe('training on the fast CPU path', () => {
  // the same table without its wasm source: model.ts falls back to the JavaScript kernels
  const jsOnly: CpuKernels = Object.fromEntries(Object.entries(cpuKernels).filter(([k]) => k !== 'wasm'));

  async function curves(file: string, shape: number[]): Promise<{ fast: number[]; js: number[]; params: [Record<string, Tensor>, Record<string, Tensor>] }> {
    const { manifest } = compile(file);
    const [fast, js] = [await Model.create(manifest!, cpuKernels, { backend: 'cpu', seed: 3 }), await Model.create(manifest!, jsOnly, { backend: 'cpu', seed: 3 })];
    const n = shape.reduce((p, d) => p * d, 1);
    const losses: [number[], number[]] = [[], []];
    for (let step = 0; step < 20; step++) {
      const x = randomTensor(shape, 100 + step, { min: 0, max: 1 });
      const y = Int32Array.from({ length: shape[0] }, (_, i) => (i * 7 + step) % 10);
      expect(x.data.length).toBe(n);
      for (const [q, m] of [fast, js].entries()) losses[q].push((await m.trainStep({ x, y })).loss);
    }
    return { fast: losses[0], js: losses[1], params: [await fast.getParams(), await js.getParams()] };
  }

  for (const [name, file, shape] of [['MNIST MLP', 'examples/mnist_mlp.dlm', [32, 784]], ['LeNet-5', 'examples/lenet5.dlm', [16, 28, 28, 1]]] as const) {
    it(`${name}: 20 Adam steps agree with the JS path within 1e-4 relative`, async () => {
      const { fast, js, params } = await curves(file, [...shape]);
      expect(fast[19]).toBeLessThan(fast[0]);
      fast.forEach((l, i) => expect(Math.abs(l - js[i])).toBeLessThanOrEqual(1e-4 * Math.abs(js[i])));
      // Adam moves every weight by about lr (1e-3) per step whatever its gradient's size, so a
      // weight whose gradient is at rounding level (the paths sum in different orders) can drift
      // by a small part of a step
      for (const [k, t] of Object.entries(params[1])) expectClose(params[0][k], t, { rtol: 1e-4, atol: 5e-5 });
    }, 60_000);
  }
});

describe('a bundle ships the wasm kernels as kernels.wasm', () => {
  it('trains with them (the same bits as in-process), and with the JS kernels when the file is gone', async () => {
    const { manifest } = compile('examples/mnist_mlp.dlm');
    const dir = mkdtempSync(join(tmpdir(), 'dlc-wasm-'));
    try {
      expect(await writeBundle(manifest!, dir)).toContain('kernels.wasm');
      const exported = WebAssembly.Module.exports(new WebAssembly.Module(readFileSync(join(dir, 'kernels.wasm')))).map((e) => e.name);
      expect(exported.filter((name) => name.includes('|')).length).toBeGreaterThan(3); // the Adam updates, bias adds...
      const steps = async (model: Model) => {
        const losses: number[] = [];
        for (let step = 0; step < 5; step++) {
          const x = randomTensor([16, 784], step, { min: 0, max: 1 });
          losses.push((await model.trainStep({ x, y: Int32Array.from({ length: 16 }, (_, i) => (i + step) % 10) })).loss);
        }
        return losses;
      };
      const bundled = async () => {
        const { createModel } = await import(/* @vite-ignore */ `${pathToFileURL(join(dir, 'model.js')).href}?${Math.random()}`);
        return steps(await createModel({ backend: 'cpu', seed: 5 }));
      };
      const fast = await steps(await Model.create(manifest!, cpuKernels, { backend: 'cpu', seed: 5 }));
      const js = await steps(await Model.create(manifest!, Object.fromEntries(Object.entries(cpuKernels).filter(([k]) => k !== 'wasm')), { backend: 'cpu', seed: 5 }));
      expect(fast).not.toEqual(js); // f32 products in the wasm GEMM round differently
      expect(await bundled()).toEqual(fast);
      rmSync(join(dir, 'kernels.wasm'));
      expect(await bundled()).toEqual(js);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
