// The IR as stable text, one line per node in execution order (what `dlc compile --dump PASS`
// prints):
//
//   %12 = mul %3, %11 : f32[B, 256]  # examples/mnist_mlp.dlm:6:10
//   %20 = fused %3, %11 {r0 = add i0 i1; r1 = max r0 f32:0} : f32[B, 256]
//   %21 = fused %20 {r0 = exp i0} sum over [1] of [B, 256] : f32[B, 1]
//   %22 = fused %0, %1, %3 {r0 = add i0 i1; r1 = max r0 f32:0} after matmul nn : f32[B, 256]
//   output loss = %26
//   update param h.dense_0.w = %101
//
// Node numbers are positions in the program (the ids of manifest.json), not hash-consing ids, so
// the text depends only on the graph.

import { toProgram, type Graph } from './graph.ts';
import type { AttrValue, NodeJSON, ProgramJSON } from '../../runtime/program.ts';

const word = /^[A-Za-z_][\w.:]*$/;

function value(v: AttrValue): string {
  if (Array.isArray(v)) return `[${v.map((x) => value(x)).join(', ')}]`;
  if (typeof v === 'string') return word.test(v) ? v : JSON.stringify(v);
  return String(v);
}

const type = (n: NodeJSON) => `${n.dtype}[${n.shape.join(', ')}]`;

/** What follows the op name: its operands and attributes. */
function operands(n: NodeJSON): string {
  const ins = n.inputs.map((i) => `%${i}`).join(', ');
  const a = n.attrs;
  let extra = '';
  if (n.op === 'arg') extra = `${a.role} ${value(a.name)}`;
  else if (n.op === 'const') extra = value(a.value);
  else if (n.op === 'fused') {
    extra = `{${String(a.code).split(';').map((l, k) => `r${k} = ${l.trim()}`).join('; ')}}`;
    if (a.reduce !== undefined) extra += ` ${a.reduce} over ${value(a.axes)} of ${value(a.shape)}`;
    if (a.matmul !== undefined) extra += ` after matmul ${a.matmul}`;
  }
  else {
    const keys = Object.keys(a);
    if (keys.length) extra = `{${keys.map((k) => `${k}: ${value(a[k])}`).join(', ')}}`;
  }
  return [ins, extra].filter(Boolean).join(' ');
}

export function printNode(n: NodeJSON): string {
  const rest = operands(n);
  return `%${n.id} = ${n.op}${rest ? ` ${rest}` : ''} : ${type(n)}${n.src ? `  # ${n.src}` : ''}`;
}

export function printProgram(p: ProgramJSON): string {
  return [
    ...p.nodes.map(printNode),
    ...p.outputs.map((o) => `output ${value(o.name)} = %${o.node}`),
    ...p.updates.map((u) => `update ${u.role} ${value(u.name)} = %${u.node}`),
  ].join('\n');
}

export function printGraph(g: Graph): string {
  return printProgram(toProgram(g));
}
