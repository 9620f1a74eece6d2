// The primitives as .dlm sees them. Everything else (activations, losses, layers, optimizers,
// initializers) is written in .dlm in stdlib/ on top of these.

import { DiagnosticError, error, type Span } from '../diagnostics.ts';
import * as ir from './build.ts';
import { ShapeError, normAxis, type Dim, type Node } from './node.ts';
import { describe, num, type Builtin, type BuiltinCtx, type Value } from './values.ts';
import { convPadding } from '../ops/conv.ts';

const none: Value = { kind: 'list', items: [] };

function fail(span: Span, message: string): never {
  throw new DiagnosticError(error('E0203', message, span));
}

function axesOf(v: Value, x: Node, ctx: BuiltinCtx, span: Span): number[] {
  if (v.kind === 'list' && v.items.length === 0) return ir.allAxes(x);
  const items = v.kind === 'list' ? v.items : [v];
  try {
    return items.map((a) => normAxis(ctx.int(a, span, 'axis'), x.shape.length));
  } catch (e) {
    if (e instanceof ShapeError) fail(span, e.message);
    throw e;
  }
}

function shapeOf(v: Value, span: Span): Dim[] {
  if (v.kind === 'shape') return v.dims;
  if (v.kind === 'list' && v.items.every((i) => i.kind === 'num' && i.int)) return v.items.map((i) => (i as { value: number }).value);
  fail(span, `expected a shape, found ${describe(v)}`);
}

const float = (x: Node) => (x.dtype === 'f32' ? x : ir.cast(x, 'f32'));

function unaryMath(f: (x: Node) => Node, host: (x: number) => number): Builtin {
  return {
    params: ['x'],
    call: ({ x }, ctx, span) => (x.kind === 'num' ? num(host(x.value), false) : f(float(ctx.tensor(x, span)))),
  };
}

/** max/min: elementwise with two operands, a reduction with one. */
function extremum(op: 'max' | 'min'): Builtin {
  return {
    params: ['x', 'y', 'axis', 'keepdims'],
    defaults: { y: none, axis: none, keepdims: { kind: 'bool', value: false } },
    call: ({ x, y, axis, keepdims }, ctx, span) => {
      if (!(y.kind === 'list' && y.items.length === 0)) {
        if (x.kind === 'num' && y.kind === 'num') return num(Math[op](x.value, y.value), x.int && y.int);
        const [a, b] = ctx.pair(x, y, span);
        return op === 'max' ? ir.max(a, b) : ir.min(a, b);
      }
      const t = ctx.tensor(x, span);
      return ir.reduce(op === 'max' ? 'reduce_max' : 'reduce_min', t, axesOf(axis, t, ctx, span), keepdims.kind === 'bool' && keepdims.value);
    },
  };
}

function reduction(op: 'sum' | 'mean'): Builtin {
  return {
    params: ['x', 'axis', 'keepdims'],
    defaults: { axis: none, keepdims: { kind: 'bool', value: false } },
    call: ({ x, axis, keepdims }, ctx, span) => {
      const t = float(ctx.tensor(x, span));
      return ir.reduce(op, t, axesOf(axis, t, ctx, span), keepdims.kind === 'bool' && keepdims.value);
    },
  };
}

/** An int or a list of `n` ints: `2` means [2, 2]. */
function ints(v: Value, n: number, ctx: BuiltinCtx, span: Span, what: string): number[] {
  if (v.kind === 'list') {
    if (v.items.length !== n) fail(span, `${what} takes one integer or a list of ${n}`);
    return v.items.map((i) => ctx.int(i, span, what));
  }
  return Array(n).fill(ctx.int(v, span, what));
}

/** "same", "valid", an int, [height, width] or [top, bottom, left, right]. */
function padding(v: Value, x: Node, window: number[], strides: number[], dilations: number[], ctx: BuiltinCtx, span: Span): number[] {
  if (v.kind === 'str') {
    if (v.value !== 'same' && v.value !== 'valid') fail(span, `padding is "same", "valid" or numbers, not "${v.value}"`);
    const [, h, w] = x.shape;
    if (typeof h !== 'number' || typeof w !== 'number') fail(span, `"${v.value}" padding needs the image size known at compile time, found [${x.shape.join(', ')}]`);
    return convPadding(v.value as 'same' | 'valid', h as number, w as number, window[0], window[1], strides, dilations);
  }
  if (v.kind === 'list' && v.items.length === 4) return ints(v, 4, ctx, span, 'padding');
  const [ph, pw] = ints(v, 2, ctx, span, 'padding');
  return [ph, ph, pw, pw];
}

function pooling(make: typeof ir.maxPool2d): Builtin {
  return {
    params: ['x', 'window', 'strides', 'padding'],
    defaults: { window: num(2), strides: none, padding: { kind: 'str', value: 'valid' } },
    call: ({ x, window, strides, padding: pad }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const w = ints(window, 2, ctx, span, 'window');
      const s = strides.kind === 'list' && strides.items.length === 0 ? w : ints(strides, 2, ctx, span, 'strides');
      return make(t, { window: w, strides: s, padding: padding(pad, t, w, s, [1, 1], ctx, span) });
    },
  };
}

