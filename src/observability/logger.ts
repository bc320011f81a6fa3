import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The gateway's logger: JSON lines on stdout, with the level as its label
 * (`"level":"warn"`) and the time as ISO 8601 in UTC (`"time":"2026-…Z"`),
 * so that a line reads without a table of pino's numbers and sorts as text.
 * Nothing that could carry a credential is ever passed to it (no headers, no
 * query strings, no bodies of the authorization server); as a second line of
 * defence the usual credential-bearing keys are redacted should one ever be
 * logged by mistake.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      // The pid tells workers apart, and matches ps and OOM-killer reports.
      base: { pid: process.pid },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authorization', 'token', 'jwt', 'client_secret', '*.authorization', '*.token', '*.jwt', '*.client_secret', 'headers'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ sync: false }),
  );
}
