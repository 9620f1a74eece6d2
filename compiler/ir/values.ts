// The values the lowering evaluator works with. A .dlm expression evaluates at compile time to a
// number, a boolean, a string, a shape, a callable, or a tensor: an IR node plus the span it came
// from (so a shape error can say where each operand was made).

import type { Span } from '../diagnostics.ts';
import type * as A from '../ast/nodes.ts';
import type { Dim, Node } from './node.ts';

export type Value =
  | { kind: 'tensor'; node: Node; origin: Span }
  | { kind: 'num'; value: number; int: boolean }
  | { kind: 'bool'; value: boolean }
  | { kind: 'str'; value: string }
  | { kind: 'shape'; dims: Dim[] }
  | { kind: 'list'; items: Value[] }
  | { kind: 'callable'; callable: Callable };

export type Callable =
  | { kind: 'fn'; decl: A.FnDecl }
  | { kind: 'layer'; decl: A.LayerDecl }
  | { kind: 'builtin'; name: string; builtin: Builtin }
  /** A fn called with named arguments only, before its required ones: `random_normal(std: 0.02)`. */
  | { kind: 'partial'; fn: { kind: 'fn'; decl: A.FnDecl }; args: ArgValue[] };

/** An argument after evaluation, positional or named. */
export interface ArgValue {
  name?: string;
  value: Value;
  span: Span;
}

/** Builtins get evaluated arguments and the lowering context's services. */
export interface Builtin {
  /** Formal names in order; a trailing `...` would not be needed so far. */
  params: readonly string[];
  /** Defaults for optional formals. */
  defaults?: Readonly<Record<string, Value>>;
  /** A Node result becomes a tensor value whose origin is the call. */
  call(args: Readonly<Record<string, Value>>, ctx: BuiltinCtx, span: Span): Value | Node;
}

export interface BuiltinCtx {
  /** A fresh salt for each random draw, so two draws never merge. */
  salt(): number;
  /** The random key argument of the graph being built. */
  key(): Node;
  tensor(v: Value, span: Span): Node;
  /** Two operands as tensors of one dtype (a number takes the other operand's dtype). */
  pair(a: Value, b: Value, span: Span): [Node, Node];
  int(v: Value, span: Span, what: string): number;
}

export const num = (value: number, int = Number.isInteger(value)): Value => ({ kind: 'num', value, int });

export function describe(v: Value): string {
  switch (v.kind) {
    case 'tensor':
      return `a tensor ${v.node.dtype}[${v.node.shape.join(', ')}]`;
    case 'num':
      return v.int ? 'an int' : 'a float';
    case 'bool':
      return 'a bool';
    case 'str':
      return 'a string';
    case 'shape':
      return 'a shape';
    case 'list':
      return 'a list';
    case 'callable': {
      const c = v.callable;
      if (c.kind === 'partial') return `the fn ${c.fn.decl.name.name} with ${c.args.map((a) => `${a.name}:`).join(', ')} given (still missing its other arguments)`;
      return `the ${c.kind} ${c.kind === 'builtin' ? c.name : c.decl.name.name}`;
    }
  }
}
