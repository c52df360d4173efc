// Jest loads globalSetup outside its transform pipeline, so the TypeScript is loaded with tsx.
import { tsImport } from 'tsx/esm/api';

export default async function globalSetup() {
  const { startTestServers } = await tsImport('./test-servers.ts', import.meta.url);
  await startTestServers();
}
