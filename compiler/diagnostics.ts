// Diagnostics are values: every stage returns them in a list instead of throwing one at a time.
// A span points into one source file; `format` renders file:line:col, the line, and a caret.

export interface Span {
  file: string;
  /** 0-based offsets into the source text, end exclusive. */
  start: number;
  end: number;
  /** 1-based line and column of `start`. */
  line: number;
  col: number;
}

export type Severity = 'error' | 'warning';

export interface Related {
  span: Span;
  message: string;
}

export interface Diagnostic {
  severity: Severity;
  /** Stable code such as E0101; docs/language.md explains each. */
  code: string;
  message: string;
  span: Span;
  /** Secondary locations: where each shape came from, the earlier definition, ... */
  related?: Related[];
  hint?: string;
}

/** Thrown only to unwind from deep inside a stage; stages catch it and return it as a value. */
export class DiagnosticError extends Error {
  constructor(readonly diagnostic: Diagnostic) {
    super(diagnostic.message);
  }
}

export function error(code: string, message: string, span: Span, extra: Partial<Diagnostic> = {}): Diagnostic {
  return { severity: 'error', code, message, span, ...extra };
}

export function warning(code: string, message: string, span: Span, extra: Partial<Diagnostic> = {}): Diagnostic {
  return { severity: 'warning', code, message, span, ...extra };
}

export function hasErrors(diags: readonly Diagnostic[]): boolean {
  return diags.some((d) => d.severity === 'error');
}

/** Source texts by file name, so a diagnostic can show its line. */
export type Sources = ReadonlyMap<string, string>;

export function spanAt(file: string, text: string, start: number, end: number): Span {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < start && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      lineStart = i + 1;
    }
  }
  return { file, start, end, line, col: start - lineStart + 1 };
}

function excerpt(span: Span, sources: Sources): string {
  const text = sources.get(span.file);
  if (text === undefined) return '';
  const lineStart = span.start - (span.col - 1);
  let lineEnd = text.indexOf('\n', lineStart);
  if (lineEnd < 0) lineEnd = text.length;
  const src = text.slice(lineStart, lineEnd).replace(/\t/g, ' ');
  const width = Math.max(1, Math.min(span.end, lineEnd) - span.start);
  const gutter = String(span.line).length;
  const pad = ' '.repeat(gutter);
  return `${pad} |\n${span.line} | ${src}\n${pad} | ${' '.repeat(span.col - 1)}${'^'.repeat(width)}\n`;
}

export function format(d: Diagnostic, sources: Sources): string {
  let out = `${d.span.file}:${d.span.line}:${d.span.col}: ${d.severity}[${d.code}]: ${d.message}\n`;
  out += excerpt(d.span, sources);
  for (const r of d.related ?? []) {
    out += `${r.span.file}:${r.span.line}:${r.span.col}: note: ${r.message}\n`;
    out += excerpt(r.span, sources);
  }
  if (d.hint) out += `  = hint: ${d.hint}\n`;
  return out;
}

/** Levenshtein distance, for "did you mean" suggestions. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}
