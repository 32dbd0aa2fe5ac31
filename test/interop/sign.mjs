// Signs a prescription with panva/jose as a vendor's software would, with a
// key and certificate chain Nuskha issued.
// usage: node sign.mjs <pkcs8-key.pem> <chain.pem> <payload.json>   prints the compact JWS
// The region between the doc: markers is quoted in docs/prescription-format.md.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { CompactSign, importPKCS8 } from 'jose';

const [keyFile, chainFile, payloadFile] = process.argv.slice(2);
const key = await importPKCS8(readFileSync(keyFile, 'utf8'), 'ES256');
const payload = readFileSync(payloadFile); // the document's JSON, in normal form
// doc:begin panva-sign
const x5c = readFileSync(chainFile, 'utf8') // leaf first, then the intermediate
  .split('-----END CERTIFICATE-----')
  .map((b) => b.replace(/-----BEGIN CERTIFICATE-----|\s/g, ''))
  .filter((b) => b.length > 0); // standard base64, as x5c wants
const leaf = Buffer.from(x5c[0], 'base64');
const thumb = createHash('sha256').update(leaf).digest('base64url');
const sigT = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const jws = await new CompactSign(payload)
  .setProtectedHeader({ alg: 'ES256', typ: 'nuskha-prescription+jws', x5c, 'x5t#S256': thumb, sigT, crit: ['sigT'] })
  .sign(key, { crit: { sigT: true } }); // without it: 'Extension Header Parameter "sigT" is not recognized'
// doc:end
console.log(jws);
