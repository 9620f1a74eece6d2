// `dlc export --onnx`: the exported model runs on ONNX Runtime and gives what dlc's predict gives.
// The MNIST perceptron goes the user's way (dlc train --save, then dlc export) and is checked on the
// 2,000 test digits; LeNet-5 (convolutions, pooling, dropout off) with its initial weights, a
// batch-norm model with briefly trained running statistics, and a model that uses every mappable
// primitive are checked on the library API.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import * as ir from '../compiler/ir/build.ts';
import { toProgram } from '../compiler/ir/graph.ts';
import { OPSET, exportOnnx } from '../compiler/export/onnx.ts';
import type { Tensor, TypedArray } from '../compiler/ops/types.ts';
import { checkpointWeights, compileForExport, exportModel } from '../cli/export.ts';
import { mnist } from '../cli/data.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { runCpu } from '../runtime/cpu.ts';
import type { Manifest } from '../runtime/program.ts';
import { dlc } from './support/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'dlc-onnx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const manifestOf = (file: string, forExport: boolean): Manifest => {
  const r = forExport ? compileForExport(file) : compile(file);
  if (!r.manifest) throw new Error(`${file} does not compile`);
  return r.manifest;
};

/** The first `n` test digits of the model's MNIST split, shaped like its input x. */
function digits(m: Manifest, n: number): { x: Float32Array; shape: number[]; labels: Int32Array } {
  const { test } = mnist(m.inputs, m.train.seed);
  const x = test.columns.x;
  const per = x.shape.slice(1).reduce((a, b) => a * b, 1);
  return { x: (x.data as Float32Array).slice(0, n * per), shape: [n, ...x.shape.slice(1)], labels: (test.columns.y.data as Int32Array).slice(0, n) };
}

const maxAbsDiff = (a: ArrayLike<number | bigint | boolean>, b: TypedArray): number => {
  expect(a.length).toBe(b.length);
  let d = 0;
  for (let i = 0; i < b.length; i++) d = Math.max(d, Math.abs(Number(a[i]) - b[i]));
  return d;
};

const ortType = (dtype: string) => (dtype === 'f32' ? 'float32' : 'int32');

/** Runs the .onnx bytes on ONNX Runtime (CPU). */
async function runOnnx(bytes: Uint8Array, feeds: Record<string, Tensor>, dtypes: Record<string, string>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    return await session.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(ortType(dtypes[k]), t.data as Float32Array, t.shape)])));
  } finally {
    await session.release();
  }
}

