/**
 * SNS: one message per finished build to the topic the settings name. The client of the topic's
 * own region is made on first use (a topic ARN says its region); the stack's role may publish only
 * to the topics named in its NotificationTopicArns parameter (template.yaml).
 */
import { PublishCommand, SNSClient } from '@aws-sdk/client-sns';
import { recordCommands } from '../aws/command-log.js';
import { LambkinError } from '../core/errors.js';
import type { SnsNotification } from './messages.js';

export interface SnsPublisher {
  publish(topicArn: string, notification: SnsNotification, signal: AbortSignal): Promise<void>;
}

const TOPIC_ARN = /^arn:aws[a-z-]*:sns:([a-z0-9-]+):\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$/;

/** The SNS topic ARN is malformed, or publishing failed. */
export class SnsNotifyError extends LambkinError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('SNS_NOTIFY', message, options);
  }
}

export function regionOfTopic(topicArn: string): string {
  const match = TOPIC_ARN.exec(topicArn);
  if (!match?.[1]) {
    throw new SnsNotifyError(
      `notifications.sns.topicArn "${topicArn}" is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)`,
    );
  }
  return match[1];
}

export interface SnsClientOptions {
  /** An SNS-compatible endpoint (tests: moto_server); else AWS_ENDPOINT_URL_SNS or AWS itself. */
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

export class AwsSnsPublisher implements SnsPublisher {
  private readonly clients = new Map<string, SNSClient>();

  constructor(private readonly options: SnsClientOptions = {}) {}

  async publish(topicArn: string, notification: SnsNotification, signal: AbortSignal): Promise<void> {
    const client = this.clientFor(regionOfTopic(topicArn));
    try {
      await client.send(
        new PublishCommand({
          TopicArn: topicArn,
          Subject: notification.subject,
          Message: notification.message,
          MessageAttributes: Object.fromEntries(
            Object.entries(notification.attributes).map(([name, value]) => [
              name,
              { DataType: 'String', StringValue: value },
            ]),
          ),
        }),
        { abortSignal: signal },
      );
    } catch (error) {
      const name = (error as Error).name;
      const hint =
        name === 'AuthorizationErrorException' || name === 'AccessDeniedException' || name === 'AccessDenied'
          ? ': add the topic to the stack parameter NotificationTopicArns and deploy again'
          : name === 'NotFoundException' || name === 'NotFound'
            ? ': the topic does not exist; check notifications.sns.topicArn'
            : '';
      throw new SnsNotifyError(
        `Could not publish to ${topicArn} (${name}: ${(error as Error).message})${hint}`,
        {
          cause: error,
        },
      );
    }
  }

  private clientFor(region: string): SNSClient {
    let client = this.clients.get(region);
    if (!client) {
      client = recordCommands(
        new SNSClient({
          region,
          maxAttempts: 3,
          ...(this.options.endpoint ? { endpoint: this.options.endpoint } : {}),
          ...(this.options.credentials ? { credentials: this.options.credentials } : {}),
        }),
      );
      this.clients.set(region, client);
    }
    return client;
  }
}
