// Work split for parallelism: a kernel runs one thread per result (or per tile of results), so a
// reduction over many values into few results runs on a handful of threads while the rest of the
// device idles. On SwiftShader a workgroup of 64 threads runs on one core, so a convolution's bias
// gradient (6 sums of 64×28×28 values) ran on one core, one thread per channel. Such a reduction
// runs in two stages here: first over all but its outermost reduced axis (one thread per image and
// channel), then over that axis, a short reduction the fusion pass folds into its reader (the
// optimizer update).
//
//   reduce(x, [a0, a1, ...])  →  reduce(reduce(x, [a1, ...]), [a0])     (sum, mean, max, min)
//
// Each is exact but for the order of a sum's additions (a mean's stages average equal counts).
//
// A convolution's filter gradient is such a reduction too (over the batch and the output pixels,
// into a small filter: LeNet-5's first layer has 150 values, 25 threads), so it is computed per
// chunk of the batch and the chunks summed, a short sum that folds into the optimizer update:
//
//   conv2d_backprop_filter(x, dy)  →  sum(conv2d_backprop_filter(x, dy, splits: S), [0])

import * as b from '../ir/build.ts';
import { staticSize, type Node } from '../ir/node.ts';
import type { ReduceKind } from '../ops/registry.ts';
import type { ConvOpts } from '../ops/conv.ts';
import { rewriteGraph, rule } from './rewrite.ts';
import { reduceRoot } from './fuse.ts';
import type { Pass } from './pipeline.ts';

/** At most this many results: fewer threads than a few workgroups' worth. */
const FEW = 1024;
/** At least this many values per result (a symbolic outermost axis, the batch, counted as BATCH)
 *  before splitting: below, one thread sums them about as fast as two kernels do. */
const MANY = 4096;
const BATCH = 64;

/** A reduction (dims kept, as simplification leaves them) over two or more axes, the inner ones
 *  static, of at least MANY values per result into at most FEW results. */
function worthSplitting(n: Node): boolean {
  if (!reduceRoot(n)) return false;
  const [a0, ...inner] = n.attrs.axes as number[];
  const x = n.inputs[0];
  const count = staticSize(inner.map((a) => x.shape[a]));
  const outer = typeof x.shape[a0] === 'number' ? (x.shape[a0] as number) : BATCH;
  return inner.length > 0 && count !== undefined && count * outer >= MANY && (staticSize(n.shape) ?? Infinity) <= FEW;
}

/** Filter gradients of at most this many values are split into SPLITS chunks of the batch (on
 *  SwiftShader, LeNet-5's two layers, 150 and 2,400 values at batch 64: 33 → 22 ms and 23 → 17–20
 *  ms with 8 or 16 chunks; more chunks bought nothing). */
const SMALL_FILTER = 4096;
const SPLITS = 16;

export const split: Pass = {
  name: 'split',
  description: 'reductions of many values into few results (and small filter gradients) in two stages, for threads to share the work',
  run: (g) =>
    rewriteGraph(g, [
      rule('split-reduction', worthSplitting, (n) => {
        const [a0, ...inner] = n.attrs.axes as number[];
        return b.reduce(n.op as ReduceKind, b.reduce(n.op as ReduceKind, n.inputs[0], inner, true), [a0], true);
      }),
      rule('split-filter-gradient', (n) => n.op === 'conv2d_backprop_filter' && n.attrs.splits === undefined && (staticSize(n.shape) ?? Infinity) <= SMALL_FILTER, (n) => {
        const [x, dy] = n.inputs;
        const parts = b.conv2dBackpropFilter(x, dy, n.attrs as ConvOpts, n.attrs.filterSize as number[], SPLITS);
        return b.reshape(b.sum(parts, [0], true), n.shape);
      }),
    ]),
};
