// dlc: check, compile and train .dlm models. A user's mistake is reported as a diagnostic or one
// plain line, never a stack trace.

import { statSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import { SingleBar } from 'cli-progress';
import { compile, check, type Checked } from '../compiler/compile.ts';
import { format, hasErrors } from '../compiler/diagnostics.ts';
import { writeBundle } from '../compiler/codegen/bundle.ts';
import { DlcInputError, DlcNumericError, Model, type Backend } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { evaluate, fit, parseWatch, splitValidation, watchName, type FitOptions, type Watch } from '../runtime/train.ts';
import type { Dataset } from '../runtime/dataset.ts';
import type { Manifest } from '../runtime/program.ts';
import { DataError, loadFile, mnist } from './data.ts';
import { nodeDevice } from './gpu.ts';
import { CHECKPOINT_FORMAT, CheckpointError, bundleWeights, checkOutputPath, fromBase64, readCheckpointFile, removeStaleTemps, toBase64, trainExtra, writeFileAtomic, type TrainExtra, type TrainSettings } from './checkpoint.ts';
import * as passes from './passes.ts';
import { CURVES_FORMAT, plotKind, writeCurves, writePlot, type CurveRun, type Curves } from './plot.ts';

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

const fraction = (name: string) => (v: string) => {
  const n = Number(v);
  if (!(n > 0 && n < 1)) throw new InvalidArgumentError(`${name} must be a fraction between 0 and 1 (exclusive)`);
  return n;
};

const positive = (name: string) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a positive integer`);
  return n;
};

interface TrainOptions {
  data: string;
  test?: string;
  backend: string;
  epochs?: number;
  batch?: number;
  seed?: number;
  json?: boolean;
  valSplit?: number;
  save?: string;
  resume?: string;
  curves?: string;
  plot?: string;
  compare?: string;
}

/** The manifest of `file` compiled with `optimizer` in place of the train block's, at its
 *  defaults. `quiet`: warnings were reported already (errors are always). */
function compiledWithOptimizer(file: string, optimizer: string, quiet: boolean): Manifest {
  const r = compile(modelFile(file), undefined, { optimizer });
  const failed = hasErrors(r.diagnostics) || !r.manifest;
  if ((!quiet || failed) && !report(r)) process.exit(1);
  if (!r.manifest) process.exit(1);
  return r.manifest;
}

const num = (v: number) => (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(4));
const fmtStats = (s: Record<string, number>) => Object.entries(s).map(([k, v]) => `${k} ${num(v)}`).join('  ');
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

async function train(file: string, o: TrainOptions) {
  const say = (line: string) => process.stderr.write(line + '\n');
  const note = (line: string) => (o.json ? process.stderr.write(`dlc: note: ${line}\n`) : say(`note: ${line}`));
  const compare = o.compare?.split(',').map((s) => s.trim());
  if (compare) {
    if (compare.some((n) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(n))) throw new UserError(`--compare takes optimizer names separated by commas, like adam,sgd,rmsprop; got '${o.compare}'`);
    if (new Set(compare).size !== compare.length) throw new UserError(`--compare names an optimizer twice: '${o.compare}'`);
    if (!o.plot) throw new UserError('--compare draws its curves: add --plot FILE.svg (or FILE.png)');
    if (o.save || o.resume) throw new UserError('--compare trains several models: it cannot be combined with --save or --resume');
  }
  if (o.plot) plotKind(o.plot);
  if (o.curves && !o.curves.endsWith('.json')) throw new UserError(`--curves ${o.curves}: the file must end in .json`);
  for (const [flag, path] of [['--save', o.save], ['--curves', o.curves], ['--plot', o.plot]] as const) if (path) checkOutputPath(flag, path);

  const manifests = compare ? compare.map((name, i) => compiledWithOptimizer(file, name, i > 0)) : [compiled(file)];
  const manifest = manifests[0];
  const cfg = manifest.train;

  let device: GPUDevice | undefined;
  let backend: Backend | undefined;
  /** A model on the backend asked for (the WebGPU device is opened on first use). */
  const createModel = async (m: Manifest, seed: number): Promise<Model> => {
    if (!backend) {
      device = o.backend === 'cpu' ? undefined : await nodeDevice();
      if (o.backend === 'webgpu' && !device) throw new UserError('--backend webgpu: no WebGPU adapter found (on a machine without a GPU, install Debian\'s chromium for SwiftShader)');
      backend = device ? 'webgpu' : 'cpu';
    }
    // WebGPU from the start: here the CPU's wasm kernels are built with binaryen, whose import
    // alone takes longer than compiling the pipelines (a bundle ships kernels.wasm built)
    return Model.create(m, cpuKernels, { backend, device, seed, startOnCpu: false });
  };

  // A resumed run takes its settings from the checkpoint; flags that differ win, with a note.
  let resumed: { bytes: Uint8Array; extra: TrainExtra } | undefined;
  let model: Model | undefined;
  let settings: TrainSettings = {
    epochs: o.epochs ?? cfg.epochs,
    batch: o.batch ?? cfg.batch,
    seed: o.seed ?? cfg.seed,
    shuffle: cfg.shuffle,
    valSplit: o.valSplit ?? 0,
    data: o.data,
    dataSize: 0,
    optimizer: manifest.optimizer.name,
  };
  if (o.resume) {
    const bytes = readCheckpointFile(o.resume);
    const restore = (m: Model): TrainExtra => {
      let extra: Record<string, unknown>;
      try {
        extra = m.restore(bytes);
      } catch (e) {
        m.dispose();
        throw new CheckpointError(`--resume ${o.resume}: ${(e as Error).message}`);
      }
      return trainExtra(o.resume!, extra);
    };
    model = await createModel(manifest, settings.seed);
    let extra = restore(model);
    const s = extra.settings;
    const differs = (flag: string, mine: unknown, theirs: unknown) => {
      if (mine !== undefined && mine !== theirs) note(`${flag} ${mine} differs from the checkpoint's ${theirs}: this run will not match an uninterrupted one`);
    };
    differs('--batch', o.batch, s.batch);
    differs('--seed', o.seed, s.seed);
    differs('--val-split', o.valSplit, s.valSplit);
    settings = { ...s, epochs: o.epochs ?? s.epochs, batch: o.batch ?? s.batch, seed: o.seed ?? s.seed, valSplit: o.valSplit ?? s.valSplit, data: o.data };
    if (model.seed !== settings.seed) {
      // Dropout is keyed by the model's seed: recreate it with the run's.
      model.dispose();
      model = await createModel(manifest, settings.seed);
      extra = restore(model);
    }
    resumed = { bytes, extra };
  }

  let trainSet: Dataset;
  let testSet: Dataset | undefined;
  let valSet: Dataset | undefined;
  try {
    if (o.data === 'mnist') ({ train: trainSet, test: testSet } = mnist(manifest.inputs, settings.seed));
    else trainSet = loadFile(o.data, manifest.inputs);
    if (o.test) testSet = loadFile(o.test, manifest.inputs);
    if (resumed && resumed.extra.settings.dataSize !== trainSet.size)
      note(`--data has ${trainSet.size} examples, the checkpoint's run had ${resumed.extra.settings.dataSize} (${resumed.extra.settings.data}): this run will not match an uninterrupted one`);
    settings.dataSize = trainSet.size;
    if (settings.valSplit > 0) {
      try {
        ({ train: trainSet, val: valSet } = splitValidation(trainSet, settings.valSplit, settings.seed));
      } catch (e) {
        throw new UserError(`--val-split ${settings.valSplit}: ${(e as Error).message}`);
      }
    }
  } catch (e) {
    model?.dispose();
    throw e;
  }

  // Early stopping and reduce_on_plateau watch a number of each epoch.
  const watch = (on: string, what: string): Watch => {
    try {
      return parseWatch(on, manifest.metrics);
    } catch (e) {
      throw new UserError(`${what}: ${(e as Error).message}`);
    }
  };
  let earlyStop: FitOptions['earlyStop'];
  if (cfg.earlyStop) {
    const on = watch(cfg.earlyStop.on, 'early_stop');
    if (on.split === 'val' && !valSet) note(`early_stop watches ${watchName(on)}, but there is no validation set (add --val-split F): training will not stop early`);
    else earlyStop = { patience: cfg.earlyStop.patience, on };
  }
  const plateauFor = (m: Model): FitOptions['plateau'] => {
    if (m.manifest.schedule?.name !== 'reduce_on_plateau') return undefined;
    if (m.hypers.lr === undefined) throw new UserError(`reduce_on_plateau changes the optimizer's 'lr', but '${m.manifest.optimizer.name}' has no such hyperparameter`);
    const on = earlyStop?.on ?? watch(valSet ? 'val.loss' : 'train.loss', 'reduce_on_plateau');
    return { factor: m.schedule.factor ?? 0.1, patience: m.schedule.patience ?? 2, minLr: m.schedule.min_lr ?? 0, on };
  };

  const epochs = settings.epochs;
  const runs: CurveRun[] = [];
  const results: Record<string, unknown>[] = [];
  const curves = (): Curves => ({ format: CURVES_FORMAT, model: manifest.model, runs });
  if (o.save) removeStaleTemps(o.save);

  let plateau: FitOptions['plateau'];
  for (const [i, m] of manifests.entries()) {
    const label = m.optimizer.name;
    const run: CurveRun = { label, optimizer: { name: label, hypers: { ...m.optimizer.hypers } }, epochs: [] };
    runs.push(run);
    model ??= await createModel(m, settings.seed);
    const current = model;
    const start = resumed?.extra.epoch ?? 0;
    const tag = compare ? { run: label } : {};
    if (!o.json) {
      if (compare) say(`${i ? '\n' : ''}[${i + 1}/${manifests.length}] optimizer ${label}(${Object.entries(run.optimizer.hypers).map(([k, v]) => `${k}: ${v}`).join(', ')})`);
      say(`${m.model}: training on ${current.backend}${o.backend === 'auto' ? ' (auto)' : ''}, ${trainSet.size} examples${valSet ? ` (+${valSet.size} validation)` : ''}, batch ${settings.batch}, ${plural(epochs, 'epoch')}`);
      if (resumed) say(`resuming from ${o.resume}: ${plural(start, 'epoch')} done${start >= epochs ? ', nothing left to train' : ''}`);
    } else if (resumed) console.log(JSON.stringify({ event: 'resume', epoch: start, checkpoint: o.resume }));

    const bar = o.json ? undefined : new SingleBar({ format: '  epoch {epoch} [{bar}] {value}/{total} loss {loss}', stream: process.stderr, hideCursor: true, clearOnComplete: true });
    let epoch = start + 1;
    const result = await fit(current, trainSet, {
      epochs,
      batch: settings.batch,
      shuffle: settings.shuffle,
      seed: settings.seed,
      val: valSet,
      earlyStop,
      plateau: (plateau = plateauFor(current)),
      resume: resumed && {
        history: resumed.extra.history,
        state: resumed.extra.state,
        best: resumed.extra.best === undefined ? undefined : fromBase64(resumed.extra.best),
      },
      onBatch: (done, total, r) => {
        if (done === 1) bar?.start(total, 0, { epoch, loss: '-' });
        bar?.update(done, { epoch, loss: r.loss.toFixed(4) });
      },
      onReduceLr: ({ epoch: e, from, to, on }) => {
        bar?.stop();
        if (o.json) console.log(JSON.stringify({ event: 'reduce_lr', ...tag, epoch: e, from, to, on: watchName(on) }));
        else say(`  reduce_on_plateau: ${watchName(on)} has not improved for ${plural(plateau!.patience, 'epoch')}: lr ${from.toPrecision(3)} -> ${to.toPrecision(3)}`);
      },
      onEpoch: async (s, snap) => {
        bar?.stop();
        epoch = s.epoch + 1;
        if (o.json) console.log(JSON.stringify({ event: 'epoch', ...tag, epoch: s.epoch, train: s.train, ...(s.val ? { val: s.val } : {}), ...(s.lr !== undefined ? { lr: s.lr } : {}), ms: Math.round(s.ms) }));
        else say(`epoch ${s.epoch}: ${fmtStats(s.train)}${s.val ? `  | val ${fmtStats(s.val)}` : ''}  (${(s.ms / 1000).toFixed(1)} s)`);
        if (o.save) {
          const extra: TrainExtra = {
            format: CHECKPOINT_FORMAT,
            epoch: s.epoch,
            history: snap.history,
            settings,
            state: snap.state,
            ...(snap.best ? { best: toBase64(snap.best) } : {}),
          };
          writeFileAtomic(o.save, await current.save(extra as unknown as Record<string, unknown>));
        }
        run.epochs = snap.history;
        if (o.curves) writeCurves(o.curves, curves());
      },
    });
    bar?.stop();
    run.epochs = result.history;
    if (result.stopped) {
      if (o.json) console.log(JSON.stringify({ event: 'early_stop', ...tag, epoch: result.stopped.epoch, reason: result.stopped.reason }));
      else say(`early stop after epoch ${result.stopped.epoch}: ${result.stopped.reason}`);
    }
    if (result.restored && !o.json) say(`restored the parameters of epoch ${result.restored.epoch} (best ${watchName(earlyStop!.on)} ${num(result.restored.value)})`);
    const test = testSet ? await evaluate(current, testSet) : undefined;
    const last = result.history[result.history.length - 1];
    results.push({
      ...(compare ? { optimizer: label } : {}),
      train: last?.train ?? {},
      ...(last?.val ? { val: last.val } : {}),
      ...(test ? { test } : {}),
      ...(result.stopped ? { stopped: result.stopped } : {}),
      ...(result.restored ? { best: result.restored } : {}),
    });
    if (test && !o.json) say(`test: ${fmtStats(test)}`);
    current.dispose();
    model = undefined;
    resumed = undefined;
  }

  if (o.curves) writeCurves(o.curves, curves());
  if (o.plot) await writePlot(o.plot, curves());
  if (!o.json && (o.curves || o.plot)) say(`wrote ${[o.curves, o.plot].filter(Boolean).join(' and ')}`);
  if (o.json) console.log(JSON.stringify(compare ? { event: 'done', backend: backend ?? 'cpu', runs: results } : { event: 'done', backend: backend ?? 'cpu', ...results[0] }));
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
  .option('--dump <pass>', 'print each program\'s IR after this pass (lowered, fold, simplify, stability, split, fuse)')
  .option('--program <name>', 'with --dump: only this program (init, train, evaluate, predict, ...)')
  .option('--stats', 'print kernels, dispatches, buffer bytes and FLOPs of each program, and the size of model.js')
  .option('--checkpoint <file>', "ship these trained weights (from 'dlc train --save') as weights.bin, loaded by default")
  .description('write the bundle: manifest.json, kernels/*.wgsl, model.js, model.d.ts')
  .action(async (file: string, o: { out: string; dump?: string; program?: string; stats?: boolean; checkpoint?: string }) => {
    if (o.dump) passes.checkPassName('--dump', o.dump);
    const r = compile(modelFile(file));
    if (!report(r) || !r.manifest || !r.model) process.exit(1);
    const weights = o.checkpoint === undefined ? undefined : await bundleWeights(r.manifest, o.checkpoint);
    const files = await writeBundle(r.manifest, o.out, weights);
    process.stderr.write(`wrote ${files.length} files to ${o.out}\n`);
    if (o.dump) process.stdout.write(passes.dumpIR(r.model, r.manifest, o.dump, o.program));
    if (o.stats) process.stdout.write(`${await passes.stats(r.manifest, compile(file, undefined, { passes: [] }).manifest)}\n`);
  });

