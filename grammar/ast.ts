// CST → AST. The CST may come from a parse that recovered from errors, so every child may be
// missing: each builder returns undefined when a piece it needs is absent, and lists keep only the
// pieces that built. The syntax errors themselves were already reported by the parser; this stage
// only adds the checks that are easier on names than in the grammar (type words, dimensions,
// method names, selectors).

import type { CstElement, CstNode, IToken } from 'chevrotain';
import type * as A from '../compiler/ast/nodes.ts';
import { error, type Diagnostic, type Span } from '../compiler/diagnostics.ts';
import { UnterminatedString } from './tokens.ts';

/** Offsets → spans, with lines counted at '\n' exactly as `spanAt` does. */
export class Locator {
  private readonly lineStarts = [0];

  constructor(
    readonly file: string,
    readonly text: string,
  ) {
    for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) this.lineStarts.push(i + 1);
  }

  span(start: number, end: number): Span {
    let lo = 0;
    let hi = this.lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.lineStarts[mid] <= start) lo = mid;
      else hi = mid - 1;
    }
    return { file: this.file, start, end, line: lo + 1, col: start - this.lineStarts[lo] + 1 };
  }

  token(t: IToken): Span {
    return this.span(t.startOffset, t.startOffset + t.image.length);
  }
}

type Node = CstNode | undefined;

function isToken(e: CstElement): e is IToken {
  return 'image' in e;
}

function nodes(n: Node, key: string): CstNode[] {
  return (n?.children[key] ?? []).filter((e): e is CstNode => !isToken(e));
}

function node(n: Node, key: string): CstNode | undefined {
  return nodes(n, key)[0];
}

/** Real tokens only: tokens inserted by error recovery have no text. */
function tokens(n: Node, key: string): IToken[] {
  return (n?.children[key] ?? []).filter((e): e is IToken => isToken(e) && !e.isInsertedInRecovery);
}

function token(n: Node, key: string): IToken | undefined {
  return tokens(n, key)[0];
}

function defined<T>(x: T | undefined): x is T {
  return x !== undefined;
}

/** All or nothing: a list in which one element failed to build is itself broken. */
function all<T>(xs: (T | undefined)[]): T[] | undefined {
  return xs.every(defined) ? xs : undefined;
}

function join(a: Span, b: Span): Span {
  return { ...a, end: b.end };
}

function unescape(s: string): string {
  return s.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}

const METHOD = { optimizer: 'step', schedule: 'lr', regularizer: 'penalty', constraint: 'project' } as const;
const DTYPES = new Set(['f32', 'i32', 'bool']);
const HYPER_TYPES = new Set(['int', 'float', 'bool']);

export class Builder {
  readonly diagnostics: Diagnostic[] = [];

  constructor(private readonly loc: Locator) {}

  program(cst: Node, comments: IToken[]): A.Program {
    return {
      kind: 'program',
      file: this.loc.file,
      decls: nodes(cst, 'decl').map((d) => this.decl(d)).filter(defined),
      comments: comments.map((t) => ({ text: t.image.trimEnd(), span: this.loc.token(t) })),
    };
  }

  // ---------- helpers ----------
  private report(code: string, message: string, span: Span): void {
    this.diagnostics.push(error(code, message, span));
  }

  private spanOf(n: CstNode): Span {
    const start = n.location?.startOffset ?? NaN;
    const end = n.location?.endOffset ?? NaN;
    return Number.isNaN(start) ? this.loc.span(0, 0) : this.loc.span(start, Number.isNaN(end) ? start : end + 1);
  }

  private ident(t: IToken | undefined): A.Ident | undefined {
    return t && { kind: 'ident', name: t.image, span: this.loc.token(t) };
  }

  /** The child node under the first key that has a builder in `table`. */
  private one<R>(n: Node, table: Record<string, (c: CstNode) => R | undefined>): R | undefined {
    for (const [key, build] of Object.entries(table)) {
      const c = node(n, key);
      if (c) return build(c);
    }
    return undefined;
  }

  // ---------- declarations ----------
  private decl(n: CstNode): A.Decl | undefined {
    return this.one<A.Decl>(n, {
      importDecl: (c) => this.importDecl(c),
      constDecl: (c) => this.constDecl(c),
      fnDecl: (c) => this.fnDecl(c),
      layerDecl: (c) => this.layerDecl(c),
      methodDecl: (c) => this.methodDecl(c),
      modelDecl: (c) => this.modelDecl(c),
    });
  }

