// Fuzzing the checker: random and mutated inputs go through check() (parse, stdlib, imports and
// lowering to graphs), in process. For every input: no exception escapes, it finishes within a
// second, and every diagnostic points into the fuzzed file or a stdlib file, inside its text.
//
// The inputs are deterministic: input i of a family is made by a PRNG seeded with (family, i), so
// a failure names the family and index that reproduce it. The seed corpus is examples/*.dlm,
// tests/fixtures/*.dlm and the code blocks of docs/language.md.
//
// Cost: check() parses the whole stdlib on every call, which is most of its time on these inputs
// (a few ms each), so the full run takes minutes on a 2-core machine. FUZZ_SCALE=0.1 runs a tenth.

import { readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check, STDLIB_DIR } from '../compiler/compile.ts';
import { format, hasErrors, type Diagnostic, type Span } from '../compiler/diagnostics.ts';
import { builtins } from '../compiler/ir/builtins.ts';
import { parse, print } from '../grammar/index.ts';
import { Identifier, lexer, NumberLit } from '../grammar/tokens.ts';
import { program as programArb } from './support/ast_arb.ts';

const ROOT = resolve(import.meta.dirname, '..');
/** The fuzzed file: never on disk, served by `read`. */
const FUZZ = join(ROOT, 'tests', 'fuzz_input.dlm');
const MAX_MS = 1000;

const stdlib = new Map(
  readdirSync(STDLIB_DIR)
    .filter((f) => f.endsWith('.dlm'))
    .map((f) => [resolve(STDLIB_DIR, f), readFileSync(resolve(STDLIB_DIR, f), 'utf8')] as const),
);

function reader(text: string) {
  return (path: string): string => {
    if (path === FUZZ) return text;
    const lib = stdlib.get(path);
    if (lib !== undefined) return lib;
    throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
  };
}

// ---------- the seed corpus ----------
const dlmFiles = (dir: string) =>
  readdirSync(join(ROOT, dir))
    .filter((f) => f.endsWith('.dlm'))
    .sort()
    .map((f) => readFileSync(join(ROOT, dir, f), 'utf8'));
const docBlocks = [...readFileSync(join(ROOT, 'docs/language.md'), 'utf8').matchAll(/```[a-z]*\n([\s\S]*?)```/g)].map((m) => m[1]);
const CORPUS = [...dlmFiles('examples'), ...dlmFiles('tests/fixtures'), ...docBlocks];
const TOKENS = CORPUS.map((text) => lexer.tokenize(text).tokens.map((t) => t.image));
/** Texts with a model, and texts of declarations only (which combine with a model). */
const MODELS = CORPUS.filter((t) => /^\s*model\b/m.test(t));
const DECLS = CORPUS.filter((t) => !/^\s*model\b/m.test(t));
/** Every name a program can call: the library's declarations and the primitives. */
const LIBRARY_NAMES = [
  ...[...stdlib].flatMap(([file, text]) => parse(text, file).program.decls.flatMap((d) => ('name' in d ? [d.name.name] : []))),
  ...Object.keys(builtins),
];

/** Words that make mutated inputs reach deep into lowering. */
const VOCAB = [
  ...new Set([
    ...TOKENS.flat(),
    'model', 'layer', 'fn', 'optimizer', 'schedule', 'regularizer', 'constraint', 'import', 'const', 'input', 'output',
    'loss', 'metric', 'train', 'param', 'state', 'return', 'if', 'else', 'training', 'on', 'true', 'false', 'and', 'or',
    'not', '|>', '->', '<-', '==', '!=', '<=', '>=', '<', '>', '=', '+', '-', '*', '/', '^', '@', '?', ':', ',', '(', ')',
    '[', ']', '{', '}', '...', '.', '"', '"x.dlm"', '"conv*"', '@no_decay', '#', '0', '1', '2', '-1', '0.5', '1e-3', '1e9',
    '99999999999', '1e999', '.5', 'x', 'y', 'B', 'f32', 'i32', 'bool', 'int', 'float', 'dense', 'relu', 'softmax',
    'reshape', 'transpose', 'fill', 'uniform', 'pick', 'one_hot', 'argmax', 'sum', 'mean', 'max', 'min', 'shape', 'axis',
    'keepdims', 'weights', 'all', 'adam', 'sgd', 'batch_norm', 'dropout', 'freeze', 'clip', 'early_stop', 'val',
  ]),
];

// ---------- deterministic randomness ----------
function prng(seed: number): (n: number) => number {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
}
type Rand = ReturnType<typeof prng>;
const pick = <T>(r: Rand, xs: readonly T[]): T => xs[r(xs.length)];
const utf8 = new TextEncoder();
const decode = (bytes: Uint8Array, r: Rand) => new TextDecoder(r(2) ? 'utf-8' : 'latin1').decode(bytes);

