/**
 * TensorFlow.js peer (backends: cpu, wasm, webgpu), both workloads.
 *
 * Idiomatic tfjs: tf.variable parameters, tf.train.adam (bias-corrected Adam),
 * optimizer.minimize() over tf.losses.softmaxCrossEntropy (mean over batch) plus,
 * for LeNet, the L2 penalty; tf.conv2d / tf.maxPool / tf.dropout in NHWC, the
 * layout of the shared weights. tfjs-backend-wasm has no Conv2DBackpropFilter
 * kernel, so its LeNet step fails; the bench reports that.
 *
 * Node setup notes:
 * - wasm: the .wasm binaries are loaded from node_modules via a file-system
 *   prefix given to setWasmPaths (no network). In Node tfjs-backend-wasm never
 *   uses its threaded build (WASM_HAS_MULTITHREAD_SUPPORT is false when
 *   IS_NODE), so it runs the single-threaded SIMD binary.
 * - webgpu: tfjs-backend-webgpu registers its backend at import time only if
 *   `navigator.gpu` exists then, and it uses the GPUBufferUsage/GPUMapMode/...
 *   globals; so Dawn (`webgpu` package) is installed on globalThis first and
 *   the backend module is imported afterwards.
 */
import { createRequire } from "node:module";
import { dirname } from "node:path";

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";


import { ADAM, CLASSES, type Engine, LENET, type Params, type Workload, isWeight } from "../engine.ts";
import { ensureNodeWebGPU } from "./node_webgpu.ts";

export type TfjsBackend = "cpu" | "wasm" | "webgpu";

const require = createRequire(import.meta.url);
// tfjs-core's own Node bundle registers no gradients (the @tensorflow/tfjs
// union package normally imports this side-effect module). It is shipped only
// as ESM with extension-less imports; tsx's require hook transpiles it. Its
// registrations go to tfjs's globalThis-wide registry, shared with the bundle.
require("@tensorflow/tfjs-core/dist/register_all_gradients");
let wasmLoaded: Promise<void> | null = null;
let webgpuLoaded: Promise<void> | null = null;

function loadWasm(): Promise<void> {
  wasmLoaded ??= (async () => {
    const wasm = await import("@tensorflow/tfjs-backend-wasm");
    // .../node_modules/@tensorflow/tfjs-backend-wasm/dist/ holds
    // tfjs-backend-wasm{,-simd,-threaded-simd}.wasm next to the node bundle.
    const distDir = dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + "/";
    wasm.setWasmPaths(distDir);
  })();
  return wasmLoaded;
}

function loadWebGPU(): Promise<void> {
  webgpuLoaded ??= (async () => {
    await ensureNodeWebGPU();
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) throw new Error("no WebGPU adapter (navigator.gpu.requestAdapter() returned null)");
    await import("@tensorflow/tfjs-backend-webgpu");
  })();
  return webgpuLoaded;
}

export async function tfjsEngine(backend: TfjsBackend, w: Workload, params: Params): Promise<Engine> {
  if (backend === "wasm") await loadWasm();
  if (backend === "webgpu") await loadWebGPU();
  if (!tf.findBackendFactory(backend)) throw new Error(`tfjs backend '${backend}' is not registered`);
  const ok = await tf.setBackend(backend);
  if (!ok || tf.getBackend() !== backend) throw new Error(`tf.setBackend('${backend}') failed`);
  await tf.ready();

  // tidy() frees the initial-value tensors; variables survive it.
  const p = tf.tidy(() =>
    Object.fromEntries(w.params.map(({ name, shape }) => [name, tf.variable(tf.tensor(params[name].data, shape), true, name)])),
  );
  const vars = Object.values(p);
  const weights = w.params.filter((q) => isWeight(q.shape)).map((q) => p[q.name]);
  const optimizer = tf.train.adam(ADAM.lr, ADAM.beta1, ADAM.beta2, ADAM.eps);

  const dense = (x: tf.Tensor, i: number) => tf.add(tf.matMul(x as tf.Tensor2D, p[`f${i}w`]), p[`f${i}b`]);
  const forward =
    w.name === "mlp"
      ? (x: tf.Tensor) => dense(tf.relu(dense(tf.relu(dense(x, 1)), 2)), 3)
      : (x: tf.Tensor, training = false) => {
          const conv = (h: tf.Tensor, k: string, padding: "same" | "valid") =>
            tf.maxPool(tf.relu(tf.add(tf.conv2d(h as tf.Tensor4D, p[`${k}w`] as tf.Tensor4D, 1, padding), p[`${k}b`])) as tf.Tensor4D, 2, 2, "valid");
          const h = conv(conv(x, "c1", "same"), "c2", "valid");
          let f: tf.Tensor = tf.reshape(h, [x.shape[0], -1]);
          if (training) f = tf.dropout(f, LENET.dropout);
          return dense(tf.relu(dense(tf.relu(dense(f, 1)), 2)), 3);
        };
  const penalty = () => tf.mul(LENET.l2, tf.addN(weights.map((v) => tf.sum(tf.square(v)))));
  const input = (x: Float32Array, batch: number) => tf.tensor(x, [batch, ...w.input]);

  const step = async (x: Float32Array, y: Int32Array): Promise<number> => {
    const batch = y.length;
    const xs = input(x, batch);
    const labels = tf.tensor1d(y, "int32");
    const onehot = tf.oneHot(labels, CLASSES);
    const loss = optimizer.minimize(
      () => {
        const ce = tf.losses.softmaxCrossEntropy(onehot, forward(xs, true)) as tf.Scalar;
        return w.name === "lenet" ? tf.add(ce, penalty()) : ce;
      },
      true,
      vars,
    )!;
    // Reading the loss flushes the backend's queue, so the Adam updates
    // enqueued before it have finished too.
    const v = (await loss.data())[0];
    tf.dispose([xs, labels, onehot, loss]);
    return v;
  };

  return {
    name: `tfjs-${backend}`,
    step,

    async predict(x: Float32Array, batch: number): Promise<Float32Array> {
      const probs = tf.tidy(() => tf.softmax(forward(input(x, batch))));
      const out = (await probs.data()) as Float32Array;
      probs.dispose();
      return out;
    },

    /** tf.profile's peakBytes: the most tensor bytes alive at once, all of them counted. */
    async peakBytes(x: Float32Array, y: Int32Array): Promise<number> {
      return (await tf.profile(() => step(x, y).then(() => []))).peakBytes;
    },

    async dispose(): Promise<void> {
      optimizer.dispose();
      tf.dispose(vars);
    },
  };
}
