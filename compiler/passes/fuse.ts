// Elementwise fusion: maximal trees of elementwise ops (the elementwise table with select and
// cast, plus broadcast and reshapes that only add or drop dims of size 1, which are the identity
// inside a fused kernel, and size) become one `fused` node each (ops/fused.ts): one kernel instead
// of one per op. A reduction (sum, mean, max, min) takes its elementwise producers into its loads
// the same way (a fused node with `reduce`).
//
// Groups are made consumers first (reverse topological order). A node joins the group of its
// users when all of them are in that one group and it is not a result of the graph; otherwise it is
// materialized and starts a group of its own. A node of one element (1 - beta1^t, the batch size)
// whose users are all in groups joins every one of them: recomputing it is free (the CPU kernel
// computes lines over size-1 values once, before its loop), and no kernel runs for it. Cheap
// arithmetic on one big tensor (plus small ones: a bias) whose users are in several groups is
// computed again in each (`recomputable`): that reads the big tensor in each group instead of its
// result, the same traffic, one kernel less. Nothing else is computed twice. Scalar constants become
// literals of the program. A group takes at most MAX_FUSED_INPUTS inputs besides scalar
// hyperparameters (read from a uniform: `unbound`).
//
// A matmul or convolution whose every reader is in one group, at the group's own coordinates (the
// group computes the product's shape: a bias add and activation after a dense or conv layer, the
// relu mask applied to the gradient dy·Wᵀ), becomes that group's source: the group is the
// epilogue of its kernel, which then reads the operands instead of its stored product. A product
// read by two groups (a pre-activation the backward pass reads too) is stored, as before
// (codegen/merge.ts may still run the group in its kernel).
//
// A reduction whose readers are all groups computed over its own output's shape (a bias
// gradient, the batch sum of dy, read by the optimizer's m and v updates) folds into them when it
// reduces few values (FOLD): each of their threads loops over its own reduced values (a reduction
// line, ops/fused.ts), so the reduction runs no kernel of its own. So does a reduction over a
// short static row (ROW) into readers computed over its input's shape (a softmax's row max into
// `exp(x - max)`): each element's thread reduces its row. An argmax (an accuracy's predicted class)
// and a take (a row's entry: the label's logit) fold like reductions of their rows. Only a
// reduction of a value stored anyway folds (else its producers are better fused into its loads).
//
// A fused node has one output: an optimizer's new m, v and p are three nodes (p reads the new m
// and v); codegen/merge.ts computes such neighbours in one kernel.

import * as b from '../ir/build.ts';
import { make, sameShape, staticSize, type Dim, type Node, type Shape } from '../ir/node.ts';
import { roots, topo, type Graph } from '../ir/graph.ts';
import { mark, provenance } from '../ir/provenance.ts';
import { MAX_FUSED_INPUTS, literalOperand, unbound, sizeOp, type FusedReduction } from '../ops/fused.ts';
import { isElementwise } from './simplify.ts';
import type { Pass } from './pipeline.ts';

/** A reshape that only inserts or removes dims of size 1 keeps the row-major order of the values:
 *  inside a fused kernel it is the identity, read at other coordinates (see `operandView`). */
export function unitReshape(n: Node): boolean {
  if (n.op !== 'reshape') return false;
  const squeeze = (s: Shape) => s.filter((d) => d !== 1);
  const [p, q] = [squeeze(n.inputs[0].shape), squeeze(n.shape)];
  return p.length === q.length && p.every((d, k) => d === q[k]);
}

const fusible = (n: Node): boolean => isElementwise(n) || n.op === 'broadcast' || n.op === 'size' || n.op === 'iota' || unitReshape(n);

/** A constant written into the program as a literal (one value, any shape: it broadcasts). */
const isLiteral = (n: Node): boolean => n.op === 'const' && typeof n.attrs.value === 'number';

/** One element: recomputing it anywhere is free, and it reads the same at every coordinate. */
const cheap = (n: Node): boolean => staticSize(n.shape) === 1;

