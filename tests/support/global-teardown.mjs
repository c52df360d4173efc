import { tsImport } from 'tsx/esm/api';

export default async function globalTeardown() {
  const { stopTestServers } = await tsImport('./test-servers.ts', import.meta.url);
  await stopTestServers();
}
