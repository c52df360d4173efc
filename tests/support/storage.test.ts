import { GetObjectCommand, PutObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { DescribeTableCommand } from '@aws-sdk/client-dynamodb';
import { createTestStorage, storageBackends } from './storage.js';

describe.each(storageBackends())('test storage on $name', (backend) => {
  it('makes tables with the build indexes and a bucket that stores objects', async () => {
    const storage = await createTestStorage(backend);
    const table = await storage.clients.dynamodb.send(
      new DescribeTableCommand({ TableName: storage.buildsTable }),
    );
    expect(table.Table?.GlobalSecondaryIndexes?.map((index) => index.IndexName).sort()).toEqual([
      'byDeadline',
      'bySha',
      'byTarget',
    ]);
    await storage.clients.s3.send(
      new PutObjectCommand({
        Bucket: storage.bucket,
        Key: 'a/b.txt',
        Body: 'hello',
        ContentType: 'text/plain',
      }),
    );
    const object = await storage.clients.s3.send(
      new GetObjectCommand({ Bucket: storage.bucket, Key: 'a/b.txt' }),
    );
    expect(await object.Body?.transformToString()).toBe('hello');
    const listing = await storage.clients.s3.send(
      new ListObjectsV2Command({ Bucket: storage.bucket, Prefix: 'a/', MaxKeys: 1 }),
    );
    expect(listing.Contents?.map((entry) => entry.Key)).toEqual(['a/b.txt']);
  });
});
