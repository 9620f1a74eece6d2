// The model an app holds: parameters, state and optimizer slots living on one backend (WebGPU or
// the CPU; a WebGPU model starts on the CPU while its pipelines compile), and the compiled programs
// run against them. The CLI and every bundle use this class.

import type { Tensor, TypedArray } from '../compiler/ops/types.ts';
import type { Manifest, ProgramJSON, TensorSpec } from './program.ts';
import { runCpu, type CpuKernels } from './cpu.ts';
import { CpuExecutor } from './wasm.ts';
import { argKey, numel } from './shapes.ts';
import type { Dataset } from './dataset.ts';
import { runEpochs, type EpochStats } from './train.ts';
import { WebGPUExecutor, requestDevice } from './webgpu.ts';
import { readBytes } from './bytes.ts';

export type Backend = 'webgpu' | 'cpu';

export interface ModelOptions {
  /** 'auto' (the default) uses WebGPU when a device or adapter is available, else the CPU. */
  backend?: 'auto' | Backend;
  /** A WebGPU device to use (in Node, from the `webgpu` package). */
  device?: GPUDevice;
  /** Seed of the initial parameters and of dropout; the manifest's `seed` by default. */
  seed?: number;
  /** Trained weights, as `save()` wrote them (or `dlc compile --checkpoint`): the bytes, or where to
   *  load them from (a URL, or in Node a file path); null: none, even in a bundle that has some. */
  weights?: ArrayBuffer | ArrayBufferView | URL | string | null;
  /** On WebGPU: until the training step's pipelines are compiled, run on the CPU, then move every
   *  tensor to the GPU before the next run (default true; see `runsOn`). */
  startOnCpu?: boolean;
  /** On the CPU: how many threads the wasm kernels may use, where the host allows worker threads
   *  and shared memory (Node, or a cross-origin isolated page); by default its cores if it has four
   *  or more, else one (runtime/threads.ts). */
  threads?: number;
}

export interface ModelFitOptions {
  /** Epochs to train (the train block's by default), counting on from the model's epoch. */
  epochs?: number;
  /** Examples per step (the train block's by default). */
  batch?: number;
  shuffle?: boolean;
  /** Examples evaluated after every epoch: `stats.val`. */
  val?: Feeds;
  /** After each epoch; awaited. */
  onEpoch?(stats: EpochStats): void | Promise<void>;
  /** After each step: its loss and metrics, the epoch, and the step's number in it (from 1). */
  onStep?(stats: Record<string, number> & { epoch: number; step: number; steps: number }): void;
  /** Cancels training: the step in flight finishes, the model keeps the updates made and stays
   *  usable, and fit rejects with the signal's reason (an AbortError unless given another). */
  signal?: AbortSignal;
}

/** A batch: typed arrays by input name (the shape is inferred) or tensors with explicit shapes. */
export type Feeds = Record<string, TypedArray | Tensor>;

/** A mistake in what the app passed: the message names the input and what was expected. */
export class DlcInputError extends Error {
  override name = 'DlcInputError';
}

/** Training produced a NaN or an infinity. The step was undone; `src` says where the first
 *  non-finite value was made. */
export class DlcNumericError extends Error {
  override name = 'DlcNumericError';
  constructor(
    message: string,
    readonly step: number,
    readonly op?: string,
    readonly src?: string,
  ) {
    super(message);
  }
}

/** Where the tensors live and how programs run there. */
interface Executor {
  write(key: string, t: Tensor): void;
  read(keys: readonly string[]): Promise<Record<string, Tensor>>;
  run(p: ProgramJSON, feeds: Record<string, Tensor>, read?: readonly string[]): Promise<Record<string, Tensor>>;
  /** Undo the updates of the last run. */
  rollback(): void;
  dispose(): void;
}

const MAGIC = 0x31434c44; // "DLC1"

export class Model {
  /** Updates taken so far; the optimizer's `t` is step + 1. */
  step = 0;
  /** Epochs completed, as the learning-rate schedule sees them (the training loop sets it). */
  epoch = 0;
  /** Run-time optimizer hyperparameters (lr, beta1, ...): change them at will. */
  readonly hypers: Record<string, number>;
  /** Run-time hyperparameters of the learning-rate schedule, if the model has one. */
  readonly schedule: Record<string, number>;
  private disposed = false;
  /** Whether the WebGPU training step's pipelines are compiled. */
  private compiled = false;