export const builtins: Record<string, Builtin> = {
  /** NHWC convolution of x [B, H, W, C] with w [KH, KW, C / groups, F]. */
  conv: {
    params: ['x', 'w', 'strides', 'padding', 'dilations', 'groups'],
    defaults: { strides: num(1), padding: { kind: 'str', value: 'valid' }, dilations: num(1), groups: num(1) },
    call: ({ x, w, strides, padding: pad, dilations, groups }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const k = ctx.tensor(w, span);
      const s = ints(strides, 2, ctx, span, 'strides');
      const d = ints(dilations, 2, ctx, span, 'dilations');
      const window = k.shape.slice(0, 2).map((n) => (typeof n === 'number' ? n : 1));
      return ir.conv2d(t, k, { strides: s, dilations: d, groups: ctx.int(groups, span, 'groups'), padding: padding(pad, t, window, s, d, ctx, span) });
    },
  },
  max_pool2d: pooling(ir.maxPool2d),
  avg_pool2d: pooling(ir.avgPool2d),
  exp: unaryMath(ir.exp, Math.exp),
  log: unaryMath(ir.log, Math.log),
  sqrt: unaryMath(ir.sqrt, Math.sqrt),
  abs: unaryMath(ir.abs, Math.abs),
  sin: unaryMath(ir.sin, Math.sin),
  cos: unaryMath(ir.cos, Math.cos),
  floor: unaryMath(ir.floor, Math.floor),
  sign: unaryMath(ir.sign, Math.sign),
  max: extremum('max'),
  min: extremum('min'),
  sum: reduction('sum'),
  mean: reduction('mean'),
  argmax: {
    params: ['x', 'axis'],
    defaults: { axis: num(-1) },
    call: ({ x, axis }, ctx, span) => {
      const t = ctx.tensor(x, span);
      return ir.argmax(t, axesOf(axis, t, ctx, span)[0]);
    },
  },
  /** x, but gradients stop here: autodiff treats it as a constant. */
  stop_gradient: { params: ['x'], call: ({ x }, ctx, span) => ir.stopGradient(ctx.tensor(x, span)) },
  /** Convert to f32 (bools become 0/1). */
  float: { params: ['x'], call: ({ x }, ctx, span) => float(ctx.tensor(x, span)) },
  /** Convert to i32 (truncating). */
  int: { params: ['x'], call: ({ x }, ctx, span) => ir.cast(ctx.tensor(x, span), 'i32') },
  shape: { params: ['x'], call: ({ x }, ctx, span) => ({ kind: 'shape', dims: [...ctx.tensor(x, span).shape] }) },
  reshape: {
    params: ['x', 'shape'],
    call: ({ x, shape }, ctx, span) => ir.reshape(ctx.tensor(x, span), shapeOf(shape, span)),
  },
  transpose: {
    params: ['x', 'perm'],
    defaults: { perm: none },
    call: ({ x, perm }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const p = perm.kind === 'list' && perm.items.length === 0 ? t.shape.map((_, i) => t.shape.length - 1 - i) : shapeOf(perm, span).map(Number);
      return ir.transpose(t, p);
    },
  },
  /** x with a new axis of size 1 at `axis`. */
  expand_dims: {
    params: ['x', 'axis'],
    call: ({ x, axis }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const r = t.shape.length + 1;
      const a = ctx.int(axis, span, 'axis');
      const at = a < 0 ? a + r : a;
      if (at < 0 || at >= r) fail(span, `axis ${a} is out of range for a result of rank ${r}`);
      return ir.reshape(t, [...t.shape.slice(0, at), 1, ...t.shape.slice(at)]);
    },
  },
  /** Every axis but the last (the axes batch statistics average over). */
  leading_axes: {
    params: ['x'],
    call: ({ x }, ctx, span) => ({ kind: 'list', items: ctx.tensor(x, span).shape.slice(0, -1).map((_, i) => num(i, true)) }),
  },
  /** [d0, d1, ...] to [d0, d1 * ...]: the trailing dims must be known at compile time. */
  flatten: {
    params: ['x'],
    call: ({ x }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const rest = t.shape.slice(1);
      if (rest.some((d) => typeof d !== 'number')) fail(span, `flatten needs the dims after the first known at compile time, found [${t.shape.join(', ')}]`);
      return ir.reshape(t, [t.shape[0] ?? 1, (rest as number[]).reduce((a, b) => a * b, 1)]);
    },
  },
  /** Tensors joined along an axis: concat([a, b], axis: -1). */
  concat: {
    params: ['xs', 'axis'],
    defaults: { axis: num(-1) },
    call: ({ xs, axis }, ctx, span) => {
      if (xs.kind !== 'list' || xs.items.length === 0) fail(span, `concat takes a list of tensors, like concat([a, b], axis: -1)`);
      const ts = (xs as { items: Value[] }).items.map((v) => ctx.tensor(v, span));
      return ir.concat(ts, axesOf(axis, ts[0], ctx, span)[0]);
    },
  },
  /** A tensor of `shape` filled with `value`. */
  fill: {
    params: ['shape', 'value'],
    call: ({ shape, value }, ctx, span) => ir.broadcast(ctx.tensor(value, span), shapeOf(shape, span)),
  },
  /** Uniform random numbers in [0, 1): a fresh, deterministic stream at every call. */
  uniform: {
    params: ['shape'],
    call: ({ shape }, ctx, span) => ir.rand(ctx.key(), shapeOf(shape, span), ctx.salt()),
  },
  /** The entry of x's last axis picked by each label: integer labels, or one-hot rows. */
  pick: {
    params: ['x', 'labels'],
    call: ({ x, labels }, ctx, span) => {
      const t = ctx.tensor(x, span);
      const l = ctx.tensor(labels, span);
      if (l.dtype === 'f32') return ir.sum(ir.mul(t, l), [t.shape.length - 1]);
      return ir.take(t, l);
    },
  },
  /** Rows of 0/1 with a 1 at each label. */
  one_hot: {
    params: ['labels', 'n'],
    call: ({ labels, n }, ctx, span) => {
      const l = ctx.tensor(labels, span);
      const shape = [...l.shape, ctx.int(n, span, 'n')];
      return ir.cast(ir.binary('eq', ir.iota(shape, shape.length - 1), ir.reshape(l, [...l.shape, 1])), 'f32');
    },
  },
};
