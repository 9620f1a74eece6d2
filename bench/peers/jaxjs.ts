/**
 * jax-js peer (devices: wasm, webgpu), both workloads.
 *
 * One training step is ONE jit-compiled function: valueAndGrad of the loss
 * followed by a hand-written, bias-corrected Adam update of every parameter
 * (@jax-js/optax is not published on npm). The step counter `t` and the dropout
 * key are device values threaded through the steps, so the bias corrections and
 * the dropout masks are computed inside the jit without retracing.
 *
 * LeNet in jax-js's layout: NCHW images (the shared [B, 28, 28, 1] batch is the
 * same memory as [B, 1, 28, 28]), OIHW kernels (lax.conv), max pooling with
 * lax.reduceWindow. The shared weights are converted once: conv kernels from
 * [kh, kw, cin, cout] to [cout, cin, kh, kw], and the rows of the first dense
 * weight from dlc's (h, w, c) flatten order to (c, h, w), so the model computes
 * the same function.
 *
 * jax-js uses reference counting: every function argument is consumed, `.ref`
 * takes an extra reference. The jit-ed functions below follow that rule.
 *
 * Node setup notes:
 * - wasm: jax-js parallelises wasm kernels over Web Workers only when a global
 *   `Worker` exists; Node has none, so here it runs single-threaded.
 * - webgpu: jax-js asks `navigator.gpu` for an adapter in init("webgpu"); the
 *   Dawn-backed navigator.gpu is installed first (see node_webgpu.ts).
 */
import {
  blockUntilReady,
  defaultDevice,
  init,
  jit,
  lax,
  nn,
  numpy as np,
  random,
  tree,
  valueAndGrad,
} from "@jax-js/jax";

import { ADAM, CLASSES, type Engine, LENET, type Params, type Workload, isWeight } from "../engine.ts";
import { ensureNodeWebGPU } from "./node_webgpu.ts";

export type JaxDevice = "wasm" | "webgpu";

type P = Record<string, np.Array>;

const dense = (p: P, x: np.Array, k: number) => np.dot(x, p[`f${k}w`]).add(p[`f${k}b`]);

const mlp = (p: P, x: np.Array) => dense(p, nn.relu(dense(p, nn.relu(dense(p, x, 1)), 2)), 3);

const pool = (x: np.Array) => lax.reduceWindow(x, (win: np.Array) => np.max(win), [2, 2], [2, 2]);

/** LeNet-5 on NCHW `x`; dropout when a key is given. */
function lenet(p: P, x: np.Array, key?: np.Array): np.Array {
  const conv = (h: np.Array, k: string, padding: "SAME" | "VALID") =>
    pool(nn.relu(lax.conv(h, p[`${k}w`], [1, 1], padding).add(p[`${k}b`].reshape([-1, 1, 1]))));
  const batch = x.shape[0];
  let f = conv(conv(x, "c1", "SAME"), "c2", "VALID").reshape([batch, -1]);
  if (key) {
    const keep = 1 - LENET.dropout;
    f = np.where(random.bernoulli(key, keep, f.shape), f.mul(1 / keep), 0);
  }
  return dense(p, nn.relu(dense(p, nn.relu(dense(p, f, 1)), 2)), 3);
}

/** Softmax cross-entropy (mean over the batch) + LeNet's L2; `y1h` is one-hot [batch, 10]. */
function lossFn(w: Workload, p: P, x: np.Array, y1h: np.Array, key?: np.Array): np.Array {
  const batch = x.shape[0];
  // The penalty takes its references before the forward pass consumes the weights.
  const penalties = w.name === "mlp" ? [] : w.params.filter((q) => isWeight(q.shape)).map((q) => np.square(p[q.name].ref).sum());
  const logits = w.name === "mlp" ? mlp(p, x) : lenet(p, x, key);
  const ce = nn.logSoftmax(logits).mul(y1h).sum().mul(-1 / batch);
  return penalties.reduce((l, pen) => l.add(pen.mul(LENET.l2)), ce);
}

const { lr, beta1, beta2, eps } = ADAM;

/**
 * (params, m, v, t, key, x, y) -> [loss, params', m', v', t+1, key']; everything in one jit.
 * Built per engine so each device gets its own compiled program.
 */
