// A program (the inference graph, compiled before fusion so every node is a primitive op) and its
// weights → an ONNX model, opset 18. One table row per primitive says which ONNX nodes compute it;
// an op with no row is an OnnxExportError naming the op and where in the source it was made.
//
// Layout: dlc is channels-last (x [B, H, W, C], filters [KH, KW, C/G, F]); ONNX's Conv and pools
// are channels-first, so they are wrapped in Transposes (ONNX Runtime cancels the pairs between
// consecutive convolutions and folds the filter's into the initializer when it loads the model).
// Symbolic dimensions stay symbolic: graph inputs and outputs carry them as dim_params, and a shape
// a node needs at run time reads the symbol's value from the first input that has it (Shape with
// start/end), so one .onnx file serves every batch size.

import type { Tensor } from '../ops/types.ts';
import type { DType, Dim, NodeJSON, ProgramJSON } from '../../runtime/program.ts';
import { argKey } from '../../runtime/shapes.ts';
import { DataType, encodeModel, type AttrValue, type NodeProto, type TensorProto, type ValueInfoProto } from './proto.ts';

/** The ONNX operator set the exported models import (the reductions take `axes` as an input). */
export const OPSET = 18;
/** The IR version that goes with opset 18 (ONNX 1.13). */
const IR_VERSION = 8;

/** A program that cannot be exported: one line for the user. */
export class OnnxExportError extends Error {}

export interface ExportOptions {
  /** The graph's name (the model's). */
  name: string;
  /** Every parameter and state tensor the program reads, by `argKey` (`param:h.w`, `state:...`). */
  weights: Readonly<Record<string, Tensor>>;
  /** The model's doc string: where it and its weights came from. */
  doc?: string;
  producerVersion?: string;
}

const ELEM: Record<DType, DataType> = { f32: DataType.FLOAT, i32: DataType.INT32, bool: DataType.BOOL };

// ---------------------------------------------------------------- the graph being built

class Builder {
  readonly nodes: NodeProto[] = [];
  readonly initializers: TensorProto[] = [];
  private readonly consts = new Map<string, string>();
  private readonly dims = new Map<string, string>();
  private count = 0;

  /** `symbols`: where each symbolic dimension can be read at run time (an input and its axis). */
  constructor(private readonly symbols: ReadonlyMap<string, { input: string; axis: number }>) {}

  /** Adds a node writing `out` (a fresh name when absent); returns `out`. */
  node(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>, out?: string, doc?: string): string {
    const name = out ?? `tmp:${this.count}`;
    this.nodes.push({ opType, inputs, outputs: [name], name: `${opType}_${this.count++}`, attrs, doc });
    return name;
  }

  initializer(name: string, dtype: DType | 'i64', dims: readonly number[], values: ArrayLike<number>): string {
    const dataType = dtype === 'i64' ? DataType.INT64 : ELEM[dtype];
    let raw: Uint8Array;
    if (dataType === DataType.INT64) raw = new Uint8Array(BigInt64Array.from(Array.from(values), (v) => BigInt(v)).buffer);
    else if (dataType === DataType.BOOL) raw = Uint8Array.from(values, (v) => (v ? 1 : 0));
    else {
      const typed = dataType === DataType.FLOAT ? Float32Array.from(values) : Int32Array.from(values);
      raw = new Uint8Array(typed.buffer);
    }
    this.initializers.push({ name, dataType, dims, raw });
    return name;
  }

  /** A small constant, shared by every node that uses the same one. */
  constant(dtype: DType | 'i64', dims: readonly number[], values: readonly number[]): string {
    const key = `${dtype}[${dims}]:${values}`;
    let name = this.consts.get(key);
    if (!name) this.consts.set(key, (name = this.initializer(`const:${key}`, dtype, dims, values)));
    return name;
  }

  ints = (values: readonly number[]): string => this.constant('i64', [values.length], values);

  /** The run-time value of a symbolic dimension, as int64[1]. */
  dim(sym: string): string {
    let name = this.dims.get(sym);
    if (!name) {
      const at = this.symbols.get(sym);
      if (!at) throw new OnnxExportError(`the symbolic dimension ${sym} is not a dimension of any input, so its value is unknown at run time`);
      this.dims.set(sym, (name = this.node('Shape', [at.input], { start: at.axis, end: at.axis + 1 }, `dim:${sym}`)));
    }
    return name;
  }

