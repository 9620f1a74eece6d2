import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type * as A from '../compiler/ast/nodes.ts';
import { format } from '../compiler/diagnostics.ts';
import { parse, print, stripSpans } from '../grammar/index.ts';

const MNIST = `# examples/mnist_mlp.dlm — a two-hidden-layer perceptron for MNIST
model mnist_mlp {
  input x: f32[B, 784]          # B is a symbolic dimension, bound at run time
  input y: i32[B]               # class labels 0..9

  h      = x |> dense(256) |> relu |> dropout(0.2) |> dense(128) |> relu
  logits = dense(h, 10)

  output probs = softmax(logits)
  output pred  = argmax(logits, axis: -1)
  loss         = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer  adam(lr: 1e-3)
    schedule   step_decay(factor: 0.5, every: 5)      # every 5 epochs
    regularize l2(1e-4) on weights
    constrain  max_norm(4.0) on weights
    clip       global_norm(5.0)
    batch      64
    epochs     10
    shuffle    true
    early_stop patience: 3, on: val.loss
    seed       7
  }
}
`;

const DENSE = `layer dense(x: f32[..., n], units: int, init = he_normal) {
  param w: f32[n, units] = init          # initializer: a library or user fn of (shape, fan_in, fan_out)
  param b: f32[units] = zeros @no_decay   # annotations tag parameters
  return x @ w + b
}
`;

const LIBRARY = `optimizer adam(lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8) {
  state m = zeros
  state v = zeros
  step(p, g, t) {                 # t counts updates from 1
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g ^ 2
    p <- p - lr * (m / (1 - beta1 ^ t)) / (sqrt(v / (1 - beta2 ^ t)) + eps)
  }
}

schedule step_decay(factor = 0.1, every = 10) {
  lr(lr0, epoch, step) = lr0 * factor ^ floor(epoch / every)
}

regularizer l2(lambda) { penalty(w) = lambda * sum(w ^ 2) }
constraint max_norm(c) { project(w) = w * min(1, c / (norm(w, axis: 0) + 1e-7)) }
`;

const MISC = `import "layers/extra.dlm"
const EPS = 1e-5

fn square(x) = x * x
fn clamp01(x: f32[..., n], hard: bool) -> f32[..., n] {
  y = hard ? min(max(x, 0), 1) : sigmoid(x)
  return y
}

layer batch_norm(x: f32[B, n], momentum = 0.9) {
  param gamma: f32[n] = ones @no_decay @frozen
  state running_mean: f32[n] = zeros
  if training {
    mu = mean(x, axis: 0)
    running_mean <- momentum * running_mean + (1 - momentum) * mu
  } else if not training {
    mu = running_mean
  } else {
    mu = x[..., -1]
  }
  return gamma * (x - mu) / sqrt(EPS + .5)
}

schedule constant { lr(lr0, epoch, step) = lr0 }

model tiny {
  input x: f32[B, 28, 28, 1]
  h = x[:, 0:10, ::2, 1:]
      |> flatten
      |> dense(10, name: "head")
  loss = mean(h)
  train {
    freeze "conv*"
    regularize l1(1e-5) on [weights, "head.*"]
    constrain non_neg() on all
    optimizer lbfgs(history: 10)
  }
}
`;

function ok(text: string): A.Program {
  const { program, diagnostics } = parse(text, 'test.dlm');
  expect(diagnostics.map((d) => format(d, new Map([['test.dlm', text]])))).toEqual([]);
  return program;
}

/** The expression of `const c = <text>`. */
function expr(text: string): A.Expr {
  const [decl] = ok(`const c = ${text}`).decls;
  if (decl.kind !== 'const') throw new Error('expected a const');
  return decl.value;
}

