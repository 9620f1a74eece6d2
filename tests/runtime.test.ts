// The executors themselves: symbol binding, CPU f64/f32 and WebGPU agreement, const and alias
// nodes, persistent tensors and updates, plans, dispatch sizes, dispose.

import { describe, expect, it } from 'vitest';
import { add, arg, constant, literal, matmul, max, mul, reshape, sub } from '../compiler/ir/build.ts';
import { toProgram, type Graph } from '../compiler/ir/graph.ts';
import type { Node } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { attachKernels } from '../compiler/codegen/kernels.ts';
import type { ProgramJSON } from '../runtime/program.ts';
import { runCpu } from '../runtime/cpu.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { bindSymbols, nodeShapes, strides } from '../runtime/shapes.ts';
import { workgroups } from '../runtime/webgpu.ts';
import { evalCpu, evalWebGPU, expectClose, feedsOf, gpuDevice, randomTensor, t, withExecutor } from './support/harness.ts';

const gpu = await gpuDevice();

describe('shapes', () => {
  // Two args of different roles share the name `x`: they are keyed `input:x` and `param:x`.
  const p: ProgramJSON = {
    nodes: [
      { id: 0, op: 'arg', inputs: [], attrs: {}, shape: ['B', 3], dtype: 'f32' },
      { id: 1, op: 'arg', inputs: [], attrs: {}, shape: ['B', 'T'], dtype: 'f32' },
    ],
    args: [
      { role: 'input', name: 'x', node: 0 },
      { role: 'param', name: 'x', node: 1 },
    ],
    outputs: [],
    updates: [],
    symbols: ['B', 'T'],
    kernels: [],
  };
  const shape = (s: number[]) => ({ shape: s });

  it('binds symbols from the argument shapes', () => {
    const syms = bindSymbols(p, { 'input:x': shape([2, 3]), 'param:x': shape([2, 5]) });
    expect(syms).toEqual({ B: 2, T: 5 });
    expect(nodeShapes(p, syms)).toEqual([[2, 3], [2, 5]]);
  });

  it('names the argument and both shapes when they disagree', () => {
    expect(() => bindSymbols(p, { 'input:x': shape([2, 3]), 'param:x': shape([4, 5]) })).toThrow(
      "param 'x' has shape [4, 5] but expects [B, T]: B is 4 here but 2 from input 'x'",
    );
    expect(() => bindSymbols(p, { 'input:x': shape([2, 4]), 'param:x': shape([2, 5]) })).toThrow(
      "input 'x' has shape [2, 4] but expects [B, 3]: dimension 1 is 4, not 3",
    );
    expect(() => bindSymbols(p, { 'input:x': shape([6]), 'param:x': shape([2, 5]) })).toThrow('rank 1, not 2');
    expect(() => bindSymbols(p, { 'input:x': shape([2, 3]) })).toThrow("missing param 'x'");
  });

  it('computes row-major strides', () => {
    expect(strides([2, 3, 4])).toEqual([12, 4, 1]);
    expect(strides([])).toEqual([]);
  });
});

// relu(x @ w + b) with a symbolic batch.
const x = arg('input', 'x', ['B', 3], 'f32');
const w = arg('param', 'w', [3, 4], 'f32');
const bias = arg('param', 'b', [4], 'f32');
const dense = max(add(matmul(x, w), bias), constant(0));
const denseFeeds = (batch: number) =>
  new Map<Node, Tensor>([
    [x, randomTensor([batch, 3], 1)],
    [w, randomTensor([3, 4], 2)],
    [bias, randomTensor([4], 3)],
  ]);

function denseReference(feeds: Map<Node, Tensor>): Tensor {
  const [xv, wv, bv] = [x, w, bias].map((n) => feeds.get(n)!.data);
  const batch = xv.length / 3;
  const out = new Float64Array(batch * 4);
  for (let i = 0; i < batch; i++)
    for (let j = 0; j < 4; j++) {
      let s = bv[j];
      for (let k = 0; k < 3; k++) s += xv[i * 3 + k] * wv[k * 4 + j];
      out[i * 4 + j] = Math.max(s, 0);
    }
  return { data: out, shape: [batch, 4] };
}

