// Elementwise fusion: random graphs of elementwise, reduction, matmul and shape ops compute the same
// before and after the whole pass pipeline (CPU in float64 and float32, exactly; WebGPU within
// float32 rounding); the fused op's kernels on their own; and what fusion does to the MNIST MLP.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as b from '../compiler/ir/build.ts';
import { toProgram, type Graph } from '../compiler/ir/graph.ts';
import type { Node, Shape } from '../compiler/ir/node.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { attachKernels } from '../compiler/codegen/kernels.ts';
import { programStats } from '../compiler/codegen/stats.ts';
import { runPipeline } from '../compiler/passes/pipeline.ts';
import { printGraph } from '../compiler/ir/print.ts';
import type { ProgramJSON } from '../runtime/program.ts';
import { planMemory } from '../runtime/memory.ts';
import { bindSymbols, nodeShapes, numel } from '../runtime/shapes.ts';
import { runCpu } from '../runtime/cpu.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { arbTensor, expectClose, feedsOf, gpuDevice, rng as rngOf, withExecutor } from './support/harness.ts';
import { compile } from '../compiler/compile.ts';
import { Model } from '../runtime/model.ts';

const gpu = await gpuDevice();

// ---------------------------------------------------------------- random graphs

/**
 * One step of a random graph: `kind` picks what to build, `a`, `c` and `d` pick operands among the
 * nodes made so far (modulo their number) and `k` parameterizes (an axis, a constant).
 */
interface Step {
  kind: number;
  a: number;
  c: number;
  d: number;
  k: number;
}

interface Recipe {
  /** The shape every node broadcasts to. */
  base: number[];
  /** The arguments' shapes: `base`, then `base` with some dims 1, some leading dims dropped. */
  args: number[][];
  steps: Step[];
  /** Which nodes are results, besides the last (indices modulo the count). */
  extra: number[];
}

const variant = (base: number[]) =>
  fc
    .tuple(fc.integer({ min: 0, max: base.length }), fc.array(fc.boolean(), { minLength: base.length, maxLength: base.length }))
    .map(([drop, ones]) => base.slice(drop).map((d, k) => (ones[k + drop] ? 1 : d)));

/** Choices spread evenly (fast-check's integers lean to small values). */
const pickAny = fc.noBias(fc.integer({ min: 0, max: 2 ** 20 }));

const arbRecipe: fc.Arbitrary<Recipe> = fc
  .array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 3 })
  .chain((base) =>
    fc.record({
      base: fc.constant(base),
      // the first argument has the whole shape
      args: fc.array(variant(base), { minLength: 0, maxLength: 3 }).map((vs) => [base, ...vs]),
      steps: fc.array(fc.record({ kind: pickAny, a: pickAny, c: pickAny, d: pickAny, k: pickAny }), { minLength: 1, maxLength: 20 }),
      extra: fc.array(fc.nat(), { maxLength: 4 }),
    }),
  );

/** Builds the recipe's graph. Values stay moderate (squashing ops after products), so float32
 *  comparisons are meaningful. Every node's shape broadcasts to `base`. */
