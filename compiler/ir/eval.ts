// The lowering evaluator: runs .dlm declarations at compile time, producing IR. Layers create
// parameters (graph arguments with hierarchical names), `if training` picks a branch, `<-`
// rebinds a variable and records an update of the argument behind it.

import { DiagnosticError, closest, error, type Span } from '../diagnostics.ts';
import type * as A from '../ast/nodes.ts';
import * as ir from './build.ts';
import { ShapeError, typeStr, type DType, type Dim, type Node } from './node.ts';
import { builtins } from './builtins.ts';
import { mark } from './provenance.ts';
import { relative } from 'node:path';
import { describe, num, type ArgValue, type Callable, type Value } from './values.ts';

export type Decls = ReadonlyMap<string, A.Decl>;

export interface ParamInfo {
  name: string;
  node: Node;
  tags: string[];
  /** The initial value, an expression of the init graph. */
  init: Node;
  span: Span;
}

export interface StateInfo {
  name: string;
  node: Node;
  init: Node;
  span: Span;
}

/** What a variable stands for when it can be updated with `<-`. */
interface Slot {
  role: 'param' | 'state' | 'slot';
  name: string;
}

interface Var {
  value: Value;
  span: Span;
  slot?: Slot;
}

export class Scope {
  private vars = new Map<string, Var>();
  constructor(readonly parent?: Scope) {}
  get(name: string): Var | undefined {
    return this.vars.get(name) ?? this.parent?.get(name);
  }
  set(name: string, v: Var): void {
    this.vars.set(name, v);
  }
  names(): string[] {
    return [...this.vars.keys(), ...(this.parent?.names() ?? [])];
  }
}

const fail = (code: string, message: string, span: Span, extra: Parameters<typeof error>[3] = {}): never => {
  throw new DiagnosticError(error(code, message, span, extra));
};

/** A value that failed to evaluate: using it stays silent, so one mistake gives one error. */
export class Poisoned extends Error {}
const POISON = Symbol('poison');

/** Calls of fns and layers nested deeper than this are a recursion that does not end. */
export const MAX_CALL_DEPTH = 200;

/** Naming context of one binding (`h = ...`): layer calls under it get `h.dense_0`, or just `h`
 *  when the binding has a single layer call. */
interface Naming {
  path: string[];
  single: boolean;
  counts: Map<string, number>;
}

export class Evaluator {
  /** Parameters and state created so far, by full name. */
  readonly params = new Map<string, ParamInfo>();
  readonly state = new Map<string, StateInfo>();
  /** Updates recorded by `<-` (last one wins). */
  readonly updates = new Map<string, { slot: Slot; node: Node }>();
  private saltCounter = 0;
  /** Spans of the fn and layer calls being evaluated, outermost first. */
  private readonly calls: Span[] = [];
  /** Fn and layer calls being evaluated, default arguments included (see MAX_CALL_DEPTH). */
  private depth = 0;
  private naming: Naming = { path: [], single: false, counts: new Map() };

  constructor(
    readonly decls: Decls,
    readonly consts: Scope,
    public training: boolean,
    /** The random key of the graph being built. */
    public keyNode: Node,
    /** Whether a file is part of the library (errors there are reported at the user's call). */
    readonly isLibrary: (file: string) => boolean = () => false,
  ) {}

  salt(): number {
    return this.saltCounter++;
  }

  key(): Node {
    return this.keyNode;
  }

  /** Label a node with the span that built it, and the user's call when that is library code. */
  private marked(n: Node, span: Span): Node {
    const site = this.isLibrary(span.file) ? this.calls.find((c) => !this.isLibrary(c.file)) : undefined;
    mark(n, site ? `${where(span)}, called at ${where(site)}` : where(span));
    return n;
  }

  // ---------- values ----------

  tensor(v: Value, span: Span): Node {
    switch (v.kind) {
      case 'tensor':
        return v.node;
      case 'num':
        return ir.constant(v.value, 'f32');
      case 'bool':
        return ir.constant(v.value ? 1 : 0, 'bool');
      case 'list':
        return this.literal(v, span);
      default:
        return fail('E0203', `expected a tensor, found ${describe(v)}`, span);
    }
  }

