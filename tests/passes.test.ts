// The optimizing passes one by one: constant folding, the algebraic rule table, the stability
// rewrites, the verifier, the IR printer, the pipeline on every example model (verified after each
// pass), and `dlc compile --dump/--stats` and `dlc graph`.

import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { make, type Node } from '../compiler/ir/node.ts';
import { toProgram, type Graph } from '../compiler/ir/graph.ts';
import { printGraph } from '../compiler/ir/print.ts';
import { attachKernels } from '../compiler/codegen/kernels.ts';
import { check } from '../compiler/compile.ts';
import { fold } from '../compiler/passes/fold.ts';
import { simplify } from '../compiler/passes/simplify.ts';
import { stability } from '../compiler/passes/stability.ts';
import { split } from '../compiler/passes/split.ts';
import { passNames, passes, runPipeline, type Pass } from '../compiler/passes/pipeline.ts';
import { VerifyError, verify, verifyProblems } from '../compiler/passes/verify.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { evalCpu, expectClose } from './support/harness.ts';
import { dlc } from './support/cli.ts';

const graph = (...nodes: Node[]): Graph => ({ outputs: nodes.map((node, i) => ({ name: `out${i}`, node })), updates: [] });
const after = (p: Pass | readonly Pass[], ...nodes: Node[]): Node[] => runPipeline(graph(...nodes), { passes: 'run' in p ? [p] : p, verify: true }).outputs.map((o) => o.node);
const x = b.arg('input', 'x', ['B', 3], 'f32');
const v = b.arg('input', 'v', [3], 'f32');
const i = b.arg('input', 'i', [3], 'i32');
const c = b.constant;

describe('the IR printer', () => {
  it('prints one stable line per node, then the results', () => {
    const g: Graph = { outputs: [{ name: 'y', node: b.max(b.add(x, v), c(0)) }], updates: [{ role: 'param', name: 'v', node: b.mul(v, c(2)) }] };
    expect(printGraph(g)).toBe(
      [
        '%0 = arg input x : f32[B, 3]',
        '%1 = arg input v : f32[3]',
        '%2 = add %0, %1 : f32[B, 3]',
        '%3 = const 0 : f32[]',
        '%4 = max %2, %3 : f32[B, 3]',
        '%5 = const 2 : f32[]',
        '%6 = mul %1, %5 : f32[3]',
        'output y = %4',
        'update param v = %6',
      ].join('\n'),
    );
    expect(printGraph(graph(b.sum(x, [1], true), b.transpose(x, [1, 0])))).toContain('%1 = sum %0 {axes: [1], keepdims: true} : f32[B, 1]');
    const fused = runPipeline(graph(b.max(b.add(x, v), c(0))));
    expect(printGraph(fused)).toContain('= fused %0, %1 {r0 = add i0 i1; r1 = max r0 f32:0} : f32[B, 3]');
  });
});

describe('constant folding', () => {
  it('computes ops on constants in float64 and rounds to the dtype', () => {
    const [third] = after(fold, b.div(c(1), c(3)));
    expect(third.op).toBe('const');
    expect(third.attrs.value).toBe(Math.fround(1 / 3));
    const [n] = after(fold, b.add(b.mul(c(7, 'i32'), c(6, 'i32')), c(-2, 'i32')));
    expect([n.op, n.dtype, n.attrs.value]).toEqual(['const', 'i32', 40]);
    const [s] = after(fold, b.size([4, 5]));
    expect(s.attrs.value).toBe(20);
    const [lit] = after(fold, b.mul(b.literal([1, 2, 3], [3]), c(2)));
    expect(lit.attrs.value).toEqual([2, 4, 6]);
    const [ramp] = after(fold, b.iota([2, 2], 1));
    expect([ramp.op, ramp.attrs.value]).toEqual(['const', [0, 1, 0, 1]]);
  });

  it('leaves what it cannot or should not fold', () => {
    // a symbolic size, non-finite results, big results, arguments
    const kept = [b.size(['B']), b.div(c(1), c(0)), b.log(c(-1)), b.iota([20, 20], 0), b.add(v, c(1))];
    expect(after(fold, ...kept)).toEqual(kept);
    // a uniform result is the broadcast of one scalar
    const [u] = after(fold, b.reshape(b.literal([5, 5], [2]), [2, 1]));
    expect([u.op, u.inputs[0].attrs.value]).toEqual(['broadcast', 5]);
  });
});

