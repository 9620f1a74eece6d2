// The op table. Each family file exports a record of its ops; the `satisfies` clause makes a
// missing op (or a missing field of one) a type error. The table is built on first use: op files
// import the IR builders, which import this file, so building it at load time would read op
// records that are not initialized yet when an op file happens to be imported first.

import type { OpDef } from './types.ts';
import { leafOps } from './leaf.ts';
import { elementwiseOps } from './elementwise.ts';
import { reduceOps } from './reduce.ts';
import { matmulOps } from './matmul.ts';
import { shapeOps } from './shape.ts';
import { gatherOps } from './gather.ts';
import { randomOps } from './random.ts';
import { convOps } from './conv.ts';
import { poolOps } from './pool.ts';
import { fusedOps } from './fused.ts';

export type UnaryKind = 'neg' | 'exp' | 'log' | 'sqrt' | 'abs' | 'sin' | 'cos' | 'floor' | 'sign' | 'not' | 'cast';
export type BinaryKind =
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'max' | 'min'
  | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'and' | 'or';
export type ReduceKind = 'sum' | 'mean' | 'reduce_max' | 'reduce_min';

export type OpKind =
  | 'arg' | 'const' | 'iota' | 'size'
  | UnaryKind | BinaryKind | 'select'
  | ReduceKind | 'argmax'
  | 'matmul'
  | 'reshape' | 'transpose' | 'broadcast' | 'slice' | 'concat' | 'stop_gradient'
  | 'take'
  | 'rand'
  | 'conv2d' | 'conv2d_backprop_input' | 'conv2d_backprop_filter'
  | 'max_pool2d' | 'max_pool2d_backprop' | 'max_pool2d_gather' | 'avg_pool2d' | 'avg_pool2d_backprop'
  | 'fused';

let table: Record<OpKind, OpDef> | undefined;

export function ops(): Record<OpKind, OpDef> {
  return (table ??= {
    ...leafOps,
    ...elementwiseOps,
    ...reduceOps,
    ...matmulOps,
    ...shapeOps,
    ...gatherOps,
    ...randomOps,
    ...convOps,
    ...poolOps,
    ...fusedOps,
  } satisfies Record<OpKind, OpDef>);
}