program
  .command('graph')
  .argument('<file>', 'a .dlm model')
  .requiredOption('-o, --out <file>', 'the drawing: .svg (Graphviz) or .dot')
  .option('--program <name>', 'init, train, evaluate, predict, ...', 'train')
  .option('--pass <pass>', 'draw the IR after this pass (lowered, fold, simplify, stability, split, fuse)', 'fuse')
  .description('draw a program\'s graph, with its fused kernels')
  .action(async (file: string, o: { out: string; program: string; pass: string }) => {
    const r = compile(modelFile(file));
    if (!report(r) || !r.manifest || !r.model) process.exit(1);
    await passes.writeGraph(r.model, r.manifest, o.out, o);
    process.stderr.write(`wrote ${o.out}\n`);
  });

program
  .command('train')
  .argument('<file>', 'a .dlm model')
  .requiredOption('--data <source>', "'mnist' or a .json/.csv file")
  .option('--test <file>', 'a test split to evaluate at the end')
  .option('--val-split <f>', 'hold out this fraction of the training data for validation after every epoch', fraction('--val-split'))
  .option('--backend <name>', 'auto | webgpu | cpu', 'auto')
  .option('--epochs <n>', 'override the train block (with --resume: the last epoch to train)', int('--epochs'))
  .option('--batch <n>', 'override the train block', positive('--batch'))
  .option('--seed <n>', 'override the train block', int('--seed'))
  .option('--save <ckpt>', 'write a checkpoint at the end of every epoch (atomically)')
  .option('--resume <ckpt>', 'continue the run a --save checkpoint holds, from its next epoch')
  .option('--curves <file.json>', 'write the per-epoch train and validation numbers')
  .option('--plot <file>', 'draw the learning curves (.svg or .png)')
  .option('--compare <optimizers>', 'train once per optimizer (e.g. adam,sgd,rmsprop) and plot their curves together')
  .option('--json', 'one JSON object per line on stdout')
  .description('train the model and evaluate it on the test split')
  .action(async (file: string, o: TrainOptions) => {
    if (!['auto', 'webgpu', 'cpu'].includes(o.backend)) throw new UserError(`--backend is auto, webgpu or cpu, not '${o.backend}'`);
    await train(file, o);
  });

