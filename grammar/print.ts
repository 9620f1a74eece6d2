// The canonical printer (`dlc fmt`): 2-space indent, one statement per line, a blank line between
// declarations, the fewest parentheses the precedence allows, numbers as written. For every AST
// that parse() can produce, parse(print(p)) equals p up to spans, and print is idempotent.
//
// Comments come back by source position: a comment on the source line where a printed line starts
// trails that line; any other comment goes on its own line before the first printed line that
// starts after it in the source (inside the same block when that line is a closing brace).

import type * as A from '../compiler/ast/nodes.ts';
import type { Span } from '../compiler/diagnostics.ts';

interface Line {
  indent: number;
  text: string;
  /** Source offset where this line's construct starts, for placing comments. */
  offset: number;
  /** Source line of that offset, when known. */
  line?: number;
  /** Source offset where the construct printed by this line ends (its whole block for a header). */
  end?: number;
  /** A closing brace: comments placed before it are indented one level deeper. */
  close?: boolean;
  /** `} else {`: its `}` is the first one in the source after this offset (see placeElses). */
  elseAfter?: number;
}

/** Prints `program`; given the `source` it was parsed from (as `dlc fmt` does), a blank line
 *  between two statements of a block is kept (one at most). */
export function print(program: A.Program, source?: string): string {
  const lines = program.decls.flatMap((d, i) => {
    const gap: Line[] = i > 0 ? [{ indent: 0, text: '', offset: gapOffset(program.decls[i - 1], d, source) }] : [];
    return [...gap, ...decl(d)];
  });
  return withComments(source === undefined ? lines : placeElses(keepBlankLines(lines, source), source), program.comments);
}

/** The program without spans and comments, for comparing ASTs. */
export function stripSpans(program: A.Program): unknown {
  const strip = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(strip);
    if (v === null || typeof v !== 'object') return v;
    const entries = Object.entries(v).filter(([k, x]) => k !== 'span' && k !== 'comments' && x !== undefined);
    return Object.fromEntries(entries.map(([k, x]) => [k, strip(x)]));
  };
  return strip(program);
}

// ---------- layout ----------
/** Where the blank line between two declarations stands in the source, for placing comments: at
 *  the source's first blank line between them, else where the first one ends. A comment before it
 *  stays with the first declaration, so it must be one the printed text puts before a blank line
 *  too, or formatting twice would move it across the blank line. */
function gapOffset(prev: A.Decl, next: A.Decl, source: string | undefined): number {
  const blank = source === undefined ? null : /\n[ \t\r]*\n/.exec(source.slice(prev.span.end, next.span.start));
  return prev.span.end + (blank ? blank.index + 1 : 0);
}

function at(node: { span: Span }, text: string): Line {
  return { indent: 0, text, offset: node.span.start, line: node.span.line, end: node.span.end };
}

function nest(lines: Line[]): Line[] {
  return lines.map((l) => ({ ...l, indent: l.indent + 1 }));
}

function closing(node: { span: Span }): Line {
  return { indent: 0, text: '}', offset: node.span.end - 1, end: node.span.end, close: true };
}

/** A blank line before each statement that the source separates from the one before it by a
 *  blank line. A header's end is past its first child, so nothing goes after an opening line. */
function keepBlankLines(lines: Line[], source: string): Line[] {
  return lines.flatMap((l, i) => {
    const prev = lines[i - 1];
    if (!prev?.text || prev.end === undefined || l.line === undefined) return [l];
    const blank = /\n[ \t\r]*\n/.exec(source.slice(prev.end, l.offset));
    return blank ? [{ indent: 0, text: '', offset: prev.end + blank.index + 1 }, l] : [l];
  });
}

/** Puts each `} else {` line at its `}` in the source, so that a comment before the `}` stays in
 *  the then-block, one on the `} else {` line trails it, and one after it stays in the else-block.
 *  Between the then-block's last statement (or the condition) and the `}` there are only blanks and
 *  comments. Without the source, the line stands right after that statement. */
function placeElses(lines: Line[], source: string): Line[] {
  return lines.map((l) => {
    if (l.elseAfter === undefined) return l;
    let i = l.elseAfter;
    while (i < source.length && source[i] !== '}') {
      const eol = source.indexOf('\n', i);
      i = source[i] !== '#' ? i + 1 : eol < 0 ? source.length : eol;
    }
    if (i >= source.length) return l;
    const line = source.slice(0, i).split('\n').length;
    return { ...l, offset: i, line };
  });
}

function braced(node: { span: Span }, header: string, body: Line[]): Line[] {
  return [at(node, `${header} {`), ...nest(body), closing(node)];
}

