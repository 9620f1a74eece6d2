// Every .dlm example in docs/*.md and README.md compiles without a diagnostic. A block whose
// first line is `# file: NAME.dlm` is importable by the others; a block without a model must be
// imported by one that has one, so every example is checked all the way to graphs.
import { readFileSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compile } from '../compiler/compile.ts';
import { format } from '../compiler/diagnostics.ts';

const DIR = resolve('tests/virtual/docs');

function blocks(doc: string): { name: string; text: string; line: number }[] {
  const text = readFileSync(doc, 'utf8');
  const out: { name: string; text: string; line: number }[] = [];
  const re = /^```dlm\n([\s\S]*?)^```/gm;
  for (let m; (m = re.exec(text)); ) {
    const line = text.slice(0, m.index).split('\n').length + 1;
    const named = /^# file: (\S+)/.exec(m[1]);
    out.push({ name: resolve(DIR, named ? named[1] : `${doc.replace(/\W/g, '_')}_${line}.dlm`), text: m[1], line });
  }
  return out;
}

const DOCS = readdirSync('docs').filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`);

for (const doc of [...DOCS, 'README.md']) {
  describe(doc, () => {
    const all = blocks(doc);
    const files = new Map(all.map((b) => [b.name, b.text]));
    const read = (p: string) => files.get(p) ?? readFileSync(p, 'utf8');
    const imported = new Set<string>();

    it('has examples', () => expect(all.length).toBeGreaterThan(doc === 'README.md' ? 1 : doc === 'docs/language.md' ? 5 : 0));

    for (const b of all.filter((x) => /^model /m.test(x.text))) {
      it(`the example at line ${b.line} compiles`, () => {
        const r = compile(b.name, read);
        for (const f of r.sources.keys()) imported.add(f);
        expect(r.diagnostics.map((d) => format(d, r.sources)).join('\n')).toBe('');
        expect(r.manifest).toBeDefined();
      });
    }

    it('every example without a model is imported by one that compiles', () => {
      for (const b of all.filter((x) => !/^model /m.test(x.text))) {
        expect(imported.has(b.name), `${doc}:${b.line} is not checked`).toBe(true);
      }
    });
  });
}