/** Tensors of at most this many elements (a bias) are small: reading them again costs little. So
 *  is a short row's reduction (a softmax's row max): it folds into its readers' threads. */
const SMALL = 4096;
const small = (n: Node): boolean => (staticSize(n.shape) ?? Infinity) <= SMALL || (reduceRoot(n) && shortRow(n));

/** Cheap arithmetic (and exp: a softmax's numerator, read by its row sum and by its quotient or
 *  gradient) over at most one big tensor (the other operands small: a bias, a scalar):
 *  computing it again in each of its users' kernels reads that tensor once per kernel instead of
 *  reading its own output once per kernel, so recomputing it costs no memory traffic and saves its
 *  kernel (the bias add before a relu, whose gradient reads it too). */
const RECOMPUTE = new Set(['add', 'sub', 'mul', 'div', 'neg', 'abs', 'max', 'min', 'sign', 'floor', 'select', 'cast', 'not', 'and', 'or', 'eq', 'ne', 'lt', 'le', 'gt', 'ge', 'broadcast', 'reshape', 'iota', 'exp']);
const recomputable = (n: Node): boolean => RECOMPUTE.has(n.op) && n.inputs.filter((i) => !isLiteral(i) && !small(i)).length <= 1;

/**
 * Inside a fused kernel every value is read at the output coordinates through its *view*: its
 * shape with dims of size 1 inserted or removed so that it lines up with the output (right-aligned
 * broadcasting). A view is the node's own shape unless a unit reshape lies between it and the
 * output ([B] read as [B, 1] against [B, 10]). This is the view of operand `x` of `m` when m is
 * read through `vm`.
 */
function operandView(m: Node, x: Node, vm: Shape): Shape {
  if (m.op === 'reshape') return vm;
  // the domain of a fused reduction, or a folded one's input (a take's rows)
  if (reduceRoot(m) || m.op === 'argmax' || (m.op === 'take' && x === m.inputs[0])) return x.shape;
  const a = [...new Array<Dim>(m.shape.length - x.shape.length).fill(1), ...x.shape];
  const p = m.shape.flatMap((d, k) => (d === 1 ? [] : [k]));
  let j = 0;
  return vm.map((d) => (d === 1 ? 1 : a[p[j++]]));
}

/** A reduction whose elementwise producers fuse into its loads (reductions keep their dims after
 *  simplification; the reshape that drops them is an alias). */
const REDUCE = new Set(['sum', 'mean', 'reduce_max', 'reduce_min']);
export const reduceRoot = (n: Node): boolean => REDUCE.has(n.op) && n.attrs.keepdims === true;

/** A reduction of at most this many values per result folds into its readers' threads; a symbolic
 *  dim counts as small (the batch: a step's batch bounds it). */
const FOLD = 1024;
const foldable = (n: Node): boolean => reducedAxes(n).reduce((s, a) => s * (typeof n.inputs[0].shape[a] === 'number' ? (n.inputs[0].shape[a] as number) : 1), 1) <= FOLD;
/** A reduction over at most this many values (all static) folds into readers of its input's
 *  shape, each element's thread reducing its whole row. */
const ROW = 64;
const shortRow = (n: Node): boolean => (staticSize(reducedAxes(n).map((a) => n.inputs[0].shape[a])) ?? Infinity) <= ROW;
/** A reduction's axes (argmax's one axis; a take's rows). */
const reducedAxes = (n: Node): number[] => (n.op === 'argmax' ? [n.attrs.axis as number] : n.op === 'take' ? [n.inputs[0].shape.length - 1] : (n.attrs.axes as number[]));

/** A shape without its leading 1s. */
const lead = (s: Shape): Shape => s.slice(Math.max(0, s.findIndex((d) => d !== 1)));

const key = (n: Node, view: Shape): string => `${n.id}|${cheap(n) ? '*' : view.join(',')}`;