  /** An int64 shape tensor for `dims`. `stand` may give a number that stands for a symbolic dim
   *  (Reshape's -1, Expand's 1); the others are read at run time. */
  shape(dims: readonly Dim[], stand: (d: string, k: number) => number | undefined = () => undefined): string {
    const fixed = dims.map((d, k) => (typeof d === 'number' ? d : stand(d, k)));
    if (fixed.every((d) => d !== undefined)) return this.ints(fixed as number[]);
    return this.node('Concat', dims.map((d, k) => (fixed[k] !== undefined ? this.ints([fixed[k]!]) : this.dim(d as string))), { axis: 0 });
  }
}

// ---------------------------------------------------------------- the op table

/** What a row sees: the dlc node, its inputs' ONNX names and dlc nodes, and the name to write. */
interface Site {
  b: Builder;
  n: NodeJSON;
  x: string[];
  inputs: NodeJSON[];
  out: string;
}

type Lowering = (s: Site) => void;

/** One ONNX node with the same operands. */
const same = (opType: string, attrs?: (n: NodeJSON) => Record<string, AttrValue>): Lowering => ({ b, n, x, out }) => {
  b.node(opType, x, attrs?.(n), out, n.src);
};

const keepdims = (n: NodeJSON) => (n.attrs.keepdims ? 1 : 0);

const reduce = (opType: string): Lowering => ({ b, n, x, out }) => {
  const axes = n.attrs.axes as number[];
  // No axes reduces nothing in dlc, but everything in ONNX.
  if (axes.length === 0) b.node('Identity', x, undefined, out, n.src);
  else b.node(opType, [x[0], b.ints(axes)], { keepdims: keepdims(n) }, out, n.src);
};

const rank = (n: NodeJSON) => n.shape.length;
const swapLast = (r: number) => [...Array.from({ length: r - 2 }, (_, k) => k), r - 1, r - 2];
const NHWC_TO_NCHW = [0, 3, 1, 2], NCHW_TO_NHWC = [0, 2, 3, 1];

/** A channels-first ONNX op between Transposes. */
function channelsFirst(b: Builder, n: NodeJSON, opType: string, inputs: string[], attrs: Record<string, AttrValue>, out: string): void {
  const y = b.node(opType, inputs, attrs, undefined, n.src);
  b.node('Transpose', [y], { perm: NCHW_TO_NHWC }, out, n.src);
}

/** dlc padding [top, bottom, left, right] → ONNX pads [top, left, bottom, right]. */
const pads = (p: number[]) => [p[0], p[2], p[1], p[3]];

const pool = (opType: string, extra: Record<string, AttrValue> = {}): Lowering => ({ b, n, x, out }) => {
  const a = n.attrs as { window: number[]; strides: number[]; padding: number[] };
  const xt = b.node('Transpose', x, { perm: NHWC_TO_NCHW }, undefined, n.src);
  channelsFirst(b, n, opType, [xt], { kernel_shape: a.window, strides: a.strides, pads: pads(a.padding), ...extra }, out);
};