  private literal(v: Value & { kind: 'list' }, span: Span): Node {
    const shape: number[] = [];
    const flat: number[] = [];
    const walk = (x: Value, depth: number) => {
      if (x.kind === 'list') {
        if (shape.length === depth) shape.push(x.items.length);
        else if (shape[depth] !== x.items.length) fail('E0204', 'rows of a tensor literal must have equal lengths', span);
        x.items.forEach((i) => walk(i, depth + 1));
      } else if (x.kind === 'num') {
        if (depth !== shape.length) fail('E0204', 'rows of a tensor literal must have equal lengths', span);
        flat.push(x.value);
      } else fail('E0204', `a tensor literal holds numbers, found ${describe(x)}`, span);
    };
    walk(v, 0);
    return ir.literal(flat, shape, 'f32');
  }

  pair(a: Value, b: Value, span: Span): [Node, Node] {
    const dtypeOf = (v: Value): DType | undefined => (v.kind === 'tensor' ? v.node.dtype : undefined);
    const conv = (v: Value, other: DType | undefined): Node =>
      v.kind === 'num' && other ? ir.constant(v.value, other === 'bool' ? 'f32' : other) : this.tensor(v, span);
    return [conv(a, dtypeOf(b)), conv(b, dtypeOf(a))];
  }

  int(v: Value, span: Span, what: string): number {
    if (v.kind === 'num' && v.int) return v.value;
    return fail('E0203', `${what} must be a compile-time integer, found ${describe(v)}`, span);
  }

  number(v: Value, span: Span, what: string): number {
    if (v.kind === 'num') return v.value;
    return fail('E0203', `${what} must be a compile-time number, found ${describe(v)}`, span);
  }

  // ---------- expressions ----------

  lookup(name: string, span: Span, scope: Scope): Value {
    const v = scope.get(name) ?? this.consts.get(name);
    if (v) {
      if ((v.value as unknown) === POISON) throw new Poisoned();
      return v.value;
    }
    const d = this.decls.get(name);
    if (d?.kind === 'fn') return { kind: 'callable', callable: { kind: 'fn', decl: d } };
    if (d?.kind === 'layer') return { kind: 'callable', callable: { kind: 'layer', decl: d } };
    if (builtins[name]) return { kind: 'callable', callable: { kind: 'builtin', name, builtin: builtins[name] } };
    const known = [...scope.names(), ...this.consts.names(), ...this.decls.keys(), ...Object.keys(builtins)];
    const guess = closest(name, known);
    return fail('E0101', `unknown name '${name}'`, span, guess ? { hint: `did you mean '${guess}'?` } : {});
  }

  eval(e: A.Expr, scope: Scope): Value {
    switch (e.kind) {
      case 'number':
        return num(e.value, Number.isInteger(e.value) && !/[.eE]/.test(e.raw));
      case 'bool':
        return { kind: 'bool', value: e.value };
      case 'string':
        return { kind: 'str', value: e.value };
      case 'training':
        return { kind: 'bool', value: this.training };
      case 'name':
        return this.lookup(e.name, e.span, scope);
      case 'member':
        return fail('E0205', `'.' is only used in train entries (like val.loss)`, e.span);
      case 'tensor':
        return { kind: 'list', items: e.elements.map((x) => this.eval(x, scope)) };
      case 'unary':
        return this.unary(e, scope);
      case 'binary':
        return this.binary(e, scope);
      case 'ternary':
        return this.ternary(e, scope);
      case 'call':
        return this.call(e.callee, e.args.map((a) => this.arg(a, scope)), e.span, scope);
      case 'pipe': {
        const left: ArgValue = { value: this.eval(e.left, scope), span: e.left.span };
        const r = e.right;
        if (r.kind === 'name') return this.call({ kind: 'ident', name: r.name, span: r.span }, [left], e.span, scope);
        return this.call(r.callee, [left, ...r.args.map((a) => this.arg(a, scope))], e.span, scope);
      }
      case 'index_expr':
        return this.index(e, scope);
    }
  }

