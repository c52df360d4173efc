import { request as httpRequest } from 'node:http';

/**
 * A chunked body (no content-length) written until the server answers or the body is all sent.
 * Resolves with the status and how many bytes the client got to write.
 */
export function postChunked(url: string, totalBytes: number): Promise<{ status: number; written: number }> {
  return new Promise((resolve, reject) => {
    const chunk = Buffer.alloc(64 * 1024, 'x');
    let written = 0;
    let answered = false;
    const request = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } });
    request.on('response', (response) => {
      answered = true;
      response.resume();
      response.on('end', () => {
        request.destroy();
        resolve({ status: response.statusCode ?? 0, written });
      });
    });
    request.on('error', (error) => {
      if (!answered) reject(error);
    });
    const pump = (): void => {
      while (!answered && written < totalBytes) {
        written += chunk.length;
        if (!request.write(chunk)) {
          request.once('drain', pump);
          return;
        }
      }
      if (!answered) request.end();
    };
    pump();
  });
}
