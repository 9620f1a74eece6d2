// Checkpoints survive SIGKILL: `dlc train --save` is killed at 20 seeded random moments of its
// run (in two chains of 10, each run resuming from the checkpoint the last one left). After every
// kill the checkpoint, if there is one yet, restores in process and is never older than the one
// before; every resumed run accepts it; and each chain, finished without a kill, ends with
// parameters bit for bit equal to the other's, though they were killed at different moments.
//
// A kill rarely lands inside a write of a checkpoint that size, so the second test kills the
// atomic writer itself, 10 times, in the middle of replacing a 32 MB file: the file is always
// one whole version, old or new, never a mix or a truncated one.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { rng } from '../runtime/random.ts';
import { removeStaleTemps, trainExtra } from '../cli/checkpoint.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DLC = join(ROOT, 'bin', 'dlc.js');
const tmp = mkdtempSync(join(tmpdir(), 'dlc-kill-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Far more than the chains ever reach (at ~100 epochs a second, ten runs of up to a second each
 *  reached 996 of an earlier 1000): every run is killed. */
const EPOCHS = 1_000_000;
const KILLS_PER_CHAIN = 10;

const MODEL = `
model killed {
  input x: f32[B, 8]
  input y: f32[B, 1]
  h = x |> dense(128) |> relu |> dense(128) |> relu
  yhat = dense(h, 1)
  loss = mse(yhat, y)
  train {
    optimizer adam(lr: 1e-3)
    batch 16
    epochs ${EPOCHS}
    seed 4
  }
}`;

/** 64 examples, 4 steps an epoch: about 100 ms of CPU. */
function data(): string {
  const next = rng(9);
  const rows = Array.from({ length: 64 }, () => {
    const x = Array.from({ length: 8 }, () => 2 * next() - 1);
    return [...x, x[0] * x[1] - x[2]].map((v) => v.toFixed(4)).join(',');
  });
  return [[...Array(8).keys()].map((k) => `x.${k}`).concat('y.0').join(','), ...rows].join('\n') + '\n';
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  killed: boolean;
}

/** When to kill: `ms` after spawning (start-up), after the header line (training set up, before
 *  the first epoch is done), or after the first epoch line (checkpoints being written). */
type KillAt = { after: 'spawn' | 'header' | 'epoch'; ms: number };

/** Runs `dlc train` and SIGKILLs it at `at` (never, when undefined). */
function run(args: string[], at?: KillAt): Promise<Ended> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [DLC, ...args], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    let killed = false;
    const arm = () => {
      timer ??= setTimeout(() => (killed = child.kill('SIGKILL')), at!.ms);
    };
    if (at?.after === 'spawn') arm();
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (at?.after === 'header' && stderr.includes('training on')) arm();
      if (at?.after === 'epoch' && /^epoch \d+:/m.test(stderr)) arm();
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      done({ code, signal, stderr, killed: killed && signal === 'SIGKILL' });
    });
  });
}