  private arg(a: A.Arg, scope: Scope): ArgValue {
    return { name: a.name?.name, value: this.eval(a.value, scope), span: a.span };
  }

  /** A tensor value made at `span` from a node, turning shape-rule complaints into diagnostics. */
  private build(span: Span, make: () => Node, operands: { v: Value; span: Span }[] = []): Value {
    return { kind: 'tensor', node: this.shapeChecked(span, () => this.marked(make(), span), operands), origin: span };
  }

  /** Runs `make`, turning a shape rule's complaint (a ShapeError) into an E0201 diagnostic at
   *  `span` that points at the tensor operands; `what` names the primitive when the rule does not. */
  shapeChecked<T>(span: Span, make: () => T, operands: { v: Value; span: Span }[] = [], what?: string): T {
    try {
      return make();
    } catch (err) {
      if (!(err instanceof ShapeError)) throw err;
      const related = operands
        .filter((o) => o.v.kind === 'tensor')
        .map((o) => ({ span: (o.v as { origin: Span }).origin ?? o.span, message: `this is ${describe(o.v).replace(/^a tensor /, '')}` }));
      return fail('E0201', what && !err.message.includes(what) ? `${what}: ${err.message}` : err.message, span, { related });
    }
  }

  private unary(e: A.Unary, scope: Scope): Value {
    const v = this.eval(e.arg, scope);
    if (e.op === '-') {
      if (v.kind === 'num') return num(-v.value, v.int);
      return this.build(e.span, () => ir.neg(this.tensor(v, e.arg.span)), [{ v, span: e.arg.span }]);
    }
    if (v.kind === 'bool') return { kind: 'bool', value: !v.value };
    return this.build(e.span, () => ir.not(this.boolTensor(v, e.arg.span)), [{ v, span: e.arg.span }]);
  }

  private boolTensor(v: Value, span: Span): Node {
    const t = this.tensor(v, span);
    if (t.dtype !== 'bool') fail('E0202', `expected a bool tensor, found ${typeStr(t)}`, span);
    return t;
  }

  private binary(e: A.Binary, scope: Scope): Value {
    const a = this.eval(e.left, scope);
    const b = this.eval(e.right, scope);
    const operands = [{ v: a, span: e.left.span }, { v: b, span: e.right.span }];
    if (a.kind === 'num' && b.kind === 'num') {
      const folded = foldNumbers(e.op, a.value, b.value, a.int && b.int);
      if (folded) return folded;
    }
    if (a.kind === 'bool' && b.kind === 'bool' && (e.op === 'and' || e.op === 'or' || e.op === '==' || e.op === '!='))
      return { kind: 'bool', value: e.op === 'and' ? a.value && b.value : e.op === 'or' ? a.value || b.value : (a.value === b.value) === (e.op === '==') };
    if (e.op === '@') return this.build(e.span, () => ir.matmul(this.tensor(a, e.left.span), this.tensor(b, e.right.span)), operands);
    if (e.op === 'and' || e.op === 'or')
      return this.build(e.span, () => ir.binary(e.op as 'and', this.boolTensor(a, e.left.span), this.boolTensor(b, e.right.span)), operands);
    return this.build(
      e.span,
      () => {
        const [x, y] = this.pair(a, b, e.span);
        if (x.dtype !== y.dtype) throw new ShapeError(`operands of '${e.op}' have different types: ${typeStr(x)} and ${typeStr(y)}`);
        return ir.binary(BINARY[e.op as keyof typeof BINARY], x, y);
      },
      operands,
    );
  }

  private ternary(e: A.Ternary, scope: Scope): Value {
    const c = this.eval(e.cond, scope);
    if (c.kind === 'bool') return this.eval(c.value ? e.then : e.else, scope);
    const a = this.eval(e.then, scope);
    const b = this.eval(e.else, scope);
    return this.build(
      e.span,
      () => {
        const [x, y] = this.pair(a, b, e.span);
        return ir.select(this.boolTensor(c, e.cond.span), x, y);
      },
      [{ v: c, span: e.cond.span }, { v: a, span: e.then.span }, { v: b, span: e.else.span }],
    );
  }

