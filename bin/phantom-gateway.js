#!/usr/bin/env node
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`phantom-gateway: unexpected error: ${err && err.message ? err.message : err}\n`);
    process.exitCode = 1;
  },
);
