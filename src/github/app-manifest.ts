/**
 * GitHub's App manifest flow: Lambkin describes the App it needs (a manifest), the person creating
 * it confirms on GitHub with one click, GitHub redirects back with a one-time code, and the code is
 * exchanged for the App's id, private key and webhook secret (`POST /app-manifests/{code}/conversions`,
 * which needs no authentication: the code is the credential, valid for one hour and one use).
 */
import type { GitHubClient } from './client.js';
import { readRequestFailure } from './api-errors.js';
import { LambkinError } from '../core/errors.js';

/** Exactly what Lambkin uses, and nothing more. */
export const LAMBKIN_APP_PERMISSIONS = {
  checks: 'write',
  statuses: 'write',
  contents: 'read',
  pull_requests: 'read',
  metadata: 'read',
} as const;

/**
 * The events Lambkin builds from or re-runs on. GitHub sends `installation` events to every App
 * without a subscription (a manifest may not name them).
 */
export const LAMBKIN_APP_EVENTS = [
  'push',
  'pull_request',
  'check_suite',
  'check_run',
  'merge_group',
] as const;

export interface AppManifestRequest {
  /** The App's name on GitHub (unique across GitHub; at most 34 characters). */
  name: string;
  /** The App's homepage: the stack's public URL. */
  homepageUrl: string;
  /** Where GitHub delivers webhooks: the stack's webhook URL. */
  webhookUrl: string;
  /** Where GitHub sends the person back with the code. */
  redirectUrl: string;
}

export interface AppManifest {
  name: string;
  url: string;
  hook_attributes: { url: string; active: boolean };
  redirect_url: string;
  public: boolean;
  default_permissions: Record<string, string>;
  default_events: string[];
}

export function appManifest(request: AppManifestRequest): AppManifest {
  return {
    name: request.name,
    url: request.homepageUrl,
    hook_attributes: { url: request.webhookUrl, active: true },
    redirect_url: request.redirectUrl,
    // Installable only by its owner: the stack builds its owner's repositories.
    public: false,
    default_permissions: { ...LAMBKIN_APP_PERMISSIONS },
    default_events: [...LAMBKIN_APP_EVENTS],
  };
}

/**
 * The page on GitHub the manifest is posted to (as a form field named `manifest`): the user's own
 * App settings, or an organization's. `webUrl` is GitHub's web address (GitHub Enterprise Server:
 * its host); `state` comes back with the code and ties the redirect to this run.
 */
export function manifestFormUrl(webUrl: string, state: string, org?: string): string {
  const base = webUrl.replace(/\/+$/, '');
  const path = org ? `/organizations/${encodeURIComponent(org)}/settings/apps/new` : '/settings/apps/new';
  return `${base}${path}?state=${encodeURIComponent(state)}`;
}

/** The App GitHub made from the manifest: what the stack needs to act as it. */
export interface AppRegistration {
  appId: number;
  slug: string;
  /** The App's private key (PEM), which signs its JWTs. */
  privateKey: string;
  webhookSecret: string;
  clientId: string;
  htmlUrl: string;
}

/** The code could not be exchanged (expired, used, or GitHub refused). */
export class ManifestConversionError extends LambkinError {
  constructor(message: string) {
    super('MANIFEST_CONVERSION_FAILED', message);
  }
}

export async function convertManifestCode(github: GitHubClient, code: string): Promise<AppRegistration> {
  let data: Record<string, unknown>;
  try {
    const response = await github.request('POST /app-manifests/{code}/conversions', { code });
    data = response.data as unknown as Record<string, unknown>;
  } catch (error) {
    const failure = readRequestFailure(error);
    const detail = failure.status !== undefined ? `${failure.status} ${failure.message}` : failure.message;
    throw new ManifestConversionError(
      `GitHub did not turn the code into an App (${detail}): ` +
        'a code is good for one hour and one use; run `lambkin setup app` again',
    );
  }
  const { id, slug, pem, webhook_secret: webhookSecret, client_id: clientId, html_url: htmlUrl } = data;
  if (typeof id !== 'number' || typeof pem !== 'string' || typeof webhookSecret !== 'string') {
    throw new ManifestConversionError(
      'GitHub answered the conversion without an App id, private key or webhook secret: run `lambkin setup app` again',
    );
  }
  return {
    appId: id,
    slug: typeof slug === 'string' ? slug : String(id),
    privateKey: pem,
    webhookSecret,
    clientId: typeof clientId === 'string' ? clientId : '',
    htmlUrl: typeof htmlUrl === 'string' ? htmlUrl : '',
  };
}