interface Group {
  root: Node;
  /** The shape its values are computed over: the root's, or a reduction's operand's. */
  domain: Shape;
  members: Set<Node>;
  /** Each member's view. */
  views: Map<Node, Shape>;
  /** The (node, view) pairs the members read that are not members: the fused node's inputs. */
  frontier: Map<string, Node>;
  /** The matmul or conv2d whose epilogue the group is (read as its `i0`; its two operands are inputs). */
  source?: Node;
}

/** The inputs a group's fused node has: a source's product is two (its operands) instead of one. */
const inputCount = (gr: Group, frontier = gr.frontier): number => [...frontier.values()].filter((x) => !unbound(x)).length + (gr.source ? 1 : 0);

/** The fused groups of `g`'s nodes (each node's groups; roots of a group map to their own). */
export function fusionGroups(g: Graph): { order: Node[]; groupsOf: Map<Node, Group[]>; sources: Set<Node> } {
  const order = topo(roots(g));
  const results = new Set(roots(g));
  const users = new Map<Node, Node[]>();
  for (const n of order)
    for (const i of new Set(n.inputs)) {
      const list = users.get(i);
      if (list) list.push(n);
      else users.set(i, [n]);
    }
  const groupsOf = new Map<Node, Group[]>();
  const operands = (n: Node) => n.inputs.filter((i) => !isLiteral(i));
  const reads = (n: Node, view: Shape, gr: Group | undefined): Map<string, Node> => {
    const f = new Map<string, Node>();
    for (const i of operands(n)) if (!gr?.members.has(i)) f.set(key(i, operandView(n, i, view)), i);
    return f;
  };

  /** n's view in `gr`, if its users there agree on one. */
  const viewIn = (gr: Group, n: Node): Shape | undefined => {
    let view: Shape | undefined;
    for (const u of users.get(n)!) {
      const vu = gr.views.get(u);
      if (!vu) continue;
      const v = operandView(u, n, vu);
      if (view && !cheap(n) && !sameShape(view, v)) return undefined;
      view ??= v;
    }
    return view;
  };

  const sources = new Set<Node>();
  /** Makes matmul or conv2d `n` the source of the one group all its readers are in, if it can be. */
  const absorb = (n: Node): void => {
    const us = users.get(n) ?? [];
    if (results.has(n) || !us.length || !us.every((u) => groupsOf.has(u))) return;
    const gs = new Set(us.flatMap((u) => groupsOf.get(u)!));
    const gr = [...gs][0];
    // (an epilogue has no folded reductions or takes: they read other coordinates than the tile's)
    if (gs.size > 1 || gr.source || reduceRoot(gr.root) || [...gr.members].some((m) => folded.has(m)) || !sameShape(gr.domain, n.shape)) return;
    const keys = [...gr.frontier].filter(([, x]) => x === n).map(([kk]) => kk);
    if (keys.length !== 1 || keys[0] !== key(n, n.shape) || inputCount(gr) + 1 > MAX_FUSED_INPUTS) return;
    gr.source = n;
    sources.add(n);
  };

  /** `gr`'s frontier with `n` a member read at `view` (n's operands read instead of n), if the
   *  group can still bind it. */
  const frontierWith = (gr: Group, n: Node, view: Shape): Map<string, Node> | undefined => {
    const f = new Map(gr.frontier);
    f.delete(key(n, view));
    for (const [kk, x] of reads(n, view, gr)) f.set(kk, x);
    return inputCount(gr, f) > MAX_FUSED_INPUTS ? undefined : f;
  };

  /** Makes `n` a member of each planned group, read there at its view, with the group's new frontier. */
  const enter = (n: Node, plans: [Group, Shape, Map<string, Node>][]): void => {
    for (const [gr, view, f] of plans) {
      gr.members.add(n);
      gr.views.set(n, view);
      gr.frontier = f;
    }
    groupsOf.set(n, plans.map(([gr]) => gr));
  };

  /** Folds reduction `n` into every group that reads it, if it can be (see FOLD). */
  const folded = new Set<Node>();
  const fold = (n: Node): boolean => {
    const us = users.get(n) ?? [];
    const x = n.inputs[0];
    // only an input stored anyway (read by a matmul, say): else its producers fuse into the reduction
    const stored = !fusible(x) || results.has(x) || users.get(x)!.some((u) => !fusible(u) && !reduceRoot(u));
    if (!stored || results.has(n) || !us.length || !us.every((u) => groupsOf.has(u)) || !foldable(n)) return false;
    const left = x.shape.filter((_, a) => !reducedAxes(n).includes(a));
    const plans: [Group, Shape, Map<string, Node>][] = [];
    for (const gr of new Set(us.flatMap((u) => groupsOf.get(u)!))) {
      const view = viewIn(gr, n);
      // each thread folds its own values (a column sum of its own column), or, over a short row,
      // its whole row (a softmax's row max in each element's thread: the row is read again per
      // element, but not stored and read back)
      const own = view && sameShape(view, gr.domain) && sameShape(lead(left), lead(gr.domain));
      const row = view && reduceRoot(n) && shortRow(n) && sameShape(x.shape, gr.domain) && sameShape(view, n.shape);
      const f = !gr.source && (own || row) && frontierWith(gr, n, view!);
      if (!f) return false;
      plans.push([gr, view!, f]);
    }
    enter(n, plans);
    folded.add(n);
    return true;
  };

  const start = (n: Node, domain: Shape): Group[] => [{ root: n, domain, members: new Set([n]), views: new Map([[n, n.shape]]), frontier: reads(n, n.shape, undefined) }];

  for (let k = order.length - 1; k >= 0; k--) {
    const n = order[k];
    if (!fusible(n)) {
      if (reduceRoot(n) && !fold(n)) groupsOf.set(n, start(n, n.inputs[0].shape));
      if (n.op === 'argmax' || n.op === 'take') fold(n);
      if (n.op === 'matmul' || n.op === 'conv2d') absorb(n);
      continue;
    }
    const us = users.get(n) ?? [];
    // a folded reduction reads its input at other coordinates than its own: that input is stored
    join: if (!results.has(n) && us.length && us.every((u) => groupsOf.has(u)) && !us.some((u) => folded.has(u))) {
      const target = [...new Set(us.flatMap((u) => groupsOf.get(u)!))];
      if (target.length > 1 && !cheap(n) && !recomputable(n)) break join;
      const plans: [Group, Shape, Map<string, Node>][] = [];
      for (const gr of target) {
        const view = viewIn(gr, n);
        // an index ramp is the coordinate along its axis: read at the group's own coordinates only
        if (!view || (n.op === 'iota' && !(sameShape(view, gr.domain) && sameShape(n.shape, view)))) break join;
        const f = frontierWith(gr, n, view);
        if (!f) break join;
        plans.push([gr, view, f]);
      }
      enter(n, plans);
      continue;
    }
    groupsOf.set(n, start(n, n.shape));
  }
  return { order, groupsOf, sources };
}

