# syntax=docker/dockerfile:1
#
# phantom-gateway as a container image.
#
#   docker build -t phantom-gateway .
#   docker run -p 8080:8080 -v "$PWD/gateway.yaml:/etc/phantom-gateway/gateway.yaml:ro" \
#     -e INTROSPECTION_CLIENT_SECRET phantom-gateway
#
# Two stages: `build` installs every dependency and compiles TypeScript (it
# also runs the development authorization server and example API of
# docker-compose.yml, which need dev dependencies); `runtime` holds only the
# production dependencies (npm ci --omit=dev, no oidc-provider, no TypeScript)
# and the compiled dist/, and runs as the unprivileged `node` user.
#
# Base: node:20-bookworm-slim. Node 20 is what the package supports
# (engines >=20.19) and what CI tests; Debian slim (glibc, like the CI
# machine) rather than Alpine (musl), so the image runs the same libc the
# tests ran on, and bookworm is named so a rebuild does not move Debian
# release under the gateway. Every dependency is pure JavaScript: nothing
# compiles at install, so slim needs no toolchain.

ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY bin ./bin
COPY proto ./proto
COPY examples ./examples
RUN npm run build \
 && mkdir -p /out \
 && cp -r dist /out/dist \
 && rm -rf /out/dist/dev

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force
COPY LICENSE ./
COPY bin ./bin
COPY proto ./proto
COPY --from=build /out/dist ./dist
RUN ln -s /app/bin/phantom-gateway.js /usr/local/bin/phantom-gateway \
 && mkdir -p /etc/phantom-gateway
USER node
# 8080: the proxy (listen in the config); 8082: the admin listener (admin.listen).
EXPOSE 8080 8082
# The admin listener's liveness endpoint (admin: in the config; 8082 is its
# default port). node's fetch: a slim image has no curl. HEALTHCHECK_URL
# overrides it for another admin port.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HEALTHCHECK_URL || 'http://127.0.0.1:8082/livez', { signal: AbortSignal.timeout(3000) }).then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["phantom-gateway"]
CMD ["--config", "/etc/phantom-gateway/gateway.yaml"]
