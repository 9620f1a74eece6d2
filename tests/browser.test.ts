// The web example (examples/web) end to end in headless Chromium: built as a user builds it
// (dlc compile → digits → vite build), served, trained in the page on WebGPU (SwiftShader here),
// and asked about digits drawn with the mouse. Leaves a screenshot in out/web-example.png.

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildExample } from '../examples/web/build.ts';
import { ROOT } from './support/cli.ts';
import { launch, openPage, requireWebGPU, serve } from './support/browser.ts';

/** What the page keeps in window.mnistDemo. */
interface Demo {
  losses: number[];
  evals: { step: number; accuracy: number }[];
  running: boolean;
  pauseAt?: number;
  predictions: number;
}

const STEPS = 120;
const SCREENSHOT = join(ROOT, 'out', 'web-example.png');

describe('examples/web in headless Chromium', () => {
  const dist = mkdtempSync(join(tmpdir(), 'dlc-web-'));
  let browser: Browser;
  let server: Awaited<ReturnType<typeof serve>>;
  let page: Page;
  let log: string[];
  const demo = () => page.evaluate(() => (window as unknown as { mnistDemo: Demo }).mnistDemo);

  beforeAll(async () => {
    await buildExample(dist);
    [server, browser] = await Promise.all([serve(dist), launch()]);
    ({ page, log } = await openPage(browser, server.url));
  }, 120_000);
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    rmSync(dist, { recursive: true, force: true });
  });

  it('loads the bundle and the digits, on WebGPU', async () => {
    await page.waitForSelector('#backend[data-backend]', { timeout: 30_000 }).catch(() => {
      throw new Error(`the page did not load: ${(log.join('\n') || 'no console output')}`);
    });
    const backend = (await page.getAttribute('#backend', 'data-backend'))!;
    requireWebGPU(backend, 'the web example');
    if (backend === 'webgpu') expect(await page.textContent('#backend')).toMatch(/^WebGPU/);
    // Held-out accuracy before any training: chance.
    await page.waitForFunction(() => (window as unknown as { mnistDemo?: Demo }).mnistDemo?.evals.length === 1);
    expect((await demo()).evals[0].accuracy).toBeLessThan(0.3);
  });

  it(`trains ${STEPS} steps in the page: the loss falls and held-out accuracy rises`, async () => {
    // exactly STEPS steps, whenever the page gets to them: the page pauses itself there (the loop
    // stops and evaluates once more), so the trained weights do not depend on a click's timing
    await page.evaluate((n) => ((window as unknown as { mnistDemo: Demo }).mnistDemo.pauseAt = n), STEPS);
    await page.click('#train');
    await page.waitForFunction((n) => (window as unknown as { mnistDemo: Demo }).mnistDemo.evals.at(-1)!.step === n, STEPS, { timeout: 60_000 });
    const { losses, evals } = await demo();
    expect(losses.length).toBe(STEPS);
    expect(losses.every(Number.isFinite)).toBe(true);
    const mean = (a: number[]) => a.reduce((s, v) => s + v, 0) / a.length;
    expect(losses[0]).toBeGreaterThan(2); // about ln 10 at the start
    expect(mean(losses.slice(-10))).toBeLessThan(mean(losses.slice(0, 10)) / 3);
    expect(evals.at(-1)!.accuracy).toBeGreaterThan(0.8);
    expect(await page.textContent('#step')).toBe(String(losses.length));
    expect(await page.textContent('#accuracy')).toMatch(/^\d+\.\d% \(at step \d+\)$/);
  });

  /** Strokes (each a list of points in the 280×280 pad's pixels) drawn with the mouse. */
  async function draw(strokes: [number, number][][]): Promise<string> {
    await page.click('#clear');
    expect(await page.textContent('#digit')).toBe('');
    const pad = (await page.locator('#pad').boundingBox())!;
    const shown = (await demo()).predictions;
    for (const points of strokes) {
      await page.mouse.move(pad.x + points[0][0], pad.y + points[0][1]);
      await page.mouse.down();
      for (const [x, y] of points.slice(1)) await page.mouse.move(pad.x + x, pad.y + y, { steps: 8 });
      await page.mouse.up();
    }
    // each stroke's end asks for a prediction: wait for the last one's (an earlier one, of the
    // digit half drawn, could be showing)
    await page.waitForFunction((n) => (window as unknown as { mnistDemo: Demo }).mnistDemo.predictions === n, shown + strokes.length);
    return (await page.textContent('#digit'))!;
  }
  const ellipse = (cx: number, cy: number, rx: number, ry: number) =>
    Array.from({ length: 25 }, (_, i): [number, number] => [cx + rx * Math.sin((i / 24) * 2 * Math.PI), cy - ry * Math.cos((i / 24) * 2 * Math.PI)]);
  const DIGITS: Record<string, [number, number][][]> = {
    '1': [[[140, 40], [140, 240]]],
    '0': [ellipse(140, 140, 60, 90)],
    '7': [[[70, 50], [210, 50], [120, 240]]],
    '2': [[[80, 90], [110, 50], [170, 50], [200, 90], [190, 140], [80, 240], [210, 240]]],
    '4': [[[160, 40], [80, 170], [210, 170]], [[170, 100], [170, 250]]],
  };

  it('classifies digits drawn with the mouse', async () => {
    for (const [digit, strokes] of Object.entries(DIGITS)) expect(await draw(strokes), `the drawn ${digit}`).toBe(digit);
    expect(await page.locator('#probs .bar').count()).toBe(10);
    // What the model saw: a 28×28 MNIST-like image, white on black, the digit in the middle.
    expect(await draw(DIGITS['1'])).toBe('1');
    const seen = await page.evaluate(() => Array.from(document.querySelector<HTMLCanvasElement>('#small')!.getContext('2d')!.getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0)));
    expect(seen.filter((v) => v > 0).length).toBeGreaterThan(20);
    expect(seen[14 * 28 + 14]).toBeGreaterThan(128);
    for (let i = 0; i < 28; i++) expect([seen[i], seen[27 * 28 + i], seen[i * 28], seen[i * 28 + 27]]).toEqual([0, 0, 0, 0]); // empty edges: MNIST digits sit in a 20×20 box

    expect(await draw(DIGITS['4'])).toBe('4');
    mkdirSync(join(ROOT, 'out'), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(log.filter((l) => /^(error|pageerror)/.test(l))).toEqual([]);
  });

  it('falls back to the CPU in a browser without WebGPU, and trains there', async () => {
    const context = await browser.newContext();
    await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
    const { page: cpu, log: cpuLog } = await openPage(context, server.url);
    await cpu.waitForSelector('#backend[data-backend]', { timeout: 30_000 });
    expect(await cpu.getAttribute('#backend', 'data-backend')).toBe('cpu');
    expect(await cpu.textContent('#backend')).toBe('CPU (this browser has no WebGPU)');
    await cpu.click('#train');
    await cpu.waitForFunction(() => (window as unknown as { mnistDemo: Demo }).mnistDemo.losses.length >= 30, null, { timeout: 60_000 });
    await cpu.click('#train');
    const { losses } = await cpu.evaluate(() => (window as unknown as { mnistDemo: Demo }).mnistDemo);
    expect(losses.slice(-5).reduce((s, v) => s + v, 0) / 5).toBeLessThan(losses[0] / 2);
    expect(cpuLog.filter((l) => /^(error|pageerror)/.test(l))).toEqual([]);
    await context.close();
  });
});
