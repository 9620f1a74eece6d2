// `dlc export FILE --onnx OUT [--checkpoint CKPT]`: the model's inference graph (the predict
// program) as an ONNX model, with the checkpoint's weights, or the seed's initial ones.

import { compile, type Compiled } from '../compiler/compile.ts';
import { passes } from '../compiler/passes/pipeline.ts';
import { arg } from '../compiler/ir/build.ts';
import { toProgram } from '../compiler/ir/graph.ts';
import { OPSET, OnnxExportError, exportOnnx } from '../compiler/export/onnx.ts';
import type { Tensor } from '../compiler/ops/types.ts';
import { DlcInputError, Model } from '../runtime/model.ts';
import { cpuKernels } from '../runtime/cpu_kernels.ts';
import { runCpu } from '../runtime/cpu.ts';
import { argKey } from '../runtime/shapes.ts';
import type { Manifest } from '../runtime/program.ts';
import { CheckpointError, checkOutputPath, readCheckpointFile, writeFileAtomic } from './checkpoint.ts';
import { DataError } from './data.ts';

/** A program that cannot be exported: printed as one line, like every user mistake. */
export class ExportError extends DataError {}

/** The passes before those that shape kernels (`split`, `fuse`): ONNX gets primitive ops, with the
 *  algebraic and stability rewrites done. */
const beforeFusion = (() => {
  const at = passes.findIndex((p) => p.name === 'split' || p.name === 'fuse');
  return at < 0 ? passes : passes.slice(0, at);
})();

/** `file` compiled for export: every program made of primitive ops. */
export const compileForExport = (file: string): Compiled => compile(file, undefined, { passes: beforeFusion });

/** Parameters and state by `argKey`: from the init program with the train block's seed. */
export function initialWeights(m: Manifest): Record<string, Tensor> {
  return runCpu(m.programs.init, cpuKernels, { 'hyper:key': { data: new Int32Array([m.train.seed, 0]), shape: [2] } }, Float32Array).updates;
}

/** Parameters and state by `argKey`, from a checkpoint of `dlc train --save` or `Model.save()`.
 *  Model.restore checks that the checkpoint is this model's; the weights are then read back with
 *  a program whose outputs are its parameter and state arguments. */
export async function checkpointWeights(m: Manifest, path: string, bytes = readCheckpointFile(path)): Promise<Record<string, Tensor>> {
  const specs = [...m.params.map((s) => ({ role: 'param' as const, ...s })), ...m.state.map((s) => ({ role: 'state' as const, ...s }))];
  const readBack = toProgram({ outputs: specs.map((s) => ({ name: argKey(s), node: arg(s.role, s.name, s.shape, s.dtype) })), updates: [] });
  const model = await Model.create({ ...m, programs: { ...m.programs, predict: readBack } }, cpuKernels, { backend: 'cpu' });
  try {
    model.restore(bytes);
    return await model.predict({});
  } catch (e) {
    throw e instanceof DlcInputError ? new CheckpointError(`--checkpoint ${path}: ${e.message}`) : e;
  } finally {
    model.dispose();
  }
}

/** The .onnx bytes of `m`'s predict program and a line saying where the weights came from. */
export async function exportModel(m: Manifest, o: { checkpoint?: string; checkpointBytes?: Uint8Array } = {}): Promise<{ bytes: Uint8Array; weightsFrom: string }> {
  const weightsFrom = o.checkpoint ? `the weights of checkpoint ${o.checkpoint}` : `the initial weights of seed ${m.train.seed} (no --checkpoint: untrained)`;
  const weights = o.checkpoint ? await checkpointWeights(m, o.checkpoint, o.checkpointBytes) : initialWeights(m);
  try {
    const bytes = exportOnnx(m.programs.predict, { name: m.model, weights, doc: `${m.model}: the predict program of dlc with ${weightsFrom}` });
    return { bytes, weightsFrom };
  } catch (e) {
    if (e instanceof OnnxExportError) throw new ExportError(e.message);
    throw e;
  }
}

/** `dlc export`: `m` compiled by compileForExport. */
export async function exportCommand(m: Manifest, o: { onnx: string; checkpoint?: string }): Promise<void> {
  checkOutputPath('--onnx', o.onnx);
  const { bytes, weightsFrom } = await exportModel(m, o);
  writeFileAtomic(o.onnx, bytes);
  process.stderr.write(`wrote ${o.onnx} (ONNX opset ${OPSET}, ${(bytes.length / 1024).toFixed(0)} KiB): ${m.model}'s predict program with ${weightsFrom}\n`);
}
