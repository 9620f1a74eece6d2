// The graph IR: immutable, hash-consed nodes. Building the same node twice returns the same object,
// so common subexpressions merge as they are made. A node's shape and dtype come from its op's
// shape rule in the registry, checked at construction.

import { ops, type OpKind } from '../ops/registry.ts';

export type DType = 'f32' | 'i32' | 'bool';
/** A dimension: a number, or a symbolic name bound at run time (the batch size `B`). */
export type Dim = number | string;
export type Shape = readonly Dim[];
export type AttrValue = number | string | boolean | null | readonly (number | string)[];
export type Attrs = Readonly<Record<string, AttrValue>>;

export interface Node {
  readonly id: number;
  readonly op: OpKind;
  readonly inputs: readonly Node[];
  readonly attrs: Attrs;
  readonly shape: Shape;
  readonly dtype: DType;
}

/** A shape rule's complaint; lowering turns it into a diagnostic with spans. */
export class ShapeError extends Error {}

const table = new Map<string, Node>();
let nextId = 0;

function canonical(attrs: Attrs): string {
  return JSON.stringify(Object.keys(attrs).sort().map((k) => [k, attrs[k]]));
}

export function make(op: OpKind, inputs: readonly Node[], attrs: Attrs = {}): Node {
  const key = `${op}|${canonical(attrs)}|${inputs.map((n) => n.id).join(',')}`;
  const hit = table.get(key);
  if (hit) return hit;
  const { shape, dtype } = ops()[op].shape(inputs, attrs);
  const node: Node = Object.freeze({ id: nextId++, op, inputs: Object.freeze([...inputs]), attrs, shape: Object.freeze([...shape]), dtype });
  table.set(key, node);
  return node;
}

// ---------- shape helpers shared by shape rules, lowering and runtime-independent passes ----------

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function typeStr(n: { dtype: DType; shape: Shape }): string {
  return `${n.dtype}${shapeStr(n.shape)}`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** NumPy broadcasting with symbolic dims: equal names match, 1 stretches, anything else fails. */
export function broadcastShapes(shapes: readonly Shape[]): Shape {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const e = s[s.length - rank + i] ?? 1;
      if (e === 1 || e === d) continue;
      if (d === 1) d = e;
      else throw new ShapeError(`cannot broadcast ${shapes.map(shapeStr).join(' with ')}: dimension ${d} vs ${e}`);
    }
    out.push(d);
  }
  return out;
}

export function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Static element count, or undefined when a dim is symbolic. */
export function staticSize(shape: Shape): number | undefined {
  let n = 1;
  for (const d of shape) {
    if (typeof d !== 'number') return undefined;
    n *= d;
  }
  return n;
}
