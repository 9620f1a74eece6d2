/**
 * dlc itself as a benchmark engine (backends: cpu, webgpu): compiles
 * examples/mnist_mlp.dlm (the same 784-256-128-10 MLP, softmax cross-entropy,
 * Adam 1e-3) and runs it with the runtime's `Model`. Creation = compile +
 * Model.create + loading the shared initial weights, so the first-step latency
 * includes the compiler.
 *
 * dlc's dense weights are [in, out] row-major, the layout of `initParams`.
 */
import { fileURLToPath } from "node:url";

import { compile } from "../compiler/compile.ts";
import { cpuKernels } from "../runtime/cpu_kernels.ts";
import { Model } from "../runtime/model.ts";
import { type Engine, type EngineOptions, initParams } from "./engine.ts";
import { nodeGpuDevice } from "./peers/node_webgpu.ts";

export type DlcBackend = "cpu" | "webgpu";

const MODEL = fileURLToPath(new URL("../examples/mnist_mlp.dlm", import.meta.url));

export async function dlcMlp(
  backend: DlcBackend,
  opts: EngineOptions & { log?: (msg: string) => void } = {},
): Promise<Engine> {
  const t0 = performance.now();
  const { manifest, diagnostics } = compile(MODEL);
  if (!manifest) throw new Error(`compile failed: ${diagnostics.map((d) => d.message).join("; ")}`);
  const compileMs = performance.now() - t0;

  const device = backend === "webgpu" ? await nodeGpuDevice() : undefined;
  const model = await Model.create(manifest, cpuKernels, { backend, device });
  const p = opts.params ?? initParams(0);
  model.setParams({
    "h.dense_0.w": p.w1,
    "h.dense_0.b": p.b1,
    "h.dense_1.w": p.w2,
    "h.dense_1.b": p.b2,
    "logits.w": p.w3,
    "logits.b": p.b3,
  });
  opts.log?.(
    `dlc-${backend}: compile ${compileMs.toFixed(0)} ms, create ${(performance.now() - t0 - compileMs).toFixed(0)} ms` +
      ` (train program: ${manifest.programs.train.nodes.length} nodes)`,
  );

  return {
    name: `dlc-${backend}`,
    async step(x, y) {
      return (await model.trainStep({ x, y })).loss;
    },
    async predict(x) {
      return (await model.predict({ x })).probs.data as Float32Array;
    },
    async dispose() {
      model.dispose();
      device?.destroy();
    },
  };
}
