// Verifies a Nuskha signed prescription with panva/jose, knowing nothing of
// Nuskha but the format: compact JWS, ES256/ES384/PS256, the signer's
// certificate first in x5c, sigT listed in crit.
// usage: node verify.mjs <jws-file>   prints the payload's id
import { readFileSync } from 'node:fs';
import { compactVerify, decodeProtectedHeader, importX509 } from 'jose';

const token = readFileSync(process.argv[2], 'utf8').trim();
const header = decodeProtectedHeader(token);
const pem = `-----BEGIN CERTIFICATE-----\n${header.x5c[0].match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----`;
const key = await importX509(pem, header.alg);
const { payload, protectedHeader } = await compactVerify(token, key, {
  algorithms: ['ES256', 'ES384', 'PS256'],
  crit: { sigT: true },
});
if (protectedHeader.typ !== 'nuskha-prescription+jws') throw new Error(`typ ${protectedHeader.typ}`);
const doc = JSON.parse(new TextDecoder().decode(payload));
console.log(doc.id);
