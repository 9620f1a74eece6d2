// The web example: trains the compiled MNIST bundle in the page (WebGPU, or the CPU where the
// browser has no adapter), draws its loss curve as it goes, and classifies digits drawn by hand.
// The bundle in ./model/ and the digits in public/mnist.bin are made by build.ts.

import { createModel } from './model/model.js';

const BATCH = 64;
const EVAL_EVERY = 50;
const $ = (id) => document.getElementById(id);

/** mnist.bin (see build.ts): counts, u8 labels, u8 pixels; pixels back to [0, 1] as the CLI trains. */
async function loadDigits() {
  const res = await fetch(new URL('mnist.bin', document.baseURI));
  if (!res.ok) throw new Error(`mnist.bin: HTTP ${res.status} (run build.ts first)`);
  const buf = await res.arrayBuffer();
  const head = new DataView(buf);
  const train = head.getUint32(0, true), test = head.getUint32(4, true), n = train + test;
  const labels = Int32Array.from(new Uint8Array(buf, 8, n));
  const pixels = new Uint8Array(buf, 8 + n, n * 784);
  const images = Float32Array.from(pixels, (v) => v / 255);
  return {
    train: { size: train, x: images.subarray(0, train * 784), y: labels.subarray(0, train) },
    test: { size: test, x: images.subarray(train * 784), y: labels.subarray(train) },
  };
}

/** A seeded shuffle (mulberry32 + Fisher-Yates): the same batches on every run. */
function shuffled(n, seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [p[i], p[j]] = [p[j], p[i]];
  }
  return p;
}

/** The drawing as MNIST prepares its digits: the bounding box scaled to fit 20×20 (aspect kept,
 *  area-averaged, so strokes get MNIST's soft edges), placed in 28×28 with its center of mass at
 *  the center; white on black, in [0, 1]. Null when nothing is drawn. */