function buildRecipe(r: Recipe): { graph: Graph; args: Node[] } {
  const args = r.args.map((s, i) => b.arg('input', `x${i}`, s, 'f32'));
  const pool: Node[] = [...args];
  const extraArgs: Node[] = [];
  // mostly one of the last three nodes, so that most steps are used by the results
  const pick = (i: number) => (i % 3 ? pool[pool.length - 1 - ((i >> 2) % Math.min(3, pool.length))] : pool[(i >> 2) % pool.length]);
  // Comparisons and truncation read arguments only: on computed values, a rounding difference
  // between backends could flip them.
  const argOf = (i: number) => args[i % args.length];
  const one = b.constant(1);
  const squash = (x: Node) => b.div(x, b.add(one, b.abs(x))); // x / (1 + |x|)
  const builders: ((s: Step) => Node)[] = [
    (s) => b.add(pick(s.a), pick(s.c)),
    (s) => b.sub(pick(s.a), pick(s.c)),
    (s) => squash(b.mul(pick(s.a), pick(s.c))),
    (s) => b.div(pick(s.a), b.add(b.constant(1.5), b.abs(pick(s.c)))),
    (s) => b.max(pick(s.a), pick(s.c)),
    (s) => b.min(pick(s.a), b.constant(0.25)),
    (s) => b.neg(pick(s.a)),
    (s) => b.exp(b.sin(pick(s.a))),
    (s) => b.log(b.add(one, b.abs(pick(s.a)))),
    (s) => b.sqrt(b.abs(pick(s.a))),
    (s) => b.cos(pick(s.a)),
    (s) => b.select(b.binary(['lt', 'ge', 'eq', 'ne'][s.k % 4] as 'lt', argOf(s.a), argOf(s.c)), pick(s.d), b.constant(s.k % 3)),
    (s) => b.cast(b.binary('gt', argOf(s.a), b.constant(0)), 'f32'),
    // integers: truncate, wrap-free arithmetic, back to f32
    (s) => b.cast(b.add(b.cast(b.mul(argOf(s.a), b.constant(3)), 'i32'), b.cast(argOf(s.c), 'i32')), 'f32'),
    // identities and constants the simplifier removes
    (s) => b.mul(b.add(pick(s.a), b.constant(0)), b.constant(1)),
    (s) => b.pow(pick(s.a), b.constant(s.k % 2 ? 2 : 1)),
    (s) => b.mul(pick(s.a), b.add(b.constant(s.k % 5), b.constant(0.5))),
    (s) => b.neg(b.neg(pick(s.a))),
    (s) => b.broadcast(pick(s.a), r.base),
    (s) => b.mul(b.broadcast(b.constant(0.5), r.base), pick(s.a)),
    // reductions with kept dims (the result still broadcasts to base)
    (s) => {
      // often of a fresh elementwise expression, which fuses into the reduction
      const x = s.d % 3 ? b.sub(pick(s.a), b.mul(pick(s.d), b.constant(0.5))) : pick(s.a);
      // over axes longer than 1 (reducing a unit axis is a reshape)
      const long = x.shape.flatMap((d, i) => (d === 1 ? [] : [i]));
      if (!long.length) return b.neg(x);
      const axes = long.filter((i) => (s.k >> i) & 1);
      return b.reduce((['sum', 'mean', 'reduce_max', 'reduce_min'] as const)[s.c % 4], x, axes.length ? axes : [long[long.length - 1]], true);
    },
    // reduce the last axis away, compute on the result, reshape it back with a unit last dim
    (s) => {
      const x = pick(s.a);
      if (!x.shape.length) return b.exp(b.neg(b.abs(x)));
      const y = b.sum(s.d % 2 ? b.abs(x) : x, [x.shape.length - 1], false);
      const back = b.reshape(b.mul(b.sqrt(b.add(b.abs(y), one)), y), [...y.shape, 1]);
      return s.c % 2 ? b.sub(back, x) : back; // read through a view [.., 1] against x's shape

    },
    // a reduction of a stored value (an argument) over its first axis, read by elementwise ops of
    // its own shape: it folds into their kernel (a bias gradient into its optimizer update)
    (s) => {
      const x = argOf(s.a);
      if (!x.shape.length || x.shape[0] === 1) return b.abs(x);
      const y = b.reduce((['sum', 'mean', 'reduce_max', 'reduce_min'] as const)[s.c % 4], x, [0], false);
      return b.mul(b.sqrt(b.add(b.abs(y), one)), s.d % 2 ? y : b.sub(y, b.constant(0.5)));
    },
    // the index of an argument's largest value along its last axis, computed in its reader's
    // kernel (an argmax line: the predicted class in an accuracy)
    (s) => {
      const x = argOf(s.a);
      const r = x.shape.length;
      if (!r || x.shape[r - 1] === 1) return b.neg(x);
      // the mean over the batch's other axes: an accuracy's shape
      const hit = b.cast(b.binary('eq', b.argmax(x, r - 1), b.constant(s.k % 3, 'i32')), 'f32');
      return r > 1 ? b.reduce('mean', hit, hit.shape.map((_, k) => k), true) : hit;
    },
    // an entry of each row of an argument (a label's logit), in its reader's kernel (a take line):
    // at a coordinate, which can be past the row (that reads 0)
    (s) => {
      const x = argOf(s.a);
      const r = x.shape.length;
      if (r < 2) return b.abs(x);
      const at = b.take(x, b.iota(x.shape.slice(0, -1), s.k % (r - 1)));
      return b.reduce('mean', b.mul(at, b.constant(0.5)), at.shape.map((_, k) => k), true);
    },
    // a softmax-like row: an argument less its row's largest value (each element's thread
    // reduces its own short row)
    (s) => {
      const x = argOf(s.a);
      const r = x.shape.length;
      if (!r || x.shape[r - 1] === 1) return b.abs(x);
      return b.exp(b.sub(x, b.reduce(s.c % 2 ? 'reduce_max' : 'sum', x, [r - 1], true)));
    },
    // a scalar hyperparameter (read from the hyper uniform on WebGPU, no binding)
    (s) => {
      const h = b.arg('hyper', `h${extraArgs.length}`, [], 'f32');
      extraArgs.push(h);
      return b.mul(pick(s.a), s.k % 2 ? h : b.add(one, b.abs(h)));
    },
    // matmul with a fresh weight: [..., m, k] · [k, base[-1]], then elementwise (its epilogue)
    (s) => {
      const x = pick(s.a);
      if (x.shape.length < 2) return b.sin(x);
      const w = b.arg('input', `w${extraArgs.length}`, [x.shape[x.shape.length - 1], r.base[r.base.length - 1]], 'f32');
      extraArgs.push(w);
      // often with an operand read at the product's coordinates (a bias: the epilogue's loads)
      const y = b.matmul(x, w);
      return squash(s.d % 2 ? b.add(y, pick(s.c)) : y);
    },
  ];
  for (const s of r.steps) pool.push(builders[s.kind % builders.length](s));
  const last = pool[pool.length - 1];
  const made = pool.slice(args.length);
  const outs = [last, ...r.extra.map((i) => made[i % made.length])];
  return { graph: { outputs: outs.map((node, i) => ({ name: `out${i}`, node })), updates: [] }, args: [...args, ...extraArgs] };
}

const arbCase = arbRecipe.chain((r) => {
  const { graph, args } = buildRecipe(r);
  return fc.tuple(fc.constant(graph), fc.tuple(...args.map((a) => arbTensor(a.shape as Shape, { min: -2, max: 2 }))).map((ts) => new Map(args.map((a, i) => [a, ts[i]]))));
});

const run = (p: ProgramJSON, feeds: Map<Node, Tensor>, float: 'f64' | 'f32') =>
  runCpu(p, cpuKernels, feedsOf(feeds), float === 'f64' ? Float64Array : Float32Array).outputs;

const dispatches = (g: Graph) => programStats(attachKernels(toProgram(g)), {}).dispatches;