  private constructor(
    readonly manifest: Manifest,
    readonly backend: Backend,
    /** The backend's executor. */
    private readonly target: Executor,
    private readonly kernels: CpuKernels,
    readonly seed: number,
    /** Where a WebGPU model runs until its training pipelines are compiled (startOnCpu). */
    private first?: CpuExecutor,
  ) {
    this.hypers = { ...manifest.optimizer.hypers };
    this.schedule = { ...manifest.schedule?.hypers };
  }

  static async create(manifest: Manifest, kernels: CpuKernels, opts: ModelOptions = {}): Promise<Model> {
    const seed = opts.seed ?? manifest.train.seed;
    const device = opts.backend === 'cpu' ? undefined : (opts.device ?? (await defaultDevice()));
    if (opts.backend === 'webgpu' && !device) throw new Error('WebGPU was asked for, but no adapter is available');
    // the kernels' variants for this adapter, if it has any (runtime/variants.ts)
    const variants = (kernels as { variants?: (d: GPUDevice, m: Manifest) => Promise<Manifest> }).variants;
    if (device && variants) manifest = await variants(device, manifest);
    const gpu = device && new WebGPUExecutor(device);
    // The training step's pipelines start compiling now (errors show at the step's first run on the
    // GPU); evaluate's and predict's compile at their first runs.
    const compiled = gpu?.prepare(manifest.programs.train).catch(() => {});
    const cpu = !gpu || opts.startOnCpu !== false ? await CpuExecutor.create(kernels, manifest, gpu ? 1 : opts.threads) : undefined;
    const model = new Model(manifest, gpu ? 'webgpu' : 'cpu', (gpu ?? cpu)!, kernels, seed, gpu && cpu);
    compiled?.then(() => (model.compiled = true));
    // Initial values are computed on the CPU, so every backend starts from the same numbers.
    const init = runCpu(manifest.programs.init, kernels, { 'hyper:key': { data: new Int32Array([seed, 0]), shape: [2] } }, Float32Array);
    for (const [k, t] of Object.entries(init.updates)) model.exec.write(k, t);
    if (opts.weights != null) {
      try {
        model.restore(await loadBytes(opts.weights));
      } catch (e) {
        model.dispose();
        throw e;
      }
    }
    return model;
  }

  /** Where the next program runs: 'cpu' while a WebGPU model's training pipelines compile (`startOnCpu`). */
  get runsOn(): Backend {
    return this.first && !this.compiled ? 'cpu' : this.backend;
  }

  /** The executor of the next call. A WebGPU model that started on the CPU moves its parameters,
   *  state and slots to the GPU here, once the training step's pipelines are compiled (SwiftShader
   *  takes about half a second for LeNet-5's, as long as 20 of its steps on the CPU). */
  private get exec(): Executor {
    const cpu = this.first;
    if (cpu && this.compiled) {
      for (const [k, t] of Object.entries(cpu.values(this.saved().map((e) => e.key)))) this.target.write(k, t);
      cpu.dispose();
      this.first = undefined;
    }
    return this.first ?? this.target;
  }

  /** Trains on `data` (arrays by input name, the first dim the example) in shuffled batches; resolves
   *  with each epoch's stats when the epochs are done. See ModelFitOptions.signal for cancelling. */
  async fit(data: Feeds, opts: ModelFitOptions = {}): Promise<{ history: EpochStats[] }> {
    const t = this.manifest.train;
    const history: EpochStats[] = [];
    const train = this.dataset(data);
    const loop = {
      epochs: this.epoch + (opts.epochs ?? t.epochs),
      batch: opts.batch ?? t.batch,
      shuffle: opts.shuffle ?? t.shuffle,
      seed: this.seed,
      val: opts.val && this.dataset(opts.val),
      signal: opts.signal,
      onBatch: (step: number, steps: number, s: Record<string, number>) => opts.onStep?.({ ...s, epoch: this.epoch + 1, step, steps }),
    };
    await runEpochs(this, train, loop, this.epoch, async (s) => {
      history.push(s);
      await opts.onEpoch?.(s);
      return false;
    });
    return { history };
  }

  /** `data` checked as the training program's inputs, with one example count. */
  private dataset(data: Feeds): Dataset {
    const columns = this.feeds(data, this.manifest.programs.train);
    const sizes = Object.entries(columns).map(([k, t]) => [k.slice(6), t.shape[0]] as const);
    const [first, other] = [sizes[0], sizes.find((s) => s[1] !== sizes[0][1])];
    if (other) throw new DlcInputError(`input '${first[0]}' has ${first[1]} examples but input '${other[0]}' has ${other[1]}`);
    return { size: first?.[1] ?? 0, columns: Object.fromEntries(Object.entries(columns).map(([k, t]) => [k.slice(6), t])) };
  }

