/** A GitHub App's key pair for tests: the public key for the stand-in, the private key (PEM) for Lambkin. */
import { generateKeyPairSync } from 'node:crypto';

export interface AppKeyPair {
  /** SPKI PEM: what the stand-in checks the App's JWTs with. */
  publicKey: string;
  /** PKCS#1 (as GitHub hands it out) or PKCS#8 PEM. */
  privateKey: string;
}

export function appKeyPair(privateKeyType: 'pkcs1' | 'pkcs8' = 'pkcs1'): AppKeyPair {
  return generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: privateKeyType, format: 'pem' },
  });
}
