// The WebGPU executor. It owns named persistent tensors (inputs, parameters, state, slots: keyed by
// `argKey`) that stay on the GPU between runs, and runs programs against them: one command
// encoder, one compute pass and one submit per run, then each update not computed in its tensor's
// own buffer (`into`: codegen/merge.ts inPlace) is copied into it.
//
// Caches: pipelines by kernel name; per program and concrete shape a plan (node outputs in the
// buffers runtime/memory.ts assigns, const nodes uploaded, meta uniforms written and bind groups
// made once). Replacing a persistent buffer (a tensor grown past its capacity) drops every plan.
//
// Runs must be awaited one after another. An update whose value is another updated argument's
// buffer (a swap) is not supported. The values a run's updates overwrite are copied aside before
// its pass, so the last run can be rolled back (the NaN guard does).

import type { Tensor } from '../compiler/ops/types.ts';
import { WORKGROUP, binds, hyperSlots, type DType, type Grid, type NodeJSON, type ProgramJSON } from './program.ts';
import { constData } from './cpu.ts';
import { argKey, bindSymbols, nodeShapes, numel, resolveShape, type Syms } from './shapes.ts';
import { isAlias, planMemory } from './memory.ts';
import { inNode } from './bytes.ts';

// GPUBufferUsage / GPUMapMode / GPUShaderStage values, fixed by the spec (the globals may be
// missing in Node).
const MAP_READ = 1, COPY_SRC = 4, COPY_DST = 8, UNIFORM = 64, STORAGE = 128;
const MAX_GROUPS = 65535;

interface Stored {
  buffer: GPUBuffer;
  shape: number[];
  dtype: DType;
}

interface Plan {
  /** Buffers the plan made (node outputs, consts, meta, staging): destroyed with it. */
  owned: GPUBuffer[];
  /** Each node's buffer: one of the plan's, its argument's persistent one, or its input's (aliases). */
  bufs: GPUBuffer[];
  shapes: number[][];
  dispatches: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; groups: [number, number] }[];
  /** Room for every output, at byte offsets `outOffsets`. */
  staging: GPUBuffer;
  outOffsets: number[];
  /** The hyper uniform, and where each scalar hyperparameter's tensor is copied into it. */
  hypers?: GPUBuffer;
  hyperCopies: { from: GPUBuffer; offset: number }[];
}

/** dlc's device promises pending, and the global setImmediate `calmly` put aside meanwhile. */
let pending = 0;
let immediate: unknown;

/**
 * Starts a device promise and awaits it. While any promise of a device is pending, dawn.node ticks
 * the device in a loop of setImmediate calls, looked up on the global object each time: the event
 * loop never idles, and on SwiftShader that takes a core from the kernels and from the pipeline
 * compiles (with two cores, LeNet-5's training step took 229 ms instead of 92, its pipelines 0.75 s
 * instead of 0.5). So in Node, while dlc waits, setImmediate is a 1 ms timer. (Browsers keep no
 * such loop.)
 */
export async function calmly<T>(start: () => Promise<T>): Promise<T> {
  const g = globalThis as { setImmediate?: unknown };
  if (inNode && !pending++) [immediate, g.setImmediate] = [g.setImmediate, (f: () => void, ...a: unknown[]) => setTimeout(f, 1, ...a)];
  try {
    return await start();
  } finally {
    if (inNode && !--pending) g.setImmediate = immediate;
  }
}

const bytes = (shape: readonly number[]): number => numel(shape) * 4;

/** Workgroups for `grid` over an output of `shape`. */
function groupCount(grid: Grid, shape: readonly number[]): number {
  const r = shape.length;
  const threads =
    grid.kind === 'elements'
      ? numel(shape)
      : numel(shape.slice(0, -2)) * Math.ceil((r >= 2 ? shape[r - 2] : 1) / grid.rows) * Math.ceil((r >= 1 ? shape[r - 1] : 1) / grid.cols);
  return Math.ceil(threads / WORKGROUP);
}

/** `groups` workgroups as a dispatch's size: past 65535, a second dimension. */
const spread = (groups: number): [number, number] => (groups > MAX_GROUPS ? [MAX_GROUPS, Math.ceil(groups / MAX_GROUPS)] : [groups, 1]);

/** Workgroups for `grid` over an output of `shape`, as a dispatch's size. */
export const workgroups = (grid: Grid, shape: readonly number[]): [number, number] => spread(groupCount(grid, shape));

/** A device with the adapter's storage limits (dlc's kernels may bind up to eight buffers), and its
 *  subgroups where it has them (kernel variants: runtime/variants.ts). */