// A reshape of an input (an alias) that is also an output, a literal and a scalar const.
const v = arg('input', 'v', ['B', 2, 3], 'f32');
const flat = reshape(v, ['B', 6]);
const scaled = mul(add(flat, literal([1, 2, 3, 4, 5, 6], [6])), constant(2));
const vFeed = t([0, 1, 2, 3, 4, 5, -1, -2, -3, -4, -5, -6], [2, 2, 3]);
const scaledExpected = t([2, 6, 10, 14, 18, 22, 0, 0, 0, 0, 0, 0], [2, 6]);

describe('CPU executor', () => {
  it('computes a dense layer in f64 and f32', () => {
    const feeds = denseFeeds(5);
    const [y64] = evalCpu([dense], feeds, 'f64');
    const [y32] = evalCpu([dense], feeds, 'f32');
    expect(y64.data).toBeInstanceOf(Float64Array);
    expect(y32.data).toBeInstanceOf(Float32Array);
    expectClose(y64, denseReference(feeds), { rtol: 1e-12, atol: 1e-12 });
    expectClose(y32, y64, { rtol: 1e-6, atol: 1e-6 });
  });

  it('materializes consts and aliases reshapes', () => {
    const feeds = new Map([[v, vFeed]]);
    const [f, s] = evalCpu([flat, scaled], feeds, 'f64');
    expect(f.shape).toEqual([2, 6]);
    expect([...f.data]).toEqual([...vFeed.data]);
    expectClose(s, scaledExpected, { rtol: 0, atol: 0 });
  });

  it('checks feeds and kernels', () => {
    const p = toProgram({ outputs: [{ name: 'y', node: scaled }], updates: [] });
    const bad = { data: new Int32Array(12), shape: [2, 2, 3] };
    expect(() => runCpu(p, cpuKernels, { 'input:v': bad }, Float64Array)).toThrow("input 'v': f32 data must be a Float32Array or Float64Array");
    expect(() => runCpu(p, { reshape: 'alias' }, { 'input:v': vFeed }, Float64Array)).toThrow("no CPU kernel for op 'add'");
  });

  it('returns updates keyed like the feeds', () => {
    // One SGD step on a quadratic: w <- w - 0.5 * (w - target).
    const target = arg('input', 'target', [3], 'f32');
    const p = w3Program(target);
    let feeds: Record<string, Tensor> = { 'param:w': t([4, 8, -2], [3]), 'input:target': t([0, 0, 0], [3]) };
    for (let step = 0; step < 2; step++) feeds = { ...feeds, ...runCpu(p, cpuKernels, feeds, Float64Array).updates };
    expect([...feeds['param:w'].data]).toEqual([1, 2, -0.5]);
  });
});

const w3 = arg('param', 'w', [3], 'f32');
function w3Program(target: Node): ProgramJSON {
  const g: Graph = {
    outputs: [{ name: 'w_before', node: w3 }],
    updates: [{ role: 'param', name: 'w', node: sub(w3, mul(constant(0.5), sub(w3, target))) }],
  };
  return attachKernels(toProgram(g));
}

describe('dispatch size', () => {
  it('splits past 65535 workgroups', () => {
    expect(workgroups({ kind: 'elements' }, [64 * 65535])).toEqual([65535, 1]);
    expect(workgroups({ kind: 'elements' }, [64 * 65535 + 1])).toEqual([65535, 2]);
    expect(workgroups({ kind: 'tiles', rows: 4, cols: 4 }, [3, 5, 9])).toEqual([1, 1]); // 3 * 2 * 3 threads
    expect(workgroups({ kind: 'tiles', rows: 4, cols: 4 }, [2, 64 * 4, 4])).toEqual([2, 1]);
    expect(workgroups({ kind: 'elements' }, [])).toEqual([1, 1]);
  });
});