  private index(e: A.Index, scope: Scope): Value {
    const target = this.eval(e.target, scope);
    if (target.kind === 'list') {
      if (e.items.length === 1 && e.items[0].kind === 'index') {
        const i = this.int(this.eval(e.items[0].value, scope), e.items[0].span, 'an index');
        const item = target.items[i < 0 ? i + target.items.length : i];
        if (item) return item;
      }
      return fail('E0206', 'index out of range', e.span);
    }
    const x = this.tensor(target, e.target.span);
    const rank = x.shape.length;
    const ell = e.items.findIndex((i) => i.kind === 'ellipsis');
    const explicit = e.items.filter((i) => i.kind !== 'ellipsis').length;
    if (explicit > rank) fail('E0206', `too many indices for ${typeStr(x)}`, e.span);
    const items: (A.IndexItem | undefined)[] =
      ell < 0 ? [...e.items, ...Array(rank - explicit).fill(undefined)] : [...e.items.slice(0, ell), ...Array(rank - explicit).fill(undefined), ...e.items.slice(ell + 1)];
    const begin: number[] = [];
    const end: Dim[] = [];
    const step: number[] = [];
    const keep: Dim[] = [];
    items.forEach((it, axis) => {
      const d = x.shape[axis];
      const bound = (ex: A.Expr | undefined, dflt: Dim): Dim => {
        if (!ex) return dflt;
        const v = this.int(this.eval(ex, scope), ex.span, 'a slice bound');
        if (v >= 0) return typeof d === 'number' ? Math.min(v, d) : v;
        if (typeof d !== 'number') fail('E0206', `negative index on the run-time dimension ${d}`, ex.span);
        return Math.max(0, (d as number) + v);
      };
      if (!it || it.kind === 'ellipsis') {
        begin.push(0), end.push(d), step.push(1), keep.push(d);
      } else if (it.kind === 'index') {
        const b = bound(it.value, 0) as number;
        if (typeof d === 'number' && b >= d) fail('E0206', `index ${b} is out of range for a dimension of ${d}`, it.span);
        begin.push(b), end.push(b + 1), step.push(1);
      } else {
        const b = bound(it.start, 0) as number;
        const en = bound(it.end, d);
        const st = it.step ? this.int(this.eval(it.step, scope), it.step.span, 'a slice step') : 1;
        if (st < 1) fail('E0206', 'a slice step must be positive', it.span);
        begin.push(b), end.push(en), step.push(st);
        keep.push(typeof en === 'number' ? Math.max(0, Math.ceil((en - b) / st)) : b === 0 && st === 1 ? en : fail('E0206', `cannot slice the run-time dimension ${d} that way`, it.span));
      }
    });
    return this.build(e.span, () => ir.reshape(ir.slice(x, begin, end, step), keep), [{ v: target, span: e.target.span }]);
  }

  // ---------- calls ----------

  callableOf(callee: A.Ident, scope: Scope): Callable {
    const v = this.lookup(callee.name, callee.span, scope);
    if (v.kind !== 'callable') return fail('E0303', `'${callee.name}' is ${describe(v)}, not something to call`, callee.span);
    return v.callable;
  }

  call(callee: A.Ident, args: ArgValue[], span: Span, scope: Scope): Value {
    const c = this.callableOf(callee, scope);
    return this.invoke(c, args, span);
  }

  invoke(c: Callable, args: ArgValue[], span: Span): Value {
    if (c.kind === 'partial') return this.invoke(c.fn, [...args, ...c.args], span);
    if (c.kind === 'fn' && isPartial(c.decl, args)) return { kind: 'callable', callable: { kind: 'partial', fn: c, args } };
    if (c.kind === 'builtin') {
      const bound = this.bindArgs(c.name, c.builtin.params, (n) => c.builtin.defaults?.[n], args, span);
      // A primitive's shape rules throw ShapeError (take, conv2d, reshape, ...): a diagnostic here.
      const r = this.shapeChecked(span, () => c.builtin.call(bound, this, span), args.map((a) => ({ v: a.value, span: a.span })), c.name);
      return 'op' in r ? { kind: 'tensor', node: this.marked(r, span), origin: span } : r;
    }
    // Compile-time recursion must end (`n == 0 ? x : f(x, n - 1)`); one that does not, through
    // the body or a default argument, would overflow the stack.
    if (this.depth >= MAX_CALL_DEPTH)
      fail('E0304', `calls nested more than ${MAX_CALL_DEPTH} deep: '${c.decl.name.name}' calls itself without end`, span);
    this.depth++;
    try {
      return this.invokeDecl(c, args, span);
    } finally {
      this.depth--;
    }
  }

