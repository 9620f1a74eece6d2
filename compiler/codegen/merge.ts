// Kernel merging: neighbouring nodes over the same elements computed by one kernel that stores
// each of them. The fusion pass (passes/fuse.ts) makes single-output nodes; some of them read each
// other at their own coordinates and are stored anyway (an optimizer's new m and v, which its new p
// reads; a dense layer's product, which the relu after it and the backward mask both read). One
// thread can compute the whole chain and store every value that is needed elsewhere, so the chain
// runs as one dispatch and the reader loads nothing its producer just stored.
//
// Members are elementwise fused nodes of one shape (the kernel's domain) and at most one *source*:
// a matmul or conv2d, or such a product's epilogue fused node, of that shape, whose product every
// other member reads as its `i0`. Whenever a member reads another member, it reads it at its own coordinates (an
// operand of the domain's shape, not a reduction line's). The kernel runs where its last member
// was (the dispatcher), so no other node may read a member before that; it binds the members'
// other inputs and the members read after it (outputs and updates too), at most MAX_BINDINGS in
// all. Groups grow greedily along the edges, in program order.
//
// Fused reductions of one kind (the same domain, reduction and axes: a loss and a metric, both
// means over the batch) that read none of each other run side by side the same way: one loop, an
// accumulator each.
//
// Neighbouring dispatches of any kind that read nothing the other stores run side by side in one
// dispatch (`besidePairs`): a loss's reduction beside the gradient that starts the backward pass.
//
// The CPU executors ignore all this and run each node as before; only the WebGPU program changes.

import type { AttrValue, NodeJSON, ProgramJSON } from '../../runtime/program.ts';
import { MAX_BINDINGS, codeLines, fusedProgram, inputUse, reduction, source, unbound } from '../ops/fused.ts';
import type { Attrs, DType } from '../ir/node.ts';
import { ops, type OpKind } from '../ops/registry.ts';

export interface Merged {
  /** Node ids, ascending; the last is the dispatcher. */
  members: number[];
  /** The members stored: the dispatcher first. */
  written: number[];
  /** The kernel's inputs: the source's two operands first, then the program's inputs. */
  inputs: number[];
  /** The fused node attrs of the whole kernel (code, shape, its source's, results). */
  attrs: Record<string, AttrValue>;
}

/** A group while it grows: its members, those stored, its source and its program's inputs. */
interface Group {
  members: number[];
  written: number[];
  src: NodeJSON | undefined;
  ins: number[];
}

const sameShape = (a: readonly unknown[], b: readonly unknown[]) => a.length === b.length && a.every((d, k) => d === b[k]);

/** Whether `n` can be a member: an elementwise fused node (reduction lines allowed), or a source. */
const candidate = (n: NodeJSON): boolean => (n.op === 'fused' && !reduction(n.attrs as Attrs)) || PRODUCTS.has(n.op);
const PRODUCTS = new Set(['matmul', 'conv2d']);
/** A fused reduction's kind: siblings of one kind (the loss and a metric, both means over the
 *  batch) accumulate side by side in one loop. */
const reduceKind = (n: NodeJSON): string | undefined => (n.op === 'fused' && reduction(n.attrs as Attrs) ? JSON.stringify([n.attrs.shape, n.attrs.reduce, n.attrs.axes]) : undefined);
const isSource = (n: NodeJSON): boolean => PRODUCTS.has(n.op) || source(n.attrs as Attrs) !== undefined;

/** The input positions of `n` that its program reads only at its own coordinates (not a source's
 *  operands, not a reduction or take line's input), and those a reduction or take line reads. */
function inputReads(p: ProgramJSON, n: NodeJSON): { direct: Set<number>; reduced: Set<number> } {
  if (PRODUCTS.has(n.op)) return { direct: new Set(), reduced: new Set() };
  const mm = source(n.attrs as Attrs) !== undefined;
  const progIns = mm ? n.inputs.slice(2) : n.inputs;
  const use = inputUse(fusedProgram(codeLines(n.attrs as Attrs), [...(mm ? ['f32' as DType] : []), ...progIns.map((j) => p.nodes[j].dtype)]));
  // program input k is node input k + 1 after a product (its i0 is no input of the node's)
  const positions = (ks: Set<number>) => new Set([...ks].filter((k) => !mm || k > 0).map((k) => (mm ? k + 1 : k)));
  const reduced = positions(use.reduced);
  return { direct: new Set([...positions(use.direct)].filter((k) => !reduced.has(k))), reduced };
}

