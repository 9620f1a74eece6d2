// What a compiled program costs (`dlc compile --stats`): kernels, dispatches, the bytes of the
// buffers a WebGPU plan allocates (memory-planned), and FLOPs, at concrete sizes for the symbolic
// dimensions.
//
// FLOPs: matmul 2·M·N·K per batch entry; conv2d and its two backward forms 2·(output or dy
// elements)·KH·KW·C/groups; pooling one per window element per output; reductions one per input
// element; elementwise one per output element (a fused node: one per line per element); data
// movement (reshape, transpose, broadcast, slice, concat, take) none.

import { gzipSync } from 'node:zlib';
import type { Manifest, ProgramJSON } from '../../runtime/program.ts';
import { nodeShapes, numel } from '../../runtime/shapes.ts';
import { planMemory } from '../../runtime/memory.ts';
import { bundleJs } from './bundle.ts';
import { codeLines, product, source } from '../ops/fused.ts';
import type { Attrs } from '../ir/node.ts';

export interface ProgramStats {
  nodes: number;
  /** Distinct WGSL modules (pipelines). */
  kernels: number;
  /** Kernel launches per run. */
  dispatches: number;
  /** Node buffers a WebGPU plan allocates (runtime/memory.ts): kernel outputs, reused once dead,
   *  and constants (not arguments, not aliases). */
  bufferBytes: number;
  /** The same without reuse: one buffer per kernel output and constant. */
  unplannedBytes: number;
  /** Arguments: inputs, parameters, state, slots, hyperparameters. */
  argBytes: number;
  flops: number;
}

const MOVEMENT = new Set(['reshape', 'transpose', 'broadcast', 'slice', 'concat', 'take', 'iota', 'size', 'rand', 'arg', 'const']);
const REDUCTIONS = new Set(['sum', 'mean', 'reduce_max', 'reduce_min', 'argmax']);

/** `syms`: values of the symbolic dimensions (missing ones: `fallback`). */
export function programStats(p: ProgramJSON, syms: Readonly<Record<string, number>>, fallback = 1): ProgramStats {
  const values = Object.fromEntries(p.symbols.map((s) => [s, syms[s] ?? fallback]));
  const shapes = nodeShapes(p, values);
  const argNodes = new Set(p.args.map((a) => a.node));
  let unplannedBytes = 0, argBytes = 0, flops = 0, dispatches = 0;
  p.nodes.forEach((n, i) => {
    const bytes = numel(shapes[i]) * 4;
    if (argNodes.has(i)) argBytes += bytes;
    else if (n.kernel !== undefined || n.op === 'const' || p.nodes[n.by ?? -1]?.writes?.includes(i)) unplannedBytes += bytes;
    if (n.kernel !== undefined) dispatches++;
    flops += nodeFlops(n.op, n.attrs, shapes[i], n.inputs.map((j) => shapes[j]));
  });
  const bufferBytes = planMemory(p, shapes).sizes.reduce((a, b) => a + b, 0);
  return { nodes: p.nodes.length, kernels: p.kernels.length, dispatches, bufferBytes, unplannedBytes, argBytes, flops };
}

