// WGSL generation: the one dtype map, the binding and `meta` layout shared by every kernel, and the
// shaderKey. Op templates (in compiler/ops/*) write only their body against these helpers.
//
// Bindings: inputs are `in0`, `in1`, ... (read-only storage; an input with a `hyper` slot is not
// bound: it is read from the program's hyper uniform with `H(slot)`), the output is `out` (more
// outputs `out1`, ...), then `meta`, a uniform of u32s read with `M(i)`:
//   M(0)                    number of output elements
//   M(OUT + k)              output dim k
//   M(IN0 + k), M(IN1 + k)  dims of input 0, 1, ...
//   M(SYM_<name>)           value of a symbolic dimension
// (the module has the numbers in place of those names: `resolve`) and last, if the kernel reads
// any, `hypers`. Threads are numbered by `thread_id(gid, nwg)`; a
// kernel returns early past its grid.
//
// Two kernels side by side in one dispatch (`besideModule`) each read their own stretch of one
// `meta`; the second's text is renamed (templates leave the names `buf<N>`, `main0` and those
// starting with `_` to this).

import type { DType } from '../ir/node.ts';
import { MAIN } from '../ops/elementwise.ts';
import type { KernelSig, KernelSource } from '../ops/types.ts';
import { WORKGROUP } from '../../runtime/program.ts';

export const wgslType: Record<DType, string> = { f32: 'f32', i32: 'i32', bool: 'i32' };

export function metaLength(sig: Pick<KernelSig, 'inputs' | 'output' | 'symbols'>): number {
  return 1 + sig.output.rank + sig.inputs.reduce((s, i) => s + i.rank, 0) + sig.symbols.length;
}

/** The full module: bindings, meta accessors and offsets, then the op's body. */
export function kernelModule(sig: KernelSig, src: KernelSource): string {
  const lines: string[] = [];
  let binding = 0;
  const into = sig.into ?? [];
  sig.inputs.forEach((inp, i) => {
    if (inp.hyper === undefined) lines.push(`@group(0) @binding(${binding++}) var<storage, ${into.includes(i) ? 'read_write' : 'read'}> in${i}: array<${wgslType[inp.dtype]}>;`);
  });
  [sig.output, ...(sig.writes ?? [])].forEach((o, k) => (into[k] ?? -1) < 0 && lines.push(`@group(0) @binding(${binding++}) var<storage, read_write> out${k || ''}: array<${wgslType[o.dtype]}>;`));
  lines.push(...uniforms(binding, metaLength(sig), [sig]), ...threads);
  return text([...lines, resolve(inPlace(src.code, into), sig)], sig.subgroups);
}

/** `code` with each identifier `id` replaced by `name(id)`. */
const rename = (code: string, name: (id: string) => string): string => code.replace(/\b[A-Za-z_]\w*\b/g, name);

/** `code` with each output `out<k>` computed in place of input `into[k]` (>= 0) written there. */
const inPlace = (code: string, into: readonly number[]): string =>
  rename(code, (id) => {
    const m = /^out(\d*)$/.exec(id);
    const k = m ? (into[Number(m[1] || 0)] ?? -1) : -1;
    return k >= 0 ? `in${k}` : id;
  });

/** The `meta` uniform of `words` u32s at `binding` and its accessor, then `hypers` if a kernel reads any. */
function uniforms(binding: number, words: number, sigs: readonly KernelSig[]): string[] {
  const lines = [`@group(0) @binding(${binding}) var<uniform> metadata: array<vec4<u32>, ${Math.max(1, Math.ceil(words / 4))}>;`, `fn M(i: u32) -> u32 { return metadata[i / 4u][i % 4u]; }`];
  const slots = sigs.flatMap((s) => s.inputs.flatMap((i) => (i.hyper === undefined ? [] : [i.hyper])));
  if (slots.length)
    lines.push(`@group(0) @binding(${binding + 1}) var<uniform> hypers: array<vec4<u32>, ${Math.ceil((Math.max(...slots) + 1) / 4)}>;`, `fn H(i: u32) -> u32 { return hypers[i / 4u][i % 4u]; }`);
  return lines;
}

/** `code` with the names of its `meta` words (`OUT + 1u`, `IN0`, `SYM_B`: where the dims of the
 *  output, of input 0 and the value of symbol B are, after the element count) as their numbers. */
function resolve(code: string, sig: KernelSig): string {
  const at = new Map<string, number>([['OUT', 1]]);
  let offset = 1 + sig.output.rank;
  sig.inputs.forEach((inp, i) => {
    at.set(`IN${i}`, offset);
    offset += inp.rank;
  });
  for (const s of sig.symbols) at.set(`SYM_${s}`, offset++);
  return code.replace(/\b(OUT|IN\d+|SYM_\w+)\b(?:\s*\+\s*(\d+)u\b)?/g, (m, name: string, k?: string) => (at.has(name) ? `${at.get(name)! + Number(k ?? 0)}u` : m));
}