const rows: Record<string, Lowering> = {
  neg: same('Neg'), exp: same('Exp'), log: same('Log'), sqrt: same('Sqrt'), abs: same('Abs'),
  sin: same('Sin'), cos: same('Cos'), floor: same('Floor'), sign: same('Sign'), not: same('Not'),
  cast: same('Cast', (n) => ({ to: ELEM[n.attrs.to as DType] })),

  add: same('Add'), sub: same('Sub'), mul: same('Mul'), div: same('Div'), pow: same('Pow'),
  max: same('Max'), min: same('Min'),
  eq: same('Equal'), lt: same('Less'), le: same('LessOrEqual'), gt: same('Greater'), ge: same('GreaterOrEqual'),
  and: same('And'), or: same('Or'),
  ne: ({ b, n, x, out }) => b.node('Not', [b.node('Equal', x, undefined, undefined, n.src)], undefined, out, n.src),
  select: same('Where'),

  sum: reduce('ReduceSum'), mean: reduce('ReduceMean'), reduce_max: reduce('ReduceMax'), reduce_min: reduce('ReduceMin'),
  // ONNX's ArgMax gives int64 (the first maximum, like dlc's); dlc's is i32.
  argmax: ({ b, n, x, out }) => {
    const i = b.node('ArgMax', x, { axis: n.attrs.axis as number, keepdims: keepdims(n) }, undefined, n.src);
    b.node('Cast', [i], { to: DataType.INT32 }, out, n.src);
  },

  matmul: ({ b, n, x, inputs, out }) => {
    const [a, c] = [n.attrs.transA, n.attrs.transB].map((t, k) => (t ? b.node('Transpose', [x[k]], { perm: swapLast(rank(inputs[k])) }, undefined, n.src) : x[k]));
    b.node('MatMul', [a, c], undefined, out, n.src);
  },

  reshape: ({ b, n, x, out }) => {
    const dims = n.attrs.shape as Dim[];
    const one = dims.filter((d) => typeof d === 'string').length === 1;
    b.node('Reshape', [x[0], b.shape(dims, () => (one ? -1 : undefined))], undefined, out, n.src);
  },
  stop_gradient: same('Identity'),
  transpose: same('Transpose', (n) => ({ perm: n.attrs.perm as number[] })),
  // Expand broadcasts both ways: a 1 keeps the input's own dim where it already is the symbol.
  broadcast: ({ b, n, x, inputs, out }) => {
    const lead = rank(n) - rank(inputs[0]);
    b.node('Expand', [x[0], b.shape(n.shape, (d, k) => (inputs[0].shape[k - lead] === d ? 1 : undefined))], undefined, out, n.src);
  },
  slice: ({ b, n, x, inputs, out }) => {
    const [begin, end, step] = [n.attrs.begin, n.attrs.end, n.attrs.step] as [number[], Dim[], number[]];
    // Axes taken whole (symbolic ones always are) need no entry.
    const axes = begin.map((_, k) => k).filter((k) => !(begin[k] === 0 && end[k] === inputs[0].shape[k] && step[k] === 1));
    if (axes.length === 0) b.node('Identity', x, undefined, out, n.src);
    else b.node('Slice', [x[0], b.ints(axes.map((k) => begin[k])), b.ints(axes.map((k) => end[k] as number)), b.ints(axes), b.ints(axes.map((k) => step[k]))], undefined, out, n.src);
  },
  concat: same('Concat', (n) => ({ axis: ((n.attrs.axis as number) + rank(n)) % rank(n) })),

  // x[..., idx[...]], and 0 where idx is outside [0, N) (ONNX's gathers reject such an index).
  take: ({ b, n, x, inputs, out }) => {
    const N = inputs[0].shape[rank(inputs[0]) - 1];
    const last = b.ints([-1]);
    const idx = b.node('Unsqueeze', [x[1], last], undefined, undefined, n.src);
    const zero = b.constant('i32', [], [0]);
    const size = typeof N === 'number' ? b.constant('i32', [], [N]) : b.node('Cast', [b.dim(N)], { to: DataType.INT32 });
    const ok = b.node('And', [b.node('GreaterOrEqual', [idx, zero]), b.node('Less', [idx, size])], undefined, undefined, n.src);
    const got = b.node('GatherElements', [x[0], b.node('Where', [ok, idx, zero])], { axis: -1 }, undefined, n.src);
    b.node('Squeeze', [b.node('Where', [ok, got, b.constant('f32', [], [0])]), last], undefined, out, n.src);
  },

  // i32 of `shape`, each element its index along `axis`: a ramp along that axis, expanded.
  iota: ({ b, n, out }) => {
    const axis = ((n.attrs.axis as number) + rank(n)) % rank(n);
    const d = n.shape[axis];
    const ones = n.shape.map(() => 1);
    let ramp: string;
    if (typeof d === 'number') ramp = b.constant('i32', ones.map((o, k) => (k === axis ? d : o)), Array.from({ length: d }, (_, i) => i));
    else {
      const limit = b.node('Cast', [b.node('Reshape', [b.dim(d), b.ints([])])], { to: DataType.INT32 });
      const range = b.node('Range', [b.constant('i32', [], [0]), limit, b.constant('i32', [], [1])], undefined, undefined, n.src);
      ramp = b.node('Reshape', [range, b.ints(ones.map((o, k) => (k === axis ? -1 : o)))]);
    }
    b.node('Expand', [ramp, b.shape(n.shape, (s, k) => (k === axis ? 1 : undefined))], undefined, out, n.src);
  },

  // The product of `dims` as an f32 scalar.
  size: ({ b, n, out }) => {
    const dims = n.attrs.dims as Dim[];
    const known = dims.reduce<number>((p, d) => (typeof d === 'number' ? p * d : p), 1);
    const syms = dims.filter((d): d is string => typeof d === 'string');
    if (!syms.length) {
      b.node('Identity', [b.constant('f32', [], [known])], undefined, out, n.src);
      return;
    }
    const prod = b.node('ReduceProd', [b.node('Concat', [b.ints([known]), ...syms.map((s) => b.dim(s))], { axis: 0 })], { keepdims: 0 });
    b.node('Cast', [prod], { to: DataType.FLOAT }, out, n.src);
  },

  conv2d: ({ b, n, x, inputs, out }) => {
    const a = n.attrs as { strides: number[]; padding: number[]; dilations: number[]; groups: number };
    const xt = b.node('Transpose', [x[0]], { perm: NHWC_TO_NCHW }, undefined, n.src);
    const wt = b.node('Transpose', [x[1]], { perm: [3, 2, 0, 1] }, undefined, n.src); // [KH, KW, C/G, F] → [F, C/G, KH, KW]
    const kernel = inputs[1].shape.slice(0, 2) as number[];
    channelsFirst(b, n, 'Conv', [xt, wt], { kernel_shape: kernel, strides: a.strides, pads: pads(a.padding), dilations: a.dilations, group: a.groups }, out);
  },
  max_pool2d: pool('MaxPool'),
  // Padded cells do not count in dlc's mean.
  avg_pool2d: pool('AveragePool', { count_include_pad: 0 }),
};