describe.skipIf(!gpu)('WebGPU executor', () => {
  it('agrees with the CPU on a dense layer', async () => {
    const feeds = denseFeeds(7);
    const [g] = await evalWebGPU([dense], feeds);
    const [c] = evalCpu([dense], feeds, 'f32');
    expectClose(g, c, { rtol: 1e-5, atol: 1e-6 });
  });

  it('uploads consts and aliases reshapes', async () => {
    const [f, s] = await evalWebGPU([flat, scaled], new Map([[v, vFeed]]));
    expect(f.shape).toEqual([2, 6]);
    expect([...f.data]).toEqual([...vFeed.data]);
    expectClose(s, scaledExpected, { rtol: 0, atol: 0 });
  });

  it('keeps persistent tensors and applies updates, one submit per run', async () => {
    const target = arg('input', 'target', [3], 'f32');
    const p = w3Program(target);
    await withExecutor(async (ex) => {
      let submits = 0;
      const queue = ex.device.queue;
      const submit = queue.submit.bind(queue);
      queue.submit = (cbs) => (submits++, submit(cbs));
      try {
        ex.write('param:w', t([4, 8, -2], [3]));
        const r1 = await ex.run(p, { 'input:target': t([0, 0, 0], [3]) });
        expect([...r1.w_before.data]).toEqual([4, 8, -2]); // read before the update lands
        expect(await ex.run(p, {}, [])).toEqual({});
        expect(submits).toBe(2);
      } finally {
        queue.submit = submit;
      }
      const { 'param:w': wv } = await ex.read(['param:w']);
      expect([...wv.data]).toEqual([1, 2, -0.5]);
    });
  });

  it('creates tensors for updates of new arguments and passes unchanged ones through', async () => {
    const s = arg('state', 's', [2], 'f32');
    const init: Graph = { outputs: [], updates: [{ role: 'param', name: 'w', node: literal([3, 4], [2]) }] };
    const step: Graph = { outputs: [{ name: 's2', node: add(s, s) }], updates: [{ role: 'state', name: 's', node: s }] };
    await withExecutor(async (ex) => {
      await ex.run(attachKernels(toProgram(init)));
      ex.write('state:s', t([1, 2], [2]));
      expect([...(await ex.run(attachKernels(toProgram(step)))).s2.data]).toEqual([2, 4]);
      const r = await ex.read(['param:w', 'state:s']);
      expect([...r['param:w'].data]).toEqual([3, 4]);
      expect([...r['state:s'].data]).toEqual([1, 2]);
    });
  });

  it('plans per batch size and survives a tensor growing', async () => {
    const p = attachKernels(toProgram({ outputs: [{ name: 'y', node: dense }], updates: [] }));
    await withExecutor(async (ex) => {
      for (const batch of [2, 9, 2, 1]) {
        const feeds = denseFeeds(batch);
        const r = await ex.run(p, feedsOf(feeds));
        expectClose(r.y, denseReference(feeds), { rtol: 1e-5, atol: 1e-6 });
      }
    });
  });

  it('dispatches more than 65535 workgroups', async () => {
    const n = 64 * 65535 + 100;
    const a = arg('input', 'a', [n], 'f32');
    const data = Float32Array.from({ length: n }, (_, i) => i % 1000);
    const [y] = await evalWebGPU([add(a, constant(1))], new Map([[a, { data, shape: [n] }]]));
    expect(y.data[0]).toBe(1);
    expect(y.data[n - 1]).toBe(((n - 1) % 1000) + 1);
    expectClose(y, { data: data.map((e) => e + 1), shape: [n] }, { rtol: 0, atol: 0 });
  });

  it('labels every buffer it makes and destroys them on dispose', async () => {
    const device = gpu!;
    const made: { buffer: GPUBuffer; destroyed: boolean }[] = [];
    const create = device.createBuffer.bind(device);
    device.createBuffer = (desc) => {
      const buffer = create(desc);
      const entry = { buffer, destroyed: false };
      const destroy = buffer.destroy.bind(buffer);
      buffer.destroy = () => ((entry.destroyed = true), destroy());
      made.push(entry);
      return buffer;
    };
    try {
      await withExecutor(async (ex) => {
        const p = attachKernels(toProgram({ outputs: [{ name: 'y', node: dense }, { name: 's', node: scaled }], updates: [] }));
        const feeds = { ...feedsOf(denseFeeds(2)), 'input:v': vFeed };
        await ex.run(p, feeds);
        await ex.read(['param:w']);
      });
    } finally {
      device.createBuffer = create;
    }
    expect(made.length).toBeGreaterThan(10);
    expect(made.filter((m) => !m.buffer.label.startsWith('dlc:'))).toEqual([]);
    expect(made.filter((m) => !m.destroyed).map((m) => m.buffer.label)).toEqual([]);
  });
});
