// Signs a prescription with panva/jose as a vendor's software would, with a
// key and certificate chain Nuskha issued.
// usage: node sign.mjs <pkcs8-key.pem> <chain.pem> <payload.json>   prints the compact JWS
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CompactSign, importPKCS8 } from 'jose';

const [keyFile, chainFile, payloadFile] = process.argv.slice(2);
const key = await importPKCS8(readFileSync(keyFile, 'utf8'), 'ES256');
const x5c = readFileSync(chainFile, 'utf8')
  .split('-----END CERTIFICATE-----')
  .map((b) => b.replace(/-----BEGIN CERTIFICATE-----|\s/g, ''))
  .filter((b) => b.length > 0);
const leaf = Buffer.from(x5c[0], 'base64');
const thumb = createHash('sha256').update(leaf).digest('base64url');
const sigT = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const jws = await new CompactSign(readFileSync(payloadFile))
  .setProtectedHeader({ alg: 'ES256', typ: 'nuskha-prescription+jws', x5c, 'x5t#S256': thumb, sigT, crit: ['sigT'] })
  .sign(key, { crit: { sigT: true } });
console.log(jws);
