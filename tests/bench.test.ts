// The bench compares engines on "the same model from the same weights": `bench/main.ts --check`
// must find that dlc (CPU), TensorFlow.js (cpu, wasm) and jax-js (wasm) predict the same
// probabilities for the MLP and LeNet-5 from the shared weights (jax-js gets them converted to
// OIHW kernels and a (c, h, w) flatten order). It runs under tsx, as `npm run bench` does: tfjs's
// gradient registrations load only there. And the report's factors over jax-js, and the targets
// built on them, must read the right way round. No timings are asserted.

import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type WorkloadName, failedResult } from '../bench/engine.ts';
import { Report, type Result, shortReason } from '../bench/report.ts';
import { ROOT } from './support/cli.ts';

describe('bench --check', () => {
  it('finds that every CPU engine computes the same function as dlc on both workloads', async () => {
    const { code, stdout } = await new Promise<{ code: number; stdout: string }>((done) => {
      execFile(join(ROOT, 'node_modules', '.bin', 'tsx'), ['bench/main.ts', '--check'], { cwd: ROOT, timeout: 110_000 }, (err, stdout) =>
        done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }),
      );
    });
    const lines = stdout.split('\n').filter((l) => l.includes("of dlc-cpu's") || l.includes('n/a'));
    expect(lines).toHaveLength(6);
    for (const engine of ['tfjs-cpu', 'tfjs-wasm', 'jax-js-wasm']) {
      for (const w of ['mlp', 'lenet']) expect(lines.find((l) => l.startsWith(`${engine} ${w}:`))).toMatch(/same function: OK/);
    }
    expect(code).toBe(0);
  });
});

describe('report', () => {
  const result = (engine: string, workload: WorkloadName, stepMedianMs: number, error?: string): Result => ({
    ...failedResult(engine, workload, 'gpu', error ?? ''),
    error,
    stepMedianMs,
  });

  it('divides jax-js time on the same kind of device by the engine time, and checks the targets with it', () => {
    const r = new Report(
      [
        result('dlc-cpu', 'lenet', 100),
        result('jax-js-wasm', 'lenet', 600),
        result('dlc-webgpu', 'lenet', 100),
        result('jax-js-webgpu', 'lenet', 200),
        result('tfjs-wasm', 'lenet', NaN, "Kernel 'Conv2DBackpropFilter' not registered for backend 'wasm'"),
      ],
      ['dlc-cpu', 'tfjs-wasm', 'jax-js-wasm', 'dlc-webgpu', 'jax-js-webgpu'],
    );
    const t = r.targets({ mlp: 9 });
    const lenet = (engine: string) => t.find((x) => x.target.startsWith('LeNet train step') && x.target.includes(engine))!;
    expect(lenet('dlc-cpu')).toMatchObject({ measured: '6.00x', holds: true }); // >= 5x
    expect(lenet('dlc-webgpu')).toMatchObject({ measured: '2.00x', holds: false }); // >= 3x
    expect(t.find((x) => x.target.startsWith('MLP train step: dlc-cpu'))).toMatchObject({ measured: 'n/a', holds: null });
    expect(t.find((x) => x.target.startsWith('dispatches'))).toMatchObject({ measured: '9', holds: true });
    // A failed run shows why, in the table, instead of a number.
    expect(r.table()).toContain('n/a (no Conv2DBackpropFilter)');
    expect(shortReason('x'.repeat(100)).length).toBeLessThanOrEqual(32);
  });
});
