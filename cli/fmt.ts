// `dlc fmt FILE... [--check]`: rewrite .dlm files in the canonical layout of grammar/print.ts,
// keeping comments (and single blank lines between statements).
//
// - A file with a syntax error is never written: its diagnostics are reported and it counts as a
//   failure. So is a file that cannot be read.
// - A file is written only when its text changes, atomically: the new text goes to a temporary
//   file in the same directory, which is then renamed over the original.
// - Before writing, the formatted text is parsed again and must give the same program and keep
//   every comment; otherwise the file is left untouched and the failure reported (a printer bug
//   must never cost a user their code).
// - `--check` writes nothing: it lists on stdout each file that is not formatted.
// Returns the exit code: 0 when every file is (now) formatted, 1 otherwise.

import { readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { format, hasErrors } from '../compiler/diagnostics.ts';
import { parse, print, stripSpans } from '../grammar/index.ts';

export interface FmtOptions {
  check?: boolean;
}

export interface FmtIO {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: FmtIO = {
  out: (line) => process.stdout.write(line + '\n'),
  err: (line) => process.stderr.write(line + '\n'),
};

/** The canonical text of `text`, or the diagnostics that stop it from being formatted. */
export function formatText(text: string, file: string): { text: string } | { errors: string[] } {
  const { program, diagnostics } = parse(text, file);
  if (hasErrors(diagnostics)) {
    const sources = new Map([[file, text]]);
    return { errors: diagnostics.map((d) => format(d, sources)) };
  }
  const printed = print(program, text);
  const again = parse(printed, file);
  const same =
    !hasErrors(again.diagnostics) &&
    again.program.comments.length === program.comments.length &&
    JSON.stringify(stripSpans(again.program)) === JSON.stringify(stripSpans(program));
  if (!same) return { errors: [`${file}: internal error: the formatted text would not mean the same; the file is left as it is`] };
  return { text: printed };
}

export function fmt(files: readonly string[], options: FmtOptions = {}, io: FmtIO = stdio): number {
  let failed = 0;
  let unformatted = 0;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      io.err(`dlc: cannot read '${file}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      failed++;
      continue;
    }
    const r = formatText(text, file);
    if ('errors' in r) {
      for (const e of r.errors) io.err(e);
      io.err(`${file}: not formatted: it has syntax errors`);
      failed++;
      continue;
    }
    if (r.text === text) continue;
    if (options.check) {
      io.out(file);
      unformatted++;
      continue;
    }
    try {
      writeAtomically(file, r.text);
    } catch (e) {
      io.err(`dlc: cannot write '${file}': ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      failed++;
      continue;
    }
    io.err(`formatted ${file}`);
  }
  if (unformatted) io.err(`${unformatted} file${unformatted === 1 ? ' is' : 's are'} not formatted; run dlc fmt`);
  return failed || unformatted ? 1 : 0;
}

/** Write to a temporary file next to the target, then rename it over the target (through a
 *  symlink to the file it points at), keeping the file's permissions. */
function writeAtomically(file: string, text: string): void {
  const target = realpathSync(file);
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${Date.now()}.tmp`);
  try {
    writeFileSync(tmp, text, { mode: statSync(target).mode & 0o7777, flag: 'wx' });
    renameSync(tmp, target);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temporary file was never made
    }
    throw e;
  }
}
