#!/usr/bin/env node
// The dlc command: runs the TypeScript CLI through tsx's loader.
import { register } from 'tsx/esm/api';

// binaryen (14 MB of JavaScript, which generates the CPU path's wasm kernels) loads in ~0.4 s
// natively but takes seconds through tsx's loader; the commands that make wasm kernels (a bundle's,
// or a CPU model's) load it first, and later imports reuse the loaded module.
if (['compile', 'train', 'export'].includes(process.argv[2])) await import('binaryen');
register();
await import('../cli/main.ts');