/** Fully parenthesized form, to check the tree shape. */
function tree(e: A.Expr): string {
  switch (e.kind) {
    case 'number':
      return e.raw;
    case 'bool':
      return String(e.value);
    case 'string':
      return JSON.stringify(e.value);
    case 'training':
      return 'training';
    case 'name':
      return e.name;
    case 'member':
      return `${tree(e.object)}.${e.property.name}`;
    case 'binary':
      return `(${tree(e.left)} ${e.op} ${tree(e.right)})`;
    case 'unary':
      return `(${e.op === 'not' ? 'not ' : '-'}${tree(e.arg)})`;
    case 'call':
      return `${e.callee.name}(${e.args.map((a) => (a.name ? `${a.name.name}: ` : '') + tree(a.value)).join(', ')})`;
    case 'pipe':
      return `(${tree(e.left)} |> ${tree(e.right)})`;
    case 'ternary':
      return `(${tree(e.cond)} ? ${tree(e.then)} : ${tree(e.else)})`;
    case 'tensor':
      return `[${e.elements.map(tree).join(', ')}]`;
    case 'index_expr': {
      const item = (i: A.IndexItem) =>
        i.kind === 'ellipsis'
          ? '...'
          : i.kind === 'index'
            ? tree(i.value)
            : [i.start, i.end, i.step].map((x) => (x ? tree(x) : '_')).join(':');
      return `${tree(e.target)}[${e.items.map(item).join(', ')}]`;
    }
  }
}

function model(p: A.Program): A.ModelDecl {
  const m = p.decls.find((d): d is A.ModelDecl => d.kind === 'model');
  if (!m) throw new Error('no model');
  return m;
}

function item<K extends A.ModelItem['kind']>(m: A.ModelDecl, kind: K, i = 0): Extract<A.ModelItem, { kind: K }> {
  return m.items.filter((x): x is Extract<A.ModelItem, { kind: K }> => x.kind === kind)[i];
}

