// The start of the plain Node scripts that bundle tests run beside a compiled model.js: it imports
// only the bundle and node: built-ins, reads the test's data.json, and reads raw typed arrays the
// test wrote next to it.

export const BUNDLE_SCRIPT_PRELUDE = String.raw`import { readFileSync } from 'node:fs';
import { createModel, DlcInputError } from './model.js';

const here = (f) => new URL(f, import.meta.url);
const meta = JSON.parse(readFileSync(here('data.json'), 'utf8'));
const read = (f, T) => {
  const b = readFileSync(here(f));
  return new T(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
`;