  private invokeDecl(c: Extract<Callable, { kind: 'fn' | 'layer' }>, args: ArgValue[], span: Span): Value {
    const decl = c.decl;
    let nameArg: string | undefined;
    if (c.kind === 'layer') {
      const i = args.findIndex((a) => a.name === 'name');
      if (i >= 0) {
        const v = args[i].value;
        if (v.kind !== 'str') fail('E0203', `name: expects a string, found ${describe(v)}`, args[i].span);
        nameArg = (v as { value: string }).value;
        args = args.filter((_, k) => k !== i);
      }
    }
    const scope = new Scope(this.consts);
    const bound = this.bindArgs(
      decl.name.name,
      decl.params.map((p) => p.name.name),
      (n) => {
        const f = decl.params.find((p) => p.name.name === n)!;
        return f.default ? this.eval(f.default, new Scope(this.consts)) : undefined;
      },
      args,
      span,
    );
    for (const f of decl.params) {
      const v = bound[f.name.name];
      if (f.type) this.checkType(v, f, scope, decl.name.name, args.find((a) => a.value === v)?.span ?? span);
      scope.set(f.name.name, { value: v, span: f.span });
    }
    const naming = this.naming;
    if (c.kind === 'layer') {
      const path = nameArg !== undefined ? [...naming.path.slice(0, -1), nameArg] : this.layerPath(decl.name.name);
      this.naming = { path, single: false, counts: new Map() };
    }
    this.calls.push(span);
    try {
      const r = this.body(decl.body, scope, span, decl.name.name);
      // The result is known to the caller by the call that made it.
      return r.kind === 'tensor' ? { ...r, origin: span } : r;
    } catch (e) {
      throw this.atCallSite(e, decl, span);
    } finally {
      this.naming = naming;
      this.calls.pop();
    }
  }

  /** An error inside library code is reported at the user's call, with the library line as a note. */
  private atCallSite(e: unknown, decl: A.FnDecl | A.LayerDecl, span: Span): unknown {
    if (!(e instanceof DiagnosticError) || this.isLibrary(span.file) || !this.isLibrary(e.diagnostic.span.file)) return e;
    const d = e.diagnostic;
    return new DiagnosticError({
      ...d,
      span,
      message: `in ${decl.name.name}: ${d.message}`,
      related: [{ span: d.span, message: `inside the library ${decl.kind} '${decl.name.name}'` }, ...(d.related ?? []).filter((r) => !this.isLibrary(r.span.file))],
    });
  }

  private layerPath(layer: string): string[] {
    const n = this.naming;
    const k = n.counts.get(layer) ?? 0;
    n.counts.set(layer, k + 1);
    if (n.single && n.counts.size === 1 && k === 0) return n.path;
    return [...n.path, `${layer}_${k}`];
  }

  /** Evaluate `make` as the binding `name`, naming the layers it calls (see Naming). */
  binding<T>(name: string, expr: A.Expr | undefined, make: () => T): T {
    const outer = this.naming;
    const single = expr ? this.countLayerCalls(expr) === 1 : false;
    this.naming = { path: [...outer.path, name], single, counts: new Map() };
    try {
      return make();
    } finally {
      this.naming = outer;
    }
  }

