/**
 * jax-js peer for the MNIST MLP benchmark (devices: wasm, webgpu).
 *
 * One training step is ONE jit-compiled function: valueAndGrad of the loss
 * followed by a hand-written, bias-corrected Adam update of all six parameter
 * tensors (@jax-js/optax is not published on npm). The step counter `t` is a
 * device scalar so the bias corrections are computed inside the jit without
 * retracing.
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
  nn,
  numpy as np,
  tree,
  valueAndGrad,
} from "@jax-js/jax";

import { type Engine, type EngineOptions, MLP, initParams } from "../engine.ts";
import { ensureNodeWebGPU } from "./node_webgpu.ts";

export type JaxDevice = "wasm" | "webgpu";

type Params = {
  w1: np.Array;
  b1: np.Array;
  w2: np.Array;
  b2: np.Array;
  w3: np.Array;
  b3: np.Array;
};
const KEYS = ["w1", "b1", "w2", "b2", "w3", "b3"] as const;

function forward(p: Params, x: np.Array): np.Array {
  const h1 = nn.relu(np.dot(x, p.w1).add(p.b1));
  const h2 = nn.relu(np.dot(h1, p.w2).add(p.b2));
  return np.dot(h2, p.w3).add(p.b3);
}

/** Softmax cross-entropy, mean over the batch. `y1h` is one-hot [batch, 10]. */
function lossFn(p: Params, x: np.Array, y1h: np.Array): np.Array {
  const batch = x.shape[0];
  return nn.logSoftmax(forward(p, x)).mul(y1h).sum().mul(-1 / batch);
}

const { lr, beta1, beta2, eps } = MLP;

/**
 * (params, m, v, t, x, y) -> [loss, params', m', v', t+1]; everything in one jit.
 * Built per engine so each device gets its own compiled program.
 */
const makeTrainStep = () =>
  jit((p: Params, m: Params, v: Params, t: np.Array, x: np.Array, y: np.Array) => {
    const y1h = nn.oneHot(y, MLP.classes);
    const [loss, g] = valueAndGrad(lossFn)(tree.ref(p), x, y1h);
    const t1 = t.add(1);
    const bc1 = np.power(beta1, t1.ref).neg().add(1); // 1 - beta1^t
    const bc2 = np.power(beta2, t1.ref).neg().add(1); // 1 - beta2^t
    const np_: Partial<Params> = {};
    const nm: Partial<Params> = {};
    const nv: Partial<Params> = {};
    for (const k of KEYS) {
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
    return [loss, np_ as Params, nm as Params, nv as Params, t1] as [
      np.Array,
      Params,
      Params,
      Params,
      np.Array,
    ];
  });

const makePredict = () => jit((p: Params, x: np.Array) => nn.softmax(forward(p, x), -1));

let inited: Promise<string[]> | null = null;

export async function jaxMlp(device: JaxDevice, opts: EngineOptions = {}): Promise<Engine> {
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

  const init0 = opts.params ?? initParams(0);
  const [d0, d1, d2, d3] = MLP.sizes;
  const shapes: Record<(typeof KEYS)[number], number[]> = {
    w1: [d0, d1],
    b1: [d1],
    w2: [d1, d2],
    b2: [d2],
    w3: [d2, d3],
    b3: [d3],
  };
  const mk = (f: (k: (typeof KEYS)[number]) => np.Array): Params =>
    Object.fromEntries(KEYS.map((k) => [k, f(k)])) as Params;
  let params = mk((k) => np.array(init0[k], { shape: shapes[k], device }));
  let m = mk((k) => np.zeros(shapes[k], { device }));
  let v = mk((k) => np.zeros(shapes[k], { device }));
  let t = np.zeros([], { device });
  await blockUntilReady([params, m, v, t]);
  const trainStep = makeTrainStep();
  const predictFn = makePredict();

  return {
    name: `jax-js-${device}`,

    async step(x: Float32Array, y: Int32Array): Promise<number> {
      const batch = y.length;
      const xa = np.array(x, { shape: [batch, d0], device });
      const ya = np.array(y, { shape: [batch], dtype: np.int32, device });
      const [loss, p2, m2, v2, t2] = trainStep(params, m, v, t, xa, ya);
      params = p2;
      m = m2;
      v = v2;
      t = t2;
      // jax-js is lazy: force the parameter/moment updates as well as the loss.
      const [l] = await Promise.all([loss.data(), blockUntilReady([params, m, v, t])]);
      return l[0];
    },

    async predict(x: Float32Array, batch: number): Promise<Float32Array> {
      const xa = np.array(x, { shape: [batch, d0], device });
      const probs = predictFn(tree.ref(params), xa);
      return (await probs.data()) as Float32Array;
    },

    async dispose(): Promise<void> {
      tree.dispose([params, m, v, t]);
      trainStep.dispose();
      predictFn.dispose();
    },
  };
}