describe('algebraic simplification', () => {
  it('removes identities when the operand already has the result type', () => {
    const ids = [b.mul(x, c(1)), b.mul(c(1), x), b.add(x, c(0)), b.add(c(0), x), b.sub(x, c(0)), b.div(x, c(1)), b.pow(x, c(1)), b.neg(b.neg(x)), b.select(b.binary('gt', x, c(0)), x, x)];
    for (const n of after(simplify, ...ids)) expect(n).toBe(x);
    // x*1 with a bigger 1 broadcasts x: kept (as x broadcast, or a multiply)
    const [wide] = after(simplify, b.mul(v, b.broadcast(c(1), [2, 3])));
    expect(wide.shape).toEqual([2, 3]);
  });

  it('rewrites x^2, 0-x, x*-1, x-(-y), reshape and transpose chains, same-type casts and broadcasts', () => {
    const [sq, negx, negx2, plus] = after(simplify, b.pow(x, c(2)), b.sub(c(0), x), b.mul(x, c(-1)), b.sub(x, b.neg(v)));
    expect(sq).toBe(b.mul(x, x));
    expect(negx).toBe(b.neg(x));
    expect(negx2).toBe(b.neg(x));
    expect(plus).toBe(b.add(x, v));
    const [r] = after(simplify, b.reshape(b.reshape(x, ['B', 3, 1]), ['B', 1, 3]));
    expect(r).toBe(b.reshape(x, ['B', 1, 3]));
    const t = b.arg('input', 't', [2, 3, 4], 'f32');
    const [tt, tid] = after(simplify, b.transpose(b.transpose(t, [1, 2, 0]), [2, 0, 1]), b.transpose(t, [0, 1, 2]));
    expect(tt).toBe(t);
    expect(tid).toBe(t);
    const [same, cast, bc] = after(simplify, b.reshape(x, ['B', 3]), make('cast', [i], { to: 'i32' }), b.broadcast(v, [3]));
    expect([same, cast, bc]).toEqual([x, i, v]);
  });

  it('moves broadcasts out of elementwise ops (the optimizer update materializes none)', () => {
    const lr = b.arg('hyper', 'lr', [], 'f32');
    const g = b.arg('input', 'g', [784, 256], 'f32');
    const [n] = after(simplify, b.mul(b.broadcast(lr, [784, 256]), g));
    expect(n).toBe(b.mul(lr, g));
    // unary ops compute on the small operand, then broadcast once
    const [e] = after(simplify, b.exp(b.broadcast(v, [4, 3])));
    expect(e).toBe(b.broadcast(b.exp(v), [4, 3]));
    // and the mnist gradient's reshape of a broadcast scalar
    const k = b.arg('hyper', 'k', [], 'f32');
    const [r] = after(simplify, b.mul(b.reshape(b.broadcast(k, ['B']), ['B', 1]), x));
    expect(r).toBe(b.mul(k, x));
  });

  it('makes reductions keep their dims (so sum(x) and sum(x, keepdims) are one node)', () => {
    const [a, bb] = after(simplify, b.sum(x, [1]), b.reshape(b.sum(x, [1], true), ['B']));
    expect(a).toBe(bb);
    expect(a).toBe(b.reshape(b.sum(x, [1], true), ['B']));
    const [unit] = after(simplify, b.mean(b.reshape(x, ['B', 1, 3]), [1], true));
    expect(unit).toBe(b.reshape(x, ['B', 1, 3]));
  });

  it('computes what the original computes', () => {
    const xs: Tensor = { data: Float32Array.from([1.5, -2, 3, 0.25, 4, -1]), shape: [2, 3] };
    const vs: Tensor = { data: Float32Array.from([2, -0.5, 1]), shape: [3] };
    const s = b.arg('input', 's', [2, 3], 'f32');
    const y = b.sub(b.mul(b.pow(b.add(s, b.broadcast(v, [2, 3])), c(2)), c(1)), b.neg(b.reshape(b.div(b.sum(s, [1]), c(1)), [2, 1])));
    const feeds = new Map([[s, xs], [v, vs]]);
    const [opt] = after(passes, y);
    expectClose(evalCpu([opt], feeds, 'f64')[0], evalCpu([y], feeds, 'f64')[0], { rtol: 1e-15, atol: 0 });
  });
});

