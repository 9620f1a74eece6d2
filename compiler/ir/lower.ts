// Lowering: a checked program (stdlib + user declarations) to the four graphs of a model —
// init (parameters, state and optimizer slots from the seed), train (loss, metrics, gradients,
// clipping, the optimizer update and constraints), evaluate and predict (the inference graph).

import { DiagnosticError, closest, error, type Diagnostic, type Span } from '../diagnostics.ts';
import type * as A from '../ast/nodes.ts';
import * as ir from './build.ts';
import { grad } from '../autodiff/vjp.ts';
import type { Graph } from './graph.ts';
import { sameShape, type Node } from './node.ts';
import { Evaluator, Poisoned, Scope, type Decls, type ParamInfo } from './eval.ts';
import { num, type Value } from './values.ts';

export interface TrainConfig {
  /** A rule written in .dlm, or the built-in L-BFGS (no decl: the runtime drives it). */
  optimizer: { name: string; decl?: A.OptimizerDecl; hypers: Record<string, number> };
  schedule?: { decl: A.ScheduleDecl; hypers: Record<string, number> };
  regularize: { decl: A.RegularizerDecl; hypers: Record<string, Value>; on: A.Selector }[];
  constrain: { decl: A.ConstraintDecl; hypers: Record<string, Value>; on: A.Selector }[];
  clip?: { kind: 'value' | 'global_norm'; c: number };
  freeze: A.Selector[];
  batch: number;
  epochs: number;
  shuffle: boolean;
  seed: number;
  earlyStop?: { patience: number; on: string };
}

export interface LoweredModel {
  name: string;
  inputs: Node[];
  outputs: { name: string; node: Node }[];
  metrics: string[];
  params: ParamInfo[];
  state: { name: string; node: Node }[];
  slots: { name: string; node: Node }[];
  config: TrainConfig;
  graphs: { init: Graph; train: Graph; evaluate: Graph; predict: Graph; gradient: Graph; schedule?: Graph };
}

export interface LowerOptions {
  /** Replace the train block's optimizer with this one, at its default hyperparameters. */
  optimizer?: string;
}

/** Hyperparameters of the built-in L-BFGS: memory, first step length, iterations per step. */
const LBFGS = { history: 10, lr: 1, iterations: 1 };

const TRAIN_KEYS = ['optimizer', 'schedule', 'regularize', 'constrain', 'clip', 'freeze', 'batch', 'epochs', 'shuffle', 'early_stop', 'seed'];

