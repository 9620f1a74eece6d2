/**
 * TensorFlow.js peer for the MNIST MLP benchmark (backends: cpu, wasm, webgpu).
 *
 * Idiomatic tfjs: tf.variable parameters, tf.train.adam (bias-corrected Adam),
 * optimizer.minimize() over tf.losses.softmaxCrossEntropy (mean over batch).
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


import { type Engine, type EngineOptions, MLP, initParams } from "../engine.ts";
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

export async function tfjsMlp(backend: TfjsBackend, opts: EngineOptions = {}): Promise<Engine> {
  if (backend === "wasm") await loadWasm();
  if (backend === "webgpu") await loadWebGPU();
  if (!tf.findBackendFactory(backend)) throw new Error(`tfjs backend '${backend}' is not registered`);
  const ok = await tf.setBackend(backend);
  if (!ok || tf.getBackend() !== backend) throw new Error(`tf.setBackend('${backend}') failed`);
  await tf.ready();

  const p = opts.params ?? initParams(0);
  const [d0, d1, d2, d3] = MLP.sizes;
  // tidy() frees the initial-value tensors; variables survive it.
  const vars = tf.tidy(() => [
    tf.variable(tf.tensor2d(p.w1, [d0, d1]), true, "w1"),
    tf.variable(tf.tensor1d(p.b1), true, "b1"),
    tf.variable(tf.tensor2d(p.w2, [d1, d2]), true, "w2"),
    tf.variable(tf.tensor1d(p.b2), true, "b2"),
    tf.variable(tf.tensor2d(p.w3, [d2, d3]), true, "w3"),
    tf.variable(tf.tensor1d(p.b3), true, "b3"),
  ]);
  const [w1, b1, w2, b2, w3, b3] = vars;
  const optimizer = tf.train.adam(MLP.lr, MLP.beta1, MLP.beta2, MLP.eps);

  const forward = (x: tf.Tensor2D): tf.Tensor2D => {
    const h1 = tf.relu(tf.add(tf.matMul(x, w1), b1));
    const h2 = tf.relu(tf.add(tf.matMul(h1, w2), b2));
    return tf.add(tf.matMul(h2, w3), b3) as tf.Tensor2D;
  };

  return {
    name: `tfjs-${backend}`,

    async step(x: Float32Array, y: Int32Array): Promise<number> {
      const batch = y.length;
      const xs = tf.tensor2d(x, [batch, d0]);
      const labels = tf.tensor1d(y, "int32");
      const onehot = tf.oneHot(labels, d3);
      const loss = optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(onehot, forward(xs)) as tf.Scalar,
        true,
        vars,
      )!;
      // Reading the loss flushes the backend's queue, so the Adam updates
      // enqueued before it have finished too.
      const v = (await loss.data())[0];
      tf.dispose([xs, labels, onehot, loss]);
      return v;
    },

    async predict(x: Float32Array, batch: number): Promise<Float32Array> {
      const probs = tf.tidy(() => tf.softmax(forward(tf.tensor2d(x, [batch, d0]))));
      const out = (await probs.data()) as Float32Array;
      probs.dispose();
      return out;
    },

    async dispose(): Promise<void> {
      optimizer.dispose();
      tf.dispose(vars);
    },
  };
}