  private countLayerCalls(e: A.Expr): number {
    let n = 0;
    const visit = (x: A.Expr | undefined): void => {
      if (!x) return;
      switch (x.kind) {
        case 'call':
          if (this.decls.get(x.callee.name)?.kind === 'layer') n++;
          x.args.forEach((a) => visit(a.value));
          return;
        case 'pipe':
          visit(x.left);
          if (x.right.kind === 'name') {
            if (this.decls.get(x.right.name)?.kind === 'layer') n++;
          } else visit(x.right);
          return;
        case 'binary':
          visit(x.left), visit(x.right);
          return;
        case 'unary':
          visit(x.arg);
          return;
        case 'ternary':
          visit(x.cond), visit(x.then), visit(x.else);
          return;
        case 'index_expr':
          visit(x.target);
          return;
        case 'tensor':
          x.elements.forEach(visit);
          return;
        default:
          return;
      }
    };
    visit(e);
    return n;
  }

  bindArgs(
    fname: string,
    formals: readonly string[],
    dflt: (name: string) => Value | undefined,
    args: ArgValue[],
    span: Span,
  ): Record<string, Value> {
    const out: Record<string, Value> = {};
    let pos = 0;
    for (const a of args) {
      if (a.name === undefined) {
        if (pos >= formals.length) fail('E0301', `${fname} takes ${formals.length} argument${formals.length === 1 ? '' : 's'}, but more were given`, a.span);
        out[formals[pos++]] = a.value;
      } else {
        if (!formals.includes(a.name)) {
          const guess = closest(a.name, formals);
          fail('E0302', `${fname} has no parameter '${a.name}'`, a.span, { hint: guess ? `did you mean '${guess}'?` : `its parameters are ${formals.join(', ')}` });
        }
        if (a.name in out) fail('E0302', `argument '${a.name}' is given twice`, a.span);
        out[a.name] = a.value;
      }
    }
    for (const f of formals) {
      if (f in out) continue;
      const d = dflt(f);
      if (!d) fail('E0301', `${fname} is missing its argument '${f}'`, span);
      out[f] = d!;
    }
    return out;
  }

  /** Check an argument against a typed formal, binding the formal's dimension names. */
  private checkType(v: Value, f: A.Formal, scope: Scope, fname: string, span: Span): void {
    const t = f.type!;
    if (t.kind === 'hyper_type') {
      const ok = t.name === 'bool' ? v.kind === 'bool' : v.kind === 'num' && (t.name === 'float' || v.int);
      if (!ok) fail('E0202', `${fname}: '${f.name.name}' expects ${t.name === 'int' ? 'an int' : `a ${t.name}`}, found ${describe(v)}`, span);
      return;
    }
    const x = this.tensor(v, span);
    const want = `${t.dtype}[${(t.dims ?? []).map((d) => (d.kind === 'dim_int' ? d.value : d.kind === 'dim_sym' ? d.name : '...')).join(', ')}]`;
    const mismatch = (why: string): never =>
      fail('E0201', `${fname}: '${f.name.name}' expects ${want}, found ${typeStr(x)}${why ? ` (${why})` : ''}`, span, {
        related: [{ span: t.span, message: `'${f.name.name}' is declared ${want} here` }],
      });
    if (x.dtype !== t.dtype) mismatch('');
    const dims = t.dims ?? [];
    const ell = dims.findIndex((d) => d.kind === 'dim_ellipsis');
    const fixed = dims.filter((d) => d.kind !== 'dim_ellipsis');
    if (ell < 0 ? x.shape.length !== fixed.length : x.shape.length < fixed.length) mismatch('wrong rank');
    const tail = ell < 0 ? x.shape : x.shape.slice(x.shape.length - (dims.length - ell - 1));
    const head = ell < 0 ? [] : x.shape.slice(0, ell);
    const pairs: [A.DimExpr, Dim][] = [
      ...dims.slice(0, Math.max(0, ell)).map((d, i) => [d, head[i]] as [A.DimExpr, Dim]),
      ...dims.slice(ell + 1).map((d, i) => [d, tail[i]] as [A.DimExpr, Dim]),
    ];
    for (const [d, actual] of pairs) {
      if (d.kind === 'dim_int') {
        if (d.value !== actual) mismatch(`dimension ${actual} should be ${d.value}`);
      } else if (d.kind === 'dim_sym') {
        const known = scope.get(d.name);
        const have = known ? dimOf(known.value) : undefined;
        if (known && have !== actual) mismatch(`${d.name} is ${have} but the dimension is ${actual}`);
        if (!known) scope.set(d.name, { value: typeof actual === 'number' ? num(actual, true) : { kind: 'shape', dims: [actual] }, span: d.span });
      }
    }
  }