export function lower(decls: Decls, model: A.ModelDecl, isLibrary: (file: string) => boolean = () => false, opts: LowerOptions = {}): { model?: LoweredModel; diagnostics: Diagnostic[] } {
  const diagnostics: Diagnostic[] = [];
  const guard = <T>(f: () => T): T | undefined => {
    try {
      return f();
    } catch (e) {
      if (e instanceof DiagnosticError) diagnostics.push(e.diagnostic);
      else if (!(e instanceof Poisoned)) throw e;
      return undefined;
    }
  };

  const key = ir.arg('hyper', 'key', [2], 'i32');
  const consts = new Scope();
  const constEval = new Evaluator(decls, consts, false, key, isLibrary);
  for (const d of decls.values()) {
    if (d.kind !== 'const') continue;
    const v = guard(() => constEval.eval(d.value, consts));
    if (v) consts.set(d.name.name, { value: v, span: d.span });
    else Evaluator.poison(consts, d.name.name, d.span);
  }

  const config = guard(() => trainConfig(decls, model, constEval, diagnostics, opts));
  const train = new Evaluator(decls, consts, true, key, isLibrary);
  const pass = (ev: Evaluator, report: boolean) => {
    const scope = new Scope(consts);
    const inputs: Node[] = [];
    const outputs: { name: string; node: Node }[] = [];
    const metrics: { name: string; node: Node }[] = [];
    let loss: Node | undefined;
    const run = <T>(f: () => T) => (report ? guard(f) : silently(f));
    const tensorOf = (v: Value, span: Span) => ev.tensor(v, span);
    for (const item of model.items) {
      switch (item.kind) {
        case 'input': {
          const dims = (item.type.dims ?? []).map((d) => (d.kind === 'dim_int' ? d.value : d.kind === 'dim_sym' ? d.name : '...'));
          if (dims.includes('...')) {
            if (report) diagnostics.push(error('E0208', `a model input needs a full shape; '...' is for fn and layer signatures`, item.type.span));
            Evaluator.poison(scope, item.name.name, item.span);
            break;
          }
          const node = ir.arg('input', item.name.name, dims, item.type.dtype);
          inputs.push(node);
          scope.set(item.name.name, { value: { kind: 'tensor', node, origin: item.span }, span: item.span });
          break;
        }
        case 'let': {
          if (scope.get(item.name.name) && report) diagnostics.push(error('E0102', `'${item.name.name}' is already defined in this model`, item.name.span));
          const v = run(() => ev.binding(item.name.name, item.value, () => ev.eval(item.value, scope)));
          if (v) scope.set(item.name.name, { value: v, span: item.span });
          else Evaluator.poison(scope, item.name.name, item.span);
          break;
        }
        case 'output':
        case 'metric': {
          const node = run(() => ev.binding(item.name.name, item.value, () => tensorOf(ev.eval(item.value, scope), item.value.span)));
          if (node) {
            (item.kind === 'output' ? outputs : metrics).push({ name: item.name.name, node: item.kind === 'metric' ? ir.cast(node, 'f32') : node });
            scope.set(item.name.name, { value: { kind: 'tensor', node, origin: item.value.span }, span: item.span });
          } else Evaluator.poison(scope, item.name.name, item.span);
          if (node && item.kind === 'metric' && node.shape.length !== 0 && report)
            diagnostics.push(error('E0402', `metric '${item.name.name}' must be a scalar, but it is [${node.shape.join(', ')}]; wrap it in mean(...)`, item.value.span));
          break;
        }
        case 'loss': {
          const node = run(() => ev.binding('loss', item.value, () => tensorOf(ev.eval(item.value, scope), item.value.span)));
          if (node && report && (node.shape.length !== 0 || node.dtype !== 'f32'))
            diagnostics.push(error('E0401', `the loss must be an f32 scalar, but it is ${node.dtype}[${node.shape.join(', ')}]; wrap it in mean(...)`, item.value.span));
          loss = node;
          break;
        }
        case 'train':
          break;
      }
    }
    return { inputs, outputs, metrics, loss };
  };

  const t = pass(train, true);
  if (!t.loss && !diagnostics.some((d) => d.severity === 'error'))
    diagnostics.push(error('E0401', `model '${model.name.name}' has no loss: add a line like 'loss = softmax_cross_entropy(logits, y)'`, model.name.span));
  if (diagnostics.some((d) => d.severity === 'error') || !config || !t.loss) return { diagnostics };

  const inf = pass(new Evaluator(decls, consts, false, key, isLibrary), false);
  const params = [...train.params.values()];
  const stateUpdates = [...train.updates.values()];

  const trainGraph = guard(() => buildTrain(train, t.loss!, t.metrics, params, config, stateUpdates.map((u) => ({ role: 'state' as const, name: u.slot.name, node: u.node }))));
  if (!trainGraph) return { diagnostics };
  const { graph, slots, gradient } = trainGraph;

  const schedule = config.schedule && guard(() => scheduleGraph(train, config.schedule!));
  const evaluate: Graph = { outputs: [{ name: 'loss', node: inf.loss! }, ...inf.metrics], updates: [] };
  const predict: Graph = { outputs: inf.outputs, updates: [] };
  const init: Graph = {
    outputs: [],
    updates: [
      ...params.map((p) => ({ role: 'param' as const, name: p.name, node: p.init })),
      ...[...train.state.values()].map((s) => ({ role: 'state' as const, name: s.name, node: s.init })),
      ...slots.map((s) => ({ role: 'slot' as const, name: s.name, node: s.init })),
    ],
  };
  return {
    diagnostics,
    model: {
      name: model.name.name,
      inputs: t.inputs,
      outputs: inf.outputs,
      metrics: t.metrics.map((m) => m.name),
      params,
      state: [...train.state.values()].map((s) => ({ name: s.name, node: s.node })),
      slots: slots.map((s) => ({ name: s.name, node: s.node })),
      config,
      graphs: { init, train: graph, evaluate, predict, gradient, ...(schedule ? { schedule } : {}) },
    },
  };
}

function silently<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch (e) {
    if (e instanceof DiagnosticError || e instanceof Poisoned) return undefined;
    throw e;
  }
}

// ---------- the train block ----------

