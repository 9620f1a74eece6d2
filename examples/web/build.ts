// Builds the web example: compiles examples/mnist_mlp.dlm into examples/web/model/ with the dlc
// command, converts MNIST digits of the `mnist` package into examples/web/public/mnist.bin, and
// runs `vite build` into examples/web/dist/ (or the folder given as the first argument).
//
//   npx tsx examples/web/build.ts [OUT_DIR]
//
// mnist.bin (little-endian): u32 train count, u32 held-out count, one u8 label per digit, then
// 784 u8 pixels per digit (value × 255, rounded). A quarter of the Float32 size, and the page
// divides by 255 to get back the [0, 1] inputs the CLI trains on (cli/data.ts).

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';
import { mnist } from '../../cli/data.ts';
import type { Manifest } from '../../runtime/program.ts';

const HERE = fileURLToPath(new URL('.', import.meta.url));
const ROOT = join(HERE, '..', '..');
/** Digits shipped to the page: enough to reach ~90% in a minute of training, small to fetch. */
const TRAIN = 5000;
const HELD_OUT = 1000;

/** Writes the bundle, the data and the built page; returns the page's folder. */
export async function buildExample(outDir = join(HERE, 'dist')): Promise<string> {
  const modelDir = join(HERE, 'model');
  // The same command a user runs; on a compile error, the thrown message holds its diagnostics.
  execFileSync(process.execPath, [join(ROOT, 'bin', 'dlc.js'), 'compile', join(ROOT, 'examples', 'mnist_mlp.dlm'), '-o', modelDir], { stdio: 'pipe' });
  const manifest = JSON.parse(readFileSync(join(modelDir, 'manifest.json'), 'utf8')) as Manifest;

  // The CLI's own split (seed of the train block), so the held-out digits are never trained on.
  const { train, test } = mnist(manifest.inputs, manifest.train.seed);
  const n = TRAIN + HELD_OUT;
  const bytes = new Uint8Array(8 + n + n * 784);
  new DataView(bytes.buffer).setUint32(0, TRAIN, true);
  new DataView(bytes.buffer).setUint32(4, HELD_OUT, true);
  const put = (ds: typeof train, count: number, at: number) => {
    const x = ds.columns.x.data, y = ds.columns.y.data;
    for (let i = 0; i < count; i++) {
      bytes[8 + at + i] = y[i];
      for (let p = 0; p < 784; p++) bytes[8 + n + (at + i) * 784 + p] = Math.round(x[i * 784 + p] * 255);
    }
  };
  put(train, TRAIN, 0);
  put(test, HELD_OUT, TRAIN);
  mkdirSync(join(HERE, 'public'), { recursive: true });
  writeFileSync(join(HERE, 'public', 'mnist.bin'), bytes);

  // base './': the built page works from any folder or URL path.
  await build({ root: HERE, base: './', configFile: false, logLevel: 'warn', build: { outDir: resolve(outDir), emptyOutDir: true } });
  return resolve(outDir);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const out = await buildExample(process.argv[2]);
  console.log(`built ${out}; serve it with: npx vite preview --outDir ${out}`);
}
