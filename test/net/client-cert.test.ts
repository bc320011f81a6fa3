import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { certThumbprint, clientCertFromHeader, MAX_CLIENT_CERT_HEADER } from '../../src/net/client-cert.js';
import { makeTestPki, type TestPki } from '../client-auth/certs.js';

describe('client certificates passed on by a trusted peer (RFC 9440 Client-Cert, NGINX/Envoy URL-encoded PEM)', () => {
  let pki: TestPki;
  let pem: string;
  let der: Buffer;

  before(() => {
    pki = makeTestPki('dpop-client');
    pem = pki.client.cert.toString('utf8');
    der = new X509Certificate(pki.client.cert).raw;
  });
  after(() => pki?.cleanup());

  test('the thumbprint is the SHA-256 of the DER, base64url (what openssl\'s fingerprint says, in cnf["x5t#S256"] form)', () => {
    const hex = new X509Certificate(pki.client.cert).fingerprint256.replaceAll(':', '');
    assert.equal(certThumbprint(der), Buffer.from(hex, 'hex').toString('base64url'));
    assert.match(certThumbprint(der), /^[A-Za-z0-9_-]{43}$/);
    assert.notEqual(certThumbprint(new X509Certificate(pki.otherSubject.cert).raw), certThumbprint(der));
  });

  test('RFC 9440 sf-binary :<base64 DER>: gives the DER (parameters after it ignored, spaces around trimmed)', () => {
    const b64 = der.toString('base64');
    assert.deepEqual(clientCertFromHeader(`:${b64}:`), der);
    assert.deepEqual(clientCertFromHeader(` :${b64}: `), der);
    assert.deepEqual(clientCertFromHeader(`:${b64}:;a=1`), der);
  });

  test('NGINX $ssl_client_escaped_cert and Envoy source.certificate (URL-encoded PEM) give the DER', () => {
    assert.deepEqual(clientCertFromHeader(encodeURIComponent(pem)), der);
    // Only spaces and line ends escaped (+, / and = as they are).
    assert.deepEqual(clientCertFromHeader(pem.replaceAll(' ', '%20').replaceAll('\n', '%0A')), der);
    // CRLF line ends.
    assert.deepEqual(clientCertFromHeader(encodeURIComponent(pem.replaceAll('\n', '\r\n'))), der);
  });

  test('anything else is no certificate', () => {
    const b64 = der.toString('base64');
    const refused: Array<[string, string | undefined]> = [
      ['absent', undefined],
      ['empty', ''],
      ['empty sf-binary', '::'],
      ['no closing colon', `:${b64}`],
      ['base64url, not base64', `:${der.toString('base64url')}:`],
      ['bad padding', `:${b64.slice(0, -2)}:`],
      ['not DER', `:${Buffer.from('hello world, not a certificate').toString('base64')}:`],
      ['DER with trailing bytes', `:${Buffer.concat([der, Buffer.from([0])]).toString('base64')}:`],
      ['DER cut short', `:${der.subarray(0, der.length - 3).toString('base64')}:`],
      ['a private key', encodeURIComponent(pki.client.key.toString('utf8'))],
      ['two certificates', encodeURIComponent(pem + pem)],
      ['bad escape', '%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE%2D%2D%2D%2D%2D%0A%E0%A4%A'],
      ['plain base64 without framing', b64],
      ['over the bound', `:${'A'.repeat(MAX_CLIENT_CERT_HEADER)}:`],
    ];
    for (const [what, value] of refused) assert.equal(clientCertFromHeader(value), undefined, what);
  });
});