function trainConfig(decls: Decls, model: A.ModelDecl, ev: Evaluator, diagnostics: Diagnostic[], opts: LowerOptions): TrainConfig {
  const block = model.items.find((i): i is A.TrainBlock => i.kind === 'train');
  const config: TrainConfig = {
    optimizer: optimizerConfig({ kind: 'call', callee: { kind: 'ident', name: 'adam', span: model.name.span }, args: [], span: model.name.span }, decls, ev),
    regularize: [],
    constrain: [],
    freeze: [],
    batch: 32,
    epochs: 10,
    shuffle: true,
    seed: 0,
  };
  for (const e of block?.entries ?? []) {
    try {
      entry(e, config, decls, ev);
    } catch (err) {
      if (err instanceof DiagnosticError) diagnostics.push(err.diagnostic);
      else throw err;
    }
  }
  if (opts.optimizer) {
    const span = block?.span ?? model.name.span;
    try {
      config.optimizer = optimizerConfig({ kind: 'call', callee: { kind: 'ident', name: opts.optimizer, span }, args: [], span }, decls, ev);
    } catch (err) {
      if (err instanceof DiagnosticError) diagnostics.push(err.diagnostic);
      else throw err;
    }
  }
  return config;
}

/** `adam(lr: 1e-3)` or `lbfgs(history: 10)`: the rule and its hyperparameters as numbers. */
function optimizerConfig(call: A.Call, decls: Decls, ev: Evaluator): TrainConfig['optimizer'] {
  const numbers = (hypers: Record<string, Value>) => Object.fromEntries(Object.entries(hypers).map(([k, v]) => [k, ev.number(v, call.span, k)]));
  if (call.callee.name === 'lbfgs' && decls.get('lbfgs')?.kind !== 'optimizer') {
    const formals = Object.keys(LBFGS);
    const args = call.args.map((a) => ({ name: a.name?.name, value: ev.eval(a.value, ev.consts), span: a.span }));
    return { name: 'lbfgs', hypers: numbers(ev.bindArgs('lbfgs', formals, (n) => num(LBFGS[n as keyof typeof LBFGS]), args, call.span)) };
  }
  const decl = declOf(decls, 'optimizer', call.callee);
  return { name: decl.name.name, decl, hypers: numbers(bindHypers(decl, call, ev)) };
}

function declOf<K extends A.Decl['kind']>(decls: Decls, kind: K, callee: A.Ident): Extract<A.Decl, { kind: K }> {
  const d = decls.get(callee.name);
  if (d?.kind === kind) return d as Extract<A.Decl, { kind: K }>;
  const guess = closest(callee.name, [...decls.values()].filter((x) => x.kind === kind).map((x) => (x as { name: A.Ident }).name.name));
  throw new DiagnosticError(error('E0101', `unknown ${kind} '${callee.name}'`, callee.span, guess ? { hint: `did you mean '${guess}'?` } : {}));
}

function callOf(e: A.TrainEntry, what: string): A.Call {
  const v = e.value;
  if (v?.kind === 'call') return v;
  if (v?.kind === 'name') return { kind: 'call', callee: { kind: 'ident', name: v.name, span: v.span }, args: [], span: v.span };
  throw new DiagnosticError(error('E0402', `'${e.key.name}' expects ${what}, like '${e.key.name} ${EXAMPLES[e.key.name]}'`, e.span));
}

const EXAMPLES: Record<string, string> = {
  optimizer: 'adam(lr: 1e-3)',
  regularize: 'l2(1e-4) on weights',
  constrain: 'max_norm(4.0) on weights',
  clip: 'global_norm(5.0)',
  schedule: 'step_decay(factor: 0.5, every: 5)',
};

function bindHypers(decl: { name: A.Ident; params: A.Formal[] }, call: A.Call, ev: Evaluator): Record<string, Value> {
  const args = call.args.map((a) => ({ name: a.name?.name, value: ev.eval(a.value, ev.consts), span: a.span }));
  return ev.bindArgs(decl.name.name, decl.params.map((p) => p.name.name), (n) => {
    const f = decl.params.find((p) => p.name.name === n)!;
    return f.default ? ev.eval(f.default, ev.consts) : undefined;
  }, args, call.span);
}