function toMnist(pad) {
  const { width: W, height: H } = pad;
  const rgba = pad.getContext('2d').getImageData(0, 0, W, H).data;
  let x0 = W, y0 = H, x1 = -1, y1 = -1;
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      if (rgba[(y * W + x) * 4] > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
  if (x1 < 0) return null;
  const side = Math.max(x1 - x0 + 1, y1 - y0 + 1, 20);
  const ox = x0 - (side - (x1 - x0 + 1)) / 2, oy = y0 - (side - (y1 - y0 + 1)) / 2;
  const box = new Float32Array(400);
  for (let y = y0; y <= y1; y++)
    for (let x = x0; x <= x1; x++) {
      const u = Math.min(19, Math.floor(((x + 0.5 - ox) * 20) / side));
      const v = Math.min(19, Math.floor(((y + 0.5 - oy) * 20) / side));
      box[v * 20 + u] += rgba[(y * W + x) * 4] / 255;
    }
  const area = (side / 20) ** 2;
  let mass = 0, mx = 0, my = 0;
  for (let i = 0; i < 400; i++) {
    box[i] = Math.min(1, box[i] / area);
    mass += box[i]; mx += box[i] * ((i % 20) + 0.5); my += box[i] * (Math.floor(i / 20) + 0.5);
  }
  const dx = Math.round(14 - mx / mass), dy = Math.round(14 - my / mass);
  const out = new Float32Array(784);
  for (let i = 0; i < 400; i++) {
    const u = (i % 20) + dx, v = Math.floor(i / 20) + dy;
    if (u >= 0 && u < 28 && v >= 0 && v < 28) out[v * 28 + u] = box[i];
  }
  return out;
}

/** The loss per step, its moving average, and held-out accuracy on a second axis. */
function drawCurve(canvas, losses, smooth, evals) {
  const g = canvas.getContext('2d');
  const { width: W, height: H } = canvas;
  const L = 44, R = 44, T = 12, B = 30;
  const steps = Math.max(100, Math.ceil(losses.length / 100) * 100);
  const top = Math.max(0.5, Math.ceil(Math.max(...losses.slice(0, 20), 0) * 2) / 2);
  const px = (s) => L + (s / steps) * (W - L - R);
  const py = (v) => T + (1 - Math.min(v, top) / top) * (H - T - B);
  g.clearRect(0, 0, W, H);
  g.font = '11px system-ui, sans-serif';
  g.strokeStyle = '#eee';
  g.fillStyle = '#666';
  g.lineWidth = 1;
  for (let k = 0; k <= 5; k++) {
    const y = py((top * k) / 5);
    g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
    g.textAlign = 'right'; g.fillText(((top * k) / 5).toFixed(1), L - 4, y + 4);
    g.textAlign = 'left'; g.fillText(`${20 * k}%`, W - R + 4, y + 4);
  }
  g.textAlign = 'center';
  for (let k = 0; k <= 4; k++) g.fillText(String(Math.round((steps * k) / 4)), px((steps * k) / 4), H - B + 14);
  g.fillText('step', (L + W - R) / 2, H - 2);
  const line = (values, color, width, x = (i) => px(i + 1), y = py) => {
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    values.forEach((v, i) => (i ? g.lineTo(x(i), y(v)) : g.moveTo(x(i), y(v))));
    g.stroke();
  };
  line(losses, '#bbb', 1);
  line(smooth, '#2b6cb0', 2);
  const acc = (a) => T + (1 - a) * (H - T - B);
  line(evals.map((e) => e.accuracy), '#dd6b20', 2, (i) => px(evals[i].step), acc);
  g.fillStyle = '#dd6b20';
  for (const e of evals) g.fillRect(px(e.step) - 2, acc(e.accuracy) - 2, 4, 4);
}

function showPrediction(probs) {
  let best = 0;
  for (let k = 1; k < 10; k++) if (probs[k] > probs[best]) best = k;
  $('digit').textContent = String(best);
  $('probs').innerHTML = Array.from(probs, (p, k) => `<div class="bar"><span>${k}</span><i style="width:${Math.round(p * 120)}px"></i><span>${(p * 100).toFixed(1)}%</span></div>`).join('');
}

async function main() {
  const backend = new URLSearchParams(location.search).get('backend') ?? 'auto';
  const [data, model] = await Promise.all([loadDigits(), createModel({ backend })]);
  if (model.backend === 'webgpu') {
    const info = (await navigator.gpu.requestAdapter())?.info;
    $('backend').textContent = `WebGPU${info?.architecture ? ` (${info.vendor} ${info.architecture})` : ''}`;
  } else {
    $('backend').textContent = `CPU (${!navigator.gpu ? 'this browser has no WebGPU' : backend === 'cpu' ? 'asked for' : 'no WebGPU adapter'})`;
  }
  $('backend').dataset.backend = model.backend;

  // One model call at a time: drawing may ask for a prediction in the middle of a training step.
  let queue = Promise.resolve();
  const exclusive = (fn) => {
    const run = queue.then(fn);
    queue = run.catch(() => {}); // a failed call is reported by its caller, and does not block the rest
    return run;
  };

  // smooth: an exponential moving average of the loss, debiased so it starts at the first losses;
  // pauseAt: a step count at which training pauses by itself (the browser test sets it, so that
  // what it checks does not depend on when its click lands); predictions: how many of the pad's
  // predictions have been shown (one per stroke: the test waits for its last stroke's).
  const state = { losses: [], smooth: [], evals: [], running: false, pauseAt: undefined, predictions: 0 };
  let ema = 0;
  // Handy in the console; the browser test reads it too.
  window.mnistDemo = state;
  const render = () => {
    $('step').textContent = String(model.step);
    const last = state.smooth.at(-1);
    if (last !== undefined) $('loss').textContent = last.toFixed(3);
    const ev = state.evals.at(-1);
    if (ev) $('accuracy').textContent = `${(ev.accuracy * 100).toFixed(1)}% (at step ${ev.step})`;
    drawCurve($('curve'), state.losses, state.smooth, state.evals);
  };
  const evaluate = () =>
    exclusive(async () => {
      const { accuracy } = await model.evaluate({ x: data.test.x, y: data.test.y });
      state.evals.push({ step: model.step, accuracy });
    });

  const pad = $('pad'), pen = pad.getContext('2d');
  const clear = () => {
    pen.fillStyle = '#000';
    pen.fillRect(0, 0, pad.width, pad.height);
    $('small').getContext('2d').clearRect(0, 0, 28, 28);
    $('digit').textContent = '';
    $('probs').textContent = '';
  };
  const predict = async () => {
    const x = toMnist(pad);
    if (!x) return;
    const img = new ImageData(28, 28);
    x.forEach((v, i) => img.data.set([v * 255, v * 255, v * 255, 255], i * 4));
    $('small').getContext('2d').putImageData(img, 0, 0);
    const { probs } = await exclusive(() => model.predict({ x }));
    showPrediction(probs.data);
    state.predictions++;
  };
  clear();
  // A pen about as wide, relative to the digit, as MNIST's strokes.
  let last = null;
  const penTo = (e) => {
    Object.assign(pen, { strokeStyle: '#fff', lineWidth: 22, lineCap: 'round' });
    pen.beginPath();
    pen.moveTo(...(last ?? [e.offsetX, e.offsetY]));
    pen.lineTo(e.offsetX, e.offsetY);
    pen.stroke();
    last = [e.offsetX, e.offsetY];
  };
  pad.addEventListener('pointerdown', (e) => {
    pad.setPointerCapture(e.pointerId);
    penTo(e);
  });
  pad.addEventListener('pointermove', (e) => last && penTo(e));
  pad.addEventListener('pointerup', () => {
    last = null;
    predict().catch(fail);
  });
  $('clear').addEventListener('click', clear);

  await evaluate(); // chance level before training
  render();

  const xb = new Float32Array(BATCH * 784), yb = new Int32Array(BATCH);
  let order = shuffled(data.train.size, 1), cursor = 0, epoch = 0;
  let looping = false;
  async function train() {
    looping = true;
    const t0 = performance.now(), s0 = model.step;
    while (state.running) {
      if (cursor + BATCH > data.train.size) {
        order = shuffled(data.train.size, 2 + epoch++);
        cursor = 0;
      }
      for (let i = 0; i < BATCH; i++, cursor++) {
        const k = order[cursor];
        xb.set(data.train.x.subarray(k * 784, (k + 1) * 784), i * 784);
        yb[i] = data.train.y[k];
      }
      const { loss } = await exclusive(() => model.trainStep({ x: xb, y: yb }));
      state.losses.push(loss);
      ema = 0.9 * ema + 0.1 * loss;
      state.smooth.push(ema / (1 - 0.9 ** state.losses.length));
      if (state.losses.length === state.pauseAt) setRunning(false);
      if (model.step % EVAL_EVERY === 0) {
        await evaluate();
        await predict(); // the drawn digit's prediction follows the training
      }
      $('speed').textContent = `${((performance.now() - t0) / (model.step - s0)).toFixed(0)} ms/step`;
      render();
      // A macrotask between steps, so the curve repaints and clicks get through on the CPU too.
      await new Promise((r) => setTimeout(r));
    }
    await evaluate();
    render();
    looping = false;
    if (state.running) await train(); // Train was clicked again during that last evaluation
  }
  $('train').disabled = false;
  function setRunning(on) {
    state.running = on;
    $('train').textContent = on ? 'Pause' : 'Train';
  }
  $('train').addEventListener('click', () => {
    setRunning(!state.running);
    if (state.running && !looping) train().catch(fail);
  });
}

function fail(e) {
  $('error').textContent = String(e?.message ?? e);
  if (!$('backend').dataset.backend) $('backend').textContent = 'failed';
}

main().catch(fail);