describe('parse: the examples of LANGUAGE.md', () => {
  it('parses the whole MNIST file', () => {
    const p = ok(MNIST);
    const m = model(p);
    expect(m.name.name).toBe('mnist_mlp');
    expect(m.items.map((i) => i.kind)).toEqual([
      'input', 'input', 'let', 'let', 'output', 'output', 'loss', 'metric', 'train',
    ]);
    const x = item(m, 'input');
    expect(x.type).toMatchObject({ dtype: 'f32', dims: [{ kind: 'dim_sym', name: 'B' }, { kind: 'dim_int', value: 784 }] });
    expect(x.span).toMatchObject({ line: 3, col: 3 });

    const h = item(m, 'let').value;
    expect(tree(h)).toBe('(((((x |> dense(256)) |> relu) |> dropout(0.2)) |> dense(128)) |> relu)');
    expect(h.kind === 'pipe' && h.right.kind).toBe('name');
    expect(tree(item(m, 'output', 1).value)).toBe('argmax(logits, axis: (-1))');
    expect(tree(item(m, 'metric').value)).toBe('mean((pred == y))');
    expect(tree(item(m, 'loss').value)).toBe('softmax_cross_entropy(logits, y)');

    const entries = item(m, 'train').entries;
    expect(entries.map((e) => e.key.name)).toEqual([
      'optimizer', 'schedule', 'regularize', 'constrain', 'clip', 'batch', 'epochs', 'shuffle', 'early_stop', 'seed',
    ]);
    const [optimizer, schedule, regularize, constrain] = entries;
    expect(tree(optimizer.value!)).toBe('adam(lr: 1e-3)');
    expect(tree(schedule.value!)).toBe('step_decay(factor: 0.5, every: 5)');
    expect(regularize.on).toMatchObject({ kind: 'sel_weights' });
    expect(constrain.on).toMatchObject({ kind: 'sel_weights' });
    expect(entries[5].value).toMatchObject({ kind: 'number', value: 64, raw: '64' });
    expect(entries[7].value).toMatchObject({ kind: 'bool', value: true });
    const early = entries[8];
    expect(early.value).toBeUndefined();
    expect(early.args!.map((a) => `${a.name!.name}=${tree(a.value)}`)).toEqual(['patience=3', 'on=val.loss']);

    expect(p.comments.map((c) => [c.span.line, c.text.slice(0, 12)])).toEqual([
      [1, '# examples/m'],
      [3, '# B is a sym'],
      [4, '# class labe'],
      [16, '# every 5 ep'],
    ]);
  });

  it('parses the dense layer with its param annotations', () => {
    const [layer] = ok(DENSE).decls;
    if (layer.kind !== 'layer') throw new Error('expected a layer');
    expect(layer.params.map((f) => f.name.name)).toEqual(['x', 'units', 'init']);
    expect(layer.params[0].type).toMatchObject({
      kind: 'tensor_type',
      dtype: 'f32',
      dims: [{ kind: 'dim_ellipsis' }, { kind: 'dim_sym', name: 'n' }],
    });
    expect(layer.params[1].type).toMatchObject({ kind: 'hyper_type', name: 'int' });
    expect(layer.params[2].default).toMatchObject({ kind: 'name', name: 'he_normal' });
    const [w, b, ret] = layer.body;
    expect(w).toMatchObject({ kind: 'param', name: { name: 'w' }, annotations: [] });
    expect(b).toMatchObject({ kind: 'param', init: { kind: 'name', name: 'zeros' }, annotations: [{ name: 'no_decay' }] });
    expect(ret.kind === 'return' && tree(ret.value)).toBe('((x @ w) + b)');
  });

  it('parses the optimizer, schedule, regularizer and constraint examples', () => {
    const [adam, decay, l2, maxNorm] = ok(LIBRARY).decls;
    if (adam.kind !== 'optimizer' || decay.kind !== 'schedule' || l2.kind !== 'regularizer' || maxNorm.kind !== 'constraint') {
      throw new Error('unexpected declaration kinds');
    }
    expect(adam.params.map((f) => `${f.name.name}=${tree(f.default!)}`)).toEqual([
      'lr=1e-3', 'beta1=0.9', 'beta2=0.999', 'eps=1e-8',
    ]);
    expect(adam.state.map((s) => s.name.name)).toEqual(['m', 'v']);
    expect(adam.step.params.map((p) => p.name)).toEqual(['p', 'g', 't']);
    const updates = adam.step.body!.map((s) => (s.kind === 'update' ? `${s.target.name} <- ${tree(s.value)}` : s.kind));
    expect(updates).toEqual([
      'm <- ((beta1 * m) + ((1 - beta1) * g))',
      'v <- ((beta2 * v) + ((1 - beta2) * (g ^ 2)))',
      'p <- (p - ((lr * (m / (1 - (beta1 ^ t)))) / (sqrt((v / (1 - (beta2 ^ t)))) + eps)))',
    ]);
    expect(decay.lr.params.map((p) => p.name)).toEqual(['lr0', 'epoch', 'step']);
    expect(tree(decay.lr.expr!)).toBe('(lr0 * (factor ^ floor((epoch / every))))');
    expect(l2.penalty.name.name).toBe('penalty');
    expect(tree(l2.penalty.expr!)).toBe('(lambda * sum((w ^ 2)))');
    expect(tree(maxNorm.project.expr!)).toBe('(w * min(1, (c / (norm(w, axis: 0) + 1e-7))))');
  });

  it('parses imports, consts, both fn forms, if/else chains, state, slices and selectors', () => {
    const p = ok(MISC);
    const [imp, eps, square, clamp, bn, constant] = p.decls;
    expect(imp).toMatchObject({ kind: 'import', path: { value: 'layers/extra.dlm' } });
    expect(eps).toMatchObject({ kind: 'const', value: { raw: '1e-5', value: 1e-5 } });
    expect(square).toMatchObject({ kind: 'fn', body: [{ kind: 'return' }] });
    if (clamp.kind !== 'fn' || bn.kind !== 'layer' || constant.kind !== 'schedule') throw new Error('kinds');
    expect(clamp.params[1].type).toMatchObject({ kind: 'hyper_type', name: 'bool' });
    expect(clamp.ret).toMatchObject({ kind: 'tensor_type', dims: [{ kind: 'dim_ellipsis' }, { kind: 'dim_sym' }] });
    expect(clamp.body.map((s) => s.kind)).toEqual(['let', 'return']);
    expect(constant.params).toEqual([]);

    expect(bn.body[0]).toMatchObject({ annotations: [{ name: 'no_decay' }, { name: 'frozen' }] });
    expect(bn.body[1]).toMatchObject({ kind: 'state', type: { dtype: 'f32' } });
    const cond = bn.body[2];
    if (cond.kind !== 'if') throw new Error('expected if');
    expect(cond.cond.kind).toBe('training');
    expect(cond.then.map((s) => s.kind)).toEqual(['let', 'update']);
    const elseIf = cond.else![0];
    expect(elseIf).toMatchObject({ kind: 'if', cond: { kind: 'unary', op: 'not' } });
    expect(elseIf.kind === 'if' && elseIf.else![0]).toMatchObject({ kind: 'let', value: { kind: 'index_expr' } });

    const m = model(p);
    expect(tree(item(m, 'let').value)).toBe(
      '((x[_:_:_, 0:10:_, _:_:2, 1:_:_] |> flatten) |> dense(10, name: "head"))',
    );
    const [freeze, reg, con, opt] = item(m, 'train').entries;
    expect(freeze).toMatchObject({ selector: { kind: 'sel_glob', pattern: 'conv*' } });
    expect(freeze.value).toBeUndefined();
    expect(reg.on).toMatchObject({ kind: 'sel_list', items: [{ kind: 'sel_weights' }, { kind: 'sel_glob', pattern: 'head.*' }] });
    expect(con.on).toMatchObject({ kind: 'sel_all' });
    expect(tree(opt.value!)).toBe('lbfgs(history: 10)');
  });
});