  // ---------- statements ----------

  body(stmts: readonly A.Stmt[], scope: Scope, span: Span, fname: string): Value {
    const r = this.block(stmts, scope);
    if (!r) return fail('E0501', `${fname} ends without a return`, span);
    return r;
  }

  /** Runs statements; returns the returned value, if a `return` was reached. */
  block(stmts: readonly A.Stmt[], scope: Scope): Value | undefined {
    for (const s of stmts) {
      switch (s.kind) {
        case 'let':
          scope.set(s.name.name, { value: this.binding(s.name.name, s.value, () => this.eval(s.value, scope)), span: s.span });
          break;
        case 'return':
          return this.eval(s.value, scope);
        case 'if': {
          const c = this.eval(s.cond, scope);
          if (c.kind !== 'bool') fail('E0207', `'if' needs a compile-time condition such as 'training', found ${describe(c)}`, s.cond.span);
          const r = (c as { value: boolean }).value ? this.block(s.then, scope) : s.else ? this.block(s.else, scope) : undefined;
          if (r) return r;
          break;
        }
        case 'param':
          this.param(s, scope);
          break;
        case 'state':
          this.stateStmt(s, scope);
          break;
        case 'update':
          this.update(s, scope);
          break;
      }
    }
    return undefined;
  }

  private qualified(name: string): string {
    return [...this.naming.path, name].join('.');
  }

  private staticShape(t: A.TensorType, scope: Scope, what: string): number[] {
    // Tensors have no empty or negative dimensions (`dense(x, 0)`, an input of [B, 0]).
    const positive = (n: number, d: A.DimExpr) =>
      Number.isSafeInteger(n) && n > 0 ? n : fail('E0201', `the shape of ${what} needs positive whole dimensions, but ${d.kind === 'dim_sym' ? `${d.name} is ` : ''}${n}`, d.span);
    return (t.dims ?? []).map((d) => {
      if (d.kind === 'dim_int') return positive(d.value, d);
      if (d.kind === 'dim_sym') {
        const v = scope.get(d.name)?.value ?? this.consts.get(d.name)?.value;
        if (v?.kind === 'num' && Number.isInteger(v.value)) return positive(v.value, d);
        if (v) return fail('E0208', `the shape of ${what} must be known at compile time, but ${d.name} is ${v.kind === 'shape' ? `the run-time dimension ${v.dims[0]}` : describe(v)}`, d.span);
        return fail('E0101', `unknown dimension '${d.name}'`, d.span);
      }
      return fail('E0208', `'...' is not allowed in the shape of ${what}`, d.span);
    });
  }

  /** Fan-in and fan-out of a weight: [.., in, out] with the leading dims as the receptive field. */
  private initValue(init: A.Expr, shape: number[], scope: Scope, span: Span): Node {
    const f = this.eval(init, scope);
    const fill = (v: Value, at: Span) => this.shapeChecked(at, () => ir.broadcast(this.tensor(v, at), shape), [{ v, span: at }], 'the initial value');
    if (f.kind !== 'callable') return fill(f, init.span);
    const receptive = shape.slice(0, -2).reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape[shape.length - 2] * receptive : (shape[0] ?? 1);
    const fanOut = shape.length >= 2 ? shape[shape.length - 1] * receptive : (shape[0] ?? 1);
    const training = this.training;
    this.training = false;
    try {
      const v = this.invoke(f.callable, [
        { value: { kind: 'shape', dims: shape }, span },
        { value: num(fanIn, true), span },
        { value: num(fanOut, true), span },
      ], span);
      return fill(v, span);
    } finally {
      this.training = training;
    }
  }

