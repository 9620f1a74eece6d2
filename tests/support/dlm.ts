// The .dlm standard library as graph builders for the harness: a library fn, layer, regularizer
// penalty or constraint projection becomes `(args: Node[]) => Node`, usable by `gradcheck` and
// `evalCpu`. The declarations are loaded the way the compiler loads them (compile.ts `load` on a
// tiny virtual file) and evaluated with the lowering Evaluator, so what is checked is exactly what
// a model gets.
//
// Layers create their parameters as `arg('param', ...)` nodes. `libraryLayer` finds them with a
// first evaluation on placeholder inputs and then, in `build`, substitutes the harness's argument
// nodes for them: the gradient is checked with respect to the input AND every parameter.
//
// For whole models (regularizers added to the loss, the gradient program the runtime runs) see
// `compileModel` and `modelGradcheck`.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type * as A from '../../compiler/ast/nodes.ts';
import { STDLIB_DIR, compile, load, type CompileOptions } from '../../compiler/compile.ts';
import { format, hasErrors, type Span } from '../../compiler/diagnostics.ts';
import * as ir from '../../compiler/ir/build.ts';
import { builtins } from '../../compiler/ir/builtins.ts';
import { Evaluator, Scope, type Decls, type ParamInfo, type StateInfo } from '../../compiler/ir/eval.ts';
import { topo } from '../../compiler/ir/graph.ts';
import { make, type DType, type Node } from '../../compiler/ir/node.ts';
import { num, type ArgValue, type Callable, type Value } from '../../compiler/ir/values.ts';
import type { Tensor } from '../../compiler/ops/types.ts';
import { runCpu } from '../../runtime/cpu.ts';
import { cpuKernels } from '../../runtime/cpu_kernels.ts';
import type { Manifest } from '../../runtime/program.ts';
import { argKey } from '../../runtime/shapes.ts';
import { evalCpu, gradError, rng, type GradcheckResult } from './harness.ts';

const FILE = resolve('tests/virtual/library.dlm');
const SPAN: Span = { file: FILE, start: 0, end: 0, line: 1, col: 1 };
const isLibrary = (f: string) => f.startsWith(STDLIB_DIR);

// ---------------------------------------------------------------- declarations and values

let cached: Decls | undefined;

/** The library's declarations (parsed once), as every model sees them. */
export function libraryDecls(): Decls {
  if (cached) return cached;
  const r = load(FILE, (p) => (p === FILE ? '' : readFileSync(p, 'utf8')));
  if (hasErrors(r.diagnostics)) throw new Error(r.diagnostics.map((d) => format(d, r.sources)).join('\n'));
  return (cached = r.decls);
}

/** A compile-time argument: a number (an int when it is a whole number; wrap it in `float()` to
 *  pass a float), a string, a bool, or a list of them. */
export type Hyper = number | string | boolean | { float: number } | readonly Hyper[];
export const float = (value: number): Hyper => ({ float: value });

export function hyperValue(h: Hyper): Value {
  if (typeof h === 'number') return num(h);
  if (typeof h === 'string') return { kind: 'str', value: h };
  if (typeof h === 'boolean') return { kind: 'bool', value: h };
  if (Array.isArray(h)) return { kind: 'list', items: h.map(hyperValue) };
  return num((h as { float: number }).float, false);
}

const tensorValue = (node: Node): Value => ({ kind: 'tensor', node, origin: SPAN });

export interface EvalOptions {
  /** The training graph (batch statistics, dropout) or the inference graph. Default true. */
  training?: boolean;
  /** The random key [seed, step] of `uniform` (dropout, initializers). Default [1, 1]. */
  key?: [number, number];
}

/** A fresh lowering evaluator over the library; its random key is a constant, so graphs that draw
 *  random numbers are deterministic functions of their arguments. */
export function evaluator({ training = true, key = [1, 1] }: EvalOptions = {}): Evaluator {
  return new Evaluator(libraryDecls(), new Scope(), training, ir.literal(key, [2], 'i32'), isLibrary);
}

