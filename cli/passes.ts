// `dlc compile --dump PASS`, `--stats`, and `dlc graph`: looking at what the optimizing passes did.

import { writeFileSync } from 'node:fs';
import { toProgram, type Graph } from '../compiler/ir/graph.ts';
import { attachKernels } from '../compiler/codegen/kernels.ts';
import type { LoweredModel } from '../compiler/ir/lower.ts';
import { printGraph } from '../compiler/ir/print.ts';
import { LOWERED, passNames, runPipeline } from '../compiler/passes/pipeline.ts';
import type { Dim, Manifest, ProgramJSON } from '../runtime/program.ts';

export class PassUsageError extends Error {
  override name = 'PassUsageError';
}

export { statsReport as stats } from '../compiler/codegen/stats.ts';

export function checkPassName(flag: string, pass: string): void {
  if (!passNames().includes(pass)) throw new PassUsageError(`${flag} ${pass}: no such pass (passes: ${passNames().join(', ')})`);
}

/** The graphs of the programs the manifest has (`only`: just that one), by name. */
function programGraphs(model: LoweredModel, m: Manifest, only?: string): [string, Graph][] {
  const names = Object.keys(m.programs);
  if (only !== undefined && !names.includes(only)) throw new PassUsageError(`--program ${only}: no such program (programs: ${names.join(', ')})`);
  return names.filter((n) => only === undefined || n === only).map((n) => [n, model.graphs[n as keyof LoweredModel['graphs']]!]);
}

/** Each program's IR after `pass` (`lowered`: before the first pass), as text. */
export function dumpIR(model: LoweredModel, m: Manifest, pass: string, only?: string): string {
  return programGraphs(model, m, only)
    .map(([name, g]) => `# ${m.model}: program ${name}, ${pass === LOWERED ? 'as lowered' : `after pass ${pass}`}\n${printGraph(runPipeline(g, { until: pass }))}\n`)
    .join('\n');
}

// ---------------------------------------------------------------- dlc graph

const esc = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"');

const COLORS: Record<string, string> = {
  fused: '#dbe9ff',
  matmul: '#ffe2c4', conv2d: '#ffe2c4', conv2d_backprop_input: '#ffe2c4', conv2d_backprop_filter: '#ffe2c4',
  sum: '#e4f5d4', mean: '#e4f5d4', reduce_max: '#e4f5d4', reduce_min: '#e4f5d4', argmax: '#e4f5d4',
};

/** Graphviz DOT of a program: a box per node (a fused node lists its lines; kernels are colored by
 *  kind; the nodes of one merged kernel are boxed together), arguments as ellipses, outputs and
 *  updates as notes. */
export function toDot(p: ProgramJSON, title: string): string {
  const lines = ['digraph dlc {', `  label="${esc(title)}"; labelloc=t; rankdir=TB;`, '  node [shape=box, fontname="monospace", fontsize=10];'];
  for (const n of p.nodes) {
    const type = `${n.dtype}[${n.shape.join(', ')}]`;
    let label: string;
    let style = '';
    if (n.op === 'arg') [label, style] = [`${esc(`${n.attrs.role} ${n.attrs.name}`)}\\n${type}`, ', shape=ellipse'];
    else if (n.op === 'const') [label, style] = [`${esc(JSON.stringify(n.attrs.value))} : ${type}`, ', shape=plaintext'];
    else {
      label = `%${n.id} ${n.op} : ${type}`;
      if (n.op === 'fused') {
        // left-justified lines (\l), then the reduction if any
        const body = String(n.attrs.code).split(';').map((l, k) => `  r${k} = ${esc(l.trim())}`);
        if (n.attrs.reduce !== undefined) body.push(`  ${n.attrs.reduce} over [${n.attrs.axes}] of [${(n.attrs.shape as Dim[]).join(', ')}]`);
        label = `${esc(label)}\\l${body.join('\\l')}\\l`;
      } else label = esc(label);
      if (COLORS[n.op]) style = `, style=filled, fillcolor="${COLORS[n.op]}"`;
      else if (n.kernel === undefined) style = ', style=dashed'; // an alias: no kernel
    }
    lines.push(`  n${n.id} [label="${label}"${style}];`);
    for (const i of n.inputs) lines.push(`  n${i} -> n${n.id};`);
  }
  // the nodes one merged kernel computes (codegen/merge.ts), boxed together
  const merged = new Map<number, number[]>();
  for (const n of p.nodes) if (n.by !== undefined) merged.set(n.by, [...(merged.get(n.by) ?? []), n.id]);
  for (const [d, ms] of merged) lines.push(`  subgraph cluster_k${d} { label="one kernel"; style=dashed; ${[...ms, d].map((m) => `n${m};`).join(' ')} }`);
  const results = [...p.outputs.map((o) => [`output ${o.name}`, o.node] as const), ...p.updates.map((u) => [`update ${u.name}`, u.node] as const)];
  results.forEach(([what, node], k) => lines.push(`  r${k} [label="${esc(what)}", shape=note];`, `  n${node} -> r${k};`));
  lines.push('}');
  return lines.join('\n') + '\n';
}

/** Writes `out`: .dot as text, .svg rendered with Graphviz (compiled to WebAssembly: @viz-js/viz). */
export async function writeGraph(model: LoweredModel, m: Manifest, out: string, o: { program: string; pass: string }): Promise<void> {
  if (!/\.(svg|dot)$/.test(out)) throw new PassUsageError(`-o ${out}: the file must end in .svg or .dot`);
  checkPassName('--pass', o.pass);
  const [[name, g]] = programGraphs(model, m, o.program);
  const dot = toDot(attachKernels(toProgram(runPipeline(g, { until: o.pass }))), `${m.model}: ${name}${o.pass === LOWERED ? ' (as lowered)' : ` after ${o.pass}`}`);
  if (out.endsWith('.dot')) return writeFileSync(out, dot);
  const { instance } = await import('@viz-js/viz');
  const viz = await instance();
  writeFileSync(out, viz.renderString(dot, { format: 'svg', engine: 'dot' }));
}