/** Through aliases (a reshape reads nothing itself: its readers read its input's buffer): the
 *  nodes that read node j's buffer (`later`), and the node whose buffer it is (`home`). */
function buffers(nodes: readonly NodeJSON[]): { readers: number[][]; later: (j: number) => number[]; home: (j: number) => number } {
  const readers: number[][] = nodes.map(() => []);
  nodes.forEach((n) => n.inputs.forEach((j) => readers[j].push(n.id)));
  const alias = (j: number) => ops()[nodes[j].op as OpKind].alias === true;
  const later = (j: number): number[] => readers[j].flatMap((r) => (alias(r) ? later(r) : [r]));
  const home = (j: number): number => (alias(j) ? home(nodes[j].inputs[0]) : j);
  return { readers, later, home };
}

/** The groups of two or more nodes that run as one kernel, by dispatcher. */
export function mergeGroups(p: ProgramJSON): Map<number, Merged> {
  const nodes = p.nodes;
  const { readers, later, home } = buffers(nodes);
  const results = new Set([...p.outputs, ...p.updates].map((r) => r.node));
  const reads = nodes.map((n) => (candidate(n) ? inputReads(p, n) : { direct: new Set<number>(), reduced: new Set<number>() }));
  const direct = reads.map((r) => r.direct);
  // elementwise members with reduction lines
  const folds = reads.map((r) => r.reduced.size > 0);

  const groupOf = nodes.map((n) => [n.id]);
  /** The group of `members` (its stored members, source and program inputs), if it can be one. */
  const check = (members: number[]): Group | undefined => {
    const set = new Set(members);
    const kinds = new Set(members.map((m) => reduceKind(nodes[m])));
    if (kinds.size > 1 || (kinds.has(undefined) && !members.every((m) => candidate(nodes[m])))) return undefined;
    // reductions side by side read none of each other
    if (!kinds.has(undefined) && members.some((m) => nodes[m].inputs.some((j) => set.has(j)))) return undefined;
    const sources = members.filter((m) => isSource(nodes[m]));
    if (sources.length > 1) return undefined;
    const src = sources.length ? nodes[sources[0]] : undefined;
    const domain = nodes[members[0]].shape;
    const d = members[members.length - 1];
    for (const m of members) {
      const n = nodes[m];
      if (!sameShape(n.shape, domain)) return undefined;
      // a member reads the others at its own coordinates only
      if (n.inputs.some((j, k) => set.has(j) && !direct[m].has(k))) return undefined;
      if (later(m).some((r) => !set.has(r) && r < d)) return undefined;
      // nor through a reshape (its buffer is the member's, written by this very kernel)
      if (n.inputs.some((j) => !set.has(j) && set.has(home(j)))) return undefined;
    }
    // a product's epilogue has no reduction lines
    if (src && members.some((m) => m !== src.id && folds[m])) return undefined;
    const written = [d, ...members.filter((m) => m !== d && (results.has(m) || readers[m].some((r) => !set.has(r))))];
    // the program's inputs (a source's operands are bound before them)
    const ins: number[] = [];
    for (const m of members) nodes[m].inputs.forEach((j, k) => (src && m === src.id && k < 2) || set.has(j) || ins.includes(j) || ins.push(j));
    const bound = [...(src ? src.inputs.slice(0, 2) : []), ...ins].filter((j) => !unbound(nodes[j]));
    if (bound.length + written.length > MAX_BINDINGS) return undefined;
    return { members, written, src, ins };
  };

  const merged = new Map<number, Group>();
  const join = (j: number, i: number) => {
    const [a, c] = [groupOf[j], groupOf[i]];
    if (a === c) return;
    const members = [...a, ...c].sort((x, y) => x - y);
    const m = check(members);
    if (!m) return;
    for (const x of [...a, ...c]) merged.delete(x);
    for (const x of members) groupOf[x] = members;
    merged.set(members[members.length - 1], m);
  };
  for (const n of nodes) {
    if (candidate(n))
      n.inputs.forEach((j, k) => candidate(nodes[j]) && direct[n.id].has(k) && sameShape(nodes[j].shape, n.shape) && join(j, n.id));
    // a reduction joins the latest earlier one of its kind
    const kind = reduceKind(n);
    const before = kind === undefined ? undefined : nodes.slice(0, n.id).reverse().find((x) => reduceKind(x) === kind);
    if (before) join(before.id, n.id);
  }
  // each final group's one program
  return new Map(
    [...merged].map(([d, { members, written, src, ins }]) => [d, { members, written, ...program(p, members, src, ins, written) }]),
  );
}