export function fuseGraph(g: Graph): Graph {
  const { order, groupsOf, sources } = fusionGroups(g);
  const memo = new Map<Node, Node>();
  const get = (n: Node): Node => {
    const m = memo.get(n);
    if (!m) throw new Error(`fusion: node #${n.id} (${n.op}) is read outside the groups it was fused into`);
    return m;
  };

  const emit = (gr: Group): Node => {
    // operands before their users, in operand order from the root: a canonical order, so that the
    // same computation (each layer's optimizer update) is the same program, text and kernel
    const members: Node[] = [];
    const visit = (m: Node) => {
      if (!gr.members.has(m) || members.includes(m)) return;
      m.inputs.forEach(visit);
      members.push(m);
    };
    visit(gr.root);
    const R = gr.domain.length;
    const red = reduceRoot(gr.root);
    const inputs: Node[] = [];
    const inIndex = new Map<string, number>();
    const refs = new Map<Node, string>();
    const code: string[] = [];
    // a source's product is the program's i0 (the node's inputs 0 and 1 are its operands)
    if (gr.source) {
      inputs.push(gr.source);
      inIndex.set(key(gr.source, gr.source.shape), 0);
    }
    /** Operand `x` of member `m`. */
    const ref = (m: Node, x: Node): string => {
      const r = refs.get(x);
      if (r) return r;
      if (isLiteral(x)) return literalOperand(x.attrs.value as number, x.dtype);
      const view = operandView(m, x, gr.views.get(m)!);
      const kk = key(x, view);
      let k = inIndex.get(kk);
      if (k === undefined) {
        k = inputs.length;
        const lines = x.shape.length <= R && sameShape([...new Array<Dim>(R - x.shape.length).fill(1), ...x.shape], view);
        // the input read through its view: a reshape, which is an alias (no kernel)
        inputs.push(lines || sameShape(x.shape, view) ? get(x) : b.reshape(get(x), cheap(x) ? [] : view));
        inIndex.set(kk, k);
      }
      return `i${k}`;
    };
    for (const m of members) {
      if (red && m === gr.root) continue;
      if (m.op === 'broadcast' || m.op === 'reshape') {
        refs.set(m, ref(m, m.inputs[0]));
        continue;
      }
      const head = m.op === 'cast' ? `cast.${m.dtype}` : m.op === 'size' ? sizeOp(m.attrs.dims as Dim[]) : m.op === 'iota' ? `iota.${m.attrs.axis}` : reduceRoot(m) || m.op === 'argmax' ? `${m.op}.${reducedAxes(m)}` : m.op; // take: its two operands
      code.push([head, ...m.inputs.map((x) => ref(m, x))].join(' '));
      refs.set(m, `r${code.length - 1}`);
    }
    const out = red ? ref(gr.root, gr.root.inputs[0]) : refs.get(gr.root)!;
    if (out !== `r${code.length - 1}`) code.push(`cast.${gr.root.dtype} ${out}`);
    const src = gr.source;
    const f = src
      ? src.op === 'conv2d'
        ? b.fusedConv(get(src.inputs[0]), get(src.inputs[1]), src.attrs, inputs.slice(1), code, gr.root.shape)
        : b.fusedMatmul(get(src.inputs[0]), get(src.inputs[1]), src.attrs.transA === true, src.attrs.transB === true, inputs.slice(1), code, gr.root.shape)
      : red
        ? b.fusedReduce(inputs, code, gr.domain, gr.root.op as FusedReduction, gr.root.attrs.axes as number[])
        : b.fused(inputs, code, gr.root.shape);
    if (f.dtype !== gr.root.dtype) throw new Error(`fusion: fused ${f.dtype} for ${gr.root.op} of ${gr.root.dtype}`);
    const where = provenance(gr.root);
    if (where) mark(f, where);
    return f;
  };

  for (const n of order) {
    if (sources.has(n)) continue; // computed in its readers' kernel
    const gs = groupsOf.get(n);
    const own = gs?.length === 1 && gs[0].root === n ? gs[0] : undefined;
    if (gs && !own) continue; // fused into its users' groups
    if (own && (own.members.size > 1 || own.source)) memo.set(n, emit(own));
    else {
      const ins = n.inputs.map(get);
      const r = ins.every((x, k) => x === n.inputs[k]) ? n : make(n.op, ins, n.attrs);
      const where = provenance(n);
      if (r !== n && where) mark(r, where);
      memo.set(n, r);
    }
  }
  return {
    outputs: g.outputs.map((o) => ({ name: o.name, node: get(o.node) })),
    updates: g.updates.map((u) => ({ ...u, node: get(u.node) })),
  };
}

export const fuse: Pass = {
  name: 'fuse',
  description: 'elementwise fusion: trees of elementwise ops become one fused kernel each',
  run: fuseGraph,
};
