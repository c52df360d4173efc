/** HTML helpers every page uses: text and links from builds (strangers' branch names, commit messages) are escaped here. */

const HTML_ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text for an HTML text node or a quoted attribute value. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char] ?? char);
}

/**
 * Only web links and relative ones: a `javascript:` or `data:` URL must never become a link. URL
 * parsers ignore tabs and newlines inside a scheme (`java\tscript:`), so any whitespace or control
 * character disqualifies the URL, and whatever precedes the first `:` counts as its scheme.
 */
export function safeUrl(url: string | undefined): string | undefined {
  if (!url || /[\s\p{Cc}]/u.test(url)) return undefined;
  const scheme = /^([^:/?#]*):/.exec(url);
  if (!scheme) return url;
  return /^https?$/i.test(scheme[1] ?? '') ? url : undefined;
}