function entry(e: A.TrainEntry, c: TrainConfig, decls: Decls, ev: Evaluator): void {
  const key = e.key.name;
  const scalar = (what: string, int: boolean): number => {
    if (!e.value) throw new DiagnosticError(error('E0402', `'${key}' expects ${what}`, e.span));
    const v = ev.eval(e.value, ev.consts);
    return int ? ev.int(v, e.value.span, key) : ev.number(v, e.value.span, key);
  };
  switch (key) {
    case 'optimizer':
      c.optimizer = optimizerConfig(callOf(e, 'an optimizer'), decls, ev);
      return;
    case 'regularize':
    case 'constrain': {
      const call = callOf(e, key === 'regularize' ? 'a regularizer' : 'a constraint');
      if (!e.on) throw new DiagnosticError(error('E0402', `'${key}' needs a selector: '${key} ${EXAMPLES[key]}'`, e.span));
      if (key === 'regularize') {
        const decl = declOf(decls, 'regularizer', call.callee);
        c.regularize.push({ decl, hypers: bindHypers(decl, call, ev), on: e.on });
      } else {
        const decl = declOf(decls, 'constraint', call.callee);
        c.constrain.push({ decl, hypers: bindHypers(decl, call, ev), on: e.on });
      }
      return;
    }
    case 'clip': {
      const call = callOf(e, 'a clipping rule');
      if (call.callee.name !== 'value' && call.callee.name !== 'global_norm')
        throw new DiagnosticError(error('E0402', `clip is 'value(c)' or 'global_norm(c)', not '${call.callee.name}'`, call.callee.span));
      if (call.args.length !== 1) throw new DiagnosticError(error('E0301', `${call.callee.name} takes one argument`, call.span));
      c.clip = { kind: call.callee.name, c: ev.number(ev.eval(call.args[0].value, ev.consts), call.args[0].span, 'the clip threshold') };
      return;
    }
    case 'freeze':
      if (!e.selector) throw new DiagnosticError(error('E0402', `'freeze' needs a selector, like freeze "conv*"`, e.span));
      c.freeze.push(e.selector);
      return;
    case 'batch':
      c.batch = scalar('an integer', true);
      return;
    case 'epochs':
      c.epochs = scalar('an integer', true);
      return;
    case 'seed':
      c.seed = scalar('an integer', true);
      return;
    case 'shuffle': {
      const v = e.value && ev.eval(e.value, ev.consts);
      if (v?.kind !== 'bool') throw new DiagnosticError(error('E0402', `'shuffle' expects true or false`, e.value?.span ?? e.span));
      c.shuffle = (v as { value: boolean }).value;
      return;
    }
    case 'early_stop': {
      const args = e.args ?? [];
      const patience = args.find((a) => a.name?.name === 'patience');
      const on = args.find((a) => a.name?.name === 'on');
      c.earlyStop = {
        patience: patience ? ev.int(ev.eval(patience.value, ev.consts), patience.span, 'patience') : 5,
        on: on ? dotted(on.value) : 'val.loss',
      };
      return;
    }
    case 'schedule': {
      const call = callOf(e, 'a schedule');
      const decl = declOf(decls, 'schedule', call.callee);
      const taken = decl.params.find((f) => SCHEDULE_ARGS.includes(f.name.name));
      if (taken) throw new DiagnosticError(error('E0402', `a schedule's hyperparameter cannot be called '${taken.name.name}': lr0, epoch and step are the arguments of lr()`, taken.name.span));
      const hypers = bindHypers(decl, call, ev);
      c.schedule = { decl, hypers: Object.fromEntries(Object.entries(hypers).map(([k, v]) => [k, ev.number(v, call.span, k)])) };
      return;
    }
    default: {
      const guess = closest(key, TRAIN_KEYS);
      throw new DiagnosticError(error('E0402', `unknown train setting '${key}'`, e.key.span, { hint: guess ? `did you mean '${guess}'?` : `settings are ${TRAIN_KEYS.join(', ')}` }));
    }
  }
}

function dotted(e: A.Expr): string {
  if (e.kind === 'name') return e.name;
  if (e.kind === 'member') return `${dotted(e.object)}.${e.property.name}`;
  if (e.kind === 'string') return e.value;
  throw new DiagnosticError(error('E0402', 'expected a metric name like val.loss', e.span));
}

// ---------- selectors ----------

export function isWeight(p: ParamInfo): boolean {
  return !p.tags.includes('no_decay') && p.node.shape.length >= 2;
}

