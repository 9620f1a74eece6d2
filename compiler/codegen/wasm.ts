// The CPU path's WebAssembly kernels, generated with binaryen (at compile time only: binaryen is
// never part of a bundle). One module, shape-generic like the WGSL kernels, keyed on ops: the
// matrix product in every transA/transB form, and what conv2d and its two backward forms need
// around it (im2col, col2im). It imports its memory (`env.memory`): the runtime (runtime/wasm.ts)
// keeps the program's tensors there, so kernels read and write them in place. Pointers are byte
// offsets; sizes and strides count f32 elements.
//
// The product is packed GEMM: op(A) is packed into panels of MR = 4 rows ([k][4] per panel) and
// op(B) into panels of NR = 8 columns ([k][8]), zero-padded, so one register-blocked microkernel
// (4×8 outputs in 8 f32x4 accumulators; per step one splat-load per row of A, two loads of B)
// serves every form, and its loads are contiguous whatever the operands' layouts.

import binaryen from 'binaryen';
import type { Dim, Manifest } from '../../runtime/program.ts';
import { codeLines, fusedProgram, type Line, type Operand } from '../ops/fused.ts';

export const MR = 4, NR = 8;

type Ref = binaryen.ExpressionRef;
const { i32, v128, none } = binaryen;

/** One function's locals by name, and the control flow the kernels use. */
class Fn {
  private readonly index = new Map<string, { i: number; t: binaryen.Type }>();
  private readonly vars: binaryen.Type[] = [];
  private labels = 0;
  constructor(
    private readonly m: binaryen.Module,
    private readonly params: string[],
  ) {
    params.forEach((p, i) => this.index.set(p, { i, t: i32 }));
  }
  /** Declares locals (i32 unless `t`). */
  local(names: string[], t: binaryen.Type = i32): void {
    for (const n of names) {
      this.index.set(n, { i: this.params.length + this.vars.length, t });
      this.vars.push(t);
    }
  }
  get(n: string): Ref {
    const l = this.index.get(n)!;
    return this.m.local.get(l.i, l.t);
  }
  set(n: string, e: Ref): Ref {
    return this.m.local.set(this.index.get(n)!.i, e);
  }
  /** for (v = from; v < to; v += step) body; the bound is read once per iteration. */
  for(v: string, from: Ref, to: () => Ref, step: Ref, body: Ref[]): Ref {
    const m = this.m, k = this.labels++;
    const next = m.i32.add(this.get(v), step);
    return m.block(`b${k}`, [
      this.set(v, from),
      m.br(`b${k}`, m.i32.ge_s(this.get(v), to())),
      m.loop(`l${k}`, m.block(null, [...body, this.set(v, next), m.br(`l${k}`, m.i32.lt_s(this.get(v), to()))])),
    ]);
  }
  add(name: string, body: Ref[]): void {
    this.m.addFunction(name, binaryen.createType(this.params.map(() => i32)), none, this.vars, this.m.block(null, body));
    this.m.addFunctionExport(name, name);
  }
}

/**
 * pack{R}(src, dst, rows, depth, rs, ds): dst[(i / R · depth + p) · R + i % R] = src[i·rs + p·ds]
 * for i < ceil(rows / R)·R (0 past `rows`), p < depth. A full panel moves vectors: R/4 per p when
 * rs = 1 (the panel's rows are adjacent), or 4×4 blocks transposed in registers when ds = 1 (each
 * row runs along p); otherwise, and for the last depth % 4 columns then, one value at a time.
 */