const GRADIENT = 'a gradient op, which an inference graph does not hold';

/** Why the ops with no row have none. */
const unmappable: Record<string, string> = {
  rand: "random numbers in the inference graph (dlc's counter-based stream has no ONNX equivalent)",
  fused: 'a fused kernel: export the program compiled before the fuse pass',
  conv2d_backprop_input: GRADIENT,
  conv2d_backprop_filter: GRADIENT,
  max_pool2d_backprop: GRADIENT,
  max_pool2d_gather: GRADIENT,
  avg_pool2d_backprop: GRADIENT,
};

// ---------------------------------------------------------------- the model

/** The .onnx bytes of program `p` with its parameters and state as initializers. */
export function exportOnnx(p: ProgramJSON, o: ExportOptions): Uint8Array {
  const bad = p.nodes.find((n) => n.op !== 'arg' && n.op !== 'const' && !rows[n.op]);
  if (bad) throw new OnnxExportError(`cannot export op '${bad.op}'${bad.src ? ` at ${bad.src}` : ''}: ${unmappable[bad.op] ?? 'no ONNX mapping'}`);

  const inputs = p.args.filter((a) => a.role === 'input');
  const symbols = new Map<string, { input: string; axis: number }>();
  for (const a of inputs) p.nodes[a.node].shape.forEach((d, axis) => typeof d === 'string' && !symbols.has(d) && symbols.set(d, { input: a.name, axis }));
  const b = new Builder(symbols);
  const taken = new Set([...inputs.map((a) => a.name), ...p.outputs.map((o) => o.name)]);

  // Each node's value name: an output's name where it is the first output of that node.
  const names: string[] = p.nodes.map((n) => `${n.op}:${n.id}`);
  const claimed = new Set<number>();
  for (const out of p.outputs) {
    const n = p.nodes[out.node];
    if (n.op !== 'arg' && n.op !== 'const' && !claimed.has(out.node)) {
      claimed.add(out.node);
      names[out.node] = out.name;
    }
  }

  for (const a of p.args) {
    const n = p.nodes[a.node];
    if (a.role === 'input') names[a.node] = a.name;
    else if (a.role === 'param' || a.role === 'state') {
      const w = o.weights[argKey(a)];
      if (!w) throw new OnnxExportError(`no value for ${a.role} '${a.name}'`);
      if (w.shape.join() !== n.shape.join()) throw new OnnxExportError(`${a.role} '${a.name}' is [${w.shape}], the model expects [${n.shape}]`);
      names[a.node] = b.initializer(taken.has(a.name) ? argKey(a) : a.name, n.dtype, w.shape, w.data);
    } else throw new OnnxExportError(`the inference graph reads the run-time ${a.role} '${a.name}', which an ONNX model cannot be given`);
  }

  for (const n of p.nodes) {
    if (n.op === 'arg') continue;
    if (n.op === 'const') {
      const v = n.attrs.value;
      const dims = n.shape as number[];
      const size = dims.reduce((q, d) => q * d, 1);
      names[n.id] = b.initializer(names[n.id], n.dtype, dims, Array.isArray(v) ? (v as number[]) : new Array<number>(size).fill(v as number));
      continue;
    }
    rows[n.op]({ b, n, x: n.inputs.map((i) => names[i]), inputs: n.inputs.map((i) => p.nodes[i]), out: names[n.id] });
  }

  // Outputs that are leaves, or a node another output already named, are copies.
  for (const out of p.outputs) if (names[out.node] !== out.name) b.node('Identity', [names[out.node]], undefined, out.name);

  const info = (name: string, n: NodeJSON): ValueInfoProto => ({ name, elemType: ELEM[n.dtype], shape: n.shape });
  return encodeModel({
    irVersion: IR_VERSION,
    opset: OPSET,
    producer: 'dlc',
    producerVersion: o.producerVersion ?? '',
    doc: o.doc,
    graph: {
      name: o.name,
      nodes: b.nodes,
      initializers: b.initializers,
      inputs: inputs.map((a) => info(a.name, p.nodes[a.node])),
      outputs: p.outputs.map((out) => info(out.name, p.nodes[out.node])),
    },
  });
}