it('SIGKILL at 20 random moments never leaves a damaged checkpoint, and resumed runs end exactly alike', async () => {
  const file = join(tmp, 'killed.dlm');
  const csv = join(tmp, 'data.csv');
  writeFileSync(file, MODEL);
  writeFileSync(csv, data());
  const manifest = compile(file).manifest!;
  const random = rng(20240601);

  let kills = 0;
  let written = 0; // kills while checkpoints were being written (after the first epoch)
  const chain = async (name: string, seeds: number[]) => {
    const dir = mkdtempSync(join(tmp, `${name}-`));
    const ckpt = join(dir, 'run.ckpt');
    const model = await Model.create(manifest, cpuKernels, { backend: 'cpu' });
    const args = ['train', file, '--data', csv, '--backend', 'cpu', '--save', ckpt];
    let epoch = 0;
    for (const u of seeds) {
      const resumed = existsSync(ckpt);
      // One kill in ten lands during start-up, one in ten before the first epoch ends, the
      // others up to a second into the epochs, where a checkpoint is written every ~100 ms.
      const at: KillAt = u < 0.1 ? { after: 'spawn', ms: 2500 * (u / 0.1) } : u < 0.2 ? { after: 'header', ms: 300 * ((u - 0.1) / 0.1) } : { after: 'epoch', ms: 1000 * ((u - 0.2) / 0.8) };
      const r = await run(resumed ? [...args, '--resume', ckpt] : args, at);
      expect(r.killed, r.stderr).toBe(true);
      kills++;
      if (at.after === 'epoch') written++;
      expect(r.stderr, 'a resumed run refused its checkpoint').not.toMatch(/^dlc: /m);
      if (resumed && r.stderr.includes('resuming from')) expect(r.stderr).toContain(`resuming from ${ckpt}: ${epoch} epoch`);
      if (!existsSync(ckpt)) {
        expect(epoch).toBe(0);
        continue;
      }
      // The checkpoint is whole: it restores, and it is never older than the one before.
      const extra = trainExtra(ckpt, model.restore(new Uint8Array(readFileSync(ckpt))));
      expect(extra.epoch).toBeGreaterThanOrEqual(epoch);
      expect(extra.history.map((e) => e.epoch)).toEqual(Array.from({ length: extra.epoch }, (_, i) => i + 1));
      expect(model.step).toBe(extra.epoch * 4);
      epoch = extra.epoch;
    }
    return { dir, ckpt, model, epoch };
  };

  const seeds = Array.from({ length: 2 * KILLS_PER_CHAIN }, () => random());
  const chains = await Promise.all([chain('a', seeds.slice(0, KILLS_PER_CHAIN)), chain('b', seeds.slice(KILLS_PER_CHAIN))]);
  expect(kills).toBe(2 * KILLS_PER_CHAIN);
  expect(written).toBeGreaterThanOrEqual(12);

  // Finish both runs at the same epoch, without a kill: resuming works from wherever the last
  // kill left each, and the two, killed at different moments, trained the same run.
  const end = Math.max(...chains.map((c) => c.epoch)) + 2;
  const finals = await Promise.all(
    chains.map(async (c) => {
      const args = ['train', file, '--data', csv, '--backend', 'cpu', '--save', c.ckpt, '--epochs', String(end)];
      const r = await run(c.epoch > 0 || existsSync(c.ckpt) ? [...args, '--resume', c.ckpt] : args);
      expect(r.code, r.stderr).toBe(0);
      c.model.restore(new Uint8Array(readFileSync(c.ckpt)));
      expect(c.model.epoch).toBe(end);
      // Temporary files of killed writes were cleared away by the next run.
      expect(readdirSync(c.dir)).toEqual(['run.ckpt']);
      const params = await c.model.getParams();
      c.model.dispose();
      return params;
    }),
  );
  for (const [k, t] of Object.entries(finals[0])) expect(Buffer.from(finals[1][k].data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(true);
}, 120_000);

it('the atomic writer, killed 10 times while it replaces a 32 MB file, leaves one whole version', async () => {
  const SIZE = 32 << 20;
  const target = join(tmp, 'big.bin');
  const writer = join(tmp, 'writer.ts');
  writeFileSync(
    writer,
    `import { writeFileAtomic } from ${JSON.stringify(pathToFileURL(join(ROOT, 'cli', 'checkpoint.ts')).href)};
const [target, size, start] = process.argv.slice(2);
const buf = new Uint8Array(Number(size)).fill(0x5a);
const view = new DataView(buf.buffer);
for (let g = Number(start); ; g++) {
  view.setUint32(0, g, true);
  view.setUint32(buf.length - 4, g, true);
  writeFileAtomic(target, buf);
  process.stdout.write(g + '\\n');
}
`,
  );
  const middle = Buffer.alloc(SIZE - 8, 0x5a);
  const random = rng(77);
  let generation = 0;
  for (let i = 0; i < 10; i++) {
    const delay = 300 * random();
    const printed = await new Promise<number>((done) => {
      const child = spawn(process.execPath, ['--import', 'tsx', writer, target, String(SIZE), String(generation + 1)], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let timer: NodeJS.Timeout | undefined;
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        timer ??= setTimeout(() => child.kill('SIGKILL'), delay);
      });
      child.on('exit', () => {
        clearTimeout(timer);
        const lines = out.trim().split('\n');
        done(Number(lines[lines.length - 1]));
      });
    });
    const b = readFileSync(target);
    expect(b.length).toBe(SIZE);
    const g = b.readUInt32LE(0);
    expect(b.readUInt32LE(SIZE - 4)).toBe(g);
    expect(b.subarray(4, SIZE - 4).equals(middle)).toBe(true);
    expect(g).toBeGreaterThanOrEqual(printed);
    generation = g;
    removeStaleTemps(target); // what the killed writer left: a partial temporary file
    expect(readdirSync(tmp).filter((f) => f.startsWith('.big.bin'))).toEqual([]);
  }
  rmSync(target);
}, 60_000);
