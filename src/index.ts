export { Gateway, type GatewayDeps } from './proxy/server.js';
export { TokenExchange, type TokenExchangeOptions, type Verdict, type Introspector } from './core/exchange.js';
export { parseBearer } from './core/bearer.js';
export { GatewayError, ERRORS, type ErrorCode, type PublicCode } from './core/errors.js';
export { IntrospectionClient, type IntrospectionAnswer, type IntrospectionClientOptions } from './introspection/client.js';
export { MemoryTokenCache, type Clock } from './cache/memory.js';
export type { ActiveToken, InactiveToken, TokenEntry } from './cache/entry.js';
export { ScopePolicy } from './policy/scope.js';
export { loadConfigFile, parseConfig, ConfigError } from './config/load.js';
export type { GatewayConfig, RouteConfig, PhantomTokenOptions } from './config/schema.js';
export { createLogger } from './observability/logger.js';
export type { Requester } from './core/exchange.js';
export type { IntrospectionRequest } from './introspection/client.js';
export { createGuards, Guards, REFUSED, type Guard, type GuardedRoute, type GuardsDeps } from './core/guards.js';
export { decide, withdraw, type Decision, type DecisionRequest, type Allow, type Deny, type CacheOutcome } from './core/decide.js';
export { renderRefusal, type RenderedRefusal } from './core/render.js';
export { checkCredentials, PREFLIGHT, TOKEN_IN_QUERY } from './core/credentials.js';
export type { TokenStore, SharedTokenStore, SharedRef, Claim } from './cache/store.js';
export type { PurgeRequest, PurgeOutcome } from './cache/purge.js';
export { ForwardAuthListener, createForwardAuthListener, type ForwardAuthDeps } from './forward-auth/http.js';
export type { ForwardAuthConfig } from './config/schema.js';
export { nginxConf, NginxConfError, NGINX_MODULES, NGINX_CONF_DEFAULTS, type NginxConfOptions } from './forward-auth/nginx-conf.js';
// Envoy's gRPC ext_authz service is the subpath `phantom-gateway/envoy`, so that
// importing the package does not load gRPC.

// The middleware is on its subpaths only (`phantom-gateway/express`,
// `phantom-gateway/fastify`): their type declarations name the frameworks'
// types, which a user of the package root may not have installed.
export type { MiddlewareOptions, PhantomToken } from './middleware/common.js';
export type { ParseOptions } from './config/load.js';
// Minting: what the listeners publish at /.well-known/jwks.json, for an app
// that serves `guards.jwks()` itself (behind the middleware).
export { JWKS_PATH, JWKS_CONTENT_TYPE, JWKS_CACHE_CONTROL, jwksBody, jwksHeaders } from './minting/publish.js';
export type { Jwks, Minting, SigningKey, PublishedKey } from './minting/index.js';
