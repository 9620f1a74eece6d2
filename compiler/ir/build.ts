// Builders: the only way IR is made. VJP rules, lowering and passes all call these.
// Every op's attributes are spelled out here once.

import { make, type Attrs, type DType, type Dim, type Node, type Shape } from './node.ts';
import type { BinaryKind, ReduceKind, UnaryKind } from '../ops/registry.ts';
import { convAttrs, type ConvOpts } from '../ops/conv.ts';
import { poolAttrs, type PoolOpts } from '../ops/pool.ts';

/** The roles of graph inputs: data, trainable parameters, layer state, optimizer slots, run-time
 *  hyperparameters (lr, beta1, the step counter t, the random key). */
export type ArgRole = 'input' | 'param' | 'state' | 'slot' | 'hyper';

export const arg = (role: ArgRole, name: string, shape: Shape, dtype: DType): Node =>
  make('arg', [], { role, name, shape: [...shape], dtype });

/** A scalar constant. */
export const constant = (value: number, dtype: DType = 'f32'): Node => make('const', [], { value, dtype, shape: [] });

/** A literal tensor (row-major values). */
export const literal = (values: readonly number[], shape: readonly number[], dtype: DType = 'f32'): Node =>
  make('const', [], { value: [...values], dtype, shape: [...shape] });

/** Index along `axis` of a tensor of `shape` (i32). */
export const iota = (shape: Shape, axis: number): Node => make('iota', [], { shape: [...shape], axis });

/** Product of dims (possibly symbolic) as an f32 scalar. */
export const size = (dims: readonly Dim[]): Node => make('size', [], { dims: [...dims] });

export const unary = (op: UnaryKind, x: Node): Node => make(op, [x]);
export const binary = (op: BinaryKind, a: Node, b: Node): Node => make(op, [a, b]);

export const neg = (x: Node) => unary('neg', x);
export const exp = (x: Node) => unary('exp', x);
export const log = (x: Node) => unary('log', x);
export const sqrt = (x: Node) => unary('sqrt', x);
export const abs = (x: Node) => unary('abs', x);
export const sin = (x: Node) => unary('sin', x);
export const cos = (x: Node) => unary('cos', x);
export const floor = (x: Node) => unary('floor', x);
export const sign = (x: Node) => unary('sign', x);
export const not = (x: Node) => unary('not', x);
export const cast = (x: Node, to: DType): Node => (x.dtype === to ? x : make('cast', [x], { to }));

export const add = (a: Node, b: Node) => binary('add', a, b);
export const sub = (a: Node, b: Node) => binary('sub', a, b);
export const mul = (a: Node, b: Node) => binary('mul', a, b);
export const div = (a: Node, b: Node) => binary('div', a, b);
export const pow = (a: Node, b: Node) => binary('pow', a, b);
export const max = (a: Node, b: Node) => binary('max', a, b);
export const min = (a: Node, b: Node) => binary('min', a, b);

/** cond ? a : b, elementwise with broadcasting. */
export const select = (cond: Node, a: Node, b: Node): Node => make('select', [cond, a, b]);

export const reduce = (op: ReduceKind, x: Node, axes: readonly number[], keepdims = false): Node =>
  make(op, [x], { axes: normAxes(axes, x.shape.length), keepdims });
export const sum = (x: Node, axes: readonly number[] = allAxes(x), keepdims = false) => reduce('sum', x, axes, keepdims);
export const mean = (x: Node, axes: readonly number[] = allAxes(x), keepdims = false) => reduce('mean', x, axes, keepdims);
export const argmax = (x: Node, axis: number): Node => make('argmax', [x], { axis: normAxes([axis], x.shape.length)[0] });

/** Batched matrix product over the last two dims; transA/transB read an operand transposed. */
export const matmul = (a: Node, b: Node, transA = false, transB = false): Node => make('matmul', [a, b], { transA, transB });

export const reshape = (x: Node, shape: Shape): Node => make('reshape', [x], { shape: [...shape] });
/** x, through which autodiff sends no gradient (ops/shape.ts). */
export const stopGradient = (x: Node): Node => make('stop_gradient', [x]);
export const transpose = (x: Node, perm: readonly number[]): Node => make('transpose', [x], { perm: [...perm] });
export const broadcast = (x: Node, shape: Shape): Node => make('broadcast', [x], { shape: [...shape] });
/** Per-axis begin/end/step; ends may be symbolic (a whole axis). */
export const slice = (x: Node, begin: readonly number[], end: readonly Dim[], step: readonly number[]): Node =>
  make('slice', [x], { begin: [...begin], end: [...end], step: [...step] });