// ---------- the families of inputs ----------
/** Random bytes: mostly printable, with punctuation, control characters and high bytes. */
function randomBytes(r: Rand): string {
  const n = r(4) === 0 ? r(2000) : r(200);
  const bytes = new Uint8Array(n);
  const alphabet = 'abcxyz_019 \n\t(){}[]<>=+-*/^@?:,."#|.!';
  for (let i = 0; i < n; i++) bytes[i] = r(3) === 0 ? r(256) : alphabet.charCodeAt(r(alphabet.length));
  return decode(bytes, r);
}

/** A soup of the language's tokens and corpus words. */
function tokenSoup(r: Rand): string {
  const n = 1 + r(120);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(pick(r, VOCAB), pick(r, [' ', ' ', '\n', '']));
  return out.join('');
}

/** A corpus text with a few of its bytes flipped, replaced, inserted or deleted. */
function byteFlips(r: Rand): string {
  const bytes = [...utf8.encode(pick(r, CORPUS))];
  for (let k = 1 + r(6); k > 0 && bytes.length; k--) {
    const at = r(bytes.length);
    switch (r(4)) {
      case 0:
        bytes[at] ^= 1 << r(8);
        break;
      case 1:
        bytes[at] = r(256);
        break;
      case 2:
        bytes.splice(at, 0, r(128));
        break;
      default:
        bytes.splice(at, 1 + r(3));
    }
  }
  return decode(Uint8Array.from(bytes), r);
}

/** A corpus text cut at a random point (sometimes with a random tail kept). */
function truncation(r: Rand): string {
  const text = pick(r, CORPUS);
  const at = r(text.length + 1);
  return r(4) === 0 ? text.slice(r(at + 1), at) : text.slice(0, at);
}

/** A corpus file's tokens, shuffled, deleted, duplicated, swapped or replaced, joined by layout. */
function tokenMutation(r: Rand): string {
  const tokens = [...pick(r, TOKENS)];
  for (let k = 1 + r(4); k > 0 && tokens.length; k--) {
    const at = r(tokens.length);
    const len = 1 + r(r(3) === 0 ? 12 : 3);
    switch (r(6)) {
      case 0: {
        // shuffle a window
        const w = tokens.slice(at, at + len);
        for (let i = w.length - 1; i > 0; i--) {
          const j = r(i + 1);
          [w[i], w[j]] = [w[j], w[i]];
        }
        tokens.splice(at, w.length, ...w);
        break;
      }
      case 1:
        tokens.splice(at, len);
        break;
      case 2:
        tokens.splice(at, 0, ...tokens.slice(at, at + len));
        break;
      case 3: {
        const b = r(tokens.length);
        [tokens[at], tokens[b]] = [tokens[b], tokens[at]];
        break;
      }
      case 4:
        tokens[at] = pick(r, VOCAB);
        break;
      default:
        // a piece of another corpus file
        tokens.splice(at, 0, ...pick(r, TOKENS).slice(r(50), r(50) + len));
    }
  }
  return tokens.map((t) => t + pick(r, [' ', ' ', ' ', '\n', '\n  '])).join('');
}

/** A model, sometimes after a text of declarations it may then use. */
const modelText = (r: Rand) => (r(2) ? pick(r, MODELS) : `${pick(r, DECLS)}\n${pick(r, MODELS)}`);

/** Replaces the tokens of `type` at a few random places (keeping layout and comments). */
function replaceTokens(text: string, r: Rand, type: typeof Identifier, choices: (r: Rand) => string): string {
  const at = lexer.tokenize(text).tokens.filter((t) => t.tokenType === type);
  const chosen = [...new Set(Array.from({ length: 1 + r(3) }, () => at[r(at.length)]))].filter((t) => t);
  for (const t of chosen.sort((a, b) => b.startOffset - a.startOffset)) {
    text = text.slice(0, t.startOffset) + choices(r) + text.slice(t.startOffset + t.image.length);
  }
  return text;
}

/** A valid model with a few names swapped for other names of the file or the library: calls
 *  that recurse, layers used as optimizers, hyperparameters as tensors, ... */
function nameSwap(r: Rand): string {
  const text = modelText(r);
  const names = [...new Set(lexer.tokenize(text).tokens.filter((t) => t.tokenType === Identifier).map((t) => t.image)), ...LIBRARY_NAMES];
  return replaceTokens(text, r, Identifier, () => pick(r, names));
}

/** A valid model with a few numbers swapped for other values: shapes that do not fit, tensors
 *  where numbers belong, huge and negative sizes. */
