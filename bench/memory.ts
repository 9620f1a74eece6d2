/**
 * How much memory an engine takes on the host, for the bench's peak-memory row (GPU buffers are
 * counted in peers/node_webgpu.ts). Each engine runs in a process of its own, so whatever grows
 * between "before the engine was created" and "after its last call" is the engine's.
 *
 * - wasm: every WebAssembly.Memory the process makes or an instance exports is remembered;
 *   `wasmBytes()` sums their byteLength. A wasm memory never shrinks, so at the end of a run that
 *   is the peak of what the engine's wasm allocator ever needed (plus its free lists).
 * - heap: V8 heap plus ArrayBuffer bytes (typed arrays live outside the heap; wasm memories are
 *   counted in neither), sampled by the caller after every call, so garbage not yet collected
 *   is included.
 */

const memories = new Set<WebAssembly.Memory>();

function remember(exports: WebAssembly.Exports): void {
  for (const v of Object.values(exports)) if (v instanceof WebAssembly.Memory) memories.add(v);
}

let tracking = false;

/** Start remembering wasm memories: call before any engine module instantiates one. */
export function trackWasmMemory(): void {
  if (tracking) return;
  tracking = true;
  const W = WebAssembly as unknown as Record<string, unknown>;
  const Memory = WebAssembly.Memory;
  W.Memory = new Proxy(Memory, {
    construct(target, args, newTarget) {
      const m = Reflect.construct(target, args, newTarget === W.Memory ? target : newTarget) as WebAssembly.Memory;
      memories.add(m);
      return m;
    },
  });
  const Instance = WebAssembly.Instance;
  W.Instance = new Proxy(Instance, {
    construct(target, args, newTarget) {
      const i = Reflect.construct(target, args, newTarget === W.Instance ? target : newTarget) as WebAssembly.Instance;
      remember(i.exports);
      return i;
    },
  });
  // instantiate(bytes) resolves to { module, instance }, instantiate(module) to an instance.
  const seen = (r: unknown) => {
    const i = r instanceof WebAssembly.Instance ? r : (r as { instance?: WebAssembly.Instance }).instance;
    if (i) remember(i.exports);
    return r;
  };
  for (const k of ["instantiate", "instantiateStreaming"] as const) {
    const f = WebAssembly[k] as (...a: unknown[]) => Promise<unknown>;
    if (f) W[k] = (...a: unknown[]) => f.apply(WebAssembly, a).then(seen);
  }
}

export function wasmBytes(): number {
  let n = 0;
  for (const m of memories) n += m.buffer.byteLength;
  return n;
}

export function heapBytes(): number {
  const u = process.memoryUsage();
  return u.heapUsed + u.arrayBuffers;
}
