// The entry point of a compiled bundle's model.js: the runtime with this model's manifest built in.
// `dlc:manifest` is supplied by the bundler (compiler/codegen/bundle.ts).

import manifest from 'dlc:manifest';
import type { Manifest } from './program.ts';
import { Model, type ModelOptions } from './model.ts';
import { cpuKernels } from './cpu_kernels.ts';

export { Model, DlcInputError } from './model.ts';
export const spec = manifest as Manifest;

export function createModel(opts: ModelOptions = {}): Promise<Model> {
  return Model.create(spec, cpuKernels, opts);
}
