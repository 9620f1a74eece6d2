// fast-check arbitraries of random well-formed .dlm ASTs: every declaration form and every
// expression form, with bounded depth. "Well-formed" means what the grammar can read back:
//   - identifiers are never keywords, except member names, argument names and train keys (and a
//     train key is never `and`, `or` or `on`, which would continue the entry before it);
//   - number raws are what the lexer produces for a non-negative number, and `value` is Number(raw);
//   - a bare `bool` in a formal or fn result type is the hyper type, never a tensor type;
//   - a `freeze` entry carries a selector and no other key does;
//   - a method has exactly one of expr/body and the name its declaration kind requires; only an
//     optimizer has state.
// Spans are all the same dummy span: compare ASTs with stripSpans.

import fc from 'fast-check';
import type * as A from '../../compiler/ast/nodes.ts';
import type { Span } from '../../compiler/diagnostics.ts';

export const FILE = 'arb.dlm';
const S: Span = { file: FILE, start: 0, end: 0, line: 1, col: 1 };
const span = fc.constant(S);

export const KEYWORDS = [
  'model', 'layer', 'fn', 'optimizer', 'schedule', 'regularizer', 'constraint', 'import', 'const',
  'input', 'output', 'loss', 'metric', 'train', 'param', 'state', 'return', 'if', 'else', 'training',
  'on', 'true', 'false', 'and', 'or', 'not',
];
const KEYWORD_SET = new Set(KEYWORDS);

/** Any word the lexer reads as one name-like token (keywords included). */
const anyWord = fc.oneof(
  fc.constantFrom('x', 'y', 'h', 'w', 'b', 'lr', 'f32', 'int', 'bool', 'weights', 'all', 'val', 'dense', 'relu', '_', 'B'),
  fc.constantFrom(...KEYWORDS),
  fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,7}$/),
);
/** A word that is an Identifier token: not a keyword. */
const word = anyWord.filter((w) => !KEYWORD_SET.has(w));

const identOf = (w: fc.Arbitrary<string>) => w.map((name): A.Ident => ({ kind: 'ident', name, span: S }));
export const ident = identOf(word);
const anyIdent = identOf(anyWord);
const trainKey = identOf(
  fc.oneof(
    fc.constantFrom('optimizer', 'schedule', 'regularize', 'constrain', 'clip', 'batch', 'epochs', 'shuffle', 'early_stop', 'seed'),
    anyWord.filter((w) => w !== 'and' && w !== 'or' && w !== 'on' && w !== 'freeze'),
  ),
);

// ---------- literals ----------
const digits = fc.stringMatching(/^[0-9]{1,6}$/);
const numberRaw = fc.oneof(
  fc.constantFrom('0', '1', '3', '256', '0.5', '2.5', '1e-3', '1E5', '.5', '1e+2', '007', '0.000', '1e999'),
  digits,
  fc.tuple(digits, digits).map(([a, b]) => `${a}.${b}`),
  digits.map((d) => `.${d}`),
  fc.tuple(digits, fc.constantFrom('e', 'E', 'e-', 'e+'), fc.stringMatching(/^[0-9]{1,3}$/)).map(([a, e, x]) => `${a}${e}${x}`),
);
const numberLit = numberRaw.map((raw): A.Expr => ({ kind: 'number', value: Number(raw), raw, span: S }));
const stringValue = fc.oneof(
  fc.constantFrom('', 'conv*.w', 'head.*', 'a"b', 'back\\slash', 'new\nline', 'tab\t', 'é ✓', '#not a comment', '\\n'),
  fc.string({ maxLength: 8 }),
);
const stringLit = stringValue.map((value): A.StringLit => ({ kind: 'string', value, span: S }));
const boolLit = fc.boolean().map((value): A.Expr => ({ kind: 'bool', value, span: S }));
const training = fc.constant<A.Expr>({ kind: 'training', span: S });
const nameExpr = word.map((name): A.Name => ({ kind: 'name', name, span: S }));