  /** One optimizer update on `batch`; returns the loss and the model's metrics on it. A step whose
   *  loss is not finite is undone and throws a DlcNumericError naming where it went wrong. */
  async trainStep(batch: Feeds): Promise<Record<string, number>> {
    const p = this.manifest.programs.train;
    const feeds = { ...this.feeds(batch, p), ...this.stepHypers(this.step + 1) };
    const exec = this.exec; // the step is undone where it ran
    const out = scalars(await exec.run(p, feeds));
    if (!Number.isFinite(out.loss)) {
      exec.rollback();
      throw await this.diagnose(p, feeds, out.loss);
    }
    this.step++;
    return out;
  }

  /** Replays the step on the CPU, value by value, to find the first non-finite one. */
  private async diagnose(p: ProgramJSON, feeds: Record<string, Tensor>, loss: number): Promise<DlcNumericError> {
    const stored = await this.exec.read(p.args.map(argKey).filter((k) => !(k in feeds)));
    // A value the previous update left non-finite: that update is where it went wrong.
    for (const u of p.updates) {
      const t = stored[argKey(u)];
      if (!t || t.data.every(Number.isFinite)) continue;
      const n = p.nodes[u.node];
      return new DlcNumericError(
        `the update of step ${this.step} made ${u.role} '${u.name}' non-finite: '${n.op}'${n.src ? ` made at ${n.src}` : ''}`,
        this.step,
        n.op,
        n.src,
      );
    }
    const step = this.step + 1;
    const found = { node: -1 };
    try {
      runCpu(p, this.kernels, { ...stored, ...feeds }, Float32Array, (i, v) => {
        if (v instanceof Int32Array || v.every(Number.isFinite)) return;
        found.node = i;
        throw found;
      });
    } catch (e) {
      if (e !== found) throw e;
    }
    const first = found.node;
    if (first < 0) return new DlcNumericError(`the loss became ${loss} at step ${step} on ${this.backend}, but a CPU replay of the step stayed finite`, step);
    const n = p.nodes[first];
    const where = n.src ? ` made at ${n.src}` : '';
    return new DlcNumericError(`the loss became ${loss} at step ${step}: the first non-finite value is the output of '${n.op}'${where}`, step, n.op, n.src);
  }

  /** Loss and metrics on `batch` with the inference graph; nothing is updated. */
  async evaluate(batch: Feeds): Promise<Record<string, number>> {
    const p = this.manifest.programs.evaluate;
    return scalars(await this.exec.run(p, this.feeds(batch, p)));
  }

  /** Loss and the gradient of every trainable parameter on `batch`, nothing updated. Needs a
   *  manifest compiled with the gradient program (gradient checks, L-BFGS). */
  async gradient(batch: Feeds): Promise<{ loss: number; grads: Record<string, Tensor> }> {
    const p = this.manifest.programs.gradient;
    if (!p) throw new Error(`model '${this.manifest.model}' was compiled without its gradient program`);
    const out = await this.exec.run(p, { ...this.feeds(batch, p), ...this.stepHypers(this.step + 1) });
    const grads: Record<string, Tensor> = {};
    for (const [k, t] of Object.entries(out)) if (k.startsWith('grad:')) grads[k.slice(5)] = t;
    return { loss: out.loss.data[0], grads };
  }

  /** The model's outputs for `inputs`, any batch size. */
  async predict(inputs: Feeds): Promise<Record<string, Tensor>> {
    const p = this.manifest.programs.predict;
    return this.exec.run(p, this.feeds(inputs, p));
  }

  /** Parameters by name (copies). */
  async getParams(): Promise<Record<string, Tensor>> {
    this.live();
    const keys = this.manifest.params.map((p) => `param:${p.name}`);
    const t = await this.exec.read(keys);
    return Object.fromEntries(this.manifest.params.map((p, i) => [p.name, copy(t[keys[i]])]));
  }

  /** Replace parameters by name (all or some), e.g. imported weights. */
  setParams(byName: Record<string, TypedArray | Tensor>): void {
    this.live();
    const specs = new Map(this.manifest.params.map((p) => [p.name, p]));
    const checked = Object.entries(byName).map(([name, v]) => {
      const spec = specs.get(name);
      if (!spec) throw new DlcInputError(`no parameter '${name}'; the parameters are ${[...specs.keys()].join(', ')}`);
      return [name, toTensor(spec, v)] as const;
    });
    for (const [name, t] of checked) this.exec.write(`param:${name}`, t);
  }