function withComments(lines: Line[], comments: A.Comment[]): string {
  const before = lines.map((): string[] => []);
  const trailing: (string | undefined)[] = [];
  const atEnd: string[] = [];
  for (const c of [...comments].sort((a, b) => a.span.start - b.span.start)) {
    const next = lines.findIndex((l) => l.offset > c.span.start);
    const prev = (next < 0 ? lines.length : next) - 1;
    if (prev >= 0 && lines[prev].line === c.span.line && trailing[prev] === undefined) trailing[prev] = c.text;
    else if (next < 0) atEnd.push(c.text);
    else before[next].push(c.text);
  }
  const pad = (n: number) => '  '.repeat(n);
  const out = lines.flatMap((l, i) => {
    const depth = l.close ? l.indent + 1 : l.indent;
    const text = l.text && pad(l.indent) + l.text + (trailing[i] === undefined ? '' : `  ${trailing[i]}`);
    return [...before[i].map((c) => pad(depth) + c), text];
  });
  return [...out, ...atEnd].join('\n') + '\n';
}

// ---------- declarations ----------
function decl(d: A.Decl): Line[] {
  switch (d.kind) {
    case 'import':
      return [at(d, `import ${quote(d.path.value)}`)];
    case 'const':
      return [at(d, `const ${d.name.name} = ${expr(d.value)}`)];
    case 'fn': {
      const sig = `fn ${d.name.name}(${formals(d.params)})${d.ret ? ` -> ${type(d.ret)}` : ''}`;
      const [only] = d.body;
      return d.body.length === 1 && only.kind === 'return'
        ? [at(d, `${sig} = ${expr(only.value)}`)]
        : braced(d, sig, stmts(d.body));
    }
    case 'layer':
      return braced(d, `layer ${d.name.name}(${formals(d.params)})`, stmts(d.body));
    case 'optimizer':
      return braced(d, `optimizer ${d.name.name}(${formals(d.params)})`, [...stmts(d.state), ...method(d.step)]);
    case 'schedule':
      return braced(d, `schedule ${d.name.name}(${formals(d.params)})`, method(d.lr));
    case 'regularizer':
      return braced(d, `regularizer ${d.name.name}(${formals(d.params)})`, method(d.penalty));
    case 'constraint':
      return braced(d, `constraint ${d.name.name}(${formals(d.params)})`, method(d.project));
    case 'model':
      return braced(d, `model ${d.name.name}`, d.items.flatMap(modelItem));
  }
}

function formals(fs: A.Formal[]): string {
  return fs
    .map((f) => `${f.name.name}${f.type ? `: ${type(f.type)}` : ''}${f.default ? ` = ${expr(f.default)}` : ''}`)
    .join(', ');
}

function type(t: A.TypeExpr): string {
  if (t.kind === 'hyper_type') return t.name;
  const dims = t.dims?.map((d) => (d.kind === 'dim_int' ? String(d.value) : d.kind === 'dim_sym' ? d.name : '...'));
  return dims ? `${t.dtype}[${dims.join(', ')}]` : t.dtype;
}

function method(m: A.Method): Line[] {
  const sig = `${m.name.name}(${m.params.map((p) => p.name).join(', ')})`;
  return m.expr ? [at(m, `${sig} = ${expr(m.expr)}`)] : braced(m, sig, stmts(m.body ?? []));
}

function modelItem(item: A.ModelItem): Line[] {
  switch (item.kind) {
    case 'input':
      return [at(item, `input ${item.name.name}: ${type(item.type)}`)];
    case 'output':
    case 'metric':
      return [at(item, `${item.kind} ${item.name.name} = ${expr(item.value)}`)];
    case 'loss':
      return [at(item, `loss = ${expr(item.value)}`)];
    case 'let':
      return stmt(item);
    case 'train':
      return braced(item, 'train', item.entries.map((e) => at(e, trainEntry(e))));
  }
}

function trainEntry(e: A.TrainEntry): string {
  const parts = [e.key.name];
  if (e.value) parts.push(expr(e.value));
  if (e.args) parts.push(e.args.map(arg).join(', '));
  if (e.selector) parts.push(selector(e.selector));
  if (e.on) parts.push('on', selector(e.on));
  return parts.join(' ');
}

function selector(s: A.Selector): string {
  switch (s.kind) {
    case 'sel_weights':
      return 'weights';
    case 'sel_all':
      return 'all';
    case 'sel_glob':
      return quote(s.pattern);
    case 'sel_list':
      return `[${s.items.map(selector).join(', ')}]`;
  }
}

// ---------- statements ----------
function stmts(body: A.Stmt[]): Line[] {
  return body.flatMap(stmt);
}

