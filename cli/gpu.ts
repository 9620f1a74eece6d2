// A WebGPU device in Node, from Dawn (the `webgpu` package). Without a GPU, Dawn runs on
// SwiftShader when Debian's chromium package provides its Vulkan driver.

import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { requestDevice } from '../runtime/webgpu.ts';

const SWIFTSHADER = '/usr/lib/chromium/vk_swiftshader_icd.json';

/** Dawn shuts down when its GPU object is garbage-collected: keep it for the life of the process. */
let gpu: GPU | undefined;

export async function nodeDevice(): Promise<GPUDevice | undefined> {
  if (!process.env.VK_ICD_FILENAMES && existsSync(SWIFTSHADER)) process.env.VK_ICD_FILENAMES = SWIFTSHADER;
  // SwiftShader complains on stderr when this is unset.
  process.env.XDG_RUNTIME_DIR ??= tmpdir();
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  gpu ??= create([]);
  const adapter = await gpu.requestAdapter();
  return adapter ? requestDevice(adapter) : undefined;
}
