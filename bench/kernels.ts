/**
 * Where a WebGPU training step's time goes, kernel by kernel (issue 5).
 *
 *   npx tsx bench/kernels.ts [--workloads=mlp,lenet] [--program=train|predict] [--reps=20] [--rounds=3]
 *
 * Compiles each example .dlm, trains one step on WebGPU (the executor builds its plan), then takes
 * the plan's dispatches and times each on its own: `reps` dispatches of it in one compute pass,
 * one submit, await onSubmittedWorkDone, minus the same for an empty kernel, divided by `reps`
 * (the best of `rounds` rounds: the machine is shared; it waits as the runtime does, `calmly`, so
 * that dawn.node's polling loop does not take a core). Prints ms per
 * kernel with its op, output shape and FLOPs (multiply-adds × 2 for matmul and conv), sorted,
 * then the whole step: every dispatch in one pass (GPU time) and `trainStep` (what an app sees).
 */
import { fileURLToPath } from 'node:url';
import { compile } from '../compiler/compile.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { Model } from '../runtime/model.ts';
import type { ProgramJSON } from '../runtime/program.ts';
import { numel } from '../runtime/shapes.ts';
import { calmly } from '../runtime/webgpu.ts';
import { product, source } from '../compiler/ops/fused.ts';
import { nodeDevice } from '../cli/gpu.ts';
import { randomBatch } from './engine.ts';

const arg = (name: string, dflt: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const workloads = arg('workloads', 'mlp,lenet').split(',');
const which = arg('program', 'train') as 'train' | 'predict';
const REPS = Number(arg('reps', '20'));
const ROUNDS = Number(arg('rounds', '3'));
const EXAMPLES: Record<string, { dlm: string; input: number[]; batch: number }> = {
  mlp: { dlm: 'mnist_mlp', input: [784], batch: which === 'train' ? 64 : 256 },
  lenet: { dlm: 'lenet5', input: [28, 28, 1], batch: 64 },
};

interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  groups: [number, number];
}

const device = await nodeDevice();
if (!device) throw new Error('no WebGPU adapter');

/** Seconds for `list` dispatched in one pass and submitted, best of ROUNDS. */
async function time(list: Dispatch[]): Promise<number> {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const enc = device!.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const d of list) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.groups);
    }
    pass.end();
    const t0 = performance.now();
    device!.queue.submit([enc.finish()]);
    await calmly(() => device!.queue.onSubmittedWorkDone());
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

const empty: Dispatch = (() => {
  const module = device.createShaderModule({ code: '@compute @workgroup_size(64) fn main() {}' });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  return { pipeline, bindGroup: device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [] }), groups: [1, 1] };
})();

/** Multiply-adds × 2 of matmuls and convolutions (fused or not); elements for the rest. */
function flops(p: ProgramJSON, i: number, shapes: number[][]): number {
  const n = p.nodes[i];
  const out = numel(shapes[i]);
  // a fused node's product (its epilogue's i0)
  const op = source(n.attrs) ?? n.op;
  if (op === 'matmul') {
    const a = shapes[n.inputs[0]];
    const transA = n.op === 'matmul' ? n.attrs.transA : product(n.attrs)!.transA;
    return 2 * out * a[a.length - (transA ? 2 : 1)];
  }
  if (op === 'conv2d' || op === 'conv2d_backprop_input') {
    const w = shapes[n.inputs[1]];
    return 2 * out * w[0] * w[1] * (op === 'conv2d' ? w[2] : w[3] / (shapes[i][3] / w[2]));
  }
  if (n.op === 'conv2d_backprop_filter') {
    // (split over chunks of the batch, [S, KH, KW, Cg, F]: each image's terms once)
    const dy = shapes[n.inputs[1]];
    return 2 * numel(shapes[i].slice(-4)) * dy[0] * dy[1] * dy[2];
  }
  return out;
}

for (const w of workloads) {
  const ex = EXAMPLES[w];
  const r = compile(fileURLToPath(new URL(`../examples/${ex.dlm}.dlm`, import.meta.url)));
  if (!r.manifest) throw new Error(r.diagnostics.map((d) => d.message).join('; '));
  const model = await Model.create(r.manifest, cpuKernels, { backend: 'webgpu', device, startOnCpu: false });
  const { x, y } = randomBatch(ex.batch, 1);
  const batch = { x: { data: x, shape: [ex.batch, ...ex.input] }, y: { data: y, shape: [ex.batch] } };
  const step = () => (which === 'train' ? model.trainStep(batch) : model.predict({ x: batch.x }));
  for (let s = 0; s < 3; s++) await step();

  // (the model's manifest: on an adapter with kernel variants, not the compiled one)
  const p = model.manifest.programs[which];
  // the executor's plan for this program (private: this is a measuring tool)
  const exec = (model as unknown as { exec: { programs: Map<ProgramJSON, { plans: Map<string, { dispatches: Dispatch[]; shapes: number[][] }> }> } }).exec;
  const plan = [...exec.programs.get(p)!.plans.values()][0];
  const args = new Set(p.args.map((a) => a.node));
  const nodes = p.nodes.map((_, i) => i).filter((i) => p.nodes[i].kernel !== undefined && !args.has(i) && numel(plan.shapes[i]) > 0);
  if (nodes.length !== plan.dispatches.length) throw new Error(`${nodes.length} kernel nodes for ${plan.dispatches.length} dispatches`);

  const base = (await time(Array(REPS).fill(empty))) / REPS;
  const rows: { k: number; ms: number }[] = [];
  for (const [k, d] of plan.dispatches.entries()) rows.push({ k, ms: (await time(Array(REPS).fill(d))) / REPS - base });
  const all = await time(plan.dispatches);
  const steps: number[] = [];
  for (let s = 0; s < 10; s++) {
    const t0 = performance.now();
    await step();
    steps.push(performance.now() - t0);
  }
  steps.sort((a, b) => a - b);

  console.log(`\n${ex.dlm} ${which} (batch ${ex.batch}): ${plan.dispatches.length} dispatches, empty dispatch ${base.toFixed(3)} ms`);
  console.log('    ms   GFLOP/s  kernel');
  let sum = 0;
  for (const { k, ms } of rows.sort((a, b) => b.ms - a.ms)) {
    const i = nodes[k], n = p.nodes[i];
    // the dispatch computes its node and those it merged (codegen/merge.ts, a kernel beside it)
    const computed = p.nodes.filter((x) => x.id === i || x.by === i);
    const f = computed.reduce((s, x) => s + flops(p, x.id, plan.shapes), 0);
    sum += ms;
    const products = computed.flatMap((x) => (x.op === 'matmul' || x.op === 'conv2d' ? [x.op] : (source(x.attrs) ?? [])));
    const what = `${n.op}${n.beside !== undefined ? '+beside' : ''}${products.length ? `(${products.join(', ')})` : ''}`;
    const ins = n.inputs.map((j) => `[${plan.shapes[j]}]`).join(' ');
    console.log(`${ms.toFixed(3).padStart(7)} ${(f / ms / 1e6).toFixed(2).padStart(8)}  ${what} ${ins} -> [${plan.shapes[i]}]  #${i} ${p.kernels[n.kernel!].name}`);
  }
  console.log(`sum of kernels ${sum.toFixed(2)} ms; all dispatches in one pass ${all.toFixed(2)} ms; ${which} step median ${steps[5].toFixed(2)} ms (min ${steps[0].toFixed(2)})`);
  model.dispose();
}
