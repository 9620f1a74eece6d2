// The CPU executor: programs run with their tensors in one memory (a WebAssembly.Memory, shared with
// worker threads where the host allows them: runtime/threads.ts splits the matrix products). The ops
// with a WebAssembly SIMD kernel (compiler/codegen/wasm.ts: matmul, conv2d and its two backward
// forms, most fused elementwise programs) read and write it in place, where the host has SIMD and
// the kernel table has the wasm module; every other op runs its JavaScript kernel (the generated
// fused loops included) on views of it. Parameters, state and optimizer slots stay in the memory
// between runs. Float32 only: float64 runs (gradient checks) use runtime/cpu.ts's runCpu.

import type { Tensor, TypedArray } from '../compiler/ops/types.ts';
import { boxOffsets, broadcastStrides } from '../compiler/ops/elementwise.ts';
import { product as transposes } from '../compiler/ops/fused.ts';
import type { ArgJSON, Manifest, NodeJSON, ProgramJSON } from './program.ts';

type Attrs = NodeJSON['attrs'];
import { constData, type CpuKernels } from './cpu.ts';
import { argKey, bindSymbols, nodeShapes, numel } from './shapes.ts';
import { readBytes } from './bytes.ts';
import { lifetimes } from './memory.ts';
import type { Instantiate } from './threads.ts';

/** Where a table of CPU kernels gets the wasm kernels' bytes for a model. */
export type WasmSource = (m: Manifest) => Promise<BufferSource>;

/** What a table of CPU kernels carries for this executor beside the JS kernels: the source of the
 *  wasm bytes, the wasm drivers of its ops (`wasmOps` below, or a bundle's share of them) and how
 *  to instantiate the module with `threads` threads (runtime/threads.ts, which picks a default). */
export interface WasmParts {
  wasm?: WasmSource;
  wasmOps?: Readonly<Record<string, WasmKernel>>;
  instantiate?: (threads?: number) => Promise<Instantiate>;
}

/** A bundle's wasm kernels: kernels.wasm beside model.js (compiler/codegen/bundle.ts), fetched,
 *  or in Node read from disk. */
export const bundledWasm: WasmSource = () => readBytes(new URL('./kernels.wasm', import.meta.url));

/** The panel sizes of compiler/codegen/wasm.ts's gemm. */
export const MR = 4, NR = 8;
/** gemm's scratch for edge tiles (MR × NR floats) at address 0; then runtime/threads.ts's words;
 *  blocks start after them. */
export const TILE = 0, FIRST = 2048;

export interface Exports {
  pack4(src: number, dst: number, rows: number, depth: number, rs: number, ds: number): void;
  pack8(src: number, dst: number, rows: number, depth: number, rs: number, ds: number): void;
  gemm(a: number, b: number, c: number, m: number, n: number, k: number, ldc: number, tile: number): void;
  im2col(x: number, dst: number, ...geom: number[]): void;
  im2col_t(x: number, dst: number, ...geom: number[]): void;
  col2im(src: number, dx: number, ...geom: number[]): void;
  /** The fused programs, by `pattern|code` (compiler/codegen/wasm.ts fusedKey). */
  [fused: string]: (...ptrs: number[]) => void;
}

/** A tensor's place in the memory: byte offset, element count, Int32Array (i32, bool) or not. */
interface Block {
  off: number;
  n: number;
  int: boolean;
}

/** The memory and its allocator: free blocks are kept by size, which repeats from step to step,
 *  so after the first step every allocation is a reuse. */
class Heap {
  constructor(
    readonly memory: { buffer: ArrayBufferLike; grow(pages: number): void } =
      // without wasm kernels: the JS kernels on a buffer copied as it grows
      { buffer: new ArrayBuffer(256 << 16), grow(pages) { const b = new Uint8Array(this.buffer.byteLength + (pages << 16)); b.set(new Uint8Array(this.buffer)); this.buffer = b.buffer; } },
  ) {}
  private top = FIRST;
  private readonly free = new Map<number, number[]>();
  alloc(n: number, int = false): Block {
    return this.tryAlloc(n, int, true)!;
  }
  /** Without `grow`, undefined where the memory would have to grow (which detaches every view). */
  tryAlloc(n: number, int: boolean, grow: boolean): Block | undefined {
    const bytes = Heap.size(n);
    let off = this.free.get(bytes)?.pop();
    if (off === undefined) {
      const short = this.top + bytes - this.memory.buffer.byteLength;
      if (short > 0 && !grow) return undefined;
      // by half at least, so that grows are rare
      if (short > 0) this.memory.grow(Math.max(Math.ceil(short / 65536), this.memory.buffer.byteLength >> 17));
      off = this.top;
      this.top += bytes;
    }
    return { off, n, int };
  }
  release(b: Block): void {
    const bytes = Heap.size(b.n);
    const list = this.free.get(bytes);
    if (list) list.push(b.off);
    else this.free.set(bytes, [b.off]);
  }
  view(b: Block): TypedArray {
    return b.int ? new Int32Array(this.memory.buffer, b.off, b.n) : new Float32Array(this.memory.buffer, b.off, b.n);
  }
  /** A 16-byte multiple (SIMD loads stay aligned), with 16 bytes to spare for the fused kernels'
   *  last steps (compiler/codegen/wasm.ts). */
  private static size(n: number): number {
    return (n * 4 + 31) & ~15;
  }
}