/** Equal, or both NaN (and +0 = -0: x + 0 is x). */
function expectSame(a: Tensor, e: Tensor, what: string): void {
  expect(a.shape, what).toEqual(e.shape);
  for (let i = 0; i < a.data.length; i++)
    if (!(a.data[i] === e.data[i] || (Number.isNaN(a.data[i]) && Number.isNaN(e.data[i]))))
      throw new Error(`${what}: element ${i}: ${a.data[i]} vs ${e.data[i]} unoptimized`);
}

describe('the pass pipeline on random graphs', () => {
  it('computes exactly what the unoptimized graph computes on the CPU (float64 and float32)', () => {
    const seen = { fused: 0, lines: 0, graphs: 0, reductions: 0, views: 0, epilogues: 0, folded: 0, argmax: 0, rows: 0, take: 0 };
    fc.assert(
      fc.property(arbCase, ([graph, feeds]) => {
        const opt = runPipeline(graph, { verify: true });
        const optProgram = toProgram(opt);
        const fusedNodes = optProgram.nodes.filter((n) => n.op === 'fused');
        seen.graphs++;
        seen.fused += fusedNodes.length;
        seen.lines += fusedNodes.reduce((s, n) => s + String(n.attrs.code).split(';').length, 0);
        seen.reductions += fusedNodes.filter((n) => n.attrs.reduce !== undefined).length;
        seen.epilogues += fusedNodes.filter((n) => n.attrs.matmul !== undefined).length;
        seen.folded += fusedNodes.filter((n) => /(sum|mean|reduce_max|reduce_min)\./.test(String(n.attrs.code))).length;
        seen.argmax += fusedNodes.filter((n) => /argmax\./.test(String(n.attrs.code))).length;
        seen.take += fusedNodes.filter((n) => /(^|; )take /.test(String(n.attrs.code))).length;
        // reduction lines over an input of the program's own shape: whole rows
        const rowLine = (n: (typeof fusedNodes)[number], line: string) => {
          const [head, arg] = line.trim().split(' ');
          return /^(sum|mean|reduce_max|reduce_min)\./.test(head) && optProgram.nodes[n.inputs[Number(arg.slice(1))]].shape.join() === n.shape.join();
        };
        seen.rows += fusedNodes.filter((n) => n.attrs.reduce === undefined && n.attrs.matmul === undefined && String(n.attrs.code).split(';').some((l) => rowLine(n, l))).length;
        // unit reshapes inside fused kernels (read through views) are gone from the program
        const reshapes = (p: ProgramJSON) => p.nodes.filter((n) => n.op === 'reshape').length;
        seen.views += Math.max(0, reshapes(toProgram(runPipeline(graph, { until: 'simplify' }))) - reshapes(toProgram(opt)));
        const before = toProgram(graph);
        const after = toProgram(opt);
        for (const float of ['f64', 'f32'] as const) {
          const want = run(before, feeds, float);
          const got = run(after, feeds, float);
          for (const name of Object.keys(want)) expectSame(got[name], want[name], `${float} ${name}\n${printGraph(opt)}`);
        }
        expect(dispatches(opt)).toBeLessThanOrEqual(dispatches(graph));
      }),
      { numRuns: 300 },
    );
    // the property is about fused programs: most graphs have some
    expect(seen.fused).toBeGreaterThan(seen.graphs);
    expect(seen.lines).toBeGreaterThan(3 * seen.fused);
    expect(seen.reductions).toBeGreaterThan(seen.graphs / 15);
    expect(seen.views).toBeGreaterThan(0);
    // (matmuls are drawn rarely enough that some runs of 300 graphs fuse only two epilogues)
    expect(seen.epilogues).toBeGreaterThan(0);
    expect(seen.folded).toBeGreaterThan(seen.graphs / 100);
    expect(seen.argmax).toBeGreaterThan(seen.graphs / 100);
    expect(seen.rows).toBeGreaterThan(seen.graphs / 100);
    expect(seen.take).toBeGreaterThan(seen.graphs / 100);
  });

  it.skipIf(!gpu)('computes what the unoptimized graph computes on WebGPU (within float32 rounding)', async () => {
    const seen = { graphs: 0, merged: 0, stored: 0, hypers: 0, beside: 0 };
    await fc.assert(
      fc.asyncProperty(arbCase, async ([graph, feeds]) => {
        const opt = runPipeline(graph);
        const want = run(toProgram(graph), feeds, 'f64');
        const p = attachKernels(toProgram(opt));
        seen.graphs++;
        seen.merged += p.nodes.filter((n) => n.by !== undefined).length;
        seen.stored += p.nodes.filter((n) => n.writes).length;
        seen.hypers += p.kernels.filter((k) => k.hypers).length;
        seen.beside += p.nodes.filter((n) => n.beside !== undefined).length;
        const got = await withExecutor((ex) => ex.run(p, feedsOf(feeds)));
        for (const name of Object.keys(want)) {
          const scale = Math.max(1, ...Array.from(want[name].data, Math.abs).filter(Number.isFinite));
          expectClose(got[name], want[name], { rtol: 1e-3, atol: 1e-3 * scale });
        }
      }),
      { numRuns: 120 },
    );
    // kernels that compute several nodes (codegen/merge.ts), some storing more than one, and
    // kernels reading hyperparameters are among them
    console.log(`random graphs on WebGPU: ${JSON.stringify(seen)}`);
    expect(seen.merged).toBeGreaterThan(seen.graphs / 30);
    expect(seen.stored).toBeGreaterThan(seen.graphs / 40);
    expect(seen.hypers).toBeGreaterThan(seen.graphs / 50);
    expect(seen.beside).toBeGreaterThan(seen.graphs / 30);
  });
});