const LITERALS = ['0', '1', '2', '-1', '0.5', '1e9', '99999999999', '1e999', '[1.0, 2.0]', '[[1.0], [2.0, 3.0]]', '[]', '"s"', 'true', 'x', 'training'];
const literalSwap = (r: Rand): string => replaceTokens(modelText(r), r, NumberLit, () => pick(r, LITERALS));

/** A random well-formed program (tests/support/ast_arb.ts), printed: valid syntax, random meaning. */
const printedPrograms = (count: number, seed: number): string[] =>
  fc.sample(programArb(4, 2), { numRuns: count, seed }).map((p) => print(p));

/** FUZZ_SCALE multiplies the number of inputs and FUZZ_SEED shifts every seed, for longer hunts
 *  by hand; the suite runs with neither. */
const SCALE = Number(process.env.FUZZ_SCALE ?? 1);
const SEED = Number(process.env.FUZZ_SEED ?? 0);
const FAMILIES: [name: string, count: number, make: (r: Rand) => string][] = (
  [
    ['random bytes', 1000, randomBytes],
    ['token soup', 1000, tokenSoup],
    ['byte flips', 2000, byteFlips],
    ['truncation', 1000, truncation],
    ['token mutation', 3000, tokenMutation],
    ['name swap', 1000, nameSwap],
    ['literal swap', 500, literalSwap],
  ] as const
).map(([name, count, make]) => [name, Math.round(count * SCALE), make]);
const PRINTED = Math.round(1000 * SCALE);

// ---------- the invariants ----------
interface Failure {
  input: string;
  text: string;
  problem: string;
}

function spanProblem(s: Span, texts: ReadonlyMap<string, string>): string | undefined {
  const text = texts.get(s.file);
  if (text === undefined) return `a span in an unexpected file ${s.file}`;
  const lines = text.split('\n').length;
  if (!(s.line >= 1 && s.line <= lines)) return `line ${s.line} is outside 1..${lines}`;
  if (!(0 <= s.start && s.start <= s.end && s.end <= text.length)) return `span ${s.start}..${s.end} is outside 0..${text.length}`;
  if (!(s.col >= 1)) return `column ${s.col}`;
  return undefined;
}

/** Runs one input; returns what went wrong, if anything, and the time it took. */
function checkOne(text: string): { problem?: string; ms: number } {
  const t0 = performance.now();
  let r: ReturnType<typeof check>;
  try {
    r = check(FUZZ, reader(text));
  } catch (e) {
    return { problem: `check threw ${e instanceof Error ? `${e.constructor.name}: ${e.message}\n${e.stack}` : String(e)}`, ms: performance.now() - t0 };
  }
  const ms = performance.now() - t0;
  const texts = new Map([...stdlib, [FUZZ, text]]);
  for (const d of r.diagnostics as Diagnostic[]) {
    for (const s of [d.span, ...(d.related ?? []).map((x) => x.span)]) {
      const p = spanProblem(s, texts);
      if (p) return { problem: `${d.code} ${d.message}: ${p}`, ms };
    }
    try {
      format(d, texts);
    } catch (e) {
      return { problem: `format threw on ${d.code}: ${String(e)}`, ms };
    }
  }
  if (!hasErrors(r.diagnostics) && !r.model) return { problem: 'no error, yet no model', ms };
  return { ms };
}