describe('dlc export --onnx', () => {
  it('exports the trained MNIST perceptron: the same probabilities as dlc on the 2,000 test digits', async () => {
    const ckpt = join(dir, 'mlp.ckpt');
    const out = join(dir, 'mlp.onnx');
    const train = await dlc('train', 'examples/mnist_mlp.dlm', '--data', 'mnist', '--epochs', '2', '--backend', 'cpu', '--save', ckpt);
    expect(train.code, train.stderr).toBe(0);
    const exp = await dlc('export', 'examples/mnist_mlp.dlm', '--checkpoint', ckpt, '--onnx', out);
    expect(exp.code, exp.stderr).toBe(0);
    expect(exp.stderr).toContain(`opset ${OPSET}`);
    expect(exp.stderr).toContain(`checkpoint ${ckpt}`);

    const m = manifestOf('examples/mnist_mlp.dlm', false);
    const { x, shape, labels } = digits(m, 2000);
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    model.restore(new Uint8Array(readFileSync(ckpt)));
    const want = await model.predict({ x });
    model.dispose();

    const bytes = new Uint8Array(readFileSync(out));
    const session = await ort.InferenceSession.create(bytes);
    // The batch dimension stays symbolic: dlc's names, dtypes and shapes.
    expect(session.inputMetadata).toEqual([{ name: 'x', isTensor: true, type: 'float32', shape: ['B', 784] }]);
    expect(session.outputMetadata).toEqual([
      { name: 'probs', isTensor: true, type: 'float32', shape: ['B', 10] },
      { name: 'pred', isTensor: true, type: 'int32', shape: ['B'] },
    ]);
    const got = await session.run({ x: new ort.Tensor('float32', x, shape) });
    await session.release();

    const diff = maxAbsDiff(got.probs.data as Float32Array, want.probs.data);
    console.log(`mnist_mlp: max |ONNX Runtime - dlc| over 2,000 digits x 10 probabilities: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
    expect(Array.from(got.pred.data as Int32Array)).toEqual(Array.from(want.pred.data));
    // The checkpoint's weights, not the initial ones: the exported model has learned.
    const right = (got.pred.data as Int32Array).reduce((s, p, i) => s + (p === labels[i] ? 1 : 0), 0);
    expect(right / 2000).toBeGreaterThan(0.9);
  });

  it('exports LeNet-5 (NHWC convolutions, max pooling, dropout off) with its initial weights', async () => {
    const file = 'examples/lenet5.dlm';
    const { bytes, weightsFrom } = await exportModel(manifestOf(file, true));
    expect(weightsFrom).toContain('initial weights of seed 2');
    const m = manifestOf(file, false);
    const { x, shape } = digits(m, 300);
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const want = await model.predict({ x });
    model.dispose();
    const got = await runOnnx(bytes, { x: { data: x, shape } }, { x: 'f32' });
    const diff = maxAbsDiff(got.probs.data as Float32Array, want.probs.data);
    console.log(`lenet5: max |ONNX Runtime - dlc| over 300 digits: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
    expect(Array.from(got.pred.data as Int32Array)).toEqual(Array.from(want.pred.data));
  });

  it('exports batch norm with its running statistics from a checkpoint', async () => {
    const file = 'examples/mnist_mlp_bn.dlm';
    const m = manifestOf(file, false);
    const { train } = mnist(m.inputs, m.train.seed);
    const model = await Model.create(m, cpuKernels, { backend: 'cpu' });
    const n = 64;
    for (let s = 0; s < 40; s++) {
      const x = (train.columns.x.data as Float32Array).subarray(s * n * 784, (s + 1) * n * 784);
      const y = (train.columns.y.data as Int32Array).subarray(s * n, (s + 1) * n);
      await model.trainStep({ x, y });
    }
    const saved = await model.save();
    const { x, shape } = digits(m, 300);
    const want = await model.predict({ x });
    model.dispose();

    const em = manifestOf(file, true);
    const weights = await checkpointWeights(em, 'bn.ckpt', saved);
    // The running statistics moved away from their initial 0 and 1: a graph that ignored them
    // would not match.
    expect(Math.max(...Array.from(weights['state:h.batch_norm_0.running_mean'].data, Math.abs))).toBeGreaterThan(0.01);
    const { bytes } = await exportModel(em, { checkpoint: 'bn.ckpt', checkpointBytes: saved });
    const got = await runOnnx(bytes, { x: { data: x, shape } }, { x: 'f32' });
    const diff = maxAbsDiff(got.probs.data as Float32Array, want.probs.data);
    console.log(`mnist_mlp_bn: max |ONNX Runtime - dlc| over 300 digits: ${diff.toExponential(2)}`);
    expect(diff).toBeLessThan(1e-4);
  });

  it('maps every primitive an inference graph can hold, at any batch size', async () => {
    const file = join(dir, 'cover.dlm');
    writeFileSync(file, COVER);
    const em = manifestOf(file, true);
    const ops = new Set(em.programs.predict.nodes.map((n) => n.op));
    for (const op of ['conv2d', 'max_pool2d', 'avg_pool2d', 'take', 'iota', 'select', 'slice', 'concat', 'broadcast', 'transpose', 'reshape', 'cast', 'argmax', 'reduce_min', 'pow', 'ne'])
      expect(ops, op).toContain(op);
    const { bytes } = await exportModel(em);
    const model = await Model.create(manifestOf(file, false), cpuKernels, { backend: 'cpu' });
    let seed = 7;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 4 - 2;
    for (const B of [5, 2]) {
      const feeds: Record<string, Tensor> = {};
      for (const i of em.inputs) {
        const shape = i.shape.map((d) => (typeof d === 'string' ? B : d));
        const size = shape.reduce((a, b) => a * b, 1);
        feeds[i.name] = { data: i.dtype === 'f32' ? Float32Array.from({ length: size }, rnd) : Int32Array.from({ length: size }, () => Math.round(rnd() * 3)), shape };
      }
      feeds.k.data.set([0, 7, 8, -1, 3].slice(0, B)); // labels outside [0, 8) pick 0
      const want = await model.predict(feeds);
      const got = await runOnnx(bytes, feeds, Object.fromEntries(em.inputs.map((i) => [i.name, i.dtype])));
      for (const o of em.outputs) {
        expect(got[o.name].dims, o.name).toEqual(want[o.name].shape);
        const scale = Math.max(1, ...Array.from(want[o.name].data, Math.abs));
        expect(maxAbsDiff(got[o.name].data as TypedArray, want[o.name].data) / scale, `${o.name} at B = ${B}`).toBeLessThan(1e-5);
      }
    }
    model.dispose();
  });

  it('reads symbolic dimensions at run time where a node needs their value', async () => {
    // Programs the language does not make in inference graphs, built from IR: two symbolic dims.
    const x = ir.arg('input', 'x', ['B', 'C', 4], 'f32');
    const y = ir.arg('input', 'y', ['B', 'C'], 'f32');
    const idx = ir.arg('input', 'idx', ['B'], 'i32');
    const p = toProgram({
      outputs: [
        { name: 'size', node: ir.size(['B', 'C', 2]) },
        { name: 'rows', node: ir.iota(['B', 'C'], 0) },
        { name: 'cols', node: ir.iota(['B', 'C'], 1) },
        { name: 'split', node: ir.reshape(x, ['B', 'C', 2, 2]) },
        { name: 'picked', node: ir.take(y, idx) },
        { name: 'filled', node: ir.broadcast(ir.constant(1.5), ['C', 'B']) },
        { name: 'x', node: x },
      ],
      updates: [],
    });
    const [B, C] = [3, 5];
    const feeds: Record<string, Tensor> = {
      x: { data: Float32Array.from({ length: B * C * 4 }, (_, i) => i / 7), shape: [B, C, 4] },
      y: { data: Float32Array.from({ length: B * C }, (_, i) => i + 0.5), shape: [B, C] },
      idx: { data: Int32Array.from([4, 5, -1]), shape: [B] },
    };
    const want = runCpu(p, cpuKernels, Object.fromEntries(Object.entries(feeds).map(([k, t]) => [`input:${k}`, t])), Float32Array).outputs;
    const got = await runOnnx(exportOnnx(p, { name: 'dims', weights: {} }), feeds, { x: 'f32', y: 'f32', idx: 'i32' });
    for (const o of p.outputs) {
      expect(got[o.name].dims, o.name).toEqual(want[o.name].shape);
      expect(maxAbsDiff(got[o.name].data as TypedArray, want[o.name].data), o.name).toBe(0);
    }
    expect(Array.from(got.picked.data as Float32Array)).toEqual([4.5, 0, 0]);
  });

  it('names the op and its source line when an op has no ONNX mapping', async () => {
    const file = join(dir, 'noisy.dlm');
    writeFileSync(file, 'model noisy {\n  input x: f32[B, 4]\n  h = dense(x, 3)\n  output y = h + uniform([3])\n  loss = mean(h)\n}\n');
    await expect(exportModel(manifestOf(file, true))).rejects.toThrow(/cannot export op 'rand' at .*noisy\.dlm:4:\d+: random numbers/);
    const r = await dlc('export', file, '--onnx', join(dir, 'noisy.onnx'));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^dlc: cannot export op 'rand' at .*noisy\.dlm:4:\d+/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    // Programs that are not inference graphs of primitives.
    expect(() => exportOnnx(manifestOf('examples/resnet_small.dlm', true).programs.train, { name: 'resnet_small', weights: {} })).toThrow(/op 'conv2d_backprop_\w+' at .*: a gradient op/);
    expect(() => exportOnnx(manifestOf('examples/mnist_mlp.dlm', false).programs.predict, { name: 'mnist_mlp', weights: {} })).toThrow(/op 'fused' .*before the fuse pass/);
  });

  it('refuses a missing checkpoint and a checkpoint of another model, in one line', async () => {
    const missing = await dlc('export', 'examples/lenet5.dlm', '--checkpoint', join(dir, 'nope.ckpt'), '--onnx', join(dir, 'x.onnx'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^dlc: cannot read checkpoint '.*nope\.ckpt': no such file\n$/);

    const lenet = await Model.create(manifestOf('examples/lenet5.dlm', false), cpuKernels, { backend: 'cpu' });
    const other = join(dir, 'lenet.ckpt');
    writeFileSync(other, await lenet.save());
    lenet.dispose();
    const wrong = await dlc('export', 'examples/mnist_mlp.dlm', '--checkpoint', other, '--onnx', join(dir, 'x.onnx'));
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/^dlc: --checkpoint .*lenet\.ckpt: not a checkpoint of model 'mnist_mlp': it belongs to model 'lenet5'\n$/);
  });
});

/** A model whose inference graph holds every primitive the exporter maps (the ones dlc's
 *  language can reach outside training). */
const COVER = `
layer gconv(x: f32[..., c]) {
  param w: f32[3, 3, 2, 6] = he_normal
  return conv(x, w, strides: 2, padding: "same", groups: 2)
}
layer dconv(x: f32[..., c]) {
  param w: f32[2, 2, 4, 3] = he_normal
  return conv(x, w, padding: [1, 0, 0, 1], dilations: 2)
}
model cover {
  input x: f32[B, 6, 6, 4]
  input v: f32[B, 8]
  input k: i32[B]
  input n: i32[B, 3]

  output g = gconv(x) |> avg_pool2d(2, strides: 1, padding: [1, 0, 1, 0]) |> max_pool2d(2, strides: 1, padding: "same")
  output d = dconv(x)
  output un = concat([-v, exp(v), log(abs(v) + 1), sqrt(abs(v))], axis: 1)
  output un2 = concat([sin(v), cos(v), floor(v), sign(v)], axis: 1)
  ww = dense(v, 8)
  output bin = concat([v + ww, v - ww, v * ww, v / (abs(ww) + 1), abs(v) ^ ww, max(v, ww), min(v, ww)], axis: 1)
  output cmp = concat([v == ww, v != ww, v < ww, v <= ww], axis: 1)
  output cmp2 = concat([v > ww, v >= ww, not (v > 0) and ww > 0, v > 0 or ww > 0], axis: 1)
  output sel = v > ww ? v : ww
  output ints = n * 3 - n / 2 + max(n, 1) - min(n, 0) + n ^ 2 + -n
  output casts = float(n) + float(n > 1) + float(int(v[:, 0:3] * 3))
  output red = concat([sum(v, axis: 1, keepdims: true), mean(v, axis: 1, keepdims: true), max(v, axis: 1, keepdims: true), min(v, axis: 1, keepdims: true)], axis: 1)
  output red2 = sum(x, axis: [1, 3])
  output am = argmax(v, axis: 1)
  output amn = argmax(n)
  output sl = concat([v[:, 1:7:2], flatten(transpose(x, [0, 3, 1, 2])[:, 1, 2:5, 0:6:3])], axis: 1)
  output pk = pick(v, k)
  output oh = one_hot(k, 8) * v
  output bc = fill([2, 3], 1.5) + 0.0 * sum(v)
  output mm = transpose(expand_dims(v, 1), [0, 2, 1]) @ expand_dims(v, 1) + expand_dims(v, 2) @ transpose(expand_dims(v, 2), [0, 2, 1])
  output mean_all = mean(v)
  output bsym = fill(shape(v), 2.0)
  output fl = flatten(x) |> dense(3)
  loss = mean(v)
}
`;