// ---------------------------------------------------------------- memory planning

describe('memory planning', () => {
  /** Checks `planMemory` against lifetimes computed here: a node's value is live from the dispatch
   *  that writes it (its own, or for a node a merged kernel computes, that kernel's) to the last
   *  dispatch that reads it (through aliases), to the end for outputs and updates, throughout for
   *  consts. A node only used inside a merged kernel has no buffer. */
  function checkPlan(p: ProgramJSON, shapes: number[][]): { planned: number; unplanned: number } {
    const { buffer, sizes } = planMemory(p, shapes);
    const alias = (i: number) => p.nodes[i].kernel === undefined && p.nodes[i].by === undefined && p.nodes[i].op !== 'const' && p.nodes[i].op !== 'arg';
    const source = (i: number): number => (alias(i) ? source(p.nodes[i].inputs[0]) : i);
    const at = (i: number) => p.nodes[i].by ?? i;
    // (an update in place is its argument's buffer, like a node only used inside a merged kernel)
    const inside = (i: number) => p.nodes[i].into !== undefined || (p.nodes[i].by !== undefined && !p.nodes[p.nodes[i].by!].writes?.includes(i));
    const end = p.nodes.length;
    const live = p.nodes.map((n, i) => [n.op === 'const' ? -1 : at(i), at(i)]);
    p.nodes.forEach((n, i) => n.inputs.forEach((j) => (live[source(j)][1] = Math.max(live[source(j)][1], at(i)))));
    for (const o of [...p.outputs, ...p.updates]) live[source(o.node)][1] = end;
    p.nodes.forEach((n, i) => n.op === 'const' && (live[i][1] = end));
    const owners = p.nodes.flatMap((n, i) => (n.op === 'arg' || alias(i) || inside(i) ? [] : [i]));
    let unplanned = 0;
    for (const i of owners) {
      unplanned += numel(shapes[i]) * 4;
      expect(sizes[buffer[i]], `node ${i}'s buffer`).toBeGreaterThanOrEqual(numel(shapes[i]) * 4);
    }
    p.nodes.forEach((n, i) => expect(buffer[i], `node ${i}`).toBe(n.op === 'arg' || inside(i) ? -1 : buffer[source(i)]));
    for (const i of owners)
      for (const j of owners)
        if (i < j && buffer[i] === buffer[j]) expect(live[i][1] < live[j][0], `nodes ${i} and ${j} share buffer ${buffer[i]} while both live`).toBe(true);
    const planned = sizes.reduce((a, b) => a + b, 0);
    expect(planned).toBeLessThanOrEqual(unplanned);
    return { planned, unplanned };
  }

  it('never gives one buffer to two values live at once, and needs no more bytes than a buffer per node', () => {
    let reused = 0;
    fc.assert(
      fc.property(arbCase, ([graph, feeds]) => {
        for (const g of [graph, runPipeline(graph)]) {
          const p = attachKernels(toProgram(g));
          const syms = bindSymbols(p, feedsOf(feeds));
          const { planned, unplanned } = checkPlan(p, nodeShapes(p, syms));
          if (planned < unplanned) reused++;
        }
      }),
      { numRuns: 300 },
    );
    expect(reused).toBeGreaterThan(100);
  });

  it('plans every program of the MNIST MLP', () => {
    const m = compile('examples/mnist_mlp.dlm').manifest!;
    for (const p of Object.values(m.programs)) checkPlan(p, nodeShapes(p, Object.fromEntries(p.symbols.map((s) => [s, 64]))));
  });
});

// ---------------------------------------------------------------- the fused op on its own