/** A library fn or layer, or a builtin (max_pool2d, conv, ...: their arguments parsed as in .dlm). */
function callableOf(name: string): Callable {
  const d = libraryDecls().get(name);
  if (d?.kind === 'fn' || d?.kind === 'layer') return { kind: d.kind, decl: d } as Callable;
  if (!d && builtins[name]) return { kind: 'builtin', name, builtin: builtins[name] };
  throw new Error(`the library has no fn, layer or builtin '${name}' (found ${d?.kind ?? 'nothing'})`);
}

export interface Invocation {
  y: Node;
  /** Parameters and state the call created, in order of creation. */
  params: ParamInfo[];
  state: StateInfo[];
  /** New values of state (`<-` in the training graph), by state name. */
  updates: Map<string, Node>;
}

/** Calls the library fn or layer `name` with `inputs` as its leading positional arguments and
 *  `named` as named ones. */
export function invoke(name: string, inputs: readonly Node[], named: Readonly<Record<string, Hyper>> = {}, opts: EvalOptions = {}): Invocation {
  const ev = evaluator(opts);
  const args: ArgValue[] = [
    ...inputs.map((n) => ({ value: tensorValue(n), span: SPAN })),
    ...Object.entries(named).map(([k, v]) => ({ name: k, value: hyperValue(v), span: SPAN })),
  ];
  const y = ev.tensor(ev.invoke(callableOf(name), args, SPAN), SPAN);
  const updates = new Map([...ev.updates.values()].map((u) => [u.slot.name, u.node]));
  return { y, params: [...ev.params.values()], state: [...ev.state.values()], updates };
}

/** `root` with the nodes of `map` replaced (hash-consing rebuilds only what changed). */
export function substitute(root: Node, map: ReadonlyMap<Node, Node>): Node {
  const done = new Map<Node, Node>();
  for (const n of topo([root])) {
    const hit = map.get(n);
    if (hit) {
      if (hit.dtype !== n.dtype || hit.shape.join() !== n.shape.join()) throw new Error(`substitute: ${n.dtype}[${n.shape}] by ${hit.dtype}[${hit.shape}]`);
      done.set(n, hit);
      continue;
    }
    const inputs = n.inputs.map((c) => done.get(c)!);
    done.set(n, inputs.every((c, i) => c === n.inputs[i]) ? n : make(n.op, inputs, n.attrs));
  }
  return done.get(root)!;
}

// ---------------------------------------------------------------- builders

/** A library fn as a builder: `libraryFn('huber', { delta: 0.5 })([pred, target])`. Throws if the
 *  call creates parameters (use libraryLayer). */
export function libraryFn(name: string, named: Readonly<Record<string, Hyper>> = {}, opts: EvalOptions = {}): (args: Node[]) => Node {
  return (args) => {
    const r = invoke(name, args, named, opts);
    if (r.params.length) throw new Error(`${name} creates parameters: use libraryLayer`);
    return r.y;
  };
}

export interface InputSpec {
  shape: readonly number[];
  dtype?: DType;
}

export interface LibraryLayer {
  /** The parameters the call creates, in order: `build` takes them after the inputs. */
  params: { name: string; shape: number[] }[];
  /** The state it creates, in order: `build` takes it after the parameters when `withState`. */
  state: { name: string; shape: number[] }[];
  /** args = [...inputs, ...params] (then ...state when `withState`) → the layer's output. */
  build: (args: Node[]) => Node;
  /** args = [...inputs, ...params, ...state] → the new value of each state (training graph), in
   *  `state` order. */
  buildUpdates: (args: Node[]) => Node[];
  /** The parameters' initial values (from the initializers, random key as in EvalOptions). */
  initParams: () => Tensor[];
}

