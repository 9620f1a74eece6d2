/**
 * Give Node a browser-like WebGPU entry point (`navigator.gpu` plus the
 * GPUBufferUsage / GPUMapMode / GPUShaderStage / ... globals) backed by Dawn
 * from the `webgpu` npm package, so that libraries written for the browser
 * (tfjs-backend-webgpu, jax-js) find an adapter.
 *
 * - Node 20 has no global `navigator`; Node >= 21 has one without `gpu`. Both
 *   cases are handled (on Node 20 a minimal {gpu, userAgent,
 *   hardwareConcurrency} object is installed); an existing `navigator.gpu` is
 *   reused. This is the only place the bench calls Dawn's `create()`: every
 *   WebGPU engine (dlc via `nodeGpuDevice()`, tfjs, jax-js) gets its adapter
 *   from this one GPU object, which `navigator` keeps referenced (Dawn shuts
 *   down if it is garbage-collected).
 * - On a machine without a GPU, point the Vulkan loader at SwiftShader:
 *   VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json. If the variable
 *   is unset and that file exists, it is set here before Dawn starts.
 * - Peak memory: every GPUBuffer any engine creates is counted here (see `gpuBytes`), since all
 *   devices come from this one Dawn instance.
 */

import { tmpdir } from "node:os";

import { requestDevice } from "../../runtime/webgpu.ts";

const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

let pending: Promise<GPU> | null = null;

export function ensureNodeWebGPU(): Promise<GPU> {
  pending ??= setup();
  return pending;
}

async function setup(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;

  if (!process.env.VK_ICD_FILENAMES) {
    const { existsSync } = await import("node:fs");
    if (existsSync(SWIFTSHADER_ICD)) process.env.VK_ICD_FILENAMES = SWIFTSHADER_ICD;
  }

  // SwiftShader complains on stderr when this is unset.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();

  const { create, globals } = await import("webgpu");
  countBuffers(globals as unknown as DawnClasses);
  // GPUBufferUsage, GPUMapMode, GPUShaderStage, GPUTextureUsage, GPUAdapter, ...
  for (const [k, v] of Object.entries(globals as Record<string, unknown>)) {
    if (!(k in globalThis)) (globalThis as Record<string, unknown>)[k] = v;
  }
  const gpu = create([]);
  if (nav) {
    Object.defineProperty(nav, "gpu", { value: gpu, configurable: true, enumerable: true });
  } else {
    // A minimal Navigator: jax-js's WebGPU module reads navigator.userAgent
    // (Firefox detection) at import time and would throw without it.
    const { availableParallelism } = await import("node:os");
    Object.defineProperty(globalThis, "navigator", {
      value: {
        gpu,
        userAgent: `Node.js/${process.versions.node}`,
        hardwareConcurrency: availableParallelism(),
      },
      configurable: true,
      writable: true,
      enumerable: false,
    });
  }
  return gpu;
}

/**
 * A device from the shared Dawn instance, with the storage limits raised to
 * the adapter's (as dlc's cli/gpu.ts `nodeDevice()` does). The caller owns it.
 */
export async function nodeGpuDevice(): Promise<GPUDevice> {
  const gpu = await ensureNodeWebGPU();
  const adapter = await gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter (navigator.gpu.requestAdapter() returned null)");
  return requestDevice(adapter);
}

/** Human-readable description of the adapter Dawn would hand out (or null). */
export async function describeAdapter(): Promise<string | null> {
  const gpu = await ensureNodeWebGPU();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) return null;
  const i = adapter.info;
  return [i.vendor, i.architecture, i.device, i.description].filter((s) => s).join(" / ") || "unknown adapter";
}

interface DawnClasses {
  GPUDevice: { prototype: GPUDevice };
  GPUBuffer: { prototype: GPUBuffer };
}

/** Bytes of the live buffers of one device; all of them go when the device is destroyed. */
interface DeviceBytes {
  bytes: number;
  destroyed: boolean;
}

interface BufferBytes {
  size: number;
  device: DeviceBytes;
  freed: boolean;
}

const counted = { live: 0, peak: 0 };
// Weak maps and a finalization registry, so that counting keeps nothing alive: a buffer an
// engine drops without destroy() is freed by Dawn when collected, and is uncounted then.
const devices = new WeakMap<GPUDevice, DeviceBytes>();
const buffers = new WeakMap<GPUBuffer, BufferBytes>();
const collected = new FinalizationRegistry<BufferBytes>(free);

function free(b: BufferBytes): void {
  if (b.freed || b.device.destroyed) return;
  b.freed = true;
  b.device.bytes -= b.size;
  counted.live -= b.size;
}

function countBuffers({ GPUDevice, GPUBuffer }: DawnClasses): void {
  const { createBuffer, destroy: destroyDevice } = GPUDevice.prototype;
  const destroyBuffer = GPUBuffer.prototype.destroy;
  GPUDevice.prototype.createBuffer = function (this: GPUDevice, desc: GPUBufferDescriptor) {
    const buffer = createBuffer.call(this, desc);
    let device = devices.get(this);
    if (!device) devices.set(this, (device = { bytes: 0, destroyed: false }));
    const b = { size: desc.size, device, freed: false };
    buffers.set(buffer, b);
    collected.register(buffer, b);
    device.bytes += b.size;
    counted.live += b.size;
    counted.peak = Math.max(counted.peak, counted.live);
    return buffer;
  };
  GPUBuffer.prototype.destroy = function (this: GPUBuffer) {
    const b = buffers.get(this);
    if (b) free(b);
    return destroyBuffer.call(this);
  };
  GPUDevice.prototype.destroy = function (this: GPUDevice) {
    const d = devices.get(this);
    if (d && !d.destroyed) {
      counted.live -= d.bytes;
      d.bytes = 0;
      d.destroyed = true;
    }
    return destroyDevice.call(this);
  };
}

/**
 * Bytes of the GPU buffers alive now, and the most alive at once since the last
 * `resetGpuPeak()`, over all devices of this process.
 */
export function gpuBytes(): { live: number; peak: number } {
  return { ...counted };
}

export function resetGpuPeak(): void {
  counted.peak = counted.live;
}
