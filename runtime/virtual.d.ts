// Modules the bundler makes for each model (compiler/codegen/bundle.ts).
declare module 'dlc:manifest' {
  const manifest: unknown;
  export default manifest;
}
declare module 'dlc:kernels' {
  import type { CpuKernel } from '../compiler/ops/types.ts';
  const kernels: Record<string, CpuKernel | 'alias'>;
  export default kernels;
}