// ---------------------------------------------------------------- the ops' wasm kernels

export interface WasmKernel {
  /** Whether this node is covered (else the JavaScript kernel runs). */
  ok?(attrs: Attrs, shapes: number[][], shape: number[], e: Exports): boolean;
  /** `drivers`: the executor's, by op. */
  run(h: Heap, e: Exports, ins: Block[], shapes: number[][], out: Block, shape: number[], attrs: Attrs, drivers: Drivers): void;
}
type Drivers = Readonly<Record<string, WasmKernel>>;

const up = (n: number, q: number) => Math.ceil(n / q) * q;

/** Element offsets of each batch entry of an operand of `shape` (batch dims broadcast). */
const batchOffsets = (shape: number[], batch: number[], block: number) =>
  boxOffsets(batch, broadcastStrides(shape.slice(0, -2), batch).map((s) => s * block));

/** The conv layout kernels' geometry (compiler/codegen/wasm.ts CONV) from x, w and y's shapes. */
function convGeom([B, H, W, C]: number[], [KH, KW]: number[], [, OH, OW]: number[], a: Attrs): number[] {
  const [sh, sw] = a.strides as number[], [pt, , pl] = a.padding as number[], [dh, dw] = a.dilations as number[];
  return [B, H, W, C, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw];
}

/** Zeroes the padding rows of the last panel of a matrix packed by pack4 (`rows` × `depth`). */
function zeroTail(h: Heap, b: Block, rows: number, depth: number): void {
  if (rows % MR) (h.view(b) as Float32Array).fill(0, Math.floor(rows / MR) * MR * depth, up(rows, MR) * depth);
}

const ungrouped = (a: Attrs) => a.groups === 1;

/** C = op(A)·op(B) through the packed panels; `pack` the operands, then one gemm. */
function product(h: Heap, e: Exports, m: number, n: number, k: number, packA: (dst: number) => void, packB: (dst: number) => void, c: number): void {
  const ap = h.alloc(up(m, MR) * k), bp = h.alloc(up(n, NR) * k);
  packA(ap.off);
  packB(bp.off);
  e.gemm(ap.off, bp.off, c, m, n, k, n, TILE);
  h.release(ap);
  h.release(bp);
}

/**
 * conv2d, y [M = B·OH·OW, F] = P [M, K]·w [K, F] with P the patch matrix, and its filter gradient
 * (`transposed`), dw [K, F] = Pᵀ·dy: one gemm whose A operand im2col writes already packed. x, q
 * (w or dy) and c (y or dw) are addresses; xs, ws, ys the shapes of x, w and y.
 */
function patches(h: Heap, e: Exports, transposed: boolean, x: number, q: number, c: number, xs: number[], ws: number[], ys: number[], attrs: Attrs): void {
  const M = numel(ys.slice(0, 3)), K = numel(ws.slice(0, 3)), F = ws[3];
  const [rows, depth] = transposed ? [K, M] : [M, K];
  const ap = h.alloc(up(rows, MR) * depth), bp = h.alloc(up(F, NR) * depth);
  zeroTail(h, ap, rows, depth);
  (transposed ? e.im2col_t : e.im2col)(x, ap.off, ...convGeom(xs, ws, ys, attrs));
  e.pack8(q, bp.off, F, depth, 1, F);
  e.gemm(ap.off, bp.off, c, rows, F, depth, F, TILE);
  h.release(ap);
  h.release(bp);
}

/** A fused program's export and its row length: a letter per input, u (one value), f (the
 *  output's size), c (a row: the output's trailing dims) or k (rows of the output's size, which
 *  the program sums; `row` is then its size). */
