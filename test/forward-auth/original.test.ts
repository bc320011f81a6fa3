import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { clientAddress, originalRequest, originalUrl, scanDecisionHeaders } from '../../src/forward-auth/original.js';
import { requestUrl } from '../../src/routing/request-target.js';

describe('forward-auth: reading a decision request', () => {
  test('the client address is the right-most X-Forwarded-For entry the gateway appended, else X-Real-IP, else the peer', () => {
    const at = (raw: string[], peer = '127.0.0.1') => clientAddress(scanDecisionHeaders(raw), peer);
    assert.equal(at(['X-Forwarded-For', '6.6.6.6, 10.0.0.7']), '10.0.0.7');
    // Two lines are one list: the last entry of the last line.
    assert.equal(at(['x-forwarded-for', '6.6.6.6', 'x-forwarded-for', '10.0.0.8 ']), '10.0.0.8');
    assert.equal(at(['x-forwarded-for', '::ffff:10.0.0.9']), '10.0.0.9');
    assert.equal(at(['x-forwarded-for', '2001:db8::1']), '2001:db8::1');
    // Not an address: the next source.
    assert.equal(at(['x-forwarded-for', '10.0.0.1, unknown', 'x-real-ip', '10.0.0.2']), '10.0.0.2');
    assert.equal(at(['x-real-ip', '10.0.0.3']), '10.0.0.3');
    assert.equal(at(['x-real-ip', '10.0.0.3', 'x-real-ip', '10.0.0.4']), '127.0.0.1', 'two X-Real-IP: neither');
    assert.equal(at(['x-real-ip', 'garbage']), '127.0.0.1');
    assert.equal(at([], '::ffff:127.0.0.5'), '127.0.0.5');
  });

  test('every Authorization line is kept, in order; a preflight needs Origin and Access-Control-Request-Method', () => {
    const h = scanDecisionHeaders(['Authorization', 'Bearer a', 'origin', 'x', 'authorization', 'Bearer b']);
    assert.deepEqual(h.authorization, ['Bearer a', 'Bearer b']);
    assert.equal(h.preflight, false);
    assert.equal(scanDecisionHeaders(['Origin', 'x', 'Access-Control-Request-Method', 'PUT']).preflight, true);
  });

  test('method-override headers in any spelling, and announced bodies, are noticed', () => {
    for (const name of ['X-HTTP-Method-Override', 'x-http-method', 'X-Method-Override', 'x_http_method_override']) {
      assert.equal(scanDecisionHeaders([name, 'DELETE']).methodOverride, true, name);
    }
    assert.equal(scanDecisionHeaders(['content-length', '0']).hasBody, false);
    assert.equal(scanDecisionHeaders(['content-length', '5']).hasBody, true);
    assert.equal(scanDecisionHeaders(['transfer-encoding', 'chunked']).hasBody, true);
  });

  test('the original request: X-Forwarded-* first, then X-Original-*; the request line only under path_prefix (/ for every line)', () => {
    const o = (raw: string[], method = 'GET', url = '/', prefix?: string) => originalRequest(scanDecisionHeaders(raw), method, url, prefix);
    assert.deepEqual(o(['X-Forwarded-Method', 'POST', 'X-Forwarded-Uri', '/api/x?y']), { method: 'POST', target: '/api/x?y' });
    assert.deepEqual(o(['X-Original-Method', 'PUT', 'X-Original-URI', '/a']), { method: 'PUT', target: '/a' });
    assert.equal(o([], 'DELETE', '/api/1'), undefined, 'a decision request that describes no request');
    assert.deepEqual(o([], 'DELETE', '/api/1', '/'), { method: 'DELETE', target: '/api/1', requestLine: true });
    assert.deepEqual(o(['x-forwarded-uri', '/public', 'x-forwarded-method', 'GET'], 'POST', '/admin', '/'), { method: 'POST', target: '/admin', requestLine: true });
    assert.deepEqual(o(['x-forwarded-uri', '/public', 'x-forwarded-method', 'GET'], 'POST', '/authz/admin', '/authz'), { method: 'POST', target: '/admin', requestLine: true });
    assert.deepEqual(o([], 'GET', '/authz/', '/authz'), { method: 'GET', target: '/', requestLine: true });
    assert.equal(o([], 'GET', '/authz', '/authz'), undefined);
    assert.equal(o([], 'GET', '/authz?x', '/authz'), undefined);
    assert.equal(o([], 'GET', '/api', '/authz'), undefined);
    assert.deepEqual(o(['x-original-method', 'GET', 'x-original-uri', '/api'], 'GET', '/_auth', '/authz'), { method: 'GET', target: '/api' });
    assert.equal(o(['x-forwarded-method', 'M'.repeat(33), 'x-forwarded-uri', '/api']), undefined);
    assert.deepEqual(o(['x-forwarded-method', 'M-SEARCH', 'x-forwarded-uri', '/api']), { method: 'M-SEARCH', target: '/api' });
  });

  test('DPoP proofs: every DPoP line, in order, in any spelling of the name; Client-Cert and Host only when sent once', () => {
    const h = scanDecisionHeaders(['DPoP', 'p1', 'authorization', 'DPoP t', 'dpop', 'p2', 'Client-Cert', ':AA==:']);
    assert.deepEqual(h.dpop, ['p1', 'p2']);
    assert.equal(h.clientCert, ':AA==:');
    assert.deepEqual(scanDecisionHeaders([]).dpop, []);
    const twice = scanDecisionHeaders(['client-cert', ':AA==:', 'client-cert', ':BB==:', 'host', 'a', 'host', 'b']);
    assert.equal(twice.clientCert, undefined);
    assert.equal(twice.host, undefined);
  });

  test('the URL the client addressed (htu): scheme and host of the gateway in front, path of the decided target, never the query', () => {
    assert.equal(requestUrl('https', 'api.example.com', '/v1/items?page=2'), 'https://api.example.com/v1/items');
    assert.equal(requestUrl('HTTPS, http', 'api.example.com:8443', '/v1'), 'https://api.example.com:8443/v1');
    assert.equal(requestUrl('http', '[::1]:8080', '/a#frag'), 'http://[::1]:8080/a');
    for (const [scheme, host, target] of [
      [undefined, 'a.example', '/x'],
      ['https', undefined, '/x'],
      ['ftp', 'a.example', '/x'],
      ['https', 'a.example,b.example', '/x'],
      ['https', 'a.example/evil', '/x'],
      ['https', 'user@a.example', '/x'],
      ['https', 'a.example', '*'],
      ['https', 'a.example', 'http://b.example/x'],
    ] as const) {
      assert.equal(requestUrl(scheme, host, target), undefined, `${scheme} ${host} ${target}`);
    }
    const url = (raw: string[], target = '/api/x?q=1', requestLine = false) => originalUrl(scanDecisionHeaders(raw), target, requestLine);
    assert.equal(url(['x-forwarded-proto', 'https', 'x-forwarded-host', 'api.example.com']), 'https://api.example.com/api/x');
    // Two X-Forwarded-Host lines are a chain: no host, no URL.
    assert.equal(url(['x-forwarded-proto', 'https', 'x-forwarded-host', 'a.example', 'x-forwarded-host', 'b.example']), undefined);
    // Not X-Original-URL: Caddy and Traefik pass a client's copy on.
    assert.equal(url(['x-original-url', 'https://elsewhere.example/api/x']), undefined);
    // The decision request's own Host only when its request line is the original request (Envoy HTTP ext_authz).
    assert.equal(url(['x-forwarded-proto', 'https', 'host', 'api.example.com']), undefined);
    assert.equal(url(['x-forwarded-proto', 'https', 'host', 'api.example.com'], '/api/x', true), 'https://api.example.com/api/x');
  });
});