export function requestDevice(adapter: GPUAdapter): Promise<GPUDevice> {
  const l = adapter.limits;
  return adapter.requestDevice({
    requiredFeatures: adapter.features.has('subgroups') ? ['subgroups' as GPUFeatureName] : [],
    requiredLimits: {
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
    },
  });
}

export class WebGPUExecutor {
  private readonly tensors = new Map<string, Stored>();
  private readonly pipelines = new Map<string, Promise<GPUComputePipeline>>();
  private readonly programs = new Map<ProgramJSON, { pipelines: Promise<GPUComputePipeline[]>; plans: Map<string, Plan> }>();

  /** Before each update overwrites a persistent tensor, its old value is copied here. */
  private readonly backups = new Map<string, GPUBuffer>();
  private undo: { from: GPUBuffer; to: GPUBuffer; size: number }[] = [];

  constructor(readonly device: GPUDevice) {}

  private backup(key: string, size: number): GPUBuffer {
    let b = this.backups.get(key);
    if (!b || b.size < size) {
      b?.destroy();
      b = this.buffer(`dlc:backup:${key}`, size, COPY_SRC | COPY_DST);
      this.backups.set(key, b);
    }
    return b;
  }

  /** Creates or overwrites the persistent tensor `key`. Float64 data is stored as f32. The data
   *  fits its shape and dtype: Model checks what an app passes (toTensor, restore) before. */
  write(key: string, t: Tensor, dtype: DType = t.data instanceof Int32Array ? 'i32' : 'f32'): void {
    const s = this.store(key, t.shape, dtype);
    const data = t.data instanceof Float64Array ? new Float32Array(t.data) : t.data;
    this.upload(s.buffer, data);
  }

  /** Reads persistent tensors back (one staging buffer, one map). */
  async read(keys: readonly string[]): Promise<Record<string, Tensor>> {
    const list = keys.map((k) => {
      const s = this.tensors.get(k);
      if (!s) throw new Error(`no tensor '${k}'`);
      return s;
    });
    const offsets = offsetsOf(list.map((s) => s.shape));
    const staging = this.buffer('dlc:read', offsets[list.length], MAP_READ | COPY_DST);
    const enc = this.device.createCommandEncoder({ label: 'dlc:read' });
    list.forEach((s, i) => copy(enc, s.buffer, staging, offsets[i], bytes(s.shape)));
    this.device.queue.submit([enc.finish()]);
    try {
      const data = await mapped(staging);
      return Object.fromEntries(keys.map((k, i) => [k, tensorAt(data, offsets[i], list[i])]));
    } finally {
      staging.destroy();
    }
  }

  /**
   * Writes `feeds` (keyed by `argKey`), runs `p` on the persistent tensors, applies its updates and
   * reads back the outputs named in `read` (all by default; none skips the wait).
   */
  async run(p: ProgramJSON, feeds: Readonly<Record<string, Tensor>> = {}, read: readonly string[] = p.outputs.map((o) => o.name)): Promise<Record<string, Tensor>> {
    const wanted = read.map((name) => {
      const i = p.outputs.findIndex((o) => o.name === name);
      if (i < 0) throw new Error(`no output '${name}'`);
      return i;
    });
    const dtypeOf = new Map(p.args.map((a) => [argKey(a), p.nodes[a.node].dtype]));
    for (const [k, t] of Object.entries(feeds)) this.write(k, t, dtypeOf.get(k));
    for (const a of p.args) {
      const s = this.tensors.get(argKey(a));
      if (s && (s.dtype === 'f32') !== (p.nodes[a.node].dtype === 'f32')) throw new Error(`${a.role} '${a.name}' is ${s.dtype}, expects ${p.nodes[a.node].dtype}`);
    }
    const syms = bindSymbols(p, Object.fromEntries(this.tensors));
    for (const u of p.updates) this.store(argKey(u), resolveShape(p.nodes[u.node].shape, syms), p.nodes[u.node].dtype);
    const plan = await this.plan(p, syms);

    const enc = this.device.createCommandEncoder({ label: 'dlc:run' });
    for (const c of plan.hyperCopies) enc.copyBufferToBuffer(c.from, 0, plan.hypers!, c.offset, 4);
    // the values the updates overwrite, kept before the pass (some are updated in place)
    this.undo = p.updates.map((u) => {
      const to = this.tensors.get(argKey(u))!.buffer;
      const [from, size] = [this.backup(argKey(u), to.size), bytes(plan.shapes[u.node])];
      copy(enc, to, from, 0, size);
      return { from, to, size };
    });
    const pass = enc.beginComputePass();
    for (const d of plan.dispatches) {
      pass.setPipeline(d.pipeline);
      pass.setBindGroup(0, d.bindGroup);
      pass.dispatchWorkgroups(...d.groups);
    }
    pass.end();
    for (const i of wanted) copy(enc, plan.bufs[p.outputs[i].node], plan.staging, plan.outOffsets[i], bytes(plan.shapes[p.outputs[i].node]));
    p.updates.forEach((u, k) => {
      const { to, size } = this.undo[k];
      if (plan.bufs[u.node] !== to) copy(enc, plan.bufs[u.node], to, 0, size);
    });
    this.device.queue.submit([enc.finish()]);
    if (!wanted.length) return {};
    const data = await mapped(plan.staging);
    return Object.fromEntries(
      wanted.map((i) => {
        const n = p.outputs[i].node;
        return [p.outputs[i].name, tensorAt(data, plan.outOffsets[i], { shape: plan.shapes[n], dtype: p.nodes[n].dtype })];
      }),
    );
  }