describe('work split', () => {
  const img = b.arg('input', 'img', ['B', 28, 28, 6], 'f32');
  const feeds = new Map<Node, Tensor>([[img, { data: Float64Array.from({ length: 3 * 28 * 28 * 6 }, (_, k) => Math.sin(k * 0.37)), shape: [3, 28, 28, 6] }]]);

  it('reduces many values into few results per image first, then over the batch (a conv bias gradient)', () => {
    for (const op of ['sum', 'mean', 'reduce_max', 'reduce_min'] as const) {
      const y = b.reduce(op, img, [0, 1, 2], true);
      const [opt] = after(split, y);
      expect([opt.op, opt.attrs.axes, opt.inputs[0].op, opt.inputs[0].attrs.axes, opt.inputs[0].shape]).toEqual([op, [0], op, [1, 2], ['B', 1, 1, 6]]);
      expectClose(evalCpu([opt], feeds, 'f64')[0], evalCpu([y], feeds, 'f64')[0], { rtol: 1e-12, atol: 1e-12 });
    }
  });

  it('computes a small filter gradient per chunk of the batch, then sums the chunks', () => {
    const dy = b.arg('input', 'dy', ['B', 24, 24, 4], 'f32');
    const dw = b.conv2dBackpropFilter(img, dy, {}, [5, 5]);
    const [opt] = after(split, dw);
    const parts = opt.inputs[0].inputs[0];
    expect([opt.op, opt.inputs[0].op, parts.op, parts.attrs.splits, parts.shape]).toEqual(['reshape', 'sum', 'conv2d_backprop_filter', 16, [16, 5, 5, 6, 4]]);
    const more = new Map([...feeds, [dy, { data: Float64Array.from({ length: 3 * 24 * 24 * 4 }, (_, k) => Math.cos(k * 0.11)), shape: [3, 24, 24, 4] }]]);
    expectClose(evalCpu([opt], more, 'f64')[0], evalCpu([dw], more, 'f64')[0], { rtol: 1e-12, atol: 1e-12 });
    // a large filter has threads enough
    const big = b.arg('input', 'big', ['B', 8, 8, 64], 'f32');
    const dwBig = b.conv2dBackpropFilter(big, b.arg('input', 'dyBig', ['B', 6, 6, 64], 'f32'), {}, [3, 3]);
    expect(after(split, dwBig)).toEqual([dwBig]);
  });

  it('leaves reductions with many results, over one axis, or of few values alone', () => {
    const small = b.arg('input', 'small', [5, 5, 6, 16], 'f32');
    for (const y of [b.sum(img, [1, 2], true), b.sum(img, [0], true), b.sum(small, [0, 1, 2, 3], true)]) expect(after(split, y)).toEqual([y]);
  });
});