describe('parse: expressions', () => {
  it.each([
    ['-x^2', '(-(x ^ 2))'],
    ['x ^ -1', '(x ^ (-1))'],
    ['a ^ b ^ c', '(a ^ (b ^ c))'],
    ['(-x) ^ 2', '((-x) ^ 2)'],
    ['a - b - c', '((a - b) - c)'],
    ['a + b * c @ d / e', '(a + (((b * c) @ d) / e))'],
    ['x@w + b', '((x @ w) + b)'],
    ['a < b == c >= d', '(((a < b) == c) >= d)'],
    ['not a == b and c or d', '(((not (a == b)) and c) or d)'],
    ['c ? a : b |> f', '((c ? a : b) |> f)'],
    ['c ? d ? 1 : 2 : e ? 3 : 4', '(c ? (d ? 1 : 2) : (e ? 3 : 4))'],
    ['a or b ? x : y', '((a or b) ? x : y)'],
    ['x |> dense(256) |> relu', '((x |> dense(256)) |> relu)'],
    ['f(a, name: v, on: w)', 'f(a, name: v, on: w)'],
    ['a.b.loss[0].c', 'a.b.loss[0].c'],
    ['f(x)[..., -1]', 'f(x)[..., (-1)]'],
    ['x[:, 0:10, ::2, 1:, :-1:]', 'x[_:_:_, 0:10:_, _:_:2, 1:_:_, _:(-1):_]'],
    ['x[c ? 0 : 1 : 5]', 'x[(c ? 0 : 1):5:_]'],
    ['[[1.0, 2.0], [3, .5]]', '[[1.0, 2.0], [3, .5]]'],
    ['[]', '[]'],
    ['training ? "a\\"b" : false', '(training ? "a\\"b" : false)'],
  ])('%s', (src, expected) => {
    expect(tree(expr(src))).toBe(expected);
  });

  it('keeps number literals as written', () => {
    expect(expr('1e-3')).toMatchObject({ kind: 'number', value: 0.001, raw: '1e-3' });
    expect(expr('.5')).toMatchObject({ value: 0.5, raw: '.5' });
  });

  it('gives spans that cover the whole construct, parentheses included', () => {
    const text = 'const c = (a + b) * f(x, 2)';
    const [decl] = ok(text).decls;
    if (decl.kind !== 'const' || decl.value.kind !== 'binary') throw new Error('shape');
    const slice = (s: { start: number; end: number }) => text.slice(s.start, s.end);
    expect(slice(decl.value.span)).toBe('(a + b) * f(x, 2)');
    expect(slice(decl.value.left.span)).toBe('(a + b)');
    expect(slice(decl.value.right.span)).toBe('f(x, 2)');
    expect(decl.value.right.span).toMatchObject({ line: 1, col: 21 });
  });
});

