// Learning curves for `dlc train --curves/--plot`: the per-epoch numbers as JSON, and a chart of
// them drawn by Vega-Lite (rendered headless to SVG by Vega; PNG via resvg).

import type { EpochStats } from '../runtime/train.ts';
import { writeFileAtomic } from './checkpoint.ts';
import { DataError } from './data.ts';

export const CURVES_FORMAT = 'dlc-curves/1';

export interface CurveRun {
  /** The optimizer's name: runs of `--compare` differ by it. */
  label: string;
  optimizer: { name: string; hypers: Record<string, number> };
  epochs: EpochStats[];
}

/** What `--curves FILE.json` holds. */
export interface Curves {
  format: typeof CURVES_FORMAT;
  model: string;
  runs: CurveRun[];
}

export function writeCurves(path: string, curves: Curves): void {
  const runs = curves.runs.map((r) => ({ ...r, epochs: r.epochs.map(({ ms, ...e }) => ({ ...e, ms: Math.round(ms) })) }));
  writeFileAtomic(path, JSON.stringify({ ...curves, runs }, null, 1) + '\n');
}

export function plotKind(path: string): 'svg' | 'png' {
  const ext = /\.(svg|png)$/i.exec(path)?.[1]?.toLowerCase();
  if (ext !== 'svg' && ext !== 'png') throw new DataError(`--plot ${path}: the file must end in .svg or .png`);
  return ext;
}

interface Point {
  panel: string;
  epoch: number;
  value: number | null;
  series: string;
}

/** The Vega-Lite spec: one panel for the loss and one per metric. A single run draws train and
 *  val as two lines; a comparison draws one line per optimizer, of val (train without val). */
export function chartSpec(curves: Curves): Record<string, unknown> {
  const compare = curves.runs.length > 1;
  const first = curves.runs[0]?.epochs[0];
  const panels = first ? Object.keys(first.train).sort((a, b) => (a === 'loss' ? -1 : b === 'loss' ? 1 : a.localeCompare(b))) : ['loss'];
  const hasVal = curves.runs.some((r) => r.epochs.some((e) => e.val));
  const values: Point[] = [];
  const num = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? null : v);
  for (const run of curves.runs) {
    for (const e of run.epochs) {
      for (const panel of panels) {
        if (compare) values.push({ panel, epoch: e.epoch, value: num((hasVal ? e.val : e.train)?.[panel]), series: run.label });
        else {
          values.push({ panel, epoch: e.epoch, value: num(e.train[panel]), series: 'train' });
          if (e.val) values.push({ panel, epoch: e.epoch, value: num(e.val[panel]), series: 'val' });
        }
      }
    }
  }
  const title = compare ? `${curves.model}: ${hasVal ? 'validation' : 'training'} curves by optimizer` : `${curves.model}: learning curves (${curves.runs[0]?.label})`;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title,
    background: 'white',
    data: { values },
    facet: { field: 'panel', type: 'nominal', title: null, sort: panels },
    columns: Math.min(panels.length, 3),
    resolve: { scale: { y: 'independent' } },
    spec: {
      width: 320,
      height: 220,
      mark: { type: 'line', point: { size: 20 }, interpolate: 'linear' },
      encoding: {
        x: { field: 'epoch', type: 'quantitative', title: 'epoch', axis: { tickMinStep: 1, format: 'd' } },
        y: { field: 'value', type: 'quantitative', title: null, scale: { zero: false } },
        color: { field: 'series', type: 'nominal', title: compare ? 'optimizer' : 'split', scale: { domain: compare ? curves.runs.map((r) => r.label) : hasVal ? ['train', 'val'] : ['train'] } },
      },
    },
  };
}

export async function renderSvg(curves: Curves): Promise<string> {
  const [vega, vl] = await Promise.all([import('vega'), import('vega-lite')]);
  const spec = vl.compile(chartSpec(curves) as unknown as Parameters<typeof vl.compile>[0]).spec;
  const view = new vega.View(vega.parse(spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Draws the curves into `path` (.svg, or .png at twice the SVG's size). */
export async function writePlot(path: string, curves: Curves): Promise<void> {
  const kind = plotKind(path);
  const svg = await renderSvg(curves);
  if (kind === 'svg') return writeFileAtomic(path, svg);
  const { Resvg } = await import('@resvg/resvg-js');
  const png = new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 }, font: { loadSystemFonts: true } }).render().asPng();
  writeFileAtomic(path, png);
}