export function select(sel: A.Selector, params: readonly ParamInfo[]): ParamInfo[] {
  switch (sel.kind) {
    case 'sel_all':
      return [...params];
    case 'sel_weights':
      return params.filter(isWeight);
    case 'sel_glob': {
      const re = new RegExp(`^${sel.pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
      return params.filter((p) => re.test(p.name));
    }
    case 'sel_list': {
      const picked = new Set(sel.items.flatMap((s) => select(s, params)));
      return params.filter((p) => picked.has(p));
    }
  }
}

// ---------- the training graph ----------

function buildTrain(
  ev: Evaluator,
  dataLoss: Node,
  metrics: { name: string; node: Node }[],
  params: ParamInfo[],
  config: TrainConfig,
  stateUpdates: Graph['updates'],
): { graph: Graph; gradient: Graph; slots: { name: string; node: Node; init: Node }[] } {
  let loss = dataLoss;
  for (const r of config.regularize) {
    for (const p of select(r.on, params)) {
      const pen = ev.tensor(methodCall(ev, r.decl.penalty, r.decl.params, r.hypers, [{ kind: 'tensor', node: p.node, origin: p.span }]), r.decl.penalty.span);
      // Added to the loss, a penalty that is not an f32 scalar would change the loss's shape.
      if (pen.shape.length !== 0 || pen.dtype !== 'f32')
        throw new DiagnosticError(error('E0402', `regularizer '${r.decl.name.name}' must give an f32 scalar penalty, but for ${p.name} it gives ${pen.dtype}[${pen.shape.join(', ')}]; wrap it in sum(...)`, r.decl.penalty.span));
      loss = ir.add(loss, pen);
    }
  }
  const frozen = new Set(config.freeze.flatMap((s) => select(s, params)));
  const trainable = params.filter((p) => !frozen.has(p));
  let grads = grad(loss, trainable.map((p) => p.node));
  const gradient: Graph = { outputs: [{ name: 'loss', node: loss }, ...trainable.map((p, i) => ({ name: `grad:${p.name}`, node: grads[i] }))], updates: [] };
  const opt = config.optimizer.decl;
  // L-BFGS runs on the host from the gradient program; the step program only updates state.
  if (!opt) return { graph: { outputs: [{ name: 'loss', node: loss }, ...metrics], updates: stateUpdates }, gradient, slots: [] };
  if (config.clip?.kind === 'value') {
    const c = config.clip.c;
    grads = grads.map((g) => ir.max(ir.min(g, ir.constant(c)), ir.constant(-c)));
  } else if (config.clip?.kind === 'global_norm') {
    const total = grads.map((g) => ir.sum(ir.mul(g, g))).reduce((a, b) => ir.add(a, b), ir.constant(0));
    const scale = ir.min(ir.constant(1), ir.div(ir.constant(config.clip.c), ir.add(ir.sqrt(total), ir.constant(1e-12))));
    grads = grads.map((g) => ir.mul(g, scale));
  }

  if (opt.step.params.length > 4)
    throw new DiagnosticError(error('E0402', `optimizer '${opt.name.name}': step takes (p, g, t) and optionally w, but it names ${opt.step.params.length} parameters`, opt.step.span));
  const hyperArgs = Object.fromEntries(opt.params.map((f) => [f.name.name, ir.arg('hyper', f.name.name, [], 'f32')]));
  const t = ir.arg('hyper', 't', [], 'f32');
  const slots: { name: string; node: Node; init: Node }[] = [];
  const updates: { role: 'param' | 'slot' | 'state'; name: string; node: Node }[] = [];
  trainable.forEach((p, i) => {
    const scope = new Scope(ev.consts);
    for (const [name, node] of Object.entries(hyperArgs)) scope.set(name, { value: { kind: 'tensor', node, origin: opt.span }, span: opt.span });
    // step(p, g, t[, w]): w is 1 for the parameters the `weights` selector picks, else 0 (decoupled
    // weight decay leaves biases and norm scales alone)
    const [pn, gn, tn, wn] = opt.step.params.map((x) => x.name);
    for (const s of opt.state) {
      const name = `${p.name}:${s.name.name}`;
      const node = ir.arg('slot', name, p.node.shape, 'f32');
      const initFn = ev.eval(s.init, scope);
      const value = initFn.kind === 'callable'
        ? ev.invoke(initFn.callable, [
            { value: { kind: 'shape', dims: [...p.node.shape] }, span: s.span },
            { value: num(1, true), span: s.span },
            { value: num(1, true), span: s.span },
          ], s.span)
        : initFn;
      const init = ev.shapeChecked(s.span, () => ir.broadcast(ev.tensor(value, s.span), p.node.shape), [{ v: value, span: s.span }], 'the initial value');
      slots.push({ name, node, init });
      Evaluator.updatable(scope, s.name.name, { kind: 'tensor', node, origin: s.span }, s.span, { role: 'slot', name });
    }
    if (pn) Evaluator.updatable(scope, pn, { kind: 'tensor', node: p.node, origin: p.span }, p.span, { role: 'param', name: p.name });
    if (gn) scope.set(gn, { value: { kind: 'tensor', node: grads[i], origin: opt.step.span }, span: opt.step.span });
    if (tn) scope.set(tn, { value: { kind: 'tensor', node: t, origin: opt.step.span }, span: opt.step.span });
    if (wn) scope.set(wn, { value: num(isWeight(p) ? 1 : 0, true), span: opt.step.span });
    ev.updates.clear();
    ev.block(opt.step.body ?? [], scope);
    let next = ev.updates.get(`param:${p.name}`)?.node;
    if (!next) throw new DiagnosticError(noParamUpdate(opt));
    for (const c of config.constrain) {
      if (!select(c.on, [p]).length) continue;
      next = ev.tensor(methodCall(ev, c.decl.project, c.decl.params, c.hypers, [{ kind: 'tensor', node: next, origin: p.span }]), c.decl.project.span);
      if (!sameShape(next.shape, p.node.shape) || next.dtype !== 'f32')
        throw new DiagnosticError(error('E0402', `constraint '${c.decl.name.name}' must give a tensor of its parameter's shape: ${p.name} is f32[${p.node.shape.join(', ')}] but the projection is ${next.dtype}[${next.shape.join(', ')}]`, c.decl.project.span));
    }
    updates.push({ role: 'param', name: p.name, node: next });
    for (const u of ev.updates.values()) if (u.slot.role === 'slot') updates.push({ role: 'slot', name: u.slot.name, node: u.node });
  });
  return {
    graph: { outputs: [{ name: 'loss', node: loss }, ...metrics], updates: [...updates, ...stateUpdates] },
    gradient,
    slots,
  };
}

