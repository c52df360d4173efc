/**
 * Small text helpers: the code Lambkin's demo builds and tests. No dependencies, so `npm ci`
 * needs no network.
 */

/**
 * Turns a title into a URL slug: lower case, accents dropped, runs of anything other than
 * letters and digits become one hyphen, no hyphen at either end.
 *
 * @param {string} text
 * @returns {string}
 */
export function slugify(text) {
  return text
    .normalize('NFKD')
    .replace(/\p{Mark}/gu, '')
    .toLowerCase()
    .replace(/[^\p{Letter}\p{Number}]+/gu, '-')
    .replace(/^-+|-+$/g, '');
}

/**
 * Counts the words of a text: runs of letters and digits, with apostrophes and hyphens inside a
 * word (`don't`, `well-known`) kept as part of it.
 *
 * @param {string} text
 * @returns {number}
 */
export function wordCount(text) {
  return text.match(/[\p{Letter}\p{Number}]+(?:['’-][\p{Letter}\p{Number}]+)*/gu)?.length ?? 0;
}

/**
 * Shortens a text to at most `limit` characters, cutting at a word boundary where there is one
 * and marking the cut with an ellipsis.
 *
 * @param {string} text
 * @param {number} limit at least 1
 * @returns {string}
 */
export function truncate(text, limit) {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`limit must be a whole number of at least 1, not ${limit}`);
  }
  const characters = [...text];
  if (characters.length <= limit) return text;
  const kept = characters.slice(0, limit - 1).join('');
  const lastSpace = kept.lastIndexOf(' ');
  return `${(lastSpace > 0 ? kept.slice(0, lastSpace) : kept).trimEnd()}…`;
}