function pack(m: binaryen.Module, R: number): void {
  const f = new Fn(m, ['src', 'dst', 'rows', 'depth', 'rs', 'ds']);
  f.local(['i', 'p', 's', 'd', 'r']);
  f.local(['x0', 'x1', 'x2', 'x3', 't0', 't1', 't2', 't3'], v128);
  const c = (v: number) => m.i32.const(v);
  const { get, set } = { get: (n: string) => f.get(n), set: (n: string, e: Ref) => f.set(n, e) };
  // s: &src[i·rs + p·ds] (bytes); d walks dst linearly.
  const srcAt = () => m.i32.add(get('src'), m.i32.shl(m.i32.add(m.i32.mul(get('i'), get('rs')), m.i32.mul(get('p'), get('ds'))), c(2)));
  const vector = f.for('p', c(0), () => get('depth'), c(1), [
    set('s', srcAt()),
    ...Array.from({ length: R / 4 }, (_, q) => m.v128.store(16 * q, 4, get('d'), m.v128.load(16 * q, 4, get('s')))),
    set('d', m.i32.add(get('d'), c(4 * R))),
  ]);
  /** Lanes of a and b (0–3 a's, 4–7 b's) as an i8x16.shuffle. */
  const lanes = (a: Ref, b: Ref, l: number[]) => m.i8x16.shuffle(a, b, l.flatMap((q) => [4 * q, 4 * q + 1, 4 * q + 2, 4 * q + 3]));
  const x = (r: number) => get(`x${r}`), t = (r: number) => get(`t${r}`);
  // rows 4q .. 4q+3 of the panel, columns p .. p+3: transposed into the 4 columns' stores
  const block = (q: number): Ref[] => [
    ...[0, 1, 2, 3].map((r) => set(`x${r}`, m.v128.load(0, 4, m.i32.add(get('s'), m.i32.shl(m.i32.mul(c(4 * q + r), get('rs')), c(2)))))),
    set('t0', lanes(x(0), x(1), [0, 4, 1, 5])),
    set('t1', lanes(x(2), x(3), [0, 4, 1, 5])),
    set('t2', lanes(x(0), x(1), [2, 6, 3, 7])),
    set('t3', lanes(x(2), x(3), [2, 6, 3, 7])),
    m.v128.store(16 * q, 4, get('d'), lanes(t(0), t(1), [0, 1, 4, 5])),
    m.v128.store(16 * q + 4 * R, 4, get('d'), lanes(t(0), t(1), [2, 3, 6, 7])),
    m.v128.store(16 * q + 8 * R, 4, get('d'), lanes(t(2), t(3), [0, 1, 4, 5])),
    m.v128.store(16 * q + 12 * R, 4, get('d'), lanes(t(2), t(3), [2, 3, 6, 7])),
  ];
  const scalar = (from: Ref) =>
    f.for('p', from, () => get('depth'), c(1), [
      set('s', srcAt()),
      f.for('r', c(0), () => c(R), c(1), [
        m.f32.store(0, 4, get('d'), m.if(m.i32.lt_s(m.i32.add(get('i'), get('r')), get('rows')), m.f32.load(0, 4, get('s')), m.f32.const(0))),
        set('s', m.i32.add(get('s'), m.i32.shl(get('rs'), c(2)))),
        set('d', m.i32.add(get('d'), c(4))),
      ]),
    ]);
  const transposed = m.block(null, [
    f.for('p', c(0), () => m.i32.sub(get('depth'), c(3)), c(4), [
      set('s', srcAt()),
      ...Array.from({ length: R / 4 }, (_, q) => block(q)).flat(),
      set('d', m.i32.add(get('d'), c(16 * R))),
    ]),
    scalar(m.i32.and(get('depth'), c(-4))),
  ]);
  const full = () => m.i32.le_s(m.i32.add(get('i'), c(R)), get('rows'));
  f.add(`pack${R}`, [
    set('d', get('dst')),
    f.for('i', c(0), () => get('rows'), c(R), [
      m.if(m.i32.and(m.i32.eq(get('rs'), c(1)), full()), vector, m.if(m.i32.and(m.i32.eq(get('ds'), c(1)), full()), transposed, scalar(c(0)))),
    ]),
  ]);
}

/**
 * gemm(a, b, c, m, n, k, ldc, tile): C[i·ldc + j] = Σ_p A[i, p]·B[p, j] for i < m, j < n, from A
 * packed by pack4 and B by pack8. Edge tiles go through the 128-byte scratch at `tile`.
 */