const threads = [`const WG: u32 = ${WORKGROUP}u;`, `fn thread_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * WG; }`];

/** One statement or declaration per line, unindented, without comments and without the spaces
 *  that separate nothing (`let x = a + b;` is `let x=a+b;`): the text ships in every bundle. A
 *  space stays between two words and between two operators (`- -x`, `> =` would change tokens). */
const text = (lines: readonly string[], subgroups?: boolean): string =>
  // (a thread past the end returns early; the subgroup's others are past the end too)
  `${subgroups ? 'enable subgroups;\ndiagnostic(off, subgroup_uniformity);\n' : ''}${lines
    .flatMap((l) => l.split('\n'))
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('//'))
    .map((l) => l.replace(/ +/g, (sp, at: number) => (WORD.test(l[at - 1]) === WORD.test(l[at + sp.length]) && !/[(){}[\],;:]/.test(l[at - 1] + l[at + sp.length]) ? ' ' : '')))
    .join('\n')}\n`;
const WORD = /[\w.]/;

/** A kernel of a `besideModule`: the bindings its inputs (-1: a hyperparameter) and its outputs
 *  take (an output in place: its input's). */
export interface BesidePart {
  sig: KernelSig;
  src: KernelSource;
  ins: number[];
  outs: number[];
}

/**
 * Two kernels that read none of each other's outputs, in one dispatch: the first `M(words)`
 * workgroups run the first, the others the second (with its thread ids from 0), each against its
 * own bindings among `binds` (in order: inputs read-only, outputs writable; each buffer once) and
 * its own stretch of `meta`. The first kernel's text is its own but for `main`'s name (its bindings
 * keep their names, its `meta` words come first), so that it compresses well beside the kernel on
 * its own; the second's module-scope names are prefixed `_`, its bindings renamed.
 */
export function besideModule([first, second]: readonly [BesidePart, BesidePart], binds: readonly { dtype: DType; write: boolean }[]): string {
  const names = binds.map((_, b) => `buf${b}`);
  first.sig.inputs.forEach((_, k) => first.ins[k] >= 0 && (names[first.ins[k]] = `in${k}`));
  const into = first.outs.map((b) => first.ins.indexOf(b));
  first.outs.forEach((b, k) => into[k] < 0 && (names[b] = `out${k || ''}`));
  const lines = binds.map((b, i) => `@group(0) @binding(${i}) var<storage, ${b.write ? 'read_write' : 'read'}> ${names[i]}: array<${wgslType[b.dtype]}>;`);
  const [len0, len1] = [metaLength(first.sig), metaLength(second.sig)];
  lines.push(...uniforms(binds.length, len0 + len1 + 1, [first.sig, second.sig]), ...threads);
  const entry = (code: string, name: string) => code.replace(MAIN, `fn ${name}(gid: vec3<u32>, nwg: vec3<u32>)`);
  let code = resolve(entry(second.src.code, 'main'), second.sig);
  const own = new Set([...code.matchAll(/\b(?:fn|const|var<private>)\s+(\w+)/g)].map((m) => m[1]));
  const name = (id: string): string => {
    const m = /^(?:in(\d+)|out(\d*))$/.exec(id);
    if (m) return names[m[1] ? second.ins[Number(m[1])] : second.outs[Number(m[2] || 0)]];
    return own.has(id) || id === 'M' ? `_${id}` : id;
  };
  // a helper function both declare alike (fpow, bits_f32) that uses nothing of its kernel's but
  // such helpers is declared once
  for (const f of functions(code)) {
    const fn = /fn (\w+)/.exec(f)![1];
    own.delete(fn);
    if (first.src.code.includes(f) && rename(f, name) === f) code = code.replace(f, '');
    else own.add(fn);
  }
  lines.push(
    resolve(inPlace(entry(first.src.code, 'main0'), into), first.sig),
    `fn _M(i: u32) -> u32 { return M(${len0}u + i); }`,
    rename(code, name),
    `${MAIN} {`,
    'let i = thread_id(gid, nwg);',
    `let first = M(${len0 + len1}u) * WG;`,
    'if (i < first) { main0(gid, nwg); } else { _main(vec3<u32>(i - first, 0u, 0u), nwg); }',
    '}',
  );
  return text(lines, first.sig.subgroups || second.sig.subgroups);
}

/** The text of each function `code` declares, from `fn` to its closing brace. */
function functions(code: string): string[] {
  return [...code.matchAll(/\bfn \w+\(/g)].map((m) => {
    let [at, depth] = [code.indexOf('{', m.index), 0];
    do depth += code[at] === '{' ? 1 : code[at] === '}' ? -1 : 0;
    while (depth && ++at < code.length);
    return code.slice(m.index, at + 1);
  });
}

// Pipelines are cached by this key: kernels with the same text share one (bundles derive kernel
// names with it, so it lives in the runtime).
export { shaderKey } from '../../runtime/program.ts';