describe('parse: layout', () => {
  it('ends a statement where the next line starts a new one', () => {
    const m = model(ok('model m {\n  h = a\n  b = c\n  output o = h\n}'));
    expect(m.items.map((i) => (i.kind === 'let' ? `${i.name.name}=${tree(i.value)}` : i.kind))).toEqual([
      'h=a', 'b=c', 'output',
    ]);
  });

  it('continues an expression on a line that starts with an operator', () => {
    expect(tree(expr('a\n  + b\n  * c'))).toBe('(a + (b * c))');
    expect(tree(expr('x\n  |> dense(4)\n  |> relu'))).toBe('((x |> dense(4)) |> relu)');
  });

  it('tells annotations from matrix products by spacing', () => {
    const [layer] = ok('layer l(x) {\n  param w: f32[2, 2] = a@b @no_decay\n  return x@w\n}').decls;
    if (layer.kind !== 'layer') throw new Error('expected a layer');
    const [param, ret] = layer.body;
    expect(param.kind === 'param' && tree(param.init)).toBe('(a @ b)');
    expect(param).toMatchObject({ annotations: [{ name: 'no_decay' }] });
    expect(ret.kind === 'return' && tree(ret.value)).toBe('(x @ w)');

    const bad = parse('model m {\n  h = x @w\n}', 'm.dlm');
    expect(bad.diagnostics).toHaveLength(1);
    expect(bad.diagnostics[0]).toMatchObject({ code: 'E0002', span: { line: 2, col: 9 } });
    expect(bad.diagnostics[0].hint).toContain('a @ b');
  });
});

