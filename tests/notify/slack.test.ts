/** The Slack client against the loopback Slack stand-in: posts, updates, rate limits and outages. */
import { SlackClient, SlackError, type SlackMessage } from '../../src/notify/slack.js';
import { startSlackServer, type SlackStandIn } from '../support/slack-server.js';

let slack: SlackStandIn;
const message: SlackMessage = { text: 'hello', attachments: [{ color: '#2eb886', text: 'body' }] };

beforeAll(async () => {
  slack = await startSlackServer();
});
afterAll(() => slack.close());
beforeEach(() => slack.reset());

const client = (options: ConstructorParameters<typeof SlackClient>[0] = {}) =>
  new SlackClient({ apiUrl: slack.apiUrl, baseDelayMs: 20, ...options });

describe('Slack client', () => {
  it('posts with a bot token and updates the same message in place', async () => {
    const ref = await client().postMessage(slack.token, '#builds', message, Date.now() + 5000);
    expect(ref).toEqual({ channel: '#builds', ts: expect.stringMatching(/^\d+\.\d{6}$/) });
    await client().updateMessage(slack.token, ref, { ...message, text: 'updated' }, Date.now() + 5000);
    expect(slack.messages).toHaveLength(1);
    expect(slack.messages[0]).toMatchObject({ updates: 1, body: { text: 'updated', ts: ref.ts } });
    expect(slack.requests.map((request) => request.authorization)).toEqual([
      `Bearer ${slack.token}`,
      `Bearer ${slack.token}`,
    ]);
  });

  it('posts to an incoming webhook', async () => {
    await client().postToWebhook(slack.webhookUrl, message, Date.now() + 5000);
    expect(slack.messages).toEqual([expect.objectContaining({ channel: 'webhook', body: message })]);
  });

  it('honours Retry-After on 429 and then succeeds', async () => {
    slack.failNext({ status: 429, retryAfterSeconds: 1 });
    const started = Date.now();
    await client().postToWebhook(slack.webhookUrl, message, Date.now() + 5000);
    expect(slack.requests.map((request) => request.answer)).toEqual(['429', 'ok']);
    const [first, second] = slack.requests;
    expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThanOrEqual(950);
    // Did not hang: ten times the Retry-After (the order and the count above carry the meaning).
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('gives up at once when Retry-After is past the deadline', async () => {
    slack.failNext({ status: 429, retryAfterSeconds: 30 });
    const started = Date.now();
    const error = await client()
      .postMessage(slack.token, '#builds', message, Date.now() + 20_000)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SlackError);
    expect((error as SlackError).message).toMatch(/retry after 30 s, past the time notifications may take/);
    expect(slack.requests).toHaveLength(1);
    // At once: it waited neither for the Retry-After (30 s) nor until its deadline (20 s).
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it.each([
    ['500', { status: 500 as const }],
    ['a closed socket', { close: true as const }],
  ])('retries %s, then fails within the deadline', async (_name, failure) => {
    slack.failAlways(failure);
    const started = Date.now();
    const error = await client({ maxAttempts: 10 })
      .postMessage(slack.token, '#builds', message, Date.now() + 1500)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SlackError);
    expect(slack.requests.length).toBeGreaterThan(1);
    // The deadline ended it (the next backoff would pass it, or a late timer already had), before
    // the 10 attempts, whose backoffs alone add up to 10 s, ran out.
    expect((error as SlackError).message).toMatch(
      /past the time notifications may take: given up|given up after 10 attempts or the time limit/,
    );
    expect(slack.requests.length).toBeLessThan(10);
    expect(Date.now() - started).toBeLessThan(10 * 1500);
  });

  it('does not retry what Slack refuses for good, and says what to check', async () => {
    const error = await client()
      .postMessage('xoxb-wrong', '#builds', message, Date.now() + 5000)
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(SlackError);
    expect((error as SlackError).slackError).toBe('invalid_auth');
    expect((error as SlackError).message).toMatch(/notifications\.slack\.token/);
    expect(slack.requests).toHaveLength(1);
  });
});