describe('stability rewrites', () => {
  const big: Tensor = { data: Float32Array.from([1000, 1001, 999, -1000, -1002, -999]), shape: [2, 3] };
  const z = b.arg('input', 'z', [2, 3], 'f32');
  const naiveSoftmax = b.div(b.exp(z), b.sum(b.exp(z), [1], true));
  const feeds = new Map([[z, big]]);
  const reference = (rows: number[][], f: (r: number[], j: number) => number) => rows.flatMap((r) => r.map((_, j) => f(r, j)));
  const rows = [[1000, 1001, 999], [-1000, -1002, -999]];
  const lse = (r: number[]) => Math.max(...r) + Math.log(r.reduce((s, q) => s + Math.exp(q - Math.max(...r)), 0));

  it('turns log(softmax) into log-softmax, finite where the naive form overflows', () => {
    const y = b.log(naiveSoftmax);
    expect(Array.from(evalCpu([y], feeds, 'f32')[0].data).some(Number.isNaN)).toBe(true);
    const [opt] = after([simplify, stability, simplify], y);
    const got = evalCpu([opt], feeds, 'f32')[0];
    expectClose(got, { data: Float32Array.from(reference(rows, (r, j) => r[j] - lse(r))), shape: [2, 3] }, { rtol: 1e-6, atol: 1e-4 });
  });

  it('turns log(sum(exp)) into logsumexp with the max subtracted', () => {
    const y = b.log(b.sum(b.exp(z), [1]));
    const [opt] = after([simplify, stability, simplify], y);
    expectClose(evalCpu([opt], feeds, 'f32')[0], { data: Float32Array.from(rows.map(lse)), shape: [2] }, { rtol: 1e-6, atol: 0 });
    // all -inf: the max is not finite, and the result is -inf as before
    const ninf: Tensor = { data: Float32Array.from([-Infinity, -Infinity, -Infinity, 0, 0, 0]), shape: [2, 3] };
    expect(Array.from(evalCpu([opt], new Map([[z, ninf]]), 'f64')[0].data)).toEqual([-Infinity, Math.log(3)]);
  });

  it('subtracts the max in a naive softmax', () => {
    const [opt] = after([simplify, stability, simplify], naiveSoftmax);
    const got = evalCpu([opt], feeds, 'f32')[0];
    expectClose(got, { data: Float32Array.from(reference(rows, (r, j) => Math.exp(r[j] - lse(r)))), shape: [2, 3] }, { rtol: 1e-5, atol: 1e-7 });
  });

  it('leaves the stable forms of the library alone', () => {
    const m = b.reduce('reduce_max', z, [1], true);
    const shifted = b.sub(z, m);
    const stable = [b.div(b.exp(shifted), b.sum(b.exp(shifted), [1], true)), b.add(b.log(b.sum(b.exp(shifted), [1], true)), m)];
    expect(after(stability, ...stable)).toEqual(stable);
  });
});

describe('the verifier', () => {
  it('accepts what the builders make and rejects the rest', () => {
    expect(verifyProblems(graph(b.add(x, v)))).toEqual([]);
    // a node whose shape is not its shape rule's
    const bad = Object.freeze({ ...b.add(x, v), id: -1, shape: Object.freeze(['B', 4]) }) as Node;
    expect(verifyProblems(graph(bad)).join()).toMatch(/is f32\[B, 4\] but its shape rule gives f32\[B, 3\]/);
    const rejected = Object.freeze({ ...b.add(x, v), id: -2, inputs: Object.freeze([x, b.arg('input', 'w', [4], 'f32')]) }) as Node;
    expect(verifyProblems(graph(rejected)).join()).toMatch(/shape rule rejects it: cannot broadcast/);
    const dangling = Object.freeze({ ...b.neg(v), id: -3, inputs: Object.freeze([undefined]) }) as unknown as Node;
    expect(verifyProblems(graph(dangling)).join()).toMatch(/input 0 is not a node/);
    expect(verifyProblems({ outputs: [], updates: [] })).toEqual(['the graph has no outputs and no updates']);
    expect(verifyProblems({ outputs: [{ name: 'a', node: v }, { name: 'a', node: x }], updates: [] }).join()).toMatch(/output 'a' appears twice/);
    const w = b.arg('param', 'w', [3], 'f32');
    expect(verifyProblems({ outputs: [], updates: [{ role: 'param', name: 'w', node: b.add(w, b.sum(x, [0], true)) }] }).join()).toMatch(/updates param 'w' of f32\[3\] with f32\[1, 3\]/);
    expect(() => verify(graph(bad), 'simplify')).toThrow(VerifyError);
    expect(() => verify(graph(bad), 'simplify')).toThrow(/after pass 'simplify'/);
  });
});