/**
 * A library layer (or a fn that creates parameters) as a builder over its inputs and parameters.
 * `inputs` gives the shapes of the positional tensor arguments, which fix the parameter shapes.
 * State is taken as arguments after the parameters when `withState` (the inference graph of
 * batch_norm reads it); otherwise it is left as an argument the graph must not depend on.
 */
export function libraryLayer(name: string, inputs: readonly InputSpec[], named: Readonly<Record<string, Hyper>> = {}, opts: EvalOptions & { withState?: boolean } = {}): LibraryLayer {
  const probe = invoke(name, inputs.map((s, i) => ir.arg('input', `probe${i}`, s.shape, s.dtype ?? 'f32')), named, opts);
  const params = probe.params.map((p) => ({ name: p.name, shape: p.node.shape as number[] }));
  const state = probe.state.map((s) => ({ name: s.name, shape: s.node.shape as number[] }));
  const run = (args: Node[], withState: boolean) => {
    const n = inputs.length;
    const r = invoke(name, args.slice(0, n), named, opts);
    const map = new Map<Node, Node>(r.params.map((p, i) => [p.node, args[n + i]]));
    if (withState) r.state.forEach((s, i) => map.set(s.node, args[n + r.params.length + i]));
    return { r, map };
  };
  return {
    params,
    state,
    build: (args) => {
      const { r, map } = run(args, !!opts.withState);
      return substitute(r.y, map);
    },
    buildUpdates: (args) => {
      const { r, map } = run(args, true);
      return r.state.map((s) => substitute(r.updates.get(s.name) ?? s.node, map));
    },
    initParams: () => evalCpu(probe.params.map((p) => p.init), new Map(), 'f64'),
  };
}

type MethodKind = 'regularizer' | 'constraint' | 'schedule';

/** A regularizer's penalty(w), a constraint's project(w) or a schedule's lr(lr0, epoch, step) as a
 *  builder, with the declaration's hyperparameters bound (named, else their defaults). */
export function libraryMethod(kind: MethodKind, name: string, hypers: Readonly<Record<string, Hyper>> = {}, opts: EvalOptions = {}): (args: Node[]) => Node {
  const d = libraryDecls().get(name);
  if (d?.kind !== kind) throw new Error(`the library has no ${kind} '${name}'`);
  const decl = d as A.RegularizerDecl | A.ConstraintDecl | A.ScheduleDecl;
  const m: A.Method = decl.kind === 'regularizer' ? decl.penalty : decl.kind === 'constraint' ? decl.project : decl.lr;
  return (args) => {
    const ev = evaluator(opts);
    const given = Object.entries(hypers).map(([k, v]) => ({ name: k, value: hyperValue(v), span: SPAN }));
    const bound = ev.bindArgs(name, decl.params.map((f) => f.name.name), (n) => {
      const f = decl.params.find((p) => p.name.name === n)!;
      return f.default ? ev.eval(f.default, new Scope()) : undefined;
    }, given, SPAN);
    const scope = new Scope();
    for (const f of decl.params) scope.set(f.name.name, { value: bound[f.name.name], span: SPAN });
    m.params.forEach((p, i) => scope.set(p.name, { value: tensorValue(args[i]), span: SPAN }));
    const v = m.expr ? ev.eval(m.expr, scope) : ev.body(m.body ?? [], scope, SPAN, m.name.name);
    return ev.tensor(v, SPAN);
  };
}

// ---------------------------------------------------------------- whole models

const MODEL_FILE = resolve('tests/virtual/library_model.dlm');

/** Compiles `src` as if it were a file (the stdlib read from disk); throws with the diagnostics. */
export function compileModel(src: string, opts: CompileOptions = {}): Manifest {
  const r = compile(MODEL_FILE, (p) => (p === MODEL_FILE ? src : readFileSync(p, 'utf8')), opts);
  const text = r.diagnostics.map((d) => format(d, r.sources)).join('\n');
  if (!r.manifest || hasErrors(r.diagnostics)) throw new Error(text || 'no manifest');
  return r.manifest;
}

