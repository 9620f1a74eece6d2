// The manifest model.js carries (runtime/packed.ts): unpacking gives back exactly what the compiler
// made, for every program of models that use every kind of node (args, consts, aliases, fused
// reductions and epilogues, tiled kernels, non-f32 values, source positions, kernel names).

import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { packManifest, unpackManifest } from '../runtime/packed.ts';

const manifest = (file: string) => {
  const c = compile(fileURLToPath(new URL(`../examples/${file}`, import.meta.url)), undefined, { gradient: true });
  if (!c.manifest) throw new Error(c.diagnostics.map((d) => d.message).join('; '));
  return c.manifest;
};

describe('packed manifest', () => {
  for (const file of ['mnist_mlp.dlm', 'lenet5.dlm', 'mnist_mlp_bn.dlm']) {
    it(`of ${file} unpacks to the manifest, but for the CPU-only programs' kernels and the kernels' variants`, () => {
      const m = manifest(file);
      const packed = JSON.parse(JSON.stringify(packManifest(m, 'weights.bin')));
      expect(packed.w).toBe('weights.bin');
      const back = unpackManifest(packed);
      const want = JSON.parse(JSON.stringify(m));
      for (const name of ['init', 'schedule']) if (want.programs[name]) want.programs[name].kernels = [];
      // the variants are in variants.js (runtime/variants.ts)
      for (const p of Object.values(want.programs) as { kernels: { sub?: unknown }[] }[]) for (const k of p.kernels) delete k.sub;
      expect(back).toEqual(want);
      expect(m.programs.init.kernels.length).toBeGreaterThan(0);
      // every kernel name is derived (kernelName), none carried
      for (const p of Object.values(packed.m.programs) as { kernels: unknown[][] }[]) for (const k of p.kernels) expect(k[3] ?? 0).toBe(0);
    });
  }
});