function fusedFn(e: Exports, attrs: Attrs, shapes: number[][], shape: number[]): [Exports[string], number] | undefined {
  const n = numel(shape);
  let row = n;
  const letter = (s: number[]) => {
    const k = numel(s), t = s.slice(s.findIndex((d) => d !== 1));
    if (k === 1 || k === n) return k === 1 ? 'u' : 'f';
    row = k;
    return t.length < shape.length && t.every((d, q) => d === shape[shape.length - t.length + q]) ? 'c' : k % n ? '?' : 'k';
  };
  const fn = attrs.reduce === undefined && e[`${shapes.map(letter).join('')}|${attrs.code}`];
  return fn ? [fn, row] : undefined;
}

// Each op's driver is its own export, so a bundle carries only those of its ops (the generated
// dlc:kernels module of compiler/codegen/bundle.ts picks them by name from `wasmOps`).

export const matmul: WasmKernel = {
  run(h, e, [a, b], [as, bs], out, os, { transA, transB }) {
    const r = os.length, m = os[r - 2], n = os[r - 1], k = as[as.length - (transA ? 2 : 1)];
    const batch = os.slice(0, -2);
    const [ao, bo] = [batchOffsets(as, batch, m * k), batchOffsets(bs, batch, k * n)];
    for (let t = 0; t < ao.length; t++)
      product(h, e, m, n, k,
        (dst) => e.pack4(a.off + 4 * ao[t], dst, m, k, transA ? 1 : k, transA ? m : 1),
        (dst) => e.pack8(b.off + 4 * bo[t], dst, n, k, transB ? k : 1, transB ? 1 : n),
        out.off + 4 * t * m * n);
  },
};

export const fused: WasmKernel = {
  // a matmul's or convolution's epilogue (ops/fused.ts): the product into a scratch block (by the
  // executor's own driver: a bundle carries only those its programs use), then the program over it
  ok: (attrs, shapes, shape, e) => (attrs.conv2d !== true || ungrouped(attrs)) && !!fusedFn(e, attrs, attrs.matmul || attrs.conv2d ? [shape, ...shapes.slice(2)] : shapes, shape),
  run(h, e, ins, shapes, out, shape, attrs, drivers) {
    const mm = (attrs.matmul || attrs.conv2d) && h.alloc(numel(shape));
    if (mm) {
      if (attrs.conv2d) drivers.conv2d.run(h, e, ins, shapes, mm, shape, attrs, drivers);
      else drivers.matmul.run(h, e, ins, shapes, mm, shape, transposes(attrs)!, drivers);
      [ins, shapes] = [[mm, ...ins.slice(2)], [shape, ...shapes.slice(2)]];
    }
    const [fn, row] = fusedFn(e, attrs, shapes, shape)!;
    fn(out.off, numel(shape), row, ...ins.map((b) => b.off));
    if (mm) h.release(mm);
  },
};

export const conv2d: WasmKernel = {
  ok: ungrouped,
  run: (h, e, [x, w], [xs, ws], y, ys, attrs) => patches(h, e, false, x.off, w.off, y.off, xs, ws, ys, attrs),
};
// split over the batch (attribute splits, compiler/ops/conv.ts): one product per chunk of images
// into its slice of dw [S, KH, KW, Cg, F]; an empty chunk's slice is zeros
export const conv2d_backprop_filter: WasmKernel = {
  ok: ungrouped,
  run(h, e, [x, dy], [xs, ds], dw, os, attrs) {
    const ws = os.slice(-4), S = os.length > 4 ? os[0] : 1, part = numel(ws);
    const [B, H, W, C] = xs, [, OH, OW, F] = ds;
    for (let s = 0; s < S; s++) {
      const b0 = Math.floor((s * B) / S), nb = Math.floor(((s + 1) * B) / S) - b0;
      if (nb === 0) (h.view(dw) as Float32Array).fill(0, s * part, (s + 1) * part);
      else patches(h, e, true, x.off + 4 * b0 * H * W * C, dy.off + 4 * b0 * OH * OW * F, dw.off + 4 * s * part, [nb, H, W, C], ws, [nb, OH, OW, F], attrs);
    }
  },
};
// dP [M, K] = dy [M, F]·wᵀ, then col2im adds each patch entry back to its pixel
export const conv2d_backprop_input: WasmKernel = {
  ok: ungrouped,
  run(h, e, [dy, w], [ds, ws], dx, xs, attrs) {
    const g = convGeom(xs, ws, ds, attrs);
    const M = numel(ds.slice(0, 3)), K = numel(ws.slice(0, 3)), F = ws[3];
    const cols = h.alloc(M * K);
    product(h, e, M, K, F, (dst) => e.pack4(dy.off, dst, M, F, F, 1), (dst) => e.pack8(w.off, dst, K, F, F, 1), cols.off);
    h.view(dx).fill(0);
    e.col2im(cols.off, dx.off, ...g);
    h.release(cols);
  },
};

