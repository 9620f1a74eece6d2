// Worker threads for the CPU executor's wasm kernels (runtime/wasm.ts), where the host allows them:
// Node, or a browser page that is cross-origin isolated (SharedArrayBuffer). The kernels then run
// on one shared memory; each worker instantiates the same module on it and sleeps on its control
// words until the calling thread hands it a band of a product. gemm, where a CPU step spends most
// of its time, is split so: the calling thread computes the first band of rows (or of columns,
// when those are more) and each ready worker one of the others, and the caller waits for them.
// Bands are whole panels, and each element's sum runs in the same order as on one thread, so the
// results are the same to the bit. A bundle carries this module beside model.js as threads.js,
// loaded by CPU models only.

import { FIRST, MR, NR, TILE, type Exports } from './wasm.ts';
import { inNode } from './bytes.ts';

/** The wasm module instantiated on a memory of its own. */
export type Instantiate = (bytes: BufferSource, env: Record<string, (...x: number[]) => number>) => Promise<{ memory: WebAssembly.Memory; exports: Exports }>;

/** `Instantiate` on one thread. */
export const alone: Instantiate = async (bytes, env) => {
  const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536 });
  return { memory, exports: (await WebAssembly.instantiate(bytes, { env: { ...env, memory } })).instance.exports as unknown as Exports };
};

/** Control words per worker: the job's number, the number of the last one done, ready, and the
 *  job's gemm arguments. */
export const SLOT = 16, READY = 2;
const SEQ = 0, DONE = 1, ARGS = 3;
/** gemm's edge-tile scratch of worker w (the caller's is TILE), then the control words. */
const tileOf = (w: number) => TILE + 128 * (w + 1);
const MAX_WORKERS = 7;
export const CONTROL = tileOf(MAX_WORKERS);
/** Products under this many multiply-adds run on the calling thread: a sleeping worker takes tens of
 *  µs to wake (~0.2 ms on a VM). */
const SMALL = 1 << 20;

/** The body of each worker, sent as source (so it names no constant of this module: its words are
 *  SLOT's, READY at 2, DONE at 1, the 8 ARGS from 3): instantiates the module on the shared memory,
 *  then runs the gemm bands it is handed until its job number turns negative. */
function work({ module, memory, slot }: { module: WebAssembly.Module; memory: WebAssembly.Memory; slot: number }): void {
  const env: Record<string, WebAssembly.ImportValue> = { memory };
  for (const i of WebAssembly.Module.imports(module)) if (i.kind === 'function') env[i.name] = Math[i.name as 'exp'];
  const gemm = new WebAssembly.Instance(module, { env }).exports.gemm as (...args: number[]) => void;
  const c = new Int32Array(memory.buffer);
  Atomics.store(c, slot + 2, 1);
  for (let seq = 0; ; ) {
    // (no spinning meanwhile: on a 2-core VM a spinning thread slowed the other's JavaScript 1.6×)
    Atomics.wait(c, slot, seq);
    seq = Atomics.load(c, slot);
    if (seq < 0) return;
    gemm(...c.subarray(slot + 3, slot + 11));
    Atomics.store(c, slot + 1, seq);
  }
}

/** The module's memory import marked shared (the flag byte of its limits), the rest unchanged. */
function sharedImport(wasm: BufferSource): Uint8Array<ArrayBuffer> {
  const b = ArrayBuffer.isView(wasm) ? new Uint8Array(wasm.buffer, wasm.byteOffset, wasm.byteLength).slice() : new Uint8Array(wasm.slice(0));
  let at = 8;
  const leb = () => {
    let v = 0;
    for (let s = 0; ; s += 7) {
      const x = b[at++];
      v |= (x & 127) << s;
      if (x < 128) return v;
    }
  };
  const skip = () => {
    const n = leb();
    at += n;
  };
  while (at < b.length) {
    const id = b[at++], size = leb(), end = at + size;
    if (id === 2)
      for (let n = leb(); n > 0; n--) {
        skip(); // module name
        skip(); // field name
        const kind = b[at++];
        if (kind === 2) {
          b[at] |= 2; // limits flags: has maximum (1), shared (2)
          return b;
        }
        if (kind === 0) leb();
        else throw new Error('threads: unexpected import kind ' + kind);
      }
    at = end;
  }
  throw new Error('threads: the module imports no memory');
}