  private param(s: A.ParamStmt, scope: Scope): void {
    const name = this.qualified(s.name.name);
    const shape = this.staticShape(s.type, scope, `parameter ${name}`);
    const node = ir.arg('param', name, shape, s.type.dtype);
    if (!this.params.has(name)) {
      this.params.set(name, { name, node, tags: s.annotations.map((a) => a.name), init: this.initValue(s.init, shape, scope, s.span), span: s.span });
    } else if (this.params.get(name)!.node !== node) {
      fail('E0102', `parameter '${name}' is created twice with different shapes`, s.span);
    }
    scope.set(s.name.name, { value: { kind: 'tensor', node, origin: s.span }, span: s.span, slot: { role: 'param', name } });
  }

  private stateStmt(s: A.StateStmt, scope: Scope): void {
    if (!s.type) fail('E0208', `layer state needs a type, like 'state ${s.name.name}: f32[n] = zeros'`, s.span);
    const name = this.qualified(s.name.name);
    const shape = this.staticShape(s.type!, scope, `state ${name}`);
    const node = ir.arg('state', name, shape, s.type!.dtype);
    if (!this.state.has(name)) this.state.set(name, { name, node, init: this.initValue(s.init, shape, scope, s.span), span: s.span });
    scope.set(s.name.name, { value: { kind: 'tensor', node, origin: s.span }, span: s.span, slot: { role: 'state', name } });
  }

  private update(s: A.Update, scope: Scope): void {
    const v = scope.get(s.target.name);
    if (!v?.slot) {
      fail('E0209', `'${s.target.name}' cannot be updated with '<-': only state, optimizer slots and the parameter in an optimizer step can`, s.target.span);
      return;
    }
    if (v.slot.role === 'state' && !this.training) return; // state updates belong to the training graph only
    const old = this.tensor(v.value, s.target.span);
    const value = this.eval(s.value, scope);
    const built = this.build(s.span, () => {
      const n = ir.broadcast(this.tensor(value, s.value.span), old.shape);
      return n.dtype === old.dtype ? n : ir.cast(n, old.dtype);
    }, [{ v: value, span: s.value.span }, { v: v.value, span: s.target.span }]) as { node: Node };
    this.updates.set(`${v.slot.role}:${v.slot.name}`, { slot: v.slot, node: built.node });
    scope.set(s.target.name, { value: { kind: 'tensor', node: built.node, origin: s.span }, span: v.span, slot: v.slot });
  }

  /** Make a variable that `<-` may update (the parameter and slots inside an optimizer step). */
  static updatable(scope: Scope, local: string, value: Value, span: Span, slot: Slot): void {
    scope.set(local, { value, span, slot });
  }

  static poison(scope: Scope, name: string, span: Span): void {
    scope.set(name, { value: POISON as unknown as Value, span });
  }
}

/** Named arguments only, with a required formal before them left out: the call is a partial
 *  application, completed later by whoever calls it (an initializer gets shape, fan_in, fan_out). */
function isPartial(decl: A.FnDecl, args: readonly ArgValue[]): boolean {
  if (!args.length || args.some((a) => a.name === undefined)) return false;
  const given = new Set(args.map((a) => a.name));
  return decl.params.some((f) => !f.default && !given.has(f.name.name));
}

const where = (span: Span) => `${relative(process.cwd(), span.file) || span.file}:${span.line}:${span.col}`;

const BINARY = {
  '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '^': 'pow',
  '==': 'eq', '!=': 'ne', '<': 'lt', '<=': 'le', '>': 'gt', '>=': 'ge',
} as const;

function foldNumbers(op: A.BinaryOp, a: number, b: number, int: boolean): Value | undefined {
  switch (op) {
    case '+': return num(a + b, int);
    case '-': return num(a - b, int);
    case '*': return num(a * b, int);
    case '/': return num(a / b, false);
    case '^': return num(a ** b, int && b >= 0);
    case '==': return { kind: 'bool', value: a === b };
    case '!=': return { kind: 'bool', value: a !== b };
    case '<': return { kind: 'bool', value: a < b };
    case '<=': return { kind: 'bool', value: a <= b };
    case '>': return { kind: 'bool', value: a > b };
    case '>=': return { kind: 'bool', value: a >= b };
    default: return undefined;
  }
}

function dimOf(v: Value): Dim | undefined {
  if (v.kind === 'num') return v.value;
  if (v.kind === 'shape' && v.dims.length === 1) return v.dims[0];
  return undefined;
}