  /** Puts back the values the last run's updates overwrote. */
  rollback(): void {
    const enc = this.device.createCommandEncoder({ label: 'dlc:rollback' });
    for (const u of this.undo) copy(enc, u.from, u.to, 0, u.size);
    this.device.queue.submit([enc.finish()]);
    this.undo = [];
  }

  /** Destroys every buffer this executor made. */
  dispose(): void {
    for (const b of this.backups.values()) b.destroy();
    this.backups.clear();
    this.dropPlans();
    for (const s of this.tensors.values()) s.buffer.destroy();
    this.tensors.clear();
  }

  private upload(buffer: GPUBuffer, data: ArrayBufferView): void {
    if (data.byteLength) this.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  }

  private buffer(label: string, size: number, usage: number): GPUBuffer {
    return this.device.createBuffer({ label, size: Math.max(4, Math.ceil(size / 4) * 4), usage });
  }

  /** The persistent tensor `key` with room for `shape`; a new buffer drops every plan. */
  private store(key: string, shape: readonly number[], dtype: DType): Stored {
    let s = this.tensors.get(key);
    if (!s || s.buffer.size < bytes(shape)) {
      s?.buffer.destroy();
      this.dropPlans();
      s = { buffer: this.buffer(`dlc:${key}`, bytes(shape), STORAGE | COPY_SRC | COPY_DST), shape: [], dtype };
      this.tensors.set(key, s);
    }
    s.shape = [...shape];
    s.dtype = dtype;
    return s;
  }

  private dropPlans(): void {
    for (const prog of this.programs.values()) for (const plan of prog.plans.values()) for (const b of plan.owned) b.destroy();
    this.programs.clear();
  }

  /** Starts creating `p`'s pipelines (asynchronously; each at most once); resolves when all are made. */
  prepare(p: ProgramJSON): Promise<GPUComputePipeline[]> {
    let prog = this.programs.get(p);
    if (!prog) {
      prog = { pipelines: calmly(() => Promise.all(p.kernels.map((k) => this.pipeline(k.name, k.wgsl)))), plans: new Map() };
      this.programs.set(p, prog);
    }
    return prog.pipelines;
  }

  private async plan(p: ProgramJSON, syms: Syms): Promise<Plan> {
    const pipelines = await this.prepare(p);
    const prog = this.programs.get(p)!;
    const key = p.symbols.map((s) => syms[s]).join(',');
    let plan = prog.plans.get(key);
    if (!plan) {
      this.device.pushErrorScope('validation');
      plan = this.makePlan(p, pipelines, syms);
      const err = await calmly(() => this.device.popErrorScope());
      if (err) {
        for (const b of plan.owned) b.destroy();
        throw new Error(`WebGPU plan: ${err.message}`);
      }
      prog.plans.set(key, plan);
    }
    return plan;
  }

  /** Every binding a kernel declares it uses (codegen/wgsl.ts), so the layout is the shader's. */
  private pipeline(name: string, code: string): Promise<GPUComputePipeline> {
    let pl = this.pipelines.get(name);
    if (!pl) {
      const module = this.device.createShaderModule({ label: name, code });
      pl = this.device.createComputePipelineAsync({ label: name, layout: 'auto', compute: { module, entryPoint: 'main' } });
      this.pipelines.set(name, pl);
    }
    return pl;
  }

