// The entry point of a compiled bundle's model.js: the runtime with this model's manifest and CPU
// kernels built in. `dlc:manifest` (packed) and `dlc:kernels` are made by the bundler
// (compiler/codegen/bundle.ts).

import packed from 'dlc:manifest';
import kernels from 'dlc:kernels';
import { unpackManifest, type PackedManifest } from './packed.ts';
import { Model, type ModelOptions } from './model.ts';

export { Model, DlcInputError, DlcNumericError } from './model.ts';

const { w } = packed as PackedManifest;
export const spec = unpackManifest(packed as PackedManifest);

/** A model on WebGPU or the CPU; with the bundle's weights file, if it was compiled with one,
 *  unless `opts.weights` gives others (or null: none). */
export function createModel(opts: ModelOptions = {}): Promise<Model> {
  return Model.create(spec, kernels, { ...opts, weights: opts.weights === undefined && w ? new URL(w, import.meta.url) : opts.weights });
}