export const concat = (xs: readonly Node[], axis: number): Node => make('concat', xs, { axis });

/** x[..., idx]: picks one entry of x's last axis per position of idx (class labels). */
export const take = (x: Node, idx: Node): Node => make('take', [x, idx]);

/** Uniform [0, 1) of `shape`, a counter-based hash of (key, salt, index): the same on every backend. */
export const rand = (key: Node, shape: Shape, salt: number): Node => make('rand', [key], { shape: [...shape], salt });

/** NHWC convolution: x [B, H, W, C] ⊛ w [KH, KW, C/groups, F] → [B, OH, OW, F] (ops/conv.ts). */
export const conv2d = (x: Node, w: Node, o: ConvOpts = {}): Node => make('conv2d', [x, w], convAttrs(o));
/** The gradient of conv2d in its image, whose height and width are `inputSize`. */
export const conv2dBackpropInput = (dy: Node, w: Node, o: ConvOpts, inputSize: readonly number[]): Node =>
  make('conv2d_backprop_input', [dy, w], { ...convAttrs(o), inputSize: [...inputSize] });
/** The gradient of conv2d in its filter, whose height and width are `filterSize`; with `splits`
 *  S > 1, one per chunk of the batch, [S, KH, KW, C/groups, F] (passes/split.ts). */
export const conv2dBackpropFilter = (x: Node, dy: Node, o: ConvOpts, filterSize: readonly number[], splits = 1): Node =>
  make('conv2d_backprop_filter', [x, dy], { ...convAttrs(o), filterSize: [...filterSize], ...(splits !== 1 && { splits }) });

/** NHWC pooling [B, H, W, C] → [B, OH, OW, C] and its gradients (ops/pool.ts). */
export const maxPool2d = (x: Node, o: PoolOpts): Node => make('max_pool2d', [x], poolAttrs(o));
export const maxPool2dBackprop = (x: Node, dy: Node, o: PoolOpts): Node => make('max_pool2d_backprop', [x, dy], poolAttrs(o));
/** v at the argmax of each pooling window of x. */
export const maxPool2dGather = (x: Node, v: Node, o: PoolOpts): Node => make('max_pool2d_gather', [x, v], poolAttrs(o));
export const avgPool2d = (x: Node, o: PoolOpts): Node => make('avg_pool2d', [x], poolAttrs(o));
export const avgPool2dBackprop = (dy: Node, o: PoolOpts, inputSize: readonly number[]): Node =>
  make('avg_pool2d_backprop', [dy], { ...poolAttrs(o), inputSize: [...inputSize] });

export function allAxes(x: Node): number[] {
  return x.shape.map((_, i) => i);
}

function normAxes(axes: readonly number[], rank: number): number[] {
  return [...new Set(axes.map((a) => (a < 0 ? a + rank : a)))].sort((p, q) => p - q);
}

/** Elementwise ops fused into one kernel: `code` is its SSA program (one line each) over `inputs`,
 *  `shape` the output shape (ops/fused.ts). Made by the fusion pass, after autodiff. */
export const fused = (inputs: readonly Node[], code: readonly string[], shape: Shape): Node =>
  make('fused', inputs, { code: code.join('; '), shape: [...shape] });

/** A fused program over the product op(a)·op(b) (its `i0`) and `inputs` (`i1`...): the matmul's
 *  epilogue (ops/fused.ts). */
export const fusedMatmul = (a: Node, b: Node, transA: boolean, transB: boolean, inputs: readonly Node[], code: readonly string[], shape: Shape): Node =>
  make('fused', [a, b, ...inputs], { code: code.join('; '), shape: [...shape], matmul: `${transA ? 't' : 'n'}${transB ? 't' : 'n'}` });

/** A fused program over conv2d(x, w) (its `i0`; ops/fused.ts), with conv2d's attributes. */
export const fusedConv = (x: Node, w: Node, conv: Attrs, inputs: readonly Node[], code: readonly string[], shape: Shape): Node =>
  make('fused', [x, w, ...inputs], { code: code.join('; '), shape: [...shape], conv2d: true, ...conv });

/** A reduction (sum, mean, reduce_max, reduce_min, dims kept) of a fused program's values over
 *  `axes` of `shape` (ops/fused.ts). */
export const fusedReduce = (inputs: readonly Node[], code: readonly string[], shape: Shape, reduce: string, axes: readonly number[]): Node =>
  make('fused', inputs, { code: code.join('; '), shape: [...shape], reduce, axes: [...axes] });
