// The .dlm grammar as a chevrotain CstParser. Rules are class properties; the CST is turned into
// the AST by grammar/ast.ts. Error recovery is on, so one parse reports every syntax error.
//
// Expression precedence, lowest first:
//   |>   ?:   or   and   not   == != < <= > >=   + -   * / @   unary -   ^ (right assoc)
//   postfix x[...] a.b   primary
// `^` binds tighter than unary minus (-x^2 = -(x^2)) and its right operand may be negated (x^-1).

import {
  CstParser,
  defaultParserErrorProvider,
  EOF,
  type IParserErrorMessageProvider,
  type IToken,
  type TokenType,
} from 'chevrotain';
import * as T from './tokens.ts';

/** What a repetition inside a rule holds, for "expected a statement or '}'" messages. */
const REPEATED: Record<string, string> = {
  program: 'a declaration such as model, layer or fn',
  modelDecl: "a model item or '}'",
  block: "a statement or '}'",
  trainBlock: "a train entry or '}'",
};

/** First tokens of an expression (and of a named argument), summarized as "an expression". */
const EXPRESSION_START = new Set<TokenType>([
  T.NumberLit, T.StringTok, T.True, T.False, T.Training, T.Identifier, T.AnyName, T.LParen, T.LBracket,
  T.Minus, T.Not,
]);

function describe(t: TokenType): string {
  return t === EOF ? 'end of file' : (t.LABEL ?? t.name);
}

function found(t: IToken): string {
  return t.tokenType === EOF ? 'end of file' : `'${t.image}'`;
}

/** "a, b or c" from the first tokens of the expected paths, at most four items. */
function summarize(first: TokenType[]): string {
  const expression = first.includes(T.NumberLit) && first.includes(T.LParen);
  const words = expression ? ['an expression'] : [];
  for (const t of first) {
    if (expression && EXPRESSION_START.has(t)) continue;
    const d = describe(t);
    if (!words.includes(d)) words.push(d);
  }
  const shown = words.slice(0, 4);
  return shown.length <= 1 ? (shown[0] ?? 'something else') : `${shown.slice(0, -1).join(', ')} or ${shown.at(-1)}`;
}

function after(previous: IToken | undefined): string {
  return previous && previous.image && previous.tokenType !== EOF ? ` after '${previous.image}'` : '';
}

const messages: IParserErrorMessageProvider = {
  ...defaultParserErrorProvider, // only for AT_LEAST_ONE, which the grammar does not use
  buildMismatchTokenMessage({ expected, actual, previous, ruleName }) {
    // A repetition that stopped early reports the token after it (`}` or end of file), and its
    // `previous` is unreliable because recovery has already skipped ahead.
    const what = (expected === T.RCurly || expected === EOF) && REPEATED[ruleName];
    if (what) return `expected ${what} but found ${found(actual)}`;
    return `expected ${describe(expected)}${after(previous)} but found ${found(actual)}`;
  },
  buildNotAllInputParsedMessage({ firstRedundant }) {
    return `expected ${REPEATED.program} but found ${found(firstRedundant)}`;
  },
  buildNoViableAltMessage({ expectedPathsPerAlt, actual, previous }) {
    const first = expectedPathsPerAlt.flatMap((paths) => paths.map((p) => p[0])).filter((t) => t);
    return `expected ${summarize(first)}${after(previous)} but found ${found(actual[0])}`;
  },
};

export class DlmParser extends CstParser {
  constructor() {
    super(T.allTokens, {
      recoveryEnabled: true,
      maxLookahead: 3,
      nodeLocationTracking: 'onlyOffset',
      errorMessageProvider: messages,
    });
    this.performSelfAnalysis();
  }

  /** Gate for a repetition of statements: a name starts one only when one of `next` follows it.
   *  Without it a bad line such as `foo(x)` enters the statement rule, fails on its first token,
   *  and recovery then skips the rest of the block; with it, the repetition stops, and its
   *  recovery skips just to the next statement. */
  private nameFollowedBy(...next: TokenType[]): () => boolean {
    return () => this.LA(1).tokenType !== T.Identifier || next.includes(this.LA(2).tokenType);
  }

  // ---------- declarations ----------
  program = this.RULE('program', () => {
    this.MANY(() => this.SUBRULE(this.decl));
  });

