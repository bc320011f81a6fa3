import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * The gateway's logger: JSON lines on stdout. Nothing that could carry a
 * credential is ever passed to it (no headers, no query strings, no bodies of
 * the authorization server); as a second line of defence the usual
 * credential-bearing keys are redacted should one ever be logged by mistake.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      // The pid tells workers apart, and matches ps and OOM-killer reports.
      base: { pid: process.pid },
      redact: {
        paths: ['authorization', 'token', 'jwt', 'client_secret', '*.authorization', '*.token', '*.jwt', '*.client_secret', 'headers'],
        censor: '[redacted]',
      },
    },
    destination ?? pino.destination({ sync: false }),
  );
}
