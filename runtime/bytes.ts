// Reading a file the runtime needs (trained weights, the wasm kernels) from where a page or a
// Node program finds it: fetched, or from disk for file: URLs and (in Node) plain paths.

/** Whether the runtime runs in Node (not a browser, even one with a `process` object). */
export const inNode = !!(globalThis as { process?: { versions?: { node?: string } } }).process?.versions?.node;

export async function readBytes(where: string | URL): Promise<Uint8Array<ArrayBuffer>> {
  const s = String(where);
  if (s.startsWith('file:') || (inNode && !/^[a-z][a-z0-9+.-]*:/i.test(s))) {
    // A variable specifier: bundlers for the browser leave it alone, and model.js imports nothing.
    const fs = 'node:fs/promises';
    const { readFile } = (await import(/* @vite-ignore */ fs)) as typeof import('node:fs/promises');
    return new Uint8Array(await readFile(s.startsWith('file:') ? new URL(s) : s));
  }
  const r = await fetch(s);
  if (!r.ok) throw new Error(`${s}: HTTP ${r.status} ${r.statusText}`);
  return new Uint8Array(await r.arrayBuffer());
}
