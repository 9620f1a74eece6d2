// What model.js carries: the MNIST bundle stays small (issue 6: at most 20 KiB gzipped, minified,
// as `dlc compile --stats` prints it), none of the compiler rides along, and the per-op CPU kernel
// exports a bundle imports (runtime/cpu_kernels.ts) are exactly the registry's kernels.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { bundleJs, kernelOps } from '../compiler/codegen/bundle.ts';
import { ops } from '../compiler/ops/registry.ts';
import * as byOp from '../runtime/cpu_kernels.ts';

const manifest = (file: string) => {
  const c = compile(fileURLToPath(new URL(`../examples/${file}`, import.meta.url)));
  if (!c.manifest) throw new Error(c.diagnostics.map((d) => d.message).join('; '));
  return c.manifest;
};

describe('model.js', () => {
  it('of the MNIST perceptron is at most 20 KiB gzipped (minified)', async () => {
    const js = await bundleJs(manifest('mnist_mlp.dlm'), true);
    expect(gzipSync(js, { level: 9 }).length).toBeLessThanOrEqual(20 * 1024);
  });

  it('carries no compiler code: no IR builders, shape rules, VJPs or WGSL templates, and no L-BFGS', async () => {
    const js = await bundleJs(manifest('mnist_mlp.dlm'));
    for (const marker of ['compiler/ir/build.ts', 'compiler/ops/registry.ts', 'function make(', 'vjp', 'wgslCoords', 'runtime/lbfgs.ts', 'two-loop'])
      expect(js, marker).not.toContain(marker);
    // only the kernels of the ops the programs run, JS and wasm drivers alike
    expect(js).not.toContain('conv2dCpu');
    expect(js).not.toContain('im2col');
  });

  it("of LeNet-5 carries the wasm drivers of its convolutions", async () => {
    const js = await bundleJs(manifest('lenet5.dlm'));
    for (const marker of ['conv2dCpu', 'im2col', 'col2im']) expect(js, marker).toContain(marker);
  });

  it('of an L-BFGS model carries L-BFGS', async () => {
    const src = `model fit_line {
  input x: f32[B, 1]
  input y: f32[B, 1]
  loss = mse(dense(x, 1), y)
  train { optimizer lbfgs() }
}`;
    const c = compile('fit_line.dlm', (path) => (path.endsWith('fit_line.dlm') ? src : readFileSync(path, 'utf8')));
    if (!c.manifest) throw new Error(c.diagnostics.map((d) => d.message).join('; '));
    expect(await bundleJs(c.manifest)).toContain('runtime/lbfgs.ts');
  });
});

describe('runtime/cpu_kernels.ts', () => {
  it('exports each op\'s CPU kernel under its name, the very one of the registry', () => {
    const exported = byOp as unknown as Record<string, unknown>;
    for (const [op, def] of Object.entries(ops())) {
      if (op === 'arg' || op === 'const') continue;
      expect(exported[op], op).toBe(def.alias ? 'alias' : def.cpu);
      expect(byOp.cpuKernels[op], op).toBe(exported[op]);
    }
  });

  it('every op a compiled example runs has a kernel export', () => {
    for (const f of ['mnist_mlp.dlm', 'lenet5.dlm', 'mnist_mlp_bn.dlm']) for (const op of kernelOps(manifest(f))) expect(op in byOp, `${f}: ${op}`).toBe(true);
  });
});
