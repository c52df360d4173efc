/**
 * `<data-dir>/stack.json`: where a running `lambkin dev` says how to reach it. The local stack writes
 * it; the CLI's `--local` reads it (src/cli/stack.ts checks what it reads).
 */
export const STACK_FILE_NAME = 'stack.json';
export const STACK_FILE_VERSION = 1;

export interface StackFile {
  version: typeof STACK_FILE_VERSION;
  /** The `lambkin dev` process; the file is stale once it is gone. */
  pid: number;
  endpoints: { webhook: string; dynamodb: string; s3: string; lambda: string; logs: string };
  tables: { builds: string; settings: string };
  bucket: string;
  builderFunction: string;
  publicUrl: string;
  region: string;
  /**
   * The stack's own key: every request to its storage servers and Invoke API must be signed with it
   * (src/local/stack-credentials.ts). Hence the file's mode 0600.
   */
  credentials: { accessKeyId: string; secretAccessKey: string };
}