  decl = this.RULE('decl', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.importDecl) },
      { ALT: () => this.SUBRULE(this.constDecl) },
      { ALT: () => this.SUBRULE(this.fnDecl) },
      { ALT: () => this.SUBRULE(this.layerDecl) },
      { ALT: () => this.SUBRULE(this.methodDecl) },
      { ALT: () => this.SUBRULE(this.modelDecl) },
    ]);
  });

  importDecl = this.RULE('importDecl', () => {
    this.CONSUME(T.Import);
    this.CONSUME(T.StringTok);
  });

  constDecl = this.RULE('constDecl', () => {
    this.CONSUME(T.Const);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  /** `fn f(a) -> T { ... }` or the short form `fn f(a) -> T = expr`. */
  fnDecl = this.RULE('fnDecl', () => {
    this.CONSUME(T.Fn);
    this.CONSUME(T.Identifier);
    this.SUBRULE(this.formals);
    this.OPTION(() => {
      this.CONSUME(T.Arrow);
      this.SUBRULE(this.type);
    });
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Assign);
          this.SUBRULE(this.expression);
        },
      },
      { ALT: () => this.SUBRULE(this.block) },
    ]);
  });

  layerDecl = this.RULE('layerDecl', () => {
    this.CONSUME(T.Layer);
    this.CONSUME(T.Identifier);
    this.SUBRULE(this.formals);
    this.SUBRULE(this.block);
  });

  /** optimizer / schedule / regularizer / constraint: hyperparameters, state, one method. */
  methodDecl = this.RULE('methodDecl', () => {
    this.OR([
      { ALT: () => this.CONSUME(T.Optimizer, { LABEL: 'kind' }) },
      { ALT: () => this.CONSUME(T.Schedule, { LABEL: 'kind' }) },
      { ALT: () => this.CONSUME(T.Regularizer, { LABEL: 'kind' }) },
      { ALT: () => this.CONSUME(T.Constraint, { LABEL: 'kind' }) },
    ]);
    this.CONSUME(T.Identifier);
    this.OPTION(() => this.SUBRULE(this.formals));
    this.CONSUME(T.LCurly);
    this.MANY(() => this.SUBRULE(this.stateStmt));
    this.SUBRULE(this.method);
    this.CONSUME(T.RCurly);
  });

  /** `lr(lr0, epoch, step) = expr` or `step(p, g, t) { ... }` */
  method = this.RULE('method', () => {
    this.CONSUME(T.Identifier, { LABEL: 'name' });
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.CONSUME2(T.Identifier, { LABEL: 'params' });
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.CONSUME3(T.Identifier, { LABEL: 'params' });
      });
    });
    this.CONSUME(T.RParen);
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Assign);
          this.SUBRULE(this.expression);
        },
      },
      { ALT: () => this.SUBRULE(this.block) },
    ]);
  });

  formals = this.RULE('formals', () => {
    this.CONSUME(T.LParen);
    this.OPTION(() => {
      this.SUBRULE(this.formal);
      this.MANY(() => {
        this.CONSUME(T.Comma);
        this.SUBRULE2(this.formal);
      });
    });
    this.CONSUME(T.RParen);
  });

  formal = this.RULE('formal', () => {
    this.CONSUME(T.Identifier);
    this.OPTION(() => {
      this.CONSUME(T.Colon);
      this.SUBRULE(this.type);
    });
    this.OPTION2(() => {
      this.CONSUME(T.Assign);
      this.SUBRULE(this.expression);
    });
  });

  /** `f32[B, 784]`, `i32`, `int`: the type word is a name, checked when the AST is built. */
  type = this.RULE('type', () => {
    this.CONSUME(T.Identifier);
    this.OPTION(() => {
      this.CONSUME(T.LBracket);
      this.OPTION2(() => {
        this.SUBRULE(this.dim);
        this.MANY(() => {
          this.CONSUME(T.Comma);
          this.SUBRULE2(this.dim);
        });
      });
      this.CONSUME(T.RBracket);
    });
  });

  dim = this.RULE('dim', () => {
    this.OR([
      { ALT: () => this.CONSUME(T.NumberLit) },
      { ALT: () => this.CONSUME(T.Identifier) },
      { ALT: () => this.CONSUME(T.Ellipsis) },
    ]);
  });

  // ---------- statements ----------
  block = this.RULE('block', () => {
    this.CONSUME(T.LCurly);
    this.MANY({ GATE: this.nameFollowedBy(T.Assign, T.LArrow), DEF: () => this.SUBRULE(this.stmt) });
    this.CONSUME(T.RCurly);
  });

  stmt = this.RULE('stmt', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.letStmt) },
      { ALT: () => this.SUBRULE(this.updateStmt) },
      { ALT: () => this.SUBRULE(this.paramStmt) },
      { ALT: () => this.SUBRULE(this.stateStmt) },
      { ALT: () => this.SUBRULE(this.returnStmt) },
      { ALT: () => this.SUBRULE(this.ifStmt) },
    ]);
  });

  letStmt = this.RULE('letStmt', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  updateStmt = this.RULE('updateStmt', () => {
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LArrow);
    this.SUBRULE(this.expression);
  });

  paramStmt = this.RULE('paramStmt', () => {
    this.CONSUME(T.Param);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.type);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
    this.MANY(() => this.CONSUME(T.Annotation));
  });

  stateStmt = this.RULE('stateStmt', () => {
    this.CONSUME(T.State);
    this.CONSUME(T.Identifier);
    this.OPTION(() => {
      this.CONSUME(T.Colon);
      this.SUBRULE(this.type);
    });
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  returnStmt = this.RULE('returnStmt', () => {
    this.CONSUME(T.Return);
    this.SUBRULE(this.expression);
  });

  /** `if c { } else { }`; `else if` chains nest. */
  ifStmt = this.RULE('ifStmt', () => {
    this.CONSUME(T.If);
    this.SUBRULE(this.expression);
    this.SUBRULE(this.block, { LABEL: 'then' });
    this.OPTION(() => {
      this.CONSUME(T.Else);
      this.OR([
        { ALT: () => this.SUBRULE(this.ifStmt, { LABEL: 'elseIf' }) },
        { ALT: () => this.SUBRULE2(this.block, { LABEL: 'else' }) },
      ]);
    });
  });

  // ---------- model ----------
  modelDecl = this.RULE('modelDecl', () => {
    this.CONSUME(T.Model);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.LCurly);
    this.MANY({ GATE: this.nameFollowedBy(T.Assign), DEF: () => this.SUBRULE(this.modelItem) });
    this.CONSUME(T.RCurly);
  });

  modelItem = this.RULE('modelItem', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.inputItem) },
      { ALT: () => this.SUBRULE(this.outputItem) },
      { ALT: () => this.SUBRULE(this.lossItem) },
      { ALT: () => this.SUBRULE(this.metricItem) },
      { ALT: () => this.SUBRULE(this.letStmt) },
      { ALT: () => this.SUBRULE(this.trainBlock) },
    ]);
  });

  inputItem = this.RULE('inputItem', () => {
    this.CONSUME(T.Input);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.type);
  });

  outputItem = this.RULE('outputItem', () => {
    this.CONSUME(T.Output);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  lossItem = this.RULE('lossItem', () => {
    this.CONSUME(T.Loss);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  metricItem = this.RULE('metricItem', () => {
    this.CONSUME(T.Metric);
    this.CONSUME(T.Identifier);
    this.CONSUME(T.Assign);
    this.SUBRULE(this.expression);
  });

  trainBlock = this.RULE('trainBlock', () => {
    this.CONSUME(T.Train);
    this.CONSUME(T.LCurly);
    this.MANY(() => this.SUBRULE(this.trainEntry));
    this.CONSUME(T.RCurly);
  });

  /** `key value [on selector]` or `key name: v, name: v [on selector]`; any word is a key. The
   *  selectors of `on` and `freeze` are parsed as expressions and converted when building. */
  trainEntry = this.RULE('trainEntry', () => {
    this.CONSUME(T.AnyName, { LABEL: 'key' });
    this.OR([
      {
        ALT: () => {
          this.SUBRULE(this.namedArg);
          this.MANY(() => {
            this.CONSUME(T.Comma);
            this.SUBRULE2(this.namedArg);
          });
        },
      },
      { ALT: () => this.SUBRULE(this.expression, { LABEL: 'value' }) },
    ]);
    this.OPTION(() => {
      this.CONSUME(T.On);
      this.SUBRULE2(this.expression, { LABEL: 'on' });
    });
  });

  namedArg = this.RULE('namedArg', () => {
    this.CONSUME(T.AnyName);
    this.CONSUME(T.Colon);
    this.SUBRULE(this.expression);
  });

  // ---------- expressions ----------
  expression = this.RULE('expression', () => {
    this.SUBRULE(this.ternary);
    this.MANY(() => {
      this.CONSUME(T.PipeOp);
      this.SUBRULE(this.callOrName);
    });
  });

  ternary = this.RULE('ternary', () => {
    this.SUBRULE(this.orExpr);
    this.OPTION(() => {
      this.CONSUME(T.Question);
      this.SUBRULE(this.ternary, { LABEL: 'then' });
      this.CONSUME(T.Colon);
      this.SUBRULE2(this.ternary, { LABEL: 'else' });
    });
  });

  orExpr = this.RULE('orExpr', () => {
    this.SUBRULE(this.andExpr);
    this.MANY(() => {
      this.CONSUME(T.Or, { LABEL: 'op' });
      this.SUBRULE2(this.andExpr);
    });
  });

  andExpr = this.RULE('andExpr', () => {
    this.SUBRULE(this.notExpr);
    this.MANY(() => {
      this.CONSUME(T.And, { LABEL: 'op' });
      this.SUBRULE2(this.notExpr);
    });
  });

  notExpr = this.RULE('notExpr', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Not);
          this.SUBRULE(this.notExpr);
        },
      },
      { ALT: () => this.SUBRULE(this.comparison) },
    ]);
  });

  comparison = this.RULE('comparison', () => {
    this.SUBRULE(this.additive);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.EqEq, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.NotEq, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.LtEq, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.GtEq, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.Lt, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.Gt, { LABEL: 'op' }) },
      ]);
      this.SUBRULE2(this.additive);
    });
  });

  additive = this.RULE('additive', () => {
    this.SUBRULE(this.multiplicative);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.Plus, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.Minus, { LABEL: 'op' }) },
      ]);
      this.SUBRULE2(this.multiplicative);
    });
  });

  multiplicative = this.RULE('multiplicative', () => {
    this.SUBRULE(this.unary);
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.Star, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.Slash, { LABEL: 'op' }) },
        { ALT: () => this.CONSUME(T.At, { LABEL: 'op' }) },
      ]);
      this.SUBRULE2(this.unary);
    });
  });

  unary = this.RULE('unary', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Minus);
          this.SUBRULE(this.unary);
        },
      },
      { ALT: () => this.SUBRULE(this.power) },
    ]);
  });

  power = this.RULE('power', () => {
    this.SUBRULE(this.postfix);
    this.OPTION(() => {
      this.CONSUME(T.Caret);
      this.SUBRULE(this.unary);
    });
  });

  postfix = this.RULE('postfix', () => {
    this.SUBRULE(this.primary);
    this.MANY(() => this.SUBRULE(this.postfixOp));
  });

  postfixOp = this.RULE('postfixOp', () => {
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.LBracket);
          this.SUBRULE(this.indexItem);
          this.MANY(() => {
            this.CONSUME(T.Comma);
            this.SUBRULE2(this.indexItem);
          });
          this.CONSUME(T.RBracket);
        },
      },
      {
        ALT: () => {
          this.CONSUME(T.Dot);
          this.CONSUME(T.AnyName);
        },
      },
    ]);
  });

  /** `...`, `i`, `a:b`, `:`, `a:b:c`, `::2`. */
  indexItem = this.RULE('indexItem', () => {
    this.OR([
      { ALT: () => this.CONSUME(T.Ellipsis) },
      {
        ALT: () => {
          this.CONSUME(T.Colon);
          this.SUBRULE(this.sliceTail);
        },
      },
      {
        ALT: () => {
          this.SUBRULE(this.expression, { LABEL: 'start' });
          this.OPTION(() => {
            this.CONSUME2(T.Colon);
            this.SUBRULE2(this.sliceTail);
          });
        },
      },
    ]);
  });

  sliceTail = this.RULE('sliceTail', () => {
    this.OPTION(() => this.SUBRULE(this.expression, { LABEL: 'end' }));
    this.OPTION2(() => {
      this.CONSUME(T.Colon);
      this.OPTION3(() => this.SUBRULE2(this.expression, { LABEL: 'step' }));
    });
  });

  primary = this.RULE('primary', () => {
    this.OR([
      { ALT: () => this.CONSUME(T.NumberLit) },
      { ALT: () => this.CONSUME(T.StringTok) },
      { ALT: () => this.CONSUME(T.True) },
      { ALT: () => this.CONSUME(T.False) },
      { ALT: () => this.CONSUME(T.Training) },
      { ALT: () => this.SUBRULE(this.callOrName) },
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          this.SUBRULE(this.expression);
          this.CONSUME(T.RParen);
        },
      },
      {
        ALT: () => {
          this.CONSUME(T.LBracket);
          this.OPTION(() => {
            this.SUBRULE2(this.expression, { LABEL: 'elements' });
            this.MANY(() => {
              this.CONSUME(T.Comma);
              this.SUBRULE3(this.expression, { LABEL: 'elements' });
            });
          });
          this.CONSUME(T.RBracket);
        },
      },
    ]);
  });

  /** `relu` or `dense(h, 10, name: "head")`; also the right side of `|>`. */
  callOrName = this.RULE('callOrName', () => {
    this.CONSUME(T.Identifier);
    this.OPTION(() => {
      this.CONSUME(T.LParen);
      this.OPTION2(() => {
        this.SUBRULE(this.arg);
        this.MANY(() => {
          this.CONSUME(T.Comma);
          this.SUBRULE2(this.arg);
        });
      });
      this.CONSUME(T.RParen);
    });
  });

  arg = this.RULE('arg', () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.namedArg) },
      { ALT: () => this.SUBRULE(this.expression) },
    ]);
  });
}

/** One parser for the process: chevrotain parsers are reusable by assigning `input`. */
export const parser = new DlmParser();