program
  .command('fmt')
  .argument('<files...>', '.dlm files')
  .option('--check', 'write nothing; list the files that are not formatted and exit 1')
  .description('rewrite files in the canonical layout, keeping comments; never writes a file with syntax errors')
  .action(async (files: string[], o: { check?: boolean }) => {
    const { fmt } = await import('./fmt.ts');
    if (fmt(files, o) !== 0) process.exit(1);
  });

program
  .command('export')
  .argument('<file>', 'a .dlm model')
  .requiredOption('--onnx <file>', 'write the inference graph (the predict program) as an ONNX model, opset 18')
  .option('--checkpoint <ckpt>', 'the weights: a checkpoint of dlc train --save (default: the seed\'s initial weights)')
  .description('export the model with its weights, to run on ONNX Runtime')
  .action(async (file: string, o: { onnx: string; checkpoint?: string }) => {
    const { compileForExport, exportCommand } = await import('./export.ts');
    const r = compileForExport(modelFile(file));
    if (!report(r) || !r.manifest) process.exit(1);
    await exportCommand(r.manifest, o);
  });

program
  .command('gradcheck')
  .argument('<file>', 'a .dlm model')
  .option('--data <source>', "draw each batch from 'mnist' or a .json/.csv file (default: random inputs)")
  .option('--seed <n>', 'the first point\'s seed (default: the train block\'s)', int('--seed'))
  .option('--points <k>', 'random points (parameter initializations) to check', int('--points'), 2)
  .option('--batch <n>', 'examples per point', int('--batch'), 4)
  .option('--coords <n>', 'random coordinates per parameter tensor, besides one random direction', int('--coords'), 3)
  .option('--json', 'print one JSON object')
  .description('compare every parameter\'s gradient with finite differences in float64; exit 1 if one is wrong')
  .action(async (file: string, o: { data?: string; seed?: number; points: number; batch: number; coords: number; json?: boolean }) => {
    const { gradcheckCommand } = await import('./gradcheck.ts');
    if (gradcheckCommand(modelFile(file), o) !== 0) process.exit(1);
  });

try {
  await program.parseAsync();
  process.exit(0);
} catch (e) {
  if (e instanceof UserError || e instanceof DataError || e instanceof DlcInputError || e instanceof passes.PassUsageError) {
    process.stderr.write(`dlc: ${e.message}\n`);
    process.exit(1);
  }
  if (e instanceof DlcNumericError) {
    process.stderr.write(`\ndlc: training stopped: ${e.message}\n`);
    process.exit(1);
  }
  throw e;
}