  /** Parameters, state, optimizer slots and the step, as bytes. `extra` is kept alongside. */
  async save(extra: Record<string, unknown> = {}): Promise<Uint8Array> {
    this.live();
    const entries = this.saved();
    const values = await this.exec.read(entries.map((e) => e.key));
    let offset = 0;
    const index = entries.map((e) => {
      const t = values[e.key];
      const item = { key: e.key, dtype: e.spec.dtype, shape: t.shape, offset };
      offset += t.data.length * 4;
      return item;
    });
    const header = new TextEncoder().encode(
      JSON.stringify({ model: this.manifest.model, step: this.step, epoch: this.epoch, seed: this.seed, hypers: this.hypers, schedule: this.schedule, tensors: index, extra }),
    );
    const bytes = new Uint8Array(12 + header.length + offset);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, MAGIC, true);
    view.setUint32(4, header.length, true);
    bytes.set(header, 12);
    const body = 12 + header.length;
    index.forEach((e) => {
      const t = values[e.key].data;
      const data = t instanceof Float64Array ? new Float32Array(t) : t;
      bytes.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), body + e.offset);
    });
    view.setUint32(8, checksum(bytes.subarray(12)), true);
    return bytes;
  }

  /** Load what `save` wrote. Everything is checked before anything changes. Returns `extra`. */
  restore(bytes: Uint8Array): Record<string, unknown> {
    this.live();
    const fail = (why: string): never => {
      throw new DlcInputError(`not a checkpoint of model '${this.manifest.model}': ${why}`);
    };
    if (bytes.length < 12) fail('too short');
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (view.getUint32(0, true) !== MAGIC) fail('bad magic number');
    const hlen = view.getUint32(4, true);
    if (12 + hlen > bytes.length) fail('truncated header');
    if (checksum(bytes.subarray(12)) !== view.getUint32(8, true)) fail('checksum mismatch (the file is damaged or truncated)');
    let header: {
      model: string;
      step: number;
      epoch?: number;
      hypers: Record<string, number>;
      schedule?: Record<string, number>;
      tensors: { key: string; dtype: string; shape: number[]; offset: number }[];
      extra: Record<string, unknown>;
    };
    try {
      header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen)));
    } catch {
      return fail('unreadable header');
    }
    const body = bytes.subarray(12 + hlen);
    if (header.model !== this.manifest.model) fail(`it belongs to model '${header.model}'`);
    const byKey = new Map(header.tensors.map((t) => [t.key, t]));
    const loaded = this.saved().map(({ key, spec }) => {
      const t = byKey.get(key);
      if (!t) return fail(`it has no '${key}'`);
      if (t.shape.join() !== spec.shape.join() || t.dtype !== spec.dtype) fail(`'${key}' is ${t.dtype}[${t.shape}], expected ${spec.dtype}[${spec.shape}]`);
      const n = numel(t.shape);
      if (t.offset + n * 4 > body.length) fail(`'${key}' is truncated`);
      const raw = body.slice(t.offset, t.offset + n * 4).buffer;
      return [key, { data: spec.dtype === 'f32' ? new Float32Array(raw) : new Int32Array(raw), shape: t.shape }] as const;
    });
    for (const [key, t] of loaded) this.exec.write(key, t);
    this.step = header.step;
    this.epoch = header.epoch ?? 0;
    Object.assign(this.hypers, header.hypers);
    Object.assign(this.schedule, header.schedule);
    return header.extra ?? {};
  }

  /** Frees every buffer of the model; it cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.first?.dispose();
    this.target.dispose();
  }

  private saved(): { key: string; spec: TensorSpec }[] {
    const m = this.manifest;
    return [
      ...m.params.map((spec) => ({ key: `param:${spec.name}`, spec })),
      ...m.state.map((spec) => ({ key: `state:${spec.name}`, spec })),
      ...m.slots.map((spec) => ({ key: `slot:${spec.name}`, spec })),
    ];
  }

  private stepHypers(t: number): Record<string, Tensor> {
    const out: Record<string, Tensor> = {
      'hyper:t': { data: new Float32Array([t]), shape: [] },
      'hyper:key': { data: new Int32Array([this.seed, t]), shape: [2] },
    };
    for (const [k, v] of Object.entries(this.hypers)) out[`hyper:${k}`] = { data: new Float32Array([v]), shape: [] };
    if (this.manifest.programs.schedule) out['hyper:lr'] = { data: new Float32Array([this.learningRate()]), shape: [] };
    return out;
  }

  /** The learning rate the next step uses: the schedule's lr(lr0, epoch, step), or `hypers.lr`. */
  learningRate(): number {
    const schedule = this.manifest.programs.schedule;
    if (!schedule) return this.hypers.lr;
    const scalar = (v: number): Tensor => ({ data: new Float64Array([v]), shape: [] });
    const feeds: Record<string, Tensor> = { 'hyper:lr0': scalar(this.hypers.lr), 'hyper:epoch': scalar(this.epoch), 'hyper:step': scalar(this.step) };
    for (const [k, v] of Object.entries(this.schedule)) feeds[`hyper:${k}`] = scalar(v);
    return runCpu(schedule, this.kernels, feeds, Float64Array).outputs.lr.data[0];
  }

  private live(): void {
    if (this.disposed) throw new Error(`this model ('${this.manifest.model}') has been disposed`);
  }

  /** The program's data inputs from `batch`, checked against the manifest. */
  private feeds(batch: Feeds, p: ProgramJSON): Record<string, Tensor> {
    this.live();
    const out: Record<string, Tensor> = {};
    const syms: Record<string, number> = {};
    for (const a of p.args) {
      if (a.role !== 'input') continue;
      const spec = this.manifest.inputs.find((i) => i.name === a.name)!;
      const v = batch[a.name];
      if (v === undefined) throw new DlcInputError(`missing input '${a.name}' (${typeOf(spec)})`);
      const t = (out[argKey(a)] = toTensor(spec, v));
      spec.shape.forEach((d, k) => {
        if (typeof d !== 'string') return;
        if (syms[d] !== undefined && syms[d] !== t.shape[k])
          throw new DlcInputError(`input '${a.name}' has ${d} = ${t.shape[k]}, but another input has ${d} = ${syms[d]}`);
        syms[d] = t.shape[k];
      });
    }
    return out;
  }
}

