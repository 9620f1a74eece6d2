// The canonical printer against the parser, on random well-formed ASTs (tests/support/ast_arb.ts),
// and `dlc fmt` as a user runs it.

import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type * as A from '../compiler/ast/nodes.ts';
import { format } from '../compiler/diagnostics.ts';
import { parse, print, stripSpans } from '../grammar/index.ts';
import { lexer } from '../grammar/tokens.ts';
import { FILE, program } from './support/ast_arb.ts';
import { dlcIn } from './support/cli.ts';

const ROOT = resolve(import.meta.dirname, '..');

function parsed(text: string): A.Program {
  const r = parse(text, FILE);
  if (r.diagnostics.length) {
    throw new Error(`parse of the printed text failed:\n${r.diagnostics.map((d) => format(d, new Map([[FILE, text]]))).join('')}\n--- text ---\n${text}`);
  }
  return r.program;
}

describe('print and parse on random ASTs', () => {
  it('parse(print(ast)) is ast (up to spans), with no diagnostics', () => {
    fc.assert(
      fc.property(program(), (ast) => {
        const printed = print(ast);
        expect(parse(printed, FILE).diagnostics).toEqual([]);
        expect(stripSpans(parsed(printed))).toEqual(stripSpans(ast));
      }),
      { numRuns: 500 },
    );
  });

  it('fmt is idempotent: print(parse(print(ast))) is print(ast), with or without the source', () => {
    fc.assert(
      fc.property(program(), (ast) => {
        const printed = print(ast);
        const again = parsed(printed);
        expect(print(again)).toBe(printed);
        // What `dlc fmt` runs on an already formatted file.
        expect(print(again, printed)).toBe(printed);
      }),
      { numRuns: 500 },
    );
  });

  it('fmt of a messy layout with comments: same program, every comment kept in order, idempotent', () => {
    // The printed program's tokens, separated by random whitespace and comments (the language is
    // layout-free, so the program is the same); without comments or blank lines fmt gives print(ast).
    const separator = fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom(' ', '   ', '\t', '\n', '\n    ', '\r\n', ' \n\t') },
      { weight: 1, arbitrary: fc.constantFrom('\n\n', '\n  \n  ') },
      { weight: 2, arbitrary: fc.constantFrom(' # note\n', '\n# own line\n', '  #\n', ' #x # y\n  ', '\n\n  # after a blank\n') },
    );
    fc.assert(
      fc.property(program(4, 2), fc.infiniteStream(separator), (ast, seps) => {
        const canonical = print(ast);
        const messy = lexer.tokenize(canonical).tokens.map((t) => t.image + seps.next().value).join('');
        const before = parse(messy, FILE);
        expect(before.diagnostics).toEqual([]);
        expect(stripSpans(before.program)).toEqual(stripSpans(ast));
        const formatted = print(before.program, messy);
        const after = parsed(formatted);
        expect(stripSpans(after)).toEqual(stripSpans(ast));
        expect(after.comments.map((c) => c.text)).toEqual(before.program.comments.map((c) => c.text));
        expect(print(after, formatted)).toBe(formatted);
        if (!/#|\n[ \t\r]*\n/.test(messy)) expect(formatted).toBe(canonical);
      }),
      { numRuns: 500 },
    );
  });

  it('keeps comments around `} else {` where they were (found by the property above)', () => {
    const text = [
      'fn f() {',
      '  if c {  # head',
      '    y = 1  # one',
      '    # end of then',
      '  } else {  # on else',
      '    # start of else',
      '    y = 2',
      '  }',
      '  return y',
      '}',
      '',
    ].join('\n');
    const formatted = print(parsed(text), text);
    expect(formatted).toBe(text);
    expect(print(parsed(formatted), formatted)).toBe(formatted);
  });

  it('is idempotent with a comment inside a declaration printed on one line (found by the property above)', () => {
    const messy = 'fn\nx( # inside\n) = x |> a  # after\nmodel x {\n}\n';
    const once = print(parsed(messy), messy);
    expect(once).toBe('fn x() = x |> a\n# inside\n\n# after\nmodel x {\n}\n');
    expect(print(parsed(once), once)).toBe(once);
  });

  it('the generator covers every declaration, statement, expression, train entry and selector form', () => {
    const seen = new Set<string>();
    const walk = (v: unknown, parent?: string): void => {
      if (Array.isArray(v)) return v.forEach((x) => walk(x, parent));
      if (v === null || typeof v !== 'object') return;
      const o = v as Record<string, unknown>;
      if (typeof o.kind === 'string') seen.add(o.kind);
      if (o.kind === 'fn') seen.add((o.body as A.Stmt[]).length === 1 && (o.body as A.Stmt[])[0].kind === 'return' ? 'fn=' : 'fn{}');
      if (o.kind === 'binary') seen.add(`op ${o.op}`);
      if (o.kind === 'unary') seen.add(`unary ${o.op}`);
      if (o.kind === 'call' && (o.args as A.Arg[]).some((a) => a.name)) seen.add('named arg');
      if (o.kind === 'pipe') seen.add(`pipe to ${(o.right as A.Expr).kind}`);
      if (o.kind === 'if' && o.else) seen.add('else');
      if (o.kind === 'param' && (o.annotations as unknown[]).length) seen.add('annotation');
      if (o.kind === 'train_entry') seen.add(`entry ${o.value ? 'value' : o.args ? 'args' : 'selector'}${o.on ? ' on' : ''}`);
      if (o.kind === 'train_entry') seen.add(`key ${(o.key as A.Ident).name}`);
      if (parent === 'method') seen.add(o.expr ? 'method=' : 'method{}');
      for (const [k, x] of Object.entries(o)) walk(x, ['step', 'lr', 'penalty', 'project'].includes(k) ? 'method' : undefined);
    };
    for (const p of fc.sample(program(), { numRuns: 300, seed: 1 })) walk(p);
    const wanted = [
      'import', 'const', 'fn=', 'fn{}', 'layer', 'optimizer', 'schedule', 'regularizer', 'constraint', 'model',
      'method=', 'method{}', 'let', 'param', 'annotation', 'state', 'update', 'return', 'if', 'else',
      'input', 'output', 'loss', 'metric', 'train',
      'entry value', 'entry value on', 'entry args', 'entry args on', 'entry selector', 'entry selector on',
      ...['optimizer', 'schedule', 'regularize', 'constrain', 'clip', 'freeze', 'batch', 'epochs', 'shuffle', 'early_stop', 'seed'].map((k) => `key ${k}`),
      'sel_weights', 'sel_all', 'sel_glob', 'sel_list',
      'number', 'bool', 'string', 'training', 'name', 'member', 'call', 'named arg', 'pipe to name', 'pipe to call',
      'ternary', 'tensor', 'index_expr', 'index', 'slice', 'ellipsis',
      ...['+', '-', '*', '/', '^', '@', '==', '!=', '<', '<=', '>', '>=', 'and', 'or'].map((op) => `op ${op}`),
      'unary -', 'unary not', 'tensor_type', 'hyper_type', 'dim_int', 'dim_sym', 'dim_ellipsis',
    ];
    expect(wanted.filter((k) => !seen.has(k))).toEqual([]);
  });
});

