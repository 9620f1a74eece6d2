// The pipeline, as pure stages: source → AST (grammar) → decls (imports, stdlib) → graphs (lower,
// autodiff) → manifest (codegen). The CLI, the tests and apps all call these functions.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from '../grammar/index.ts';
import type * as A from './ast/nodes.ts';
import { error, hasErrors, warning, type Diagnostic } from './diagnostics.ts';
import { lower, type LoweredModel, type LowerOptions } from './ir/lower.ts';
import { buildManifest, type ManifestOptions } from './codegen/manifest.ts';
import type { Manifest } from '../runtime/program.ts';

export const STDLIB_DIR = fileURLToPath(new URL('../stdlib/', import.meta.url));

/** Parsing is pure, and every compile parses the whole stdlib: keep the last parse of each file. */
const parsed = new Map<string, { text: string; result: ReturnType<typeof parse> }>();
function parseCached(text: string, path: string): ReturnType<typeof parse> {
  const hit = parsed.get(path);
  if (hit?.text === text) return hit.result;
  const result = parse(text, path);
  if (path.startsWith(STDLIB_DIR)) parsed.set(path, { text, result });
  return result;
}

export interface Loaded {
  decls: Map<string, A.Decl>;
  /** The models declared in the main file. */
  models: A.ModelDecl[];
  sources: Map<string, string>;
  diagnostics: Diagnostic[];
}

export type ReadFile = (path: string) => string;

/** Parse the stdlib, the file and its imports; merge their declarations. */
export function load(file: string, read: ReadFile = (p) => readFileSync(p, 'utf8')): Loaded {
  const sources = new Map<string, string>();
  const diagnostics: Diagnostic[] = [];
  const decls = new Map<string, A.Decl>();
  const library = new Set<string>();
  const parseFile = (path: string): A.Program => {
    const text = read(path);
    sources.set(path, text);
    const r = parseCached(text, path);
    diagnostics.push(...r.diagnostics);
    return r.program;
  };
  const add = (d: A.Decl, fromLibrary: boolean) => {
    if (d.kind === 'import' || d.kind === 'model') return;
    const name = d.name.name;
    const prev = decls.get(name);
    if (prev && library.has(name) && !fromLibrary) {
      diagnostics.push(warning('W0001', `'${name}' shadows the library ${prev.kind} of the same name`, d.name.span));
      library.delete(name);
    } else if (prev) {
      const first = (prev as Exclude<A.Decl, A.ImportDecl>).name.span;
      diagnostics.push(error('E0102', `'${name}' is already defined`, d.name.span, { related: [{ span: first, message: 'first defined here' }] }));
      return;
    }
    if (fromLibrary) library.add(name);
    decls.set(name, d);
  };

  for (const f of readdirSync(STDLIB_DIR).filter((f) => f.endsWith('.dlm')).sort()) {
    for (const d of parseFile(resolve(STDLIB_DIR, f)).decls) add(d, true);
  }

  const done = new Set<string>();
  const visiting: string[] = [];
  const visit = (path: string): A.Program => {
    visiting.push(path);
    const prog = parseFile(path);
    for (const d of prog.decls) {
      if (d.kind !== 'import') continue;
      const target = resolve(dirname(path), d.path.value);
      if (visiting.includes(target)) {
        diagnostics.push(error('E0104', `import cycle: ${[...visiting.slice(visiting.indexOf(target)), target].join(' -> ')}`, d.path.span));
        continue;
      }
      if (done.has(target)) continue;
      try {
        read(target);
      } catch {
        diagnostics.push(error('E0103', `cannot read imported file '${d.path.value}' (looked for ${target})`, d.path.span));
        continue;
      }
      for (const x of visit(target).decls) add(x, false);
    }
    visiting.pop();
    done.add(path);
    return prog;
  };
  const main = resolve(file);
  const prog = visit(main);
  for (const d of prog.decls) add(d, false);
  return { decls, models: prog.decls.filter((d): d is A.ModelDecl => d.kind === 'model'), sources, diagnostics };
}

export interface Checked extends Loaded {
  model?: LoweredModel;
}

/** `gradient`: emit the gradient program (see Manifest.programs.gradient); `passes`: the
 *  optimizing passes (default all). */
export interface CompileOptions extends LowerOptions, ManifestOptions {}

/** Everything up to the graphs: what `dlc check` runs. */
export function check(file: string, read?: ReadFile, opts: CompileOptions = {}): Checked {
  const loaded = load(file, read);
  if (hasErrors(loaded.diagnostics)) return loaded;
  const model = loaded.models[0];
  if (!model) {
    const span = { file: resolve(file), start: 0, end: 0, line: 1, col: 1 };
    return { ...loaded, diagnostics: [...loaded.diagnostics, error('E0404', 'this file declares no model: add one with `model NAME { ... }`', span)] };
  }
  const r = lower(loaded.decls, model, (f) => f.startsWith(STDLIB_DIR), opts);
  return { ...loaded, model: r.model, diagnostics: [...loaded.diagnostics, ...r.diagnostics] };
}

export interface Compiled extends Checked {
  manifest?: Manifest;
}

export function compile(file: string, read?: ReadFile, opts: CompileOptions = {}): Compiled {
  const checked = check(file, read, opts);
  if (!checked.model || hasErrors(checked.diagnostics)) return checked;
  return { ...checked, manifest: buildManifest(checked.model, opts) };
}
