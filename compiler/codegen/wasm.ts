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
 * for i < ceil(rows / R)·R (0 past `rows`), p < depth. A full panel with rs = 1 moves R/4 vectors.
 */
function pack(m: binaryen.Module, R: number): void {
  const f = new Fn(m, ['src', 'dst', 'rows', 'depth', 'rs', 'ds']);
  f.local(['i', 'p', 's', 'd', 'r']);
  const c = (v: number) => m.i32.const(v);
  const { get, set } = { get: (n: string) => f.get(n), set: (n: string, e: Ref) => f.set(n, e) };
  // s: &src[i·rs + p·ds] (bytes); d walks dst linearly.
  const srcAt = () => m.i32.add(get('src'), m.i32.shl(m.i32.add(m.i32.mul(get('i'), get('rs')), m.i32.mul(get('p'), get('ds'))), c(2)));
  const vector = f.for('p', c(0), () => get('depth'), c(1), [
    set('s', srcAt()),
    ...Array.from({ length: R / 4 }, (_, q) => m.v128.store(16 * q, 4, get('d'), m.v128.load(16 * q, 4, get('s')))),
    set('d', m.i32.add(get('d'), c(4 * R))),
  ]);
  const scalar = f.for('p', c(0), () => get('depth'), c(1), [
    set('s', srcAt()),
    f.for('r', c(0), () => c(R), c(1), [
      m.f32.store(0, 4, get('d'), m.if(m.i32.lt_s(m.i32.add(get('i'), get('r')), get('rows')), m.f32.load(0, 4, get('s')), m.f32.const(0))),
      set('s', m.i32.add(get('s'), m.i32.shl(get('rs'), c(2)))),
      set('d', m.i32.add(get('d'), c(4))),
    ]),
  ]);
  f.add(`pack${R}`, [
    set('d', get('dst')),
    f.for('i', c(0), () => get('rows'), c(R), [
      m.if(m.i32.and(m.i32.eq(get('rs'), c(1)), m.i32.le_s(m.i32.add(get('i'), c(R)), get('rows'))), vector, scalar),
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
 * byte address of x's value (valid when `ok`); `body` runs per column with `row` and `col` set.
 */
function patchLoops(m: binaryen.Module, f: Fn, body: () => Ref[]): Ref {
  const c = (v: number) => m.i32.const(v);
  const get = (n: string) => f.get(n), set = (n: string, e: Ref) => f.set(n, e);
  const { add, mul, sub, and, lt_u } = m.i32;
  f.local(['b', 'oh', 'ow', 'kh', 'kw', 'ih', 'iw', 'row', 'col', 'cc', 'ok', 'at']);
  return m.block(null, [
    set('row', c(0)),
    f.for('b', c(0), () => get('B'), c(1), [
      f.for('oh', c(0), () => get('OH'), c(1), [
        f.for('ow', c(0), () => get('OW'), c(1), [
          set('col', c(0)),
          f.for('kh', c(0), () => get('KH'), c(1), [
            set('ih', add(sub(mul(get('oh'), get('sh')), get('pt')), mul(get('kh'), get('dh')))),
            f.for('kw', c(0), () => get('KW'), c(1), [
              set('iw', add(sub(mul(get('ow'), get('sw')), get('pl')), mul(get('kw'), get('dw')))),
              // unsigned compares: a negative coordinate is out of range too
              set('ok', and(lt_u(get('ih'), get('H')), lt_u(get('iw'), get('W')))),
              set('at', m.i32.shl(mul(add(mul(add(mul(get('b'), get('H')), get('ih')), get('W')), get('iw')), get('C')), c(2))),
              f.for('cc', c(0), () => get('C'), c(1), [...body(), set('at', add(get('at'), c(4))), set('col', add(get('col'), c(1)))]),
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
  // element (i, j) of a matrix packed by pack4 with depth d: ((i >> 2)·d + j)·4 + (i & 3)
  const packed = (i: Ref, j: Ref, d: Ref) => add(shl(add(mul(shr_u(i, c(2)), d), j), c(2)), and(i, c(3)));
  const at = () => (transposed ? packed(get('col'), get('row'), get('M')) : packed(get('row'), get('col'), get('K')));
  const loops = patchLoops(m, f, () => [
    m.f32.store(0, 4, add(get('dst'), shl(at(), c(2))), m.if(get('ok'), m.f32.load(0, 4, add(get('x'), get('at'))), m.f32.const(0))),
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
  const loops = patchLoops(m, f, () => [
    m.if(get('ok'), m.block(null, [
      f.set('to', add(get('dx'), get('at'))),
      m.f32.store(0, 4, get('to'), m.f32.add(m.f32.load(0, 4, get('to')),
        m.f32.load(0, 4, add(get('src'), shl(add(mul(get('row'), get('K')), get('col')), c(2)))))),
    ])),
  ]);
  f.add('col2im', [f.set('K', mul(mul(get('KH'), get('KW')), get('C'))), loops]);
}

let bytes: Uint8Array | undefined;

/** The module's bytes (built once per process). */
export function cpuWasm(): Uint8Array {
  if (bytes) return bytes;
  const m = new binaryen.Module();
  m.setFeatures(binaryen.Features.MVP | binaryen.Features.SIMD128 | binaryen.Features.BulkMemory);
  m.setMemory(1, 65536, null, [], false, false, '0');
  m.addMemoryImport('0', 'env', 'memory');
  pack(m, MR);
  pack(m, NR);
  gemm(m);
  im2col(m, false);
  im2col(m, true);
  col2im(m);
  // No binaryen optimization: it took 250 ms here and V8's optimizing tier gives the same speed.
  if (!m.validate()) throw new Error('cpuWasm: binaryen rejected the generated module');
  bytes = m.emitBinary();
  m.dispose();
  return bytes;
}