  private makePlan(p: ProgramJSON, pipelines: GPUComputePipeline[], syms: Syms): Plan {
    const shapes = nodeShapes(p, syms);
    const owned: GPUBuffer[] = [];
    const own = (label: string, size: number, usage: number) => {
      const b = this.buffer(label, size, usage);
      owned.push(b);
      return b;
    };
    const argOf = new Map(p.args.map((a) => [a.node, argKey(a)]));
    const memory = planMemory(p, shapes);
    const pool = memory.sizes.map((size, b) => own(`dlc:buffer${b}`, size, STORAGE | COPY_SRC | COPY_DST));
    const bufs: GPUBuffer[] = [];
    const home = (j: number): number => (isAlias(p.nodes[j]) ? home(p.nodes[j].inputs[0]) : j);
    const dispatches: Plan['dispatches'] = [];
    // the scalar hyperparameters, copied into one uniform before each run
    const slots = hyperSlots(p);
    const hypers = slots.length ? own('dlc:hypers', Math.ceil(slots.length / 4) * 16, UNIFORM | COPY_DST) : undefined;
    const hyperCopies = slots.map((j, s) => ({ from: this.tensors.get(argOf.get(j)!)!.buffer, offset: 4 * s }));
    p.nodes.forEach((n, i) => {
      const shape = shapes[i];
      const arg = argOf.get(i);
      if (arg) return (bufs[i] = this.tensors.get(arg)!.buffer);
      if (n.by !== undefined) return; // its dispatcher stores it, if anything reads it outside
      if (n.kernel === undefined && n.op !== 'const') {
        // An alias (reshape): the input's buffer read with a new shape (found below: a merged
        // kernel may place its input's buffer later).
        if (n.inputs.length !== 1 || numel(shapes[n.inputs[0]]) !== numel(shape)) throw new Error(`node ${i} (${n.op}) has no kernel`);
        return;
      }
      const writes = n.writes ?? [];
      for (const w of [i, ...writes]) bufs[w] = p.nodes[w].into === undefined ? pool[memory.buffer[w]] : bufs[p.nodes[w].into!];
      if (n.kernel === undefined) return this.upload(bufs[i], constData(n, numel(shape), Float32Array));
      const k = p.kernels[n.kernel];
      // a kernel's meta words: its element count and the dims of its output and inputs; with a
      // kernel beside it, that one's words first and the count of its workgroups last
      const words = (x: NodeJSON) => [numel(shapes[x.id]), ...shapes[x.id], ...(x.reads ?? x.inputs).flatMap((j) => shapes[j]), ...p.symbols.map((s) => syms[s])];
      const first = n.beside === undefined ? 0 : groupCount(k.first!, shapes[n.beside]);
      const groups = first + groupCount(k.grid, shape);
      if (!groups) return;
      const meta = n.beside === undefined ? words(n) : [...words(p.nodes[n.beside]), ...words(n), first];
      const data = new Uint32Array(Math.ceil(meta.length / 4) * 4);
      data.set(meta);
      const uniform = own(`dlc:meta#${i}`, data.byteLength, UNIFORM | COPY_DST);
      this.upload(uniform, data);
      // (an update in place is written through its argument's binding)
      const outs = [i, ...writes].filter((j) => p.nodes[j].into === undefined);
      const entries = [...[...binds(n, p.nodes[n.beside ?? -1]), ...outs].map((j) => bufs[home(j)]), uniform, ...(k.hypers ? [hypers!] : [])].map((buffer, binding) => ({ binding, resource: { buffer } }));
      const bindGroup = this.device.createBindGroup({ label: `dlc:${n.op}#${i}`, layout: pipelines[n.kernel].getBindGroupLayout(0), entries });
      dispatches.push({ pipeline: pipelines[n.kernel], bindGroup, groups: spread(groups) });
    });
    p.nodes.forEach((_, i) => (bufs[i] = bufs[home(i)]));
    const outOffsets = offsetsOf(p.outputs.map((o) => shapes[o.node]));
    const staging = own('dlc:staging', outOffsets[p.outputs.length], MAP_READ | COPY_DST);
    return { owned, bufs, shapes, dispatches, staging, outOffsets, hypers, hyperCopies };
  }
}

/** Byte offsets of tensors of `shapes` packed one after another, and the total at the end. */
function offsetsOf(shapes: readonly number[][]): number[] {
  const offsets = [0];
  for (const s of shapes) offsets.push(offsets[offsets.length - 1] + bytes(s));
  return offsets;
}

function copy(enc: GPUCommandEncoder, src: GPUBuffer, dst: GPUBuffer, offset: number, size: number): void {
  if (size) enc.copyBufferToBuffer(src, 0, dst, offset, size);
}

/** A copy of the staging buffer's bytes; the buffer is unmapped again. */
async function mapped(staging: GPUBuffer): Promise<ArrayBuffer> {
  await calmly(() => staging.mapAsync(MAP_READ));
  const data = staging.getMappedRange().slice(0);
  staging.unmap();
  return data;
}

function tensorAt(data: ArrayBuffer, offset: number, t: { shape: number[]; dtype: DType }): Tensor {
  const part = data.slice(offset, offset + bytes(t.shape));
  return { data: t.dtype === 'f32' ? new Float32Array(part) : new Int32Array(part), shape: [...t.shape] };
}
