/*
 * Test certificates made with the openssl CLI in a temp dir: a CA, a server
 * certificate for 127.0.0.1 and client certificates (the registered subject,
 * another subject, and the registered subject under a CA the server does not
 * trust). Removed by `cleanup()`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Pair {
  readonly certFile: string;
  readonly keyFile: string;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface TestPki {
  readonly dir: string;
  readonly caFile: string;
  readonly ca: Buffer;
  readonly server: Pair;
  /** Subject `CN=<clientCn>`, signed by the CA. */
  readonly client: Pair;
  /** Subject `CN=intruder`, signed by the CA. */
  readonly otherSubject: Pair;
  /** Subject `CN=<clientCn>`, signed by a CA the server does not trust. */
  readonly untrusted: Pair;
  cleanup(): void;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function ecKey(dir: string, name: string): string {
  const file = `${name}.key`;
  openssl(dir, ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  return file;
}

function selfSignedCa(dir: string, name: string): void {
  const key = ecKey(dir, name);
  openssl(dir, ['req', '-x509', '-new', '-key', key, '-subj', `/CN=${name}`, '-days', '2', '-out', `${name}.crt`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
}

function issued(dir: string, name: string, cn: string, ca: string, ext: string): Pair {
  const key = ecKey(dir, name);
  openssl(dir, ['req', '-new', '-key', key, '-subj', `/CN=${cn}`, '-out', `${name}.csr`]);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`]);
  const certFile = join(dir, `${name}.crt`);
  const keyFile = join(dir, key);
  return { certFile, keyFile, cert: readFileSync(certFile), key: readFileSync(keyFile) };
}

export function makeTestPki(clientCn: string): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'phantom-gateway-pki-'));
  try {
    selfSignedCa(dir, 'ca');
    selfSignedCa(dir, 'other-ca');
    const serverExt = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n';
    const clientExt = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n';
    const caFile = join(dir, 'ca.crt');
    return {
      dir,
      caFile,
      ca: readFileSync(caFile),
      server: issued(dir, 'server', '127.0.0.1', 'ca', serverExt),
      client: issued(dir, 'client', clientCn, 'ca', clientExt),
      otherSubject: issued(dir, 'intruder', 'intruder', 'ca', clientExt),
      untrusted: issued(dir, 'untrusted', clientCn, 'other-ca', clientExt),
      cleanup: () => rmSync(dir, { recursive: true, force: true }),
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