const typeOf = (spec: TensorSpec) => `${spec.dtype}[${spec.shape.join(', ')}]`;

/** Checks `v` against `spec` (dtype and every fixed dim); infers the one run-time dim of a flat array. */
function toTensor(spec: TensorSpec, v: TypedArray | Tensor): Tensor {
  const t: Tensor = ArrayBuffer.isView(v) ? { data: v, shape: inferShape(spec, v) } : v;
  const want = typeOf(spec);
  const isInt = t.data instanceof Int32Array;
  if (isInt !== (spec.dtype !== 'f32'))
    throw new DlcInputError(`input '${spec.name}' expects ${want} (${spec.dtype === 'f32' ? 'a Float32Array' : 'an Int32Array'}), got ${t.data.constructor.name} data`);
  const ok = t.shape.length === spec.shape.length && spec.shape.every((d, i) => typeof d === 'string' || d === t.shape[i]);
  if (!ok || numel(t.shape) !== t.data.length)
    throw new DlcInputError(`input '${spec.name}' expects shape ${want}, got [${t.shape.join(', ')}]${numel(t.shape) !== t.data.length ? ` with ${t.data.length} values` : ''}`);
  return t;
}

function inferShape(spec: TensorSpec, data: TypedArray): number[] {
  const fixed = spec.shape.reduce<number>((p, d) => (typeof d === 'number' ? p * d : p), 1);
  const free = spec.shape.filter((d) => typeof d === 'string').length;
  if (free > 1) throw new DlcInputError(`input '${spec.name}' has several run-time dims [${spec.shape.join(', ')}]; pass { data, shape }`);
  if (data.length % fixed !== 0 || (free === 0 && data.length !== fixed))
    throw new DlcInputError(`input '${spec.name}' expects ${typeOf(spec)}, got ${data.length} values (not a multiple of ${fixed})`);
  return spec.shape.map((d) => (typeof d === 'number' ? d : data.length / fixed));
}

function scalars(out: Record<string, Tensor>): Record<string, number> {
  return Object.fromEntries(Object.entries(out).map(([k, t]) => [k, t.data[0]]));
}

function copy(t: Tensor): Tensor {
  return { data: t.data.slice(), shape: [...t.shape] };
}

/** The bytes of `weights`: given, fetched, or (file: URLs and plain paths in Node) read from disk. */
async function loadBytes(w: NonNullable<ModelOptions['weights']>): Promise<Uint8Array> {
  if (w instanceof ArrayBuffer) return new Uint8Array(w);
  if (ArrayBuffer.isView(w)) return new Uint8Array(w.buffer, w.byteOffset, w.byteLength);
  const where = String(w);
  try {
    return await readBytes(where);
  } catch (e) {
    throw new DlcInputError(`cannot load the weights from ${where}: ${(e as Error).message}`);
  }
}

async function defaultDevice(): Promise<GPUDevice | undefined> {
  const adapter = await (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu?.requestAdapter();
  return adapter ? requestDevice(adapter) : undefined;
}

/** FNV-1a over the bytes, to tell a damaged checkpoint from a good one. */
function checksum(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h >>> 0;
}
