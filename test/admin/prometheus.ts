/*
 * A strict reader of the Prometheus text exposition format (0.0.4), for the
 * tests: every line is a # HELP, a # TYPE or a sample of the family just
 * announced; label values are unescaped; anything else fails the test.
 */
import assert from 'node:assert/strict';

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: string;
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    assert.ok(eq > i, `label without =: ${text}`);
    const name = text.slice(i, eq);
    assert.match(name, /^[a-zA-Z_][a-zA-Z0-9_]*$/, `bad label name ${name}`);
    assert.equal(text[eq + 1], '"', `label value not quoted: ${text}`);
    let j = eq + 2;
    let value = '';
    for (;;) {
      assert.ok(j < text.length, `unterminated label value: ${text}`);
      const c = text[j]!;
      if (c === '\\') {
        const n = text[j + 1];
        value += n === 'n' ? '\n' : n;
        j += 2;
      } else if (c === '"') {
        j++;
        break;
      } else {
        value += c;
        j++;
      }
    }
    assert.ok(!(name in labels), `label ${name} twice`);
    labels[name] = value;
    if (text[j] === ',') j++;
    i = j;
  }
  return labels;
}

/** Parses a whole exposition; fails on any line that does not belong. */
export function parsePrometheus(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | undefined;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    let m = /^# HELP (\S+) (.*)$/.exec(line);
    if (m) {
      assert.match(m[1]!, NAME);
      assert.ok(!families.has(m[1]!), `family ${m[1]} announced twice`);
      current = { name: m[1]!, help: m[2]!, type: '', samples: [] };
      families.set(current.name, current);
      continue;
    }
    m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (m) {
      assert.equal(m[1], current?.name, `TYPE for another family than its HELP: ${line}`);
      current!.type = m[2]!;
      continue;
    }
    assert.ok(!line.startsWith('#'), `unexpected comment: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    assert.ok(current !== undefined && current.type !== '', `sample before HELP/TYPE: ${line}`);
    const name = m[1]!;
    const ok = name === current.name || (current.type === 'histogram' && [`${current.name}_bucket`, `${current.name}_sum`, `${current.name}_count`].includes(name));
    assert.ok(ok, `sample ${name} outside its family ${current.name}`);
    const raw = m[3]!;
    // Prometheus parses values with Go's ParseFloat: NaN in any case (prom-client writes `Nan`).
    const nan = raw.toLowerCase() === 'nan';
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : nan ? NaN : Number(raw);
    assert.ok(nan || !Number.isNaN(value), `bad value: ${line}`);
    current.samples.push({ name, labels: m[2] ? parseLabels(m[2]) : {}, value });
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `labels` (0 when none; fails when several). */
export function value(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const family = families.get(name) ?? families.get(base);
  if (family === undefined) return 0;
  const found = family.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  assert.ok(found.length <= 1, `several samples of ${name} match ${JSON.stringify(labels)}: ${JSON.stringify(found)}`);
  return found[0]?.value ?? 0;
}

/** The sum over every sample of `name` whose labels include `labels`. */
export function total(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  const family = families.get(name) ?? families.get(base);
  if (family === undefined) return 0;
  return family.samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((a, s) => a + s.value, 0);
}
