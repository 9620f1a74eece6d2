declare module 'dlc:manifest' {
  const manifest: unknown;
  export default manifest;
}
