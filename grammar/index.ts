// parse(text, file): source text → AST and diagnostics. Never throws.
//
// Diagnostic codes of the grammar stage:
// E0001  unexpected character: the lexer met characters that start no token.
// E0002  syntax error: the parser expected something else here (says what it found and expected).
// E0003  unterminated string: a string has no closing `"` on its line.
// E0004  bad type: unknown type word, or a hyperparameter type (int, float) where a tensor type is needed.
// E0005  bad dimension: a dimension in a tensor type that is not a positive whole number.
// E0006  bad method: optimizer/schedule/regularizer/constraint with the wrong method name, or state outside an optimizer.
// E0007  bad selector: an `on`/`freeze` operand that is not weights, all, a "glob" or a [list].
// E0008  unparsable input: the parser gave up on the file (for example, nesting too deep).

import { EOF, tokenMatcher, type IRecognitionException, type IToken } from 'chevrotain';
import type { Program } from '../compiler/ast/nodes.ts';
import { error, type Diagnostic, type Span } from '../compiler/diagnostics.ts';
import { Builder, Locator } from './ast.ts';
import { parser } from './parser.ts';
import { Annotation, AnyName, Identifier, lexer, UnterminatedString } from './tokens.ts';

export { print, stripSpans } from './print.ts';

const ANNOTATION_HINT =
  "an annotation such as '@no_decay' follows a param's initializer; for a matrix product write 'a @ b' or 'a@b'";

export function parse(text: string, file: string): { program: Program; diagnostics: Diagnostic[] } {
  const loc = new Locator(file, text);
  try {
    const lexed = lexer.tokenize(text);
    const diagnostics: Diagnostic[] = lexed.errors.map((e) => {
      const chars = text.slice(e.offset, e.offset + e.length);
      const what = chars.length === 1 ? 'character' : 'characters';
      return error('E0001', `unexpected ${what} '${chars}'`, loc.span(e.offset, e.offset + e.length));
    });
    for (const t of lexed.tokens) {
      if (t.tokenType === UnterminatedString) {
        diagnostics.push(error('E0003', 'unterminated string: add a closing \'"\' on the same line', loc.token(t)));
      }
    }

    parser.input = lexed.tokens;
    const cst = parser.program();
    const last = lexed.tokens.at(-1);
    const endOfInput = last ? last.startOffset + last.image.length : 0;
    diagnostics.push(...syntaxErrors(parser.errors, loc, endOfInput));

    const builder = new Builder(loc);
    const program = builder.program(cst, lexed.groups.comments ?? []);
    diagnostics.push(...builder.diagnostics);
    return { program, diagnostics: diagnostics.sort((a, b) => a.span.start - b.span.start) };
  } catch (e) {
    const why = e instanceof RangeError ? 'it is nested too deeply' : e instanceof Error ? e.message : String(e);
    return {
      program: { kind: 'program', file, decls: [], comments: [] },
      diagnostics: [error('E0008', `could not parse this file: ${why}`, loc.span(0, 0))],
    };
  }
}

/** One diagnostic per offending token; recovery can report the same token more than once. */
function syntaxErrors(errors: IRecognitionException[], loc: Locator, endOfInput: number): Diagnostic[] {
  const seen = new Set<number>();
  const out: Diagnostic[] = [];
  for (const e of errors) {
    const span = tokenSpan(e.token, loc, endOfInput);
    if (seen.has(span.start)) continue;
    seen.add(span.start);
    out.push(error('E0002', e.message, span, hintFor(e)));
  }
  return out;
}

function hintFor(e: IRecognitionException): { hint?: string } {
  const t = e.token;
  if (t.tokenType === Annotation) return { hint: ANNOTATION_HINT };
  const keyword = t.tokenType !== Identifier && tokenMatcher(t, AnyName);
  if (keyword && /a name|an expression|a statement|a model item/.test(e.message)) {
    return { hint: `'${t.image}' is a keyword and cannot be used as a name` };
  }
  return {};
}

/** End of file has no position of its own: point just after the last token. */
function tokenSpan(t: IToken, loc: Locator, endOfInput: number): Span {
  return t.tokenType === EOF || Number.isNaN(t.startOffset) ? loc.span(endOfInput, endOfInput) : loc.token(t);
}