const BINARY_OPS: A.BinaryOp[] = ['+', '-', '*', '/', '^', '@', '==', '!=', '<', '<=', '>', '>=', 'and', 'or'];

// ---------- expressions ----------
const exprCache = new Map<number, fc.Arbitrary<A.Expr>>();

/** Expressions nested at most `depth` levels. */
export function expr(depth = 3): fc.Arbitrary<A.Expr> {
  const cached = exprCache.get(depth);
  if (cached) return cached;
  const leaf = fc.oneof(numberLit, numberLit, nameExpr, nameExpr, boolLit, stringLit, training);
  if (depth <= 0) {
    exprCache.set(depth, leaf);
    return leaf;
  }
  const sub = expr(depth - 1);
  const opt = fc.option(sub, { nil: undefined });
  const arg = argOf(sub);
  const call = fc.record({ kind: fc.constant('call' as const), callee: ident, args: fc.array(arg, { maxLength: 3 }), span });
  const indexItem = fc.oneof(
    fc.record({ kind: fc.constant('index' as const), value: sub, span }),
    fc.record({ kind: fc.constant('slice' as const), start: opt, end: opt, step: opt, span }, { requiredKeys: ['kind', 'span'] }),
    fc.constant<A.IndexItem>({ kind: 'ellipsis', span: S }),
  );
  const compound = fc.oneof(
    fc.record({ kind: fc.constant('member' as const), object: sub, property: anyIdent, span }),
    fc.record({ kind: fc.constant('binary' as const), op: fc.constantFrom(...BINARY_OPS), left: sub, right: sub, span }),
    fc.record({ kind: fc.constant('unary' as const), op: fc.constantFrom('-' as const, 'not' as const), arg: sub, span }),
    call,
    fc.record({ kind: fc.constant('pipe' as const), left: sub, right: fc.oneof(nameExpr, call), span }),
    fc.record({ kind: fc.constant('ternary' as const), cond: sub, then: sub, else: sub, span }),
    fc.record({ kind: fc.constant('tensor' as const), elements: fc.array(sub, { maxLength: 3 }), span }),
    fc.record({ kind: fc.constant('index_expr' as const), target: sub, items: fc.array(indexItem, { minLength: 1, maxLength: 3 }), span }),
  );
  const arb = fc.oneof({ weight: 1, arbitrary: leaf }, { weight: 3, arbitrary: compound }) as fc.Arbitrary<A.Expr>;
  exprCache.set(depth, arb);
  return arb;
}

