// dlc: check, compile and train .dlm models. A user's mistake is reported as a diagnostic or one
// plain line, never a stack trace.

import { statSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { SingleBar } from 'cli-progress';
import { compile, check, type Checked } from '../compiler/compile.ts';
import { format, hasErrors } from '../compiler/diagnostics.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { Model, type Backend } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { evaluate, fit } from '../runtime/train.ts';
import type { Dataset } from '../runtime/dataset.ts';
import type { Manifest } from '../runtime/program.ts';
import { DataError, loadFile, mnist } from './data.ts';
import { nodeDevice } from './gpu.ts';

/** A usage or data mistake: printed as one line, exit code 1. */
class UserError extends Error {}

function report(r: Checked): boolean {
  for (const d of r.diagnostics) process.stderr.write(format(d, r.sources) + '\n');
  const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
  if (errors) process.stderr.write(`${errors} error${errors === 1 ? '' : 's'}\n`);
  return !hasErrors(r.diagnostics);
}

/** The model file must exist before the compiler reads it: a missing one is a user's mistake. */
function modelFile(file: string): string {
  let ok = false;
  try {
    ok = statSync(file).isFile();
  } catch {
    throw new UserError(`cannot read model file '${file}': no such file`);
  }
  if (!ok) throw new UserError(`cannot read model file '${file}': not a file`);
  return file;
}

function compiled(file: string): Manifest {
  const r = compile(modelFile(file));
  if (!report(r) || !r.manifest) process.exit(1);
  return r.manifest;
}

const int = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative integer`);
  return n;
};

async function train(file: string, o: { data: string; test?: string; backend: string; epochs?: number; batch?: number; seed?: number; json?: boolean }) {
  const manifest = compiled(file);
  const cfg = manifest.train;
  const seed = o.seed ?? cfg.seed;
  const epochs = o.epochs ?? cfg.epochs;
  const batch = o.batch ?? cfg.batch;
  let trainSet: Dataset;
  let testSet: Dataset | undefined;
  if (o.data === 'mnist') ({ train: trainSet, test: testSet } = mnist(manifest.inputs, seed));
  else trainSet = loadFile(o.data, manifest.inputs);
  if (o.test) testSet = loadFile(o.test, manifest.inputs);

  const say = (line: string) => process.stderr.write(line + '\n');
  const device = o.backend === 'cpu' ? undefined : await nodeDevice();
  if (o.backend === 'webgpu' && !device) throw new UserError('--backend webgpu: no WebGPU adapter found (on a machine without a GPU, install Debian\'s chromium for SwiftShader)');
  const model = await Model.create(manifest, cpuKernels, { backend: (device ? 'webgpu' : 'cpu') as Backend, device, seed });
  if (!o.json) say(`${manifest.model}: training on ${model.backend}${o.backend === 'auto' ? ' (auto)' : ''}, ${trainSet.size} examples, batch ${batch}, ${epochs} epoch${epochs === 1 ? '' : 's'}`);

  const bar = o.json ? undefined : new SingleBar({ format: '  epoch {epoch} [{bar}] {value}/{total} loss {loss}', stream: process.stderr, hideCursor: true, clearOnComplete: true });
  let epoch = 1;
  const history = await fit(model, trainSet, {
    epochs,
    batch,
    shuffle: cfg.shuffle,
    seed,
    onBatch: (done, total, r) => {
      if (done === 1) bar?.start(total, 0, { epoch, loss: '-' });
      bar?.update(done, { epoch, loss: r.loss.toFixed(4) });
    },
    onEpoch: (s) => {
      bar?.stop();
      epoch = s.epoch + 1;
      if (o.json) console.log(JSON.stringify({ event: 'epoch', epoch: s.epoch, train: s.train, ms: Math.round(s.ms) }));
      else say(`epoch ${s.epoch}: ${Object.entries(s.train).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}  (${(s.ms / 1000).toFixed(1)} s)`);
    },
  });
  const test = testSet ? await evaluate(model, testSet) : undefined;
  const last = history[history.length - 1]?.train ?? {};
  if (o.json) console.log(JSON.stringify({ event: 'done', backend: model.backend, train: last, ...(test ? { test } : {}) }));
  else if (test) say(`test: ${Object.entries(test).map(([k, v]) => `${k} ${v.toFixed(4)}`).join('  ')}`);
  model.dispose();
}

const program = new Command('dlc').description('a compiler for neural networks: .dlm models to WebGPU/CPU training bundles');

program
  .command('check')
  .argument('<file>', 'a .dlm model')
  .description('report diagnostics; exit 1 on any error')
  .action((file: string) => {
    if (!report(check(modelFile(file)))) process.exit(1);
    process.stderr.write('ok\n');
  });

program
  .command('compile')
  .argument('<file>', 'a .dlm model')
  .requiredOption('-o, --out <dir>', 'where to write the bundle')
  .description('write the bundle: manifest.json, kernels/*.wgsl, model.js, model.d.ts')
  .action(async (file: string, o: { out: string }) => {
    const manifest = compiled(file);
    const files = await writeBundle(manifest, o.out);
    process.stderr.write(`wrote ${files.length} files to ${o.out}\n`);
  });

program
  .command('train')
  .argument('<file>', 'a .dlm model')
  .requiredOption('--data <source>', "'mnist' or a .json/.csv file")
  .option('--test <file>', 'a test split to evaluate at the end')
  .option('--backend <name>', 'auto | webgpu | cpu', 'auto')
  .option('--epochs <n>', 'override the train block', int('--epochs'))
  .option('--batch <n>', 'override the train block', int('--batch'))
  .option('--seed <n>', 'override the train block', int('--seed'))
  .option('--json', 'one JSON object per line on stdout')
  .description('train the model and evaluate it on the test split')
  .action(async (file: string, o: Parameters<typeof train>[1]) => {
    if (!['auto', 'webgpu', 'cpu'].includes(o.backend)) throw new UserError(`--backend is auto, webgpu or cpu, not '${o.backend}'`);
    await train(file, o);
  });

try {
  await program.parseAsync();
  process.exit(0);
} catch (e) {
  if (e instanceof UserError || e instanceof DataError) {
    process.stderr.write(`dlc: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