function noParamUpdate(opt: A.OptimizerDecl): Diagnostic {
  return error('E0403', `optimizer '${opt.name.name}' never updates its parameter: its step needs a line like '${opt.step.params[0]?.name ?? 'p'} <- ...'`, opt.step.span);
}

const SCHEDULE_ARGS = ['lr0', 'epoch', 'step'];

/** lr(lr0, epoch, step) as a graph of scalar arguments — those three and the schedule's
 *  hyperparameters, all run-time values; the runtime evaluates it before each step. */
function scheduleGraph(ev: Evaluator, s: NonNullable<TrainConfig['schedule']>): Graph {
  const scalar = (n: string): Value => ({ kind: 'tensor', node: ir.arg('hyper', n, [], 'f32'), origin: s.decl.lr.span });
  const hypers = Object.fromEntries(s.decl.params.map((f) => [f.name.name, scalar(f.name.name)]));
  const lr = ev.tensor(methodCall(ev, s.decl.lr, s.decl.params, hypers, SCHEDULE_ARGS.map(scalar)), s.decl.lr.span);
  if (lr.shape.length !== 0) throw new DiagnosticError(error('E0402', `schedule '${s.decl.name.name}' must give a scalar learning rate`, s.decl.lr.span));
  return { outputs: [{ name: 'lr', node: ir.cast(lr, 'f32') }], updates: [] };
}

/** Call a method such as penalty(w) or project(w) with the declaration's hyperparameters bound. */
function methodCall(ev: Evaluator, m: A.Method, formals: A.Formal[], hypers: Record<string, Value>, args: Value[]): Value {
  const scope = new Scope(ev.consts);
  for (const f of formals) scope.set(f.name.name, { value: hypers[f.name.name], span: f.span });
  m.params.forEach((p, i) => scope.set(p.name, { value: args[i], span: p.span }));
  if (m.expr) return ev.eval(m.expr, scope);
  return ev.body(m.body ?? [], scope, m.span, m.name.name);
}