/** Every op's wasm driver: the CLI's kernel table carries them all. */
export const wasmOps: Readonly<Record<string, WasmKernel>> = { matmul, fused, conv2d, conv2d_backprop_filter, conv2d_backprop_input };

// ---------------------------------------------------------------- the executor

/** A one-instruction SIMD function: WebAssembly.validate tells whether the host has SIMD. */
const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);

/** What one program needs at every run: each node's alias root and the node after which the
 *  root's block is dead (Infinity: an output or update). */
interface Plan {
  root: number[];
  end: number[];
  arg: (ArgJSON | undefined)[];
}

const plans = new WeakMap<ProgramJSON, Plan>();

function plan(p: ProgramJSON, kernels: CpuKernels): Plan {
  let pl = plans.get(p);
  if (pl) return pl;
  const { home: root, last: end } = lifetimes(p, (n) => kernels[n.op] === 'alias');
  const arg = p.nodes.map((): ArgJSON | undefined => undefined);
  for (const a of p.args) arg[a.node] = a;
  pl = { root, end, arg };
  plans.set(p, pl);
  return pl;
}

interface Stored {
  b: Block;
  shape: number[];
}

type Value = Block | TypedArray;
const isBlock = (v: Value): v is Block => 'off' in v;

/** Runs programs on the CPU for model.ts (its Executor interface). */
export class CpuExecutor {
  private readonly tensors = new Map<string, Stored>();
  private previous = new Map<string, Stored>();

  private constructor(
    private readonly kernels: CpuKernels,
    private readonly h: Heap,
    /** The wasm kernels, where the table has them and the host runs SIMD. */
    private readonly e?: Exports,
  ) {}

  /** `threads`: how many threads the wasm kernels may use (default: runtime/threads.ts's). */
  static async create(kernels: CpuKernels, m: Manifest, threads?: number): Promise<CpuExecutor> {
    const parts = kernels as WasmParts;
    const { exp, log, sin, cos, sign, pow } = Math;
    try {
      if (!WebAssembly.validate(SIMD_PROBE)) throw 0;
      const { memory, exports } = await (await parts.instantiate!(threads))(await parts.wasm!(m), { exp, log, sin, cos, sign, pow });
      return new CpuExecutor(kernels, new Heap(memory), exports);
    } catch {
      // no WebAssembly SIMD, or no kernels.wasm (threads.js) beside model.js: the JS kernels
      return new CpuExecutor(kernels, new Heap());
    }
  }

  /** Whether the wasm SIMD kernels run (else the JS kernels only). */
  get wasm(): boolean {
    return !!this.e;
  }

  write(key: string, t: Tensor): void {
    const b = this.h.alloc(t.data.length, t.data instanceof Int32Array);
    this.h.view(b).set(t.data);
    const old = this.tensors.get(key);
    this.tensors.set(key, { b, shape: [...t.shape] });
    if (old && this.previous.get(key)?.b !== old.b) this.h.release(old.b);
  }

  async read(keys: readonly string[]): Promise<Record<string, Tensor>> {
    return this.values(keys);
  }

  /** `read`, at once. */
  values(keys: readonly string[]): Record<string, Tensor> {
    return Object.fromEntries(keys.map((k) => [k, this.copy(this.tensors.get(k)!)]));
  }

