// Training checkpoints for `dlc train --save/--resume`, and atomic file writes.
//
// A checkpoint is `Model.save(extra)` with extra = TrainExtra: the epochs done, their history, the
// run's settings and the training loop's state. Files are replaced atomically: the bytes go to a
// temporary file in the same directory, are fsynced, and the temporary file is renamed over the
// target, so a run killed at any moment leaves either the previous checkpoint or the new one.

import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { EpochStats, FitState } from '../runtime/train.ts';
import { DlcInputError, Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import type { Manifest } from '../runtime/program.ts';
import { DataError } from './data.ts';

/** A checkpoint that cannot be read or used: one line for the user, exit code 1. */
export class CheckpointError extends DataError {}

export const CHECKPOINT_FORMAT = 'dlc-train/1';

/** What `dlc train` settles before training; a resumed run takes these from its checkpoint. */
export interface TrainSettings {
  /** The last epoch the run was asked to train: `--resume` alone continues to it. */
  epochs: number;
  batch: number;
  seed: number;
  shuffle: boolean;
  /** The fraction held out for validation (0: none). */
  valSplit: number;
  /** Where the training data came from, and how many examples it had (before the split). */
  data: string;
  dataSize: number;
  optimizer: string;
}

export interface TrainExtra {
  format: typeof CHECKPOINT_FORMAT;
  /** Epochs completed. */
  epoch: number;
  history: EpochStats[];
  settings: TrainSettings;
  state: FitState;
  /** The best epoch's checkpoint (base64 of `Model.save()`), when early stopping watches and the
   *  best epoch is an earlier one. */
  best?: string;
}

const tempPrefix = (path: string) => `.${basename(path)}.tmp-`;

/** Writes `data` to `path` atomically: temp file in the same directory, fsync, rename. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const target = resolve(path);
  const dir = dirname(target);
  const tmp = join(dir, `${tempPrefix(target)}${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  let fd: number;
  try {
    fd = openSync(tmp, 'w', 0o644);
  } catch (e) {
    throw new CheckpointError(`cannot write '${path}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (e as Error).message}`);
  }
  try {
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, target);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw new CheckpointError(`cannot write '${path}': ${(e as Error).message}`);
  }
  // Make the rename itself durable.
  try {
    const d = openSync(dir, 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    /* some file systems cannot fsync a directory */
  }
}

/** Checks, before any training, that `path` can be written later: its folder exists. */
export function checkOutputPath(flag: string, path: string): void {
  const dir = dirname(resolve(path));
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    /* missing */
  }
  if (!ok) throw new CheckpointError(`${flag} ${path}: no such directory '${dir}'`);
}

/** Removes temporary files that killed runs left beside `path` (their process is gone). */
export function removeStaleTemps(path: string): void {
  const target = resolve(path);
  const prefix = tempPrefix(target);
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length).split('-')[0]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) continue;
    if (pid === process.pid) continue;
    rmSync(join(dirname(target), name), { force: true });
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export function readCheckpointFile(path: string): Uint8Array {
  try {
    return new Uint8Array(readFileSync(path));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CheckpointError(`cannot read checkpoint '${path}': ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (e as Error).message}`);
  }
}

/** The training part of a restored checkpoint's `extra`, checked. */
export function trainExtra(path: string, extra: Record<string, unknown>): TrainExtra {
  const bad = (why: string): never => {
    throw new CheckpointError(`--resume ${path}: not a training checkpoint of 'dlc train --save' (${why})`);
  };
  if (extra.format !== CHECKPOINT_FORMAT) bad(extra.format === undefined ? 'no training state in it' : `format '${String(extra.format)}'`);
  const x = extra as unknown as TrainExtra;
  if (!Number.isInteger(x.epoch) || x.epoch < 0) bad('no epoch count');
  if (!Array.isArray(x.history) || x.history.length !== x.epoch) bad('its history does not match its epoch count');
  const s = x.settings as Partial<TrainSettings> | undefined;
  if (!s || !Number.isInteger(s.epochs) || !Number.isInteger(s.batch) || !Number.isInteger(s.seed) || typeof s.shuffle !== 'boolean' || typeof s.valSplit !== 'number') bad('no settings');
  if (typeof x.state !== 'object' || x.state === null) bad('no training-loop state');
  if (x.best !== undefined && typeof x.best !== 'string') bad('a damaged best epoch');
  return x;
}

/** The weights a bundle ships (`dlc compile --checkpoint`): the checkpoint's parameters, state,
 *  optimizer slots, step and hyperparameters, checked against `manifest`, without the training
 *  run's own record (history, settings). */
export async function bundleWeights(manifest: Manifest, path: string): Promise<Uint8Array> {
  const model = await Model.create(manifest, cpuKernels, { backend: 'cpu' });
  try {
    model.restore(readCheckpointFile(path));
    return await model.save();
  } catch (e) {
    throw e instanceof DlcInputError ? new CheckpointError(`--checkpoint ${path}: ${e.message}`) : e;
  } finally {
    model.dispose();
  }
}

export const toBase64 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64');
export const fromBase64 = (s: string) => new Uint8Array(Buffer.from(s, 'base64'));
