/** Links Lambkin hands out. Stable: a build's link never changes, wherever its log lives. */
import type { BuildKey } from './build.js';

/** The build's page: the API's log route in the cloud, the dev server's log viewer locally. */
export function buildPageUrl(publicUrl: string, key: BuildKey): string {
  const [owner = '', name = ''] = key.repo.split('/');
  return `${publicUrl.replace(/\/+$/, '')}/builds/${encodeURIComponent(owner)}/${encodeURIComponent(name)}/${key.number}`;
}