  async run(p: ProgramJSON, feeds: Record<string, Tensor>, read = p.outputs.map((o) => o.name)): Promise<Record<string, Tensor>> {
    const { h, e } = this;
    const { root, end, arg } = plan(p, this.kernels);
    const given: Record<string, Tensor | Stored> = {};
    for (const a of p.args) {
      const k = argKey(a);
      const t = feeds[k] ?? this.tensors.get(k);
      if (t) given[k] = t;
    }
    const syms = bindSymbols(p, given);
    const shapes = nodeShapes(p, syms);
    const vals: Value[] = [];
    /** Blocks this run allocated, by root node, until dead or kept. */
    const owned = new Set<number>();
    const view = (v: Value) => (isBlock(v) ? h.view(v) : v);
    p.nodes.forEach((n, i) => {
      const shape = shapes[i];
      const a = arg[i];
      if (a) {
        const t = given[argKey(a)];
        vals[i] = 'b' in t ? t.b : n.dtype === 'f32' && !(t.data instanceof Float32Array) ? new Float32Array(t.data) : t.data;
      } else if (n.op === 'const') vals[i] = constData(n, numel(shape), Float32Array);
      else if (root[i] !== i) vals[i] = vals[root[i]];
      else {
        const drivers = (this.kernels as WasmParts).wasmOps ?? {};
        const wk = e && n.dtype === 'f32' ? drivers[n.op] : undefined;
        if (wk && (!wk.ok || wk.ok(n.attrs, n.inputs.map((j) => shapes[j]), shape, e!))) {
          const temps: Block[] = [];
          const ins = n.inputs.map((j) => {
            const v = vals[j];
            if (isBlock(v)) return v;
            const b = h.alloc(v.length, v instanceof Int32Array);
            h.view(b).set(v);
            temps.push(b);
            return b;
          });
          const out = h.alloc(numel(shape));
          wk.run(h, e!, ins, n.inputs.map((j) => shapes[j]), out, shape, n.attrs, drivers);
          temps.forEach((b) => h.release(b));
          vals[i] = out;
          owned.add(i);
        } else {
          const kernel = this.kernels[n.op];
          if (typeof kernel !== 'function') throw new Error(`no CPU kernel for op '${n.op}'`);
          const ins = n.inputs.map((j) => ({ data: view(vals[j]), shape: shapes[j] }));
          // results go to the memory too while it has room (growing it would detach `ins`)
          const made = new Map<number, Block>();
          const alloc = (size: number, int: boolean): TypedArray => {
            const b = h.tryAlloc(size, int, false);
            if (!b) return int ? new Int32Array(size) : new Float32Array(size);
            made.set(b.off, b);
            return h.view(b).fill(0);
          };
          const v = kernel(ins, n.attrs, { shape, dtype: n.dtype }, { float: Float32Array, syms, alloc, kernels: this.kernels });
          const mine = v.buffer === h.memory.buffer ? made.get(v.byteOffset) : undefined;
          for (const b of made.values()) if (b !== mine) h.release(b);
          if (mine) owned.add(i);
          // a kernel that hands back an input's view: copy it, its block may be reused
          vals[i] = mine ?? (v.buffer === h.memory.buffer ? v.slice() : v);
        }
      }
      for (const j of new Set(n.inputs)) {
        const r = root[j];
        if (end[r] === i && owned.delete(r)) h.release(vals[r] as Block);
      }
    });

    const out: Record<string, Tensor> = {};
    for (const o of p.outputs) if (read.includes(o.name)) out[o.name] = { data: view(vals[o.node]).slice(), shape: shapes[o.node] };
    const next = new Map<string, Stored>();
    for (const u of p.updates) {
      const r = root[u.node], v = vals[r];
      let b: Block;
      if (isBlock(v) && owned.delete(r)) b = v;
      else {
        b = h.alloc(numel(shapes[r]), n32(v));
        h.view(b).set(view(v));
      }
      next.set(argKey(u), { b, shape: shapes[u.node] });
    }
    for (const r of owned) h.release(vals[r] as Block);
    // the blocks of the step before last are free now, unless still in use
    const live = new Set([...this.tensors.values(), ...next.values()].map((s) => s.b.off));
    for (const s of this.previous.values()) if (!live.has(s.b.off)) h.release(s.b);
    this.previous = new Map([...next.keys()].flatMap((k) => (this.tensors.has(k) ? [[k, this.tensors.get(k)!]] : [])));
    for (const [k, s] of next) this.tensors.set(k, s);
    return out;
  }

  rollback(): void {
    for (const [k, s] of this.previous) {
      const cur = this.tensors.get(k);
      if (cur && cur.b.off !== s.b.off) this.h.release(cur.b);
      this.tensors.set(k, s);
    }
    this.previous.clear();
  }

  dispose(): void {
    this.tensors.clear();
    this.previous.clear();
    (this.e as { close?(): void } | undefined)?.close?.(); // the worker threads, if any
  }

  private copy(s: Stored): Tensor {
    return { data: this.h.view(s.b).slice(), shape: [...s.shape] };
  }
}

const n32 = (v: Value): boolean => (isBlock(v) ? v.int : v instanceof Int32Array);
