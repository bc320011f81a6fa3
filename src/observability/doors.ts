/*
 * The front doors requests are counted by, apart from the metrics module so
 * that a front door can name itself without loading prom-client (loaded
 * only when `admin` is configured).
 */
export const DOORS = ['proxy', 'forward_auth', 'envoy'] as const;
export type Door = (typeof DOORS)[number];
export const PROXY = 0;
export const FORWARD_AUTH = 1;
export const ENVOY = 2;