/** The whole kernel as one fused program: each member's lines with its registers renumbered and
 *  its reads of other members replaced by their registers, each line once; the product is `i0`.
 *  Then in a canonical order (`canonical`), with the kernel's inputs. */
function program(p: ProgramJSON, members: number[], src: NodeJSON | undefined, ins: number[], written: number[]): Pick<Merged, 'inputs' | 'attrs'> {
  const nodes = p.nodes;
  const code: string[] = [];
  const reg = new Map<number, string>(); // member → the register (or i0) holding its value
  const operandOf = (j: number): string => reg.get(j) ?? `i${ins.indexOf(j) + (src ? 1 : 0)}`;
  for (const m of members) {
    const n = nodes[m];
    if (PRODUCTS.has(n.op)) {
      reg.set(m, 'i0');
      continue;
    }
    const mm = source(n.attrs as Attrs) !== undefined;
    const local: string[] = []; // the member's registers → the kernel's
    for (const line of codeLines(n.attrs as Attrs)) {
      const [head, ...args] = line.split(/\s+/);
      const mapped = args.map((a) => {
        const r = /^([ir])(\d+)$/.exec(a);
        if (!r) return a;
        const k = Number(r[2]);
        if (r[1] === 'r') return local[k];
        if (mm) return k === 0 ? 'i0' : operandOf(n.inputs[k + 1]);
        return operandOf(n.inputs[k]);
      });
      // a line another member already computes (an optimizer's m and v both sum the bias
      // gradient) is not computed again
      const text = [head, ...mapped].join(' ');
      const at = code.indexOf(text);
      local.push(`r${at < 0 ? code.push(text) - 1 : at}`);
    }
    reg.set(m, local[local.length - 1]);
  }
  // a stored product needs a register of its own
  const results = written.map((w) => {
    const r = reg.get(w)!;
    if (r !== 'i0') return r;
    code.push('cast.f32 i0');
    return `r${code.length - 1}`;
  });
  const c = canonical(code, results, src ? 1 : 0);
  const { shape, reduce, axes } = nodes[members[0]].attrs;
  return {
    inputs: [...(src ? src.inputs.slice(0, 2) : []), ...c.inputs.map((k) => ins[k - (src ? 1 : 0)])],
    attrs: { code: c.code.join('; '), shape: reduce ? shape : [...nodes[members[0]].shape], ...(src ? sourceAttrs(src) : {}), ...(reduce ? { reduce, axes } : {}), results: c.results.join(' ') },
  };
}

/**
 * The lines in the order a depth-first walk from the results first needs them, and the inputs from
 * `fixed` on in the order the lines first read them: kernels that compute the same thing from
 * members fused in another order (two layers' optimizer updates) get one text, and one pipeline.
 * `inputs` lists the old input numbers in their new order.
 */
function canonical(code: string[], results: string[], fixed: number): { code: string[]; results: string[]; inputs: number[] } {
  const lines = code.map((l) => l.split(' '));
  const order: number[] = [];
  const visit = (a: string): void => {
    const k = Number(/^r(\d+)$/.exec(a)?.[1] ?? -1);
    if (k < 0 || order.includes(k)) return;
    lines[k].slice(1).forEach(visit);
    order.push(k);
  };
  results.forEach(visit);
  const inputs: number[] = [];
  const rename = (a: string): string => {
    const r = /^([ir])(\d+)$/.exec(a);
    if (!r) return a;
    const k = Number(r[2]);
    if (r[1] === 'r') return `r${order.indexOf(k)}`;
    if (k < fixed) return a;
    if (!inputs.includes(k)) inputs.push(k);
    return `i${fixed + inputs.indexOf(k)}`;
  };
  return { code: order.map((k) => [lines[k][0], ...lines[k].slice(1).map(rename)].join(' ')), results: results.map(rename), inputs };
}

