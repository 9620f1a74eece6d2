// The entry point of a compiled bundle's model.js: the runtime with this model's manifest and CPU
// kernels built in. `dlc:manifest` and `dlc:kernels` are made by the bundler (compiler/codegen/bundle.ts).

import manifest from 'dlc:manifest';
import * as kernels from 'dlc:kernels';
import type { Manifest } from './program.ts';
import { Model, type ModelOptions } from './model.ts';

export { Model, DlcInputError } from './model.ts';
export const spec = manifest as Manifest;

export function createModel(opts: ModelOptions = {}): Promise<Model> {
  return Model.create(spec, kernels, opts);
}