/** How many threads to use by default: the host's cores where it has four or more (on a 2-core VM
 *  a second thread made the MNIST MLP's inference 1.5× faster but its training step 1.4× slower:
 *  waking a worker took ~0.2 ms, and two busy threads slowed each other); else one, as where
 *  workers or shared memory are missing. */
async function cores(): Promise<number> {
  const g = globalThis as { crossOriginIsolated?: boolean; navigator?: { hardwareConcurrency?: number } };
  // variable specifiers: bundlers for the browser leave them alone
  const os = 'node:os';
  const n = inNode
    ? ((await import(/* @vite-ignore */ os)) as typeof import('node:os')).availableParallelism()
    : g.crossOriginIsolated && typeof Worker === 'function'
      ? (g.navigator?.hardwareConcurrency ?? 1)
      : 1;
  return n >= 4 ? n : 1;
}

/** A worker running `work` on `data`; it does not keep Node running. */
async function spawn(data: { module: WebAssembly.Module; memory: WebAssembly.Memory; slot: number }): Promise<{ terminate(): unknown }> {
  if (typeof Worker === 'function') {
    const w = new Worker(URL.createObjectURL(new Blob([`onmessage=(m)=>(${work})(m.data)`], { type: 'text/javascript' })));
    w.postMessage(data);
    return w;
  }
  const threads = 'node:worker_threads';
  const { Worker: NodeWorker } = (await import(/* @vite-ignore */ threads)) as typeof import('node:worker_threads');
  const w = new NodeWorker(`(${work})(require('node:worker_threads').workerData)`, { eval: true, workerData: data });
  w.unref();
  w.on('error', () => {}); // a worker that fails never becomes ready: its bands run here
  return w;
}

/**
 * How runtime/wasm.ts instantiates the module with `threads` threads (by default `cores()`):
 * with more than one, on a shared memory, here and in `threads - 1` workers, the exports' gemm split
 * between them. Workers join as they become ready; until then gemm runs here alone. A host without
 * workers or shared memory gets one thread.
 */
export async function threaded(threads?: number): Promise<Instantiate> {
  const n = Math.min((threads ?? (await cores())) - 1, MAX_WORKERS);
  if (n < 1) return alone;
  return async (bytes, env) => {
    const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536, shared: true });
    const module = await WebAssembly.compile(sharedImport(bytes));
    const e = (await WebAssembly.instantiate(module, { env: { ...env, memory } })).exports as unknown as Exports;
    const c = new Int32Array(memory.buffer, 0, FIRST / 4);
    const slots = Array.from({ length: n }, (_, w) => CONTROL / 4 + SLOT * w);
    const workers = await Promise.all(slots.map((slot) => spawn({ module, memory, slot })));
    const seq = slots.map(() => 0);
    const gemm = (a: number, b: number, out: number, m: number, nn: number, k: number, ldc: number, tile: number): void => {
      const ready = slots.flatMap((s, w) => (Atomics.load(c, s + READY) ? [w] : []));
      if (!ready.length || m * nn * k < SMALL) return e.gemm(a, b, out, m, nn, k, ldc, tile);
      // bands of whole panels (MR rows of packed a, NR columns of packed b): of rows where each
      // thread gets two panels of them, else along the longer side
      const rows = m >= 8 * (ready.length + 1) || m >= nn, [len, q] = rows ? [m, MR] : [nn, NR];
      const band = Math.ceil(len / (ready.length + 1) / q) * q;
      const used: number[] = [];
      for (let i = 0; i < ready.length && (i + 1) * band < len; i++) {
        const w = ready[i], s = slots[w], from = (i + 1) * band, size = Math.min(band, len - from);
        c.set(rows ? [a + 4 * from * k, b, out + 4 * from * ldc, size, nn, k, ldc, tileOf(w)] : [a, b + 4 * from * k, out + 4 * from, m, size, k, ldc, tileOf(w)], s + ARGS);
        Atomics.store(c, s + SEQ, ++seq[w]);
        Atomics.notify(c, s + SEQ);
        used.push(w);
      }
      if (rows) e.gemm(a, b, out, Math.min(band, m), nn, k, ldc, tile);
      else e.gemm(a, b, out, m, Math.min(band, nn), k, ldc, tile);
      for (const w of used) while (Atomics.load(c, slots[w] + DONE) !== seq[w]);
    };
    const close = () => {
      for (const s of slots) {
        Atomics.store(c, s + SEQ, -1);
        Atomics.notify(c, s + SEQ);
      }
      for (const w of workers) w.terminate();
    };
    return { memory, exports: Object.assign({ ...e, gemm }, { close }) };
  };
}