/** The attributes that make a fused program the epilogue of `src`'s product (ops/fused.ts). */
function sourceAttrs(src: NodeJSON): Record<string, AttrValue> {
  if (src.op === 'matmul') return { matmul: `${src.attrs.transA ? 't' : 'n'}${src.attrs.transB ? 't' : 'n'}` };
  if (src.op === 'conv2d') return { conv2d: true, ...src.attrs };
  // a product's epilogue node: its source's, without its own program's
  return Object.fromEntries(Object.entries(src.attrs).filter(([k]) => !['code', 'shape', 'results'].includes(k)));
}

/** A dispatch: its node, the buffers it binds before its outputs, the nodes it stores (its own
 *  first), the nodes it computes (its own last), and the stored nodes it computes in place of an
 *  argument it reads (`inPlace`). */
export interface Dispatch {
  node: number;
  reads: number[];
  stored: number[];
  members: number[];
  into: Map<number, number>;
}

/**
 * The updates a dispatch can store into their argument's own buffer (stored node → argument): a
 * new parameter or optimizer slot whose old value this kernel reads only at its own element, in
 * the thread that writes the new one, and that nothing reads after it. Such an update then
 * needs neither a buffer of its own nor a binding (it reads and writes the argument's), nor the
 * copy into the argument after the step. `at(n)`: the node whose dispatch computes node n.
 * Returns the test for a dispatch's members and stored nodes.
 */
export function inPlace(p: ProgramJSON, at: (n: number) => number): (members: readonly number[], stored: readonly number[]) => Map<number, number> {
  const nodes = p.nodes;
  const { later, home } = buffers(nodes);
  // each update's argument, if the old value is not an output (read back after the step)
  const args = p.updates.flatMap((u) => {
    const arg = p.args.find((a) => a.role === u.role && a.name === u.name)?.node;
    return arg === undefined || p.outputs.some((o) => home(o.node) === arg) ? [] : [[u.node, arg, later(arg)] as const];
  });
  return (members, stored) => {
    const d = members[members.length - 1];
    const into = new Map<number, number>();
    for (const [u, arg, readers] of args) {
      if (!stored.includes(u) || !sameShape(nodes[arg].shape, nodes[d].shape)) continue;
      const inside = readers.filter((r) => members.includes(r));
      if (!inside.length || readers.some((r) => !members.includes(r) && at(r) > d)) continue;
      if (inside.every((m) => candidate(nodes[m]) && nodes[m].inputs.every((j, k) => j !== arg || inputReads(p, nodes[m]).direct.has(k)))) into.set(u, arg);
    }
    return into;
  };
}

/** Dispatches that run side by side, the second's node to the first's: neighbours (in program
 *  order) where the second reads nothing the first stores, so that they need no order, binding at
 *  most MAX_BINDINGS storage buffers together. The pair runs at the second's place, where the
 *  memory plan then keeps the first's inputs alive and places its outputs. */
export function besidePairs(p: ProgramJSON, dispatches: readonly Dispatch[]): Map<number, number> {
  const { home } = buffers(p.nodes);
  const pairs = new Map<number, number>();
  dispatches.forEach((b, k) => {
    const a = dispatches[k - 1];
    if (!a || pairs.has(a.node)) return;
    const stored = new Set(a.stored);
    if (b.reads.some((j) => stored.has(home(j)))) return;
    // neither reads an argument the other updates in place
    const [argsA, argsB] = [new Set(a.into.values()), new Set(b.into.values())];
    if (b.reads.some((j) => argsA.has(home(j))) || a.reads.some((j) => argsB.has(home(j)))) return;
    // (bound as runtime/program.ts binds them; an update in place takes its argument's binding)
    const outs = (x: Dispatch) => x.stored.filter((s) => !x.into.has(s)).length;
    if (a.reads.length + new Set(b.reads.filter((j) => !a.reads.includes(j))).size + outs(a) + outs(b) > MAX_BINDINGS) return;
    pairs.set(b.node, a.node);
  });
  return pairs;
}