  private importDecl(n: CstNode): A.ImportDecl | undefined {
    const t = token(n, 'StringTok');
    return t && { kind: 'import', path: this.string(t), span: this.spanOf(n) };
  }

  private constDecl(n: CstNode): A.ConstDecl | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const value = this.expr(node(n, 'expression'));
    return name && value && { kind: 'const', name, value, span: this.spanOf(n) };
  }

  private fnDecl(n: CstNode): A.FnDecl | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const params = this.formals(node(n, 'formals'));
    const ret = this.type(node(n, 'type'), true);
    const short = this.expr(node(n, 'expression'));
    const body = short ? [{ kind: 'return' as const, value: short, span: short.span }] : this.block(node(n, 'block'));
    return name && body && { kind: 'fn', name, params, ret, body, span: this.spanOf(n) };
  }

  private layerDecl(n: CstNode): A.LayerDecl | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const params = this.formals(node(n, 'formals'));
    const body = this.block(node(n, 'block'));
    return name && body && { kind: 'layer', name, params, body, span: this.spanOf(n) };
  }

  private methodDecl(n: CstNode): A.Decl | undefined {
    const kind = token(n, 'kind')?.image as keyof typeof METHOD | undefined;
    const name = this.ident(token(n, 'Identifier'));
    const params = this.formals(node(n, 'formals'));
    const state = nodes(n, 'stateStmt').map((s) => this.stateStmt(s)).filter(defined);
    const method = this.method(node(n, 'method'));
    if (!kind || !name || !method) return undefined;
    const wanted = METHOD[kind];
    if (method.name.name !== wanted) {
      this.report('E0006', `${kind} '${name.name}' needs a method '${wanted}(...)', found '${method.name.name}'`, method.name.span);
    }
    if (kind !== 'optimizer' && state.length > 0) {
      this.report('E0006', `only an optimizer has state; ${kind} '${name.name}' cannot`, state[0].span);
    }
    const span = this.spanOf(n);
    switch (kind) {
      case 'optimizer':
        return { kind, name, params, state, step: method, span };
      case 'schedule':
        return { kind, name, params, lr: method, span };
      case 'regularizer':
        return { kind, name, params, penalty: method, span };
      case 'constraint':
        return { kind, name, params, project: method, span };
    }
  }

  private method(n: Node): A.Method | undefined {
    const name = this.ident(token(n, 'name'));
    const params = tokens(n, 'params').map((t) => this.ident(t)).filter(defined);
    const expr = this.expr(node(n, 'expression'));
    const body = expr ? undefined : this.block(node(n, 'block'));
    return n && name && (expr || body) && { name, params, expr, body, span: this.spanOf(n) };
  }

  private formals(n: Node): A.Formal[] {
    return nodes(n, 'formal').map((f) => this.formal(f)).filter(defined);
  }

  private formal(n: CstNode): A.Formal | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const type = this.type(node(n, 'type'), true);
    const value = this.expr(node(n, 'expression'));
    return name && { name, type, default: value, span: this.spanOf(n) };
  }

  // ---------- types ----------
  /** A type; `hyper` allows `int`, `float` and a bare `bool` (formals and fn results). */
  private type(n: Node, hyper: true): A.TypeExpr | undefined;
  private type(n: Node, hyper: false): A.TensorType | undefined;
  private type(n: Node, hyper: boolean): A.TypeExpr | undefined {
    const t = token(n, 'Identifier');
    if (!n || !t) return undefined;
    const word = t.image;
    const bracketed = token(n, 'LBracket') !== undefined;
    const span = this.spanOf(n);
    if (hyper && !bracketed && HYPER_TYPES.has(word)) {
      return { kind: 'hyper_type', name: word as A.HyperType['name'], span };
    }
    if (DTYPES.has(word)) {
      const dims = bracketed ? all(nodes(n, 'dim').map((d) => this.dim(d))) : undefined;
      if (bracketed && !dims) return undefined;
      return { kind: 'tensor_type', dtype: word as A.TensorType['dtype'], dims, span };
    }
    const message = HYPER_TYPES.has(word)
      ? hyper
        ? `the hyperparameter type '${word}' takes no dimensions`
        : `expected a tensor type (f32, i32 or bool) but found the hyperparameter type '${word}'`
      : `unknown type '${word}'; expected ${hyper ? 'f32, i32, bool, int or float' : 'f32, i32 or bool'}`;
    this.report('E0004', message, this.loc.token(t));
    return undefined;
  }

  private dim(n: CstNode): A.DimExpr | undefined {
    const span = this.spanOf(n);
    const num = token(n, 'NumberLit');
    if (num) {
      // Tensors have no empty dimensions, and a size must survive as a number (no 1e400).
      const value = Number(num.image);
      if (/^\d+$/.test(num.image) && value > 0 && Number.isSafeInteger(value)) return { kind: 'dim_int', value, span };
      this.report('E0005', `a dimension must be a positive whole number, found '${num.image}'`, span);
      return undefined;
    }
    const sym = token(n, 'Identifier');
    if (sym) return { kind: 'dim_sym', name: sym.image, span };
    return token(n, 'Ellipsis') && { kind: 'dim_ellipsis', span };
  }

  // ---------- statements ----------
  private block(n: Node): A.Stmt[] | undefined {
    return n && nodes(n, 'stmt').map((s) => this.stmt(s)).filter(defined);
  }

  private stmt(n: CstNode): A.Stmt | undefined {
    return this.one<A.Stmt>(n, {
      letStmt: (c) => this.letStmt(c),
      updateStmt: (c) => this.updateStmt(c),
      paramStmt: (c) => this.paramStmt(c),
      stateStmt: (c) => this.stateStmt(c),
      returnStmt: (c) => this.returnStmt(c),
      ifStmt: (c) => this.ifStmt(c),
    });
  }

  private letStmt(n: CstNode): A.Let | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const value = this.expr(node(n, 'expression'));
    return name && value && { kind: 'let', name, value, span: this.spanOf(n) };
  }

  private updateStmt(n: CstNode): A.Update | undefined {
    const target = this.ident(token(n, 'Identifier'));
    const value = this.expr(node(n, 'expression'));
    return target && value && { kind: 'update', target, value, span: this.spanOf(n) };
  }

  private paramStmt(n: CstNode): A.ParamStmt | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const type = this.type(node(n, 'type'), false);
    const init = this.expr(node(n, 'expression'));
    const annotations = tokens(n, 'Annotation').map(
      (t): A.Annotation => ({ kind: 'annotation', name: t.image.slice(1), span: this.loc.token(t) }),
    );
    return name && type && init && { kind: 'param', name, type, init, annotations, span: this.spanOf(n) };
  }

  private stateStmt(n: CstNode): A.StateStmt | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const type = this.type(node(n, 'type'), false);
    const init = this.expr(node(n, 'expression'));
    return name && init && { kind: 'state', name, type, init, span: this.spanOf(n) };
  }

  private returnStmt(n: CstNode): A.Return | undefined {
    const value = this.expr(node(n, 'expression'));
    return value && { kind: 'return', value, span: this.spanOf(n) };
  }

  private ifStmt(n: CstNode): A.If | undefined {
    const cond = this.expr(node(n, 'expression'));
    const then = this.block(node(n, 'then'));
    const elseIf = node(n, 'elseIf');
    const nested = elseIf && this.ifStmt(elseIf);
    const otherwise = nested ? [nested] : this.block(node(n, 'else'));
    return cond && then && { kind: 'if', cond, then, else: otherwise, span: this.spanOf(n) };
  }

  // ---------- model ----------
  private modelDecl(n: CstNode): A.ModelDecl | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const items = nodes(n, 'modelItem').map((i) => this.modelItem(i)).filter(defined);
    return name && { kind: 'model', name, items, span: this.spanOf(n) };
  }

  private modelItem(n: CstNode): A.ModelItem | undefined {
    return this.one<A.ModelItem>(n, {
      inputItem: (c) => this.inputItem(c),
      outputItem: (c) => this.named(c, 'output'),
      metricItem: (c) => this.named(c, 'metric'),
      lossItem: (c) => this.lossItem(c),
      letStmt: (c) => this.letStmt(c),
      trainBlock: (c) => this.trainBlock(c),
    });
  }

  private inputItem(n: CstNode): A.InputItem | undefined {
    const name = this.ident(token(n, 'Identifier'));
    const type = this.type(node(n, 'type'), false);
    return name && type && { kind: 'input', name, type, span: this.spanOf(n) };
  }

  /** `output NAME = expr` and `metric NAME = expr`. */
  private named<K extends 'output' | 'metric'>(n: CstNode, kind: K) {
    const name = this.ident(token(n, 'Identifier'));
    const value = this.expr(node(n, 'expression'));
    return name && value && { kind, name, value, span: this.spanOf(n) };
  }

  private lossItem(n: CstNode): A.LossItem | undefined {
    const value = this.expr(node(n, 'expression'));
    return value && { kind: 'loss', value, span: this.spanOf(n) };
  }

  private trainBlock(n: CstNode): A.TrainBlock {
    const entries = nodes(n, 'trainEntry').map((e) => this.trainEntry(e)).filter(defined);
    return { kind: 'train', entries, span: this.spanOf(n) };
  }

  private trainEntry(n: CstNode): A.TrainEntry | undefined {
    const key = this.ident(token(n, 'key'));
    const named = nodes(n, 'namedArg');
    const args = named.length > 0 ? all(named.map((a) => this.namedArg(a))) : undefined;
    const value = this.expr(node(n, 'value'));
    const onNode = node(n, 'on');
    const on = onNode && this.selector(this.expr(onNode));
    if (!key || !(value || args)) return undefined;
    const span = this.spanOf(n);
    if (key.name !== 'freeze' || !value) return { kind: 'train_entry', key, value, args, on, span };
    const selector = this.selector(value);
    return selector && { kind: 'train_entry', key, selector, on, span };
  }

  /** `weights`, `all`, `"glob"` or a list of them, written as an expression. */
  private selector(e: A.Expr | undefined): A.Selector | undefined {
    if (!e) return undefined;
    const span = e.span;
    if (e.kind === 'name' && e.name === 'weights') return { kind: 'sel_weights', span };
    if (e.kind === 'name' && e.name === 'all') return { kind: 'sel_all', span };
    if (e.kind === 'string') return { kind: 'sel_glob', pattern: e.value, span };
    if (e.kind === 'tensor') {
      const items = all(e.elements.map((x) => this.selector(x)));
      return items && { kind: 'sel_list', items, span };
    }
    const text = this.loc.text.slice(span.start, span.end);
    this.report('E0007', `expected a selector (weights, all, a "glob" or a [list]) but found '${text}'`, span);
    return undefined;
  }

  // ---------- expressions ----------
  private expr(n: Node): A.Expr | undefined {
    if (!n) return undefined;
    let left = this.ternary(node(n, 'ternary'));
    for (const target of nodes(n, 'callOrName')) {
      const right = this.callOrName(target);
      if (!left || !right) return undefined;
      left = { kind: 'pipe', left, right, span: join(left.span, right.span) };
    }
    return left;
  }

  private ternary(n: Node): A.Expr | undefined {
    const cond = this.orExpr(node(n, 'orExpr'));
    if (!n || !token(n, 'Question')) return cond;
    const then = this.ternary(node(n, 'then'));
    const otherwise = this.ternary(node(n, 'else'));
    return cond && then && otherwise && { kind: 'ternary', cond, then, else: otherwise, span: this.spanOf(n) };
  }

  private orExpr(n: Node): A.Expr | undefined {
    return this.chain(n, 'andExpr', (c) => this.chain(c, 'notExpr', (d) => this.notExpr(d)));
  }

  private comparison(n: Node): A.Expr | undefined {
    return this.chain(n, 'additive', (c) => this.chain(c, 'multiplicative', (d) => this.chain(d, 'unary', (e) => this.unary(e))));
  }

  /** A left-associative chain `operand (op operand)*`; the operators are labelled `op`. */
  private chain(n: Node, key: string, operand: (c: Node) => A.Expr | undefined): A.Expr | undefined {
    const operands = nodes(n, key);
    let left = operand(operands[0]);
    for (const [i, op] of tokens(n, 'op').entries()) {
      const right = operand(operands[i + 1]);
      if (!left || !right) return undefined;
      left = { kind: 'binary', op: op.image as A.BinaryOp, left, right, span: join(left.span, right.span) };
    }
    return left;
  }

  private notExpr(n: Node): A.Expr | undefined {
    if (!n || !token(n, 'Not')) return this.comparison(node(n, 'comparison'));
    const arg = this.notExpr(node(n, 'notExpr'));
    return arg && { kind: 'unary', op: 'not', arg, span: this.spanOf(n) };
  }

  private unary(n: Node): A.Expr | undefined {
    if (!n || !token(n, 'Minus')) return this.power(node(n, 'power'));
    const arg = this.unary(node(n, 'unary'));
    return arg && { kind: 'unary', op: '-', arg, span: this.spanOf(n) };
  }

  private power(n: Node): A.Expr | undefined {
    const base = this.postfix(node(n, 'postfix'));
    if (!n || !token(n, 'Caret')) return base;
    const exponent = this.unary(node(n, 'unary'));
    return base && exponent && { kind: 'binary', op: '^', left: base, right: exponent, span: join(base.span, exponent.span) };
  }

  private postfix(n: Node): A.Expr | undefined {
    let target = this.primary(node(n, 'primary'));
    for (const op of nodes(n, 'postfixOp')) {
      if (!target) return undefined;
      const span = join(target.span, this.spanOf(op));
      if (token(op, 'Dot')) {
        const property = this.ident(token(op, 'AnyName'));
        target = property && { kind: 'member', object: target, property, span };
      } else {
        const items = all(nodes(op, 'indexItem').map((i) => this.indexItem(i)));
        target = items && { kind: 'index_expr', target, items, span };
      }
    }
    return target;
  }

  private indexItem(n: CstNode): A.IndexItem | undefined {
    const span = this.spanOf(n);
    if (token(n, 'Ellipsis')) return { kind: 'ellipsis', span };
    const start = this.expr(node(n, 'start'));
    if (!token(n, 'Colon')) return start && { kind: 'index', value: start, span };
    const tail = node(n, 'sliceTail');
    return { kind: 'slice', start, end: this.expr(node(tail, 'end')), step: this.expr(node(tail, 'step')), span };
  }

  private primary(n: Node): A.Expr | undefined {
    if (!n) return undefined;
    const span = this.spanOf(n);
    const num = token(n, 'NumberLit');
    if (num) return { kind: 'number', value: Number(num.image), raw: num.image, span };
    const str = token(n, 'StringTok');
    if (str) return this.string(str);
    if (token(n, 'True')) return { kind: 'bool', value: true, span };
    if (token(n, 'False')) return { kind: 'bool', value: false, span };
    if (token(n, 'Training')) return { kind: 'training', span };
    if (token(n, 'LParen')) {
      const inner = this.expr(node(n, 'expression'));
      return inner && { ...inner, span };
    }
    if (token(n, 'LBracket')) {
      const elements = all(nodes(n, 'elements').map((e) => this.expr(e)));
      return elements && { kind: 'tensor', elements, span };
    }
    return this.callOrName(node(n, 'callOrName'));
  }

  private callOrName(n: Node): A.Name | A.Call | undefined {
    const callee = this.ident(token(n, 'Identifier'));
    if (!n || !callee) return undefined;
    if (!token(n, 'LParen')) return { kind: 'name', name: callee.name, span: callee.span };
    const args = all(nodes(n, 'arg').map((a) => this.arg(a)));
    return args && { kind: 'call', callee, args, span: this.spanOf(n) };
  }

  private arg(n: CstNode): A.Arg | undefined {
    const named = node(n, 'namedArg');
    if (named) return this.namedArg(named);
    const value = this.expr(node(n, 'expression'));
    return value && { value, span: this.spanOf(n) };
  }

  private namedArg(n: CstNode): A.Arg | undefined {
    const name = this.ident(token(n, 'AnyName'));
    const value = this.expr(node(n, 'expression'));
    return name && value && { name, value, span: this.spanOf(n) };
  }

  private string(t: IToken): A.StringLit {
    const body = t.tokenType === UnterminatedString ? t.image.slice(1) : t.image.slice(1, -1);
    return { kind: 'string', value: unescape(body), span: this.loc.token(t) };
  }
}