function argOf(value: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.Arg> {
  return fc.record({ name: fc.option(anyIdent, { nil: undefined }), value, span }, { requiredKeys: ['value', 'span'] });
}

const namedArg = (value: fc.Arbitrary<A.Expr>) => fc.record({ name: anyIdent, value, span });

// ---------- types ----------
const dim: fc.Arbitrary<A.DimExpr> = fc.oneof(
  fc.integer({ min: 1, max: 100_000 }).map((value): A.DimExpr => ({ kind: 'dim_int', value, span: S })),
  word.map((name): A.DimExpr => ({ kind: 'dim_sym', name, span: S })),
  fc.constant<A.DimExpr>({ kind: 'dim_ellipsis', span: S }),
);
const dtype = fc.constantFrom('f32' as const, 'i32' as const, 'bool' as const);
/** A tensor type; `bare` allows one written without brackets (dims undefined). */
function tensorType(bare: fc.Arbitrary<A.TensorType['dtype']>): fc.Arbitrary<A.TensorType> {
  return fc.oneof(
    fc.record({ kind: fc.constant('tensor_type' as const), dtype, dims: fc.array(dim, { maxLength: 4 }), span }),
    fc.record({ kind: fc.constant('tensor_type' as const), dtype: bare, span }),
  );
}
const stmtType = tensorType(dtype);
/** Formals and fn results: a bare `bool` reads back as the hyper type. */
const signatureType: fc.Arbitrary<A.TypeExpr> = fc.oneof(
  tensorType(fc.constantFrom('f32' as const, 'i32' as const)),
  fc.record({ kind: fc.constant('hyper_type' as const), name: fc.constantFrom('int' as const, 'float' as const, 'bool' as const), span }),
);

// ---------- statements ----------
type StmtKind = A.Stmt['kind'];

/** Statements of a block: `kinds` says which forms the block may hold. */
function stmts(kinds: readonly StmtKind[], depth: number, e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.Stmt[]> {
  return fc.array(stmt(kinds, depth, e), { maxLength: 4 });
}

function stmt(kinds: readonly StmtKind[], depth: number, e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.Stmt> {
  const forms: fc.Arbitrary<A.Stmt>[] = [];
  for (const k of kinds) {
    switch (k) {
      case 'let':
        forms.push(fc.record({ kind: fc.constant('let' as const), name: ident, value: e, span }));
        break;
      case 'update':
        forms.push(fc.record({ kind: fc.constant('update' as const), target: ident, value: e, span }));
        break;
      case 'return':
        forms.push(fc.record({ kind: fc.constant('return' as const), value: e, span }));
        break;
      case 'param':
        forms.push(
          fc.record({
            kind: fc.constant('param' as const),
            name: ident,
            type: stmtType,
            init: e,
            annotations: fc.array(anyWord.map((name): A.Annotation => ({ kind: 'annotation', name, span: S })), { maxLength: 2 }),
            span,
          }),
        );
        break;
      case 'state':
        forms.push(stateStmt(e));
        break;
      case 'if':
        if (depth > 0) forms.push(ifStmt(kinds, depth - 1, e));
        break;
    }
  }
  return fc.oneof(...forms);
}

function stateStmt(e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.StateStmt> {
  return fc.record({ kind: fc.constant('state' as const), name: ident, type: stmtType, init: e, span }, { requiredKeys: ['kind', 'name', 'init', 'span'] });
}

/** `if c { } [else { } | else if ...]`, nested at most `depth` more levels. */
function ifStmt(kinds: readonly StmtKind[], depth: number, e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.If> {
  const block = stmts(kinds, depth, e);
  const elseIf = depth > 0 ? ifStmt(kinds, depth - 1, e).map((s) => [s]) : block;
  return fc.record(
    {
      kind: fc.constant('if' as const),
      cond: fc.oneof(training, e),
      then: block,
      else: fc.oneof(block, elseIf),
      span,
    },
    { requiredKeys: ['kind', 'cond', 'then', 'span'] },
  );
}

// ---------- declarations ----------
const FN_STMTS: StmtKind[] = ['let', 'return', 'if'];
const LAYER_STMTS: StmtKind[] = ['let', 'param', 'state', 'update', 'return', 'if'];
const METHOD_STMTS: StmtKind[] = ['let', 'update', 'return', 'if'];

function formals(e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.Formal[]> {
  return fc.array(fc.record({ name: ident, type: signatureType, default: e, span }, { requiredKeys: ['name', 'span'] }), { maxLength: 4 });
}

function method(name: string, e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.Method> {
  const head = { name: fc.constant<A.Ident>({ kind: 'ident', name, span: S }), params: fc.array(ident, { maxLength: 3 }), span };
  return fc.oneof(fc.record({ ...head, expr: e }), fc.record({ ...head, body: stmts(METHOD_STMTS, 1, e) }));
}

/** Selectors of `on` and `freeze`. */
export const selector: fc.Arbitrary<A.Selector> = fc.letrec<{ sel: A.Selector }>((tie) => ({
  sel: fc.oneof(
    { depthSize: 'small', maxDepth: 3 },
    fc.constant<A.Selector>({ kind: 'sel_weights', span: S }),
    fc.constant<A.Selector>({ kind: 'sel_all', span: S }),
    stringValue.map((pattern): A.Selector => ({ kind: 'sel_glob', pattern, span: S })),
    fc.record({ kind: fc.constant('sel_list' as const), items: fc.array(tie('sel'), { maxLength: 3 }), span }),
  ),
})).sel;

function trainEntry(e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.TrainEntry> {
  const on = fc.option(selector, { nil: undefined });
  const key = (name: string) => fc.constant<A.Ident>({ kind: 'ident', name, span: S });
  const entry = 'train_entry' as const;
  return fc.oneof(
    // The forms of the train block: `optimizer adam(lr: 1e-3)`, `regularize l2(1e-4) on weights`,
    // `freeze "conv*"`, `early_stop patience: 3, on: val.loss`, `batch 64`, ...
    fc.record({ kind: fc.constant(entry), key: trainKey, value: e, on, span }),
    fc.record({ kind: fc.constant(entry), key: trainKey, args: fc.array(namedArg(e), { minLength: 1, maxLength: 3 }), on, span }),
    fc.record({ kind: fc.constant(entry), key: key('freeze'), selector, on, span }),
    fc.record({ kind: fc.constant(entry), key: fc.constantFrom('regularize', 'constrain').chain(key), value: e, on: selector, span }),
    fc.record({ kind: fc.constant(entry), key: key('early_stop'), args: fc.array(namedArg(e), { minLength: 1, maxLength: 2 }), span }),
  );
}

function modelItem(e: fc.Arbitrary<A.Expr>): fc.Arbitrary<A.ModelItem> {
  return fc.oneof(
    fc.record({ kind: fc.constant('input' as const), name: ident, type: stmtType, span }),
    fc.record({ kind: fc.constant('output' as const), name: ident, value: e, span }),
    fc.record({ kind: fc.constant('loss' as const), value: e, span }),
    fc.record({ kind: fc.constant('metric' as const), name: ident, value: e, span }),
    fc.record({ kind: fc.constant('let' as const), name: ident, value: e, span }),
    fc.record({ kind: fc.constant('train' as const), entries: fc.array(trainEntry(e), { maxLength: 6 }), span }),
  );
}

/** One declaration of any form; expressions nested at most `exprDepth`. */
export function decl(exprDepth = 3): fc.Arbitrary<A.Decl> {
  const e = expr(exprDepth);
  const returnOnly = e.map((value): A.Stmt[] => [{ kind: 'return', value, span: S }]);
  const ret = fc.option(signatureType, { nil: undefined });
  return fc.oneof(
    fc.record({ kind: fc.constant('import' as const), path: stringLit, span }),
    fc.record({ kind: fc.constant('const' as const), name: ident, value: e, span }),
    // fn f(x) = expr  and  fn f(x) -> T { ... }
    fc.record({ kind: fc.constant('fn' as const), name: ident, params: formals(e), ret, body: returnOnly, span }, { requiredKeys: ['kind', 'name', 'params', 'body', 'span'] }),
    fc.record({ kind: fc.constant('fn' as const), name: ident, params: formals(e), ret, body: stmts(FN_STMTS, 2, e), span }, { requiredKeys: ['kind', 'name', 'params', 'body', 'span'] }),
    fc.record({ kind: fc.constant('layer' as const), name: ident, params: formals(e), body: stmts(LAYER_STMTS, 2, e), span }),
    fc.record({
      kind: fc.constant('optimizer' as const),
      name: ident,
      params: formals(e),
      state: fc.array(stateStmt(e), { maxLength: 3 }),
      step: method('step', e),
      span,
    }),
    fc.record({ kind: fc.constant('schedule' as const), name: ident, params: formals(e), lr: method('lr', e), span }),
    fc.record({ kind: fc.constant('regularizer' as const), name: ident, params: formals(e), penalty: method('penalty', e), span }),
    fc.record({ kind: fc.constant('constraint' as const), name: ident, params: formals(e), project: method('project', e), span }),
    fc.record({ kind: fc.constant('model' as const), name: ident, items: fc.array(modelItem(e), { maxLength: 8 }), span }),
  );
}

/** A whole program: up to `maxDecls` declarations of any form. */
export function program(maxDecls = 5, exprDepth = 3): fc.Arbitrary<A.Program> {
  return fc
    .array(decl(exprDepth), { minLength: 1, maxLength: maxDecls })
    .map((decls): A.Program => ({ kind: 'program', file: FILE, decls, comments: [] }));
}
