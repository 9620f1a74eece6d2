// How model.js carries its manifest: the compiler packs it (compiler/codegen/bundle.ts), the bundle
// unpacks it at load (runtime/bundle_entry.ts), and unpack(pack(m)) equals m. Packing drops what
// the runtime can derive, since every byte of it ships with the app:
// - every WGSL text and source position once, in a string table `s` (sorted), referred to by
//   index (programs share kernels, and many nodes one position);
// - nodes as tuples [op, inputs, shape, dtype, kernel, attrs, src, merged], a default written 0 and trailing
//   defaults left out: shape 0 is attrs.shape (fused, reshape, iota...; an arg's attrs are made
//   from its shape, which it keeps), dtype 0 is f32, kernel 0
//   none (else its index + 1), attrs 0 is {} or, for an arg, its entry in the program's args; node
//   ids are their positions; merged is { reads, writes, by, beside, into } where the node has any
//   (codegen/merge.ts, codegen/kernels.ts);
// - kernels as [wgsl, rows, cols, name, hypers, first] (rows and cols 0: one thread per element),
//   the name 0 where kernelName makes it from the op of the first node that runs the kernel, hypers
//   1 if it reads the hyper uniform, first the [rows, cols] of the kernel beside it;
// - no kernels for the programs that only ever run on the CPU (init, schedule).

import { kernelName, type DType, type Dim, type Grid, type KernelJSON, type Manifest, type NodeJSON, type ProgramJSON } from './program.ts';

type Merged = Pick<NodeJSON, 'reads' | 'writes' | 'by' | 'beside' | 'into'>;
type PackedNode = [op: string, inputs: number[], shape?: Dim[] | 0, dtype?: DType | 0, kernel?: number, attrs?: NodeJSON['attrs'] | 0, src?: number | 0, merged?: Merged | 0];
type PackedKernel = [wgsl: number, rows?: number, cols?: number, name?: string | 0, hypers?: 1 | 0, first?: [number, number]];
type PackedProgram = Omit<ProgramJSON, 'nodes' | 'kernels'> & { nodes: PackedNode[]; kernels: PackedKernel[] };

export interface PackedManifest {
  s: string[];
  m: Omit<Manifest, 'programs'> & { programs: Record<string, PackedProgram> };
  /** The weights file beside model.js that createModel loads by default. */
  w?: string;
}

const CPU_ONLY = new Set(['init', 'schedule']);

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The attrs an arg node has, from its program's entry. */
const argAttrs = (p: Pick<ProgramJSON, 'args'>, i: number, shape: Dim[], dtype: DType) => {
  const a = p.args.find((a) => a.node === i);
  return a && { role: a.role, name: a.name, shape, dtype };
};

const size = (g: Grid): [number, number] => (g.kind === 'tiles' ? [g.rows, g.cols] : [0, 0]);
const gridOf = (rows = 0, cols = 0): Grid => (rows ? { kind: 'tiles', rows, cols } : { kind: 'elements' });

const derivedName = (nodes: NodeJSON[], k: number, wgsl: string, grid: Grid) => kernelName(nodes.find((n) => n.kernel === k)?.op ?? '', wgsl, grid);

const merged = (n: NodeJSON): Merged | 0 => {
  const m: Merged = { ...(n.reads && { reads: n.reads }), ...(n.writes && { writes: n.writes }), ...(n.by !== undefined && { by: n.by }), ...(n.beside !== undefined && { beside: n.beside }), ...(n.into !== undefined && { into: n.into }) };
  return Object.keys(m).length ? m : 0;
};

export function packManifest(m: Manifest, weights?: string): PackedManifest {
  // the table sorted, so that like texts sit together (gzip then finds more of each in the last)
  const texts = Object.entries(m.programs).flatMap(([name, p]) => [
    ...p.nodes.flatMap((n) => (n.src === undefined ? [] : [n.src])),
    ...(CPU_ONLY.has(name) ? [] : p.kernels.map((k) => k.wgsl)),
  ]);
  const s = [...new Set(texts)].sort();
  const at = new Map(s.map((text, i) => [text, i]));
  const ref = (text: string) => at.get(text)!;
  const node = (p: ProgramJSON, n: NodeJSON, i: number): PackedNode => {
    if (n.id !== i) throw new Error(`node ${n.id} is at position ${i}`);
    const derived = n.op === 'arg' ? argAttrs(p, i, n.shape, n.dtype) : {};
    const t: PackedNode = [
      n.op,
      n.inputs,
      n.op !== 'arg' && n.attrs.shape !== undefined && same(n.attrs.shape, n.shape) ? 0 : n.shape,
      n.dtype === 'f32' ? 0 : n.dtype,
      n.kernel === undefined ? 0 : n.kernel + 1,
      same(n.attrs, derived ?? null) ? 0 : n.attrs,
      n.src === undefined ? 0 : ref(n.src) + 1,
      merged(n),
    ];
    while (t.length > 2 && t[t.length - 1] === 0) t.pop();
    return t;
  };
  const kernel = (p: ProgramJSON, k: KernelJSON, i: number): PackedKernel => {
    const [rows, cols] = size(k.grid);
    const t: PackedKernel = [ref(k.wgsl), rows, cols, derivedName(p.nodes, i, k.wgsl, k.grid) === k.name ? 0 : k.name, k.hypers ? 1 : 0];
    if (k.first) t.push(size(k.first));
    while (t.length > 1 && !t[t.length - 1]) t.pop();
    return t;
  };
  const programs = Object.fromEntries(
    Object.entries(m.programs).map(([name, p]: [string, ProgramJSON]) => [
      name,
      { ...p, nodes: p.nodes.map((n, i) => node(p, n, i)), kernels: CPU_ONLY.has(name) ? [] : p.kernels.map((k, i) => kernel(p, k, i)) },
    ]),
  );
  return { s, m: { ...m, programs }, ...(weights && { w: weights }) };
}

export function unpackManifest({ s, m }: PackedManifest): Manifest {
  const program = (p: PackedProgram): ProgramJSON => {
    const nodes = p.nodes.map(([op, inputs, shape, dtype, kernel, attrs, src, merged], id): NodeJSON => {
      const a = attrs || (op === 'arg' ? argAttrs(p, id, shape as Dim[], dtype || 'f32')! : {});
      return {
        id,
        op,
        inputs,
        attrs: a,
        shape: shape || (a.shape as Dim[]),
        dtype: dtype || 'f32',
        ...(kernel && { kernel: kernel - 1 }),
        ...(src && { src: s[src - 1] }),
        ...(merged || {}),
      };
    });
    const kernels = p.kernels.map(([w, rows, cols, name, hypers, first], i): KernelJSON => {
      const grid = gridOf(rows, cols);
      return { name: name || derivedName(nodes, i, s[w], grid), wgsl: s[w], grid, ...(first && { first: gridOf(...first) }), ...(hypers && { hypers: true as const }) };
    });
    return { ...p, nodes, kernels };
  };
  const programs = Object.fromEntries(Object.entries(m.programs).map(([name, p]) => [name, program(p)]));
  return { ...m, programs } as Manifest;
}