function nodeFlops(op: string, attrs: Record<string, unknown>, out: number[], ins: number[][]): number {
  if (MOVEMENT.has(op)) return 0;
  switch (op) {
    case 'matmul': {
      const a = ins[0];
      const k = a[a.length - (attrs.transA ? 2 : 1)];
      return 2 * numel(out) * k;
    }
    case 'conv2d':
    case 'conv2d_backprop_input': {
      const w = ins[1];
      return 2 * numel(op === 'conv2d' ? out : ins[0]) * w[0] * w[1] * w[2];
    }
    case 'conv2d_backprop_filter': // (per chunk of the batch: [S, KH, KW, Cg, F])
      return 2 * numel(ins[1]) * numel(out.slice(-4, -1));
    case 'max_pool2d':
    case 'avg_pool2d':
    case 'max_pool2d_backprop':
    case 'max_pool2d_gather':
    case 'avg_pool2d_backprop': {
      const [kh, kw] = attrs.window as number[];
      return numel(op.startsWith('max_pool2d_') ? ins[ins.length - 1] : op === 'avg_pool2d_backprop' ? ins[0] : out) * kh * kw;
    }
    case 'fused': {
      // a matmul's or convolution's epilogue: the product (its i0), then the program over it and
      // inputs 2..
      const src = source(attrs as Attrs);
      let n = src ? nodeFlops(src, src === 'matmul' ? product(attrs as Attrs)! : attrs, out, ins) : 0;
      if (src) ins = [out, ...ins.slice(2)];
      // lines over one-element values only run once (the CPU kernel hoists them)
      const uniform: boolean[] = [];
      for (const line of codeLines(attrs as Attrs)) {
        const args = line.split(/\s+/).slice(1);
        const u = args.every((a) => (a[0] === 'r' ? uniform[Number(a.slice(1))] : a[0] === 'i' && /^i\d+$/.test(a) ? numel(ins[Number(a.slice(1))]) === 1 : true));
        uniform.push(u);
        n += u ? 1 : numel(out);
      }
      return n;
    }
    default:
      if (REDUCTIONS.has(op)) return numel(ins[0]);
      return numel(out);
  }
}

export interface BundleSize {
  minified: number;
  gzipped: number;
}

/** model.js minified, and that gzipped (bytes). */
export async function bundleSize(m: Manifest): Promise<BundleSize> {
  const js = await bundleJs(m, true);
  return { minified: Buffer.byteLength(js), gzipped: gzipSync(js, { level: 9 }).length };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 ** 2).toFixed(2)} MiB`;
}

export function formatCount(n: number): string {
  if (n < 1e3) return String(n);
  if (n < 1e6) return `${(n / 1e3).toFixed(1)} K`;
  if (n < 1e9) return `${(n / 1e6).toFixed(2)} M`;
  return `${(n / 1e9).toFixed(2)} G`;
}

/** The `--stats` report: each program optimized (and, given `before`, as lowered), and model.js. */
export async function statsReport(m: Manifest, before?: Manifest): Promise<string> {
  const batch = m.train.batch;
  const syms = { B: batch };
  const rows: string[][] = [['program', 'nodes', 'kernels', 'dispatches', 'buffers', 'args', 'FLOPs']];
  const arrow = (a: number | string, b: number | string | undefined) => (b === undefined || a === b ? String(a) : `${b} -> ${a}`);
  for (const [name, p] of Object.entries(m.programs)) {
    const s = programStats(p, syms, batch);
    const o = before?.programs[name as keyof Manifest['programs']];
    const t = o && programStats(o, syms, batch);
    rows.push([
      name,
      arrow(s.nodes, t?.nodes),
      arrow(s.kernels, t?.kernels),
      arrow(s.dispatches, t?.dispatches),
      arrow(formatBytes(s.bufferBytes), t && formatBytes(t.bufferBytes)),
      formatBytes(s.argBytes),
      arrow(formatCount(s.flops), t && formatCount(t.flops)),
    ]);
  }
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  const table = rows.map((r) => r.map((c, k) => (k ? c.padStart(widths[k]) : c.padEnd(widths[k]))).join('  ').trimEnd());
  const size = await bundleSize(m);
  const train = programStats(m.programs.train, syms, batch);
  return [
    `${m.model}: sizes at batch ${batch} (every symbolic dimension = ${batch})${before ? '; "a -> b": as lowered -> optimized' : ''}`,
    ...table,
    `dispatches per training step: ${train.dispatches}`,
    `bytes planned per training step: ${formatBytes(train.bufferBytes)} (${formatBytes(train.unplannedBytes)} with a buffer per node)`,
    `model.js: ${formatBytes(size.minified)} minified, ${formatBytes(size.gzipped)} gzipped`,
  ].join('\n');
}