// ---------- regressions: crashes the fuzzer found, each fixed in the product ----------
const M = (items: string, decls = '') => `${decls}model m {\n  input x: f32[B, 3]\n${items}\n}\n`;
const REGRESSIONS: [what: string, text: string, code: string][] = [
  // Found by the fuzzer.
  ['pick() on labels of the wrong shape (a ShapeError in a primitive)', 'model m {\n  input x: f32[B, 10]\n  input y: i32\n  loss = softmax_cross_entropy(x, y)\n}\n', 'E0201'],
  ['conv2d on an image of rank 3 (a ShapeError in a primitive)', 'model m {\n  input x: f32[B, 28, 1]\n  c = x |> conv2d(6, kernel: 5)\n  loss = mean(c)\n}\n', 'E0201'],
  ['an input with a dimension of 0', 'model m {\n  input x: f32[B, 0]\n  loss = mean(dense(x, 2))\n}\n', 'E0005'],
  ['a parameter with a negative dimension', M('  loss = mean(dense(x, -1))'), 'E0201'],
  ['a parameter with a dimension of 0', M('  loss = mean(dense(x, 0))'), 'E0201'],
  // Found by probing around those.
  ['a dimension too large for a number', `model m {\n  input x: f32[B, ${'9'.repeat(400)}]\n  loss = mean(x)\n}\n`, 'E0005'],
  ['a parameter initialized with a value of the wrong shape', M('  loss = mean(l(x))', 'layer l(x) {\n  param w: f32[3] = [1.0, 2.0]\n  return x * w\n}\n'), 'E0201'],
  ['layer state initialized with a value of the wrong shape', M('  loss = mean(l(x))', 'layer l(x) {\n  state s: f32[3] = [1.0, 2.0]\n  return x\n}\n'), 'E0201'],
  [
    'an optimizer slot initialized with a value of the wrong shape',
    M('  loss = mean(dense(x, 3))\n  train {\n    optimizer o\n  }', 'optimizer o(lr = 0.1) {\n  state v = [1.0, 2.0]\n  step(p, g, t) {\n    p <- p - lr * g\n  }\n}\n'),
    'E0201',
  ],
  ['a regularizer whose penalty is not a scalar', M('  loss = mean(dense(x, 3))\n  train {\n    regularize r on weights\n  }', 'regularizer r() { penalty(w) = w }\n'), 'E0402'],
  ['a tensor hyperparameter making a penalty a tensor', M('  loss = mean(dense(x, 3))\n  train {\n    regularize l2([1.0, 2.0]) on weights\n  }'), 'E0402'],
  ['a fn that calls itself without end', M('  loss = mean(f(x))', 'fn f(x) = f(x)\n'), 'E0304'],
  ['a layer that calls itself without end', M('  loss = mean(l(x))', 'layer l(x) {\n  return l(x)\n}\n'), 'E0304'],
  ['fns that call each other without end', M('  loss = mean(f(x))', 'fn f(x) = g(x)\nfn g(x) = f(x)\n'), 'E0304'],
  ['a default argument that calls its own fn', M('  loss = mean(x) + f()', 'fn f(y = f()) = y\n'), 'E0304'],
];

describe('fuzzing check()', () => {
  it.each(REGRESSIONS)('regression: %s', (_, text, code) => {
    expect(checkOne(text).problem).toBeUndefined();
    expect(check(FUZZ, reader(text)).diagnostics.map((d) => d.code)).toContain(code);
  });

  it('compile-time recursion that ends is fine', () => {
    const text = M('  loss = mean(deep(x, 150)) * fact(5)', 'fn fact(n) = n == 0 ? 1 : n * fact(n - 1)\nlayer deep(x, n) {\n  if n == 0 {\n    return dense(x, 2)\n  }\n  return deep(x, n - 1)\n}\n');
    expect(checkOne(text).problem).toBeUndefined();
    expect(check(FUZZ, reader(text)).diagnostics).toEqual([]);
  });

  it(`${FAMILIES.reduce((n, f) => n + f[1], PRINTED)} random and mutated inputs: no crash, within ${MAX_MS} ms each, every span in its file`, () => {
    const failures: Failure[] = [];
    const times: number[] = [];
    let slowest = { ms: 0, input: '' };
    let withoutErrors = 0;
    const run = (input: string, text: string) => {
      const { problem, ms: first } = checkOne(text);
      // A time over the limit is measured again, best of three: on a loaded machine one run can
      // be descheduled or meet a long GC pause, which says nothing about the input.
      let ms = first;
      for (let k = 0; k < 2 && ms >= MAX_MS; k++) ms = Math.min(ms, checkOne(text).ms);
      times.push(ms);
      if (ms > slowest.ms) slowest = { ms, input };
      if (problem) failures.push({ input, text, problem });
    };
    const start = performance.now();
    FAMILIES.forEach(([name, count, make], f) => {
      for (let i = 0; i < count; i++) run(`${name} #${i}`, make(prng(1_000_003 * (f + 1) + SEED + i)));
    });
    printedPrograms(PRINTED, 42 + SEED).forEach((text, i) => run(`printed program #${i}`, text));
    for (const text of CORPUS) {
      if (!hasErrors(check(FUZZ, reader(text)).diagnostics)) withoutErrors++;
    }
    const total = performance.now() - start;
    times.sort((a, b) => a - b);
    console.log(
      `fuzz: ${times.length} inputs in ${(total / 1000).toFixed(1)} s; per input median ${times[times.length >> 1].toFixed(2)} ms, ` +
        `p99 ${times[Math.floor(times.length * 0.99)].toFixed(1)} ms, max ${slowest.ms.toFixed(1)} ms (${slowest.input}); ` +
        `${withoutErrors}/${CORPUS.length} corpus texts check clean`,
    );
    const shown = failures.slice(0, 5).map((x) => `--- ${x.input}: ${x.problem}\n${JSON.stringify(x.text)}`);
    expect(shown, `${failures.length} failing inputs`).toEqual([]);
    if (SCALE >= 1) expect(times.length).toBeGreaterThanOrEqual(10_000);
    expect(slowest.ms, `slowest input: ${slowest.input}`).toBeLessThan(MAX_MS);
  }, 900_000);
});
