import { parseArgs } from 'node:util';
import { ConfigError, loadConfigFile } from '../config/load.js';
import { KeySet } from './key-set.js';
import { KeyFileError, loadPublishedKeyFile, loadSigningKeyFile } from './keys.js';

export const JWKS_USAGE = `Usage: phantom-gateway jwks --config <file.yaml>

Prints the JSON Web Key Set minted tokens verify with (the public halves of
minting.signing_key_file and minting.published_key_files), for APIs that
read their keys from a file or a secret instead of the gateway's
/.well-known/jwks.json.

  -c, --config <file>   gateway configuration (YAML)
  -h, --help            show this help
`;

/** `phantom-gateway jwks ...`: exit 0 with the JWKS on stdout, 2 on a usage or configuration error. */
export function runJwks(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): number {
  let args;
  try {
    args = parseArgs({ args: argv, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true }).values;
  } catch (e) {
    err.write(`phantom-gateway jwks: ${(e as Error).message}\n\n${JWKS_USAGE}`);
    return 2;
  }
  if (args.help) {
    out.write(JWKS_USAGE);
    return 0;
  }
  if (!args.config) {
    err.write(`phantom-gateway jwks: --config is required\n\n${JWKS_USAGE}`);
    return 2;
  }
  try {
    const { minting } = loadConfigFile(args.config);
    if (minting.signing_key_file === undefined) {
      err.write(
        `phantom-gateway jwks: ${args.config}: minting.signing_key_file is not set: without it the gateway signs with a key made when it starts, ` +
          'which no file can hold in advance; configure a signing key file, or fetch /.well-known/jwks.json from the running gateway\n',
      );
      return 2;
    }
    const keys = new KeySet(
      loadSigningKeyFile(minting.signing_key_file),
      minting.published_key_files.map((f) => loadPublishedKeyFile(f)),
    );
    out.write(`${JSON.stringify(keys.jwks(), null, 2)}\n`);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError || e instanceof KeyFileError) {
      err.write(`phantom-gateway jwks: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
}
