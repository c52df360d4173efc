/**
 * The jobs of builds of several jobs, on the builds table: one item per job, `repo` =
 * `job#<owner>/<name>#<number>` and `number` = the job's index (1-based, plan order), so one query
 * reads a build's jobs in order. Job items carry none of the builds' index attributes: the sweeper
 * finds a stuck job through its build (whose deadline covers its jobs'). Every state change is one
 * conditional UpdateItem, as a build's is.
 */
import { PutCommand, QueryCommand, type DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { BuildKey, BuildRecord, RemoteRunRecord } from '../core/build.js';
import { jobLogPrefix, type JobRecord } from '../core/job-record.js';
import type { JobStore, NewJob, TransitionRequest } from '../core/ports.js';
import {
  JOB_PREFIX,
  claimRemoteFinishItem,
  isConditionFailure,
  recordRemoteRunItem,
  transitionItem,
} from './builds.js';

function partitionOf(build: BuildKey): string {
  return `${JOB_PREFIX}${build.repo}#${build.number}`;
}

/** The record of a job item: its partition key back to the build's repository. */
function toRecord(item: Record<string, unknown>, build: BuildKey): JobRecord {
  const { repo: _partition, number: _index, ...rest } = item;
  return { ...(rest as Omit<JobRecord, 'repo' | 'number'>), repo: build.repo, number: build.number };
}

export class DynamoJobStore implements JobStore {
  constructor(
    private readonly documents: DynamoDBDocumentClient,
    private readonly tableName: string,
    private readonly clock: () => number = Date.now,
  ) {}

  async putJobs(
    build: Pick<BuildRecord, 'repo' | 'number' | 'logPrefix'>,
    jobs: readonly NewJob[],
    options: { deadline: number; at?: number },
  ): Promise<JobRecord[]> {
    const at = options.at ?? this.clock();
    const records = jobs.map((job, position): JobRecord => {
      const { node, ...plan } = job.plan;
      return {
        ...plan,
        repo: build.repo,
        number: build.number,
        index: position + 1,
        ...(node !== undefined ? { nodeSpec: node } : {}),
        ...(job.resolvedNode ? { resolvedNode: job.resolvedNode } : {}),
        failFast: job.failFast,
        ...(job.runsOn !== undefined && job.runsOn !== 'lambda' ? { runsOn: job.runsOn } : {}),
        state: 'queued',
        queuedAt: at,
        deadline: options.deadline,
        logPrefix: jobLogPrefix(build.logPrefix, plan.id),
        events: [{ from: null, to: 'queued', at }],
      };
    });
    await Promise.all(
      records.map(async (record) => {
        try {
          await this.documents.send(
            new PutCommand({
              TableName: this.tableName,
              Item: { ...record, repo: partitionOf(build), number: record.index },
              ConditionExpression: 'attribute_not_exists(#repo)',
              ExpressionAttributeNames: { '#repo': 'repo' },
            }),
          );
        } catch (error) {
          // Recorded already (a retried controller): the first record stands.
          if (!isConditionFailure(error)) throw error;
        }
      }),
    );
    return this.listJobs(build);
  }

  async listJobs(build: BuildKey): Promise<JobRecord[]> {
    const jobs: JobRecord[] = [];
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.documents.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#repo = :partition',
          ExpressionAttributeNames: { '#repo': 'repo' },
          ExpressionAttributeValues: { ':partition': partitionOf(build) },
          ConsistentRead: true,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      jobs.push(...(page.Items ?? []).map((item) => toRecord(item, build)));
      startKey = page.LastEvaluatedKey;
    } while (startKey);
    return jobs;
  }

  async transitionJob(job: JobRecord, request: TransitionRequest): Promise<JobRecord> {
    const item = await transitionItem(this.documents, this.tableName, {
      key: { repo: partitionOf(job), number: job.index },
      label: { repo: job.repo, number: job.number },
      request,
      at: request.at ?? this.clock(),
      current: async () => (await this.listJobs(job)).find((other) => other.index === job.index)?.state,
    });
    return toRecord(item, job);
  }

  async recordJobRemoteRun(job: JobRecord, run: RemoteRunRecord, deadline: number): Promise<JobRecord> {
    const item = await recordRemoteRunItem(this.documents, this.tableName, {
      key: { repo: partitionOf(job), number: job.index },
      label: { repo: job.repo, number: job.number },
      run,
      deadline,
      current: async () => (await this.listJobs(job)).find((other) => other.index === job.index)?.state,
    });
    return toRecord(item, job);
  }

  async claimJobRemoteFinish(job: JobRecord, buildId: string, at: number): Promise<boolean> {
    return claimRemoteFinishItem(
      this.documents,
      this.tableName,
      { repo: partitionOf(job), number: job.index },
      buildId,
      at,
    );
  }
}
