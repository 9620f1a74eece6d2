// What one primitive op is: its shape rule, its vector-Jacobian rule (built from other IR ops),
// its CPU kernel and its WGSL template. One op family per file; registry.ts collects them into a
// table typed by OpKind, so a missing rule is a type error.

import type { Attrs, DType, Node, Shape } from '../ir/node.ts';

export type TypedArray = Float32Array | Float64Array | Int32Array;

/** A concrete tensor at run time. i32 and bool are stored in Int32Array (bool as 0/1). */
export interface Tensor {
  data: TypedArray;
  shape: number[];
}

export interface CpuCtx {
  /** Float32Array to match WGSL, Float64Array for gradient checks. */
  float: Float32ArrayConstructor | Float64ArrayConstructor;
  /** Values of the symbolic dimensions (B -> 64). */
  syms: Readonly<Record<string, number>>;
  /** Where kernels get their zeroed result arrays (`alloc` in elementwise.ts), when the executor
   *  keeps tensors in its own memory (runtime/wasm.ts); float32 only. */
  alloc?(n: number, int: boolean): TypedArray;
  /** The executor's kernels by op: a fused kernel runs its product's (matmul, conv2d) from here, so
   *  that a bundle carries only the kernels its programs use. */
  kernels?: Readonly<Record<string, CpuKernel | 'alias'>>;
}

/** Computes the output from concrete inputs. Pure; allocates its result (ctx.float for f32). */
export type CpuKernel = (inputs: Tensor[], attrs: Attrs, out: { shape: number[]; dtype: DType }, ctx: CpuCtx) => TypedArray;

/**
 * What a WGSL template is given. Kernels are generic over shapes of the same rank: every size is
 * read at run time from the `meta` uniform (see codegen/wgsl.ts for the layout), so one pipeline
 * serves every batch size.
 */
export interface KernelSig {
  op: string;
  attrs: Attrs;
  /** `shape` is the IR's (symbolic dims by name). A template may specialize on which dims are 1
   *  and which are equal (an operand of the output's shape reads element i, with no index math),
   *  not on other sizes, so that one pipeline still serves every size. */
  inputs: { dtype: DType; rank: number; shape: Shape; hyper?: number }[];
  output: { dtype: DType; rank: number; shape: Shape };
  /** More outputs of the output's shape (a kernel that computes several nodes: codegen/merge.ts),
   *  bound as `out1`, `out2`, ... */
  writes?: { dtype: DType }[];
  /** Per output (`out`, `out1`, ...): the input whose buffer it is written into (its binding then
   *  reads the old value and writes the new one: an update in place, codegen/merge.ts), or -1. */
  into?: number[];
  /** The program's symbolic dimensions, in the order their values follow in `meta`. */
  symbols: readonly string[];
  /** The variant for adapters with subgroups of four invocations (ops/matmul.ts `quads`). */
  subgroups?: boolean;
}

/**
 * How many invocations a kernel needs: one per output element, or one per `rows`×`cols` tile of
 * the last two output dims (times the product of the leading dims).
 */
export type Grid = { kind: 'elements' } | { kind: 'tiles'; rows: number; cols: number };

export interface KernelSource {
  /** The body: functions and `main`. codegen/wgsl.ts adds bindings, meta and the preamble. */
  code: string;
  grid: Grid;
}

export interface ShapeResult {
  shape: Shape;
  dtype: DType;
}

export interface OpDef {
  /** Output shape and dtype, or throw ShapeError. */
  shape(inputs: readonly Node[], attrs: Attrs): ShapeResult;
  /**
   * Cotangent of each input given the output's cotangent `ct`, as IR built from other ops; null
   * for an input with no gradient (integers, masks). The result may have the output's broadcast
   * shape: autodiff un-broadcasts it to the input's shape. Absent: the op is not differentiable.
   */
  vjp?(node: Node, ct: Node): (Node | null)[];
  /** Leaf ops (arg, const) have no kernel: executors bind or upload their value directly. */
  cpu?: CpuKernel;
  wgsl?(sig: KernelSig): KernelSource;
  /** The output is the input's buffer reinterpreted (reshape): no kernel runs. */
  alias?: true;
}
