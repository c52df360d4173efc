/**
 * How CodeBuild's state-change events write times: `Sep 1, 2017 4:12:29 PM`, in UTC. Read by the
 * events handler (Date.parse would read that text in the machine's own zone), written by the local
 * CodeBuild endpoint.
 */
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const EVENT_TIME = /^([A-Z][a-z]{2}) (\d{1,2}), (\d{4}) (\d{1,2}):(\d{2}):(\d{2}) (AM|PM)$/;

/** Epoch ms of an event's time (ISO 8601 and epoch ms are taken too); undefined when unreadable. */
export function parseCodeBuildEventTime(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value !== 'string') return undefined;
  const match = EVENT_TIME.exec(value.trim());
  if (match) {
    const [, month, day, year, hour, minute, second, half] = match;
    const monthIndex = MONTHS.indexOf(month ?? '');
    if (monthIndex < 0) return undefined;
    const hours = (Number(hour) % 12) + (half === 'PM' ? 12 : 0);
    return Date.UTC(Number(year), monthIndex, Number(day), hours, Number(minute), Number(second));
  }
  if (!/^\d{4}-\d{2}-\d{2}T/.test(value)) return undefined;
  const parsed = Date.parse(value);
  return Number.isNaN(parsed) ? undefined : parsed;
}

/** An event's time for epoch ms. */
export function formatCodeBuildEventTime(epochMs: number): string {
  const date = new Date(epochMs);
  const hours = date.getUTCHours();
  const pad = (n: number): string => String(n).padStart(2, '0');
  return (
    `${MONTHS[date.getUTCMonth()] ?? ''} ${date.getUTCDate()}, ${date.getUTCFullYear()} ` +
    `${hours % 12 === 0 ? 12 : hours % 12}:${pad(date.getUTCMinutes())}:${pad(date.getUTCSeconds())} ` +
    (hours < 12 ? 'AM' : 'PM')
  );
}
