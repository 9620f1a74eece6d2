// Browser tests: Debian's headless Chromium through playwright-core, with WebGPU on SwiftShader
// when there is no GPU, and a static file server for built pages.

import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** Headless Chromium with WebGPU. `--enable-unsafe-webgpu` alone gives an adapter on Linux
 *  (Chromium ≥ 120); the others pin it to Vulkan on SwiftShader, Chromium's own software driver,
 *  so a machine without a GPU (CI) still gets one. Playwright adds --no-sandbox (we run as root). */
export const CHROMIUM_ARGS = ['--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader'];

export async function launch(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A page that fails the test on an uncaught error, and keeps its console for error messages. */
export async function openPage(browser: Browser | BrowserContext, url: string): Promise<{ page: Page; log: string[] }> {
  const page = await browser.newPage();
  const log: string[] = [];
  page.on('console', (m) => log.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => log.push(`pageerror: ${e.message}`));
  await page.goto(url);
  return { page, log };
}

/** In CI a page must train on WebGPU: falling back to the CPU there would hide a broken WebGPU
 *  path. Elsewhere the CPU path is allowed, and said. */
export function requireWebGPU(backend: string, what: string): void {
  if (backend === 'webgpu') return;
  if (process.env.CI === 'true') throw new Error(`${what} ran on '${backend}', not WebGPU: headless Chromium got no WebGPU adapter (flags: ${CHROMIUM_ARGS.join(' ')})`);
  console.warn(`${what}: no WebGPU adapter in headless Chromium, so this ran on the CPU path (in CI this fails)`);
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.wasm': 'application/wasm',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
};

/** Serves the files under `dir` on 127.0.0.1 (a secure context, as WebGPU needs). */
export async function serve(dir: string): Promise<{ url: string; close: () => Promise<void> }> {
  const root = resolve(dir) + sep;
  const server = createServer((req, res) => {
    const path = join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    const file = path.endsWith(sep) ? join(path, 'index.html') : path;
    if (!file.startsWith(root) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/`, close: () => new Promise((done) => server.close(() => done())) };
}
