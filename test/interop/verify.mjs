// Verifies a Nuskha signed prescription with panva/jose, knowing nothing of
// Nuskha but the format: compact JWS, ES256/ES384/PS256, the signer's
// certificate first in x5c, sigT listed in crit.
// usage: node verify.mjs <jws-file> <root.pem>   prints the payload's id
// The region between the doc: markers is quoted in docs/prescription-format.md.
import { readFileSync } from 'node:fs';
import { createHash, X509Certificate } from 'node:crypto';
import { compactVerify, decodeProtectedHeader, importX509 } from 'jose';

const token = readFileSync(process.argv[2], 'utf8').trim();
const root = new X509Certificate(readFileSync(process.argv[3]));
// doc:begin panva-verify
const header = decodeProtectedHeader(token);
const [leaf, intermediate] = header.x5c.map((b) => new X509Certificate(Buffer.from(b, 'base64')));
const key = await importX509(leaf.toString(), header.alg);
const { payload, protectedHeader } = await compactVerify(token, key, {
  algorithms: ['ES256', 'ES384', 'PS256'],
  crit: { sigT: true }, // sigT is understood: jose then checks only that it is protected
});
// So the application checks sigT itself, and the rest of the header.
const { typ, sigT, crit } = protectedHeader;
if (typ !== 'nuskha-prescription+jws') throw new Error(`typ ${typ}`);
if (crit?.length !== 1 || crit[0] !== 'sigT') throw new Error(`crit ${crit}: JAdES marks sigT critical`);
if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(sigT)) throw new Error(`sigT ${sigT}`);
if (protectedHeader['x5t#S256'] !== createHash('sha256').update(leaf.raw).digest('base64url')) {
  throw new Error('x5t#S256 is not the signer certificate\'s digest');
}
// The chain: leaf ← intermediate ← Nuskha's root (pinned, never from x5c),
// each valid at sigT.
const at = new Date(sigT);
for (const [cert, issuer] of [[leaf, intermediate], [intermediate, root]]) {
  if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) throw new Error(`${cert.subject} is not issued by ${issuer.subject}`);
  if (at < new Date(cert.validFrom) || at > new Date(cert.validTo)) throw new Error(`${cert.subject} not valid at ${sigT}`);
}
// doc:end
const doc = JSON.parse(new TextDecoder().decode(payload));
console.log(doc.id);
