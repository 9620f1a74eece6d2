// Lexer tokens of the .dlm language.
//
// Whitespace and newlines are skipped: statements are separated by nothing but layout, and the
// grammar is unambiguous without newlines because no statement starts with an operator or with
// `(`, `[`, `-`. So an expression ends exactly where the next token cannot continue it (an
// identifier followed by `=` or `<-`, a keyword, `}`), and a line that starts with an operator
// (`|> relu`, `+ b`, `[0]`) continues the expression of the line before.
//
// `@` is both matrix product and the annotation marker. The rule, decided by the lexer alone:
// `@name` with whitespace (or the start of the file) before the `@` and a name directly after it is
// an Annotation token (`zeros @no_decay`); every other `@` is the matrix product (`x @ w`, `x@w`,
// `(a)@b`). Annotations are only valid after a param's initializer; anywhere else they are a
// syntax error whose hint tells how to write a matrix product.

import { createToken, Lexer, type TokenType } from 'chevrotain';

/** Category matched by every identifier and keyword: member names (`val.loss`), named arguments
 *  (`on: val.loss`) and train-entry keys (`optimizer`, `batch`) may be any word. */
export const AnyName = createToken({ name: 'AnyName', pattern: Lexer.NA, label: 'a name' });
/** Category of terminated and unterminated strings, so an unterminated one still parses. */
export const StringTok = createToken({ name: 'StringTok', pattern: Lexer.NA, label: 'a string' });

export const WhiteSpace = createToken({
  name: 'WhiteSpace',
  pattern: /[ \t\r\n]+/,
  group: Lexer.SKIPPED,
  line_breaks: true,
});
export const Comment = createToken({ name: 'Comment', pattern: /#[^\n]*/, group: 'comments' });
export const StringLit = createToken({
  name: 'StringLit',
  pattern: /"(?:[^"\\\n]|\\.)*"/,
  categories: [StringTok],
  label: 'a string',
});
/** A `"` with no closing quote on its line: reported as E0003 and parsed as a string. */
export const UnterminatedString = createToken({
  name: 'UnterminatedString',
  pattern: /"[^\n]*/,
  categories: [StringTok],
  label: 'a string',
});
export const NumberLit = createToken({
  name: 'NumberLit',
  pattern: /(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][+-]?\d+)?/,
  label: 'a number',
});

const annotationRe = /@[A-Za-z_][A-Za-z0-9_]*/y;
export const Annotation = createToken({
  name: 'Annotation',
  pattern: {
    exec: (text: string, offset: number) => {
      if (offset > 0 && !/\s/.test(text[offset - 1])) return null;
      annotationRe.lastIndex = offset;
      return annotationRe.exec(text);
    },
  },
  line_breaks: false,
  start_chars_hint: ['@'],
  label: 'an annotation',
});

export const Identifier = createToken({
  name: 'Identifier',
  pattern: /[A-Za-z_][A-Za-z0-9_]*/,
  categories: [AnyName],
  label: 'a name',
});

function keyword(word: string): TokenType {
  return createToken({
    name: word[0].toUpperCase() + word.slice(1),
    pattern: new RegExp(word),
    longer_alt: Identifier,
    categories: [AnyName],
    label: `'${word}'`,
  });
}

export const Model = keyword('model');
export const Layer = keyword('layer');
export const Fn = keyword('fn');
export const Optimizer = keyword('optimizer');
export const Schedule = keyword('schedule');
export const Regularizer = keyword('regularizer');
export const Constraint = keyword('constraint');
export const Import = keyword('import');
export const Const = keyword('const');
export const Input = keyword('input');
export const Output = keyword('output');
export const Loss = keyword('loss');
export const Metric = keyword('metric');
export const Train = keyword('train');
export const Param = keyword('param');
export const State = keyword('state');
export const Return = keyword('return');
export const If = keyword('if');
export const Else = keyword('else');
export const Training = keyword('training');
export const On = keyword('on');
export const True = keyword('true');
export const False = keyword('false');
export const And = keyword('and');
export const Or = keyword('or');
export const Not = keyword('not');

const keywords = [
  Model, Layer, Fn, Optimizer, Schedule, Regularizer, Constraint, Import, Const, Input, Output, Loss,
  Metric, Train, Param, State, Return, If, Else, Training, On, True, False, And, Or, Not,
];

function punct(name: string, image: string): TokenType {
  return createToken({ name, pattern: image, label: `'${image}'` });
}

export const PipeOp = punct('PipeOp', '|>');
export const Arrow = punct('Arrow', '->');
export const LArrow = punct('LArrow', '<-');
export const EqEq = punct('EqEq', '==');
export const NotEq = punct('NotEq', '!=');
export const LtEq = punct('LtEq', '<=');
export const GtEq = punct('GtEq', '>=');
export const Lt = punct('Lt', '<');
export const Gt = punct('Gt', '>');
export const Assign = punct('Assign', '=');
export const Plus = punct('Plus', '+');
export const Minus = punct('Minus', '-');
export const Star = punct('Star', '*');
export const Slash = punct('Slash', '/');
export const Caret = punct('Caret', '^');
export const At = punct('At', '@');
export const Question = punct('Question', '?');
export const Colon = punct('Colon', ':');
export const Comma = punct('Comma', ',');
export const LParen = punct('LParen', '(');
export const RParen = punct('RParen', ')');
export const LBracket = punct('LBracket', '[');
export const RBracket = punct('RBracket', ']');
export const LCurly = punct('LCurly', '{');
export const RCurly = punct('RCurly', '}');
export const Ellipsis = punct('Ellipsis', '...');
export const Dot = punct('Dot', '.');

/** All token types in lexing order: first match wins, so longer operators precede their prefixes
 *  and keywords are tried longest first (`training` before `train`, `constraint` before `const`). */
export const allTokens: TokenType[] = [
  WhiteSpace, Comment, StringLit, UnterminatedString, NumberLit, Annotation,
  ...keywords.sort((a, b) => String(b.PATTERN).length - String(a.PATTERN).length),
  Identifier,
  PipeOp, Arrow, LArrow, EqEq, NotEq, LtEq, GtEq, Lt, Gt, Assign, Plus, Minus, Star, Slash, Caret,
  At, Question, Colon, Comma, LParen, RParen, LBracket, RBracket, LCurly, RCurly, Ellipsis, Dot,
  AnyName, StringTok,
];

export const lexer = new Lexer(allTokens);