describe('parse: diagnostics', () => {
  const THREE = `model m {
  input x: f32[B, 784]
  h = x + * 2
  logits = dense(h 10)
  output p = softmax(logits))
  loss = cross_entropy(p, y)
}
`;

  it('reports every syntax error with its exact line and column and a caret', () => {
    const { diagnostics } = parse(THREE, 'three.dlm');
    expect(diagnostics.length).toBeGreaterThanOrEqual(3);
    expect(diagnostics.slice(0, 3).map((d) => [d.code, d.span.line, d.span.col])).toEqual([
      ['E0002', 3, 11],
      ['E0002', 4, 20],
      ['E0002', 5, 29],
    ]);
    expect(diagnostics[0].message).toBe("expected an expression after '+' but found '*'");
    expect(diagnostics[1].message).toBe("expected ')' after 'h' but found '10'");
    const sources = new Map([['three.dlm', THREE]]);
    for (const d of diagnostics.slice(0, 3)) {
      const lines = format(d, sources).split('\n');
      expect(lines[0]).toMatch(/^three\.dlm:\d+:\d+: error\[E0002\]: expected /);
      const source = THREE.split('\n')[d.span.line - 1];
      const token = source.slice(d.span.col - 1, d.span.col - 1 + d.span.end - d.span.start);
      expect(lines[2]).toBe(`${d.span.line} | ${source}`);
      expect(lines[3]).toBe(`  | ${' '.repeat(d.span.col - 1)}${'^'.repeat(token.length)}`);
    }
  });

  it('keeps the statements that parsed around the errors', () => {
    const m = model(parse(THREE, 'three.dlm').program);
    expect(m.items.map((i) => i.kind)).toEqual(['input', 'let', 'output', 'loss']);
  });

  it.each([
    ['model m { h = a $ b }', 'E0001', "unexpected character '$'"],
    ['import "abc\n', 'E0003', 'unterminated string'],
    ['model m { input x: float[B] }', 'E0004', 'expected a tensor type'],
    ['fn f(x: double) = x', 'E0004', "unknown type 'double'"],
    ['model m { input x: f32[B, 2.5] }', 'E0005', 'whole number'],
    ['schedule s(a) { step(x) = x }', 'E0006', "needs a method 'lr(...)'"],
    ['model m { train { freeze 3 } }', 'E0007', 'expected a selector'],
    ['model m {\n  h = x\n', 'E0002', "expected a model item or '}' but found end of file"],
    ['fn f(x) = ', 'E0002', "expected an expression after '=' but found end of file"],
    ['layer l(x) {\n  foo(x)\n  return x\n}', 'E0002', "expected a statement or '}' but found 'foo'"],
  ])('%j → %s', (text, code, message) => {
    const { diagnostics } = parse(text, 'e.dlm');
    expect(diagnostics[0]).toMatchObject({ code });
    expect(diagnostics[0].message).toContain(message);
  });

  it('never throws, whatever the input', () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const pieces = ['(', ')', '{', '}', '[', ']', ' @x', '@', '|>', '?', ':', ',', '=', '<-', '"', '#', '\n', 'if', '...', '.', '-', 'on', '$', 'é'];
    const inputs = ['', '}}}', '((((', 'model', '"', '@', '\u0000\uffff', '('.repeat(5000) + 'x' + ')'.repeat(5000)];
    const sources = [MNIST, DENSE, LIBRARY, MISC];
    for (let i = 0; i < 300; i++) {
      let s = sources[i % sources.length];
      for (let k = 1 + random(4); k > 0; k--) {
        const at = random(s.length);
        const op = random(3);
        if (op === 0) s = s.slice(0, at) + s.slice(at + 1 + random(12));
        else if (op === 1) s = s.slice(0, at) + pieces[random(pieces.length)] + s.slice(at);
        else s = s.slice(0, at) + s.slice(random(s.length)).slice(0, random(30)) + s.slice(at);
      }
      inputs.push(s);
    }
    for (const text of inputs) {
      const { program, diagnostics } = parse(text, 'fuzz.dlm');
      expect(() => print(program)).not.toThrow();
      for (const d of diagnostics) {
        expect(d.span.line).toBeGreaterThanOrEqual(1);
        expect(d.span.col).toBeGreaterThanOrEqual(1);
        expect(() => format(d, new Map([['fuzz.dlm', text]]))).not.toThrow();
      }
    }
  });
});