// ---------- dlc fmt ----------
const work = mkdtempSync(join(tmpdir(), 'dlc-fmt-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const dlc = (...args: string[]) => dlcIn(work, ...args);

/** examples/mnist_mlp.dlm laid out badly, with comments in every place a comment can go. */
const MESSY = `# examples/mnist_mlp.dlm — a two-hidden-layer perceptron for MNIST
model   mnist_mlp{
  input x :f32[ B,784 ]          # B is a symbolic dimension, bound at run time
  input y: i32[B]               # class labels 0..9


  # the hidden layers
  h      = x
    |> dense(256)|>relu   # first
    |> dense( 128 ) |> relu
  logits=dense(h,10)

  output probs = softmax((logits))
  output pred  = argmax(logits,axis:-1)
  loss         = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred==y)
  train {   optimizer  adam(lr: 1e-3)
    batch      64
    epochs     3    # a few
    shuffle    true
    seed       1
    # more settings could go here
  }
}
# the end
`;

const CANONICAL = `# examples/mnist_mlp.dlm — a two-hidden-layer perceptron for MNIST
model mnist_mlp {
  input x: f32[B, 784]  # B is a symbolic dimension, bound at run time
  input y: i32[B]  # class labels 0..9

  # the hidden layers
  h = x |> dense(256) |> relu |> dense(128) |> relu
  # first
  logits = dense(h, 10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)
  train {
    optimizer adam(lr: 1e-3)
    batch 64
    epochs 3  # a few
    shuffle true
    seed 1
    # more settings could go here
  }
}
# the end
`;

const comments = (text: string) => text.split('\n').flatMap((l) => /#.*$/.exec(l)?.[0] ?? []);

describe('dlc fmt', () => {
  it('rewrites a messy copy of examples/mnist_mlp.dlm canonically, keeping every comment', async () => {
    const file = join(work, 'mnist.dlm');
    writeFileSync(file, MESSY);
    const r = await dlc('fmt', 'mnist.dlm');
    expect(r.code).toBe(0);
    const out = readFileSync(file, 'utf8');
    expect(out).toBe(CANONICAL);
    expect(comments(out)).toEqual(comments(MESSY));
    // The same program as the example it was made from.
    const example = readFileSync(join(ROOT, 'examples/mnist_mlp.dlm'), 'utf8');
    expect(stripSpans(parse(out, 'x.dlm').program)).toEqual(stripSpans(parse(example, 'x.dlm').program));
    // No temporary file is left behind.
    expect(readdirSync(work).filter((f) => f.endsWith('.tmp'))).toEqual([]);

    // Idempotent: a second run changes nothing, and --check agrees.
    expect((await dlc('fmt', 'mnist.dlm')).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(CANONICAL);
    expect(await dlc('fmt', '--check', 'mnist.dlm')).toMatchObject({ code: 0, stdout: '' });
  });

  it('formats the real examples to a fixed point', async () => {
    const file = join(work, 'example.dlm');
    copyFileSync(join(ROOT, 'examples/mnist_mlp.dlm'), file);
    expect((await dlc('fmt', 'example.dlm')).code).toBe(0);
    const once = readFileSync(file, 'utf8');
    expect((await dlc('fmt', 'example.dlm')).code).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe(once);
  });

  it('--check writes nothing and exits 1 listing the files that are not formatted', async () => {
    writeFileSync(join(work, 'messy.dlm'), MESSY);
    writeFileSync(join(work, 'clean.dlm'), CANONICAL);
    const r = await dlc('fmt', '--check', 'clean.dlm', 'messy.dlm');
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('messy.dlm\n');
    expect(r.stderr).toContain('1 file is not formatted');
    expect(readFileSync(join(work, 'messy.dlm'), 'utf8')).toBe(MESSY);
    expect(readFileSync(join(work, 'clean.dlm'), 'utf8')).toBe(CANONICAL);
    expect(await dlc('fmt', '--check', 'clean.dlm')).toMatchObject({ code: 0, stdout: '' });
  });

  it('refuses a file with a syntax error, reports it, and leaves the file untouched', async () => {
    const broken = MESSY.replace('logits=dense(h,10)', 'logits=dense(h,10')
      .replace('metric accuracy', 'metric accuracy accuracy');
    const file = join(work, 'broken.dlm');
    writeFileSync(file, broken);
    writeFileSync(join(work, 'other.dlm'), MESSY);
    const r = await dlc('fmt', 'broken.dlm', 'other.dlm');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/broken\.dlm:\d+:\d+: error\[E0002\]/);
    expect(r.stderr.match(/error\[E0002\]/g)?.length).toBeGreaterThanOrEqual(2);
    expect(r.stderr).toContain('broken.dlm: not formatted');
    expect(readFileSync(file, 'utf8')).toBe(broken);
    // The other file is still formatted.
    expect(readFileSync(join(work, 'other.dlm'), 'utf8')).toBe(CANONICAL);

    const check = await dlc('fmt', '--check', 'broken.dlm');
    expect(check.code).toBe(1);
    expect(readFileSync(file, 'utf8')).toBe(broken);
  });

  it('reports a missing file as one line', async () => {
    const r = await dlc('fmt', 'missing.dlm');
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("dlc: cannot read 'missing.dlm': ENOENT");
  });
});