describe('the fused op', () => {
  const p = b.arg('input', 'p', [3, 1], 'f32');
  const q = b.arg('input', 'q', [4], 'f32');
  const s = b.arg('input', 's', [], 'f32');
  const n = b.arg('input', 'n', [3, 4], 'i32');
  const m = b.arg('input', 'm', [3, 4], 'bool');
  const rows = b.arg('input', 'rows', ['B', 4], 'f32');
  const mA = b.arg('input', 'mA', [2, 3, 5], 'f32');
  const mB = b.arg('input', 'mB', [4, 5], 'f32');
  const mC = b.arg('input', 'mC', ['B', 3], 'f32');
  const mid = b.arg('input', 'mid', [2, 1, 5], 'f32');
  const col = b.arg('input', 'col', ['B', 1], 'f32');
  const cube = b.arg('input', 'cube', ['B', 3, 5], 'f32');
  const plane = b.arg('input', 'plane', [3, 5], 'f32');
  const unit = b.arg('input', 'unit', [1, 1], 'f32');
  const row5 = b.arg('input', 'row5', [5], 'f32');
  const col3 = b.arg('input', 'col3', ['B', 3, 1], 'f32');
  const mid5 = b.arg('input', 'mid5', ['B', 1, 5], 'f32');
  const pix = b.arg('input', 'pix', ['B', 1, 1, 4], 'f32');
  const img = b.arg('input', 'img', ['B', 5, 6, 2], 'f32');
  const filt = b.arg('input', 'filt', [3, 3, 2, 4], 'f32');
  const filt2 = b.arg('input', 'filt2', [3, 3, 1, 4], 'f32');
  const col4 = b.arg('input', 'col4', ['B', 3, 4, 1], 'f32');
  const feeds = new Map<Node, Tensor>([
    [p, { data: Float32Array.from([0.5, -1.25, 2]), shape: [3, 1] }],
    [q, { data: Float32Array.from([1, -2, 0, 3.5]), shape: [4] }],
    [s, { data: Float32Array.from([0.75]), shape: [] }],
    [n, { data: Int32Array.from([2147483647, -2147483648, 7, -7, 0, 1, 2, 3, 100000, 65536, -1, 5]), shape: [3, 4] }],
    [m, { data: Int32Array.from([1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0]), shape: [3, 4] }],
    [rows, { data: Float32Array.from({ length: 20 }, (_, k) => Math.sin(k) * 3), shape: [5, 4] }],
    [mA, { data: Float32Array.from({ length: 30 }, (_, k) => Math.cos(k)), shape: [2, 3, 5] }],
    [mB, { data: Float32Array.from({ length: 20 }, (_, k) => Math.sin(k * 0.7)), shape: [4, 5] }],
    [mC, { data: Float32Array.from({ length: 15 }, (_, k) => Math.cos(k * 1.3)), shape: [5, 3] }],
    [mid, { data: Float32Array.from({ length: 10 }, (_, k) => Math.sin(k * 2.1)), shape: [2, 1, 5] }],
    [col, { data: Float32Array.from({ length: 5 }, (_, k) => k - 2.5), shape: [5, 1] }],
    [cube, { data: Float32Array.from({ length: 75 }, (_, k) => Math.sin(k * 0.3)), shape: [5, 3, 5] }],
    [plane, { data: Float32Array.from({ length: 15 }, (_, k) => k / 7 - 1), shape: [3, 5] }],
    [unit, { data: Float32Array.from([-0.5]), shape: [1, 1] }],
    [row5, { data: Float32Array.from([3, -1, 0.25, 2, -2]), shape: [5] }],
    [col3, { data: Float32Array.from({ length: 15 }, (_, k) => Math.cos(k)), shape: [5, 3, 1] }],
    [mid5, { data: Float32Array.from({ length: 25 }, (_, k) => Math.sin(k * 1.7)), shape: [5, 1, 5] }],
    [pix, { data: Float32Array.from({ length: 20 }, (_, k) => Math.cos(k * 0.9)), shape: [5, 1, 1, 4] }],
    [img, { data: Float32Array.from({ length: 300 }, (_, k) => Math.sin(k * 0.3)), shape: [5, 5, 6, 2] }],
    [filt, { data: Float32Array.from({ length: 72 }, (_, k) => Math.cos(k * 0.7)), shape: [3, 3, 2, 4] }],
    [filt2, { data: Float32Array.from({ length: 36 }, (_, k) => Math.sin(k * 1.1)), shape: [3, 3, 1, 4] }],
    [col4, { data: Float32Array.from({ length: 60 }, (_, k) => Math.cos(k * 0.4)), shape: [5, 3, 4, 1] }],
  ]);
  // one operand of each indexing form over [B, 3, 5] (wgslElementIndex)
  const everyForm = [s, unit, row5, plane, col3, mid5].reduce(
    (y, x) => b.add(y, x),
    b.exp(cube),
  );
  // each case: the unfused expression, and the fused node the pass should make of it
  const cases: [string, Node][] = [
    ['broadcast [3,1] with [4], a scalar hoisted out of the loop', b.add(b.mul(b.exp(b.sub(p, q)), b.sqrt(b.add(s, b.constant(1)))), b.neg(s))],
    ['i32 arithmetic wraps as a stored i32 would', b.cast(b.add(b.mul(n, b.constant(3, 'i32')), b.add(n, n)), 'f32')],
    ['i32 division and powers', b.cast(b.add(b.div(n, b.constant(3, 'i32')), b.pow(b.constant(2, 'i32'), b.binary('min', b.abs(n), b.constant(31, 'i32')))), 'f32')],
    ['bools: not, and, or, select', b.select(b.binary('or', b.not(m), b.binary('and', m, b.binary('gt', n, b.constant(0, 'i32')))), b.add(q, p), b.constant(-1))],
    ['non-finite literals', b.max(b.min(b.div(b.sub(q, b.constant(0.5)), b.sub(p, p)), b.constant(Infinity)), b.constant(-Infinity))],
    ['the batch size, a symbolic dim', b.div(b.add(rows, b.size(['B'])), b.size(['B', 4]))],
    ['a sum of an expression (fused reduction)', b.sum(b.mul(b.sub(p, q), b.sub(p, q)), [1], true)],
    ['a mean over all axes', b.mean(b.exp(b.sin(rows)), [0, 1], true)],
    ['a max with a unit-reshaped producer', b.reduce('reduce_max', b.mul(b.reshape(b.sum(rows, [1]), ['B', 1]), rows), [0], true)],
    ['a column sum folded into its reader (a bias gradient into its update)', b.add(b.mul(q, s), b.sum(rows, [0], false))],
    ['a convolution with a bias add and relu in its epilogue', b.max(b.add(b.conv2d(img, filt, { strides: [1, 2], padding: [1, 0, 1, 1] }), q), b.constant(0))],
    ['a grouped convolution with an epilogue reading another tensor', b.mul(b.conv2d(img, filt2, { groups: 2 }), b.exp(b.neg(col4)))],
    ['a batch sum of [B, 1, 1, 4] folded into a reader of [4], kept 1s past its rank (a conv bias gradient\'s second stage)', b.add(b.mul(q, s), b.reshape(b.sum(pix, [0], true), [4]))],
    ['a max over two axes folded, of i32', b.cast(b.mul(b.reduce('reduce_max', n, [0], false), b.constant(2, 'i32')), 'f32')],
    ['a one-hot from an index ramp (iota), in a reduction too', b.add(b.select(b.binary('eq', b.iota([3, 4], 1), b.constant(2, 'i32')), b.add(q, p), b.constant(0)), b.sum(b.cast(b.binary('lt', b.iota([3, 4], 0), b.iota([3, 4], 1)), 'f32'), [1], true))],
    // each way an operand is indexed (wgslElementIndex), over sizes that are not multiples of 4 (a
    // thread's last quad is partial) and symbolic ones
    ['operands of the output\'s shape, symbolic, with a column and a row broadcast', b.add(b.mul(rows, b.exp(b.neg(rows))), b.sub(col, q))],
    ['a broadcast along a middle axis, and along two leading ones', b.div(b.sub(mA, mid), b.add(b.constant(2), b.abs(plane)))],
    ['a symbolic leading axis over a [3, 5] run and a column', b.mul(b.sub(cube, plane), b.reshape(col, ['B', 1, 1]))],
    ['every indexing form in one kernel', everyForm],
    ['a min of i32', b.cast(b.reduce('reduce_min', b.sub(n, b.constant(3, 'i32')), [0, 1], true), 'f32')],
    // epilogues of matrix products, read at the product's coordinates (batch dims included)
    ['a batched matmul (b transposed) with a bias and a mask', b.select(b.binary('gt', q, b.constant(0)), b.add(b.matmul(mA, mB, false, true), q), b.neg(s))],
    ['a matmul (a transposed, k = B) with an activation', b.exp(b.neg(b.abs(b.matmul(mC, rows, true, false))))],
  ];
  const optimized = (y: Node) => {
    const opt = runPipeline({ outputs: [{ name: 'y', node: y }], updates: [] }, { verify: true });
    const prog = toProgram(opt);
    expect(prog.nodes.filter((x) => x.op === 'fused').length, printGraph(opt)).toBeGreaterThan(0);
    return prog;
  };

  it.each(cases)('on the CPU: %s', (_, y) => {
    const prog = optimized(y);
    for (const float of ['f64', 'f32'] as const) {
      const want = run(toProgram({ outputs: [{ name: 'y', node: y }], updates: [] }), feeds, float).y;
      expectSame(run(prog, feeds, float).y, want, float);
    }
  });

  it.skipIf(!gpu).each(cases)('on WebGPU: %s', async (_, y) => {
    const want = run(toProgram({ outputs: [{ name: 'y', node: y }], updates: [] }), feeds, 'f32').y;
    const got = await withExecutor((ex) => ex.run(attachKernels(optimized(y)), feedsOf(feeds)));
    // WGSL's exp and sin are less exact than Math's (sin: absolute error 2^-11)
    expectClose(got.y, want, { rtol: 2e-4, atol: 1e-3 });
  });

  it('runs a convolution\'s bias add and relu in its epilogue (its product is not stored)', () => {
    const prog = optimized(cases.find(([name]) => name.startsWith('a convolution with'))![1]);
    expect(prog.nodes.map((n) => n.op).filter((op) => op !== 'arg')).toEqual(['fused']);
    expect(prog.nodes.find((n) => n.op === 'fused')!.attrs).toMatchObject({ conv2d: true, strides: [1, 2], padding: [1, 0, 1, 1] });
  });

  it('indexes each operand as cheaply as its shape allows, decided from the IR shapes', () => {
    const wgsl = attachKernels(optimized(everyForm)).kernels[0].wgsl;
    const loads = wgsl.split('\n').filter((l) => /(let )?x\d+=/.test(l));
    // over [B, 3, 5]: the same shape, single values (loaded once per thread, in its prologue), a
    // trailing run, two leading axes broadcast, a column, a middle axis broadcast
    expect(loads).toEqual([
      'x1=in1[0u];',
      'x2=in2[0u];',
      'let x0=in0[i];',
      'let x3=in3[i%M(3u)];',
      'let x4=in4[i%(M(2u)*M(3u))];',
      'let x5=in5[i/M(3u)];',
      'let x6=in6[(i/(M(3u)*M(2u)))*M(3u)+i%M(3u)];',
    ]);
    // no coordinates are split off where no operand needs them; four elements go per thread
    expect(wgsl).not.toMatch(/rem/);
    expect(wgsl).toMatch(/element\(i\+3u\)/);
  });

  it('checks its program and shapes', () => {
    const code = (c: string[], ins: Node[] = [p, q], shape: (number | string)[] = [3, 4]) => () => b.fused(ins, c, shape);
    expect(code(['add i0 i2'])).toThrow(/operand i2 but only 2 input/);
    expect(code(['add i0 r0'])).toThrow(/r0 is used before it is defined/);
    expect(code(['frob i0'])).toThrow(/unknown op 'frob'/);
    expect(code(['add i0'])).toThrow(/add takes 2 operand/);
    expect(code(['not i0'])).toThrow(/not expects bool operands/);
    expect(code(['add i0 i1'], [p, q], [3, 5])).toThrow(/cannot broadcast \[4\] with \[3, 5\]/);
    expect(code(['add i0 q:1'])).toThrow(/bad operand 'q:1'/);
    expect(code(Array.from({ length: 8 }, (_, k) => `neg i${k}`), Array(8).fill(q), [4])).toThrow(/8 bound inputs, at most 7/);
    expect(b.fused([p, q], ['add i0 i1', 'gt r0 f32:0'], [3, 4]).dtype).toBe('bool');
    expect(code(['sum.0 i0', 'add r0 i1'], [rows, q], [4])().shape).toEqual([4]);
    expect(code(['sum.1 i0'], [rows], [4])).toThrow(/\[B, 4\] reduced over \[1\] is not \[4\]/);
    expect(code(['sum.2 i0'], [rows], [4])).toThrow(/bad axes \[2\]/);
    expect(code(['iota.2'], [], [3, 4])).toThrow(/an iota axis past the rank of \[3, 4\]/);
    expect(code(['iota.1', 'cast.f32 r0'], [], [3, 4])().dtype).toBe('f32');
    expect(code(['mean.0 i0'], [n], [4])).toThrow(/bad line 'mean.0 i0'/);
    expect(code(['sum.0 i0', 'add r0 i0'], [rows], [4])).toThrow(/\[B, 4\] does not broadcast to \[4\]/);
    expect(() => b.fusedReduce([n], ['cast.bool i0'], [3, 4], 'sum', [1])).toThrow(/sum of bool values/);
    expect(() => b.fusedReduce([p], ['neg i0'], [3, 1], 'sum', [2])).toThrow(/bad axes/);
    expect(b.fusedMatmul(mA, mB, false, true, [q], ['add i0 i1'], [2, 3, 4]).shape).toEqual([2, 3, 4]);
    expect(() => b.fusedMatmul(mA, mB, false, false, [], ['neg i0'], [2, 3, 4])).toThrow(/inner dimensions 5 and 4 differ/);
    expect(() => b.fusedMatmul(mA, mB, false, true, [], ['neg i0'], [3, 4])).toThrow(/the product is \[2, 3, 4\], not \[3, 4\]/);
    expect(() => b.fusedMatmul(mA, mB, false, true, [mB], ['add i0 i1'], [2, 3, 4])).toThrow(/cannot broadcast \[4, 5\] with \[2, 3, 4\]/);
  });
});