describe('the pipeline', () => {
  it('is a flat list of named passes; stops after any of them', () => {
    expect(passNames()).toEqual(['lowered', 'fold', 'simplify', 'stability', 'split', 'fuse']);
    const y = b.mul(b.add(x, c(0)), v);
    expect(runPipeline(graph(y), { until: 'lowered' }).outputs[0].node).toBe(y);
    expect(runPipeline(graph(y), { until: 'simplify' }).outputs[0].node).toBe(b.mul(x, v));
    expect(runPipeline(graph(y), { until: 'fuse' }).outputs[0].node.op).toBe('mul'); // one op: nothing to fuse
    expect(() => runPipeline(graph(y), { until: 'nope' })).toThrow(/no pass named 'nope'/);
    const seen: string[] = [];
    runPipeline(graph(y), { after: (p) => seen.push(p.name) });
    expect(seen).toEqual(passes.map((p) => p.name));
  });

  const examples = readdirSync('examples').filter((f) => f.endsWith('.dlm'));
  it.each(examples)('keeps every program of examples/%s valid after each pass, and fewer kernels', (file) => {
    const r = check(join('examples', file));
    expect(r.model, r.diagnostics.map((d) => d.message).join('\n')).toBeDefined();
    for (const [name, g] of Object.entries(r.model!.graphs)) {
      if (!g) continue;
      const opt = runPipeline(g, { verify: true });
      const count = (h: Graph) => attachKernels(toProgram(h)).nodes.filter((n) => n.kernel !== undefined).length;
      expect(count(opt), `${file} ${name}`).toBeLessThanOrEqual(count(g));
    }
  });
});

describe('dlc compile --dump / --stats, dlc graph', () => {
  const dir = mkdtempSync(join(tmpdir(), 'dlc-passes-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints a program after a pass, and the costs', async () => {
    const r = await dlc('compile', 'examples/mnist_mlp.dlm', '-o', join(dir, 'b'), '--dump', 'fuse', '--program', 'train', '--stats');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^# mnist_mlp: program train, after pass fuse$/m);
    expect(r.stdout).toMatch(/^%\d+ = fused %\d+, %\d+ \{r0 = add i0 i1; r1 = max r0 f32:0\} : f32\[B, 256\]/m);
    expect(r.stdout).toMatch(/^update param h\.dense_0\.w = %\d+$/m);
    expect(r.stdout).toMatch(/^train +\d+ -> \d+ +\d+ -> \d+ +131 -> \d+ /m);
    expect(r.stdout).toMatch(/^dispatches per training step: \d+$/m);
    expect(r.stdout).toMatch(/^model\.js: [\d.]+ KiB minified, [\d.]+ KiB gzipped$/m);
    const lowered = await dlc('compile', 'examples/linear_regression.dlm', '-o', join(dir, 'c'), '--dump', 'lowered');
    expect(lowered.stdout).toMatch(/^# linear_regression: program predict, as lowered$/m);
    expect(lowered.stdout).not.toMatch(/fused/);
  });

  it('reports a wrong pass or program in one line', async () => {
    const r = await dlc('compile', 'examples/mnist_mlp.dlm', '-o', join(dir, 'd'), '--dump', 'nope');
    expect([r.code, r.stderr.trim()]).toEqual([1, 'dlc: --dump nope: no such pass (passes: lowered, fold, simplify, stability, split, fuse)']);
    const p = await dlc('graph', 'examples/mnist_mlp.dlm', '-o', join(dir, 'g.svg'), '--program', 'nope');
    expect(p.code).toBe(1);
    expect(p.stderr.trim()).toMatch(/^dlc: --program nope: no such program \(programs: init, train, evaluate, predict\)$/);
  });

  it('draws a program with its fused kernels', async () => {
    const svg = join(dir, 'g.svg');
    const r = await dlc('graph', 'examples/mnist_mlp.dlm', '-o', svg);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(svg, 'utf8');
    expect(text).toMatch(/^<\?xml|<svg/);
    expect(text).toContain('fused');
    const dot = join(dir, 'g.dot');
    expect((await dlc('graph', 'examples/mnist_mlp.dlm', '-o', dot, '--pass', 'lowered', '--program', 'predict')).code).toBe(0);
    expect(readFileSync(dot, 'utf8')).toMatch(/^digraph dlc \{/);
    // the training step's merged kernels are boxed: each layer's product and relu, each layer's
    // weight and bias gradients and updates (side by side), the loss and the accuracy beside the
    // loss gradient
    const train = join(dir, 't.dot');
    expect((await dlc('graph', 'examples/mnist_mlp.dlm', '-o', train, '--program', 'train')).code).toBe(0);
    expect(readFileSync(train, 'utf8').match(/subgraph cluster_k\d+ \{ label="one kernel"/g)?.length).toBe(6);
  });
});