describe('print', () => {
  it.each([
    ['mnist', MNIST],
    ['dense', DENSE],
    ['library', LIBRARY],
    ['misc', MISC],
  ])('round-trips %s', (_, text) => {
    const p = ok(text);
    for (const printed of [print(p), print(p, text)]) {
      const again = ok(printed);
      expect(stripSpans(again)).toEqual(stripSpans(p));
      expect(print(again)).toBe(print(p));
      expect(print(again, printed)).toBe(printed);
    }
  });

  it('prints canonically, keeping comments and blank lines in place', () => {
    const printed = print(parse(MNIST, 'm.dlm').program, MNIST);
    expect(printed.split('\n').slice(0, 7)).toEqual([
      '# examples/mnist_mlp.dlm — a two-hidden-layer perceptron for MNIST',
      'model mnist_mlp {',
      '  input x: f32[B, 784]  # B is a symbolic dimension, bound at run time',
      '  input y: i32[B]  # class labels 0..9',
      '',
      '  h = x |> dense(256) |> relu |> dropout(0.2) |> dense(128) |> relu',
      '  logits = dense(h, 10)',
    ]);
    expect(printed).toContain('\n    schedule step_decay(factor: 0.5, every: 5)  # every 5 epochs\n');
    expect(print(ok(LIBRARY))).toContain('regularizer l2(lambda) {\n  penalty(w) = lambda * sum(w ^ 2)\n}\n');
    expect(print(ok('fn f(x) {\n  return x\n}'))).toBe('fn f(x) = x\n');
  });

  it('puts comments on their own line before the statement that follows them', () => {
    const text = 'model m {\n  # before h\n  h = a\n      + b  # after\n  # last\n}\n# end\n';
    const printed = print(ok(text));
    expect(printed).toBe('model m {\n  # before h\n  h = a + b\n  # after\n  # last\n}\n# end\n');
    expect(print(ok(printed))).toBe(printed);
  });

  it('round-trips random expressions', () => {
    const S = { file: 'test.dlm', start: 0, end: 0, line: 1, col: 1 };
    const word = fc.constantFrom('a', 'b', 'x1', 'weights', 'f');
    const ident = word.map((name): A.Ident => ({ kind: 'ident', name, span: S }));
    const name = word.map((n): A.Name => ({ kind: 'name', name: n, span: S }));
    const { e } = fc.letrec<{ e: A.Expr }>((tie) => {
      const sub = tie('e');
      const arg = fc.record({ name: fc.option(ident, { nil: undefined }), value: sub, span: fc.constant(S) });
      const call = fc.record({ kind: fc.constant('call' as const), callee: ident, args: fc.array(arg, { maxLength: 2 }), span: fc.constant(S) });
      const opt = fc.option(sub, { nil: undefined });
      const indexItem = fc.oneof(
        fc.record({ kind: fc.constant('index' as const), value: sub, span: fc.constant(S) }),
        fc.record({ kind: fc.constant('slice' as const), start: opt, end: opt, step: opt, span: fc.constant(S) }),
        fc.constant({ kind: 'ellipsis' as const, span: S }),
      );
      const ops: A.BinaryOp[] = ['+', '-', '*', '/', '^', '@', '==', '!=', '<', '<=', '>', '>=', 'and', 'or'];
      return {
        e: fc.oneof(
          { depthSize: 'small' },
          fc.constantFrom('0', '2.5', '1e-3', '.5').map((raw): A.Expr => ({ kind: 'number', value: Number(raw), raw, span: S })),
          fc.boolean().map((value): A.Expr => ({ kind: 'bool', value, span: S })),
          fc.constantFrom('s', 'a"b\\c\n').map((value): A.Expr => ({ kind: 'string', value, span: S })),
          fc.constant<A.Expr>({ kind: 'training', span: S }),
          name,
          fc.record({ kind: fc.constant('member' as const), object: sub, property: ident, span: fc.constant(S) }),
          fc.record({ kind: fc.constant('binary' as const), op: fc.constantFrom(...ops), left: sub, right: sub, span: fc.constant(S) }),
          fc.record({ kind: fc.constant('unary' as const), op: fc.constantFrom('-' as const, 'not' as const), arg: sub, span: fc.constant(S) }),
          call,
          fc.record({ kind: fc.constant('pipe' as const), left: sub, right: fc.oneof(name, call), span: fc.constant(S) }),
          fc.record({ kind: fc.constant('ternary' as const), cond: sub, then: sub, else: sub, span: fc.constant(S) }),
          fc.record({ kind: fc.constant('tensor' as const), elements: fc.array(sub, { maxLength: 3 }), span: fc.constant(S) }),
          fc.record({ kind: fc.constant('index_expr' as const), target: sub, items: fc.array(indexItem, { minLength: 1, maxLength: 3 }), span: fc.constant(S) }),
        ),
      };
    });
    fc.assert(
      fc.property(e, (value) => {
        const program: A.Program = {
          kind: 'program',
          file: 'test.dlm',
          comments: [],
          decls: [{ kind: 'const', name: { kind: 'ident', name: 'c', span: S }, value, span: S }],
        };
        const printed = print(program);
        const again = ok(printed);
        expect(stripSpans(again)).toEqual(stripSpans(program));
        expect(print(again)).toBe(printed);
      }),
      { numRuns: 500 },
    );
  });
});