// ---------------------------------------------------------------- the MNIST MLP

describe('fusion on the MNIST MLP', () => {
  const unfused = compile('examples/mnist_mlp.dlm', undefined, { passes: [] }).manifest!;
  const fused = compile('examples/mnist_mlp.dlm').manifest!;
  const stats = (m: typeof fused, name: keyof typeof fused.programs) => programStats(m.programs[name]!, { B: 64 });

  it('runs far fewer kernels per training step', () => {
    const [before, after] = [stats(unfused, 'train'), stats(fused, 'train')];
    console.log(`mnist_mlp train step: ${before.dispatches} -> ${after.dispatches} dispatches, ${before.kernels} -> ${after.kernels} kernels`);
    // (unfused, neighbours that read nothing of each other still run side by side)
    expect(before.dispatches).toBe(131);
    expect(after.dispatches).toBeLessThanOrEqual(10);
    // fusion materializes far fewer tensors; memory planning then reuses the dead ones' buffers
    expect(after.unplannedBytes).toBeLessThan(before.unplannedBytes / 3);
    expect(after.bufferBytes).toBeLessThan(after.unplannedBytes);
    for (const name of ['init', 'evaluate', 'predict'] as const) expect(stats(fused, name).dispatches).toBeLessThan(stats(unfused, name).dispatches);
  });

  it('runs bias adds, activations and the backward relu masks in the matmul kernels\' epilogues', () => {
    // inference: every dense layer is one kernel
    for (const name of ['predict', 'evaluate'] as const) expect(fused.programs[name].nodes.filter((n) => n.op === 'matmul')).toEqual([]);
    // training: the hidden layers' pre-activations are stored (the backward relu masks read them),
    // the logits' bias add and the masks applied to dy·Wᵀ are epilogues
    const p = fused.programs.train;
    expect(p.nodes.filter((n) => n.op === 'fused' && n.attrs.matmul !== undefined).map((n) => n.attrs.matmul)).toEqual(['nn', 'nt', 'nt']);
    expect(p.nodes.filter((n) => n.op === 'matmul').length).toBe(5);
  });

  it('computes each parameter\'s gradient and Adam update in one kernel, and each dense layer in one', () => {
    const p = fused.programs.train;
    const groups = p.nodes.filter((n) => n.kernel !== undefined && (n.reads || n.writes));
    // m, v and p of every parameter (p reads the new m and v in registers) in one kernel that
    // stores all three, the weights' also computing their gradient xᵀ·dy (its epilogue), each
    // weight's kernel beside its bias's (the same dy); the hidden layers' product and relu in one
    // kernel storing both (the backward mask reads the product)
    const updates = new Set(p.updates.map((u) => u.node));
    const stored = (d: (typeof p.nodes)[number]) => [d.id, ...(d.writes ?? [])];
    const optimizer = groups.filter((d) => stored(d).every((j) => updates.has(j)));
    expect(optimizer.map((d) => [d.shape.length, p.nodes[d.beside!].shape.length, stored(d).length, stored(p.nodes[d.beside!]).length])).toEqual([
      [1, 2, 6, 3],
      [1, 2, 6, 3],
      [1, 2, 6, 3],
    ]);
    expect(optimizer.filter((d) => p.nodes.some((n) => n.by === d.id && n.op === 'matmul')).length).toBe(3);
    // every update is computed in its argument's buffer (read and written through one binding)
    for (const u of p.updates) expect(p.nodes[u.node].into, u.name).toBe(p.args.find((a) => a.role === u.role && a.name === u.name)!.node);
    // the loss and the accuracy, both means over the batch, side by side in one loop, which runs
    // beside the loss gradient's kernel (in its first workgroups)
    const forward = groups.filter((d) => !optimizer.includes(d));
    expect(forward.map((d) => [p.nodes.filter((n) => n.by === d.id).map((n) => n.op), stored(d).length])).toEqual([
      [['matmul'], 2],
      [['matmul'], 2],
      [['fused', 'fused'], 3],
    ]);
    const losses = p.nodes[forward[2].beside!];
    expect(stored(losses).map((j) => p.outputs.find((o) => o.node === p.nodes.find((n) => n.inputs[0] === j && n.op === 'reshape')?.id)?.name)).toEqual(['accuracy', 'loss']);
    expect(forward[2].writes).toEqual(stored(losses));
    // one WGSL text serves the three layers' updates (the logits' keeps an entry of its own: only
    // the hidden layers' have the variant for subgroups of four, runtime/variants.ts)
    expect(new Set(optimizer.map((d) => p.kernels[d.kernel!].wgsl)).size).toBe(1);
    expect(optimizer.map((d) => !!p.kernels[d.kernel!].sub)).toEqual([true, true, false]);
    // Adam's bias corrections 1 - beta^t are computed once per thread, not per element
    const adam = p.kernels[optimizer[0].kernel!].wgsl;
    expect(adam.match(/fn _?prologue\(\)\{[^}]*fpow\(/g)).toHaveLength(2);
    expect(adam.replace(/fn _?prologue\(\)\{[^}]*\}/g, '').replace(/fn fpow\([^]*?\n\}/, '')).not.toMatch(/fpow/);
    // the bias's gradient (a batch sum), which its m and v updates both read, is summed once
    expect(adam.match(/for\(var q=0u;q<cnt;q\+\+\)/g)).toHaveLength(1);
    // the accuracy's argmax runs in its mean's loop (an argmax line)
    expect(p.nodes.filter((n) => n.op === 'argmax')).toEqual([]);
    expect(p.nodes.filter((n) => /argmax\.1 i\d/.test(String(n.attrs.code))).length).toBe(1);
    // the logits' row max runs in each thread of exp(l - max) and of the loss (folded)
    expect(p.nodes.filter((n) => n.op === 'reduce_max')).toEqual([]);
    // and the label's logit in the loss's
    expect(p.nodes.filter((n) => n.op === 'take')).toEqual([]);
    expect(programStats(p, { B: 64 }).dispatches).toBe(10);
  });

  it('gives kernels that compute the same thing one text, whatever order their parts were fused in', () => {
    // LeNet-5's last dense layer's gradient is fused into its Adam update's m line, the other two
    // layers' into an epilogue of their own; the merged kernels (weight beside bias) are one text,
    // so one pipeline to compile
    const p = compile('examples/lenet5.dlm').manifest!.programs.train;
    const updates = new Set(p.updates.map((u) => u.node));
    const dense = p.nodes.filter((n) => updates.has(n.id) && n.beside !== undefined);
    expect(dense.map((n) => n.shape)).toEqual([[120], [84], [10]]);
    expect(new Set(dense.map((n) => n.kernel)).size).toBe(1);
  });

  it('folds the biases\' gradients into their updates, with no broadcast materialized', () => {
    const p = fused.programs.train;
    // the biases' gradients (batch sums of dy) are computed in their m and v updates' threads
    expect(p.nodes.filter((n) => n.op === 'sum' && n.attrs.axes?.toString() === '0')).toEqual([]);
    expect(p.nodes.filter((n) => n.op === 'fused' && String(n.attrs.code).includes('sum.0')).length).toBe(6);
    // the one-hot of the labels in the loss gradient is computed in its kernel (iota.1)
    expect(p.nodes.filter((n) => n.op === 'iota')).toEqual([]);
    for (const u of p.updates) expect(p.nodes[u.node].op, `${u.role} ${u.name}`).toBe('fused');
    expect(p.nodes.filter((n) => n.op === 'broadcast')).toEqual([]);
    // the scalar bias corrections (1 - beta^t) are computed inside the kernels that use them (the
    // hyperparameters take no bindings: they are read from the hyper uniform)
    expect(p.nodes.filter((n) => n.kernel !== undefined && n.shape.length === 0).map((n) => n.op)).toEqual([]);
  });

  it('trains the same on the CPU, to the bit', async () => {
    const r = rngOf(5);
    const x = Float32Array.from({ length: 64 * 784 }, r);
    const y = Int32Array.from({ length: 64 }, () => Math.floor(r() * 10));
    const losses = async (m: typeof fused) => {
      const model = await Model.create(m, cpuKernels, { backend: 'cpu', seed: 1 });
      const out: number[] = [];
      for (let k = 0; k < 3; k++) out.push((await model.trainStep({ x, y })).loss);
      const params = await model.getParams();
      model.dispose();
      return { out, params };
    };
    const [a, c] = [await losses(unfused), await losses(fused)];
    expect(c.out).toEqual(a.out);
    expect(c.params).toEqual(a.params);
  });

  it.skipIf(!gpu)('trains the same on WebGPU, within float32 rounding', async () => {
    const r = rngOf(6);
    const x = Float32Array.from({ length: 64 * 784 }, r);
    const y = Int32Array.from({ length: 64 }, () => Math.floor(r() * 10));
    const device = (await gpuDevice())!;
    const losses = async (m: typeof fused) => {
      const model = await Model.create(m, cpuKernels, { backend: 'webgpu', device, seed: 1, startOnCpu: false });
      const out: number[] = [];
      for (let k = 0; k < 3; k++) out.push((await model.trainStep({ x, y })).loss);
      model.dispose();
      return out;
    };
    const [a, c] = [await losses(unfused), await losses(fused)];
    for (let k = 0; k < 3; k++) expect(Math.abs(c[k] - a[k])).toBeLessThan(1e-4);
  });
});
