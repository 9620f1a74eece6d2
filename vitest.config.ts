import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { defineConfig } from 'vitest/config';

// Without a GPU, WebGPU (Dawn) runs on SwiftShader from Debian's chromium package.
const swiftshader = '/usr/lib/chromium/vk_swiftshader_icd.json';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    env: {
      ...(!process.env.VK_ICD_FILENAMES && existsSync(swiftshader) ? { VK_ICD_FILENAMES: swiftshader } : {}),
      // SwiftShader complains on stderr without it.
      XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? tmpdir(),
    },
  },
});