function stmt(s: A.Stmt): Line[] {
  switch (s.kind) {
    case 'let':
      return [at(s, `${s.name.name} = ${expr(s.value)}`)];
    case 'update':
      return [at(s, `${s.target.name} <- ${expr(s.value)}`)];
    case 'param': {
      const notes = s.annotations.map((a) => ` @${a.name}`).join('');
      return [at(s, `param ${s.name.name}: ${type(s.type)} = ${expr(s.init)}${notes}`)];
    }
    case 'state':
      return [at(s, `state ${s.name.name}${s.type ? `: ${type(s.type)}` : ''} = ${expr(s.init)}`)];
    case 'return':
      return [at(s, `return ${expr(s.value)}`)];
    case 'if':
      return ifLines(s);
  }
}

/** `if c {` ... `} else if d {` ... `} else {` ... `}` */
function ifLines(s: A.If): Line[] {
  const head = [at(s, `if ${expr(s.cond)} {`), ...nest(stmts(s.then))];
  if (!s.else) return [...head, closing(s)];
  const [only] = s.else;
  if (s.else.length === 1 && only.kind === 'if') {
    const [first, ...rest] = ifLines(only);
    return [...head, { ...first, text: `} else ${first.text}`, close: true }, ...rest];
  }
  const elseOffset = (s.then.at(-1) ?? s.cond).span.end;
  return [...head, { indent: 0, text: '} else {', offset: elseOffset, close: true, elseAfter: elseOffset }, ...nest(stmts(s.else)), closing(s)];
}

// ---------- expressions ----------
// Precedence levels, loosest first; an operand printed where a tighter level is required gets
// parentheses.
const PIPE = 0;
const TERNARY = 1;
const NOT = 4;
const UNARY = 8;
const POSTFIX = 10;
const ATOM = 11;

const BINARY: Record<A.BinaryOp, number> = {
  or: 2, and: 3,
  '==': 5, '!=': 5, '<': 5, '<=': 5, '>': 5, '>=': 5,
  '+': 6, '-': 6,
  '*': 7, '/': 7, '@': 7,
  '^': 9,
};

function precedence(e: A.Expr): number {
  switch (e.kind) {
    case 'pipe':
      return PIPE;
    case 'ternary':
      return TERNARY;
    case 'binary':
      return BINARY[e.op];
    case 'unary':
      return e.op === 'not' ? NOT : UNARY;
    case 'member':
    case 'index_expr':
      return POSTFIX;
    default:
      return ATOM;
  }
}

function expr(e: A.Expr, min = PIPE): string {
  const text = bare(e);
  return precedence(e) < min ? `(${text})` : text;
}

function bare(e: A.Expr): string {
  switch (e.kind) {
    case 'number':
      return e.raw;
    case 'bool':
      return String(e.value);
    case 'string':
      return quote(e.value);
    case 'training':
      return 'training';
    case 'name':
      return e.name;
    case 'member':
      return `${expr(e.object, POSTFIX)}.${e.property.name}`;
    case 'binary': {
      // Left-associative except `^`, which is right-associative and takes a unary right operand.
      const p = BINARY[e.op];
      const [left, right] = e.op === '^' ? [POSTFIX, UNARY] : [p, p + 1];
      return `${expr(e.left, left)} ${e.op} ${expr(e.right, right)}`;
    }
    case 'unary':
      return e.op === 'not' ? `not ${expr(e.arg, NOT)}` : `-${expr(e.arg, UNARY)}`;
    case 'call':
      return `${e.callee.name}(${e.args.map(arg).join(', ')})`;
    case 'pipe':
      return `${expr(e.left, PIPE)} |> ${bare(e.right)}`;
    case 'ternary':
      return `${expr(e.cond, BINARY.or)} ? ${expr(e.then, TERNARY)} : ${expr(e.else, TERNARY)}`;
    case 'tensor':
      return `[${e.elements.map((x) => expr(x)).join(', ')}]`;
    case 'index_expr':
      return `${expr(e.target, POSTFIX)}[${e.items.map(indexItem).join(', ')}]`;
  }
}

function indexItem(item: A.IndexItem): string {
  switch (item.kind) {
    case 'ellipsis':
      return '...';
    case 'index':
      return expr(item.value);
    case 'slice': {
      const bound = (x: A.Expr | undefined) => (x ? expr(x) : '');
      return `${bound(item.start)}:${bound(item.end)}${item.step ? `:${expr(item.step)}` : ''}`;
    }
  }
}

function arg(a: A.Arg): string {
  return a.name ? `${a.name.name}: ${expr(a.value)}` : expr(a.value);
}

function quote(s: string): string {
  return `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n').replace(/\t/g, '\\t')}"`;
}
