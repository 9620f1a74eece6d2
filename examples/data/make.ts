// Writes the small data sets of examples/linear_regression.dlm and examples/logistic_regression.dlm:
//   npx tsx examples/data/make.ts
// Seeded, so the committed .csv files are exactly what it writes.

import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rng } from '../../runtime/random.ts';

const here = (name: string) => fileURLToPath(new URL(name, import.meta.url));
const r4 = (v: number) => String(Math.round(v * 1e4) / 1e4);

/** A standard normal draw (Box-Muller). */
const normal = (next: () => number) => Math.sqrt(-2 * Math.log(1 - next())) * Math.cos(2 * Math.PI * next());

function write(name: string, header: string[], rows: number[][]): void {
  writeFileSync(here(name), [header.join(','), ...rows.map((r) => r.map(r4).join(','))].join('\n') + '\n');
}

/** y = 2 x0 - x1 + 0.5 x2 + 0.3 + N(0, 0.1²), x uniform in [-1, 1)³. */
function linear(n: number, seed: number): number[][] {
  const next = rng(seed);
  return Array.from({ length: n }, () => {
    const x = [0, 1, 2].map(() => 2 * next() - 1);
    return [...x, 2 * x[0] - x[1] + 0.5 * x[2] + 0.3 + 0.1 * normal(next)];
  });
}

/** y = 1 when x0 + 0.5 x1 - 0.3 + N(0, 0.3²) > 0, x uniform in [-2, 2)². */
function logistic(n: number, seed: number): number[][] {
  const next = rng(seed);
  return Array.from({ length: n }, () => {
    const x = [4 * next() - 2, 4 * next() - 2];
    return [...x, x[0] + 0.5 * x[1] - 0.3 + 0.3 * normal(next) > 0 ? 1 : 0];
  });
}

write('linear_train.csv', ['x.0', 'x.1', 'x.2', 'y.0'], linear(400, 11));
write('linear_test.csv', ['x.0', 'x.1', 'x.2', 'y.0'], linear(100, 12));
write('logistic_train.csv', ['x.0', 'x.1', 'y.0'], logistic(400, 21));
write('logistic_test.csv', ['x.0', 'x.1', 'y.0'], logistic(100, 22));