const makeTrainStep = (w: Workload) =>
  jit((p: P, m: P, v: P, t: np.Array, key: np.Array, x: np.Array, y: np.Array) => {
    // LeNet's dropout draws from one half of the split key and passes the other on; the MLP
    // passes its key through untouched, so its step does no random work.
    let drop: np.Array | undefined;
    if (w.name === "lenet") {
      const keys = random.split(key, 2);
      drop = keys.ref.slice(1);
      key = keys.slice(0);
    }
    const y1h = nn.oneHot(y, CLASSES);
    const [loss, g] = valueAndGrad((q: P) => lossFn(w, q, x, y1h, drop))(tree.ref(p));
    const t1 = t.add(1);
    const bc1 = np.power(beta1, t1.ref).neg().add(1); // 1 - beta1^t
    const bc2 = np.power(beta2, t1.ref).neg().add(1); // 1 - beta2^t
    const np_: P = {};
    const nm: P = {};
    const nv: P = {};
    for (const k of Object.keys(p)) {
      const gk = g[k];
      const mk = m[k].mul(beta1).add(gk.ref.mul(1 - beta1));
      const vk = v[k].mul(beta2).add(gk.ref.mul(gk).mul(1 - beta2));
      const mhat = mk.ref.div(bc1.ref);
      const vhat = vk.ref.div(bc2.ref);
      np_[k] = p[k].sub(mhat.mul(lr).div(np.sqrt(vhat).add(eps)));
      nm[k] = mk;
      nv[k] = vk;
    }
    bc1.dispose();
    bc2.dispose();
    return [loss, np_, nm, nv, t1, key] as [np.Array, P, P, P, np.Array, np.Array];
  });

const makePredict = (w: Workload) =>
  jit((p: P, x: np.Array) => nn.softmax(w.name === "mlp" ? mlp(p, x) : lenet(p, x), -1));

/** The shared weights in jax-js's layout (see the top of this file). */
function jaxLayout(w: Workload, params: Params): Record<string, { data: Float32Array; shape: number[] }> {
  if (w.name === "mlp") return params;
  const out = { ...params };
  for (const k of ["c1w", "c2w"]) {
    const { data, shape } = params[k];
    const [kh, kw, ci, co] = shape;
    const t = new Float32Array(data.length);
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let i = 0; i < ci; i++) for (let o = 0; o < co; o++) t[((o * ci + i) * kh + y) * kw + x] = data[((y * kw + x) * ci + i) * co + o];
    out[k] = { data: t, shape: [co, ci, kh, kw] };
  }
  // f1w's rows: (h, w, c) -> (c, h, w) for the 5 x 5 x 16 features.
  const { data, shape } = params.f1w;
  const [rows, cols] = shape;
  const [hw, c] = [25, 16];
  const t = new Float32Array(data.length);
  for (let s = 0; s < hw; s++) for (let ch = 0; ch < c; ch++) t.set(data.subarray((s * c + ch) * cols, (s * c + ch + 1) * cols), (ch * hw + s) * cols);
  out.f1w = { data: t, shape: [rows, cols] };
  return out;
}

let inited: Promise<string[]> | null = null;

export async function jaxEngine(device: JaxDevice, w: Workload, params: Params): Promise<Engine> {
  if (device === "webgpu") {
    await ensureNodeWebGPU();
    if (!(await navigator.gpu.requestAdapter())) {
      throw new Error("no WebGPU adapter (navigator.gpu.requestAdapter() returned null)");
    }
  }
  // init() only starts the backends it was asked for; call it per device.
  inited = (inited ?? Promise.resolve([])).then(() => init(device));
  const available = await inited;
  if (!available.includes(device)) {
    throw new Error(`jax-js device '${device}' unavailable (init -> [${available.join(", ")}])`);
  }
  defaultDevice(device);

  const init0 = jaxLayout(w, params);
  const all = (f: (k: string) => np.Array): P => Object.fromEntries(Object.keys(init0).map((k) => [k, f(k)]));
  let p = all((k) => np.array(init0[k].data, { shape: init0[k].shape, device }));
  let m = all((k) => np.zeros(init0[k].shape, { device }));
  let v = all((k) => np.zeros(init0[k].shape, { device }));
  let t = np.zeros([], { device });
  let key = random.key(0);
  await blockUntilReady([p, m, v, t, key]);
  const trainStep = makeTrainStep(w);
  const predictFn = makePredict(w);
  // NCHW for LeNet: C = 1, so the NHWC batch is already laid out right.
  const shape = (batch: number) => (w.name === "mlp" ? [batch, 784] : [batch, 1, 28, 28]);

  return {
    name: `jax-js-${device}`,

    async step(x: Float32Array, y: Int32Array): Promise<number> {
      const batch = y.length;
      const xa = np.array(x, { shape: shape(batch), device });
      const ya = np.array(y, { shape: [batch], dtype: np.int32, device });
      const [loss, p2, m2, v2, t2, k2] = trainStep(p, m, v, t, key, xa, ya);
      [p, m, v, t, key] = [p2, m2, v2, t2, k2];
      // jax-js is lazy: force the parameter/moment updates as well as the loss.
      const [l] = await Promise.all([loss.data(), blockUntilReady([p, m, v, t, key])]);
      return l[0];
    },

    async predict(x: Float32Array, batch: number): Promise<Float32Array> {
      const probs = predictFn(tree.ref(p), np.array(x, { shape: shape(batch), device }));
      return (await probs.data()) as Float32Array;
    },

    async dispose(): Promise<void> {
      tree.dispose([p, m, v, t, key]);
      trainStep.dispose();
      predictFn.dispose();
    },
  };
}
