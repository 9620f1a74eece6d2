// Running the dlc command as a user does: `node bin/dlc.js ...`, as a subprocess.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `dlc ...args` run in `cwd`; resolves with the exit code and output, never rejects. */
export function dlcIn(cwd: string, ...args: string[]): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, [join(ROOT, 'bin', 'dlc.js'), ...args], { cwd, timeout: 90_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** `dlc ...args` run in the repository. */
export const dlc = (...args: string[]): Promise<Run> => dlcIn(ROOT, ...args);
