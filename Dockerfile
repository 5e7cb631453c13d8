# offsite as a container image: for a Kubernetes Indexed Job that shards one replicate over
# several pods (scripts/examples/offsite-shard-job.yaml, README "Sharding one backup over several
# workers"), or for any scheduler.
#
#   docker build -t offsite .
#   docker run --rm -v /etc/offsite:/config:ro offsite --config /config/offsite.yaml list
#
# Two stages: the first compiles the TypeScript (dev dependencies), the second holds only the
# runtime dependencies, bin/ and the compiled src/, and runs as the unprivileged `node` user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json

FROM node:20-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY bin ./bin
COPY --from=build /app/dist/src ./dist/src
# The image's own `node` user (uid 1000): offsite needs no privileges, only its config, keys and
# the network (or mounted folders for local destinations).
USER node
ENTRYPOINT ["node", "/app/bin/offsite.js"]
CMD ["--help"]
