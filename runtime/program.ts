// The compiled program as the runtime sees it: plain JSON, no compiler objects. The compiler's
// bundle stage writes it into manifest.json and model.js; the executors run it.

export type DType = 'f32' | 'i32' | 'bool';
export type Dim = number | string;
export type AttrValue = number | string | boolean | null | readonly (number | string)[];

/** Threads per workgroup of every generated kernel. */
export const WORKGROUP = 64;

export type Grid = { kind: 'elements' } | { kind: 'tiles'; rows: number; cols: number };

/** FNV-1a of `code`, 8 hex digits. */
export function shaderKey(code: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < code.length; i++) h = Math.imul(h ^ code.charCodeAt(i), 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** A kernel's name (its file under kernels/, and its pipeline's cache key and label): the op of
 *  the node that first runs it and the key of its text and grid. */
export const kernelName = (op: string, wgsl: string, grid: Grid): string => `${op}_${shaderKey(wgsl + JSON.stringify(grid))}`;

export interface NodeJSON {
  id: number;
  op: string;
  inputs: number[];
  attrs: Record<string, AttrValue>;
  shape: Dim[];
  dtype: DType;
  /** Index into Program.kernels; absent for leaves (arg, const), aliases (reshape) and nodes
   *  another node's dispatch computes (`by`). */
  kernel?: number;
  /** The buffers a dispatch binds when they are not `inputs`: a kernel that computes several nodes
   *  (codegen/merge.ts) reads what they read; a kernel reads scalar hyperparameters from the
   *  program's hyper uniform (`hyperSlots`), not from bindings. */
  reads?: number[];
  /** The nodes besides this one that its dispatch stores, bound after its own output. */
  writes?: number[];
  /** The node whose dispatch computes this one (stored by it if in its `writes`, else only used
   *  inside its kernel). The CPU executors run it as usual. */
  by?: number;
  /** The argument (a parameter, state or optimizer slot) whose buffer this update is computed
   *  in: its dispatch reads the old value and writes the new one through one binding, and the
   *  memory plan gives it no buffer of its own (codegen/merge.ts inPlace). */
  into?: number;
  /** The dispatch that runs side by side with this one's, in its first workgroups (its node, whose
   *  own `reads` and stored nodes this one's `writes` take up: codegen/kernels.ts). */
  beside?: number;
  /** Where in the source the node was made (file:line:col, or "gradient of OP at ..."). */
  src?: string;
}

export interface KernelJSON {
  /** File name under kernels/ and the pipeline-cache key. */
  name: string;
  wgsl: string;
  grid: Grid;
  /** The grid of the kernel beside this one (run in the first workgroups). */
  first?: Grid;
  /** It reads the hyper uniform (bound after `meta`). */
  hypers?: true;
  /** The variant for adapters with subgroups of four (ops/matmul.ts), where the kernel has one. */
  sub?: { name: string; wgsl: string; grid: Grid; first?: Grid };
}

/** The buffers a dispatch binds before its outputs: what its kernel reads, and first what the
 *  kernel beside it (`first`) reads, which its own kernel then reads from there. */
export function binds(n: NodeJSON, first?: NodeJSON): number[] {
  const reads = (x: NodeJSON) => x.reads ?? x.inputs;
  if (!first) return reads(n);
  const before = reads(first);
  return [...before, ...new Set(reads(n).filter((j) => !before.includes(j)))];
}

/** The scalar hyperparameters (rank-0 `hyper` args) in the order of their 32-bit slots in a
 *  program's hyper uniform: kernels read them from there, so they take no storage binding. */
export const hyperSlots = (p: Pick<ProgramJSON, 'args' | 'nodes'>): number[] => p.args.filter((a) => a.role === 'hyper' && !p.nodes[a.node].shape.length).map((a) => a.node);

export interface ArgJSON {
  role: 'input' | 'param' | 'state' | 'slot' | 'hyper';
  name: string;
  node: number;
}

/** A program: nodes in execution order, its named results, and the updates it makes to its
 *  arguments (new parameters, optimizer slots, layer state). */
export interface ProgramJSON {
  nodes: NodeJSON[];
  args: ArgJSON[];
  outputs: { name: string; node: number }[];
  updates: { role: ArgJSON['role']; name: string; node: number }[];
  symbols: string[];
  kernels: KernelJSON[];
}

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: Dim[];
}

export interface ParamSpec extends TensorSpec {
  tags: string[];
}

export interface Manifest {
  format: 'dlc-bundle/1';
  model: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  metrics: string[];
  params: ParamSpec[];
  state: TensorSpec[];
  /** Optimizer slot tensors, named `<param>:<slot>`. */
  slots: TensorSpec[];
  /** The update rule; 'lbfgs' is built in and driven by the runtime from the gradient program. */
  optimizer: { name: string; hypers: Record<string, number> };
  /** The learning-rate schedule's hyperparameters (run-time values, like the optimizer's). */
  schedule?: { name: string; hypers: Record<string, number> };
  train: { batch: number; epochs: number; shuffle: boolean; seed: number; earlyStop?: { patience: number; on: string } };
  programs: {
    /** Parameters, state and slots from the seed. */
    init: ProgramJSON;
    /** One training step: loss, metrics and every update. */
    train: ProgramJSON;
    /** Loss and metrics without updates (the inference graph). */
    evaluate: ProgramJSON;
    /** Model outputs (the inference graph). */
    predict: ProgramJSON;
    /** Loss and `grad:<param>` of every trainable parameter, no updates (gradient checks, L-BFGS). */
    gradient?: ProgramJSON;
    /** The learning rate lr(lr0, epoch, step), evaluated on the host before each step. */
    schedule?: ProgramJSON;
  };
}
