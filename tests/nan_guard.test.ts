// The NaN guard: a diverging run stops at the first non-finite value, names the step and the op
// with its source position, and leaves the model as it was before that step.
import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { DlcNumericError, Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rng } from '../runtime/random.ts';
import { gpuDevice } from './support/harness.ts';

const gpu = await gpuDevice();

describe('the NaN guard', () => {
  // on WebGPU the updates are computed in their parameters' buffers (codegen/merge.ts inPlace): the
  // values before the step are kept aside before it runs
  it.each(['cpu', ...(gpu ? ['webgpu' as const] : [])] as const)('undoes the failing step and names its op and source (%s)', async (backend) => {
    const m = compile('tests/fixtures/diverge.dlm').manifest!;
    const model = await Model.create(m, cpuKernels, { backend, device: gpu ?? undefined, startOnCpu: false });
    const next = rng(2);
    const batch = { x: Float32Array.from({ length: 64 * 784 }, next), y: Float32Array.from({ length: 640 }, () => (next() < 0.1 ? 1 : 0)) };
    let error: unknown;
    let before: Awaited<ReturnType<Model['getParams']>> | undefined;
    for (let i = 0; i < 20 && !error; i++) {
      before = await model.getParams();
      await model.trainStep(batch).catch((e) => (error = e));
    }
    expect(error).toBeInstanceOf(DlcNumericError);
    const e = error as DlcNumericError;
    expect(e.step).toBe(model.step + 1);
    expect(e.op).toBeDefined();
    expect(e.src).toMatch(/^(stdlib|tests\/fixtures)\/\w+\.dlm:\d+:\d+/);
    expect(e.message).toContain(`step ${e.step}`);
    expect(await model.getParams()).toEqual(before);
  });

  it('makes dlc train exit 1 with the step and op, no stack trace', () => {
    let out = '';
    let code = 0;
    try {
      execFileSync('node', ['bin/dlc.js', 'train', 'tests/fixtures/diverge.dlm', '--data', 'mnist', '--backend', 'cpu'], { stdio: 'pipe', encoding: 'utf8' });
    } catch (err) {
      const x = err as { status: number; stderr: string };
      code = x.status;
      out = x.stderr;
    }
    expect(code).toBe(1);
    expect(out).toMatch(/training stopped: .* at step \d+: .*'\w+' made at \S+\.dlm:\d+:\d+/);
    expect(out).not.toMatch(/^\s+at /m);
  });
});