function gemm(m: binaryen.Module): void {
  const f = new Fn(m, ['a', 'b', 'c', 'm', 'n', 'k', 'ldc', 'tile']);
  f.local(['i0', 'j0', 'p', 'ap', 'bp', 'out', 'r', 'q']);
  const accs = Array.from({ length: MR * 2 }, (_, q) => `acc${q}`);
  f.local([...accs, 'b0', 'b1', 'av'], v128);
  const c = (v: number) => m.i32.const(v);
  const get = (n: string) => f.get(n), set = (n: string, e: Ref) => f.set(n, e);
  const zero = () => m.v128.const([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const step: Ref[] = [set('b0', m.v128.load(0, 16, get('bp'))), set('b1', m.v128.load(16, 16, get('bp')))];
  for (let r = 0; r < MR; r++) {
    step.push(
      set('av', m.v128.load32_splat(4 * r, 4, get('ap'))),
      set(`acc${2 * r}`, m.f32x4.add(get(`acc${2 * r}`), m.f32x4.mul(get('av'), get('b0')))),
      set(`acc${2 * r + 1}`, m.f32x4.add(get(`acc${2 * r + 1}`), m.f32x4.mul(get('av'), get('b1')))),
    );
  }
  step.push(set('ap', m.i32.add(get('ap'), c(4 * MR))), set('bp', m.i32.add(get('bp'), c(4 * NR))));
  const rowBytes = () => m.i32.shl(get('ldc'), c(2));
  /** Stores the tile at `base` with rows `stride` bytes apart. */
  const store = (base: Ref, stride: () => Ref): Ref[] => [
    set('out', base),
    ...Array.from({ length: MR }, (_, r) => [
      m.v128.store(0, 4, get('out'), get(`acc${2 * r}`)),
      m.v128.store(16, 4, get('out'), get(`acc${2 * r + 1}`)),
      set('out', m.i32.add(get('out'), stride())),
    ]).flat(),
  ];
  /** min(v, bound) of a local difference v (evaluated twice: `v` must be pure). */
  const min = (v: Ref, bound: number) => m.select(m.i32.lt_s(v, c(bound)), v, c(bound));
  const cAt = (i: Ref, j: Ref) => m.i32.add(get('c'), m.i32.shl(m.i32.add(m.i32.mul(i, get('ldc')), j), c(2)));
  const edge = [
    ...store(get('tile'), () => c(4 * NR)),
    f.for('r', c(0), () => min(m.i32.sub(get('m'), get('i0')), MR), c(1), [
      f.for('q', c(0), () => min(m.i32.sub(get('n'), get('j0')), NR), c(1), [
        m.f32.store(0, 4, cAt(m.i32.add(get('i0'), get('r')), m.i32.add(get('j0'), get('q'))),
          m.f32.load(0, 4, m.i32.add(get('tile'), m.i32.shl(m.i32.add(m.i32.mul(get('r'), c(NR)), get('q')), c(2))))),
      ]),
    ]),
  ];
  const full = () => m.i32.and(m.i32.le_s(m.i32.add(get('i0'), c(MR)), get('m')), m.i32.le_s(m.i32.add(get('j0'), c(NR)), get('n')));
  f.add('gemm', [
    f.for('j0', c(0), () => get('n'), c(NR), [
      f.for('i0', c(0), () => get('m'), c(MR), [
        ...accs.map((a) => set(a, zero())),
        set('ap', m.i32.add(get('a'), m.i32.shl(m.i32.mul(get('i0'), get('k')), c(2)))),
        set('bp', m.i32.add(get('b'), m.i32.shl(m.i32.mul(get('j0'), get('k')), c(2)))),
        f.for('p', c(0), () => get('k'), c(1), step),
        m.if(full(), m.block(null, store(cAt(get('i0'), get('j0')), rowBytes)), m.block(null, edge)),
      ]),
    ]),
  ]);
}

/** The parameters of the conv layout kernels: x is [B, H, W, C] and the taps KH × KW, output
 *  pixels OH × OW (M = B·OH·OW rows), columns (kh, kw, c) (K = KH·KW·C). */
const CONV = ['B', 'H', 'W', 'C', 'OH', 'OW', 'KH', 'KW', 'sh', 'sw', 'pt', 'pl', 'dh', 'dw'];

/**
 * The loops over pixel rows (b, oh, ow) and columns (kh, kw, c) of the patch matrix, with `at` the
 * byte offset of x's value in the image (valid when `ok`) and `d` a pointer into the patch side:
 * `start` at each row's first column, `next` from one column to the next. `body` runs per column.
 */
function patchLoops(m: binaryen.Module, f: Fn, start: () => Ref, next: () => Ref, body: () => Ref[]): Ref {
  const c = (v: number) => m.i32.const(v);
  const get = (n: string) => f.get(n), set = (n: string, e: Ref) => f.set(n, e);
  const { add, mul, sub, and, lt_u } = m.i32;
  f.local(['b', 'oh', 'ow', 'kh', 'kw', 'ih', 'iw', 'row', 'col', 'cc', 'ok', 'at', 'd']);
  return m.block(null, [
    set('row', c(0)),
    f.for('b', c(0), () => get('B'), c(1), [
      f.for('oh', c(0), () => get('OH'), c(1), [
        f.for('ow', c(0), () => get('OW'), c(1), [
          set('col', c(0)),
          set('d', start()),
          f.for('kh', c(0), () => get('KH'), c(1), [
            set('ih', add(sub(mul(get('oh'), get('sh')), get('pt')), mul(get('kh'), get('dh')))),
            f.for('kw', c(0), () => get('KW'), c(1), [
              set('iw', add(sub(mul(get('ow'), get('sw')), get('pl')), mul(get('kw'), get('dw')))),
              // unsigned compares: a negative coordinate is out of range too
              set('ok', and(lt_u(get('ih'), get('H')), lt_u(get('iw'), get('W')))),
              set('at', m.i32.shl(mul(add(mul(add(mul(get('b'), get('H')), get('ih')), get('W')), get('iw')), get('C')), c(2))),
              f.for('cc', c(0), () => get('C'), c(1), [
                ...body(),
                set('at', add(get('at'), c(4))),
                set('d', next()),
                set('col', add(get('col'), c(1))),
              ]),
            ]),
          ]),
          set('row', add(get('row'), c(1))),
        ]),
      ]),
    ]),
  ]);
}

/**
 * im2col(x, dst, ...CONV): the patch matrix P [M, K] (0 where a tap falls in the padding), written
 * already packed for gemm: as its A operand (pack4 of P, for conv2d), or `transposed` as the A
 * operand Pᵀ (for the filter gradient Pᵀ·dy). The runtime zeroes the last panel's padding rows.
 */
function im2col(m: binaryen.Module, transposed: boolean): void {
  const f = new Fn(m, ['x', 'dst', ...CONV]);
  f.local(['M', 'K']);
  const c = (v: number) => m.i32.const(v);
  const get = (n: string) => f.get(n);
  const { add, mul, shl, shr_u, and } = m.i32;
  // element (i, j) of a matrix packed by pack4 with depth n is at ((i >> 2)·n + j)·4 + (i & 3);
  // along P's row: j + 1 (P), or i + 1, which moves to the next panel after every 4th (Pᵀ)
  const start = () =>
    add(get('dst'), shl(transposed ? shl(get('row'), c(2)) : add(shl(mul(shr_u(get('row'), c(2)), get('K')), c(2)), and(get('row'), c(3))), c(2)));
  const next = () =>
    add(get('d'), transposed ? m.select(m.i32.eq(and(get('col'), c(3)), c(3)), m.i32.sub(shl(get('M'), c(4)), c(12)), c(4)) : c(16));
  const loops = patchLoops(m, f, start, next, () => [
    m.f32.store(0, 4, get('d'), m.if(get('ok'), m.f32.load(0, 4, add(get('x'), get('at'))), m.f32.const(0))),
  ]);
  f.add(transposed ? 'im2col_t' : 'im2col', [
    f.set('M', mul(mul(get('B'), get('OH')), get('OW'))),
    f.set('K', mul(mul(get('KH'), get('KW')), get('C'))),
    loops,
  ]);
}

/** col2im(src, dx, ...CONV): dx (zeroed by the runtime) += each in-image entry of the patch
 *  matrix src [M, K] at its pixel: the input gradient from dP = dy·Wᵀ. */
function col2im(m: binaryen.Module): void {
  const f = new Fn(m, ['src', 'dx', ...CONV]);
  f.local(['K', 'to']);
  const c = (v: number) => m.i32.const(v);
  const get = (n: string) => f.get(n);
  const { add, mul, shl } = m.i32;
  const start = () => add(get('src'), shl(mul(get('row'), get('K')), c(2)));
  const loops = patchLoops(m, f, start, () => add(get('d'), c(4)), () => [
    m.if(get('ok'), m.block(null, [
      f.set('to', add(get('dx'), get('at'))),
      m.f32.store(0, 4, get('to'), m.f32.add(m.f32.load(0, 4, get('to')), m.f32.load(0, 4, get('d')))),
    ])),
  ]);
  f.add('col2im', [f.set('K', mul(mul(get('KH'), get('KW')), get('C'))), loops]);
}

// ---------------------------------------------------------------- fused elementwise programs
//
// A fused node (ops/fused.ts) whose inputs are f32, each the output's size, a row of it, a single
// value, or rows of it that a line sums (`sum.0`: a bias's gradient, the batch sum of dy), with
// no other reduction and only ops SIMD has (or, on lines that read single values only, ops the
// host's Math has) becomes one function f(out, n, row, in0, in1, ...), exported under `fusedKey`:
// the lines that read single values run once, the others 4 elements per step.
// Blocks have 16 bytes to spare (runtime/wasm.ts), so a step may run up to 3 elements past n.
// Each f32 operation rounds as the JavaScript kernel's Math.fround does, and a sum adds in f64 in
// the JavaScript kernel's order: both give the same bits.

/** The export name of a fused program: `pattern` has a letter per input, u (a single value), f
 *  (the output's size), c (a row of it: the output's trailing dims) or k (rows of it, which a
 *  `sum.0` line sums; then `row` is that input's size). runtime/wasm.ts builds the same name. */
export const fusedKey = (pattern: string, code: string): string => `${pattern}|${code}`;

/** Math functions of the host (f64 → f64), for lines that run once. */
const MATH = { exp: 1, log: 1, sin: 1, cos: 1, sign: 1, pow: 2 } as const;

type Val = { v: Ref; bool: boolean };

/** Adds the function for `code` over inputs of `pattern`, or returns false if it has a line the
 *  wasm kernels cannot compute. */
function fused(m: binaryen.Module, code: string, lines: Line[], pattern: string): boolean {
  const uni = (a: Operand): boolean => (a.kind === 'in' ? pattern[a.k] === 'u' : a.kind === 'reg' ? once[a.k] : true);
  const once: boolean[] = [];
  // the sums over k inputs' rows (the only lines that may read them)
  const summed = (l: Line): boolean => l.op === 'sum' && l.axes?.join() === '0' && l.args[0].kind === 'in' && pattern[l.args[0].k] === 'k';
  if (pattern.includes('k') && pattern.includes('c')) return false;
  for (const l of lines) {
    once.push(l.args.every(uni));
    if (l.op === 'size' || l.dtype === 'i32' || l.args.some((a) => a.kind === 'lit' && a.dtype === 'i32')) return false;
    if (l.args.some((a) => a.kind === 'in' && pattern[a.k] === 'k') && !summed(l)) return false;
    if (!once.at(-1) && !(l.op in VECTOR) && !summed(l)) return false;
    if (once.at(-1) && !(l.op in VECTOR) && !(l.op in MATH)) return false;
  }
  if (lines.at(-1)!.dtype !== 'f32') return false;
  const f = new Fn(m, ['out', 'n', 'row', ...[...pattern].map((_, k) => `in${k}`)]);
  f.local(['i', 'r', 'end', 'len']);
  const c = (v: number) => m.i32.const(v);
  const bytes = (v: string) => m.i32.shl(f.get(v), c(2));
  const body: Ref[] = [];
  const scalar = (l: Line, k: number): Ref => {
    const arg = (a: Operand): Val =>
      a.kind === 'in' ? { v: m.f32.load(0, 4, f.get(`in${a.k}`)), bool: false }
      : a.kind === 'reg' ? { v: f.get(`s${a.k}`), bool: lines[a.k].dtype === 'bool' }
      : a.dtype === 'bool' ? { v: c(a.value ? 1 : 0), bool: true } : { v: m.f32.const(a.value), bool: false };
    const args = l.args.map(arg);
    if (l.op in MATH) {
      const ps = args.map((a) => m.f64.promote(a.v));
      return m.f32.demote(m.call(l.op, ps, binaryen.f64));
    }
    return SCALAR[l.op as keyof typeof VECTOR](m, args, l);
  };
  // the sum over the rows of a k input at the step's 4 elements, in f64 (two f64x2, in the rows'
  // order), rounded to f32 at the end
  f.local(['q', 'p']);
  f.local(['lo', 'hi'], v128);
  const sum = (k: number): Ref => {
    const zero = m.f64x2.splat(m.f64.const(0));
    const v = m.v128.load(0, 4, f.get('p'));
    const high = (x: Ref) => m.i8x16.shuffle(x, x, [8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15]);
    return m.block(null, [
      f.set('lo', zero),
      f.set('hi', zero),
      f.set('p', m.i32.add(f.get(`in${k}`), f.get('i'))),
      f.for('q', c(0), () => f.get('row'), f.get('n'), [
        f.set('lo', m.f64x2.add(f.get('lo'), m.f64x2.promote_low_f32x4(v))),
        f.set('hi', m.f64x2.add(f.get('hi'), m.f64x2.promote_low_f32x4(high(v)))),
        f.set('p', m.i32.add(f.get('p'), bytes('n'))),
      ]),
      m.i8x16.shuffle(m.f32x4.demote_f64x2_zero(f.get('lo')), m.f32x4.demote_f64x2_zero(f.get('hi')), [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]),
    ], v128);
  };
  const vector = (l: Line): Ref => {
    if (summed(l)) return sum((l.args[0] as { k: number }).k);
    const arg = (a: Operand): Val =>
      a.kind === 'in'
        ? { v: pattern[a.k] === 'u' ? f.get(`u${a.k}`) : m.v128.load(0, 4, m.i32.add(f.get(`in${a.k}`), pattern[a.k] === 'c' ? f.get('i') : m.i32.add(f.get('r'), f.get('i')))), bool: false }
      : a.kind === 'reg' ? { v: f.get(`v${a.k}`), bool: lines[a.k].dtype === 'bool' }
      : a.dtype === 'bool' ? { v: m.i32x4.splat(c(a.value ? -1 : 0)), bool: true } : { v: m.f32x4.splat(m.f32.const(a.value)), bool: false };
    return VECTOR[l.op as keyof typeof VECTOR](m, l.args.map(arg), l);
  };
  // inputs read as single values, splatted once
  [...pattern].forEach((p, k) => {
    if (p !== 'u') return;
    f.local([`u${k}`], v128);
    body.push(f.set(`u${k}`, m.v128.load32_splat(0, 4, f.get(`in${k}`))));
  });
  lines.forEach((l, k) => {
    f.local([`v${k}`], v128);
    if (!once[k]) return;
    f.local([`s${k}`], l.dtype === 'bool' ? i32 : binaryen.f32);
    body.push(f.set(`s${k}`, scalar(l, k)));
    // a bool is 0/1 as a scalar and an all-ones/all-zeros lane mask as a vector
    body.push(f.set(`v${k}`, l.dtype === 'bool' ? m.i32x4.splat(m.i32.sub(c(0), f.get(`s${k}`))) : m.f32x4.splat(f.get(`s${k}`))));
  });
  const last = lines.length - 1;
  const step = [
    ...lines.flatMap((l, k) => (once[k] ? [] : [f.set(`v${k}`, vector(l))])),
    m.v128.store(0, 4, m.i32.add(f.get('out'), m.i32.add(f.get('r'), f.get('i'))), f.get(`v${last}`)),
  ];
  // rows of `row` elements (the c inputs' size; n without them, or with k inputs), 4 elements per
  // step: a row's last step may spill into the next row, which its own first steps then overwrite
  f.add(fusedKey(pattern, code), [
    ...body,
    f.set('end', bytes('n')),
    f.set('len', bytes(pattern.includes('k') ? 'n' : 'row')),
    f.for('r', c(0), () => f.get('end'), f.get('len'), [f.for('i', c(0), () => f.get('len'), c(16), step)]),
  ]);
  return true;
}

type Rule = (m: binaryen.Module, a: Val[], l: Line) => Ref;
const f4 = (op: 'add' | 'sub' | 'mul' | 'div' | 'min' | 'max'): Rule => (m, [a, b]) => m.f32x4[op](a.v, b.v);
const f1 = (op: 'add' | 'sub' | 'mul' | 'div' | 'min' | 'max'): Rule => (m, [a, b]) => m.f32[op](a.v, b.v);
type Cmp = 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';
type Binary = Record<string, (a: Ref, b: Ref) => Ref>;
/** Comparisons: of f32s, or of bools (signed, as masks are -1/0 and scalars 0/1: reversed for masks). */
const intCmp = (op: Cmp, mask: boolean) => (op === 'eq' || op === 'ne' ? op : `${mask ? { lt: 'gt', le: 'ge', gt: 'lt', ge: 'le' }[op] : op}_s`);
const cmp4 = (op: Cmp): Rule => (m, [a, b]) => (a.bool ? (m.i32x4 as unknown as Binary)[intCmp(op, true)](a.v, b.v) : m.f32x4[op](a.v, b.v));
const cmp1 = (op: Cmp): Rule => (m, [a, b]) => (a.bool ? (m.i32 as unknown as Binary)[intCmp(op, false)](a.v, b.v) : m.f32[op](a.v, b.v));

/** The ops a vector line may have (f32 and bool operands), as f32x4 / lane-mask code. */
const VECTOR: Record<string, Rule> = {
  add: f4('add'), sub: f4('sub'), mul: f4('mul'), div: f4('div'), min: f4('min'), max: f4('max'),
  neg: (m, [a]) => m.f32x4.neg(a.v),
  abs: (m, [a]) => m.f32x4.abs(a.v),
  sqrt: (m, [a]) => m.f32x4.sqrt(a.v),
  floor: (m, [a]) => m.f32x4.floor(a.v),
  eq: cmp4('eq'), ne: cmp4('ne'), lt: cmp4('lt'), le: cmp4('le'), gt: cmp4('gt'), ge: cmp4('ge'),
  and: (m, [a, b]) => m.v128.and(a.v, b.v),
  or: (m, [a, b]) => m.v128.or(a.v, b.v),
  not: (m, [a]) => m.v128.not(a.v),
  select: (m, [c, p, q]) => m.v128.bitselect(p.v, q.v, c.v),
  cast: (m, [a], l) =>
    l.to === 'f32' ? (a.bool ? m.v128.and(a.v, m.f32x4.splat(m.f32.const(1))) : a.v) : a.bool ? a.v : m.f32x4.ne(a.v, m.f32x4.splat(m.f32.const(0))),
};

/** The same ops on single values (bool as i32 0/1). */
const SCALAR: Record<keyof typeof VECTOR, Rule> = {
  add: f1('add'), sub: f1('sub'), mul: f1('mul'), div: f1('div'), min: f1('min'), max: f1('max'),
  neg: (m, [a]) => m.f32.neg(a.v),
  abs: (m, [a]) => m.f32.abs(a.v),
  sqrt: (m, [a]) => m.f32.sqrt(a.v),
  floor: (m, [a]) => m.f32.floor(a.v),
  eq: cmp1('eq'), ne: cmp1('ne'), lt: cmp1('lt'), le: cmp1('le'), gt: cmp1('gt'), ge: cmp1('ge'),
  and: (m, [a, b]) => m.i32.and(a.v, b.v),
  or: (m, [a, b]) => m.i32.or(a.v, b.v),
  not: (m, [a]) => m.i32.xor(a.v, m.i32.const(1)),
  select: (m, [c, p, q]) => m.select(c.v, p.v, q.v),
  cast: (m, [a], l) => (l.to === 'f32' ? (a.bool ? m.f32.convert_s.i32(a.v) : a.v) : a.bool ? a.v : m.f32.ne(a.v, m.f32.const(0))),
};

/** Whether an input of `shape` is a row of the output (its trailing dims, static, leading 1s
 *  dropped): a bias [256] of an output [B, 256]. */
function rowOf(shape: Dim[], out: Dim[]): boolean {
  const s = shape.slice(shape.findIndex((d) => d !== 1));
  return s.length < out.length && s.every((d, q) => typeof d === 'number' && d === out[out.length - s.length + q]);
}

/** The fused programs of `manifest` the wasm path can run, as [code, pattern, lines]. */
function fusedPrograms(manifest: Manifest): [string, string, Line[]][] {
  const seen = new Map<string, [string, string, Line[]]>();
  for (const p of Object.values(manifest.programs)) {
    for (const n of p.nodes) {
      if (n.op !== 'fused' || n.attrs.reduce !== undefined || n.dtype !== 'f32') continue;
      // a matmul's epilogue reads the product (runtime/wasm.ts computes it first) where its operands are
      const ins = n.attrs.matmul ? [{ shape: n.shape, dtype: n.dtype }, ...n.inputs.slice(2).map((j) => p.nodes[j])] : n.inputs.map((j) => p.nodes[j]);
      const same = (d: Dim[]) => d.length === n.shape.length && d.every((x, q) => x === n.shape[q]);
      const rows = (d: Dim[]) => d.length === n.shape.length + 1 && same(d.slice(1));
      const pattern = ins.map((x) => (x.shape.every((d) => d === 1) ? 'u' : same(x.shape) ? 'f' : rowOf(x.shape, n.shape) ? 'c' : rows(x.shape) ? 'k' : '?')).join('');
      const sizes = new Set(ins.filter((_, k) => pattern[k] === 'c' || pattern[k] === 'k').map((x) => x.shape.filter((d) => d !== 1).join()));
      if (pattern.includes('?') || sizes.size > 1 || ins.some((x) => x.dtype !== 'f32')) continue;
      const code = String(n.attrs.code);
      if (seen.has(fusedKey(pattern, code))) continue;
      try {
        seen.set(fusedKey(pattern, code), [code, pattern, fusedProgram(codeLines(n.attrs), ins.map((x) => x.dtype)).lines]);
      } catch {
        // not a program the compiler made: the JavaScript kernel reports it
      }
    }
  }
  return [...seen.values()];
}

const cache = new Map<string, Uint8Array<ArrayBuffer>>();

/** The module's bytes: the shared kernels, and the fused programs of `manifest` if given. */
export function cpuWasm(manifest?: Manifest): Uint8Array<ArrayBuffer> {
  const programs = manifest ? fusedPrograms(manifest) : [];
  const key = programs.map(([code, pattern]) => fusedKey(pattern, code)).join('\n');
  const hit = cache.get(key);
  if (hit) return hit;
  const m = new binaryen.Module();
  m.setFeatures(binaryen.Features.MVP | binaryen.Features.SIMD128 | binaryen.Features.BulkMemory);
  m.setMemory(1, 65536, null, [], false, false, '0');
  m.addMemoryImport('0', 'env', 'memory');
  for (const [name, arity] of Object.entries(MATH)) m.addFunctionImport(name, 'env', name, binaryen.createType(Array(arity).fill(binaryen.f64)), binaryen.f64);
  pack(m, MR);
  pack(m, NR);
  gemm(m);
  im2col(m, false);
  im2col(m, true);
  col2im(m);
  for (const [code, pattern, lines] of programs) fused(m, code, lines, pattern);
  // No binaryen optimization: it took 250 ms here and V8's optimizing tier gives the same speed.
  if (!m.validate()) throw new Error('cpuWasm: binaryen rejected the generated module');
  const bytes = new Uint8Array(m.emitBinary());
  m.dispose();
  cache.set(key, bytes);
  return bytes;
}
