import { readFileSync } from 'node:fs';

/**
 * A secret from a file (a mounted secret): its text with one trailing
 * newline removed (as `echo` and editors leave it), checked against `rule`.
 * Errors name the file and the rule, never the content.
 */
export function readSecretFile(file: string, rule: RegExp, ruleText: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read "${file}" (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (!rule.test(secret)) throw new Error(`the ${what} in "${file}" ${ruleText}`);
  return secret;
}