/** The learning rate lr(lr0, epoch, step) of a manifest's schedule, run as the runtime runs it
 *  (the schedule program, in float64), with its hyperparameters from the manifest unless given. */
export function scheduleLr(m: Manifest, hypers: Readonly<Record<string, number>> = {}): (lr0: number, epoch: number, step: number) => number {
  const p = m.programs.schedule;
  if (!p) throw new Error(`model '${m.model}' has no schedule`);
  const all = { ...m.schedule?.hypers, ...hypers };
  const scalar = (v: number): Tensor => ({ data: new Float64Array([v]), shape: [] });
  return (lr0, epoch, step) => {
    const feeds: Record<string, Tensor> = { 'hyper:lr0': scalar(lr0), 'hyper:epoch': scalar(epoch), 'hyper:step': scalar(step) };
    for (const [k, v] of Object.entries(all)) feeds[`hyper:${k}`] = scalar(v);
    return runCpu(p, cpuKernels, feeds, Float64Array).outputs.lr.data[0];
  };
}

/**
 * The gradient program of a compiled model (compile with { gradient: true }) against a centered
 * difference of its loss, in float64 on the CPU, with respect to every trainable parameter: the
 * rule of the harness's gradcheck, with the loss as the output (cotangent 1) and random directions t
 * (uniform [-1, 1), seeded). `feeds` holds the inputs and any state, keyed by argKey
 * (`input:x`, `state:bn.running_mean`); `params` holds every parameter by name.
 */
export function modelGradcheck(m: Manifest, feeds: Readonly<Record<string, Tensor>>, params: Readonly<Record<string, Tensor>>, { seed = 1, eps = 1e-6, t = 1 } = {}): GradcheckResult {
  const p = m.programs.gradient;
  if (!p) throw new Error('compile the model with { gradient: true }');
  const r = rng(seed);
  const hypers: Record<string, Tensor> = {
    'hyper:t': { data: new Float64Array([t]), shape: [] },
    'hyper:key': { data: new Int32Array([seed, t]), shape: [2] },
  };
  for (const [k, v] of Object.entries(m.optimizer.hypers)) hypers[`hyper:${k}`] = { data: new Float64Array([v]), shape: [] };
  const base: Record<string, Tensor> = { ...hypers, ...feeds };
  for (const [k, v] of Object.entries(params)) base[argKey({ role: 'param', name: k })] = { data: Float64Array.from(v.data), shape: v.shape };
  const wrt = p.outputs.filter((o) => o.name.startsWith('grad:')).map((o) => o.name.slice(5));
  const ts = new Map(wrt.map((w) => [w, Float64Array.from({ length: params[w].data.length }, () => 2 * r() - 1)]));

  const run = (f: Record<string, Tensor>) => runCpu(p, cpuKernels, f, Float64Array).outputs;
  const out = run(base);
  let a = 0, scale = 0;
  for (const w of wrt) {
    const g = out[`grad:${w}`].data, tw = ts.get(w)!;
    for (let j = 0; j < tw.length; j++) (a += g[j] * tw[j]), (scale += Math.abs(g[j] * tw[j]));
  }
  let xmax = 1;
  for (const w of wrt) for (const v of params[w].data) xmax = Math.max(xmax, Math.abs(v));
  const h = eps * xmax;
  const loss = (sign: number) => {
    const moved = { ...base };
    for (const w of wrt) {
      const x = params[w], tw = ts.get(w)!;
      moved[argKey({ role: 'param', name: w })] = { data: Float64Array.from(x.data, (v, j) => v + sign * h * tw[j]), shape: x.shape };
    }
    return run(moved).loss.data[0];
  };
  const [up, down] = [loss(1), loss(-1)];
  const b = (up - down) / (2 * h);
  return { rel: gradError(a, b, scale, Math.abs(up) + Math.abs(down), h), a, b };
}
