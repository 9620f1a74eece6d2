// Concrete shapes at run time: symbols (the batch size `B`) are bound from the shapes of the
// arguments a program is given, then every node's symbolic shape resolves to numbers.

import type { ArgJSON, Dim, ProgramJSON } from './program.ts';

/** Values of the symbolic dimensions (B -> 64). */
export type Syms = Readonly<Record<string, number>>;

/**
 * The key an argument is fed and stored under: `role:name` (`input:x`, `param:dense.w`,
 * `slot:dense.w:m`), so an input and a parameter may share a name. Updates use the same key.
 */
export const argKey = (a: Pick<ArgJSON, 'role' | 'name'>): string => `${a.role}:${a.name}`;

export const numel = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

/** Row-major strides. */
export function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  for (let k = shape.length - 1, acc = 1; k >= 0; k--) {
    s[k] = acc;
    acc *= shape[k];
  }
  return s;
}

const fmt = (shape: readonly Dim[]): string => `[${shape.join(', ')}]`;

/**
 * Binds every symbol of `p` from the shapes of its arguments (keyed by `argKey`). Throws, naming
 * the argument, its expected and actual shapes, when an argument is missing, has the wrong rank or
 * a wrong static dim, or gives a symbol a different value than an earlier argument did.
 */
export function bindSymbols(p: ProgramJSON, args: Readonly<Record<string, { shape: readonly number[] } | undefined>>): Syms {
  const syms = new Map<string, { value: number; from: string }>();
  for (const a of p.args) {
    const what = `${a.role} '${a.name}'`;
    const got = args[argKey(a)]?.shape;
    if (!got) throw new Error(`missing ${what}`);
    const want = p.nodes[a.node].shape;
    const bad = (why: string) => new Error(`${what} has shape ${fmt(got)} but expects ${fmt(want)}: ${why}`);
    if (got.length !== want.length) throw bad(`rank ${got.length}, not ${want.length}`);
    want.forEach((d, k) => {
      const g = got[k];
      if (!Number.isInteger(g) || g < 0) throw bad(`dimension ${k} is ${g}`);
      if (typeof d === 'number') {
        if (g !== d) throw bad(`dimension ${k} is ${g}, not ${d}`);
        return;
      }
      const seen = syms.get(d);
      if (!seen) syms.set(d, { value: g, from: what });
      else if (seen.value !== g) throw bad(`${d} is ${g} here but ${seen.value} from ${seen.from}`);
    });
  }
  for (const s of p.symbols) if (!syms.has(s)) throw new Error(`symbol ${s} is not bound by the shape of any argument`);
  return Object.fromEntries([...syms].map(([s, { value }]) => [s, value]));
}

export function resolveShape(shape: readonly Dim[], syms: Syms): number[] {
  return shape.map((d) => (typeof d === 'number' ? d : syms[d]));
}

/** The concrete shape of every node of `p`. */
export function nodeShapes(p: ProgramJSON, syms: Syms): number[][] {
  return p.nodes.map((n) => resolveShape(n.shape, syms));
}
